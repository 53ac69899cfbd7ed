//! Per-request middleware: the trace id (taken from `X-Request-ID`, made when
//! absent, echoed back), the request span, and the HTTP metrics by route
//! template.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

use crate::observability::{
    metrics::{HttpDurationLabels, HttpLabels},
    new_trace_id, Metrics,
};

/// The trace id of the current request, for handlers that hand it on.
#[derive(Clone, Debug)]
pub struct TraceId(pub String);

fn valid_trace_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?.trim();
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| s.to_string())
}

pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let trace_id = req
        .headers()
        .get("x-request-id")
        .and_then(valid_trace_id)
        .unwrap_or_else(new_trace_id);
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    req.extensions_mut().insert(TraceId(trace_id.clone()));
    let span = tracing::info_span!("request", service = %metrics.service, trace_id = %trace_id, method = %method, path = %path);
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if path != "/metrics" {
        let status = resp.status().as_u16().to_string();
        metrics
            .http_requests
            .get_or_create(&HttpLabels {
                service: metrics.service.clone(),
                method: method.clone(),
                path: path.clone(),
                status,
            })
            .inc();
        metrics
            .http_duration
            .get_or_create(&HttpDurationLabels {
                service: metrics.service.clone(),
                method,
                path,
            })
            .observe(start.elapsed().as_secs_f64());
    }
    resp
}
