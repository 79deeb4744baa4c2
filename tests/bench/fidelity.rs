//! `hollow-fidelity`: the fidelity oracle from the command line. Starts a local control
//! plane, a Kubemark node and a hollow node, runs the corpus (`tests/oracle/corpus`) on
//! both, and prints the per-pod report and a summary; exits 1 if any difference is
//! unexplained. `--markdown <file>` writes the table `docs/fidelity.md` shows.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hollow_core::testenv::TestEnv;
use hollow_tests::oracle::{self, Options};

/// The same pods on a Kubemark node and a hollow node, compared field by field.
#[derive(Parser)]
struct Args {
    /// The corpus directory.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Only the cases whose file name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Seconds without any pod change after which the pods count as settled.
    #[arg(long, default_value_t = 12)]
    quiet: u64,
    /// Write the Markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    hollow_tests::init_tracing();
    let mut options = Options {
        only: args.only,
        quiet: Duration::from_secs(args.quiet),
        ..Options::default()
    };
    if let Some(corpus) = args.corpus {
        options.corpus = corpus;
    }
    let env = TestEnv::builder().start().await?;
    let report = oracle::run(&env, &options).await;
    env.stop();
    let report = report?;
    print!("{}", report.text());
    if let Some(path) = args.markdown {
        let text = format!(
            "{}\n### The accepted differences\n\n{}",
            report.markdown(),
            oracle::allow::markdown()
        );
        std::fs::write(&path, text)?;
    }
    if report.unexplained() > 0 {
        std::process::exit(1);
    }
    Ok(())
}
