//! [`FakeCadvisor`]: a machine of configurable size with random identities.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Cadvisor, ContainerUsage, FsInfo, MachineInfo};
use crate::error::{Error, Result};

/// A [`Cadvisor`] for a machine of 4 cores, 16 GiB and 100 GiB of disk by default, with
/// fresh random machine, system and boot ids. Clones share state.
#[derive(Clone)]
pub struct FakeCadvisor {
    inner: Arc<Mutex<State>>,
}

struct State {
    machine: MachineInfo,
    root_fs: FsInfo,
    usage: HashMap<(String, String, String), ContainerUsage>,
    fail: bool,
}

impl Default for FakeCadvisor {
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        let machine = MachineInfo {
            num_cores: 4,
            memory_capacity: 16 * GIB,
            machine_id: random_hex(),
            system_uuid: uuid_like(&random_hex()),
            boot_id: uuid_like(&random_hex()),
        };
        Self {
            inner: Arc::new(Mutex::new(State {
                machine,
                root_fs: FsInfo {
                    capacity: 100 * GIB,
                    available: 90 * GIB,
                },
                usage: HashMap::new(),
                fail: false,
            })),
        }
    }
}

impl std::fmt::Debug for FakeCadvisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCadvisor")
            .field("machine", &self.lock().machine)
            .finish()
    }
}

impl FakeCadvisor {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the core count and memory.
    pub fn set_machine_size(&self, num_cores: u32, memory_capacity: u64) {
        let mut state = self.lock();
        state.machine.num_cores = num_cores;
        state.machine.memory_capacity = memory_capacity;
    }

    /// Sets the usage reported for one container.
    pub fn set_container_usage(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        usage: ContainerUsage,
    ) {
        self.lock()
            .usage
            .insert((namespace.into(), pod.into(), container.into()), usage);
    }

    /// Makes every call fail with [`Error::Injected`] until called with `false`.
    pub fn set_failing(&self, failing: bool) {
        self.lock().fail = failing;
    }

    fn check(&self) -> Result<MutexGuard<'_, State>> {
        let state = self.lock();
        if state.fail {
            return Err(Error::Injected("cadvisor".into()));
        }
        Ok(state)
    }
}

#[async_trait]
impl Cadvisor for FakeCadvisor {
    async fn machine_info(&self) -> Result<MachineInfo> {
        Ok(self.check()?.machine.clone())
    }

    async fn root_fs_info(&self) -> Result<FsInfo> {
        Ok(self.check()?.root_fs)
    }

    async fn container_usage(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerUsage> {
        let state = self.check()?;
        let key = (
            namespace.to_string(),
            pod.to_string(),
            container.to_string(),
        );
        state.usage.get(&key).copied().ok_or_else(|| {
            Error::not_found("container usage", format!("{namespace}/{pod}/{container}"))
        })
    }
}

/// 32 random hex digits.
pub(crate) fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out
}

/// 32 hex digits as a UUID: 8-4-4-4-12.
fn uuid_like(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identities_differ_and_failures_are_scripted() {
        let a = FakeCadvisor::default();
        let b = FakeCadvisor::default();
        let (ia, ib) = (
            a.machine_info().await.unwrap(),
            b.machine_info().await.unwrap(),
        );
        assert_ne!(ia.machine_id, ib.machine_id);
        assert_eq!(ia.system_uuid.len(), 36);
        a.set_failing(true);
        assert!(matches!(a.machine_info().await, Err(Error::Injected(_))));
        let handle = a.clone();
        handle.set_failing(false);
        assert!(a.root_fs_info().await.is_ok());
    }
}
