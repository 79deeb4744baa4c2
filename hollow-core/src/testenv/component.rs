//! The components of the control plane and their command lines.

use std::fmt;
use std::time::Duration;

use super::layout::{CLUSTER_CIDR, Layout, Ports, SERVICE_CIDR};

/// One process of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// etcd, the store.
    Etcd,
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager.
    ControllerManager,
    /// kube-scheduler.
    Scheduler,
    /// metrics-server, registered as the `metrics.k8s.io` API (off by default; see
    /// [`TestEnvBuilder::metrics_server`](super::TestEnvBuilder::metrics_server)).
    MetricsServer,
}

impl Component {
    /// The core components, in start order (metrics-server, optional, comes last).
    pub const ALL: [Component; 4] = [
        Component::Etcd,
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ];

    /// The name of the component's binary.
    pub fn binary_name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
            Component::MetricsServer => "metrics-server",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary_name())
    }
}

pub(crate) fn etcd_args(layout: &Layout, ports: &Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=hollow".into(),
        format!("--data-dir={}", layout.etcd_data.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=hollow={peer}"),
        "--unsafe-no-fsync=true".into(),
        "--quota-backend-bytes=8589934592".into(),
        "--log-level=warn".into(),
    ]
}

pub(crate) fn apiserver_args(
    layout: &Layout,
    ports: &Ports,
    kubelet_preferred_address_types: &[String],
) -> Vec<String> {
    let f = |name: &str| layout.pki_file(name);
    vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        format!("--secure-port={}", ports.apiserver),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--tls-cert-file={}", f("apiserver.crt")),
        format!("--tls-private-key-file={}", f("apiserver.key")),
        format!("--client-ca-file={}", f("ca.crt")),
        format!("--service-account-key-file={}", f("sa.pub")),
        format!("--service-account-signing-key-file={}", f("sa.key")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        // Kubelets' TLS bootstrap (TestEnv::bootstrap_kubeconfig).
        "--enable-bootstrap-token-auth".into(),
        "--allow-privileged=true".into(),
        format!(
            "--kubelet-client-certificate={}",
            f("apiserver-kubelet-client.crt")
        ),
        format!("--kubelet-client-key={}", f("apiserver-kubelet-client.key")),
        format!(
            "--kubelet-preferred-address-types={}",
            kubelet_preferred_address_types.join(",")
        ),
        format!("--requestheader-client-ca-file={}", f("ca.crt")),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!("--proxy-client-cert-file={}", f("front-proxy-client.crt")),
        format!("--proxy-client-key-file={}", f("front-proxy-client.key")),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}

pub(crate) fn controller_manager_args(
    layout: &Layout,
    ports: &Ports,
    grace: Duration,
) -> Vec<String> {
    let f = |name: &str| layout.pki_file(name);
    let kubeconfig = f("controller-manager.kubeconfig");
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--secure-port={}", ports.controller_manager),
        "--bind-address=127.0.0.1".into(),
        "--leader-elect=false".into(),
        "--use-service-account-credentials=true".into(),
        format!("--service-account-private-key-file={}", f("sa.key")),
        format!("--root-ca-file={}", f("ca.crt")),
        format!("--cluster-signing-cert-file={}", f("ca.crt")),
        format!("--cluster-signing-key-file={}", f("ca.key")),
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={CLUSTER_CIDR}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--cluster-name=hollow".into(),
        format!("--node-monitor-grace-period={}s", grace.as_secs().max(1)),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}

pub(crate) fn metrics_server_args(layout: &Layout, ports: &Ports) -> Vec<String> {
    let kubeconfig = layout.pki_file("metrics-server.kubeconfig");
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--secure-port={}", ports.metrics_server),
        "--bind-address=127.0.0.1".into(),
        format!("--cert-dir={}", layout.pki_file("metrics-server")),
        // Kubelets serve self-signed certificates, as hollow's do by default.
        "--kubelet-insecure-tls".into(),
        "--kubelet-preferred-address-types=InternalIP".into(),
        "--kubelet-use-node-status-port".into(),
        "--metric-resolution=15s".into(),
        "--kubelet-request-timeout=5s".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}

pub(crate) fn scheduler_args(layout: &Layout, ports: &Ports) -> Vec<String> {
    let kubeconfig = layout.pki_file("scheduler.kubeconfig");
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--secure-port={}", ports.scheduler),
        "--bind-address=127.0.0.1".into(),
        "--leader-elect=false".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}
