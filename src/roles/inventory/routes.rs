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
    let created = stock::create(&s, body)
        .await
        .map_err(|e| e.failed("CREATE_FAILED"))?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Inventory>, ApiError> {
    let id = product_id(&id)?;
    Ok(Json(
        stock::get(&s, id)
            .await
            .map_err(|e| e.failed("GET_FAILED"))?,
    ))
}

async fn update(
    _: CanWrite,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<ApiJson<SetInventory>, ApiError>,
) -> Result<Json<Inventory>, ApiError> {
    // The path before the body, as the original checks them.
    let id = product_id(&id)?;
    let ApiJson(body) = body?;
    Ok(Json(
        stock::set(&s, id, body)
            .await
            .map_err(|e| e.failed("UPDATE_FAILED"))?,
    ))
}

/// The `{product_id}` of a path, or the original's INVALID_PRODUCT_ID.
fn product_id(v: &str) -> Result<i64, ApiError> {
    id_param("product_id", v).map_err(|e| e.with_code("INVALID_PRODUCT_ID"))
}
