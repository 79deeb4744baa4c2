//! Environment variables read from a file in an `emptyDir` volume (`valueFrom.fileKeyRef`,
//! the `EnvFiles` gate, on from 1.35), as the kubelet's `makeEnvironmentVariables`
//! reads them when it starts a container (pkg/kubelet/kubelet_pods.go): the file is
//! what the pod's containers (an init container, typically) wrote in the volume, parsed
//! by `ParseEnv` (pkg/kubelet/util/env/env_util.go). An error fails the container's
//! start with `CreateContainerConfigError`, and the next sync tries again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};

use crate::runtime::RuntimeService;

/// The kubelet's root directory, where a pod's volumes live on the host
/// (`--root-dir`, `pkg/kubelet/config` default); error messages name files there.
const KUBELET_ROOT: &str = "/var/lib/kubelet";

/// The values of `container`'s `fileKeyRef` variables, by variable name (an optional
/// key that is not in its file is left out), or the error that fails its start, worded
/// as the kubelet words it.
pub(crate) async fn file_values(
    runtime: &dyn RuntimeService,
    sandbox_id: &str,
    pod: &Pod,
    container: &Container,
) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let Some(file) = var
            .value_from
            .as_ref()
            .and_then(|v| v.file_key_ref.as_ref())
        else {
            continue;
        };
        let volume = &file.volume_name;
        if !mounted_empty_dir(pod, volume) {
            return Err(format!(
                "cannot find the volume {volume:?} referenced by FileKeyRef"
            ));
        }
        // A file that cannot be read or parsed is logged by the kubelet and reported
        // in these words only.
        let text = match runtime.volume_file(sandbox_id, volume, &file.path).await {
            Ok(Some(text)) => text,
            Ok(None) | Err(_) => return Err("couldn't parse env file".into()),
        };
        let value = parse(&text, &file.key).map_err(|_| "couldn't parse env file")?;
        if value.is_empty() {
            if file.optional == Some(true) {
                continue;
            }
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            let path = format!(
                "{KUBELET_ROOT}/pods/{uid}/volumes/kubernetes.io~empty-dir/{volume}/{}",
                file.path.trim_start_matches('/')
            );
            return Err(format!(
                "environment variable key {:?} not found in file {path:?}",
                file.key
            ));
        }
        values.insert(var.name.clone(), value);
    }
    Ok(values)
}

/// Whether `volume` is an `emptyDir` of `pod` that one of its containers mounts: the
/// kubelet's volume manager mounts only the volumes containers name
/// (`GetPodVolumeNames` in pkg/volume/util/util.go), and a `fileKeyRef` to another
/// finds no volume (as Kubemark 1.36 shows: "cannot find the volume").
fn mounted_empty_dir(pod: &Pod, volume: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let is_empty_dir = spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == volume && v.empty_dir.is_some());
    let names =
        |mounts: Option<&Vec<VolumeMount>>| mounts.into_iter().flatten().any(|m| m.name == volume);
    let mounted = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| names(c.volume_mounts.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| names(c.volume_mounts.as_ref()));
    is_empty_dir && mounted
}

/// The volumes `container`'s `fileKeyRef` variables read.
pub(crate) fn env_file_volumes(container: &Container) -> impl Iterator<Item = &str> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|var| var.value_from.as_ref()?.file_key_ref.as_ref())
        .map(|file| file.volume_name.as_str())
}

/// `ParseEnv`: the value of `key` in an env file, empty when it is not there (or
/// assigned nothing). Each line is `NAME='value'`: the value in single quotes, kept
/// as written (it may span lines), a `# comment` allowed after it; blank lines and
/// lines starting with `#` are skipped, leading blanks ignored. Whitespace before `=`
/// is an error; after it, the variable is empty. The first line naming `key` decides.
fn parse(text: &str, key: &str) -> Result<String, String> {
    let invalid = |number: usize, what: &str| {
        format!("invalid environment variable format at line {number}: {what}")
    };
    // bufio.Scanner's lines: split at "\n", a trailing "\r" dropped.
    let mut lines = text
        .split_terminator('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line));
    while let Some((number, line)) = lines.next() {
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name_part, value_part)) = line.split_once('=') else {
            return Err(invalid(number, "missing '='"));
        };
        let name = name_part.trim_end_matches([' ', '\t']);
        if name.is_empty() {
            return Err(invalid(number, "empty variable name"));
        }
        if name != name_part {
            return Err(invalid(number, "whitespace before '=' is not allowed"));
        }
        let value = value_part.trim_start_matches([' ', '\t']);
        if value != value_part {
            // `KEY= 'value'` assigns nothing, as a shell would.
            if name == key {
                return Ok(String::new());
            }
            continue;
        }
        let Some(mut rest) = value.strip_prefix('\'') else {
            return Err(invalid(number, "value must be enclosed in single quotes"));
        };
        let mut collected = String::new();
        let mut at = number;
        loop {
            if let Some(end) = rest.find('\'') {
                collected.push_str(&rest[..end]);
                let after = rest[end + 1..].trim_start_matches([' ', '\t']);
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(invalid(at, "unexpected content after closing quote"));
                }
                if name == key {
                    return Ok(collected);
                }
                break;
            }
            collected.push_str(rest);
            collected.push('\n');
            match lines.next() {
                Some((next_number, next)) => (at, rest) = (next_number, next),
                None => {
                    return Err(format!(
                        "invalid environment variable format starting at line {number}: \
                         unclosed single quote"
                    ));
                }
            }
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// Cases of `TestParseEnv` in pkg/kubelet/util/env/env_util_test.go (1.36): the
    /// file, the key, and the value (`Ok`) or a part of the error (`Err`).
    const UPSTREAM: &[(&str, &str, Result<&str, &str>)] = &[
        (
            "   KEY1='val1'\n\t\tKEY2='val2'\nKEY3='val3'\n",
            "KEY2",
            Ok("val2"),
        ),
        (
            "# comment\n\nKEY1='foo'\n   # another comment\n\nKEY2='bar'\n",
            "KEY2",
            Ok("bar"),
        ),
        (
            "KEY1 = 'val1'\nKEY2=   'val2'\nKEY3='val3'\n",
            "KEY2",
            Err("whitespace before '=' is not allowed"),
        ),
        ("KEY1='foo'\nKEY2='bar'\n", "KEY3", Ok("")),
        (
            "KEY1='foo#notcomment'\nKEY2='bar'\n",
            "KEY1",
            Ok("foo#notcomment"),
        ),
        (
            "KEY1='   foo bar   '\nKEY2='bar'\n",
            "KEY1",
            Ok("   foo bar   "),
        ),
        ("KEY1='foo'\nKEY2=''\nKEY3='bar'\n", "KEY2", Ok("")),
        (
            "='foo'\nKEY2='bar'\n",
            "KEY2",
            Err("invalid environment variable format"),
        ),
        (
            "KEY1='foo=bar=baz'\nKEY2='bar'\n",
            "KEY1",
            Ok("foo=bar=baz"),
        ),
        ("KEY1='foo'\nKEY2='bar' # comment\n", "KEY2", Ok("bar")),
        ("='foo'\nKEY2='bar'", "KEY2", Err("at line 1")),
        (
            "KEY1='foo$BAR-${HOME}_$'\n",
            "KEY1",
            Ok("foo$BAR-${HOME}_$"),
        ),
        (
            "KEY1='foo'\nINVALID_LINE\nKEY2='bar'\n",
            "KEY2",
            Err("at line 2"),
        ),
        (
            "KEY1='foo'\nKEY2=bar\nKEY3='baz'\n",
            "KEY2",
            Err("value must be enclosed in single quotes"),
        ),
        (
            "KEY1='foo'\nKEY2=\"bar\"\nKEY3='baz'\n",
            "KEY2",
            Err("value must be enclosed in single quotes"),
        ),
        (
            "KEY1='foo''bar'",
            "KEY1",
            Err("unexpected content after closing quote"),
        ),
        (
            "KEY1='foo'\nKEY2='bar\nKEY3='baz'\n",
            "KEY2",
            Err("unexpected content after closing quote"),
        ),
        (
            "KEY1='foo'\nKEY2='bar'baz\nKEY3='baz'\n",
            "KEY2",
            Err("unexpected content after closing quote"),
        ),
        (
            "KEY1='value with \\'nested\\' quotes'\nKEY2='bar'\n",
            "KEY1",
            Err("unexpected content after closing quote"),
        ),
        (
            "KEY1='value with \"nested\" quotes'\nKEY2='bar'\n",
            "KEY1",
            Ok("value with \"nested\" quotes"),
        ),
        ("KEY1='   '\nKEY2='\\t\\n'\nKEY3='bar'\n", "KEY1", Ok("   ")),
        (
            "KEY1='line1\\nline2\\tline3'\nKEY2='bar'\n",
            "KEY1",
            Ok("line1\\nline2\\tline3"),
        ),
        (
            "KEY1='line one\n  line two with spaces\n    line three with more spaces'\nKEY2='bar'\n",
            "KEY1",
            Ok("line one\n  line two with spaces\n    line three with more spaces"),
        ),
        (
            "KEY1='line1\n\nline3 after empty line\n\nline5 after another empty'\nKEY2='bar'\n",
            "KEY1",
            Ok("line1\n\nline3 after empty line\n\nline5 after another empty"),
        ),
    ];

    #[test]
    fn env_files_parse_as_the_kubelet_parses_them() {
        for (text, key, want) in UPSTREAM {
            match (parse(text, key), want) {
                (Ok(value), Ok(want)) => assert_eq!(value, *want, "{text:?}"),
                (Err(error), Err(part)) => assert!(error.contains(part), "{error} ({text:?})"),
                (got, want) => panic!("{text:?} {key}: {got:?}, want {want:?}"),
            }
        }
        // From env_util.go itself: the first line naming the key decides, lines end as
        // bufio.Scanner ends them (a "\r" before "\n" dropped), an unclosed quote at the
        // end of the file is an error.
        assert_eq!(parse("KEY='first'\nKEY='second'", "KEY").unwrap(), "first");
        assert_eq!(parse("A='1'\r\nKEY='2'\r\n", "KEY").unwrap(), "2");
        assert!(parse("KEY='unclosed\nmore", "KEY").is_err());
        assert_eq!(parse("KEY= 'val1'", "KEY").unwrap(), "");
    }
}
