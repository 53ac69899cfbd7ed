//! Many saga events in one transaction: one read of processed message ids,
//! one locking read of the sagas (with their orders), then, in one round
//! trip (db::script), a multi-row insert of the new message ids, a
//! multi-row upsert each of sagas and orders and a multi-row insert each of
//! timeline rows and outbox rows. Duplicates are
//! answered from the batch's read; an event for an unknown saga sends the
//! whole batch back to the one-by-one path.

use std::collections::{HashMap, HashSet};

use diesel::{
    dsl::sql,
    prelude::*,
    sql_types::{Datetime, Nullable, Text},
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use super::{
    model::{NewSagaEvent, OrderRow, SagaRow},
    orchestrator::{command_message, lock_sagas_for_batch, truncate},
    schema::{orders, processed_events, saga_events, saga_states},
};
pub use crate::db::BatchError;
use crate::{
    db::{
        cached::{pad, Cached},
        Script,
    },
    messaging::{consumer::Delivery, outbox, OutboxMessage},
    saga::{self, Event, SagaStatus, SagaStep},
};

/// One event to apply.
pub struct Item<'a> {
    pub delivery: &'a Delivery,
    pub saga_id: String,
    pub event: Event,
    pub reason: Option<String>,
}

/// What happened to each item.
#[derive(Debug, PartialEq)]
pub enum Applied {
    Duplicate,
    Stale,
    Moved,
}

pub struct Done {
    pub applied: Vec<Applied>,
    pub msgs: Vec<OutboxMessage>,
    /// Sagas that ended: status and seconds since the order was accepted.
    pub terminal: Vec<(SagaStatus, f64)>,
}

pub async fn apply_many(
    conn: &mut AsyncMysqlConnection,
    items: &[Item<'_>],
) -> Result<Done, BatchError> {
    let now = chrono::Utc::now().naive_utc();
    conn.transaction::<_, BatchError, _>(async |conn| {
        let ids: Vec<&str> = items
            .iter()
            .map(|i| i.delivery.message_id.as_str())
            .collect();
        let seen: HashSet<String> = Cached(
            processed_events::table
                .filter(processed_events::message_id.eq_any(pad(&ids)))
                .select(processed_events::message_id),
        )
        .load::<String>(conn)
        .await?
        .into_iter()
        .collect();
        let mut fresh_ids = HashSet::new();
        let mut applied: Vec<Applied> = Vec::with_capacity(items.len());
        for it in items {
            let id = it.delivery.message_id.as_str();
            // A message delivered twice within one batch is a duplicate too.
            applied.push(if seen.contains(id) || !fresh_ids.insert(id) {
                Applied::Duplicate
            } else {
                Applied::Stale
            });
        }
        if fresh_ids.is_empty() {
            return Ok(Done {
                applied,
                msgs: Vec::new(),
                terminal: Vec::new(),
            });
        }
        let saga_ids: Vec<&str> = items.iter().map(|i| i.saga_id.as_str()).collect();
        let mut state: HashMap<String, (SagaRow, OrderRow)> = lock_sagas_for_batch(conn, &saga_ids)
            .await?
            .into_iter()
            .map(|(s, o)| (s.saga_id.clone(), (s, o)))
            .collect();
        let mut events = Vec::new();
        let mut msgs = Vec::new();
        let mut terminal = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        let mut order_changed: HashSet<String> = HashSet::new();
        for (it, a) in items.iter().zip(applied.iter_mut()) {
            if *a == Applied::Duplicate {
                continue;
            }
            let Some((saga, order)) = state.get_mut(&it.saga_id) else {
                return Err(BatchError::Fallback);
            };
            let (Some(status), Some(step)) = (
                SagaStatus::parse(&saga.status),
                SagaStep::parse(&saga.current_step),
            ) else {
                continue;
            };
            let Some(t) = saga::transition(status, step, it.event) else {
                continue;
            };
            *a = Applied::Moved;
            let cmd = t
                .command
                .map(|c| OutboxMessage::new(&command_message(c, order), &it.delivery.trace_id));
            events.push(NewSagaEvent {
                saga_id: saga.saga_id.clone(),
                event: it.event.name().into(),
                from_status: Some(saga.status.clone()),
                from_step: Some(saga.current_step.clone()),
                to_status: t.status.as_str().into(),
                to_step: t.step.as_str().into(),
                message_id: Some(it.delivery.message_id.clone()),
                reason: it.reason.as_deref().map(|r| truncate(r, 255)),
            });
            if matches!(t.status, SagaStatus::Failed | SagaStatus::Compensating) {
                if let Some(r) = &it.reason {
                    saga.failure_reason = Some(truncate(r, 255));
                }
            }
            saga.status = t.status.as_str().into();
            saga.current_step = t.step.as_str().into();
            saga.updated_at = now;
            if order.status != t.order.as_str() {
                order.status = t.order.as_str().into();
                order.updated_at = now;
                order_changed.insert(order.id.clone());
            }
            if t.status.is_terminal() {
                let secs = (now - saga.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                terminal.push((t.status, secs.max(0.0)));
            }
            msgs.extend(cmd);
            if !touched.contains(&saga.saga_id) {
                touched.push(saga.saga_id.clone());
            }
        }
        // Every write in one round trip (db::script).
        let mut script = Script::new();
        let processed: Vec<_> = fresh_ids
            .iter()
            .map(|id| processed_events::message_id.eq(*id))
            .collect();
        script.push(&diesel::insert_into(processed_events::table).values(&processed))?;
        if !touched.is_empty() {
            let sagas: Vec<&SagaRow> = touched.iter().map(|id| &state[id].0).collect();
            let sagas = diesel::insert_into(saga_states::table)
                .values(sagas.iter().map(|s| (*s).clone()).collect::<Vec<SagaRow>>())
                .on_conflict(diesel::dsl::DuplicatedKeys)
                .do_update()
                .set((
                    saga_states::status.eq(sql::<Text>("VALUES(status)")),
                    saga_states::current_step.eq(sql::<Text>("VALUES(current_step)")),
                    saga_states::failure_reason.eq(sql::<Nullable<Text>>("VALUES(failure_reason)")),
                    saga_states::updated_at.eq(sql::<Datetime>("VALUES(updated_at)")),
                ));
            script.push(&sagas)?;
            let changed: Vec<OrderRow> = touched
                .iter()
                .map(|id| &state[id].1)
                .filter(|o| order_changed.contains(&o.id))
                .map(|o| OrderRow {
                    idempotency_key: None,
                    ..o.clone()
                })
                .collect();
            if !changed.is_empty() {
                script.push(
                    &diesel::insert_into(orders::table)
                        .values(&changed)
                        .on_conflict(diesel::dsl::DuplicatedKeys)
                        .do_update()
                        .set((
                            orders::status.eq(sql::<Text>("VALUES(status)")),
                            orders::updated_at.eq(sql::<Datetime>("VALUES(updated_at)")),
                        )),
                )?;
            }
            script.push(&diesel::insert_into(saga_events::table).values(&events))?;
            if !msgs.is_empty() {
                script.push(&outbox::insert_statement(&msgs))?;
            }
        }
        script.run(conn).await?;
        Ok(Done {
            applied,
            msgs,
            terminal,
        })
    })
    .await
}
