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
    let roles = opts.role.roles();
    let order_url = cfg.db(crate::role::Role::Order).database_url.clone();
    for role in roles.iter().copied() {
        let db = cfg.db(role);
        let url = db.database_url.clone();
        // Orders first (roles() lists it first): the payment and inventory
        // rows that name orders by UUID get the integer ids it gave them.
        if roles.contains(&crate::role::Role::Order) && role != crate::role::Role::Order {
            let n = db::migrate::carry_order_ids(
                role,
                order_url.expose(),
                url.expose(),
                db.ca_file.as_deref(),
            )
            .await?;
            if n > 0 {
                println!("{role}: integer ids of {n} order(s) carried from the order database");
            }
        }
        let n = db::migrate::migrate_with_ca(role, url.expose(), db.ca_file.as_deref()).await?;
        println!("{role}: {n} migration(s) applied ({})", url.redacted());
    }
    Ok(ExitCode::SUCCESS)
}
