//! `dop bench` against an in-process stack: a tiny closed-loop run must
//! leave every saga it started terminal and the invariants intact. No
//! timing is asserted: the figures depend on the machine.

use std::time::Duration;

use dop::{
    cli::bench::{run_saga_bench, SagaOpts, Shape},
    roles::Role,
};

use crate::harness::{Opts, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_bench_drains_every_saga_and_audits_clean() {
    // Some payments fail, so compensations run under load too.
    let s = Stack::start(Opts {
        payment_failure_rate: 0.2,
        ..Opts::default()
    })
    .await;
    let mut opts = SagaOpts::new(s.url(Role::Order, ""), s.url(Role::Inventory, ""));
    opts.shape = Shape::Closed { concurrency: 4 };
    opts.duration = Duration::from_secs(2);
    opts.products = 3;
    opts.stock = 1_000_000;
    opts.drain_timeout = Duration::from_secs(60);

    let r = run_saga_bench(&s.cfg, &opts).await.expect("bench runs");
    eprint!("{}", dop::cli::bench::report::render(&r));

    assert!(r.ok > 0, "no order accepted: {r:?}");
    assert_eq!(r.errors, 0, "errors: {:?}", r.errors_by_kind);
    assert_eq!(r.sent, r.ok + r.errors);
    assert!(r.sagas.drained, "sagas left in flight: {:?}", r.sagas);
    assert_eq!(r.sagas.pending, 0);
    assert_eq!(r.sagas.created, r.ok, "one saga per accepted order");
    assert_eq!(r.sagas.terminal, r.ok);
    assert_eq!(
        r.sagas.by_status.values().sum::<u64>(),
        r.sagas.created,
        "{:?}",
        r.sagas.by_status
    );
    assert_eq!(r.latency.count, r.sent);
    assert_eq!(r.sagas.duration.count, r.sagas.terminal);
    assert!(r.audit.ran && r.audit.error.is_none(), "{:?}", r.audit);
    assert!(
        r.audit.clean,
        "invariant violations: {:?}",
        r.audit.examples
    );
    assert!(r.passed());
    // The stack's own audit agrees.
    assert!(s.audit().await.is_clean());
    s.teardown().await;
}

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Signature {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    events: String,
    /// Timeline events whose message is in the order role's inbox.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    inbox: i64,
}

/// Per saga: its status, its timeline's events in order, and how many of
/// them the inbox recorded; for orders below `split` (aged) or from it on
/// (placed through HTTP).
async fn signatures(s: &Stack, aged: bool, split: i64) -> std::collections::BTreeSet<Signature> {
    use diesel_async::RunQueryDsl;
    let cmp = if aged { "<" } else { ">=" };
    let rows: Vec<Signature> = diesel::sql_query(format!(
        "SELECT g.status, GROUP_CONCAT(e.event ORDER BY e.id SEPARATOR ' ') AS events, \
         CAST(SUM(p.message_id IS NOT NULL) AS SIGNED) AS inbox \
         FROM saga_states g JOIN saga_events e ON e.saga_id = g.saga_id \
         LEFT JOIN processed_events p ON p.message_id = e.message_id \
         WHERE g.order_id {cmp} {split} GROUP BY g.saga_id, g.status"
    ))
    .load(&mut s.db(Role::Order).await)
    .await
    .expect("read the timelines");
    rows.into_iter().collect()
}

/// `--mode age` writes, per saga, the rows the running roles write: the
/// same timelines and inbox records as sagas placed through HTTP (both
/// outcomes), one reserve log (and a release when compensated), one
/// payment per order; and the audit of aged and live sagas together is
/// clean (stock, logs, payments and orders agree). It refuses a database
/// that already has orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aged_rows_look_like_the_running_system_and_audit_clean() {
    use dop::cli::bench::age::{self, AgeOpts};
    let s = Stack::start(Opts {
        payment_failure_rate: 0.5,
        ..Opts::default()
    })
    .await;
    let opts = AgeOpts {
        days: 1.0,
        rate: 300.0 / 86_400.0,
        products: 3,
        users: 50,
        compensated_pct: 30,
    };
    let r = age::run(&s.cfg, &opts, |_, _| {})
        .await
        .expect("ageing runs");
    assert_eq!(r.sagas, 300);
    let split = r.first_order_id + 300;
    let inboxes = r
        .tables
        .iter()
        .filter(|x| x.table == "processed_events")
        .count();
    assert_eq!(inboxes, 2, "both inboxes: {:?}", r.tables);

    let mut bench = SagaOpts::new(s.url(Role::Order, ""), s.url(Role::Inventory, ""));
    bench.shape = Shape::Closed { concurrency: 4 };
    bench.duration = Duration::from_secs(2);
    bench.products = 3;
    bench.stock = 1_000_000;
    bench.drain_timeout = Duration::from_secs(60);
    let b = run_saga_bench(&s.cfg, &bench).await.expect("bench runs");
    assert!(b.sagas.drained && b.ok > 0, "{b:?}");

    // Live ids come from a block the order role took before the ageing.
    let (aged, live) = if r.first_order_id == 1 {
        (
            signatures(&s, true, split).await,
            signatures(&s, false, split).await,
        )
    } else {
        (
            signatures(&s, false, r.first_order_id).await,
            signatures(&s, true, r.first_order_id).await,
        )
    };
    assert_eq!(aged.len(), 2, "both outcomes aged: {aged:?}");
    assert_eq!(aged, live, "aged sagas look like live ones");

    let report = s.audit().await;
    assert!(report.is_clean(), "{:#?}", report.violations);
    assert_eq!(report.orders, 300 + b.ok);

    let again = age::run(&s.cfg, &opts, |_, _| {}).await.unwrap_err();
    assert!(
        format!("{again:#}").contains("already has orders"),
        "{again:#}"
    );
    s.teardown().await;
}
