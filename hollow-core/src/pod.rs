//! The pod vocabulary the engine, the runtime and lifecycles share.
//!
//! ```
//! use hollow_core::pod::ContainerKind;
//!
//! let kind: ContainerKind = serde_json::from_str("\"sidecar\"").unwrap();
//! assert_eq!(kind, ContainerKind::Sidecar);
//! assert_eq!(ContainerKind::default(), ContainerKind::Regular);
//! ```

/// Which part of a pod a container plays (`init`, `sidecar` or `regular` in files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerKind {
    /// An init container: runs to completion before the next one starts.
    Init,
    /// A restartable init container (`restartPolicy: Always`): a sidecar.
    Sidecar,
    /// A regular container.
    #[default]
    Regular,
}
