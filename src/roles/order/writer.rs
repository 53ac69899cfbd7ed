//! Group commit for POST /orders. Requests that arrive while a transaction
//! is being written wait for the next one and go in together: one
//! transaction, sent in one round trip (db::script), with a multi-row insert
//! each of orders, sagas, timeline rows and outbox rows. Under light load a batch is one order and nothing
//! waits; under heavy load the database does a fraction of the statements.
//! Orders with an Idempotency-Key, and any batch that fails, take the
//! one-by-one path (`orders::place`), which owns the error handling.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{
    orders::{self, NewOrder, Placed, Rows},
    schema::{orders as orders_t, saga_events, saga_states},
};
use crate::{context::AppState, db::Script, http::ApiError, messaging::outbox};

/// Most orders in one transaction.
const MAX_BATCH: usize = 64;
/// Transactions in flight at once: one commits while the next batch
/// gathers (more only compete with each other for the CPU).
const WRITERS: usize = 2;

struct Job {
    new: NewOrder,
    trace_id: String,
    reply: oneshot::Sender<Result<Placed, ApiError>>,
}

/// The handle handlers use.
#[derive(Clone)]
pub struct OrderWriter {
    tx: mpsc::Sender<Job>,
    ctx: AppState,
}

impl OrderWriter {
    pub fn start(ctx: AppState) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let tasks = (0..WRITERS)
            .map(|_| tokio::spawn(write_loop(ctx.clone(), rx.clone())))
            .collect();
        (Self { tx, ctx }, tasks)
    }

    /// Places an order (with its saga and first command).
    pub async fn place(
        &self,
        new: NewOrder,
        key: Option<String>,
        trace_id: String,
    ) -> Result<Placed, ApiError> {
        if key.is_some() {
            return orders::place(&self.ctx, new, key, &trace_id).await;
        }
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Job {
                new,
                trace_id,
                reply,
            })
            .await
            .is_err()
        {
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
        let rows: Vec<Rows> = batch
            .iter()
            .map(|j| orders::rows(&j.new, None, &j.trace_id))
            .collect();
        match write_many(&ctx, &rows).await {
            Ok(()) => {
                ctx.outbox
                    .enqueue(rows.iter().map(|r| r.cmd.clone()).collect());
                for (job, r) in batch.drain(..).zip(rows) {
                    tracing::info!(order_id = %r.row.id, saga_id = %r.row.saga_id, trace_id = %job.trace_id, "order placed");
                    let _ = job.reply.send(Ok(Placed {
                        order: r.row,
                        created: true,
                    }));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, orders = batch.len(), "batched insert failed; placing one by one");
                for job in batch.drain(..) {
                    let r = orders::place(&ctx, job.new, None, &job.trace_id).await;
                    let _ = job.reply.send(r);
                }
            }
        }
    }
}

async fn write_many(ctx: &AppState, rows: &[Rows]) -> anyhow::Result<()> {
    let mut conn = ctx.pool.get().await?;
    let o: Vec<_> = rows.iter().map(|r| &r.row).collect();
    let s: Vec<_> = rows.iter().map(|r| &r.saga).collect();
    let e: Vec<_> = rows.iter().map(|r| &r.event).collect();
    let m: Vec<_> = rows.iter().map(|r| r.cmd.clone()).collect();
    // The whole transaction in one round trip (db::script).
    let mut script = Script::new();
    script
        .push(&diesel::insert_into(orders_t::table).values(o))?
        .push(&diesel::insert_into(saga_states::table).values(s))?
        .push(&diesel::insert_into(saga_events::table).values(e))?
        .push(&outbox::insert_statement(&m))?;
    conn.run_in_transaction(&script).await?;
    Ok(())
}
