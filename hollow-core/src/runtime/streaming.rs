//! What `kubectl exec`, `kubectl attach` and `kubectl port-forward` reach in a runtime.
//!
//! The kubelet API asks the runtime to prepare a [`Process`] (for exec and attach) or to
//! open a [`PortStream`] (for port-forward), then carries the bytes between it and the
//! client. A runtime that offers none of them keeps the trait's defaults, which answer
//! [`Error::Unsupported`](crate::Error::Unsupported): the client is told
//! "exec is not supported by this runtime".

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::error::Result;

/// A reader of the client's input (stdin).
pub type Input = Box<dyn AsyncRead + Send + Unpin>;

/// A writer to the client (stdout or stderr). Dropping it ends that stream.
pub type Output = Box<dyn AsyncWrite + Send + Unpin>;

/// A terminal's size, as the client reports it when it resizes (`tty` sessions only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// The client's streams, as the request asked for them.
///
/// ```
/// use hollow_core::runtime::ProcessIo;
///
/// let io = ProcessIo::default();
/// assert!(io.stdin.is_none() && io.stdout.is_none() && !io.tty);
/// ```
#[derive(Default)]
#[non_exhaustive]
pub struct ProcessIo {
    /// The client's input, if it sends any (`kubectl exec -i`).
    pub stdin: Option<Input>,
    /// Standard output (with `tty`, the terminal).
    pub stdout: Option<Output>,
    /// Standard error (never with `tty`).
    pub stderr: Option<Output>,
    /// Whether the client asked for a terminal.
    pub tty: bool,
    /// Terminal resizes, with `tty`.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

impl ProcessIo {
    /// Streams for a process: input, output and error, each optional.
    ///
    /// ```
    /// use hollow_core::runtime::ProcessIo;
    ///
    /// let io = ProcessIo::new(None, Some(Box::new(Vec::<u8>::new())), None);
    /// assert!(io.stdout.is_some());
    /// ```
    pub fn new(stdin: Option<Input>, stdout: Option<Output>, stderr: Option<Output>) -> Self {
        Self {
            stdin,
            stdout,
            stderr,
            tty: false,
            resize: None,
        }
    }

    /// With a terminal, and the resizes the client sends.
    #[must_use]
    pub fn with_tty(mut self, resize: Option<mpsc::Receiver<TerminalSize>>) -> Self {
        self.tty = true;
        self.resize = resize;
        self
    }
}

impl std::fmt::Debug for ProcessIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessIo")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("tty", &self.tty)
            .finish()
    }
}

/// A prepared exec or attach: runs with the client's streams until it ends.
///
/// ```
/// use async_trait::async_trait;
/// use hollow_core::runtime::{Process, ProcessIo};
/// use tokio::io::AsyncWriteExt;
///
/// /// Prints a greeting and exits 0.
/// struct Hello;
///
/// #[async_trait]
/// impl Process for Hello {
///     async fn run(self: Box<Self>, io: ProcessIo) -> hollow_core::Result<i32> {
///         if let Some(mut stdout) = io.stdout {
///             stdout.write_all(b"hello\n").await.map_err(|e| hollow_core::Error::Other {
///                 context: "writing stdout".into(),
///                 source: e.into(),
///             })?;
///         }
///         Ok(0)
///     }
/// }
/// ```
#[async_trait]
pub trait Process: Send {
    /// Runs to the end and returns the exit code (0 for success). An error is reported
    /// to the client as the kubelet reports a runtime failure ("error executing command
    /// in container: ...").
    async fn run(self: Box<Self>, io: ProcessIo) -> Result<i32>;
}

/// A connection to a port in a pod's network, as port-forward opens one.
pub trait PortStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> PortStream for T {}
