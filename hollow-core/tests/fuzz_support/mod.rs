//! What every fuzz test of hollow shares: how many cases to run, the seed corpus, and a
//! runner that replays the corpus before it generates inputs.
//!
//! `HOLLOW_FUZZ_CASES` sets the generated cases per property (default
//! [`DEFAULT_CASES`], so `cargo test` stays quick); failures proptest finds are kept in
//! `proptest-regressions/` and replayed first on the next run, after the seed corpus
//! (`tests/fuzz-corpus/<parser>/`, one input a file). Shared by hollow-core's
//! `tests/fuzz_parsers.rs` and the `#[cfg(test)]` fuzz modules of hollow-core,
//! hollow-kubelet and hollow-proxy (included with `#[path]`).

// Each includer uses a different part.
#![allow(dead_code)]

use std::fmt::Debug;
use std::path::Path;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};

/// The environment variable that sets the generated cases per property.
pub const CASES_VAR: &str = "HOLLOW_FUZZ_CASES";
/// Generated cases per property when [`CASES_VAR`] is unset.
pub const DEFAULT_CASES: u32 = 256;

/// The generated cases per property: [`CASES_VAR`], else [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    match std::env::var(CASES_VAR) {
        Ok(raw) => raw
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{CASES_VAR}={raw:?}: expected a whole number")),
        Err(_) => DEFAULT_CASES,
    }
}

/// proptest's configuration for the properties of `source_file` (pass `file!()`):
/// [`cases`] cases, failures persisted under the crate's `proptest-regressions/`.
pub fn config(source_file: &'static str) -> Config {
    // proptest places the file of a test under `src/` itself; one under `tests/` (which
    // has no lib.rs) would land next to the test, so it gets the same folder by hand.
    let persistence = match source_file.split_once("/tests/") {
        Some((_, test)) => {
            let path = format!(
                "{}/proptest-regressions/tests/{}",
                env!("CARGO_MANIFEST_DIR"),
                test.replace(".rs", ".txt")
            );
            FileFailurePersistence::Direct(Box::leak(path.into_boxed_str()))
        }
        None => FileFailurePersistence::SourceParallel("proptest-regressions"),
    };
    Config {
        cases: cases(),
        // A failure (a hang above all) is shrunk for a minute at most.
        max_shrink_time: 60_000,
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(persistence)),
        ..Config::default()
    }
}

/// The seed inputs of `parser`: the files of `<crate>/tests/fuzz-corpus/<parser>/`,
/// by name, as `(file name, contents)`. The folder must hold some.
pub fn corpus(parser: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(parser);
    let mut seeds = files(&dir);
    assert!(!seeds.is_empty(), "no seed corpus in {}", dir.display());
    seeds.sort();
    seeds
}

/// The files directly in `dir`, as `(file name, contents)`; none if it cannot be read.
pub fn files(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let path = e.path();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    files
}

/// Checks `property` on every seed first (named in the failure), then on [`cases`]
/// inputs from `strategy` (with proptest's shrinking and failure persistence).
pub fn fuzz<S>(
    source_file: &'static str,
    seeds: impl IntoIterator<Item = (String, S::Value)>,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    for (name, seed) in seeds {
        let shown = format!("{seed:?}");
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| property(seed))) {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => panic!("seed {name} fails: {failure}\ninput: {shown}"),
            Err(_) => panic!("seed {name} panics (message above)\ninput: {shown}"),
        }
    }
    let mut runner = TestRunner::new(config(source_file));
    match runner.run(&strategy, property) {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => {
            panic!("{reason}\nminimal failing input: {input:?}")
        }
        Err(TestError::Abort(reason)) => panic!("fuzzing aborted: {reason}"),
    }
}
