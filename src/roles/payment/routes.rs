//! HTTP routes of the payment role.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};

use super::charge::{self, PaymentView};
use crate::{
    context::AppState,
    http::{id_param, ApiError},
};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/payments/{order_id}", get(show))
        .with_state(state)
}

async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let id = id_param("order id", &id)?;
    Ok(Json(charge::get(&s, id).await?))
}
