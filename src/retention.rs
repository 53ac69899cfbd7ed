//! Retention: every `retention.interval` each role deletes the rows that
//! have aged out of their window, a small batch per statement, and reports
//! what it deleted and how far behind it is (docs/operations.md,
//! "Retention"). Several replicas may run it at once: the same rows
//! deleted twice is harmless, so nothing coordinates them.

use std::time::Duration;

use anyhow::Context;
use diesel::{
    sql_types::{BigInt, Bool, Nullable, Text},
    ExpressionMethods, OptionalExtension, QueryDsl, QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use crate::{
    config::Config,
    db::DbPool,
    observability::Metrics,
    role::Role,
    roles::order::schema::{self as o, saga_events, saga_states},
    saga::SagaStatus,
};

/// What a target deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every row whose `column` is older than the window (an inbox).
    Aged,
    /// Terminal sagas whose last change is older than the window, each with
    /// its timeline (`saga_events`) and its order, in one transaction.
    TerminalSagas,
}

/// One table whose rows go once `column` is older than `window`.
#[derive(Clone, Debug)]
pub struct Target {
    pub table: &'static str,
    /// A time column. For `Aged`, an index leads on it, so the delete
    /// reads the old end of that index and nothing else.
    pub column: &'static str,
    pub window: Duration,
    pub kind: Kind,
}

/// What `role` deletes under `cfg`. The order and payment roles keep a
/// deduplication record per message (`processed_events`); the inventory
/// role deduplicates on its logs' business key instead. With
/// `retention.sagas` set, the order role also deletes terminal sagas; the
/// inventory's logs and the payments are ledgers and the barrier against a
/// late command, and are kept (docs/operations.md, "Retention").
pub fn targets(role: Role, cfg: &Config) -> Vec<Target> {
    let inbox = Target {
        table: "processed_events",
        column: "processed_at",
        window: cfg.retention.dedup,
        kind: Kind::Aged,
    };
    match role {
        Role::Order => {
            let mut v = vec![inbox];
            if let Some(window) = cfg.retention.sagas {
                v.push(Target {
                    table: "saga_states",
                    column: "updated_at",
                    window,
                    kind: Kind::TerminalSagas,
                });
            }
            v
        }
        Role::Payment => vec![inbox],
        Role::Inventory => Vec::new(),
    }
}

/// What a pass would delete from one target now (`dop admin prune --dry-run`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub table: &'static str,
    pub window_seconds: u64,
    /// Rows of `table` past the window.
    pub rows: u64,
    /// Rows of other tables that go with them (a saga's events and order).
    pub with: Vec<(&'static str, u64)>,
    /// How far past the window the oldest such row is.
    pub lag_seconds: u64,
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
            if t.kind == Kind::TerminalSagas {
                for table in ["saga_events", "orders"] {
                    let _ = metrics
                        .retention_deleted
                        .get_or_create(&metrics.table(table));
                }
            }
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

    /// Deletes `t`'s aged rows, `batch_size` at a time, until a batch
    /// finds fewer.
    async fn prune(&self, t: &Target) -> anyhow::Result<u64> {
        match t.kind {
            Kind::Aged => self.prune_aged(t).await,
            Kind::TerminalSagas => self.prune_sagas(t, Mode::Delete).await.map(|c| c.sagas),
        }
    }

    /// Each statement is its own short transaction on a connection taken
    /// for it alone. The cut-off is the database's clock (`NOW(6)`), the
    /// clock that wrote the rows, so replicas with skewed clocks agree.
    async fn prune_aged(&self, t: &Target) -> anyhow::Result<u64> {
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

    /// Walks `saga_states` in order-id order (order ids are handed out in
    /// time order) a page of `batch_size` at a time, from the oldest, and
    /// stops at the first page holding a saga created inside the window:
    /// a pass reads what goes, the few old sagas still in flight, and one
    /// page more, whatever the size of the table. Each page's candidates
    /// (terminal, unchanged for the window) are locked with `SKIP LOCKED`,
    /// re-checked under the lock (an operator may be retrying one), and
    /// deleted with their events and orders in one short transaction;
    /// a replica that finds them locked skips them.
    async fn prune_sagas(&self, t: &Target, mode: Mode) -> anyhow::Result<SagaCount> {
        let window = window_micros(t.window)?;
        let mut after: i64 = i64::MIN;
        let mut count = SagaCount::default();
        loop {
            let mut conn = self
                .pool
                .get()
                .await
                .context("Failed to get a connection")?;
            let page: Vec<SagaPage> = diesel::sql_query(
                "SELECT saga_id, order_id, status, \
                        updated_at < NOW(6) - INTERVAL ? MICROSECOND AS aged, \
                        created_at >= NOW(6) - INTERVAL ? MICROSECOND AS young \
                 FROM saga_states WHERE order_id > ? ORDER BY order_id LIMIT ?",
            )
            .bind::<BigInt, _>(window)
            .bind::<BigInt, _>(window)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(i64::from(self.batch_size))
            .load(&mut *conn)
            .await
            .context("Failed to read a page of sagas")?;
            let Some(last) = page.last() else {
                return Ok(count);
            };
            after = last.order_id;
            let full = page.len() == self.batch_size as usize;
            let reached_window = page.iter().any(|r| r.young);
            let ids: Vec<String> = page
                .into_iter()
                .filter(|r| r.aged && is_terminal(&r.status))
                .map(|r| r.saga_id)
                .collect();
            if !ids.is_empty() {
                let n = match mode {
                    Mode::Delete => delete_sagas(&mut conn, &ids, window).await?,
                    Mode::Count => count_sagas(&mut conn, &ids).await?,
                };
                if mode == Mode::Delete {
                    for (table, rows) in [
                        ("saga_states", n.sagas),
                        ("saga_events", n.events),
                        ("orders", n.orders),
                    ] {
                        let labels = self.metrics.table(table);
                        self.metrics
                            .retention_deleted
                            .get_or_create(&labels)
                            .inc_by(rows);
                    }
                }
                count.add(n);
            }
            drop(conn);
            if !full || reached_window {
                return Ok(count);
            }
            if mode == Mode::Delete {
                tokio::time::sleep(BETWEEN_BATCHES).await;
            }
        }
    }

    /// What a pass would delete now, target by target; deletes nothing.
    pub async fn plan(&self) -> anyhow::Result<Vec<Plan>> {
        let mut plans = Vec::new();
        for t in &self.targets {
            let lag_seconds = self.lag(t).await?.as_secs();
            let window_seconds = t.window.as_secs();
            let plan = match t.kind {
                Kind::Aged => {
                    let sql = format!(
                        "SELECT COUNT(*) AS n FROM {table} WHERE {col} < NOW(6) - INTERVAL ? MICROSECOND",
                        table = t.table,
                        col = t.column
                    );
                    let mut conn = self
                        .pool
                        .get()
                        .await
                        .context("Failed to get a connection")?;
                    let n: N = diesel::sql_query(sql)
                        .bind::<BigInt, _>(window_micros(t.window)?)
                        .get_result(&mut *conn)
                        .await
                        .with_context(|| format!("Failed to count aged rows of {}", t.table))?;
                    Plan {
                        table: t.table,
                        window_seconds,
                        rows: n.n.max(0) as u64,
                        with: Vec::new(),
                        lag_seconds,
                    }
                }
                Kind::TerminalSagas => {
                    let c = self.prune_sagas(t, Mode::Count).await?;
                    Plan {
                        table: t.table,
                        window_seconds,
                        rows: c.sagas,
                        with: vec![("saga_events", c.events), ("orders", c.orders)],
                        lag_seconds,
                    }
                }
            };
            plans.push(plan);
        }
        Ok(plans)
    }

    /// How far past `t`'s window its oldest row is (zero when none is).
    pub async fn lag(&self, t: &Target) -> anyhow::Result<Duration> {
        let sql = match t.kind {
            // `MIN` of an indexed column is one index dive.
            Kind::Aged => format!(
                "SELECT TIMESTAMPDIFF(MICROSECOND, MIN({col}), NOW(6)) AS age FROM {table}",
                table = t.table,
                col = t.column
            ),
            // The first terminal saga in order-id order: the front of the
            // index holds only the few old sagas still in flight.
            Kind::TerminalSagas => format!(
                "SELECT TIMESTAMPDIFF(MICROSECOND, updated_at, NOW(6)) AS age FROM saga_states \
                 WHERE status IN ({TERMINAL_SQL}) ORDER BY order_id LIMIT 1"
            ),
        };
        let mut conn = self
            .pool
            .get()
            .await
            .context("Failed to get a connection")?;
        let age: Option<Age> = diesel::sql_query(sql)
            .get_result(&mut *conn)
            .await
            .optional()
            .with_context(|| format!("Failed to read the oldest row of {}", t.table))?;
        let age = age.and_then(|a| a.age).unwrap_or(0).max(0) as u64;
        Ok(Duration::from_micros(age).saturating_sub(t.window))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Delete,
    Count,
}

#[derive(Clone, Copy, Debug, Default)]
struct SagaCount {
    sagas: u64,
    events: u64,
    orders: u64,
}

impl SagaCount {
    fn add(&mut self, o: SagaCount) {
        self.sagas = self.sagas.saturating_add(o.sagas);
        self.events = self.events.saturating_add(o.events);
        self.orders = self.orders.saturating_add(o.orders);
    }
}

#[derive(QueryableByName)]
struct SagaPage {
    #[diesel(sql_type = Text)]
    saga_id: String,
    #[diesel(sql_type = BigInt)]
    order_id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Bool)]
    aged: bool,
    #[diesel(sql_type = Bool)]
    young: bool,
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Text)]
    saga_id: String,
    #[diesel(sql_type = BigInt)]
    order_id: i64,
}

const TERMINAL_SQL: &str = "'COMPLETED','COMPENSATED','FAILED'";

fn is_terminal(status: &str) -> bool {
    SagaStatus::parse(status).is_some_and(SagaStatus::is_terminal)
}

/// `?, ?, …` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// Deletes the sagas of `ids` that are still terminal and unchanged for
/// the window, with their events and orders, in one transaction.
async fn delete_sagas(
    conn: &mut AsyncMysqlConnection,
    ids: &[String],
    window: i64,
) -> anyhow::Result<SagaCount> {
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        let mut q = diesel::sql_query(format!(
            "SELECT saga_id, order_id FROM saga_states WHERE saga_id IN ({}) \
             AND status IN ({TERMINAL_SQL}) AND updated_at < NOW(6) - INTERVAL ? MICROSECOND \
             FOR UPDATE SKIP LOCKED",
            placeholders(ids.len())
        ))
        .into_boxed();
        for id in ids {
            q = q.bind::<Text, _>(id.clone());
        }
        let locked: Vec<Locked> = q.bind::<BigInt, _>(window).load(c).await?;
        if locked.is_empty() {
            return Ok(SagaCount::default());
        }
        let sagas: Vec<&str> = locked.iter().map(|l| l.saga_id.as_str()).collect();
        let orders: Vec<i64> = locked.iter().map(|l| l.order_id).collect();
        let events = diesel::delete(saga_events::table.filter(saga_events::saga_id.eq_any(&sagas)))
            .execute(c)
            .await?;
        let order_rows = diesel::delete(o::orders::table.filter(o::orders::id.eq_any(&orders)))
            .execute(c)
            .await?;
        let saga_rows =
            diesel::delete(saga_states::table.filter(saga_states::saga_id.eq_any(&sagas)))
                .execute(c)
                .await?;
        Ok(SagaCount {
            sagas: saga_rows as u64,
            events: events as u64,
            orders: order_rows as u64,
        })
    })
    .await
    .context("Failed to delete aged sagas")
}

/// What `delete_sagas` would delete for `ids` (all of them terminal and
/// aged when read), without locking or deleting.
async fn count_sagas(conn: &mut AsyncMysqlConnection, ids: &[String]) -> anyhow::Result<SagaCount> {
    let events: i64 = saga_events::table
        .filter(saga_events::saga_id.eq_any(ids))
        .count()
        .get_result(conn)
        .await
        .context("Failed to count saga events")?;
    let orders: i64 = saga_states::table
        .inner_join(o::orders::table)
        .filter(saga_states::saga_id.eq_any(ids))
        .count()
        .get_result(conn)
        .await
        .context("Failed to count orders")?;
    Ok(SagaCount {
        sagas: ids.len() as u64,
        events: events.max(0) as u64,
        orders: orders.max(0) as u64,
    })
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
                (t[0].table, t[0].column, t[0].kind),
                ("processed_events", "processed_at", Kind::Aged)
            );
            assert_eq!(t[0].window, cfg.retention.dedup);
        }
        assert!(targets(Role::Inventory, &cfg).is_empty());
    }

    #[test]
    fn the_order_role_prunes_terminal_sagas_only_when_asked() {
        let mut cfg = Config::default();
        assert!(targets(Role::Order, &cfg)
            .iter()
            .all(|t| t.kind != Kind::TerminalSagas));
        cfg.retention.sagas = Some(Duration::from_secs(30 * 86_400));
        let t = targets(Role::Order, &cfg);
        let sagas: Vec<_> = t.iter().filter(|t| t.kind == Kind::TerminalSagas).collect();
        assert_eq!(sagas.len(), 1);
        assert_eq!(sagas[0].window, Duration::from_secs(30 * 86_400));
        for role in [Role::Payment, Role::Inventory] {
            assert!(targets(role, &cfg).iter().all(|t| t.kind == Kind::Aged));
        }
    }

    #[test]
    fn only_terminal_statuses_are_pruned() {
        for s in SagaStatus::ALL {
            assert_eq!(is_terminal(s.as_str()), s.is_terminal());
            assert_eq!(
                TERMINAL_SQL.contains(&format!("'{}'", s.as_str())),
                s.is_terminal()
            );
        }
        assert!(!is_terminal("completed"));
    }

    #[test]
    fn a_window_is_counted_in_microseconds_without_wrapping() {
        assert_eq!(window_micros(Duration::from_secs(2)).unwrap(), 2_000_000);
        assert!(window_micros(Duration::MAX).is_err());
    }
}
