//! A queue consumer: manual acks after the handler's commit, up to
//! `prefetch` deliveries processed at once, and the failure policy: transient
//! failures go through `Q.retry` with `x-retry-count`, poison goes to `Q.dlq`
//! with its reason; a handler that panics or miscounts its outcomes is
//! logged, counted and retried, never left holding the queue's acks.

use std::{sync::Arc, time::Duration};

use amqprs::{
    channel::{
        BasicAckArguments, BasicCancelArguments, BasicNackArguments, Channel, ConsumerMessage,
    },
    FieldTable, FieldValue,
};
use async_trait::async_trait;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::Instrument;

use super::{
    publisher::{ConfirmChannel, Outgoing, PublishError},
    topology,
};
use crate::observability::{new_trace_id, valid_trace_id, Metrics};

/// Largest body a consumer accepts; larger ones are dead-lettered. amqprs
/// hands a delivery over with its body already assembled from the frames
/// (it has no streaming API), so the check necessarily comes after the body
/// is in memory; what bounds that is the broker's `max_message_size`.
pub const MAX_BODY: usize = 64 * 1024;

/// A delivery with the properties dop cares about restored.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub queue: String,
    pub exchange: String,
    pub routing_key: String,
    pub message_id: String,
    pub trace_id: String,
    pub saga_id: Option<String>,
    pub retry_count: u32,
    pub body: Vec<u8>,
}

/// What the handler decided.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Done (committed); ack.
    Ack,
    /// Seen before; nothing done; ack.
    Duplicate,
    /// Transient failure; try again later through the retry queue.
    Retry(String),
    /// Never processable; to the DLQ at once.
    DeadLetter(String),
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles deliveries that arrived together (one or many: the same
    /// code), returning one outcome each, in order. A wrong count is an
    /// error the consumer logs, counts and answers by retrying the batch.
    async fn handle_batch(&self, deliveries: &[Delivery]) -> Vec<Outcome>;

    /// Batches of this queue handled at once. Several overlap their
    /// commits; a handler whose batches all lock the same few rows (stock
    /// of a handful of products) gains nothing from that, since they would
    /// wait for each other's commit, and does better with one batch that
    /// takes everything that arrived meanwhile.
    fn batches_in_flight(&self) -> usize {
        BATCHES_IN_FLIGHT
    }

    /// Most deliveries in one batch (the prefetch caps it too).
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }
}

fn header_str(h: Option<&FieldTable>, key: &str) -> Option<String> {
    let name = key.try_into().ok()?;
    match h?.get(&name)? {
        FieldValue::S(s) => Some(s.as_ref().clone()),
        other => Some(other.to_string()),
    }
}

/// The delivery's trace id when its `trace_id` header passes the rule HTTP
/// applies to `X-Request-ID` (`observability::valid_trace_id`); otherwise a
/// fresh one. A foreign value (10 KB, control characters) would otherwise
/// be logged as is and fail the `VARCHAR(64)` outbox insert of its whole
/// batch.
fn trace_id(h: Option<&FieldTable>, routing_key: &str) -> String {
    let raw = header_str(h, "trace_id");
    if let Some(id) = raw.as_deref().and_then(valid_trace_id) {
        return id;
    }
    let fresh = new_trace_id();
    if let Some(raw) = raw {
        tracing::debug!(
            routing_key,
            header_len = raw.len(),
            trace_id = %fresh,
            "delivery carried an invalid trace_id header; a fresh trace id replaces it"
        );
    }
    fresh
}

/// A count header as a u32: negative reads as 0, anything above `u32::MAX`
/// (a 64-bit or decimal value) as `u32::MAX`, never wrapped.
fn header_u32(h: Option<&FieldTable>, key: &str) -> u32 {
    let Ok(name) = key.try_into() else { return 0 };
    let wide: i128 = match h.and_then(|t| t.get(&name)) {
        Some(FieldValue::b(v)) => (*v).into(),
        Some(FieldValue::B(v)) => (*v).into(),
        Some(FieldValue::s(v)) => (*v).into(),
        Some(FieldValue::u(v)) => (*v).into(),
        Some(FieldValue::I(v)) => (*v).into(),
        Some(FieldValue::i(v)) => (*v).into(),
        Some(FieldValue::l(v)) => (*v).into(),
        Some(FieldValue::S(s)) => match s.as_ref().trim().parse::<i128>() {
            Ok(v) => v,
            // Digits too many even for i128: a very large count.
            Err(_) if s.as_ref().trim().bytes().all(|b| b.is_ascii_digit()) => i128::MAX,
            Err(_) => 0,
        },
        _ => 0,
    };
    u32::try_from(wide.max(0)).unwrap_or(u32::MAX)
}

/// The attempt a delivery is on (1 for a first delivery); saturates, so a
/// forged `x-retry-count` of `u32::MAX` stays exhausted instead of wrapping
/// to a first attempt.
fn attempt(d: &Delivery) -> u32 {
    d.retry_count.saturating_add(1)
}

/// `x-retry-count` as written: a signed 32-bit value (what the header has
/// always been on the wire), capped at `i32::MAX` so it is never negative.
fn retry_count_header(count: u32) -> FieldValue {
    FieldValue::I(i32::try_from(count).unwrap_or(i32::MAX))
}

/// Everything a consumer loop needs.
pub struct ConsumerCtx {
    pub queue: &'static str,
    pub handler: Arc<dyn Handler>,
    pub publisher: Arc<ConfirmChannel>,
    pub metrics: Arc<Metrics>,
    pub max_attempts: u32,
    pub concurrency: usize,
}

/// Most deliveries handed to a handler at once.
pub const MAX_BATCH: usize = 64;
/// Batches in flight per consumer, unless the handler says otherwise. Two
/// overlap one batch's commit with the next one's work; more only add
/// database threads competing for the CPU (at 1,000 orders/s on 2 cores,
/// 8 in flight gave POST /orders a p99 of 71 ms, 2 in flight 30-40 ms:
/// docs/benchmarks.md).
pub const BATCHES_IN_FLIGHT: usize = 2;

/// The channel's acknowledgements. Delivery tags on a channel run 1, 2, 3,
/// ...; batches finish out of order, so a finished tag waits here until
/// every tag below it has finished too, and then one `basic.ack` with
/// `multiple` settles the whole run (a batch of 32 is one ack frame, not
/// 32). The frame must name a tag the broker still holds unacked, so the
/// highest *acked* tag of the run is sent; tags nacked back to the queue
/// are already settled and are only stepped over.
#[derive(Debug)]
struct Acks {
    /// Lowest tag not yet finished.
    next: u64,
    /// Finished tags above `next`: true if to ack, false if nacked.
    done: std::collections::BTreeMap<u64, bool>,
}

impl Acks {
    fn new() -> Self {
        Self {
            next: 1,
            done: std::collections::BTreeMap::new(),
        }
    }

    /// Records finished tags; returns the tag to ack with `multiple`, if
    /// the run below `next` grew and holds an acked tag.
    fn finish(&mut self, tags: impl IntoIterator<Item = (u64, bool)>) -> Option<u64> {
        for (tag, ack) in tags {
            if tag >= self.next {
                self.done.insert(tag, ack);
            }
        }
        let mut upto = None;
        while let Some(ack) = self.done.remove(&self.next) {
            if ack {
                upto = Some(self.next);
            }
            self.next += 1;
        }
        upto
    }
}

/// Consumes until the channel closes or `stop` turns true; then waits for
/// the deliveries in hand before returning. Deliveries that are already
/// waiting are taken together (up to `MAX_BATCH`), so a handler can do the
/// work of many in one transaction; under light load a batch is one
/// delivery and nothing waits.
pub async fn run(
    ctx: Arc<ConsumerCtx>,
    channel: Channel,
    consumer_tag: String,
    mut rx: mpsc::UnboundedReceiver<ConsumerMessage>,
    mut stop: watch::Receiver<bool>,
) {
    let in_flight = ctx.handler.batches_in_flight().max(1);
    let permits = Arc::new(Semaphore::new(in_flight));
    let acks = Arc::new(tokio::sync::Mutex::new(Acks::new()));
    let max_batch = ctx.handler.max_batch().min(ctx.concurrency).max(1);
    for cause in ["panic", "outcome_count"] {
        ctx.metrics.batch_may_fail(ctx.queue, cause);
    }
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = async { let _ = stop.wait_for(|s| *s).await; } => None,
        };
        let Some(first) = msg else {
            if *stop.borrow() {
                let _ = channel
                    .basic_cancel(BasicCancelArguments::new(&consumer_tag))
                    .await;
            }
            break;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        // Whatever arrived while we waited for a permit joins the batch.
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let ctx = ctx.clone();
        let channel = channel.clone();
        let acks = acks.clone();
        tokio::spawn(async move {
            let finished = handle_batch(&ctx, &channel, batch).await;
            ack_finished(&channel, &acks, finished).await;
            drop(permit);
        });
    }
    // Wait for in-flight deliveries to be acked (or abandoned to redelivery).
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        permits.acquire_many(in_flight as u32),
    )
    .await;
}

/// A delivery whose body the channel did not assemble: its content header
/// declared more than `MAX_BODY` bytes (`Channel::set_max_body_size`), so
/// its frames were dropped as they arrived and a hostile or broken
/// publisher costs one frame of memory, not the message's size. dop cannot
/// forward a body it never held, so it rejects the delivery (no requeue)
/// and the broker dead-letters it, whole, to `Q.dlq` (the queue's
/// dead-letter target), where `x-death` records the rejection. Logged with
/// the reason and counted as a dead letter. Returns the tag, settled here
/// (so not to be acked), or None for a frame with no delivery.
async fn reject_oversized(
    ctx: &ConsumerCtx,
    channel: &Channel,
    msg: &ConsumerMessage,
) -> Option<u64> {
    let deliver = msg.deliver.as_ref()?;
    let tag = deliver.delivery_tag();
    let message_id = msg
        .basic_properties
        .as_ref()
        .and_then(|p| p.message_id().cloned())
        .unwrap_or_default();
    tracing::error!(
        service = %ctx.metrics.service,
        queue = ctx.queue,
        routing_key = %deliver.routing_key(),
        message_id = %message_id,
        reason = %format!("body of {} bytes exceeds {MAX_BODY}; rejected unread", msg.body_size),
        "dead-lettering a delivery"
    );
    if let Err(e) = channel
        .basic_nack(BasicNackArguments::new(tag, false, false))
        .await
    {
        // The channel is gone: the broker redelivers it to the next
        // consumer, which rejects it the same way.
        tracing::warn!(error = %e, "could not reject an oversized delivery");
        return Some(tag);
    }
    ctx.metrics.consumed(ctx.queue, "dead_letter");
    Some(tag)
}

/// The delivery in `msg`. Only a frame without a delivery tag (never sent
/// by a broker for `basic.deliver`) is skipped; missing properties or body
/// read as empty, so such a message is dead-lettered with a reason rather
/// than left unacked.
fn delivery(ctx: &ConsumerCtx, msg: ConsumerMessage) -> Option<(u64, Delivery)> {
    let deliver = msg.deliver?;
    let props = msg.basic_properties.unwrap_or_default();
    let body = msg.content.unwrap_or_default();
    let headers = props.headers();
    Some((
        deliver.delivery_tag(),
        Delivery {
            queue: ctx.queue.to_string(),
            exchange: deliver.exchange().clone(),
            routing_key: deliver.routing_key().clone(),
            message_id: props.message_id().cloned().unwrap_or_default(),
            trace_id: trace_id(headers, deliver.routing_key()),
            saga_id: header_str(headers, "saga_id"),
            retry_count: header_u32(headers, "x-retry-count"),
            body,
        },
    ))
}

/// Why a delivery is refused before any handler sees it. A message id
/// in another accepted UUID form (upper case, no hyphens, braces, urn:)
/// is rewritten to the canonical form the id columns hold (ASCII, compared
/// byte by byte), so a redelivery is still recognised as a duplicate.
fn precheck(d: &mut Delivery) -> Option<Outcome> {
    if d.body.len() > MAX_BODY {
        return Some(Outcome::DeadLetter(format!(
            "body of {} bytes exceeds {MAX_BODY}",
            d.body.len()
        )));
    }
    match crate::domain::canonical_uuid(&d.message_id) {
        None => Some(Outcome::DeadLetter(format!(
            "message_id {:?} is not a UUID",
            d.message_id
        ))),
        Some(id) => {
            d.message_id = id;
            None
        }
    }
}

/// Acks what a batch finished, together with every earlier finished tag.
async fn ack_finished(
    channel: &Channel,
    acks: &tokio::sync::Mutex<Acks>,
    finished: Vec<(u64, bool)>,
) {
    // Held across the send, so acks leave in tag order.
    let mut acks = acks.lock().await;
    if let Some(upto) = acks.finish(finished) {
        if let Err(e) = channel.basic_ack(BasicAckArguments::new(upto, true)).await {
            tracing::warn!(error = %e, "ack failed; the broker will redeliver");
        }
    }
}

/// Handles a batch; returns each delivery's tag and whether to ack it
/// (false: it was nacked back to the queue already).
async fn handle_batch(
    ctx: &ConsumerCtx,
    channel: &Channel,
    msgs: Vec<ConsumerMessage>,
) -> Vec<(u64, bool)> {
    let mut finished = Vec::with_capacity(msgs.len());
    let mut ready = Vec::with_capacity(msgs.len());
    for msg in msgs {
        if msg.content.is_none() {
            if let Some(tag) = reject_oversized(ctx, channel, &msg).await {
                finished.push((tag, false));
            }
            continue;
        }
        let Some((tag, mut d)) = delivery(ctx, msg) else {
            continue;
        };
        match precheck(&mut d) {
            Some(outcome) => {
                finished.push((tag, settle_in_span(ctx, channel, tag, &d, outcome).await))
            }
            None => ready.push((tag, d)),
        }
    }
    if ready.is_empty() {
        return finished;
    }
    let (tags, deliveries): (Vec<u64>, Vec<Delivery>) = ready.into_iter().unzip();
    let deliveries: Arc<[Delivery]> = deliveries.into();
    let outcomes = outcomes(&ctx.handler, &ctx.metrics, ctx.queue, &deliveries).await;
    // `outcomes` gives exactly one per delivery, so every tag is settled.
    for ((tag, d), outcome) in tags.into_iter().zip(deliveries.iter()).zip(outcomes) {
        finished.push((tag, settle_in_span(ctx, channel, tag, d, outcome).await));
    }
    finished
}

/// One outcome per delivery, in order, whatever the handler does. The
/// handler runs in its own task so that a panic is caught there instead of
/// taking the batch's tags with it (they would never reach `Acks` and the
/// queue would stall until the broker's consumer timeout). A batch that
/// panics is split in halves and the halves are run again, down to the one
/// delivery that panics, which is retried through the retry queue (and
/// dead-lettered once its attempts are spent); its batch mates are handled
/// normally, rather than travelling through the retry queue with it and
/// being dead-lettered alongside it. A handler that returns a wrong number of
/// outcomes has a bug that is not tied to one delivery: every delivery of
/// that batch is retried, none is acked on a guess. Both are logged at error
/// level and counted in `batch_failures_total{batch=<queue>}`.
async fn outcomes(
    handler: &Arc<dyn Handler>,
    metrics: &Metrics,
    queue: &str,
    ds: &Arc<[Delivery]>,
) -> Vec<Outcome> {
    let mut out: Vec<Option<Outcome>> = ds.iter().map(|_| None).collect();
    // Ranges still to run, the next one on top.
    let mut todo = Vec::with_capacity(1);
    todo.push(0..ds.len());
    while let Some(range) = todo.pop() {
        let n = range.len();
        match run_handler(handler, metrics, queue, ds, range.clone()).await {
            Ok(outs) if outs.len() == n => {
                for (slot, o) in out[range].iter_mut().zip(outs) {
                    *slot = Some(o);
                }
            }
            Ok(outs) => {
                tracing::error!(
                    service = %metrics.service,
                    queue,
                    deliveries = n,
                    outcomes = outs.len(),
                    "handler returned a wrong number of outcomes; retrying every delivery of the batch"
                );
                metrics.batch_failed(queue, "outcome_count");
                let reason = format!(
                    "handler returned {} outcomes for {n} deliveries",
                    outs.len()
                );
                for slot in &mut out[range] {
                    *slot = Some(Outcome::Retry(reason.clone()));
                }
            }
            Err(panic) if n > 1 => {
                tracing::error!(
                    service = %metrics.service,
                    queue,
                    deliveries = n,
                    panic = %panic,
                    "handler panicked; running the batch again in halves to find the delivery"
                );
                metrics.batch_failed(queue, "panic");
                let mid = range.start + n / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
            Err(panic) => {
                let d = &ds[range.start];
                tracing::error!(
                    service = %metrics.service,
                    queue,
                    message_id = %d.message_id,
                    saga_id = d.saga_id.as_deref().unwrap_or(""),
                    trace_id = %d.trace_id,
                    panic = %panic,
                    "handler panicked on a delivery; retrying it later"
                );
                metrics.batch_failed(queue, "panic");
                out[range.start] = Some(Outcome::Retry(format!("handler panicked: {panic}")));
            }
        }
    }
    // Every range above filled its slots; the fallback only keeps this total.
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Retry("no outcome was recorded".into())))
        .collect()
}

/// The handler's outcomes for `ds[range]`, or the message of its panic.
async fn run_handler(
    handler: &Arc<dyn Handler>,
    metrics: &Metrics,
    queue: &str,
    ds: &Arc<[Delivery]>,
    range: std::ops::Range<usize>,
) -> Result<Vec<Outcome>, String> {
    let span =
        tracing::info_span!("deliveries", service = %metrics.service, queue, count = range.len());
    let (handler, ds) = (handler.clone(), ds.clone());
    tokio::spawn(async move { handler.handle_batch(&ds[range]).await }.instrument(span))
        .await
        .map_err(|e| {
            if !e.is_panic() {
                return "the handler's task was cancelled".to_string();
            }
            let payload = e.into_panic();
            match payload.downcast_ref::<&str>() {
                Some(s) => s.to_string(),
                None => payload
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "a panic without a message".into()),
            }
        })
}

async fn settle_in_span(
    ctx: &ConsumerCtx,
    channel: &Channel,
    tag: u64,
    d: &Delivery,
    outcome: Outcome,
) -> bool {
    let span = tracing::info_span!(
        "delivery",
        service = %ctx.metrics.service,
        trace_id = %d.trace_id,
        saga_id = d.saga_id.as_deref().unwrap_or(""),
        queue = ctx.queue,
        routing_key = %d.routing_key,
        message_id = %d.message_id,
    );
    settle(ctx, channel, tag, d, outcome).instrument(span).await
}

/// The span of one delivery (for logs that name it).
pub fn delivery_span(service: &str, d: &Delivery) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        service = %service,
        trace_id = %d.trace_id,
        saga_id = d.saga_id.as_deref().unwrap_or(""),
        routing_key = %d.routing_key,
        message_id = %d.message_id,
    )
}

/// Forwards the delivery where its outcome sends it (retry queue, DLQ).
/// Returns true when it is to be acked; false when the forward failed and
/// it went back to the queue (nacked) instead.
async fn settle(
    ctx: &ConsumerCtx,
    channel: &Channel,
    tag: u64,
    d: &Delivery,
    outcome: Outcome,
) -> bool {
    let (label, forward) = match outcome {
        Outcome::Ack => ("ack", None),
        Outcome::Duplicate => ("duplicate", None),
        Outcome::Retry(reason) if attempt(d) >= ctx.max_attempts => (
            "dead_letter",
            Some(dead_letter(
                d,
                &format!("retries exhausted after {} attempts: {reason}", attempt(d)),
            )),
        ),
        Outcome::Retry(reason) => {
            tracing::warn!(reason = %reason, attempt = attempt(d), "transient failure, retrying later");
            ("retry", Some(retry(d)))
        }
        Outcome::DeadLetter(reason) => ("dead_letter", Some(dead_letter(d, &reason))),
    };
    if let Some(out) = forward {
        if let Err(e) = ctx.publisher.publish_confirmed(&out).await {
            // Not forwarded: leave it with the broker, it comes back.
            if matches!(e, PublishError::Returned(_)) {
                ctx.metrics.returned(&out.exchange, &out.routing_key);
            }
            tracing::warn!(error = %e, "could not forward the delivery, requeueing it");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = channel
                .basic_nack(BasicNackArguments::new(tag, false, true))
                .await;
            return false;
        }
    }
    ctx.metrics.consumed(ctx.queue, label);
    true
}

fn base_headers(d: &Delivery) -> Vec<(String, FieldValue)> {
    let mut h = vec![(
        "trace_id".to_string(),
        FieldValue::from(d.trace_id.as_str()),
    )];
    if let Some(s) = &d.saga_id {
        h.push(("saga_id".into(), FieldValue::from(s.as_str())));
    }
    h
}

fn retry(d: &Delivery) -> Outgoing {
    let mut headers = base_headers(d);
    headers.push(("x-retry-count".into(), retry_count_header(attempt(d))));
    Outgoing {
        exchange: topology::RETRY.into(),
        routing_key: d.routing_key.clone(),
        message_id: d.message_id.clone(),
        body: d.body.clone(),
        headers,
    }
}

/// The message as it goes to `Q.dlq`: same id and body, with the reason and
/// where it came from, so `dop admin dlq redrive` can send it back.
pub fn dead_letter(d: &Delivery, reason: &str) -> Outgoing {
    tracing::error!(reason = %reason, "dead-lettering a delivery");
    let mut headers = base_headers(d);
    headers.push(("x-retry-count".into(), retry_count_header(d.retry_count)));
    headers.push(("x-dlq-reason".into(), FieldValue::from(reason)));
    headers.push((
        "x-original-exchange".into(),
        FieldValue::from(d.exchange.as_str()),
    ));
    headers.push((
        "x-original-routing-key".into(),
        FieldValue::from(d.routing_key.as_str()),
    ));
    headers.push((
        "x-original-queue".into(),
        FieldValue::from(d.queue.as_str()),
    ));
    Outgoing {
        exchange: String::new(),
        routing_key: topology::dlq(&d.queue),
        message_id: if d.message_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            d.message_id.clone()
        },
        body: d.body.clone(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use amqprs::{FieldTable, FieldValue};
    use async_trait::async_trait;

    use super::{
        attempt, dead_letter, header_u32, outcomes, precheck, retry, Acks, Delivery, Handler,
        Outcome,
    };
    use crate::observability::Metrics;

    fn delivery(message_id: &str) -> Delivery {
        Delivery {
            queue: "q".into(),
            exchange: "x".into(),
            routing_key: "inventory.reserve".into(),
            message_id: message_id.into(),
            trace_id: "t".into(),
            saga_id: None,
            retry_count: 0,
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn message_ids_are_checked_and_stored_in_one_form() {
        let canonical = "0190a0c4-7c1e-7000-8000-00000000000a";
        for form in [
            canonical.to_string(),
            canonical.to_uppercase(),
            canonical.replace('-', ""),
            format!("urn:uuid:{canonical}"),
        ] {
            let mut d = delivery(&form);
            assert_eq!(precheck(&mut d), None, "{form}");
            assert_eq!(d.message_id, canonical, "{form}");
        }
        for bad in ["", "42", "0190a0c4-7c1e-7000-8000-00000000000ä"] {
            let mut d = delivery(bad);
            assert!(
                matches!(precheck(&mut d), Some(Outcome::DeadLetter(r)) if r.contains("not a UUID")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn acks_wait_for_every_lower_tag_and_name_the_highest_acked_one() {
        let mut a = Acks::new();
        // Batch 4-6 finishes before batch 1-3: nothing can be acked yet.
        assert_eq!(a.finish([(4, true), (5, true), (6, true)]), None);
        // 1-3 finish: one ack up to 6 settles both batches.
        assert_eq!(a.finish([(1, true), (2, true), (3, true)]), Some(6));
        // A nacked top tag is stepped over: the ack names 8, not 9.
        assert_eq!(a.finish([(7, true), (8, true), (9, false)]), Some(8));
        // A run of only nacked tags sends no ack but moves on.
        assert_eq!(a.finish([(10, false)]), None);
        assert_eq!(a.finish([(11, true)]), Some(11));
        // A tag finished twice (or below the run) changes nothing.
        assert_eq!(a.finish([(11, true), (3, true)]), None);
        assert!(a.done.is_empty());
    }

    #[test]
    fn a_batch_that_never_finishes_stalls_every_later_ack() {
        let mut a = Acks::new();
        // Batch 1-3's task died without reporting: 4-9 finish, nothing is
        // ever acked, and the channel's prefetch fills with unacked tags.
        assert_eq!(a.finish([(4, true), (5, true), (6, true)]), None);
        assert_eq!(a.finish([(7, true), (8, true), (9, true)]), None);
        assert_eq!(a.next, 1);
        // Settled as retry instead (forwarded to the retry queue, so acked):
        // one ack covers it and everything that waited behind it.
        assert_eq!(a.finish([(1, true), (2, true), (3, true)]), Some(9));
        assert!(a.done.is_empty());
    }

    fn table(value: FieldValue) -> FieldTable {
        let mut t = FieldTable::new();
        t.insert("x-retry-count".try_into().unwrap(), value);
        t
    }

    #[test]
    fn retry_count_saturates_instead_of_wrapping() {
        let read = |v| header_u32(Some(&table(v)), "x-retry-count");
        assert_eq!(read(FieldValue::i(u32::MAX)), u32::MAX);
        assert_eq!(read(FieldValue::l(i64::MAX)), u32::MAX);
        assert_eq!(read(FieldValue::l(-5)), 0);
        assert_eq!(read(FieldValue::I(-1)), 0);
        assert_eq!(read(FieldValue::I(7)), 7);
        assert_eq!(read(FieldValue::u(7)), 7);
        assert_eq!(read(FieldValue::from("4294967296")), u32::MAX);
        assert_eq!(
            read(FieldValue::from(
                "99999999999999999999999999999999999999999"
            )),
            u32::MAX
        );
        assert_eq!(read(FieldValue::from("-3")), 0);
        assert_eq!(read(FieldValue::from("three")), 0);

        let mut d = delivery("0190a0c4-7c1e-7000-8000-00000000000a");
        d.retry_count = u32::MAX;
        assert_eq!(attempt(&d), u32::MAX, "an exhausted count stays exhausted");
        // Whatever the count, the header written reads back as a count that
        // is not negative and not smaller than a wrapped one.
        for count in [0, 1, i32::MAX as u32, i32::MAX as u32 + 1, u32::MAX] {
            d.retry_count = count;
            for out in [retry(&d), dead_letter(&d, "test")] {
                let (_, v) = out
                    .headers
                    .iter()
                    .find(|(k, _)| k == "x-retry-count")
                    .unwrap();
                let FieldValue::I(written) = v else {
                    panic!("{v:?}")
                };
                assert!(*written >= 0, "{count}: {written}");
                assert!(
                    *written as u32 >= count.min(i32::MAX as u32),
                    "{count}: {written}"
                );
            }
        }
    }

    /// Panics on a delivery whose body is `panic`; returns one outcome too
    /// few for a batch holding `short`.
    struct Faulty;

    #[async_trait]
    impl Handler for Faulty {
        async fn handle_batch(&self, ds: &[Delivery]) -> Vec<Outcome> {
            if ds.iter().any(|d| d.body == b"panic") {
                panic!("injected fault");
            }
            let mut out: Vec<Outcome> = ds.iter().map(|_| Outcome::Ack).collect();
            if ds.iter().any(|d| d.body == b"short") {
                out.pop();
            }
            out
        }
    }

    fn batch(bodies: &[&str]) -> Arc<[Delivery]> {
        bodies
            .iter()
            .map(|b| Delivery {
                body: b.as_bytes().to_vec(),
                ..delivery("0190a0c4-7c1e-7000-8000-00000000000a")
            })
            .collect()
    }

    fn failures(m: &Metrics, cause: &str) -> String {
        m.encode()
            .lines()
            .find(|l| l.starts_with("batch_failures_total") && l.contains(cause))
            .unwrap_or("none")
            .to_string()
    }

    #[tokio::test]
    async fn a_panic_retries_only_the_delivery_that_panics() {
        let handler: Arc<dyn Handler> = Arc::new(Faulty);
        let m = Metrics::new("test");
        let ds = batch(&["ok", "ok", "panic", "ok", "ok"]);
        let out = outcomes(&handler, &m, "q", &ds).await;
        assert_eq!(out.len(), 5);
        for (i, o) in out.iter().enumerate() {
            match (i, o) {
                (2, Outcome::Retry(r)) => assert!(r.contains("injected fault"), "{r}"),
                (2, o) => panic!("{o:?}"),
                (_, o) => assert_eq!(o, &Outcome::Ack, "{i}"),
            }
        }
        // The 5 panic, then 3 of them (2..5), then the one (2..3).
        assert!(
            failures(&m, "panic").ends_with(" 3"),
            "{}",
            failures(&m, "panic")
        );
    }

    #[tokio::test]
    async fn a_wrong_outcome_count_retries_the_whole_batch() {
        let handler: Arc<dyn Handler> = Arc::new(Faulty);
        let m = Metrics::new("test");
        let out = outcomes(&handler, &m, "q", &batch(&["ok", "short", "ok"])).await;
        assert_eq!(out.len(), 3);
        assert!(
            out.iter()
                .all(|o| matches!(o, Outcome::Retry(r) if r.contains("2 outcomes for 3"))),
            "{out:?}"
        );
        assert!(
            failures(&m, "outcome_count").ends_with(" 1"),
            "{}",
            failures(&m, "outcome_count")
        );
    }
}
