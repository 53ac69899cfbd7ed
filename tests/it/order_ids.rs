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

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct IdPair {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    order_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    saga_id: String,
}

async fn pairs(url: &str, sql: &str) -> Vec<IdPair> {
    use diesel_async::AsyncConnection;
    let mut c = diesel_async::AsyncMysqlConnection::establish(url)
        .await
        .unwrap();
    diesel::sql_query(sql).load(&mut c).await.unwrap()
}

async fn exec(url: &str, sql: &str) {
    use diesel_async::AsyncConnection;
    let mut c = diesel_async::AsyncMysqlConnection::establish(url)
        .await
        .unwrap();
    c.batch_execute(sql).await.unwrap();
}

/// Databases at the schema before integer order ids, holding UUID rows, are
/// converted: orders numbered in created_at order, and the sagas, payments
/// and inventory logs (other databases) follow them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_uuid_orders_get_integers_in_created_at_order_everywhere() {
    use dop::db::migrate::{carry_order_ids, migrate, migrate_before};
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let name = |r: Role| format!("dop_t_{tag}_oldids_{r}");
    let url = |r: Role| format!("{MYSQL}/{}", name(r));
    for r in Role::ALL {
        migrate_before(r, &url(r), "integer_order_ids")
            .await
            .unwrap();
    }
    // Three orders whose UUIDs sort otherwise than their creation times.
    let o = [
        (
            "0190a0c4-0000-7000-8000-00000000000a",
            "0190a0c4-0000-7000-9000-00000000000a",
            "2026-01-03 00:00:00",
        ),
        (
            "0190a0c4-0000-7000-8000-00000000000b",
            "0190a0c4-0000-7000-9000-00000000000b",
            "2026-01-01 00:00:00",
        ),
        (
            "0190a0c4-0000-7000-8000-00000000000c",
            "0190a0c4-0000-7000-9000-00000000000c",
            "2026-01-02 00:00:00",
        ),
    ];
    for (id, saga, at) in o {
        exec(&url(Role::Order), &format!(
            "INSERT INTO orders (id, saga_id, user_id, product_id, quantity, total_amount, status, trace_id, created_at, updated_at) \
             VALUES ('{id}', '{saga}', 42, 1001, 1, 9.99, 'CONFIRMED', 't', '{at}', '{at}'); \
             INSERT INTO saga_states (saga_id, order_id, status, current_step, created_at, updated_at) \
             VALUES ('{saga}', '{id}', 'COMPLETED', 'DONE', '{at}', '{at}')"
        ))
        .await;
        exec(
            &url(Role::Payment),
            &format!(
                "INSERT INTO payments (order_id, saga_id, amount, status, tx_id) \
             VALUES ('{id}', '{saga}', 9.99, 'SUCCESS', '{}')",
                uuid::Uuid::new_v4()
            ),
        )
        .await;
        exec(&url(Role::Inventory), &format!(
            "INSERT INTO inventory_logs (order_id, saga_id, product_id, action, quantity, success, message_id) \
             VALUES ('{id}', '{saga}', 1001, 'RESERVE', 1, TRUE, '{}')",
            uuid::Uuid::new_v4()
        ))
        .await;
    }
    // The payment database alone cannot be converted, and is left as it was.
    let err = migrate(Role::Payment, &url(Role::Payment))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("dop migrate"), "{err:#}");
    // What `dop migrate` does: orders first, then carry and migrate the others.
    migrate(Role::Order, &url(Role::Order)).await.unwrap();
    for r in [Role::Inventory, Role::Payment] {
        let n = carry_order_ids(r, &url(Role::Order), &url(r), None)
            .await
            .unwrap();
        assert_eq!(n, 3, "{r}");
        migrate(r, &url(r)).await.unwrap();
    }
    let want: Vec<IdPair> = [(1, o[1].1), (2, o[2].1), (3, o[0].1)]
        .into_iter()
        .map(|(order_id, saga)| IdPair {
            order_id,
            saga_id: saga.to_string(),
        })
        .collect();
    let q = |t: &str, id: &str| {
        format!("SELECT {id} AS order_id, CAST(saga_id AS CHAR) AS saga_id FROM {t} ORDER BY {id}")
    };
    assert_eq!(pairs(&url(Role::Order), &q("orders", "id")).await, want);
    assert_eq!(
        pairs(&url(Role::Order), &q("saga_states", "order_id")).await,
        want
    );
    assert_eq!(
        pairs(&url(Role::Payment), &q("payments", "order_id")).await,
        want
    );
    assert_eq!(
        pairs(&url(Role::Inventory), &q("inventory_logs", "order_id")).await,
        want
    );
    // New orders continue after the migrated ones.
    let p = pool(&name(Role::Order));
    let ids = IdAllocator::new(p.clone(), Arc::new(Metrics::new("order")));
    assert_eq!(ids.next().await.unwrap(), 4);
    p.close();
    // Running it again finds nothing to do.
    for r in [Role::Inventory, Role::Payment] {
        assert_eq!(
            carry_order_ids(r, &url(Role::Order), &url(r), None)
                .await
                .unwrap(),
            0
        );
    }
    for r in Role::ALL {
        crate::harness::drop_db(&name(r)).await;
    }
}
