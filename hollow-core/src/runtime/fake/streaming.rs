//! What [`FakeRuntime`](super::FakeRuntime) does for exec, attach and port-forward.
//!
//! Exec runs a command in a tiny built-in shell: `echo`, `cat` (stdin to stdout),
//! `hostname` (the pod's name), `pwd`, `sleep`, `true`, `false`, `exit N` and
//! `sh -c "<one command>"`, plus any program given an [`ExecOutput`]. A program it does
//! not know fails as a missing executable does. Attach streams the container's log as it
//! grows. Port-forward reaches an echo server on every port a running container of the
//! pod declares; other ports refuse the connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::runtime::streaming::{Output, PortStream, Process, ProcessIo};
use crate::runtime::{ContainerState, RuntimeService};

/// The longest `sleep` the fake shell honours.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// How often an attached client is sent the container's new log lines.
const ATTACH_PERIOD: Duration = Duration::from_secs(1);

/// The echo server's buffer per forwarded connection.
const ECHO_BUFFER: usize = 16 * 1024;

/// What a scripted program prints and how it exits, for
/// [`FakeRuntime::set_exec_output`](super::FakeRuntime::set_exec_output).
///
/// ```
/// use hollow_core::runtime::ExecOutput;
///
/// let output = ExecOutput::new().stdout("2026-11-22\n").exit_code(0);
/// assert_eq!(output.stdout, "2026-11-22\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecOutput {
    /// Written to stdout.
    pub stdout: String,
    /// Written to stderr.
    pub stderr: String,
    /// The exit code.
    pub exit_code: i32,
}

impl ExecOutput {
    /// Prints nothing and exits 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prints `text` to stdout.
    #[must_use]
    pub fn stdout(mut self, text: impl Into<String>) -> Self {
        self.stdout = text.into();
        self
    }

    /// Prints `text` to stderr.
    #[must_use]
    pub fn stderr(mut self, text: impl Into<String>) -> Self {
        self.stderr = text.into();
        self
    }

    /// Exits with `code`.
    #[must_use]
    pub fn exit_code(mut self, code: i32) -> Self {
        self.exit_code = code;
        self
    }
}

/// A command prepared for the fake shell.
pub(super) struct FakeShell {
    pub(super) command: Vec<String>,
    pub(super) hostname: String,
    pub(super) scripted: Arc<HashMap<String, ExecOutput>>,
}

#[async_trait]
impl Process for FakeShell {
    async fn run(self: Box<Self>, mut io: ProcessIo) -> Result<i32> {
        let (program, args, in_shell) = match self.command.as_slice() {
            [shell, flag, script, ..] if is_shell(shell) && flag == "-c" => {
                let words: Vec<String> = script.split_whitespace().map(str::to_string).collect();
                let Some((program, args)) = words.split_first() else {
                    return Ok(0);
                };
                (program.clone(), args.to_vec(), true)
            }
            [program, args @ ..] => (program.clone(), args.to_vec(), false),
            [] => return Err(Error::InvalidInput("no command given".into())),
        };
        let name = program.rsplit('/').next().unwrap_or_default().to_string();
        let stdout = &mut io.stdout;
        let stderr = &mut io.stderr;
        if let Some(output) = self.scripted.get(&name) {
            write(stdout, output.stdout.as_bytes()).await?;
            write(stderr, output.stderr.as_bytes()).await?;
            return Ok(output.exit_code);
        }
        match name.as_str() {
            "echo" => {
                let (newline, words) = match args.split_first() {
                    Some((flag, rest)) if flag == "-n" => (false, rest),
                    _ => (true, args.as_slice()),
                };
                let mut text = words.join(" ");
                if newline {
                    text.push('\n');
                }
                write(stdout, text.as_bytes()).await?;
                Ok(0)
            }
            "cat" if args.is_empty() => {
                if let (Some(stdin), Some(stdout)) = (io.stdin.as_mut(), stdout.as_mut()) {
                    copy(stdin, stdout).await?;
                }
                Ok(0)
            }
            "cat" => {
                for file in &args {
                    let message = format!("cat: {file}: No such file or directory\n");
                    write(stderr, message.as_bytes()).await?;
                }
                Ok(1)
            }
            "hostname" => {
                write(stdout, format!("{}\n", self.hostname).as_bytes()).await?;
                Ok(0)
            }
            "pwd" => {
                write(stdout, b"/\n").await?;
                Ok(0)
            }
            "true" => Ok(0),
            "false" => Ok(1),
            "exit" => Ok(args.first().and_then(|c| c.parse().ok()).unwrap_or(0)),
            "sleep" => {
                let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(0.0);
                let wanted = Duration::try_from_secs_f64(seconds).unwrap_or(MAX_SLEEP);
                tokio::time::sleep(wanted.min(MAX_SLEEP)).await;
                Ok(0)
            }
            _ if in_shell => {
                let message = format!("sh: {program}: not found\n");
                write(stderr, message.as_bytes()).await?;
                Ok(127)
            }
            _ => Err(Error::InvalidInput(format!(
                "exec: \"{program}\": executable file not found in $PATH"
            ))),
        }
    }
}

fn is_shell(program: &str) -> bool {
    matches!(
        program.rsplit('/').next(),
        Some("sh" | "bash" | "ash" | "dash")
    )
}

fn io_error(context: &str, error: std::io::Error) -> Error {
    Error::Other {
        context: context.to_string(),
        source: error.into(),
    }
}

/// Writes `bytes` to a client stream, flushed, so they reach the client at once.
async fn put(output: &mut (impl AsyncWrite + Unpin + ?Sized), bytes: &[u8]) -> Result<()> {
    output
        .write_all(bytes)
        .await
        .map_err(|e| io_error("writing output", e))?;
    output
        .flush()
        .await
        .map_err(|e| io_error("writing output", e))
}

async fn write(output: &mut Option<Output>, bytes: &[u8]) -> Result<()> {
    match output.as_mut() {
        Some(output) if !bytes.is_empty() => put(output, bytes).await,
        _ => Ok(()),
    }
}

async fn copy(
    input: &mut (impl AsyncRead + Unpin + ?Sized),
    output: &mut (impl AsyncWrite + Unpin + ?Sized),
) -> Result<()> {
    let mut buffer = vec![0; 8192];
    loop {
        let read = input
            .read(&mut buffer)
            .await
            .map_err(|e| io_error("reading input", e))?;
        if read == 0 {
            return Ok(());
        }
        put(output, &buffer[..read]).await?;
    }
}

/// Attached to a container of `runtime`: its log as it grows, until it stops running.
pub(super) struct FakeAttach<R> {
    pub(super) runtime: R,
    pub(super) container_id: String,
}

#[async_trait]
impl<R: RuntimeService> Process for FakeAttach<R> {
    async fn run(self: Box<Self>, mut io: ProcessIo) -> Result<i32> {
        let mut seen = SystemTime::now();
        let mut ticker = tokio::time::interval(ATTACH_PERIOD);
        loop {
            ticker.tick().await;
            let status = self.runtime.container_status(&self.container_id).await?;
            let lines = self
                .runtime
                .container_logs(&self.container_id, None)
                .await?;
            let since = seen;
            for line in lines.iter().filter(|line| line.time > since) {
                write(&mut io.stdout, format!("{}\n", line.text).as_bytes()).await?;
                seen = seen.max(line.time);
            }
            if !matches!(status.state, ContainerState::Running { .. }) {
                return Ok(0);
            }
        }
    }
}

/// A connection to an echo server: what is written to it comes back.
pub(super) fn echo_connection() -> Box<dyn PortStream> {
    let (client, server) = tokio::io::duplex(ECHO_BUFFER);
    tokio::spawn(async move {
        let (mut reader, mut writer) = tokio::io::split(server);
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
        let _ = writer.shutdown().await;
    });
    Box::new(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(command: &[&str], stdin: &[u8]) -> (i32, String, String) {
        let mut scripted = HashMap::new();
        scripted.insert(
            "date".to_string(),
            ExecOutput::new().stdout("today\n").exit_code(0),
        );
        let shell = Box::new(FakeShell {
            command: command.iter().map(|s| s.to_string()).collect(),
            hostname: "web-0".into(),
            scripted: Arc::new(scripted),
        });
        let (out_writer, mut out_reader) = tokio::io::duplex(1 << 16);
        let (err_writer, mut err_reader) = tokio::io::duplex(1 << 16);
        let io = ProcessIo::new(
            Some(Box::new(std::io::Cursor::new(stdin.to_vec()))),
            Some(Box::new(out_writer)),
            Some(Box::new(err_writer)),
        );
        let code = shell.run(io).await.unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        out_reader.read_to_string(&mut out).await.unwrap();
        err_reader.read_to_string(&mut err).await.unwrap();
        (code, out, err)
    }

    #[tokio::test]
    async fn the_fake_shell_runs_its_builtins_and_scripted_programs() {
        assert_eq!(
            run(&["echo", "a", "b"], b"").await,
            (0, "a b\n".into(), "".into())
        );
        assert_eq!(run(&["echo", "-n", "a"], b"").await.1, "a");
        assert_eq!(run(&["cat"], b"typed\n").await.1, "typed\n");
        assert_eq!(run(&["hostname"], b"").await.1, "web-0\n");
        assert_eq!(run(&["/bin/sh", "-c", "exit 3"], b"").await.0, 3);
        assert_eq!(run(&["false"], b"").await.0, 1);
        assert_eq!(run(&["date"], b"").await.1, "today\n");
        let missing = run(&["sh", "-c", "nope now"], b"").await;
        assert_eq!(
            (missing.0, missing.2.as_str()),
            (127, "sh: nope: not found\n")
        );
        let cat = run(&["cat", "/etc/x"], b"").await;
        assert_eq!(cat.0, 1);
        assert!(cat.2.contains("No such file"));
    }

    #[tokio::test]
    async fn an_unknown_program_fails_like_a_missing_executable() {
        let shell = Box::new(FakeShell {
            command: vec!["nope".into()],
            hostname: String::new(),
            scripted: Arc::default(),
        });
        let error = shell.run(ProcessIo::default()).await.unwrap_err();
        assert!(
            error.to_string().contains("executable file not found"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn echo_connections_send_back_what_they_get() {
        let mut connection = echo_connection();
        connection.write_all(b"ping").await.unwrap();
        let mut back = [0; 4];
        connection.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
    }
}
