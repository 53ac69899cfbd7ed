//! `dop config [--role R]`: the effective configuration, secrets redacted.

use std::{path::Path, process::ExitCode};

use super::RoleArg;
use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct Opts {
    /// The role whose DB_NAME applies (as `serve --role` would).
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
}

pub fn run(opts: Opts, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, opts.role.and_then(RoleArg::single))?;
    print!("{}", cfg.redacted_toml()?);
    Ok(ExitCode::SUCCESS)
}
