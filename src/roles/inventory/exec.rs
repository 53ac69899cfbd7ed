//! The one executor of inventory commands: a batch of reserves and
//! releases (one command is a batch of one) in one transaction.
//!
//! 1. Lock the stock rows of the batch's products `FOR UPDATE`, in
//!    product-id order, so concurrent batches (another replica) queue on
//!    each other instead of deadlocking.
//! 2. Then read the log rows of the batch's orders. After the locks: every
//!    earlier command on these products has committed by now, and this
//!    read is the transaction's first plain read, so its snapshot sees it.
//! 3. `decide` (pure) folds the commands in arrival order over what was
//!    read.
//! 4. Write everything in one round trip (`db::Script`): the new stock of
//!    each changed product, log rows, outbox rows.
//!
//! `db::batch::Runner` retries the whole attempt on contention, a lost
//! connection or a duplicate key; since the attempt reads before it
//! writes, a retry finds what an earlier attempt committed.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{
    decide::{decide, Command, Note, OrderLog, Recorded, Stock, RELEASE, RESERVE},
    schema::{inventories, inventory_logs},
};
use crate::{
    db::{
        batch::{AttemptError, ItemFailure, Runner},
        cached::{pad, Cached},
        Conn, Script,
    },
    messaging::{contracts::Message, outbox, OutboxMessage},
};

/// What one command did, once committed.
#[derive(Clone, Debug)]
pub struct Handled {
    /// The result, to enqueue on the outbox relay after the commit.
    pub message: OutboxMessage,
    /// `reason` label of `inventory_reserve_rejections_total`.
    pub rejection: Option<&'static str>,
    pub note: Note,
    /// Why it failed or did nothing, if it did (for the log line).
    pub reason: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = inventory_logs)]
struct LogInsert<'a> {
    order_id: i64,
    saga_id: &'a str,
    product_id: i64,
    action: &'a str,
    quantity: i32,
    success: bool,
    reason: Option<&'a str>,
    message_id: &'a str,
}

/// Runs `cmds` (in arrival order) through `runner`: one result per
/// command, in order. Nothing is enqueued here; the caller enqueues the
/// messages of the `Ok` results (they are committed).
pub async fn run(runner: &Runner<'_>, cmds: &[Command]) -> Vec<Result<Handled, ItemFailure>> {
    runner
        .run(cmds, async |conn: &mut Conn, part: &[Command]| {
            attempt(conn, part).await
        })
        .await
}

/// One transaction over `cmds`, as the module doc says.
async fn attempt(conn: &mut Conn, cmds: &[Command]) -> Result<Vec<Handled>, AttemptError> {
    let now = chrono::Utc::now().naive_utc();
    let conn: &mut diesel_async::AsyncMysqlConnection = conn;
    conn.transaction::<_, AttemptError, _>(async |conn| {
        let products: Vec<i64> = cmds
            .iter()
            .map(|c| c.cmd.product_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let rows: Vec<(i64, i32, i32)> = Cached(
            inventories::table
                .filter(inventories::product_id.eq_any(pad(&products)))
                .select((
                    inventories::product_id,
                    inventories::available_qty,
                    inventories::reserved_qty,
                ))
                .order(inventories::product_id)
                .for_update(),
        )
        .load(conn)
        .await?;
        let stock: HashMap<i64, Stock> = rows
            .into_iter()
            .map(|(p, a, r)| {
                let s = Stock {
                    available: a.into(),
                    reserved: r.into(),
                };
                (p, s)
            })
            .collect();
        let orders: Vec<i64> = cmds
            .iter()
            .map(|c| c.cmd.order_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let logged: Vec<(i64, String, bool, Option<String>)> = Cached(
            inventory_logs::table
                .filter(inventory_logs::order_id.eq_any(pad(&orders)))
                .select((
                    inventory_logs::order_id,
                    inventory_logs::action,
                    inventory_logs::success,
                    inventory_logs::reason,
                )),
        )
        .load(conn)
        .await?;
        let mut logs: HashMap<i64, OrderLog> = HashMap::new();
        for (order, action, success, reason) in logged {
            let rec = Some(Recorded { success, reason });
            let l = logs.entry(order).or_default();
            match action.as_str() {
                RESERVE => l.reserve = rec,
                RELEASE => l.release = rec,
                // No other action is ever written.
                _ => {}
            }
        }

        let d = decide(&stock, &logs, cmds);

        let mut script = Script::new();
        for (pid, ch) in &d.stock {
            // The rows are locked: absolute values are what the fold saw
            // plus its moves. `decide` kept them within INT.
            let available = i32::try_from(ch.stock.available).map_err(|_| out_of_range(*pid))?;
            let reserved = i32::try_from(ch.stock.reserved).map_err(|_| out_of_range(*pid))?;
            script.push(&diesel::update(inventories::table.find(*pid)).set((
                inventories::available_qty.eq(available),
                inventories::reserved_qty.eq(reserved),
                inventories::version.eq(inventories::version + ch.moves),
                inventories::updated_at.eq(now),
            )))?;
        }
        if !d.inserts.is_empty() {
            let rows: Vec<LogInsert> = d
                .inserts
                .iter()
                .map(|l| LogInsert {
                    order_id: l.order_id,
                    saga_id: &l.saga_id,
                    product_id: l.product_id,
                    action: l.action,
                    quantity: l.quantity,
                    success: l.success,
                    reason: l.reason.as_deref(),
                    message_id: &l.message_id,
                })
                .collect();
            script.push(&diesel::insert_into(inventory_logs::table).values(&rows))?;
        }
        for u in &d.updates {
            script.push(
                &diesel::update(
                    inventory_logs::table
                        .filter(inventory_logs::order_id.eq(u.order_id))
                        .filter(inventory_logs::action.eq(RELEASE)),
                )
                .set((
                    inventory_logs::success.eq(true),
                    inventory_logs::quantity.eq(u.quantity),
                    inventory_logs::reason.eq(None::<String>),
                    inventory_logs::message_id.eq(&u.message_id),
                )),
            )?;
        }
        let handled: Vec<Handled> = d
            .outcomes
            .into_iter()
            .zip(cmds)
            .map(|(o, c)| Handled {
                reason: match &o.message {
                    Message::Reserved(r) | Message::Released(r) => match (&r.reason, &o.detail) {
                        (Some(code), Some(detail)) => Some(format!("{code}: {detail}")),
                        (code, _) => code.clone(),
                    },
                    _ => None,
                },
                message: OutboxMessage::new(&o.message, &c.trace_id),
                rejection: o.rejection,
                note: o.note,
            })
            .collect();
        let msgs: Vec<OutboxMessage> = handled.iter().map(|h| h.message.clone()).collect();
        if !msgs.is_empty() {
            script.push(&outbox::insert_statement(&msgs))?;
        }
        script.run(conn).await?;
        Ok(handled)
    })
    .await
}

fn out_of_range(pid: i64) -> AttemptError {
    AttemptError::Db(diesel::result::Error::SerializationError(
        format!("stock of product {pid} out of the INT range").into(),
    ))
}
