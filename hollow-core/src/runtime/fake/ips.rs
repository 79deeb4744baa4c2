//! Pod IPs, allocated from the pod CIDR: `.0` is the network, `.1` the gateway and the
//! last address the broadcast address, so pods get the others.

use std::net::Ipv4Addr;

use super::state::State;
use crate::error::{Error, Result};

/// Parses an IPv4 CIDR with a prefix of 8 to 30 bits (a pod CIDR with room for pods).
pub(super) fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let invalid = || Error::InvalidInput(format!("pod CIDR {cidr:?} is not an IPv4 CIDR"));
    let (addr, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    if !(8..=30).contains(&prefix) {
        return Err(invalid());
    }
    Ok((addr, prefix))
}

/// The first address of a CIDR, and how many addresses it has.
fn network_range((network, prefix): (Ipv4Addr, u8)) -> (u32, u32) {
    let size = 1u32 << (32 - prefix);
    let base = u32::from(network) & !(size - 1);
    (base, size)
}

/// Switches to a new pod CIDR; the IPs of existing sandboxes stay taken.
pub(super) fn set_pod_cidr(state: &mut State, cidr: (Ipv4Addr, u8)) {
    if state.pod_cidr == Some(cidr) {
        return;
    }
    state.pod_cidr = Some(cidr);
    state.used_ips.clear();
    let (base, _) = network_range(cidr);
    let ips: Vec<Ipv4Addr> = state.sandboxes.values().filter_map(|s| s.ip).collect();
    for ip in ips {
        state.used_ips.insert(u32::from(ip).wrapping_sub(base));
    }
}

/// Takes the lowest free pod IP; an error when no pod CIDR is set or none is free.
pub(super) fn allocate_ip(state: &mut State) -> Result<Ipv4Addr> {
    let cidr = state
        .pod_cidr
        .ok_or_else(|| Error::InvalidInput("no pod CIDR set: the network is not ready".into()))?;
    let (base, size) = network_range(cidr);
    let offset = (2..size - 1)
        .find(|offset| !state.used_ips.contains(offset))
        .ok_or_else(|| Error::InvalidInput("the pod CIDR has no free address".into()))?;
    state.used_ips.insert(offset);
    Ok(Ipv4Addr::from(base + offset))
}

/// Gives a pod IP back.
pub(super) fn release_ip(state: &mut State, ip: Ipv4Addr) {
    if let Some(cidr) = state.pod_cidr {
        let (base, _) = network_range(cidr);
        state.used_ips.remove(&u32::from(ip).wrapping_sub(base));
    }
}
