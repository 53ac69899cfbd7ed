//! `db::classify` of errors the real MariaDB produces: a duplicate key whose
//! message quotes words that mean something else, a deadlock, a lock wait
//! timeout and a killed connection.

use diesel::{sql_types::BigInt, sql_types::Text};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use dop::db::{classify, is_contention, is_duplicate, is_retryable, ErrorClass};

use crate::harness::{drop_db, MYSQL};

async fn connect(url: &str) -> AsyncMysqlConnection {
    AsyncMysqlConnection::establish(url)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach MariaDB at {MYSQL} ({e}); start it (scripts/ensure-services.sh)")
        })
}

/// A scratch database with `t(id BIGINT, v BIGINT)` rows 1 and 2 and
/// `k(id VARCHAR PRIMARY KEY)`.
async fn fresh_db() -> (String, String) {
    let name = format!(
        "dop_t_{}_dberr",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let mut root = connect(MYSQL).await;
    root.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{MYSQL}/{name}");
    connect(&url)
        .await
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB; \
             INSERT INTO t VALUES (1, 0), (2, 0); \
             CREATE TABLE k (id VARCHAR(200) PRIMARY KEY) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        )
        .await
        .unwrap();
    (name, url)
}

async fn bump(c: &mut AsyncMysqlConnection, id: i64) -> diesel::QueryResult<usize> {
    diesel::sql_query("UPDATE t SET v = v + 1 WHERE id = ?")
        .bind::<BigInt, _>(id)
        .execute(c)
        .await
}

#[tokio::test]
async fn a_duplicate_is_a_duplicate_whatever_its_key_says() {
    let (name, url) = fresh_db().await;
    let mut c = connect(&url).await;
    let key = "Deadlock connection Lock wait timeout; try restarting transaction; \
               server has gone away, broken pipe, Input/output error";
    let insert = || diesel::sql_query("INSERT INTO k (id) VALUES (?)").bind::<Text, _>(key);
    insert().execute(&mut c).await.unwrap();
    // Prepared statement (binary protocol) and text script both.
    let prepared = insert().execute(&mut c).await.unwrap_err();
    let text = c
        .batch_execute(&format!("INSERT INTO k (id) VALUES ('{key}')"))
        .await
        .unwrap_err();
    for e in [prepared, text] {
        assert!(
            e.to_string().contains("Deadlock"),
            "the message quotes the key: {e}"
        );
        assert_eq!(classify(&e), ErrorClass::Duplicate, "{e}");
        assert!(is_duplicate(&e), "{e}");
        assert!(
            !is_retryable(&e),
            "a duplicate is not a lost connection: {e}"
        );
        assert!(!is_contention(&e), "a duplicate is not a deadlock: {e}");
    }
    drop_db(&name).await;
}

#[tokio::test]
async fn a_deadlock_is_contention() {
    let (name, url) = fresh_db().await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    a.batch_execute("START TRANSACTION").await.unwrap();
    b.batch_execute("START TRANSACTION").await.unwrap();
    bump(&mut a, 1).await.unwrap();
    bump(&mut b, 2).await.unwrap();
    // Each now asks for the other's row. Whichever request reaches the
    // server second closes the cycle, so the order does not matter, and
    // InnoDB's deadlock detection picks one victim at once.
    let (ra, rb) = tokio::join!(bump(&mut a, 2), bump(&mut b, 1));
    let errors: Vec<_> = [ra, rb].into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1, "InnoDB picks one victim: {errors:?}");
    let e = &errors[0];
    assert!(e.to_string().contains("Deadlock"), "{e}");
    assert_eq!(classify(e), ErrorClass::Contention, "{e}");
    assert!(is_contention(e) && is_retryable(e) && !is_duplicate(e));
    // Closed first: an open transaction would block DROP DATABASE.
    drop((a, b));
    drop_db(&name).await;
}

#[tokio::test]
async fn a_lock_wait_timeout_is_contention() {
    let (name, url) = fresh_db().await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    a.batch_execute("START TRANSACTION").await.unwrap();
    bump(&mut a, 1).await.unwrap();
    b.batch_execute("SET SESSION innodb_lock_wait_timeout = 1; START TRANSACTION")
        .await
        .unwrap();
    let e = bump(&mut b, 1).await.unwrap_err();
    assert!(e.to_string().contains("Lock wait timeout"), "{e}");
    assert_eq!(classify(&e), ErrorClass::Contention, "{e}");
    assert!(is_contention(&e) && is_retryable(&e) && !is_duplicate(&e));
    drop((a, b));
    drop_db(&name).await;
}

#[derive(diesel::QueryableByName)]
struct ConnId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[tokio::test]
async fn a_killed_connection_is_a_lost_connection() {
    let (name, url) = fresh_db().await;
    let (mut victim, mut killer) = (connect(&url).await, connect(&url).await);
    let id = diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id")
        .get_result::<ConnId>(&mut victim)
        .await
        .unwrap()
        .id;
    killer.batch_execute(&format!("KILL {id}")).await.unwrap();
    // Both protocols: a prepared statement, then text on what is left.
    let prepared = bump(&mut victim, 1).await.unwrap_err();
    let text = victim.batch_execute("SELECT 1").await.unwrap_err();
    for e in [prepared, text] {
        assert_eq!(classify(&e), ErrorClass::Connection, "{e}");
        assert!(is_retryable(&e) && !is_contention(&e) && !is_duplicate(&e));
    }
    drop_db(&name).await;
}
