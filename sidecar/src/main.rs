//! The `arca` binary.

use clap::Parser;

/// Keep glibc from hoarding the streaming buffers.
///
/// NB: glibc raises its mmap threshold (up to 32 MiB) each time an mmapped block is freed,
/// after which the 8 MiB S3 parts and zstd buffers freed on worker threads pile up in
/// per-thread arenas: peak RSS doubled in measurements. A fixed 1 MiB threshold keeps large
/// buffers mmapped and returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it is called once, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() {
    tune_allocator();
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
