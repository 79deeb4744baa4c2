//! Requests spread over a pool's HTTP/2 connections by the streams each has open
//! (see [`ConnectionPool`](super::ConnectionPool)).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ConnectionPool;

/// The connection a request goes to, given each one's streams open: the first with
/// fewer than [`ConnectionPool::REQUESTS_PER_CONNECTION`]; else `None`, for a new one.
pub(super) fn fill_first(mut in_flight: impl Iterator<Item = usize>) -> Option<usize> {
    in_flight.position(|open| open < ConnectionPool::REQUESTS_PER_CONNECTION)
}

/// Requests spread over HTTP/2 connections, each a client of its own: the first not
/// full takes a request; when all are, another is made (up to `max`), else the least
/// busy takes it.
pub(super) struct Spread<S, F> {
    pub(super) clients: Arc<parking_lot::Mutex<Vec<Counted<S>>>>,
    pub(super) make: Arc<F>,
    pub(super) max: usize,
}

impl<S, F> Clone for Spread<S, F> {
    fn clone(&self) -> Self {
        Self {
            clients: self.clients.clone(),
            make: self.make.clone(),
            max: self.max,
        }
    }
}

impl<S, F> Spread<S, F>
where
    S: Clone,
    F: Fn() -> Counted<S>,
{
    /// The client the next request goes to.
    fn pick(&self) -> Counted<S> {
        let mut clients = self.clients.lock();
        let open = || clients.iter().map(Counted::in_flight);
        if let Some(index) = fill_first(open()) {
            return clients[index].clone();
        }
        if clients.len() < self.max {
            let client = (self.make)();
            clients.push(client.clone());
            return client;
        }
        let least = open()
            .enumerate()
            .min_by_key(|&(_, open)| open)
            .map_or(0, |(index, _)| index);
        clients[least].clone()
    }
}

impl<S, F, R, B> tower::Service<R> for Spread<S, F>
where
    S: tower::Service<R, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
    B: Send + 'static,
    F: Fn() -> Counted<S>,
{
    type Response = http::Response<Open<B>>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        // hyper's client is always ready (its `poll_ready` answers at once), so the
        // request is handed over, and counted on its connection, at once: the next
        // request's pick sees it.
        self.pick().call(request)
    }
}

/// A service that counts its calls whose response or body has not yet been dropped.
#[derive(Clone)]
pub(super) struct Counted<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
}

impl<S> Counted<S> {
    pub(super) fn new(inner: S) -> Self {
        Self {
            inner,
            in_flight: Arc::default(),
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a call in flight until dropped, however the call ends.
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, R, B> tower::Service<R> for Counted<S>
where
    S: tower::Service<R, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Open<B>>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_flight = InFlight::enter(&self.in_flight);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Open {
                body,
                _stream: in_flight,
            }))
        })
    }
}

/// A response's body, which keeps its stream counted on its connection until it is
/// dropped: a watch holds an HTTP/2 stream as long as it runs, and an API server
/// allows a connection only so many (100 by default, `--http2-max-streams-per-connection`),
/// so the streams a connection carries are what decides where the next request goes.
pub struct Open<B> {
    body: B,
    _stream: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Open<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Service, ServiceExt};

    #[test]
    fn requests_fill_the_first_connection_not_full() {
        let full = ConnectionPool::REQUESTS_PER_CONNECTION;
        assert_eq!(fill_first([0, 0, 0].into_iter()), Some(0));
        assert_eq!(fill_first([full - 1, 0].into_iter()), Some(0));
        assert_eq!(fill_first([full, full + 3, 2].into_iter()), Some(2));
        assert_eq!(fill_first([full + 5, full + 1].into_iter()), None);
    }

    #[tokio::test]
    async fn a_new_connection_is_made_when_all_are_full_up_to_the_most_allowed() {
        let made = Arc::new(AtomicUsize::new(0));
        let count = made.clone();
        let make = move || {
            count.fetch_add(1, Ordering::Relaxed);
            Counted::new(tower::service_fn(|_: ()| async {
                Ok::<_, &str>(http::Response::new(
                    http_body_util::Empty::<&'static [u8]>::new(),
                ))
            }))
        };
        let mut spread = Spread {
            clients: Arc::new(parking_lot::Mutex::new(vec![make()])),
            make: Arc::new(make),
            max: 2,
        };
        // Bodies held open, as watches hold their streams.
        let mut open = Vec::new();
        for _ in 0..ConnectionPool::REQUESTS_PER_CONNECTION {
            open.push(spread.ready().await.unwrap().call(()).await.unwrap());
        }
        assert_eq!(made.load(Ordering::Relaxed), 1);
        open.push(spread.ready().await.unwrap().call(()).await.unwrap());
        assert_eq!(
            made.load(Ordering::Relaxed),
            2,
            "a second connection for the 65th"
        );
        for _ in 0..ConnectionPool::REQUESTS_PER_CONNECTION {
            open.push(spread.ready().await.unwrap().call(()).await.unwrap());
        }
        assert_eq!(
            made.load(Ordering::Relaxed),
            2,
            "no more than the most allowed"
        );
        let in_flight: Vec<usize> = spread
            .clients
            .lock()
            .iter()
            .map(Counted::in_flight)
            .collect();
        assert_eq!(in_flight, [65, 64], "then the least busy");
    }

    #[tokio::test]
    async fn a_request_counts_until_its_body_or_the_request_is_dropped() {
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let answered = futures::future::FutureExt::shared(answered);
        let mut counted = Counted::new(tower::service_fn(move |_: ()| {
            let answered = answered.clone();
            async move {
                answered.await.map_err(|_| "never answered")?;
                Ok::<_, &str>(http::Response::new(
                    http_body_util::Empty::<&'static [u8]>::new(),
                ))
            }
        }));
        let dropped = counted.ready().await.unwrap().call(());
        let answered = counted.ready().await.unwrap().call(());
        assert_eq!(counted.in_flight(), 2);
        drop(dropped);
        assert_eq!(counted.in_flight(), 1);
        answer.send(()).unwrap();
        let response = answered.await.unwrap();
        assert_eq!(counted.in_flight(), 1, "a body being read holds its stream");
        drop(response);
        assert_eq!(counted.in_flight(), 0);
    }
}
