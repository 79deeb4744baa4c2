//! Machine information and usage, as cAdvisor gives them to a kubelet.
//!
//! ```
//! use hollow_core::cadvisor::{Cadvisor, FakeCadvisor};
//!
//! # tokio_test::block_on(async {
//! let fake = FakeCadvisor::default();
//! let info = fake.machine_info().await?;
//! assert_eq!(info.num_cores, 4);
//! assert_eq!(info.machine_id.len(), 32);
//! # Ok::<(), hollow_core::Error>(())
//! # }).unwrap();
//! ```

mod fake;
mod usage;

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::{Error, Result};

pub use fake::FakeCadvisor;

/// The machine a node claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// Logical CPUs.
    pub num_cores: u32,
    /// Memory in bytes.
    pub memory_capacity: u64,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// The system UUID.
    pub system_uuid: String,
    /// The boot id (changes on reboot).
    pub boot_id: String,
}

/// A filesystem's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsInfo {
    /// Capacity in bytes.
    pub capacity: u64,
    /// Available bytes.
    pub available: u64,
}

/// Resource usage of one container at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    /// CPU in nanocores, now.
    pub cpu_nano_cores: u64,
    /// CPU time used since the container started, in nanoseconds (never decreases).
    pub cpu_usage_core_nano_seconds: u64,
    /// Working-set memory in bytes.
    pub memory_working_set_bytes: u64,
}

/// The container whose usage the stats endpoints ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
    /// When the current instance of the container started.
    pub started_at: Option<SystemTime>,
    /// Its CPU request in millicores (0 without one).
    pub cpu_request_millis: u64,
    /// Its memory request in bytes (0 without one).
    pub memory_request_bytes: u64,
    /// The pod's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Machine info and usage samples. Object safe: store it as `Arc<dyn Cadvisor>`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Cadvisor: Send + Sync + 'static {
    /// Cores, memory and the machine's identities.
    async fn machine_info(&self) -> Result<MachineInfo>;

    /// The root filesystem (the node's ephemeral storage).
    async fn root_fs_info(&self) -> Result<FsInfo>;

    /// The usage of a running container, for the stats endpoints.
    async fn container_usage(&self, _container: &ContainerRef) -> Result<ContainerUsage> {
        Err(Error::Unsupported("container usage"))
    }
}
