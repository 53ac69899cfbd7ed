//! Reserve and release, each one transaction with its log row and its
//! outbox event. A reserve is a single conditional UPDATE (never oversells,
//! needs no retry budget under contention); the log's unique key
//! `(order_id, action)` makes repeated commands re-emit the recorded outcome,
//! and a reserve that arrives after its release is rejected.

use std::time::Duration;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use super::schema::{inventories, inventory_logs};
use crate::{
    context::AppState,
    db,
    messaging::{
        consumer::{Delivery, Handler, Outcome},
        contracts::{InventoryCommand, InventoryResult, Message},
        outbox, OutboxMessage,
    },
    observability::metrics::ReasonLabels,
};

pub const RESERVE: &str = "RESERVE";
pub const RELEASE: &str = "RELEASE";

pub struct InventoryHandler {
    pub ctx: AppState,
}

#[derive(Clone, Debug, Queryable)]
struct LogRow {
    action: String,
    success: bool,
    reason: Option<String>,
}

enum TxError {
    /// The order already has log rows: roll back and decide from them.
    Logged(Vec<LogRow>),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

fn result(cmd: &InventoryCommand, success: bool, reason: Option<String>) -> InventoryResult {
    InventoryResult {
        saga_id: cmd.saga_id.clone(),
        order_id: cmd.order_id.clone(),
        product_id: cmd.product_id,
        quantity: cmd.quantity,
        success,
        reason,
    }
}

async fn logs_of(conn: &mut AsyncMysqlConnection, order_id: &str) -> QueryResult<Vec<LogRow>> {
    inventory_logs::table
        .filter(inventory_logs::order_id.eq(order_id))
        .select((
            inventory_logs::action,
            inventory_logs::success,
            inventory_logs::reason,
        ))
        .load(conn)
        .await
}

#[allow(clippy::too_many_arguments)]
async fn insert_log(
    conn: &mut AsyncMysqlConnection,
    cmd: &InventoryCommand,
    action: &str,
    quantity: i32,
    success: bool,
    reason: Option<&str>,
    message_id: &str,
) -> QueryResult<usize> {
    diesel::insert_into(inventory_logs::table)
        .values((
            inventory_logs::order_id.eq(&cmd.order_id),
            inventory_logs::saga_id.eq(&cmd.saga_id),
            inventory_logs::product_id.eq(cmd.product_id),
            inventory_logs::action.eq(action),
            inventory_logs::quantity.eq(quantity),
            inventory_logs::success.eq(success),
            inventory_logs::reason.eq(reason),
            inventory_logs::message_id.eq(message_id),
        ))
        .execute(conn)
        .await
}

/// One attempt at a reserve. Returns the event to publish.
async fn reserve_once(
    conn: &mut AsyncMysqlConnection,
    cmd: &InventoryCommand,
    d: &Delivery,
) -> Result<(Vec<OutboxMessage>, Option<&'static str>), diesel::result::Error> {
    let now = chrono::Utc::now().naive_utc();
    let r = conn
        .transaction::<_, TxError, _>(async |conn| {
            // Locks the product row whether or not the condition holds, so
            // the log read below sees every earlier reserve/release of it.
            let moved = diesel::update(
                inventories::table
                    .find(cmd.product_id)
                    .filter(inventories::available_qty.ge(cmd.quantity)),
            )
            .set((
                inventories::available_qty.eq(inventories::available_qty - cmd.quantity),
                inventories::reserved_qty.eq(inventories::reserved_qty + cmd.quantity),
                inventories::version.eq(inventories::version + 1),
                inventories::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
            let logs = logs_of(conn, &cmd.order_id).await?;
            if !logs.is_empty() {
                return Err(TxError::Logged(logs));
            }
            let (success, reason, label) = if moved == 1 {
                (true, None, None)
            } else {
                let exists: Option<i32> = inventories::table
                    .find(cmd.product_id)
                    .select(inventories::available_qty)
                    .first(conn)
                    .await
                    .optional()?;
                match exists {
                    Some(avail) => (
                        false,
                        Some(format!(
                            "insufficient stock: {avail} available, {} requested",
                            cmd.quantity
                        )),
                        Some("insufficient_stock"),
                    ),
                    None => (
                        false,
                        Some(format!("product {} not found", cmd.product_id)),
                        Some("product_not_found"),
                    ),
                }
            };
            insert_log(
                conn,
                cmd,
                RESERVE,
                cmd.quantity,
                success,
                reason.as_deref(),
                &d.message_id,
            )
            .await?;
            let msgs = vec![OutboxMessage::new(
                &Message::Reserved(result(cmd, success, reason)),
                &d.trace_id,
            )];
            outbox::insert(conn, &msgs).await?;
            Ok((msgs, label))
        })
        .await;
    match r {
        Ok(v) => Ok(v),
        Err(TxError::Db(e)) => Err(e),
        Err(TxError::Logged(logs)) => {
            // Rolled back. Re-emit the recorded outcome, or reject a reserve
            // whose order was already released.
            if let Some(prev) = logs.iter().find(|l| l.action == RESERVE) {
                tracing::info!(order_id = %cmd.order_id, "repeated reserve: re-emitting the recorded outcome");
                let msg = Message::Reserved(result(cmd, prev.success, prev.reason.clone()));
                return Ok((reemit(conn, &msg, &d.trace_id).await?, None));
            }
            let reason = "order already released; late reserve rejected".to_string();
            let msg = Message::Reserved(result(cmd, false, Some(reason.clone())));
            let msgs = record(conn, cmd, d, RESERVE, cmd.quantity, false, &reason, &msg).await?;
            Ok((msgs, Some("already_released")))
        }
    }
}

/// Publishes a recorded outcome again (a repeated command), through the
/// outbox like any other message.
async fn reemit(
    conn: &mut AsyncMysqlConnection,
    msg: &Message,
    trace_id: &str,
) -> QueryResult<Vec<OutboxMessage>> {
    let msgs = vec![OutboxMessage::new(msg, trace_id)];
    conn.transaction::<_, diesel::result::Error, _>(async |conn| outbox::insert(conn, &msgs).await)
        .await?;
    Ok(msgs)
}

/// Records an outcome decided outside the main transaction (a rejected late
/// reserve, a release of nothing): its log row and its event, together.
#[allow(clippy::too_many_arguments)]
async fn record(
    conn: &mut AsyncMysqlConnection,
    cmd: &InventoryCommand,
    d: &Delivery,
    action: &str,
    quantity: i32,
    success: bool,
    reason: &str,
    msg: &Message,
) -> QueryResult<Vec<OutboxMessage>> {
    let msgs = vec![OutboxMessage::new(msg, &d.trace_id)];
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        insert_log(
            conn,
            cmd,
            action,
            quantity,
            success,
            Some(reason),
            &d.message_id,
        )
        .await?;
        outbox::insert(conn, &msgs).await
    })
    .await?;
    Ok(msgs)
}

/// One attempt at a release.
async fn release_once(
    conn: &mut AsyncMysqlConnection,
    cmd: &InventoryCommand,
    d: &Delivery,
) -> Result<Vec<OutboxMessage>, diesel::result::Error> {
    let now = chrono::Utc::now().naive_utc();
    let r = conn
        .transaction::<_, TxError, _>(async |conn| {
            let moved = diesel::update(
                inventories::table
                    .find(cmd.product_id)
                    .filter(inventories::reserved_qty.ge(cmd.quantity)),
            )
            .set((
                inventories::available_qty.eq(inventories::available_qty + cmd.quantity),
                inventories::reserved_qty.eq(inventories::reserved_qty - cmd.quantity),
                inventories::version.eq(inventories::version + 1),
                inventories::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
            let logs = logs_of(conn, &cmd.order_id).await?;
            let reserved = logs.iter().any(|l| l.action == RESERVE && l.success);
            let released = logs.iter().any(|l| l.action == RELEASE && l.success);
            let failed_before = logs.iter().any(|l| l.action == RELEASE && !l.success);
            if released || !reserved || moved == 0 {
                return Err(TxError::Logged(logs));
            }
            if failed_before {
                // A release that failed (and that an operator retries) may
                // succeed now: the log row records the new outcome.
                diesel::update(
                    inventory_logs::table
                        .filter(inventory_logs::order_id.eq(&cmd.order_id))
                        .filter(inventory_logs::action.eq(RELEASE)),
                )
                .set((
                    inventory_logs::success.eq(true),
                    inventory_logs::quantity.eq(cmd.quantity),
                    inventory_logs::reason.eq(None::<String>),
                    inventory_logs::message_id.eq(&d.message_id),
                ))
                .execute(conn)
                .await?;
            } else {
                insert_log(conn, cmd, RELEASE, cmd.quantity, true, None, &d.message_id).await?;
            }
            let msgs = vec![OutboxMessage::new(
                &Message::Released(result(cmd, true, None)),
                &d.trace_id,
            )];
            outbox::insert(conn, &msgs).await?;
            Ok(msgs)
        })
        .await;
    match r {
        Ok(m) => Ok(m),
        Err(TxError::Db(e)) => Err(e),
        Err(TxError::Logged(logs)) => {
            if let Some(prev) = logs.iter().find(|l| l.action == RELEASE) {
                tracing::info!(order_id = %cmd.order_id, "repeated release: re-emitting the recorded outcome");
                let msg = Message::Released(result(cmd, prev.success, prev.reason.clone()));
                return reemit(conn, &msg, &d.trace_id).await;
            }
            let reserved = logs.iter().any(|l| l.action == RESERVE && l.success);
            // Nothing reserved: record a release of nothing, so a reserve
            // arriving later is rejected and stock never leaks.
            let (qty, success, reason) = if reserved {
                (
                    cmd.quantity,
                    false,
                    "reserved stock is lower than the release; needs an operator".to_string(),
                )
            } else {
                (0, true, "nothing was reserved for this order".to_string())
            };
            tracing::warn!(order_id = %cmd.order_id, reason = %reason, "release without a matching reserve");
            let msg = Message::Released(result(cmd, success, Some(reason.clone())));
            record(conn, cmd, d, RELEASE, qty, success, &reason, &msg).await
        }
    }
}

impl InventoryHandler {
    /// Counts a refused reserve in `inventory_reserve_rejections_total`.
    fn count_rejection(&self, reason: &str) {
        self.ctx
            .metrics
            .reserve_rejections
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    async fn run(
        &self,
        d: &Delivery,
        msg: &Message,
    ) -> Result<(Vec<OutboxMessage>, Option<&'static str>), diesel::result::Error> {
        let mut conn = self.ctx.pool.get().await.map_err(|e| {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection,
                Box::new(e.to_string()),
            )
        })?;
        match msg {
            Message::Reserve(cmd) => reserve_once(&mut conn, cmd, d).await,
            Message::Release(cmd) => release_once(&mut conn, cmd, d).await.map(|m| (m, None)),
            _ => Ok((Vec::new(), None)),
        }
    }
}

#[async_trait]
impl Handler for InventoryHandler {
    async fn handle_batch(&self, ds: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..ds.len()).map(|_| None).collect();
        let mut seen = std::collections::HashSet::new();
        let mut reserves = Vec::new();
        let mut cmds = Vec::new();
        for (i, d) in ds.iter().enumerate() {
            if let Ok(Message::Reserve(c)) = Message::parse(&d.routing_key, &d.body) {
                if seen.insert(c.order_id.clone()) {
                    reserves.push(i);
                    cmds.push(c);
                }
            }
        }
        // Even one reserve: the batch path is one round trip for its writes.
        if !reserves.is_empty() {
            let items: Vec<(&Delivery, &InventoryCommand)> = reserves
                .iter()
                .zip(&cmds)
                .map(|(&i, c)| (&ds[i], c))
                .collect();
            let budget = self.ctx.config.inventory.reserve_max_retries;
            let mut attempt = 0;
            loop {
                let r = match self.ctx.pool.get().await {
                    Ok(mut conn) => super::batch::reserve_many(&mut conn, &items).await,
                    Err(_) => break,
                };
                match r {
                    Ok(done) => {
                        for reason in done.rejected {
                            self.count_rejection(reason);
                        }
                        self.ctx.outbox.enqueue(done.msgs);
                        for (&i, c) in reserves.iter().zip(&cmds) {
                            tracing::info!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %ds[i].trace_id, command = "inventory.reserve", "inventory command handled");
                            outcomes[i] = Some(Outcome::Ack);
                        }
                        break;
                    }
                    Err(super::batch::BatchError::Db(e))
                        if db::is_contention(&e) && attempt < budget =>
                    {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis((5 * attempt as u64).min(200)))
                            .await;
                    }
                    // Anything else: the one-by-one path decides.
                    Err(_) => break,
                }
            }
        }
        crate::messaging::consumer::one_by_one(self, &self.ctx.metrics.service, ds, outcomes).await
    }

    /// Every reserve locks the stock row of its product until the commit,
    /// and with a handful of products every batch touches the same rows:
    /// concurrent batches would only queue on each other's locks. One
    /// batch at a time, taking everything that arrived meanwhile, does the
    /// same work in fewer, larger transactions (docs/design/batching.md).
    fn batches_in_flight(&self) -> usize {
        1
    }

    /// With one batch at a time, a batch takes whatever waits (up to the
    /// prefetch), so a burst is absorbed by one transaction, not queued.
    fn max_batch(&self) -> usize {
        usize::MAX
    }

    async fn handle(&self, d: &Delivery) -> Outcome {
        let msg = match Message::parse(&d.routing_key, &d.body) {
            Ok(m @ (Message::Reserve(_) | Message::Release(_))) => m,
            Ok(other) => {
                return Outcome::DeadLetter(format!(
                    "{} does not belong on inventory.commands",
                    other.routing_key()
                ))
            }
            Err(e) => return Outcome::DeadLetter(e.to_string()),
        };
        // Transient database errors (deadlock, lock wait timeout) are retried
        // here up to INVENTORY_RESERVE_MAX_RETRIES; contention alone never
        // needs it, since the reserve is one conditional UPDATE.
        let budget = self.ctx.config.inventory.reserve_max_retries;
        let mut attempt = 0;
        loop {
            match self.run(d, &msg).await {
                Ok((msgs, rejected)) => {
                    if let Some(reason) = rejected {
                        self.count_rejection(reason);
                    }
                    self.ctx.outbox.enqueue(msgs);
                    tracing::info!(order_id = %msg.order_id(), saga_id = %msg.saga_id(), command = msg.routing_key(), "inventory command handled");
                    return Outcome::Ack;
                }
                Err(e) if db::is_contention(&e) && attempt < budget => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis((5 * attempt as u64).min(200))).await;
                }
                Err(e) => return Outcome::Retry(e.to_string()),
            }
        }
    }
}
