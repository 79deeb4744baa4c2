//! Fuzzing of `/containerLogs` queries: read as axum reads them, then into
//! [`LogOptions`]. Whatever the query, nothing panics; a query that cannot be read is
//! a 400 naming the parameter.

use std::time::SystemTime;

use axum::extract::Query;
use axum::http::{StatusCode, Uri};
use proptest::prelude::*;

use super::*;
use crate::fuzz_support::{corpus, fuzz};
use crate::kubelet_api::query_fuzz::{pairs, query_string};

const KEYS: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "limitBytes",
    "sinceSeconds",
    "sinceTime",
];

const VALUES: &[&str] = &[
    "",
    "true",
    "false",
    "1",
    "0",
    "-1",
    "10",
    "1e3",
    "0x10",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "2025-01-01T00:00:00Z",
    "2025-01-01T00:00:00.123456789+02:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "yesterday",
    "١٠",
];

/// The integer parameters, which a query must give as integers.
const INTEGERS: &[&str] = &["tailLines", "limitBytes", "sinceSeconds"];

fn check(raw_query: &str) -> Result<(), TestCaseError> {
    let Ok(uri) = format!("/containerLogs/ns/pod/c?{raw_query}").parse::<Uri>() else {
        // Not a request line a server would receive.
        return Ok(());
    };
    let now = SystemTime::now();
    match Query::<LogQuery>::try_from_uri(&uri) {
        Ok(Query(query)) => {
            let options = LogOptions::new(&query, now);
            if query.since_time.is_none()
                && let Some(since) = options.since
            {
                prop_assert!(since <= now, "{:?}", options);
            }
            prop_assert_eq!(
                options.tail.is_some(),
                query.tail_lines.is_some_and(|t| t >= 0)
            );
            prop_assert_eq!(
                options.limit.is_some(),
                query.limit_bytes.is_some_and(|l| l >= 0)
            );
        }
        Err(rejection) => {
            prop_assert_eq!(rejection.status(), StatusCode::BAD_REQUEST);
            let body = rejection.body_text();
            prop_assert!(
                body.starts_with("Failed to deserialize query string: "),
                "{}",
                body
            );
            prop_assert!(
                KEYS.iter().any(|key| body.contains(key)),
                "the rejection names no parameter: {}",
                body
            );
        }
    }
    Ok(())
}

#[test]
fn fuzz_log_queries() {
    let seeds = corpus("log-query")
        .into_iter()
        .flat_map(|(file, text)| {
            text.lines()
                .map(|line| (file.clone(), line.to_string()))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    let input = prop_oneof![
        4 => pairs(KEYS, VALUES).prop_map(|p| query_string(&p)),
        1 => "[a-zA-Z0-9=&%+._-]{0,40}",
        1 => any::<String>(),
    ];
    fuzz(file!(), seeds, input, |raw| check(&raw));
}

#[test]
fn fuzz_log_query_integers_are_named_when_malformed() {
    let input = (
        prop::sample::select(INTEGERS),
        prop_oneof![
            "[a-z]{1,5}",
            "[1-9][0-9]{19,24}",
            Just(String::new()),
            Just("1.5".to_string())
        ],
    );
    fuzz(file!(), [], input, |(key, value)| {
        let uri: Uri = format!(
            "/containerLogs/ns/pod/c?{}",
            query_string(&[(key.to_string(), value)])
        )
        .parse()
        .expect("an encoded query parses");
        let rejection = Query::<LogQuery>::try_from_uri(&uri).expect_err("not an integer");
        prop_assert!(
            rejection.body_text().contains(key),
            "{}",
            rejection.body_text()
        );
        Ok(())
    });
}
