//! The saga store: locking sagas with their orders, the one write of a saga
//! decision (`decide::SagaWrites`), the one executor of saga events for a
//! batch of any size, and the one re-send of a pending command (recovery
//! and the operator's retry).
//!
//! The event executor runs through `db::batch::Runner`: in one transaction
//! it reads the batch's processed message ids, locks the sagas `FOR UPDATE`
//! in saga id order (two batches never wait on each other in a cycle),
//! decides (`decide::decide_events`) and sends every write in one round
//! trip (`db::Script`). Contention or a concurrent duplicate rolls back and
//! is tried again (the re-read finds what the other writer did); a
//! permanent error splits the batch down to the one event that fails.

use std::collections::HashSet;

use diesel::{
    dsl::sql,
    prelude::*,
    sql_types::{Datetime, Integer, Nullable, Text},
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use super::{
    decide::{
        self, Ended, EventOutcome, Interrupt, Interrupted, NotInterrupted, NotResent, Resend,
        SagaEvent, SagaWrites,
    },
    model::{OrderRow, SagaRow},
    schema::{orders, processed_events, saga_events, saga_states},
};
use crate::{
    context::Ctx,
    db::{
        batch::{ItemFailure, Runner},
        cached::{pad, Cached},
        Script,
    },
    messaging::{outbox, OutboxMessage},
    observability::new_trace_id,
};

/// Loads the saga (locked) and its order. The lock is taken by primary key
/// alone: a join here can make InnoDB scan and lock the whole
/// `uq_saga_order` index on a small table, deadlocking with order inserts.
/// The order needs no lock of its own: only the holder of its saga's lock
/// changes it.
pub async fn lock_saga(
    conn: &mut AsyncMysqlConnection,
    saga_id: &str,
) -> QueryResult<Option<(SagaRow, OrderRow)>> {
    Ok(lock_sagas_for_batch(conn, &[saga_id])
        .await?
        .into_iter()
        .next())
}

/// Loads and locks many sagas with their orders, in saga id order (so two
/// batches never wait on each other in a cycle).
pub async fn lock_sagas_for_batch(
    conn: &mut AsyncMysqlConnection,
    saga_ids: &[&str],
) -> QueryResult<Vec<(SagaRow, OrderRow)>> {
    if saga_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Lists padded for a cached statement (db::cached).
    let sagas: Vec<SagaRow> = Cached(
        saga_states::table
            .filter(saga_states::saga_id.eq_any(pad(saga_ids)))
            .order(saga_states::saga_id.asc())
            .select(SagaRow::as_select())
            .for_update(),
    )
    .load(conn)
    .await?;
    if sagas.is_empty() {
        return Ok(Vec::new());
    }
    let order_ids: Vec<i64> = sagas.iter().map(|s| s.order_id).collect();
    let mut by_id: std::collections::HashMap<i64, OrderRow> = Cached(
        orders::table
            .filter(orders::id.eq_any(pad(&order_ids)))
            .select(OrderRow::as_select()),
    )
    .load::<OrderRow>(conn)
    .await?
    .into_iter()
    .map(|o| (o.id, o))
    .collect();
    Ok(sagas
        .into_iter()
        .filter_map(|s| by_id.remove(&s.order_id).map(|o| (s, o)))
        .collect())
}

/// Writes a saga decision inside the caller's transaction, in one round
/// trip; returns the outbox messages it inserted, in `w.outbox` order.
pub async fn write(
    conn: &mut AsyncMysqlConnection,
    w: &SagaWrites,
) -> QueryResult<Vec<OutboxMessage>> {
    let msgs: Vec<OutboxMessage> = w.outbox.iter().map(|e| e.to_outbox()).collect();
    let mut script = Script::new();
    if !w.processed.is_empty() {
        let ids: Vec<_> = w
            .processed
            .iter()
            .map(|id| processed_events::message_id.eq(id))
            .collect();
        script.push(&diesel::insert_into(processed_events::table).values(&ids))?;
    }
    if !w.sagas.is_empty() {
        // Many rows updated in one statement: an upsert of rows that exist.
        script.push(
            &diesel::insert_into(saga_states::table)
                .values(&w.sagas)
                .on_conflict(diesel::dsl::DuplicatedKeys)
                .do_update()
                .set((
                    saga_states::status.eq(sql::<Text>("VALUES(status)")),
                    saga_states::current_step.eq(sql::<Text>("VALUES(current_step)")),
                    saga_states::failure_reason.eq(sql::<Nullable<Text>>("VALUES(failure_reason)")),
                    saga_states::last_event_id.eq(sql::<Nullable<Text>>("VALUES(last_event_id)")),
                    saga_states::retry_count.eq(sql::<Integer>("VALUES(retry_count)")),
                    saga_states::failed_step.eq(sql::<Nullable<Text>>("VALUES(failed_step)")),
                    saga_states::step_started_at.eq(sql::<Datetime>("VALUES(step_started_at)")),
                    saga_states::updated_at.eq(sql::<Datetime>("VALUES(updated_at)")),
                )),
        )?;
    }
    if !w.orders.is_empty() {
        // Only status and updated_at change; the idempotency key is left
        // out of the row (it is unique, and not this write's business).
        let rows: Vec<OrderRow> = w
            .orders
            .iter()
            .map(|o| OrderRow {
                idempotency_key: None,
                ..o.clone()
            })
            .collect();
        script.push(
            &diesel::insert_into(orders::table)
                .values(&rows)
                .on_conflict(diesel::dsl::DuplicatedKeys)
                .do_update()
                .set((
                    orders::status.eq(sql::<Text>("VALUES(status)")),
                    orders::updated_at.eq(sql::<Datetime>("VALUES(updated_at)")),
                )),
        )?;
    }
    if !w.timeline.is_empty() {
        script.push(&diesel::insert_into(saga_events::table).values(&w.timeline))?;
    }
    if !msgs.is_empty() {
        script.push(&outbox::insert_statement(&msgs))?;
    }
    script.run(conn).await?;
    Ok(msgs)
}

/// The Runner of saga event batches (`batch_failures_total{batch="saga"}`).
pub fn runner(ctx: &Ctx) -> Runner<'_> {
    Runner::new("saga", &ctx.pool, &ctx.metrics)
}

/// One event's result once its transaction committed.
#[derive(Clone, Debug)]
pub struct Applied {
    pub outcome: EventOutcome,
    /// The command it sends (committed: enqueue it on the relay).
    pub msg: Option<OutboxMessage>,
    /// Set when the saga ended with this event.
    pub ended: Option<Ended>,
    /// The saga's order, when the saga is known.
    pub order_id: Option<i64>,
}

/// Applies `events` (arrival order) through `runner`; one result per event.
/// `limits` stamp the expiry of the payment commands it sends.
pub async fn execute(
    runner: &Runner<'_>,
    events: &[SagaEvent],
    limits: &decide::Limits,
) -> Vec<Result<Applied, ItemFailure>> {
    // Copied in: a borrow held across the awaits below would make the
    // future's Send depend on its lifetime.
    let limits = *limits;
    runner
        .run(events, async move |conn, part: &[SagaEvent]| {
            let now = chrono::Utc::now().naive_utc();
            let r = conn
                .transaction::<_, diesel::result::Error, _>(async |c| {
                    let ids: Vec<&str> = part.iter().map(|e| e.message_id.as_str()).collect();
                    let seen: HashSet<String> = Cached(
                        processed_events::table
                            .filter(processed_events::message_id.eq_any(pad(&ids)))
                            .select(processed_events::message_id),
                    )
                    .load::<String>(c)
                    .await?
                    .into_iter()
                    .collect();
                    // Lock only the sagas something may happen to.
                    let mut saga_ids: Vec<&str> = part
                        .iter()
                        .filter(|e| !seen.contains(&e.message_id))
                        .map(|e| e.saga_id.as_str())
                        .collect();
                    saga_ids.sort_unstable();
                    saga_ids.dedup();
                    let state = lock_sagas_for_batch(c, &saga_ids).await?;
                    let order_of: std::collections::HashMap<String, i64> = state
                        .iter()
                        .map(|(s, o)| (s.saga_id.clone(), o.id))
                        .collect();
                    let mut d = decide::decide_events(&seen, state, part, now);
                    decide::stamp_expiry(&mut d.writes, &limits);
                    let msgs = write(c, &d.writes).await?;
                    Ok((d, msgs, order_of))
                })
                .await?;
            let (d, msgs, order_of) = r;
            let mut out: Vec<Applied> = d
                .outcomes
                .into_iter()
                .zip(part)
                .map(|(outcome, e)| Applied {
                    outcome,
                    msg: None,
                    ended: None,
                    order_id: order_of.get(&e.saga_id).cloned(),
                })
                .collect();
            for (e, m) in d.writes.outbox.iter().zip(msgs) {
                if let Some(a) = out.get_mut(e.item) {
                    a.msg = Some(m);
                }
            }
            for e in d.ended {
                if let Some(a) = out.get_mut(e.item) {
                    a.ended = Some(e);
                }
            }
            Ok(out)
        })
        .await
}

/// Re-sends one saga's pending command now, or for an operator retries a
/// failed compensation (`decide::decide_resend`), in one transaction; the
/// command is enqueued after the commit. `Ok(None)`: no saga with this id.
pub async fn resend(
    ctx: &Ctx,
    conn: &mut AsyncMysqlConnection,
    saga_id: &str,
    who: Resend,
) -> QueryResult<Option<Result<decide::Resent, NotResent>>> {
    let trace_id = new_trace_id();
    let now = chrono::Utc::now().naive_utc();
    let r = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            let Some((saga, order)) = lock_saga(c, saga_id).await? else {
                return Ok(None);
            };
            let message_id = uuid::Uuid::now_v7().to_string();
            let mut d = decide::decide_resend(saga, order, who, now, message_id, trace_id.clone());
            if let Ok(r) = &mut d {
                decide::stamp_expiry(&mut r.writes, &decide::Limits::new(&ctx.config.saga));
            }
            let msgs = match &d {
                Ok(r) => write(c, &r.writes).await?,
                Err(_) => Vec::new(),
            };
            Ok(Some((d, msgs)))
        })
        .await?;
    let Some((d, msgs)) = r else { return Ok(None) };
    if let Ok(done) = &d {
        tracing::info!(saga_id = %saga_id, trace_id = %trace_id, action = done.action, message_id = %done.message_id, "re-sent the pending command");
        ctx.outbox.enqueue(msgs);
    }
    Ok(Some(d))
}

/// What an interrupt did, and the command it wrote (committed).
pub type InterruptResult = (Result<Interrupted, NotInterrupted>, Vec<OutboxMessage>);

/// Interrupts one saga going forward (a deadline or the customer's cancel,
/// `decide::decide_interrupt`) in one transaction under the saga's lock, so
/// of two replicas (or a check and a cancel) racing for one saga, exactly
/// one moves it. Returns the committed command for the relay; `Ok(None)`:
/// no saga with this id.
pub async fn interrupt_in(
    conn: &mut AsyncMysqlConnection,
    saga_id: &str,
    why: Interrupt,
    trace_id: &str,
) -> QueryResult<Option<InterruptResult>> {
    let now = chrono::Utc::now().naive_utc();
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        let Some((saga, order)) = lock_saga(c, saga_id).await? else {
            return Ok(None);
        };
        let message_id = uuid::Uuid::now_v7().to_string();
        let d = decide::decide_interrupt(saga, order, why, now, message_id, trace_id.into());
        let msgs = match &d {
            Ok(i) => write(c, &i.writes).await?,
            Err(_) => Vec::new(),
        };
        Ok(Some((d, msgs)))
    })
    .await
}

/// `interrupt_in`, with the command enqueued on the relay after the commit.
pub async fn interrupt(
    ctx: &Ctx,
    conn: &mut AsyncMysqlConnection,
    saga_id: &str,
    why: Interrupt,
) -> QueryResult<Option<Result<Interrupted, NotInterrupted>>> {
    let trace_id = new_trace_id();
    let Some((d, msgs)) = interrupt_in(conn, saga_id, why, &trace_id).await? else {
        return Ok(None);
    };
    if let Ok(i) = &d {
        tracing::info!(saga_id = %saga_id, trace_id = %trace_id, step = %i.step, reason = %i.reason, "saga interrupted; compensating");
        ctx.outbox.enqueue(msgs);
    }
    Ok(Some(d))
}
