//! Process plumbing shared by hollow's binaries: klog-style verbosity to a log filter,
//! and SIGTERM/SIGINT as a future. Not part of `hollow-core`, which embedders use in
//! their own processes with their own logging and signal handling.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! hollow_cli::init_logging("hollow_kubelet", Some(2));
//! let stop = hollow_cli::shutdown_signal()?;
//! // ... start things ...
//! stop.await;
//! # Ok(()) }
//! ```

/// The log level for klog's `-v=N`, which Kubemark's manifests pass: 0-1 info, 2-4
/// debug, 5 and above trace.
///
/// ```
/// use hollow_cli::log_level;
///
/// assert_eq!(log_level(Some(2)), "debug");
/// assert_eq!(log_level(None), "info");
/// ```
pub fn log_level(verbosity: Option<u8>) -> &'static str {
    match verbosity.unwrap_or(1) {
        0 | 1 => "info",
        2..=4 => "debug",
        _ => "trace",
    }
}

/// Logs to standard error: `RUST_LOG` if set, else warnings from every crate and
/// `-v`'s level from `hollow_core` and `binary` (the binary's crate name, as
/// `hollow_kubelet`).
pub fn init_logging(binary: &str, verbosity: Option<u8>) {
    let level = log_level(verbosity);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        format!("warn,kube_client=off,hollow_core={level},{binary}={level}").into()
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, so a
/// signal that arrives before the future is awaited is not lost (and does not kill the
/// process).
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let stop = hollow_cli::shutdown_signal()?;
/// // ... start things ...
/// stop.await;
/// # Ok(()) }
/// ```
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
