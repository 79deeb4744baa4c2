//! Fuzzing of hollow-kubelet's flags: the value parsers of `--node-labels`,
//! `--register-with-taints`, `--extended-resources`/`--capacity` and `--lifecycle`, and
//! whole command lines. Nothing panics; a refusal is clap's error naming the flag, with
//! the parser's message naming the bad item.

use clap::error::ErrorKind;
use proptest::prelude::*;

use super::*;

#[path = "../../../hollow-core/tests/fuzz_support/mod.rs"]
mod support;

use support::{corpus, fuzz};

/// The items of a list flag, as the parsers split them.
fn items(input: &str) -> Vec<&str> {
    input
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect()
}

/// List flag values: items that are right, nearly right or wrong, joined by commas.
fn list(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(items).prop_map(str::to_string),
                1 => "[a-z./=:-]{0,12}",
                1 => any::<String>(),
            ],
            0..5,
        )
        .prop_map(|items| items.join(",")),
        1 => any::<String>(),
    ]
}

const LABELS: &[&str] = &[
    "a=b",
    "kubemark=true",
    "cloud.google.com/gke-nodepool=default",
    "k=",
    "=v",
    "novalue",
    "a=b=c",
    " a = b ",
    "é=ü",
];

const TAINTS: &[&str] = &[
    "kubemark=true:NoSchedule",
    "k:NoExecute",
    "k=v:PreferNoSchedule",
    "=v:NoSchedule",
    ":NoSchedule",
    "k=v",
    "k=v:Sometimes",
    "k=v:noschedule",
    "a:b=c:NoSchedule",
    "k=v:",
];

const RESOURCES: &[&str] = &[
    "cpu=72",
    "memory=256Gi",
    "nvidia.com/gpu=8",
    "ephemeral-storage=1Ti",
    "cpu=-1",
    "cpu=",
    "=8",
    "cpu",
    "cpu=1e400",
    "cpu=0e400",
    "memory=16Ei",
    "cpu=1..2",
    "cpu=500m=1",
];

fn check_labels(input: &str) -> Result<(), TestCaseError> {
    let bad = items(input)
        .into_iter()
        .find(|item| item.split_once('=').is_none_or(|(k, _)| k.is_empty()));
    match (parse_labels(input), bad) {
        (Ok(Pairs(pairs)), None) => {
            prop_assert_eq!(pairs.len(), items(input).len());
            for (key, _) in &pairs {
                prop_assert!(!key.is_empty() && !key.contains([',', '=']));
            }
        }
        (Err(message), Some(item)) => {
            prop_assert_eq!(
                message,
                format!("invalid label {item:?}: expected key=value")
            );
        }
        (got, bad) => {
            return Err(TestCaseError::fail(format!(
                "{got:?} with bad item {bad:?}"
            )));
        }
    }
    Ok(())
}

fn check_taints(input: &str) -> Result<(), TestCaseError> {
    match parse_taints(input) {
        Ok(Taints(taints)) => {
            prop_assert_eq!(taints.len(), items(input).len());
            for (key, _, _) in &taints {
                prop_assert!(!key.is_empty() && !key.contains([',', '=']));
            }
        }
        Err(message) => {
            let named = items(input)
                .into_iter()
                .any(|item| message.starts_with(&format!("invalid taint {item:?}: ")));
            prop_assert!(named, "no item named: {}", message);
        }
    }
    Ok(())
}

fn check_resources(input: &str) -> Result<(), TestCaseError> {
    match parse_resources(input) {
        Ok(Pairs(pairs)) => {
            prop_assert_eq!(pairs.len(), items(input).len());
            for (name, quantity) in &pairs {
                prop_assert!(!name.is_empty());
                prop_assert!(is_quantity(quantity), "{:?}", quantity);
            }
        }
        Err(message) => {
            let named = items(input).into_iter().any(|item| {
                message.starts_with(&format!("invalid resource {item:?}: "))
                    || item.split_once('=').is_some_and(|(name, quantity)| {
                        message.starts_with(&format!("invalid quantity {quantity:?} for {name}: "))
                    })
            });
            prop_assert!(named, "no item named: {}", message);
        }
    }
    Ok(())
}

#[test]
fn fuzz_node_labels() {
    fuzz(file!(), [], list(LABELS), |input| check_labels(&input));
}

#[test]
fn fuzz_taints() {
    fuzz(file!(), [], list(TAINTS), |input| check_taints(&input));
}

#[test]
fn fuzz_resources() {
    fuzz(file!(), [], list(RESOURCES), |input| {
        check_resources(&input)
    });
}

/// `--lifecycle` values: presets, files of every kind, paths that are not there.
const LIFECYCLES: &[&str] = &[
    "fast",
    "realistic",
    "chaos",
    "Fast",
    "",
    "no-such-preset",
    ".",
    "/",
    "/dev/null",
    "/dev/zero",
    "Cargo.toml",
    "../examples/lifecycles/flaky-nodes.yaml",
    "../examples/lifecycles/batch-and-crashes.yaml",
    "../hollow-core/tests/fuzz-corpus/lifecycle/waits-overflow.yaml",
    "../hollow-core/tests/fuzz-corpus/lifecycle/unknown-field.yaml",
];

#[test]
fn fuzz_lifecycle_flag() {
    let input = prop_oneof![
        3 => prop::sample::select(LIFECYCLES).prop_map(str::to_string),
        1 => "[a-z]{1,12}",
    ];
    fuzz(file!(), [], input, |input| {
        if let Err(message) = parse_lifecycle(&input) {
            prop_assert!(!message.trim().is_empty());
            prop_assert!(
                message.contains(&input),
                "{} does not name {:?}",
                message,
                input
            );
            if std::path::Path::new(&input).is_dir() {
                // The cause is given, not just "cannot read".
                prop_assert!(message.contains("directory"), "{}", message);
            }
        }
        Ok(())
    });
}

/// Every long flag, valued or not.
const FLAGS: &[&str] = &[
    "--name",
    "--kubeconfig",
    "--nodes",
    "--node-labels",
    "--register-with-taints",
    "--max-pods",
    "--extended-resources",
    "--capacity",
    "--kubelet-port",
    "--kube-api-qps",
    "--kube-api-burst",
    "--morph",
    "--cleanup-on-exit",
    "--adopt",
    "--local-dir",
    "--connect-timeout",
    "--metrics-bind-address",
    "--client-ca-file",
    "--tls-cert-file",
    "--tls-private-key-file",
    "--node-ip",
    "--hostname-override",
    "--address",
    "--serve-kubelet-api",
    "--kubelet-api-idle-timeout",
    "--parallelism",
    "--max-requests-in-flight",
    "--http2",
    "--api-connections",
    "--lifecycle",
    "--lifecycle-seed",
    "--manage-nodes-with-label-selector",
    "--manage-nodes-with-annotation-selector",
    "--manage-all-nodes",
    "--manage-single-node",
    "--node-port",
    "--cidr",
    "--node-lease-duration-seconds",
    "--v",
    "-v",
    "--alsologtostderr",
    "--kubelet-read-only-port",
    "--use-host-image-service",
    "--containerd",
    "--kube-api-content-type",
    "--no-such-flag",
    "--",
    "-",
];

/// Flag values: numbers at and past every bound, addresses, lists, words.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "100000",
    "100001",
    "65535",
    "65536",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "1.5",
    "NaN",
    "inf",
    "true",
    "false",
    "yes",
    "127.0.0.1",
    "::1",
    "0.0.0.0:0",
    "256.0.0.1",
    "node-ip",
    "Sim-7.Example.com",
    "a_b",
    "kubelet",
    "proxy",
    "a=b,c=d",
    "k=v:NoSchedule",
    "cpu=8",
    "fast",
    "chaos",
    "",
    " ",
    "=",
    "kwok.x-k8s.io/node=fake",
    "type in (a,b),!spot",
    "a in (b",
    "10.0.0.0/24",
    "10.0.0.0/31",
];

fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FLAGS).prop_map(str::to_string),
        4 => prop::sample::select(VALUES).prop_map(str::to_string),
        3 => (prop::sample::select(FLAGS), prop::sample::select(VALUES))
            .prop_map(|(flag, value)| format!("{flag}={value}")),
        1 => (prop::sample::select(FLAGS), list(LABELS))
            .prop_map(|(flag, value)| format!("{flag}={value}")),
        1 => any::<String>(),
    ]
}

/// What clap makes of a command line: the Cli, or an error that says which flag.
fn check_command_line(argv: &[String]) -> Result<(), TestCaseError> {
    let line = std::iter::once("hollow-kubelet").chain(argv.iter().map(String::as_str));
    match Cli::try_parse_from(line) {
        Ok(cli) => {
            let _ = cli.ignored.given();
            // Which Nodes to serve is decided, or refused with a readable reason.
            if let Err(reason) = cli.managed() {
                prop_assert!(reason.contains("--"), "{}", reason);
            }
            prop_assert!((1..=100_000).contains(&cli.nodes));
            prop_assert!((1..=86_400).contains(&cli.kubelet_api_idle_timeout));
        }
        Err(error) => {
            let shown = error.to_string();
            prop_assert!(
                shown.starts_with("error: ")
                    || matches!(
                        error.kind(),
                        ErrorKind::DisplayHelp
                            | ErrorKind::DisplayVersion
                            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    ),
                "{}",
                shown
            );
            if matches!(
                error.kind(),
                ErrorKind::ValueValidation | ErrorKind::InvalidValue
            ) {
                prop_assert!(shown.contains("for '-"), "the flag is not named: {}", shown);
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_command_lines() {
    let seeds = corpus("flags").into_iter().map(|(file, text)| {
        let argv: Vec<String> = text.lines().map(str::to_string).collect();
        (file, argv)
    });
    let argv = prop::collection::vec(argument(), 0..8);
    fuzz(file!(), seeds, argv, |argv| check_command_line(&argv));
}
