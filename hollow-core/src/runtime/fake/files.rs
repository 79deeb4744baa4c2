//! A container's files as the userland sees them (its image's, then what its command
//! wrote, then what `kubectl exec` changed), and the probes that read them.

use std::time::{Duration, SystemTime};

use super::FakeRuntime;
use super::state::Container;
use super::userland::{self, Exec, Fs, Run};
use crate::error::Result;
use crate::runtime::probe::{ProbeAction, ProbeOutcome, ProbeReport};
use crate::runtime::types::{ContainerConfig, ContainerState};

/// How far an exec probe's clock may run: one that sleeps longer timed out.
const PROBE_HORIZON: Duration = Duration::from_secs(3600);

/// The port well-known web server images listen on.
const WEB_PORT: u16 = 80;

impl ContainerConfig {
    /// The container as the userland sees it.
    pub(super) fn view(&self) -> userland::Container<'_> {
        userland::Container {
            image: &self.image,
            command: &self.command,
            env: &self.env,
            hostname: &self.pod_name,
            files: &self.files,
        }
    }
}

impl Container {
    /// The container as the userland sees it.
    pub(super) fn view(&self) -> userland::Container<'_> {
        self.config.view()
    }

    /// The container's files at `now`, and when its command next changes them.
    pub(super) fn files_at(&self, now: SystemTime) -> (Fs, Option<SystemTime>) {
        let ContainerState::Running { started_at } = self.state else {
            return (userland::files_at(self.view(), Duration::ZERO).0, None);
        };
        let after = now.duration_since(started_at).unwrap_or_default();
        let (mut fs, next) = userland::files_at(self.view(), after);
        if let Some(diff) = &self.files_diff {
            fs.apply(diff);
        }
        (fs, next.map(|next| started_at + next))
    }
}

/// Where an exec'd command comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// `kubectl exec`: a program outside the userland is not found, and a change to
    /// the files tells the engine (its probes may see it).
    Client,
    /// An exec probe: a program outside the userland gives an unknown outcome.
    Prober,
}

impl FakeRuntime {
    /// Runs `command` in a running container's files, keeping what it changed, as
    /// `kubectl exec` or an exec probe does.
    pub(super) fn run_inside(
        &self,
        container_id: &str,
        command: &[String],
        stdin: String,
        caller: Caller,
    ) -> Result<Run> {
        let mut state = self.lock();
        let programs = state.exec_outputs.clone();
        state.running_container(container_id)?;
        let Some(container) = state.containers.get_mut(container_id) else {
            return Err(crate::error::Error::not_found("container", container_id));
        };
        let (before, _) = container.files_at(SystemTime::now());
        let mut after = before.clone();
        let options = Exec {
            env: &container.config.env,
            hostname: &container.config.pod_name,
            stdin,
            horizon: PROBE_HORIZON,
            programs: Some(&programs),
            unknown_not_found: caller == Caller::Client,
        };
        let run = userland::exec(command, options, &mut after);
        let diff = before.diff(&after);
        if diff.is_empty() {
            return Ok(run);
        }
        container
            .files_diff
            .get_or_insert_with(Box::default)
            .merge(diff);
        let event = container.event(container_id);
        drop(state);
        if caller == Caller::Client {
            self.inner.emit(event);
        }
        Ok(run)
    }

    /// One probe of a running container: exec probes run in its userland, HTTP probes
    /// of a well-known web server image find the page in its files; anything else is
    /// unknown.
    pub(super) fn probe_inside(
        &self,
        container_id: &str,
        action: &ProbeAction,
    ) -> Result<ProbeReport> {
        match action {
            ProbeAction::Exec { command } => {
                let known = userland::runs(command)
                    || self.lock().exec_outputs.contains_key(program(command));
                if !known {
                    return Ok(ProbeReport::unknown());
                }
                let run = self.run_inside(container_id, command, String::new(), Caller::Prober)?;
                let until = self
                    .lock()
                    .containers
                    .get(container_id)
                    .and_then(|c| c.files_at(SystemTime::now()).1);
                let output: String = run.log.iter().map(|l| format!("{}\n", l.text)).collect();
                let (outcome, took) = match run.end {
                    userland::End::Exit { code: 0, after } => (ProbeOutcome::Success, after),
                    userland::End::Exit { after, .. } => (ProbeOutcome::Failure { output }, after),
                    userland::End::Forever { why: Some(_), .. } => {
                        (ProbeOutcome::Unknown, Duration::ZERO)
                    }
                    userland::End::Forever { why: None, .. } | userland::End::Running => {
                        let output = "command timed out".into();
                        (ProbeOutcome::Failure { output }, PROBE_HORIZON)
                    }
                };
                Ok(ProbeReport::new(outcome).until(until).took(took))
            }
            ProbeAction::HttpGet { port, path } => {
                let state = self.lock();
                let container = state.running_container(container_id)?;
                let Some(root) =
                    userland::docroot(&container.config.image, &container.config.command)
                else {
                    return Ok(ProbeReport::unknown());
                };
                if *port != WEB_PORT {
                    return Ok(ProbeReport::unknown());
                }
                let (files, until) = container.files_at(SystemTime::now());
                let outcome = if files.has_file(&page(root, path)) {
                    ProbeOutcome::Success
                } else {
                    ProbeOutcome::Failure {
                        output: "HTTP probe failed with statuscode: 404".into(),
                    }
                };
                Ok(ProbeReport::new(outcome).until(until))
            }
            _ => Ok(ProbeReport::unknown()),
        }
    }
}

fn program(command: &[String]) -> &str {
    command
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or_default())
        .unwrap_or_default()
}

/// The file a web server serves for `path` under `root` (`index.html` for a
/// directory), the query left off.
fn page(root: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_start_matches('/');
    let root = root.trim_end_matches('/');
    if path.is_empty() || path.ends_with('/') {
        format!("{root}/{path}index.html")
    } else {
        format!("{root}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_serves_its_index_page() {
        let root = "/usr/share/nginx/html";
        assert_eq!(page(root, "/"), "/usr/share/nginx/html/index.html");
        assert_eq!(
            page(root, "/index.html?x=1"),
            "/usr/share/nginx/html/index.html"
        );
        assert_eq!(page(root, "/a/"), "/usr/share/nginx/html/a/index.html");
        assert_eq!(page("/", "/localhost.crt"), "/localhost.crt");
    }
}
