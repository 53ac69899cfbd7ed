//! Who may do what over HTTP: the two bearer tokens (`admin.token` for the
//! operator, `admin.read_token` for read-only access) and the extractors a
//! protected route puts first in its arguments, so that a request without
//! the right token is refused before its body is even read.
//!
//! With no token configured at all (local development) the original
//! system's open API stays open: admin reads and inventory writes need
//! nothing, operator actions are refused. Once any token is set, every
//! admin route and every inventory write needs one.

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap},
};

use super::ApiError;
use crate::config::{AdminConfig, Secret};

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Admin reads (GET /admin/sagas...): the read or the operator token;
    /// open when no token is configured.
    Read,
    /// Writes the original system left open (POST /inventory, PUT
    /// /inventory/:id): the operator token; open when no token is configured.
    Write,
    /// Operator actions (saga retry): the operator token; refused when it is
    /// not configured.
    Operate,
}

/// Which configured token a request presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presented {
    Operator,
    Reader,
    None,
}

/// Decides one request: `Ok` to go on, 401 (no or wrong token, answered
/// with `WWW-Authenticate: Bearer` by `ApiError`) or 403 (a read token on an
/// operator route, or operator actions disabled).
pub fn authorize(headers: &HeaderMap, admin: &AdminConfig, need: Access) -> Result<(), ApiError> {
    let configured = !admin.token.is_empty() || !admin.read_token.is_empty();
    if !configured && need != Access::Operate {
        return Ok(());
    }
    let presented = presented(headers, admin);
    match need {
        Access::Read => match presented {
            Presented::Operator | Presented::Reader => Ok(()),
            Presented::None => Err(ApiError::unauthorized("missing or wrong bearer token")),
        },
        Access::Write | Access::Operate => {
            if admin.token.is_empty() {
                return Err(ApiError::forbidden(
                    "operator actions are disabled: set admin.token (DOP_ADMIN__TOKEN)",
                ));
            }
            match presented {
                Presented::Operator => Ok(()),
                Presented::Reader => Err(ApiError::forbidden(
                    "the read-only token cannot do this; it needs the operator token",
                )),
                Presented::None => Err(ApiError::unauthorized("missing or wrong bearer token")),
            }
        }
    }
}

/// The token of the `Authorization: Bearer` header, matched against both
/// configured tokens (each compared in full, whichever matches).
fn presented(headers: &HeaderMap, admin: &AdminConfig) -> Presented {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .unwrap_or("");
    let operator = same(&admin.token, given);
    let reader = same(&admin.read_token, given);
    if operator {
        Presented::Operator
    } else if reader {
        Presented::Reader
    } else {
        Presented::None
    }
}

/// Constant-time equality with a configured token; an unset token matches
/// nothing, not even an empty header.
fn same(token: &Secret, given: &str) -> bool {
    let want = token.expose().as_bytes();
    let got = given.as_bytes();
    // Time independent of where they differ; a different length is a
    // difference by itself.
    let mut diff = u8::from(want.len() != got.len());
    for (i, w) in want.iter().enumerate() {
        diff |= w ^ got.get(i).copied().unwrap_or(0);
    }
    !want.is_empty() && diff == 0
}

/// What a state gives the extractors: the configured tokens.
pub trait AdminTokens {
    fn admin(&self) -> &AdminConfig;
}

macro_rules! access_extractor {
    ($(#[$m:meta])* $name:ident, $need:expr) => {
        $(#[$m])*
        pub struct $name;

        impl<S: AdminTokens + Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                authorize(&parts.headers, state.admin(), $need).map(|()| $name)
            }
        }
    };
}

access_extractor!(
    /// The request may read admin data ([`Access::Read`]).
    CanRead,
    Access::Read
);
access_extractor!(
    /// The request may write what the original system left open
    /// ([`Access::Write`]).
    CanWrite,
    Access::Write
);
access_extractor!(
    /// The request may take operator actions ([`Access::Operate`]).
    CanOperate,
    Access::Operate
);

/// One warning at start naming what is open, when no token is configured
/// (`open` says what this role leaves open, e.g. "inventory writes"), or
/// what is refused when only the read token is.
pub fn warn_if_open(admin: &AdminConfig, open: &str) {
    if admin.token.is_empty() && admin.read_token.is_empty() {
        tracing::warn!(
            open,
            "no admin token configured: {open} open to anyone; operator actions are disabled; set admin.token and admin.read_token (DOP_ADMIN__TOKEN, DOP_ADMIN__READ_TOKEN) outside local development"
        );
    } else if admin.token.is_empty() {
        tracing::warn!(
            "admin.read_token is set but admin.token is not: operator actions and inventory writes are refused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn cfg(token: &str, read: &str) -> AdminConfig {
        AdminConfig {
            token: Secret::new(token),
            read_token: Secret::new(read),
            url: String::new(),
        }
    }

    fn bearer(v: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    fn status(admin: &AdminConfig, auth: Option<&str>, need: Access) -> u16 {
        match authorize(&bearer(auth), admin, need) {
            Ok(()) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn the_table_with_both_tokens() {
        let c = cfg("op", "ro");
        use Access::*;
        for (auth, read, write, operate) in [
            (None, 401, 401, 401),
            (Some("Bearer nope"), 401, 401, 401),
            (Some("Bearer "), 401, 401, 401),
            (Some("Bearer ro"), 200, 403, 403),
            (Some("Bearer op"), 200, 200, 200),
            (Some("bearer op"), 200, 200, 200),
            (Some("Basic op"), 401, 401, 401),
            (Some("Bearer opx"), 401, 401, 401),
        ] {
            assert_eq!(status(&c, auth, Read), read, "{auth:?} read");
            assert_eq!(status(&c, auth, Write), write, "{auth:?} write");
            assert_eq!(status(&c, auth, Operate), operate, "{auth:?} operate");
        }
    }

    #[test]
    fn without_tokens_the_original_api_stays_open_and_operator_actions_are_refused() {
        let c = cfg("", "");
        for auth in [None, Some("Bearer "), Some("Bearer x")] {
            assert_eq!(status(&c, auth, Access::Read), 200);
            assert_eq!(status(&c, auth, Access::Write), 200);
            assert_eq!(status(&c, auth, Access::Operate), 403);
        }
    }

    #[test]
    fn a_read_token_alone_closes_writes() {
        let c = cfg("", "ro");
        assert_eq!(status(&c, None, Access::Read), 401);
        assert_eq!(status(&c, Some("Bearer ro"), Access::Read), 200);
        assert_eq!(status(&c, Some("Bearer ro"), Access::Write), 403);
        assert_eq!(status(&c, None, Access::Operate), 403);
        // An operator token alone serves the reads too.
        let c = cfg("op", "");
        assert_eq!(status(&c, Some("Bearer op"), Access::Read), 200);
        assert_eq!(status(&c, Some("Bearer "), Access::Read), 401);
    }

    #[test]
    fn a_401_asks_for_a_bearer_token() {
        use axum::response::IntoResponse;
        let r = ApiError::unauthorized("x").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
