//! The fidelity oracle in CI: the corpus on a Kubemark node and on a hollow node, and
//! no difference between their statuses, Node objects or pods that the allow-list
//! (`oracle/allow.rs`) does not explain. `hollow-fidelity` prints the same report.

use hollow_core::testenv::TestEnv;
use hollow_tests::oracle::{self, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_pods_and_node_match_kubemark_but_for_explained_differences() {
    hollow_tests::init_tracing();
    let env = TestEnv::builder().start().await.expect("control plane");
    let report = oracle::run(&env, &Options::default())
        .await
        .expect("the oracle ran");
    let text = report.text();
    println!("{text}");
    assert!(report.settled, "the pods never settled:\n{text}");
    assert_eq!(
        report.unexplained(),
        0,
        "differences the allow-list does not explain:\n{text}"
    );
    env.stop();
}
