//! The customer's cancel (`POST /orders/:id/cancel`), idempotent: a saga
//! still going forward is interrupted (`sagas::interrupt`, the deadline
//! check's executor) and compensates; one that already compensates or has
//! ended is left as it is and its state is shown; a confirmed order is paid
//! and cannot be cancelled (dop makes no refunds).

use axum::http::StatusCode;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use super::{
    decide::{Interrupt, NotInterrupted},
    model::{OrderRow, SagaRow},
    orders, sagas,
    schema::saga_states,
};
use crate::{
    context::Ctx, http::ApiError, observability::metrics::OutcomeLabels, saga::OrderStatus,
};

/// What a cancel answers: the order's status after it, and its saga's.
#[derive(Debug, Serialize)]
pub struct CancelView {
    pub order_id: i64,
    pub saga_id: String,
    /// The order's status (`FAILED` or `INVENTORY_RESERVED` while a cancel
    /// compensates, `COMPENSATED` or `FAILED` once it has).
    pub status: String,
    pub saga_status: String,
    pub current_step: String,
    /// Why the saga compensates or failed (`cancelled by the customer`,
    /// `payment timed out`, ...).
    pub reason: Option<String>,
}

/// Cancels order `id`: 202 when this call started the compensation, 200
/// with the current state when an earlier cancel, a deadline or a failure
/// did, 409 when the order is confirmed.
pub async fn cancel(ctx: &Ctx, id: i64) -> Result<(StatusCode, CancelView), ApiError> {
    let order = orders::get(ctx, id).await?;
    let mut conn = ctx.pool.get().await?;
    let r = sagas::interrupt(ctx, &mut conn, &order.saga_id, Interrupt::Cancel).await?;
    let (code, outcome) = match r {
        Some(Ok(_)) => (StatusCode::ACCEPTED, "compensating"),
        Some(Err(NotInterrupted::NotForward { .. } | NotInterrupted::InTime)) => {
            (StatusCode::OK, "already_ended")
        }
        None => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "order {id} has no saga {}",
                order.saga_id
            )))
        }
    };
    let (order, saga) = current(ctx, id, &order.saga_id).await?;
    let count = |outcome: &str| {
        ctx.metrics
            .saga_cancellations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    };
    if order.status == OrderStatus::Confirmed.as_str() {
        count("refused_confirmed");
        return Err(ApiError::conflict(format!(
            "order {id} is CONFIRMED: it was paid, and dop makes no refunds, so it cannot be cancelled"
        ))
        .with_code("ORDER_CONFIRMED"));
    }
    count(outcome);
    tracing::info!(order_id = id, saga_id = %saga.saga_id, outcome, saga_status = %saga.status, "customer cancel");
    Ok((
        code,
        CancelView {
            order_id: order.id,
            saga_id: saga.saga_id,
            status: order.status,
            saga_status: saga.status,
            current_step: saga.current_step,
            reason: saga.failure_reason,
        },
    ))
}

/// The order and its saga as they are now.
async fn current(ctx: &Ctx, id: i64, saga_id: &str) -> Result<(OrderRow, SagaRow), ApiError> {
    let order = orders::get(ctx, id).await?;
    let mut conn = ctx.pool.get().await?;
    let saga = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            saga_states::table
                .find(saga_id)
                .select(SagaRow::as_select())
                .first(c)
                .await
        })
        .await?;
    Ok((order, saga))
}
