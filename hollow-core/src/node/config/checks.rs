//! The checks a node's configuration passes: names, hostnames, quantities.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::ConfigError;
#[cfg(doc)]
use super::HollowNodeBuilder;
use crate::quantity::is_quantity;

/// Checks a node's [`hostname`](HollowNodeBuilder::hostname): an IP address or a DNS
/// subdomain (RFC 1123).
///
/// ```
/// use hollow_core::node::check_hostname;
///
/// assert!(check_hostname("10.0.3.7").is_ok());
/// assert!(check_hostname("fd00::7").is_ok());
/// assert!(check_hostname("node-7.sim.example.com").is_ok());
/// assert!(check_hostname("Node_7").is_err());
/// ```
pub fn check_hostname(hostname: &str) -> Result<(), ConfigError> {
    if hostname.parse::<IpAddr>().is_ok() || is_dns_subdomain(hostname) {
        Ok(())
    } else {
        Err(ConfigError::InvalidHostname(hostname.into()))
    }
}

/// Whether `name` is a valid DNS subdomain (RFC 1123), as Node names must be.
pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

pub(super) fn quantities(
    raw: BTreeMap<String, String>,
) -> Result<BTreeMap<String, Quantity>, ConfigError> {
    raw.into_iter()
        .map(|(resource, quantity)| {
            if is_quantity(&quantity) {
                Ok((resource, Quantity(quantity)))
            } else {
                Err(ConfigError::InvalidQuantity { resource, quantity })
            }
        })
        .collect()
}
