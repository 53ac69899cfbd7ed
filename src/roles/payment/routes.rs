//! HTTP routes of the payment role. Reads are open; POST /payments needs
//! the operator token once any token is configured (`http::auth`), like the
//! inventory writes: a payment it records is the order's one payment.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};

use super::charge::{self, CreatePayment, PaymentView};
use crate::{
    context::AppState,
    http::{auth::warn_if_open, id_param, ApiError, ApiJson, CanWrite},
};

pub fn router(state: AppState) -> Router {
    warn_if_open(&state.config.admin, "POST /payments is");
    Router::new()
        .route("/payments", post(create))
        .route("/payments/{order_id}", get(show))
        .with_state(state)
}

async fn create(
    _: CanWrite,
    State(s): State<AppState>,
    ApiJson(body): ApiJson<CreatePayment>,
) -> Result<(StatusCode, Json<PaymentView>), ApiError> {
    let created = charge::create(&s, body)
        .await
        .map_err(|e| e.failed("CREATE_FAILED"))?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let id = id_param("order id", &id).map_err(|e| e.with_code("INVALID_ORDER_ID"))?;
    Ok(Json(
        charge::get(&s, id)
            .await
            .map_err(|e| e.failed("GET_FAILED"))?,
    ))
}
