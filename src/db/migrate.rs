//! Embedded migrations, one set per role, and the database creation that
//! precedes them. Several replicas starting together take a MySQL named lock
//! so only one applies migrations at a time.

use anyhow::{bail, Context};
use diesel::{sql_types::BigInt, sql_types::Nullable, Connection, QueryableByName, RunQueryDsl};
use diesel_async::{async_connection_wrapper::AsyncConnectionWrapper, AsyncMysqlConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::role::Role;

pub const ORDER: EmbeddedMigrations = embed_migrations!("migrations/order");
pub const INVENTORY: EmbeddedMigrations = embed_migrations!("migrations/inventory");
pub const PAYMENT: EmbeddedMigrations = embed_migrations!("migrations/payment");

type SyncConn = AsyncConnectionWrapper<AsyncMysqlConnection>;

pub fn migrations_for(role: Role) -> EmbeddedMigrations {
    match role {
        Role::Order => ORDER,
        Role::Inventory => INVENTORY,
        Role::Payment => PAYMENT,
    }
}

#[derive(QueryableByName)]
struct LockResult {
    #[diesel(sql_type = Nullable<BigInt>)]
    got: Option<i64>,
}

/// Splits a database URL into the server URL and the database name.
pub fn split_url(database_url: &str) -> anyhow::Result<(String, String)> {
    let mut url = url::Url::parse(database_url).context("Failed to parse the database URL")?;
    let name = url.path().trim_start_matches('/').to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("database name {name:?} must be letters, digits and underscores");
    }
    url.set_path("");
    Ok((url.to_string(), name))
}

/// Creates the database if missing, then applies pending migrations.
/// Returns how many migrations were applied.
pub async fn migrate(role: Role, database_url: &str) -> anyhow::Result<usize> {
    migrate_with_ca(role, database_url, None).await
}

/// As `migrate`, verifying the server's TLS certificate with `ca_file`.
pub async fn migrate_with_ca(
    role: Role,
    database_url: &str,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<usize> {
    let database_url = database_url.to_string();
    let ca_file = ca_file.map(std::path::Path::to_path_buf);
    tokio::task::spawn_blocking(move || migrate_blocking(role, &database_url, ca_file.as_deref()))
        .await
        .context("migration task panicked")?
}

/// A blocking connection for the migration harness (inside spawn_blocking).
fn sync_conn(url: &str, ca_file: Option<&std::path::Path>) -> diesel::ConnectionResult<SyncConn> {
    match ca_file {
        None => <SyncConn as Connection>::establish(url),
        Some(_) => {
            let conn =
                tokio::runtime::Handle::current().block_on(super::pool::connect(url, ca_file))?;
            Ok(SyncConn::from(conn))
        }
    }
}

fn migrate_blocking(
    role: Role,
    database_url: &str,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<usize> {
    let (server_url, name) = split_url(database_url)?;
    {
        let mut server = sync_conn(&server_url, ca_file)
            .with_context(|| format!("Failed to connect to MySQL for the {role} role"))?;
        diesel::sql_query(format!(
            "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .execute(&mut server)
        .with_context(|| format!("Failed to create database {name}"))?;
    }
    let mut conn = sync_conn(database_url, ca_file)
        .with_context(|| format!("Failed to connect to database {name}"))?;
    let lock = format!("dop_migrate_{name}");
    let got = diesel::sql_query(format!("SELECT GET_LOCK('{lock}', 120) AS got"))
        .get_result::<LockResult>(&mut conn)
        .context("Failed to take the migration lock")?;
    if got.got != Some(1) {
        bail!("another process held the migration lock of {name} for 120 s");
    }
    // Payments and inventory logs that still name orders by UUID need
    // their integer ids first (`carry_order_ids`); refuse before touching
    // the schema rather than half way through the migration.
    if let Err(e) = check_order_ids_mapped(role, &mut conn) {
        let _ = diesel::sql_query(format!("SELECT RELEASE_LOCK('{lock}') AS got"))
            .get_result::<LockResult>(&mut conn);
        return Err(e);
    }
    let result = conn
        .run_pending_migrations(migrations_for(role))
        .map(|v| v.len())
        .map_err(|e| anyhow::anyhow!("Failed to migrate {name}: {e}"));
    let _ = diesel::sql_query(format!("SELECT RELEASE_LOCK('{lock}') AS got"))
        .get_result::<LockResult>(&mut conn);
    result
}

/// Reverts every migration of the role (tests use it to prove down.sql works).
pub async fn revert_all(role: Role, database_url: &str) -> anyhow::Result<usize> {
    let database_url = database_url.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut conn = <SyncConn as Connection>::establish(&database_url)?;
        let v = conn
            .revert_all_migrations(migrations_for(role))
            .map_err(|e| anyhow::anyhow!("Failed to revert: {e}"))?;
        Ok(v.len())
    })
    .await
    .context("revert task panicked")?
}

/// The table of a role that names orders by id, outside orders_db.
fn order_id_table(role: Role) -> Option<&'static str> {
    match role {
        Role::Order => None,
        Role::Inventory => Some("inventory_logs"),
        Role::Payment => Some("payments"),
    }
}

#[derive(QueryableByName)]
struct TextValue {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

#[derive(QueryableByName)]
struct MapRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    old_id: String,
    #[diesel(sql_type = BigInt)]
    new_id: i64,
}

/// The distinct UUID order ids `table` holds while its `order_id` column is
/// still CHAR (before the integer_order_ids migration); none after it, or
/// when the table does not exist yet.
fn uuid_order_ids(conn: &mut SyncConn, table: &str) -> anyhow::Result<Vec<String>> {
    let kind: Vec<TextValue> = diesel::sql_query(format!(
        "SELECT CAST(data_type AS CHAR) AS v FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = '{table}' AND column_name = 'order_id'"
    ))
    .load(conn)
    .context("Failed to read the order_id column's type")?;
    if kind.first().map(|k| k.v.to_ascii_lowercase()) != Some("char".into()) {
        return Ok(Vec::new());
    }
    let ids: Vec<TextValue> = diesel::sql_query(format!(
        "SELECT DISTINCT CAST(order_id AS CHAR) AS v FROM {table}"
    ))
    .load(conn)
    .with_context(|| format!("Failed to read the order ids of {table}"))?;
    Ok(ids.into_iter().map(|t| t.v).collect())
}

/// Fails when `role`'s table names orders by UUIDs that `order_id_map`
/// (filled by `carry_order_ids`) does not map: its integer_order_ids
/// migration would fail half way.
fn check_order_ids_mapped(role: Role, conn: &mut SyncConn) -> anyhow::Result<()> {
    let Some(table) = order_id_table(role) else {
        return Ok(());
    };
    let ids = uuid_order_ids(conn, table)?;
    if ids.is_empty() {
        return Ok(());
    }
    let have: Vec<TextValue> = diesel::sql_query(
        "SELECT CAST(table_name AS CHAR) AS v FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name = 'order_id_map'",
    )
    .load(conn)?;
    let missing = if have.is_empty() {
        ids.len() as i64
    } else {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        diesel::sql_query(format!(
            "SELECT COUNT(DISTINCT t.order_id) AS n FROM {table} t \
             LEFT JOIN order_id_map m ON m.old_id = t.order_id WHERE m.old_id IS NULL"
        ))
        .get_result::<Count>(conn)?
        .n
    };
    if missing > 0 {
        bail!(
            "{table} names {missing} order(s) by UUID with no integer id yet: run `dop migrate` \
             for all three roles (it carries the new ids from orders_db), not the {role} role \
             alone (docs/operations.md, \"Integer order ids\")"
        );
    }
    Ok(())
}

/// Copies, from orders_db's `order_id_map` into `role`'s database, the
/// integer ids of the orders its table still names by UUID, so that its
/// integer_order_ids migration can convert them. The databases are separate
/// servers in production, so this cannot be one SQL statement. Returns how
/// many ids were carried (0 when there is nothing to convert). Fails, before
/// anything is written, if an order has no integer id.
pub async fn carry_order_ids(
    role: Role,
    order_url: &str,
    target_url: &str,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<usize> {
    let (order_url, target_url) = (order_url.to_string(), target_url.to_string());
    let ca_file = ca_file.map(std::path::Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        carry_blocking(role, &order_url, &target_url, ca_file.as_deref())
    })
    .await
    .context("order id carry task panicked")?
}

fn carry_blocking(
    role: Role,
    order_url: &str,
    target_url: &str,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<usize> {
    let Some(table) = order_id_table(role) else {
        return Ok(0);
    };
    // A database that does not exist yet has nothing to convert.
    let Ok(mut target) = sync_conn(target_url, ca_file) else {
        return Ok(0);
    };
    let ids = uuid_order_ids(&mut target, table)?;
    if ids.is_empty() {
        return Ok(0);
    }
    // The ids come from a CHAR(36) ascii column; only canonical UUIDs are
    // written into the SQL text below.
    if let Some(bad) = ids
        .iter()
        .find(|i| crate::domain::canonical_uuid(i).as_ref() != Some(i))
    {
        bail!("{table} holds the order id {bad:?}, which is not a UUID: fix it by hand first");
    }
    let mut orders = sync_conn(order_url, ca_file)
        .context("Failed to connect to the order database to read the new order ids")?;
    let mut map = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let list = chunk
            .iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",");
        let rows: Vec<MapRow> = diesel::sql_query(format!(
            "SELECT CAST(old_id AS CHAR) AS old_id, new_id FROM order_id_map WHERE old_id IN ({list})"
        ))
        .load(&mut orders)
        .context("Failed to read order_id_map (has the order database been migrated first?)")?;
        map.extend(rows);
    }
    if map.len() != ids.len() {
        let known: std::collections::HashSet<&str> =
            map.iter().map(|m| m.old_id.as_str()).collect();
        let unknown: Vec<&String> = ids.iter().filter(|i| !known.contains(i.as_str())).collect();
        bail!(
            "{table} names {} order(s) that orders_db does not have (e.g. {:?}): \
             resolve them by hand, then run `dop migrate` again",
            unknown.len(),
            &unknown[..unknown.len().min(5)]
        );
    }
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS order_id_map (\
           old_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, \
           new_id BIGINT NOT NULL\
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    )
    .execute(&mut target)?;
    for chunk in map.chunks(1000) {
        let values = chunk
            .iter()
            .map(|m| format!("('{}', {})", m.old_id, m.new_id))
            .collect::<Vec<_>>()
            .join(",");
        diesel::sql_query(format!(
            "INSERT IGNORE INTO order_id_map (old_id, new_id) VALUES {values}"
        ))
        .execute(&mut target)?;
    }
    Ok(map.len())
}

/// Applies the role's pending migrations that come before the first one
/// whose name contains `stop` (tests build databases at an older schema
/// with it, to test the migrations that follow on old data).
pub async fn migrate_before(role: Role, database_url: &str, stop: &str) -> anyhow::Result<usize> {
    let (database_url, stop) = (database_url.to_string(), stop.to_string());
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let (server_url, name) = split_url(&database_url)?;
        let mut server = <SyncConn as Connection>::establish(&server_url)?;
        diesel::sql_query(format!(
            "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .execute(&mut server)?;
        let mut conn = <SyncConn as Connection>::establish(&database_url)?;
        let pending = conn
            .pending_migrations(migrations_for(role))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut n = 0;
        for m in pending {
            if m.name().to_string().contains(&stop) {
                break;
            }
            conn.run_migration(&m).map_err(|e| anyhow::anyhow!("{e}"))?;
            n += 1;
        }
        Ok(n)
    })
    .await
    .context("migration task panicked")?
}
