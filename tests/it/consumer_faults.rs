//! Faults injected into a consumer's handler, run by the real consumer
//! machinery (`Broker`, `consumer::run`) against RabbitMQ on a fresh vhost: a
//! handler that panics, or that returns a wrong number of outcomes, is logged
//! and counted, its deliveries go through the retry queue, and the queue
//! still drains with nothing left unacked.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use amqprs::{channel::BasicGetArguments, FieldValue};
use async_trait::async_trait;
use dop::{
    messaging::{
        consumer::{Delivery, Handler, Outcome},
        topology, Broker,
    },
    observability::Metrics,
};

use crate::harness::{eventually, metric, mgmt, Opts, Stack, TestPublisher};

const QUEUE: &str = topology::INVENTORY_COMMANDS;

/// A test-only handler: panics on any batch holding a delivery whose body
/// is `panic`; returns one outcome too few for a batch holding a first
/// delivery (not a retry) whose body is `short`; otherwise acks everything
/// and records the message ids it acked.
#[derive(Default)]
struct Faulty {
    acked: Mutex<BTreeSet<String>>,
    /// Deliveries handed to `handle_batch` (each one is settled once).
    seen: AtomicUsize,
}

#[async_trait]
impl Handler for Faulty {
    async fn handle_batch(&self, ds: &[Delivery]) -> Vec<Outcome> {
        if ds.iter().any(|d| d.body == b"panic") {
            panic!("injected fault for {}", ds.len());
        }
        self.seen.fetch_add(ds.len(), Ordering::SeqCst);
        let mut out: Vec<Outcome> = ds.iter().map(|_| Outcome::Ack).collect();
        if ds.iter().any(|d| d.body == b"short" && d.retry_count == 0) {
            out.pop();
        }
        let mut acked = self.acked.lock().unwrap();
        for (d, o) in ds.iter().zip(&out) {
            if *o == Outcome::Ack {
                acked.insert(d.message_id.clone());
            }
        }
        out
    }
}

struct Setup {
    stack: Stack,
    publisher: TestPublisher,
    handler: Arc<Faulty>,
    metrics: Arc<Metrics>,
    broker: Broker,
    supervisor: Option<tokio::task::JoinHandle<()>>,
}

/// A vhost with dop's topology and, queued before any consumer runs (so
/// they arrive together and share batches), one message per body.
async fn setup(bodies: &[&str]) -> (Setup, Vec<String>) {
    let stack = Stack::start(Opts {
        roles: vec![],
        ..Opts::default()
    })
    .await;
    let publisher = stack.publisher().await;
    topology::declare(
        publisher.confirm.channel(),
        stack.cfg.retry.delay,
        stack.cfg.rabbitmq.queue_type,
    )
    .await
    .expect("declare the topology");
    let mut ids = Vec::new();
    for body in bodies {
        let id = uuid::Uuid::new_v4().to_string();
        publisher
            .publish(
                topology::COMMANDS,
                topology::RK_RESERVE,
                &id,
                body.as_bytes(),
            )
            .await;
        ids.push(id);
    }
    let handler = Arc::new(Faulty::default());
    let metrics = Arc::new(Metrics::new("test-service"));
    let broker = Broker::new(&stack.cfg, metrics.clone()).expect("broker");
    broker.consume(QUEUE, handler.clone());
    let supervisor = Some(broker.start());
    (
        Setup {
            stack,
            publisher,
            handler,
            metrics,
            broker,
            supervisor,
        },
        ids,
    )
}

impl Setup {
    /// Waits until the handler has acked every message of `ids`.
    async fn wait_acked(&self, ids: &[String]) {
        eventually(
            "the handler to ack every healthy message",
            Duration::from_secs(30),
            || async {
                let acked = self.handler.acked.lock().unwrap();
                ids.iter().all(|id| acked.contains(id)).then_some(())
            },
        )
        .await;
    }

    fn failures(&self, cause: &str) -> f64 {
        metric(
            &self.metrics.encode(),
            "batch_failures_total",
            &format!("batch=\"{QUEUE}\",cause=\"{cause}\""),
        )
    }

    /// Polls the management API until the queue is empty with nothing
    /// unacked, in a sample taken after at least `acks` acks (its statistics
    /// lag by seconds; the ack count proves the sample is recent enough).
    async fn wait_drained(&self, acks: u64) {
        let path = format!("/api/queues/{}/{QUEUE}", self.stack.vhost);
        let mut last = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(r) = mgmt(hyper::Method::GET, &path, None).await {
                if let Ok(q) = r.json() {
                    let n = |k: &str| q[k].as_u64();
                    if n("messages") == Some(0)
                        && n("messages_unacknowledged") == Some(0)
                        && q["message_stats"]["ack"].as_u64() >= Some(acks)
                    {
                        return;
                    }
                    last = format!(
                        "messages {}, unacked {}, acked {}",
                        q["messages"], q["messages_unacknowledged"], q["message_stats"]["ack"]
                    );
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{QUEUE} not drained with {acks} acks: {last} (all null: RabbitMQ's \
                 statistics are off; `rabbitmqctl eval 'application:set_env(rabbit, \
                 collect_statistics, fine).'` turns them back on)"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The messages in the DLQ: (message id, x-dlq-reason).
    async fn dead_letters(&self) -> Vec<(String, String)> {
        let ch = self.publisher.confirm.channel();
        let mut out = Vec::new();
        while let Some((_, props, _)) = ch
            .basic_get(BasicGetArguments::new(&topology::dlq(QUEUE)))
            .await
            .expect("basic.get from the DLQ")
        {
            let reason = props
                .headers()
                .and_then(|h| h.get(&"x-dlq-reason".try_into().unwrap()).cloned());
            let reason = match reason {
                Some(FieldValue::S(s)) => s.as_ref().clone(),
                other => format!("{other:?}"),
            };
            out.push((props.message_id().cloned().unwrap_or_default(), reason));
        }
        out
    }

    async fn teardown(mut self) {
        self.broker.close();
        if let Some(s) = self.supervisor.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
        self.stack.teardown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_retries_then_dead_letters_and_the_queue_drains() {
    let mut bodies = vec!["ok"; 20];
    bodies.push("panic");
    bodies.extend(["ok"; 20]);
    let (s, ids) = setup(&bodies).await;
    let poison = ids[20].clone();
    let healthy: Vec<String> = ids.iter().filter(|id| **id != poison).cloned().collect();
    s.wait_acked(&healthy).await;

    // The poisoned delivery: tried max_attempts (3) times, then the DLQ.
    let dlq = topology::dlq(QUEUE);
    eventually(
        "the panicking delivery in the DLQ",
        Duration::from_secs(30),
        || async { (s.publisher.depth(&dlq).await == 1).then_some(()) },
    )
    .await;
    let dead = s.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, poison);
    assert!(
        dead[0].1.contains("retries exhausted after 3 attempts")
            && dead[0].1.contains("handler panicked: injected fault"),
        "{}",
        dead[0].1
    );
    // At least once per attempt (more when it shared a batch).
    assert!(s.failures("panic") >= 3.0, "{}", s.metrics.encode());

    // The consumer keeps consuming: later messages are handled too.
    let mut later = Vec::new();
    for _ in 0..5 {
        let id = uuid::Uuid::new_v4().to_string();
        s.publisher
            .publish(topology::COMMANDS, topology::RK_RESERVE, &id, b"ok")
            .await;
        later.push(id);
    }
    s.wait_acked(&later).await;
    // Every delivery acked once: 45 healthy, and the poisoned one 3 times
    // (each forward to the retry queue or the DLQ acks the original).
    s.wait_drained(48).await;
    assert_eq!(s.publisher.depth(&topology::retry_queue(QUEUE)).await, 0);
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_outcome_count_retries_the_batch_and_the_queue_drains() {
    let mut bodies = vec!["ok"; 20];
    bodies.push("short");
    bodies.extend(["ok"; 20]);
    let (s, ids) = setup(&bodies).await;
    // Every message acked in the end, the short batch's on its retry.
    s.wait_acked(&ids).await;
    assert!(s.failures("outcome_count") >= 1.0, "{}", s.metrics.encode());
    // Each delivery the handler saw was settled once, so acked once.
    let seen = s.handler.seen.load(Ordering::SeqCst) as u64;
    assert!(
        seen > ids.len() as u64,
        "the short batch was retried: {seen}"
    );
    s.wait_drained(seen).await;
    assert_eq!(s.publisher.depth(&topology::dlq(QUEUE)).await, 0);
    s.teardown().await;
}

/// A body over the consumer's limit (64 KiB) is never assembled: the
/// channel drops its frames as they arrive and the consumer rejects the
/// delivery unread, so the broker moves it whole to the DLQ (an `x-death`
/// header, not dop's `x-dlq-reason`: dop never held the body to forward).
/// The handler never sees it, the rejection is counted, and the messages
/// around it are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_rejected_unread_and_dead_lettered_whole() {
    let big = "x".repeat(4 << 20);
    let (s, ids) = setup(&["ok", &big, "ok"]).await;
    s.wait_acked(&[ids[0].clone(), ids[2].clone()]).await;
    let dlq = topology::dlq(QUEUE);
    eventually(
        "the oversized delivery in the DLQ",
        Duration::from_secs(30),
        || async { (s.publisher.depth(&dlq).await == 1).then_some(()) },
    )
    .await;
    let (_, props, body) = s
        .publisher
        .confirm
        .channel()
        .basic_get(BasicGetArguments::new(&dlq))
        .await
        .expect("basic.get from the DLQ")
        .expect("one message in the DLQ");
    assert_eq!(props.message_id(), Some(&ids[1]));
    assert_eq!(body.len(), big.len(), "the body reaches the DLQ whole");
    let headers = props.headers().expect("headers");
    assert!(
        headers.get(&"x-death".try_into().unwrap()).is_some(),
        "rejected to the DLQ by the broker: {headers:?}"
    );
    assert_eq!(s.handler.seen.load(Ordering::SeqCst), 2);
    assert_eq!(
        metric(
            &s.metrics.encode(),
            "messages_consumed_total",
            &format!("queue=\"{QUEUE}\",outcome=\"dead_letter\"")
        ),
        1.0,
        "{}",
        s.metrics.encode()
    );
    s.teardown().await;
}

/// The vendored amqprs's bound itself: with a limit set, a delivery whose
/// content header declares more arrives with `content: None` and its size;
/// one within the limit arrives whole, in order after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_with_a_body_limit_does_not_assemble_a_larger_body() {
    use amqprs::channel::{BasicConsumeArguments, QueueDeclareArguments};
    let stack = Stack::start(Opts {
        roles: vec![],
        ..Opts::default()
    })
    .await;
    let publisher = stack.publisher().await;
    let ch = publisher.conn.open_channel(None).await.expect("channel");
    ch.queue_declare(QueueDeclareArguments::new("body-limit").finish())
        .await
        .expect("declare");
    ch.set_max_body_size(1024);
    let (_, mut rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new("body-limit", "").finish())
        .await
        .expect("consume");
    let big = vec![b'x'; 1 << 20];
    let id = |n: u8| format!("00000000-0000-4000-8000-00000000000{n}");
    publisher.publish("", "body-limit", &id(1), &big).await;
    publisher.publish("", "body-limit", &id(2), b"small").await;
    let first = rx.recv().await.expect("first delivery");
    assert!(first.content.is_none(), "the large body was assembled");
    assert_eq!(first.body_size, 1 << 20);
    let second = rx.recv().await.expect("second delivery");
    assert_eq!(second.content.as_deref(), Some(&b"small"[..]));
    assert_eq!(second.body_size, 5);
    drop(publisher);
    stack.teardown().await;
}
