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
        write_mode: Default::default(),
        max_idle: None,
        conn_max_lifetime: None,
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

// ---- Every column type the roles write, through every write path ----

diesel::table! {
    rt (path, id) {
        path -> Integer,
        id -> BigInt,
        big -> BigInt,
        n -> Integer,
        ascii -> Varchar,
        s -> Nullable<Varchar>,
        txt -> Text,
        ltxt -> Nullable<Text>,
        amount -> Numeric,
        at -> Datetime,
        ok -> Bool,
        bin -> Nullable<Binary>,
    }
}

/// One row of `rt`: the column types of the roles' schemas (BIGINT, INT,
/// CHAR ascii_bin, VARCHAR/TEXT/LONGTEXT utf8mb4, DECIMAL(12,2),
/// DATETIME(6), BOOLEAN, nullable ones) and a byte column.
#[derive(Clone, Debug, PartialEq, diesel::Insertable, diesel::Queryable)]
#[diesel(table_name = rt)]
struct RtRow {
    path: i32,
    id: i64,
    big: i64,
    n: i32,
    ascii: String,
    s: Option<String>,
    txt: String,
    ltxt: Option<String>,
    amount: rust_decimal::Decimal,
    at: chrono::NaiveDateTime,
    ok: bool,
    bin: Option<Vec<u8>>,
}

/// How a row reaches the table.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// `Script` in the text write mode: values inlined as literals.
    Text = 0,
    /// diesel's own prepared statement.
    Diesel = 1,
    /// `Script` in the prepared write mode: the collected binds replayed.
    Replay = 2,
}

async fn round_trip_db() -> (String, dop::db::DbPool, dop::db::DbPool) {
    let (name, mut c) = fresh_db().await;
    c.batch_execute(
        "CREATE TABLE rt (path INT NOT NULL, id BIGINT NOT NULL, big BIGINT NOT NULL, \
         n INT NOT NULL, ascii CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
         s VARCHAR(255) NULL, txt TEXT NOT NULL, ltxt LONGTEXT NULL, \
         amount DECIMAL(12,2) NOT NULL, at DATETIME(6) NOT NULL, ok BOOLEAN NOT NULL, \
         bin VARBINARY(255) NULL, PRIMARY KEY (path, id)) DEFAULT CHARSET=utf8mb4",
    )
    .await
    .unwrap();
    let text = pool_with(&name, dop::config::WriteMode::Text);
    let prepared = pool_with(&name, dop::config::WriteMode::Prepared);
    (name, text, prepared)
}

fn pool_with(name: &str, write_mode: dop::config::WriteMode) -> dop::db::DbPool {
    dop::db::connect_pool(&dop::config::DbRole {
        port: 0,
        database_url: dop::config::SecretUrl::new(format!("{MYSQL}/{name}")),
        pool_size: 1,
        pool_timeout: std::time::Duration::from_secs(5),
        ca_file: None,
        write_mode,
        max_idle: None,
        conn_max_lifetime: None,
    })
    .unwrap()
}

/// Writes `rows` three times (one per `Path`), reads them back, and
/// returns what differs: between the paths byte for byte (every column
/// cast to its binary form, NULL-safe), and against the rows themselves.
async fn write_three_ways(
    text: &dop::db::DbPool,
    prepared: &dop::db::DbPool,
    rows: &[RtRow],
) -> Result<(), String> {
    let mut t = text.get().await.map_err(|e| e.to_string())?;
    let mut p = prepared.get().await.map_err(|e| e.to_string())?;
    diesel::delete(rt::table)
        .execute(&mut *t)
        .await
        .map_err(|e| e.to_string())?;
    let with_path = |path: Path| -> Vec<RtRow> {
        rows.iter()
            .map(|r| RtRow {
                path: path as i32,
                ..r.clone()
            })
            .collect()
    };
    let mut script = Script::new();
    script
        .push(&diesel::insert_into(rt::table).values(with_path(Path::Text)))
        .map_err(|e| e.to_string())?;
    t.run_in_transaction(&script)
        .await
        .map_err(|e| format!("text script: {e}"))?;
    diesel::insert_into(rt::table)
        .values(with_path(Path::Diesel))
        .execute(&mut *t)
        .await
        .map_err(|e| format!("diesel: {e}"))?;
    let mut script = Script::new();
    script
        .push(&diesel::insert_into(rt::table).values(with_path(Path::Replay)))
        .map_err(|e| e.to_string())?;
    p.run_in_transaction(&script)
        .await
        .map_err(|e| format!("prepared script: {e}"))?;

    let cols = [
        "big", "n", "ascii", "s", "txt", "ltxt", "amount", "at", "ok", "bin",
    ];
    let same = cols
        .iter()
        .map(|c| format!("CAST(a.{c} AS BINARY) <=> CAST(b.{c} AS BINARY)"))
        .collect::<Vec<_>>()
        .join(" AND ");
    for other in [Path::Diesel, Path::Replay] {
        let sql = format!(
            "SELECT CAST(COUNT(*) AS SIGNED) AS id FROM rt a JOIN rt b \
             ON b.id = a.id AND a.path = 0 AND b.path = {} WHERE {same}",
            other as i32
        );
        let equal = diesel::sql_query(sql)
            .get_result::<ConnId>(&mut *t)
            .await
            .map_err(|e| e.to_string())?
            .id;
        if equal != rows.len() as i64 {
            return Err(format!(
                "{other:?}: {equal} of {} rows byte-equal to the text path",
                rows.len()
            ));
        }
    }
    for path in [Path::Text, Path::Diesel, Path::Replay] {
        let got: Vec<RtRow> = rt::table
            .filter(rt::path.eq(path as i32))
            .order(rt::id)
            .load(&mut *t)
            .await
            .map_err(|e| e.to_string())?;
        let mut want = with_path(path);
        // CHAR pads with spaces and gives them back stripped.
        for r in &mut want {
            r.ascii.truncate(r.ascii.trim_end_matches(' ').len());
        }
        want.sort_by_key(|r| r.id);
        if got != want {
            let bad = got.iter().zip(&want).find(|(g, w)| g != w);
            return Err(format!("{path:?} stored other values: {bad:?}"));
        }
    }
    Ok(())
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_micro_opt(h, mi, s, us)
        .unwrap()
}

fn hostile_rows() -> Vec<RtRow> {
    let strings = [
        String::new(),
        "'".into(),
        "''".into(),
        "\\".into(),
        "\\'".into(),
        "\\\\x\\".into(),
        "\"`;--/*".into(),
        "'); DROP TABLE rt; --".into(),
        "?".into(),
        "%_%\\%\\_".into(),
        "\0".into(),
        "a\0b\0".into(),
        (1u8..32).map(char::from).collect::<String>() + "\u{7f}",
        "\r\n\t\u{1a}\u{8}".into(),
        "日本語 ünïcödé".into(),
        "🦀𝄞😀\u{10ffff}".into(),
        "\u{feff}\u{200b}\u{2028}".into(),
        "🦀".repeat(255),
        "x".repeat(255),
        "'".repeat(255),
        "\\".repeat(255),
        "_utf8mb4 X'00'".into(),
    ];
    let ascii = [
        String::new(),
        "'".into(),
        "\\".into(),
        "\0".into(),
        (0u8..36).map(char::from).collect(),
        (92u8..128).map(char::from).collect(),
        "f".repeat(36),
        "   lead and trail   ".into(),
    ];
    let amounts = [
        "9999999999.99",
        "-9999999999.99",
        "0.01",
        "-0.01",
        "0.00",
        "1.10",
        "199.98",
    ];
    let ats = [
        at(1000, 1, 1, 0, 0, 0, 0),
        at(9999, 12, 31, 23, 59, 59, 999_999),
        at(1970, 1, 1, 0, 0, 0, 0),
        at(2038, 1, 19, 3, 14, 8, 1),
        at(2024, 2, 29, 12, 0, 0, 500_000),
    ];
    let bigs = [i64::MIN, i64::MAX, 0, -1, 1, i64::MIN + 1];
    let ns = [i32::MIN, i32::MAX, 0, -1];
    let bins: [Option<Vec<u8>>; 6] = [
        None,
        Some(vec![]),
        Some(vec![0xff, 0xfe, 0x00, b'\'', b'\\', 0x80]),
        Some((0u8..=255).take(255).collect()),
        Some(vec![0xc3]),
        Some(vec![0xed, 0xa0, 0x80]),
    ];
    let long = "🦀'\\\0".repeat(16_000);
    (0..strings.len().max(ascii.len()) * 2)
        .map(|i| RtRow {
            path: 0,
            id: i as i64,
            big: bigs[i % bigs.len()],
            n: ns[i % ns.len()],
            ascii: ascii[i % ascii.len()].clone(),
            s: (i % 5 != 4).then(|| strings[i % strings.len()].clone()),
            txt: if i == 3 {
                // The most TEXT holds: 65535 bytes.
                "\\".repeat(65_535)
            } else {
                strings[(i + 7) % strings.len()].clone()
            },
            ltxt: match i % 4 {
                0 => None,
                1 => Some(long.clone()),
                _ => Some(strings[(i + 3) % strings.len()].clone()),
            },
            amount: amounts[i % amounts.len()].parse().unwrap(),
            at: ats[i % ats.len()],
            ok: i % 2 == 0,
            bin: bins[i % bins.len()].clone(),
        })
        .collect()
}

#[tokio::test]
async fn hostile_values_are_stored_alike_by_every_write_path() {
    let (name, text, prepared) = round_trip_db().await;
    let rows = hostile_rows();
    write_three_ways(&text, &prepared, &rows).await.unwrap();
    // One row at a time as well: a statement of one row is its own text.
    for row in &rows {
        write_three_ways(&text, &prepared, std::slice::from_ref(row))
            .await
            .unwrap_or_else(|e| panic!("row {}: {e}", row.id));
    }
    drop((text, prepared));
    drop_db(&name).await;
}

/// Bytes that are not UTF-8, written into a utf8mb4 column: every path
/// refuses them, or every path stores the same bytes (MariaDB 10.11 takes
/// a binary-charset value into utf8mb4 as it is, even in strict mode); and
/// in a binary column they are stored alike.
#[tokio::test]
async fn invalid_utf8_is_treated_alike_by_every_write_path() {
    let (name, text, prepared) = round_trip_db().await;
    let bad: Vec<Vec<u8>> = vec![
        vec![0xff],
        vec![b'a', 0xc3],
        vec![0xed, 0xa0, 0x80],
        vec![0xf4, 0x90, 0x80, 0x80],
        vec![0xc0, 0xaf],
        vec![b'\'', 0xbf, b'\\'],
    ];
    for (id, bytes) in bad.iter().enumerate() {
        let mut outcomes = Vec::new();
        for (path, pool) in [(0, &text), (1, &text), (2, &prepared)] {
            let q = diesel::sql_query(
                "INSERT INTO rt (path, id, big, n, ascii, s, txt, amount, at, ok) \
                 VALUES (?, ?, 0, 0, '', ?, '', 0, '2026-01-01', 0)",
            )
            .into_boxed()
            .bind::<diesel::sql_types::Integer, _>(path)
            .bind::<diesel::sql_types::BigInt, _>(id as i64)
            .bind::<diesel::sql_types::Binary, _>(bytes.clone());
            let mut c = pool.get().await.unwrap();
            let r = if path == 1 {
                q.execute(&mut *c).await.map(drop)
            } else {
                let mut s = Script::new();
                s.push(&q).unwrap();
                c.run_in_transaction(&s).await
            };
            outcomes.push(match r {
                Ok(()) => "stored".to_string(),
                Err(e) => format!("{:?}", dop::db::classify(&e)),
            });
        }
        assert!(
            outcomes.iter().all(|o| *o == outcomes[0]),
            "{bytes:x?}: the paths disagree: {outcomes:?}"
        );
        if outcomes[0] == "stored" {
            let mut c = text.get().await.unwrap();
            let stored: Vec<(i32, Option<String>)> = rt::table
                .filter(rt::id.eq(id as i64))
                .order(rt::path)
                .select((
                    rt::path,
                    diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(
                        "HEX(s)",
                    ),
                ))
                .load(&mut *c)
                .await
                .unwrap();
            let want = bytes.iter().map(|b| format!("{b:02X}")).collect::<String>();
            assert_eq!(
                stored,
                (0..3).map(|p| (p, Some(want.clone()))).collect::<Vec<_>>(),
                "{bytes:x?}: stored byte for byte by every path"
            );
        }
    }
    // Into the byte column they go, alike.
    let rows: Vec<RtRow> = bad
        .iter()
        .enumerate()
        .map(|(i, b)| RtRow {
            path: 0,
            id: i as i64,
            big: 0,
            n: 0,
            ascii: String::new(),
            s: None,
            txt: String::new(),
            ltxt: None,
            amount: rust_decimal::Decimal::ZERO,
            at: at(2026, 1, 1, 0, 0, 0, 0),
            ok: false,
            bin: Some(b.clone()),
        })
        .collect();
    write_three_ways(&text, &prepared, &rows).await.unwrap();
    drop((text, prepared));
    drop_db(&name).await;
}

mod random {
    use proptest::prelude::*;

    use super::*;

    fn text(max: usize) -> impl Strategy<Value = String> {
        let c = prop_oneof![
            4 => any::<char>(),
            1 => prop::sample::select(vec!['\'', '\\', '\0', '%', '_', '?', '"', '`', ';', '\n', '\u{7f}', '🦀']),
        ];
        prop::collection::vec(c, 0..=max).prop_map(String::from_iter)
    }

    fn row() -> impl Strategy<Value = RtRow> {
        let min = at(1000, 1, 1, 0, 0, 0, 0).and_utc().timestamp_micros();
        let max = at(9999, 12, 31, 23, 59, 59, 999_999)
            .and_utc()
            .timestamp_micros();
        (
            (any::<i64>(), any::<i32>(), any::<bool>()),
            prop::collection::vec(0u8..128, 0..=36)
                .prop_map(|b| b.into_iter().map(char::from).collect::<String>()),
            (
                prop::option::of(text(255)),
                text(300),
                prop::option::of(text(2000)),
            ),
            -999_999_999_999i64..=999_999_999_999,
            min..=max,
            prop::option::of(prop::collection::vec(any::<u8>(), 0..=255)),
        )
            .prop_map(
                |((big, n, ok), ascii, (s, txt, ltxt), cents, micros, bin)| RtRow {
                    path: 0,
                    id: 0,
                    big,
                    n,
                    ascii,
                    s,
                    txt,
                    ltxt,
                    amount: rust_decimal::Decimal::new(cents, 2),
                    at: chrono::DateTime::from_timestamp_micros(micros)
                        .unwrap()
                        .naive_utc(),
                    ok,
                    bin,
                },
            )
    }

    /// Random rows, a batch per case, written the three ways. 16 cases by
    /// default; `DOP_PROPTEST_CASES=N` for more.
    #[test]
    fn random_values_are_stored_alike_by_every_write_path() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (name, text, prepared) = rt.block_on(round_trip_db());
        let mut runner = crate::harness::prop_runner(16);
        let batches = prop::collection::vec(row(), 1..20).prop_map(|mut rows| {
            for (i, r) in rows.iter_mut().enumerate() {
                r.id = i as i64;
            }
            rows
        });
        let result = runner.run(&batches, |rows| {
            rt.block_on(write_three_ways(&text, &prepared, &rows))
                .map_err(TestCaseError::fail)
        });
        drop((text, prepared));
        rt.block_on(drop_db(&name));
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}

/// The pool's write mode decides how a script runs, on both paths roles
/// use; a pool that ignored it would run prepared scripts as text.
#[tokio::test]
async fn the_pools_write_mode_decides_how_scripts_run() {
    let (name, _, _) = round_trip_db().await;
    for (mode, want) in [
        (dop::config::WriteMode::Text, 0),
        (dop::config::WriteMode::Prepared, 3),
    ] {
        let pool = pool_with(&name, mode);
        let mut conn = pool.get().await.unwrap();
        let mut script = Script::new();
        for id in 0..3 {
            script
                .push(&diesel::delete(rt::table.filter(rt::id.eq(id))))
                .unwrap();
        }
        let got = crate::harness::script_executes(&mut conn, &script).await;
        assert_eq!(got, (want, want), "{mode:?}: prepared statements executed");
    }
    drop_db(&name).await;
}
