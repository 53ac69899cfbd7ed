//! The HTTP API of the three roles (docs/contract.md section 4): the original quick
//! start, every kind of bad input, idempotency keys, trace ids, readiness.

use std::time::Duration;

use bytes::Bytes;
use dop::{http::client::Client, roles::Role};
use hyper::Method;
use serde_json::json;

use crate::harness::{product_id, Opts, Stack};

fn mt() -> Opts {
    Opts::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_quick_start_keeps_money_exact() {
    let s = Stack::start(mt()).await;
    let pid = product_id();
    s.add_product(pid, 100).await;
    let r = s
        .http
        .send(
            Method::POST,
            &s.url(Role::Order, "/orders"),
            Some(Bytes::from(format!(
                r#"{{"user_id":42,"product_id":{pid},"quantity":2,"total_amount":199.98}}"#
            ))),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let body = r.json().unwrap();
    assert_eq!(body["status"], "PENDING");
    let id = body["order_id"].as_i64().expect("order_id is an integer");
    assert!(body["saga_id"].as_str().is_some());
    let got = s.get(Role::Order, &format!("/orders/{id}")).await;
    assert_eq!(got.status, 200);
    // The exact text, not a float that happens to print the same.
    assert!(
        got.text().contains(r#""total_amount":199.98"#),
        "{}",
        got.text()
    );
    let list = s.get(Role::Order, "/orders?user_id=42").await;
    assert_eq!(list.status, 200);
    assert!(list
        .json()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["order_id"] == id));
    s.teardown().await;
}

/// (method, role, path, content-type, body, status, code)
type Case = (
    Method,
    Role,
    String,
    &'static str,
    String,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_envelope() {
    let s = Stack::start(mt()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let json_ct = "application/json";
    let order = |b: &str| {
        (
            Method::POST,
            Role::Order,
            "/orders".to_string(),
            json_ct,
            b.to_string(),
        )
    };
    let mut cases: Vec<Case> = Vec::new();
    let mut add =
        |c: (Method, Role, String, &'static str, String), status: u16, code: &'static str| {
            cases.push((c.0, c.1, c.2, c.3, c.4, status, code));
        };
    add(
        order(r#"{"product_id":1,"quantity":1,"total_amount":1}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":"x","product_id":1,"quantity":1,"total_amount":1}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":1,"product_id":1,"quantity":0,"total_amount":1}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":1,"product_id":1,"quantity":-3,"total_amount":1}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":1,"product_id":1,"quantity":1,"total_amount":0}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":1,"product_id":1,"quantity":1,"total_amount":-5}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":1,"product_id":1,"quantity":1,"total_amount":1.005}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":1,"product_id":1,"quantity":1,"total_amount":"abc"}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":0,"product_id":1,"quantity":1,"total_amount":1}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":1,"product_id":99999999999999999999,"quantity":1,"total_amount":1}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(r#"{"user_id":1,"product_id":1,"quantity":1,"total_amount":1e20}"#),
        400,
        "INVALID_REQUEST",
    );
    add(order("{not json"), 400, "INVALID_REQUEST");
    add(order("[]"), 400, "INVALID_REQUEST");
    add(order(""), 400, "INVALID_REQUEST");
    // Read as JSON whatever the Content-Type says, as the original.
    add(
        (
            Method::POST,
            Role::Order,
            "/orders".into(),
            "text/plain",
            "{}".into(),
        ),
        400,
        "INVALID_REQUEST",
    );
    add(
        order(&format!(
            r#"{{"user_id":1,"pad":"{}"}}"#,
            "x".repeat(70_000)
        )),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    add(
        (
            Method::GET,
            Role::Order,
            "/orders/not-a-number".into(),
            "",
            String::new(),
        ),
        400,
        "INVALID_ID",
    );
    // Order ids are integers 1..2^53-1: anything else is a bad request,
    // a well-formed id of no order is not found.
    for bad in [
        "0".to_string(),
        "-1".into(),
        "1.5".into(),
        "9007199254740992".into(),
        uuid::Uuid::new_v4().to_string(),
    ] {
        for (role, path, code) in [
            (Role::Order, "orders", "INVALID_ID"),
            (Role::Payment, "payments", "INVALID_ORDER_ID"),
        ] {
            add(
                (
                    Method::GET,
                    role,
                    format!("/{path}/{bad}"),
                    "",
                    String::new(),
                ),
                400,
                code,
            );
        }
    }
    add(
        (
            Method::GET,
            Role::Order,
            "/orders/9007199254740991".into(),
            "",
            String::new(),
        ),
        404,
        "NOT_FOUND",
    );
    add(
        (
            Method::GET,
            Role::Order,
            "/orders?user_id=abc".into(),
            "",
            String::new(),
        ),
        400,
        "INVALID_USER_ID",
    );
    add(
        (
            Method::GET,
            Role::Order,
            "/orders".into(),
            "",
            String::new(),
        ),
        400,
        "MISSING_USER_ID",
    );
    add(
        (
            Method::GET,
            Role::Order,
            "/admin/sagas?status=BOGUS".into(),
            "",
            String::new(),
        ),
        400,
        "INVALID_REQUEST",
    );
    add(
        (Method::GET, Role::Order, "/nope".into(), "", String::new()),
        404,
        "NOT_FOUND",
    );
    let inv = |m: Method, p: String, b: &str| (m, Role::Inventory, p, json_ct, b.to_string());
    add(
        inv(
            Method::POST,
            "/inventory".into(),
            &format!(r#"{{"product_id":{pid},"available_qty":5}}"#),
        ),
        409,
        "CONFLICT",
    );
    add(
        inv(
            Method::POST,
            "/inventory".into(),
            r#"{"product_id":7,"available_qty":-1}"#,
        ),
        400,
        "INVALID_REQUEST",
    );
    add(
        inv(Method::POST, "/inventory".into(), r#"{"available_qty":7}"#),
        400,
        "INVALID_REQUEST",
    );
    add(
        inv(
            Method::PUT,
            "/inventory/987654321".into(),
            r#"{"available_qty":5}"#,
        ),
        404,
        "NOT_FOUND",
    );
    add(
        inv(
            Method::PUT,
            format!("/inventory/{pid}"),
            r#"{"available_qty":"many"}"#,
        ),
        400,
        "INVALID_REQUEST",
    );
    add(
        (
            Method::GET,
            Role::Inventory,
            "/inventory/abc".into(),
            "",
            String::new(),
        ),
        400,
        "INVALID_PRODUCT_ID",
    );
    add(
        (
            Method::GET,
            Role::Inventory,
            "/inventory/0".into(),
            "",
            String::new(),
        ),
        400,
        "INVALID_PRODUCT_ID",
    );
    add(
        (
            Method::GET,
            Role::Inventory,
            "/inventory/123456789".into(),
            "",
            String::new(),
        ),
        404,
        "NOT_FOUND",
    );
    add(
        (
            Method::GET,
            Role::Payment,
            "/payments/5".into(),
            "",
            String::new(),
        ),
        404,
        "NOT_FOUND",
    );
    // As the operator: what is checked here is the input, not the access.
    let auth = s.auth();
    for (method, role, path, ct, body, status, code) in cases {
        let mut headers: Vec<(&str, &str)> = vec![("content-type", ct)];
        headers.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
        let r = s
            .http
            .send(
                method.clone(),
                &s.url(role, &path),
                (!body.is_empty() || method == Method::POST).then(|| Bytes::from(body.clone())),
                &headers,
            )
            .await
            .unwrap();
        let what = format!(
            "{method} {path} {}",
            body.chars().take(80).collect::<String>()
        );
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text());
        let env = r
            .json()
            .unwrap_or_else(|_| panic!("{what}: not an envelope: {}", r.text()));
        assert_eq!(env["code"], code, "{what}: {env}");
        assert!(
            env["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {env}"
        );
    }
    // A field error names the field.
    let r = s
        .post(
            Role::Order,
            "/orders",
            json!({"user_id": 1, "product_id": 1, "quantity": "two", "total_amount": 1}),
        )
        .await;
    assert!(
        r.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("quantity"),
        "{}",
        r.text()
    );
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_or_conflicts() {
    let s = Stack::start(mt()).await;
    let pid = product_id();
    s.add_product(pid, 100).await;
    let url = s.url(Role::Order, "/orders");
    let body = Bytes::from(format!(
        r#"{{"user_id":7,"product_id":{pid},"quantity":1,"total_amount":10.50}}"#
    ));
    let key = [("idempotency-key", "abc-123")];
    let a = s
        .http
        .send(Method::POST, &url, Some(body.clone()), &key)
        .await
        .unwrap();
    let b = s
        .http
        .send(Method::POST, &url, Some(body), &key)
        .await
        .unwrap();
    assert_eq!(a.status, 201);
    assert_eq!(b.status, 201);
    assert_eq!(a.json().unwrap()["order_id"], b.json().unwrap()["order_id"]);
    assert_eq!(b.headers.get("idempotent-replayed").unwrap(), "true");
    let other = Bytes::from(format!(
        r#"{{"user_id":7,"product_id":{pid},"quantity":2,"total_amount":10.50}}"#
    ));
    let c = s
        .http
        .send(Method::POST, &url, Some(other), &key)
        .await
        .unwrap();
    assert_eq!(c.status, 409, "{}", c.text());
    assert_eq!(c.json().unwrap()["code"], "CONFLICT");
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_per_user_and_byte_for_byte() {
    let s = Stack::start(mt()).await;
    let pid = product_id();
    s.add_product(pid, 100).await;
    let url = s.url(Role::Order, "/orders");
    let post = |user: i64, qty: i64, key: &'static str| {
        let body = Bytes::from(format!(
            r#"{{"user_id":{user},"product_id":{pid},"quantity":{qty},"total_amount":10.50}}"#
        ));
        let (http, url) = (&s.http, url.clone());
        async move {
            let r = http
                .send(Method::POST, &url, Some(body), &[("idempotency-key", key)])
                .await
                .unwrap();
            let id = r.json().ok().and_then(|v| v["order_id"].as_i64());
            (r.status, id)
        }
    };
    let (st, a) = post(7, 1, "abc").await;
    assert_eq!(st, 201);
    let (st, b) = post(8, 1, "abc").await;
    assert_eq!(st, 201, "another user's key is another key");
    assert_ne!(a, b);
    let (st, c) = post(7, 1, "ABC").await;
    assert_eq!(st, 201, "keys compare byte for byte");
    assert_ne!(a, c);
    assert_ne!(b, c);
    let (st, again) = post(7, 1, "abc").await;
    assert_eq!(st, 201);
    assert_eq!(again, a, "same user, key, body: replayed");
    let (st, _) = post(7, 2, "abc").await;
    assert_eq!(st, 409, "same user and key, other body");
    let (st, again) = post(8, 1, "abc").await;
    assert_eq!(st, 201);
    assert_eq!(again, b, "the other user's order replays too");
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_the_trace_id_and_is_echoed() {
    let s = Stack::start(mt()).await;
    let r = s
        .http
        .send(
            Method::GET,
            &s.url(Role::Order, "/health"),
            None,
            &[("x-request-id", "trace-abc-1")],
        )
        .await
        .unwrap();
    assert_eq!(r.headers.get("x-request-id").unwrap(), "trace-abc-1");
    let r = s.get(Role::Inventory, "/health").await;
    let made = r.headers.get("x-request-id").unwrap().to_str().unwrap();
    assert!(made.len() >= 16, "a trace id is made when absent: {made}");
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_when_the_database_is_gone_and_back_after() {
    let s = Stack::start(Opts {
        db_proxy: true,
        ..mt()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let proxy = s.db_proxy.as_ref().unwrap();
    proxy.cut().await;
    let client = Client::new(Duration::from_secs(15));
    for role in Role::ALL {
        let r = client.get(&s.url(role, "/ready")).await.unwrap();
        assert_eq!(r.status, 503, "{role}: {}", r.text());
        assert_eq!(r.json().unwrap()["code"], "NOT_READY");
    }
    // Requests answer 503 instead of hanging.
    let started = std::time::Instant::now();
    let r = client
        .get(&s.url(Role::Inventory, &format!("/inventory/{pid}")))
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json().unwrap()["code"], "NOT_READY");
    assert!(started.elapsed() < Duration::from_secs(14));
    proxy.restore();
    for role in Role::ALL {
        s.wait_ready(role).await;
    }
    assert_eq!(s.inventory(pid).await["available_qty"], 10);
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_reversible() {
    let s = Stack::start(Opts {
        roles: vec![],
        ..mt()
    })
    .await;
    for role in Role::ALL {
        let url = s.cfg.db(role).database_url.clone();
        // Already applied by the harness: a second run applies nothing.
        assert_eq!(
            dop::db::migrate::migrate(role, url.expose()).await.unwrap(),
            0
        );
        assert!(
            dop::db::migrate::revert_all(role, url.expose())
                .await
                .unwrap()
                > 0
        );
        assert!(dop::db::migrate::migrate(role, url.expose()).await.unwrap() > 0);
    }
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_route_templates() {
    let s = Stack::start(mt()).await;
    let _ = s.get(Role::Order, "/orders/9007199254740991").await;
    let m = s.get(Role::Order, "/metrics").await.text();
    assert!(m.contains(r#"path="/orders/{id}""#), "{m}");
    assert!(m.contains("http_requests_total{"), "{m}");
    assert!(!m.contains(r#"path="/metrics""#), "scrapes are not counted");
    s.teardown().await;
}
