//! The order role: the HTTP API for orders and sagas, and the saga
//! orchestrator that consumes `order.events`.

pub mod admin;
pub mod cancel;
pub mod console;
pub mod dead_letters;
pub mod deadlines;
pub mod decide;
pub mod ids;
pub mod model;
pub mod orchestrator;
pub mod orders;
pub mod place;
pub mod recovery;
pub mod routes;
pub mod sagas;
pub mod schema;
pub mod writer;

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::{context::AppState, messaging::topology};

pub use routes::router;

/// Registers the orchestrator's consumer, starts the recovery loop, the
/// deadline check and the order writer (returned for the routes).
pub fn register(ctx: &AppState, tasks: &mut Vec<JoinHandle<()>>) -> writer::OrderWriter {
    ctx.broker.consume(
        topology::ORDER_EVENTS,
        Arc::new(orchestrator::Orchestrator { ctx: ctx.clone() }),
    );
    tasks.push(tokio::spawn(recovery::run(ctx.clone())));
    tasks.push(tokio::spawn(deadlines::run(ctx.clone())));
    let (writer, handles) = writer::OrderWriter::start(ctx.clone());
    tasks.extend(handles);
    writer
}
