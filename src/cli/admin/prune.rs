//! `dop admin prune`: what retention (`retention.dedup`, `retention.sagas`)
//! deletes, role by role. With `--dry-run` it only counts, with the same
//! selection the background pass uses; without, it runs one pass now.

use std::{path::Path, process::ExitCode, sync::Arc};

use anyhow::Context;

use super::table::{human_age, render};
use crate::{
    config::Config,
    observability::Metrics,
    retention::{Plan, Pruner},
    roles::Role,
};

#[derive(clap::Args, Debug)]
pub struct Opts {
    /// Count what would go; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this role's database (order, inventory or payment).
    #[arg(long)]
    pub role: Option<Role>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Row {
    role: String,
    #[serde(flatten)]
    plan: Plan,
}

pub async fn run(opts: Opts, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, None)?;
    let roles: Vec<Role> = match opts.role {
        Some(r) => vec![r],
        None => vec![Role::Order, Role::Inventory, Role::Payment],
    };
    let mut rows = Vec::new();
    for role in roles {
        let pool = crate::db::connect_pool(&cfg.db(role))
            .with_context(|| format!("Failed to open the {role} database"))?;
        let metrics = Arc::new(Metrics::new(&format!("{role}-service")));
        let pruner = Pruner::new(role, &cfg, pool.clone(), metrics);
        if !opts.dry_run {
            pruner.pass().await;
        }
        let plans = pruner
            .plan()
            .await
            .with_context(|| format!("Failed to read what the {role} role would prune"))?;
        pool.close();
        rows.extend(plans.into_iter().map(|plan| Row {
            role: role.to_string(),
            plan,
        }));
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", text(&rows, opts.dry_run));
    }
    Ok(ExitCode::SUCCESS)
}

fn text(rows: &[Row], dry_run: bool) -> String {
    let head = if dry_run {
        "would delete"
    } else {
        "left to delete"
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut what = r.plan.rows.to_string();
            for (t, n) in &r.plan.with {
                what.push_str(&format!(" (+{n} {t})"));
            }
            vec![
                r.role.clone(),
                r.plan.table.to_string(),
                human_age(r.plan.window_seconds as i64),
                what,
                human_age(r.plan.lag_seconds as i64),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "ROLE",
            "TABLE",
            "WINDOW",
            &head.to_uppercase(),
            "OLDEST PAST WINDOW",
        ],
        &table,
    );
    if rows.iter().all(|r| r.plan.table != "saga_states") {
        out.push_str("(saga retention is off: set retention.sagas to delete terminal sagas)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_what_goes_with_each_saga() {
        let rows = vec![Row {
            role: "order".into(),
            plan: Plan {
                table: "saga_states",
                window_seconds: 30 * 86_400,
                rows: 12,
                with: vec![("saga_events", 48), ("orders", 12)],
                lag_seconds: 90,
            },
        }];
        let t = text(&rows, true);
        assert!(t.contains("WOULD DELETE"), "{t}");
        assert!(t.contains("12 (+48 saga_events) (+12 orders)"), "{t}");
        assert!(t.contains("30d"), "{t}");
        assert!(!t.contains("retention is off"), "{t}");
    }
}
