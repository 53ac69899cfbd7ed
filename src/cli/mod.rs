//! The command line: one file per subcommand.

pub mod admin;
pub mod bench;
pub mod config_cmd;
pub mod migrate;
pub mod serve;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

use crate::roles::Role;

#[derive(Parser, Debug)]
#[command(
    name = "dop",
    version,
    about = "Saga orchestration across order, inventory and payment, in one binary"
)]
pub struct Cli {
    /// Configuration file layered over config/dop.toml (also DOP_CONFIG).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log format: json (default when not a terminal) or pretty.
    #[arg(long, global = true)]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// A role, or all three in one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Order,
    Inventory,
    Payment,
    All,
}

impl RoleArg {
    pub fn roles(self) -> Vec<Role> {
        match self {
            RoleArg::Order => vec![Role::Order],
            RoleArg::Inventory => vec![Role::Inventory],
            RoleArg::Payment => vec![Role::Payment],
            RoleArg::All => Role::ALL.to_vec(),
        }
    }
    /// The single role, for DB_NAME.
    pub fn single(self) -> Option<Role> {
        match self.roles().as_slice() {
            [r] => Some(*r),
            _ => None,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one role, or all three in one process.
    Serve(serve::Opts),
    /// Create missing databases and apply pending migrations.
    Migrate(migrate::Opts),
    /// Print the effective configuration, secrets redacted.
    Config(config_cmd::Opts),
    /// Operator commands: sagas, dead letters, the invariant audit.
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// Load the system and report end-to-end saga completion (or, with
    /// --mode db|broker, this machine's database and broker limits).
    Bench(bench::Opts),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cfg_path = cli.config.clone();
    match cli.command {
        Command::Serve(o) => serve::run(o, cfg_path.as_deref(), cli.log_format).await,
        Command::Migrate(o) => migrate::run(o, cfg_path.as_deref()).await,
        Command::Config(o) => config_cmd::run(o, cfg_path.as_deref()),
        Command::Admin(c) => admin::run(c, cfg_path.as_deref()).await,
        Command::Bench(o) => bench::run(o, cfg_path.as_deref()).await,
    }
}
