//! Everything that crosses RabbitMQ: the topology, the message contracts,
//! the confirming publisher, the connection supervisor with its consumers,
//! and the transactional outbox with its relay.

pub mod broker;
pub mod consumer;
pub mod contracts;
pub mod dlq;
pub mod outbox;
pub mod publisher;
pub mod topology;

pub use broker::Broker;
pub use outbox::{Outbox, OutboxMessage};
