//! Charging an order: one payment per order (unique key), the processed
//! message id, and the outcome event in one transaction. A repeated command
//! re-emits the recorded outcome; it never charges twice.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use rand::Rng;
use rust_decimal::Decimal;
use serde::Serialize;

use super::schema::{payments, processed_events};
use crate::{
    context::{AppState, Ctx},
    db,
    domain::Money,
    http::ApiError,
    messaging::{
        consumer::{Delivery, Handler, Outcome},
        contracts::{Message, PaymentCommand, PaymentResult},
        outbox, OutboxMessage,
    },
};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = payments)]
#[diesel(check_for_backend(diesel::mysql::Mysql))]
pub struct PaymentRow {
    pub order_id: String,
    pub saga_id: String,
    pub amount: Decimal,
    pub status: String,
    pub tx_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Serialize)]
pub struct PaymentView {
    pub order_id: String,
    pub saga_id: String,
    pub amount: Money,
    pub status: String,
    pub tx_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: String,
}

impl From<PaymentRow> for PaymentView {
    fn from(p: PaymentRow) -> Self {
        Self {
            order_id: p.order_id,
            saga_id: p.saga_id,
            amount: Money::from_db(p.amount),
            status: p.status,
            tx_id: p.tx_id,
            reason: p.reason,
            created_at: p
                .created_at
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

pub async fn get(ctx: &Ctx, order_id: &str) -> Result<PaymentView, ApiError> {
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

pub struct PaymentHandler {
    pub ctx: AppState,
}

fn outcome_of(cmd: &PaymentCommand, p: &PaymentRow) -> PaymentResult {
    PaymentResult {
        saga_id: cmd.saga_id.clone(),
        order_id: cmd.order_id.clone(),
        amount: Money::from_db(p.amount),
        success: p.status == "SUCCESS",
        tx_id: p.tx_id.clone(),
        reason: p.reason.clone(),
    }
}

impl PaymentHandler {
    async fn charge(
        &self,
        cmd: &PaymentCommand,
        d: &Delivery,
    ) -> Result<Vec<OutboxMessage>, diesel::result::Error> {
        let mut conn = self.ctx.pool.get().await.map_err(|e| {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection,
                Box::new(e.to_string()),
            )
        })?;
        let rate = self.ctx.config.payment.failure_rate;
        let declined = rate > 0.0 && rand::rng().random::<f64>() < rate;
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            let existing: Option<PaymentRow> = payments::table
                .filter(payments::order_id.eq(&cmd.order_id))
                .select(PaymentRow::as_select())
                .first(conn)
                .await
                .optional()?;
            let result = match existing {
                Some(p) => {
                    tracing::info!(order_id = %cmd.order_id, "repeated payment command: re-emitting the recorded outcome");
                    outcome_of(cmd, &p)
                }
                None => {
                    let (status, tx_id, reason) = if declined {
                        ("FAILED", None, Some("payment declined".to_string()))
                    } else {
                        ("SUCCESS", Some(uuid::Uuid::new_v4().to_string()), None)
                    };
                    diesel::insert_into(payments::table)
                        .values((
                            payments::order_id.eq(&cmd.order_id),
                            payments::saga_id.eq(&cmd.saga_id),
                            payments::amount.eq(cmd.amount.decimal()),
                            payments::status.eq(status),
                            payments::tx_id.eq(&tx_id),
                            payments::reason.eq(&reason),
                        ))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(processed_events::table)
                        .values(processed_events::message_id.eq(&d.message_id))
                        .execute(conn)
                        .await
                        .or_else(|e| if db::is_duplicate(&e) { Ok(0) } else { Err(e) })?;
                    PaymentResult {
                        saga_id: cmd.saga_id.clone(),
                        order_id: cmd.order_id.clone(),
                        amount: cmd.amount,
                        success: !declined,
                        tx_id,
                        reason,
                    }
                }
            };
            let msgs = vec![OutboxMessage::new(&Message::PaymentProcessed(result), &d.trace_id)];
            outbox::insert(conn, &msgs).await?;
            Ok(msgs)
        })
        .await
    }
}

#[async_trait]
impl Handler for PaymentHandler {
    async fn handle_batch(&self, ds: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..ds.len()).map(|_| None).collect();
        let mut seen = std::collections::HashSet::new();
        let (mut idx, mut cmds) = (Vec::new(), Vec::new());
        for (i, d) in ds.iter().enumerate() {
            if let Ok(Message::ProcessPayment(c)) = Message::parse(&d.routing_key, &d.body) {
                if seen.insert(c.order_id.clone()) {
                    idx.push(i);
                    cmds.push(c);
                }
            }
        }
        // Even one command: the batch path is one round trip for its writes.
        if !idx.is_empty() {
            let rate = self.ctx.config.payment.failure_rate;
            let declined: Vec<bool> = {
                let mut rng = rand::rng();
                cmds.iter()
                    .map(|_| rate > 0.0 && rng.random::<f64>() < rate)
                    .collect()
            };
            let items: Vec<(&Delivery, &PaymentCommand)> =
                idx.iter().zip(&cmds).map(|(&i, c)| (&ds[i], c)).collect();
            if let Ok(mut conn) = self.ctx.pool.get().await {
                if let Ok(msgs) = super::batch::charge_many(&mut conn, &items, &declined).await {
                    self.ctx.outbox.enqueue(msgs);
                    for (&i, c) in idx.iter().zip(&cmds) {
                        tracing::info!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %ds[i].trace_id, "payment command handled");
                        outcomes[i] = Some(Outcome::Ack);
                    }
                }
            }
        }
        crate::messaging::consumer::one_by_one(self, &self.ctx.metrics.service, ds, outcomes).await
    }

    async fn handle(&self, d: &Delivery) -> Outcome {
        let cmd = match Message::parse(&d.routing_key, &d.body) {
            Ok(Message::ProcessPayment(c)) => c,
            Ok(other) => {
                return Outcome::DeadLetter(format!(
                    "{} does not belong on payment.commands",
                    other.routing_key()
                ))
            }
            Err(e) => return Outcome::DeadLetter(e.to_string()),
        };
        match self.charge(&cmd, d).await {
            Ok(msgs) => {
                self.ctx.outbox.enqueue(msgs);
                tracing::info!(order_id = %cmd.order_id, saga_id = %cmd.saga_id, "payment command handled");
                Outcome::Ack
            }
            // A concurrent duplicate lost the race on the unique key: the
            // retry finds the recorded payment and re-emits it.
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}
