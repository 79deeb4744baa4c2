//! Fuzzing of the Node fault annotations (`hollow.dev/conditions`,
//! `hollow.dev/heartbeat`): whatever their values, reading them does not panic, every
//! well-formed condition entry is kept, in order, and every malformed one is skipped.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::fuzz_support::{corpus, fuzz};

/// One entry of `hollow.dev/conditions`, and what it should read as.
#[derive(Debug, Clone)]
struct Entry {
    text: String,
    expected: Option<ConditionStep>,
}

fn space() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

/// Text without the separators the entry grammar splits on.
fn word(extra: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z][A-Za-z0-9.-]{0,10}",
        1 => "[^,=:]{1,8}",
    ]
    .prop_map(move |w| w.replace(|c: char| extra.contains(c), "_"))
    .prop_filter("something left once trimmed", |w| !w.trim().is_empty())
}

fn status() -> impl Strategy<Value = ConditionStatus> {
    prop::sample::select(
        &[
            ConditionStatus::True,
            ConditionStatus::False,
            ConditionStatus::Unknown,
        ][..],
    )
}

fn valid_entry() -> impl Strategy<Value = Entry> {
    (
        space(),
        // A type may hold `:` (the reason is split from the status, after `=`).
        word(",="),
        space(),
        status(),
        space(),
        // A reason may hold `:` and `=`, not `,`.
        prop::option::of(prop_oneof![
            word(","),
            "[^,]{1,8}".prop_filter("non-blank", |r| !r.trim().is_empty())
        ]),
    )
        .prop_map(|(before, type_, around, status, after, reason)| {
            let mut text = format!("{before}{type_}{around}={around}{}{after}", status.as_str());
            if let Some(reason) = &reason {
                text.push_str(&format!(":{reason}{after}"));
            }
            Entry {
                text,
                expected: Some(ConditionStep {
                    type_: type_.trim().to_string(),
                    status,
                    reason: reason.map(|r| r.trim().to_string()),
                    message: None,
                }),
            }
        })
}

fn malformed_entry() -> impl Strategy<Value = Entry> {
    let status_text = || status().prop_map(|s| s.as_str().to_string());
    prop_oneof![
        // No `=` at all.
        word(",="),
        // No type.
        (space(), status_text()).prop_map(|(s, status)| format!("{s}={status}")),
        // A status that is not one.
        (
            word(",="),
            prop_oneof![
                prop::sample::select(&["Maybe", "true", "TRUE", "", "True True", "1"][..])
                    .prop_map(str::to_string),
                word(",:"),
            ]
            .prop_filter("not a status", |s| {
                !matches!(s.trim(), "True" | "False" | "Unknown")
            }),
        )
            .prop_map(|(t, s)| format!("{t}={s}")),
        // An empty reason.
        (word(",="), status_text(), space()).prop_map(|(t, s, sp)| format!("{t}={s}:{sp}")),
    ]
    .prop_map(|text| Entry {
        text,
        expected: None,
    })
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&[",", ", ", ",,", " , ", ",\t"][..])
}

/// A `hollow.dev/conditions` value and the conditions it should give.
fn conditions() -> impl Strategy<Value = (String, Vec<ConditionStep>)> {
    prop::collection::vec(
        (
            prop_oneof![3 => valid_entry(), 2 => malformed_entry()],
            separator(),
        ),
        0..6,
    )
    .prop_map(|entries| {
        let mut text = String::new();
        let mut expected = Vec::new();
        for (entry, separator) in entries {
            text.push_str(&entry.text);
            text.push_str(separator);
            expected.extend(entry.expected);
        }
        (text, expected)
    })
}

fn heartbeat() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "stopped",
                " stopped\n",
                "running",
                "",
                "Stopped",
                "stop",
                "stopped,"
            ][..]
        )
        .prop_map(str::to_string),
        any::<String>(),
    ]
}

fn check(
    annotations: &BTreeMap<String, String>,
    expected: Option<&[ConditionStep]>,
) -> Result<(), TestCaseError> {
    let faults = from_annotations("fuzz-node", annotations);
    if let Some(expected) = expected {
        prop_assert_eq!(&faults.conditions, expected);
    }
    for condition in &faults.conditions {
        let type_ = &condition.type_;
        prop_assert!(
            !type_.is_empty() && type_.trim() == type_,
            "{:?}",
            condition
        );
        prop_assert!(!type_.contains([',', '=']), "{:?}", condition);
        if let Some(reason) = &condition.reason {
            prop_assert!(
                !reason.is_empty() && !reason.contains(','),
                "{:?}",
                condition
            );
        }
    }
    let stopped = annotations
        .get(HEARTBEAT_ANNOTATION)
        .is_some_and(|v| v.trim() == "stopped");
    prop_assert_eq!(faults.heartbeats_stopped, stopped);
    Ok(())
}

#[test]
fn fuzz_node_fault_annotations() {
    let seeds = corpus("node-faults").into_iter().map(|(file, text)| {
        let annotations: BTreeMap<String, String> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{file} is not a JSON object of strings: {e}"));
        (file, annotations)
    });
    let input = (
        prop::option::of(conditions()),
        prop::option::of(heartbeat()),
        prop::collection::btree_map("[a-z./-]{1,20}", any::<String>(), 0..2),
    );
    // Seeds are checked for the invariants only; generated values also against what
    // they were built to say.
    for (file, annotations) in seeds {
        if let Err(error) = check(&annotations, None) {
            panic!("seed {file} fails: {error}");
        }
    }
    fuzz(
        file!(),
        [],
        input,
        |(conditions, heartbeat, mut annotations)| {
            let expected = conditions
                .as_ref()
                .map(|(_, e)| e.clone())
                .unwrap_or_default();
            if let Some((text, _)) = conditions {
                annotations.insert(CONDITIONS_ANNOTATION.to_string(), text);
            }
            if let Some(value) = heartbeat {
                annotations.insert(HEARTBEAT_ANNOTATION.to_string(), value);
            }
            check(&annotations, Some(&expected))
        },
    );
}

#[test]
fn fuzz_node_fault_annotations_arbitrary_text() {
    let input = (any::<String>(), any::<String>());
    fuzz(file!(), [], input, |(conditions, heartbeat)| {
        let annotations = BTreeMap::from([
            (CONDITIONS_ANNOTATION.to_string(), conditions),
            (HEARTBEAT_ANNOTATION.to_string(), heartbeat),
        ]);
        check(&annotations, None)
    });
}
