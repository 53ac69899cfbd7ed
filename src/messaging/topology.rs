//! Exchanges, queues and bindings of docs/contract.md section 3. Every role declares
//! the whole topology (idempotently) so a publish always finds its route.
//! Every queue is of the configured type (`rabbitmq.queue_type`).

use amqprs::{
    callbacks::ChannelCallback,
    channel::{Channel, ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments},
    connection::Connection,
    Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return,
};
use anyhow::Context;
use async_trait::async_trait;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::config::QueueType;

/// Where an operator finds how to move queues from one type to the other.
pub const MIGRATION_DOC: &str = "docs/operations.md, \"Moving to quorum queues\"";

pub const COMMANDS: &str = "saga.commands";
pub const EVENTS: &str = "saga.events";
pub const RETRY: &str = "saga.retry";

pub const INVENTORY_COMMANDS: &str = "inventory.commands";
pub const PAYMENT_COMMANDS: &str = "payment.commands";
pub const ORDER_EVENTS: &str = "order.events";

pub const RK_RESERVE: &str = "inventory.reserve";
pub const RK_RELEASE: &str = "inventory.release";
pub const RK_PAY: &str = "payment.process";
pub const RK_RESERVED: &str = "inventory.reserved";
pub const RK_RELEASED: &str = "inventory.released";
pub const RK_PAID: &str = "payment.processed";
/// dop's addition: the order role cancels a payment that timed out or that
/// the customer cancelled (docs/design/barrier.md).
pub const RK_PAY_CANCEL: &str = "payment.cancel";
/// dop's addition: the payment role's answer to `payment.cancel`.
pub const RK_PAY_CANCELLED: &str = "payment.cancelled";

/// A consumed queue: its exchange and routing keys.
pub struct QueueSpec {
    pub name: &'static str,
    pub exchange: &'static str,
    pub keys: &'static [&'static str],
}

pub const QUEUES: [QueueSpec; 3] = [
    QueueSpec {
        name: INVENTORY_COMMANDS,
        exchange: COMMANDS,
        keys: &[RK_RESERVE, RK_RELEASE],
    },
    QueueSpec {
        name: PAYMENT_COMMANDS,
        exchange: COMMANDS,
        keys: &[RK_PAY, RK_PAY_CANCEL],
    },
    QueueSpec {
        name: ORDER_EVENTS,
        exchange: EVENTS,
        keys: &[RK_RESERVED, RK_RELEASED, RK_PAID, RK_PAY_CANCELLED],
    },
];

pub fn dlq(queue: &str) -> String {
    format!("{queue}.dlq")
}

pub fn retry_queue(queue: &str) -> String {
    format!("{queue}.retry")
}

/// The exchange a routing key is published to.
pub fn exchange_for(routing_key: &str) -> Option<&'static str> {
    QUEUES
        .iter()
        .find(|q| q.keys.contains(&routing_key))
        .map(|q| q.exchange)
}

/// The queue that consumes a routing key.
pub fn queue_for(routing_key: &str) -> Option<&'static str> {
    QUEUES
        .iter()
        .find(|q| q.keys.contains(&routing_key))
        .map(|q| q.name)
}

fn table(pairs: Vec<(&str, FieldValue)>) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in pairs {
        if let Ok(name) = k.try_into() {
            t.insert(name, v);
        }
    }
    t
}

/// The arguments that make a queue of `kind`. A quorum queue that
/// dead-letters does it at least once (RabbitMQ 3.10+): the message leaves
/// the queue only when the target queue confirmed it, which needs
/// `reject-publish` overflow (the default, `drop-head`, turns it off).
pub fn type_args(kind: QueueType, dead_letters: bool) -> Vec<(&'static str, FieldValue)> {
    match kind {
        QueueType::Classic => vec![],
        QueueType::Quorum if dead_letters => vec![
            ("x-queue-type", FieldValue::from("quorum")),
            ("x-dead-letter-strategy", FieldValue::from("at-least-once")),
            ("x-overflow", FieldValue::from("reject-publish")),
        ],
        QueueType::Quorum => vec![("x-queue-type", FieldValue::from("quorum"))],
    }
}

/// Declares one durable queue with `args` plus those of `kind`.
pub async fn declare_queue(
    channel: &Channel,
    name: &str,
    kind: QueueType,
    mut args: Vec<(&'static str, FieldValue)>,
) -> anyhow::Result<()> {
    let dead_letters = args.iter().any(|(k, _)| *k == "x-dead-letter-exchange");
    args.extend(type_args(kind, dead_letters));
    channel
        .queue_declare(
            QueueDeclareArguments::durable_client_named(name)
                .arguments(table(args))
                .finish(),
        )
        .await
        .map(|_| ())
        .map_err(|e| anyhow::Error::new(e).context(QueueRefused(name.to_string())))
}

/// The broker refused to declare this queue (the context of the error).
#[derive(Debug)]
pub struct QueueRefused(pub String);

impl std::fmt::Display for QueueRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Failed to declare queue {}", self.0)
    }
}

/// The queue the broker refused, when `e` is a declare this module made.
pub fn refused_queue(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<QueueRefused>().map(|q| q.0.as_str())
}

/// The topology conflicts with what the broker already has: a queue exists
/// with another type or other arguments. Not retryable by waiting; the
/// operator must act.
#[derive(Debug, thiserror::Error)]
#[error("queue {queue} exists on the broker with other arguments than dop declares with rabbitmq.queue_type = {kind} ({reason}); a queue's type cannot change in place: see {MIGRATION_DOC}", kind = kind.as_str())]
pub struct TopologyConflict {
    pub queue: String,
    pub kind: QueueType,
    pub reason: String,
}

/// Records why the broker closed the declaring channel: amqprs returns
/// only "channel closed" from the call itself.
#[derive(Clone, Default)]
pub struct CloseReason(Arc<Mutex<Option<String>>>);

impl CloseReason {
    /// The reason, waiting up to a second for the close frame to be handled.
    pub async fn wait(&self) -> Option<String> {
        for _ in 0..100 {
            if let Some(r) = self.0.lock().ok().and_then(|r| r.clone()) {
                return Some(r);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

#[async_trait]
impl ChannelCallback for CloseReason {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        if let Ok(mut r) = self.0.lock() {
            *r = Some(close.to_string());
        }
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, _: Ack) {}
    async fn publish_nack(&mut self, _: &Channel, _: Nack) {}
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

/// Declares the topology on a channel of its own, so that a refusal
/// (PRECONDITION_FAILED: the queue exists with another type or other
/// arguments) becomes a `TopologyConflict` naming the queue and the
/// broker's reason.
pub async fn declare_checked(
    conn: &Connection,
    retry_delay: Duration,
    kind: QueueType,
) -> anyhow::Result<()> {
    let channel = conn
        .open_channel(None)
        .await
        .context("Failed to open a channel to declare the topology")?;
    let reason = CloseReason::default();
    channel.register_callback(reason.clone()).await?;
    match declare(&channel, retry_delay, kind).await {
        Ok(()) => {
            let _ = channel.close().await;
            Ok(())
        }
        Err(e) => {
            let why = match refused_queue(&e) {
                Some(_) if conn.is_open() => reason.wait().await,
                _ => None,
            };
            match (refused_queue(&e), why) {
                (Some(queue), Some(why)) if why.contains("PRECONDITION_FAILED") => {
                    Err(TopologyConflict {
                        queue: queue.to_string(),
                        kind,
                        reason: why,
                    }
                    .into())
                }
                _ => Err(e),
            }
        }
    }
}

/// One queue of the topology and the arguments dop declares it with
/// (besides those of its type).
pub struct QueueDecl {
    pub name: String,
    pub args: Vec<(&'static str, FieldValue)>,
}

/// Every queue of the topology, DLQs first (a main queue dead-letters into
/// its DLQ), then each main queue and its retry queue.
pub fn queue_decls(retry_delay: Duration) -> Vec<QueueDecl> {
    let ttl = retry_delay.as_millis().min(i32::MAX as u128) as i32;
    let mut out = Vec::new();
    for q in QUEUES.iter() {
        let dlq_name = dlq(q.name);
        out.push(QueueDecl {
            name: dlq_name.clone(),
            args: vec![],
        });
        // A consumer's reject (nack without requeue) also lands in the DLQ.
        out.push(QueueDecl {
            name: q.name.to_string(),
            args: vec![
                ("x-dead-letter-exchange", FieldValue::from("")),
                ("x-dead-letter-routing-key", FieldValue::from(dlq_name)),
            ],
        });
        // The retry queue holds a message for the delay, then dead-letters
        // it back to the original exchange under its original routing key.
        out.push(QueueDecl {
            name: retry_queue(q.name),
            args: vec![
                ("x-message-ttl", FieldValue::I(ttl)),
                ("x-dead-letter-exchange", FieldValue::from(q.exchange)),
            ],
        });
    }
    out
}

/// Declares exchanges, queues, DLQs, retry queues and bindings, every queue
/// of type `kind`.
pub async fn declare(
    channel: &Channel,
    retry_delay: Duration,
    kind: QueueType,
) -> anyhow::Result<()> {
    for (name, kind) in [(COMMANDS, "direct"), (EVENTS, "topic"), (RETRY, "direct")] {
        let mut args = ExchangeDeclareArguments::new(name, kind);
        args.durable = true;
        channel
            .exchange_declare(args)
            .await
            .with_context(|| format!("Failed to declare exchange {name}"))?;
    }
    for d in queue_decls(retry_delay) {
        declare_queue(channel, &d.name, kind, d.args).await?;
    }
    for q in QUEUES.iter() {
        let retry_name = retry_queue(q.name);
        for key in q.keys {
            channel
                .queue_bind(QueueBindArguments::new(q.name, q.exchange, key))
                .await
                .with_context(|| format!("Failed to bind {} to {key}", q.name))?;
            channel
                .queue_bind(QueueBindArguments::new(&retry_name, RETRY, key))
                .await
                .with_context(|| format!("Failed to bind {retry_name} to {key}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_queue_and_exchange() {
        assert_eq!(exchange_for(RK_RESERVE), Some(COMMANDS));
        assert_eq!(exchange_for(RK_PAID), Some(EVENTS));
        assert_eq!(queue_for(RK_RELEASED), Some(ORDER_EVENTS));
        assert_eq!(queue_for(RK_PAY), Some(PAYMENT_COMMANDS));
        assert_eq!(queue_for("nope"), None);
        assert_eq!(dlq(ORDER_EVENTS), "order.events.dlq");
        assert_eq!(retry_queue(PAYMENT_COMMANDS), "payment.commands.retry");
    }

    #[test]
    fn quorum_queues_that_dead_letter_do_it_at_least_once() {
        let decls = queue_decls(Duration::from_secs(5));
        assert_eq!(
            decls.len(),
            9,
            "three queues, each with a retry queue and a DLQ"
        );
        for d in &decls {
            let dead_letters = d.args.iter().any(|(k, _)| *k == "x-dead-letter-exchange");
            assert_eq!(dead_letters, !d.name.ends_with(".dlq"), "{}", d.name);
            let q: Vec<_> = type_args(QueueType::Quorum, dead_letters)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            assert!(
                q.contains(&"x-queue-type=quorum".to_string()),
                "{}: {q:?}",
                d.name
            );
            assert_eq!(
                q.contains(&"x-dead-letter-strategy=at-least-once".to_string())
                    && q.contains(&"x-overflow=reject-publish".to_string()),
                dead_letters,
                "{}: {q:?}",
                d.name
            );
            assert!(type_args(QueueType::Classic, dead_letters).is_empty());
        }
    }
}
