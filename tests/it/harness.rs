//! The test stack: fresh databases and a fresh RabbitMQ vhost per test, the
//! real roles started in-process on loopback ports. A test that can't reach
//! MariaDB or RabbitMQ fails with a message that says what to start.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use dop::{
    app::RunningRole,
    config::{Config, SecretUrl},
    http::client::{Client, Response},
    roles::Role,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::proxy::Proxy;

pub const MYSQL: &str = "mysql://root@127.0.0.1:3306";
pub const AMQP_HOST: &str = "127.0.0.1:5672";
pub const MGMT: &str = "http://127.0.0.1:15672";

fn basic_auth() -> String {
    // guest:guest
    "Basic Z3Vlc3Q6Z3Vlc3Q=".to_string()
}

/// Knobs a test may turn.
#[derive(Clone)]
pub struct Opts {
    pub roles: Vec<Role>,
    pub payment_failure_rate: f64,
    pub recovery_interval: Duration,
    pub stuck_after: Duration,
    /// The operator token (`admin.token`); `None` for a stack without it.
    pub admin_token: Option<String>,
    /// The read-only token (`admin.read_token`).
    pub read_token: Option<String>,
    pub max_attempts: u32,
    /// Route the roles' broker connections through a proxy the test can cut.
    pub broker_proxy: bool,
    /// Route the roles' database connections through a proxy.
    pub db_proxy: bool,
    /// `saga.step_timeout` and `saga.deadline` (the defaults: 2 min, 10 min).
    pub step_timeout: Duration,
    pub saga_deadline: Duration,
    /// `rabbitmq.queue_type` of the roles (default: `queue_type()`).
    pub queue_type: dop::config::QueueType,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            roles: Role::ALL.to_vec(),
            payment_failure_rate: 0.0,
            recovery_interval: Duration::from_secs(1),
            stuck_after: Duration::from_secs(2),
            admin_token: Some("test-token".into()),
            read_token: None,
            max_attempts: 3,
            broker_proxy: false,
            db_proxy: false,
            step_timeout: Duration::from_secs(120),
            saga_deadline: Duration::from_secs(600),
            queue_type: queue_type(),
        }
    }
}

pub struct Stack {
    pub id: String,
    pub cfg: Config,
    pub vhost: String,
    pub addrs: HashMap<Role, SocketAddr>,
    running: HashMap<Role, RunningRole>,
    pub http: Client,
    pub broker_proxy: Option<Proxy>,
    pub db_proxy: Option<Proxy>,
}

/// A call to the RabbitMQ management API as guest.
pub async fn mgmt(
    method: hyper::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Response> {
    let client = Client::new(Duration::from_secs(10));
    let auth = basic_auth();
    client
        .send(
            method,
            &format!("{MGMT}{path}"),
            body.map(|b| bytes::Bytes::from(b.to_string())),
            &[("authorization", auth.as_str())],
        )
        .await
}

impl Stack {
    pub async fn start(opts: Opts) -> Stack {
        dop::observability::logging::init(
            &std::env::var("DOP_TEST_LOG").unwrap_or_else(|_| "pretty".into()),
        );
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        let vhost = format!("dop_t_{id}");
        let created = mgmt(hyper::Method::PUT, &format!("/api/vhosts/{vhost}"), None).await;
        match created {
            Ok(r) if r.status.is_success() => {}
            Ok(r) => panic!("RabbitMQ management refused to create a vhost ({}): {}", r.status, r.text()),
            Err(e) => panic!(
                "cannot reach the RabbitMQ management API at {MGMT} ({e:#}). Start RabbitMQ with `rabbitmq-server -detached` and enable the API with `rabbitmq-plugins enable rabbitmq_management`"
            ),
        }
        let perms = mgmt(
            hyper::Method::PUT,
            &format!("/api/permissions/{vhost}/guest"),
            Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
        )
        .await
        .expect("set vhost permissions");
        assert!(perms.status.is_success(), "permissions: {}", perms.text());

        let mut cfg = Config::default();
        // scripts/test.sh runs the saga tests once more in prepared mode.
        cfg.database.write_mode = write_mode();
        cfg.order.database_url = SecretUrl::new(format!("{MYSQL}/dop_t_{id}_orders"));
        cfg.inventory.database_url = SecretUrl::new(format!("{MYSQL}/dop_t_{id}_inventory"));
        cfg.payment.database_url = SecretUrl::new(format!("{MYSQL}/dop_t_{id}_payments"));
        cfg.order.pool_size = 8;
        cfg.inventory.pool_size = 8;
        cfg.payment.pool_size = 8;
        cfg.rabbitmq.url = SecretUrl::new(format!("amqp://guest:guest@{AMQP_HOST}/{vhost}"));
        cfg.rabbitmq.prefetch = 50;
        cfg.rabbitmq.queue_type = opts.queue_type;
        // Tests create the products they use (tests/it/seed.rs tests the
        // seed itself).
        cfg.inventory.seed = vec![];
        cfg.payment.failure_rate = opts.payment_failure_rate;
        cfg.recovery.interval = opts.recovery_interval;
        cfg.recovery.stuck_after = opts.stuck_after;
        cfg.saga.step_timeout = opts.step_timeout;
        cfg.saga.deadline = opts.saga_deadline;
        cfg.saga.check_interval = Duration::from_millis(200);
        cfg.retry.delay = Duration::from_millis(300);
        cfg.retry.max_attempts = opts.max_attempts;
        cfg.outbox.sweep_interval = Duration::from_millis(300);
        cfg.outbox.sweep_after = Duration::from_millis(500);
        cfg.shutdown.grace = Duration::from_secs(10);
        // The harness migrates below; roles may then start while the
        // database is unreachable (the outage tests need that).
        cfg.migrate_on_start = false;
        if let Some(t) = &opts.admin_token {
            cfg.admin.token = dop::config::Secret::new(t.clone());
        }
        if let Some(t) = &opts.read_token {
            cfg.admin.read_token = dop::config::Secret::new(t.clone());
        }
        // Every role's database exists from the start, so a test can read a
        // role's tables while the role itself is down.
        for role in Role::ALL {
            dop::db::migrate::migrate(role, cfg.db(role).database_url.expose())
                .await
                .unwrap_or_else(|e| {
                    panic!("cannot prepare MariaDB at {MYSQL} ({e:#}). Start it with `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql`")
                });
        }
        let broker_proxy = if opts.broker_proxy {
            let p = Proxy::start(AMQP_HOST).await;
            cfg.rabbitmq.url = SecretUrl::new(format!("amqp://guest:guest@{}/{vhost}", p.addr));
            Some(p)
        } else {
            None
        };
        let db_proxy = if opts.db_proxy {
            let p = Proxy::start_mysql("127.0.0.1:3306").await;
            for url in [
                &mut cfg.order.database_url,
                &mut cfg.inventory.database_url,
                &mut cfg.payment.database_url,
            ] {
                // mysql_async would switch to the unix socket of a local
                // server (prefer_socket), going around the proxy.
                *url = SecretUrl::new(format!(
                    "{}?prefer_socket=false",
                    url.expose().replace("127.0.0.1:3306", &p.addr.to_string())
                ));
            }
            Some(p)
        } else {
            None
        };
        let mut stack = Stack {
            id,
            cfg,
            vhost,
            addrs: HashMap::new(),
            running: HashMap::new(),
            http: Client::new(Duration::from_secs(15)),
            broker_proxy,
            db_proxy,
        };
        for role in opts.roles {
            stack.start_role(role).await;
        }
        for role in stack.running.keys().copied().collect::<Vec<_>>() {
            stack.wait_ready(role).await;
        }
        stack
    }

    /// Starts (or restarts, on its earlier port) one role.
    pub async fn start_role(&mut self, role: Role) {
        let addr = self
            .addrs
            .get(&role)
            .copied()
            .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let listener = TcpListener::bind(addr).await.expect("bind a loopback port");
        let running = RunningRole::start(role, Arc::new(self.cfg.clone()), listener)
            .await
            .expect("start role");
        self.addrs.insert(role, running.addr);
        self.running.insert(role, running);
    }

    /// Graceful stop of one role.
    pub async fn stop_role(&mut self, role: Role) {
        if let Some(r) = self.running.remove(&role) {
            r.shutdown().await;
        }
        // Pooled keep-alive connections may point at the stopped server.
        self.http = Client::new(Duration::from_secs(15));
    }

    /// The role as if its process died: tasks dropped without any flush.
    pub async fn kill_role(&mut self, role: Role) {
        if let Some(r) = self.running.remove(&role) {
            r.abort().await;
        }
        self.http = Client::new(Duration::from_secs(15));
    }

    /// The context of a running role (pool, outbox, metrics, config), for
    /// tests that call its handlers directly.
    pub fn ctx(&self, role: Role) -> dop::context::AppState {
        self.running[&role].ctx.clone()
    }

    pub fn url(&self, role: Role, path: &str) -> String {
        format!("http://{}{path}", self.addrs[&role])
    }

    /// The broker of this test, not through any proxy.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{AMQP_HOST}/{}", self.vhost)
    }

    /// A confirming publisher on this test's vhost.
    pub async fn publisher(&self) -> TestPublisher {
        let args =
            dop::messaging::broker::connection_args(&SecretUrl::new(self.amqp_url())).unwrap();
        let conn = amqprs::connection::Connection::open(&args)
            .await
            .expect("connect to RabbitMQ");
        let ch = conn.open_channel(None).await.unwrap();
        let confirm = dop::messaging::publisher::ConfirmChannel::open(
            ch,
            Duration::from_secs(5),
            Arc::new(tokio::sync::Notify::new()),
        )
        .await
        .unwrap();
        TestPublisher { conn, confirm }
    }

    /// The database pool of a running role.
    pub fn pool(&self, role: Role) -> dop::db::DbPool {
        self.running[&role].ctx.pool.clone()
    }

    /// A connection to one role's database.
    pub async fn db(&self, role: Role) -> diesel_async::AsyncMysqlConnection {
        use diesel_async::AsyncConnection;
        let url = format!(
            "{MYSQL}/dop_t_{}_{}",
            self.id,
            match role {
                Role::Order => "orders",
                Role::Inventory => "inventory",
                Role::Payment => "payments",
            }
        );
        diesel_async::AsyncMysqlConnection::establish(&url)
            .await
            .expect("connect to the test database")
    }

    pub async fn wait_ready(&self, role: Role) {
        let url = self.url(role, "/ready");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(&url).await {
                if r.status.is_success() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{role} not ready within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `Authorization: Bearer <admin.token>` when the stack has one: the
    /// helpers below act as the operator (a test of access itself sends
    /// its own headers through `http`).
    pub fn auth(&self) -> Vec<(&'static str, String)> {
        let t = self.cfg.admin.token.expose();
        if t.is_empty() {
            vec![]
        } else {
            vec![("authorization", format!("Bearer {t}"))]
        }
    }

    async fn send_json(
        &self,
        method: hyper::Method,
        role: Role,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let auth = self.auth();
        let mut headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let what = method.to_string();
        self.http
            .send(
                method,
                &self.url(role, path),
                body.map(|b| bytes::Bytes::from(b.to_string())),
                &headers,
            )
            .await
            .expect(&what)
    }

    /// POST as the operator.
    pub async fn post(&self, role: Role, path: &str, body: Value) -> Response {
        self.send_json(hyper::Method::POST, role, path, Some(&body))
            .await
    }

    /// PUT as the operator.
    pub async fn put(&self, role: Role, path: &str, body: Value) -> Response {
        self.send_json(hyper::Method::PUT, role, path, Some(&body))
            .await
    }

    /// GET as the operator.
    pub async fn get(&self, role: Role, path: &str) -> Response {
        self.send_json(hyper::Method::GET, role, path, None).await
    }

    pub async fn add_product(&self, product_id: i64, qty: i64) {
        let r = self
            .post(
                Role::Inventory,
                "/inventory",
                json!({"product_id": product_id, "available_qty": qty}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }

    /// Adds a product straight into inventory_db (the inventory role may
    /// be down).
    pub async fn add_product_direct(&self, product_id: i64, qty: i32) {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use dop::roles::inventory::schema::inventories;
        let mut c = self.db(Role::Inventory).await;
        diesel::insert_into(inventories::table)
            .values((
                inventories::product_id.eq(product_id),
                inventories::available_qty.eq(qty),
                inventories::reserved_qty.eq(0),
            ))
            .execute(&mut c)
            .await
            .expect("insert a product");
    }

    pub async fn inventory(&self, product_id: i64) -> Value {
        let r = self
            .get(Role::Inventory, &format!("/inventory/{product_id}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().unwrap()
    }

    /// Places an order; returns its id.
    pub async fn order(&self, product_id: i64, qty: i64, amount: &str) -> String {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"user_id":42,"product_id":{product_id},"quantity":{qty},"total_amount":{amount}}}"#
        ))
        .unwrap();
        let r = self.post(Role::Order, "/orders", body).await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json().unwrap()["order_id"]
            .as_i64()
            .expect("order_id is an integer")
            .to_string()
    }

    pub async fn order_status(&self, id: &str) -> String {
        let r = self.get(Role::Order, &format!("/orders/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().unwrap()["status"].as_str().unwrap().to_string()
    }

    /// Polls until the order is terminal (or `timeout`); returns its status.
    pub async fn wait_terminal(&self, id: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.order_status(id).await;
            if s != "PENDING" {
                // FAILED may still be compensating: wait for the saga too.
                let path = format!("/admin/sagas/{}", self.saga_of(id).await);
                let saga = self.get(Role::Order, &path).await;
                if saga.status == 200 {
                    let st = saga.json().unwrap()["saga"]["status"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    if st != "IN_PROGRESS" && st != "COMPENSATING" {
                        // The order was read before the saga: read it again.
                        return self.order_status(id).await;
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn saga_of(&self, order_id: &str) -> String {
        let r = self.get(Role::Order, &format!("/orders/{order_id}")).await;
        r.json().unwrap()["saga_id"].as_str().unwrap().to_string()
    }

    /// Runs the invariant audit over this stack's databases.
    pub async fn audit(&self) -> dop::cli::admin::audit::Report {
        dop::cli::admin::audit::audit(&self.cfg, Duration::ZERO)
            .await
            .expect("audit runs")
    }

    /// Stops every role, drops the databases and the vhost.
    pub async fn teardown(mut self) {
        for role in Role::ALL {
            self.stop_role(role).await;
        }
        drop_all(&self.id, &self.vhost).await;
    }
}

/// The write mode `DOP_DATABASE__WRITE_MODE` asks for (text when unset),
/// as the roles of a `Stack` get it.
pub fn write_mode() -> dop::config::WriteMode {
    match std::env::var("DOP_DATABASE__WRITE_MODE").as_deref() {
        Err(_) | Ok("text") => dop::config::WriteMode::Text,
        Ok("prepared") => dop::config::WriteMode::Prepared,
        Ok(other) => panic!("DOP_DATABASE__WRITE_MODE={other}: text or prepared"),
    }
}

/// The queue type `DOP_RABBITMQ__QUEUE_TYPE` asks for (classic when unset),
/// as the roles of a `Stack` get it unless a test sets its own.
pub fn queue_type() -> dop::config::QueueType {
    match std::env::var("DOP_RABBITMQ__QUEUE_TYPE").as_deref() {
        Err(_) | Ok("classic") => dop::config::QueueType::Classic,
        Ok("quorum") => dop::config::QueueType::Quorum,
        Ok(other) => panic!("DOP_RABBITMQ__QUEUE_TYPE={other}: classic or quorum"),
    }
}

/// Prepared statements this session has executed (`Com_stmt_execute`).
pub async fn stmt_executes(c: &mut diesel_async::AsyncMysqlConnection) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT CAST(VARIABLE_VALUE AS SIGNED) AS n FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'COM_STMT_EXECUTE'",
    )
    .get_result::<N>(c)
    .await
    .expect("read Com_stmt_execute")
    .n
}

/// Prepared statements executed by running `script` on `conn` the two ways
/// roles run one: `Script::run` inside a diesel transaction, and
/// `Conn::run_in_transaction`; each count net of the status read itself.
pub async fn script_executes(conn: &mut dop::db::Conn, script: &dop::db::Script) -> (i64, i64) {
    use diesel_async::AsyncConnection;
    let a = stmt_executes(conn).await;
    let b = stmt_executes(conn).await;
    let own = b - a;
    conn.transaction::<_, diesel::result::Error, _>(async |c| script.run(c).await)
        .await
        .expect("Script::run");
    let c = stmt_executes(conn).await;
    conn.run_in_transaction(script)
        .await
        .expect("run_in_transaction");
    let d = stmt_executes(conn).await;
    (c - b - own, d - c - own)
}

/// Drops a scratch database a test made outside a `Stack`.
pub async fn drop_db(name: &str) {
    use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
    if let Ok(mut root) = AsyncMysqlConnection::establish(MYSQL).await {
        let _ = root
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await;
    }
}

pub async fn drop_all(id: &str, vhost: &str) {
    use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
    if let Ok(mut c) = AsyncMysqlConnection::establish(MYSQL).await {
        for db in ["orders", "inventory", "payments"] {
            let _ = c
                .batch_execute(&format!("DROP DATABASE IF EXISTS dop_t_{id}_{db}"))
                .await;
        }
    }
    let _ = mgmt(hyper::Method::DELETE, &format!("/api/vhosts/{vhost}"), None).await;
}

/// Polls `f` until it returns Some, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A unique product id for this test run.
pub fn product_id() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(0);
    1000 + NEXT.fetch_add(1, Ordering::SeqCst)
}

pub struct TestPublisher {
    pub conn: amqprs::connection::Connection,
    pub confirm: dop::messaging::publisher::ConfirmChannel,
}

impl TestPublisher {
    /// Publishes a body with a message id (and trace/saga headers).
    pub async fn publish(&self, exchange: &str, routing_key: &str, message_id: &str, body: &[u8]) {
        let out = dop::messaging::publisher::Outgoing {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            message_id: message_id.into(),
            body: body.to_vec(),
            headers: vec![("trace_id".into(), amqprs::FieldValue::from("test-trace"))],
        };
        self.confirm
            .publish_confirmed(&out)
            .await
            .expect("publish confirmed");
    }
}

impl TestPublisher {
    /// Messages waiting in a queue (passive declare).
    pub async fn depth(&self, queue: &str) -> u32 {
        dop::messaging::Broker::queue_depth(self.confirm.channel(), queue)
            .await
            .expect("queue depth")
    }
}

/// A metric's value summed over the series whose text contains `filter`.
pub fn metric(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A fresh, migrated database of one role outside a `Stack` (no broker, no
/// running role), with a pool: for tests that call an executor directly.
pub struct ScratchDb {
    pub name: String,
    pub pool: dop::db::DbPool,
}

impl ScratchDb {
    pub async fn new(role: Role) -> ScratchDb {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        let name = format!("dop_t_{id}_scratch_{role}");
        let url = format!("{MYSQL}/{name}");
        dop::db::migrate::migrate(role, &url)
            .await
            .unwrap_or_else(|e| panic!("cannot prepare MariaDB at {MYSQL} ({e:#})"));
        let mut db = Config::default().db(role);
        db.database_url = SecretUrl::new(url);
        db.pool_size = 4;
        let pool = dop::db::connect_pool(&db).expect("pool");
        ScratchDb { name, pool }
    }

    /// A plain connection to it.
    pub async fn conn(&self) -> diesel_async::AsyncMysqlConnection {
        use diesel_async::AsyncConnection;
        diesel_async::AsyncMysqlConnection::establish(&format!("{MYSQL}/{}", self.name))
            .await
            .expect("connect to the scratch database")
    }

    pub async fn drop(self) {
        self.pool.close();
        drop_db(&self.name).await;
    }
}

/// Cases of each property test: `DOP_PROPTEST_CASES`, or `default`.
pub fn prop_cases(default: u32) -> u32 {
    std::env::var("DOP_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A proptest runner for the property tests against the real database:
/// `prop_cases(default)` cases, no failure files written into the tree.
pub fn prop_runner(default: u32) -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: prop_cases(default),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })
}

/// A fresh order id for tests that write rows without the order role's
/// allocator: distinct within the test process, and JavaScript-safe.
pub fn next_order_id() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
