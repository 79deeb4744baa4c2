//! Starts a real local control plane, reports how long it took, and stops it.
//!
//! ```text
//! control-plane/install && cargo run -p hollow-examples --example local_control_plane
//! ```

use std::time::Instant;

use hollow_core::testenv::TestEnv;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let env = TestEnv::builder().start().await?;
    let ready = started.elapsed();

    let namespaces: Api<Namespace> = Api::all(env.client());
    let names: Vec<String> = namespaces
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|namespace| namespace.metadata.name)
        .collect();
    println!(
        "control plane ready in {:.1}s at {}",
        ready.as_secs_f64(),
        env.server_url()
    );
    println!("namespaces: {}", names.join(", "));
    println!("kubeconfig: {}", env.kubeconfig_path().display());

    let stopping = Instant::now();
    env.stop();
    println!("stopped in {:.1}s", stopping.elapsed().as_secs_f64());
    Ok(())
}
