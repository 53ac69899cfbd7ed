//! `inventory.seed`: the inventory role creates the original system's
//! products (1001 with 100 units, 1002 with 50) at start when they are
//! missing, never overwrites existing stock, and replicas starting at once
//! do not trip over each other.

use diesel::sql_types::{BigInt, Integer};
use diesel_async::RunQueryDsl;
use dop::{
    config::{default_seed, SeedProduct},
    roles::Role,
};

use crate::harness::{Opts, Stack};

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Row {
    #[diesel(sql_type = BigInt)]
    product_id: i64,
    #[diesel(sql_type = Integer)]
    available_qty: i32,
    #[diesel(sql_type = Integer)]
    reserved_qty: i32,
}

async fn stock(s: &Stack) -> Vec<(i64, i32, i32)> {
    let mut c = s.db(Role::Inventory).await;
    diesel::sql_query(
        "SELECT product_id, available_qty, reserved_qty FROM inventories ORDER BY product_id",
    )
    .load::<Row>(&mut c)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.product_id, r.available_qty, r.reserved_qty))
    .collect()
}

async fn inventory_only(seed: Vec<SeedProduct>) -> Stack {
    let mut s = Stack::start(Opts {
        roles: vec![],
        ..Opts::default()
    })
    .await;
    s.cfg.inventory.seed = seed;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_products_exist_after_start_and_are_never_overwritten() {
    let mut s = inventory_only(default_seed()).await;
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    // Seeded before the role serves: no waiting.
    assert_eq!(stock(&s).await, [(1001, 100, 0), (1002, 50, 0)]);
    let r = s.get(Role::Inventory, "/inventory/1001").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().unwrap()["available_qty"], 100);

    // Stock that changed since is left as it is by the next start.
    let mut c = s.db(Role::Inventory).await;
    diesel::sql_query(
        "UPDATE inventories SET available_qty = 7, reserved_qty = 2 WHERE product_id = 1001",
    )
    .execute(&mut c)
    .await
    .unwrap();
    diesel::sql_query("DELETE FROM inventories WHERE product_id = 1002")
        .execute(&mut c)
        .await
        .unwrap();
    s.stop_role(Role::Inventory).await;
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    // 1001 kept its stock; the missing 1002 came back.
    assert_eq!(stock(&s).await, [(1001, 7, 2), (1002, 50, 0)]);
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_seeding_at_once_all_succeed_and_create_each_product_once() {
    let mut s = inventory_only(vec![]).await;
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    assert_eq!(stock(&s).await, []);
    let seed: Vec<SeedProduct> = (0..20)
        .map(|i| SeedProduct {
            product_id: 5000 + i,
            available_qty: i,
        })
        .collect();
    let ctx = s.ctx(Role::Inventory);
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let ctx = ctx.clone();
        let seed = seed.clone();
        runs.spawn(async move { dop::roles::inventory::seed::run(&ctx, &seed).await });
    }
    while let Some(r) = runs.join_next().await {
        r.unwrap().expect("a concurrent seed fails");
    }
    let want: Vec<(i64, i32, i32)> = (0..20).map(|i| (5000 + i, i as i32, 0)).collect();
    assert_eq!(stock(&s).await, want);
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_seed_creates_nothing() {
    let mut s = inventory_only(vec![]).await;
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    assert_eq!(stock(&s).await, []);
    s.teardown().await;
}
