//! Retention on the real MariaDB: `retention.dedup` deletes exactly the
//! inbox rows older than the window, in batches, from several replicas at
//! once, and the metrics move; a duplicate delivered inside the window
//! still has no second effect while the saga it belongs to is in flight.

use std::{sync::Arc, time::Duration};

use diesel::{
    sql_types::{BigInt, Text},
    QueryableByName,
};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use dop::{
    config::Config,
    observability::Metrics,
    retention::{Kind, Pruner, Target},
    roles::Role,
};
use serde_json::json;

use crate::harness::{eventually, metric, Opts, ScratchDb, Stack};

const T: Duration = Duration::from_secs(20);

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    message_id: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Inserts inbox rows processed `age_secs` ago (by the database's clock).
async fn insert_aged(c: &mut AsyncMysqlConnection, ids: &[String], age_secs: i64) {
    for id in ids {
        diesel::sql_query(
            "INSERT INTO processed_events (message_id, processed_at) \
             VALUES (?, NOW(6) - INTERVAL ? SECOND)",
        )
        .bind::<Text, _>(id)
        .bind::<BigInt, _>(age_secs)
        .execute(c)
        .await
        .expect("insert an inbox row");
    }
}

async fn remaining(c: &mut AsyncMysqlConnection) -> Vec<String> {
    let mut ids: Vec<String> = diesel::sql_query("SELECT message_id FROM processed_events")
        .load::<Id>(c)
        .await
        .expect("read the inbox")
        .into_iter()
        .map(|r| r.message_id)
        .collect();
    ids.sort();
    ids
}

/// Half UUIDv7 (dop's own messages), half UUIDv4 (the original system's).
fn ids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                uuid::Uuid::now_v7().to_string()
            } else {
                uuid::Uuid::new_v4().to_string()
            }
        })
        .collect()
}

fn pruner(pool: dop::db::DbPool, metrics: Arc<Metrics>, window: Duration, batch: u32) -> Pruner {
    Pruner {
        pool,
        metrics,
        targets: vec![Target {
            table: "processed_events",
            column: "processed_at",
            window,
            kind: Kind::Aged,
        }],
        batch_size: batch,
    }
}

#[tokio::test]
async fn the_dedup_window_deletes_exactly_what_is_older_than_it() {
    let db = ScratchDb::new(Role::Payment).await;
    let mut c = db.conn().await;
    // A 60 s window: 23 rows an hour old go; rows 50 s old (a copy still
    // being retried, or a message redrive may still send) and new ones stay.
    let old = ids(23);
    let young = ids(5);
    let fresh = ids(5);
    insert_aged(&mut c, &old, 3600).await;
    insert_aged(&mut c, &young, 50).await;
    insert_aged(&mut c, &fresh, 0).await;
    let metrics = Arc::new(Metrics::new("payment-service"));
    // A batch of 5: five full statements and a short one.
    let p = pruner(db.pool.clone(), metrics.clone(), Duration::from_secs(60), 5);
    let lag = p.lag(&p.targets[0]).await.unwrap();
    assert!(
        (3530..=3545).contains(&lag.as_secs()),
        "the oldest row is about 3,540 s past the window: {lag:?}"
    );
    assert_eq!(p.pass().await, 23);
    let mut kept: Vec<String> = young.iter().chain(&fresh).cloned().collect();
    kept.sort();
    assert_eq!(remaining(&mut c).await, kept);
    let text = metrics.encode();
    let series = "table=\"processed_events\"";
    assert_eq!(metric(&text, "retention_deleted_rows_total", series), 23.0);
    assert_eq!(metric(&text, "retention_lag_seconds", series), 0.0);
    assert_eq!(metric(&text, "retention_failures_total", series), 0.0);
    // Nothing more to do: a second pass deletes nothing.
    assert_eq!(p.pass().await, 0);
    assert_eq!(remaining(&mut c).await, kept);
    db.drop().await;
}

#[tokio::test]
async fn a_failed_pass_is_counted_and_the_next_one_catches_up() {
    let db = ScratchDb::new(Role::Order).await;
    let mut c = db.conn().await;
    insert_aged(&mut c, &ids(3), 3600).await;
    let metrics = Arc::new(Metrics::new("order-service"));
    let mut p = pruner(
        db.pool.clone(),
        metrics.clone(),
        Duration::from_secs(60),
        100,
    );
    p.targets[0].table = "no_such_table";
    assert_eq!(p.pass().await, 0);
    let text = metrics.encode();
    assert_eq!(
        metric(&text, "retention_failures_total", "table=\"no_such_table\""),
        2.0,
        "the delete and the lag read both failed: {text}"
    );
    p.targets[0].table = "processed_events";
    assert_eq!(p.pass().await, 3);
    db.drop().await;
}

/// Two replicas prune the same database at once, each on its own pool and
/// every 50 ms: between them they delete each aged row once, keep every
/// young one, and neither fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_prune_at_once_without_coordination() {
    let db = ScratchDb::new(Role::Order).await;
    let mut c = db.conn().await;
    let old = ids(400);
    let young = ids(20);
    insert_aged(&mut c, &old, 600).await;
    insert_aged(&mut c, &young, 0).await;
    let mut cfg = Config::default();
    cfg.order.database_url =
        dop::config::SecretUrl::new(format!("{}/{}", crate::harness::MYSQL, db.name));
    cfg.retention.dedup = Duration::from_secs(60);
    cfg.retention.batch_size = 25;
    let replicas: Vec<(Arc<Metrics>, tokio::task::JoinHandle<()>)> = (0..2)
        .map(|_| {
            let metrics = Arc::new(Metrics::new("order-service"));
            let pool = dop::db::connect_pool(&cfg.db(Role::Order)).unwrap();
            let p = Pruner::new(Role::Order, &cfg, pool, metrics.clone());
            (metrics, tokio::spawn(p.run(Duration::from_millis(50))))
        })
        .collect();
    eventually("the aged rows to be gone", T, || async {
        let n: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM processed_events")
            .get_result(&mut db.conn().await)
            .await
            .unwrap();
        (n.n == 20).then_some(())
    })
    .await;
    // Let both run a few more passes over the young rows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut y = young.clone();
    y.sort();
    assert_eq!(remaining(&mut c).await, y);
    let series = "table=\"processed_events\"";
    let (mut deleted, mut failed) = (0.0, 0.0);
    for (m, task) in replicas {
        task.abort();
        let text = m.encode();
        deleted += metric(&text, "retention_deleted_rows_total", series);
        failed += metric(&text, "retention_failures_total", series);
    }
    assert_eq!(
        deleted, 400.0,
        "each row is counted by the replica that deleted it"
    );
    assert_eq!(failed, 0.0);
    db.drop().await;
}

/// With the background task pruning every 200 ms and a 3 s window, the
/// same event delivered twice inside the window moves the saga once; once
/// the window has passed, its inbox row is gone while the saga (waiting
/// for its payment) is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_inside_the_window_has_no_second_effect() {
    let mut s = Stack::start(Opts {
        roles: vec![],
        // No re-send of the pending command while the test waits out the
        // window: every transition seen is the test's own event.
        recovery_interval: Duration::from_secs(60),
        stuck_after: Duration::from_secs(60),
        ..Opts::default()
    })
    .await;
    s.cfg.retention.dedup = Duration::from_secs(3);
    s.cfg.retention.interval = Duration::from_millis(200);
    s.start_role(Role::Order).await;
    s.wait_ready(Role::Order).await;
    let pid = crate::harness::product_id();
    let order = s.order(pid, 2, "20.00").await;
    let saga = s.saga_of(&order).await;
    let p = s.publisher().await;
    eventually("the reserve command", T, || async {
        (p.depth("inventory.commands").await == 1).then_some(())
    })
    .await;
    let events = format!("SELECT COUNT(*) AS n FROM saga_events WHERE saga_id = '{saga}'");
    let count = |sql: String| {
        let s = &s;
        async move {
            diesel::sql_query(sql)
                .get_result::<Count>(&mut s.db(Role::Order).await)
                .await
                .unwrap()
                .n
        }
    };
    let before = count(events.clone()).await;
    let mid = uuid::Uuid::now_v7().to_string();
    let body = json!({"saga_id": saga, "order_id": order.parse::<i64>().unwrap(), "product_id": pid, "quantity": 2, "success": true})
        .to_string()
        .into_bytes();
    p.publish("saga.events", "inventory.reserved", &mid, &body)
        .await;
    eventually("the payment command", T, || async {
        (p.depth("payment.commands").await == 1).then_some(())
    })
    .await;
    let after_first = count(events.clone()).await;
    assert!(after_first > before, "the first delivery moved the saga");
    p.publish("saga.events", "inventory.reserved", &mid, &body)
        .await;
    let metrics = s.ctx(Role::Order).metrics.clone();
    eventually("the second copy to be seen as a duplicate", T, || async {
        let text = metrics.encode();
        (metric(&text, "messages_consumed_total", "outcome=\"duplicate\"") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        count(events.clone()).await,
        after_first,
        "no second transition"
    );
    assert_eq!(
        p.depth("payment.commands").await,
        1,
        "no second payment command"
    );
    // Past the window the background task deletes the inbox row.
    let inbox = format!("SELECT COUNT(*) AS n FROM processed_events WHERE message_id = '{mid}'");
    assert_eq!(count(inbox.clone()).await, 1);
    eventually(
        "the inbox row to age out",
        Duration::from_secs(10),
        || async { (count(inbox.clone()).await == 0).then_some(()) },
    )
    .await;
    let text = metrics.encode();
    assert!(metric(&text, "retention_deleted_rows_total", "processed_events") >= 1.0);
    assert_eq!(
        metric(&text, "retention_failures_total", "processed_events"),
        0.0
    );
    let st = s
        .get(Role::Order, &format!("/admin/sagas/{saga}"))
        .await
        .json()
        .unwrap()["saga"]["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        st, "IN_PROGRESS",
        "retention does not touch a saga in flight"
    );
    assert_eq!(count(events).await, after_first);
    s.teardown().await;
}

/// `dop admin dlq redrive` sends back a dead letter young enough and keeps
/// one whose UUIDv7 id says it was sent before the deduplication window
/// (less its retries): a copy handled back then may have left no record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_keeps_a_dead_letter_older_than_the_dedup_window() {
    use dop::{
        cli::admin::dlq,
        messaging::consumer::{dead_letter, Delivery},
    };
    // Inventory declares the topology; with its consumer stopped nothing
    // takes the redriven message off inventory.commands.
    let mut s = Stack::start(Opts {
        roles: vec![Role::Inventory],
        ..Opts::default()
    })
    .await;
    s.stop_role(Role::Inventory).await;
    let mut cfg = s.cfg.clone();
    cfg.rabbitmq.url = dop::config::SecretUrl::new(s.amqp_url());
    // Harness retries: 300 ms × 3, so the window for redrive is 3.1 s.
    cfg.retention.dedup = Duration::from_secs(4);
    let p = s.publisher().await;
    let born = |ago: Duration| {
        let t = std::time::SystemTime::now() - ago;
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, d.as_secs(), d.subsec_nanos());
        uuid::Uuid::new_v7(ts).to_string()
    };
    let old = born(Duration::from_secs(10));
    let young = born(Duration::from_millis(500));
    for id in [&old, &young] {
        let d = Delivery {
            queue: "inventory.commands".into(),
            exchange: "saga.commands".into(),
            routing_key: "inventory.reserve".into(),
            message_id: id.clone(),
            trace_id: "t".into(),
            saga_id: None,
            retry_count: 3,
            body: b"{}".to_vec(),
        };
        p.confirm
            .publish_confirmed(&dead_letter(&d, "retries exhausted: test"))
            .await
            .unwrap();
    }
    let r = dlq::redrive(&cfg, "inventory.commands", None, None)
        .await
        .expect("redrive runs");
    assert_eq!((r.depth_at_start, r.moved), (2, 1), "{r:?}");
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    assert_eq!(r.skipped[0].message_id.as_deref(), Some(old.as_str()));
    assert!(
        r.skipped[0].why.contains("past the deduplication window"),
        "{r:?}"
    );
    assert_eq!(
        p.depth("inventory.commands.dlq").await,
        1,
        "the old one stays"
    );
    assert_eq!(
        p.depth("inventory.commands").await,
        1,
        "the young one went back"
    );
    s.teardown().await;
}

/// One saga as the order role stores it: the order, the saga created
/// `created_ago` and last changed `updated_ago` seconds ago, and `events`
/// timeline rows.
async fn insert_saga(
    c: &mut AsyncMysqlConnection,
    order_id: i64,
    status: &str,
    created_ago: i64,
    updated_ago: i64,
    events: usize,
) -> String {
    let saga_id = uuid::Uuid::now_v7().to_string();
    diesel::sql_query(
        "INSERT INTO orders (id, saga_id, user_id, product_id, quantity, total_amount, status, trace_id, created_at, updated_at) \
         VALUES (?, ?, 7, 1001, 1, 9.99, 'CONFIRMED', 't', NOW(6) - INTERVAL ? SECOND, NOW(6) - INTERVAL ? SECOND)",
    )
    .bind::<BigInt, _>(order_id)
    .bind::<Text, _>(&saga_id)
    .bind::<BigInt, _>(created_ago)
    .bind::<BigInt, _>(updated_ago)
    .execute(c)
    .await
    .expect("insert an order");
    let step = if status == "IN_PROGRESS" {
        "PROCESSING_PAYMENT"
    } else {
        "DONE"
    };
    diesel::sql_query(
        "INSERT INTO saga_states (saga_id, order_id, status, current_step, created_at, updated_at) \
         VALUES (?, ?, ?, ?, NOW(6) - INTERVAL ? SECOND, NOW(6) - INTERVAL ? SECOND)",
    )
    .bind::<Text, _>(&saga_id)
    .bind::<BigInt, _>(order_id)
    .bind::<Text, _>(status)
    .bind::<Text, _>(step)
    .bind::<BigInt, _>(created_ago)
    .bind::<BigInt, _>(updated_ago)
    .execute(c)
    .await
    .expect("insert a saga");
    for _ in 0..events {
        diesel::sql_query(
            "INSERT INTO saga_events (saga_id, event, to_status, to_step, created_at) \
             VALUES (?, 'x', ?, ?, NOW(6) - INTERVAL ? SECOND)",
        )
        .bind::<Text, _>(&saga_id)
        .bind::<Text, _>(status)
        .bind::<Text, _>(step)
        .bind::<BigInt, _>(updated_ago)
        .execute(c)
        .await
        .expect("insert a saga event");
    }
    saga_id
}

async fn count(c: &mut AsyncMysqlConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(c)
        .await
        .expect("count")
        .n
}

#[derive(QueryableByName)]
struct SagaId {
    #[diesel(sql_type = Text)]
    saga_id: String,
}

/// `retention.sagas`: two replicas at once, pages smaller than the data,
/// delete exactly the terminal sagas unchanged for the window, each with
/// its events and its order; a saga still in flight however old, a
/// terminal saga changed inside the window (an operator's retry) and new
/// sagas stay; the dry run announces exactly what then goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_sagas_older_than_the_window_go_with_their_timelines() {
    let db = ScratchDb::new(Role::Order).await;
    let mut c = db.conn().await;
    let hour = 3600;
    let mut gone = Vec::new();
    let mut kept = Vec::new();
    let mut id = 1;
    // Old and terminal, interleaved with old sagas still in flight.
    for i in 0..30 {
        let status = ["COMPLETED", "COMPENSATED", "FAILED"][i % 3];
        gone.push(insert_saga(&mut c, id, status, 3 * hour, 2 * hour, 4).await);
        id += 1;
        if i % 10 == 0 {
            kept.push(insert_saga(&mut c, id, "IN_PROGRESS", 3 * hour, 2 * hour, 2).await);
            kept.push(insert_saga(&mut c, id + 1, "COMPENSATING", 3 * hour, 2 * hour, 2).await);
            id += 2;
        }
    }
    // Old, but retried by an operator ten minutes ago.
    kept.push(insert_saga(&mut c, id, "FAILED", 3 * hour, 600, 5).await);
    id += 1;
    // New.
    for _ in 0..12 {
        kept.push(insert_saga(&mut c, id, "COMPLETED", 60, 60, 4).await);
        id += 1;
    }
    let mut cfg = Config::default();
    cfg.order.database_url =
        dop::config::SecretUrl::new(format!("{}/{}", crate::harness::MYSQL, db.name));
    cfg.retention.dedup = Duration::from_secs(hour as u64);
    cfg.retention.sagas = Some(Duration::from_secs(hour as u64));
    cfg.retention.batch_size = 7;
    let pool = dop::db::connect_pool(&cfg.db(Role::Order)).unwrap();
    let plan = Pruner::new(
        Role::Order,
        &cfg,
        pool,
        Arc::new(Metrics::new("order-service")),
    )
    .plan()
    .await
    .expect("a dry run");
    let sagas = plan
        .iter()
        .find(|p| p.table == "saga_states")
        .expect("a plan for sagas");
    assert_eq!(sagas.rows, 30);
    assert_eq!(sagas.with, vec![("saga_events", 120), ("orders", 30)]);
    assert!(sagas.lag_seconds >= 3500, "{plan:?}");
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) AS n FROM saga_states").await,
        49,
        "a dry run deletes nothing"
    );

    let replicas: Vec<(Arc<Metrics>, tokio::task::JoinHandle<()>)> = (0..2)
        .map(|_| {
            let metrics = Arc::new(Metrics::new("order-service"));
            let pool = dop::db::connect_pool(&cfg.db(Role::Order)).unwrap();
            let p = Pruner::new(Role::Order, &cfg, pool, metrics.clone());
            (metrics, tokio::spawn(p.run(Duration::from_millis(50))))
        })
        .collect();
    eventually("the aged sagas to be gone", T, || async {
        let n = count(
            &mut db.conn().await,
            "SELECT COUNT(*) AS n FROM saga_states",
        )
        .await;
        (n == kept.len() as i64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut left: Vec<String> = diesel::sql_query("SELECT saga_id FROM saga_states")
        .load::<SagaId>(&mut c)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.saga_id)
        .collect();
    left.sort();
    kept.sort();
    assert_eq!(left, kept);
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) AS n FROM orders").await,
        kept.len() as i64
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) AS n FROM saga_events WHERE saga_id NOT IN (SELECT saga_id FROM saga_states)").await,
        0,
        "no timeline outlives its saga"
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) AS n FROM saga_events").await,
        6 * 2 + 5 + 12 * 4
    );
    let mut deleted = [0.0; 3];
    for (m, task) in replicas {
        task.abort();
        let text = m.encode();
        for (i, t) in ["saga_states", "saga_events", "orders"].iter().enumerate() {
            deleted[i] += metric(
                &text,
                "retention_deleted_rows_total",
                &format!("table=\"{t}\""),
            );
        }
        assert_eq!(
            metric(&text, "retention_failures_total", "table=\"saga_states\""),
            0.0
        );
    }
    assert_eq!(
        deleted,
        [30.0, 120.0, 30.0],
        "each row counted once, by the replica that deleted it"
    );
    assert!(gone.iter().all(|g| !left.contains(g)));
    db.drop().await;
}
