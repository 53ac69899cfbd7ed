//! The recovery loop: at start and every `recovery.interval`, re-sends the
//! current step's command of every saga in flight that has not moved for
//! `recovery.stuck_after`. Consumers are idempotent, so a re-send of work
//! that was merely slow is harmless.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{
    model::{OrderRow, SagaRow},
    orchestrator::{command_message, lock_saga, write_transition},
    schema::saga_states,
};
use crate::{
    context::{AppState, Ctx},
    messaging::OutboxMessage,
    observability::new_trace_id,
    saga::{pending_command, SagaStatus, SagaStep},
};

pub async fn run(ctx: AppState) {
    // Give the broker a moment to connect before the first pass.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut tick = tokio::time::interval(ctx.config.recovery.interval);
    loop {
        tick.tick().await;
        match resend_stuck(&ctx, ctx.config.recovery.stuck_after, 500).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sagas = n, "recovery re-sent commands of stuck sagas"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "recovery pass failed"),
        }
    }
}

/// Re-sends the pending command of sagas idle for `stuck_after`; returns how
/// many were re-sent.
pub async fn resend_stuck(ctx: &Ctx, stuck_after: Duration, limit: i64) -> anyhow::Result<usize> {
    let cutoff = chrono::Utc::now().naive_utc() - chrono::Duration::from_std(stuck_after)?;
    let mut conn = ctx.pool.get().await?;
    let ids: Vec<String> = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            saga_states::table
                .filter(saga_states::status.eq_any([
                    SagaStatus::InProgress.as_str(),
                    SagaStatus::Compensating.as_str(),
                ]))
                .filter(saga_states::updated_at.le(cutoff))
                .order(saga_states::updated_at.asc())
                .limit(limit)
                .select(saga_states::saga_id)
                .load(c)
                .await
        })
        .await?;
    let mut n = 0;
    for saga_id in ids {
        if resend_one(ctx, &mut conn, &saga_id, Some(cutoff), "recovery.resend")
            .await?
            .is_some()
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Re-sends one saga's pending command now (recovery and the operator's
/// retry). With `cutoff`, only if the saga is still idle since before it.
pub async fn resend_one(
    ctx: &Ctx,
    conn: &mut diesel_async::AsyncMysqlConnection,
    saga_id: &str,
    cutoff: Option<chrono::NaiveDateTime>,
    event_name: &str,
) -> anyhow::Result<Option<String>> {
    let trace_id = new_trace_id();
    let r = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let Some((saga, order)): Option<(SagaRow, OrderRow)> = lock_saga(conn, saga_id).await?
            else {
                return Ok(None);
            };
            if cutoff.is_some_and(|c| saga.updated_at > c) {
                return Ok(None);
            }
            let (Some(status), Some(step)) = (
                SagaStatus::parse(&saga.status),
                SagaStep::parse(&saga.current_step),
            ) else {
                return Ok(None);
            };
            let Some(cmd) = pending_command(status, step) else {
                return Ok(None);
            };
            let msg = OutboxMessage::new(&command_message(cmd, &order), &trace_id);
            let id = msg.row.message_id.clone();
            let msgs = vec![msg];
            write_transition(
                conn,
                &saga,
                &order,
                status,
                step,
                &order.status,
                event_name,
                Some(id.clone()),
                None,
                &msgs,
            )
            .await?;
            Ok(Some(msgs))
        })
        .await?;
    match r {
        Some(msgs) => {
            let id = msgs[0].row.message_id.clone();
            tracing::info!(saga_id = %saga_id, trace_id = %trace_id, "re-sent the pending command");
            ctx.outbox.enqueue(msgs);
            Ok(Some(id))
        }
        None => Ok(None),
    }
}
