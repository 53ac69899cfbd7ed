//! `rabbitmq.queue_type`: the quorum topology (types, at-least-once
//! dead-lettering, retry TTL), a role meeting queues of the other type, and
//! `dop admin queues migrate` moving a deployment from classic to quorum
//! queues without losing a message.

use std::time::Duration;

use amqprs::channel::{BasicGetArguments, BasicNackArguments};
use dop::{
    config::QueueType,
    messaging::{broker, topology},
    roles::Role,
};
use serde_json::Value;

use crate::harness::{eventually, mgmt, product_id, Opts, Stack};

const T: Duration = Duration::from_secs(30);

/// The management API's view of one queue of the stack's vhost.
async fn queue_info(s: &Stack, queue: &str) -> Value {
    let r = mgmt(
        hyper::Method::GET,
        &format!("/api/queues/{}/{queue}", s.vhost),
        None,
    )
    .await
    .expect("management API");
    assert!(r.status.is_success(), "{queue}: {}", r.text());
    r.json().unwrap()
}

async fn assert_every_queue_is(s: &Stack, kind: &str) {
    for d in topology::queue_decls(s.cfg.retry.delay) {
        let q = queue_info(s, &d.name).await;
        assert_eq!(q["type"], kind, "{}: {q}", d.name);
        if kind == "quorum" && !d.name.ends_with(".dlq") {
            assert_eq!(
                q["arguments"]["x-dead-letter-strategy"], "at-least-once",
                "{}",
                d.name
            );
            assert_eq!(q["arguments"]["x-overflow"], "reject-publish", "{}", d.name);
        }
    }
}

fn no_roles(kind: QueueType) -> Opts {
    Opts {
        roles: vec![],
        queue_type: kind,
        ..Opts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_retry_and_dead_letter_like_classic_ones() {
    let s = Stack::start(no_roles(QueueType::Quorum)).await;
    let p = s.publisher().await;
    topology::declare_checked(&p.conn, s.cfg.retry.delay, QueueType::Quorum)
        .await
        .expect("declare the quorum topology");
    assert_every_queue_is(&s, "quorum").await;
    // Declaring it again changes nothing (every role does, at each connect).
    topology::declare_checked(&p.conn, s.cfg.retry.delay, QueueType::Quorum)
        .await
        .expect("declare again");

    // Retry: held for retry.delay, then back in the consumed queue.
    p.publish(topology::RETRY, topology::RK_RESERVE, "m-retry", b"{}")
        .await;
    eventually(
        "the retried message back in inventory.commands",
        T,
        || async { (p.depth(topology::INVENTORY_COMMANDS).await == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        p.depth(&topology::retry_queue(topology::INVENTORY_COMMANDS))
            .await,
        0
    );

    // A reject (nack without requeue) lands in the DLQ.
    let ch = p.conn.open_channel(None).await.unwrap();
    let (ok, props, _) = ch
        .basic_get(BasicGetArguments::new(topology::INVENTORY_COMMANDS))
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(props.message_id().map(String::as_str), Some("m-retry"));
    ch.basic_nack(BasicNackArguments::new(ok.delivery_tag(), false, false))
        .await
        .unwrap();
    let dlq = topology::dlq(topology::INVENTORY_COMMANDS);
    eventually("the rejected message in the DLQ", T, || async {
        (p.depth(&dlq).await == 1).then_some(())
    })
    .await;
    assert_eq!(p.depth(topology::INVENTORY_COMMANDS).await, 0);
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_completes_on_quorum_queues() {
    let s = Stack::start(Opts {
        queue_type: QueueType::Quorum,
        ..Opts::default()
    })
    .await;
    assert_every_queue_is(&s, "quorum").await;
    let pid = product_id();
    s.add_product(pid, 5).await;
    let id = s.order(pid, 2, "10.00").await;
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");
    assert!(s.audit().await.is_clean());
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_meeting_classic_queues_says_which_and_where_to_read() {
    let mut s = Stack::start(no_roles(QueueType::Classic)).await;
    let p = s.publisher().await;
    topology::declare_checked(&p.conn, s.cfg.retry.delay, QueueType::Classic)
        .await
        .unwrap();

    // The declare itself names the queue and the way out.
    let err = topology::declare_checked(&p.conn, s.cfg.retry.delay, QueueType::Quorum)
        .await
        .expect_err("classic queues cannot be declared quorum");
    let conflict = err
        .downcast_ref::<topology::TopologyConflict>()
        .unwrap_or_else(|| panic!("not a TopologyConflict: {err:#}"));
    assert_eq!(conflict.queue, "inventory.commands.dlq");
    let text = conflict.to_string();
    assert!(text.contains("PRECONDITION_FAILED"), "{text}");
    assert!(text.contains(topology::MIGRATION_DOC), "{text}");

    // A role configured for quorum is not ready and says why.
    s.cfg.rabbitmq.queue_type = QueueType::Quorum;
    s.start_role(Role::Payment).await;
    let body = eventually("/ready to report the conflict", T, || async {
        let r = s.get(Role::Payment, "/ready").await;
        let b: Value = r.json().ok()?;
        (r.status == 503 && b["broker"] == "queue conflict").then_some(b)
    })
    .await;
    let why = body["broker_error"].as_str().unwrap_or_default();
    assert!(why.contains("inventory.commands.dlq"), "{body}");
    assert!(why.contains("docs/operations.md"), "{body}");
    assert!(!why.contains("guest"), "{body}");

    // Migrating fixes it without a restart of the role.
    let report = dop::cli::admin::queues::migrate(&s.cfg, None)
        .await
        .expect("migrate");
    assert!(
        report.queues.iter().all(|q| q.action == "recreated"),
        "{report:?}"
    );
    s.wait_ready(Role::Payment).await;
    assert_every_queue_is(&s, "quorum").await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_to_quorum_keeps_every_message_and_every_saga_ends() {
    // No recovery loop re-sending commands: every saga must end on the
    // messages that were queued before the migration.
    let mut s = Stack::start(Opts {
        queue_type: QueueType::Classic,
        recovery_interval: Duration::from_secs(3600),
        stuck_after: Duration::from_secs(3600),
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 1000).await;
    // Commands pile up in inventory.commands: nobody consumes them.
    s.stop_role(Role::Inventory).await;
    s.stop_role(Role::Payment).await;
    const N: u32 = 20;
    let mut orders = Vec::new();
    for _ in 0..N {
        orders.push(s.order(pid, 1, "3.00").await);
    }
    let p = s.publisher().await;
    eventually("every reserve command queued", T, || async {
        (p.depth(topology::INVENTORY_COMMANDS).await == N).then_some(())
    })
    .await;
    // Some wait in the retry queue (a long delay: they are still there when
    // the migration runs), some in the DLQ, as a live system has them.
    s.stop_role(Role::Order).await;
    let ch = p.conn.open_channel(None).await.unwrap();
    let get = || async {
        ch.basic_get(BasicGetArguments::new(topology::INVENTORY_COMMANDS))
            .await
            .unwrap()
            .expect("a queued command")
    };
    let retry = topology::retry_queue(topology::INVENTORY_COMMANDS);
    let dlq = topology::dlq(topology::INVENTORY_COMMANDS);
    let long = Duration::from_secs(600);
    // The classic retry queue of this test holds messages ten minutes.
    let rch = p.conn.open_channel(None).await.unwrap();
    rch.queue_delete(amqprs::channel::QueueDeleteArguments::new(&retry))
        .await
        .unwrap();
    let decl = topology::queue_decls(long)
        .into_iter()
        .find(|d| d.name == retry)
        .unwrap();
    topology::declare_queue(&rch, &retry, QueueType::Classic, decl.args)
        .await
        .unwrap();
    for key in [topology::RK_RESERVE, topology::RK_RELEASE] {
        rch.queue_bind(amqprs::channel::QueueBindArguments::new(
            &retry,
            topology::RETRY,
            key,
        ))
        .await
        .unwrap();
    }
    for _ in 0..5 {
        let (ok, props, body) = get().await;
        p.confirm
            .publish_as_is(topology::RETRY, ok.routing_key(), props, body)
            .await
            .expect("into the retry queue");
        ch.basic_ack(amqprs::channel::BasicAckArguments::new(
            ok.delivery_tag(),
            false,
        ))
        .await
        .unwrap();
    }
    for _ in 0..3 {
        let (ok, _, _) = get().await;
        ch.basic_nack(BasicNackArguments::new(ok.delivery_tag(), false, false))
            .await
            .unwrap();
    }
    eventually("5 retried, 3 dead, 12 waiting", T, || async {
        let d = (
            p.depth(topology::INVENTORY_COMMANDS).await,
            p.depth(&retry).await,
            p.depth(&dlq).await,
        );
        (d == (12, 5, 3)).then_some(())
    })
    .await;
    let _ = ch.close().await;
    let _ = rch.close().await;

    // The procedure: every role stopped (above), migrate, start with quorum.
    let mut quorum = s.cfg.clone();
    quorum.rabbitmq.queue_type = QueueType::Quorum;
    let refused = dop::cli::admin::queues::migrate(&quorum, Some("wrong")).await;
    assert!(refused.is_err(), "a wrong token must be refused");
    let report = dop::cli::admin::queues::migrate(&quorum, None)
        .await
        .expect("migrate");
    let moved = |q: &str| {
        let e = report.queues.iter().find(|e| e.queue == q).unwrap();
        assert_eq!(e.action, "recreated", "{e:?}");
        assert_eq!(e.moved_out, e.moved_back, "{e:?}");
        e.moved_out
    };
    assert_eq!(moved(topology::INVENTORY_COMMANDS), 12);
    assert_eq!(moved(&retry), 5);
    assert_eq!(moved(&dlq), 3);
    assert_eq!(report.queues.len(), 9);
    s.cfg = quorum;
    assert_every_queue_is(&s, "quorum").await;
    // Running it again finds nothing to do.
    let again = dop::cli::admin::queues::migrate(&s.cfg, None)
        .await
        .unwrap();
    assert!(
        again
            .queues
            .iter()
            .all(|q| q.action == "kept" && q.moved_back == 0),
        "{again:?}"
    );

    for role in Role::ALL {
        s.start_role(role).await;
        s.wait_ready(role).await;
    }
    // The dead letters go back by the usual operator action.
    let r = dop::cli::admin::dlq::redrive(&s.cfg, topology::INVENTORY_COMMANDS, None, None)
        .await
        .expect("redrive");
    assert_eq!(r.moved, 3, "{r:?}");
    for id in &orders {
        assert_eq!(s.wait_terminal(id, T).await, "CONFIRMED", "order {id}");
    }
    let report = s.audit().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(s.inventory(pid).await["available_qty"], 1000 - N as i64);
    // Nothing left behind: no holding queue, nothing queued.
    let r = mgmt(
        hyper::Method::GET,
        &format!("/api/queues/{}", s.vhost),
        None,
    )
    .await
    .unwrap();
    let names: Vec<String> = r
        .json()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".migrating")),
        "{names:?}"
    );
    let _ = broker::connect(&s.cfg)
        .await
        .expect("connect")
        .close()
        .await;
    s.teardown().await;
}
