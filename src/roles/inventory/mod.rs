//! The inventory role: stock levels over HTTP, and the reserve/release
//! commands from `inventory.commands` (`commands` consumes them, `exec`
//! runs them in one transaction per batch, `decide` holds the rules).

pub mod commands;
pub mod decide;
pub mod exec;
pub mod routes;
pub mod schema;
pub mod seed;
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
