//! `hollow-proxy`: hollow kube-proxies, a drop-in for `kubemark --morph=proxy`.
//!
//! The proxy engine is not built yet; this binary only parses its command line.

use clap::Parser;

/// Runs hollow kube-proxies (not implemented yet).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The node this proxy serves.
    #[arg(long)]
    name: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "hollow-proxy: the proxy engine is not implemented yet (node {:?})",
        cli.name
    );
    std::process::ExitCode::FAILURE
}
