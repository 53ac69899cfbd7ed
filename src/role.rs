//! The three services `dop serve` can run, by name. A leaf module: the
//! infrastructure layers (config, db, messaging) name roles without
//! importing the roles themselves.

use std::{fmt, str::FromStr};

/// One of the three services `dop serve` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Role {
    Order,
    Inventory,
    Payment,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Order, Role::Inventory, Role::Payment];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Order => "order",
            Role::Inventory => "inventory",
            Role::Payment => "payment",
        }
    }

    /// The `service` label on metrics and logs.
    pub fn service(self) -> &'static str {
        match self {
            Role::Order => "order-service",
            Role::Inventory => "inventory-service",
            Role::Payment => "payment-service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "order" => Ok(Role::Order),
            "inventory" => Ok(Role::Inventory),
            "payment" => Ok(Role::Payment),
            other => Err(format!(
                "unknown role {other:?}: expected order, inventory or payment"
            )),
        }
    }
}
