//! What a running role's handlers, consumers and background loops share:
//! its pool, broker handle, outbox relay, metrics and configuration. It sits
//! below the roles (they take their state from here) and above the
//! infrastructure layers it holds; `app` composes it at start.

use std::sync::Arc;

use crate::{
    config::Config,
    db::DbPool,
    messaging::{Broker, Outbox},
    observability::Metrics,
    role::Role,
};

/// Everything a role's handlers and consumers share.
pub struct Ctx {
    pub role: Role,
    pub config: Arc<Config>,
    pub pool: DbPool,
    pub broker: Broker,
    pub outbox: Outbox,
    pub metrics: Arc<Metrics>,
}

pub type AppState = Arc<Ctx>;

/// The protected routes' extractors find the tokens in the configuration.
impl crate::http::auth::AdminTokens for AppState {
    fn admin(&self) -> &crate::config::AdminConfig {
        &self.config.admin
    }
}
