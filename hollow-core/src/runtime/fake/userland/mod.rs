//! The userland: a small, deterministic shell that runs a container's command when it
//! is a script in a documented subset (`docs/lifecycle.md`, "Containers that run their
//! command"), so a container that says `exit 1` fails and one that echoes its
//! environment logs it.
//!
//! A container's run is worked out, not lived: the script runs at once on a clock that
//! only `sleep` moves, so a `sleep 3600` costs nothing while it waits; the fake keeps
//! only the container's command and environment, and works out its end when it starts
//! and its log when asked (the same script over the same environment gives the same
//! lines at the same offsets).
//!
//! - `lex` splits a script into words and operators, `parse` builds its commands,
//!   `eval` runs them (redirections, control flow), `expand` expands their words,
//!   `builtins` (and `text`) are the commands it knows, `test_expr` is `test`/`[`, `arith` is `$(( ))`, `fs` the
//!   container's files, `watch` finds when a run changes them.
//! - A program it does not know ends the run there: the container runs it until
//!   stopped (an init container completes, as a hollow init container always did), and
//!   its log says so in one line.
//!
//! No crate fitted: brush-parser (a full bash parser) brings insta, cached and bon into
//! every build of the library, for a grammar this module covers in a few hundred lines.

mod arith;
mod builtins;
mod eval;
mod expand;
mod fs;
mod lex;
mod parse;
mod test_expr;
#[cfg(test)]
mod tests;
mod text;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use self::eval::{Io, Shell, Sink, Stop};
pub(crate) use self::fs::{Fs, FsDiff, docroot};
use self::parse::List;
use self::watch::Watch;
use super::streaming::ExecOutput;

/// Commands (and loop passes) a script may run before it counts as running forever.
const COMMAND_BUDGET: u32 = 10_000;
/// The most log lines a worked-out run keeps (its latest).
const LOG_LIMIT: usize = 10_000;
/// How deep a script's syntax may nest (groups, loops, `${...}` words, arithmetic
/// parentheses), and twice that its run (lists, substitutions, nested shells). Scripts
/// nest a few levels; the bound keeps a pod's command from overflowing the stack of
/// the process that serves all its nodes.
const MAX_NESTING: usize = 32;
/// How far ahead a container's end is worked out: a script that sleeps longer runs
/// until stopped.
pub(crate) const HORIZON: Duration = Duration::from_secs(400 * 24 * 3600);

/// Why a script is outside the userland.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsupported(pub(crate) String);

impl Unsupported {
    fn new(why: impl Into<String>) -> Self {
        Unsupported(format!("{} is outside hollow's userland", why.into()))
    }

    fn too_deep(levels: usize) -> Self {
        Unsupported::new(format!("nesting deeper than {levels} levels"))
    }
}

fn parse_script(script: &str) -> Result<List, Unsupported> {
    parse::script(lex::tokens(script)?)
}

/// A log stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout = 0,
    Stderr = 1,
}

/// A line a container wrote, `after` its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLine {
    pub(crate) after: Duration,
    pub(crate) stream: Stream,
    pub(crate) text: String,
}

/// How a worked-out run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The container exits `after` its start with `code`.
    Exit { after: Duration, code: i32 },
    /// From `after` on it runs until stopped; `why`, when it reached a program outside
    /// the userland.
    Forever {
        after: Duration,
        why: Option<String>,
    },
    /// It still runs at the horizon asked for.
    Running,
}

/// A worked-out run: its end and what it logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) end: End,
    pub(crate) log: Vec<LogLine>,
}

/// Whether the userland runs `command` (a container's command and args): a shell's
/// `-c` script, or a command the userland knows. Other programs keep the fake's
/// default behaviour.
pub(crate) fn runs(command: &[String]) -> bool {
    let Some(program) = command.first() else {
        return false;
    };
    let name = program.rsplit('/').next().unwrap_or_default();
    builtins::SHELLS.contains(&name) || KNOWN.contains(&name)
}

/// Programs run as the container's own command (not only inside a script).
const KNOWN: &[&str] = &[
    "sleep", "echo", "printf", "true", "false", "cat", "env", "printenv", "hostname", "ls", "seq",
    "expr", "test", "tail", "touch", "mkdir", "pwd",
];

/// Runs `container`'s command until it ends or its clock passes `horizon`; `log`
/// says whether lines are kept (a run that only wants the end keeps none).
pub(crate) fn run(container: Container<'_>, horizon: Duration, log: bool) -> Run {
    let mut fs = starting_files(container);
    execute(container, &mut fs, horizon, log)
}

/// The file at `path` as `container`'s command left it by `horizon` (none if it is
/// not there).
pub(crate) fn file_at(container: Container<'_>, horizon: Duration, path: &str) -> Option<String> {
    let mut fs = starting_files(container);
    execute(container, &mut fs, horizon, false);
    fs.read(&fs::normalize("/", path)).ok()
}

/// A container as the userland sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Container<'a> {
    pub(crate) image: &'a str,
    pub(crate) command: &'a [String],
    pub(crate) env: &'a [(String, String)],
    pub(crate) hostname: &'a str,
    /// What its volumes hold (absolute path, text; a path ending in `/`: an empty
    /// directory mounted there, hiding what the image has).
    pub(crate) files: &'a [(String, String)],
}

/// The files a container starts with: its image's, its volumes', `/etc/hostname`.
fn starting_files(container: Container<'_>) -> Fs {
    let mut fs = fs::image_files(container.image, container.command);
    // A mount point hides what the image has there.
    for (dir, _) in container.files.iter().filter(|(p, _)| p.ends_with('/')) {
        let dir = fs::normalize("/", dir);
        fs.remove(&dir, true).ok();
        fs.mkdir(&dir, true).ok();
    }
    for (path, text) in container.files.iter().filter(|(p, _)| !p.ends_with('/')) {
        let path = fs::normalize("/", path);
        if let Some((dir, _)) = path.rsplit_once('/') {
            fs.mkdir(if dir.is_empty() { "/" } else { dir }, true).ok();
        }
        fs.write(&path, text, false).ok();
    }
    fs.write("/etc/hostname", &format!("{}\n", container.hostname), false)
        .ok();
    fs
}

/// The files of `container` `after` its start (its image's, then what its command
/// wrote by then), and when its command next changes them (none: not while it runs).
pub(crate) fn files_at(container: Container<'_>, after: Duration) -> (Fs, Option<Duration>) {
    let mut fs = starting_files(container);
    if !runs(container.command) {
        return (fs, None);
    }
    let mut shell = shell(&mut fs, container.env, container.hostname, HORIZON);
    shell.log_limit = 0;
    shell.watch = Some(Watch {
        at: after,
        ..Watch::default()
    });
    let _ = builtins::run(&mut shell, container.command, &log_io());
    let clock = shell.clock;
    let watch = shell.watch.take().unwrap_or_default();
    match watch.snapshot {
        // It ended (or reached the horizon) before `after`: its files stay as it left them.
        None => (fs, None),
        Some(snapshot) => {
            let next = watch
                .next_change
                .or_else(|| (snapshot != fs).then_some(clock));
            (snapshot, next)
        }
    }
}

/// How an exec'd command runs.
#[derive(Debug, Clone)]
pub(crate) struct Exec<'a> {
    pub(crate) env: &'a [(String, String)],
    pub(crate) hostname: &'a str,
    pub(crate) stdin: String,
    /// How far its clock may go.
    pub(crate) horizon: Duration,
    /// Programs with scripted output.
    pub(crate) programs: Option<&'a HashMap<String, ExecOutput>>,
    /// A program outside the userland is not found (`kubectl exec`), rather than
    /// ending the run as one that runs until stopped (a probe: its outcome is unknown).
    pub(crate) unknown_not_found: bool,
}

/// Runs an exec'd `command` in a container whose files are `fs`, changing them as
/// the command does; its output is the run's log.
pub(crate) fn exec(command: &[String], options: Exec<'_>, fs: &mut Fs) -> Run {
    let mut shell = shell(fs, options.env, options.hostname, options.horizon);
    shell.exec_mode = options.unknown_not_found;
    shell.programs = options.programs;
    let io = Io {
        stdin: options.stdin,
        ..log_io()
    };
    let result = builtins::run(&mut shell, command, &io);
    finish(shell, result)
}

fn shell<'a>(
    fs: &'a mut Fs,
    env: &[(String, String)],
    hostname: &'a str,
    horizon: Duration,
) -> Shell<'a> {
    fs.write("/etc/hostname", &format!("{hostname}\n"), false)
        .ok();
    let mut shell = Shell::new(fs, hostname, horizon);
    shell.vars = env.iter().cloned().collect::<BTreeMap<_, _>>();
    shell.exported = shell.vars.keys().cloned().collect();
    shell
}

fn log_io() -> Io {
    Io {
        stdin: String::new(),
        stdout: Sink::Log(Stream::Stdout),
        stderr: Sink::Log(Stream::Stderr),
    }
}

fn execute(container: Container<'_>, fs: &mut Fs, horizon: Duration, log: bool) -> Run {
    let mut shell = shell(fs, container.env, container.hostname, horizon);
    if !log {
        shell.log_limit = 0;
    }
    let result = builtins::run(&mut shell, container.command, &log_io());
    finish(shell, result)
}

fn finish(mut shell: Shell<'_>, result: Result<i32, Stop>) -> Run {
    shell.flush();
    let end = match result {
        Ok(code) | Err(Stop::Exit(code)) => End::Exit {
            after: shell.clock,
            code,
        },
        Err(Stop::Forever(why)) => End::Forever {
            after: shell.clock,
            why,
        },
        Err(Stop::Horizon) => End::Running,
    };
    Run {
        end,
        log: shell.log,
    }
}
