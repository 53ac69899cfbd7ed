//! Many payment commands in one transaction: one read of existing payments,
//! and a multi-row insert each of payments, processed message ids and outbox
//! rows, sent in one round trip. A repeated order (in the table or twice in the batch) goes back to
//! the one-by-one path, which re-emits the recorded outcome.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use super::schema::{payments, processed_events};
pub use crate::db::BatchError;
use crate::db::{
    cached::{pad, Cached},
    Script,
};
use crate::messaging::{
    consumer::Delivery,
    contracts::{Message, PaymentCommand, PaymentResult},
    outbox, OutboxMessage,
};

#[derive(Insertable)]
#[diesel(table_name = payments)]
struct NewPayment<'a> {
    order_id: &'a str,
    saga_id: &'a str,
    amount: rust_decimal::Decimal,
    status: &'a str,
    tx_id: Option<String>,
    reason: Option<&'a str>,
}

/// Charges distinct orders; `declined[i]` says whether order i is declined.
pub async fn charge_many(
    conn: &mut AsyncMysqlConnection,
    items: &[(&Delivery, &PaymentCommand)],
    declined: &[bool],
) -> Result<Vec<OutboxMessage>, BatchError> {
    conn.transaction::<_, BatchError, _>(async |conn| {
        let order_ids: Vec<&str> = items.iter().map(|(_, c)| c.order_id.as_str()).collect();
        let existing: i64 = Cached(
            payments::table
                .filter(payments::order_id.eq_any(pad(&order_ids)))
                .count(),
        )
        .get_result(conn)
        .await?;
        if existing > 0 {
            return Err(BatchError::Fallback);
        }
        let mut rows = Vec::with_capacity(items.len());
        let mut msgs = Vec::with_capacity(items.len());
        for ((d, c), &no) in items.iter().zip(declined) {
            let tx_id = (!no).then(|| uuid::Uuid::new_v4().to_string());
            let reason = no.then_some("payment declined");
            rows.push(NewPayment {
                order_id: &c.order_id,
                saga_id: &c.saga_id,
                amount: c.amount.decimal(),
                status: if no { "FAILED" } else { "SUCCESS" },
                tx_id: tx_id.clone(),
                reason,
            });
            msgs.push(OutboxMessage::new(
                &Message::PaymentProcessed(PaymentResult {
                    saga_id: c.saga_id.clone(),
                    order_id: c.order_id.clone(),
                    amount: c.amount,
                    success: !no,
                    tx_id,
                    reason: reason.map(str::to_string),
                }),
                &d.trace_id,
            ));
        }
        let ids: Vec<_> = items
            .iter()
            .map(|(d, _)| processed_events::message_id.eq(d.message_id.as_str()))
            .collect();
        // The three inserts in one round trip (db::script).
        let mut script = Script::new();
        script
            .push(&diesel::insert_into(payments::table).values(&rows))?
            .push(&diesel::insert_or_ignore_into(processed_events::table).values(&ids))?
            .push(&outbox::insert_statement(&msgs))?;
        script.run(conn).await?;
        Ok(msgs)
    })
    .await
}
