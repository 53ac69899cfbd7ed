//! HTTP routes of the order role: thin handlers that parse, call one
//! function and map the result.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Extension, Json, Router,
};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{admin, cancel, console, dead_letters, model::OrderView, orders, writer::OrderWriter};
use crate::{
    context::AppState,
    http::{
        auth::warn_if_open, middleware::TraceId, uuid_param, ApiError, ApiJson, CanOperate,
        CanRead, IdempotencyKey,
    },
    saga::SagaStatus,
};

pub fn router(state: AppState, writer: OrderWriter) -> Router {
    warn_if_open(&state.config.admin, "/admin/sagas reads are");
    Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/admin/sagas", get(list_sagas))
        .route("/admin/sagas/{saga_id}", get(show_saga))
        .route("/admin/sagas/{saga_id}/retry", post(retry_saga))
        .route("/admin/summary", get(summary))
        .route("/admin/dlq", get(list_dlq))
        .route("/admin/dlq/{queue}/redrive", post(redrive_dlq))
        .merge(console::router())
        .layer(Extension(writer))
        .with_state(state)
}

#[tracing::instrument(skip_all)]
async fn create_order(
    Extension(writer): Extension<OrderWriter>,
    Extension(trace): Extension<TraceId>,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<orders::CreateOrder>,
) -> Result<Response, ApiError> {
    let new = orders::NewOrder::try_from(body)?;
    let placed = writer
        .place(new, key, trace.0)
        .await
        .map_err(|e| e.failed("CREATE_FAILED"))?;
    let o = &placed.order;
    let body = Json(json!({ "order_id": o.id, "saga_id": o.saga_id, "status": o.status }));
    let mut resp = (StatusCode::CREATED, body).into_response();
    if !placed.created {
        resp.headers_mut().insert(
            "idempotent-replayed",
            "true".parse().map_err(ApiError::internal)?,
        );
    }
    Ok(resp)
}

async fn get_order(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let id = crate::http::id_param("order id", &id).map_err(|e| e.with_code("INVALID_ID"))?;
    let o = orders::get(&s, id)
        .await
        .map_err(|e| e.failed("GET_FAILED"))?;
    Ok(Json(OrderView::from(&o)))
}

/// POST /orders/:id/cancel (`cancel::cancel`).
#[tracing::instrument(skip_all)]
async fn cancel_order(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = crate::http::id_param("order id", &id).map_err(|e| e.with_code("INVALID_ID"))?;
    let (code, view) = cancel::cancel(&s, id)
        .await
        .map_err(|e| e.failed("CANCEL_FAILED"))?;
    Ok((code, Json(view)).into_response())
}

#[derive(Deserialize)]
struct ListOrders {
    user_id: Option<String>,
    limit: Option<String>,
}

fn parse_limit(v: Option<&str>) -> Result<i64, ApiError> {
    match v {
        None => Ok(100),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit must be an integer between 1 and 1000")),
    }
}

async fn list_orders(
    State(s): State<AppState>,
    Query(q): Query<ListOrders>,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    let user_id = match q.user_id.as_deref() {
        None | Some("") => {
            return Err(ApiError::invalid("user_id query parameter is required")
                .with_code("MISSING_USER_ID"))
        }
        Some(v) => {
            crate::http::id_param("user_id", v).map_err(|e| e.with_code("INVALID_USER_ID"))?
        }
    };
    let limit = parse_limit(q.limit.as_deref())?;
    let rows = orders::list_by_user(&s, user_id, limit)
        .await
        .map_err(|e| e.failed("LIST_FAILED"))?;
    Ok(Json(rows.iter().map(OrderView::from).collect()))
}

#[derive(Deserialize)]
struct ListSagas {
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
    older_than: Option<String>,
    idle_for: Option<String>,
}

/// The longest age filter: ten years, in seconds.
const MAX_SECONDS: u64 = 315_360_000;

/// An optional age in whole seconds, 0 to ten years.
fn parse_seconds(name: &str, v: Option<&str>) -> Result<Option<Duration>, ApiError> {
    match v {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= MAX_SECONDS)
            .map(|n| Some(Duration::from_secs(n)))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "{name} must be a whole number of seconds between 0 and {MAX_SECONDS}"
                ))
            }),
    }
}

async fn list_sagas(
    _: CanRead,
    State(s): State<AppState>,
    Query(q): Query<ListSagas>,
) -> Result<Json<admin::SagaList>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(v) => Some(SagaStatus::parse(&v.to_ascii_uppercase()).ok_or_else(|| {
            ApiError::invalid(
                "status must be one of IN_PROGRESS, COMPENSATING, COMPLETED, COMPENSATED, FAILED",
            )
        })?),
    };
    let limit = parse_limit(q.limit.as_deref())?;
    let before = q
        .before
        .as_deref()
        .map(|b| uuid_param("before", b))
        .transpose()?;
    let filter = admin::ListFilter {
        status,
        older_than: parse_seconds("older_than", q.older_than.as_deref())?,
        idle_for: parse_seconds("idle_for", q.idle_for.as_deref())?,
        before,
    };
    Ok(Json(
        admin::list(&s, limit, filter)
            .await
            .map_err(|e| e.failed("LIST_FAILED"))?,
    ))
}

async fn summary(_: CanRead, State(s): State<AppState>) -> Result<Json<admin::Summary>, ApiError> {
    Ok(Json(
        admin::summary(&s)
            .await
            .map_err(|e| e.failed("GET_FAILED"))?,
    ))
}

async fn list_dlq(
    _: CanRead,
    State(s): State<AppState>,
) -> Result<Json<Vec<crate::messaging::dlq::DlqStatus>>, ApiError> {
    Ok(Json(dead_letters::list(&s).await?))
}

#[derive(Deserialize)]
struct Redrive {
    limit: Option<String>,
}

async fn redrive_dlq(
    _: CanOperate,
    State(s): State<AppState>,
    Path(queue): Path<String>,
    Query(q): Query<Redrive>,
) -> Result<Json<crate::messaging::dlq::RedriveReport>, ApiError> {
    let limit = match q.limit.as_deref() {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid("limit must be an integer between 1 and 1000000")
                })?,
        ),
    };
    Ok(Json(dead_letters::redrive(&s, &queue, limit).await?))
}

async fn show_saga(
    _: CanRead,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<admin::SagaDetail>, ApiError> {
    let id = uuid_param("saga id", &id).map_err(|e| e.with_code("INVALID_SAGA_ID"))?;
    Ok(Json(
        admin::show(&s, &id)
            .await
            .map_err(|e| e.failed("GET_FAILED"))?,
    ))
}

async fn retry_saga(
    _: CanOperate,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = uuid_param("saga id", &id).map_err(|e| e.with_code("INVALID_SAGA_ID"))?;
    let r = admin::retry(&s, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(r)).into_response())
}
