//! The deadline check: every `saga.check_interval`, a saga going forward
//! whose current step began more than `saga.step_timeout` ago, or that was
//! created more than `saga.deadline` ago, compensates by itself
//! (`decide::decide_interrupt`). Safe with several replicas: each saga is
//! re-checked and moved under its row lock (`sagas::interrupt`), so a saga
//! another replica (or a late answer) moved meanwhile is left alone.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{decide::Interrupt, sagas, schema::saga_states};
use crate::{
    config::SagaConfig,
    context::{AppState, Ctx},
    observability::metrics::StepLabels,
    saga::SagaStatus,
};

pub async fn run(ctx: AppState) {
    let cfg = ctx.config.saga.clone();
    if cfg.step_timeout.is_zero() && cfg.deadline.is_zero() {
        tracing::info!("saga deadlines are off (saga.step_timeout and saga.deadline are 0)");
        return;
    }
    let mut tick = tokio::time::interval(cfg.check_interval);
    loop {
        tick.tick().await;
        match expire(&ctx, &cfg, 500).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sagas = n, "sagas past a deadline are compensating"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "deadline check failed"),
        }
    }
}

/// `now - d`, or None when the deadline `d` is off (0).
fn cutoff(now: NaiveDateTime, d: Duration) -> anyhow::Result<Option<NaiveDateTime>> {
    if d.is_zero() {
        return Ok(None);
    }
    Ok(Some(now - chrono::Duration::from_std(d)?))
}

/// Interrupts up to `limit` sagas past a deadline; returns how many moved.
pub async fn expire(ctx: &Ctx, cfg: &SagaConfig, limit: i64) -> anyhow::Result<usize> {
    let now = chrono::Utc::now().naive_utc();
    let step_cutoff = cutoff(now, cfg.step_timeout)?;
    let saga_cutoff = cutoff(now, cfg.deadline)?;
    let mut conn = ctx.pool.get().await?;
    let ids: Vec<String> = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            let mut q = saga_states::table
                .filter(saga_states::status.eq(SagaStatus::InProgress.as_str()))
                .into_boxed();
            // Only the deadlines that are on (a cutoff of "the beginning of
            // time" would not even fit a DATETIME).
            q = match (step_cutoff, saga_cutoff) {
                (Some(st), Some(sg)) => q.filter(
                    saga_states::step_started_at
                        .le(st)
                        .or(saga_states::created_at.le(sg)),
                ),
                (Some(st), None) => q.filter(saga_states::step_started_at.le(st)),
                (None, Some(sg)) => q.filter(saga_states::created_at.le(sg)),
                (None, None) => return Ok(Vec::new()),
            };
            q.order(saga_states::step_started_at.asc())
                .limit(limit)
                .select(saga_states::saga_id)
                .load(c)
                .await
        })
        .await?;
    let why = Interrupt::Timeout {
        step_cutoff,
        saga_cutoff,
    };
    let mut n = 0;
    for saga_id in ids {
        if let Some(Ok(i)) = sagas::interrupt(ctx, &mut conn, &saga_id, why).await? {
            ctx.metrics
                .saga_timeouts
                .get_or_create(&StepLabels {
                    step: i.step.as_str().into(),
                    deadline: i.deadline.map(|d| d.as_str()).unwrap_or("").into(),
                })
                .inc();
            tracing::warn!(saga_id = %saga_id, step = %i.step, reason = %i.reason, "saga ran out of time; compensating");
            n += 1;
        }
    }
    Ok(n)
}
