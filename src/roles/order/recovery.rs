//! The recovery loop: at start and every `recovery.interval`, re-sends the
//! current step's command of every saga in flight that has not moved for
//! `recovery.stuck_after`. Consumers are idempotent, so a re-send of work
//! that was merely slow is harmless.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{decide::Resend, sagas, schema::saga_states};
use crate::{
    context::{AppState, Ctx},
    saga::SagaStatus,
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
        // Re-checked under the saga's lock: it may have moved meanwhile.
        if let Some(Ok(_)) =
            sagas::resend(ctx, &mut conn, &saga_id, Resend::Stuck { cutoff }).await?
        {
            n += 1;
        }
    }
    Ok(n)
}
