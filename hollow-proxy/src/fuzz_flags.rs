//! Fuzzing of hollow-proxy's flags: whatever the command line, clap gives a `Cli` whose
//! values configure the proxy, or an error naming the flag; nothing panics.

use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;
use hollow_core::proxy::HollowProxy;
use proptest::prelude::*;

use super::Cli;

#[path = "../../hollow-core/tests/fuzz_support/mod.rs"]
mod support;

use support::{corpus, fuzz};

const FLAGS: &[&str] = &[
    "--name",
    "--kubeconfig",
    "--nodes",
    "--morph",
    "--use-real-proxier",
    "--healthz-bind-address",
    "--metrics-bind-address",
    "--min-sync-period-ms",
    "--sync-period",
    "--connect-timeout",
    "--v",
    "-v",
    "--alsologtostderr",
    "--kube-api-content-type",
    "--no-such-flag",
    "--",
    "-",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "100000",
    "100001",
    "255",
    "256",
    "18446744073709551615",
    "18446744073709551616",
    "1.5",
    "true",
    "false",
    "127.0.0.1:10256",
    "[::1]:0",
    "not-an-address",
    "proxy",
    "kubelet",
    "",
    " ",
    "=",
];

fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FLAGS).prop_map(str::to_string),
        4 => prop::sample::select(VALUES).prop_map(str::to_string),
        3 => (prop::sample::select(FLAGS), prop::sample::select(VALUES))
            .prop_map(|(flag, value)| format!("{flag}={value}")),
        1 => any::<String>(),
    ]
}

fn check_command_line(argv: &[String]) -> Result<(), TestCaseError> {
    let line = std::iter::once("hollow-proxy").chain(argv.iter().map(String::as_str));
    match Cli::try_parse_from(line) {
        Ok(cli) => {
            prop_assert!((1..=100_000).contains(&cli.nodes));
            // What `run` makes of the values, short of a cluster.
            let _ = HollowProxy::builder()
                .min_sync_period(Duration::from_millis(cli.min_sync_period_ms))
                .sync_period(Duration::from_secs(cli.sync_period))
                .build();
            let _ = Duration::from_secs(cli.connect_timeout);
        }
        Err(error) => {
            let shown = error.to_string();
            prop_assert!(
                shown.starts_with("error: ")
                    || matches!(
                        error.kind(),
                        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
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
