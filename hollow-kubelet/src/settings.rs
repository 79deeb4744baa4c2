//! What every node of the process gets from the flags, and each node's address.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use hollow_core::lifecycle::Lifecycle;
use hollow_core::node::{HollowNodeBuilder, NodeTiming, TaintEffect};

use crate::cli::{Cli, HostnameOverride};

/// What every node of the process gets from the flags.
#[derive(Clone)]
pub(crate) struct NodeSettings {
    labels: Vec<(String, String)>,
    taints: Vec<(String, String, TaintEffect)>,
    resources: Vec<(String, String)>,
    max_pods: u32,
    kubelet_port: u16,
    adopt: bool,
    lifecycle: Arc<Lifecycle>,
    /// The kubelet port by node index (one entry: shared by all).
    pub(crate) kubelet_ports: Arc<Vec<u16>>,
    node_ip: Option<IpAddr>,
    hostname: Option<HostnameOverride>,
    record_events: bool,
    traffic: hollow_core::node::TrafficProfile,
    pod_cidr: Option<String>,
    lease_duration: Duration,
    kubelet_version: Option<String>,
}

impl From<&Cli> for NodeSettings {
    fn from(cli: &Cli) -> Self {
        Self {
            labels: cli.node_labels.0.clone(),
            taints: cli.register_with_taints.0.clone(),
            resources: cli
                .capacity
                .0
                .iter()
                .chain(&cli.extended_resources.0)
                .cloned()
                .collect(),
            max_pods: cli.max_pods,
            kubelet_port: cli.kubelet_port,
            adopt: cli.adopt,
            lifecycle: match cli.lifecycle_seed {
                Some(seed) => Arc::new((*cli.lifecycle).clone().seed(seed)),
                None => cli.lifecycle.clone(),
            },
            kubelet_ports: Arc::new(vec![cli.kubelet_port]),
            node_ip: cli.node_ip,
            hostname: cli.hostname_override.clone(),
            record_events: cli.record_events,
            traffic: cli.traffic_profile,
            pod_cidr: cli.cidr.clone(),
            lease_duration: Duration::from_secs(cli.node_lease_duration_seconds),
            kubelet_version: cli.kubelet_version.clone(),
        }
    }
}

impl NodeSettings {
    pub(crate) fn apply(&self, mut node: HollowNodeBuilder, index: usize) -> HollowNodeBuilder {
        for (key, value) in &self.labels {
            node = node.label(key, value);
        }
        for (key, value, effect) in &self.taints {
            node = node.taint(key, value, *effect);
        }
        node = node.max_pods(self.max_pods);
        for (name, quantity) in &self.resources {
            node = node.capacity(name, quantity);
        }
        let port = match self.kubelet_ports.as_slice() {
            [shared] => *shared,
            // Served Nodes, each on its own port from --kubelet-port.
            [] => {
                u16::try_from(usize::from(self.kubelet_port) + index).unwrap_or(self.kubelet_port)
            }
            ports => ports.get(index).copied().unwrap_or(self.kubelet_port),
        };
        let (address, hostname) = self.address_and_hostname(index);
        if let Some(hostname) = hostname {
            node = node.hostname(hostname);
        }
        if let Some(cidr) = &self.pod_cidr {
            node = node.pod_cidr(cidr);
        }
        if let Some(version) = &self.kubelet_version {
            node = node.kubelet_version(version);
        }
        if self.lease_duration != NodeTiming::default().lease_duration {
            // Renewed at a quarter of its duration, as the kubelet renews its Lease.
            node = node.timing(NodeTiming {
                lease_duration: self.lease_duration,
                lease_renew: self.lease_duration / 4,
                ..NodeTiming::default()
            });
        }
        node.kubelet_port(port)
            .events(self.record_events)
            .traffic(self.traffic)
            .adopt(self.adopt)
            .lifecycle(self.lifecycle.clone())
            .address(address)
    }

    /// Node `index`'s InternalIP, and its hostname where not its name. As the kubelet's
    /// NodeAddress setter (pkg/kubelet/nodestatus/setters.go) picks the InternalIP: the
    /// node IP, else a --hostname-override that is an IP address (here, else the
    /// node's own loopback address).
    fn address_and_hostname(&self, index: usize) -> (IpAddr, Option<String>) {
        let fixed = match &self.hostname {
            Some(HostnameOverride::Fixed(hostname)) => Some(hostname),
            _ => None,
        };
        let address = self
            .node_ip
            .or_else(|| fixed.and_then(|hostname| hostname.parse().ok()))
            .unwrap_or_else(|| loopback_address(index));
        let hostname = match &self.hostname {
            None => None,
            Some(HostnameOverride::NodeIp) => Some(address.to_string()),
            Some(HostnameOverride::Fixed(hostname)) => Some(hostname.clone()),
        };
        (address, hostname)
    }
}

/// Node `index`'s own loopback address: 127.1.0.1, 127.1.0.2, ...
pub(crate) fn loopback_address(index: usize) -> IpAddr {
    let n = u32::try_from(index).unwrap_or(u32::MAX - 1) + 1;
    let [_, b, c, d] = n.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(127, 1 + b, c, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn each_node_gets_its_address_and_hostname_from_the_flags() {
        let settings = |args: &[&str]| {
            let mut argv = vec!["hollow-kubelet"];
            argv.extend_from_slice(args);
            NodeSettings::from(&Cli::parse_from(argv))
        };
        let published = |args: &[&str], index| {
            let (address, hostname) = settings(args).address_and_hostname(index);
            (address.to_string(), hostname)
        };
        assert_eq!(published(&[], 1), ("127.1.0.2".into(), None));
        let node_ip = ["--hostname-override=node-ip"];
        assert_eq!(
            published(&node_ip, 1),
            ("127.1.0.2".into(), Some("127.1.0.2".into()))
        );
        let pod_ip = ["--hostname-override=node-ip", "--node-ip=10.0.0.5"];
        assert_eq!(
            published(&pod_ip, 1),
            ("10.0.0.5".into(), Some("10.0.0.5".into()))
        );
        // As the kubelet: an IP address as hostname is the InternalIP without --node-ip.
        let fixed_ip = ["--hostname-override=10.0.0.7"];
        assert_eq!(
            published(&fixed_ip, 0),
            ("10.0.0.7".into(), Some("10.0.0.7".into()))
        );
        let both = ["--hostname-override=10.0.0.7", "--node-ip=10.0.0.5"];
        assert_eq!(
            published(&both, 0),
            ("10.0.0.5".into(), Some("10.0.0.7".into()))
        );
        let name = ["--hostname-override=sim.example.com"];
        assert_eq!(
            published(&name, 0),
            ("127.1.0.1".into(), Some("sim.example.com".into()))
        );
    }

    #[test]
    fn loopback_addresses_are_distinct() {
        assert_eq!(loopback_address(0).to_string(), "127.1.0.1");
        assert_eq!(loopback_address(255).to_string(), "127.1.1.0");
        assert_eq!(loopback_address(70_000).to_string(), "127.2.17.113");
    }
}
