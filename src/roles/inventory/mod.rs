//! The inventory role: stock levels over HTTP, and the reserve/release
//! commands from `inventory.commands`.

pub mod batch;
pub mod commands;
pub mod routes;
pub mod schema;
pub mod stock;

use std::sync::Arc;

use crate::{context::AppState, messaging::topology};

pub use routes::router;

pub fn register(ctx: &AppState) {
    ctx.broker.consume(
        topology::INVENTORY_COMMANDS,
        Arc::new(commands::InventoryHandler { ctx: ctx.clone() }),
    );
}
