//! Streaming lists (`sendInitialEvents=true`) and the API servers that refuse them.
//!
//! A node's watches start with a streaming list, as a 1.36 kubelet's informers do
//! (client-go's `WatchListClient`). An API server with its `WatchList` gate off
//! refuses the parameter as invalid (k8s.io/apimachinery
//! `pkg/apis/meta/internalversion/validation/validation.go`: "sendInitialEvents is
//! forbidden for watch unless the WatchList feature gate is enabled", a 422), and
//! client-go's reflector then lists the usual way (k8s.io/client-go
//! `tools/cache/reflector.go`, `ListAndWatchWithContext`). hollow does the same, for
//! the rest of the watch's life: an API server's gates do not change while it runs.

use kube::runtime::watcher;

/// Whether the API server refused a streaming list's parameters: the request was
/// invalid (422) or bad (400), not failed (a timeout, a 5xx or a 429 is tried again as
/// it was).
pub(crate) fn refused(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 422 || status.code == 400)
}

/// Whether a watcher's start failed because the API server refused its streaming list.
pub(crate) fn watcher_refused(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchStartFailed(error) if refused(error))
}

/// A watcher's configuration: a streaming list, or (once refused) a list.
pub(crate) fn config(streaming: bool) -> watcher::Config {
    let config = watcher::Config::default();
    if streaming {
        config.streaming_lists()
    } else {
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            Status::failure("refused", "Invalid").with_code(code),
        ))
    }

    #[test]
    fn only_a_refusal_of_the_parameters_falls_back() {
        assert!(refused(&api_error(422)));
        assert!(refused(&api_error(400)));
        for transient in [429, 500, 503, 504, 403, 410] {
            assert!(!refused(&api_error(transient)), "{transient}");
        }
        assert!(watcher_refused(&watcher::Error::WatchStartFailed(
            api_error(422)
        )));
        assert!(!watcher_refused(&watcher::Error::WatchFailed(api_error(
            422
        ))));
    }

    #[test]
    fn a_refused_streaming_list_becomes_a_list() {
        assert_eq!(
            config(true).initial_list_strategy,
            watcher::InitialListStrategy::StreamingList
        );
        assert_eq!(
            config(false).initial_list_strategy,
            watcher::InitialListStrategy::ListWatch
        );
    }
}
