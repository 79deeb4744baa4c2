//! A watch's events read from its response body a line at a time, holding nothing
//! between events.
//!
//! kube's `Client::request_events` frames lines in an 8 KiB buffer that each watch keeps
//! for its whole life. A node of the kubelet profile holds five or more watches that
//! wait nearly all the time (40 KiB a node, half its heap, measured with `hollow-heap`),
//! so here only a line not yet complete is buffered, and an empty buffer holds no
//! allocation.

use http_body_util::BodyExt;
use kube::core::{Status, WatchEvent};
use serde::de::DeserializeOwned;

/// The events of one watch request.
pub(crate) struct Events<B = kube::client::Body> {
    body: B,
    /// Bytes received after the last complete line.
    partial: Vec<u8>,
}

impl Events {
    /// Sends the watch request; an error response is the API's error, as kube reports it.
    pub(crate) async fn open(
        client: &kube::Client,
        request: http::Request<Vec<u8>>,
    ) -> Result<Self, kube::Error> {
        let response = client.send(request.map(kube::client::Body::from)).await?;
        let status = response.status();
        let body = response.into_body();
        if status.is_client_error() || status.is_server_error() {
            let bytes = body.collect().await?.to_bytes();
            let error = serde_json::from_slice::<Status>(&bytes).unwrap_or_else(|_| {
                Status::failure(
                    &String::from_utf8_lossy(&bytes),
                    "Failed to parse error data",
                )
                .with_code(status.as_u16())
            });
            return Err(kube::Error::Api(error.boxed()));
        }
        Ok(Self::new(body))
    }
}

impl<B> Events<B>
where
    B: http_body::Body + Unpin,
    B::Data: AsRef<[u8]>,
    B::Error: std::fmt::Display,
{
    fn new(body: B) -> Self {
        Self {
            body,
            partial: Vec::new(),
        }
    }

    /// The next event; `None` once the server ended the watch (or the connection
    /// dropped, which the caller resumes from the last version, as kube does).
    pub(crate) async fn next<T: DeserializeOwned + Clone>(
        &mut self,
    ) -> Result<Option<WatchEvent<T>>, kube::Error> {
        loop {
            if let Some(line) = self.take_line() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse(&line).map(Some);
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(error)) => {
                    tracing::debug!(%error, "a watch's body ended early");
                    return Ok(None);
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.partial.extend_from_slice(data.as_ref());
                    }
                }
            }
        }
    }

    /// The first complete line buffered, its newline included; what follows stays, in a
    /// buffer of its own size (none when nothing follows).
    fn take_line(&mut self) -> Option<Vec<u8>> {
        let end = self.partial.iter().position(|b| *b == b'\n')? + 1;
        let rest = self.partial.split_off(end);
        Some(std::mem::replace(&mut self.partial, rest))
    }
}

fn parse<T: DeserializeOwned + Clone>(line: &[u8]) -> Result<WatchEvent<T>, kube::Error> {
    serde_json::from_slice::<WatchEvent<T>>(line).map_err(|error| {
        match serde_json::from_slice::<Status>(line) {
            Ok(status) => kube::Error::Api(status.boxed()),
            Err(_) => kube::Error::SerdeError(error),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Chunk = Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>;

    fn events(
        chunks: &[&str],
    ) -> Events<http_body_util::StreamBody<futures::stream::Iter<std::vec::IntoIter<Chunk>>>> {
        let chunks: Vec<Chunk> = chunks
            .iter()
            .map(|c| Ok(http_body::Frame::data(bytes::Bytes::from(c.to_string()))))
            .collect();
        Events::new(http_body_util::StreamBody::new(futures::stream::iter(
            chunks,
        )))
    }

    #[tokio::test]
    async fn lines_split_across_and_within_chunks_are_events_and_nothing_is_kept() {
        let added = r#"{"type":"ADDED","object":{"metadata":{"resourceVersion":"1"}}}"#;
        let deleted = r#"{"type":"DELETED","object":{"metadata":{"resourceVersion":"2"}}}"#;
        let (head, tail) = added.split_at(20);
        let mut events = events(&[head, &format!("{tail}\n{deleted}\n"), "\n"]);
        let first = events.next::<serde_json::Value>().await.unwrap();
        assert!(matches!(first, Some(WatchEvent::Added(_))), "{first:?}");
        let second = events.next::<serde_json::Value>().await.unwrap();
        assert!(matches!(second, Some(WatchEvent::Deleted(_))), "{second:?}");
        assert_eq!(events.partial.capacity(), 0, "nothing held between events");
        assert!(events.next::<serde_json::Value>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_error_status_in_the_stream_is_the_api_error() {
        let expired = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old","reason":"Expired","code":410}"#;
        let mut events = events(&[&format!("{expired}\n")]);
        match events.next::<serde_json::Value>().await {
            Ok(Some(WatchEvent::Error(status))) => assert_eq!(status.code, 410),
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 410),
            other => panic!("{other:?}"),
        }
    }
}
