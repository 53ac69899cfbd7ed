//! Integer order ids from blocks reserved in orders_db (docs/design/order-ids.md).
//!
//! A replica reserves `BLOCK` ids in one statement on the one-row table
//! `id_blocks` and hands them out from memory. When a quarter of the block
//! is left, the next block is reserved in the background, so placing an
//! order costs no round trip of its own; only a replica whose block runs
//! dry before the refill came back waits for one. Ids are unique across
//! replicas (the UPDATE serialises them on the row), below 2^53 (checked at
//! reservation), increasing within a replica, and roughly time-ordered
//! across replicas (each block is newer than every block reserved before
//! it). Ids left in a block when a replica stops are never used: gaps, as
//! with AUTO_INCREMENT.
//!
//! Hand-written rather than a crate: the known id crates make snowflake or
//! UUID-like ids, wider than a JavaScript number, or need a coordinator.

use std::sync::Arc;

use diesel::{sql_types::BigInt, QueryableByName};
use diesel_async::RunQueryDsl;
use tokio::sync::{Mutex, Notify};

use crate::{db::DbPool, domain::MAX_ID, observability::metrics::Metrics};

/// Ids reserved per round trip. At 1,000 orders/s a replica reserves a
/// block about once a second; a restart leaves at most this many unused.
pub const BLOCK: i64 = 1000;

/// The `id_blocks` row the order ids come from.
const NAME: &str = "orders";

#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("reserving order ids failed: {0}")]
    Db(String),
    #[error("order ids are exhausted (next block would pass {MAX_ID})")]
    Exhausted,
}

/// A range of ids `[next, end)`.
#[derive(Clone, Copy, Debug, Default)]
struct Block {
    next: i64,
    end: i64,
}

impl Block {
    fn left(&self) -> i64 {
        self.end - self.next
    }
}

#[derive(Default)]
struct State {
    current: Block,
    spare: Option<Block>,
    refilling: bool,
}

struct Inner {
    pool: DbPool,
    metrics: Arc<Metrics>,
    size: i64,
    state: Mutex<State>,
    /// Woken when a background refill ends (with a block or not).
    refilled: Notify,
}

/// Hands out order ids; clones share the same blocks.
#[derive(Clone)]
pub struct IdAllocator {
    inner: Arc<Inner>,
}

#[derive(QueryableByName)]
struct Reserved {
    #[diesel(sql_type = BigInt)]
    end: i64,
}

/// Reserves `size` ids on `pool`'s database: one UPDATE, then
/// `LAST_INSERT_ID()` on the same connection (it is per connection), which
/// MySQL 8 and MariaDB both answer without touching a table.
pub async fn reserve(pool: &DbPool, size: i64) -> Result<(i64, i64), IdError> {
    let db = |e: &dyn std::fmt::Display| IdError::Db(e.to_string());
    let mut conn = pool.get().await.map_err(|e| db(&e))?;
    let n = diesel::sql_query(
        "UPDATE id_blocks SET next_id = LAST_INSERT_ID(next_id + ?) \
         WHERE name = ? AND next_id + ? <= ?",
    )
    .bind::<BigInt, _>(size)
    .bind::<diesel::sql_types::Text, _>(NAME)
    .bind::<BigInt, _>(size)
    .bind::<BigInt, _>(MAX_ID.saturating_add(1))
    .execute(&mut **conn)
    .await
    .map_err(|e| db(&e))?;
    if n != 1 {
        return Err(IdError::Exhausted);
    }
    let r: Reserved = diesel::sql_query("SELECT LAST_INSERT_ID() AS end")
        .get_result(&mut **conn)
        .await
        .map_err(|e| db(&e))?;
    let start = r.end.checked_sub(size).ok_or(IdError::Exhausted)?;
    Ok((start, r.end))
}

impl IdAllocator {
    pub fn new(pool: DbPool, metrics: Arc<Metrics>) -> Self {
        Self::with_block(pool, metrics, BLOCK)
    }

    pub fn with_block(pool: DbPool, metrics: Arc<Metrics>, size: i64) -> Self {
        metrics.batch_may_fail("order_ids", "database");
        Self {
            inner: Arc::new(Inner {
                pool,
                metrics,
                size: size.max(1),
                state: Mutex::new(State::default()),
                refilled: Notify::new(),
            }),
        }
    }

    /// The next order id: from memory, or (when the block ran dry before
    /// its refill came back) after one reservation.
    pub async fn next(&self) -> Result<i64, IdError> {
        let mut st = self.inner.state.lock().await;
        while st.current.left() == 0 {
            if let Some(b) = st.spare.take() {
                st.current = b;
            } else if st.refilling {
                // Wait for the refill in flight rather than reserving
                // another block: a block reserved now would be newer than
                // the refill's, and ids would go backwards when it lands.
                let refilled = self.inner.refilled.notified();
                drop(st);
                refilled.await;
                st = self.inner.state.lock().await;
            } else {
                let (next, end) = self.reserve_counted().await?;
                st.current = Block { next, end };
            }
        }
        let id = st.current.next;
        st.current.next += 1;
        if st.current.left() <= self.inner.size / 4 && st.spare.is_none() && !st.refilling {
            st.refilling = true;
            let me = self.clone();
            tokio::spawn(async move { me.refill().await });
        }
        Ok(id)
    }

    async fn refill(&self) {
        let r = self.reserve_counted().await;
        let mut st = self.inner.state.lock().await;
        st.refilling = false;
        if let Ok((next, end)) = r {
            st.spare = Some(Block { next, end });
        }
        drop(st);
        self.inner.refilled.notify_waiters();
    }

    async fn reserve_counted(&self) -> Result<(i64, i64), IdError> {
        let r = reserve(&self.inner.pool, self.inner.size).await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "reserving a block of order ids failed");
            self.inner.metrics.batch_failed("order_ids", "database");
        }
        r
    }
}
