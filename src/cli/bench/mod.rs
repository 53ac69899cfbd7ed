//! `dop bench`: load against the real system through HTTP (mode `saga`,
//! the default), plus two harnesses that measure this machine's ceilings
//! without dop in the way (modes `db` and `broker`), so dop's throughput can
//! be stated as a ratio of what the database and the broker allow.

pub mod age;
pub mod broker;
pub mod db;
pub mod db_tx;
pub mod load;
pub mod progress;
pub mod report;
pub mod saga;
pub mod sagas;
pub mod stats;

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::ValueEnum;

use crate::config::Config;

pub use load::Shape;
pub use saga::{run_saga_bench, BenchReport, SagaOpts};

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The real system: POST /orders over HTTP, then every saga to a terminal state.
    Saga,
    /// The database alone: the five transactions of one saga, on scratch schemas.
    Db,
    /// RabbitMQ alone: persistent messages, pipelined confirms, a consumer with manual acks.
    Broker,
    /// No load: fill empty databases with --days of history at --rate orders/s
    /// (every row a saga leaves), to measure the other modes on aged tables.
    Age,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Opts {
    /// saga (the real system through HTTP), db or broker (this machine's limits).
    #[arg(long, value_enum, default_value = "saga")]
    pub mode: Mode,
    /// Closed loop: this many workers, each sending its next order as soon as
    /// the last one is answered (like Locust users with no think time). In
    /// `db` mode: sagas in flight.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Open loop: orders per second, sent on schedule whatever the latency
    /// (latency counts from the intended send time). Overrides --concurrency.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: requests in flight at most; beyond it sends wait (and that
    /// wait shows in the latency).
    #[arg(long, default_value_t = 2000)]
    pub max_in_flight: usize,
    /// How long to apply load.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Products to spread the orders over (ids 8001..8000+N).
    #[arg(long, default_value_t = 10)]
    pub products: u32,
    /// Units each product is seeded with.
    #[arg(long, default_value_t = 100_000)]
    pub stock: i64,
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The order role (default: http://127.0.0.1:<order.port>). Several
    /// replicas: their URLs separated by commas; orders take turns, and one
    /// whose connection is refused goes to the next (as a load balancer
    /// routes around a stopped replica).
    #[arg(long)]
    pub order_url: Option<String>,
    /// The inventory role (default: http://127.0.0.1:<inventory.port>).
    #[arg(long)]
    pub inventory_url: Option<String>,
    /// How long to wait after the load for every saga to be terminal.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Skip the invariant audit at the end (for a stack whose databases this
    /// machine cannot read).
    #[arg(long)]
    pub no_audit: bool,
    /// `db` and `broker` modes: run this long before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// `broker` mode: publishes awaiting their confirm at most.
    #[arg(long, default_value_t = 200)]
    pub confirms_in_flight: usize,
    /// `broker` mode: the consumer's prefetch.
    #[arg(long, default_value_t = 200)]
    pub prefetch: u16,
    /// `age` mode: days of history to write (at --rate orders/s).
    #[arg(long, default_value_t = 1.0)]
    pub days: f64,
    /// `age` mode: distinct users the orders are spread over.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// `age` mode: percent of sagas compensated after a declined payment.
    #[arg(long, default_value_t = 10)]
    pub compensated_pct: u32,
}

/// Parses `30s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime_serde::re::humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

pub async fn run(opts: Opts, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, None)?;
    let passed = match opts.mode {
        Mode::Saga => {
            let saga_opts = SagaOpts::from_cli(&opts, &cfg)?;
            let report = run_saga_bench(&cfg, &saga_opts).await?;
            print(opts.json, &report, report::render(&report))?;
            report.passed()
        }
        Mode::Db => {
            let report = db::run(&cfg, &db::DbOpts::from_cli(&opts)).await?;
            print(opts.json, &report, db::render(&report))?;
            report.errors == 0
        }
        Mode::Age => {
            let Some(rate) = opts.rate else {
                anyhow::bail!(
                    "--mode age needs --rate: the orders per second of the history to write"
                );
            };
            let age_opts = age::AgeOpts {
                days: opts.days,
                rate,
                products: opts.products.max(1),
                users: opts.users,
                compensated_pct: opts.compensated_pct,
            };
            let mut last = std::time::Instant::now();
            let report = age::run(&cfg, &age_opts, |done, total| {
                if last.elapsed() >= age::PROGRESS_EVERY || done == total {
                    last = std::time::Instant::now();
                    eprintln!("aging: {done}/{total} sagas");
                }
            })
            .await?;
            print(opts.json, &report, age::render(&report))?;
            true
        }
        Mode::Broker => {
            let report = broker::run(&cfg, &broker::BrokerOpts::from_cli(&opts)).await?;
            print(opts.json, &report, broker::render(&report))?;
            report.lost == 0
        }
    };
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print<T: serde::Serialize>(json: bool, report: &T, table: String) -> anyhow::Result<()> {
    if json {
        let line = serde_json::to_string(report).context("Failed to render the report as JSON")?;
        println!("{line}");
    } else {
        print!("{table}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_or_without_a_unit() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
