//! dop: a distributed order-processing system running the saga
//! orchestration pattern across three roles (order, inventory, payment),
//! each with its own MySQL database, over RabbitMQ.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod messaging;
pub mod observability;
pub mod roles;
pub mod saga;
