//! AMQP trace ids follow the HTTP rule: a too long or malformed `trace_id`
//! header is replaced with a fresh id, never stored, and never fails the
//! batch it arrived in.

use std::time::Duration;

use dop::{
    messaging::{publisher::Outgoing, topology},
    observability::valid_trace_id,
    roles::Role,
};
use serde_json::{json, Value};

use crate::harness::{eventually, mgmt, product_id, Opts, Stack};

const T: Duration = Duration::from_secs(20);

/// Takes up to `n` messages off `queue` through the management API.
async fn take(s: &Stack, queue: &str, n: usize) -> Vec<Value> {
    let r = mgmt(
        hyper::Method::POST,
        &format!("/api/queues/{}/{queue}/get", s.vhost),
        Some(json!({"count": n, "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": 100000})),
    )
    .await
    .expect("management get");
    assert!(r.status.is_success(), "{}", r.text());
    r.json().unwrap().as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_trace_ids_are_replaced_and_never_fail_a_batch() {
    let s = Stack::start(Opts {
        roles: vec![Role::Inventory],
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 100).await;
    let p = s.publisher().await;
    let cases: Vec<(String, Option<String>)> = vec![
        ("ok-trace-1".into(), Some("ok-trace-1".into())),
        ("x".repeat(10 * 1024), None),
        ("bad\u{1}trace\ncontrol".into(), None),
        ("ok-trace-2".into(), Some("ok-trace-2".into())),
    ];
    let mut expect = std::collections::HashMap::new();
    // All sent before any is handled, so they share batches.
    let mut confirms = Vec::new();
    for (trace, kept) in &cases {
        let order = crate::harness::next_order_id();
        let body = json!({"saga_id": uuid::Uuid::new_v4().to_string(), "order_id": order, "product_id": pid, "quantity": 1});
        let out = Outgoing {
            exchange: topology::COMMANDS.into(),
            routing_key: topology::RK_RESERVE.into(),
            message_id: uuid::Uuid::new_v4().to_string(),
            body: body.to_string().into_bytes(),
            headers: vec![("trace_id".into(), amqprs::FieldValue::from(trace.as_str()))],
        };
        confirms.push(p.confirm.publish(&out).await.expect("publish"));
        expect.insert(order, kept.clone());
    }
    for c in confirms {
        c.await.expect("confirmed");
    }
    // Every command is answered on order.events (nobody consumes it here).
    let seen = std::sync::Mutex::new(std::collections::HashMap::new());
    eventually("every reserve to be answered", T, || async {
        let got = take(&s, topology::ORDER_EVENTS, 10).await;
        let mut seen = seen.lock().unwrap();
        for m in got {
            let payload: Value = serde_json::from_str(m["payload"].as_str().unwrap_or("")).unwrap();
            let order = payload["order_id"].as_i64().unwrap_or(0);
            let trace = m["properties"]["headers"]["trace_id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            seen.insert(order, trace);
        }
        (seen.len() >= cases.len()).then_some(())
    })
    .await;
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), cases.len(), "{seen:?}");
    for (order, kept) in &expect {
        let got = &seen[order];
        match kept {
            Some(t) => assert_eq!(got, t, "a valid trace id is kept"),
            None => assert_eq!(
                valid_trace_id(got).as_deref(),
                Some(got.as_str()),
                "a foreign trace id is replaced by a fresh valid one, got {got:?}"
            ),
        }
    }
    assert_eq!(s.inventory(pid).await["reserved_qty"].as_i64(), Some(4));
    assert_eq!(
        p.depth(&topology::dlq(topology::INVENTORY_COMMANDS)).await,
        0
    );
    s.teardown().await;
}
