//! The dead-letter queues over HTTP, for the console: their depth with a
//! peek at the first messages, and redrive. The work is `messaging::dlq`'s,
//! the same code `dop admin dlq` runs.

use crate::{
    context::Ctx,
    http::ApiError,
    messaging::dlq::{self, DlqStatus, RedriveReport},
};

/// Every consumed queue's DLQ: depth and the first `dlq::SAMPLE` messages,
/// left where they are.
pub async fn list(ctx: &Ctx) -> Result<Vec<DlqStatus>, ApiError> {
    dlq::list(&ctx.config).await.map_err(broker_error)
}

/// Moves up to `limit` dead letters of `queue` (a consumed queue or its
/// `.dlq`) back to where they came from. The caller has checked the
/// operator token.
pub async fn redrive(
    ctx: &Ctx,
    queue: &str,
    limit: Option<u32>,
) -> Result<RedriveReport, ApiError> {
    dlq::consumed_queue(queue).map_err(|e| ApiError::not_found(e.to_string()))?;
    let report = dlq::redrive(&ctx.config, queue, limit, None)
        .await
        .map_err(broker_error)?;
    tracing::info!(
        dlq = %report.dlq,
        moved = report.moved,
        skipped = report.skipped.len(),
        error = report.error.as_deref().unwrap_or(""),
        "operator redrove a dead-letter queue"
    );
    Ok(report)
}

/// A queue no role has declared yet is the operator's to fix (409, with
/// what to do); anything else means the broker is out of reach (503), its
/// cause logged here and not shown.
fn broker_error(e: anyhow::Error) -> ApiError {
    let text = format!("{e:#}");
    if text.contains("does not exist") {
        return ApiError::conflict(e.to_string());
    }
    tracing::warn!(error = %text, "the dead-letter queues could not be read");
    ApiError::not_ready("RabbitMQ did not answer; see the order role's log")
}
