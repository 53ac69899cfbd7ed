//! `dop admin audit`: the cross-database check of every invariant of docs/contract.md
//! section 9, reading the three databases read-only. Exit status 0 when
//! clean, 1 on any violation.

pub mod check;
pub mod load;
pub mod report;

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::Context;

pub use report::{Duplicates, Report, Violation};

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct Opts {
    /// Sagas in flight younger than this are not judged yet: their messages
    /// may still be on the way (e.g. 30s, 2m; 0s judges everything).
    #[arg(long, default_value = "30s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub in_flight_grace: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Reads the three databases of `cfg` and checks every invariant; sagas in
/// flight for less than `grace` are left alone.
pub async fn audit(cfg: &Config, grace: Duration) -> anyhow::Result<Report> {
    let snapshot = load::load(cfg).await?;
    Ok(check::check(&snapshot, grace))
}

pub async fn run(opts: Opts, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, None)?;
    let report = audit(&cfg, opts.in_flight_grace).await?;
    if opts.json {
        let json = serde_json::to_string_pretty(&report).context("Failed to render the report")?;
        println!("{json}");
    } else {
        print!("{}", report.render_text());
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
