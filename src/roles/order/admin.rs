//! Operator views and actions on sagas: a summary with rates, list, show
//! with timeline, retry.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Datetime, Varchar},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use super::{
    decide::{NotResent, Resend},
    model::{OrderRow, OrderView, SagaEventRow, SagaRow, SagaView},
    sagas,
    schema::{orders, saga_events, saga_states},
};
use crate::{context::Ctx, http::ApiError, saga::SagaStatus};

#[derive(Serialize)]
pub struct SagaList {
    pub count: usize,
    pub sagas: Vec<SagaView>,
    /// Pass as `before` for the next page.
    pub next_before: Option<String>,
}

/// What `GET /admin/sagas` filters on; every field optional.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub status: Option<SagaStatus>,
    /// Only sagas created at least this long ago.
    pub older_than: Option<Duration>,
    /// Only sagas not moved (updated) for at least this long: with an
    /// in-flight status, the stuck ones.
    pub idle_for: Option<Duration>,
    /// Only sagas older than this saga id (the next page).
    pub before: Option<String>,
}

/// `now - d`, or the earliest date when `d` reaches past it.
fn ago(now: NaiveDateTime, d: Duration) -> NaiveDateTime {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(NaiveDateTime::MIN)
}

/// Whether a saga in `status`, last moved at `updated_at`, is stuck: in
/// flight and not moved for `recovery.stuck_after` (when recovery re-sends
/// its command too).
fn is_stuck(status: &str, updated_at: NaiveDateTime, now: NaiveDateTime, after: Duration) -> bool {
    SagaStatus::parse(status).is_some_and(|s| !s.is_terminal()) && updated_at <= ago(now, after)
}

/// The JSON view of a saga row, with `stuck` set from the configuration.
fn view(ctx: &Ctx, row: &SagaRow, now: NaiveDateTime) -> SagaView {
    let mut v = SagaView::from(row);
    v.stuck = is_stuck(
        &row.status,
        row.updated_at,
        now,
        ctx.config.recovery.stuck_after,
    );
    v
}

pub async fn list(ctx: &Ctx, limit: i64, f: ListFilter) -> Result<SagaList, ApiError> {
    let mut conn = ctx.pool.get().await?;
    let now = chrono::Utc::now().naive_utc();
    let mut q = saga_states::table.select(SagaRow::as_select()).into_boxed();
    if let Some(s) = f.status {
        q = q.filter(saga_states::status.eq(s.as_str()));
    }
    if let Some(d) = f.older_than {
        q = q.filter(saga_states::created_at.le(ago(now, d)));
    }
    if let Some(d) = f.idle_for {
        q = q.filter(saga_states::updated_at.le(ago(now, d)));
    }
    if let Some(b) = f.before {
        q = q.filter(saga_states::saga_id.lt(b));
    }
    // Saga ids are UUIDv7: ordering by id is ordering by creation time.
    let q = q.order(saga_states::saga_id.desc()).limit(limit);
    let rows: Vec<SagaRow> = conn
        .transaction::<_, diesel::result::Error, _>(async |c| q.load(c).await)
        .await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.saga_id.clone()))
        .flatten();
    Ok(SagaList {
        count: rows.len(),
        sagas: rows.iter().map(|r| view(ctx, r, now)).collect(),
        next_before,
    })
}

#[derive(Serialize)]
pub struct SagaDetail {
    pub saga: SagaView,
    pub order: Option<OrderView>,
    pub events: Vec<SagaEventRow>,
}

pub async fn show(ctx: &Ctx, saga_id: &str) -> Result<SagaDetail, ApiError> {
    let mut conn = ctx.pool.get().await?;
    let found = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let saga: Option<SagaRow> = saga_states::table
                .find(saga_id)
                .select(SagaRow::as_select())
                .first(conn)
                .await
                .optional()?;
            let Some(saga) = saga else { return Ok(None) };
            let order: Option<OrderRow> = orders::table
                .find(saga.order_id)
                .select(OrderRow::as_select())
                .first(conn)
                .await
                .optional()?;
            let events: Vec<SagaEventRow> = saga_events::table
                .filter(saga_events::saga_id.eq(saga_id))
                .order(saga_events::id.asc())
                .select(SagaEventRow::as_select())
                .load(conn)
                .await?;
            Ok(Some((saga, order, events)))
        })
        .await?;
    let Some((saga, order, events)) = found else {
        return Err(ApiError::not_found(format!("saga {saga_id} not found")));
    };
    Ok(SagaDetail {
        saga: view(ctx, &saga, chrono::Utc::now().naive_utc()),
        order: order.as_ref().map(OrderView::from),
        events,
    })
}

#[derive(Serialize)]
pub struct RetryAccepted {
    pub saga_id: String,
    pub action: &'static str,
    pub message_id: String,
}

/// Re-drives a saga: a compensation that failed goes back to COMPENSATING
/// and its release is sent again; a saga in flight has its pending command
/// re-sent now (`decide::decide_resend`, the same re-send as recovery's).
pub async fn retry(ctx: &Ctx, saga_id: &str) -> Result<RetryAccepted, ApiError> {
    let mut conn = ctx.pool.get().await?;
    match sagas::resend(ctx, &mut conn, saga_id, Resend::Operator).await? {
        None => Err(ApiError::not_found(format!("saga {saga_id} not found"))),
        Some(Ok(done)) => {
            tracing::info!(saga_id = %saga_id, action = done.action, "operator retried a saga");
            Ok(RetryAccepted {
                saga_id: saga_id.into(),
                action: done.action,
                message_id: done.message_id,
            })
        }
        Some(Err(NotResent::NotInFlight { status, step })) => Err(ApiError::conflict(format!(
            "saga is {status}/{step}: only a failed compensation or a saga in flight can be retried"
        ))),
        Some(Err(NotResent::NotStuck)) => Err(ApiError::conflict(format!(
            "saga {saga_id} moved meanwhile"
        ))),
    }
}

/// The window of the summary's rates.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How many sagas there are in one status, and how many of them reached
/// it (or, in flight, last moved) within the window.
#[derive(Serialize, Debug)]
pub struct StatusCount {
    pub status: &'static str,
    pub count: i64,
    pub in_window: i64,
}

/// `GET /admin/summary`: the counters the console shows, read from the
/// database (not from one process's metrics), so every replica behind a
/// load balancer answers the same.
#[derive(Serialize, Debug)]
pub struct Summary {
    pub total: i64,
    pub window_seconds: u64,
    /// Sagas created within the window (all statuses).
    pub started_in_window: i64,
    /// IN_PROGRESS plus COMPENSATING.
    pub in_flight: i64,
    /// In flight and not moved for `stuck_after_seconds`.
    pub stuck: i64,
    pub stuck_after_seconds: u64,
    /// Every status, in the state machine's order, zeros included.
    pub statuses: Vec<StatusCount>,
}

#[derive(QueryableByName)]
struct StatusRow {
    #[diesel(sql_type = Varchar)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    in_window: i64,
    #[diesel(sql_type = BigInt)]
    idle: i64,
    #[diesel(sql_type = BigInt)]
    started: i64,
}

/// One pass over the (status, updated_at) index, grouped by status.
pub async fn summary(ctx: &Ctx) -> Result<Summary, ApiError> {
    let mut conn = ctx.pool.get().await?;
    let now = chrono::Utc::now().naive_utc();
    let stuck_after = ctx.config.recovery.stuck_after;
    let rows: Vec<StatusRow> = diesel::sql_query(
        "SELECT status, COUNT(*) AS n, \
           CAST(COALESCE(SUM(updated_at >= ?), 0) AS SIGNED) AS in_window, \
           CAST(COALESCE(SUM(updated_at <= ?), 0) AS SIGNED) AS idle, \
           CAST(COALESCE(SUM(created_at >= ?), 0) AS SIGNED) AS started \
         FROM saga_states GROUP BY status",
    )
    .bind::<Datetime, _>(ago(now, WINDOW))
    .bind::<Datetime, _>(ago(now, stuck_after))
    .bind::<Datetime, _>(ago(now, WINDOW))
    .load(&mut conn)
    .await?;
    let mut out = Summary {
        total: 0,
        window_seconds: WINDOW.as_secs(),
        started_in_window: 0,
        in_flight: 0,
        stuck: 0,
        stuck_after_seconds: stuck_after.as_secs(),
        statuses: Vec::new(),
    };
    for st in SagaStatus::ALL {
        let row = rows.iter().find(|r| r.status == st.as_str());
        let (n, in_window) = row.map_or((0, 0), |r| (r.n, r.in_window));
        if !st.is_terminal() {
            out.in_flight += n;
            out.stuck += row.map_or(0, |r| r.idle);
        }
        out.statuses.push(StatusCount {
            status: st.as_str(),
            count: n,
            in_window,
        });
    }
    // Statuses the state machine does not know (none today) still count.
    out.total = rows.iter().map(|r| r.n).sum();
    out.started_in_window = rows.iter().map(|r| r.started).sum();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_means_in_flight_and_idle_past_the_threshold() {
        let now = chrono::Utc::now().naive_utc();
        let t = Duration::from_secs(30);
        let idle = ago(now, Duration::from_secs(31));
        let fresh = ago(now, Duration::from_secs(5));
        assert!(is_stuck("IN_PROGRESS", idle, now, t));
        assert!(is_stuck("COMPENSATING", idle, now, t));
        assert!(!is_stuck("IN_PROGRESS", fresh, now, t));
        assert!(!is_stuck("FAILED", idle, now, t));
        assert!(!is_stuck("COMPLETED", idle, now, t));
    }

    #[test]
    fn ago_saturates_instead_of_overflowing() {
        let now = chrono::Utc::now().naive_utc();
        assert_eq!(ago(now, Duration::MAX), NaiveDateTime::MIN);
        assert_eq!(ago(now, Duration::ZERO), now);
    }
}
