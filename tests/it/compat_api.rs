//! The original system's HTTP surface, as its clients see it (issue 16):
//! the payment JSON and POST /payments, its error codes, bodies without a
//! JSON content type, the saga JSON and the order statuses it shows.

use std::time::Duration;

use bytes::Bytes;
use dop::roles::Role;
use hyper::Method;
use serde_json::{json, Value};

use crate::harness::{eventually, product_id, Opts, Stack};

/// An RFC 3339 UTC timestamp, as every `*_at` field is.
fn is_timestamp(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_json_has_the_original_fields() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let order = s.order(pid, 1, "12.34").await;
    assert_eq!(
        s.wait_terminal(&order, Duration::from_secs(20)).await,
        "CONFIRMED"
    );
    let r = s.get(Role::Payment, &format!("/payments/{order}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let p = r.json().unwrap();
    assert!(p["id"].as_u64().is_some_and(|n| n > 0), "{p}");
    assert_eq!(p["order_id"], json!(order.parse::<i64>().unwrap()), "{p}");
    assert_eq!(p["amount"], json!(12.34), "{p}");
    assert_eq!(p["status"], "SUCCESS", "{p}");
    assert!(
        p["transaction_id"].as_str().is_some_and(|t| !t.is_empty()),
        "{p}"
    );
    assert!(is_timestamp(&p["created_at"]), "{p}");
    assert!(is_timestamp(&p["updated_at"]), "{p}");
    // dop's additions stay.
    assert!(p["saga_id"].is_string(), "{p}");
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_payments_records_a_pending_payment_once_per_order() {
    let s = Stack::start(Opts {
        roles: vec![Role::Payment],
        ..Opts::default()
    })
    .await;
    let order = crate::harness::next_order_id();
    let r = s
        .post(
            Role::Payment,
            "/payments",
            json!({"order_id": order, "amount": 25.5}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let p = r.json().unwrap();
    assert!(p["id"].as_u64().is_some_and(|n| n > 0), "{p}");
    assert_eq!(p["order_id"], json!(order), "{p}");
    assert_eq!(p["amount"], json!(25.5), "{p}");
    assert_eq!(p["status"], "PENDING", "{p}");
    assert!(
        p["transaction_id"]
            .as_str()
            .is_some_and(|t| uuid::Uuid::parse_str(t).is_ok()),
        "{p}"
    );
    assert!(is_timestamp(&p["created_at"]), "{p}");
    assert!(is_timestamp(&p["updated_at"]), "{p}");
    // GET shows the same row.
    let got = s.get(Role::Payment, &format!("/payments/{order}")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let g = got.json().unwrap();
    for f in ["id", "order_id", "amount", "status", "transaction_id"] {
        assert_eq!(g[f], p[f], "{f}: {g} vs {p}");
    }
    // One payment per order: a second POST is a conflict, not a second row.
    let again = s
        .post(
            Role::Payment,
            "/payments",
            json!({"order_id": order, "amount": 1}),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(again.json().unwrap()["code"], "CONFLICT");
    // Bad bodies are the original's INVALID_REQUEST.
    for bad in [
        json!({"amount": 1}),
        json!({"order_id": order}),
        json!({"order_id": crate::harness::next_order_id(), "amount": 0}),
        json!({"order_id": crate::harness::next_order_id(), "amount": -1}),
        json!({"order_id": crate::harness::next_order_id(), "amount": 1.005}),
        json!({"order_id": "x", "amount": 1}),
    ] {
        let r = s.post(Role::Payment, "/payments", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.json().unwrap()["code"], "INVALID_REQUEST", "{bad}");
    }
    // Like the inventory writes, it needs the operator token once one is set.
    let r = s
        .http
        .send(
            Method::POST,
            &s.url(Role::Payment, "/payments"),
            Some(Bytes::from(format!(
                r#"{{"order_id":{},"amount":1}}"#,
                crate::harness::next_order_id()
            ))),
            &[("content-type", "application/json")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    s.teardown().await;
}

/// A payment recorded by POST /payments before the saga charges the order
/// is the order's one payment: the saga does not charge a second time, it
/// sees a payment that did not succeed and compensates, as the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_payment_is_the_orders_one_payment() {
    let mut s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    // Inventory down: the order waits at its reserve, so the POST lands
    // before the saga's charge.
    s.stop_role(Role::Inventory).await;
    let order = s.order(pid, 2, "10.00").await;
    let r = s
        .post(
            Role::Payment,
            "/payments",
            json!({"order_id": order.parse::<i64>().unwrap(), "amount": 10}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    s.start_role(Role::Inventory).await;
    assert_eq!(
        s.wait_terminal(&order, Duration::from_secs(30)).await,
        "COMPENSATED"
    );
    let p = s
        .get(Role::Payment, &format!("/payments/{order}"))
        .await
        .json()
        .unwrap();
    assert_eq!(p["status"], "PENDING", "still the posted payment: {p}");
    assert_eq!(s.inventory(pid).await["reserved_qty"], 0);
    assert_eq!(s.inventory(pid).await["available_qty"], 10);
    let report = s.audit().await;
    assert!(report.is_clean(), "{:#?}", report.violations);
    s.teardown().await;
}

/// Between its reserve and its payment an order is INVENTORY_RESERVED, as
/// in the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_order_is_inventory_reserved() {
    let mut s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    s.stop_role(Role::Payment).await;
    let order = s.order(pid, 2, "10.00").await;
    eventually("the order to be reserved", Duration::from_secs(20), || {
        let (s, order) = (&s, order.clone());
        async move { (s.order_status(&order).await == "INVENTORY_RESERVED").then_some(()) }
    })
    .await;
    assert_eq!(s.inventory(pid).await["reserved_qty"], 2);
    s.start_role(Role::Payment).await;
    assert_eq!(
        s.wait_terminal(&order, Duration::from_secs(30)).await,
        "CONFIRMED"
    );
    let report = s.audit().await;
    assert!(report.is_clean(), "{:#?}", report.violations);
    s.teardown().await;
}

/// (method, role, path, body, status, code): what the original answers.
type Case = (
    Method,
    Role,
    String,
    Option<&'static str>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_codes_are_the_originals() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let get = |role, path: &str, status, code| -> Case {
        (Method::GET, role, path.to_string(), None, status, code)
    };
    let cases: Vec<Case> = vec![
        get(Role::Order, "/orders/abc", 400, "INVALID_ID"),
        get(Role::Order, "/orders/-1", 400, "INVALID_ID"),
        get(Role::Order, "/orders", 400, "MISSING_USER_ID"),
        get(Role::Order, "/orders?user_id=", 400, "MISSING_USER_ID"),
        get(Role::Order, "/orders?user_id=abc", 400, "INVALID_USER_ID"),
        get(Role::Order, "/orders?user_id=-4", 400, "INVALID_USER_ID"),
        get(Role::Order, "/admin/sagas/abc", 400, "INVALID_SAGA_ID"),
        get(Role::Inventory, "/inventory/abc", 400, "INVALID_PRODUCT_ID"),
        get(Role::Inventory, "/inventory/0", 400, "INVALID_PRODUCT_ID"),
        get(Role::Payment, "/payments/abc", 400, "INVALID_ORDER_ID"),
        (
            Method::PUT,
            Role::Inventory,
            "/inventory/abc".into(),
            Some(r#"{"available_qty":1}"#),
            400,
            "INVALID_PRODUCT_ID",
        ),
        // The original checks the path before the body.
        (
            Method::PUT,
            Role::Inventory,
            "/inventory/abc".into(),
            Some("{not json"),
            400,
            "INVALID_PRODUCT_ID",
        ),
        (
            Method::POST,
            Role::Order,
            "/orders".into(),
            Some(r#"{"user_id":1}"#),
            400,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            Role::Inventory,
            "/inventory".into(),
            Some(r#"{"available_qty":1}"#),
            400,
            "INVALID_REQUEST",
        ),
    ];
    let auth = s.auth();
    for (method, role, path, body, status, code) in cases {
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        headers.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
        let r = s
            .http
            .send(
                method.clone(),
                &s.url(role, &path),
                body.map(|b| Bytes::from_static(b.as_bytes())),
                &headers,
            )
            .await
            .unwrap();
        let what = format!("{method} {path} {body:?}");
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text());
        assert_eq!(r.json().unwrap()["code"], code, "{what}: {}", r.text());
    }
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_json_has_the_original_fields() {
    let s = Stack::start(Opts {
        roles: vec![Role::Inventory],
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    // available_qty may be left out: 0, as the original.
    let r = s
        .post(Role::Inventory, "/inventory", json!({"product_id": pid}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json().unwrap();
    assert!(v["id"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["product_id"], json!(pid), "{v}");
    assert_eq!(v["available_qty"], 0, "{v}");
    assert_eq!(v["reserved_qty"], 0, "{v}");
    assert!(v["version"].is_i64(), "{v}");
    assert!(
        is_timestamp(&v["created_at"]) && is_timestamp(&v["updated_at"]),
        "{v}"
    );
    let got = s.inventory(pid).await;
    assert_eq!(got["id"], v["id"]);
    s.teardown().await;
}

/// gin's ShouldBindJSON reads the body as JSON whatever the Content-Type
/// says (curl -d sends application/x-www-form-urlencoded); so does dop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_is_json_whatever_its_content_type() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    let auth = s.auth();
    let bearer: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (i, ct) in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut headers = bearer.clone();
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        let p = pid + i as i64;
        let r = s
            .http
            .send(
                Method::POST,
                &s.url(Role::Inventory, "/inventory"),
                Some(Bytes::from(format!(
                    r#"{{"product_id":{p},"available_qty":5}}"#
                ))),
                &headers,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{ct:?}: {}", r.text());
        let r = s
            .http
            .send(
                Method::POST,
                &s.url(Role::Order, "/orders"),
                Some(Bytes::from(format!(
                    r#"{{"user_id":3,"product_id":{p},"quantity":1,"total_amount":2.50}}"#
                ))),
                &headers,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{ct:?}: {}", r.text());
        // A body that is not JSON is the original's 400 INVALID_REQUEST.
        let r = s
            .http
            .send(
                Method::POST,
                &s.url(Role::Order, "/orders"),
                Some(Bytes::from_static(b"user_id=3&product_id=1")),
                &headers,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{ct:?}: {}", r.text());
        assert_eq!(r.json().unwrap()["code"], "INVALID_REQUEST");
    }
    s.teardown().await;
}
