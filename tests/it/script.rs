//! `db::Script` against the real server: values written into the SQL as
//! literals come back byte for byte, whatever they hold, and a script that
//! fails part-way inside a transaction leaves nothing behind.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use dop::db::Script;

use crate::harness::{drop_db, MYSQL};

diesel::table! {
    script_t (id) {
        id -> Varchar,
        note -> Nullable<Text>,
        amount -> Numeric,
        at -> Datetime,
        n -> BigInt,
        ok -> Bool,
    }
}

async fn fresh_db() -> (String, AsyncMysqlConnection) {
    let name = format!(
        "dop_t_{}_script",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let mut root = AsyncMysqlConnection::establish(MYSQL)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach MariaDB at {MYSQL} ({e}); start it (scripts/ensure-services.sh)")
        });
    root.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut c = AsyncMysqlConnection::establish(&format!("{MYSQL}/{name}"))
        .await
        .unwrap();
    c.batch_execute(
        "CREATE TABLE script_t (id VARCHAR(64) NOT NULL PRIMARY KEY, note TEXT NULL, \
         amount DECIMAL(12,2) NOT NULL, at DATETIME(6) NOT NULL, n BIGINT NOT NULL, \
         ok BOOLEAN NOT NULL) DEFAULT CHARSET=utf8mb4",
    )
    .await
    .unwrap();
    (name, c)
}

type Row = (
    String,
    Option<String>,
    rust_decimal::Decimal,
    chrono::NaiveDateTime,
    i64,
    bool,
);

#[tokio::test]
async fn literals_round_trip_exactly_and_a_failed_script_leaves_nothing() {
    let (name, mut c) = fresh_db().await;
    let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 26)
        .unwrap()
        .and_hms_micro_opt(23, 59, 58, 999_999)
        .unwrap();
    let nasty = [
        "plain",
        "it's",
        "back\\slash\\",
        "\"double\" `tick` ;--",
        "'); DROP TABLE script_t; --",
        "?",
        "日本語 ünïcödé 🦀",
        "\0nul\r\n\t",
        "",
    ];
    let rows: Vec<Row> = nasty
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                format!("id-{i}-{s}"),
                (i % 2 == 0).then(|| s.to_string()),
                format!("{}.{:02}", i * 1000 + 7, i).parse().unwrap(),
                at,
                i64::MIN + i as i64,
                i % 3 == 0,
            )
        })
        .collect();
    let values: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                script_t::id.eq(&r.0),
                script_t::note.eq(&r.1),
                script_t::amount.eq(r.2),
                script_t::at.eq(r.3),
                script_t::n.eq(r.4),
                script_t::ok.eq(r.5),
            )
        })
        .collect();
    let mut script = Script::new();
    script
        .push(&diesel::insert_into(script_t::table).values(&values))
        .unwrap()
        .push(
            &diesel::update(script_t::table.filter(script_t::id.eq(&rows[4].0)))
                .set(script_t::n.eq(42)),
        )
        .unwrap();
    c.transaction::<_, diesel::result::Error, _>(async |c| script.run(c).await)
        .await
        .expect("the script runs");
    let mut got: Vec<Row> = script_t::table
        .order(script_t::id)
        .load(&mut c)
        .await
        .unwrap();
    got.sort();
    let mut want = rows.clone();
    want[4].4 = 42;
    want.sort();
    assert_eq!(got, want, "every value comes back byte for byte");

    // The second statement fails (duplicate key): the first one's row must
    // not stay either.
    let mut failing = Script::new();
    failing
        .push(&diesel::insert_into(script_t::table).values((
            script_t::id.eq("fresh"),
            script_t::amount.eq(rust_decimal::Decimal::ONE),
            script_t::at.eq(at),
            script_t::n.eq(1),
            script_t::ok.eq(true),
        )))
        .unwrap()
        .push(&diesel::insert_into(script_t::table).values(&values[..1]))
        .unwrap();
    let r = c
        .transaction::<_, diesel::result::Error, _>(async |c| failing.run(c).await)
        .await;
    assert!(r.is_err(), "a duplicate key fails the script");
    let fresh: i64 = script_t::table
        .filter(script_t::id.eq("fresh"))
        .count()
        .get_result(&mut c)
        .await
        .unwrap();
    assert_eq!(
        fresh, 0,
        "the rollback undid the statement before the failure"
    );
    // And the connection is usable afterwards.
    let n: i64 = script_t::table.count().get_result(&mut c).await.unwrap();
    assert_eq!(n, nasty.len() as i64);
    drop_db(&name).await;
}

fn pool_of(name: &str) -> dop::db::DbPool {
    dop::db::connect_pool(&dop::config::DbRole {
        port: 0,
        database_url: dop::config::SecretUrl::new(format!("{MYSQL}/{name}")),
        pool_size: 1,
        pool_timeout: std::time::Duration::from_secs(5),
        ca_file: None,
    })
    .unwrap()
}

fn insert_row(script: &mut Script, id: &str) {
    let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    script
        .push(&diesel::insert_into(script_t::table).values((
            script_t::id.eq(id),
            script_t::amount.eq(rust_decimal::Decimal::ONE),
            script_t::at.eq(at),
            script_t::n.eq(1),
            script_t::ok.eq(true),
        )))
        .unwrap();
}

async fn count(c: &mut AsyncMysqlConnection, id: &str) -> i64 {
    script_t::table
        .filter(script_t::id.eq(id))
        .count()
        .get_result(c)
        .await
        .unwrap()
}

#[derive(diesel::QueryableByName)]
struct ConnId {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

async fn connection_id(c: &mut AsyncMysqlConnection) -> i64 {
    diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id")
        .get_result::<ConnId>(c)
        .await
        .unwrap()
        .id
}

/// `Conn::run_in_transaction`: one round trip for START TRANSACTION, the
/// statements and COMMIT. A failure is rolled back and the connection stays
/// in the pool. A run abandoned after it was sent (its future dropped) is
/// the server's to finish, whole, like a COMMIT whose reply was lost; its
/// connection, in an unknown state, is never handed out again.
#[tokio::test]
async fn a_one_trip_transaction_commits_whole_or_not_at_all() {
    let (name, mut check) = fresh_db().await;
    let pool = pool_of(&name);

    let mut ok = Script::new();
    insert_row(&mut ok, "a");
    insert_row(&mut ok, "b");
    pool.get()
        .await
        .unwrap()
        .run_in_transaction(&ok)
        .await
        .unwrap();
    assert_eq!(
        count(&mut check, "a").await + count(&mut check, "b").await,
        2
    );

    // Fails at its second statement (duplicate key): "c" must not stay,
    // and the same connection serves the next checkout.
    let mut conn = pool.get().await.unwrap();
    let before = connection_id(&mut conn).await;
    let mut bad = Script::new();
    insert_row(&mut bad, "c");
    insert_row(&mut bad, "a");
    assert!(conn.run_in_transaction(&bad).await.is_err());
    drop(conn);
    assert_eq!(count(&mut check, "c").await, 0, "rolled back");
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        connection_id(&mut conn).await,
        before,
        "a rolled-back connection is reused"
    );
    drop(conn);

    // Abandoned while the server sleeps inside the transaction, after "d"
    // was inserted: the connection is discarded, not handed out again in
    // the middle of a transaction, and the server completes the script.
    let mut slow = Script::new();
    insert_row(&mut slow, "d");
    slow.push(&diesel::sql_query("DO SLEEP(2)")).unwrap();
    let mut conn = pool.get().await.unwrap();
    let abandoned = connection_id(&mut conn).await;
    let r = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        conn.run_in_transaction(&slow),
    )
    .await;
    assert!(r.is_err(), "the run was cut short");
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_ne!(
        connection_id(&mut conn).await,
        abandoned,
        "a connection with a transaction possibly open is not reused"
    );
    assert_eq!(
        count(&mut check, "d").await,
        0,
        "not committed before the script ends"
    );
    crate::harness::eventually(
        "the abandoned script to commit whole",
        std::time::Duration::from_secs(10),
        || async {
            (count(
                &mut AsyncMysqlConnection::establish(&format!("{MYSQL}/{name}"))
                    .await
                    .unwrap(),
                "d",
            )
            .await
                == 1)
                .then_some(())
        },
    )
    .await;
    drop(conn);
    drop_db(&name).await;
}
