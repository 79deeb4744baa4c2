//! Unit tests of `config`.

use super::*;
use crate::quantity::is_quantity;

#[test]
fn quantities_are_checked() {
    for good in ["1", "0.5", "100m", "16Gi", "1e3", "110", "2.5G"] {
        assert!(is_quantity(good), "{good}");
    }
    for bad in ["", "-1", "abc", "1x", "1..2", ".", "Gi"] {
        assert!(!is_quantity(bad), "{bad}");
    }
    let error = HollowNode::builder("n")
        .capacity("cpu", "-1")
        .build()
        .err()
        .unwrap();
    assert_eq!(
        error,
        ConfigError::InvalidQuantity {
            resource: "cpu".into(),
            quantity: "-1".into()
        }
    );
}

#[test]
fn names_and_taints_are_checked() {
    assert!(is_dns_subdomain("hollow-node-0.zone-a"));
    for bad in ["", "Upper", "under_score", "-start", "end-", "a..b"] {
        assert!(!is_dns_subdomain(bad), "{bad}");
    }
    assert_eq!(
        "Sometimes".parse::<TaintEffect>(),
        Err(ConfigError::InvalidTaintEffect("Sometimes".into()))
    );
}

#[test]
fn defaults_are_the_kubelets() {
    let node = HollowNode::builder("n").build().unwrap();
    assert_eq!(node.config.registration.provider_id, "hollow://n");
    assert_eq!(node.config.kubelet_port, 10250);
    assert_eq!(node.config.timing.lease_duration, Duration::from_secs(40));
    assert_eq!(node.config.addresses, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    assert_eq!(node.config.hostname, None);
}

#[test]
fn hostnames_are_checked_and_an_ip_one_is_the_default_address() {
    let error = HollowNode::builder("n")
        .hostname("a_b")
        .build()
        .err()
        .unwrap();
    assert_eq!(error, ConfigError::InvalidHostname("a_b".into()));
    assert!(
        error
            .to_string()
            .contains("must be an IP address or a DNS name")
    );
    for bad in ["", "Upper", "10.0.0.1:80", "-a", "a b"] {
        assert!(check_hostname(bad).is_err(), "{bad}");
    }

    let ip: IpAddr = "10.0.3.7".parse().unwrap();
    let node = HollowNode::builder("n")
        .hostname("10.0.3.7")
        .build()
        .unwrap();
    assert_eq!(node.config.hostname.as_deref(), Some("10.0.3.7"));
    assert_eq!(node.config.addresses, vec![ip]);
    // A node IP given stays the InternalIP, as the kubelet's --node-ip does.
    let node = HollowNode::builder("n")
        .address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .hostname("10.0.3.7")
        .build()
        .unwrap();
    assert_eq!(node.config.addresses, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    // A name leaves the default address; the node name is kept as no hostname.
    let node = HollowNode::builder("n")
        .hostname("n.example")
        .build()
        .unwrap();
    assert_eq!(node.config.addresses, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let node = HollowNode::builder("n").hostname("n").build().unwrap();
    assert_eq!(node.config.hostname, None);
}
