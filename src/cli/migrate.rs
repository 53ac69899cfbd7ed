//! `dop migrate [--role R]`: create missing databases and apply pending
//! migrations. Safe to run again and from several places at once.

use std::{path::Path, process::ExitCode};

use super::RoleArg;
use crate::{config::Config, db};

#[derive(clap::Args, Debug)]
pub struct Opts {
    /// Only this role's database (default: all three).
    #[arg(long, value_enum, default_value = "all")]
    pub role: RoleArg,
}

pub async fn run(opts: Opts, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, opts.role.single())?;
    for role in opts.role.roles() {
        let db = cfg.db(role);
        let url = db.database_url.clone();
        let n = db::migrate::migrate_with_ca(role, url.expose(), db.ca_file.as_deref()).await?;
        println!("{role}: {n} migration(s) applied ({})", url.redacted());
    }
    Ok(ExitCode::SUCCESS)
}
