//! The command line: Kubemark's hollow-kubelet flags, plus hollow's own.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use hollow_core::lifecycle::Lifecycle;
use hollow_core::node::TaintEffect;
use hollow_core::quantity::is_quantity;

/// Runs hollow Kubernetes nodes: a drop-in for `kubemark --morph=kubelet`.
///
/// With no cluster given (no --kubeconfig, no KUBECONFIG, no in-cluster service
/// account) it first starts a local control plane.
#[derive(Debug, Parser)]
#[command(name = "hollow-kubelet", version, about, long_about = None)]
pub struct Cli {
    /// Node name; with --nodes N > 1 the nodes are NAME-0 .. NAME-(N-1).
    #[arg(long, env = "NODE_NAME", default_value = "hollow-node")]
    pub name: String,

    /// Kubeconfig of the cluster to join.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// A kubeconfig with bootstrap credentials (a bootstrap token): each node does the
    /// kubelet's TLS bootstrap with it and talks as itself (`system:node:<name>`), with
    /// its own connection and watches, as kubelets do. --kubeconfig is still needed for
    /// the kubelet API's delegated authentication (or --serve-kubelet-api=false).
    #[arg(long, env = "HOLLOW_BOOTSTRAP_KUBECONFIG")]
    pub bootstrap_kubeconfig: Option<PathBuf>,

    /// How many nodes this process runs (sharing one client and one pod watch).
    #[arg(long, env = "HOLLOW_NODES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub nodes: u32,

    /// Labels to register the nodes with: k=v,k2=v2.
    #[arg(long, value_parser = parse_labels, default_value = "")]
    pub node_labels: Pairs,

    /// Taints to register the nodes with: key=value:Effect,key2:Effect.
    #[arg(long, value_parser = parse_taints, default_value = "")]
    pub register_with_taints: Taints,

    /// Pods' passes (a pod worker's steps) at once in this process, across its nodes:
    /// more runs a burst of new pods faster when the API server keeps up, and keeps
    /// more memory after it (see docs/benchmarks.md, "How many passes at once").
    #[arg(long, env = "HOLLOW_POD_PASSES_AT_ONCE", default_value_t = hollow_core::node::DEFAULT_POD_PASSES_AT_ONCE, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub pod_passes_at_once: usize,

    /// Maximum pods per node.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,

    /// Extended resources: name=quantity,... (e.g. nvidia.com/gpu=8).
    #[arg(long, value_parser = parse_resources, default_value = "")]
    pub extended_resources: Pairs,

    /// Node capacity: cpu=72,memory=256Gi,ephemeral-storage=1Ti,...
    #[arg(long, value_parser = parse_resources, default_value = "")]
    pub capacity: Pairs,

    /// The kubelet API's port, published in the Node's daemonEndpoints (0: any free
    /// port; a port in use is replaced by a free one, with a warning).
    #[arg(long, default_value_t = 10250, visible_alias = "node-port")]
    pub kubelet_port: u16,

    /// Client QPS (accepted for Kubemark compatibility; hollow's client is not
    /// rate-limited on the client side).
    #[arg(long, default_value_t = 10.0)]
    pub kube_api_qps: f32,

    /// Client burst (accepted for Kubemark compatibility, see --kube-api-qps).
    #[arg(long, default_value_t = 20)]
    pub kube_api_burst: u32,

    /// Kubemark's role switch: only "kubelet" is served here (see hollow-proxy).
    #[arg(long, default_value = "kubelet")]
    pub morph: String,

    /// Delete this process's Nodes and Leases on shutdown.
    #[arg(long)]
    pub cleanup_on_exit: bool,

    /// Take over existing Nodes of the same names that hollow did not register.
    #[arg(long)]
    pub adopt: bool,

    /// Where the local control plane keeps its state (default: a temporary directory).
    #[arg(long, env = "HOLLOW_LOCAL_DIR")]
    pub local_dir: Option<PathBuf>,

    /// How long to keep retrying an unreachable API server, in seconds.
    #[arg(long, default_value_t = 60)]
    pub connect_timeout: u64,

    /// Where to serve the process's /healthz and Prometheus /metrics (port 0: any free
    /// port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:10248")]
    pub metrics_bind_address: String,

    /// The CA bundle that client certificates to the kubelet API must chain to
    /// (default: the API server's, from kube-system/extension-apiserver-authentication).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,

    /// The kubelet API's serving certificate (default: a self-signed one).
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// The key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Every node's InternalIP (e.g. the pod's IP when run as a pod); node i then serves
    /// its kubelet API on --kubelet-port + i. Without it, node i takes 127.1.0.(i+1)
    /// and all share --kubelet-port.
    #[arg(long, env = "HOLLOW_NODE_IP")]
    pub node_ip: Option<std::net::IpAddr>,

    /// The kubelet version the nodes report and behave as, for version-skew tests
    /// (v1.35.4). Default: the API server's own version, read at start; a server newer
    /// than hollow knows gets nodes that behave as the newest minor hollow knows, and one
    /// older than the oldest it knows is refused.
    #[arg(long, value_parser = parse_kubelet_version)]
    pub kubelet_version: Option<String>,

    /// The nodes' hostname, published as their `Hostname` address, which API servers and
    /// metrics-server that prefer Hostname (kube-apiserver's default does) dial:
    /// "node-ip" for each node's own InternalIP; or, with one node only, an IP address
    /// (also the InternalIP without --node-ip, as the kubelet has it) or a name that
    /// resolves to this process. Default: the node name, which usually does not resolve.
    /// The node name and its kubernetes.io/hostname label stay.
    #[arg(long, value_parser = parse_hostname_override)]
    pub hostname_override: Option<HostnameOverride>,

    /// The address the kubelet API listens on; each node is reached at its own
    /// InternalIP on --kubelet-port.
    #[arg(long, default_value = "0.0.0.0")]
    pub address: std::net::IpAddr,

    /// Serve the kubelet API (kubectl logs, kubectl top through metrics-server).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub serve_kubelet_api: bool,

    /// Record Events as a kubelet does (Starting, NodeReady; per pod Pulling, Pulled,
    /// Created, Started, Killing, BackOff, Failed, FailedMount...). They are a large
    /// part of a kubelet's API writes; false for the cheapest runs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub record_events: bool,

    /// Which requests the nodes send: "kubelet", a 1.36 kubelet's (its informers'
    /// watches per node, a watch per ConfigMap and Secret its pods refer to, its CSINode,
    /// a TokenRequest per projected service account token, a read of the pod before each
    /// status patch), for load tests; or "lean", only what the nodes need (the process's
    /// nodes share their watches), for the cheapest functional tests.
    #[arg(long, default_value = "kubelet", env = "HOLLOW_TRAFFIC_PROFILE")]
    pub traffic_profile: hollow_core::node::TrafficProfile,

    /// Seconds a kubelet API connection may wait for its next request before it is
    /// closed. A real kubelet keeps them; here metrics-server's connection to every node
    /// would cost about 20 KiB a node, so one is closed between scrapes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub kubelet_api_idle_timeout: u64,

    /// How many nodes register at once.
    #[arg(long, default_value_t = 64)]
    pub parallelism: usize,

    /// At most this many API requests in flight for the whole process (watches count
    /// until their response starts); the rest wait their turn. Over HTTP/1.1 each
    /// request in flight takes a connection of its own.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_requests_in_flight: u32,

    /// Offer HTTP/2 to the API server, as client-go does: the process's requests then
    /// share a few connections, opened as bursts need them. With false, HTTP/1.1 only.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub http2: bool,

    /// HTTP/2 connections the process's requests may be spread over, at most (default:
    /// one per 100 nodes, at most 64; 1,024 in the kubelet traffic profile, whose
    /// nodes hold watches). A connection is opened once those before it have 64 streams
    /// open (requests in flight and watches); one left unused for 30 s closes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub api_connections: Option<u32>,

    /// What hollow pods and nodes do: a preset (fast, realistic, chaos) or the path of a
    /// lifecycle file (YAML or JSON; see docs/lifecycle.md).
    #[arg(long, env = "HOLLOW_LIFECYCLE", default_value = "fast", value_parser = parse_lifecycle)]
    pub lifecycle: Arc<Lifecycle>,

    /// Replaces the lifecycle's seed (choices and jitter are drawn from it).
    #[arg(long, env = "HOLLOW_LIFECYCLE_SEED")]
    pub lifecycle_seed: Option<u64>,

    /// Serve the Nodes that others create (a cluster autoscaler, Karpenter's KWOK
    /// provider, kubectl) whose labels match this selector, as KWOK does, instead of
    /// registering nodes: type=kwok. Their spec, labels and capacity stay the
    /// creator's; a Node deleted stops being served. Empty: not set (as KWOK's).
    #[arg(long, value_parser = parse_selector)]
    pub manage_nodes_with_label_selector: Option<String>,

    /// Serve the Nodes whose annotations match this selector (with the label selector
    /// too, both must match). KWOK's default: kwok.x-k8s.io/node=fake.
    #[arg(long, value_parser = parse_selector)]
    pub manage_nodes_with_annotation_selector: Option<String>,

    /// Serve every Node of the cluster (KWOK's flag; for clusters of fake nodes only).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub manage_all_nodes: bool,

    /// Serve the one Node of this name that someone else created.
    #[arg(long)]
    pub manage_single_node: Option<String>,

    /// The pod CIDR of nodes whose Node has none (KWOK's --cidr): pod IPs come from it.
    #[arg(long, value_parser = parse_cidr)]
    pub cidr: Option<String>,

    /// The nodes' Lease duration in seconds (KWOK's flag; the kubelet's default is 40).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(2..=3_600))]
    pub node_lease_duration_seconds: u64,

    /// Kubemark flags that mean nothing here: accepted with a notice.
    #[command(flatten)]
    pub ignored: IgnoredFlags,
}

/// Flags Kubemark's manifests pass that hollow accepts and ignores (or maps).
#[derive(Debug, clap::Args)]
pub struct IgnoredFlags {
    /// Log verbosity (klog's -v): 0-1 info, 2-4 debug, 5+ trace.
    #[arg(long = "v", short = 'v')]
    pub verbosity: Option<u8>,
    /// Ignored (logs always go to stderr).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub alsologtostderr: Option<String>,
    /// Ignored (hollow serves no read-only port).
    #[arg(long)]
    pub kubelet_read_only_port: Option<u16>,
    /// Ignored (there is no image service).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub use_host_image_service: Option<String>,
    /// Ignored (there is no container runtime socket).
    #[arg(long)]
    pub containerd: Option<String>,
    /// Ignored (hollow speaks JSON).
    #[arg(long)]
    pub kube_api_content_type: Option<String>,
}

impl IgnoredFlags {
    /// The names of the ignored flags that were given.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--alsologtostderr", self.alsologtostderr.is_some()),
            (
                "--kubelet-read-only-port",
                self.kubelet_read_only_port.is_some(),
            ),
            (
                "--use-host-image-service",
                self.use_host_image_service.is_some(),
            ),
            ("--containerd", self.containerd.is_some()),
            (
                "--kube-api-content-type",
                self.kube_api_content_type.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// What `--hostname-override` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostnameOverride {
    /// `node-ip`: each node's own first InternalIP.
    NodeIp,
    /// One hostname (an IP address or a DNS name), for a single node.
    Fixed(String),
}

/// A `--kubelet-version` hollow can behave as.
pub fn parse_kubelet_version(input: &str) -> Result<String, String> {
    hollow_core::version::KubeletVersion::parse(input)
        .map(|version| version.reported().to_string())
        .map_err(|error| error.to_string())
}

/// `node-ip`, or a hostname, trimmed and lowercased as the kubelet's
/// `nodeutil.GetHostname` does, then checked (an IP address or a DNS subdomain).
pub fn parse_hostname_override(input: &str) -> Result<HostnameOverride, String> {
    let hostname = input.trim().to_lowercase();
    if hostname == "node-ip" {
        return Ok(HostnameOverride::NodeIp);
    }
    hollow_core::node::check_hostname(&hostname)
        .map(|()| HostnameOverride::Fixed(hostname))
        .map_err(|error| error.to_string())
}

/// A list of `key=value` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(pub Vec<(String, String)>);

/// A list of taints: key, value, effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taints(pub Vec<(String, String, TaintEffect)>);

fn pairs(input: &str) -> impl Iterator<Item = &str> {
    input
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// A preset name or a lifecycle file, read and checked now, so a bad file stops the
/// process before anything starts. The message gives the causes too ("cannot read
/// lifecycle file /: Is a directory (os error 21)").
pub fn parse_lifecycle(input: &str) -> Result<Arc<Lifecycle>, String> {
    Lifecycle::resolve(input).map(Arc::new).map_err(|error| {
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(error) = cause {
            message.push_str(&format!(": {error}"));
            cause = error.source();
        }
        message
    })
}

/// An IPv4 pod CIDR, as the fake runtime takes it.
pub fn parse_cidr(input: &str) -> Result<String, String> {
    hollow_core::runtime::FakeRuntime::check_pod_cidr(input)
        .map(|()| input.to_string())
        .map_err(|error| error.to_string())
}

/// A selector in the API's syntax (`type=kwok`, `pool in (a,b)`, `!spot`).
pub fn parse_selector(input: &str) -> Result<String, String> {
    hollow_core::manage::parse_selector(input)
        .map(|_| input.to_string())
        .map_err(|error| error.to_string())
}

/// Which Nodes others create a process serves (KWOK's --manage-* flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Managed {
    /// Every Node.
    All,
    /// The one Node of this name.
    Single(String),
    /// The Nodes matching a label selector, an annotation selector, or both.
    Selected {
        labels: Option<String>,
        annotations: Option<String>,
    },
}

impl Cli {
    /// Which Nodes others create the process serves, if any: empty selectors and names
    /// and `--manage-all-nodes=false` are unset, as in KWOK's configuration, so its
    /// command lines mean the same here. Combinations KWOK refuses, and those that
    /// would register or delete nodes of the process's own, are errors.
    pub fn managed(&self) -> Result<Option<Managed>, String> {
        let set = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        let labels = set(&self.manage_nodes_with_label_selector);
        let annotations = set(&self.manage_nodes_with_annotation_selector);
        let single = set(&self.manage_single_node);
        let managed = match (self.manage_all_nodes, single, labels, annotations) {
            (false, None, None, None) => return Ok(None),
            (true, None, None, None) => Managed::All,
            (false, Some(name), None, None) => Managed::Single(name),
            (false, None, labels, annotations) => Managed::Selected {
                labels,
                annotations,
            },
            _ => {
                return Err(
                    "--manage-all-nodes, --manage-single-node and the --manage-nodes-with-* selectors exclude each other (as in KWOK)"
                        .into(),
                );
            }
        };
        for (given, flag) in [
            (self.nodes > 1, "--nodes"),
            (self.adopt, "--adopt"),
            (self.cleanup_on_exit, "--cleanup-on-exit"),
        ] {
            if given {
                return Err(format!(
                    "{flag} is about nodes this process registers; it has no meaning when serving Nodes others create (--manage-*)"
                ));
            }
        }
        Ok(Some(managed))
    }
}

/// `k=v,k2=v2`; keys must be non-empty.
pub fn parse_labels(input: &str) -> Result<Pairs, String> {
    pairs(input)
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(format!("invalid label {item:?}: expected key=value")),
        })
        .collect::<Result<_, _>>()
        .map(Pairs)
}

/// `key=value:Effect,key:Effect`.
pub fn parse_taints(input: &str) -> Result<Taints, String> {
    pairs(input)
        .map(|item| {
            let (key_value, effect) = item
                .rsplit_once(':')
                .ok_or_else(|| format!("invalid taint {item:?}: expected key=value:Effect"))?;
            let effect: TaintEffect = effect.parse().map_err(|_| {
                format!(
                    "invalid taint {item:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
                )
            })?;
            let (key, value) = key_value.split_once('=').unwrap_or((key_value, ""));
            if key.is_empty() {
                return Err(format!("invalid taint {item:?}: empty key"));
            }
            Ok((key.to_string(), value.to_string(), effect))
        })
        .collect::<Result<_, _>>()
        .map(Taints)
}

/// `name=quantity,...` with non-negative quantities.
pub fn parse_resources(input: &str) -> Result<Pairs, String> {
    pairs(input)
        .map(|item| match item.split_once('=') {
            Some((name, quantity)) if !name.is_empty() && is_quantity(quantity) => {
                Ok((name.to_string(), quantity.to_string()))
            }
            Some((name, quantity)) if !name.is_empty() => Err(format!(
                "invalid quantity {quantity:?} for {name}: expected a non-negative quantity such as 8, 500m or 16Gi"
            )),
            _ => Err(format!("invalid resource {item:?}: expected name=quantity")),
        })
        .collect::<Result<_, _>>()
        .map(Pairs)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubemark_command_lines_parse() {
        let cli = Cli::try_parse_from([
            "hollow-kubelet",
            "--morph=kubelet",
            "--name=node-1",
            "--kubeconfig=/kubeconfig/kubelet.kubeconfig",
            "--v=2",
            "--alsologtostderr",
            "--node-labels=cloud.google.com/gke-nodepool=default,kubemark=true",
            "--register-with-taints=kubemark=true:NoSchedule",
            "--max-pods=50",
            "--extended-resources=nvidia.com/gpu=8",
            "--kubelet-read-only-port=0",
            "--use-host-image-service=false",
            "--kube-api-content-type=application/vnd.kubernetes.protobuf",
        ])
        .unwrap();
        assert_eq!(cli.name, "node-1");
        assert_eq!(cli.ignored.verbosity, Some(2));
        assert_eq!(cli.node_labels.0.len(), 2);
        assert_eq!(
            cli.register_with_taints.0,
            vec![("kubemark".into(), "true".into(), TaintEffect::NoSchedule)]
        );
        assert_eq!(
            cli.extended_resources.0,
            vec![("nvidia.com/gpu".into(), "8".into())]
        );
        assert_eq!(cli.ignored.given().len(), 4);
    }

    #[test]
    fn bad_values_are_named() {
        let error = |args: &[&str]| {
            let mut argv = vec!["hollow-kubelet"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).unwrap_err().to_string()
        };
        assert!(error(&["--extended-resources", "foo"]).contains("expected name=quantity"));
        assert!(error(&["--capacity", "cpu=-1"]).contains("invalid quantity \"-1\" for cpu"));
        assert!(error(&["--register-with-taints", "a=b:Sometimes"]).contains("effect must be"));
        assert!(error(&["--node-labels", "novalue"]).contains("expected key=value"));
        assert!(error(&["--nodes", "0"]).contains("--nodes"));
        assert!(
            error(&["--hostname-override", "a_b"])
                .contains("invalid hostname \"a_b\": must be an IP address or a DNS name")
        );
        assert!(error(&["--hostname-override", ""]).contains("invalid hostname \"\""));
        assert!(error(&["--kubelet-version", "v1.20.3"]).contains("older than the oldest"));
        assert!(error(&["--kubelet-version", "latest"]).contains("not a Kubernetes version"));
    }

    #[test]
    fn hostname_overrides_parse() {
        let parse = |value: &str| {
            Cli::try_parse_from(["hollow-kubelet", "--hostname-override", value])
                .unwrap()
                .hostname_override
        };
        assert_eq!(parse("node-ip"), Some(HostnameOverride::NodeIp));
        assert_eq!(
            parse(" Sim-7.Example.com "),
            Some(HostnameOverride::Fixed("sim-7.example.com".into()))
        );
        assert_eq!(
            parse("10.0.3.7"),
            Some(HostnameOverride::Fixed("10.0.3.7".into()))
        );
        assert_eq!(
            Cli::try_parse_from(["hollow-kubelet"])
                .unwrap()
                .hostname_override,
            None
        );
    }
}
