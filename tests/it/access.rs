//! Who may do what over HTTP: every route, asked with no token, a wrong
//! one, the read-only token and the operator token, on a stack with both
//! tokens configured and on one with none (local development).

use std::time::Duration;

use dop::roles::Role;
use hyper::Method;
use serde_json::{json, Value};

use crate::harness::{product_id, Opts, Stack};

const OPERATOR: &str = "op-token";
const READER: &str = "read-token";

/// Who asks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    Wrong,
    Reader,
    Operator,
}

const EVERYONE: [Who; 4] = [Who::Anonymous, Who::Wrong, Who::Reader, Who::Operator];

impl Who {
    fn header(self) -> Option<String> {
        match self {
            Who::Anonymous => None,
            Who::Wrong => Some("Bearer not-a-token".into()),
            Who::Reader => Some(format!("Bearer {READER}")),
            Who::Operator => Some(format!("Bearer {OPERATOR}")),
        }
    }
}

/// What a route is, for the expected answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// The customer API and the probes: open to anyone, always.
    Open,
    /// Admin reads: read or operator token once tokens are set; open without.
    AdminRead,
    /// Inventory writes: operator token once tokens are set; open without.
    Write,
    /// Operator actions: operator token once set; refused without.
    Operate,
}

/// The status `who` gets from a route of `kind`; `ok` is the route's own
/// success status (what it answers once let through).
fn expected(kind: Kind, who: Who, tokens: bool, ok: u16) -> u16 {
    match (kind, tokens, who) {
        (Kind::Open, _, _) => ok,
        (Kind::AdminRead | Kind::Write, false, _) => ok,
        (Kind::Operate, false, _) => 403,
        (_, true, Who::Anonymous | Who::Wrong) => 401,
        (Kind::AdminRead, true, _) => ok,
        (Kind::Write | Kind::Operate, true, Who::Reader) => 403,
        (Kind::Write | Kind::Operate, true, Who::Operator) => ok,
    }
}

/// A finished order (and saga) to read and to ask a retry of.
struct Known {
    order: String,
    saga: String,
    product: i64,
    /// A product no order touches, for the PUT to be read back exactly.
    stock: i64,
}

async fn known(s: &Stack) -> Known {
    let product = product_id();
    s.add_product(product, 10).await;
    let order = s.order(product, 1, "5.00").await;
    let status = s.wait_terminal(&order, Duration::from_secs(30)).await;
    assert_eq!(status, "CONFIRMED");
    let saga = s.saga_of(&order).await;
    let stock = product_id();
    s.add_product(stock, 1).await;
    Known {
        order,
        saga,
        product,
        stock,
    }
}

/// One request of the table: (role, method, path, body, kind, success
/// status). Writes use a fresh product each time so that an allowed one
/// can be seen doing its work.
fn routes(k: &Known) -> Vec<(Role, Method, String, Option<Value>, Kind, u16)> {
    let fresh = product_id();
    let qty = fresh % 1000;
    let mut r = vec![
        (
            Role::Order,
            Method::POST,
            "/orders".to_string(),
            Some(
                json!({"user_id": 7, "product_id": k.product, "quantity": 1, "total_amount": 1.5}),
            ),
            Kind::Open,
            201,
        ),
        (
            Role::Order,
            Method::GET,
            format!("/orders/{}", k.order),
            None,
            Kind::Open,
            200,
        ),
        (
            Role::Order,
            Method::GET,
            "/orders?user_id=42".into(),
            None,
            Kind::Open,
            200,
        ),
        (
            Role::Payment,
            Method::GET,
            format!("/payments/{}", k.order),
            None,
            Kind::Open,
            200,
        ),
        (
            Role::Inventory,
            Method::GET,
            format!("/inventory/{}", k.product),
            None,
            Kind::Open,
            200,
        ),
        (
            Role::Order,
            Method::GET,
            "/admin/sagas".into(),
            None,
            Kind::AdminRead,
            200,
        ),
        (
            Role::Order,
            Method::GET,
            format!("/admin/sagas/{}", k.saga),
            None,
            Kind::AdminRead,
            200,
        ),
        (
            Role::Order,
            Method::GET,
            "/admin/summary".into(),
            None,
            Kind::AdminRead,
            200,
        ),
        (
            Role::Order,
            Method::GET,
            "/admin/dlq".into(),
            None,
            Kind::AdminRead,
            200,
        ),
        // The DLQs are empty: past the gate, the redrive moves nothing.
        (
            Role::Order,
            Method::POST,
            "/admin/dlq/inventory.commands/redrive".into(),
            None,
            Kind::Operate,
            200,
        ),
        // The console's page is code, open to all; its data is not.
        (
            Role::Order,
            Method::GET,
            "/console".into(),
            None,
            Kind::Open,
            200,
        ),
        // A finished saga: past the gate, the retry answers 409.
        (
            Role::Order,
            Method::POST,
            format!("/admin/sagas/{}/retry", k.saga),
            None,
            Kind::Operate,
            409,
        ),
        (
            Role::Inventory,
            Method::POST,
            "/inventory".into(),
            Some(json!({"product_id": fresh, "available_qty": qty})),
            Kind::Write,
            201,
        ),
        (
            Role::Inventory,
            Method::PUT,
            format!("/inventory/{}", k.stock),
            Some(json!({"available_qty": qty + 20})),
            Kind::Write,
            200,
        ),
    ];
    for role in Role::ALL {
        for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
            r.push((role, Method::GET, path.into(), None, Kind::Open, 200));
        }
    }
    r
}

async fn table(tokens: bool) {
    let s = Stack::start(if tokens {
        Opts {
            admin_token: Some(OPERATOR.into()),
            read_token: Some(READER.into()),
            ..Opts::default()
        }
    } else {
        Opts {
            admin_token: None,
            read_token: None,
            ..Opts::default()
        }
    })
    .await;
    let k = known(&s).await;
    let mut wrong = Vec::new();
    for who in EVERYONE {
        for (role, method, path, body, kind, ok) in routes(&k) {
            let auth = who.header();
            let mut headers: Vec<(&str, &str)> = Vec::new();
            if let Some(a) = &auth {
                headers.push(("authorization", a.as_str()));
            }
            let r = s
                .http
                .send(
                    method.clone(),
                    &s.url(role, &path),
                    body.as_ref().map(|b| bytes::Bytes::from(b.to_string())),
                    &headers,
                )
                .await
                .expect("request");
            let want = expected(kind, who, tokens, ok);
            let what = format!("tokens={tokens} {who:?} {role} {method} {path}");
            if r.status.as_u16() != want {
                wrong.push(format!(
                    "{what}: {} instead of {want}: {}",
                    r.status,
                    r.text()
                ));
                continue;
            }
            let code = r.json().ok().map(|b| b["code"].clone());
            if r.status == 401 {
                let challenge = r.headers.get("www-authenticate").map(|v| v.as_bytes());
                if challenge != Some(b"Bearer") {
                    wrong.push(format!("{what}: 401 without WWW-Authenticate: Bearer"));
                }
                if code != Some(json!("UNAUTHORIZED")) {
                    wrong.push(format!("{what}: 401 envelope {}", r.text()));
                }
            }
            if r.status == 403 && code != Some(json!("FORBIDDEN")) {
                wrong.push(format!("{what}: 403 envelope {}", r.text()));
            }
            // Let through, a write really wrote; refused, it did not.
            if kind == Kind::Write {
                let id = match (&method, &body) {
                    (&Method::POST, Some(b)) => b["product_id"].as_i64().unwrap_or_default(),
                    _ => k.stock,
                };
                let want_qty = body.as_ref().map(|b| b["available_qty"].clone());
                let now = s.get(Role::Inventory, &format!("/inventory/{id}")).await;
                let qty = now.json().ok().map(|v| v["available_qty"].clone());
                let wrote = now.status == 200 && qty == want_qty;
                if wrote != (want == ok) {
                    wrong.push(format!(
                        "{what}: answered {want} but the stock is {}",
                        now.text()
                    ));
                }
            }
            // An admin read of sagas shows the saga.
            if kind == Kind::AdminRead
                && path.starts_with("/admin/sagas")
                && want == 200
                && !r.text().contains(&k.saga)
            {
                wrong.push(format!("{what}: the saga is not in {}", r.text()));
            }
        }
    }
    s.teardown().await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_with_both_tokens_configured() {
    table(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_without_tokens_keeps_the_original_api_open() {
    table(false).await;
}
