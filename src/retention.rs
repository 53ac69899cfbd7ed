//! Retention: every `retention.interval` each role deletes the rows that
//! have aged out of their window, a small batch per statement, and reports
//! what it deleted and how far behind it is (docs/operations.md,
//! "Retention"). Several replicas may run it at once: the same rows
//! deleted twice is harmless, so nothing coordinates them.

use std::time::Duration;

use anyhow::Context;
use diesel::{
    sql_types::{BigInt, Nullable},
    QueryableByName,
};
use diesel_async::RunQueryDsl;

use crate::{config::Config, db::DbPool, observability::Metrics, role::Role};

/// One table whose rows go once `column` is older than `window`.
#[derive(Clone, Debug)]
pub struct Target {
    pub table: &'static str,
    /// A time column with an index leading on it, so the delete reads the
    /// old end of that index and nothing else.
    pub column: &'static str,
    pub window: Duration,
}

/// What `role` deletes under `cfg`. The order and payment roles keep a
/// deduplication record per message (`processed_events`); the inventory
/// role deduplicates on its logs' business key instead.
pub fn targets(role: Role, cfg: &Config) -> Vec<Target> {
    match role {
        Role::Order | Role::Payment => vec![Target {
            table: "processed_events",
            column: "processed_at",
            window: cfg.retention.dedup,
        }],
        Role::Inventory => Vec::new(),
    }
}

/// Deletes what has aged out of its targets' windows.
pub struct Pruner {
    pub pool: DbPool,
    pub metrics: std::sync::Arc<Metrics>,
    pub targets: Vec<Target>,
    pub batch_size: u32,
}

#[derive(QueryableByName)]
struct Age {
    #[diesel(sql_type = Nullable<BigInt>)]
    age: Option<i64>,
}

/// A pause between two full batches, so a large backlog (retention just
/// turned on, or a long outage) does not keep the hot path waiting.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

impl Pruner {
    pub fn new(role: Role, cfg: &Config, pool: DbPool, metrics: std::sync::Arc<Metrics>) -> Self {
        let targets = targets(role, cfg);
        for t in &targets {
            // Series at 0 from the start: a dashboard shows 0, not "no data".
            let labels = metrics.table(t.table);
            let _ = metrics.retention_deleted.get_or_create(&labels);
            let _ = metrics.retention_failures.get_or_create(&labels);
            let _ = metrics.retention_lag.get_or_create(&labels);
        }
        Self {
            pool,
            metrics,
            targets,
            batch_size: cfg.retention.batch_size,
        }
    }

    /// A pass at once, then one every `interval`, until the task is aborted.
    pub async fn run(self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.pass().await;
        }
    }

    /// One pass over every target; returns the rows deleted. A failure is
    /// logged and counted, and the next pass tries again.
    pub async fn pass(&self) -> u64 {
        let mut total = 0;
        for t in &self.targets {
            let labels = self.metrics.table(t.table);
            match self.prune(t).await {
                Ok(0) => {}
                Ok(n) => {
                    total += n;
                    tracing::info!(
                        table = t.table,
                        rows = n,
                        "retention deleted rows past their window"
                    );
                }
                Err(e) => {
                    self.metrics.retention_failures.get_or_create(&labels).inc();
                    tracing::warn!(
                        table = t.table,
                        error = format!("{e:#}"),
                        "retention pass failed"
                    );
                }
            }
            match self.lag(t).await {
                Ok(lag) => {
                    let secs = i64::try_from(lag.as_secs()).unwrap_or(i64::MAX);
                    self.metrics.retention_lag.get_or_create(&labels).set(secs);
                }
                Err(e) => {
                    self.metrics.retention_failures.get_or_create(&labels).inc();
                    tracing::warn!(
                        table = t.table,
                        error = format!("{e:#}"),
                        "retention could not read its lag"
                    );
                }
            }
        }
        total
    }

    /// Deletes `t`'s aged rows, `batch_size` per statement, until a
    /// statement finds fewer. Each statement is its own short transaction
    /// on a connection taken for it alone. The cut-off is the database's
    /// clock (`NOW(6)`), the clock that wrote the rows, so replicas with
    /// skewed clocks agree.
    async fn prune(&self, t: &Target) -> anyhow::Result<u64> {
        let window = window_micros(t.window)?;
        // Table and column names are this module's constants, never input.
        let sql = format!(
            "DELETE FROM {table} WHERE {col} < NOW(6) - INTERVAL ? MICROSECOND ORDER BY {col} LIMIT ?",
            table = t.table,
            col = t.column
        );
        let labels = self.metrics.table(t.table);
        let mut total: u64 = 0;
        loop {
            let mut conn = self
                .pool
                .get()
                .await
                .context("Failed to get a connection")?;
            let n = diesel::sql_query(&sql)
                .bind::<BigInt, _>(window)
                .bind::<BigInt, _>(i64::from(self.batch_size))
                .execute(&mut *conn)
                .await
                .with_context(|| format!("Failed to delete aged rows of {}", t.table))?;
            drop(conn);
            let n = n as u64;
            total = total.saturating_add(n);
            self.metrics
                .retention_deleted
                .get_or_create(&labels)
                .inc_by(n);
            if n < u64::from(self.batch_size) {
                return Ok(total);
            }
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
    }

    /// How far past `t`'s window its oldest row is (zero when none is).
    /// `MIN` of an indexed column is one index dive.
    pub async fn lag(&self, t: &Target) -> anyhow::Result<Duration> {
        let sql = format!(
            "SELECT TIMESTAMPDIFF(MICROSECOND, MIN({col}), NOW(6)) AS age FROM {table}",
            table = t.table,
            col = t.column
        );
        let mut conn = self
            .pool
            .get()
            .await
            .context("Failed to get a connection")?;
        let age: Age = diesel::sql_query(sql)
            .get_result(&mut *conn)
            .await
            .with_context(|| format!("Failed to read the oldest row of {}", t.table))?;
        let age = Duration::from_micros(age.age.unwrap_or(0).max(0) as u64);
        Ok(age.saturating_sub(t.window))
    }
}

/// A window in microseconds, as the SQL interval takes it.
fn window_micros(window: Duration) -> anyhow::Result<i64> {
    i64::try_from(window.as_micros()).context("retention window too long")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_prunes_its_own_inbox() {
        let cfg = Config::default();
        for role in [Role::Order, Role::Payment] {
            let t = targets(role, &cfg);
            assert_eq!(t.len(), 1);
            assert_eq!(
                (t[0].table, t[0].column),
                ("processed_events", "processed_at")
            );
            assert_eq!(t[0].window, cfg.retention.dedup);
        }
        assert!(targets(Role::Inventory, &cfg).is_empty());
    }

    #[test]
    fn a_window_is_counted_in_microseconds_without_wrapping() {
        assert_eq!(window_micros(Duration::from_secs(2)).unwrap(), 2_000_000);
        assert!(window_micros(Duration::MAX).is_err());
    }
}
