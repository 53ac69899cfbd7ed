//! Tracing setup, the Prometheus registry, and trace propagation helpers.

pub mod logging;
pub mod metrics;

pub use metrics::Metrics;

/// A fresh trace id for work that arrived without one.
pub fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
