//! Charging orders: the one executor of the payment rule
//! (`decide::decide`) for a batch of any size, and the payment rows' HTTP
//! view. One read of the payments of the batch's orders, the decision, then
//! the payments, processed message ids and outcome events written in one
//! round trip (`db::Script` as one transaction), all through
//! `db::batch::Runner`: a concurrent replica that charged the same order
//! first shows as a duplicate key, the Runner tries again, and the re-read
//! finds the row and re-emits it.

use crate::domain::utc;
use chrono::NaiveDateTime;
use diesel::{dsl::sql, prelude::*, sql_types::Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::Serialize;

use super::{
    decide::{self, PayCommand, PayOutcome, Recorded},
    schema::{payments, processed_events},
};
use crate::{
    context::Ctx,
    db::{
        batch::{ItemFailure, Runner},
        cached::{pad, Cached},
        Script,
    },
    domain::Money,
    http::ApiError,
    messaging::{outbox, OutboxMessage},
};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = payments)]
#[diesel(check_for_backend(diesel::mysql::Mysql))]
pub struct PaymentRow {
    pub id: i64,
    pub order_id: i64,
    pub saga_id: Option<String>,
    pub amount: Decimal,
    pub status: String,
    pub tx_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A payment as GET and POST /payments show it: the original's fields
/// (`id`, `order_id`, `amount`, `status`, `transaction_id`, `created_at`,
/// `updated_at`) and dop's additions (`saga_id`, null for a payment POST
/// /payments recorded; `reason` of a declined one; `tx_id`, the same value
/// as `transaction_id`, kept for dop's earlier clients).
#[derive(Serialize)]
pub struct PaymentView {
    pub id: i64,
    pub order_id: i64,
    pub saga_id: Option<String>,
    pub amount: Money,
    pub status: String,
    pub transaction_id: Option<String>,
    pub tx_id: Option<String>,
    pub reason: Option<String>,
    #[serde(serialize_with = "utc")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "utc")]
    pub updated_at: NaiveDateTime,
}

impl From<PaymentRow> for PaymentView {
    fn from(p: PaymentRow) -> Self {
        Self {
            id: p.id,
            order_id: p.order_id,
            saga_id: p.saga_id,
            amount: Money::from_db(p.amount),
            status: p.status,
            transaction_id: p.tx_id.clone(),
            tx_id: p.tx_id,
            reason: p.reason,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

pub async fn get(ctx: &Ctx, order_id: i64) -> Result<PaymentView, ApiError> {
    let mut conn = ctx.pool.get().await?;
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        payments::table
            .filter(payments::order_id.eq(order_id))
            .select(PaymentRow::as_select())
            .first(c)
            .await
            .optional()
    })
    .await?
    .map(PaymentView::from)
    .ok_or_else(|| ApiError::not_found(format!("no payment for order {order_id}")))
}

/// The body of POST /payments.
#[derive(Debug, serde::Deserialize)]
pub struct CreatePayment {
    pub order_id: i64,
    pub amount: Money,
}

/// POST /payments: records a PENDING payment for an order, with a new
/// transaction id, as the original does. The payment is the order's one
/// payment (`order_id` is unique): a second one is refused with 409, and a
/// saga that charges the order later finds it and does not charge again
/// (`decide::decide`).
pub async fn create(ctx: &Ctx, body: CreatePayment) -> Result<PaymentView, ApiError> {
    let order_id = body.order_id;
    if !(1..=crate::domain::MAX_ID).contains(&order_id) {
        return Err(ApiError::invalid(format!(
            "order_id must be an integer between 1 and {}",
            crate::domain::MAX_ID
        )));
    }
    if body.amount.is_zero() {
        return Err(ApiError::invalid("amount must be greater than 0"));
    }
    let tx_id = uuid::Uuid::now_v7().to_string();
    let mut conn = ctx.pool.get().await?;
    let r = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            diesel::insert_into(payments::table)
                .values((
                    payments::order_id.eq(order_id),
                    payments::amount.eq(body.amount.decimal()),
                    payments::status.eq("PENDING"),
                    payments::tx_id.eq(&tx_id),
                ))
                .execute(c)
                .await?;
            payments::table
                .filter(payments::order_id.eq(order_id))
                .select(PaymentRow::as_select())
                .first(c)
                .await
        })
        .await;
    match r {
        Ok(row) => Ok(row.into()),
        Err(e) if crate::db::is_duplicate(&e) => Err(ApiError::conflict(format!(
            "order {order_id} already has a payment; see GET /payments/{order_id}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The Runner of payment batches (`batch_failures_total{batch="payment"}`).
pub fn runner(ctx: &Ctx) -> Runner<'_> {
    Runner::new("payment", &ctx.pool, &ctx.metrics)
}

/// One command's result once its transaction committed: its outcome and the
/// message to hand to the outbox relay (none when refused).
#[derive(Clone, Debug)]
pub struct Charged {
    pub outcome: PayOutcome,
    pub msg: Option<OutboxMessage>,
}

/// Charges `cmds` (arrival order) through `runner`; one result per command.
/// The messages in the results are committed: enqueue them on the relay.
pub async fn execute(
    runner: &Runner<'_>,
    cmds: &[PayCommand],
) -> Vec<Result<Charged, ItemFailure>> {
    runner
        .run(cmds, async |conn, part: &[PayCommand]| {
            let order_ids: Vec<i64> = part.iter().map(|c| c.order_id).collect();
            // Read before writing: what an earlier attempt or another
            // replica committed is found here and re-emitted.
            let recorded: Vec<Recorded> = Cached(
                payments::table
                    .filter(payments::order_id.eq_any(pad(&order_ids)))
                    .select((
                        payments::order_id,
                        payments::saga_id,
                        payments::amount,
                        payments::status,
                        payments::tx_id,
                        payments::reason,
                    )),
            )
            .load::<(
                i64,
                Option<String>,
                Decimal,
                String,
                Option<String>,
                Option<String>,
            )>(conn)
            .await?
            .into_iter()
            .map(
                |(order_id, saga_id, amount, status, tx_id, reason)| Recorded {
                    order_id,
                    saga_id,
                    amount,
                    status,
                    tx_id,
                    reason,
                },
            )
            .collect();
            let d = decide::decide(&recorded, part);
            let msgs: Vec<OutboxMessage> = d.outbox.iter().map(|e| e.to_outbox()).collect();
            let mut script = Script::new();
            if !d.payments.is_empty() {
                script.push(&diesel::insert_into(payments::table).values(&d.payments))?;
            }
            if !d.processed.is_empty() {
                let ids: Vec<_> = d
                    .processed
                    .iter()
                    .map(|id| processed_events::message_id.eq(id))
                    .collect();
                // Recorded once; a redelivered id is not an error. Not
                // INSERT IGNORE, which would also hide a value that does not
                // fit its column.
                script.push(
                    &diesel::insert_into(processed_events::table)
                        .values(&ids)
                        .on_conflict(diesel::dsl::DuplicatedKeys)
                        .do_update()
                        .set(processed_events::message_id.eq(sql::<Text>("VALUES(message_id)"))),
                )?;
            }
            if !msgs.is_empty() {
                script.push(&outbox::insert_statement(&msgs))?;
            }
            conn.run_in_transaction(&script).await?;
            let mut by_item: Vec<Option<OutboxMessage>> = (0..part.len()).map(|_| None).collect();
            for (e, m) in d.outbox.iter().zip(msgs) {
                if let Some(slot) = by_item.get_mut(e.item) {
                    *slot = Some(m);
                }
            }
            Ok(d.outcomes
                .into_iter()
                .zip(by_item)
                .map(|(outcome, msg)| Charged { outcome, msg })
                .collect())
        })
        .await
}
