//! HTTP routes of the inventory role. Reads are open; writes need the
//! operator token once any token is configured (`http::auth`).

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};

use super::stock::{self, CreateInventory, Inventory, SetInventory};
use crate::{
    context::AppState,
    http::{auth::warn_if_open, id_param, ApiError, ApiJson, CanWrite},
};

pub fn router(state: AppState) -> Router {
    warn_if_open(
        &state.config.admin,
        "inventory writes (POST /inventory, PUT /inventory/:id) are",
    );
    Router::new()
        .route("/inventory", post(create))
        .route("/inventory/{product_id}", get(show).put(update))
        .with_state(state)
}

async fn create(
    _: CanWrite,
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
    _: CanWrite,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetInventory>,
) -> Result<Json<Inventory>, ApiError> {
    let id = id_param("product_id", &id)?;
    Ok(Json(stock::set(&s, id, body).await?))
}
