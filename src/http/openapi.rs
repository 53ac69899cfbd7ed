//! The OpenAPI 3.0.3 document of each role's HTTP API, kept in the repo
//! (docs/openapi/*.json, written by hand to match the handlers) and served at
//! GET /openapi.json. tests/it/fuzz.rs fuzzes the API from these documents.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};

use crate::{context::AppState, role::Role};

const ORDER: &str = include_str!("../../docs/openapi/order.json");
const INVENTORY: &str = include_str!("../../docs/openapi/inventory.json");
const PAYMENT: &str = include_str!("../../docs/openapi/payment.json");

/// The OpenAPI document of a role, as JSON text.
pub fn document(role: Role) -> &'static str {
    match role {
        Role::Order => ORDER,
        Role::Inventory => INVENTORY,
        Role::Payment => PAYMENT,
    }
}

/// GET /openapi.json: the document of the role this process serves.
pub async fn serve(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document(s.role),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_documents_are_openapi_3_json_with_the_common_routes() {
        for role in Role::ALL {
            let doc: serde_json::Value = serde_json::from_str(document(role))
                .unwrap_or_else(|e| panic!("{role}: docs/openapi/{role}.json is not JSON: {e}"));
            assert_eq!(doc["openapi"], "3.0.3", "{role}");
            for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
                assert!(doc["paths"][path]["get"].is_object(), "{role}: {path}");
            }
            // Every $ref points at something in the same document.
            let text = document(role);
            for r in text.split("\"$ref\": \"#/").skip(1) {
                let pointer = format!("/{}", &r[..r.find('"').unwrap()]);
                assert!(
                    doc.pointer(&pointer).is_some(),
                    "{role}: dangling $ref {pointer}"
                );
            }
        }
    }
}
