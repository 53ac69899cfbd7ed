//! HTTP routes of the inventory role.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};

use super::stock::{self, CreateInventory, Inventory, SetInventory};
use crate::{
    context::AppState,
    http::{id_param, ApiError, ApiJson},
};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/inventory", post(create))
        .route("/inventory/{product_id}", get(show).put(update))
        .with_state(state)
}

async fn create(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<CreateInventory>,
) -> Result<(StatusCode, Json<Inventory>), ApiError> {
    Ok((StatusCode::CREATED, Json(stock::create(&s, body).await?)))
}

async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Inventory>, ApiError> {
    let id = id_param("product_id", &id)?;
    Ok(Json(stock::get(&s, id).await?))
}

async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetInventory>,
) -> Result<Json<Inventory>, ApiError> {
    let id = id_param("product_id", &id)?;
    Ok(Json(stock::set(&s, id, body).await?))
}
