//! `dop admin`: operator commands. Saga commands go through the order
//! role's HTTP API, `dlq` and `queues` talk AMQP, `audit` reads the three
//! databases, `prune` runs (or counts) retention on them.

pub mod audit;
pub mod dlq;
pub mod prune;
pub mod queues;
pub mod sagas;
pub mod table;

use std::{path::Path, process::ExitCode};

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// List sagas (newest first), show one with its timeline, or retry one.
    Sagas(sagas::Opts),
    /// Dead-letter queues: list their depth and reasons, or redrive one.
    Dlq(dlq::Opts),
    /// Queues: re-create them with the configured type, keeping their messages.
    Queues(queues::Opts),
    /// Check every invariant of docs/contract.md section 9 across the three databases.
    Audit(audit::Opts),
    /// Retention: what has aged out of `retention.dedup` / `retention.sagas`;
    /// `--dry-run` counts it, otherwise one pass deletes it now.
    Prune(prune::Opts),
}

pub async fn run(cmd: AdminCmd, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCmd::Sagas(o) => sagas::run(o, config).await,
        AdminCmd::Dlq(o) => dlq::run(o, config).await,
        AdminCmd::Audit(o) => audit::run(o, config).await,
        AdminCmd::Prune(o) => prune::run(o, config).await,
        AdminCmd::Queues(o) => queues::run(o, config).await,
    }
}
