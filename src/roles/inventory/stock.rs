//! Stock levels: create, read, set. Only these change
//! `available_qty + reserved_qty`.

use crate::domain::utc;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use super::schema::inventories;
use crate::{
    context::Ctx,
    db,
    domain::{MAX_ID, MAX_QTY},
    http::ApiError,
};

#[derive(Clone, Debug, Queryable, Selectable, Serialize)]
#[diesel(table_name = inventories)]
#[diesel(check_for_backend(diesel::mysql::Mysql))]
pub struct Inventory {
    /// The row's own id (the original's `id`); products are found by
    /// `product_id`.
    pub id: i64,
    pub product_id: i64,
    pub available_qty: i32,
    pub reserved_qty: i32,
    pub version: i64,
    #[serde(serialize_with = "utc")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "utc")]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Deserialize)]
pub struct CreateInventory {
    pub product_id: i64,
    /// 0 when absent, as the original.
    #[serde(default)]
    pub available_qty: i64,
}

#[derive(Debug, Deserialize)]
pub struct SetInventory {
    pub available_qty: i64,
}

fn qty(v: i64) -> Result<i32, ApiError> {
    if (0..=MAX_QTY).contains(&v) {
        Ok(v as i32)
    } else {
        Err(ApiError::invalid(format!(
            "available_qty must be between 0 and {MAX_QTY}"
        )))
    }
}

pub async fn get(ctx: &Ctx, product_id: i64) -> Result<Inventory, ApiError> {
    let mut conn = ctx.pool.get().await?;
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        inventories::table
            .find(product_id)
            .select(Inventory::as_select())
            .first(c)
            .await
            .optional()
    })
    .await?
    .ok_or_else(|| ApiError::not_found(format!("product {product_id} not found")))
}

pub async fn create(ctx: &Ctx, body: CreateInventory) -> Result<Inventory, ApiError> {
    if !(1..=MAX_ID).contains(&body.product_id) {
        return Err(ApiError::invalid(format!(
            "product_id must be between 1 and {MAX_ID}"
        )));
    }
    let available = qty(body.available_qty)?;
    let mut conn = ctx.pool.get().await?;
    let r = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            diesel::insert_into(inventories::table)
                .values((
                    inventories::product_id.eq(body.product_id),
                    inventories::available_qty.eq(available),
                    inventories::reserved_qty.eq(0),
                    inventories::version.eq(1),
                ))
                .execute(c)
                .await
        })
        .await;
    match r {
        Ok(_) => {}
        Err(e) if db::is_duplicate(&e) => {
            return Err(ApiError::conflict(format!(
                "product {} already exists; use PUT /inventory/{} to change its stock",
                body.product_id, body.product_id
            )))
        }
        Err(e) => return Err(e.into()),
    }
    drop(conn);
    get(ctx, body.product_id).await
}

pub async fn set(ctx: &Ctx, product_id: i64, body: SetInventory) -> Result<Inventory, ApiError> {
    let available = qty(body.available_qty)?;
    let mut conn = ctx.pool.get().await?;
    let n = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            diesel::update(inventories::table.find(product_id))
                .set((
                    inventories::available_qty.eq(available),
                    inventories::version.eq(inventories::version + 1),
                    inventories::updated_at.eq(chrono::Utc::now().naive_utc()),
                ))
                .execute(c)
                .await
        })
        .await?;
    if n == 0 {
        return Err(ApiError::not_found(format!(
            "product {product_id} not found"
        )));
    }
    drop(conn);
    get(ctx, product_id).await
}
