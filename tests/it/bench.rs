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
