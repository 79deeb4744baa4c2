//! Fuzzing of what the streaming endpoints read from a request before they upgrade
//! it: the exec/attach query, the pod path, the sub-protocol headers. Whatever they
//! hold, nothing panics; a refusal is a 4xx with a message.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use proptest::prelude::*;

use super::*;
use crate::fuzz_support::{corpus, fuzz};
use crate::kubelet_api::query_fuzz::pairs;

const KEYS: &[&str] = &[
    "command",
    "container",
    "input",
    "output",
    "error",
    "tty",
    "stdin",
    "port",
];
const VALUES: &[&str] = &[
    "1", "true", "0", "false", "", "True", "sh", "-c", "ls /", "\0", "80",
];

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(&[Kind::Exec, Kind::Attach][..])
}

fn on(query: &[(String, String)], name: &str) -> bool {
    query
        .iter()
        .any(|(n, v)| n == name && (v == "1" || v == "true"))
}

fn check_refusal(refused: &Response) -> Result<(), TestCaseError> {
    prop_assert!(refused.status().is_client_error(), "{:?}", refused.status());
    Ok(())
}

fn check_exec_query(kind: Kind, query: &[(String, String)]) -> Result<(), TestCaseError> {
    let commands = query.iter().filter(|(n, _)| n == "command").count();
    let (stdin, stdout, tty) = (on(query, "input"), on(query, "output"), on(query, "tty"));
    let stderr = on(query, "error") && !tty;
    match exec_query(kind, query) {
        Ok((options, command)) => {
            prop_assert!(options.stdin || options.stdout || options.stderr);
            prop_assert_eq!(
                (options.stdin, options.stdout, options.stderr, options.tty),
                (stdin, stdout, stderr, tty)
            );
            prop_assert_eq!(command.len(), commands);
            prop_assert!(kind == Kind::Attach || !command.is_empty());
        }
        Err(refused) => {
            check_refusal(&refused)?;
            prop_assert!(!(stdin || stdout || stderr) || (kind == Kind::Exec && commands == 0));
        }
    }
    Ok(())
}

#[test]
fn fuzz_exec_and_attach_queries() {
    let seeds = corpus("exec-query").into_iter().map(|(file, text)| {
        let query: Vec<(String, String)> = text
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        (file, (Kind::Exec, query))
    });
    fuzz(
        file!(),
        seeds,
        (kind(), pairs(KEYS, VALUES)),
        |(kind, query)| check_exec_query(kind, &query),
    );
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(
            prop_oneof![
                4 => "[a-z0-9-]{1,8}",
                1 => Just(String::new()),
                1 => any::<String>(),
                1 => Just("..".to_string()),
            ],
            0..6,
        )
        .prop_map(|segments| segments.join("/")),
        1 => any::<String>(),
    ]
}

#[test]
fn fuzz_streaming_paths() {
    fuzz(
        file!(),
        [],
        (path(), any::<bool>()),
        |(rest, with_container)| {
            let segments = rest.split('/').filter(|s| !s.is_empty()).count();
            match pod_path(&rest, with_container) {
                Ok(found) => {
                    let wanted = if with_container { 3..=4 } else { 2..=3 };
                    prop_assert!(wanted.contains(&segments), "{:?} from {:?}", found, rest);
                    prop_assert_eq!(found.container.is_some(), with_container);
                    prop_assert!(!found.namespace.is_empty() && !found.name.is_empty());
                }
                Err(refused) => {
                    prop_assert_eq!(refused.status(), StatusCode::NOT_FOUND);
                }
            }
            Ok(())
        },
    );
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        prop::sample::select(
            &[
                "SPDY/3.1",
                "spdy/3.1, websocket",
                "Upgrade",
                "keep-alive, upgrade",
                "v4.channel.k8s.io",
                "v5.channel.k8s.io, v4.channel.k8s.io",
                "portforward.k8s.io",
                ",,",
                "",
            ][..]
        )
        .prop_map(HeaderValue::from_static),
        // Any bytes a header value may hold (visible ASCII, tabs, obs-text).
        prop::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..24)
            .prop_map(|bytes| HeaderValue::from_bytes(&bytes).expect("a valid header value")),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                header::CONNECTION,
                header::UPGRADE,
                HeaderName::from_static(PROTOCOL_HEADER),
            ]),
            header_value(),
        ),
        0..6,
    )
    .prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, value);
        }
        map
    })
}

#[test]
fn fuzz_protocol_negotiation() {
    let server = prop::sample::select(&[EXEC_PROTOCOLS, PORT_FORWARD_PROTOCOLS][..]);
    fuzz(file!(), [], (headers(), server), |(headers, server)| {
        match negotiate(&headers, server) {
            Ok(chosen) => prop_assert!(server.contains(&chosen)),
            Err(refused) => {
                check_refusal(&refused)?;
                prop_assert!(
                    matches!(
                        refused.status(),
                        StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN
                    ),
                    "{:?}",
                    refused.status()
                );
            }
        }
        Ok(())
    });
}
