//! Operator views and actions on sagas: list, show with timeline, retry.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use super::{
    model::{OrderRow, OrderView, SagaEventRow, SagaRow, SagaView},
    orchestrator::{command_message, lock_saga, write_transition},
    recovery::resend_one,
    schema::{orders, saga_events, saga_states},
};
use crate::{
    context::Ctx,
    http::ApiError,
    messaging::OutboxMessage,
    observability::new_trace_id,
    saga::{Command, SagaStatus, SagaStep},
};

#[derive(Serialize)]
pub struct SagaList {
    pub count: usize,
    pub sagas: Vec<SagaView>,
    /// Pass as `before` for the next page.
    pub next_before: Option<String>,
}

pub async fn list(
    ctx: &Ctx,
    status: Option<SagaStatus>,
    limit: i64,
    before: Option<String>,
) -> Result<SagaList, ApiError> {
    let mut conn = ctx.pool.get().await?;
    let mut q = saga_states::table.select(SagaRow::as_select()).into_boxed();
    if let Some(s) = status {
        q = q.filter(saga_states::status.eq(s.as_str()));
    }
    if let Some(b) = before {
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
        sagas: rows.iter().map(SagaView::from).collect(),
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
                .find(&saga.order_id)
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
        saga: SagaView::from(&saga),
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
/// re-sent now.
pub async fn retry(ctx: &Ctx, saga_id: &str) -> Result<RetryAccepted, ApiError> {
    let mut conn = ctx.pool.get().await?;
    let trace_id = new_trace_id();
    let outcome = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let Some((saga, order)) = lock_saga(conn, saga_id).await? else {
                return Ok(Err(ApiError::not_found(format!(
                    "saga {saga_id} not found"
                ))));
            };
            if saga.status == SagaStatus::Failed.as_str()
                && saga.current_step == SagaStep::ReleasingInventory.as_str()
            {
                let msg = OutboxMessage::new(&command_message(Command::Release, &order), &trace_id);
                let id = msg.row.message_id.clone();
                let msgs = vec![msg];
                write_transition(
                    conn,
                    &saga,
                    &order,
                    SagaStatus::Compensating,
                    SagaStep::ReleasingInventory,
                    &order.status,
                    "operator.retry",
                    Some(id.clone()),
                    None,
                    &msgs,
                )
                .await?;
                return Ok(Ok((msgs, "release re-sent")));
            }
            Ok(Err(ApiError::conflict(format!(
                "saga is {}/{}: only a failed compensation or a saga in flight can be retried",
                saga.status, saga.current_step
            ))))
        })
        .await?;
    match outcome {
        Ok((msgs, action)) => {
            let message_id = msgs[0].row.message_id.clone();
            ctx.outbox.enqueue(msgs);
            tracing::info!(saga_id = %saga_id, "operator retried a failed compensation");
            Ok(RetryAccepted {
                saga_id: saga_id.into(),
                action,
                message_id,
            })
        }
        Err(e) if e.code == "CONFLICT" => {
            // In flight: re-send the pending command now.
            match resend_one(ctx, &mut conn, saga_id, None, "operator.resend").await {
                Ok(Some(message_id)) => Ok(RetryAccepted {
                    saga_id: saga_id.into(),
                    action: "pending command re-sent",
                    message_id,
                }),
                Ok(None) => Err(e),
                Err(err) => match err.downcast::<diesel::result::Error>() {
                    Ok(db_err) => Err(db_err.into()),
                    Err(other) => Err(ApiError::internal(other)),
                },
            }
        }
        Err(e) => Err(e),
    }
}
