//! The three roles. They never import each other: they share only the
//! messaging contracts and the infrastructure layers.

pub mod inventory;
pub mod order;
pub mod payment;

pub use crate::role::Role;
