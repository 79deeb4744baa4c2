//! The shell itself: runs a parsed script over a container's environment and
//! filesystem, on a clock that only `sleep` moves, writing what it prints to the
//! container's log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::super::streaming::ExecOutput;
use super::fs::Fs;
use super::lex::{RedirectKind, Word};
use super::parse::{AndOr, Body, Command, List, Pipeline, Redirect};
use super::watch::Watch;
use super::{LogLine, Stream, Unsupported, builtins};

/// Why a script stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    /// `exit N`, or an error that ends a non-interactive shell.
    Exit(i32),
    /// It runs until stopped from here: `sleep infinity`, `tail -f`, a program outside
    /// the userland (with why), or more commands than the budget allows.
    Forever(Option<String>),
    /// The clock passed the horizon: what comes later is not asked for.
    Horizon,
}

/// Where a command's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sink {
    Log(Stream),
    /// The innermost capture (a command substitution or a pipe).
    Capture,
    File {
        path: String,
        append: bool,
    },
    Null,
}

/// A command's standard streams.
#[derive(Debug, Clone)]
pub(super) struct Io {
    pub(super) stdin: String,
    pub(super) stdout: Sink,
    pub(super) stderr: Sink,
}

/// A shell's state.
pub(super) struct Shell<'a> {
    pub(super) vars: BTreeMap<String, String>,
    /// The variables a command's environment gets (`env` lists them).
    pub(super) exported: BTreeSet<String>,
    pub(super) args: Vec<String>,
    pub(super) status: i32,
    pub(super) clock: Duration,
    pub(super) horizon: Duration,
    pub(super) fs: &'a mut Fs,
    pub(super) cwd: String,
    pub(super) hostname: &'a str,
    /// Commands left before the script counts as running forever.
    pub(super) budget: u32,
    /// `set -e`.
    pub(super) errexit: bool,
    /// Inside an `if`/`while` condition, or before `&&`/`||`: `set -e` does not apply.
    pub(super) conditions: u32,
    pub(super) log: Vec<LogLine>,
    /// The most log lines kept (the oldest are dropped, as rotation would).
    pub(super) log_limit: usize,
    /// A line written without its newline yet, per stream.
    partial: [String; 2],
    pub(super) captures: Vec<String>,
    /// Set to find the files at a moment and when they next change.
    pub(super) watch: Option<Watch>,
    /// Run for `kubectl exec`: a program outside the userland is not found (127)
    /// rather than running until stopped, unless `programs` scripts it.
    pub(super) exec_mode: bool,
    /// Programs with scripted output (`FakeRuntime::set_exec_output`).
    pub(super) programs: Option<&'a HashMap<String, ExecOutput>>,
    /// Lists and word expansions running around the current one.
    depth: usize,
}

impl<'a> Shell<'a> {
    pub(super) fn new(fs: &'a mut Fs, hostname: &'a str, horizon: Duration) -> Self {
        Shell {
            vars: BTreeMap::new(),
            exported: BTreeSet::new(),
            args: vec!["sh".into()],
            status: 0,
            clock: Duration::ZERO,
            horizon,
            fs,
            cwd: "/".into(),
            hostname,
            budget: super::COMMAND_BUDGET,
            errexit: false,
            conditions: 0,
            log: Vec::new(),
            log_limit: super::LOG_LIMIT,
            partial: [String::new(), String::new()],
            captures: Vec::new(),
            watch: None,
            exec_mode: false,
            programs: None,
            depth: 0,
        }
    }

    /// Writes what is left of unfinished lines to the log.
    pub(super) fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.push_line(stream, rest);
            }
        }
    }

    fn push_line(&mut self, stream: Stream, text: String) {
        if self.log_limit == 0 {
            return;
        }
        if self.log.len() >= self.log_limit {
            self.log.remove(0);
        }
        self.log.push(LogLine {
            after: self.clock,
            stream,
            text,
        });
    }

    /// Writes `text` where `sink` says.
    pub(super) fn write(&mut self, sink: &Sink, text: &str) -> Result<(), String> {
        match sink {
            Sink::Null => {}
            Sink::Capture => {
                if let Some(capture) = self.captures.last_mut() {
                    capture.push_str(text);
                }
            }
            Sink::File { path, append } => {
                let path = path.clone();
                self.fs.write(&path, text, *append)?;
            }
            Sink::Log(stream) => {
                let mut pending = std::mem::take(&mut self.partial[*stream as usize]);
                pending.push_str(text);
                let mut lines: Vec<&str> = pending.split('\n').collect();
                let rest = lines.pop().unwrap_or_default().to_string();
                for line in lines {
                    self.push_line(*stream, line.to_string());
                }
                self.partial[*stream as usize] = rest;
            }
        }
        Ok(())
    }

    /// Moves the clock on; stops at the horizon.
    pub(super) fn sleep(&mut self, duration: Duration) -> Result<(), Stop> {
        if let Some(watch) = self.watch.as_mut() {
            watch.sleeps(self.fs, self.clock, duration)?;
        }
        self.clock = self.clock.saturating_add(duration);
        if self.clock > self.horizon {
            self.clock = self.horizon;
            return Err(Stop::Horizon);
        }
        Ok(())
    }

    pub(super) fn run_list(&mut self, list: &List, io: &Io) -> Result<i32, Stop> {
        self.nested(|shell| {
            for and_or in &list.0 {
                shell.run_and_or(and_or, io)?;
            }
            Ok(shell.status)
        })
    }

    /// `run` one level deeper: a run nests through lists, substitutions, nested shells
    /// and `${...}` words, and one nested deeper than the bound runs until stopped.
    pub(super) fn nested<T>(
        &mut self,
        run: impl FnOnce(&mut Self) -> Result<T, Stop>,
    ) -> Result<T, Stop> {
        const MAX_DEPTH: usize = 2 * super::MAX_NESTING;
        if self.depth == MAX_DEPTH {
            return Err(Stop::Forever(Some(Unsupported::too_deep(MAX_DEPTH).0)));
        }
        self.depth += 1;
        let result = run(self);
        self.depth -= 1;
        result
    }

    fn run_and_or(&mut self, and_or: &AndOr, io: &Io) -> Result<i32, Stop> {
        let last = and_or.rest.len();
        let mut status = self.guarded(last > 0, |shell| shell.run_pipeline(&and_or.first, io))?;
        for (index, (and, pipeline)) in and_or.rest.iter().enumerate() {
            if (status == 0) != *and {
                continue;
            }
            status = self.guarded(index + 1 < last, |shell| shell.run_pipeline(pipeline, io))?;
        }
        self.status = status;
        if status != 0 && self.errexit && self.conditions == 0 {
            return Err(Stop::Exit(status));
        }
        Ok(status)
    }

    /// Runs `run` where `set -e` does not apply, if `condition`.
    pub(super) fn guarded(
        &mut self,
        condition: bool,
        run: impl FnOnce(&mut Self) -> Result<i32, Stop>,
    ) -> Result<i32, Stop> {
        if condition {
            self.conditions += 1;
        }
        let result = run(self);
        if condition {
            self.conditions -= 1;
        }
        result
    }

    fn run_pipeline(&mut self, pipeline: &Pipeline, io: &Io) -> Result<i32, Stop> {
        let run = |shell: &mut Self| {
            let mut stdin = io.stdin.clone();
            let last = pipeline.commands.len() - 1;
            let mut status = 0;
            for (index, command) in pipeline.commands.iter().enumerate() {
                if index == last {
                    let io = Io {
                        stdin: std::mem::take(&mut stdin),
                        ..io.clone()
                    };
                    status = shell.run_command(command, &io)?;
                } else {
                    shell.captures.push(String::new());
                    let io = Io {
                        stdin: std::mem::take(&mut stdin),
                        stdout: Sink::Capture,
                        stderr: io.stderr.clone(),
                    };
                    let result = shell.run_command(command, &io);
                    stdin = shell.captures.pop().unwrap_or_default();
                    result?;
                }
            }
            Ok(status)
        };
        if pipeline.negated {
            let status = self.guarded(true, run)?;
            Ok(i32::from(status == 0))
        } else {
            run(self)
        }
    }

    fn run_command(&mut self, command: &Command, io: &Io) -> Result<i32, Stop> {
        self.spend()?;
        let io = match self.redirected(&command.redirects, io)? {
            Ok(io) => io,
            Err(message) => {
                self.write(&io.stderr, &format!("sh: {message}\n")).ok();
                self.status = 1;
                return Ok(1);
            }
        };
        let status = match &command.body {
            Body::Simple { assignments, words } => self.run_simple(assignments, words, &io)?,
            Body::Group(list) => self.run_list(list, &io)?,
            Body::Subshell(list) => {
                let saved = (self.vars.clone(), self.args.clone(), self.cwd.clone());
                let result = self.run_list(list, &io);
                (self.vars, self.args, self.cwd) = saved;
                match result {
                    Ok(status) | Err(Stop::Exit(status)) => status,
                    Err(stop) => return Err(stop),
                }
            }
            Body::If {
                branches,
                otherwise,
            } => {
                let mut status = 0;
                let mut taken = false;
                for (condition, body) in branches {
                    if self.guarded(true, |shell| shell.run_list(condition, &io))? == 0 {
                        status = self.run_list(body, &io)?;
                        taken = true;
                        break;
                    }
                }
                if !taken && let Some(otherwise) = otherwise {
                    status = self.run_list(otherwise, &io)?;
                } else if !taken {
                    status = 0;
                }
                status
            }
            Body::Loop {
                until,
                condition,
                body,
            } => {
                let mut status = 0;
                loop {
                    let tested = self.guarded(true, |shell| shell.run_list(condition, &io))?;
                    if (tested == 0) == *until {
                        break;
                    }
                    status = self.run_list(body, &io)?;
                    self.spend()?;
                }
                status
            }
            Body::For { name, items, body } => {
                let mut values = Vec::new();
                for item in items {
                    values.extend(self.expand(item, true, &io)?);
                }
                let mut status = 0;
                for value in values {
                    self.vars.insert(name.clone(), value);
                    status = self.run_list(body, &io)?;
                    self.spend()?;
                }
                status
            }
        };
        self.status = status;
        Ok(status)
    }

    /// A command, or a loop's pass, costs one of the budget (a loop of nothing but
    /// assignments ends too).
    fn spend(&mut self) -> Result<(), Stop> {
        if self.budget == 0 {
            return Err(Stop::Forever(Some(format!(
                "the script ran {} commands without ending",
                super::COMMAND_BUDGET
            ))));
        }
        self.budget -= 1;
        Ok(())
    }

    /// `io` with `redirects` applied; the inner error is the shell's message for a
    /// redirection that fails (the command then does not run, with status 1).
    fn redirected(&mut self, redirects: &[Redirect], io: &Io) -> Result<Result<Io, String>, Stop> {
        let mut targets = Vec::new();
        for redirect in redirects {
            targets.push(match &redirect.target {
                Some(word) => {
                    let text = self.expand_one(word, io)?;
                    Some(self.path(&text))
                }
                None => None,
            });
        }
        Ok(self.apply_redirects(redirects, targets, io))
    }

    fn apply_redirects(
        &mut self,
        redirects: &[Redirect],
        targets: Vec<Option<String>>,
        io: &Io,
    ) -> Result<Io, String> {
        let mut io = io.clone();
        for (redirect, target) in redirects.iter().zip(targets) {
            let sink = match (&redirect.kind, target) {
                (RedirectKind::Read, Some(path)) => {
                    io.stdin = self.fs.read(&path)?;
                    continue;
                }
                (RedirectKind::Duplicate(0), _) => continue,
                (RedirectKind::Duplicate(1), _) => io.stdout.clone(),
                (RedirectKind::Duplicate(2), _) => io.stderr.clone(),
                (RedirectKind::Write | RedirectKind::Append, Some(path)) if path == "/dev/null" => {
                    Sink::Null
                }
                (RedirectKind::Write, Some(path)) => {
                    self.fs.write(&path, "", false)?;
                    Sink::File { path, append: true }
                }
                (RedirectKind::Append, Some(path)) => {
                    self.fs.write(&path, "", true)?;
                    Sink::File { path, append: true }
                }
                (kind, _) => return Err(format!("unsupported redirection {kind:?}")),
            };
            match redirect.fd {
                1 => io.stdout = sink,
                2 => io.stderr = sink,
                fd => return Err(format!("{fd}: bad file descriptor")),
            }
        }
        Ok(io)
    }

    fn run_simple(
        &mut self,
        assignments: &[(String, Word)],
        words: &[Word],
        io: &Io,
    ) -> Result<i32, Stop> {
        let mut argv = Vec::new();
        for word in words {
            argv.extend(self.expand(word, true, io)?);
        }
        let mut values = Vec::new();
        for (name, word) in assignments {
            values.push((name.clone(), self.expand_one(word, io)?));
        }
        if argv.is_empty() {
            self.vars.extend(values);
            return Ok(self.status);
        }
        // Assignments before a command apply to it alone (its environment).
        let saved: Vec<(String, Option<String>)> = values
            .iter()
            .map(|(name, _)| (name.clone(), self.vars.get(name).cloned()))
            .collect();
        let newly_exported: Vec<String> = values
            .iter()
            .filter(|(name, _)| !self.exported.contains(name))
            .map(|(name, _)| name.clone())
            .collect();
        self.exported.extend(newly_exported.iter().cloned());
        self.vars.extend(values);
        let result = builtins::run(self, &argv, io);
        for (name, value) in saved {
            match value {
                Some(value) => self.vars.insert(name, value),
                None => self.vars.remove(&name),
            };
        }
        for name in newly_exported {
            self.exported.remove(&name);
        }
        result
    }

    /// An absolute, normalised path.
    pub(super) fn path(&self, path: &str) -> String {
        super::fs::normalize(&self.cwd, path)
    }
}
