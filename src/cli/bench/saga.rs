//! `dop bench --mode saga`: seeds the products, drives POST /orders, waits
//! for every saga the run started to be terminal, then reports acceptance,
//! end-to-end saga throughput and durations, the backlog and its drain, and
//! the invariant audit.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use super::{
    load::{self, Recorder, Shape, Target},
    progress::Progress,
    sagas::{self, BacklogSampler, OrderDb},
    stats::{self, Percentiles},
    Opts,
};
use hyper::Method;

use crate::{config::Config, http::client::Client};

/// Ids of the bench's products start after this.
pub const FIRST_PRODUCT: i64 = 8000;

/// Pre-rendered order bodies to cycle through.
const BODIES: usize = 4096;

/// What a saga bench does.
#[derive(Clone, Debug)]
pub struct SagaOpts {
    pub shape: Shape,
    pub duration: Duration,
    pub products: u32,
    pub stock: i64,
    /// Base URL of the order role, e.g. `http://127.0.0.1:8081`; several
    /// replicas' URLs separated by commas take turns (`load::Target`).
    pub order_url: String,
    /// Base URL of the inventory role.
    pub inventory_url: String,
    pub drain_timeout: Duration,
    pub request_timeout: Duration,
    pub audit: bool,
    /// Print the live progress line on stderr.
    pub progress: bool,
}

impl SagaOpts {
    /// The CLI's defaults against the given roles.
    pub fn new(order_url: impl Into<String>, inventory_url: impl Into<String>) -> Self {
        Self {
            shape: Shape::Closed { concurrency: 50 },
            duration: Duration::from_secs(30),
            products: 10,
            stock: 100_000,
            order_url: order_url.into(),
            inventory_url: inventory_url.into(),
            drain_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            audit: true,
            progress: false,
        }
    }

    pub fn from_cli(o: &Opts, cfg: &Config) -> anyhow::Result<Self> {
        let shape = match o.rate {
            Some(rate) if !(rate > 0.0 && rate.is_finite()) => {
                bail!("--rate must be a positive number of orders per second")
            }
            Some(rate) => Shape::Open {
                rate,
                max_in_flight: o.max_in_flight,
            },
            None if o.concurrency == 0 => bail!("--concurrency must be at least 1"),
            None => Shape::Closed {
                concurrency: o.concurrency,
            },
        };
        if o.products == 0 {
            bail!("--products must be at least 1");
        }
        let local = |port: u16| format!("http://127.0.0.1:{port}");
        Ok(Self {
            shape,
            duration: o.duration,
            products: o.products,
            stock: o.stock,
            order_url: o.order_url.clone().unwrap_or_else(|| local(cfg.order.port)),
            inventory_url: o
                .inventory_url
                .clone()
                .unwrap_or_else(|| local(cfg.inventory.port)),
            drain_timeout: o.drain_timeout,
            request_timeout: o.timeout,
            audit: !o.no_audit,
            progress: true,
        })
    }

    pub fn product_ids(&self) -> Vec<i64> {
        (1..=i64::from(self.products))
            .map(|i| FIRST_PRODUCT + i)
            .collect()
    }
}

/// The result of a saga bench; `--json` prints it as one object.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Always `saga` (the limit harnesses report `db` and `broker`).
    pub mode: &'static str,
    /// How the load was paced, in words.
    pub load: String,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub duration_s: f64,
    /// From the first request to the last answer.
    pub load_s: f64,
    pub products: u32,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// 201s per second of load.
    pub accepted_per_s: f64,
    /// POST /orders latency (open loop: from the intended send time).
    pub latency: Percentiles,
    pub sagas: SagaSummary,
    pub audit: AuditSummary,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SagaSummary {
    /// Sagas the run created (counted in the order database).
    pub created: u64,
    pub terminal: u64,
    /// Still IN_PROGRESS or COMPENSATING when the bench gave up waiting.
    pub pending: u64,
    pub by_status: BTreeMap<String, u64>,
    /// Terminal sagas / (last terminal update - first request).
    pub completed_per_s: f64,
    /// created_at to the terminal update.
    pub duration: Percentiles,
    /// Non-terminal sagas when the last answer came.
    pub backlog_at_stop: u64,
    /// The largest backlog sampled (once a second, and at the stop).
    pub max_backlog: u64,
    pub drained: bool,
    /// From the stop of the load to the last saga terminal.
    pub drain_s: f64,
    /// From the first request to the last saga terminal.
    pub last_terminal_s: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditSummary {
    pub ran: bool,
    pub clean: bool,
    pub violations: usize,
    /// The first few violations, as the audit words them.
    pub examples: Vec<String>,
    /// Why the audit could not run.
    pub error: Option<String>,
}

impl BenchReport {
    /// Orders were accepted, every saga drained, and the audit (when run) is clean.
    pub fn passed(&self) -> bool {
        self.ok > 0 && self.sagas.drained && (!self.audit.ran || self.audit.clean)
    }
}

/// Creates the products with `stock` units, or resets their stock (PUT)
/// when they exist; as the operator when `token` (`admin.token`) is set,
/// since inventory writes need it then.
pub async fn seed(
    client: &Client,
    inventory_url: &str,
    token: &str,
    ids: &[i64],
    stock: i64,
) -> anyhow::Result<()> {
    let auth = format!("Bearer {token}");
    let headers: &[(&str, &str)] = if token.is_empty() {
        &[]
    } else {
        &[("authorization", auth.as_str())]
    };
    for &id in ids {
        let url = format!("{inventory_url}/inventory");
        let body = json!({"product_id": id, "available_qty": stock}).to_string();
        let r = client
            .send(Method::POST, &url, Some(body.into()), headers)
            .await
            .context("Failed to seed the products")?;
        match r.status.as_u16() {
            201 => {}
            409 => {
                let url = format!("{inventory_url}/inventory/{id}");
                let body = json!({"available_qty": stock}).to_string();
                let r = client
                    .send(Method::PUT, &url, Some(body.into()), headers)
                    .await
                    .context("Failed to reset a product's stock")?;
                if !r.status.is_success() {
                    bail!("PUT {url} answered {}: {}", r.status, r.text());
                }
            }
            _ => bail!("POST {url} answered {}: {}", r.status, r.text()),
        }
    }
    Ok(())
}

/// Runs a saga bench against running roles whose order database is
/// `cfg.order.database_url` (and, for the audit, the other two of `cfg`).
pub async fn run_saga_bench(cfg: &Config, opts: &SagaOpts) -> anyhow::Result<BenchReport> {
    let client = Client::new(opts.request_timeout);
    let products = opts.product_ids();
    let token = cfg.admin.token.expose();
    seed(&client, &opts.inventory_url, token, &products, opts.stock).await?;
    let mut db = OrderDb::connect(&cfg.order.database_url).await?;
    let sampler_db = OrderDb::connect(&cfg.order.database_url).await?;

    let urls = opts
        .order_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| format!("{}/orders", u.trim_end_matches('/')))
        .collect::<Vec<_>>();
    if urls.is_empty() {
        bail!("--order-url names no URL");
    }
    let target = Arc::new(Target::new(client, urls, &products, BODIES, rand::random()));
    let rec = Arc::new(Recorder::new()?);
    // The run's sagas are those created from here on (the roles stamp
    // created_at with their UTC clock, after the request left).
    let since = chrono::Utc::now().naive_utc();
    let start = tokio::time::Instant::now();
    let sampler = BacklogSampler::start(sampler_db, since);
    let progress = opts
        .progress
        .then(|| Progress::start(rec.clone(), sampler.current.clone()));

    load::run(target, rec.clone(), opts.shape, opts.duration).await;
    let load_s = start.elapsed().as_secs_f64();
    let backlog_at_stop = db.backlog(since).await?;
    let (drained, waited) = sagas::wait_drained(&mut db, since, opts.drain_timeout).await?;
    let max_backlog = sampler.stop().max(backlog_at_stop);
    if let Some(p) = progress {
        p.stop();
    }

    let mut s = db.stats(since).await?;
    let last_terminal_s = s.last_terminal.map(|d| d.as_secs_f64());
    let drain_s = match last_terminal_s {
        Some(t) if drained => (t - load_s).max(0.0),
        _ => waited.as_secs_f64(),
    };
    let terminal = s.terminal();
    let sagas = SagaSummary {
        created: s.total,
        terminal,
        pending: s.total - terminal,
        completed_per_s: stats::per_second(terminal, last_terminal_s.unwrap_or(0.0)),
        duration: Percentiles::from_samples(&mut s.durations_us),
        by_status: s.by_status,
        backlog_at_stop,
        max_backlog,
        drained,
        drain_s,
        last_terminal_s,
    };
    let audit = if opts.audit {
        run_audit(cfg).await
    } else {
        AuditSummary::default()
    };
    let ok = rec.ok.load(std::sync::atomic::Ordering::Relaxed);
    let (concurrency, rate) = match opts.shape {
        Shape::Closed { concurrency } => (Some(concurrency), None),
        Shape::Open { rate, .. } => (None, Some(rate)),
    };
    Ok(BenchReport {
        mode: "saga",
        load: opts.shape.to_string(),
        concurrency,
        rate,
        duration_s: opts.duration.as_secs_f64(),
        load_s,
        products: opts.products,
        sent: rec.sent.load(std::sync::atomic::Ordering::Relaxed),
        ok,
        errors: rec.errors.load(std::sync::atomic::Ordering::Relaxed),
        errors_by_kind: rec.errors_by_kind(),
        accepted_per_s: stats::per_second(ok, load_s),
        latency: rec.latency(),
        sagas,
        audit,
    })
}

async fn run_audit(cfg: &Config) -> AuditSummary {
    match crate::cli::admin::audit::audit(cfg, Duration::ZERO).await {
        Ok(r) => AuditSummary {
            ran: true,
            clean: r.is_clean(),
            violations: r.violations.len(),
            examples: r
                .violations
                .iter()
                .take(5)
                .map(|v| v.message.clone())
                .collect(),
            error: None,
        },
        Err(e) => AuditSummary {
            ran: true,
            clean: false,
            error: Some(format!("{e:#}")),
            ..AuditSummary::default()
        },
    }
}
