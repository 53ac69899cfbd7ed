//! Log output: one JSON object per line (default when stdout is not a
//! terminal) or a readable format for a terminal. In JSON, the fields of
//! the spans an event happens in (service, trace_id, saga_id, order_id, ...)
//! sit at the top level of the line beside the event's own, as in the
//! original system's log lines, so `jq 'select(.trace_id == ...)'` and
//! `grep '"saga_id":"..."'` find them.

use std::{io::IsTerminal, sync::OnceLock};

use serde_json::{Map, Value};
use tracing::{field::Field, Event, Subscriber};
use tracing_subscriber::{
    fmt::{
        self,
        format::{JsonFields, Writer},
        FmtContext, FormatEvent, FormatFields, FormattedFields,
    },
    prelude::*,
    registry::LookupSpan,
    EnvFilter,
};

/// The `service` of lines that no span names one for (start-up, shutdown,
/// background loops): the role's when one role is served, `dop` otherwise.
static DEFAULT_SERVICE: OnceLock<String> = OnceLock::new();

/// Sets the `service` of lines outside any role's span; the first call wins.
pub fn set_default_service(service: &str) {
    let _ = DEFAULT_SERVICE.set(service.to_string());
}

/// Span fields that are left out when empty (a delivery without a saga has
/// `saga_id = ""`): "when known" means absent, not blank.
const OMIT_WHEN_EMPTY: [&str; 2] = ["saga_id", "trace_id"];

/// The JSON line format. tracing-subscriber's own JSON format nests span
/// fields under `spans`/`span` and cannot lift them to the top level, hence
/// this small formatter; span fields come from `JsonFields`, which stores
/// each span's fields as a JSON object.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), event.metadata().level().as_str().into());
        // Outer spans first, so an inner span's field wins over an outer's.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(fields) = ext.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(fields) {
                    for (k, v) in m {
                        if OMIT_WHEN_EMPTY.contains(&k.as_str()) && v.as_str() == Some("") {
                            continue;
                        }
                        line.insert(k, v);
                    }
                }
            }
        }
        event.record(&mut Fields(&mut line));
        if !line.contains_key("service") {
            let service = DEFAULT_SERVICE.get().map(String::as_str).unwrap_or("dop");
            line.insert("service".into(), service.into());
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields into the line.
struct Fields<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_error(&mut self, f: &Field, v: &(dyn std::error::Error + 'static)) {
        self.0.insert(f.name().into(), v.to_string().into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}").into());
    }
}

fn json_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_writer(writer)
}

/// Installs a JSON subscriber writing to `writer` (tests read what the roles
/// log through it).
pub fn init_json_to<W>(writer: W)
where
    W: for<'a> fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::registry()
        .with(EnvFilter::new("info"))
        .with(json_layer(writer))
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
        registry.with(json_layer(std::io::stdout)).try_init()
    } else {
        registry.with(fmt::layer().with_target(false)).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
