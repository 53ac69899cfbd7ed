//! `dop admin`: operator commands. Saga commands go through the order
//! role's HTTP API, `dlq` talks AMQP, `audit` reads the three databases.

pub mod audit;

use std::{path::Path, process::ExitCode};

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Check every invariant of DESIGN section 9 across the three databases.
    Audit(audit::Opts),
}

pub async fn run(cmd: AdminCmd, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCmd::Audit(o) => audit::run(o, config).await,
    }
}
