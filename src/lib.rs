//! dop: a distributed order-processing system running the saga
//! orchestration pattern across three roles (order, inventory, payment),
//! each with its own MySQL database, over RabbitMQ.

pub mod app;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod context;
pub mod db;
pub mod domain;
pub mod http;
pub mod messaging;
pub mod observability;
pub mod retention;
pub mod role;
pub mod roles;
pub mod saga;
