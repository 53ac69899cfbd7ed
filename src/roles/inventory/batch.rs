//! Many reserves in one transaction. Deliveries that arrive together are
//! reserved with one conditional UPDATE per product (falling back to one per
//! order when a product cannot cover them all), one read of the log, and a
//! multi-row insert each of log rows and outbox rows in one round trip. Anything unusual (a
//! repeated order, a release, a failure) goes back to the one-by-one path,
//! which owns every edge case.

use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use super::{
    commands::RESERVE,
    schema::{inventories, inventory_logs},
};
pub use crate::db::BatchError;
use crate::db::{
    cached::{pad, Cached},
    Script,
};
use crate::messaging::{
    consumer::Delivery,
    contracts::{InventoryCommand, InventoryResult, Message},
    outbox, OutboxMessage,
};

#[derive(Insertable)]
#[diesel(table_name = inventory_logs)]
struct NewLog<'a> {
    order_id: &'a str,
    saga_id: &'a str,
    product_id: i64,
    action: &'a str,
    quantity: i32,
    success: bool,
    reason: Option<String>,
    message_id: &'a str,
}

/// What a batch did: messages to relay, rejection reasons to count.
pub struct Reserved {
    pub msgs: Vec<OutboxMessage>,
    pub rejected: Vec<&'static str>,
}

/// Reserves every command in one transaction. `items` are distinct orders.
pub async fn reserve_many(
    conn: &mut AsyncMysqlConnection,
    items: &[(&Delivery, &InventoryCommand)],
) -> Result<Reserved, BatchError> {
    let now = chrono::Utc::now().naive_utc();
    conn.transaction::<_, BatchError, _>(async |conn| {
        // The read first: the stock rows below stay locked until the
        // commit, so nothing that can be done before taking them is done
        // after.
        let order_ids: Vec<&str> = items.iter().map(|(_, c)| c.order_id.as_str()).collect();
        let logged: i64 = Cached(
            inventory_logs::table
                .filter(inventory_logs::order_id.eq_any(pad(&order_ids)))
                .count(),
        )
        .get_result(conn)
        .await?;
        if logged > 0 {
            return Err(BatchError::Fallback);
        }
        // Lock products in id order (no deadlock between batches).
        let mut by_product: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, (_, c)) in items.iter().enumerate() {
            by_product.entry(c.product_id).or_default().push(i);
        }
        let mut ok = vec![false; items.len()];
        for (pid, idx) in &by_product {
            let total: i32 = idx.iter().map(|&i| items[i].1.quantity).sum();
            let moved = take(conn, *pid, total, now).await?;
            if moved {
                idx.iter().for_each(|&i| ok[i] = true);
                continue;
            }
            // Not all of them fit: first come, first served.
            for &i in idx {
                ok[i] = take(conn, *pid, items[i].1.quantity, now).await?;
            }
        }
        let failed: HashSet<i64> = items
            .iter()
            .zip(&ok)
            .filter(|(_, ok)| !**ok)
            .map(|((_, c), _)| c.product_id)
            .collect();
        let available: HashMap<i64, i32> = if failed.is_empty() {
            HashMap::new()
        } else {
            inventories::table
                .filter(inventories::product_id.eq_any(failed.iter().copied().collect::<Vec<_>>()))
                .select((inventories::product_id, inventories::available_qty))
                .load::<(i64, i32)>(conn)
                .await?
                .into_iter()
                .collect()
        };
        let mut logs = Vec::with_capacity(items.len());
        let mut msgs = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        for ((d, c), ok) in items.iter().zip(&ok) {
            let (reason, label) = if *ok {
                (None, None)
            } else {
                match available.get(&c.product_id) {
                    Some(a) => (
                        Some(format!(
                            "insufficient stock: {a} available, {} requested",
                            c.quantity
                        )),
                        Some("insufficient_stock"),
                    ),
                    None => (
                        Some(format!("product {} not found", c.product_id)),
                        Some("product_not_found"),
                    ),
                }
            };
            rejected.extend(label);
            msgs.push(OutboxMessage::new(
                &Message::Reserved(InventoryResult {
                    saga_id: c.saga_id.clone(),
                    order_id: c.order_id.clone(),
                    product_id: c.product_id,
                    quantity: c.quantity,
                    success: *ok,
                    reason: reason.clone(),
                }),
                &d.trace_id,
            ));
            logs.push(NewLog {
                order_id: &c.order_id,
                saga_id: &c.saga_id,
                product_id: c.product_id,
                action: RESERVE,
                quantity: c.quantity,
                success: *ok,
                reason,
                message_id: &d.message_id,
            });
        }
        // Both inserts in one round trip (db::script).
        let mut script = Script::new();
        script
            .push(&diesel::insert_into(inventory_logs::table).values(&logs))?
            .push(&outbox::insert_statement(&msgs))?;
        script.run(conn).await?;
        Ok(Reserved { msgs, rejected })
    })
    .await
}

/// Moves `qty` units of `pid` from available to reserved if they are there.
async fn take(
    conn: &mut AsyncMysqlConnection,
    pid: i64,
    qty: i32,
    now: chrono::NaiveDateTime,
) -> QueryResult<bool> {
    // diesel does not cache an UPDATE's statement on its own; its text
    // never changes, so it can be (db::cached).
    let n = Cached(
        diesel::update(
            inventories::table
                .find(pid)
                .filter(inventories::available_qty.ge(qty)),
        )
        .set((
            inventories::available_qty.eq(inventories::available_qty - qty),
            inventories::reserved_qty.eq(inventories::reserved_qty + qty),
            inventories::version.eq(inventories::version + 1),
            inventories::updated_at.eq(now),
        )),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}
