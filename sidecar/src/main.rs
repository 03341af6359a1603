//! The `arca` binary.

use clap::Parser;

fn main() {
    let cli = arca::cli::Cli::parse();
    arca::cli::init_logging(cli.log_format);
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
    {
        Ok(rt) => rt.block_on(arca::cli::run(cli)),
        Err(e) => {
            eprintln!("arca: cannot start the runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}
