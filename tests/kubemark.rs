//! Kubemark nodes beside hollow ones: the real kubelet code over Kubemark's fake
//! runtime, started as `hollow-bench` and the fidelity oracle need it.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context as _;
use hollow_core::testenv::TestEnv;
use tokio::process::{Child, Command};

/// Starts `program` with `args` in `dir`, its output in `<dir>/<log>.log`; the process
/// is killed when the handle drops.
pub fn spawn_logged(
    program: &Path,
    args: &[String],
    dir: &Path,
    log: &str,
) -> anyhow::Result<Child> {
    let file = std::fs::File::create(dir.join(format!("{log}.log")))?;
    Command::new(program)
        .args(args)
        .env_remove("KUBECONFIG")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (control-plane/install builds it)",
                program.display()
            )
        })
}

/// A port for Kubemark node `index`'s kubelet, below Linux's ephemeral range
/// (32768-60999): an ephemeral port picked free can be taken by an outgoing connection
/// before the kubelet binds it, which once failed a Kubemark node right after 5,000
/// hollow nodes' connections.
pub fn kubelet_port(index: usize) -> anyhow::Result<u16> {
    let first = 20_000 + 8 * index;
    (first..first + 8)
        .filter_map(|port| u16::try_from(port).ok())
        .find(|port| std::net::TcpListener::bind(("0.0.0.0", *port)).is_ok())
        .with_context(|| format!("no free port in {first}..{}", first + 8))
}

/// Starts one Kubemark hollow kubelet (`kubemark --morph=kubelet`) named `name` with
/// `labels` (`key=value,...`), serving its own fake runtime on a socket in `dir`, where
/// its log (`kubemark.log`) and certificates go too. `index` picks its kubelet port.
pub fn start_node(
    env: &TestEnv,
    name: &str,
    labels: &str,
    dir: &Path,
    index: usize,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir)?;
    let args = [
        "--morph=kubelet".to_string(),
        format!("--name={name}"),
        format!("--kubeconfig={}", env.kubeconfig_path().display()),
        format!("--node-labels={labels}"),
        format!("--kubelet-port={}", kubelet_port(index)?),
        "--kubelet-read-only-port=0".into(),
        // Kubemark's own fake image and runtime services, served on this socket, as its
        // hollow-node pods run them.
        "--use-host-image-service=false".into(),
        format!("--containerd=unix://{}", dir.join("cri.sock").display()),
        format!("--cert-dir={}", dir.display()),
    ];
    spawn_logged(&env.binary("kubemark"), &args, dir, "kubemark")
}
