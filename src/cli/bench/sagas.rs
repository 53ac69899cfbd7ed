//! What the bench reads from the order database: the backlog of
//! non-terminal sagas created during the run, and, once they drained, their
//! outcomes and durations. One plain connection, a cheap indexed count per
//! sample.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use chrono::NaiveDateTime;
use diesel::{
    sql_types::{BigInt, Datetime, Text},
    QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use crate::config::SecretUrl;

/// Statuses a saga ends in.
pub const TERMINAL: [&str; 3] = ["COMPLETED", "COMPENSATED", "FAILED"];

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct SagaTimes {
    #[diesel(sql_type = Text)]
    status: String,
    /// updated_at - created_at.
    #[diesel(sql_type = BigInt)]
    duration_us: i64,
    /// updated_at - the start of the run.
    #[diesel(sql_type = BigInt)]
    end_us: i64,
}

/// The run's sagas once the load is over.
#[derive(Debug, Default)]
pub struct SagaStats {
    /// Every saga created during the run.
    pub total: u64,
    /// Per status, terminal or not.
    pub by_status: BTreeMap<String, u64>,
    /// created_at to the terminal update, terminal sagas only.
    pub durations_us: Vec<u64>,
    /// When the last terminal saga got there, from the start of the run.
    pub last_terminal: Option<Duration>,
}

impl SagaStats {
    pub fn terminal(&self) -> u64 {
        self.durations_us.len() as u64
    }
}

/// A connection to the order database; it reconnects (for up to 60 s) when
/// the database goes away under it, as in the chaos run.
pub struct OrderDb {
    conn: AsyncMysqlConnection,
    url: SecretUrl,
}

impl OrderDb {
    pub async fn connect(url: &SecretUrl) -> anyhow::Result<Self> {
        let conn = AsyncMysqlConnection::establish(url.expose())
            .await
            .with_context(|| {
                format!("Failed to connect to the order database {}", url.redacted())
            })?;
        Ok(Self {
            conn,
            url: url.clone(),
        })
    }

    /// Reconnects after a failure, trying for up to 60 s.
    async fn reconnect(&mut self, err: anyhow::Error) -> anyhow::Result<()> {
        // On stderr: tracing is set up by `serve` only, so a warning here
        // went nowhere.
        eprintln!("bench: order database lost ({err:#}); reconnecting");
        for _ in 0..120 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(c) = AsyncMysqlConnection::establish(self.url.expose()).await {
                self.conn = c;
                return Ok(());
            }
        }
        Err(err)
    }

    /// Sagas created since `since` that are not terminal yet. Uses the
    /// (status, updated_at) index, so it costs little even under load.
    pub async fn backlog(&mut self, since: NaiveDateTime) -> anyhow::Result<u64> {
        match self.backlog_once(since).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.reconnect(e).await?;
                self.backlog_once(since).await
            }
        }
    }

    async fn backlog_once(&mut self, since: NaiveDateTime) -> anyhow::Result<u64> {
        let c: Count = diesel::sql_query(
            "SELECT COUNT(*) AS n FROM saga_states \
             WHERE status IN ('IN_PROGRESS','COMPENSATING') AND created_at >= ?",
        )
        .bind::<Datetime, _>(since)
        .get_result(&mut self.conn)
        .await
        .context("Failed to count the saga backlog")?;
        Ok(c.n.max(0) as u64)
    }

    /// Outcomes and durations of the sagas created since `since`.
    pub async fn stats(&mut self, since: NaiveDateTime) -> anyhow::Result<SagaStats> {
        match self.stats_once(since).await {
            Ok(s) => Ok(s),
            Err(e) => {
                self.reconnect(e).await?;
                self.stats_once(since).await
            }
        }
    }

    async fn stats_once(&mut self, since: NaiveDateTime) -> anyhow::Result<SagaStats> {
        let rows: Vec<SagaTimes> = diesel::sql_query(
            "SELECT status, \
               TIMESTAMPDIFF(MICROSECOND, created_at, updated_at) AS duration_us, \
               TIMESTAMPDIFF(MICROSECOND, ?, updated_at) AS end_us \
             FROM saga_states WHERE created_at >= ?",
        )
        .bind::<Datetime, _>(since)
        .bind::<Datetime, _>(since)
        .load(&mut self.conn)
        .await
        .context("Failed to read the run's sagas")?;
        Ok(summarise(rows))
    }
}

fn summarise(rows: Vec<SagaTimes>) -> SagaStats {
    let mut s = SagaStats {
        total: rows.len() as u64,
        ..SagaStats::default()
    };
    let mut last_us: Option<i64> = None;
    for r in rows {
        if TERMINAL.contains(&r.status.as_str()) {
            s.durations_us.push(r.duration_us.max(0) as u64);
            last_us = Some(last_us.map_or(r.end_us, |l| l.max(r.end_us)));
        }
        *s.by_status.entry(r.status).or_default() += 1;
    }
    s.last_terminal = last_us.map(|us| Duration::from_micros(us.max(0) as u64));
    s
}

/// Polls until the backlog is empty or `timeout` passes. Returns whether
/// it drained and how long that took.
pub async fn wait_drained(
    db: &mut OrderDb,
    since: NaiveDateTime,
    timeout: Duration,
) -> anyhow::Result<(bool, Duration)> {
    let t0 = tokio::time::Instant::now();
    loop {
        if db.backlog(since).await? == 0 {
            return Ok((true, t0.elapsed()));
        }
        if t0.elapsed() >= timeout {
            return Ok((false, t0.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Samples the backlog once a second on its own connection, so a slow
/// count never delays the load or the progress line.
pub struct BacklogSampler {
    /// The latest sample; -1 until one succeeded.
    pub current: Arc<AtomicI64>,
    /// The largest sample seen.
    pub max: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl BacklogSampler {
    pub fn start(mut db: OrderDb, since: NaiveDateTime) -> Self {
        let current = Arc::new(AtomicI64::new(-1));
        let max = Arc::new(AtomicU64::new(0));
        let (cur, mx) = (current.clone(), max.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match db.backlog(since).await {
                    Ok(n) => {
                        cur.store(n as i64, Ordering::Relaxed);
                        mx.fetch_max(n, Ordering::Relaxed);
                    }
                    Err(_) => cur.store(-1, Ordering::Relaxed),
                }
            }
        });
        Self { current, max, task }
    }

    /// Stops sampling; returns the largest backlog seen.
    pub fn stop(self) -> u64 {
        self.task.abort();
        AtomicU64::load(&self.max, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, duration_us: i64, end_us: i64) -> SagaTimes {
        SagaTimes {
            status: status.into(),
            duration_us,
            end_us,
        }
    }

    #[test]
    fn summary_counts_terminal_sagas_only_for_timings() {
        let s = summarise(vec![
            row("COMPLETED", 40_000, 1_000_000),
            row("COMPENSATED", 90_000, 2_500_000),
            row("IN_PROGRESS", 5_000, 2_600_000),
            row("COMPLETED", 30_000, 2_000_000),
        ]);
        assert_eq!(s.total, 4);
        assert_eq!(s.terminal(), 3);
        assert_eq!(s.by_status["COMPLETED"], 2);
        assert_eq!(s.by_status["IN_PROGRESS"], 1);
        assert_eq!(s.last_terminal, Some(Duration::from_micros(2_500_000)));
        assert_eq!(summarise(vec![]).last_terminal, None);
    }
}
