//! What operators see: one trace id across the three roles' logs, and a
//! dashboard that queries only metrics dop exports.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use dop::roles::Role;
use hyper::Method;

use crate::harness::{product_id, Opts, Stack};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

/// nextest runs each test in its own process, so this test owns the global
/// log subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_is_followed_across_all_three_roles() {
    let buf = Buf::default();
    dop::observability::logging::init_json_to(buf.clone());
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let body = format!(r#"{{"user_id":1,"product_id":{pid},"quantity":1,"total_amount":2.50}}"#);
    let r = s
        .http
        .send(
            Method::POST,
            &s.url(Role::Order, "/orders"),
            Some(body.into()),
            &[("x-request-id", "follow-me-123")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let id = r.json().unwrap()["order_id"]
        .as_i64()
        .expect("order_id is an integer")
        .to_string();
    assert_eq!(
        s.wait_terminal(&id, Duration::from_secs(30)).await,
        "CONFIRMED"
    );
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains("follow-me-123"))
        .map(|l| serde_json::from_str(l).expect("every log line is one JSON object"))
        .collect();
    for service in ["order-service", "inventory-service", "payment-service"] {
        assert!(
            lines.iter().any(|l| l.to_string().contains(service)),
            "no {service} line carries the trace id:\n{text}"
        );
    }
    // Lines of the saga carry its ids too.
    assert!(lines.iter().any(|l| l["order_id"] == id), "{text}");
    s.teardown().await;
}

/// Every metric name a dashboard panel queries is one dop exports.
#[test]
fn dashboard_queries_only_exported_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/observability/grafana/dashboards/dop-saga-overview.json"
    );
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(d["uid"], "dop-saga-overview");
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    let exported = dop::observability::metrics::EXPORTED;
    let mut checked = 0;
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            // Identifiers followed by `{` or `[` or standing alone in a
            // function call are metric names; strip histogram suffixes.
            for name in metric_names(expr) {
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(
                    exported.contains(&base) || exported.contains(&name.as_str()),
                    "panel {:?} queries {name}, which dop does not export",
                    p["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 6);
    // And the exported names are what a scrape shows once each has a sample.
    let metrics = dop::observability::Metrics::new("test");
    touch_every_family(&metrics);
    let m = metrics.encode();
    for name in exported {
        assert!(
            m.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{m}"
        );
    }
}

fn metric_names(expr: &str) -> Vec<String> {
    const WORDS: &[&str] = &["histogram_quantile", "clamp_min", "label_replace"];
    // Drop label matchers `{...}`, quoted strings and grouping lists
    // `by (...)`, `without (...)`: what is left names functions and metrics.
    let mut text = String::new();
    let mut depth = 0;
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            _ if quoted || depth > 0 => {}
            _ => text.push(c),
        }
    }
    for kw in ["by", "without"] {
        while let Some(i) = text.find(&format!("{kw} (")) {
            let end = text[i..].find(')').map(|j| i + j + 1).unwrap_or(text.len());
            text.replace_range(i..end, " ");
        }
    }
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.contains('_') && !WORDS.contains(w))
        .filter(|w| !w.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

fn touch_every_family(m: &dop::observability::Metrics) {
    use dop::observability::metrics::*;
    let s = || "x".to_string();
    m.http_requests
        .get_or_create(&HttpLabels {
            service: s(),
            method: s(),
            path: s(),
            status: s(),
        })
        .inc();
    m.http_duration
        .get_or_create(&HttpDurationLabels {
            service: s(),
            method: s(),
            path: s(),
        })
        .observe(0.1);
    m.saga_total
        .get_or_create(&StatusLabels { status: s() })
        .inc();
    m.saga_duration
        .get_or_create(&StatusLabels { status: s() })
        .observe(0.1);
    m.published(&s(), &s());
    m.returned(&s(), &s());
    m.consumed(&s(), &s());
    m.outbox_backlog.get_or_create(&m.service_labels()).set(1);
    m.outbox_relay_latency
        .get_or_create(&m.service_labels())
        .observe(0.1);
    m.set_dlq_depth(&s(), 1);
    m.reserve_rejections
        .get_or_create(&ReasonLabels { reason: s() })
        .inc();
    m.batch_failed(&s(), &s());
    m.observe_pool(deadpool::Status {
        max_size: 1,
        size: 1,
        available: 1,
        waiting: 0,
    });
}

/// Every series the original system's Grafana dashboard ("Saga Overview")
/// queries, as (metric, type, labels its queries use). Written from its
/// panels: request rate by service and by route, error rate, latency
/// quantiles, saga terminal counts and duration quantiles, DLQ depth.
const ORIGINAL_DASHBOARD: &[(&str, &str, &[&str])] = &[
    (
        "http_requests_total",
        "counter",
        &["service", "path", "status"],
    ),
    (
        "http_request_duration_seconds",
        "histogram",
        &["path", "le"],
    ),
    ("saga_total", "counter", &["status"]),
    ("saga_duration_seconds", "histogram", &["le"]),
    ("dlq_messages", "gauge", &["queue"]),
];

/// The original's dashboard shows data on every panel once a saga has run:
/// each metric it queries is served, with its type and the labels its
/// queries group and filter by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_dashboard_has_data_on_every_panel_after_a_saga() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let body = format!(r#"{{"user_id":1,"product_id":{pid},"quantity":1,"total_amount":2.50}}"#);
    let r = s
        .http
        .send(
            Method::POST,
            &s.url(Role::Order, "/orders"),
            Some(body.into()),
            &[("content-type", "application/json")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json().unwrap()["order_id"].to_string();
    let id = id.trim_matches('"');
    assert_eq!(
        s.wait_terminal(id, Duration::from_secs(30)).await,
        "CONFIRMED"
    );
    let mut scrape = String::new();
    for role in Role::ALL {
        let r = s.http.get(&s.url(role, "/metrics")).await.unwrap();
        assert_eq!(r.status, 200);
        scrape.push_str(&r.text());
    }
    for (name, kind, labels) in ORIGINAL_DASHBOARD {
        assert!(
            scrape.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} is not served as a {kind}:\n{scrape}"
        );
        let sample = if *kind == "histogram" {
            format!("{name}_bucket{{")
        } else {
            format!("{name}{{")
        };
        let series: Vec<&str> = scrape
            .lines()
            .filter(|l| l.starts_with(&sample))
            .filter(|l| !l.contains("path=\"/health\""))
            .collect();
        assert!(
            !series.is_empty(),
            "no sample of {name} (besides /health):\n{scrape}"
        );
        for label in *labels {
            assert!(
                series.iter().any(|l| l.contains(&format!("{label}=\""))),
                "{name} has no {label} label: {series:?}"
            );
        }
    }
    // A saga ended: its terminal count and duration are non-zero.
    assert!(
        scrape.contains("saga_total{status=\"COMPLETED\"} 1"),
        "{scrape}"
    );
    s.teardown().await;
}

/// The original's log lines: `service` on every line, `trace_id` and
/// `saga_id` at the top level (not nested in spans), and one access line
/// (`http_request`) per HTTP request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_service_trace_and_saga_at_the_top_and_one_access_line_per_request() {
    let buf = Buf::default();
    dop::observability::logging::init_json_to(buf.clone());
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let body = format!(r#"{{"user_id":1,"product_id":{pid},"quantity":1,"total_amount":2.50}}"#);
    let r = s
        .http
        .send(
            Method::POST,
            &s.url(Role::Order, "/orders"),
            Some(body.into()),
            &[
                ("x-request-id", "access-post-1"),
                ("content-type", "application/json"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json().unwrap()["order_id"].to_string();
    let id = id.trim_matches('"').to_string();
    assert_eq!(
        s.wait_terminal(&id, Duration::from_secs(30)).await,
        "CONFIRMED"
    );
    let r = s
        .http
        .send(
            Method::GET,
            &s.url(Role::Order, &format!("/orders/{id}")),
            None,
            &[("x-request-id", "access-get-1")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is one JSON object"))
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            l["service"].as_str().is_some_and(|s| !s.is_empty()),
            "a line without service: {l}"
        );
        assert_ne!(l["saga_id"], "", "a blank saga_id: {l}");
        assert!(l.get("spans").is_none(), "span fields are nested: {l}");
    }
    let access = |trace: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["message"] == "http_request" && l["trace_id"] == trace)
            .collect()
    };
    let post = access("access-post-1");
    assert_eq!(post.len(), 1, "one access line per request: {post:?}");
    let post = post[0];
    assert_eq!(post["service"], "order-service", "{post}");
    assert_eq!(post["method"], "POST", "{post}");
    assert_eq!(post["path"], "/orders", "{post}");
    assert_eq!(post["status"], 201, "{post}");
    assert!(post["duration"].as_f64().is_some(), "{post}");
    assert!(post["latency_ms"].as_f64().is_some(), "{post}");
    let get = access("access-get-1");
    assert_eq!(get.len(), 1, "{get:?}");
    assert_eq!(get[0]["path"], format!("/orders/{id}"), "{}", get[0]);
    assert_eq!(get[0]["status"], 200, "{}", get[0]);
    assert!(
        get[0]["route"].as_str().is_some_and(|r| r.contains('{')),
        "the route template: {}",
        get[0]
    );
    // The saga's lines in every role carry the request's trace id, and
    // its saga id, at the top level.
    let traced: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["trace_id"] == "access-post-1")
        .collect();
    for service in ["order-service", "inventory-service", "payment-service"] {
        assert!(
            traced.iter().any(|l| l["service"] == service),
            "no {service} line with trace_id at the top level:\n{text}"
        );
    }
    assert!(
        traced
            .iter()
            .any(|l| l["service"] == "payment-service" && l["saga_id"].as_str().is_some()),
        "no payment line with saga_id at the top level:\n{text}"
    );
    s.teardown().await;
}
