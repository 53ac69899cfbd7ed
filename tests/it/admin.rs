//! The operator commands against a real stack: the audit (clean after every
//! outcome, naming planted breaches, patient with sagas in flight), the saga
//! list/show/retry through the order role's API, and the dead-letter queues
//! (list with reasons, redrive back to a finished saga). Some cases run the
//! built `dop` binary to check its output and exit status too.

use std::time::Duration;

use amqprs::channel::{BasicAckArguments, BasicGetArguments};
use diesel_async::SimpleAsyncConnection;
use dop::{
    cli::admin::{
        audit::{self, Report},
        dlq,
        sagas::{AdminApi, AdminApiError, ListOpts},
    },
    config::{Config, Secret, SecretUrl},
    messaging::{
        consumer::{dead_letter, Delivery},
        topology,
    },
    roles::Role,
};
use serde_json::Value;

use crate::harness::{eventually, product_id, Opts, Stack};

const T: Duration = Duration::from_secs(30);

/// What a run of the `dop` binary printed, and its exit status.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the built `dop` with the stack's databases and broker as its only
/// configuration (and no config file: it runs in a temporary directory).
/// The environment starts empty: the original system's variables
/// (`RABBITMQ_URL`, `DB_HOST`, ...) are applied last, so one left in the
/// developer's shell would point the command at another broker.
async fn dop(s: &Stack, args: &[&str], token: Option<&str>) -> Run {
    let env: Vec<(&str, &str)> = token.map(|t| ("DOP_ADMIN__TOKEN", t)).into_iter().collect();
    dop_as(s, args, &env).await
}

/// `dop` with these extra environment variables (tokens).
async fn dop_as(s: &Stack, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dop"));
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("DOP_ORDER__DATABASE_URL", s.cfg.order.database_url.expose())
        .env(
            "DOP_INVENTORY__DATABASE_URL",
            s.cfg.inventory.database_url.expose(),
        )
        .env(
            "DOP_PAYMENT__DATABASE_URL",
            s.cfg.payment.database_url.expose(),
        )
        .env("DOP_RABBITMQ__URL", s.amqp_url())
        .env("DOP_ADMIN__URL", s.url(Role::Order, ""));
    cmd.envs(env.iter().copied());
    let out = cmd.output().await.expect("run the dop binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The stack's configuration, its broker reached directly.
fn cfg(s: &Stack) -> Config {
    let mut c = s.cfg.clone();
    c.rabbitmq.url = SecretUrl::new(s.amqp_url());
    c
}

async fn audit_now(s: &Stack, grace: Duration) -> Report {
    audit::audit(&s.cfg, grace).await.expect("audit runs")
}

/// Polls until the order reaches `want`; on timeout, fails showing the
/// saga's timeline.
async fn settle(s: &Stack, order_id: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let r = s.get(Role::Order, &format!("/orders/{order_id}")).await;
        if r.status == 200 && r.json().unwrap()["status"] == want {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let saga = s.saga_of(order_id).await;
            let detail = s.get(Role::Order, &format!("/admin/sagas/{saga}")).await;
            panic!(
                "order {order_id} did not become {want} within {T:?}: {}",
                detail.text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kinds(r: &Report) -> Vec<(u8, &'static str)> {
    r.violations.iter().map(|v| (v.invariant, v.kind)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_audit_is_clean_after_happy_and_insufficient_stock() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 3).await;
    let ok = s.order(pid, 2, "39.98").await;
    let short = s.order(pid, 5, "99.95").await;
    settle(&s, &ok, "CONFIRMED").await;
    settle(&s, &short, "FAILED").await;
    let r = audit_now(&s, Duration::ZERO).await;
    assert!(r.is_clean(), "{r:#?}");
    assert_eq!((r.orders, r.products, r.in_flight), (2, 1, 0));
    assert_eq!(r.sagas_by_status["COMPLETED"], 1);
    assert_eq!(r.sagas_by_status["FAILED"], 1);
    assert_eq!(r.orders_by_status["CONFIRMED"], 1);
    assert_eq!(r.duplicates.total(), 0);

    let run = dop(&s, &["admin", "audit", "--in-flight-grace", "0s"], None).await;
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        "audit: 2 orders (COMPLETED 1, COMPENSATED 0, FAILED 1, in flight 0), 1 products, 0 violations\n"
    );
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_audit_is_clean_after_payment_failures() {
    let s = Stack::start(Opts {
        payment_failure_rate: 1.0,
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let a = s.order(pid, 2, "20.00").await;
    let b = s.order(pid, 3, "30.00").await;
    settle(&s, &a, "COMPENSATED").await;
    settle(&s, &b, "COMPENSATED").await;
    let r = audit_now(&s, Duration::ZERO).await;
    assert!(r.is_clean(), "{r:#?}");
    assert_eq!(r.sagas_by_status["COMPENSATED"], 2);
    assert_eq!(r.orders_by_status["COMPENSATED"], 2);
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_audit_names_planted_violations() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let id = s.order(pid, 2, "19.98").await;
    settle(&s, &id, "CONFIRMED").await;
    assert!(audit_now(&s, Duration::ZERO).await.is_clean());

    // A unit reserved behind the system's back.
    let mut inv = s.db(Role::Inventory).await;
    inv.batch_execute(&format!(
        "UPDATE inventories SET reserved_qty = reserved_qty + 1 WHERE product_id = {pid}"
    ))
    .await
    .unwrap();
    let r = audit_now(&s, Duration::ZERO).await;
    assert_eq!(
        kinds(&r),
        [(2, "reserved_vs_logs"), (2, "reserved_vs_orders")],
        "{r:#?}"
    );
    assert_eq!(r.violations[0].ids, [pid.to_string()]);
    let run = dop(&s, &["admin", "audit"], None).await;
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "violation: invariant 2 (reserved_vs_logs): product {pid}: reserved_qty is 3 but inventory_logs say 2"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with(", 1 products, 2 violations\n"),
        "{}",
        run.stdout
    );
    inv.batch_execute(&format!(
        "UPDATE inventories SET reserved_qty = reserved_qty - 1 WHERE product_id = {pid}"
    ))
    .await
    .unwrap();

    // A confirmed order whose payment vanished.
    let mut pay = s.db(Role::Payment).await;
    pay.batch_execute(&format!("DELETE FROM payments WHERE order_id = '{id}'"))
        .await
        .unwrap();
    let run = dop(&s, &["admin", "audit", "--json"], None).await;
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    let v = &json["violations"][0];
    assert_eq!(json["violations"].as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(v["invariant"], 3);
    assert_eq!(v["kind"], "confirmed_without_payment");
    assert_eq!(v["ids"][0], id.as_str());
    assert_eq!(json["orders_by_status"]["CONFIRMED"], 1);
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_audit_waits_for_the_grace_then_reports_stuck_sagas() {
    let mut s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    s.stop_role(Role::Inventory).await;
    let id = s.order(pid, 1, "9.99").await;
    let saga = s.saga_of(&id).await;
    let r = audit_now(&s, Duration::from_secs(600)).await;
    assert!(r.is_clean(), "{r:#?}");
    assert_eq!((r.in_flight, r.in_grace), (1, 1));
    let r = audit_now(&s, Duration::ZERO).await;
    assert_eq!(kinds(&r), [(4, "stuck")], "{r:#?}");
    assert_eq!(r.violations[0].ids, [saga.clone(), id.clone()]);
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    settle(&s, &id, "CONFIRMED").await;
    assert!(audit_now(&s, Duration::ZERO).await.is_clean());
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sagas_list_and_show_through_the_api() {
    let s = Stack::start(Opts {
        read_token: Some("test-read".into()),
        ..Opts::default()
    })
    .await;
    // The CLI reads with the read-only token from its configuration.
    let read = [("DOP_ADMIN__READ_TOKEN", "test-read")];
    let pid = product_id();
    s.add_product(pid, 1).await;
    let ok = s.order(pid, 1, "5.00").await;
    settle(&s, &ok, "CONFIRMED").await;
    let short = s.order(pid, 1, "5.00").await;
    settle(&s, &short, "FAILED").await;
    let (ok_saga, short_saga) = (s.saga_of(&ok).await, s.saga_of(&short).await);

    let anonymous = AdminApi::new(&s.url(Role::Order, "")).unwrap();
    let err = anonymous.list(&ListOpts::default()).await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref(),
            Some(AdminApiError::Api { status: 401, .. })
        ),
        "{err:#}"
    );
    let api = AdminApi::new(&s.url(Role::Order, ""))
        .unwrap()
        .with_read_token("test-read");
    let (all, _) = api.list(&ListOpts::default()).await.unwrap();
    let ids: Vec<&str> = all.sagas.iter().map(|g| g.saga_id.as_str()).collect();
    assert_eq!(ids, [short_saga.as_str(), ok_saga.as_str()], "newest first");
    let failed = ListOpts {
        status: Some("FAILED".into()),
        ..ListOpts::default()
    };
    let (l, _) = api.list(&failed).await.unwrap();
    assert_eq!(l.count, 1);
    assert_eq!(l.sagas[0].current_step, "DONE");
    assert!(l.sagas[0].failure_reason.is_some());
    let page = ListOpts {
        limit: Some(1),
        ..ListOpts::default()
    };
    let (l, _) = api.list(&page).await.unwrap();
    assert_eq!(l.next_before.as_deref(), Some(short_saga.as_str()));
    let (d, _) = api.show(&ok_saga).await.unwrap();
    let events: Vec<&str> = d.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        ["order.created", "inventory.reserved", "payment.processed"]
    );
    assert_eq!(d.order.as_ref().unwrap().status, "CONFIRMED");

    let run = dop_as(&s, &["admin", "sagas", "--status", "completed"], &read).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("SAGA "), "{}", run.stdout);
    let fields: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(
        fields[..4] == [ok_saga.as_str(), ok.as_str(), "COMPLETED", "DONE"],
        "{}",
        run.stdout
    );
    assert_eq!(lines[2], "1 saga, newest first");
    let run = dop_as(&s, &["admin", "sagas", "show", &ok_saga], &read).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("status   COMPLETED / DONE"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("IN_PROGRESS/RESERVING_INVENTORY  IN_PROGRESS/PROCESSING_PAYMENT"),
        "{}",
        run.stdout
    );
    let run = dop_as(
        &s,
        &["admin", "sagas", "show", &short_saga, "--json"],
        &read,
    )
    .await;
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["saga"]["status"], "FAILED");

    // Errors: the API's envelope, and a role that is not there.
    let missing = uuid::Uuid::now_v7().to_string();
    let run = dop_as(&s, &["admin", "sagas", "show", &missing], &read).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "the order role refused: saga {missing} not found (NOT_FOUND, HTTP 404)"
        )),
        "{}",
        run.stderr
    );
    let run = dop_as(
        &s,
        &["admin", "sagas", "--url", "http://127.0.0.1:1"],
        &read,
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("cannot reach the order role at http://127.0.0.1:1")
            && run.stderr.contains("is `dop serve` running?"),
        "{}",
        run.stderr
    );
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sagas_retry_needs_the_token() {
    let mut s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let done = s.order(pid, 1, "5.00").await;
    settle(&s, &done, "CONFIRMED").await;
    let done_saga = s.saga_of(&done).await;
    let api = AdminApi::new(&s.url(Role::Order, "")).unwrap();

    let err = api.retry(&done_saga, "").await.unwrap_err();
    assert!(
        matches!(err.downcast_ref(), Some(AdminApiError::NoToken { .. })),
        "{err:#}"
    );
    let err = api.retry(&done_saga, "wrong").await.unwrap_err();
    match err.downcast_ref() {
        Some(AdminApiError::Api { status, code, .. }) => {
            assert_eq!((*status, code.as_str()), (401, "UNAUTHORIZED"))
        }
        _ => panic!("expected a 401 envelope, got {err:#}"),
    }
    let err = api.retry(&done_saga, "test-token").await.unwrap_err();
    match err.downcast_ref() {
        Some(AdminApiError::Api { status, code, .. }) => {
            assert_eq!((*status, code.as_str()), (409, "CONFLICT"))
        }
        _ => panic!("a finished saga cannot be retried, got {err:#}"),
    }
    let run = dop(&s, &["admin", "sagas", "retry", &done_saga], None).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no admin token"), "{}", run.stderr);

    // A saga waiting on a stopped role: the retry re-sends its command.
    s.stop_role(Role::Inventory).await;
    let waiting = s.order(pid, 1, "5.00").await;
    let saga = s.saga_of(&waiting).await;
    let run = dop(&s, &["admin", "sagas", "retry", &saga], Some("test-token")).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with(&format!("saga {saga}: pending command re-sent (message ")),
        "{}",
        run.stdout
    );
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    settle(&s, &waiting, "CONFIRMED").await;
    assert!(audit_now(&s, Duration::ZERO).await.is_clean());
    s.teardown().await;
}

/// The DLQ's status of `queue`, polled until `depth`.
async fn dlq_with_depth(cfg: &Config, queue: &str, depth: u32) -> dlq::DlqStatus {
    eventually(&format!("{queue}.dlq to hold {depth}"), T, || async {
        let all = dlq::list(cfg).await.expect("dlq list");
        all.into_iter()
            .find(|d| d.queue == queue)
            .filter(|d| d.depth == Some(depth))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_dlq_lists_a_poison_message_with_its_reason() {
    let s = Stack::start(Opts::default()).await;
    let cfg = cfg(&s);
    let id = uuid::Uuid::new_v4().to_string();
    s.publisher()
        .await
        .publish(topology::COMMANDS, topology::RK_RESERVE, &id, b"{not json")
        .await;
    let d = dlq_with_depth(&cfg, topology::INVENTORY_COMMANDS, 1).await;
    assert_eq!(d.samples.len(), 1);
    let m = &d.samples[0];
    assert_eq!(m.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(m.routing_key.as_deref(), Some(topology::RK_RESERVE));
    assert!(
        m.reason
            .as_deref()
            .unwrap_or("")
            .starts_with("malformed body"),
        "{m:?}"
    );
    // Looking does not consume.
    let run = dop(&s, &["admin", "dlq", "list"], None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("DLQ                     DEPTH\ninventory.commands.dlq  1\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "{id}  inventory.reserve  -     0        malformed body"
        )),
        "{}",
        run.stdout
    );
    // Looking back to back never loses the sample: each look counts it and
    // shows it again (no polling here on purpose).
    for _ in 0..10 {
        let all = dlq::list(&cfg).await.expect("dlq list");
        let d = all
            .iter()
            .find(|d| d.queue == topology::INVENTORY_COMMANDS)
            .expect("inventory.commands listed");
        assert_eq!(d.depth, Some(1), "{d:?}");
        assert_eq!(d.samples.len(), 1, "{d:?}");
    }
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_dlq_redrive_finishes_a_dead_lettered_reserve() {
    // No recovery re-send: only the redrive can move this saga on.
    let mut s = Stack::start(Opts {
        stuck_after: Duration::from_secs(3600),
        ..Opts::default()
    })
    .await;
    let cfg = cfg(&s);
    let pid = product_id();
    s.add_product(pid, 10).await;
    s.stop_role(Role::Inventory).await;
    let id = s.order(pid, 2, "19.98").await;
    let saga = s.saga_of(&id).await;

    // Dead-letter its reserve by hand, exactly as a consumer that gave up
    // on it would.
    let p = s.publisher().await;
    let ch = p.conn.open_channel(None).await.unwrap();
    let (ok, props, body) = eventually("the reserve to be queued", T, || async {
        ch.basic_get(BasicGetArguments::new(topology::INVENTORY_COMMANDS))
            .await
            .unwrap()
    })
    .await;
    let headers = props.headers();
    let header = |k: &str| {
        headers
            .and_then(|h| h.get(&k.try_into().unwrap()))
            .map(|v| match v {
                amqprs::FieldValue::S(s) => s.as_ref().clone(),
                other => other.to_string(),
            })
    };
    let delivery = Delivery {
        queue: topology::INVENTORY_COMMANDS.into(),
        exchange: ok.exchange().clone(),
        routing_key: ok.routing_key().clone(),
        message_id: props.message_id().cloned().unwrap(),
        trace_id: header("trace_id").unwrap(),
        saga_id: header("saga_id"),
        retry_count: 2,
        body,
    };
    p.confirm
        .publish_confirmed(&dead_letter(&delivery, "retries exhausted: test"))
        .await
        .unwrap();
    ch.basic_ack(BasicAckArguments::new(ok.delivery_tag(), false))
        .await
        .unwrap();
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    let d = dlq_with_depth(&cfg, topology::INVENTORY_COMMANDS, 1).await;
    assert_eq!(d.samples[0].saga_id.as_deref(), Some(saga.as_str()));
    assert_eq!(d.samples[0].retry_count.as_deref(), Some("2"));
    assert_eq!(s.order_status(&id).await, "PENDING");

    // An operator action: refused without a configured token or with
    // another one.
    let mut open = cfg.clone();
    open.admin.token = Secret::default();
    let err = dlq::redrive(&open, "inventory.commands", None, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("admin.token is configured"),
        "{err}"
    );
    let err = dlq::redrive(&cfg, "inventory.commands", None, Some("wrong"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    let run = dop(
        &s,
        &["admin", "dlq", "redrive", "inventory.commands.dlq"],
        None,
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("refusing to redrive"), "{}", run.stderr);

    let run = dop(
        &s,
        &[
            "admin",
            "dlq",
            "redrive",
            "inventory.commands.dlq",
            "--token",
            "test-token",
        ],
        Some("test-token"),
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "redrive inventory.commands.dlq: moved 1 of 1 message(s) back to their original exchange\n"
    );
    settle(&s, &id, "CONFIRMED").await;
    let d = dlq_with_depth(&cfg, topology::INVENTORY_COMMANDS, 0).await;
    assert!(d.samples.is_empty());
    // Nothing left to move.
    let r = dlq::redrive(&cfg, "inventory.commands", Some(10), None)
        .await
        .unwrap();
    assert_eq!((r.depth_at_start, r.moved), (0, 0));
    let r = audit_now(&s, Duration::ZERO).await;
    assert!(r.is_clean(), "{r:#?}");
    s.teardown().await;
}

/// `dop admin prune` on real sagas aged by forty days, with
/// `retention.sagas` 30d: the dry run names what would go and deletes
/// nothing; the real run deletes the terminal sagas with their timelines and
/// orders and keeps the young one; the audit stays clean, counting the
/// deleted ones as retired, because their reserve logs and payments stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_prune_retires_old_terminal_sagas_and_the_audit_stays_clean() {
    let s = Stack::start(Opts::default()).await;
    let pid = product_id();
    s.add_product(pid, 3).await;
    let ok = s.order(pid, 2, "39.98").await;
    let short = s.order(pid, 5, "99.95").await;
    settle(&s, &ok, "CONFIRMED").await;
    settle(&s, &short, "FAILED").await;
    let young = s.order(pid, 1, "19.99").await;
    settle(&s, &young, "CONFIRMED").await;
    let old = format!("({ok}, {short})");
    let age = "INTERVAL 40 DAY";
    s.db(Role::Order)
        .await
        .batch_execute(&format!(
            "UPDATE orders SET created_at = created_at - {age}, updated_at = updated_at - {age} WHERE id IN {old}; \
             UPDATE saga_states SET created_at = created_at - {age}, updated_at = updated_at - {age} WHERE order_id IN {old}"
        ))
        .await
        .unwrap();
    s.db(Role::Inventory)
        .await
        .batch_execute(&format!(
            "UPDATE inventory_logs SET created_at = created_at - {age} WHERE order_id IN {old}"
        ))
        .await
        .unwrap();
    s.db(Role::Payment)
        .await
        .batch_execute(&format!(
            "UPDATE payments SET created_at = created_at - {age} WHERE order_id IN {old}"
        ))
        .await
        .unwrap();
    let env = [("DOP_RETENTION__SAGAS", "30d")];

    let dry = dop_as(&s, &["admin", "prune", "--dry-run", "--json"], &env).await;
    assert_eq!(dry.code, 0, "{} {}", dry.stdout, dry.stderr);
    let plans: Value = serde_json::from_str(&dry.stdout).unwrap();
    let sagas = plans
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["table"] == "saga_states")
        .unwrap_or_else(|| panic!("{plans:#}"));
    assert_eq!(sagas["role"], "order");
    assert_eq!(sagas["rows"], 2, "{plans:#}");
    assert_eq!(sagas["window_seconds"], 30 * 86_400);
    assert!(
        sagas["lag_seconds"].as_u64().unwrap() >= 9 * 86_400,
        "{plans:#}"
    );
    assert_eq!(
        s.get(Role::Order, &format!("/orders/{ok}")).await.status,
        200
    );

    let text = dop_as(
        &s,
        &["admin", "prune", "--dry-run", "--role", "order"],
        &env,
    )
    .await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("WOULD DELETE"), "{}", text.stdout);

    let run = dop_as(&s, &["admin", "prune"], &env).await;
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    for id in [&ok, &short] {
        assert_eq!(
            s.get(Role::Order, &format!("/orders/{id}")).await.status,
            404
        );
    }
    assert_eq!(
        s.get(Role::Order, &format!("/orders/{young}")).await.status,
        200
    );
    let again = dop_as(&s, &["admin", "prune", "--dry-run", "--json"], &env).await;
    let plans: Value = serde_json::from_str(&again.stdout).unwrap();
    assert!(
        plans.as_array().unwrap().iter().all(|p| p["rows"] == 0),
        "{plans:#}"
    );

    let audit = dop_as(
        &s,
        &["admin", "audit", "--in-flight-grace", "0s", "--json"],
        &env,
    )
    .await;
    assert_eq!(audit.code, 0, "{} {}", audit.stdout, audit.stderr);
    let r: Value = serde_json::from_str(&audit.stdout).unwrap();
    assert_eq!(r["retired"], 2, "{r:#}");
    assert_eq!(r["orders"], 1);
    // Without saga retention configured, the same rows are orphans.
    let strict = dop(&s, &["admin", "audit", "--in-flight-grace", "0s"], None).await;
    assert_eq!(strict.code, 1, "{}", strict.stdout);
    assert!(
        strict.stdout.contains("log_without_order"),
        "{}",
        strict.stdout
    );
    s.teardown().await;
}
