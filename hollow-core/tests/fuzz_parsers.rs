//! Fuzzing of hollow-core's public parsers of user input: lifecycle files, durations,
//! quantities, the `hollow.dev/*` pod annotations of the fake runtime and the fake
//! cAdvisor's usage annotations.
//!
//! No input panics; every rejection is a readable error that says where (a lifecycle
//! file's line and field) or what (the annotation). Each property replays its seed
//! corpus (`tests/fuzz-corpus/<parser>/`) first, then `HOLLOW_FUZZ_CASES` (default 256)
//! generated inputs; see CONTRIBUTING.md, "Fuzzing", for a longer run.

mod fuzz_support;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hollow_core::annotations::{self, CPU_USAGE, EXIT_AFTER, EXIT_CODE, MEMORY_USAGE, STEPS};
use hollow_core::cadvisor::{Cadvisor, ContainerRef, FakeCadvisor};
use hollow_core::lifecycle::{
    ApiVersion, ConditionStatus, ConditionStep, ContainerFacts, ContainerStep, DeletionStep,
    EventStep, EventType, Heartbeat, Kind, Lifecycle, LoadError, MAX_DURATION, NodeFacts,
    NodeFaults, NodeMatch, NodeStep, PodMatch, PullStep, Rule, Steps, format_duration,
    parse_duration,
};
use hollow_core::manage::parse_selector;
use hollow_core::pod::ContainerKind;
use hollow_core::quantity::{MAX_QUANTITY, is_quantity, parse_quantity};
use hollow_core::runtime::{Behavior, ContainerConfig, annotations::behavior};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

use fuzz_support::{corpus, files, fuzz};

/// The origin every lifecycle text is loaded under.
const ORIGIN: &str = "fuzz/lifecycle.yaml";

/// The seeds of a parser whose corpus files hold one input a line.
fn line_seeds(parser: &str) -> Vec<(String, String)> {
    corpus(parser)
        .into_iter()
        .flat_map(|(file, text)| {
            text.lines()
                .map(|line| (file.clone(), line.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

// ---------------------------------------------------------------------------------------
// Lifecycle files
// ---------------------------------------------------------------------------------------

/// What `Lifecycle::from_yaml` promises for any text: a lifecycle that survives being
/// written and read back, or a `LoadError::Invalid` that reads
/// `origin:line:column: field: message`, located by a line or a field.
fn check_lifecycle(text: &str) -> Result<(), TestCaseError> {
    match Lifecycle::from_yaml(text, ORIGIN) {
        Ok(lifecycle) => {
            check_plans(&lifecycle);
            check_round_trip(&lifecycle)
        }
        Err(error) => check_load_error(&error),
    }
}

/// Plays what a loaded lifecycle says: each rule, alone, is chosen for an object it
/// matches, its plan begins no sooner than its delay, and a node's faults can be read
/// at any time.
fn check_plans(lifecycle: &Lifecycle) {
    let alone = Lifecycle {
        seed: lifecycle.seed,
        ..Lifecycle::default()
    };
    let first = |list: &[String]| list.first().cloned().unwrap_or_default();
    let pod_facts = |m: &PodMatch| {
        (
            first(&m.namespaces),
            m.labels.clone(),
            m.annotations.clone(),
            first(&m.containers),
            first(&m.images),
            m.kinds.first().copied().unwrap_or_default(),
        )
    };
    macro_rules! play_pod_rules {
        ($rules:ident, $plan:ident) => {
            for rule in &lifecycle.$rules {
                let (namespace, labels, annotations, container, image, kind) =
                    pod_facts(&rule.selector);
                let facts = ContainerFacts {
                    namespace: &namespace,
                    pod: "pod",
                    labels: &labels,
                    annotations: &annotations,
                    container: &container,
                    image: &image,
                    kind,
                    attempt: 0,
                };
                let one = Lifecycle {
                    $rules: vec![rule.clone()],
                    ..alone.clone()
                };
                let plan = one.$plan(&facts).expect("a rule matches what it selects");
                assert!(plan.delay >= rule.delay, "{plan:?} begins before {rule:?}");
            }
        };
    }
    play_pod_rules!(containers, container_plan);
    play_pod_rules!(pulls, pull_plan);
    play_pod_rules!(deletions, deletion_plan);
    for rule in &lifecycle.nodes {
        let name = first(&rule.selector.names);
        let facts = NodeFacts {
            name: &name,
            labels: &rule.selector.labels,
            annotations: &rule.selector.annotations,
        };
        let one = Lifecycle {
            nodes: vec![rule.clone()],
            ..alone.clone()
        };
        let plan = one
            .node_plan(&facts)
            .expect("a rule matches what it selects");
        assert!(plan.delay >= rule.delay, "{plan:?} begins before {rule:?}");
        for elapsed in [Duration::ZERO, plan.delay, Duration::MAX] {
            let _ = NodeFaults::at(&plan, elapsed);
        }
    }
}

fn check_round_trip(lifecycle: &Lifecycle) -> Result<(), TestCaseError> {
    let yaml = serde_saphyr::to_string(lifecycle)
        .map_err(|e| fail(format!("cannot write {lifecycle:?} as YAML: {e}")))?;
    let json = serde_json::to_string(lifecycle)
        .map_err(|e| fail(format!("cannot write {lifecycle:?} as JSON: {e}")))?;
    for written in [yaml, json] {
        match Lifecycle::from_yaml(&written, "written.yaml") {
            Ok(again) => prop_assert_eq!(&again, lifecycle, "written as:\n{}", written),
            Err(error) => return Err(fail(format!("written text fails: {error}\n{written}"))),
        }
    }
    Ok(())
}

fn check_load_error(error: &LoadError) -> Result<(), TestCaseError> {
    let shown = error.to_string();
    let LoadError::Invalid {
        origin,
        line,
        column,
        field,
        message,
        ..
    } = error
    else {
        return Err(fail(format!(
            "text gives {error:?}, not LoadError::Invalid"
        )));
    };
    prop_assert_eq!(origin, ORIGIN);
    let location = format!("{ORIGIN}:{line}:{column}: ");
    prop_assert!(shown.starts_with(&location), "not located: {}", shown);
    prop_assert!(
        *line > 0 || !field.is_empty(),
        "neither a line nor a field: {}",
        shown
    );
    if !field.is_empty() && field != "." {
        prop_assert!(
            shown.starts_with(&format!("{location}{field}: ")),
            "field not named: {}",
            shown
        );
    }
    check_readable(message)?;
    prop_assert!(
        !message.contains(" at line "),
        "location repeated in {:?}",
        message
    );
    Ok(())
}

/// A message for people: something said, no Rust debug output.
fn check_readable(message: &str) -> Result<(), TestCaseError> {
    prop_assert!(!message.trim().is_empty(), "empty message");
    for leak in ["Error {", "Custom(", "Location {"] {
        prop_assert!(
            !message.contains(leak),
            "debug output {:?} in {:?}",
            leak,
            message
        );
    }
    Ok(())
}

/// The lifecycle seeds: the example files, the presets as written, and the corpus.
fn lifecycle_seeds() -> Vec<(String, String)> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lifecycles");
    let mut seeds = files(&examples);
    assert!(
        seeds.len() >= 2,
        "the example lifecycles are missing from {}",
        examples.display()
    );
    for preset in hollow_core::lifecycle::PRESETS {
        let lifecycle = Lifecycle::preset(preset).expect("a preset");
        let text = serde_saphyr::to_string(&lifecycle).expect("a preset writes");
        seeds.push((format!("preset {preset}"), text));
    }
    seeds.extend(corpus("lifecycle"));
    seeds
}

/// Pieces of YAML, right and wrong, that lifecycle files are made of.
const YAML_TOKENS: &[&str] = &[
    "apiVersion: ",
    "kind: ",
    "seed: ",
    "containers:",
    "pulls:",
    "deletions:",
    "nodes:",
    "name: ",
    "match: ",
    "delay: ",
    "jitter: ",
    "weight: ",
    "steps: ",
    "labels: ",
    "kinds: ",
    "images: ",
    "- ",
    "  ",
    "    ",
    "\n",
    "\r\n",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ", ",
    ": ",
    ":",
    "wait: 5s",
    "exit: {code: 1}",
    "{exit: {code: 0}}",
    "repeat",
    "ready: true",
    "{ready: false}",
    "pullError: x",
    "heartbeat: stop",
    "condition: {type: Ready, status: \"False\"}",
    "clearCondition: Ready",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "!tag ",
    "---\n",
    "...\n",
    "'",
    "\"",
    "\\",
    "# comment",
    "|\n",
    ">-\n",
    "? ",
    "%YAML 1.2\n",
    "hollow.dev/v1alpha1",
    "Lifecycle",
    "-1",
    "0",
    "1e9",
    "4294967296",
    "18446744073709551616",
    "18446744073709551615s",
    "0x1F",
    ".inf",
    ".nan",
    "null",
    "~",
    "true",
    "\u{feff}",
    "\u{0}",
    "\u{85}",
    "\u{2028}",
    "é",
    "😀",
];

/// Near-valid values: durations, numbers and structures a person might write.
const VALUES: &[&str] = &[
    "0s",
    "5s",
    "500ms",
    "2m",
    "1h",
    "1.5s",
    "5 s",
    "-1s",
    "3d",
    "s",
    "ms",
    "5S",
    "٣s",
    "18446744073709551615s",
    "18446744073709551615ms",
    "18446744073709551616ms",
    "307445734561825860m",
    "307445734561825861m",
    "5124095576030431h",
    "5124095576030432h",
    "2562047h",
    "2562048h",
    "9223372036854ms",
    "9223372036855ms",
    "0",
    "-1",
    "1",
    "4294967295",
    "4294967296",
    "1e9",
    "0x10",
    "1.0",
    "-2147483648",
    "2147483648",
    "9223372036854775807",
    "18446744073709551616",
    "True",
    "\"False\"",
    "Maybe",
    "Warning",
    "Normal",
    "stop",
    "resume",
    "regular",
    "init",
    "sidecar",
    "\"\"",
    "[]",
    "{}",
    "[ {wait: 1s}, repeat ]",
    "[ repeat ]",
    "[ {wait: 99ms}, repeat ]",
    "[ {exit: {code: 1}}, {ready: true} ]",
    "[ {wait: 18446744073709551615s}, {wait: 1s}, repeat ]",
    "{code: 0}",
    "{ type: Ready, status: Maybe }",
    "null",
    "~",
    "&x 1",
    "*x",
    "!!binary aGk=",
    "[",
    "{",
    "'unclosed",
];

/// The keys of a lifecycle file, and a few that are not.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "seed",
    "containers",
    "pulls",
    "deletions",
    "nodes",
    "name",
    "match",
    "delay",
    "jitter",
    "weight",
    "steps",
    "labels",
    "annotations",
    "namespaces",
    "names",
    "images",
    "kinds",
    "wait",
    "ready",
    "exit",
    "code",
    "oomKill",
    "restart",
    "event",
    "reason",
    "message",
    "type",
    "status",
    "removeFinalizers",
    "delete",
    "pullError",
    "condition",
    "clearCondition",
    "heartbeat",
    "stepz",
    "Steps",
    "",
    "<<",
];

/// Text built from YAML pieces, arbitrary characters and short words.
fn yaml_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(YAML_TOKENS).prop_map(str::to_string),
            2 => prop::sample::select(VALUES).prop_map(str::to_string),
            1 => any::<char>().prop_map(String::from),
            1 => "[a-zA-Z0-9]{1,6}",
        ],
        0..60,
    )
    .prop_map(|pieces| pieces.concat())
}

/// An edit to a lifecycle file.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    /// Replaces what follows the line's first `: ` (or the whole item after `- `).
    ReplaceValue(usize, String),
    /// Replaces what precedes the line's first `:`.
    ReplaceKey(usize, String),
    Indent(usize, bool),
    Insert(usize, String),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let value = prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(str::to_string),
        1 => "\\PC{0,12}",
    ];
    let key = prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "\\PC{0,8}",
    ];
    let piece = prop_oneof![
        3 => prop::sample::select(YAML_TOKENS).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        1 => any::<usize>().prop_map(Mutation::DeleteLine),
        1 => any::<usize>().prop_map(Mutation::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        4 => (any::<usize>(), value).prop_map(|(at, v)| Mutation::ReplaceValue(at, v)),
        2 => (any::<usize>(), key).prop_map(|(at, k)| Mutation::ReplaceKey(at, k)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(at, deeper)| Mutation::Indent(at, deeper)),
        2 => (any::<usize>(), piece).prop_map(|(at, p)| Mutation::Insert(at, p)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut text = text.to_string();
    for mutation in mutations {
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        let n = lines.len();
        match mutation {
            Mutation::DeleteLine(at) => {
                lines.remove(at % n);
            }
            Mutation::DuplicateLine(at) => {
                let line = lines[at % n].clone();
                lines.insert(at % n, line);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
            Mutation::ReplaceValue(at, value) => {
                let line = &mut lines[at % n];
                if let Some(colon) = line.find(": ") {
                    line.replace_range(colon + 2.., value);
                } else if let Some(dash) = line.find("- ") {
                    line.replace_range(dash + 2.., value);
                } else {
                    line.push_str(value);
                }
            }
            Mutation::ReplaceKey(at, key) => {
                let line = &mut lines[at % n];
                let start = line.len() - line.trim_start_matches([' ', '-']).len();
                if let Some(colon) = line[start..].find(':') {
                    line.replace_range(start..start + colon, key);
                }
            }
            Mutation::Indent(at, deeper) => {
                let line = &mut lines[at % n];
                if *deeper {
                    line.insert_str(0, "  ");
                } else if let Some(rest) = line.strip_prefix("  ") {
                    *line = rest.to_string();
                }
            }
            Mutation::Insert(at, piece) => {
                let joined = lines.join("\n");
                let at = floor_boundary(&joined, *at);
                text = format!("{}{piece}{}", &joined[..at], &joined[at..]);
                continue;
            }
            Mutation::Truncate(at) => {
                let joined = lines.join("\n");
                let at = floor_boundary(&joined, *at);
                text = joined[..at].to_string();
                continue;
            }
        }
        text = lines.join("\n");
    }
    text
}

#[test]
fn fuzz_lifecycle_arbitrary_text() {
    let text = prop_oneof![
        1 => prop::collection::vec(any::<char>(), 0..300).prop_map(String::from_iter),
        1 => "\\PC{0,200}",
        4 => yaml_soup(),
    ];
    fuzz(file!(), lifecycle_seeds(), text, |text| {
        check_lifecycle(&text)
    });
}

#[test]
fn fuzz_lifecycle_mutated_examples() {
    let seeds = lifecycle_seeds();
    let texts: Vec<String> = seeds.iter().map(|(_, text)| text.clone()).collect();
    let mutated = (
        prop::sample::select(texts),
        prop::collection::vec(mutation(), 1..6),
    )
        .prop_map(|(text, mutations)| mutate(&text, &mutations));
    fuzz(file!(), seeds, mutated, |text| check_lifecycle(&text));
}

// Generated documents: the lifecycle's shape with near-valid keys and values.

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(&[0i64, 1, -1, 2, 3, 137, 143, 255, 256][..]).prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(json!(u64::from(u32::MAX) + 1)),
    ]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(Value::from),
        2 => "[a-zA-Z0-9.-]{0,12}".prop_map(Value::from),
        1 => "\\PC{0,16}".prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
    ]
}

fn duration() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (any::<u64>(), prop::sample::select(&["ms", "s", "m", "h"][..]))
            .prop_map(|(n, unit)| Value::from(format!("{n}{unit}"))),
        4 => (0u64..100_000, prop::sample::select(&["ms", "s", "m", "h"][..]))
            .prop_map(|(n, unit)| Value::from(format!("{n}{unit}"))),
        2 => text(),
        1 => number(),
        1 => Just(Value::Null),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        text(),
        number(),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([])),
        Just(json!({})),
    ]
}

/// A map from some of `fields` (each with its value strategy) plus, rarely, a stray key.
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let present: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(key, value)| {
            prop::option::weighted(0.6, value.prop_map(move |v| (key.to_string(), v))).boxed()
        })
        .collect();
    let stray = prop::option::weighted(
        0.05,
        (
            prop::sample::select(KEYS).prop_map(str::to_string),
            scalar(),
        ),
    );
    (present, stray)
        .prop_map(|(present, stray)| {
            Value::Object(
                present
                    .into_iter()
                    .flatten()
                    .chain(stray)
                    .collect::<Map<_, _>>(),
            )
        })
        .boxed()
}

fn string_map() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z./-]{0,12}", text(), 0..3)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn string_list() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::vec(text(), 0..3).prop_map(Value::from),
        1 => scalar(),
    ]
}

fn step() -> BoxedStrategy<Value> {
    let unit = prop::sample::select(
        &[
            "repeat",
            "removeFinalizers",
            "oomKill",
            "restart",
            "delete",
            "ready",
            "wait",
            "exit",
            "Repeat",
            "",
        ][..],
    )
    .prop_map(Value::from);
    let event = object(vec![
        ("type", text().boxed()),
        ("reason", text().boxed()),
        ("message", text().boxed()),
    ]);
    let condition = object(vec![
        ("type", text().boxed()),
        (
            "status",
            prop_oneof![
                prop::sample::select(&["True", "False", "Unknown", "true", "Maybe"][..])
                    .prop_map(Value::from),
                scalar(),
            ]
            .boxed(),
        ),
        ("reason", text().boxed()),
        ("message", text().boxed()),
    ]);
    let code = object(vec![("code", number().boxed())]);
    let keyed = prop_oneof![
        3 => duration().prop_map(|d| json!({ "wait": d })),
        2 => prop_oneof![any::<bool>().prop_map(Value::from), scalar()]
            .prop_map(|r| json!({ "ready": r })),
        2 => code.clone().prop_map(|c| json!({ "exit": c })),
        1 => event.prop_map(|e| json!({ "event": e })),
        1 => text().prop_map(|t| json!({ "pullError": t })),
        1 => condition.prop_map(|c| json!({ "condition": c })),
        1 => text().prop_map(|t| json!({ "clearCondition": t })),
        1 => prop_oneof![
            prop::sample::select(&["stop", "resume", "Stop", "pause"][..]).prop_map(Value::from),
            scalar(),
        ]
        .prop_map(|h| json!({ "heartbeat": h })),
        1 => (prop::sample::select(KEYS), scalar()).prop_map(|(k, v)| json!({ k: v })),
        1 => (duration(), code).prop_map(|(d, c)| json!({ "wait": d, "exit": c })),
    ];
    prop_oneof![2 => unit, 5 => keyed, 1 => scalar()].boxed()
}

fn rule() -> BoxedStrategy<Value> {
    let selector = object(vec![
        ("labels", string_map().boxed()),
        ("annotations", string_map().boxed()),
        ("namespaces", string_list().boxed()),
        ("names", string_list().boxed()),
        ("containers", string_list().boxed()),
        ("images", string_list().boxed()),
        (
            "kinds",
            prop::collection::vec(
                prop::sample::select(&["init", "sidecar", "regular", "Regular", "job"][..])
                    .prop_map(Value::from),
                0..3,
            )
            .prop_map(Value::from)
            .boxed(),
        ),
    ]);
    object(vec![
        ("name", text().boxed()),
        ("match", prop_oneof![4 => selector, 1 => scalar()].boxed()),
        ("delay", duration().boxed()),
        ("jitter", duration().boxed()),
        ("weight", number().boxed()),
        (
            "steps",
            prop_oneof![
                6 => prop::collection::vec(step(), 0..6).prop_map(Value::from),
                1 => scalar(),
            ]
            .boxed(),
        ),
    ])
}

fn document() -> impl Strategy<Value = Value> {
    let rules = || {
        prop_oneof![
            6 => prop::collection::vec(rule(), 0..3).prop_map(Value::from),
            1 => scalar(),
        ]
        .boxed()
    };
    object(vec![
        (
            "apiVersion",
            prop_oneof![
                3 => Just(Value::from("hollow.dev/v1alpha1")),
                1 => text(),
            ]
            .boxed(),
        ),
        (
            "kind",
            prop_oneof![3 => Just(Value::from("Lifecycle")), 1 => text()].boxed(),
        ),
        ("seed", number().boxed()),
        ("containers", rules()),
        ("pulls", rules()),
        ("deletions", rules()),
        ("nodes", rules()),
    ])
}

/// A document written as YAML (block or flow style) or JSON.
fn written(document: Value, style: u8) -> String {
    match style % 3 {
        0 => serde_saphyr::to_string(&document).expect("a JSON value writes as YAML"),
        1 => serde_json::to_string(&document).expect("a JSON value writes"),
        _ => serde_json::to_string_pretty(&document).expect("a JSON value writes"),
    }
}

#[test]
fn fuzz_lifecycle_generated_documents() {
    let text = (document(), any::<u8>()).prop_map(|(document, style)| written(document, style));
    fuzz(file!(), corpus("lifecycle"), text, |text| {
        check_lifecycle(&text)
    });
}

// Valid lifecycles: every one written loads back equal.

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9._/-]{0,12}",
        2 => prop::sample::select(VALUES).prop_map(str::to_string),
        1 => "\\PC{0,12}",
        1 => any::<String>(),
    ]
}

/// Durations of whole milliseconds (what a file can say), up to Go's longest duration.
fn whole_ms() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=10_000).prop_map(Duration::from_millis),
        (0u64..=9_223_372_036_854).prop_map(Duration::from_millis),
        (0u64..=2_562_047).prop_map(|h| Duration::from_secs(h * 3600)),
    ]
}

fn event_step() -> impl Strategy<Value = EventStep> {
    (any::<bool>(), any_text(), any_text()).prop_map(|(warning, reason, message)| EventStep {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason,
        message,
    })
}

/// Steps that go on, then maybe one that ends the list; a repeating list waits enough.
fn valid_steps<S: hollow_core::lifecycle::Step + Clone + std::fmt::Debug + 'static>(
    going_on: impl Strategy<Value = S> + 'static,
    ending: impl Strategy<Value = S> + 'static,
    repeat: Option<S>,
    wait: fn(Duration) -> S,
) -> impl Strategy<Value = Steps<S>> {
    let ending = match repeat {
        Some(repeat) => prop_oneof![ending.boxed(), Just(repeat)].boxed(),
        None => ending.boxed(),
    };
    (
        prop::collection::vec(going_on, 0..5),
        prop::option::of(ending),
        100u64..10_000,
    )
        .prop_map(move |(mut steps, end, period)| {
            if let Some(end) = end {
                steps.push(end);
            }
            let mut steps = Steps(steps);
            if steps.check().is_err() {
                // Only a repeat without enough waiting: wait first.
                steps.0.insert(0, wait(Duration::from_millis(period)));
            }
            steps
        })
}

fn pod_match() -> impl Strategy<Value = PodMatch> {
    (
        prop::collection::vec(any_text(), 0..2),
        prop::collection::btree_map(any_text(), any_text(), 0..2),
        prop::collection::btree_map(any_text(), any_text(), 0..2),
        prop::collection::vec(any_text(), 0..2),
        prop::collection::vec(any_text(), 0..2),
        prop::collection::vec(
            prop::sample::select(
                &[
                    ContainerKind::Init,
                    ContainerKind::Sidecar,
                    ContainerKind::Regular,
                ][..],
            ),
            0..3,
        ),
    )
        .prop_map(
            |(namespaces, labels, annotations, containers, images, kinds)| PodMatch {
                namespaces,
                labels,
                annotations,
                containers,
                images,
                kinds,
            },
        )
}

fn node_match() -> impl Strategy<Value = NodeMatch> {
    (
        prop::collection::vec(any_text(), 0..2),
        prop::collection::btree_map(any_text(), any_text(), 0..2),
        prop::collection::btree_map(any_text(), any_text(), 0..2),
    )
        .prop_map(|(names, labels, annotations)| NodeMatch {
            names,
            labels,
            annotations,
        })
}

fn valid_rule<M: std::fmt::Debug + Clone, S: std::fmt::Debug + Clone>(
    selector: impl Strategy<Value = M>,
    steps: impl Strategy<Value = Steps<S>>,
) -> impl Strategy<Value = Rule<M, S>> {
    (
        any_text(),
        selector,
        whole_ms(),
        whole_ms(),
        1..=u32::MAX,
        steps,
    )
        .prop_map(|(name, selector, delay, jitter, weight, steps)| Rule {
            name,
            selector,
            delay,
            jitter,
            weight: NonZeroU32::new(weight).expect("nonzero"),
            steps,
        })
}

fn valid_lifecycle() -> impl Strategy<Value = Lifecycle> {
    let container_steps = valid_steps(
        prop_oneof![
            whole_ms().prop_map(ContainerStep::Wait),
            any::<bool>().prop_map(ContainerStep::Ready),
            event_step().prop_map(ContainerStep::Event),
            Just(ContainerStep::RemoveFinalizers),
        ],
        prop_oneof![
            any::<i32>().prop_map(|code| ContainerStep::Exit { code }),
            Just(ContainerStep::OomKill),
            Just(ContainerStep::Restart),
            Just(ContainerStep::Delete),
        ],
        Some(ContainerStep::Repeat),
        ContainerStep::Wait,
    );
    let pull_steps = valid_steps(
        whole_ms().prop_map(PullStep::Wait),
        any_text().prop_map(PullStep::PullError),
        None,
        PullStep::Wait,
    );
    let deletion_steps = valid_steps(
        prop_oneof![
            whole_ms().prop_map(DeletionStep::Wait),
            event_step().prop_map(DeletionStep::Event),
            Just(DeletionStep::RemoveFinalizers),
        ],
        any::<i32>().prop_map(|code| DeletionStep::Exit { code }),
        None,
        DeletionStep::Wait,
    );
    let status = prop::sample::select(
        &[
            ConditionStatus::True,
            ConditionStatus::False,
            ConditionStatus::Unknown,
        ][..],
    );
    let node_steps = valid_steps(
        prop_oneof![
            whole_ms().prop_map(NodeStep::Wait),
            (
                any_text(),
                status,
                prop::option::of(any_text()),
                prop::option::of(any_text())
            )
                .prop_map(|(type_, status, reason, message)| {
                    NodeStep::Condition(ConditionStep {
                        type_,
                        status,
                        reason,
                        message,
                    })
                }),
            any_text().prop_map(NodeStep::ClearCondition),
            prop::sample::select(&[Heartbeat::Stop, Heartbeat::Resume][..])
                .prop_map(NodeStep::Heartbeat),
        ],
        Just(NodeStep::Repeat),
        None,
        NodeStep::Wait,
    );
    (
        any::<bool>(),
        any::<u64>(),
        prop::collection::vec(valid_rule(pod_match(), container_steps), 0..3),
        prop::collection::vec(valid_rule(pod_match(), pull_steps), 0..2),
        prop::collection::vec(valid_rule(pod_match(), deletion_steps), 0..2),
        prop::collection::vec(valid_rule(node_match(), node_steps), 0..2),
    )
        .prop_map(
            |(declared, seed, containers, pulls, deletions, nodes)| Lifecycle {
                api_version: declared.then_some(ApiVersion::V1Alpha1),
                kind: declared.then_some(Kind::Lifecycle),
                seed,
                containers,
                pulls,
                deletions,
                nodes,
            },
        )
}

#[test]
fn fuzz_lifecycle_valid_ones_round_trip() {
    fuzz(file!(), [], valid_lifecycle(), |lifecycle| {
        check_round_trip(&lifecycle)
    });
}

#[test]
fn fuzz_lifecycle_yaml_bombs_are_refused() {
    // Exponential aliases and deep nesting: refused quickly with a located error.
    let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=12 {
        let p = i - 1;
        laughs.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    laughs.push_str("seed: *a12\n");
    let deep = format!("containers: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    for text in [laughs, deep] {
        let started = std::time::Instant::now();
        let error = Lifecycle::from_yaml(&text, ORIGIN).unwrap_err();
        check_load_error(&error).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{error}");
    }
}

// ---------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------

/// What `parse_duration` should read, computed another way: a whole number of at most
/// 20 digits (u64) and a unit, the result fitting a u64 of its unit's base.
fn duration_model(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let digits = raw.len() - raw.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = raw.split_at(digits);
    let number: u128 = if number.is_empty() || number.len() > 40 {
        return None;
    } else {
        number.parse().ok()?
    };
    let limit = u128::from(u64::MAX);
    let millis = match unit {
        "ms" => number,
        "s" => number * 1000,
        "m" => number * 60_000,
        "h" => number * 3_600_000,
        _ => return None,
    };
    if number > limit || millis / 1000 > limit || millis > MAX_DURATION.as_millis() {
        return None;
    }
    let secs = u64::try_from(millis / 1000).ok()?;
    Some(Duration::from_secs(secs) + Duration::from_millis((millis % 1000) as u64))
}

fn check_duration(raw: &str) -> Result<(), TestCaseError> {
    let parsed = parse_duration(raw);
    prop_assert_eq!(parsed, duration_model(raw), "{:?}", raw);
    if let Some(duration) = parsed {
        let text = format_duration(duration);
        prop_assert_eq!(
            parse_duration(&text),
            Some(duration),
            "{:?} -> {:?}",
            raw,
            text
        );
    }
    Ok(())
}

fn duration_text() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(&["ms", "s", "m", "h", "", "d", "us", "S", "sec", " s"][..]);
    prop_oneof![
        (
            "[ \t\n]{0,2}",
            prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                (0u64..100_000).prop_map(|n| n.to_string()),
                "0{1,5}[0-9]{1,5}",
                "[0-9]{19,24}",
                Just(u64::MAX.to_string()),
                Just(String::new()),
                "[-+][0-9]{1,3}",
                "[0-9]{1,3}\\.[0-9]{1,3}",
            ],
            unit,
            "[ \t\n]{0,2}",
        )
            .prop_map(|(before, n, unit, after)| format!("{before}{n}{unit}{after}")),
        prop::sample::select(VALUES).prop_map(str::to_string),
        "\\PC{0,12}",
        any::<String>(),
    ]
}

#[test]
fn fuzz_duration_strings() {
    let seeds = line_seeds("duration");
    fuzz(file!(), seeds, duration_text(), |raw| check_duration(&raw));
}

#[test]
fn fuzz_duration_formats_read_back() {
    fuzz(file!(), [], whole_ms(), |duration| {
        let text = format_duration(duration);
        prop_assert_eq!(parse_duration(&text), Some(duration), "{}", text);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// Quantities
// ---------------------------------------------------------------------------------------

fn check_quantity(raw: &str) -> Result<(), TestCaseError> {
    let parsed = parse_quantity(raw);
    prop_assert_eq!(is_quantity(raw), parsed.is_some());
    if let Some(value) = parsed {
        prop_assert!(
            value.is_finite() && (0.0..=MAX_QUANTITY).contains(&value),
            "{:?} reads as {}",
            raw,
            value
        );
    }
    Ok(())
}

const QUANTITY_SUFFIXES: &[&str] = &[
    "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
];

/// A valid quantity and the value it stands for, computed with an exact decimal.
fn valid_quantity() -> impl Strategy<Value = (String, f64)> {
    (
        "[0-9]{1,8}",
        prop::option::of("[0-9]{1,6}"),
        prop_oneof![
            prop::sample::select(QUANTITY_SUFFIXES).prop_map(|s| (s.to_string(), suffix_value(s))),
            (-30i32..=30).prop_map(|e| (format!("e{e}"), 10f64.powi(e))),
            (-30i32..=30).prop_map(|e| (format!("E{e}"), 10f64.powi(e))),
        ],
    )
        .prop_map(|(whole, fraction, (suffix, scale))| {
            let number = match &fraction {
                Some(f) => format!("{whole}.{f}"),
                None => whole,
            };
            let value: f64 = number.parse().expect("digits");
            (format!("{number}{suffix}"), value * scale)
        })
}

fn suffix_value(suffix: &str) -> f64 {
    let binary = |p: i32| 1024f64.powi(p);
    match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        _ => binary(6),
    }
}

fn quantity_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => valid_quantity().prop_map(|(text, _)| text),
        2 => (
            "[-+ ]?[0-9.]{0,6}",
            prop_oneof![
                prop::sample::select(QUANTITY_SUFFIXES).prop_map(str::to_string),
                "[eE][-+]?[0-9]{1,12}",
                "[a-zA-Z]{1,3}",
            ],
            "[ ]?",
        )
            .prop_map(|(n, s, t)| format!("{n}{s}{t}")),
        1 => "[0-9]{300,400}(e[0-9]{1,4})?",
        1 => prop::sample::select(VALUES).prop_map(str::to_string),
        1 => "\\PC{0,12}",
        1 => any::<String>(),
    ]
}

#[test]
fn fuzz_quantities() {
    let seeds = line_seeds("quantity");
    fuzz(file!(), seeds, quantity_text(), |raw| check_quantity(&raw));
}

#[test]
fn fuzz_valid_quantities_read_their_value() {
    fuzz(file!(), [], valid_quantity(), |(text, expected)| {
        let value = parse_quantity(&text);
        let expected = expected.min(MAX_QUANTITY);
        prop_assert!(
            value.is_some_and(|v| (v - expected).abs() <= expected * 1e-12),
            "{} reads as {:?}, not {}",
            text,
            value,
            expected
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// Pod annotations: the fake runtime's behaviour
// ---------------------------------------------------------------------------------------

fn annotation_key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(&annotations::ALL[..]).prop_map(str::to_string),
        1 => "hollow\\.dev/[a-z-]{0,12}",
        1 => "\\PC{0,16}",
    ]
}

const ANNOTATION_VALUES: &[&str] = &[
    "5s",
    "0s",
    "500ms",
    "-1",
    "0",
    "1",
    "137",
    " 3 ",
    "+3",
    "1e9",
    "1_000",
    "0x10",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "99999999999999999999999",
    "18446744073709551615s",
    "2562048h",
    "٣",
    "５",
    "stopped",
    "MemoryPressure=True",
    "250m",
    "100Mi",
    "1e400",
    "0e400",
    "[{wait: 1s}, {ready: false}, {wait: 1s}, {ready: true}, repeat]",
    "[{exit: {code: 1}}, {ready: true}]",
    "[{wait: 18446744073709551615s}, {wait: 1s}, repeat]",
    "[repeat]",
    "- wait: 1s\n- exit: {code: 2}\n",
    "[{\"wait\": \"1s\"}, {\"exit\": {\"code\": 0}}]",
    "{wait: 1s}",
    "[",
    "",
    "\n",
];

fn annotation_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(ANNOTATION_VALUES).prop_map(str::to_string),
        2 => duration_text(),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        2 => (prop::collection::vec(step(), 0..5), any::<u8>())
            .prop_map(|(steps, style)| written(Value::from(steps), style)),
        1 => yaml_soup(),
        1 => any::<String>(),
    ]
}

fn annotation_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(annotation_key(), annotation_value(), 0..6)
}

/// What `behavior` should make of the annotations, the way its documentation reads:
/// `Ok(None)` for what they do not script, else the behaviour, else the annotation
/// that is wrong.
fn behavior_model(map: &BTreeMap<String, String>) -> Result<Option<&'static str>, &'static str> {
    if map.contains_key(STEPS) {
        return Ok(Some("steps"));
    }
    let code = map.get(EXIT_CODE);
    if code.is_some_and(|raw| raw.trim().parse::<i32>().is_err()) {
        return Err(EXIT_CODE);
    }
    match map.get(EXIT_AFTER) {
        Some(raw) if parse_duration(raw).is_none() => Err(EXIT_AFTER),
        Some(_) => Ok(Some("exit")),
        None if code.is_some() => Ok(Some("exit")),
        None => Ok(None),
    }
}

fn check_behavior(map: BTreeMap<String, String>) -> Result<(), TestCaseError> {
    for kind in [ContainerKind::Init, ContainerKind::Sidecar] {
        let config = ContainerConfig {
            kind,
            annotations: map.clone(),
            ..Default::default()
        };
        prop_assert_eq!(
            behavior(&config).ok(),
            Some(None),
            "{:?} scripts only regular containers",
            kind
        );
    }
    let config = ContainerConfig {
        kind: ContainerKind::Regular,
        annotations: map.clone(),
        ..Default::default()
    };
    let got = behavior(&config);
    match (behavior_model(&map), &got) {
        (Ok(None), Ok(None)) => {}
        (Ok(Some("exit")), Ok(Some(Behavior::Exit { after, code }))) => {
            let expected_code = map
                .get(EXIT_CODE)
                .map_or(0, |raw| raw.trim().parse().unwrap_or(0));
            let expected_after = map.get(EXIT_AFTER).map_or(Duration::ZERO, |raw| {
                parse_duration(raw).unwrap_or_default()
            });
            prop_assert_eq!((*after, *code), (expected_after, expected_code));
        }
        (Ok(Some("steps")), Ok(Some(Behavior::Steps { delay, steps }))) => {
            prop_assert_eq!(*delay, Duration::ZERO);
            prop_assert!(
                Steps(steps.clone()).check().is_ok(),
                "unchecked steps {:?}",
                steps
            );
        }
        (Ok(Some("steps")) | Err(_), Err(error)) => {
            let expected = if map.contains_key(STEPS) {
                STEPS
            } else {
                behavior_model(&map).unwrap_err()
            };
            let message = error.to_string();
            prop_assert!(
                matches!(error, hollow_core::Error::InvalidInput(_)),
                "{:?}",
                error
            );
            prop_assert!(
                message.contains(&format!("annotation {expected}")),
                "the error does not name {}: {}",
                expected,
                message
            );
            check_readable(&message)?;
        }
        (expected, got) => {
            return Err(fail(format!("expected {expected:?}, got {got:?}")));
        }
    }
    Ok(())
}

#[test]
fn fuzz_pod_annotations() {
    let seeds: Vec<(String, BTreeMap<String, String>)> = corpus("annotations")
        .into_iter()
        .map(|(file, text)| {
            let map = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{file} is not a JSON object of strings: {e}"));
            (file, map)
        })
        .collect();
    fuzz(file!(), seeds, annotation_map(), check_behavior);
}

// ---------------------------------------------------------------------------------------
// The fake cAdvisor's usage annotations
// ---------------------------------------------------------------------------------------

fn usage_annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    let value = prop_oneof![
        4 => quantity_text(),
        1 => prop::sample::select(ANNOTATION_VALUES).prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop::collection::btree_map(
        prop_oneof![
            Just(CPU_USAGE.to_string()),
            Just(MEMORY_USAGE.to_string()),
            annotation_key(),
        ],
        value,
        0..4,
    )
}

/// A pod's annotations, how long its container ran (s), its requests, a fixed usage.
type UsageCase = (BTreeMap<String, String>, u64, u64, u64);

#[test]
fn fuzz_cadvisor_usage_annotations() {
    let seeds = corpus("usage").into_iter().map(|(file, text)| {
        let map = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{file} is not a JSON object of strings: {e}"));
        let case: UsageCase = (map, 60, 0, u64::MAX);
        (file, case)
    });
    let input = (
        usage_annotations(),
        prop_oneof![0u64..1000, any::<u64>().prop_map(|s| s % 3_000_000_000)],
        any::<u64>(),
        any::<u64>(),
    );
    fuzz(
        file!(),
        seeds,
        input,
        |(annotations, ran, request, fixed)| {
            tokio_test::block_on(check_usage(annotations, ran, request, fixed))
        },
    );
}

async fn check_usage(
    annotations: BTreeMap<String, String>,
    ran_secs: u64,
    request: u64,
    fixed: u64,
) -> Result<(), TestCaseError> {
    let fake = FakeCadvisor::default();
    let started_at = SystemTime::now().checked_sub(Duration::from_secs(ran_secs));
    let container = ContainerRef {
        namespace: "ns".into(),
        pod: "p".into(),
        pod_uid: "u".into(),
        container: "c".into(),
        started_at,
        cpu_request_millis: request,
        memory_request_bytes: request,
        annotations: annotations.clone(),
    };
    let first = fake
        .container_usage(&container)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let second = fake
        .container_usage(&container)
        .await
        .map_err(|e| fail(e.to_string()))?;
    prop_assert!(
        second.cpu_usage_core_nano_seconds >= first.cpu_usage_core_nano_seconds,
        "cumulative CPU decreased: {:?} then {:?}",
        first,
        second
    );
    if let Some(bytes) = annotations
        .get(MEMORY_USAGE)
        .and_then(|raw| parse_quantity(raw.trim()))
    {
        prop_assert_eq!(first.memory_working_set_bytes, bytes as u64);
    }
    // A fixed usage on top of annotated usage: the total keeps growing, without overflow.
    fake.set_container_usage("ns", "p", "c", fixed, fixed);
    let third = fake
        .container_usage(&container)
        .await
        .map_err(|e| fail(e.to_string()))?;
    prop_assert_eq!(third.cpu_nano_cores, fixed);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Selectors: `--manage-nodes-with-*-selector`
// ---------------------------------------------------------------------------------------

/// What `parse_selector` promises for any text: a selector that reads back the same from
/// its own API syntax, or an error that quotes the selector and the requirement.
fn check_selector(text: &str) -> Result<(), TestCaseError> {
    match parse_selector(text) {
        Ok(selector) => {
            let written = selector.to_string();
            let again = parse_selector(&written)
                .map_err(|error| fail(format!("{text:?} wrote {written:?}: {error}")))?;
            prop_assert_eq!(again, selector, "{:?} wrote {:?}", text, written);
        }
        Err(error) => {
            let shown = error.to_string();
            prop_assert!(
                shown.contains(&format!("{text:?}")) && !error.reason.is_empty(),
                "{}",
                shown
            );
        }
    }
    Ok(())
}

/// Selector-like text: keys, operators, values and sets, nearly right or wrong.
fn selector_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        "[a-z]{1,5}",
        "[a-z]{1,4}\\.[a-z]{2,3}/[a-z]{1,4}",
        "[A-Za-z_./-]{0,6}"
    ];
    let value = prop_oneof!["[a-z0-9]{0,4}", "[A-Za-z0-9_.-]{0,5}", "[ (),=!]{0,2}"];
    let requirement = (
        key,
        prop::sample::select(vec!["=", "==", "!=", "", "!", " in ", " notin ", " "]),
        prop::collection::vec(value, 0..3),
        any::<bool>(),
    )
        .prop_map(|(key, operator, values, parenthesized)| match operator {
            "!" => format!("!{key}"),
            " in " | " notin " if parenthesized => format!("{key}{operator}({})", values.join(",")),
            _ => format!("{key}{operator}{}", values.join(",")),
        });
    prop_oneof![
        4 => prop::collection::vec(requirement, 0..4).prop_map(|r| r.join(",")),
        1 => any::<String>(),
    ]
}

#[test]
fn fuzz_selectors() {
    let seeds = line_seeds("selector");
    fuzz(file!(), seeds, selector_text(), |text| {
        check_selector(&text)
    });
}
