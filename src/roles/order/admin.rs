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
    let rows = conn
        .transaction::<_, diesel::result::Error, _>(async |c| load_page(c, &f, now, limit).await)
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

/// Between a saga id's time and the saga's `created_at`: the id is drawn
/// first, microseconds before; a second also covers a clock that steps.
const ID_TIME_SLACK: chrono::Duration = chrono::Duration::seconds(1);

/// The lowest UUIDv7, as stored (lowercase text, binary collation), whose
/// time is `t`: the first 48 bits of a UUIDv7 are its Unix time in
/// milliseconds, so every id drawn before `t` sorts below it and every id
/// drawn at `t` or later sorts at or above it.
pub fn v7_floor(t: NaiveDateTime) -> String {
    let ms = t.and_utc().timestamp_millis().clamp(0, (1 << 48) - 1);
    format!(
        "{:08x}-{:04x}-7000-8000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// One page of `GET /admin/sagas`, newest first, on `conn`. Written as SQL
/// for its index hint: with a status, the page is read from the index
/// `(status, saga_id)` as a range that starts at the bound. Left to itself
/// the optimizer seeks on the status alone and steps through every newer
/// saga of that status first: `status=COMPLETED&older_than=1d` took over 10
/// s on ten million sagas, 8 ms with the hint.
pub async fn load_page(
    conn: &mut diesel_async::AsyncMysqlConnection,
    f: &ListFilter,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<SagaRow>> {
    let from = if f.status.is_some() {
        "SELECT * FROM saga_states FORCE INDEX (idx_saga_status) WHERE TRUE"
    } else {
        "SELECT * FROM saga_states WHERE TRUE"
    };
    let mut q = diesel::sql_query(from).into_boxed();
    // The latest creation time a saga the filters keep can have.
    let mut created_by: Option<NaiveDateTime> = None;
    if let Some(s) = f.status {
        q = q.sql(" AND status = ?").bind::<Varchar, _>(s.as_str());
    }
    if let Some(d) = f.older_than {
        let t = ago(now, d);
        q = q.sql(" AND created_at <= ?").bind::<Datetime, _>(t);
        created_by = Some(t);
    }
    if let Some(d) = f.idle_for {
        // Not moved since `t`, so created by then too.
        let t = ago(now, d);
        q = q.sql(" AND updated_at <= ?").bind::<Datetime, _>(t);
        created_by = Some(created_by.map_or(t, |c| c.min(t)));
    }
    if let Some(t) = created_by {
        // Saga ids are UUIDv7 drawn as the saga is created: seek below the
        // ids of that time instead of stepping through every newer saga
        // (on ten million, `older_than=1d` stepped through the last day's
        // five million: 4.4 s).
        let bound = t.checked_add_signed(ID_TIME_SLACK).unwrap_or(t);
        q = q
            .sql(" AND saga_id < ?")
            .bind::<Varchar, _>(v7_floor(bound));
    }
    if let Some(b) = &f.before {
        q = q.sql(" AND saga_id < ?").bind::<Varchar, _>(b.clone());
    }
    // Saga ids are UUIDv7: ordering by id is ordering by creation time.
    q.sql(" ORDER BY saga_id DESC LIMIT ?")
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await
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

/// A status holding more sagas than this is shown as "at least this many":
/// counting is a scan of that status's index range, so the cap bounds what
/// one summary costs (a few milliseconds) whatever the table's size.
pub const COUNT_CAP: i64 = 10_000;

/// How many sagas there are in one status (up to `COUNT_CAP`), and how many
/// reached it (or, in flight, last moved) within the window.
#[derive(Serialize, Debug)]
pub struct StatusCount {
    pub status: &'static str,
    pub count: i64,
    /// `count` stopped at `COUNT_CAP`: there are at least that many.
    pub capped: bool,
    pub in_window: i64,
}

/// `GET /admin/summary`: the counters the console shows, read from the
/// database (not from one process's metrics), so every replica behind a
/// load balancer answers the same. What it reads is bounded: the sagas in
/// flight, at most `COUNT_CAP` index entries per status, and the window's
/// timeline rows (docs/design/console.md).
#[derive(Serialize, Debug)]
pub struct Summary {
    /// The sum of the counts (at least this many when `capped`).
    pub total: i64,
    pub capped: bool,
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
struct InFlightRow {
    #[diesel(sql_type = Varchar)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    in_window: i64,
    #[diesel(sql_type = BigInt)]
    idle: i64,
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Reached {
    #[diesel(sql_type = Varchar)]
    status: String,
    #[diesel(sql_type = BigInt)]
    started: i64,
    #[diesel(sql_type = BigInt)]
    reached: i64,
}

#[derive(QueryableByName)]
struct IdAt {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Datetime)]
    created_at: NaiveDateTime,
}

#[derive(QueryableByName)]
struct Bounds {
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    lo: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    hi: Option<i64>,
}

/// A lower bound of the ids of `saga_events` written at or after `since`:
/// ids are handed out in the order rows are written, so a bisection over
/// the primary key finds it in about log2(rows) index dives. `None`: no
/// event at all.
async fn first_event_since(
    conn: &mut diesel_async::AsyncMysqlConnection,
    since: NaiveDateTime,
) -> diesel::QueryResult<Option<i64>> {
    let b: Bounds = diesel::sql_query("SELECT MIN(id) AS lo, MAX(id) AS hi FROM saga_events")
        .get_result(conn)
        .await?;
    let (Some(mut lo), Some(hi)) = (b.lo, b.hi) else {
        return Ok(None);
    };
    let mut hi = hi.saturating_add(1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let next: Option<IdAt> = diesel::sql_query(
            "SELECT id, created_at FROM saga_events WHERE id >= ? ORDER BY id LIMIT 1",
        )
        .bind::<BigInt, _>(mid)
        .get_result(conn)
        .await
        .optional()?;
        match next {
            Some(r) if r.created_at < since => lo = r.id.saturating_add(1),
            _ => hi = mid,
        }
    }
    Ok(Some(lo))
}

/// Rows written around the same instant may get their ids a little out of
/// time order; the window's scan starts this many ids earlier and filters
/// on the time.
const ID_SLACK: i64 = 1_000;

pub async fn summary(ctx: &Ctx) -> Result<Summary, ApiError> {
    let mut conn = ctx.pool.get().await?;
    let now = chrono::Utc::now().naive_utc();
    let since = ago(now, WINDOW);
    let stuck_after = ctx.config.recovery.stuck_after;
    // In flight: exact, through the status index (few rows).
    let flying: Vec<InFlightRow> = diesel::sql_query(
        "SELECT status, COUNT(*) AS n, \
           CAST(COALESCE(SUM(updated_at >= ?), 0) AS SIGNED) AS in_window, \
           CAST(COALESCE(SUM(updated_at <= ?), 0) AS SIGNED) AS idle \
         FROM saga_states WHERE status IN ('IN_PROGRESS', 'COMPENSATING') GROUP BY status",
    )
    .bind::<Datetime, _>(since)
    .bind::<Datetime, _>(ago(now, stuck_after))
    .load(&mut conn)
    .await?;
    // The window from the timeline: sagas started, and terminal statuses
    // reached (a move into the status from another one).
    let reached: Vec<Reached> = match first_event_since(&mut conn, since).await? {
        None => Vec::new(),
        Some(lo) => {
            diesel::sql_query(
                "SELECT to_status AS status, \
                   CAST(SUM(from_status IS NULL) AS SIGNED) AS started, \
                   CAST(SUM(from_status IS NOT NULL AND from_status <> to_status) AS SIGNED) AS reached \
                 FROM saga_events WHERE id >= ? AND created_at >= ? GROUP BY to_status",
            )
            .bind::<BigInt, _>(lo.saturating_sub(ID_SLACK))
            .bind::<Datetime, _>(since)
            .load(&mut conn)
            .await?
        }
    };
    let mut out = Summary {
        total: 0,
        capped: false,
        window_seconds: WINDOW.as_secs(),
        started_in_window: reached.iter().map(|r| r.started).sum(),
        in_flight: 0,
        stuck: 0,
        stuck_after_seconds: stuck_after.as_secs(),
        statuses: Vec::new(),
    };
    for st in SagaStatus::ALL {
        let (count, capped, in_window) = if st.is_terminal() {
            // The index range of one status, cut at the cap.
            let n: N = diesel::sql_query(
                "SELECT COUNT(*) AS n FROM \
                 (SELECT 1 FROM saga_states WHERE status = ? LIMIT ?) capped",
            )
            .bind::<Varchar, _>(st.as_str())
            .bind::<BigInt, _>(COUNT_CAP)
            .get_result(&mut conn)
            .await?;
            let in_window = reached
                .iter()
                .find(|r| r.status == st.as_str())
                .map_or(0, |r| r.reached);
            (n.n, n.n >= COUNT_CAP, in_window)
        } else {
            let row = flying.iter().find(|r| r.status == st.as_str());
            out.in_flight += row.map_or(0, |r| r.n);
            out.stuck += row.map_or(0, |r| r.idle);
            (
                row.map_or(0, |r| r.n),
                false,
                row.map_or(0, |r| r.in_window),
            )
        };
        out.total += count;
        out.capped |= capped;
        out.statuses.push(StatusCount {
            status: st.as_str(),
            count,
            capped,
            in_window,
        });
    }
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

    fn v7_at(ms: i64) -> String {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            (ms / 1000) as u64,
            (ms % 1000) as u32 * 1_000_000,
        );
        uuid::Uuid::new_v7(ts).to_string()
    }

    #[test]
    fn the_v7_floor_of_a_time_splits_ids_drawn_before_it_from_the_rest() {
        for ms in [
            1_000_i64,
            1_796_059_426_123,
            1_796_059_426_999,
            281_474_976_710_000,
        ] {
            let t = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .naive_utc();
            let floor = v7_floor(t);
            assert_eq!(floor.len(), 36);
            for _ in 0..50 {
                assert!(v7_at(ms - 1) < floor, "{ms}");
                assert!(v7_at(ms) >= floor, "{ms}");
                assert!(v7_at(ms + 1) > floor, "{ms}");
            }
        }
        // Before 1970 every id is above it; none below.
        assert_eq!(
            v7_floor(NaiveDateTime::MIN),
            "00000000-0000-7000-8000-000000000000"
        );
    }
}
