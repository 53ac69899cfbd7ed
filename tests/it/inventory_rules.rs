//! The inventory rules under quantities whose sum does not fit an i32:
//! reserves that arrive together are decided first come, first served, each
//! against the stock the earlier ones left, and a sum that would wrap never
//! moves stock. The batches are handed to the inventory role's own handler
//! (so they are one batch for sure), and once through the broker.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use dop::{
    messaging::{
        consumer::{Delivery, Handler, Outcome},
        contracts::{InventoryCommand, Message},
    },
    roles::{
        inventory::{
            commands::InventoryHandler,
            schema::{inventories, inventory_logs},
        },
        Role,
    },
};

use crate::harness::{eventually, metric, product_id, Opts, Stack};

/// 2^29: eight of them sum to 2^32, which an i32 sum wraps to 0.
const HUGE: i32 = 536_870_912;

async fn inventory_only() -> Stack {
    Stack::start(Opts {
        roles: vec![Role::Inventory],
        ..Opts::default()
    })
    .await
}

fn reserve(product_id: i64, quantity: i32) -> InventoryCommand {
    InventoryCommand {
        saga_id: uuid::Uuid::new_v4().to_string(),
        order_id: crate::harness::next_order_id(),
        product_id,
        quantity,
    }
}

fn delivery(msg: &Message) -> Delivery {
    Delivery {
        queue: "inventory.commands".into(),
        exchange: "saga.commands".into(),
        routing_key: msg.routing_key().into(),
        message_id: uuid::Uuid::new_v4().to_string(),
        trace_id: "inventory-rules".into(),
        saga_id: Some(msg.saga_id().to_string()),
        retry_count: 0,
        body: msg.to_json().into_bytes(),
    }
}

/// (available, reserved) of a product.
async fn stock(conn: &mut AsyncMysqlConnection, pid: i64) -> (i32, i32) {
    inventories::table
        .find(pid)
        .select((inventories::available_qty, inventories::reserved_qty))
        .first(conn)
        .await
        .expect("stock row")
}

/// (order_id, action, quantity, success, reason) of a product's log rows.
type LogRow = (i64, String, i32, bool, Option<String>);

async fn logs(conn: &mut AsyncMysqlConnection, pid: i64) -> Vec<LogRow> {
    inventory_logs::table
        .filter(inventory_logs::product_id.eq(pid))
        .select((
            inventory_logs::order_id,
            inventory_logs::action,
            inventory_logs::quantity,
            inventory_logs::success,
            inventory_logs::reason,
        ))
        .order(inventory_logs::id)
        .load(conn)
        .await
        .expect("log rows")
}

/// Invariants of a product that started with `total` units and nothing
/// reserved: units are conserved, neither count is negative, and what is
/// reserved is what the successful reserves moved minus what the
/// successful releases gave back (each order reserved at most once, a
/// release that moved units only after a reserve that did).
async fn assert_invariants(conn: &mut AsyncMysqlConnection, pid: i64, total: i64) {
    let (available, reserved) = stock(conn, pid).await;
    assert!(available >= 0 && reserved >= 0, "{available}/{reserved}");
    assert_eq!(available as i64 + reserved as i64, total, "units conserved");
    let rows = logs(conn, pid).await;
    let mut net = 0i64;
    let mut reserved_orders = std::collections::HashSet::new();
    for (order, action, qty, success, _) in &rows {
        match (action.as_str(), success) {
            ("RESERVE", true) => {
                assert!(reserved_orders.insert(*order), "{order} twice");
                net += *qty as i64;
            }
            ("RELEASE", true) if *qty > 0 => {
                assert!(reserved_orders.contains(order), "{order} released first");
                net -= *qty as i64;
            }
            _ => {}
        }
    }
    assert_eq!(reserved as i64, net, "reserved_qty against the logs");
}

/// Hands `cmds` to the inventory handler as one batch; every one is acked.
async fn one_batch(s: &Stack, msgs: &[Message]) {
    let handler = InventoryHandler {
        ctx: s.ctx(Role::Inventory),
    };
    let ds: Vec<Delivery> = msgs.iter().map(delivery).collect();
    let outcomes = handler.handle_batch(&ds).await;
    assert_eq!(outcomes.len(), ds.len());
    for o in outcomes {
        assert_eq!(o, Outcome::Ack);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserves_whose_sum_wraps_an_i32_are_all_rejected_in_one_batch() {
    let s = inventory_only().await;
    let mut conn = s.db(Role::Inventory).await;
    for n in [8, 16] {
        let pid = product_id();
        s.add_product(pid, 10).await;
        let msgs: Vec<Message> = (0..n)
            .map(|_| Message::Reserve(reserve(pid, HUGE)))
            .collect();
        one_batch(&s, &msgs).await;
        assert_eq!(stock(&mut conn, pid).await, (10, 0), "{n} reserves");
        let rows = logs(&mut conn, pid).await;
        assert_eq!(rows.len(), n);
        for (_, action, qty, success, reason) in rows {
            assert_eq!((action.as_str(), qty, success), ("RESERVE", HUGE, false));
            assert_eq!(reason.as_deref(), Some("INSUFFICIENT_STOCK"));
        }
        assert_invariants(&mut conn, pid, 10).await;
    }
    let m = s.get(Role::Inventory, "/metrics").await.text();
    assert_eq!(
        metric(
            &m,
            "inventory_reserve_rejections_total",
            "insufficient_stock"
        ),
        24.0,
        "{m}"
    );
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_past_i32_max_is_served_first_come_first_served() {
    let s = inventory_only().await;
    let mut conn = s.db(Role::Inventory).await;
    let pid = product_id();
    s.add_product(pid, 1_000_000_000).await;
    // 2.6e9 in all: the first two fit, the third does not, the fourth
    // takes what is left, the fifth finds nothing.
    let qty = [
        400_000_000,
        500_000_000,
        600_000_000,
        100_000_000,
        1_000_000_000,
    ];
    let cmds: Vec<InventoryCommand> = qty.iter().map(|&q| reserve(pid, q)).collect();
    let msgs: Vec<Message> = cmds.iter().cloned().map(Message::Reserve).collect();
    one_batch(&s, &msgs).await;
    assert_eq!(stock(&mut conn, pid).await, (0, 1_000_000_000));
    let rows = logs(&mut conn, pid).await;
    let mut got: Vec<(i64, i32, bool, Option<String>)> = rows
        .into_iter()
        .map(|(o, _, q, ok, r)| (o, q, ok, r))
        .collect();
    // Log ids follow arrival order; compare by order anyway.
    let pos = |o: i64| cmds.iter().position(|c| c.order_id == o);
    got.sort_by_key(|(o, ..)| pos(*o));
    let want = [
        (400_000_000, true, None),
        (500_000_000, true, None),
        (600_000_000, false, Some("INSUFFICIENT_STOCK")),
        (100_000_000, true, None),
        (1_000_000_000, false, Some("INSUFFICIENT_STOCK")),
    ];
    assert_eq!(got.len(), want.len());
    for ((o, q, ok, r), (c, (wq, wok, wr))) in got.iter().zip(cmds.iter().zip(want)) {
        assert_eq!(o, &c.order_id);
        assert_eq!((*q, *ok, r.as_deref()), (wq, wok, wr), "order {o}");
    }
    assert_invariants(&mut conn, pid, 1_000_000_000).await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_reserves_waiting_in_the_queue_are_all_rejected() {
    let mut s = inventory_only().await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    // Published while the role is down, so they wait together and the
    // role takes them in as few batches as the broker delivers them.
    s.stop_role(Role::Inventory).await;
    let p = s.publisher().await;
    for _ in 0..16 {
        let msg = Message::Reserve(reserve(pid, HUGE));
        let d = delivery(&msg);
        p.publish("saga.commands", &d.routing_key, &d.message_id, &d.body)
            .await;
    }
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    let mut conn = s.db(Role::Inventory).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while logs(&mut conn, pid).await.len() < 16 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "16 reserves not logged within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stock(&mut conn, pid).await, (10, 0));
    assert!(logs(&mut conn, pid).await.iter().all(|r| !r.3));
    assert_invariants(&mut conn, pid, 10).await;
    // Each one answered, with its rejection.
    eventually(
        "16 results in order.events",
        Duration::from_secs(30),
        || {
            let p = &p;
            async move { (p.depth("order.events").await == 16).then_some(()) }
        },
    )
    .await;
    s.teardown().await;
}
