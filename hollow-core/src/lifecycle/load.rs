//! Reading a [`Lifecycle`] from YAML or JSON, with errors that say where.

use std::borrow::Cow;
use std::io::Read as _;
use std::path::Path;

use serde_saphyr::{MessageFormatter, RenderOptions, SnippetMode, UserMessageFormatter};

use super::Lifecycle;

/// Why a lifecycle could not be loaded. The display reads
/// `file:line:column: field: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read lifecycle file {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid lifecycle.
    #[error("{origin}:{line}:{column}: {}{message}", field_prefix(.field))]
    Invalid {
        /// The file (or other origin) the text came from.
        origin: String,
        /// The line, 1-based (0 when unknown).
        line: usize,
        /// The column, 1-based (0 when unknown).
        column: usize,
        /// The field, e.g. `containers[0].steps[1].exit.code` (empty at the top level).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The name is neither a preset nor an existing file.
    #[error(
        "unknown lifecycle {0:?}: expected a preset ({presets}) or the path of a YAML or JSON file",
        presets = super::PRESETS.join(", ")
    )]
    Unknown(String),
}

/// The most of a file read as a lifecycle (a lifecycle is a few kilobytes; this stops
/// `--lifecycle /dev/zero` from reading until memory runs out).
const MAX_FILE_BYTES: u64 = 16 << 20;

fn field_prefix(field: &str) -> String {
    if field.is_empty() || field == "." {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// serde-saphyr's error in words for whoever wrote the YAML (its default words advise
/// Rust callers, e.g. "use Option<String>"), with the location suffix, without snippet.
pub(crate) fn describe(error: &serde_saphyr::Error) -> String {
    let mut options = RenderOptions::new(&ForAuthors);
    options.snippets = SnippetMode::Off;
    error.render_with_options(options)
}

/// serde-saphyr's messages for people, with serde's words for steps (externally tagged
/// enums) and numbers (Rust's types) put in a lifecycle's terms.
struct ForAuthors;

impl MessageFormatter for ForAuthors {
    fn format_message<'a>(&self, error: &'a serde_saphyr::Error) -> Cow<'a, str> {
        use serde_saphyr::Error as E;
        let plain = match error {
            E::ExternallyTaggedEnumExpectedScalarOrMapping { .. } => {
                "expected a name, or one name mapped to its value (e.g. `repeat`, `{wait: 5s}`)"
            }
            E::ExpectedStringKeyForExternallyTaggedEnum { .. } => {
                "expected one name mapped to its value, e.g. `{wait: 5s}`"
            }
            E::UnexpectedValueForUnitEnumVariant { .. } => {
                "this takes no value: write the name alone, e.g. `repeat`"
            }
            E::InvalidScalar { ty: "u64", .. } => {
                "expected a whole number from 0 to 18446744073709551615"
            }
            E::InvalidScalar { ty: "u32", .. } => "expected a whole number from 0 to 4294967295",
            E::InvalidScalar { ty: "i32", .. } => {
                "expected a whole number from -2147483648 to 2147483647"
            }
            E::InvalidScalar { ty: "boolean", .. } => "expected true or false",
            E::SerdeInvalidValue { expected, .. } if expected == "a nonzero u32" => {
                "expected a nonzero whole number, from 1 to 4294967295"
            }
            E::Unexpected {
                expected: "sequence start",
                ..
            } => "expected a list",
            E::Unexpected {
                expected: "mapping start",
                ..
            } => "expected a mapping of keys to values",
            E::Unexpected {
                expected: "string scalar",
                ..
            } => "expected a single value, not a list or a mapping",
            _ => return UserMessageFormatter.format_message(error),
        };
        Cow::Borrowed(plain)
    }
}

impl Lifecycle {
    /// Parses a lifecycle from YAML (JSON is YAML too); `origin` names the text in
    /// errors. Unknown fields are rejected.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Lifecycle, LoadError> {
        if text.trim().is_empty() {
            return Err(LoadError::Invalid {
                origin: origin.into(),
                line: 1,
                column: 1,
                field: String::new(),
                message: "the lifecycle is empty".into(),
            });
        }
        let mut field = String::new();
        serde_saphyr::with_deserializer_from_str(text, |deserializer| {
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                field = error.path().to_string();
                error.into_inner()
            })
        })
        .map_err(|error| {
            let (line, column) = error.location().map_or((0, 0), |at| {
                (
                    usize::try_from(at.line()).unwrap_or(0),
                    usize::try_from(at.column()).unwrap_or(0),
                )
            });
            let message = describe(&error);
            // The location is reported on its own; keep the bare message.
            let message = match message.rsplit_once(" at line ") {
                Some((bare, _)) => bare.to_string(),
                None => message,
            };
            LoadError::Invalid {
                origin: origin.into(),
                line,
                column,
                field,
                message,
            }
        })
    }

    /// Reads a lifecycle from a YAML or JSON file (of at most 16 MiB).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Lifecycle, LoadError> {
        let path = path.as_ref();
        let unreadable = |source| LoadError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(unreadable(std::io::Error::other(format!(
                "larger than {} MiB: not a lifecycle",
                MAX_FILE_BYTES >> 20
            ))));
        }
        Lifecycle::from_yaml(&text, &path.display().to_string())
    }

    /// A preset by name (`fast`, `realistic`, `chaos`) or else a file by path, as the
    /// binaries' `--lifecycle` flag takes it.
    ///
    /// ```
    /// use hollow_core::lifecycle::{Lifecycle, LoadError};
    ///
    /// assert!(Lifecycle::resolve("fast")?.is_empty());
    /// assert!(matches!(Lifecycle::resolve("no-such-thing"), Err(LoadError::Unknown(_))));
    /// # Ok::<(), LoadError>(())
    /// ```
    pub fn resolve(preset_or_path: &str) -> Result<Lifecycle, LoadError> {
        if let Some(preset) = Lifecycle::preset(preset_or_path) {
            return Ok(preset);
        }
        let path = Path::new(preset_or_path);
        if path.exists() {
            Lifecycle::from_file(path)
        } else {
            Err(LoadError::Unknown(preset_or_path.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lifecycle::{ContainerStep, PullStep};

    fn invalid(text: &str) -> (usize, String, String) {
        match Lifecycle::from_yaml(text, "t.yaml").unwrap_err() {
            LoadError::Invalid {
                line,
                field,
                message,
                ..
            } => (line, field, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn yaml_and_json_load_the_same_lifecycle() {
        let yaml = "seed: 3\ncontainers:\n  - name: done\n    delay: 2s\n    steps:\n      - exit: {code: 0}\n";
        let json = r#"{"seed": 3, "containers": [{"name": "done", "delay": "2s", "steps": [{"exit": {"code": 0}}]}]}"#;
        let from_yaml = Lifecycle::from_yaml(yaml, "a.yaml").unwrap();
        assert_eq!(from_yaml, Lifecycle::from_yaml(json, "a.json").unwrap());
        assert_eq!(from_yaml.seed, 3);
        assert_eq!(from_yaml.containers[0].delay, Duration::from_secs(2));
        assert_eq!(
            from_yaml.containers[0].steps[0],
            ContainerStep::Exit { code: 0 }
        );
    }

    #[test]
    fn a_lifecycle_survives_a_round_trip() {
        let text = "apiVersion: hollow.dev/v1alpha1\nkind: Lifecycle\nseed: 9\npulls:\n  - weight: 3\n    jitter: 1500ms\n    steps: [ {wait: 1s}, {pullError: nope} ]\n";
        let lifecycle = Lifecycle::from_yaml(text, "r.yaml").unwrap();
        assert_eq!(
            lifecycle.pulls[0].steps[1],
            PullStep::PullError("nope".into())
        );
        let written = serde_saphyr::to_string(&lifecycle).unwrap();
        assert_eq!(Lifecycle::from_yaml(&written, "w.yaml").unwrap(), lifecycle);
    }

    #[test]
    fn unknown_fields_are_named_with_their_place() {
        let (line, field, message) = invalid("seed: 1\ncontainers:\n  - name: x\n    stepz: []\n");
        assert_eq!(line, 4);
        assert_eq!(field, "containers[0].stepz");
        assert!(message.contains("unknown field `stepz`"), "{message}");

        let (line, field, _) =
            invalid("nodes:\n  - steps:\n      - condition: {type: Ready, status: Maybe}\n");
        assert_eq!(line, 3);
        assert_eq!(field, "nodes[0].steps[0].condition.status");
    }

    #[test]
    fn bad_values_name_their_field() {
        let (line, field, message) = invalid("containers:\n  - steps:\n      - wait: soon\n");
        assert_eq!((line, field.as_str()), (3, "containers[0].steps[0].wait"));
        assert!(message.contains("invalid duration \"soon\""), "{message}");

        let (_, field, message) = invalid("containers:\n  - weight: 0\n");
        assert_eq!(field, "containers[0].weight");
        assert!(message.contains("nonzero"), "{message}");

        let (_, field, message) = invalid("pulls:\n  - steps: [ {ready: true} ]\n");
        assert_eq!(field, "pulls[0].steps[0]");
        assert!(message.contains("unknown variant `ready`"), "{message}");

        let (_, _, message) = invalid("apiVersion: hollow.dev/v2\n");
        assert!(message.contains("hollow.dev/v1alpha1"), "{message}");
    }

    #[test]
    fn step_lists_are_checked_where_they_break() {
        let (line, field, message) =
            invalid("containers:\n  - steps:\n      - exit: {code: 1}\n      - ready: true\n");
        assert_eq!(field, "containers[0].steps");
        assert!(line >= 3, "line {line}");
        assert!(message.contains("step 2 follows"), "{message}");

        let (_, _, message) = invalid("containers:\n  - steps: [ {ready: false}, repeat ]\n");
        assert!(message.contains("must wait at least"), "{message}");
    }

    #[test]
    fn malformed_yaml_and_empty_files_are_errors() {
        let (line, _, _) = invalid("containers:\n  - name: [unclosed\n");
        assert!(line >= 2, "line {line}");
        let error = Lifecycle::from_yaml("  \n", "empty.yaml").unwrap_err();
        assert_eq!(error.to_string(), "empty.yaml:1:1: the lifecycle is empty");
        let error = Lifecycle::from_file("/no/such/lifecycle.yaml").unwrap_err();
        assert!(matches!(error, LoadError::Read { .. }));
        // An endless file is refused once it is longer than any lifecycle.
        let error = Lifecycle::from_file("/dev/zero").unwrap_err();
        let LoadError::Read { source, .. } = error else {
            panic!("expected Read, got {error:?}");
        };
        assert_eq!(source.to_string(), "larger than 16 MiB: not a lifecycle");
    }
}
