//! Contract tests against the original system's message shapes
//! (tests/fixtures/original, docs/contract.md section 3): every shape the
//! original sends is accepted by dop's consumer of it, through the real
//! broker, with the outcome the original would have; and every message dop
//! sends has the original's field names and JSON types (dop's extra fields
//! are listed here, one by one).

use std::time::Duration;

use dop::{
    messaging::{contracts::Message, topology},
    roles::Role,
};
use serde_json::{json, Value};

use crate::harness::{eventually, mgmt, next_order_id, product_id, Opts, Stack};

const T: Duration = Duration::from_secs(20);

/// Every fixture: (file stem, routing key).
const FIXTURES: [(&str, &str); 8] = [
    ("inventory.reserve", "inventory.reserve"),
    ("inventory.release", "inventory.release"),
    ("payment.process", "payment.process"),
    ("inventory.reserved.ok", "inventory.reserved"),
    ("inventory.reserved.insufficient", "inventory.reserved"),
    ("inventory.released.ok", "inventory.released"),
    ("payment.processed.ok", "payment.processed"),
    ("payment.processed.declined", "payment.processed"),
];

/// Fields dop adds to a message of this routing key (the original's
/// consumers ignore unknown fields).
fn extras(routing_key: &str) -> &'static [&'static str] {
    match routing_key {
        "payment.processed" => &["amount"],
        // The payment's expiry (saga.step_timeout); absent without one.
        "payment.process" => &["expires_at"],
        _ => &[],
    }
}

fn fixture(stem: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/original/{stem}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture with this saga's ids (and product) in it.
fn with_ids(stem: &str, saga_id: &str, order_id: i64, product_id: i64) -> Vec<u8> {
    let mut v = fixture(stem);
    v["saga_id"] = json!(saga_id);
    v["order_id"] = json!(order_id);
    if v.get("product_id").is_some() {
        v["product_id"] = json!(product_id);
    }
    v.to_string().into_bytes()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks a message dop sent against the original's shape of the same
/// routing key: every field of the original is there with its JSON type
/// (one the original leaves empty, `""`, may be absent), and dop adds no
/// field but its listed extras.
fn assert_shape(routing_key: &str, stem: &str, sent: &Value) {
    let want = fixture(stem);
    let (want, sent) = (want.as_object().unwrap(), sent.as_object().unwrap());
    for (k, v) in want {
        match sent.get(k) {
            None if v == "" => {}
            None => panic!("{routing_key}: dop sent no {k:?}: {sent:?}"),
            // A whole amount is still a number the original reads.
            Some(s) if json_type(v) == "number" && json_type(s) == "integer" => {}
            Some(s) => assert_eq!(
                json_type(s),
                json_type(v),
                "{routing_key}: {k:?} is {s} in dop, like {v} in the original"
            ),
        }
    }
    for k in sent.keys() {
        assert!(
            want.contains_key(k) || extras(routing_key).contains(&k.as_str()),
            "{routing_key}: dop sent {k:?}, which the original does not: {sent:?}"
        );
    }
}

#[test]
fn every_original_shape_parses() {
    for (stem, rk) in FIXTURES {
        let body = fixture(stem).to_string();
        let msg = Message::parse(rk, body.as_bytes()).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(msg.order_id(), 2, "{stem}");
        // "" means none.
        if let Message::Reserved(r) | Message::Released(r) = &msg {
            assert_eq!(r.reason.is_some(), !r.success, "{stem}");
        }
        if let Message::PaymentProcessed(r) = &msg {
            assert_eq!(r.amount, None, "{stem}");
            assert!(r.tx_id.is_some(), "{stem}");
        }
    }
}

/// Takes messages off `queue` until one with `routing_key` comes, and
/// returns its body.
async fn next_sent(s: &Stack, queue: &str, routing_key: &str) -> Value {
    eventually(&format!("a {routing_key} on {queue}"), T, || async {
        let r = mgmt(
            hyper::Method::POST,
            &format!("/api/queues/{}/{queue}/get", s.vhost),
            Some(json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": 100000})),
        )
        .await
        .expect("management get");
        let got = r.json().ok()?.as_array()?.first()?.clone();
        if got["routing_key"] != routing_key {
            return None;
        }
        serde_json::from_str(got["payload"].as_str()?).ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_commands_are_served_and_answered_in_its_shapes() {
    let s = Stack::start(Opts {
        roles: vec![Role::Inventory, Role::Payment],
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 3).await;
    let p = s.publisher().await;
    let send = |rk: &'static str, stem: &'static str, saga: String, order: i64| {
        let p = &p;
        async move {
            let ex = topology::COMMANDS;
            let body = with_ids(stem, &saga, order, pid);
            p.publish(ex, rk, &uuid::Uuid::new_v4().to_string(), &body)
                .await;
        }
    };
    let (saga, order) = (uuid::Uuid::new_v4().to_string(), next_order_id());
    // Reserve 2 of 3: reserved, in the original's shape.
    send(
        "inventory.reserve",
        "inventory.reserve",
        saga.clone(),
        order,
    )
    .await;
    let r = next_sent(&s, topology::ORDER_EVENTS, "inventory.reserved").await;
    assert_eq!(
        (&r["success"], &r["order_id"]),
        (&json!(true), &json!(order))
    );
    assert_shape("inventory.reserved", "inventory.reserved.ok", &r);
    // Another 2 of the 1 left: the original's code.
    let (saga2, order2) = (uuid::Uuid::new_v4().to_string(), next_order_id());
    send("inventory.reserve", "inventory.reserve", saga2, order2).await;
    let r = next_sent(&s, topology::ORDER_EVENTS, "inventory.reserved").await;
    assert_eq!(
        (&r["success"], &r["reason"]),
        (&json!(false), &json!("INSUFFICIENT_STOCK"))
    );
    assert_shape("inventory.reserved", "inventory.reserved.insufficient", &r);
    // Release the first.
    send(
        "inventory.release",
        "inventory.release",
        saga.clone(),
        order,
    )
    .await;
    let r = next_sent(&s, topology::ORDER_EVENTS, "inventory.released").await;
    assert_eq!(r["success"], json!(true));
    assert_shape("inventory.released", "inventory.released.ok", &r);
    assert_eq!(s.inventory(pid).await["available_qty"], json!(3));
    // Charge it: transaction_id, no tx_id.
    send("payment.process", "payment.process", saga, order).await;
    let r = next_sent(&s, topology::ORDER_EVENTS, "payment.processed").await;
    assert_eq!(r["success"], json!(true));
    assert!(r["transaction_id"].is_string(), "{r}");
    assert_shape("payment.processed", "payment.processed.ok", &r);
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_events_drive_dops_sagas() {
    let s = Stack::start(Opts {
        roles: vec![Role::Order],
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    let p = s.publisher().await;
    let event = |rk: &'static str, stem: &'static str, saga: String, order: i64| {
        let p = &p;
        async move {
            let body = with_ids(stem, &saga, order, pid);
            p.publish(
                topology::EVENTS,
                rk,
                &uuid::Uuid::new_v4().to_string(),
                &body,
            )
            .await;
        }
    };
    let placed = |qty: i64| {
        let s = &s;
        async move {
            let id = s.order(pid, qty, "199.98").await;
            let saga = s.saga_of(&id).await;
            let cmd = next_sent(s, topology::INVENTORY_COMMANDS, "inventory.reserve").await;
            assert_shape("inventory.reserve", "inventory.reserve", &cmd);
            (id.parse::<i64>().unwrap(), saga)
        }
    };

    // Happy path.
    let (order, saga) = placed(2).await;
    event(
        "inventory.reserved",
        "inventory.reserved.ok",
        saga.clone(),
        order,
    )
    .await;
    let cmd = next_sent(&s, topology::PAYMENT_COMMANDS, "payment.process").await;
    assert_shape("payment.process", "payment.process", &cmd);
    event("payment.processed", "payment.processed.ok", saga, order).await;
    let done = s.wait_terminal(&order.to_string(), T).await;
    assert_eq!(done, "CONFIRMED");

    // Out of stock: FAILED, and the saga keeps the original's code.
    let (order, saga) = placed(2).await;
    event(
        "inventory.reserved",
        "inventory.reserved.insufficient",
        saga.clone(),
        order,
    )
    .await;
    assert_eq!(s.wait_terminal(&order.to_string(), T).await, "FAILED");
    let shown = s.get(Role::Order, &format!("/admin/sagas/{saga}")).await;
    assert_eq!(
        shown.json().unwrap()["saga"]["failure_reason"],
        json!("INSUFFICIENT_STOCK"),
        "{}",
        shown.text()
    );

    // Payment declined: compensated with a release in the original's shape.
    let (order, saga) = placed(1).await;
    event(
        "inventory.reserved",
        "inventory.reserved.ok",
        saga.clone(),
        order,
    )
    .await;
    let _ = next_sent(&s, topology::PAYMENT_COMMANDS, "payment.process").await;
    event(
        "payment.processed",
        "payment.processed.declined",
        saga.clone(),
        order,
    )
    .await;
    let cmd = next_sent(&s, topology::INVENTORY_COMMANDS, "inventory.release").await;
    assert_shape("inventory.release", "inventory.release", &cmd);
    event(
        "inventory.released",
        "inventory.released.ok",
        saga.clone(),
        order,
    )
    .await;
    assert_eq!(s.wait_terminal(&order.to_string(), T).await, "COMPENSATED");
    let shown = s.get(Role::Order, &format!("/admin/sagas/{saga}")).await;
    assert_eq!(
        shown.json().unwrap()["saga"]["failure_reason"],
        json!("SIMULATED_FAILURE"),
        "{}",
        shown.text()
    );
    s.teardown().await;
}

/// dop's own messages (payment.cancel, payment.cancelled; the original has
/// no cancel) follow the conventions of section 3: the field names and JSON
/// types of the messages they mirror, and dop reads them back.
#[test]
fn dops_cancel_messages_follow_the_conventions() {
    use dop::messaging::contracts::{PaymentCancelResult, PaymentCommand};
    let saga = "0190a0c4-7c1e-7000-8000-000000000001";
    let cancel = Message::CancelPayment(PaymentCommand {
        saga_id: saga.into(),
        order_id: 2,
        amount: "199.98".parse().unwrap(),
        expires_at: None,
    });
    let v: Value = serde_json::from_str(&cancel.to_json()).unwrap();
    // The same body as the original's payment.process.
    assert_shape("payment.process", "payment.process", &v);
    assert_eq!(cancel.routing_key(), "payment.cancel");
    assert_eq!(
        topology::queue_for("payment.cancel"),
        Some("payment.commands")
    );
    let answer = Message::PaymentCancelled(PaymentCancelResult {
        saga_id: saga.into(),
        order_id: 2,
        cancelled: false,
        tx_id: Some("0190a0c4-7c1e-7000-8000-0000000000aa".into()),
        reason: Some("charged before the cancel arrived".into()),
    });
    let v: Value = serde_json::from_str(&answer.to_json()).unwrap();
    let types: Vec<(&str, &str)> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), json_type(v)))
        .collect();
    assert_eq!(
        types,
        [
            ("cancelled", "boolean"),
            ("order_id", "integer"),
            ("reason", "string"),
            ("saga_id", "string"),
            ("transaction_id", "string"),
        ]
    );
    assert_eq!(
        topology::queue_for("payment.cancelled"),
        Some("order.events")
    );
    for m in [cancel, answer] {
        assert_eq!(
            Message::parse(m.routing_key(), m.to_json().as_bytes()).unwrap(),
            m
        );
    }
    // The original's "" for none reads as none here too.
    let empty = format!(
        r#"{{"saga_id":"{saga}","order_id":2,"cancelled":true,"transaction_id":"","reason":""}}"#
    );
    let Message::PaymentCancelled(r) =
        Message::parse("payment.cancelled", empty.as_bytes()).unwrap()
    else {
        panic!("not a payment.cancelled");
    };
    assert_eq!((r.tx_id, r.reason), (None, None));
}
