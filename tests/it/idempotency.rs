//! The read that finds the order an Idempotency-Key names, against the
//! real database: it must stay a handful of index entries however many
//! orders the table holds. It used to filter on the key alone, which the
//! `(user_id, idempotency_key)` index cannot seek, so every keyed POST
//! scanned the whole index (ten million entries after a few days).

use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use dop::{
    role::Role,
    roles::order::{orders::NewOrder, place::Planned, writer},
};

use crate::harness::ScratchDb;

/// Index and table rows this session has stepped through.
async fn rows_read(c: &mut diesel_async::AsyncMysqlConnection) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT CAST(SUM(VARIABLE_VALUE) AS SIGNED) AS n FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME IN ('HANDLER_READ_NEXT', 'HANDLER_READ_PREV', 'HANDLER_READ_RND_NEXT', \
         'HANDLER_READ_KEY', 'HANDLER_READ_FIRST')",
    )
    .get_result::<N>(c)
    .await
    .expect("read handler counters")
    .n
}

fn keyed(user_id: i64, key: &str, order_id: i64) -> Planned {
    let new = NewOrder {
        user_id,
        product_id: 1,
        quantity: 1,
        total_amount: "9.99".parse().unwrap(),
    };
    Planned::new(new, Some(key.into()), "trace", order_id)
}

#[tokio::test]
async fn a_keyed_post_reads_a_few_index_entries_however_many_orders_exist() {
    const ORDERS: i64 = 20_000;
    let db = ScratchDb::new(Role::Order).await;
    let mut c = db.conn().await;
    // 20,000 orders without a key over 1,000 users, then the same key used
    // by two users.
    c.batch_execute(&format!(
        "INSERT INTO orders (id, saga_id, user_id, product_id, quantity, total_amount, status, trace_id) \
         SELECT n, CONCAT('s-', n), 1 + n % 1000, 1, 1, 9.99, 'CONFIRMED', 't' FROM ( \
           SELECT a.d + 10 * b.d + 100 * c.d + 1000 * d.d + 10000 * e.d AS n \
           FROM (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) a, \
                (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) b, \
                (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) c, \
                (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) d, \
                (SELECT 0 d UNION ALL SELECT 1) e) s WHERE n < {ORDERS}; \
         INSERT INTO orders (id, saga_id, user_id, product_id, quantity, total_amount, status, idempotency_key, trace_id) \
         VALUES ({ORDERS}, 's-a', 7, 1, 1, 9.99, 'CONFIRMED', 'k', 't'), \
                ({ORDERS} + 1, 's-b', 8, 1, 1, 9.99, 'CONFIRMED', 'k', 't'); \
         ANALYZE TABLE orders;"
    ))
    .await
    .expect("fill orders");

    // Keyless orders are not filed under their users in the key index (the
    // user's random leaf page would be touched by every order): only user
    // 7's keyed order is, of the 20 orders user 7 placed.
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let under_user_7 = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM orders FORCE INDEX (uq_orders_idempotency) \
         WHERE idempotency_user = 7",
    )
    .get_result::<Count>(&mut c)
    .await
    .expect("count the key index under user 7")
    .n;
    assert_eq!(under_user_7, 1);

    let mut conn = db.pool.get().await.expect("pooled connection");
    let jobs = [keyed(7, "k", ORDERS + 10), keyed(9, "other", ORDERS + 11)];
    // Each form twice (the first call also prepares the statement): a first
    // attempt reads keys; after a failed attempt, also the batch's own ids.
    for (round, after_failure) in [false, false, true, true].into_iter().enumerate() {
        // Net of what reading the counters itself steps through.
        let a = rows_read(&mut conn).await;
        let before = rows_read(&mut conn).await;
        let own = before - a;
        let seen = writer::read(&mut conn, &jobs, after_failure)
            .await
            .expect("read keyed batch");
        let read = rows_read(&mut conn).await - before - own;
        assert_eq!(
            seen.by_key.get(&(7, "k".to_string())).map(|o| o.id),
            Some(ORDERS),
            "user 7's key names user 7's order"
        );
        assert!(
            !seen.by_key.contains_key(&(9, "other".to_string())),
            "an unused key names nothing"
        );
        assert!(
            read < 50,
            "round {round} (after a failure: {after_failure}): finding two keys stepped \
             through {read} rows of {ORDERS} orders"
        );
    }
    drop(conn);
    db.drop().await;
}
