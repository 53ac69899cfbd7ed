//! Routes every role serves: GET /health (alive), GET /ready (database and
//! broker reachable), GET /metrics; plus the layers common to all routers.

use std::time::Duration;

use axum::{
    extract::{DefaultBodyLimit, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use serde_json::json;

use super::{middleware, ApiError, BODY_LIMIT};
use crate::context::AppState;

/// Adds /health, /ready, /metrics, the fallback, and the shared layers.
pub fn with_common(app: Router, state: AppState) -> Router {
    let common = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(super::openapi::serve))
        .with_state(state.clone());
    app.merge(common)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.config.http.request_timeout,
            middleware::deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            middleware::observe,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

async fn health(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "service": s.metrics.service }))
}

async fn ready(State(s): State<AppState>) -> Response {
    let db = async {
        let mut conn = s.pool.get().await.map_err(|e| e.to_string())?;
        // In a transaction: a dead connection is then marked broken and the
        // pool drops it (plain statements leave it in the pool).
        conn.transaction::<_, diesel::result::Error, _>(async |c| c.batch_execute("SELECT 1").await)
            .await
            .map_err(|e| e.to_string())
    };
    let db_result = match tokio::time::timeout(Duration::from_secs(2), db).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 2 s".to_string()),
    };
    let db_ok = db_result.is_ok();
    if let Err(e) = &db_result {
        tracing::warn!(error = %e, "readiness: database unreachable");
    }
    let broker_ok = s.broker.is_connected();
    let conflict = s.broker.conflict();
    let mut body = json!({
        "service": s.metrics.service,
        "database": if db_ok { "ok" } else { "unreachable" },
        "broker": if broker_ok { "ok" } else if conflict.is_some() { "queue conflict" } else { "unreachable" },
    });
    if let (false, Some(c)) = (broker_ok, conflict) {
        // Names a queue and the migration doc; no secret in it.
        body["broker_error"] = json!(c);
    }
    if db_ok && broker_ok {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        body["error"] = json!("not ready");
        body["code"] = json!("NOT_READY");
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    s.metrics.observe_pool(s.pool.status());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
