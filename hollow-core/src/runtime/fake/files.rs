//! A container's files as the userland sees them (its image's, then what its command
//! wrote, then what `kubectl exec` changed), and the probes that read them.

use std::time::{Duration, SystemTime};

use super::FakeRuntime;
use super::ids::IdKey;
use super::state::{Container, State};
use super::userland::{self, Exec, Fs, Run};
use crate::error::Result;
use crate::runtime::HeldState;
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
            hostname: self.hostname.as_deref().unwrap_or(&self.pod_name),
            files: &self.files,
        }
    }
}

impl Container {
    /// The container as the userland sees it.
    pub(super) fn view(&self) -> userland::Container<'_> {
        self.held.view()
    }

    /// The container's files at `now` (an exited one's as it left them), and when its
    /// command next changes them.
    pub(super) fn files_at(&self, now: SystemTime) -> (Fs, Option<SystemTime>) {
        let (started_at, until) = match *self.state.get() {
            ContainerState::Running { started_at } => (started_at, now),
            ContainerState::Exited {
                started_at,
                finished_at,
                ..
            } => (started_at, finished_at),
            _ => return (userland::files_at(self.view(), Duration::ZERO).0, None),
        };
        let after = until.duration_since(started_at).unwrap_or_default();
        let (mut fs, next) = userland::files_at(self.view(), after);
        if let Some(diff) = &self.files_diff {
            fs.apply(diff);
        }
        let running = matches!(self.state, HeldState::Running(_));
        (fs, next.filter(|_| running).map(|next| started_at + next))
    }
}

impl State {
    /// The files a container sees at `now`: its own, and those the pod's other
    /// containers wrote in the `emptyDir` volumes it shares with them (where it has
    /// none at that path); and when they next change.
    pub(super) fn pod_files(&self, container_id: &str) -> Result<(Fs, Option<SystemTime>)> {
        let now = SystemTime::now();
        let container = self
            .containers
            .get(container_id)
            .ok_or_else(|| crate::error::Error::not_found("container", container_id))?;
        let (mut fs, mut next) = container.files_at(now);
        let config = container.held.config();
        if !config.shared_dirs.is_empty() {
            let except = IdKey::of(container_id);
            let (shared, changes) =
                self.shared_files(container.sandbox, &config.shared_dirs, except);
            for (path, text) in shared {
                fs.add_missing(&path, &text);
            }
            next = next.into_iter().chain(changes).min();
        }
        Ok((fs, next))
    }

    /// What the containers of sandbox `sandbox` (but `except`) hold in the
    /// `emptyDir` volumes of `shared_dirs` (volume name, mount path), at the paths
    /// they have under those mounts (the latest started last); and when they next
    /// change.
    pub(super) fn shared_files(
        &self,
        sandbox: IdKey,
        shared_dirs: &[(String, String)],
        except: impl Into<Option<IdKey>>,
    ) -> (Vec<(String, String)>, Option<SystemTime>) {
        let now = SystemTime::now();
        let except = except.into();
        let mut sharing: Vec<(IdKey, &Container)> = self
            .containers
            .iter()
            .filter(|(key, c)| {
                c.sandbox == sandbox && Some(*key) != except && !c.held.shared_dirs().is_empty()
            })
            .map(|(key, c)| (key, &**c))
            .collect();
        // Keys order as their ids do (an id begins with its key's hex).
        sharing.sort_by_key(|(key, c)| (started_at(&c.state.get()), *key));
        let mut files = Vec::new();
        let mut next = None;
        for (_, other) in sharing {
            let pairs = other
                .held
                .shared_dirs()
                .iter()
                .filter_map(|(volume, theirs)| {
                    let mine = shared_dirs.iter().find(|(v, _)| v == volume)?;
                    Some((theirs, &mine.1))
                });
            let mut seen = None;
            for (theirs, mine) in pairs {
                let (fs, changes) = seen.get_or_insert_with(|| other.files_at(now));
                next = next.into_iter().chain(*changes).min();
                files.extend(
                    fs.files_under(theirs)
                        .map(|(path, text)| (format!("{mine}/{path}"), text.to_string())),
                );
            }
        }
        (files, next)
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
        let (before, _) = state.pod_files(container_id)?;
        let Some(container) = state.containers.get_mut(container_id) else {
            return Err(crate::error::Error::not_found("container", container_id));
        };
        let mut after = before.clone();
        // Owned: the container's files change below (exec is rare).
        let config = container.held.config().into_owned();
        let options = Exec {
            env: &config.env,
            hostname: config.hostname.as_deref().unwrap_or(&config.pod_name),
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
    /// of a well-known web server image find the page in its files; a TCP probe
    /// connects to a web server's port 80 or a declared port of a program outside the
    /// userland, and is refused by a script the userland runs; anything else is
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
                let until = self.lock().pod_files(container_id)?.1;
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
                let config = container.held.config();
                let Some(root) = userland::docroot(&config.image, &config.command) else {
                    return Ok(ProbeReport::unknown());
                };
                if *port != WEB_PORT {
                    return Ok(ProbeReport::unknown());
                }
                let (files, until) = state.pod_files(container_id)?;
                let outcome = if files.has_file(&page(root, path)) {
                    ProbeOutcome::Success
                } else {
                    ProbeOutcome::Failure {
                        output: "HTTP probe failed with statuscode: 404".into(),
                    }
                };
                Ok(ProbeReport::new(outcome).until(until))
            }
            ProbeAction::TcpSocket { port } => {
                let state = self.lock();
                let container = state.running_container(container_id)?;
                let c = container.held.config();
                let declared = c.ports.contains(port);
                let listens = if userland::docroot(&c.image, &c.command).is_some() {
                    (*port == WEB_PORT || declared).then_some(true)
                } else if userland::runs(&c.command) {
                    // A script the userland runs listens on nothing.
                    Some(false)
                } else {
                    declared.then_some(true)
                };
                let outcome = match listens {
                    None => return Ok(ProbeReport::unknown()),
                    Some(true) => ProbeOutcome::Success,
                    // DoTCPProbe in pkg/probe/tcp/tcp.go: the dial's error.
                    Some(false) => {
                        let ip = state
                            .sandboxes
                            .by_key(container.sandbox)
                            .and_then(|s| s.ip)
                            .map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string());
                        ProbeOutcome::Failure {
                            output: format!("dial tcp {ip}:{port}: connect: connection refused"),
                        }
                    }
                };
                Ok(ProbeReport::new(outcome))
            }
            _ => Ok(ProbeReport::unknown()),
        }
    }
}

/// When a container started (`None`: not yet).
fn started_at(state: &ContainerState) -> Option<SystemTime> {
    match state {
        ContainerState::Running { started_at } | ContainerState::Exited { started_at, .. } => {
            Some(*started_at)
        }
        _ => None,
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
    use crate::runtime::RuntimeService;
    use crate::runtime::types::PodSandboxConfig;

    fn exec(fake: &FakeRuntime, id: &str, script: &str) -> String {
        let command = ["sh", "-c", script].map(String::from);
        let run = fake
            .run_inside(id, &command, String::new(), Caller::Client)
            .unwrap();
        run.log.iter().map(|l| format!("{}\n", l.text)).collect()
    }

    /// A fake with one pod sandbox, and a way to start containers in it.
    async fn sandboxed() -> (FakeRuntime, String) {
        let fake = FakeRuntime::default();
        fake.update_pod_cidr("10.0.0.0/24").await.unwrap();
        let sandbox = fake
            .run_pod_sandbox(&PodSandboxConfig::default())
            .await
            .unwrap();
        (fake, sandbox)
    }

    async fn start_in(fake: &FakeRuntime, sandbox: &str, config: ContainerConfig) -> String {
        let id = fake.create_container(sandbox, &config).await.unwrap();
        fake.start_container(&id).await.unwrap();
        id
    }

    #[tokio::test(start_paused = true)]
    async fn the_containers_of_a_pod_share_their_empty_dirs() {
        let (fake, sandbox) = sandboxed().await;
        let start = |name: &str, image: &str, script: &str, mount: &str| {
            let config = ContainerConfig {
                name: name.into(),
                image: image.into(),
                command: if script.is_empty() {
                    Vec::new()
                } else {
                    ["sh", "-c", script].map(String::from).to_vec()
                },
                files: vec![(format!("{mount}/"), String::new())],
                shared_dirs: vec![("html".into(), mount.into())],
                ..ContainerConfig::default()
            };
            let (fake, sandbox) = (fake.clone(), sandbox.clone());
            async move { start_in(&fake, &sandbox, config).await }
        };
        // An init container writes the page; it has exited when the server starts.
        start("init", "busybox", "echo made > /work/index.html", "/work").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        // What the kubelet would read on the host (a `fileKeyRef`'s file).
        let file = |volume: &'static str, path: &'static str| {
            let (fake, sandbox) = (fake.clone(), sandbox.clone());
            async move { fake.volume_file(&sandbox, volume, path).await.unwrap() }
        };
        assert_eq!(file("html", "index.html").await.as_deref(), Some("made\n"));
        assert_eq!(file("html", "none.html").await, None);
        assert_eq!(file("other", "index.html").await, None);
        assert!(
            fake.volume_file("0000000000000000-x", "html", "index.html")
                .await
                .is_err()
        );
        let docroot = "/usr/share/nginx/html";
        let web = start("web", "nginx", "", docroot).await;
        let page = |path: &str| ProbeAction::HttpGet {
            port: 80,
            path: path.into(),
        };
        assert!(
            fake.probe(&web, &page("/"))
                .await
                .unwrap()
                .outcome
                .is_success()
        );
        assert_eq!(
            exec(&fake, &web, "cat /usr/share/nginx/html/index.html"),
            "made\n"
        );
        // The mount hides what the image had there.
        assert_eq!(
            exec(&fake, &web, "ls /usr/share/nginx/html"),
            "index.html\n"
        );
        // A sidecar sees what another container's exec wrote after it started.
        let side = start("side", "busybox", "sleep 3600", "/data").await;
        exec(&fake, &web, "echo late > /usr/share/nginx/html/late.html");
        assert_eq!(file("html", "late.html").await.as_deref(), Some("late\n"));
        assert_eq!(exec(&fake, &side, "ls /data"), "index.html\nlate.html\n");
        assert!(
            fake.probe(&web, &page("/late.html"))
                .await
                .unwrap()
                .outcome
                .is_success()
        );
        assert!(
            !fake
                .probe(&web, &page("/none.html"))
                .await
                .unwrap()
                .outcome
                .is_success()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tcp_probes_connect_to_what_listens() {
        let (fake, sandbox) = sandboxed().await;
        let started = |image: &str, command: &[&str], ports: Vec<u16>| {
            let config = ContainerConfig {
                image: image.into(),
                command: command.iter().map(|w| w.to_string()).collect(),
                ports,
                ..ContainerConfig::default()
            };
            let (fake, sandbox) = (fake.clone(), sandbox.clone());
            async move { start_in(&fake, &sandbox, config).await }
        };
        let tcp = |port| ProbeAction::TcpSocket { port };
        let web = started("nginx:1.27", &[], vec![]).await;
        let app = started("example.com/app:v1", &["app"], vec![8080]).await;
        let script = started("busybox", &["sleep", "3600"], vec![8080]).await;
        let outcome = |id: String, port| {
            let fake = fake.clone();
            async move { fake.probe(&id, &tcp(port)).await.unwrap().outcome }
        };
        assert!(outcome(web.clone(), 80).await.is_success());
        assert_eq!(outcome(web, 81).await, ProbeOutcome::Unknown);
        assert!(outcome(app.clone(), 8080).await.is_success());
        assert_eq!(outcome(app, 9090).await, ProbeOutcome::Unknown);
        assert_eq!(
            outcome(script, 8080).await,
            ProbeOutcome::Failure {
                output: "dial tcp 10.0.0.2:8080: connect: connection refused".into()
            }
        );
    }

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
