//! Log output: one JSON object per line (default when stdout is not a
//! terminal) or a readable format for a terminal. Span fields (service,
//! trace_id, saga_id, order_id) ride along on every line.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Installs a JSON subscriber writing to `writer` (tests read what the roles
/// log through it).
pub fn init_json_to<W>(writer: W)
where
    W: for<'a> fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::registry()
        .with(EnvFilter::new("info"))
        .with(
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .with_target(false)
                .with_writer(writer),
        )
        .try_init();
}

/// Installs the global subscriber; `format` is `auto`, `json` or `pretty`.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_env("DOP_LOG")
        .or_else(|_| EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        "json" => true,
        "pretty" => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true)
                    .with_target(false),
            )
            .try_init()
    } else {
        registry.with(fmt::layer().with_target(false)).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
