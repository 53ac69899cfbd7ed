//! The consumer of `inventory.commands`: parses each delivery, hands the
//! reserves and releases of a batch to the one executor (`exec`) in
//! arrival order, and turns each command's result into an outcome. The
//! rules themselves live in `decide`.

use super::{
    decide::{Action, Command, Note},
    exec,
};
use crate::{
    context::AppState,
    db::batch::{ItemFailure, Runner},
    messaging::{
        consumer::{delivery_span, Delivery, Handler, Outcome},
        contracts::Message,
    },
    observability::metrics::ReasonLabels,
};
use async_trait::async_trait;

pub use super::decide::{RELEASE, RESERVE};

pub struct InventoryHandler {
    pub ctx: AppState,
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
}

/// The command in a delivery, or why it can never be processed.
fn parse(d: &Delivery) -> Result<Command, String> {
    let (action, cmd) = match Message::parse(&d.routing_key, &d.body) {
        Ok(Message::Reserve(c)) => (Action::Reserve, c),
        Ok(Message::Release(c)) => (Action::Release, c),
        Ok(other) => {
            return Err(format!(
                "{} does not belong on inventory.commands",
                other.routing_key()
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    Ok(Command {
        action,
        cmd,
        message_id: d.message_id.clone(),
        trace_id: d.trace_id.clone(),
    })
}

#[async_trait]
impl Handler for InventoryHandler {
    async fn handle_batch(&self, ds: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..ds.len()).map(|_| None).collect();
        let mut cmds = Vec::with_capacity(ds.len());
        let mut at = Vec::with_capacity(ds.len());
        for (i, d) in ds.iter().enumerate() {
            match parse(d) {
                Ok(c) => {
                    cmds.push(c);
                    at.push(i);
                }
                Err(reason) => outcomes[i] = Some(Outcome::DeadLetter(reason)),
            }
        }
        let runner = Runner::new("inventory_commands", &self.ctx.pool, &self.ctx.metrics)
            .attempts(self.ctx.config.inventory.reserve_max_retries);
        let results = exec::run(&runner, &cmds).await;
        let mut msgs = Vec::with_capacity(cmds.len());
        let service = &self.ctx.metrics.service;
        for ((&i, c), r) in at.iter().zip(&cmds).zip(results) {
            let _span = delivery_span(service, &ds[i]).entered();
            let command = match c.action {
                Action::Reserve => "inventory.reserve",
                Action::Release => "inventory.release",
            };
            let outcome = match r {
                Ok(h) => {
                    if let Some(label) = h.rejection {
                        self.count_rejection(label);
                    }
                    match h.note {
                        Note::Decided => {}
                        Note::Repeated => {
                            tracing::info!(order_id = %c.cmd.order_id, command, "repeated command: re-emitting the recorded outcome")
                        }
                        Note::Unmatched => {
                            tracing::warn!(order_id = %c.cmd.order_id, reason = h.reason.as_deref().unwrap_or(""), "release without a matching reserve")
                        }
                    }
                    tracing::info!(order_id = %c.cmd.order_id, saga_id = %c.cmd.saga_id, trace_id = %c.trace_id, command, "inventory command handled");
                    msgs.push(h.message);
                    Outcome::Ack
                }
                Err(ItemFailure::Transient(e)) => Outcome::Retry(e),
                Err(ItemFailure::Permanent(e)) => Outcome::DeadLetter(e),
            };
            outcomes[i] = Some(outcome);
        }
        // Committed: the relay may publish them now.
        self.ctx.outbox.enqueue(msgs);
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Retry("no outcome".into())))
            .collect()
    }

    /// Every batch locks the stock rows of its products until the commit,
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
}
