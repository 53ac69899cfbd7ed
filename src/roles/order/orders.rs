//! Placing and reading orders. Placing an order writes the order, its saga,
//! the first timeline row and the reserve command in one transaction.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Deserialize;

use super::{
    model::{NewSagaEvent, OrderRow, SagaRow},
    schema::{orders, saga_events, saga_states},
};
use crate::{
    context::Ctx,
    db,
    domain::{Money, MAX_ID, MAX_QTY},
    http::ApiError,
    messaging::{
        contracts::{InventoryCommand, Message},
        outbox, OutboxMessage,
    },
    saga::{OrderStatus, SagaStatus, SagaStep},
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

fn same_request(o: &OrderRow, n: &NewOrder) -> bool {
    o.user_id == n.user_id
        && o.product_id == n.product_id
        && o.quantity == n.quantity
        && Money::from_db(o.total_amount) == n.total_amount
}

/// The rows one new order writes: order, saga, first timeline row, and the
/// reserve command.
pub struct Rows {
    pub row: OrderRow,
    pub saga: SagaRow,
    pub event: NewSagaEvent,
    pub cmd: OutboxMessage,
}

pub fn rows(new: &NewOrder, key: Option<String>, trace_id: &str) -> Rows {
    let order_id = uuid::Uuid::now_v7().to_string();
    let saga_id = uuid::Uuid::now_v7().to_string();
    let now = chrono::Utc::now().naive_utc();
    let row = OrderRow {
        id: order_id.clone(),
        saga_id: saga_id.clone(),
        user_id: new.user_id,
        product_id: new.product_id,
        quantity: new.quantity,
        total_amount: new.total_amount.decimal(),
        status: OrderStatus::Pending.as_str().into(),
        idempotency_key: key,
        trace_id: trace_id.into(),
        created_at: now,
        updated_at: now,
    };
    let saga = SagaRow {
        saga_id: saga_id.clone(),
        order_id: order_id.clone(),
        status: SagaStatus::InProgress.as_str().into(),
        current_step: SagaStep::ReservingInventory.as_str().into(),
        failure_reason: None,
        created_at: now,
        updated_at: now,
    };
    let cmd = OutboxMessage::new(
        &Message::Reserve(InventoryCommand {
            saga_id: saga_id.clone(),
            order_id,
            product_id: new.product_id,
            quantity: new.quantity,
        }),
        trace_id,
    );
    let event = NewSagaEvent {
        saga_id,
        event: "order.created".into(),
        from_status: None,
        from_step: None,
        to_status: saga.status.clone(),
        to_step: saga.current_step.clone(),
        message_id: Some(cmd.row.message_id.clone()),
        reason: None,
    };
    Rows {
        row,
        saga,
        event,
        cmd,
    }
}

/// Places an order and starts its saga.
pub async fn place(
    ctx: &Ctx,
    new: NewOrder,
    key: Option<String>,
    trace_id: &str,
) -> Result<Placed, ApiError> {
    let Rows {
        row,
        saga,
        event,
        cmd,
    } = rows(&new, key.clone(), trace_id);
    let (order_id, saga_id) = (row.id.clone(), row.saga_id.clone());
    let mut conn = ctx.pool.get().await?;
    let msgs = vec![cmd];
    // A deadlock (InnoDB picks a victim under concurrent inserts) is not
    // the client's problem: try again a few times before answering 503.
    let mut attempt = 0;
    let result = loop {
        let r = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                diesel::insert_into(orders::table)
                    .values(&row)
                    .execute(conn)
                    .await?;
                diesel::insert_into(saga_states::table)
                    .values(&saga)
                    .execute(conn)
                    .await?;
                diesel::insert_into(saga_events::table)
                    .values(&event)
                    .execute(conn)
                    .await?;
                outbox::insert(conn, &msgs).await?;
                Ok(())
            })
            .await;
        match r {
            Err(e) if db::is_contention(&e) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2 * attempt)).await;
            }
            other => break other,
        }
    };
    match result {
        Ok(()) => {
            ctx.outbox.enqueue(msgs);
            tracing::info!(order_id = %order_id, saga_id = %saga_id, "order placed");
            Ok(Placed {
                order: row,
                created: true,
            })
        }
        Err(e) if db::is_duplicate(&e) && key.is_some() => {
            let existing: OrderRow = conn
                .transaction::<_, diesel::result::Error, _>(async |c| {
                    orders::table
                        .filter(orders::idempotency_key.eq(key.as_deref()))
                        .select(OrderRow::as_select())
                        .first(c)
                        .await
                })
                .await?;
            if same_request(&existing, &new) {
                Ok(Placed {
                    order: existing,
                    created: false,
                })
            } else {
                Err(ApiError::conflict(
                    "Idempotency-Key was already used with a different request body",
                ))
            }
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn get(ctx: &Ctx, id: &str) -> Result<OrderRow, ApiError> {
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
