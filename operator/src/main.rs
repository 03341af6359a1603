//! `arca-operator`: parse the configuration once, then run the controllers until SIGTERM.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let config = arca_operator::Config::parse();
    if let Err(e) = arca_operator::manager::init_logging(&config) {
        eprintln!("arca-operator: {e}");
        return ExitCode::from(2);
    }
    match arca_operator::manager::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "arca-operator stopped");
            eprintln!("arca-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
