//! Tracing setup, the Prometheus registry, and trace propagation helpers.

pub mod logging;
pub mod metrics;

pub use metrics::Metrics;

/// A fresh trace id for work that arrived without one.
pub fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Longest trace id accepted from outside (the `trace_id` columns are
/// `VARCHAR(64)`).
pub const MAX_TRACE_ID: usize = 64;

/// A trace id that arrived from outside (`X-Request-ID`, the AMQP
/// `trace_id` header), trimmed, when it is one we keep: 1 to 64 ASCII
/// letters, digits, `-`, `_` or `.`. Anything else (empty, too long,
/// control characters, other text) is `None`, and the caller draws a fresh
/// id instead: a foreign value never reaches a log line or a column as is.
/// The one rule for HTTP and messaging alike.
pub fn valid_trace_id(raw: &str) -> Option<String> {
    let s = raw.trim();
    let ok = !s.is_empty()
        && s.len() <= MAX_TRACE_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_short_plain_ascii() {
        assert_eq!(valid_trace_id(" abc-1_2.3 ").as_deref(), Some("abc-1_2.3"));
        assert_eq!(valid_trace_id(&"a".repeat(64)), Some("a".repeat(64)));
        assert_eq!(valid_trace_id(&"a".repeat(65)), None);
        assert_eq!(valid_trace_id(""), None);
        assert_eq!(valid_trace_id("a\nb"), None);
        assert_eq!(valid_trace_id("a\u{7f}b"), None);
        assert_eq!(valid_trace_id("a b"), None);
        assert_eq!(valid_trace_id("é"), None);
        assert!(valid_trace_id(&new_trace_id()).is_some());
    }
}
