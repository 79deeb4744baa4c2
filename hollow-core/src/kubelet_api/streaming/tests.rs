//! Unit tests of `streaming`.

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

#[test]
fn protocols_are_negotiated_as_the_kubelet_does() {
    let upgrade = [("connection", "Upgrade"), ("upgrade", "SPDY/3.1")];
    let offer = |protocols: &[&str]| {
        let mut pairs = upgrade.to_vec();
        pairs.extend(protocols.iter().map(|p| (PROTOCOL_HEADER, *p)));
        negotiate(&headers(&pairs), EXEC_PROTOCOLS)
    };
    assert_eq!(
        offer(&["v4.channel.k8s.io", "v3.channel.k8s.io"]).unwrap(),
        "v4.channel.k8s.io"
    );
    assert_eq!(
        offer(&["v9.x", "v2.channel.k8s.io"]).unwrap(),
        "v2.channel.k8s.io"
    );
    assert_eq!(offer(&[]).unwrap(), "channel.k8s.io");
    let refused = offer(&["v9.x"]).unwrap_err();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.headers().get(ACCEPTED_HEADER).is_some());
    let websocket = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
    assert_eq!(
        negotiate(&websocket, EXEC_PROTOCOLS).unwrap_err().status(),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn exit_codes_travel_in_the_status_as_kubectl_reads_them() {
    assert_eq!(status_of(&Ok(0), &[])["status"], "Success");
    let failed = status_of(&Ok(3), &["false".into()]);
    assert_eq!(failed["reason"], "NonZeroExitCode");
    assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(failed["details"]["causes"][0]["message"], "3");
    let broken = status_of(&Err(crate::Error::InvalidInput("x".into())), &[]);
    assert_eq!(broken["reason"], "InternalError");
    assert_eq!(broken["code"], 500);
}
