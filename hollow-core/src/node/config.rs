//! The consuming builder of a hollow node, and its validated configuration.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{HollowNode, TaintEffect};
use crate::cadvisor::{Cadvisor, FakeCadvisor};
use crate::lifecycle::{Lifecycle, NodeFacts};
use crate::node_status::{FakeNodeStatus, NodeStatusProvider};
use crate::runtime::{FakeRuntime, RuntimeService};

mod checks;
pub use checks::check_hostname;
pub(crate) use checks::is_dns_subdomain;
use checks::quantities;

/// The kubelet version a node behaves as until it has read the API server's (the
/// pinned control plane's; [`crate::version`]).
pub const DEFAULT_KUBELET_VERSION: &str = "v1.36.5";

/// Errors in a node's configuration, found by [`HollowNodeBuilder::build`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The node name is not a DNS subdomain.
    #[error(
        "invalid node name {0:?}: must be lowercase alphanumerics, '-' or '.', at most 253 characters"
    )]
    InvalidName(String),
    /// A taint effect is not NoSchedule, PreferNoSchedule or NoExecute.
    #[error("invalid taint effect {0:?}: must be NoSchedule, PreferNoSchedule or NoExecute")]
    InvalidTaintEffect(String),
    /// A resource quantity cannot be parsed or is negative.
    #[error("invalid quantity {quantity:?} for resource {resource:?}")]
    InvalidQuantity {
        /// The resource.
        resource: String,
        /// The quantity given.
        quantity: String,
    },
    /// A timing value is zero or inconsistent.
    #[error("invalid timing: {0}")]
    InvalidTiming(String),
    /// A hostname is neither a DNS subdomain nor an IP address.
    #[error(
        "invalid hostname {0:?}: must be an IP address or a DNS name (lowercase alphanumerics, '-' or '.', at most 253 characters)"
    )]
    InvalidHostname(String),
    /// The kubelet version given is not one hollow can behave as.
    #[error("invalid kubelet version: {0}")]
    KubeletVersion(#[from] crate::version::VersionError),
}

/// The kubelet's timing. The defaults are the kubelet's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeTiming {
    /// How often node status is computed (nodeStatusUpdateFrequency, 10 s).
    pub status_update: Duration,
    /// How often status is written even without change (nodeStatusReportFrequency, 5 min).
    pub status_report: Duration,
    /// The Lease duration (nodeLeaseDurationSeconds, 40 s).
    pub lease_duration: Duration,
    /// How often the Lease is renewed (a quarter of its duration, 10 s), with up to 4 %
    /// jitter.
    pub lease_renew: Duration,
}

impl Default for NodeTiming {
    fn default() -> Self {
        Self {
            status_update: Duration::from_secs(10),
            status_report: Duration::from_secs(300),
            lease_duration: Duration::from_secs(40),
            lease_renew: Duration::from_secs(10),
        }
    }
}

/// What only registration reads: taken out of the configuration when the node starts,
/// so a running node does not keep it (a label map alone is about 0.5 KiB).
#[derive(Clone, Default)]
pub(crate) struct Registration {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub provider_id: String,
    pub adopt: bool,
    /// Serve a Node someone else created, as it is: [`HollowNodeBuilder::serve_existing`].
    pub existing: bool,
    /// That Node as last seen (from a watch), so starting need not read it again.
    pub existing_node: Option<Box<k8s_openapi::api::core::v1::Node>>,
}

/// How long a node may take to be Ready once started, unless
/// [`HollowNodeBuilder::ready_timeout`] says otherwise: registration alone retries for
/// up to two minutes while an API server is unreachable or overloaded.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A node's validated configuration.
#[derive(Clone)]
pub(crate) struct NodeConfig {
    pub name: String,
    pub registration: Registration,
    pub capacity: BTreeMap<String, Quantity>,
    pub allocatable: BTreeMap<String, Quantity>,
    pub addresses: Vec<IpAddr>,
    /// The `Hostname` address, where it is not the node name (boxed: nothing on the
    /// heap by default, and nodes keep their configuration for life).
    pub hostname: Option<Box<str>>,
    pub pod_cidr: Option<String>,
    pub kubelet_port: u16,
    /// The kubelet the node behaves as: the API server's version, resolved as the node
    /// starts, unless [`Self::kubelet_pinned`].
    pub kubelet: crate::version::KubeletVersion,
    /// Whether the version was given ([`HollowNodeBuilder::kubelet_version`]).
    pub kubelet_pinned: bool,
    pub timing: NodeTiming,
    /// Whether the node records Events.
    pub events: bool,
    pub traffic: super::TrafficProfile,
    pub runtime: Arc<dyn RuntimeService>,
    pub cadvisor: Arc<dyn Cadvisor>,
    pub node_status: Arc<dyn NodeStatusProvider>,
    /// The runtime and cAdvisor, typed, where they are the default fakes.
    pub default_runtime: Option<FakeRuntime>,
    pub default_cadvisor: Option<FakeCadvisor>,
}

/// Configures a [`HollowNode`]; nothing touches the network until
/// [`HollowNode::start`].
///
/// ```
/// use hollow_core::node::{HollowNode, TaintEffect};
///
/// let node = HollowNode::builder("gpu-0")
///     .label("accelerator", "h100")
///     .taint("dedicated", "gpu", TaintEffect::NoSchedule)
///     .capacity("nvidia.com/gpu", "8")
///     .address("127.0.0.2".parse().unwrap())
///     .build()?;
/// assert_eq!(node.name(), "gpu-0");
///
/// let bad = HollowNode::builder("Bad_Name").build();
/// assert!(bad.is_err());
/// # Ok::<(), hollow_core::node::ConfigError>(())
/// ```
#[must_use]
#[derive(Clone)]
pub struct HollowNodeBuilder {
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    taints: Vec<(String, String, TaintEffect)>,
    capacity: BTreeMap<String, String>,
    allocatable: BTreeMap<String, String>,
    addresses: Vec<IpAddr>,
    hostname: Option<String>,
    provider_id: Option<String>,
    pod_cidr: Option<String>,
    kubelet_port: u16,
    kubelet_version: Option<String>,
    timing: NodeTiming,
    events: bool,
    traffic: super::TrafficProfile,
    adopt: bool,
    existing: bool,
    existing_node: Option<Box<k8s_openapi::api::core::v1::Node>>,
    runtime: Option<Arc<dyn RuntimeService>>,
    cadvisor: Option<Arc<dyn Cadvisor>>,
    node_status: Option<Arc<dyn NodeStatusProvider>>,
    lifecycle: Option<Arc<Lifecycle>>,
    ready_timeout: Duration,
}

impl std::fmt::Debug for HollowNodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HollowNodeBuilder")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("taints", &self.taints)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl HollowNodeBuilder {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            taints: Vec::new(),
            capacity: BTreeMap::new(),
            allocatable: BTreeMap::new(),
            addresses: Vec::new(),
            hostname: None,
            provider_id: None,
            pod_cidr: None,
            kubelet_port: 10250,
            kubelet_version: None,
            timing: NodeTiming::default(),
            events: true,
            traffic: super::TrafficProfile::default(),
            adopt: false,
            existing: false,
            existing_node: None,
            runtime: None,
            cadvisor: None,
            node_status: None,
            lifecycle: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// Adds a label (besides kubernetes.io/hostname, os and arch, which are always set).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Registers with a taint (`--register-with-taints key=value:Effect`); an empty
    /// value is a taint with no value.
    pub fn taint(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        effect: TaintEffect,
    ) -> Self {
        self.taints.push((key.into(), value.into(), effect));
        self
    }

    /// Sets the capacity of a resource: `cpu`, `memory`, `pods`, `ephemeral-storage` or
    /// an extended resource such as `nvidia.com/gpu`. Allocatable follows unless set.
    pub fn capacity(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.capacity.insert(resource.into(), quantity.into());
        self
    }

    /// Sets the allocatable amount of a resource.
    pub fn allocatable(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.allocatable.insert(resource.into(), quantity.into());
        self
    }

    /// Sets the maximum number of pods (`--max-pods`), i.e. the `pods` capacity.
    pub fn max_pods(self, pods: u32) -> Self {
        self.capacity("pods", pods.to_string())
    }

    /// Adds an InternalIP address (default 127.0.0.1, or the [`hostname`](Self::hostname)
    /// when that is an IP address). Host-network pods take these.
    pub fn address(mut self, ip: IpAddr) -> Self {
        self.addresses.push(ip);
        self
    }

    /// The node's `Hostname` address, published after its InternalIP addresses (default:
    /// the node name, as a kubelet's hostname is its node name). An API server or
    /// metrics-server that prefers `Hostname` (kube-apiserver's default
    /// `--kubelet-preferred-address-types` does) dials it for `kubectl logs`, `exec` and
    /// `top`, so it must be an IP address or a name that resolves to the kubelet API;
    /// a node name usually does not. [`build`](Self::build) checks that it is an IP
    /// address or a DNS subdomain ([`check_hostname`]).
    ///
    /// Like the kubelet's `--hostname-override` with an IP address and no `--node-ip`,
    /// a hostname that is an IP address is also the InternalIP when no
    /// [`address`](Self::address) is given. Unlike it (whose hostname is also the node
    /// name and label: `cmd/kubelet/app/server.go`, `RunKubelet`), the node name does
    /// not change, nor does the `kubernetes.io/hostname` label, which stays the node
    /// name: nodes of one process may share an address, and pod (anti-)affinity and
    /// topology spread on that label need it to tell nodes apart.
    ///
    /// ```
    /// use hollow_core::node::HollowNode;
    ///
    /// let node = HollowNode::builder("hollow-0").hostname("10.0.3.7").build()?;
    /// # drop(node);
    /// assert!(HollowNode::builder("hollow-0").hostname("not a name").build().is_err());
    /// # Ok::<(), hollow_core::node::ConfigError>(())
    /// ```
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Sets `spec.providerID` (default `hollow://<name>`).
    pub fn provider_id(mut self, id: impl Into<String>) -> Self {
        self.provider_id = Some(id.into());
        self
    }

    /// Sets the pod CIDR pod IPs come from. By default the one the controller manager
    /// allocates (`spec.podCIDR`) is used, or one derived from the node name if none
    /// is allocated within 10 s.
    pub fn pod_cidr(mut self, cidr: impl Into<String>) -> Self {
        self.pod_cidr = Some(cidr.into());
        self
    }

    /// The kubelet port published in `status.daemonEndpoints` (default 10250).
    pub fn kubelet_port(mut self, port: u16) -> Self {
        self.kubelet_port = port;
        self
    }

    /// The kubelet version the node reports in `nodeInfo` and behaves as
    /// ([`crate::version`]), for version-skew tests. By default a node reads the API
    /// server's version as it starts and behaves as that version's kubelet. A version
    /// older than [`crate::version::OLDEST_MINOR`] fails [`build`](Self::build) with
    /// [`ConfigError::KubeletVersion`].
    ///
    /// ```
    /// use hollow_core::node::HollowNode;
    ///
    /// let node = HollowNode::builder("skewed").kubelet_version("v1.35.4").build()?;
    /// assert!(HollowNode::builder("old").kubelet_version("v1.20.0").build().is_err());
    /// # drop(node);
    /// # Ok::<(), hollow_core::node::ConfigError>(())
    /// ```
    pub fn kubelet_version(mut self, version: impl Into<String>) -> Self {
        self.kubelet_version = Some(version.into());
        self
    }

    /// The kubelet's timing (defaults: the kubelet's).
    pub fn timing(mut self, timing: NodeTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Adopts an existing Node of the same name that hollow did not register.
    pub fn adopt(mut self, adopt: bool) -> Self {
        self.adopt = adopt;
        self
    }

    /// Serves a Node that someone else created (a cluster autoscaler, Karpenter's KWOK
    /// provider, `kubectl create`) instead of registering one, as KWOK serves the Nodes
    /// it manages: the Node is never created (starting fails with
    /// [`Error::NodeMissing`](super::Error::NodeMissing) while it does not exist), its
    /// spec, labels, taints and provider ID stay as the creator wrote them (the
    /// builder's own are not used; only the well-known `kubernetes.io/hostname`, `os`
    /// and `arch` labels are added where missing, as a kubelet adds them, though once
    /// the node is Ready rather than before), and the
    /// capacity and allocatable resources it already lists replace the builder's. The
    /// node writes its status, its Lease and its pods' statuses as any hollow node.
    ///
    /// ```
    /// use hollow_core::node::HollowNode;
    ///
    /// let node = HollowNode::builder("made-by-karpenter").serve_existing(true).build()?;
    /// # Ok::<(), hollow_core::node::ConfigError>(())
    /// ```
    pub fn serve_existing(mut self, existing: bool) -> Self {
        self.existing = existing;
        self
    }

    /// The Node to serve, as a watch just saw it: starting does not read it again.
    pub(crate) fn existing_node(mut self, node: k8s_openapi::api::core::v1::Node) -> Self {
        self.existing_node = Some(Box::new(node));
        self
    }

    /// The container runtime (default: a fresh [`FakeRuntime`], which
    /// [`RunningNode::fake_runtime`](super::RunningNode::fake_runtime) hands back).
    pub fn runtime(mut self, runtime: Arc<dyn RuntimeService>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The machine-info source (default: a fresh [`FakeCadvisor`]).
    pub fn cadvisor(mut self, cadvisor: Arc<dyn Cadvisor>) -> Self {
        self.cadvisor = Some(cadvisor);
        self
    }

    /// The node-status source (default: a fresh [`FakeNodeStatus`]).
    pub fn node_status(mut self, provider: Arc<dyn NodeStatusProvider>) -> Self {
        self.node_status = Some(provider);
        self
    }

    /// What the default fakes do: the fake runtime plays `lifecycle`'s container, pull
    /// and deletion rules, the fake node status its node rules (a runtime or status
    /// provider given explicitly is left as it is).
    ///
    /// ```
    /// use hollow_core::lifecycle::Lifecycle;
    /// use hollow_core::node::HollowNode;
    ///
    /// let node = HollowNode::builder("hollow-0").lifecycle(Lifecycle::realistic()).build()?;
    /// # drop(node);
    /// # Ok::<(), hollow_core::node::ConfigError>(())
    /// ```
    pub fn lifecycle(mut self, lifecycle: impl Into<Arc<Lifecycle>>) -> Self {
        self.lifecycle = Some(lifecycle.into());
        self
    }

    /// How long [`HollowNode::start`] (and a [`HollowCluster`](super::HollowCluster),
    /// for each of its nodes) waits for the node to be Ready before it gives up
    /// (default [`DEFAULT_READY_TIMEOUT`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hollow_core::node::HollowNode;
    ///
    /// let node = HollowNode::builder("hollow-0").ready_timeout(Duration::from_secs(30)).build()?;
    /// # drop(node);
    /// # Ok::<(), hollow_core::node::ConfigError>(())
    /// ```
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Whether the node records Events as a kubelet does (on by default): `Starting`,
    /// `NodeReady` and the other node events, and per pod `Pulling`, `Pulled`,
    /// `Created`, `Started`, `Killing`, `BackOff`, `Failed`, `FailedMount` and
    /// `DeadlineExceeded`. They are a large part of a kubelet's API writes; turn them
    /// off for the cheapest runs.
    ///
    /// ```
    /// use hollow_core::node::HollowNode;
    ///
    /// let quiet = HollowNode::builder("quiet").events(false).build()?;
    /// # drop(quiet);
    /// # Ok::<(), hollow_core::node::ConfigError>(())
    /// ```
    pub fn events(mut self, record: bool) -> Self {
        self.events = record;
        self
    }

    /// Which requests the node sends: a kubelet's (the default) or only what it needs
    /// ([`TrafficProfile`](super::TrafficProfile)).
    pub fn traffic(mut self, profile: super::TrafficProfile) -> Self {
        self.traffic = profile;
        self
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Validates the configuration; no I/O.
    pub fn build(self) -> Result<HollowNode, ConfigError> {
        if !is_dns_subdomain(&self.name) {
            return Err(ConfigError::InvalidName(self.name));
        }
        let taints = self
            .taints
            .into_iter()
            .map(|(key, value, effect)| Taint {
                key,
                value: (!value.is_empty()).then_some(value),
                effect: effect.to_string(),
                time_added: None,
            })
            .collect();
        let timing = self.timing;
        if timing.status_update.is_zero()
            || timing.lease_renew.is_zero()
            || timing.lease_duration <= timing.lease_renew
        {
            return Err(ConfigError::InvalidTiming(
                "update and renew periods must be positive and the lease longer than its renew interval".into(),
            ));
        }
        if let Some(hostname) = &self.hostname {
            check_hostname(hostname)?;
        }
        // As the kubelet's NodeAddress setter (pkg/kubelet/nodestatus/setters.go): the
        // node IP if set, else a hostname that is an IP address.
        let addresses = if self.addresses.is_empty() {
            let from_hostname = self.hostname.as_deref().and_then(|h| h.parse().ok());
            vec![from_hostname.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))]
        } else {
            self.addresses
        };
        // The node name is the default: nothing to keep.
        let hostname = self
            .hostname
            .filter(|hostname| *hostname != self.name)
            .map(String::into_boxed_str);
        let (runtime, default_runtime): (Arc<dyn RuntimeService>, _) = match self.runtime {
            Some(runtime) => (runtime, None),
            None => {
                let fake = FakeRuntime::default().with_call_record_limit(0);
                if let Some(lifecycle) = &self.lifecycle {
                    fake.set_lifecycle(lifecycle.clone());
                }
                (Arc::new(fake.clone()), Some(fake))
            }
        };
        let (cadvisor, default_cadvisor): (Arc<dyn Cadvisor>, _) = match self.cadvisor {
            Some(cadvisor) => (cadvisor, None),
            None => {
                let fake = FakeCadvisor::default();
                (Arc::new(fake.clone()), Some(fake))
            }
        };
        let node_status = match (self.node_status, &self.lifecycle) {
            (Some(provider), _) => provider,
            (None, None) => Arc::new(FakeNodeStatus::default()),
            (None, Some(lifecycle)) => Arc::new(FakeNodeStatus::default().with_lifecycle(
                lifecycle,
                &NodeFacts {
                    name: &self.name,
                    labels: &self.labels,
                    annotations: &self.annotations,
                },
            )),
        };
        let config = NodeConfig {
            registration: Registration {
                provider_id: self
                    .provider_id
                    .unwrap_or_else(|| format!("hollow://{}", self.name)),
                labels: self.labels,
                annotations: self.annotations,
                taints,
                adopt: self.adopt,
                existing: self.existing,
                existing_node: self.existing_node,
            },
            name: self.name,
            capacity: quantities(self.capacity)?,
            allocatable: quantities(self.allocatable)?,
            addresses,
            hostname,
            pod_cidr: self.pod_cidr,
            kubelet_port: self.kubelet_port,
            kubelet_pinned: self.kubelet_version.is_some(),
            kubelet: match &self.kubelet_version {
                Some(version) => crate::version::KubeletVersion::parse(version)?,
                None => crate::version::KubeletVersion::default(),
            },
            timing,
            events: self.events,
            traffic: self.traffic,
            runtime,
            cadvisor,
            node_status,
            default_runtime,
            default_cadvisor,
        };
        Ok(HollowNode {
            config,
            ready_timeout: self.ready_timeout,
        })
    }
}

#[cfg(test)]
mod tests;
