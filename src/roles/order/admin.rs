//! Operator views and actions on sagas: list, show with timeline, retry.

use diesel::prelude::*;
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
