//! Integer order ids from reserved blocks (roles/order/ids.rs,
//! docs/design/order-ids.md): unique across replicas, JavaScript-safe,
//! increasing per replica, and one reservation per block, not per order.

use std::{collections::HashSet, sync::Arc};

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use dop::{
    db::DbPool,
    domain::MAX_ID,
    observability::Metrics,
    roles::{order::ids::IdAllocator, Role},
};

use crate::harness::{metric, ScratchDb, MYSQL};

fn pool(name: &str) -> DbPool {
    let mut db = dop::config::Config::default().db(Role::Order);
    db.database_url = dop::config::SecretUrl::new(format!("{MYSQL}/{name}"));
    db.pool_size = 4;
    dop::db::connect_pool(&db).expect("pool")
}

#[derive(diesel::QueryableByName)]
struct Next {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    next_id: i64,
}

async fn next_id(db: &ScratchDb) -> i64 {
    let mut c = db.conn().await;
    diesel::sql_query("SELECT next_id FROM id_blocks WHERE name = 'orders'")
        .get_result::<Next>(&mut c)
        .await
        .unwrap()
        .next_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_hand_out_the_same_id() {
    let db = ScratchDb::new(Role::Order).await;
    assert_eq!(next_id(&db).await, 1, "a fresh database starts at 1");
    const BLOCK: i64 = 50;
    const EACH: usize = 2_000;
    // Two replicas: two pools, two allocators, one database.
    let (pa, pb) = (pool(&db.name), pool(&db.name));
    let a = IdAllocator::with_block(pa.clone(), Arc::new(Metrics::new("a")), BLOCK);
    let b = IdAllocator::with_block(pb.clone(), Arc::new(Metrics::new("b")), BLOCK);
    let draw = |alloc: IdAllocator| {
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(EACH);
            for i in 0..EACH {
                ids.push(alloc.next().await.expect("an id"));
                if i % 97 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            ids
        })
    };
    let (ta, tb) = (draw(a), draw(b));
    let (ids_a, ids_b) = (ta.await.unwrap(), tb.await.unwrap());
    for ids in [&ids_a, &ids_b] {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "increasing per replica"
        );
        assert!(ids.iter().all(|&i| (1..=MAX_ID).contains(&i)));
    }
    let all: HashSet<i64> = ids_a.iter().chain(&ids_b).copied().collect();
    assert_eq!(all.len(), 2 * EACH, "no id handed out twice");
    // One reservation per block: at most the ids used plus the blocks each
    // replica holds (current and spare) were taken from the table.
    let taken = next_id(&db).await - 1;
    assert!(
        taken >= 2 * EACH as i64 && taken <= 2 * EACH as i64 + 4 * BLOCK,
        "{taken} ids reserved for {} handed out",
        2 * EACH
    );
    pa.close();
    pb.close();
    db.drop().await;
}

#[tokio::test]
async fn ids_stop_below_two_to_the_53() {
    let db = ScratchDb::new(Role::Order).await;
    let mut c = db.conn().await;
    c.batch_execute(&format!(
        "UPDATE id_blocks SET next_id = {} WHERE name = 'orders'",
        MAX_ID - 2
    ))
    .await
    .unwrap();
    let p = pool(&db.name);
    let metrics = Arc::new(Metrics::new("order"));
    // A block of 2 still fits (MAX_ID - 2 and MAX_ID - 1), the next does not.
    let a = IdAllocator::with_block(p.clone(), metrics.clone(), 2);
    assert_eq!(a.next().await.unwrap(), MAX_ID - 2);
    assert_eq!(a.next().await.unwrap(), MAX_ID - 1);
    let err = a.next().await.unwrap_err();
    assert!(err.to_string().contains("exhausted"), "{err}");
    // Counted and the table untouched: no id past 2^53 - 1 was promised.
    let text = metrics.encode();
    assert!(
        metric(&text, "batch_failures_total", r#"batch="order_ids""#) >= 1.0,
        "{text}"
    );
    assert_eq!(next_id(&db).await, MAX_ID);
    p.close();
    db.drop().await;
}
