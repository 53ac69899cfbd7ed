//! Layered configuration: built-in defaults, `config/dop.toml`, the `--config`
//! file, `DOP_*` environment variables, then the original Go system's
//! variables. Secrets are wrapped so they never print.

use std::{fmt, path::Path, time::Duration};

use anyhow::{bail, Context};
use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Serialize};

use crate::role::Role;

/// A value that must never reach a log line or `dop config` in clear.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is handed to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

/// A connection URL whose password is redacted when shown.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The URL with its password replaced, safe for logs and `dop config`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("REDACTED"));
                }
                u.to_string()
            }
            Err(_) => "[unparsable url]".to_string(),
        }
    }
}

/// Where the broker is, parsed from an `amqp://` or `amqps://` URL (user
/// and password percent-decoded, `%2f` as the `/` vhost). Checked when the
/// configuration loads; `messaging::broker` turns it into connection
/// arguments.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpEndpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
    pub heartbeat: Option<u16>,
}

impl AmqpEndpoint {
    pub fn parse(url: &SecretUrl) -> anyhow::Result<Self> {
        let u = url::Url::parse(url.expose()).context("not a URL")?;
        let tls = match u.scheme() {
            "amqp" => false,
            "amqps" => true,
            other => bail!("scheme must be amqp:// or amqps://, not {other}://"),
        };
        let host = u.host_str().context("no host in the URL")?.to_string();
        let port = u.port().unwrap_or(if tls { 5671 } else { 5672 });
        let user = if u.username().is_empty() {
            "guest".to_string()
        } else {
            percent_decode(u.username())
        };
        let password = u
            .password()
            .map(percent_decode)
            .unwrap_or_else(|| "guest".to_string());
        let path = u.path().trim_start_matches('/');
        let vhost = if path.is_empty() {
            "/".to_string()
        } else {
            percent_decode(path)
        };
        let mut heartbeat = None;
        for (k, v) in u.query_pairs() {
            if k == "heartbeat" {
                heartbeat = Some(v.parse().context("heartbeat must be a number of seconds")?);
            }
        }
        Ok(Self {
            tls,
            host,
            port,
            user,
            password,
            vhost,
            heartbeat,
        })
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Config {
    /// `json`, `pretty`, or `auto` (JSON unless stdout is a terminal).
    pub log_format: String,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    pub order: OrderConfig,
    pub inventory: InventoryConfig,
    pub payment: PaymentConfig,
    pub rabbitmq: RabbitConfig,
    pub retry: RetryConfig,
    pub recovery: RecoveryConfig,
    pub saga: SagaConfig,
    pub outbox: OutboxConfig,
    pub retention: RetentionConfig,
    pub admin: AdminConfig,
    pub shutdown: ShutdownConfig,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
}

/// What every role has: its port and its database.
#[derive(Clone, Debug)]
pub struct DbRole {
    pub port: u16,
    pub database_url: SecretUrl,
    pub pool_size: usize,
    pub pool_timeout: Duration,
    pub ca_file: Option<std::path::PathBuf>,
    /// How `db::Script` sends the writes of a transaction.
    pub write_mode: WriteMode,
    /// Idle connections kept at most; more are closed (`DB_MAX_IDLE_CONNS`).
    pub max_idle: Option<usize>,
    /// A connection older than this is closed instead of reused
    /// (`DB_CONN_MAX_LIFETIME_MIN`).
    pub conn_max_lifetime: Option<Duration>,
}

/// How the writes of a batched transaction (`db::Script`) reach the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// The values written into the SQL as literals, every statement of the
    /// transaction in one round trip (docs/design/sql-text.md).
    #[default]
    Text,
    /// Each statement a prepared statement with its bound values, one round
    /// trip each: the reference the text mode is tested against, and a way
    /// out should the text mode ever be in doubt.
    Prepared,
}

/// Settings shared by the roles' databases.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DatabaseConfig {
    /// `text` or `prepared` (`DOP_DATABASE__WRITE_MODE`).
    pub write_mode: WriteMode,
}

// Each role's section repeats the database keys rather than flattening a
// shared struct: figment loses the key name of an error inside a flattened
// struct ("order: invalid value" instead of "order.port: ...").
macro_rules! role_section {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Deserialize, Serialize)]
        pub struct $name {
            pub port: u16,
            pub database_url: SecretUrl,
            pub pool_size: usize,
            /// How long a request waits for a pooled connection before 503.
            #[serde(with = "humantime_serde")]
            pub pool_timeout: Duration,
            /// A PEM CA to verify the server's TLS certificate with (RDS's
            /// bundle), besides the public roots.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub database_ca_file: Option<std::path::PathBuf>,
            /// Idle connections kept at most (none: every idle one is kept).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_idle: Option<usize>,
            /// Connections older than this are closed rather than reused.
            #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
            pub conn_max_lifetime: Option<Duration>,
            $($(#[$fm])* pub $field: $ty,)*
        }
        impl $name {
            pub fn db(&self) -> DbRole {
                DbRole {
                    port: self.port,
                    database_url: self.database_url.clone(),
                    pool_size: self.pool_size,
                    pool_timeout: self.pool_timeout,
                    ca_file: self.database_ca_file.clone(),
                    write_mode: WriteMode::default(),
                    max_idle: self.max_idle,
                    conn_max_lifetime: self.conn_max_lifetime,
                }
            }
        }
    };
}

role_section!(OrderConfig {});

role_section!(InventoryConfig {
    /// Attempts at a batch of inventory commands that hits a transient
    /// database error (deadlock, lock wait timeout, lost connection) before
    /// its commands go to the retry queue.
    reserve_max_retries: u32,
    /// Products created at start when missing (existing stock is never
    /// touched); the original system's 1001 (100 units) and 1002 (50) by
    /// default, none when empty.
    seed: Vec<SeedProduct>,
});

/// One product of `inventory.seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct SeedProduct {
    pub product_id: i64,
    pub available_qty: i64,
}

/// The original system's seed: what its happy-path script orders from.
pub fn default_seed() -> Vec<SeedProduct> {
    vec![
        SeedProduct {
            product_id: 1001,
            available_qty: 100,
        },
        SeedProduct {
            product_id: 1002,
            available_qty: 50,
        },
    ]
}

role_section!(PaymentConfig {
    /// Share of payments declined, 0.0 to 1.0.
    failure_rate: f64,
});

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RabbitConfig {
    /// The broker, when there is one address.
    pub url: SecretUrl,
    /// The nodes of a clustered broker, tried in turn on every (re)connect;
    /// when not empty it replaces `url`. In the environment
    /// (`DOP_RABBITMQ__URLS`) a comma-separated list.
    #[serde(default, deserialize_with = "url_list")]
    pub urls: Vec<SecretUrl>,
    /// The type of every queue dop declares (docs/operations.md, "Queue
    /// types"): `classic`, or `quorum` for a clustered broker.
    #[serde(default)]
    pub queue_type: QueueType,
    /// Deliveries in flight per consumer.
    pub prefetch: u16,
    /// How long a publish waits for its confirm.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// For `amqps://`: a PEM CA certificate to trust besides the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// The type of the queues of the topology. A queue's type is fixed when it
/// is first declared; docs/operations.md tells how to move from one to the
/// other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// One node holds the queue: what the original system declares, and the
    /// cheapest on a single broker (docs/design/queue-types.md).
    #[default]
    Classic,
    /// Replicated over the cluster's nodes (Raft); survives losing a node.
    Quorum,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

impl RabbitConfig {
    /// The addresses to try, in order: `urls`, or `url` alone.
    pub fn endpoints(&self) -> Vec<SecretUrl> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }
}

/// `rabbitmq.urls` from a TOML list or from one comma-separated string (the
/// form an environment variable has).
fn url_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SecretUrl>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        One(String),
    }
    let items = match Form::deserialize(d)? {
        Form::List(v) => v,
        Form::One(s) => s.split(',').map(str::to_string).collect(),
    };
    Ok(items
        .into_iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .map(SecretUrl::new)
        .collect())
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RetryConfig {
    pub max_attempts: u32,
    /// TTL of the `Q.retry` queues.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RecoveryConfig {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub stuck_after: Duration,
}

/// Deadlines of a saga going forward (docs/design/barrier.md). A saga past
/// one compensates by itself; 0 turns a deadline off.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SagaConfig {
    /// Longest the reserve or the payment may go unanswered.
    #[serde(with = "humantime_serde")]
    pub step_timeout: Duration,
    /// Longest a saga may take from its order to its last forward step.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// How often the order role looks for sagas past a deadline.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct OutboxConfig {
    /// How often the sweeper looks for rows left behind (crash, broker down).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Rows younger than this are left to the relay's fast path.
    #[serde(with = "humantime_serde")]
    pub sweep_after: Duration,
    pub batch_size: usize,
}

/// How long data that is no longer needed is kept (docs/operations.md,
/// "Retention").
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RetentionConfig {
    /// The deduplication window: `processed_events` rows older than this
    /// are deleted, and `dop admin dlq redrive` refuses messages this old.
    #[serde(with = "humantime_serde")]
    pub dedup: Duration,
    /// How often each role deletes what has aged out.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Rows per DELETE: each is a short statement of its own.
    pub batch_size: u32,
    /// Optional: terminal sagas (with their timelines and orders) whose
    /// last change is older than this are deleted by the order role. Off
    /// (`None`) by default. Must be at least `dedup`, so that a late copy
    /// of a saga's message is still caught by its deduplication record.
    #[serde(default, with = "humantime_serde")]
    pub sagas: Option<Duration>,
}

impl RetentionConfig {
    /// The longest a copy of a message can spend in dop's retry queues
    /// before it is handled (`retry.delay` × `retry.max_attempts`).
    pub fn retry_span(retry: &RetryConfig) -> Duration {
        retry.delay.saturating_mul(retry.max_attempts)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AdminConfig {
    /// The operator's bearer token: saga retry, inventory writes, and the
    /// admin reads. When no token at all is set, operator actions are
    /// refused and the admin reads and inventory writes are open (local
    /// development).
    pub token: Secret,
    /// A read-only bearer token: the admin reads (GET /admin/sagas...) and
    /// nothing else.
    #[serde(default)]
    pub read_token: Secret,
    /// Where `dop admin sagas` finds the order role.
    pub url: String,
}

/// Bounds on what one HTTP client can hold (docs/operations.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct HttpConfig {
    /// A connection that has not sent a whole request head this long after
    /// it began is closed (`DOP_HTTP__HEADER_READ_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request not answered within this gets 503 `TIMEOUT`
    /// (`DOP_HTTP__REQUEST_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections served at once; one more is answered 503 with
    /// `Retry-After` and closed (`DOP_HTTP__MAX_CONNECTIONS`).
    pub max_connections: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ShutdownConfig {
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

fn default_url(db: &str) -> SecretUrl {
    SecretUrl::new(format!("mysql://root@127.0.0.1:3306/{db}"))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            log_format: "auto".into(),
            migrate_on_start: true,
            order: OrderConfig {
                port: 8081,
                database_url: default_url("orders_db"),
                pool_size: 32,
                pool_timeout: Duration::from_secs(5),
                database_ca_file: None,
                max_idle: None,
                conn_max_lifetime: None,
            },
            inventory: InventoryConfig {
                port: 8082,
                database_url: default_url("inventory_db"),
                pool_size: 32,
                pool_timeout: Duration::from_secs(5),
                database_ca_file: None,
                max_idle: None,
                conn_max_lifetime: None,
                reserve_max_retries: 50,
                seed: default_seed(),
            },
            payment: PaymentConfig {
                port: 8083,
                database_url: default_url("payments_db"),
                pool_size: 32,
                pool_timeout: Duration::from_secs(5),
                database_ca_file: None,
                max_idle: None,
                conn_max_lifetime: None,
                failure_rate: 0.0,
            },
            rabbitmq: RabbitConfig {
                url: SecretUrl::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
                urls: Vec::new(),
                queue_type: QueueType::Classic,
                prefetch: 200,
                confirm_timeout: Duration::from_secs(10),
                ca_file: None,
            },
            retry: RetryConfig {
                max_attempts: 5,
                // The original's TTL (x-message-ttl 5000 on every Q.retry):
                // a queue declared again with another TTL is refused.
                delay: Duration::from_secs(5),
            },
            recovery: RecoveryConfig {
                interval: Duration::from_secs(30),
                stuck_after: Duration::from_secs(30),
            },
            // Several recovery re-sends before a step gives up; the whole
            // saga gets a few step timeouts.
            saga: SagaConfig {
                step_timeout: Duration::from_secs(120),
                deadline: Duration::from_secs(600),
                check_interval: Duration::from_secs(5),
            },
            outbox: OutboxConfig {
                sweep_interval: Duration::from_secs(2),
                sweep_after: Duration::from_secs(3),
                batch_size: 500,
            },
            retention: RetentionConfig {
                dedup: Duration::from_secs(7 * 24 * 3600),
                interval: Duration::from_secs(60),
                batch_size: 1000,
                sagas: None,
            },
            admin: AdminConfig {
                token: Secret::default(),
                read_token: Secret::default(),
                url: "http://127.0.0.1:8081".into(),
            },
            shutdown: ShutdownConfig {
                grace: Duration::from_secs(20),
            },
            database: DatabaseConfig {
                write_mode: WriteMode::Text,
            },
            http: HttpConfig {
                header_read_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(30),
                max_connections: 1024,
            },
        }
    }
}

/// Where a configuration comes from: the process environment in production,
/// a map in tests.
pub trait EnvSource {
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Loads the layers in order; `role` decides which database `DB_NAME` names.
    pub fn load(file: Option<&Path>, role: Option<Role>) -> anyhow::Result<Self> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("DOP_CONFIG").map(Into::into));
        let mut fig = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file("config/dop.toml"));
        if let Some(path) = &file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = dop_env(fig);
        Self::finish(fig, &ProcessEnv, role)
    }

    /// Applies the original system's variables, extracts and validates.
    pub fn finish(fig: Figment, env: &dyn EnvSource, role: Option<Role>) -> anyhow::Result<Self> {
        let fig = legacy_layer(fig, env, role)?;
        let cfg: Config = fig.extract().map_err(extract_error)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.payment.failure_rate) {
            bail!(
                "invalid configuration: payment.failure_rate (PAYMENT_FAILURE_RATE): {} is not between 0.0 and 1.0",
                self.payment.failure_rate
            );
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.inventory.seed {
            if !(1..=crate::domain::MAX_ID).contains(&p.product_id) {
                bail!(
                    "invalid configuration: inventory.seed: product_id {} is not between 1 and {}",
                    p.product_id,
                    crate::domain::MAX_ID
                );
            }
            if !(0..=crate::domain::MAX_QTY).contains(&p.available_qty) {
                bail!(
                    "invalid configuration: inventory.seed: available_qty {} of product {} is not between 0 and {}",
                    p.available_qty,
                    p.product_id,
                    crate::domain::MAX_QTY
                );
            }
            if !seen.insert(p.product_id) {
                bail!(
                    "invalid configuration: inventory.seed: product {} is listed twice",
                    p.product_id
                );
            }
        }
        for role in Role::ALL {
            let key = role.as_str();
            let db = self.db(role);
            let url = url::Url::parse(db.database_url.expose())
                .map_err(|e| anyhow::anyhow!("invalid configuration: {key}.database_url: {e}"))?;
            if url.scheme() != "mysql" {
                bail!("invalid configuration: {key}.database_url: scheme must be mysql://");
            }
            if url.path().trim_start_matches('/').is_empty() {
                bail!("invalid configuration: {key}.database_url: no database name in the URL");
            }
            if db.pool_size == 0 {
                bail!("invalid configuration: {key}.pool_size must be at least 1");
            }
        }
        AmqpEndpoint::parse(&self.rabbitmq.url)
            .map_err(|e| anyhow::anyhow!("invalid configuration: rabbitmq.url: {e}"))?;
        let mut vhosts = std::collections::BTreeSet::new();
        for (i, url) in self.rabbitmq.urls.iter().enumerate() {
            let e = AmqpEndpoint::parse(url).map_err(|e| {
                anyhow::anyhow!(
                    "invalid configuration: rabbitmq.urls (address {}): {e}",
                    i + 1
                )
            })?;
            vhosts.insert(e.vhost);
        }
        if vhosts.len() > 1 {
            // The addresses are nodes of one broker: messages published
            // through one must be consumable through every other.
            bail!("invalid configuration: rabbitmq.urls: every address must name the same vhost (found {})", vhosts.into_iter().collect::<Vec<_>>().join(", "));
        }
        if self.rabbitmq.prefetch == 0 {
            bail!("invalid configuration: rabbitmq.prefetch must be at least 1");
        }
        if self.retry.max_attempts == 0 {
            bail!("invalid configuration: retry.max_attempts must be at least 1");
        }
        if self.http.max_connections == 0 {
            bail!("invalid configuration: http.max_connections must be at least 1");
        }
        if self.http.header_read_timeout.is_zero() || self.http.request_timeout.is_zero() {
            bail!("invalid configuration: http.header_read_timeout and http.request_timeout must be above zero");
        }
        let span = RetentionConfig::retry_span(&self.retry);
        if self.retention.dedup <= span.saturating_mul(2) {
            bail!(
                "invalid configuration: retention.dedup ({}) must be more than twice retry.delay × retry.max_attempts ({}): a message still being retried must not outlive its deduplication record",
                humantime_serde::re::humantime::format_duration(self.retention.dedup),
                humantime_serde::re::humantime::format_duration(span)
            );
        }
        if self.retention.interval.is_zero() {
            bail!("invalid configuration: retention.interval must be above zero");
        }
        if self.saga.check_interval.is_zero() {
            bail!("invalid configuration: saga.check_interval must be above zero");
        }
        if !(1..=100_000).contains(&self.retention.batch_size) {
            bail!("invalid configuration: retention.batch_size must be between 1 and 100000");
        }
        if let Some(sagas) = self.retention.sagas {
            if sagas < self.retention.dedup {
                bail!(
                    "invalid configuration: retention.sagas ({}) must be at least retention.dedup ({}): a saga must outlive the deduplication records of its messages",
                    humantime_serde::re::humantime::format_duration(sagas),
                    humantime_serde::re::humantime::format_duration(self.retention.dedup)
                );
            }
        }
        if !matches!(self.log_format.as_str(), "auto" | "json" | "pretty") {
            bail!("invalid configuration: log_format must be auto, json or pretty");
        }
        Ok(())
    }

    pub fn db(&self, role: Role) -> DbRole {
        let mut db = match role {
            Role::Order => self.order.db(),
            Role::Inventory => self.inventory.db(),
            Role::Payment => self.payment.db(),
        };
        db.write_mode = self.database.write_mode;
        db
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        for url in [
            &mut shown.order.database_url,
            &mut shown.inventory.database_url,
            &mut shown.payment.database_url,
        ] {
            *url = SecretUrl::new(url.redacted());
        }
        shown.rabbitmq.url = SecretUrl::new(shown.rabbitmq.url.redacted());
        for url in &mut shown.rabbitmq.urls {
            *url = SecretUrl::new(url.redacted());
        }
        for token in [&mut shown.admin.token, &mut shown.admin.read_token] {
            if !token.is_empty() {
                *token = Secret::new("[redacted]");
            }
        }
        toml::to_string_pretty(&shown).context("Failed to render the configuration")
    }
}

/// The keys whose values are secrets: never parsed from the environment as
/// anything but text, never shown in an error.
const SECRET_KEYS: [&str; 6] = [
    "admin.token",
    "order.database_url",
    "inventory.database_url",
    "payment.database_url",
    "rabbitmq.url",
    "rabbitmq.urls",
];

/// The `DOP_*` variables (`DOP_SECTION__KEY`). figment reads a variable's
/// value as TOML-ish data (`123456` an integer, `true` a boolean, `007`
/// the number 7), which would mangle a secret or put it in a type error:
/// secrets are taken out of that parsing and merged as the exact text.
pub fn dop_env(fig: Figment) -> Figment {
    let mut ignored = vec!["config"];
    ignored.extend(SECRET_KEYS);
    let mut fig = fig.merge(Env::prefixed("DOP_").split("__").ignore(&ignored));
    for (var, value) in std::env::vars() {
        let Some(rest) = var
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("DOP_"))
            .map(|_| &var[4..])
        else {
            continue;
        };
        let key = rest.replace("__", ".").to_ascii_lowercase();
        if SECRET_KEYS.contains(&key.as_str()) {
            fig = fig.merge(Serialized::default(&key, value));
        }
    }
    fig
}

/// A figment error as one line naming the key; for a secret's key the
/// value is left out, whatever its shape (figment's messages quote it).
fn extract_error(e: figment::Error) -> anyhow::Error {
    let key = e.path.join(".");
    if SECRET_KEYS.contains(&key.as_str()) {
        anyhow::anyhow!("invalid configuration: {key}: must be a string (value not shown)")
    } else {
        anyhow::anyhow!("invalid configuration: {key}: {}", e.kind)
    }
}

/// The original Go system's environment variables, applied last.
fn legacy_layer(
    mut fig: Figment,
    env: &dyn EnvSource,
    role: Option<Role>,
) -> anyhow::Result<Figment> {
    fn parsed<T: std::str::FromStr>(
        env: &dyn EnvSource,
        var: &str,
        key: &str,
    ) -> anyhow::Result<Option<T>>
    where
        T::Err: fmt::Display,
    {
        match env.var(var) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|e| anyhow::anyhow!("invalid configuration: {key} ({var}={v:?}): {e}")),
        }
    }
    if let Some(rate) = parsed::<f64>(env, "PAYMENT_FAILURE_RATE", "payment.failure_rate")? {
        fig = fig.merge(Serialized::default("payment.failure_rate", rate));
    }
    if let Some(n) = parsed::<u32>(
        env,
        "INVENTORY_RESERVE_MAX_RETRIES",
        "inventory.reserve_max_retries",
    )? {
        fig = fig.merge(Serialized::default("inventory.reserve_max_retries", n));
    }
    if let Some(n) = parsed::<u32>(env, "RETRY_MAX_ATTEMPTS", "retry.max_attempts")? {
        fig = fig.merge(Serialized::default("retry.max_attempts", n));
    }
    // The original's pool settings (Go's database/sql) apply to every
    // role's pool: open = the pool size, idle = idle connections kept,
    // lifetime in minutes = the age at which a connection is replaced.
    let open = parsed::<usize>(env, "DB_MAX_OPEN_CONNS", "*.pool_size")?;
    let idle = parsed::<usize>(env, "DB_MAX_IDLE_CONNS", "*.max_idle")?;
    let life = parsed::<u64>(env, "DB_CONN_MAX_LIFETIME_MIN", "*.conn_max_lifetime")?;
    for r in Role::ALL {
        let key = r.as_str();
        if let Some(n) = open {
            fig = fig.merge(Serialized::default(&format!("{key}.pool_size"), n));
        }
        if let Some(n) = idle {
            fig = fig.merge(Serialized::default(&format!("{key}.max_idle"), n));
        }
        if let Some(min) = life {
            let secs = min.checked_mul(60).context(
                "invalid configuration: *.conn_max_lifetime (DB_CONN_MAX_LIFETIME_MIN): too large",
            )?;
            fig = fig.merge(Serialized::default(
                &format!("{key}.conn_max_lifetime"),
                format!("{secs}s"),
            ));
        }
    }
    if let Some(url) = env.var("RABBITMQ_URL") {
        fig = fig.merge(Serialized::default("rabbitmq.url", url));
    }
    for (var, key) in [
        ("ORDER_PORT", "order.port"),
        ("INVENTORY_PORT", "inventory.port"),
        ("PAYMENT_PORT", "payment.port"),
    ] {
        if let Some(port) = parsed::<u16>(env, var, key)? {
            fig = fig.merge(Serialized::default(key, port));
        }
    }
    let host = env.var("DB_HOST");
    let port = parsed::<u16>(env, "DB_PORT", "DB_PORT")?;
    let user = env.var("DB_USER");
    let pass = env.var("DB_PASS");
    let name = env.var("DB_NAME");
    if host.is_some() || port.is_some() || user.is_some() || pass.is_some() || name.is_some() {
        // DB_* describe one server; DB_NAME names the database of the one
        // role being served (as each original binary had its own).
        let current: Config = fig.extract().map_err(extract_error)?;
        for r in Role::ALL {
            let mut url = url::Url::parse(current.db(r).database_url.expose()).map_err(|e| {
                anyhow::anyhow!("invalid configuration: {}.database_url: {e}", r.as_str())
            })?;
            let bad = |what: &str| {
                anyhow::anyhow!("invalid configuration: {what} cannot be used in a URL")
            };
            if let Some(h) = &host {
                url.set_host(Some(h)).map_err(|_| bad("DB_HOST"))?;
            }
            if let Some(p) = port {
                url.set_port(Some(p)).map_err(|_| bad("DB_PORT"))?;
            }
            if let Some(u) = &user {
                url.set_username(u).map_err(|_| bad("DB_USER"))?;
            }
            if let Some(p) = &pass {
                url.set_password(Some(p)).map_err(|_| bad("DB_PASS"))?;
            }
            if let (Some(n), Some(only)) = (&name, role) {
                if only == r {
                    url.set_path(&format!("/{n}"));
                }
            }
            fig = fig.merge(Serialized::default(
                &format!("{}.database_url", r.as_str()),
                url.to_string(),
            ));
        }
    }
    Ok(fig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl EnvSource for MapEnv {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).map(|v| v.to_string())
        }
    }

    fn load(vars: &[(&'static str, &'static str)], role: Option<Role>) -> anyhow::Result<Config> {
        let fig = Figment::from(Serialized::defaults(Config::default()));
        Config::finish(fig, &MapEnv(vars.iter().copied().collect()), role)
    }

    #[test]
    fn defaults_work_with_no_configuration() {
        let cfg = load(&[], None).unwrap();
        assert_eq!(cfg.order.port, 8081);
        assert_eq!(cfg.payment.failure_rate, 0.0);
        assert_eq!(cfg.inventory.reserve_max_retries, 50);
        assert_eq!(cfg.recovery.interval, Duration::from_secs(30));
        assert_eq!(cfg.saga.step_timeout, Duration::from_secs(120));
        assert_eq!(cfg.saga.deadline, Duration::from_secs(600));
        // The original's retry queues hold a message 5000 ms; the same TTL
        // lets a dop role and an original service declare the same queues.
        assert_eq!(cfg.retry.delay, Duration::from_millis(5000));
    }

    #[test]
    fn original_variables_override() {
        let cfg = load(
            &[
                ("PAYMENT_FAILURE_RATE", "0.25"),
                ("INVENTORY_RESERVE_MAX_RETRIES", "7"),
                ("ORDER_PORT", "9001"),
                ("RABBITMQ_URL", "amqp://u:p@mq:5672/%2f"),
                ("DB_HOST", "db.internal"),
                ("DB_USER", "dop"),
                ("DB_PASS", "s3cret"),
                ("DB_NAME", "orders_x"),
            ],
            Some(Role::Order),
        )
        .unwrap();
        assert_eq!(cfg.payment.failure_rate, 0.25);
        assert_eq!(cfg.inventory.reserve_max_retries, 7);
        assert_eq!(cfg.order.port, 9001);
        assert_eq!(
            cfg.order.database_url.expose(),
            "mysql://dop:s3cret@db.internal:3306/orders_x"
        );
        // DB_NAME applies only to the role being served.
        assert_eq!(
            cfg.payment.database_url.expose(),
            "mysql://dop:s3cret@db.internal:3306/payments_db"
        );
        let shown = cfg.redacted_toml().unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("u:p@"), "{shown}");
    }

    #[test]
    fn the_originals_retry_and_pool_variables_take_effect() {
        let cfg = load(
            &[
                ("RETRY_MAX_ATTEMPTS", "9"),
                ("DB_MAX_OPEN_CONNS", "50"),
                ("DB_MAX_IDLE_CONNS", "25"),
                ("DB_CONN_MAX_LIFETIME_MIN", "5"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(cfg.retry.max_attempts, 9);
        for role in Role::ALL {
            let db = cfg.db(role);
            assert_eq!(db.pool_size, 50, "{role}");
            assert_eq!(db.max_idle, Some(25), "{role}");
            assert_eq!(
                db.conn_max_lifetime,
                Some(Duration::from_secs(300)),
                "{role}"
            );
        }
        // Unset: dop's defaults (no idle cap, no lifetime).
        let cfg = load(&[], None).unwrap();
        assert_eq!(cfg.retry.max_attempts, 5);
        assert_eq!(cfg.db(Role::Order).pool_size, 32);
        assert_eq!(cfg.db(Role::Order).max_idle, None);
        assert_eq!(cfg.db(Role::Order).conn_max_lifetime, None);
        for (var, bad) in [
            ("RETRY_MAX_ATTEMPTS", "0"),
            ("RETRY_MAX_ATTEMPTS", "x"),
            ("DB_MAX_OPEN_CONNS", "0"),
            ("DB_MAX_IDLE_CONNS", "-1"),
            ("DB_CONN_MAX_LIFETIME_MIN", "ten"),
        ] {
            let err = load(&[(var, bad)], None).unwrap_err().to_string();
            assert!(err.contains("invalid configuration"), "{var}={bad}: {err}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load(&[("PAYMENT_FAILURE_RATE", "abc")], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("payment.failure_rate"), "{err}");
        let err = load(&[("PAYMENT_FAILURE_RATE", "1.5")], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("payment.failure_rate"), "{err}");
        let err = load(&[("ORDER_PORT", "70000")], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("order.port"), "{err}");
        let err = load(&[("RABBITMQ_URL", "not a url")], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rabbitmq.url"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn both_admin_tokens_come_from_the_environment_and_never_show() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DOP_ADMIN__TOKEN", "op-s3cret");
            jail.set_env("DOP_ADMIN__READ_TOKEN", "read-s3cret");
            let fig = Figment::from(Serialized::defaults(Config::default()))
                .merge(Env::prefixed("DOP_").split("__"));
            let cfg = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap();
            assert_eq!(cfg.admin.token.expose(), "op-s3cret");
            assert_eq!(cfg.admin.read_token.expose(), "read-s3cret");
            let shown = cfg.redacted_toml().unwrap();
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(!format!("{cfg:?}").contains("s3cret"));
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn the_dedup_window_is_on_by_default_and_outlives_every_retry() {
        let cfg = load(&[], None).unwrap();
        assert_eq!(cfg.retention.dedup, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(cfg.retention.interval, Duration::from_secs(60));
        figment::Jail::expect_with(|jail| {
            jail.set_env("DOP_RETRY__DELAY", "1s");
            jail.set_env("DOP_RETRY__MAX_ATTEMPTS", "5");
            jail.set_env("DOP_RETENTION__DEDUP", "1h");
            let fig = || {
                Figment::from(Serialized::defaults(Config::default()))
                    .merge(Env::prefixed("DOP_").split("__"))
            };
            let cfg = Config::finish(fig(), &MapEnv(HashMap::new()), None).unwrap();
            assert_eq!(cfg.retention.dedup, Duration::from_secs(3600));
            // retry.delay 1s × 5 attempts: a 10 s window could be gone
            // before the last retry of a copy arrives.
            jail.set_env("DOP_RETENTION__DEDUP", "10s");
            let err = Config::finish(fig(), &MapEnv(HashMap::new()), None).unwrap_err();
            assert!(err.to_string().contains("retention.dedup (10s)"), "{err}");
            jail.set_env("DOP_RETENTION__DEDUP", "11s");
            assert!(Config::finish(fig(), &MapEnv(HashMap::new()), None).is_ok());
            jail.set_env("DOP_RETENTION__BATCH_SIZE", "0");
            let err = Config::finish(fig(), &MapEnv(HashMap::new()), None).unwrap_err();
            assert!(err.to_string().contains("retention.batch_size"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn saga_retention_is_off_by_default_and_outlives_the_dedup_window() {
        let cfg = load(&[], None).unwrap();
        assert_eq!(cfg.retention.sagas, None);
        figment::Jail::expect_with(|jail| {
            let fig = || {
                Figment::from(Serialized::defaults(Config::default()))
                    .merge(Env::prefixed("DOP_").split("__"))
            };
            jail.set_env("DOP_RETENTION__SAGAS", "30d");
            let cfg = Config::finish(fig(), &MapEnv(HashMap::new()), None).unwrap();
            assert_eq!(
                cfg.retention.sagas,
                Some(Duration::from_secs(30 * 24 * 3600))
            );
            jail.set_env("DOP_RETENTION__SAGAS", "6d");
            let err = Config::finish(fig(), &MapEnv(HashMap::new()), None).unwrap_err();
            assert!(err.to_string().contains("retention.sagas (6days)"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn dop_variables_layer_over_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DOP_ORDER__PORT", "7000");
            jail.set_env("DOP_RECOVERY__INTERVAL", "2s");
            let fig = Figment::from(Serialized::defaults(Config::default()))
                .merge(Env::prefixed("DOP_").split("__"));
            let cfg = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap();
            assert_eq!(cfg.order.port, 7000);
            assert_eq!(cfg.recovery.interval, Duration::from_secs(2));
            assert_eq!(cfg.db(Role::Order).write_mode, WriteMode::Text);
            jail.set_env("DOP_DATABASE__WRITE_MODE", "prepared");
            let fig = Figment::from(Serialized::defaults(Config::default()))
                .merge(Env::prefixed("DOP_").split("__"));
            let cfg = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap();
            for role in Role::ALL {
                assert_eq!(cfg.db(role).write_mode, WriteMode::Prepared);
            }
            jail.set_env("DOP_DATABASE__WRITE_MODE", "binary");
            let fig = Figment::from(Serialized::defaults(Config::default()))
                .merge(Env::prefixed("DOP_").split("__"));
            let err = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap_err();
            assert!(err.to_string().contains("database.write_mode"), "{err}");
            jail.set_env("DOP_DATABASE__WRITE_MODE", "text");
            jail.set_env("DOP_ORDER__PORT", "70000");
            let fig = Figment::from(Serialized::defaults(Config::default()))
                .merge(Env::prefixed("DOP_").split("__"));
            let err = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap_err();
            assert!(err.to_string().contains("order.port"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn secrets_are_taken_as_text_and_never_shown() {
        figment::Jail::expect_with(|jail| {
            // Shapes figment would read as a number, a boolean, an array.
            for token in [
                "123456",
                "true",
                "007",
                "1.5",
                "1e3",
                "123456789012345678901234567890",
                "[1,2]",
                "s3cr3t",
            ] {
                jail.set_env("DOP_ADMIN__TOKEN", token);
                let cfg = Config::load(None, None)
                    .map_err(|e| format!("{token}: {e}"))
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(cfg.admin.token.expose(), token);
            }
            // A URL that is only digits: refused, not shown.
            jail.set_env("DOP_RABBITMQ__URL", "987654321");
            let err = Config::load(None, None).unwrap_err().to_string();
            assert!(err.contains("rabbitmq.url"), "{err}");
            assert!(!err.contains("987654321"), "{err}");
            jail.clear_env();
            // A file may hold a secret of the wrong type: never quoted.
            for (i, value) in ["424242", "true", "4242.5"].iter().enumerate() {
                let file = format!("bad{i}.toml");
                jail.create_file(&file, &format!("[admin]\ntoken = {value}\n"))?;
                let err = Config::load(Some(Path::new(&file)), None)
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("admin.token"), "{err}");
                assert!(!err.contains(value), "{err}");
            }
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn inventory_seed_defaults_to_the_originals_and_can_be_emptied() {
        let cfg = load(&[], None).unwrap();
        let seed: Vec<(i64, i64)> = cfg
            .inventory
            .seed
            .iter()
            .map(|p| (p.product_id, p.available_qty))
            .collect();
        assert_eq!(seed, [(1001, 100), (1002, 50)]);
        figment::Jail::expect_with(|jail| {
            jail.set_env("DOP_INVENTORY__SEED", "[]");
            let fig = dop_env(Figment::from(Serialized::defaults(Config::default())));
            let cfg = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap();
            assert!(cfg.inventory.seed.is_empty());
            jail.set_env("DOP_INVENTORY__SEED", "[{product_id=7,available_qty=3}]");
            let fig = dop_env(Figment::from(Serialized::defaults(Config::default())));
            let cfg = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap();
            assert_eq!(
                cfg.inventory.seed,
                [SeedProduct {
                    product_id: 7,
                    available_qty: 3
                }]
            );
            jail.clear_env();
            jail.create_file(
                "seed.toml",
                "[[inventory.seed]]\nproduct_id = 5\navailable_qty = 9\n",
            )?;
            let cfg = Config::load(Some(Path::new("seed.toml")), None).unwrap();
            assert_eq!(cfg.inventory.seed.len(), 1);
            for bad in [
                "[{product_id=0,available_qty=3}]",
                "[{product_id=7,available_qty=-1}]",
                "[{product_id=7,available_qty=1},{product_id=7,available_qty=2}]",
            ] {
                jail.set_env("DOP_INVENTORY__SEED", bad);
                let fig = dop_env(Figment::from(Serialized::defaults(Config::default())));
                let err = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap_err();
                assert!(err.to_string().contains("inventory.seed"), "{bad}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn decodes_amqp_urls() {
        let e =
            AmqpEndpoint::parse(&SecretUrl::new("amqp://us%40er:p%2Fw@mq.local:5673/%2f")).unwrap();
        assert_eq!((e.user.as_str(), e.password.as_str()), ("us@er", "p/w"));
        assert_eq!(
            (e.host.as_str(), e.port, e.vhost.as_str()),
            ("mq.local", 5673, "/")
        );
        let e = AmqpEndpoint::parse(&SecretUrl::new("amqps://h/v?heartbeat=7")).unwrap();
        assert_eq!((e.tls, e.port, e.heartbeat), (true, 5671, Some(7)));
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
        assert!(AmqpEndpoint::parse(&SecretUrl::new("amqp://h/?heartbeat=x")).is_err());
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn broker_addresses_and_queue_type_come_from_env_or_toml() {
        let cfg = load(&[], None).unwrap();
        assert_eq!(cfg.rabbitmq.queue_type, QueueType::Classic);
        assert_eq!(cfg.rabbitmq.endpoints(), vec![cfg.rabbitmq.url.clone()]);
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "DOP_RABBITMQ__URLS",
                "amqp://u:s3cret@mq-1:5672/dop, amqp://u:s3cret@mq-2:5672/dop,",
            );
            jail.set_env("DOP_RABBITMQ__QUEUE_TYPE", "quorum");
            let fig = dop_env(Figment::from(Serialized::defaults(Config::default())));
            let cfg = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap();
            assert_eq!(cfg.rabbitmq.queue_type, QueueType::Quorum);
            let shown: Vec<_> = cfg
                .rabbitmq
                .endpoints()
                .iter()
                .map(|u| u.expose().to_string())
                .collect();
            assert_eq!(
                shown,
                [
                    "amqp://u:s3cret@mq-1:5672/dop",
                    "amqp://u:s3cret@mq-2:5672/dop"
                ]
            );
            let toml = cfg.redacted_toml().unwrap();
            assert!(!toml.contains("s3cret"), "{toml}");
            assert!(!format!("{cfg:?}").contains("s3cret"));

            jail.set_env("DOP_RABBITMQ__QUEUE_TYPE", "mirrored");
            let fig = dop_env(Figment::from(Serialized::defaults(Config::default())));
            let err = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap_err();
            assert!(err.to_string().contains("rabbitmq.queue_type"), "{err}");
            jail.set_env("DOP_RABBITMQ__QUEUE_TYPE", "classic");

            jail.set_env("DOP_RABBITMQ__URLS", "amqp://mq-1/a,amqp://mq-2/b");
            let fig = dop_env(Figment::from(Serialized::defaults(Config::default())));
            let err = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap_err();
            assert!(err.to_string().contains("same vhost"), "{err}");

            jail.set_env("DOP_RABBITMQ__URLS", "amqp://mq-1/a,http://s3cret@mq-2/a");
            let fig = dop_env(Figment::from(Serialized::defaults(Config::default())));
            let err = Config::finish(fig, &MapEnv(HashMap::new()), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("rabbitmq.urls (address 2)"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");

            jail.clear_env();
            jail.create_file(
                "dop.toml",
                "[rabbitmq]\nurls = [\"amqp://mq-1/x\", \"amqp://mq-2/x\"]\nqueue_type = \"quorum\"\n",
            )?;
            let fig = Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::file("dop.toml"));
            let cfg = Config::finish(fig, &MapEnv(HashMap::new()), None).unwrap();
            assert_eq!(cfg.rabbitmq.endpoints().len(), 2);
            assert_eq!(cfg.rabbitmq.queue_type, QueueType::Quorum);
            Ok(())
        });
    }
}
