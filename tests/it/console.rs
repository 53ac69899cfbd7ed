//! What the operator console needs from the order role, against a real
//! stack: its embedded assets with their security headers, and the admin
//! API it calls besides the CLI's (the summary with rates and stuck
//! sagas, the list's age filters, the dead-letter queues over HTTP with
//! their tokens). The page itself is tested in a real browser by
//! scripts/check-console.sh.

use std::time::Duration;

use dop::{
    cli::admin::sagas::{AdminApi, ListOpts},
    messaging::topology,
    roles::Role,
};
use hyper::Method;
use serde_json::Value;

use crate::harness::{eventually, product_id, Opts, Stack};

const T: Duration = Duration::from_secs(30);

/// GET `path` on the order role with `token` (none: no header).
async fn get_as(s: &Stack, path: &str, token: Option<&str>) -> (u16, Value) {
    send_as(s, Method::GET, path, token).await
}

async fn send_as(s: &Stack, method: Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let r = s
        .http
        .send(method, &s.url(Role::Order, path), None, &headers)
        .await
        .expect("the order role answers");
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status.as_u16(), body)
}

fn count(summary: &Value, status: &str) -> (i64, i64) {
    let row = summary["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == status)
        .unwrap_or_else(|| panic!("{status} missing from {summary:#}"));
    (
        row["count"].as_i64().unwrap(),
        row["in_window"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_assets_are_embedded_and_sent_with_a_strict_csp() {
    let s = Stack::start(Opts {
        roles: vec![Role::Order],
        ..Opts::default()
    })
    .await;
    for (path, kind, needle) in [
        ("/console", "text/html", "/console/app.js"),
        ("/console/", "text/html", "/console/app.css"),
        ("/console/app.js", "text/javascript", "sessionStorage"),
        ("/console/app.css", "text/css", "@media"),
    ] {
        let r = s
            .http
            .send(Method::GET, &s.url(Role::Order, path), None, &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path}");
        let h = |n: &str| {
            r.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert!(
            h("content-type").starts_with(kind),
            "{path}: {}",
            h("content-type")
        );
        assert_eq!(
            h("content-security-policy"),
            dop::roles::order::console::CSP
        );
        assert!(h("content-security-policy").contains("script-src 'self'"));
        assert!(!h("content-security-policy").contains("unsafe"));
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("x-frame-options"), "DENY");
        assert!(r.text().contains(needle), "{path} lacks {needle}");
    }
    // The assets are the files in the repository, not a copy.
    let js = s
        .http
        .send(
            Method::GET,
            &s.url(Role::Order, "/console/app.js"),
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        js.text(),
        include_str!("../../src/roles/order/console/app.js")
    );
    // No other path under /console, and no token needed to load the page
    // (the data behind it needs one).
    let (st, body) = get_as(&s, "/console/secrets.json", None).await;
    assert_eq!((st, body["code"].as_str()), (404, Some("NOT_FOUND")));
    let (st, _) = get_as(&s, "/admin/summary", None).await;
    assert_eq!(st, 401);
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_summary_counts_rates_and_stuck_sagas() {
    // Recovery never re-sends here, so a saga whose role is down stays put.
    let mut s = Stack::start(Opts {
        read_token: Some("test-read".into()),
        stuck_after: Duration::from_secs(1),
        recovery_interval: Duration::from_secs(3600),
        ..Opts::default()
    })
    .await;
    let (st, empty) = get_as(&s, "/admin/summary", Some("test-read")).await;
    assert_eq!(st, 200, "{empty}");
    assert_eq!(
        (
            empty["total"].as_i64(),
            empty["in_flight"].as_i64(),
            empty["window_seconds"].as_i64()
        ),
        (Some(0), Some(0), Some(60))
    );
    assert_eq!(empty["statuses"].as_array().unwrap().len(), 5);

    let pid = product_id();
    s.add_product(pid, 1).await;
    let ok = s.order(pid, 1, "5.00").await;
    assert_eq!(s.wait_terminal(&ok, T).await, "CONFIRMED");
    let short = s.order(pid, 1, "5.00").await;
    assert_eq!(s.wait_terminal(&short, T).await, "FAILED");
    s.stop_role(Role::Inventory).await;
    let waiting = s.order(pid, 1, "5.00").await;
    let waiting_saga = s.saga_of(&waiting).await;

    let sum = eventually("the waiting saga to count as stuck", T, || async {
        let (_, v) = get_as(&s, "/admin/summary", Some("test-read")).await;
        (v["stuck"] == 1).then_some(v)
    })
    .await;
    assert_eq!(sum["total"], 3, "{sum:#}");
    assert_eq!(sum["in_flight"], 1, "{sum:#}");
    assert_eq!(sum["started_in_window"], 3, "{sum:#}");
    assert_eq!(sum["stuck_after_seconds"], 1, "{sum:#}");
    assert_eq!(count(&sum, "COMPLETED"), (1, 1));
    assert_eq!(count(&sum, "FAILED"), (1, 1));
    assert_eq!(count(&sum, "IN_PROGRESS").0, 1);
    assert_eq!(count(&sum, "COMPENSATED"), (0, 0));

    // The list's age filters: not moved for 1 s finds the stuck saga (and
    // the finished ones, which have not moved either), flagged.
    let (st, _) = get_as(&s, "/admin/sagas?idle_for=1&status=IN_PROGRESS", None).await;
    assert_eq!(st, 401, "reads need a token once one is configured");
    let (st, idle) = get_as(
        &s,
        "/admin/sagas?idle_for=1&status=IN_PROGRESS",
        Some("test-read"),
    )
    .await;
    assert_eq!(st, 200, "{idle}");
    assert_eq!(idle["count"], 1, "{idle:#}");
    let g = &idle["sagas"][0];
    assert_eq!(g["saga_id"], waiting_saga.as_str());
    assert_eq!(g["stuck"], true);
    assert!(g["idle_seconds"].as_i64().unwrap() >= 1, "{g}");
    let (_, all) = get_as(&s, "/admin/sagas", Some("test-read")).await;
    let stuck: Vec<bool> = all["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["stuck"].as_bool().unwrap())
        .collect();
    assert_eq!(
        stuck,
        [true, false, false],
        "only the saga in flight is stuck"
    );
    let (_, fresh) = get_as(&s, "/admin/sagas?idle_for=3600", Some("test-read")).await;
    assert_eq!(fresh["count"], 0, "{fresh:#}");
    let (_, old) = get_as(&s, "/admin/sagas?older_than=3600", Some("test-read")).await;
    assert_eq!(old["count"], 0, "{old:#}");
    let (_, young) = get_as(&s, "/admin/sagas?older_than=0", Some("test-read")).await;
    assert_eq!(young["count"], 3, "{young:#}");
    for bad in [
        "idle_for=-1",
        "idle_for=1.5",
        "older_than=abc",
        "older_than=315360001",
    ] {
        let (st, e) = get_as(&s, &format!("/admin/sagas?{bad}"), Some("test-read")).await;
        assert_eq!(
            (st, e["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{bad}: {e}"
        );
        assert!(e["error"].as_str().unwrap().contains("seconds"), "{e}");
    }
    // The CLI sends the same filters.
    let api = AdminApi::new(&s.url(Role::Order, ""))
        .unwrap()
        .with_read_token("test-read");
    let idle = ListOpts {
        idle_for: Some(Duration::from_secs(1)),
        status: Some("IN_PROGRESS".into()),
        ..ListOpts::default()
    };
    let (l, _) = api.list(&idle).await.unwrap();
    let ids: Vec<&str> = l.sagas.iter().map(|g| g.saga_id.as_str()).collect();
    assert_eq!(ids, [waiting_saga.as_str()]);
    let old = ListOpts {
        older_than: Some(Duration::from_secs(3600)),
        ..ListOpts::default()
    };
    assert_eq!(api.list(&old).await.unwrap().0.count, 0);
    let (_, detail) = get_as(
        &s,
        &format!("/admin/sagas/{waiting_saga}"),
        Some("test-read"),
    )
    .await;
    assert_eq!(detail["saga"]["stuck"], true);

    // The operator re-sends the reserve; the role comes back and handles
    // it (the product's one unit is gone: the saga fails).
    let (st, r) = send_as(
        &s,
        Method::POST,
        &format!("/admin/sagas/{waiting_saga}/retry"),
        Some("test-token"),
    )
    .await;
    assert_eq!(st, 202, "{r}");
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    assert_eq!(s.wait_terminal(&waiting, T).await, "FAILED");
    let (_, after) = get_as(&s, "/admin/summary", Some("test-read")).await;
    assert_eq!(
        (after["in_flight"].as_i64(), after["stuck"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(count(&after, "FAILED"), (2, 2));
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_dlq_over_http_peeks_and_redrives_with_the_operator_token() {
    let s = Stack::start(Opts {
        read_token: Some("test-read".into()),
        ..Opts::default()
    })
    .await;
    let id = uuid::Uuid::now_v7().to_string();
    s.publisher()
        .await
        .publish(topology::COMMANDS, topology::RK_RESERVE, &id, b"{not json")
        .await;
    let (st, _) = get_as(&s, "/admin/dlq", None).await;
    assert_eq!(st, 401);
    let list = eventually("the poison message in the DLQ", T, || async {
        let (st, v) = get_as(&s, "/admin/dlq", Some("test-read")).await;
        assert_eq!(st, 200, "{v}");
        let q = v
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["queue"] == topology::INVENTORY_COMMANDS)
            .cloned()
            .expect("inventory.commands listed");
        (q["depth"] == 1).then_some(q)
    })
    .await;
    assert_eq!(list["dlq"], "inventory.commands.dlq");
    let m = &list["samples"][0];
    assert_eq!(m["message_id"], id.as_str());
    assert!(
        m["reason"].as_str().unwrap().starts_with("malformed body"),
        "{m}"
    );

    let path = "/admin/dlq/inventory.commands.dlq/redrive";
    for (token, want, code) in [
        (None, 401, "UNAUTHORIZED"),
        (Some("wrong"), 401, "UNAUTHORIZED"),
        (Some("test-read"), 403, "FORBIDDEN"),
    ] {
        let (st, e) = send_as(&s, Method::POST, path, token).await;
        assert_eq!(
            (st, e["code"].as_str()),
            (want, Some(code)),
            "{token:?}: {e}"
        );
    }
    let (st, e) = send_as(
        &s,
        Method::POST,
        "/admin/dlq/nope/redrive",
        Some("test-token"),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (404, Some("NOT_FOUND")), "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("unknown queue"),
        "{e}"
    );
    let (st, e) = send_as(
        &s,
        Method::POST,
        &format!("{path}?limit=0"),
        Some("test-token"),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{e}"
    );
    // Still there after the refusals.
    let (_, v) = get_as(&s, "/admin/dlq", Some("test-read")).await;
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["dlq"] == "inventory.commands.dlq" && q["depth"] == 1));

    let (st, r) = send_as(&s, Method::POST, path, Some("test-token")).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["depth_at_start"].as_i64(), r["moved"].as_i64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert!(r["error"].is_null(), "{r}");
    // A malformed body fails again and comes back, dead-lettered anew
    // (what a redrive of a poison message does; the browser test redrives
    // a good one).
    eventually("the poison message back in the DLQ", T, || async {
        let (_, v) = get_as(&s, "/admin/dlq", Some("test-read")).await;
        v.as_array()
            .unwrap()
            .iter()
            .any(|q| q["dlq"] == "inventory.commands.dlq" && q["depth"] == 1)
            .then_some(())
    })
    .await;
    s.teardown().await;
}

/// On a large table the summary stays bounded: a status past the cap is
/// reported as "at least the cap" (the console shows 10000+), the window's
/// rates come from the timeline's last minute only (a day of aged history
/// does not count in them), and a saga finished now does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_caps_its_counts_and_reads_only_the_window_on_large_tables() {
    use dop::cli::bench::age::{self, AgeOpts};
    let s = Stack::start(Opts {
        read_token: Some("test-read".into()),
        ..Opts::default()
    })
    .await;
    let cap = dop::roles::order::admin::COUNT_CAP;
    // A tenth compensated: COMPLETED alone passes the cap.
    let n = cap * 12 / 10;
    let opts = AgeOpts {
        days: 1.0,
        rate: n as f64 / 86_400.0,
        products: 2,
        users: 100,
        compensated_pct: 10,
    };
    let aged = age::run(&s.cfg, &opts, |_, _| {})
        .await
        .expect("ageing runs");
    assert_eq!(aged.sagas, n as u64);
    let pid = product_id();
    s.add_product(pid, 5).await;
    let ok = s.order(pid, 1, "5.00").await;
    assert_eq!(
        s.wait_terminal(&ok, Duration::from_secs(30)).await,
        "CONFIRMED"
    );

    let (st, sum) = get_as(&s, "/admin/summary", Some("test-read")).await;
    assert_eq!(st, 200, "{sum}");
    let row = |status: &str| {
        sum["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == status)
            .unwrap_or_else(|| panic!("{status} in {sum:#}"))
            .clone()
    };
    let completed = row("COMPLETED");
    assert_eq!(completed["count"], cap, "{sum:#}");
    assert_eq!(completed["capped"], true, "{sum:#}");
    // The history runs up to now at about 10 sagas a minute: the window
    // holds those and the saga finished now, not the other thousands.
    let recent = completed["in_window"].as_i64().unwrap();
    assert!((1..30).contains(&recent), "{sum:#}");
    let compensated = row("COMPENSATED");
    assert_eq!(compensated["capped"], false, "{sum:#}");
    assert!(compensated["in_window"].as_i64().unwrap() < 10, "{sum:#}");
    assert!(compensated["count"].as_i64().unwrap() > 1000, "{sum:#}");
    assert_eq!(sum["capped"], true);
    let started = sum["started_in_window"].as_i64().unwrap();
    assert!((1..30).contains(&started), "{sum:#}");
    assert_eq!(sum["in_flight"], 0);
    s.teardown().await;
}
