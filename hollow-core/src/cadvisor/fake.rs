//! [`FakeCadvisor`]: a machine of configurable size with random identities.

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::usage::{Utilisation, modelled};
use super::{Cadvisor, ContainerRef, ContainerUsage, FsInfo, MachineInfo};
use crate::error::{Error, Result};

/// A [`Cadvisor`] for a machine of 4 cores, 16 GiB and 100 GiB of disk by default, with
/// fresh random machine, system and boot ids. Clones share state.
///
/// Containers use half their CPU and memory requests (10m and 32 MiB without one), with
/// a ±10 % wave of one minute; [`FakeCadvisor::set_cpu_utilisation`] changes the share,
/// [`FakeCadvisor::set_container_usage`] fixes one container, and the pod annotations
/// [`CPU_USAGE_ANNOTATION`] and [`MEMORY_USAGE_ANNOTATION`] give absolute usage.
/// Cumulative CPU is the exact integral of the rate, so it never decreases.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use hollow_core::cadvisor::{Cadvisor, ContainerRef, FakeCadvisor};
///
/// # tokio_test::block_on(async {
/// let fake = FakeCadvisor::default();
/// let web = ContainerRef {
///     started_at: Some(SystemTime::now() - Duration::from_secs(60)),
///     cpu_request_millis: 200,
///     ..Default::default()
/// };
/// let usage = fake.container_usage(&web).await?;
/// assert!((90_000_000..=110_000_000).contains(&usage.cpu_nano_cores)); // ~100m
/// fake.set_cpu_utilisation(2.0);
/// let busier = fake.container_usage(&web).await?;
/// assert!(busier.cpu_nano_cores > 350_000_000); // ~400m
/// assert!(busier.cpu_usage_core_nano_seconds >= usage.cpu_usage_core_nano_seconds);
/// # Ok::<(), hollow_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct FakeCadvisor {
    inner: Arc<Mutex<State>>,
}

struct State {
    machine: MachineInfo,
    root_fs: FsInfo,
    utilisation: Utilisation,
    /// Fixed usage by (namespace, pod, container), from the time it was set.
    fixed: HashMap<(String, String, String), (SystemTime, ContainerUsage)>,
    fail: bool,
}

use crate::annotations::{
    CPU_USAGE as CPU_USAGE_ANNOTATION, MEMORY_USAGE as MEMORY_USAGE_ANNOTATION,
};

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
                utilisation: Utilisation::default(),
                fixed: HashMap::new(),
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
        self.inner.lock()
    }

    /// Sets the core count and memory.
    pub fn set_machine_size(&self, num_cores: u32, memory_capacity: u64) {
        let mut state = self.lock();
        state.machine.num_cores = num_cores;
        state.machine.memory_capacity = memory_capacity;
    }

    /// From now on, containers use `share` of their CPU and memory requests (0.5 at
    /// first): raise it past an HPA's target and the HPA scales out. Cumulative CPU
    /// stays monotonic across changes.
    pub fn set_cpu_utilisation(&self, share: f64) {
        self.lock().utilisation.set(SystemTime::now(), share);
    }

    /// From now on, this container uses `cpu_nano_cores` and `memory_bytes`, whatever
    /// its requests or annotations.
    pub fn set_container_usage(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        cpu_nano_cores: u64,
        memory_bytes: u64,
    ) {
        let usage = ContainerUsage {
            cpu_nano_cores,
            cpu_usage_core_nano_seconds: 0,
            memory_working_set_bytes: memory_bytes,
        };
        self.lock().fixed.insert(
            (namespace.into(), pod.into(), container.into()),
            (SystemTime::now(), usage),
        );
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

    async fn container_usage(&self, container: &ContainerRef) -> Result<ContainerUsage> {
        let state = self.check()?;
        let now = SystemTime::now();
        let model = |at| {
            modelled(
                container,
                &state.utilisation,
                at,
                CPU_USAGE_ANNOTATION,
                MEMORY_USAGE_ANNOTATION,
            )
        };
        let key = (
            container.namespace.clone(),
            container.pod.clone(),
            container.container.clone(),
        );
        Ok(match state.fixed.get(&key) {
            None => model(now),
            Some((since, fixed)) => {
                // The model's total until the usage was fixed, then the fixed rate.
                let since = (*since).max(container.started_at.unwrap_or(*since));
                let before = model(since.min(now)).cpu_usage_core_nano_seconds;
                let after = now.duration_since(since).unwrap_or_default().as_secs_f64()
                    * fixed.cpu_nano_cores as f64;
                ContainerUsage {
                    cpu_usage_core_nano_seconds: before.saturating_add(after as u64),
                    ..*fixed
                }
            }
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
