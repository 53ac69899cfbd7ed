//! The consumer of `payment.commands`: parses a batch of deliveries and
//! charges the valid ones through the one executor (`charge::execute`).

use async_trait::async_trait;
use rand::Rng;

use super::{
    charge::{self, Charged},
    decide::{PayCommand, PayKind, PayOutcome, CANCELLED_REASON, EXPIRED_REASON},
};
use crate::{
    context::AppState,
    db::batch::ItemFailure,
    messaging::{
        consumer::{Delivery, Handler, Outcome},
        contracts::Message,
        topology::{RK_PAY, RK_PAY_CANCEL},
    },
};

pub struct PaymentHandler {
    pub ctx: AppState,
}

#[async_trait]
impl Handler for PaymentHandler {
    async fn handle_batch(&self, ds: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..ds.len()).map(|_| None).collect();
        let (mut idx, mut cmds) = (Vec::new(), Vec::new());
        // Drawn before the transaction, so the decision is a function of
        // its input and a retried attempt decides the same.
        let rate = self.ctx.config.payment.failure_rate;
        for (i, d) in ds.iter().enumerate() {
            let parsed = match Message::parse(&d.routing_key, &d.body) {
                Ok(Message::ProcessPayment(c)) => Ok((PayKind::Process, c)),
                Ok(Message::CancelPayment(c)) => Ok((PayKind::Cancel, c)),
                Ok(other) => Err(format!(
                    "{} does not belong on payment.commands",
                    other.routing_key()
                )),
                Err(e) => Err(e.to_string()),
            };
            match parsed {
                Ok((kind, c)) => {
                    idx.push(i);
                    cmds.push(PayCommand {
                        kind,
                        message_id: d.message_id.clone(),
                        trace_id: d.trace_id.clone(),
                        saga_id: c.saga_id,
                        order_id: c.order_id,
                        amount: c.amount.decimal(),
                        declined: kind == PayKind::Process
                            && rate > 0.0
                            && rand::rng().random::<f64>() < rate,
                        expired: kind == PayKind::Process
                            && c.expires_at.is_some_and(|t| t <= chrono::Utc::now()),
                        tx_id: uuid::Uuid::now_v7().to_string(),
                    });
                }
                Err(reason) => outcomes[i] = Some(Outcome::DeadLetter(reason)),
            }
        }
        if !cmds.is_empty() {
            let results = charge::execute(&charge::runner(&self.ctx), &cmds).await;
            let mut msgs = Vec::new();
            for ((&i, c), r) in idx.iter().zip(&cmds).zip(results) {
                outcomes[i] = Some(match r {
                    Ok(Charged { outcome, msg }) => {
                        msgs.extend(msg);
                        settle(c, outcome)
                    }
                    Err(ItemFailure::Transient(e)) => {
                        tracing::warn!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %c.trace_id, command = command(c), error = %e, "payment command not handled for now; retrying");
                        Outcome::Retry(e)
                    }
                    Err(ItemFailure::Permanent(e)) => {
                        tracing::error!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %c.trace_id, command = command(c), error = %e, "payment command fails alone every time; dead-lettering it");
                        Outcome::DeadLetter(e)
                    }
                });
            }
            // Committed: hand the outcome events to the relay.
            self.ctx.outbox.enqueue(msgs);
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Retry("no outcome".into())))
            .collect()
    }
}

/// The routing key of the command, for log lines.
fn command(c: &PayCommand) -> &'static str {
    match c.kind {
        PayKind::Process => RK_PAY,
        PayKind::Cancel => RK_PAY_CANCEL,
    }
}

/// The delivery's outcome, logged.
fn settle(c: &PayCommand, outcome: PayOutcome) -> Outcome {
    match outcome {
        PayOutcome::Cancelled { result, tombstone } => {
            tracing::info!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %c.trace_id, command = RK_PAY_CANCEL, cancelled = result.cancelled, tombstone, "payment cancel handled");
            Outcome::Ack
        }
        PayOutcome::Repeated(r)
            if matches!(r.reason.as_deref(), Some(CANCELLED_REASON | EXPIRED_REASON)) =>
        {
            tracing::warn!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %c.trace_id, command = RK_PAY, "payment arrived after its cancel; refused, nothing charged");
            Outcome::Ack
        }
        PayOutcome::Charged(r) if r.reason.as_deref() == Some(EXPIRED_REASON) => {
            tracing::warn!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %c.trace_id, command = RK_PAY, "payment arrived after the order gave up on it; recorded as cancelled, nothing charged");
            Outcome::Ack
        }
        PayOutcome::Charged(r) => {
            tracing::info!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %c.trace_id, command = RK_PAY, success = r.success, "payment command handled");
            Outcome::Ack
        }
        PayOutcome::Repeated(r) => {
            tracing::info!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %c.trace_id, command = RK_PAY, success = r.success, "repeated payment command: re-emitted the recorded outcome");
            Outcome::Ack
        }
        PayOutcome::Refused(reason) => {
            tracing::warn!(order_id = %c.order_id, saga_id = %c.saga_id, trace_id = %c.trace_id, command = command(c), reason = %reason, "payment command refused");
            Outcome::DeadLetter(reason)
        }
    }
}
