//! The promise end to end, against a hostile client: never oversell, never
//! charge twice, lose nothing, whatever the quantities and however the
//! commands are batched. The roles run for real (MariaDB, RabbitMQ); the
//! inventory role is stopped while orders are placed, so their reserve
//! commands reach it together in one batch, as a burst or a restart makes
//! them in production.
//!
//! `random_orders_keep_every_invariant` draws its scenarios with proptest's
//! generators: `DOP_PROPTEST_CASES=N` runs N of them (default 3), and
//! `DOP_PROPTEST_SEED=S` replays the scenarios of a failed run (the seed is
//! printed at the start).

use std::{collections::HashMap, time::Duration};

use dop::{domain::MAX_QTY, roles::Role};
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};

use crate::harness::{product_id, Opts, Stack};

/// 2^29: eight of these sum to 2^32, which wraps an i32 sum to 0.
const WRAPS_AT_EIGHT: i64 = 536_870_912;

async fn stock(s: &Stack, product: i64) -> (i64, i64) {
    let inv = s.inventory(product).await;
    (
        inv["available_qty"].as_i64().unwrap(),
        inv["reserved_qty"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantities_that_sum_past_i32_in_one_batch_reserve_nothing() {
    let mut s = Stack::start(Opts::default()).await;
    let p = product_id();
    s.add_product(p, 10).await;
    s.stop_role(Role::Inventory).await;
    let mut huge = Vec::new();
    for _ in 0..16 {
        huge.push(s.order(p, WRAPS_AT_EIGHT, "1.00").await);
    }
    // Behind them in the same batch, one that fits.
    let small = s.order(p, 5, "1.00").await;
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    for id in &huge {
        assert_eq!(
            s.wait_terminal(id, Duration::from_secs(30)).await,
            "FAILED",
            "an order of {WRAPS_AT_EIGHT} units on a stock of 10"
        );
    }
    assert_eq!(
        s.wait_terminal(&small, Duration::from_secs(30)).await,
        "CONFIRMED"
    );
    assert_eq!(stock(&s, p).await, (5, 5));
    let report = s.audit().await;
    assert!(report.is_clean(), "{}", report.render_text());
    s.teardown().await;
}

/// PUT /inventory sets `available_qty` and leaves reserved units alone, so
/// reserves can push `reserved_qty` (an INT column) towards and past
/// i32::MAX. The reserve that would pass it is refused like any other, and
/// nothing stalls or wraps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_units_never_pass_the_column() {
    let s = Stack::start(Opts::default()).await;
    let p = product_id();
    s.add_product(p, MAX_QTY).await;
    let mut confirmed = 0;
    for round in 0..3 {
        if round > 0 {
            let r = s
                .put(
                    Role::Inventory,
                    &format!("/inventory/{p}"),
                    serde_json::json!({"available_qty": MAX_QTY}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let id = s.order(p, MAX_QTY, "1.00").await;
        let status = s.wait_terminal(&id, Duration::from_secs(30)).await;
        if round < 2 {
            assert_eq!(status, "CONFIRMED", "round {round}");
            confirmed += MAX_QTY;
        } else {
            // 3 x 10^9 reserved would not fit an INT.
            assert_eq!(status, "FAILED", "round {round}");
        }
    }
    assert_eq!(stock(&s, p).await, (MAX_QTY, confirmed));
    let report = s.audit().await;
    assert!(report.is_clean(), "{}", report.render_text());
    s.teardown().await;
}

/// One scenario: products with their stock, and orders placed in this
/// order while the inventory role is stopped (so they reach it as one
/// batch) or running (so they arrive as they come).
#[derive(Clone, Debug)]
struct Scenario {
    stock: Vec<i64>,
    /// (index into `stock`, quantity)
    orders: Vec<(usize, i64)>,
    batched: bool,
}

fn quantity() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 1..=20i64,
        1 => Just(WRAPS_AT_EIGHT),
        1 => Just(MAX_QTY),
        1 => (MAX_QTY / 2)..=MAX_QTY,
    ]
}

/// Stock levels the API accepts (0 to MAX_QTY), the extremes included.
fn stock_level() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        1..=50i64,
        (MAX_QTY - 100)..=MAX_QTY,
        Just(MAX_QTY),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    prop::collection::vec(stock_level(), 1..=3).prop_flat_map(|stock| {
        let n = stock.len();
        (
            Just(stock),
            prop::collection::vec((0..n, quantity()), 1..=40),
            any::<bool>(),
        )
            .prop_map(|(stock, orders, batched)| Scenario {
                stock,
                orders,
                batched,
            })
    })
}

fn runner() -> (TestRunner, u64, u32) {
    let cases = crate::harness::prop_cases(3);
    let seed = std::env::var("DOP_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    (
        TestRunner::new_with_rng(Config::with_cases(cases), rng),
        seed,
        cases,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_orders_keep_every_invariant() {
    let (mut runner, seed, cases) = runner();
    eprintln!("random_orders_keep_every_invariant: DOP_PROPTEST_SEED={seed}, {cases} cases");
    let mut s = Stack::start(Opts {
        payment_failure_rate: 0.3,
        ..Opts::default()
    })
    .await;
    let strategy = scenario();
    for case in 0..cases {
        let sc = strategy
            .new_tree(&mut runner)
            .expect("draw a scenario")
            .current();
        let ctx = format!("case {case} of seed {seed}: {sc:?}");
        let products: Vec<i64> = sc.stock.iter().map(|_| product_id()).collect();
        for (p, qty) in products.iter().zip(&sc.stock) {
            s.add_product(*p, *qty).await;
        }
        if sc.batched {
            s.stop_role(Role::Inventory).await;
        }
        let mut placed = Vec::new();
        for (i, qty) in &sc.orders {
            placed.push((
                products[*i],
                *qty,
                s.order(products[*i], *qty, "1.00").await,
            ));
        }
        if sc.batched {
            s.start_role(Role::Inventory).await;
            s.wait_ready(Role::Inventory).await;
        }
        let mut confirmed: HashMap<i64, i64> = HashMap::new();
        for (p, qty, id) in &placed {
            let status = s.wait_terminal(id, Duration::from_secs(60)).await;
            assert!(
                matches!(status.as_str(), "CONFIRMED" | "FAILED" | "COMPENSATED"),
                "{ctx}: order {id} ended {status}"
            );
            if status == "CONFIRMED" {
                *confirmed.entry(*p).or_default() += qty;
            }
        }
        for (p, initial) in products.iter().zip(&sc.stock) {
            let (available, reserved) = stock(&s, *p).await;
            let held = confirmed.get(p).copied().unwrap_or(0);
            assert!(available >= 0 && reserved >= 0, "{ctx}: product {p}");
            assert_eq!(
                available + reserved,
                *initial,
                "{ctx}: product {p}: units appeared or vanished"
            );
            assert_eq!(
                reserved, held,
                "{ctx}: product {p}: reserved units are not those of its confirmed orders"
            );
        }
        let report = s.audit().await;
        assert!(report.is_clean(), "{ctx}: {}", report.render_text());
    }
    s.teardown().await;
}
