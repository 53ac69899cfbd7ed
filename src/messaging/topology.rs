//! Exchanges, queues and bindings of docs/contract.md section 3. Every role declares
//! the whole topology (idempotently) so a publish always finds its route.

use amqprs::{
    channel::{Channel, ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments},
    FieldTable, FieldValue,
};
use anyhow::Context;
use std::time::Duration;

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

/// Declares exchanges, queues, DLQs, retry queues and bindings.
pub async fn declare(channel: &Channel, retry_delay: Duration) -> anyhow::Result<()> {
    for (name, kind) in [(COMMANDS, "direct"), (EVENTS, "topic"), (RETRY, "direct")] {
        let mut args = ExchangeDeclareArguments::new(name, kind);
        args.durable = true;
        channel
            .exchange_declare(args)
            .await
            .with_context(|| format!("Failed to declare exchange {name}"))?;
    }
    let ttl = retry_delay.as_millis().min(i32::MAX as u128) as i32;
    for q in QUEUES.iter() {
        let dlq_name = dlq(q.name);
        channel
            .queue_declare(QueueDeclareArguments::durable_client_named(&dlq_name))
            .await
            .with_context(|| format!("Failed to declare queue {dlq_name}"))?;
        // A consumer's reject (nack without requeue) also lands in the DLQ.
        let main_args = table(vec![
            ("x-dead-letter-exchange", FieldValue::from("")),
            (
                "x-dead-letter-routing-key",
                FieldValue::from(dlq_name.as_str()),
            ),
        ]);
        channel
            .queue_declare(
                QueueDeclareArguments::durable_client_named(q.name)
                    .arguments(main_args)
                    .finish(),
            )
            .await
            .with_context(|| {
                format!(
                    "Failed to declare queue {} (declared before with other arguments?)",
                    q.name
                )
            })?;
        // The retry queue holds a message for the delay, then dead-letters it
        // back to the original exchange under its original routing key.
        let retry_name = retry_queue(q.name);
        let retry_args = table(vec![
            ("x-message-ttl", FieldValue::I(ttl)),
            ("x-dead-letter-exchange", FieldValue::from(q.exchange)),
        ]);
        channel
            .queue_declare(
                QueueDeclareArguments::durable_client_named(&retry_name)
                    .arguments(retry_args)
                    .finish(),
            )
            .await
            .with_context(|| format!("Failed to declare queue {retry_name} (declared before with another retry delay?)"))?;
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
}
