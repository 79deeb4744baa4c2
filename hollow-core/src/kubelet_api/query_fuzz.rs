//! Query strings for the kubelet API's fuzz tests: random pairs, percent-encoded.

use proptest::prelude::*;

/// `text` percent-encoded, as a client puts it in a query string.
pub(super) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `pairs` as a query string.
pub(super) fn query_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Query pairs: mostly the endpoint's own keys, with near-valid and random values.
pub(super) fn pairs(
    keys: &'static [&'static str],
    values: &'static [&'static str],
) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![
                6 => prop::sample::select(keys).prop_map(str::to_string),
                1 => "[a-zA-Z]{0,10}",
                1 => any::<String>(),
            ],
            prop_oneof![
                4 => prop::sample::select(values).prop_map(str::to_string),
                1 => any::<i64>().prop_map(|n| n.to_string()),
                1 => "[0-9]{19,25}",
                1 => any::<String>(),
            ],
        ),
        0..6,
    )
}
