//! The benchmark runner's quick mode as a smoke test: every simulator runs and every
//! figure is produced. Speed and memory are judged in docs/benchmarks.md, not here.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_hollow-bench");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_benchmark_produces_every_figure() -> anyhow::Result<()> {
    let beside = std::path::Path::new(BENCH).with_file_name("hollow-kubelet");
    assert!(
        beside.exists(),
        "{} is missing: run `cargo build -p hollow-kubelet` (scripts/test builds it)",
        beside.display()
    );
    let out = tempfile::tempdir()?;
    let status = tokio::time::timeout(
        Duration::from_secs(900),
        Command::new(BENCH)
            .args(["--quick", "--out"])
            .arg(out.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .expect("the quick benchmark did not finish within 15 minutes")?;
    assert!(status.success(), "hollow-bench --quick failed: {status}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json"))?)?;
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let simulators: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["simulator"].as_str())
        .collect();
    assert_eq!(simulators, ["hollow", "kwok", "kubemark"]);
    for scenario in scenarios {
        let name = &scenario["simulator"];
        assert_eq!(
            scenario["errors"],
            serde_json::json!([]),
            "{name}: {scenario}"
        );
        for figure in [
            "ready_seconds",
            "idle",
            "with_pods",
            "apiserver",
            "leases",
            "pods_scheduled",
            "pods_direct",
            "soak",
        ] {
            assert!(
                !scenario[figure].is_null(),
                "{name}: no {figure}: {scenario}"
            );
        }
        assert!(
            scenario["idle"]["pss_per_node"].as_f64().unwrap() > 0.0,
            "{name}"
        );
        assert!(
            scenario["pods_scheduled"]["p99_seconds"].as_f64().is_some(),
            "{name}"
        );
        assert!(
            !scenario["soak"]["samples"].as_array().unwrap().is_empty(),
            "{name}: a soak without samples"
        );
    }
    for file in [
        "results.md",
        "memory-per-node.png",
        "pod-latency-p99.png",
        "soak-memory.png",
    ] {
        let size = std::fs::metadata(out.path().join(file))?.len();
        assert!(size > 0, "{file} is empty");
    }
    Ok(())
}
