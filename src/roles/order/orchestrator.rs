//! The saga orchestrator: consumes `order.events`, parses a batch of
//! deliveries and applies the valid events through the one executor
//! (`sagas::execute`), which records each message id, moves the saga and
//! its order, writes the timeline row and the next command in one
//! transaction.

use async_trait::async_trait;

use super::{
    decide::{EventOutcome, Limits, SagaEvent},
    sagas::{self, Applied},
};
use crate::{
    context::AppState,
    db::batch::ItemFailure,
    messaging::{
        consumer::{Delivery, Handler, Outcome},
        contracts::Message,
    },
    observability::metrics::StatusLabels,
    saga::{Event, SagaStatus},
};

pub struct Orchestrator {
    pub ctx: AppState,
}

/// The saga event a message carries, with its reason; None for commands.
fn event_of(msg: &Message) -> Option<(Event, Option<String>)> {
    Some(match msg {
        Message::Reserved(r) => (
            Event::InventoryReserved { success: r.success },
            r.reason.clone(),
        ),
        Message::Released(r) => (
            Event::InventoryReleased { success: r.success },
            r.reason.clone(),
        ),
        Message::PaymentProcessed(r) => (
            Event::PaymentProcessed { success: r.success },
            r.reason.clone(),
        ),
        Message::PaymentCancelled(r) => (
            Event::PaymentCancelled {
                charged: !r.cancelled,
            },
            r.reason.clone(),
        ),
        _ => return None,
    })
}

impl Orchestrator {
    /// Counts a saga that reached a terminal status.
    fn ended(&self, status: SagaStatus, secs: f64) {
        let labels = StatusLabels {
            status: status.as_str().into(),
        };
        self.ctx.metrics.saga_total.get_or_create(&labels).inc();
        self.ctx
            .metrics
            .saga_duration
            .get_or_create(&labels)
            .observe(secs);
    }

    /// The delivery's outcome, logged and counted.
    fn settle(&self, ev: &SagaEvent, a: Applied) -> Outcome {
        let order_id = a.order_id;
        let (saga_id, trace_id, event) = (&ev.saga_id, &ev.trace_id, ev.event.name());
        match a.outcome {
            EventOutcome::Duplicate => {
                tracing::info!(saga_id = %saga_id, order_id, trace_id = %trace_id, event, "duplicate event ignored");
                Outcome::Duplicate
            }
            EventOutcome::Stale => {
                tracing::info!(saga_id = %saga_id, order_id, trace_id = %trace_id, event, "stale event for this saga state; ignored");
                Outcome::Ack
            }
            EventOutcome::Moved { status, step } => {
                tracing::info!(saga_id = %saga_id, order_id, trace_id = %trace_id, event, status = %status, step = %step, "saga moved");
                if let Some(e) = a.ended {
                    self.ended(e.status, e.secs);
                }
                Outcome::Ack
            }
            EventOutcome::UnknownSaga => {
                tracing::warn!(saga_id = %saga_id, trace_id = %trace_id, event, "event for a saga that does not exist");
                Outcome::DeadLetter(format!("no saga {saga_id}"))
            }
        }
    }
}

#[async_trait]
impl Handler for Orchestrator {
    async fn handle_batch(&self, ds: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..ds.len()).map(|_| None).collect();
        let (mut idx, mut events) = (Vec::new(), Vec::new());
        for (i, d) in ds.iter().enumerate() {
            let msg = match Message::parse(&d.routing_key, &d.body) {
                Ok(m) => m,
                Err(e) => {
                    outcomes[i] = Some(Outcome::DeadLetter(e.to_string()));
                    continue;
                }
            };
            let Some((event, reason)) = event_of(&msg) else {
                outcomes[i] = Some(Outcome::DeadLetter(format!(
                    "{} is a command, not an event",
                    msg.routing_key()
                )));
                continue;
            };
            idx.push(i);
            events.push(SagaEvent {
                message_id: d.message_id.clone(),
                trace_id: d.trace_id.clone(),
                saga_id: msg.saga_id().to_string(),
                event,
                reason,
            });
        }
        if !events.is_empty() {
            let results = sagas::execute(
                &sagas::runner(&self.ctx),
                &events,
                &Limits::new(&self.ctx.config.saga),
            )
            .await;
            let mut msgs = Vec::new();
            for ((&i, ev), r) in idx.iter().zip(&events).zip(results) {
                outcomes[i] = Some(match r {
                    Ok(mut a) => {
                        msgs.extend(a.msg.take());
                        self.settle(ev, a)
                    }
                    Err(ItemFailure::Transient(e)) => {
                        tracing::warn!(saga_id = %ev.saga_id, trace_id = %ev.trace_id, event = ev.event.name(), error = %e, "event not handled for now; retrying");
                        Outcome::Retry(e)
                    }
                    Err(ItemFailure::Permanent(e)) => {
                        tracing::error!(saga_id = %ev.saga_id, trace_id = %ev.trace_id, event = ev.event.name(), error = %e, "event fails alone every time; dead-lettering it");
                        Outcome::DeadLetter(e)
                    }
                });
            }
            // Committed: hand the commands to the relay.
            self.ctx.outbox.enqueue(msgs);
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Retry("no outcome".into())))
            .collect()
    }
}
