//! Node faults switched at run time by annotations on the Node object, whatever the
//! node's status provider:
//!
//! | annotation | value | effect |
//! |---|---|---|
//! | `hollow.dev/conditions` | `Type=Status[:Reason],...`, e.g. `MemoryPressure=True,Ready=False:KubeletNotReady` | those conditions are reported, replacing the kubelet's own of the same type |
//! | `hollow.dev/heartbeat` | `stopped` | the node renews no Lease and writes no status (it vanishes) until the annotation goes |
//!
//! `kubectl annotate node hollow-0 hollow.dev/conditions=MemoryPressure=True` is seen
//! by the node within a second; removing it restores the kubelet's conditions.

use std::collections::BTreeMap;

use crate::lifecycle::{ConditionStatus, ConditionStep};

use crate::annotations::{CONDITIONS as CONDITIONS_ANNOTATION, HEARTBEAT as HEARTBEAT_ANNOTATION};

/// The faults a Node's annotations ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AnnotatedFaults {
    pub conditions: Vec<ConditionStep>,
    pub heartbeats_stopped: bool,
}

/// Reads the fault annotations; a malformed entry is skipped with a warning.
pub(crate) fn from_annotations(
    node: &str,
    annotations: &BTreeMap<String, String>,
) -> AnnotatedFaults {
    let mut faults = AnnotatedFaults::default();
    if let Some(raw) = annotations.get(CONDITIONS_ANNOTATION) {
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match parse_condition(entry) {
                Some(condition) => faults.conditions.push(condition),
                None => tracing::warn!(
                    node,
                    entry,
                    "ignoring a malformed {CONDITIONS_ANNOTATION} entry: expected Type=True|False|Unknown[:Reason]"
                ),
            }
        }
    }
    if let Some(raw) = annotations.get(HEARTBEAT_ANNOTATION) {
        match raw.trim() {
            "stopped" => faults.heartbeats_stopped = true,
            "" | "running" => {}
            other => tracing::warn!(
                node,
                value = other,
                "ignoring {HEARTBEAT_ANNOTATION}: expected `stopped` or `running`"
            ),
        }
    }
    faults
}

fn parse_condition(entry: &str) -> Option<ConditionStep> {
    let (type_, rest) = entry.split_once('=')?;
    let (status, reason) = match rest.split_once(':') {
        Some((status, reason)) => (status, Some(reason.trim().to_string())),
        None => (rest, None),
    };
    let status = match status.trim() {
        "True" => ConditionStatus::True,
        "False" => ConditionStatus::False,
        "Unknown" => ConditionStatus::Unknown,
        _ => return None,
    };
    let type_ = type_.trim();
    if type_.is_empty() || reason.as_deref() == Some("") {
        return None;
    }
    Some(ConditionStep {
        type_: type_.to_string(),
        status,
        reason,
        message: None,
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_parse_into_faults() {
        let annotations = BTreeMap::from([
            (
                CONDITIONS_ANNOTATION.to_string(),
                "MemoryPressure=True, Ready=False:RuntimeDown,bogus,X=Maybe".to_string(),
            ),
            (HEARTBEAT_ANNOTATION.to_string(), "stopped".to_string()),
        ]);
        let faults = from_annotations("n", &annotations);
        assert!(faults.heartbeats_stopped);
        assert_eq!(faults.conditions.len(), 2);
        assert_eq!(faults.conditions[0].type_, "MemoryPressure");
        assert_eq!(faults.conditions[1].reason.as_deref(), Some("RuntimeDown"));
        assert_eq!(
            from_annotations("n", &BTreeMap::new()),
            AnnotatedFaults::default()
        );
    }
}
