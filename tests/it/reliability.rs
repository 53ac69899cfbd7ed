//! What dop does when things break: poison messages, a database that goes
//! away under a consumer, graceful shutdown under load, and an operator's
//! retry of a failed compensation.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use diesel_async::SimpleAsyncConnection;
use dop::roles::Role;
use hyper::Method;

use crate::harness::{eventually, metric, product_id, Opts, Stack};

const T: Duration = Duration::from_secs(30);

async fn assert_clean(s: &Stack) {
    let report = s.audit().await;
    assert!(report.is_clean(), "invariant violations: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_in_every_queue_is_dead_lettered_and_the_next_message_flows() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let p = s.publisher().await;
    let poison: [(&str, &str, &str, &[u8]); 4] = [
        ("saga.commands", "inventory.reserve", "inventory.commands", b"{not json"),
        ("saga.commands", "payment.process", "payment.commands", br#"{"saga_id":"x"}"#),
        ("saga.events", "payment.processed", "order.events", b"\xff\xfe"),
        // A well-formed event for a saga nobody knows.
        (
            "saga.events",
            "inventory.reserved",
            "order.events",
            br#"{"saga_id":"0190a0c4-7c1e-7000-8000-000000000001","order_id":2,"product_id":1,"quantity":1,"success":true}"#,
        ),
    ];
    for (ex, rk, _, body) in poison {
        p.publish(ex, rk, &uuid::Uuid::new_v4().to_string(), body)
            .await;
    }
    // Oversized, and a message without a usable message id.
    p.publish(
        "saga.commands",
        "inventory.release",
        &uuid::Uuid::new_v4().to_string(),
        &vec![b'x'; 70 * 1024],
    )
    .await;
    p.publish("saga.commands", "inventory.reserve", "not-a-uuid", b"{}")
        .await;
    let want = [
        ("inventory.commands.dlq", 3),
        ("payment.commands.dlq", 1),
        ("order.events.dlq", 2),
    ];
    for (q, n) in want {
        eventually(&format!("{n} message(s) in {q}"), T, || async {
            (p.depth(q).await == n).then_some(())
        })
        .await;
    }
    // The consumers kept consuming.
    let id = s.order(pid, 1, "5.00").await;
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");
    let m = s.get(Role::Inventory, "/metrics").await.text();
    assert_eq!(
        metric(&m, "messages_consumed_total", r#"outcome="dead_letter""#),
        3.0,
        "{m}"
    );
    assert_clean(&s).await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_a_consumer_is_retried_until_it_succeeds() {
    let mut s = Stack::start(Opts {
        db_proxy: true,
        max_attempts: 30,
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    s.stop_role(Role::Inventory).await;
    let id = s.order(pid, 2, "4.00").await;
    let proxy = s.db_proxy.as_ref().unwrap();
    proxy.cut().await;
    // Inventory comes up with its database gone: the reserve fails, goes to
    // inventory.commands.retry, comes back, fails again...
    s.start_role(Role::Inventory).await;
    eventually("a retry through the retry queue", T, || async {
        let m = s.get(Role::Inventory, "/metrics").await.text();
        (metric(&m, "messages_consumed_total", r#"outcome="retry""#) >= 2.0).then_some(())
    })
    .await;
    s.db_proxy.as_ref().unwrap().restore();
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(8), Some(2))
    );
    assert_clean(&s).await;
    s.teardown().await;
}

/// Orders keep coming while each role in turn is stopped gracefully and
/// started again: every accepted order ends, nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restarts_under_load_lose_nothing() {
    let mut s = Stack::start(Opts {
        payment_failure_rate: 0.2,
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 100_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for w in 0..4 {
        let url = s.url(Role::Order, "/orders");
        let stop = stop.clone();
        load.spawn(async move {
            let http = dop::http::client::Client::new(Duration::from_secs(10));
            let mut accepted = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) && i < 2000 {
                i += 1;
                let body = Bytes::from(format!(
                    r#"{{"user_id":{w},"product_id":{pid},"quantity":1,"total_amount":1.10}}"#
                ));
                match http.send(Method::POST, &url, Some(body), &[]).await {
                    Ok(r) if r.status == 201 => accepted.push(
                        r.json().unwrap()["order_id"]
                            .as_i64()
                            .expect("order_id is an integer")
                            .to_string(),
                    ),
                    // Refused while the order role restarts: not accepted.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            accepted
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for role in [Role::Inventory, Role::Payment, Role::Order] {
        s.stop_role(role).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.start_role(role).await;
        s.wait_ready(role).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut ids = Vec::new();
    while let Some(r) = load.join_next().await {
        ids.extend(r.unwrap());
    }
    assert!(ids.len() > 20, "only {} orders accepted", ids.len());
    for id in &ids {
        let st = s.wait_terminal(id, Duration::from_secs(60)).await;
        assert!(
            ["CONFIRMED", "COMPENSATED"].contains(&st.as_str()),
            "order {id} ended {st}"
        );
    }
    eprintln!("{} orders accepted across graceful restarts", ids.len());
    assert_clean(&s).await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_a_failed_compensation() {
    let mut s = Stack::start(Opts {
        payment_failure_rate: 1.0,
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    s.stop_role(Role::Payment).await;
    let id = s.order(pid, 3, "3.00").await;
    let saga = s.saga_of(&id).await;
    eventually("the reserve", T, || async {
        let v = s
            .get(Role::Order, &format!("/admin/sagas/{saga}"))
            .await
            .json()
            .unwrap();
        (v["saga"]["current_step"] == "PROCESSING_PAYMENT").then_some(())
    })
    .await;
    // Someone took the reserved units by hand: the release cannot happen.
    let mut inv = s.db(Role::Inventory).await;
    inv.batch_execute(&format!(
        "UPDATE inventories SET reserved_qty = 0, available_qty = 10 WHERE product_id = {pid}"
    ))
    .await
    .unwrap();
    s.start_role(Role::Payment).await;
    eventually("the compensation to fail", T, || async {
        let v = s
            .get(Role::Order, &format!("/admin/sagas/{saga}"))
            .await
            .json()
            .unwrap();
        (v["saga"]["status"] == "FAILED").then_some(())
    })
    .await;
    let v = s
        .get(Role::Order, &format!("/admin/sagas/{saga}"))
        .await
        .json()
        .unwrap();
    assert_eq!(v["saga"]["current_step"], "DONE");
    assert_eq!(v["saga"]["failed_step"], "RELEASING_INVENTORY");
    // Without the token: refused.
    let url = s.url(Role::Order, &format!("/admin/sagas/{saga}/retry"));
    let r = s.http.send(Method::POST, &url, None, &[]).await.unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    let r = s
        .http
        .send(
            Method::POST,
            &url,
            None,
            &[("authorization", "Bearer wrong")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    // The operator puts the units back where they belong, then retries.
    inv.batch_execute(&format!(
        "UPDATE inventories SET reserved_qty = 3, available_qty = 7 WHERE product_id = {pid}"
    ))
    .await
    .unwrap();
    let r = s
        .http
        .send(
            Method::POST,
            &url,
            None,
            &[("authorization", "Bearer test-token")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(s.wait_terminal(&id, T).await, "COMPENSATED");
    let detail = s
        .get(Role::Order, &format!("/admin/sagas/{saga}"))
        .await
        .json()
        .unwrap();
    let events: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "order.created",
            "inventory.reserved",
            "payment.failed",
            "inventory.release_failed",
            "operator.retry",
            "inventory.released"
        ]
    );
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(10), Some(0))
    );
    assert_clean(&s).await;
    s.teardown().await;
}
