//! The effect of a taint the node registers with.

use std::fmt;
use std::str::FromStr;

use super::ConfigError;

/// What a taint does to pods that do not tolerate it (`--register-with-taints
/// key=value:Effect`).
///
/// ```
/// use hollow_core::node::TaintEffect;
///
/// let effect: TaintEffect = "NoExecute".parse()?;
/// assert_eq!(effect, TaintEffect::NoExecute);
/// assert_eq!(effect.to_string(), "NoExecute");
/// assert!("Sometimes".parse::<TaintEffect>().is_err());
/// # Ok::<(), hollow_core::node::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaintEffect {
    /// New pods that do not tolerate it are not scheduled to the node.
    NoSchedule,
    /// The scheduler avoids the node for pods that do not tolerate it.
    PreferNoSchedule,
    /// Pods that do not tolerate it are evicted, and not scheduled.
    NoExecute,
}

impl TaintEffect {
    /// The effect as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

impl fmt::Display for TaintEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaintEffect {
    type Err = ConfigError;

    fn from_str(effect: &str) -> Result<Self, ConfigError> {
        [
            TaintEffect::NoSchedule,
            TaintEffect::PreferNoSchedule,
            TaintEffect::NoExecute,
        ]
        .into_iter()
        .find(|known| known.as_str() == effect)
        .ok_or_else(|| ConfigError::InvalidTaintEffect(effect.to_string()))
    }
}
