//! Per-request middleware: the trace id (taken from `X-Request-ID`, made when
//! absent, echoed back), the request span, and the HTTP metrics by route
//! template.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, Method},
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

/// The request's own trace id when it passes the shared rule
/// (`observability::valid_trace_id`).
fn valid_trace_id(v: &HeaderValue) -> Option<String> {
    crate::observability::valid_trace_id(v.to_str().ok()?)
}

/// The method as a metrics label: one of the standard methods, or `OTHER`
/// for any made-up one, so a client cannot grow the label set (and the
/// /metrics page) by inventing methods.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
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
    let method = method_label(req.method()).to_string();
    let uri_path = req.uri().path().to_string();
    req.extensions_mut().insert(TraceId(trace_id.clone()));
    let span = tracing::info_span!("request", service = %metrics.service, trace_id = %trace_id, method = %method, path = %path);
    let start = Instant::now();
    let mut resp = envelope(next.run(req).instrument(span.clone()).await).await;
    if path != "/metrics" {
        // The access line, one per request, as the original wrote it
        // (`http_request`: method, path, route, status, duration in
        // seconds); the span adds service and trace_id. Target
        // `dop::access`, so `DOP_LOG=info,dop::access=off` silences it.
        let elapsed = start.elapsed();
        span.in_scope(|| {
            tracing::info!(
                target: "dop::access",
                method = %method,
                path = %uri_path,
                route = %path,
                status = resp.status().as_u16(),
                duration = elapsed.as_secs_f64(),
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "http_request"
            )
        });
    }
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

/// Answers 503 `TIMEOUT` for a request (its body included) not answered
/// within `http.request_timeout`, instead of holding the connection.
pub async fn deadline(
    State(limit): State<std::time::Duration>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            let mut resp = axum::response::IntoResponse::into_response((
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "error": format!("request not answered within {} ms", limit.as_millis()),
                    "code": "TIMEOUT",
                })),
            ));
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
            resp
        }
    }
}

/// Errors produced by axum itself (a method not allowed, a path segment that
/// is not valid UTF-8, a malformed query) come as plain text: give them the
/// same `{"error","code"}` envelope as dop's own errors.
async fn envelope(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let code = match status.as_u16() {
        400 => "INVALID_REQUEST",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        413 => "PAYLOAD_TOO_LARGE",
        503 => "NOT_READY",
        _ => "ERROR",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = axum::response::IntoResponse::into_response((
        status,
        axum::Json(serde_json::json!({ "error": message, "code": code })),
    ));
    for (k, v) in parts.headers.iter() {
        if k != axum::http::header::CONTENT_TYPE && k != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"PATCH").unwrap()),
            "PATCH"
        );
        assert_eq!(method_label(&Method::from_bytes(b"FOO").unwrap()), "OTHER");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "OTHER");
    }
}
