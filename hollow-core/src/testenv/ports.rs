//! Free loopback ports, never handed out twice at once within a process.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::OnceLock;

fn reserved() -> &'static Mutex<HashSet<u16>> {
    static RESERVED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    RESERVED.get_or_init(Default::default)
}

/// A port that is free on 127.0.0.1 now and not reserved by another environment of this
/// process; it stays reserved until [`release`].
pub(crate) fn reserve_free_port() -> std::io::Result<u16> {
    const ATTEMPTS: usize = 64;
    let mut reserved = reserved().lock();
    for _ in 0..ATTEMPTS {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        if reserved.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port after {ATTEMPTS} attempts"),
    ))
}

/// Returns ports to the pool.
pub(crate) fn release(ports: &[u16]) {
    let mut reserved = reserved().lock();
    for port in ports {
        reserved.remove(port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_until_released() {
        let ports: Vec<u16> = (0..20).map(|_| reserve_free_port().unwrap()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        release(&ports);
        assert!(ports.iter().all(|p| !reserved().lock().contains(p)));
    }
}
