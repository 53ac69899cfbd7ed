//! The order request and its validation, and reading orders. Placing one
//! is the writer's (`writer.rs`, deciding in `place.rs`).

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Deserialize;

use super::{model::OrderRow, schema::orders};
use crate::{
    context::Ctx,
    domain::{Money, MAX_ID, MAX_QTY},
    http::ApiError,
};

/// The body of POST /orders.
#[derive(Debug, Deserialize)]
pub struct CreateOrder {
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub total_amount: Money,
}

/// A validated order request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub total_amount: Money,
}

impl TryFrom<CreateOrder> for NewOrder {
    type Error = ApiError;
    fn try_from(c: CreateOrder) -> Result<Self, ApiError> {
        if !(1..=MAX_ID).contains(&c.user_id) {
            return Err(ApiError::invalid(format!(
                "user_id must be between 1 and {MAX_ID}"
            )));
        }
        if !(1..=MAX_ID).contains(&c.product_id) {
            return Err(ApiError::invalid(format!(
                "product_id must be between 1 and {MAX_ID}"
            )));
        }
        if !(1..=MAX_QTY).contains(&c.quantity) {
            return Err(ApiError::invalid(format!(
                "quantity must be between 1 and {MAX_QTY}"
            )));
        }
        if c.total_amount.is_zero() {
            return Err(ApiError::invalid("total_amount must be greater than 0"));
        }
        Ok(NewOrder {
            user_id: c.user_id,
            product_id: c.product_id,
            quantity: c.quantity as i32,
            total_amount: c.total_amount,
        })
    }
}

/// The result of placing an order: the order, and whether this call made it
/// (false when an Idempotency-Key replayed an earlier one).
pub struct Placed {
    pub order: OrderRow,
    pub created: bool,
}

pub async fn get(ctx: &Ctx, id: i64) -> Result<OrderRow, ApiError> {
    let mut conn = ctx.pool.get().await?;
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        orders::table
            .find(id)
            .select(OrderRow::as_select())
            .first(c)
            .await
            .optional()
    })
    .await?
    .ok_or_else(|| ApiError::not_found(format!("order {id} not found")))
}

pub async fn list_by_user(ctx: &Ctx, user_id: i64, limit: i64) -> Result<Vec<OrderRow>, ApiError> {
    let mut conn = ctx.pool.get().await?;
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            orders::table
                .filter(orders::user_id.eq(user_id))
                .order(orders::created_at.desc())
                .limit(limit)
                .select(OrderRow::as_select())
                .load(c)
                .await
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(user_id: i64, product_id: i64, quantity: i64, amount: &str) -> Result<NewOrder, String> {
        NewOrder::try_from(CreateOrder {
            user_id,
            product_id,
            quantity,
            total_amount: amount.parse().unwrap(),
        })
        .map_err(|e| e.message)
    }

    #[test]
    fn validates_ranges() {
        assert!(req(42, 1001, 2, "199.98").is_ok());
        assert!(req(0, 1001, 2, "1").unwrap_err().contains("user_id"));
        assert!(req(1, -5, 2, "1").unwrap_err().contains("product_id"));
        assert!(req(1, MAX_ID + 1, 2, "1")
            .unwrap_err()
            .contains("product_id"));
        assert!(req(1, 1, 0, "1").unwrap_err().contains("quantity"));
        assert!(req(1, 1, MAX_QTY + 1, "1")
            .unwrap_err()
            .contains("quantity"));
        assert!(req(1, 1, 1, "0").unwrap_err().contains("total_amount"));
    }
}
