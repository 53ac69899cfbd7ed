//! Extractors that turn every malformed request into a 4xx a person can act
//! on: JSON bodies (413, 400 with the offending field) and headers.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{request::Parts, StatusCode},
};
use serde::de::DeserializeOwned;

use super::{ApiError, BODY_LIMIT};

/// A JSON body, parsed with the path of the field that failed.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The body is read as JSON whatever its Content-Type says (none,
        // `application/x-www-form-urlencoded` as `curl -d` sends, ...), as
        // the original system's gin ShouldBindJSON does: a body that is not
        // JSON is a 400 like any other malformed one.
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "PAYLOAD_TOO_LARGE",
                    message: format!("request body is larger than {BODY_LIMIT} bytes"),
                }
            } else {
                ApiError::invalid(format!("could not read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a body, naming the field at fault: `quantity: invalid type: ...`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // Strip serde_json's position suffix: not useful to an API user.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("request body is not valid JSON: {msg}"))
        } else if path == "." || path.is_empty() {
            ApiError::invalid(format!("invalid request body: {msg}"))
        } else {
            ApiError::invalid(format!("{path}: {msg}"))
        }
    })
}

/// The optional `Idempotency-Key` header (1 to 255 visible ASCII characters).
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let s = v
            .to_str()
            .map_err(|_| ApiError::invalid("Idempotency-Key must be visible ASCII"))?
            .trim();
        if s.is_empty() || s.len() > 255 {
            return Err(ApiError::invalid(
                "Idempotency-Key must be 1 to 255 characters",
            ));
        }
        Ok(Self(Some(s.to_string())))
    }
}

/// A path segment that must be a UUID (order and saga ids).
pub fn uuid_param(what: &str, v: &str) -> Result<String, ApiError> {
    crate::domain::canonical_uuid(v)
        .ok_or_else(|| ApiError::invalid(format!("{what} must be a UUID")))
}

/// A path segment that must be a positive id.
pub fn id_param(what: &str, v: &str) -> Result<i64, ApiError> {
    v.parse::<i64>()
        .ok()
        .filter(|n| (1..=crate::domain::MAX_ID).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{what} must be an integer between 1 and {}",
                crate::domain::MAX_ID
            ))
        })
}
