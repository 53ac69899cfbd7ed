//! The saga orchestrator: consumes `order.events`, applies the pure
//! transition, and writes the saga, the order, the timeline row and the
//! next command in one transaction (after recording the message id, so a
//! redelivered event is a no-op).

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use super::{
    model::{NewSagaEvent, OrderRow, SagaRow},
    schema::{orders, processed_events, saga_events, saga_states},
};
use crate::{
    context::AppState,
    db::{
        self,
        cached::{pad, Cached},
    },
    domain::Money,
    messaging::{
        consumer::{Delivery, Handler, Outcome},
        contracts::{InventoryCommand, Message, PaymentCommand},
        outbox, OutboxMessage,
    },
    observability::metrics::StatusLabels,
    saga::{self, Command, Event, SagaStatus, SagaStep},
};

pub struct Orchestrator {
    pub ctx: AppState,
}

/// The message that carries `cmd` for this order.
pub fn command_message(cmd: Command, order: &OrderRow) -> Message {
    let inv = || InventoryCommand {
        saga_id: order.saga_id.clone(),
        order_id: order.id.clone(),
        product_id: order.product_id,
        quantity: order.quantity,
    };
    match cmd {
        Command::Reserve => Message::Reserve(inv()),
        Command::Release => Message::Release(inv()),
        Command::ProcessPayment => Message::ProcessPayment(PaymentCommand {
            saga_id: order.saga_id.clone(),
            order_id: order.id.clone(),
            amount: Money::from_db(order.total_amount),
        }),
    }
}

/// What one event did to its saga.
enum Applied {
    Duplicate,
    Stale,
    UnknownSaga,
    Moved {
        msgs: Vec<OutboxMessage>,
        terminal: Option<(SagaStatus, f64)>,
    },
}

#[derive(Debug)]
enum TxError {
    Duplicate,
    UnknownSaga,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

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
    let order_ids: Vec<&str> = sagas.iter().map(|s| s.order_id.as_str()).collect();
    let mut by_id: std::collections::HashMap<String, OrderRow> = Cached(
        orders::table
            .filter(orders::id.eq_any(pad(&order_ids)))
            .select(OrderRow::as_select()),
    )
    .load::<OrderRow>(conn)
    .await?
    .into_iter()
    .map(|o| (o.id.clone(), o))
    .collect();
    Ok(sagas
        .into_iter()
        .filter_map(|s| by_id.remove(&s.order_id).map(|o| (s, o)))
        .collect())
}

/// Writes a transition: saga, order, timeline, next command.
#[allow(clippy::too_many_arguments)]
pub async fn write_transition(
    conn: &mut AsyncMysqlConnection,
    saga: &SagaRow,
    order: &OrderRow,
    to_status: SagaStatus,
    to_step: SagaStep,
    order_status: &str,
    event_name: &str,
    message_id: Option<String>,
    reason: Option<String>,
    msgs: &[OutboxMessage],
) -> QueryResult<()> {
    let now = chrono::Utc::now().naive_utc();
    let failure_reason = if matches!(to_status, SagaStatus::Failed | SagaStatus::Compensating) {
        reason.clone().or(saga.failure_reason.clone())
    } else {
        saga.failure_reason.clone()
    };
    diesel::update(saga_states::table.find(&saga.saga_id))
        .set((
            saga_states::status.eq(to_status.as_str()),
            saga_states::current_step.eq(to_step.as_str()),
            saga_states::failure_reason.eq(failure_reason.map(|r| truncate(&r, 255))),
            saga_states::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    if order.status != order_status {
        diesel::update(orders::table.find(&order.id))
            .set((orders::status.eq(order_status), orders::updated_at.eq(now)))
            .execute(conn)
            .await?;
    }
    diesel::insert_into(saga_events::table)
        .values(&NewSagaEvent {
            saga_id: saga.saga_id.clone(),
            event: event_name.into(),
            from_status: Some(saga.status.clone()),
            from_step: Some(saga.current_step.clone()),
            to_status: to_status.as_str().into(),
            to_step: to_step.as_str().into(),
            message_id,
            reason: reason.map(|r| truncate(&r, 255)),
        })
        .execute(conn)
        .await?;
    outbox::insert(conn, msgs).await
}

/// The saga event a message carries, with its reason; None for commands.
fn event_of(msg: &Message) -> Option<(Event, Option<String>)> {
    Some(match msg {
        Message::Reserved(r) => (
            Event::InventoryReserved { success: r.success },
            r.reason.clone(),
        ),
        Message::Released(r) => (
            Event::InventoryReleased { success: r.success },
            r.reason.clone(),
        ),
        Message::PaymentProcessed(r) => (
            Event::PaymentProcessed { success: r.success },
            r.reason.clone(),
        ),
        _ => return None,
    })
}

pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Orchestrator {
    /// Counts a saga that reached a terminal status.
    fn ended(&self, status: SagaStatus, secs: f64) {
        let labels = StatusLabels {
            status: status.as_str().into(),
        };
        self.ctx.metrics.saga_total.get_or_create(&labels).inc();
        self.ctx
            .metrics
            .saga_duration
            .get_or_create(&labels)
            .observe(secs);
    }

    async fn apply(
        &self,
        d: &Delivery,
        saga_id: &str,
        event: Event,
        reason: Option<String>,
    ) -> Result<Applied, diesel::result::Error> {
        let mut conn = match self.ctx.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                return Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ClosedConnection,
                    Box::new(e.to_string()),
                ))
            }
        };
        let message_id = d.message_id.clone();
        let trace_id = d.trace_id.clone();
        let r = conn
            .transaction::<_, TxError, _>(async |conn| {
                let inserted = diesel::insert_into(processed_events::table)
                    .values(processed_events::message_id.eq(&message_id))
                    .execute(conn)
                    .await;
                match inserted {
                    Err(e) if db::is_duplicate(&e) => return Err(TxError::Duplicate),
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
                let Some((saga, order)) = lock_saga(conn, saga_id).await? else {
                    // Roll back, so a redrive after the fact is processed.
                    return Err(TxError::UnknownSaga);
                };
                let (Some(status), Some(step)) = (
                    SagaStatus::parse(&saga.status),
                    SagaStep::parse(&saga.current_step),
                ) else {
                    return Ok(Applied::Stale);
                };
                let Some(t) = saga::transition(status, step, event) else {
                    return Ok(Applied::Stale);
                };
                let msgs: Vec<OutboxMessage> = t
                    .command
                    .map(|c| OutboxMessage::new(&command_message(c, &order), &trace_id))
                    .into_iter()
                    .collect();
                write_transition(
                    conn,
                    &saga,
                    &order,
                    t.status,
                    t.step,
                    t.order.as_str(),
                    event.name(),
                    Some(message_id.clone()),
                    reason.clone(),
                    &msgs,
                )
                .await?;
                let terminal = t.status.is_terminal().then(|| {
                    let secs = (chrono::Utc::now().naive_utc() - saga.created_at)
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1e6;
                    (t.status, secs.max(0.0))
                });
                Ok(Applied::Moved { msgs, terminal })
            })
            .await;
        match r {
            Ok(a) => Ok(a),
            Err(TxError::Duplicate) => Ok(Applied::Duplicate),
            Err(TxError::UnknownSaga) => Ok(Applied::UnknownSaga),
            Err(TxError::Db(e)) => Err(e),
        }
    }
}

#[async_trait]
impl Handler for Orchestrator {
    async fn handle_batch(&self, ds: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..ds.len()).map(|_| None).collect();
        let mut idx = Vec::new();
        let mut items = Vec::new();
        for (i, d) in ds.iter().enumerate() {
            let Ok(msg) = Message::parse(&d.routing_key, &d.body) else {
                continue;
            };
            let Some((event, reason)) = event_of(&msg) else {
                continue;
            };
            idx.push(i);
            items.push(super::batch::Item {
                delivery: d,
                saga_id: msg.saga_id().to_string(),
                event,
                reason,
            });
        }
        // Even one event: the batch path is one round trip for its writes.
        if !items.is_empty() {
            if let Ok(mut conn) = self.ctx.pool.get().await {
                if let Ok(done) = super::batch::apply_many(&mut conn, &items).await {
                    self.ctx.outbox.enqueue(done.msgs);
                    for (status, secs) in done.terminal {
                        self.ended(status, secs);
                    }
                    for ((&i, it), a) in idx.iter().zip(&items).zip(done.applied) {
                        let d = &ds[i];
                        outcomes[i] = Some(match a {
                            super::batch::Applied::Duplicate => Outcome::Duplicate,
                            super::batch::Applied::Stale => {
                                tracing::info!(saga_id = %it.saga_id, trace_id = %d.trace_id, event = it.event.name(), "stale event for this saga state; ignored");
                                Outcome::Ack
                            }
                            super::batch::Applied::Moved => {
                                tracing::info!(saga_id = %it.saga_id, trace_id = %d.trace_id, event = it.event.name(), "saga moved");
                                Outcome::Ack
                            }
                        });
                    }
                }
            }
        }
        crate::messaging::consumer::one_by_one(self, &self.ctx.metrics.service, ds, outcomes).await
    }

    async fn handle(&self, d: &Delivery) -> Outcome {
        let msg = match Message::parse(&d.routing_key, &d.body) {
            Ok(m) => m,
            Err(e) => return Outcome::DeadLetter(e.to_string()),
        };
        let Some((event, reason)) = event_of(&msg) else {
            return Outcome::DeadLetter(format!(
                "{} is a command, not an event",
                msg.routing_key()
            ));
        };
        let saga_id = msg.saga_id().to_string();
        match self.apply(d, &saga_id, event, reason).await {
            Ok(Applied::Duplicate) => {
                tracing::info!(saga_id = %saga_id, "duplicate event ignored");
                Outcome::Duplicate
            }
            Ok(Applied::Stale) => {
                tracing::info!(saga_id = %saga_id, event = event.name(), "stale event for this saga state; ignored");
                Outcome::Ack
            }
            Ok(Applied::UnknownSaga) => Outcome::DeadLetter(format!("no saga {saga_id}")),
            Ok(Applied::Moved { msgs, terminal }) => {
                self.ctx.outbox.enqueue(msgs);
                tracing::info!(saga_id = %saga_id, order_id = %msg.order_id(), event = event.name(), "saga moved");
                if let Some((status, secs)) = terminal {
                    self.ended(status, secs);
                }
                Outcome::Ack
            }
            Err(e) if db::is_retryable(&e) => Outcome::Retry(e.to_string()),
            Err(e) => {
                tracing::error!(error = %e, saga_id = %saga_id, "event handling failed");
                Outcome::Retry(e.to_string())
            }
        }
    }
}
