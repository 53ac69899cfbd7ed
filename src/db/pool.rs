//! A deadpool of diesel-async MySQL connections per role. A connection whose
//! query failed for want of the server (closed socket, I/O error) is marked
//! and dropped at its next checkout, so the pool heals by itself once the
//! database is back; healthy connections are reused without a ping (the
//! ping costs ~15% throughput, measured on the 2-core bench host).

use std::{
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::{AsyncConnection, AsyncMysqlConnection};

use super::Script;
use crate::config::{DbRole, WriteMode};

/// A pooled connection and the mark its instrumentation sets.
pub struct Conn {
    inner: AsyncMysqlConnection,
    broken: Arc<AtomicBool>,
    /// How `Script`s run on this connection (`database.write_mode`).
    write_mode: WriteMode,
    /// A transaction of `run_in_transaction` may still be open (its future
    /// was dropped part-way): the connection must not be reused.
    open_script: bool,
}

impl Conn {
    /// Runs `script` as one transaction. In the text write mode, in one
    /// round trip:
    /// `START TRANSACTION`, its statements, `COMMIT`. The server stops at a
    /// failing statement and leaves the transaction open, so a failure is
    /// rolled back before returning. Once sent, the script is the server's
    /// to finish, whole or not at all, as with a COMMIT whose reply is lost;
    /// a connection whose run did not finish here (a cancelled future, a
    /// lost server) is discarded by the pool instead of reused mid-script.
    /// In the prepared write mode the same transaction takes one round trip
    /// per statement; a run abandoned part-way leaves its transaction open
    /// on a connection the pool then closes, so the server rolls it back:
    /// still whole or not at all.
    pub async fn run_in_transaction(&mut self, script: &Script) -> diesel::QueryResult<()> {
        use diesel_async::SimpleAsyncConnection;
        if script.is_empty() {
            return Ok(());
        }
        self.open_script = true;
        let run = match self.write_mode {
            WriteMode::Text => {
                let sql = format!("START TRANSACTION;\n{};\nCOMMIT", script.sql());
                self.inner.batch_execute(&sql).await
            }
            WriteMode::Prepared => {
                let inner = &mut self.inner;
                async {
                    inner.batch_execute("START TRANSACTION").await?;
                    script.run_prepared(inner).await?;
                    inner.batch_execute("COMMIT").await
                }
                .await
            }
        };
        match run {
            Ok(()) => {
                self.open_script = false;
                Ok(())
            }
            Err(e) => {
                if self.inner.batch_execute("ROLLBACK").await.is_ok() {
                    self.open_script = false;
                }
                Err(e)
            }
        }
    }
}

impl Deref for Conn {
    type Target = AsyncMysqlConnection;
    fn deref(&self) -> &AsyncMysqlConnection {
        &self.inner
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AsyncMysqlConnection {
        &mut self.inner
    }
}

/// Opens one connection. With `ca_file`, the server's TLS certificate is
/// verified against that CA as well as the public roots (RDS signs with its
/// own CA); TLS itself is asked for in the URL (`?require_ssl=true`).
pub async fn connect(
    url: &str,
    ca_file: Option<&Path>,
) -> diesel::ConnectionResult<AsyncMysqlConnection> {
    let Some(ca) = ca_file else {
        return AsyncMysqlConnection::establish(url).await;
    };
    let bad = |e: &dyn std::fmt::Display| diesel::ConnectionError::BadConnection(e.to_string());
    let opts = mysql_async::Opts::from_url(url).map_err(|e| bad(&e))?;
    let ssl = opts
        .ssl_opts()
        .cloned()
        .unwrap_or_default()
        .with_root_certs(vec![ca.to_path_buf().into()]);
    // The options diesel-async's own `establish` sets.
    let builder = mysql_async::OptsBuilder::from_opts(opts)
        .ssl_opts(ssl)
        .stmt_cache_size(0)
        .client_found_rows(true);
    let conn = mysql_async::Conn::new(builder).await.map_err(|e| bad(&e))?;
    AsyncMysqlConnection::try_from(conn).await
}

/// Creates connections and refuses to hand out marked ones.
pub struct Manager {
    url: String,
    ca_file: Option<PathBuf>,
    write_mode: WriteMode,
    /// `conn_max_lifetime`: an older connection is replaced at checkout.
    max_lifetime: Option<Duration>,
}

/// The instrumentation of a pooled connection: it marks the connection
/// broken when a query failed for want of the server, and it is where
/// `Script::run`, handed a bare `AsyncMysqlConnection` inside a diesel
/// transaction, finds the pool's write mode (diesel's instrumentation can
/// be downcast; the connection has no other slot for our data).
struct PoolInstrumentation {
    broken: Arc<AtomicBool>,
    write_mode: WriteMode,
}

impl Instrumentation for PoolInstrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { error: Some(e), .. } = event {
            if super::errors::classify(e) == super::errors::ErrorClass::Connection {
                self.broken.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// The write mode of the pool `conn` comes from; text for a connection
/// opened outside a pool.
pub fn write_mode(conn: &mut AsyncMysqlConnection) -> WriteMode {
    conn.instrumentation()
        .downcast_ref::<PoolInstrumentation>()
        .map_or(WriteMode::Text, |i| i.write_mode)
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = diesel::ConnectionError;

    async fn create(&self) -> Result<Conn, diesel::ConnectionError> {
        let mut inner = connect(&self.url, self.ca_file.as_deref()).await?;
        let broken = Arc::new(AtomicBool::new(false));
        inner.set_instrumentation(PoolInstrumentation {
            broken: broken.clone(),
            write_mode: self.write_mode,
        });
        Ok(Conn {
            inner,
            broken,
            write_mode: self.write_mode,
            open_script: false,
        })
    }

    async fn recycle(
        &self,
        conn: &mut Conn,
        metrics: &Metrics,
    ) -> RecycleResult<diesel::ConnectionError> {
        use diesel_async::pooled_connection::PoolableConnection;
        if conn.open_script || conn.broken.load(Ordering::Relaxed) || conn.inner.is_broken() {
            return Err(RecycleError::message("connection lost its server"));
        }
        if self.max_lifetime.is_some_and(|max| metrics.age() > max) {
            return Err(RecycleError::message(
                "connection reached its maximum lifetime",
            ));
        }
        Ok(())
    }
}

pub type DbPool = managed::Pool<Manager>;
pub type PoolError = managed::PoolError<diesel::ConnectionError>;

/// Builds the pool; connections are opened lazily, so this does not touch
/// the database (a role starts, and reports not ready, while MySQL is down).
pub fn connect_pool(db: &DbRole) -> anyhow::Result<DbPool> {
    let manager = Manager {
        url: db.database_url.expose().to_string(),
        ca_file: db.ca_file.clone(),
        write_mode: db.write_mode,
        max_lifetime: db.conn_max_lifetime,
    };
    let pool = managed::Pool::builder(manager)
        .max_size(db.pool_size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(db.pool_timeout))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()?;
    Ok(pool)
}

/// Closes idle connections beyond `max_idle` (Go's SetMaxIdleConns, which
/// deadpool has no setting for); called periodically by each role.
pub fn trim_idle(pool: &DbPool, max_idle: usize) -> usize {
    let mut kept = 0usize;
    pool.retain(|_, _| {
        kept = kept.saturating_add(1);
        kept <= max_idle
    })
    .removed
    .len()
}
