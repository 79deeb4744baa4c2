//! One control-plane component as a child process: start, stop, kill, and its log.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Component, Error};

/// How many bytes from the end of a component's log an error carries.
const LOG_TAIL_BYTES: u64 = 4096;

/// A component's command line and its (possibly running) process.
#[derive(Debug)]
pub(crate) struct ComponentProcess {
    pub(crate) component: Component,
    binary: PathBuf,
    args: Vec<String>,
    log_path: PathBuf,
    child: Option<Child>,
}

impl ComponentProcess {
    pub(crate) fn new(
        component: Component,
        binary: PathBuf,
        args: Vec<String>,
        log_path: PathBuf,
    ) -> Self {
        Self {
            component,
            binary,
            args,
            log_path,
            child: None,
        }
    }

    /// Starts the process unless it runs already; output is appended to its log.
    pub(crate) fn spawn(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        let io_error = |source| Error::Io {
            context: format!("cannot start {}", self.component),
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io_error)?;
        let log_err = log.try_clone().map_err(io_error)?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| Error::Io {
                context: format!(
                    "cannot start {} from {}",
                    self.component,
                    self.binary.display()
                ),
                source,
            })?;
        tracing::debug!(component = %self.component, pid = child.id(), "started");
        self.child = Some(child);
        Ok(())
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process was started and has not exited.
    pub(crate) fn is_running(&mut self) -> bool {
        self.exit_status().is_none() && self.child.is_some()
    }

    /// The exit status if the process has exited (and reaps it).
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ => None,
        }
    }

    /// If the process has exited: an error saying so, with the tail of its log.
    pub(crate) fn exit_error(&mut self) -> Option<Error> {
        let status = self.exit_status()?;
        Some(self.exited_error(status))
    }

    /// An error saying the component exited, with the tail of its log.
    pub(crate) fn exited_error(&self, status: ExitStatus) -> Error {
        Error::ComponentExited {
            component: self.component,
            status: status.to_string(),
            log_path: self.log_path.clone(),
            log_tail: self.log_tail(),
        }
    }

    /// Asks the process to exit (SIGTERM), then kills it after `grace`.
    pub(crate) fn stop(&mut self, grace: Duration) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(None) = child.try_wait()
            && let Ok(pid) = i32::try_from(child.id())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        self.kill();
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            tracing::debug!(component = %self.component, "stopped");
        }
    }

    /// The last few KiB of the component's log.
    pub(crate) fn log_tail(&self) -> String {
        read_tail(&self.log_path).unwrap_or_else(|err| format!("<cannot read the log: {err}>"))
    }

    pub(crate) fn log_path(&self) -> &PathBuf {
        &self.log_path
    }
}

impl Drop for ComponentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_tail(path: &PathBuf) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    // Start at a line boundary when the tail cut one.
    let text = match (len > LOG_TAIL_BYTES, text.find('\n')) {
        (true, Some(newline)) => &text[newline + 1..],
        _ => &text,
    };
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &tempfile::TempDir) -> ComponentProcess {
        ComponentProcess::new(
            Component::Etcd,
            PathBuf::from("/bin/sh"),
            vec!["-c".into(), "echo hello; exec sleep 30".into()],
            dir.path().join("sleep.log"),
        )
    }

    #[test]
    fn stop_ends_the_process_and_keeps_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut process = sleeper(&dir);
        process.spawn().unwrap();
        assert!(process.is_running());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !process.log_tail().contains("hello") {
            assert!(Instant::now() < deadline, "the process wrote nothing");
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = process.pid().unwrap();
        process.stop(Duration::from_secs(5));
        assert!(!process.is_running());
        assert!(!PathBuf::from(format!("/proc/{pid}")).exists());
        assert!(process.log_tail().contains("hello"));
    }

    #[test]
    fn drop_kills_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut process = sleeper(&dir);
        process.spawn().unwrap();
        let pid = process.pid().unwrap();
        drop(process);
        assert!(!PathBuf::from(format!("/proc/{pid}")).exists());
    }

    #[test]
    fn exit_is_reported_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut process = ComponentProcess::new(
            Component::ApiServer,
            PathBuf::from("/bin/sh"),
            vec!["-c".into(), "echo boom >&2; exit 3".into()],
            dir.path().join("fail.log"),
        );
        process.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = process.exit_status() {
                break status;
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        let message = process.exited_error(status).to_string();
        assert!(message.contains("kube-apiserver"), "{message}");
        assert!(message.contains("boom"), "{message}");
    }

    #[test]
    fn tail_starts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.log");
        let line = "x".repeat(99);
        std::fs::write(&path, format!("{line}\n").repeat(100) + "last\n").unwrap();
        let tail = read_tail(&path).unwrap();
        assert!(tail.len() <= LOG_TAIL_BYTES as usize);
        assert!(tail.starts_with('x') && tail.ends_with("last\n"));
        assert!(tail.lines().all(|l| l == line || l == "last"));
    }
}
