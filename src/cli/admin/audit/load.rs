//! Reads what the audit needs from the three databases: each one in a single
//! read-only, consistent-snapshot transaction, only the columns the checks
//! use, in an order that makes cross-database reads safe (see `load`).

use std::collections::HashSet;

use anyhow::Context;
use chrono::NaiveDateTime;
use diesel::{dsl::sql, prelude::*, sql_types::Datetime};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use rust_decimal::Decimal;

use crate::{
    config::Config,
    roles::{
        inventory::schema::{inventories, inventory_logs},
        order::schema::{orders, saga_states},
        payment::schema::payments,
        Role,
    },
};

/// An order, as far as the audit cares.
#[derive(Clone, Debug, Queryable)]
pub struct OrderRec {
    pub id: i64,
    pub saga_id: String,
    pub product_id: i64,
    pub quantity: i32,
    pub total_amount: Decimal,
    pub status: String,
}

#[derive(Clone, Debug, Queryable)]
pub struct SagaRec {
    pub saga_id: String,
    pub order_id: i64,
    pub status: String,
    pub current_step: String,
    /// The step a FAILED saga failed at (its current_step is DONE).
    pub failed_step: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable)]
pub struct StockRec {
    pub product_id: i64,
    pub available_qty: i32,
    pub reserved_qty: i32,
}

#[derive(Clone, Debug, Queryable)]
pub struct LogRec {
    pub order_id: i64,
    pub product_id: i64,
    pub action: String,
    pub quantity: i32,
    pub success: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable)]
pub struct PaymentRec {
    pub order_id: i64,
    pub amount: Decimal,
    pub status: String,
    pub created_at: NaiveDateTime,
}

/// Everything the checks look at.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The order database's clock (UTC), read with the orders.
    pub now: NaiveDateTime,
    pub orders: Vec<OrderRec>,
    pub sagas: Vec<SagaRec>,
    pub stock: Vec<StockRec>,
    pub logs: Vec<LogRec>,
    pub payments: Vec<PaymentRec>,
    /// Orders absent from the first read but present at the end: placed
    /// while the audit ran, so their rows elsewhere are not judged.
    pub late_orders: HashSet<i64>,
    /// With `retention.sagas` set: the order database's clock minus that
    /// window. A log or payment row older than this whose order is gone
    /// belongs to a saga retention deleted (it is retired, not orphaned).
    pub retired_before: Option<NaiveDateTime>,
}

/// Opens a connection whose every transaction is read-only.
async fn connect(cfg: &Config, role: Role) -> anyhow::Result<AsyncMysqlConnection> {
    let db = cfg.db(role);
    let url = &db.database_url;
    let mut conn = crate::db::pool::connect(url.expose(), db.ca_file.as_deref())
        .await
        .with_context(|| {
            format!(
                "Failed to connect to the {role} database at {}",
                url.redacted()
            )
        })?;
    conn.batch_execute("SET SESSION TRANSACTION READ ONLY")
        .await
        .with_context(|| format!("Failed to make the {role} session read-only"))?;
    Ok(conn)
}

/// Runs `read` inside one consistent-snapshot, read-only transaction, so
/// rows written together (a reserve and its log, an order and its saga) are
/// seen together.
async fn in_snapshot<T>(
    conn: &mut AsyncMysqlConnection,
    read: impl AsyncFnOnce(&mut AsyncMysqlConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    conn.batch_execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await?;
    let r = read(conn).await;
    // Nothing was written; ending the snapshot cannot lose anything.
    let end = conn.batch_execute("COMMIT").await;
    let v = r?;
    end?;
    Ok(v)
}

/// Reads the order database first and the other two after it: any saga seen
/// terminal then has every effect it caused in inventory and payments
/// committed before those are read, so terminal sagas are judged exactly.
/// Sagas in flight may move in between; the checks leave them to the grace.
pub async fn load(cfg: &Config) -> anyhow::Result<Snapshot> {
    let mut order_db = connect(cfg, Role::Order).await?;
    let (now, orders, sagas) = in_snapshot(&mut order_db, async |c| {
        let now: NaiveDateTime = diesel::select(sql::<Datetime>("UTC_TIMESTAMP(6)"))
            .get_result(c)
            .await?;
        let o: Vec<OrderRec> = orders::table
            .select((
                orders::id,
                orders::saga_id,
                orders::product_id,
                orders::quantity,
                orders::total_amount,
                orders::status,
            ))
            .load(c)
            .await?;
        let s: Vec<SagaRec> = saga_states::table
            .select((
                saga_states::saga_id,
                saga_states::order_id,
                saga_states::status,
                saga_states::current_step,
                saga_states::failed_step,
                saga_states::created_at,
                saga_states::updated_at,
            ))
            .load(c)
            .await?;
        Ok((now, o, s))
    })
    .await
    .context("Failed to read orders and sagas")?;

    let mut inv_db = connect(cfg, Role::Inventory).await?;
    let (stock, logs) = in_snapshot(&mut inv_db, async |c| {
        let s: Vec<StockRec> = inventories::table
            .select((
                inventories::product_id,
                inventories::available_qty,
                inventories::reserved_qty,
            ))
            .load(c)
            .await?;
        let l: Vec<LogRec> = inventory_logs::table
            .select((
                inventory_logs::order_id,
                inventory_logs::product_id,
                inventory_logs::action,
                inventory_logs::quantity,
                inventory_logs::success,
                inventory_logs::created_at,
            ))
            .load(c)
            .await?;
        Ok((s, l))
    })
    .await
    .context("Failed to read inventories and inventory_logs")?;
    drop(inv_db);

    let mut pay_db = connect(cfg, Role::Payment).await?;
    let payments = in_snapshot(&mut pay_db, async |c| {
        payments::table
            .select((
                payments::order_id,
                payments::amount,
                payments::status,
                payments::created_at,
            ))
            .load::<PaymentRec>(c)
            .await
    })
    .await
    .context("Failed to read payments")?;
    drop(pay_db);

    // Rows that name an order the first read did not see: look again.
    let known: HashSet<i64> = orders.iter().map(|o| o.id).collect();
    let unknown: Vec<i64> = logs
        .iter()
        .map(|l| l.order_id)
        .chain(payments.iter().map(|p| p.order_id))
        .filter(|id| !known.contains(id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut late_orders = HashSet::new();
    for chunk in unknown.chunks(1000) {
        let found: Vec<i64> = in_snapshot(&mut order_db, async |c| {
            orders::table
                .filter(orders::id.eq_any(chunk))
                .select(orders::id)
                .load(c)
                .await
        })
        .await
        .context("Failed to look up orders placed during the audit")?;
        late_orders.extend(found);
    }
    let retired_before = match cfg.retention.sagas {
        Some(w) => Some(now - chrono::Duration::from_std(w).context("retention.sagas too long")?),
        None => None,
    };
    Ok(Snapshot {
        now,
        retired_before,
        orders,
        sagas,
        stock,
        logs,
        payments,
        late_orders,
    })
}
