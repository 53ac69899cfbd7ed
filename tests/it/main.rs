//! Integration and end-to-end tests against the real MariaDB and RabbitMQ
//! on this machine. One binary (fast to link); each test gets its own
//! databases and vhost, so they run in parallel.

mod access;
mod admin;
mod admin_list;
mod amqp_writes;
mod api;
mod barrier;
mod bench;
mod broker_urls;
mod compat_api;
mod console;
mod consumer_faults;
mod contracts;
mod db_errors;
mod deadlines;
mod ensure_services;
mod exec_payment;
mod exec_saga;
mod fuzz;
mod harness;
mod hostile;
mod idempotency;
mod ids;
mod integrity;
mod inventory_props;
mod inventory_rules;
mod lost_commit;
mod observability;
mod order_ids;
mod proxy;
mod queue_types;
mod reliability;
mod retention;
mod returns;
mod saga;
mod script;
mod seed;
mod trace_ids;
