//! `dop`: the saga orchestration system in one binary. This file is the
//! command-line dispatch only; each subcommand lives in `cli/`.

use clap::Parser;

use dop::cli::{self, Cli};

/// mimalloc instead of glibc's malloc: allocation and free were a quarter
/// of the order role's CPU under load (docs/design/batching.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let cli::Command::Serve(o) = &cli.command {
        if let Some(n) = o.runtime_threads() {
            builder.worker_threads(n);
        }
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
