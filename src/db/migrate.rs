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
