//! The saga end to end over RabbitMQ: the original five scenarios, duplicate
//! and out-of-order commands, a broker outage at POST time, and roles killed
//! mid-saga. Every test ends with the invariant audit.

use std::time::Duration;

use diesel::{sql_types::BigInt, QueryableByName};
use diesel_async::RunQueryDsl;
use dop::roles::Role;
use serde_json::{json, Value};

use crate::harness::{eventually, product_id, Opts, Stack};

const T: Duration = Duration::from_secs(30);

async fn assert_clean(s: &Stack) {
    let report = s.audit().await;
    assert!(report.is_clean(), "invariant violations: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_confirms_and_charges_exactly() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 100).await;
    let started = std::time::Instant::now();
    let id = s.order(pid, 2, "199.98").await;
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");
    eprintln!(
        "idle happy-path saga (debug build, polled every 50 ms): {:?}",
        started.elapsed()
    );
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(98), Some(2))
    );
    let pay = s.get(Role::Payment, &format!("/payments/{id}")).await;
    assert_eq!(pay.status, 200);
    assert!(pay.text().contains(r#""amount":199.98"#), "{}", pay.text());
    let pay = pay.json().unwrap();
    assert_eq!(pay["status"], "SUCCESS");
    assert!(pay["tx_id"].as_str().is_some());
    // The timeline has every transition.
    let saga = s
        .get(
            Role::Order,
            &format!("/admin/sagas/{}", s.saga_of(&id).await),
        )
        .await
        .json()
        .unwrap();
    let events: Vec<&str> = saga["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["order.created", "inventory.reserved", "payment.processed"]
    );
    assert_eq!(saga["saga"]["status"], "COMPLETED");
    assert_clean(&s).await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_stock_fails_without_release_or_payment() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 5).await;
    let id = s.order(pid, 10, "50.00").await;
    assert_eq!(s.wait_terminal(&id, T).await, "FAILED");
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(5), Some(0))
    );
    assert_eq!(
        s.get(Role::Payment, &format!("/payments/{id}"))
            .await
            .status,
        404
    );
    let saga = s
        .get(
            Role::Order,
            &format!("/admin/sagas/{}", s.saga_of(&id).await),
        )
        .await
        .json()
        .unwrap();
    assert_eq!(saga["saga"]["status"], "FAILED");
    // As the original: a FAILED saga is at DONE; the step it failed at is kept.
    assert_eq!(saga["saga"]["current_step"], "DONE");
    assert_eq!(saga["saga"]["failed_step"], "RESERVING_INVENTORY");
    assert!(saga["saga"]["last_event_id"].is_string(), "{saga}");
    assert_eq!(saga["saga"]["retry_count"], 0);
    assert_eq!(saga["saga"]["last_error"], saga["saga"]["failure_reason"]);
    assert!(saga["saga"]["last_error"].is_string(), "{saga}");
    let events: Vec<&str> = saga["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["order.created", "inventory.reserve_failed"],
        "no release was sent"
    );
    assert!(saga["saga"]["failure_reason"]
        .as_str()
        .unwrap()
        .contains("INSUFFICIENT_STOCK"));
    assert_clean(&s).await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_failure_compensates_and_restores_stock() {
    let s = Stack::start(Opts {
        payment_failure_rate: 1.0,
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 100).await;
    let id = s.order(pid, 3, "30.00").await;
    assert_eq!(s.wait_terminal(&id, T).await, "COMPENSATED");
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(100), Some(0))
    );
    let pay = s
        .get(Role::Payment, &format!("/payments/{id}"))
        .await
        .json()
        .unwrap();
    assert_eq!(pay["status"], "FAILED");
    assert_clean(&s).await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_waits_for_a_stopped_inventory_role() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let mut s = s;
    s.stop_role(Role::Inventory).await;
    let id = s.order(pid, 1, "9.99").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.order_status(&id).await, "PENDING");
    s.start_role(Role::Inventory).await;
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");
    assert_clean(&s).await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_orders_on_ten_units_never_oversell() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let url = s.url(Role::Order, "/orders");
        let http = s.http.clone();
        tasks.spawn(async move {
            let r = http
                .post_json(
                    &url,
                    &json!({"user_id": 1, "product_id": pid, "quantity": 1, "total_amount": 1.00}),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 201, "{}", r.text());
            r.json().unwrap()["order_id"]
                .as_i64()
                .expect("order_id is an integer")
                .to_string()
        });
    }
    let mut ids = Vec::new();
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    let mut confirmed = 0;
    let mut failed = 0;
    for id in &ids {
        match s.wait_terminal(id, T).await.as_str() {
            "CONFIRMED" => confirmed += 1,
            "FAILED" => failed += 1,
            other => panic!("order {id} ended {other}"),
        }
    }
    assert_eq!((confirmed, failed), (10, 40));
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(0), Some(10))
    );
    assert_clean(&s).await;
    s.teardown().await;
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(s: &Stack, role: Role, sql: &str) -> i64 {
    let mut c = s.db(role).await;
    diesel::sql_query(sql)
        .get_result::<Count>(&mut c)
        .await
        .unwrap()
        .n
}

fn command(order_id: i64, pid: i64, qty: i64) -> Vec<u8> {
    let saga = uuid::Uuid::new_v4();
    json!({"saga_id": saga.to_string(), "order_id": order_id, "product_id": pid, "quantity": qty})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_reserve_delivered_twice_reserves_once() {
    let s = Stack::start(Opts {
        roles: vec![Role::Inventory],
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let p = s.publisher().await;
    let order = crate::harness::next_order_id();
    let body = command(order, pid, 3);
    // Same message twice, then the same command under a new message id.
    let mid = uuid::Uuid::new_v4().to_string();
    p.publish("saga.commands", "inventory.reserve", &mid, &body)
        .await;
    p.publish("saga.commands", "inventory.reserve", &mid, &body)
        .await;
    p.publish(
        "saga.commands",
        "inventory.reserve",
        &uuid::Uuid::new_v4().to_string(),
        &body,
    )
    .await;
    // Each one answers (re-emitting the recorded outcome).
    let sql = "SELECT COUNT(*) AS n FROM inventory_logs".to_string();
    eventually("the reserve to be logged", T, || async {
        (count(&s, Role::Inventory, &sql).await == 1).then_some(())
    })
    .await;
    let emitted = "SELECT COUNT(*) AS n FROM outbox".to_string();
    let _ = emitted;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(7), Some(3))
    );
    assert_eq!(
        count(
            &s,
            Role::Inventory,
            "SELECT COUNT(*) AS n FROM inventory_logs"
        )
        .await,
        1
    );
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_before_its_reserve_leaves_stock_untouched() {
    let s = Stack::start(Opts {
        roles: vec![Role::Inventory],
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let p = s.publisher().await;
    let order = crate::harness::next_order_id();
    let body = command(order, pid, 4);
    p.publish(
        "saga.commands",
        "inventory.release",
        &uuid::Uuid::new_v4().to_string(),
        &body,
    )
    .await;
    let q = format!(
        "SELECT COUNT(*) AS n FROM inventory_logs WHERE order_id = {order} AND action = 'RELEASE'"
    );
    eventually("the early release to be logged", T, || async {
        (count(&s, Role::Inventory, &q).await == 1).then_some(())
    })
    .await;
    p.publish(
        "saga.commands",
        "inventory.reserve",
        &uuid::Uuid::new_v4().to_string(),
        &body,
    )
    .await;
    let q = format!("SELECT COUNT(*) AS n FROM inventory_logs WHERE order_id = {order} AND action = 'RESERVE' AND success = FALSE");
    eventually("the late reserve to be rejected", T, || async {
        (count(&s, Role::Inventory, &q).await == 1).then_some(())
    })
    .await;
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(10), Some(0))
    );
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_accepted_while_the_broker_is_down() {
    let s = Stack::start(Opts {
        broker_proxy: true,
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let proxy = s.broker_proxy.as_ref().unwrap();
    proxy.cut().await;
    eventually("the order role to notice the broker is gone", T, || async {
        (s.get(Role::Order, "/ready").await.status == 503).then_some(())
    })
    .await;
    let id = s.order(pid, 2, "20.00").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.order_status(&id).await, "PENDING");
    assert!(
        count(&s, Role::Order, "SELECT COUNT(*) AS n FROM outbox").await >= 1,
        "the command waits in the outbox"
    );
    proxy.restore();
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");
    eventually("the outbox to drain", T, || async {
        (count(&s, Role::Order, "SELECT COUNT(*) AS n FROM outbox").await == 0).then_some(())
    })
    .await;
    assert_clean(&s).await;
    s.teardown().await;
}

/// Kills each role (no flush, no acks) while orders flow, restarts it, and
/// checks that every saga ends and the invariants hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_killed_mid_saga_recovers() {
    let mut s = Stack::start(Opts {
        payment_failure_rate: 0.3,
        ..Opts::default()
    })
    .await;
    let pids = [product_id(), product_id()];
    for pid in pids {
        s.add_product(pid, 1000).await;
    }
    let mut ids = Vec::new();
    for (round, role) in [Role::Inventory, Role::Payment, Role::Order]
        .into_iter()
        .enumerate()
    {
        for i in 0..15 {
            let pid = pids[(i + round) % 2];
            if role == Role::Order && i == 10 {
                s.kill_role(role).await;
                s.start_role(role).await;
                s.wait_ready(role).await;
            }
            ids.push(s.order(pid, 1, "12.34").await);
            if role != Role::Order && i == 5 {
                s.kill_role(role).await;
            }
        }
        if role != Role::Order {
            tokio::time::sleep(Duration::from_millis(500)).await;
            s.start_role(role).await;
        }
    }
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for id in &ids {
        let st = s.wait_terminal(id, Duration::from_secs(60)).await;
        assert_ne!(st, "PENDING", "order {id} never finished");
        *by.entry(st).or_default() += 1;
    }
    eprintln!("outcomes after kills: {by:?}");
    let total: usize = by.values().sum();
    assert_eq!(total, 45);
    let per_order = "SELECT COUNT(*) AS n FROM (SELECT order_id FROM payments GROUP BY order_id HAVING COUNT(*) > 1) d";
    assert_eq!(
        count(&s, Role::Payment, per_order).await,
        0,
        "no order charged twice"
    );
    assert_clean(&s).await;
    let _: Value = json!(null);
    s.teardown().await;
}

/// The roles write in the mode the configuration asks for: scripts/test.sh
/// runs these tests once with `DOP_DATABASE__WRITE_MODE=prepared`, and this
/// one fails if that setting does not reach the roles' pools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_write_in_the_configured_mode() {
    let s = Stack::start(Opts {
        roles: vec![Role::Order],
        ..Opts::default()
    })
    .await;
    let mode = crate::harness::write_mode();
    assert_eq!(s.cfg.database.write_mode, mode);
    let mut script = dop::db::Script::new();
    for id in ["none-1", "none-2"] {
        script
            .push(
                &diesel::sql_query("UPDATE orders SET status = status WHERE id = ?")
                    .bind::<diesel::sql_types::Text, _>(id),
            )
            .unwrap();
    }
    let mut conn = s.pool(Role::Order).get().await.unwrap();
    let got = crate::harness::script_executes(&mut conn, &script).await;
    let want = match mode {
        dop::config::WriteMode::Text => 0,
        dop::config::WriteMode::Prepared => 2,
    };
    assert_eq!(got, (want, want), "{mode:?}: prepared statements executed");
    drop(conn);
    s.teardown().await;
}
