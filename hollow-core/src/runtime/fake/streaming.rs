//! What [`FakeRuntime`](super::FakeRuntime) does for exec, attach and port-forward.
//!
//! Exec runs a command in the userland (`docs/lifecycle.md`, "Containers that run
//! their command") over the container's files, so what one exec writes or removes the
//! next exec and the container's probes see; programs given an [`ExecOutput`] print
//! it. `cat` alone streams stdin back, and `sh` alone with stdin runs each line as it
//! comes. A program outside the userland fails as a missing executable does (in a
//! script: `sh: X: not found`, 127). Attach streams the container's log as it grows. Port-forward reaches an echo server on every port a running container of the
//! pod declares; other ports refuse the connection.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::FakeRuntime;
use super::files::Caller;
use super::userland::{End, Run, Stream};
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

/// A command `kubectl exec` runs in a container of a [`FakeRuntime`].
pub(super) struct FakeShell {
    pub(super) runtime: FakeRuntime,
    pub(super) container_id: String,
    pub(super) command: Vec<String>,
}

#[async_trait]
impl Process for FakeShell {
    async fn run(self: Box<Self>, mut io: ProcessIo) -> Result<i32> {
        let Some(program) = self.command.first() else {
            return Err(Error::InvalidInput("no command given".into()));
        };
        let name = program.rsplit('/').next().unwrap_or_default();
        let scripted = self.runtime.lock().exec_outputs.contains_key(name);
        if name == "cat" && self.command.len() == 1 && !scripted {
            // Streams what it is sent as it comes (`kubectl exec -i ... cat`).
            if let (Some(stdin), Some(stdout)) = (io.stdin.as_mut(), io.stdout.as_mut()) {
                copy(stdin, stdout).await?;
            }
            return Ok(0);
        }
        if is_shell(program) && self.command.len() == 1 && io.stdin.is_some() {
            return self.interactive(io).await;
        }
        if !scripted && !super::userland::runs(&self.command) {
            return Err(Error::InvalidInput(format!(
                "exec: \"{program}\": executable file not found in $PATH"
            )));
        }
        let stdin = match io.stdin.as_mut() {
            Some(stdin) if !io.tty => read_all(stdin).await?,
            _ => String::new(),
        };
        let run =
            self.runtime
                .run_inside(&self.container_id, &self.command, stdin, Caller::Client)?;
        replay(run, &mut io).await
    }
}

impl FakeShell {
    /// `kubectl exec -it ... sh`: each line the client sends runs as it comes, over
    /// the container's files, until `exit` or the end of input.
    async fn interactive(self: Box<Self>, mut io: ProcessIo) -> Result<i32> {
        let Some(stdin) = io.stdin.take() else {
            return Ok(0);
        };
        let mut lines = tokio::io::BufReader::new(stdin).lines();
        let mut status = 0;
        prompt(&mut io).await?;
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(|e| io_error("reading input", e))?
        {
            let command = vec![self.command[0].clone(), "-c".into(), line];
            let run = self.runtime.run_inside(
                &self.container_id,
                &command,
                String::new(),
                Caller::Client,
            )?;
            let exited = matches!(run.end, End::Exit { .. }) && ends_shell(&command[2]);
            status = replay(run, &mut io).await?;
            if exited {
                return Ok(status);
            }
            prompt(&mut io).await?;
        }
        Ok(status)
    }
}

async fn prompt(io: &mut ProcessIo) -> Result<()> {
    if io.tty {
        write(&mut io.stdout, PROMPT.as_bytes()).await
    } else {
        Ok(())
    }
}

/// The prompt of an interactive shell on a terminal, as busybox's root shell shows it.
const PROMPT: &str = "/ # ";

/// Whether a line run by an interactive shell ends the shell (`exit`).
fn ends_shell(line: &str) -> bool {
    line.split([';', '&', '|'])
        .any(|part| part.split_whitespace().next() == Some("exit"))
}

/// Plays a worked-out run to the client: each line at its moment, then its exit code
/// when it ends (one that runs until stopped is held open for at most [`MAX_SLEEP`]).
async fn replay(run: Run, io: &mut ProcessIo) -> Result<i32> {
    let start = tokio::time::Instant::now();
    let at = |after: Duration| start + after.min(MAX_SLEEP);
    for line in &run.log {
        tokio::time::sleep_until(at(line.after)).await;
        let output = match line.stream {
            Stream::Stdout => &mut io.stdout,
            Stream::Stderr => &mut io.stderr,
        };
        write(output, format!("{}\n", line.text).as_bytes()).await?;
    }
    match run.end {
        End::Exit { after, code } => {
            tokio::time::sleep_until(at(after)).await;
            Ok(code)
        }
        End::Forever { .. } | End::Running => {
            tokio::time::sleep_until(at(MAX_SLEEP)).await;
            Ok(0)
        }
    }
}

/// What a client sends on stdin, to its end (at most [`STDIN_LIMIT`] bytes).
async fn read_all(stdin: &mut (dyn AsyncRead + Send + Unpin)) -> Result<String> {
    let mut bytes = Vec::new();
    stdin
        .take(STDIN_LIMIT)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| io_error("reading input", e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The most stdin an exec'd command reads.
const STDIN_LIMIT: u64 = 1 << 20;

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
    use crate::runtime::probe::{ProbeAction, ProbeOutcome};
    use crate::runtime::types::{ContainerConfig, PodSandboxConfig};

    async fn running(fake: &FakeRuntime, image: &str, command: &[&str]) -> String {
        fake.update_pod_cidr("10.0.0.0/24").await.unwrap();
        let sandbox = fake
            .run_pod_sandbox(&PodSandboxConfig::default())
            .await
            .unwrap();
        let config = ContainerConfig {
            name: "app".into(),
            image: image.into(),
            pod_name: "web-0".into(),
            pod_uid: "uid-web-0".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let id = fake.create_container(&sandbox, &config).await.unwrap();
        fake.start_container(&id).await.unwrap();
        id
    }

    async fn exec(
        fake: &FakeRuntime,
        id: &str,
        command: &[&str],
        stdin: &[u8],
    ) -> (i32, String, String) {
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        let process = fake.exec(id, &command, false).await.unwrap();
        let (out_writer, mut out_reader) = tokio::io::duplex(1 << 16);
        let (err_writer, mut err_reader) = tokio::io::duplex(1 << 16);
        let io = ProcessIo::new(
            Some(Box::new(std::io::Cursor::new(stdin.to_vec()))),
            Some(Box::new(out_writer)),
            Some(Box::new(err_writer)),
        );
        let code = process.run(io).await.unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        out_reader.read_to_string(&mut out).await.unwrap();
        err_reader.read_to_string(&mut err).await.unwrap();
        (code, out, err)
    }

    #[tokio::test(start_paused = true)]
    async fn exec_runs_the_userland_and_scripted_programs() {
        let fake = FakeRuntime::default();
        fake.set_exec_output("date", ExecOutput::new().stdout("today\n"));
        let id = running(&fake, "busybox", &["sleep", "3600"]).await;
        assert_eq!(
            exec(&fake, &id, &["echo", "a", "b"], b"").await,
            (0, "a b\n".into(), "".into())
        );
        assert_eq!(exec(&fake, &id, &["cat"], b"typed\n").await.1, "typed\n");
        assert_eq!(exec(&fake, &id, &["hostname"], b"").await.1, "web-0\n");
        assert_eq!(
            exec(&fake, &id, &["/bin/sh", "-c", "exit 3"], b"").await.0,
            3
        );
        assert_eq!(exec(&fake, &id, &["date"], b"").await.1, "today\n");
        assert_eq!(
            exec(&fake, &id, &["sh", "-c", "date; false"], b"").await,
            (1, "today\n".into(), "".into())
        );
        let missing = exec(&fake, &id, &["sh", "-c", "nope now"], b"").await;
        assert_eq!(
            (missing.0, missing.2.as_str()),
            (127, "sh: nope: not found\n")
        );
        let cat = exec(&fake, &id, &["cat", "/etc/x"], b"").await;
        assert_eq!(cat.0, 1);
        assert!(cat.2.contains("No such file"), "{cat:?}");
        // What one exec writes, the next reads; stdin reaches the command.
        exec(&fake, &id, &["sh", "-c", "cat > /tmp/note"], b"kept\n").await;
        assert_eq!(
            exec(&fake, &id, &["cat", "/tmp/note"], b"").await.1,
            "kept\n"
        );
        // An interactive shell runs each line as it comes.
        let lines = exec(
            &fake,
            &id,
            &["sh"],
            b"echo one > /tmp/two\ncat /tmp/two\nexit 4\necho never\n",
        )
        .await;
        assert_eq!((lines.0, lines.1.as_str()), (4, "one\n"));
    }

    #[tokio::test]
    async fn an_unknown_program_fails_like_a_missing_executable() {
        let fake = FakeRuntime::default();
        let id = running(&fake, "busybox", &["sleep", "3600"]).await;
        let process = fake.exec(&id, &["nope".to_string()], false).await.unwrap();
        let error = process.run(ProcessIo::default()).await.unwrap_err();
        assert!(
            error.to_string().contains("executable file not found"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn probes_see_what_exec_changed() {
        let fake = FakeRuntime::default();
        let id = running(&fake, "registry.k8s.io/e2e-test-images/httpd:2.4.38-4", &[]).await;
        let http = ProbeAction::HttpGet {
            port: 80,
            path: "/index.html".into(),
        };
        assert!(fake.probe(&id, &http).await.unwrap().outcome.is_success());
        let mut events = fake.subscribe().unwrap();
        exec(
            &fake,
            &id,
            &[
                "sh",
                "-c",
                "mv -v /usr/local/apache2/htdocs/index.html /tmp/ || true",
            ],
            b"",
        )
        .await;
        assert!(
            events.try_recv().is_ok(),
            "a change to the files tells the engine"
        );
        assert!(matches!(
            fake.probe(&id, &http).await.unwrap().outcome,
            ProbeOutcome::Failure { .. }
        ));
        exec(
            &fake,
            &id,
            &[
                "sh",
                "-c",
                "mv -v /tmp/index.html /usr/local/apache2/htdocs/ || true",
            ],
            b"",
        )
        .await;
        assert!(fake.probe(&id, &http).await.unwrap().outcome.is_success());
        let other_port = ProbeAction::HttpGet {
            port: 8080,
            path: "/".into(),
        };
        assert_eq!(
            fake.probe(&id, &other_port).await.unwrap().outcome,
            ProbeOutcome::Unknown
        );
        let unknown = ProbeAction::Exec {
            command: vec!["/bin/grpc_health_probe".into()],
        };
        assert_eq!(
            fake.probe(&id, &unknown).await.unwrap().outcome,
            ProbeOutcome::Unknown
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_exec_probe_follows_the_script_and_says_when_it_may_change() {
        let fake = FakeRuntime::default();
        let script = "touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600";
        let id = running(&fake, "busybox", &["/bin/sh", "-c", script]).await;
        let cat = ProbeAction::Exec {
            command: vec!["cat".into(), "/tmp/healthy".into()],
        };
        let report = fake.probe(&id, &cat).await.unwrap();
        assert!(report.outcome.is_success());
        let until = report.until.expect("the script removes the file later");
        let started = match fake.container_status(&id).await.unwrap().state {
            crate::runtime::ContainerState::Running { started_at } => started_at,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            until.duration_since(started).unwrap(),
            Duration::from_secs(30)
        );
        let id2 = running(&fake, "busybox", &["sleep", "3600"]).await;
        let failed = fake.probe(&id2, &cat).await.unwrap();
        assert_eq!(failed.until, None);
        match failed.outcome {
            ProbeOutcome::Failure { output } => {
                assert!(output.contains("No such file"), "{output}")
            }
            other => panic!("{other:?}"),
        }
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
