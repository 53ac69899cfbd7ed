//! The five transactions of one successful saga, as the roles run them,
//! for `dop bench --mode db`: written with diesel's query builder so each
//! statement is prepared once per connection and cached, as in the roles
//! (`sql_query` would prepare and close a statement on every call, which
//! measures something else). Outbox rows are left out.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
use rust_decimal::Decimal;
use tokio::time::Instant;

use crate::{
    db::DbPool,
    roles::{
        inventory::schema::{inventories, inventory_logs},
        order::schema::{orders, processed_events as order_processed, saga_events, saga_states},
        payment::schema::{payments, processed_events as payment_processed},
    },
};

/// One pool per scratch schema.
pub struct Pools {
    pub orders: DbPool,
    pub inventory: DbPool,
    pub payments: DbPool,
}

type Tx = QueryResult<()>;

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn amount() -> Decimal {
    Decimal::new(999, 2)
}

/// Runs one saga's five transactions; `lat` gets each one's latency
/// (from asking the pool for a connection to the commit).
pub async fn one_saga(
    p: &Pools,
    product: i64,
    user: i64,
    lat: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    let (order_id, saga_id) = (id(), id());

    let t = Instant::now();
    let mut c = p.orders.get().await?;
    create_order(&mut c, &order_id, &saga_id, product, user).await?;
    drop(c);
    lat.push(t.elapsed());

    let t = Instant::now();
    let mut c = p.inventory.get().await?;
    reserve(&mut c, &order_id, &saga_id, product).await?;
    drop(c);
    lat.push(t.elapsed());

    let t = Instant::now();
    let mut c = p.payments.get().await?;
    charge(&mut c, &order_id, &saga_id).await?;
    drop(c);
    lat.push(t.elapsed());

    for (status, step, order_status) in [
        ("IN_PROGRESS", "PROCESSING_PAYMENT", None),
        ("COMPLETED", "DONE", Some("CONFIRMED")),
    ] {
        let t = Instant::now();
        let mut c = p.orders.get().await?;
        advance(&mut c, &order_id, &saga_id, status, step, order_status).await?;
        drop(c);
        lat.push(t.elapsed());
    }
    Ok(())
}

/// POST /orders: the order, its saga and the first timeline row.
async fn create_order(
    c: &mut AsyncMysqlConnection,
    order_id: &str,
    saga_id: &str,
    product: i64,
    user: i64,
) -> Tx {
    let trace = id();
    c.transaction(async |c| {
        let at = now();
        diesel::insert_into(orders::table)
            .values((
                orders::id.eq(order_id),
                orders::saga_id.eq(saga_id),
                orders::user_id.eq(user),
                orders::product_id.eq(product),
                orders::quantity.eq(1),
                orders::total_amount.eq(amount()),
                orders::status.eq("PENDING"),
                orders::trace_id.eq(&trace),
                orders::created_at.eq(at),
                orders::updated_at.eq(at),
            ))
            .execute(c)
            .await?;
        diesel::insert_into(saga_states::table)
            .values((
                saga_states::saga_id.eq(saga_id),
                saga_states::order_id.eq(order_id),
                saga_states::status.eq("IN_PROGRESS"),
                saga_states::current_step.eq("RESERVING_INVENTORY"),
                saga_states::created_at.eq(at),
                saga_states::updated_at.eq(at),
            ))
            .execute(c)
            .await?;
        timeline(
            c,
            saga_id,
            "order.created",
            "IN_PROGRESS",
            "RESERVING_INVENTORY",
            &id(),
        )
        .await
    })
    .await
}

/// inventory.reserve: the conditional move of one unit, the log lookup and
/// the log row.
async fn reserve(c: &mut AsyncMysqlConnection, order_id: &str, saga_id: &str, product: i64) -> Tx {
    c.transaction(async |c| {
        diesel::update(
            inventories::table
                .find(product)
                .filter(inventories::available_qty.ge(1)),
        )
        .set((
            inventories::available_qty.eq(inventories::available_qty - 1),
            inventories::reserved_qty.eq(inventories::reserved_qty + 1),
            inventories::version.eq(inventories::version + 1),
            inventories::updated_at.eq(now()),
        ))
        .execute(c)
        .await?;
        let _: Vec<String> = inventory_logs::table
            .filter(inventory_logs::order_id.eq(order_id))
            .select(inventory_logs::action)
            .load(c)
            .await?;
        diesel::insert_into(inventory_logs::table)
            .values((
                inventory_logs::order_id.eq(order_id),
                inventory_logs::saga_id.eq(saga_id),
                inventory_logs::product_id.eq(product),
                inventory_logs::action.eq("RESERVE"),
                inventory_logs::quantity.eq(1),
                inventory_logs::success.eq(true),
                inventory_logs::message_id.eq(id()),
            ))
            .execute(c)
            .await
            .map(drop)
    })
    .await
}

/// payment.process: the processed event and the payment row.
async fn charge(c: &mut AsyncMysqlConnection, order_id: &str, saga_id: &str) -> Tx {
    c.transaction(async |c| {
        diesel::insert_into(payment_processed::table)
            .values(payment_processed::message_id.eq(id()))
            .execute(c)
            .await?;
        diesel::insert_into(payments::table)
            .values((
                payments::order_id.eq(order_id),
                payments::saga_id.eq(saga_id),
                payments::amount.eq(amount()),
                payments::status.eq("SUCCESS"),
                payments::tx_id.eq(id()),
            ))
            .execute(c)
            .await
            .map(drop)
    })
    .await
}

/// An event reaching the orchestrator: the processed event, the saga and
/// its order locked, the saga (and order) moved, the timeline row.
async fn advance(
    c: &mut AsyncMysqlConnection,
    order_id: &str,
    saga_id: &str,
    status: &str,
    step: &str,
    order_status: Option<&str>,
) -> Tx {
    c.transaction(async |c| {
        let message_id = id();
        diesel::insert_into(order_processed::table)
            .values(order_processed::message_id.eq(&message_id))
            .execute(c)
            .await?;
        let _: (String, i64) = saga_states::table
            .inner_join(orders::table)
            .filter(saga_states::saga_id.eq(saga_id))
            .select((saga_states::status, orders::product_id))
            .for_update()
            .first(c)
            .await?;
        let at = now();
        diesel::update(saga_states::table.find(saga_id))
            .set((
                saga_states::status.eq(status),
                saga_states::current_step.eq(step),
                saga_states::updated_at.eq(at),
            ))
            .execute(c)
            .await?;
        if let Some(os) = order_status {
            diesel::update(orders::table.find(order_id))
                .set((orders::status.eq(os), orders::updated_at.eq(at)))
                .execute(c)
                .await?;
        }
        timeline(c, saga_id, "event", status, step, &message_id).await
    })
    .await
}

async fn timeline(
    c: &mut AsyncMysqlConnection,
    saga_id: &str,
    event: &str,
    to_status: &str,
    to_step: &str,
    message_id: &str,
) -> Tx {
    diesel::insert_into(saga_events::table)
        .values((
            saga_events::saga_id.eq(saga_id),
            saga_events::event.eq(event),
            saga_events::to_status.eq(to_status),
            saga_events::to_step.eq(to_step),
            saga_events::message_id.eq(message_id),
        ))
        .execute(c)
        .await
        .map(drop)
}
