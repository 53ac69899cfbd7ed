//! Shared axum pieces: the error envelope, the JSON extractor, the bearer
//! token checks, the trace-id and metrics middleware, health/ready/metrics
//! routes.

pub mod auth;
pub mod client;
pub mod error;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod openapi;
pub mod serve;

pub use auth::{CanOperate, CanRead, CanWrite};
pub use error::ApiError;
pub use extract::{id_param, uuid_param, ApiJson, IdempotencyKey};

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
