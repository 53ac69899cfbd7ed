//! The operator console: a static page served at `/console`, its script
//! and stylesheet embedded in the binary (`include_str!`: three small files
//! need no crate, no build step and nothing fetched at run time). The page
//! only calls the admin API the CLI uses (docs/api.md), with the token the
//! operator types in, kept in the tab's sessionStorage.

use axum::{
    http::{header, HeaderName, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

/// The page may load its own script and style and call its own origin;
/// nothing else (no inline script, no frames, no forms posted elsewhere).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(|| asset(INDEX, "text/html; charset=utf-8")))
        .route(
            "/console/",
            get(|| asset(INDEX, "text/html; charset=utf-8")),
        )
        .route(
            "/console/app.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/console/app.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // A new binary brings new assets: always revalidate.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, body).into_response()
}
