//! Group commit for POST /orders, the one way an order is placed. Requests
//! that arrive while a transaction is being written wait for the next one
//! and go in together: one transaction, sent in one round trip
//! (db::script), with a multi-row insert each of orders, sagas, timeline
//! rows and outbox rows. Under light load a batch is one order and nothing
//! waits; under heavy load the database does a fraction of the statements.
//!
//! Every order's ids are made before its first attempt (`place::Planned`)
//! and an attempt is read + decide (`place::decide`) + write, run by
//! `db::batch::Runner`. The read is skipped when there is nothing to learn:
//! no Idempotency-Key in the batch and a first attempt (fresh ids exist
//! nowhere). After a failed attempt, whose commit may have happened with
//! its reply lost, the read asks which of the batch's order ids exist, and
//! only the missing orders are written.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{
    ids::IdAllocator,
    model::OrderRow,
    orders::{NewOrder, Placed},
    place::{self, Outcome, Planned, Seen, ToRead},
    schema::{orders as orders_t, saga_events, saga_states},
};
use crate::{
    context::{AppState, Ctx},
    db::{
        batch::{AttemptError, ItemFailure, Runner},
        cached::{pad, Cached},
        Conn, Script,
    },
    http::ApiError,
    messaging::outbox,
};

/// Most orders in one transaction.
const MAX_BATCH: usize = 64;
/// Transactions in flight at once: one commits while the next batch
/// gathers (more only compete with each other for the CPU).
const WRITERS: usize = 2;
/// Attempts at a batch (contention, a concurrent request's key, a lost
/// connection) before its orders are answered 503; with the runner's
/// backoff a database that is gone answers within a second.
const ATTEMPTS: u32 = 4;

struct Job {
    plan: Planned,
    reply: oneshot::Sender<Result<Placed, ApiError>>,
}

/// The handle handlers use.
#[derive(Clone)]
pub struct OrderWriter {
    tx: mpsc::Sender<Job>,
    ids: IdAllocator,
}

impl OrderWriter {
    pub fn start(ctx: AppState) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let tasks = (0..WRITERS)
            .map(|_| tokio::spawn(write_loop(ctx.clone(), rx.clone())))
            .collect();
        let ids = IdAllocator::new(ctx.pool.clone(), ctx.metrics.clone());
        (Self { tx, ids }, tasks)
    }

    /// Places an order (with its saga and first command), or answers from
    /// the order an Idempotency-Key already names.
    pub async fn place(
        &self,
        new: NewOrder,
        key: Option<String>,
        trace_id: String,
    ) -> Result<Placed, ApiError> {
        // The ids are made here, once: every attempt writes these rows.
        // The order id comes from memory (a reserved block); only a
        // replica whose block ran dry waits for the database here.
        let id =
            self.ids.next().await.map_err(|e| {
                ApiError::not_ready(format!("no order id available, try again ({e})"))
            })?;
        let plan = Planned::new(new, key, &trace_id, id);
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Job { plan, reply }).await.is_err() {
            return Err(ApiError::not_ready("shutting down"));
        }
        rx.await
            .unwrap_or_else(|_| Err(ApiError::not_ready("shutting down")))
    }
}

async fn write_loop(ctx: AppState, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        let (plans, replies): (Vec<Planned>, Vec<_>) =
            batch.drain(..).map(|j| (j.plan, j.reply)).unzip();
        let results = execute(&runner(&ctx), &plans).await;
        let mut msgs = Vec::new();
        for ((plan, reply), result) in plans.into_iter().zip(replies).zip(results) {
            let answer = match result {
                Ok(Outcome::Created) => {
                    let o = plan.rows.row;
                    tracing::info!(order_id = %o.id, saga_id = %o.saga_id, trace_id = %o.trace_id, "order placed");
                    msgs.push(plan.rows.cmd);
                    Ok(Placed {
                        order: o,
                        created: true,
                    })
                }
                Ok(Outcome::Replayed(order)) => Ok(Placed {
                    order,
                    created: false,
                }),
                Ok(Outcome::Conflict) => Err(ApiError::conflict(
                    "Idempotency-Key was already used with a different request body",
                )),
                // The runner logged and counted every failed attempt.
                Err(ItemFailure::Transient(_)) => {
                    Err(ApiError::not_ready("database unavailable, try again"))
                }
                Err(ItemFailure::Permanent(reason)) => Err(ApiError::internal(anyhow::anyhow!(
                    "placing order {} failed: {reason}",
                    plan.rows.row.id
                ))),
            };
            let _ = reply.send(answer);
        }
        // Committed: hand the reserve commands to the relay. An order found
        // written by a lost attempt is sent too (the sweeper would send it
        // later anyway; consumers are idempotent).
        if !msgs.is_empty() {
            ctx.outbox.enqueue(msgs);
        }
    }
}

/// The Runner of order batches (`batch_failures_total{batch="orders"}`).
pub fn runner(ctx: &Ctx) -> Runner<'_> {
    Runner::new("orders", &ctx.pool, &ctx.metrics).attempts(ATTEMPTS)
}

/// Places `plans` (arrival order) through `runner`: one result per plan.
/// The reserve commands of created orders are committed; the caller
/// enqueues them on the relay.
pub async fn execute(runner: &Runner<'_>, plans: &[Planned]) -> Vec<Result<Outcome, ItemFailure>> {
    // Owned (an Arc, not a borrowed flag): the spawned write loop must be
    // Send, and rustc cannot prove that for an async closure holding a
    // borrow.
    let tried = Arc::new(AtomicBool::new(false));
    runner
        .run(plans, async move |conn: &mut Conn, part: &[Planned]| {
            // Any attempt after the first may follow a commit whose reply
            // was lost (a split part too): look for its ids.
            let after_failure = tried.swap(true, Ordering::Relaxed);
            attempt(conn, part, after_failure).await
        })
        .await
}

/// One attempt at a batch: read what is needed, decide, write the new
/// orders in one transaction and one round trip.
async fn attempt(
    conn: &mut Conn,
    part: &[Planned],
    after_failure: bool,
) -> Result<Vec<Outcome>, AttemptError> {
    let seen = read(conn, part, after_failure).await?;
    let d = place::decide(part, &seen);
    if !d.insert.is_empty() {
        let rows: Vec<&place::Rows> = d.insert.iter().map(|&i| &part[i].rows).collect();
        let o: Vec<_> = rows.iter().map(|r| &r.row).collect();
        let s: Vec<_> = rows.iter().map(|r| &r.saga).collect();
        let e: Vec<_> = rows.iter().map(|r| &r.event).collect();
        let m: Vec<_> = rows.iter().map(|r| r.cmd.clone()).collect();
        let mut script = Script::new();
        script
            .push(&diesel::insert_into(orders_t::table).values(o))?
            .push(&diesel::insert_into(saga_states::table).values(s))?
            .push(&diesel::insert_into(saga_events::table).values(e))?
            .push(&outbox::insert_statement(&m))?;
        conn.run_in_transaction(&script).await?;
    }
    Ok(d.outcomes)
}

/// What `place::to_read` asks for, in one cached read; nothing, and no
/// round trip, when it asks for nothing. Keys are sought with their users
/// (`idempotency_user IN .. AND idempotency_key IN ..`, a few points of
/// the unique index); the cross pairs it may also return (one user's key used by
/// another user of the batch) are told apart by [`Seen`], which files each
/// row under its own user and key.
pub async fn read(
    conn: &mut Conn,
    part: &[Planned],
    after_failure: bool,
) -> Result<Seen, AttemptError> {
    let ToRead { ids, keys, users } = place::to_read(part, after_failure);
    let rows: Vec<OrderRow> = match (ids.is_empty(), keys.is_empty()) {
        (true, true) => return Ok(Seen::default()),
        (false, true) => {
            Cached(
                orders_t::table
                    .filter(orders_t::id.eq_any(pad(&ids)))
                    .select(OrderRow::as_select()),
            )
            .load(&mut **conn)
            .await?
        }
        (true, false) => {
            Cached(
                orders_t::table
                    .filter(
                        orders_t::idempotency_user
                            .eq_any(pad(&users))
                            .and(orders_t::idempotency_key.eq_any(pad(&keys))),
                    )
                    .select(OrderRow::as_select()),
            )
            .load(&mut **conn)
            .await?
        }
        (false, false) => {
            Cached(
                orders_t::table
                    .filter(
                        orders_t::id.eq_any(pad(&ids)).or(orders_t::idempotency_user
                            .eq_any(pad(&users))
                            .and(orders_t::idempotency_key.eq_any(pad(&keys)))),
                    )
                    .select(OrderRow::as_select()),
            )
            .load(&mut **conn)
            .await?
        }
    };
    let own: HashSet<i64> = ids.into_iter().collect();
    Ok(Seen::from_rows(rows, &own))
}
