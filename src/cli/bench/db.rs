//! `dop bench --mode db`: the database's ceiling on this machine, without
//! the broker and HTTP. Scratch schemas `dop_bench_orders`,
//! `dop_bench_inventory` and `dop_bench_payments` are created with the real
//! migrations; workers then run the five transactions of one saga (create
//! order + saga; reserve with its log; payment with its processed event;
//! two saga events with their processed ids; see `db_tx`) back to back
//! through the roles' own executors, `concurrency` sagas in flight.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::{task::JoinSet, time::Instant};

use super::{
    db_tx::{one_saga, Pools},
    report::percentiles_line,
    saga::FIRST_PRODUCT,
    stats::{self, fmt_count, fmt_rate, Percentiles},
    Opts,
};
use crate::{
    config::{Config, DbRole, SecretUrl},
    db::{self, DbPool},
    roles::Role,
};

/// Transactions per saga.
const TX_PER_SAGA: u64 = 5;

#[derive(Clone, Debug)]
pub struct DbOpts {
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub products: u32,
}

impl DbOpts {
    pub fn from_cli(o: &Opts) -> Self {
        Self {
            concurrency: o.concurrency.max(1),
            duration: o.duration,
            warmup: o.warmup,
            products: o.products.max(1),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DbReport {
    pub mode: &'static str,
    pub concurrency: usize,
    pub measured_s: f64,
    pub sagas: u64,
    pub sagas_per_s: f64,
    pub tx_per_s: f64,
    /// Latency of one transaction (BEGIN to COMMIT).
    pub tx_latency: Percentiles,
    /// All five, back to back.
    pub saga_latency: Percentiles,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// The URL of scratch database `name` on the server of `base`.
pub fn scratch_url(base: &SecretUrl, name: &str) -> anyhow::Result<SecretUrl> {
    let mut u = url::Url::parse(base.expose()).context("Failed to parse a database URL")?;
    u.set_path(&format!("/{name}"));
    Ok(SecretUrl::new(u.to_string()))
}

/// Drops and recreates one scratch database with its role's migrations.
async fn fresh(role: Role, url: &SecretUrl, pool_size: usize) -> anyhow::Result<DbPool> {
    let (server, name) = db::migrate::split_url(url.expose())?;
    let mut c = AsyncMysqlConnection::establish(&server)
        .await
        .with_context(|| format!("Failed to connect to MySQL at {}", url.redacted()))?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .with_context(|| format!("Failed to drop {name}"))?;
    db::migrate::migrate(role, url.expose()).await?;
    db::connect_pool(&DbRole {
        port: 0,
        database_url: url.clone(),
        pool_size,
        pool_timeout: Duration::from_secs(30),
        ca_file: None,
        write_mode: Default::default(),
        max_idle: None,
        conn_max_lifetime: None,
    })
}

async fn drop_db(url: &SecretUrl) {
    if let Ok((server, name)) = db::migrate::split_url(url.expose()) {
        if let Ok(mut c) = AsyncMysqlConnection::establish(&server).await {
            let _ = c
                .batch_execute(&format!("DROP DATABASE IF EXISTS `{name}`"))
                .await;
        }
    }
}

/// Connections for one schema. A worker holds one connection at a time and
/// three of a saga's five transactions are on the order schema, so the pools
/// are split that way (with headroom) instead of each holding `concurrency`.
pub fn pool_size(role: Role, concurrency: usize) -> usize {
    let share = match role {
        Role::Order => concurrency * 3 / 5,
        Role::Inventory | Role::Payment => concurrency / 5,
    };
    (share + 2).min(concurrency).max(1)
}

struct Shared {
    tx: Mutex<Histogram<u64>>,
    saga: Mutex<Histogram<u64>>,
    sagas: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

pub async fn run(cfg: &Config, o: &DbOpts) -> anyhow::Result<DbReport> {
    let urls = [
        (
            Role::Order,
            scratch_url(&cfg.order.database_url, "dop_bench_orders")?,
        ),
        (
            Role::Inventory,
            scratch_url(&cfg.inventory.database_url, "dop_bench_inventory")?,
        ),
        (
            Role::Payment,
            scratch_url(&cfg.payment.database_url, "dop_bench_payments")?,
        ),
    ];
    let result = measure(&urls, o).await;
    for (_, url) in &urls {
        drop_db(url).await;
    }
    result
}

async fn measure(urls: &[(Role, SecretUrl); 3], o: &DbOpts) -> anyhow::Result<DbReport> {
    let mut pools = Vec::new();
    for (role, url) in urls {
        pools.push(fresh(*role, url, pool_size(*role, o.concurrency)).await?);
    }
    let [orders, inventory, payments]: [DbPool; 3] = pools
        .try_into()
        .map_err(|_| anyhow::anyhow!("three pools expected"))?;
    {
        let mut c = inventory.get().await?;
        let values: Vec<String> = (1..=i64::from(o.products))
            .map(|i| format!("({}, 1000000000)", FIRST_PRODUCT + i))
            .collect();
        c.batch_execute(&format!(
            "INSERT INTO inventories (product_id, available_qty) VALUES {}",
            values.join(", ")
        ))
        .await
        .context("Failed to seed the scratch inventory")?;
    }
    let ids = crate::roles::order::ids::IdAllocator::new(
        orders.clone(),
        Arc::new(crate::observability::Metrics::new("bench")),
    );
    let pools = Arc::new(Pools {
        ids,
        orders,
        inventory,
        payments,
        metrics: crate::observability::Metrics::new("bench"),
    });
    let shared = Arc::new(Shared {
        tx: Mutex::new(stats::histogram()?),
        saga: Mutex::new(stats::histogram()?),
        sagas: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let measure_from = Instant::now() + o.warmup;
    let end = measure_from + o.duration;
    let mut workers = JoinSet::new();
    for w in 0..o.concurrency {
        let (pools, shared) = (pools.clone(), shared.clone());
        let products = i64::from(o.products);
        workers.spawn(async move {
            let mut lat = Vec::with_capacity(TX_PER_SAGA as usize);
            let mut n = w as i64;
            while Instant::now() < end {
                n += 1;
                lat.clear();
                let t0 = Instant::now();
                let r = one_saga(&pools, FIRST_PRODUCT + 1 + n % products, 1 + n, &mut lat).await;
                let done = Instant::now();
                if t0 < measure_from || done > end {
                    continue;
                }
                match r {
                    Ok(()) => {
                        shared.sagas.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut h) = shared.tx.lock() {
                            lat.iter().for_each(|d| stats::record(&mut h, *d));
                        }
                        if let Ok(mut h) = shared.saga.lock() {
                            stats::record(&mut h, done - t0);
                        }
                    }
                    Err(e) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = shared.first_error.lock() {
                            f.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let secs = o.duration.as_secs_f64();
    let sagas = shared.sagas.load(Ordering::Relaxed);
    let hist = |m: &Mutex<Histogram<u64>>| {
        m.lock()
            .map(|h| Percentiles::from_histogram(&h))
            .unwrap_or_default()
    };
    Ok(DbReport {
        mode: "db",
        concurrency: o.concurrency,
        measured_s: secs,
        sagas,
        sagas_per_s: stats::per_second(sagas, secs),
        tx_per_s: stats::per_second(sagas * TX_PER_SAGA, secs),
        tx_latency: hist(&shared.tx),
        saga_latency: hist(&shared.saga),
        errors: shared.errors.load(Ordering::Relaxed),
        first_error: shared.first_error.lock().ok().and_then(|f| f.clone()),
    })
}

pub fn render(r: &DbReport) -> String {
    let mut lines = vec![
        format!(
            "dop bench --mode db: the 5 transactions of a saga, {} in flight, {:.0} s measured",
            r.concurrency, r.measured_s
        ),
        String::new(),
        format!(
            "  {:<20}{}  ({})",
            "sagas",
            fmt_rate(r.sagas_per_s),
            fmt_count(r.sagas)
        ),
        format!("  {:<20}{}", "transactions", fmt_rate(r.tx_per_s)),
        format!(
            "  {:<20}{}",
            "tx latency",
            percentiles_line(&r.tx_latency, false)
        ),
        format!(
            "  {:<20}{}",
            "saga (5 tx)",
            percentiles_line(&r.saga_latency, false)
        ),
        format!("  {:<20}{}", "errors", fmt_count(r.errors)),
    ];
    if let Some(e) = &r.first_error {
        lines.push(format!("  first error: {e}"));
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_urls_keep_the_server_and_its_options() {
        let u = scratch_url(
            &SecretUrl::new("mysql://dop:pw@db.local:3307/orders_db?ssl-mode=required"),
            "dop_bench_orders",
        )
        .unwrap();
        assert_eq!(
            u.expose(),
            "mysql://dop:pw@db.local:3307/dop_bench_orders?ssl-mode=required"
        );
    }

    #[test]
    fn pools_follow_the_share_of_transactions() {
        assert_eq!(pool_size(Role::Order, 50), 32);
        assert_eq!(pool_size(Role::Inventory, 50), 12);
        assert_eq!(pool_size(Role::Payment, 50), 12);
        assert_eq!(pool_size(Role::Order, 1), 1);
        assert_eq!(pool_size(Role::Payment, 2), 2);
    }

    #[test]
    fn table_has_the_figures() {
        let r = DbReport {
            mode: "db",
            concurrency: 50,
            measured_s: 20.0,
            sagas: 31_600,
            sagas_per_s: 1580.0,
            tx_per_s: 7900.0,
            tx_latency: Percentiles {
                count: 158_000,
                p50_ms: 6.0,
                p99_ms: 20.0,
                max_ms: 80.0,
                ..Percentiles::default()
            },
            saga_latency: Percentiles::default(),
            errors: 0,
            first_error: None,
        };
        let t = render(&r);
        assert!(t.contains("sagas               1,580/s  (31,600)"), "{t}");
        assert!(t.contains("transactions        7,900/s"), "{t}");
        assert!(
            t.contains("tx latency          p50 6.00 ms  p99 20.0 ms"),
            "{t}"
        );
    }
}
