//! The files and ports of one environment.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::pki::{CertAndKey, Pki};
use super::{Error, Result, io, kubeconfig, ports, write_private};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The Service IP range the API server and controller manager are given.
pub(crate) const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The range the controller manager allocates node pod CIDRs from (/24 each).
pub(crate) const CLUSTER_CIDR: &str = "10.128.0.0/9";

/// The files of one environment.
pub(crate) struct Layout {
    pub(crate) pki: PathBuf,
    pub(crate) logs: PathBuf,
    pub(crate) etcd_data: PathBuf,
}

impl Layout {
    pub(crate) fn new(dir: &Path) -> Result<Self> {
        let layout = Self {
            pki: dir.join("pki"),
            logs: dir.join("logs"),
            etcd_data: dir.join("etcd-data"),
        };
        for sub in [&layout.pki, &layout.logs] {
            std::fs::create_dir_all(sub).map_err(|source| Error::Io {
                context: format!("cannot create {}", sub.display()),
                source,
            })?;
        }
        Ok(layout)
    }

    pub(crate) fn pki_file(&self, name: &str) -> String {
        self.pki.join(name).display().to_string()
    }

    pub(crate) fn write_pki(&self, pki: &Pki, server_url: &str) -> Result<()> {
        let ca = pki.ca_pem();
        let write =
            |name: &str, contents: &str| write_private(&self.pki.join(name), contents.as_bytes());
        let write_pair = |name: &str, pair: &CertAndKey| -> Result<()> {
            write(&format!("{name}.crt"), &pair.cert_pem)?;
            write(&format!("{name}.key"), &pair.key_pem)
        };
        write("ca.crt", &ca)?;
        write("ca.key", &pki.ca_key_pem())?;
        write("sa.key", &pki.service_account_key_pem())?;
        write("sa.pub", &pki.service_account_public_pem())?;
        let serving = pki.serving_cert(
            "kube-apiserver",
            &[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            &[LOOPBACK, IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1))],
        )?;
        write_pair("apiserver", &serving)?;
        write_pair(
            "apiserver-kubelet-client",
            &pki.client_cert("kube-apiserver-kubelet-client", &["system:masters"])?,
        )?;
        write_pair(
            "front-proxy-client",
            &pki.client_cert("front-proxy-client", &[])?,
        )?;
        for (file, user) in [
            (
                "controller-manager.kubeconfig",
                "system:kube-controller-manager",
            ),
            ("scheduler.kubeconfig", "system:kube-scheduler"),
            ("metrics-server.kubeconfig", "system:metrics-server"),
        ] {
            // metrics-server reads kubelets and delegates authentication: simplest as an
            // administrator in a throwaway cluster.
            let groups: &[&str] = if user == "system:metrics-server" {
                &["system:masters"]
            } else {
                &[]
            };
            let identity = pki.client_cert(user, groups)?;
            let document = kubeconfig::kubeconfig_json(server_url, &ca, user, &identity);
            kubeconfig::write(&self.pki.join(file), &document)?;
        }
        Ok(())
    }
}

/// The ports of one environment, reserved for its lifetime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub(crate) etcd_client: u16,
    pub(crate) etcd_peer: u16,
    pub(crate) apiserver: u16,
    pub(crate) controller_manager: u16,
    pub(crate) scheduler: u16,
    pub(crate) metrics_server: u16,
}

impl Ports {
    pub(crate) fn allocate() -> Result<Self> {
        let next = || ports::reserve_free_port().map_err(io("cannot find a free port"));
        Ok(Self {
            etcd_client: next()?,
            etcd_peer: next()?,
            apiserver: next()?,
            controller_manager: next()?,
            scheduler: next()?,
            metrics_server: next()?,
        })
    }

    pub(crate) fn all(&self) -> [u16; 6] {
        [
            self.etcd_client,
            self.etcd_peer,
            self.apiserver,
            self.controller_manager,
            self.scheduler,
            self.metrics_server,
        ]
    }
}
