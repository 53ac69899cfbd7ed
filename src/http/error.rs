//! The one HTTP error type: a stable `{"error","code"}` envelope for the
//! client; internal causes are logged once and never shown.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_REQUEST",
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "NOT_FOUND",
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            code: "CONFLICT",
            message: message.into(),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "UNAUTHORIZED",
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "FORBIDDEN",
            message: message.into(),
        }
    }
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "NOT_READY",
            message: message.into(),
        }
    }
    /// The same error under another code: the original system's specific
    /// 400 codes (`INVALID_ID`, `INVALID_PRODUCT_ID`, ...) where it has one.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
    /// An unexpected failure (500) under the operation's code, as the
    /// original names it (`GET_FAILED`, `CREATE_FAILED`, ...); any other
    /// error is unchanged.
    pub fn failed(mut self, code: &'static str) -> Self {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            self.code = code;
        }
        self
    }
    /// Logs the cause chain once; the client sees a generic message.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let err = err.into();
        tracing::error!(error = format!("{err:#}"), "request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL",
            message: "internal error; see the service log".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({ "error": self.message, "code": self.code })),
        )
            .into_response();
        // Every 401 of this API is about the bearer token (RFC 6750 3).
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        if crate::db::is_retryable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return ApiError::not_ready("database unavailable, try again");
        }
        ApiError::internal(e)
    }
}

impl From<crate::db::PoolError> for ApiError {
    fn from(e: crate::db::PoolError) -> Self {
        tracing::warn!(error = %e, "no database connection");
        ApiError::not_ready("database unavailable, try again")
    }
}
