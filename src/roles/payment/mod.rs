//! The payment role: charges orders on `payment.process` (declining at
//! PAYMENT_FAILURE_RATE) and shows payments over HTTP.

pub mod charge;
pub mod decide;
pub mod handler;
pub mod routes;
pub mod schema;

use std::sync::Arc;

use crate::{context::AppState, messaging::topology};

pub use routes::router;

pub fn register(ctx: &AppState) {
    ctx.broker.consume(
        topology::PAYMENT_COMMANDS,
        Arc::new(handler::PaymentHandler { ctx: ctx.clone() }),
    );
}
