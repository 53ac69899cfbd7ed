//! `dop serve --role R`: run one role, or all three in one process, until
//! SIGTERM or SIGINT; then shut down gracefully.

use std::{path::Path, process::ExitCode, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;

use super::RoleArg;
use crate::{app::RunningRole, config::Config, observability::logging};

#[derive(clap::Args, Debug)]
pub struct Opts {
    /// order, inventory, payment, or all.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Threads running the role's async work. Default: 1 for one role (a
    /// role mostly waits on its database and broker, and one thread saves
    /// the wakeups of handing work between threads: docs/benchmarks.md),
    /// the number of CPUs for `all`.
    #[arg(long, env = "DOP_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: Option<u16>,
}

impl Opts {
    /// Worker threads for the runtime; None leaves tokio's default.
    pub fn runtime_threads(&self) -> Option<usize> {
        match (self.worker_threads, self.role.single()) {
            (Some(n), _) => Some(n as usize),
            (None, Some(_)) => Some(1),
            (None, None) => None,
        }
    }
}

pub async fn run(
    opts: Opts,
    config: Option<&Path>,
    log_format: Option<String>,
) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, opts.role.single())?;
    logging::set_default_service(opts.role.single().map(|r| r.service()).unwrap_or("dop"));
    logging::init(log_format.as_deref().unwrap_or(&cfg.log_format));
    let cfg = Arc::new(cfg);
    let mut running = Vec::new();
    for role in opts.role.roles() {
        let port = cfg.db(role).port;
        let listener = TcpListener::bind(("0.0.0.0", port))
            .await
            .with_context(|| {
                format!("Failed to listen on port {port} for the {role} role (order.port etc.)")
            })?;
        running.push(RunningRole::start(role, cfg.clone(), listener).await?);
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    futures_join(running).await;
    Ok(ExitCode::SUCCESS)
}

async fn futures_join(running: Vec<RunningRole>) {
    let mut set = tokio::task::JoinSet::new();
    for r in running {
        set.spawn(r.shutdown());
    }
    while set.join_next().await.is_some() {}
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn threads(args: &[&str]) -> Option<usize> {
        match Cli::try_parse_from(args).expect("parses").command {
            Command::Serve(o) => o.runtime_threads(),
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn one_worker_per_role_unless_told() {
        assert_eq!(threads(&["dop", "serve", "--role", "payment"]), Some(1));
        assert_eq!(threads(&["dop", "serve", "--role", "all"]), None);
        assert_eq!(
            threads(&["dop", "serve", "--role", "all", "--worker-threads", "3"]),
            Some(3)
        );
        assert!(
            Cli::try_parse_from(["dop", "serve", "--role", "order", "--worker-threads", "0"])
                .is_err()
        );
    }
}
