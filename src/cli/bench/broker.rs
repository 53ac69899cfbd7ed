//! `dop bench --mode broker`: RabbitMQ's ceiling on this machine, without
//! dop. ~200-byte persistent messages are published on one channel with
//! pipelined confirms (up to `confirms_in_flight` awaiting) into a scratch
//! durable queue `dop.bench`, and consumed on another channel with manual
//! acks and a prefetch; the figure is messages per second end to end.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use amqprs::{
    channel::{
        BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicQosArguments,
        QueueDeclareArguments, QueueDeleteArguments, QueuePurgeArguments,
    },
    connection::Connection,
};
use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::{
    sync::{watch, Notify, Semaphore},
    time::Instant,
};

use super::{
    report::percentiles_line,
    stats::{self, fmt_count, fmt_rate, Percentiles},
    Opts,
};
use crate::{
    config::Config,
    messaging::{publisher::ConfirmChannel, publisher::Outgoing},
};

/// The scratch queue.
pub const QUEUE: &str = "dop.bench";
/// Bytes per message, about the size of a saga command.
const BODY_BYTES: usize = 200;

#[derive(Clone, Debug)]
pub struct BrokerOpts {
    pub duration: Duration,
    pub warmup: Duration,
    pub confirms_in_flight: usize,
    pub prefetch: u16,
}

impl BrokerOpts {
    pub fn from_cli(o: &Opts) -> Self {
        Self {
            duration: o.duration,
            warmup: o.warmup,
            confirms_in_flight: o.confirms_in_flight.max(1),
            prefetch: o.prefetch.max(1),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BrokerReport {
    pub mode: &'static str,
    pub confirms_in_flight: usize,
    pub prefetch: u16,
    pub measured_s: f64,
    /// Confirmed publishes per second in the measured window.
    pub published_per_s: f64,
    /// Consumed (and acked) messages per second in the measured window.
    pub msgs_per_s: f64,
    pub confirm_latency: Percentiles,
    /// Publish to delivery.
    pub end_to_end_latency: Percentiles,
    pub published: u64,
    pub consumed: u64,
    pub nacked: u64,
    /// Confirmed but not consumed within 30 s of the end.
    pub lost: u64,
}

/// A message body: the send time (nanoseconds since `epoch`) then padding.
pub fn body(epoch: Instant, now: Instant) -> Vec<u8> {
    let mut b = vec![b'.'; BODY_BYTES];
    let ns = u64::try_from((now - epoch).as_nanos()).unwrap_or(u64::MAX);
    b[..8].copy_from_slice(&ns.to_le_bytes());
    b
}

/// When a body was sent, from `epoch`.
pub fn sent_at(body: &[u8]) -> Option<Duration> {
    let ns: [u8; 8] = body.get(..8)?.try_into().ok()?;
    Some(Duration::from_nanos(u64::from_le_bytes(ns)))
}

struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.from && t <= self.to
    }
}

struct Counters {
    confirmed: AtomicU64,
    confirmed_in_window: AtomicU64,
    nacked: AtomicU64,
    consumed: AtomicU64,
    consumed_in_window: AtomicU64,
    confirm: Mutex<Histogram<u64>>,
    e2e: Mutex<Histogram<u64>>,
    progress: Notify,
}

pub async fn run(cfg: &Config, o: &BrokerOpts) -> anyhow::Result<BrokerReport> {
    let conn = crate::messaging::broker::connect(cfg).await?;
    let result = measure(&conn, o).await;
    if let Ok(ch) = conn.open_channel(None).await {
        let _ = ch.queue_delete(QueueDeleteArguments::new(QUEUE)).await;
        let _ = ch.close().await;
    }
    let _ = conn.close().await;
    result
}

async fn measure(conn: &Connection, o: &BrokerOpts) -> anyhow::Result<BrokerReport> {
    let admin = conn.open_channel(None).await?;
    admin
        .queue_declare(QueueDeclareArguments::durable_client_named(QUEUE))
        .await
        .context("Failed to declare the scratch queue")?;
    admin.queue_purge(QueuePurgeArguments::new(QUEUE)).await?;

    let consume_ch = conn.open_channel(None).await?;
    consume_ch
        .basic_qos(BasicQosArguments::new(0, o.prefetch, false))
        .await?;
    let (tag, mut rx) = consume_ch
        .basic_consume_rx(
            BasicConsumeArguments::new(QUEUE, "dop-bench")
                .manual_ack(true)
                .finish(),
        )
        .await
        .context("Failed to consume the scratch queue")?;
    let publisher = Arc::new(
        ConfirmChannel::open(
            conn.open_channel(None).await?,
            Duration::from_secs(30),
            Arc::new(Notify::new()),
        )
        .await?,
    );

    let epoch = Instant::now();
    let window = Arc::new(Window {
        from: epoch + o.warmup,
        to: epoch + o.warmup + o.duration,
    });
    let c = Arc::new(Counters {
        confirmed: AtomicU64::new(0),
        confirmed_in_window: AtomicU64::new(0),
        nacked: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        consumed_in_window: AtomicU64::new(0),
        confirm: Mutex::new(stats::histogram()?),
        e2e: Mutex::new(stats::histogram()?),
        progress: Notify::new(),
    });

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let consumer = {
        let (c, window, ch) = (c.clone(), window.clone(), consume_ch.clone());
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = rx.recv() => m,
                    _ = stop_rx.changed() => None,
                };
                let Some(msg) = msg else { break };
                let (Some(deliver), Some(content)) = (msg.deliver, msg.content) else {
                    continue;
                };
                let now = Instant::now();
                if window.contains(now) {
                    c.consumed_in_window.fetch_add(1, Ordering::Relaxed);
                    if let (Some(sent), Ok(mut h)) = (sent_at(&content), c.e2e.lock()) {
                        stats::record(&mut h, (now - epoch).saturating_sub(sent));
                    }
                }
                if ch
                    .basic_ack(BasicAckArguments::new(deliver.delivery_tag(), false))
                    .await
                    .is_err()
                {
                    break;
                }
                c.consumed.fetch_add(1, Ordering::Relaxed);
                c.progress.notify_waiters();
            }
        })
    };

    let slots = Arc::new(Semaphore::new(o.confirms_in_flight));
    let mut seq: u64 = 0;
    while Instant::now() < window.to {
        let permit = slots.clone().acquire_owned().await?;
        seq += 1;
        let t0 = Instant::now();
        let msg = Outgoing {
            exchange: String::new(),
            routing_key: QUEUE.into(),
            message_id: seq.to_string(),
            body: body(epoch, t0),
            headers: Vec::new(),
        };
        let confirm = publisher
            .publish(&msg)
            .await
            .map_err(|e| anyhow::anyhow!("publish failed: {e}"))?;
        let (c, window) = (c.clone(), window.clone());
        tokio::spawn(async move {
            let r = confirm.await;
            let done = Instant::now();
            match r {
                Ok(()) => {
                    c.confirmed.fetch_add(1, Ordering::Relaxed);
                    if window.contains(done) {
                        c.confirmed_in_window.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut h) = c.confirm.lock() {
                            stats::record(&mut h, done - t0);
                        }
                    }
                }
                Err(_) => {
                    c.nacked.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
    }
    // Every confirm is in when every slot is free again.
    let _ = slots.acquire_many(o.confirms_in_flight as u32).await?;
    let confirmed = c.confirmed.load(Ordering::Relaxed);
    let drain_until = Instant::now() + Duration::from_secs(30);
    while c.consumed.load(Ordering::Relaxed) < confirmed && Instant::now() < drain_until {
        let _ = tokio::time::timeout(Duration::from_millis(100), c.progress.notified()).await;
    }
    let _ = consume_ch
        .basic_cancel(BasicCancelArguments::new(&tag))
        .await;
    stop_tx.send_replace(true);
    let _ = consumer.await;

    let secs = o.duration.as_secs_f64();
    let consumed = c.consumed.load(Ordering::Relaxed);
    let hist = |m: &Mutex<Histogram<u64>>| {
        m.lock()
            .map(|h| Percentiles::from_histogram(&h))
            .unwrap_or_default()
    };
    Ok(BrokerReport {
        mode: "broker",
        confirms_in_flight: o.confirms_in_flight,
        prefetch: o.prefetch,
        measured_s: secs,
        published_per_s: stats::per_second(c.confirmed_in_window.load(Ordering::Relaxed), secs),
        msgs_per_s: stats::per_second(c.consumed_in_window.load(Ordering::Relaxed), secs),
        confirm_latency: hist(&c.confirm),
        end_to_end_latency: hist(&c.e2e),
        published: confirmed,
        consumed,
        nacked: c.nacked.load(Ordering::Relaxed),
        lost: confirmed.saturating_sub(consumed),
    })
}

pub fn render(r: &BrokerReport) -> String {
    [
        format!(
            "dop bench --mode broker: {BODY_BYTES}-byte persistent messages, {} confirms in flight, prefetch {}, {:.0} s measured",
            r.confirms_in_flight, r.prefetch, r.measured_s
        ),
        String::new(),
        format!("  {:<20}{}", "end to end", fmt_rate(r.msgs_per_s)),
        format!("  {:<20}{}", "published", fmt_rate(r.published_per_s)),
        format!("  {:<20}{}", "confirm latency", percentiles_line(&r.confirm_latency, false)),
        format!("  {:<20}{}", "delivery latency", percentiles_line(&r.end_to_end_latency, false)),
        format!(
            "  {:<20}{} published, {} consumed, {} nacked, {} lost",
            "messages",
            fmt_count(r.published),
            fmt_count(r.consumed),
            fmt_count(r.nacked),
            fmt_count(r.lost)
        ),
    ]
    .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_send_time() {
        let epoch = Instant::now();
        let b = body(epoch, epoch + Duration::from_micros(1234));
        assert_eq!(b.len(), BODY_BYTES);
        assert_eq!(sent_at(&b), Some(Duration::from_micros(1234)));
        assert_eq!(sent_at(b"short"), None);
    }
}
