//! Label selectors in the API's string syntax (`k=v,k2!=v2,k3 in (a,b),!k4,k5`), parsed
//! into kube's [`Selector`], so the same syntax selects Nodes by their annotations, as
//! KWOK's `--manage-nodes-with-annotation-selector` does.

use std::collections::BTreeSet;

use kube::core::{Expression, Selector};

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?} at {requirement:?}: {reason}")]
pub struct SelectorError {
    /// The whole selector.
    pub selector: String,
    /// The requirement that does not parse.
    pub requirement: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a selector in the API's string syntax; the empty string selects everything.
///
/// ```
/// use hollow_core::manage::parse_selector;
/// use kube::core::SelectorExt;
///
/// let selector = parse_selector("kwok.x-k8s.io/node=fake, tier in (a, b), !ignored")?;
/// let annotations = [("kwok.x-k8s.io/node", "fake"), ("tier", "a")]
///     .into_iter()
///     .map(|(k, v)| (k.to_string(), v.to_string()))
///     .collect();
/// assert!(selector.matches(&annotations));
/// assert!(parse_selector("a in (b").is_err());
/// # Ok::<(), hollow_core::manage::SelectorError>(())
/// ```
pub fn parse_selector(selector: &str) -> Result<Selector, SelectorError> {
    let mut expressions = Vec::new();
    for requirement in split_requirements(selector) {
        let requirement = requirement.trim();
        if requirement.is_empty() {
            if selector.trim().is_empty() {
                continue;
            }
            return Err(error(selector, requirement, "empty requirement"));
        }
        expressions.push(
            parse_requirement(requirement)
                .map_err(|reason| error(selector, requirement, reason))?,
        );
    }
    Ok(Selector::from_iter(expressions))
}

fn error(selector: &str, requirement: &str, reason: &'static str) -> SelectorError {
    SelectorError {
        selector: selector.to_string(),
        requirement: requirement.to_string(),
        reason,
    }
}

/// Splits at the commas outside parentheses.
fn split_requirements(selector: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (at, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&selector[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
}

fn parse_requirement(requirement: &str) -> Result<Expression, &'static str> {
    if let Some(key) = requirement.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key_of(key)?));
    }
    for (operator, not_equal) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = requirement.split_once(operator) {
            let (key, value) = (key_of(key)?, value_of(value)?);
            return Ok(if not_equal {
                Expression::NotEqual(key, value)
            } else {
                Expression::Equal(key, value)
            });
        }
    }
    let words: Vec<&str> = requirement.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => Ok(Expression::Exists(key_of(key)?)),
        [key, rest] => {
            let rest = rest.trim_start();
            let (not_in, set) = if let Some(set) = rest.strip_prefix("notin") {
                (true, set)
            } else if let Some(set) = rest.strip_prefix("in") {
                (false, set)
            } else {
                return Err("expected =, ==, !=, in or notin after the key");
            };
            let values = set_of(set)?;
            let key = key_of(key)?;
            Ok(if not_in {
                Expression::NotIn(key, values)
            } else {
                Expression::In(key, values)
            })
        }
        _ => Err("empty requirement"),
    }
}

fn set_of(set: &str) -> Result<BTreeSet<String>, &'static str> {
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|set| set.strip_suffix(')'))
        .ok_or("expected a set of values in parentheses")?;
    if inner.trim().is_empty() {
        return Err("the set of values is empty");
    }
    inner
        .split(',')
        .map(|value| match value_of(value)? {
            // Written back, `(,)` would read as `()`: `key=` says it.
            empty if empty.is_empty() => Err("an empty value in a set (write key= for it)"),
            value => Ok(value),
        })
        .collect()
}

/// A qualified name, optionally with a DNS subdomain prefix: `example.com/name`.
fn key_of(key: &str) -> Result<String, &'static str> {
    let key = key.trim();
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let name_ok = !name.is_empty() && name.len() <= 63 && is_name(name);
    let prefix_ok = prefix.is_empty() && !key.contains('/')
        || !prefix.is_empty()
            && prefix.len() <= 253
            && prefix
                .split('.')
                .all(|part| !part.is_empty() && is_dns_label(part));
    if name_ok && prefix_ok {
        Ok(key.to_string())
    } else {
        Err("not a valid key ([prefix/]name)")
    }
}

/// A label value: empty, or up to 63 alphanumerics, '-', '_' and '.', alphanumeric at
/// both ends.
fn value_of(value: &str) -> Result<String, &'static str> {
    let value = value.trim();
    if value.is_empty() || (value.len() <= 63 && is_name(value)) {
        Ok(value.to_string())
    } else {
        Err("not a valid value")
    }
}

fn is_name(name: &str) -> bool {
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alphanumeric(name.chars().next())
        && alphanumeric(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_dns_label(part: &str) -> bool {
    part.len() <= 63
        && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kube::core::SelectorExt;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn every_operator_of_the_api_syntax_parses_and_matches() {
        let selector = parse_selector(
            "type=kwok,zone==a,tier!=db,size in (s, m),arch notin (arm64),gpu,!spot",
        )
        .unwrap();
        let matching = map(&[
            ("type", "kwok"),
            ("zone", "a"),
            ("tier", "web"),
            ("size", "m"),
            ("arch", "amd64"),
            ("gpu", ""),
        ]);
        assert!(selector.matches(&matching));
        for (key, value) in [
            ("type", "real"),
            ("zone", "b"),
            ("tier", "db"),
            ("size", "l"),
            ("arch", "arm64"),
        ] {
            let mut other = matching.clone();
            other.insert(key.into(), value.into());
            assert!(!selector.matches(&other), "{key}={value}");
        }
        let mut spot = matching.clone();
        spot.insert("spot".into(), "true".into());
        assert!(!selector.matches(&spot));
        let mut no_gpu = matching;
        no_gpu.remove("gpu");
        assert!(!selector.matches(&no_gpu));
    }

    #[test]
    fn the_empty_selector_selects_everything() {
        assert!(parse_selector("").unwrap().matches(&map(&[("a", "b")])));
        assert!(parse_selector("  ").unwrap().selects_all());
    }

    #[test]
    fn prefixed_keys_and_empty_values_parse() {
        let selector = parse_selector("kwok.x-k8s.io/node=fake,example.com/empty=").unwrap();
        assert!(selector.matches(&map(&[
            ("kwok.x-k8s.io/node", "fake"),
            ("example.com/empty", "")
        ])));
    }

    #[test]
    fn malformed_selectors_say_which_requirement_is_wrong() {
        for (selector, requirement) in [
            ("a=b,", ""),
            ("a in (b", "a in (b"),
            ("a in ()", "a in ()"),
            ("a in (,)", "a in (,)"),
            ("a notin (b,)", "a notin (b,)"),
            ("a is b", "a is b"),
            ("=b", "=b"),
            ("a=b c", "a=b c"),
            ("Bad_Prefix/x=y", "Bad_Prefix/x=y"),
            ("a/b/c=d", "a/b/c=d"),
            ("-a=b", "-a=b"),
            ("!", "!"),
        ] {
            let error = parse_selector(selector).unwrap_err();
            assert_eq!(error.requirement, requirement, "{selector}: {error}");
            assert!(error.to_string().contains(selector), "{error}");
        }
    }
}
