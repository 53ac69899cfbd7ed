//! A message the broker cannot route (no binding) is returned, not lost:
//! its outbox row stays, the return is counted, and the sweeper publishes
//! it again once the binding is back.

use std::time::Duration;

use diesel::{sql_types::BigInt, QueryableByName};
use diesel_async::RunQueryDsl;
use dop::{messaging::topology, roles::Role};
use serde_json::json;

use crate::harness::{eventually, metric, mgmt, product_id, Opts, Stack};

const T: Duration = Duration::from_secs(20);

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn reserve_rows(s: &Stack) -> i64 {
    let mut c = s.db(Role::Order).await;
    diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM outbox WHERE routing_key = '{}'",
        topology::RK_RESERVE
    ))
    .get_result::<Count>(&mut c)
    .await
    .unwrap()
    .n
}

async fn returned(s: &Stack) -> f64 {
    let text = s.get(Role::Order, "/metrics").await.text();
    metric(
        &text,
        "messages_returned_total",
        &format!("routing_key=\"{}\"", topology::RK_RESERVE),
    )
}

fn binding_path(s: &Stack) -> String {
    format!(
        "/api/bindings/{}/e/{}/q/{}",
        s.vhost,
        topology::COMMANDS,
        topology::INVENTORY_COMMANDS
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_command_stays_in_the_outbox_until_it_can_be_routed() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    // Cut the route of inventory.reserve (the key of an unargumented
    // binding is its routing key).
    let r = mgmt(
        hyper::Method::DELETE,
        &format!("{}/{}", binding_path(&s), topology::RK_RESERVE),
        None,
    )
    .await
    .unwrap();
    assert!(r.status.is_success(), "delete binding: {}", r.text());

    let order = s.order(pid, 2, "10.00").await;
    // Returned at least twice: once by the relay, then by the sweeper,
    // so the row outlived its first publish.
    eventually("the reserve to be returned twice", T, || async {
        (returned(&s).await >= 2.0).then_some(())
    })
    .await;
    assert_eq!(reserve_rows(&s).await, 1, "the returned row stays");
    assert_eq!(s.order_status(&order).await, "PENDING");

    let r = mgmt(
        hyper::Method::POST,
        &binding_path(&s),
        Some(json!({"routing_key": topology::RK_RESERVE})),
    )
    .await
    .unwrap();
    assert!(r.status.is_success(), "restore binding: {}", r.text());
    assert_eq!(s.wait_terminal(&order, T).await, "CONFIRMED");
    eventually("the outbox to empty", T, || async {
        (reserve_rows(&s).await == 0).then_some(())
    })
    .await;
    s.teardown().await;
}
