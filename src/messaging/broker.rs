//! The broker connection supervisor: connects, declares the topology, opens
//! the confirming publisher and the consumers, and starts over (with
//! backoff) whenever the connection or a channel dies, so a broker restart
//! needs no restart of dop. With several addresses (`rabbitmq.urls`, the
//! nodes of a cluster) each reconnect tries them in turn, starting after
//! the one just lost.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use amqprs::{
    callbacks::ConnectionCallback,
    channel::{BasicConsumeArguments, BasicQosArguments, Channel, QueueDeclareArguments},
    connection::{Connection, OpenConnectionArguments},
    Close,
};
use anyhow::Context;
use async_trait::async_trait;
use tokio::{
    sync::{watch, Notify},
    task::JoinSet,
};

use super::{
    consumer::{self, ConsumerCtx, Handler},
    publisher::ConfirmChannel,
    topology,
};
use crate::{
    config::{AmqpEndpoint, Config, QueueType, SecretUrl},
    observability::Metrics,
};

/// How long one address may take to accept a connection before the next
/// is tried: a node that is down may not refuse, just never answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One broker address: its connection arguments and its URL without the
/// password, for logs.
#[derive(Clone)]
pub struct Endpoint {
    pub args: OpenConnectionArguments,
    pub shown: String,
}

/// The configured addresses (`rabbitmq.urls`, else `rabbitmq.url`).
pub fn endpoints(cfg: &Config) -> anyhow::Result<Vec<Endpoint>> {
    cfg.rabbitmq
        .endpoints()
        .iter()
        .map(|url| {
            Ok(Endpoint {
                args: connection_args_with_ca(url, cfg.rabbitmq.ca_file.as_deref())?,
                shown: url.redacted(),
            })
        })
        .collect()
}

/// Connects to the first of `endpoints`, starting at `start`, that answers;
/// returns the connection and the index of the address. The error names
/// every address and why it failed.
pub async fn connect_any(
    endpoints: &[Endpoint],
    start: usize,
) -> anyhow::Result<(Connection, usize)> {
    let mut failures = Vec::new();
    for k in 0..endpoints.len() {
        let i = (start + k) % endpoints.len();
        let e = &endpoints[i];
        match tokio::time::timeout(CONNECT_TIMEOUT, Connection::open(&e.args)).await {
            Ok(Ok(conn)) => return Ok((conn, i)),
            Ok(Err(err)) => failures.push(format!("{}: {err}", e.shown)),
            Err(_) => failures.push(format!("{}: no answer within {CONNECT_TIMEOUT:?}", e.shown)),
        }
        if endpoints.len() > 1 {
            tracing::warn!(address = %e.shown, error = %failures.last().map(String::as_str).unwrap_or(""), "broker address did not answer; trying the next");
        }
    }
    anyhow::bail!("Failed to connect to RabbitMQ ({})", failures.join("; "))
}

/// Connects to any configured address (the admin commands' connection).
pub async fn connect(cfg: &Config) -> anyhow::Result<Connection> {
    Ok(connect_any(&endpoints(cfg)?, 0).await?.0)
}

/// Builds connection arguments from an `amqp://` or `amqps://` URL
/// (user and password percent-decoded, `%2f` as the `/` vhost).
pub fn connection_args(url: &SecretUrl) -> anyhow::Result<OpenConnectionArguments> {
    connection_args_with_ca(url, None)
}

/// As `connection_args`; for `amqps://`, `ca_file` (PEM) is trusted besides
/// the public roots (a private CA, or a test certificate).
pub fn connection_args_with_ca(
    url: &SecretUrl,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<OpenConnectionArguments> {
    let e = AmqpEndpoint::parse(url)?;
    let mut args = OpenConnectionArguments::new(&e.host, e.port, &e.user, &e.password);
    args.virtual_host(&e.vhost);
    if let Some(hb) = e.heartbeat {
        args.heartbeat(hb);
    }
    if e.tls {
        let adaptor = amqprs::tls::TlsAdaptor::without_client_auth(ca_file, e.host.clone())
            .map_err(|e| anyhow::anyhow!("TLS setup failed: {e}"))?;
        args.tls_adaptor(adaptor);
    }
    Ok(args.finish())
}

/// Tells the session loop that the connection closed. Here and in the
/// channel callbacks the signal is `notify_one`, which is kept until the loop
/// next waits; `notify_waiters` is lost when it fires while the loop is busy
/// (sampling queue depths, or still opening the session).
struct ConnCallback {
    closed: Arc<Notify>,
}

#[async_trait]
impl ConnectionCallback for ConnCallback {
    async fn close(&mut self, _: &Connection, close: Close) -> Result<(), amqprs::error::Error> {
        tracing::warn!(reason = %close, "broker closed the connection");
        self.closed.notify_one();
        Ok(())
    }
    async fn blocked(&mut self, _: &Connection, reason: String) {
        tracing::warn!(reason = %reason, "broker blocked publishing (resource alarm)");
    }
    async fn unblocked(&mut self, _: &Connection) {
        tracing::info!("broker unblocked publishing");
    }
    async fn secret_updated(&mut self, _: &Connection) {}
}

/// A queue this role consumes, and its handler.
struct ConsumerSpec {
    queue: &'static str,
    handler: Arc<dyn Handler>,
}

struct Inner {
    endpoints: Vec<Endpoint>,
    /// The address the next connect tries first.
    next: AtomicUsize,
    queue_type: QueueType,
    /// Set while the broker's queues conflict with the configured topology.
    conflict: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
    prefetch: u16,
    confirm_timeout: Duration,
    retry_delay: Duration,
    max_attempts: u32,
    consumers: Mutex<Vec<ConsumerSpec>>,
    publisher: RwLock<Option<Arc<ConfirmChannel>>>,
    connected: AtomicBool,
    /// Bumped on every successful connect (the outbox sweeps at once then).
    sessions: watch::Sender<u64>,
    stop_consuming: watch::Sender<bool>,
    close: watch::Sender<bool>,
    consumers_done: Notify,
}

/// A role's handle on the broker; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl Broker {
    pub fn new(cfg: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints: endpoints(cfg)?,
                next: AtomicUsize::new(0),
                queue_type: cfg.rabbitmq.queue_type,
                conflict: Mutex::new(None),
                metrics,
                prefetch: cfg.rabbitmq.prefetch,
                confirm_timeout: cfg.rabbitmq.confirm_timeout,
                retry_delay: cfg.retry.delay,
                max_attempts: cfg.retry.max_attempts,
                consumers: Mutex::new(Vec::new()),
                publisher: RwLock::new(None),
                connected: AtomicBool::new(false),
                sessions: watch::channel(0).0,
                stop_consuming: watch::channel(false).0,
                close: watch::channel(false).0,
                consumers_done: Notify::new(),
            }),
        })
    }

    /// Registers a consumer; call before `start`.
    pub fn consume(&self, queue: &'static str, handler: Arc<dyn Handler>) {
        if let Ok(mut c) = self.inner.consumers.lock() {
            c.push(ConsumerSpec { queue, handler });
        }
    }

    /// Starts the supervisor in the background.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.supervise().await })
    }

    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::SeqCst)
    }

    /// Why the broker's queues cannot be used as configured (a queue of
    /// another type or with other arguments), while that lasts.
    pub fn conflict(&self) -> Option<String> {
        self.inner.conflict.lock().ok().and_then(|c| c.clone())
    }

    /// Changes on every new broker session.
    pub fn sessions(&self) -> watch::Receiver<u64> {
        self.inner.sessions.subscribe()
    }

    pub fn publisher(&self) -> Option<Arc<ConfirmChannel>> {
        self.inner.publisher.read().ok().and_then(|p| p.clone())
    }

    /// Stops taking deliveries and waits (bounded) for those in hand.
    pub async fn stop_consuming(&self, grace: Duration) {
        let done = self.inner.consumers_done.notified();
        self.inner.stop_consuming.send_replace(true);
        if self
            .inner
            .consumers
            .lock()
            .map(|c| c.is_empty())
            .unwrap_or(true)
            || !self.is_connected()
        {
            return;
        }
        let _ = tokio::time::timeout(grace, done).await;
    }

    /// Closes the connection for good.
    pub fn close(&self) {
        self.inner.stop_consuming.send_replace(true);
        self.inner.close.send_replace(true);
    }

    /// Samples a queue's depth with a passive declare.
    pub async fn queue_depth(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
        let r = channel
            .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish())
            .await?;
        Ok(r.map(|(_, count, _)| count).unwrap_or(0))
    }
}

impl Inner {
    async fn supervise(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        let mut close = self.close.subscribe();
        loop {
            if *close.borrow() {
                return;
            }
            let sessions = *self.sessions.borrow();
            let result = self.session().await;
            if *self.sessions.borrow() != sessions {
                // It was connected: a connection lost now (a node gone) is
                // retried on the next address after the shortest delay,
                // whatever failed before.
                backoff = Duration::from_millis(200);
            }
            match result {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    if let Some(c) = e.downcast_ref::<topology::TopologyConflict>() {
                        // Waiting does not fix it; an operator must act. The
                        // role keeps trying, so it starts working as soon as
                        // the queues are migrated.
                        tracing::error!(queue = %c.queue, error = %c, "the broker's queues conflict with rabbitmq.queue_type; not consuming or publishing");
                        if let Ok(mut slot) = self.conflict.lock() {
                            *slot = Some(c.to_string());
                        }
                    } else {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "broker session failed; reconnecting"
                        );
                    }
                }
            }
            self.connected.store(false, Ordering::SeqCst);
            if let Ok(mut p) = self.publisher.write() {
                if let Some(p) = p.take() {
                    p.fail_all();
                }
            }
            if *close.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = async { let _ = close.wait_for(|c| *c).await; } => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn session(self: &Arc<Self>) -> anyhow::Result<()> {
        let start = self.next.load(Ordering::SeqCst);
        let (conn, at) = connect_any(&self.endpoints, start).await?;
        // Whatever ends this session, the next one starts with the address
        // after this one: when this node is the one lost, it is tried last.
        self.next
            .store((at + 1) % self.endpoints.len(), Ordering::SeqCst);
        let closed = Arc::new(Notify::new());
        conn.register_callback(ConnCallback {
            closed: closed.clone(),
        })
        .await?;
        topology::declare_checked(&conn, self.retry_delay, self.queue_type).await?;
        if let Ok(mut slot) = self.conflict.lock() {
            *slot = None;
        }
        let channel = conn.open_channel(None).await?;
        let publisher =
            Arc::new(ConfirmChannel::open(channel, self.confirm_timeout, closed.clone()).await?);
        if let Ok(mut p) = self.publisher.write() {
            *p = Some(publisher.clone());
        }
        let specs: Vec<(&'static str, Arc<dyn Handler>)> = self
            .consumers
            .lock()
            .map(|c| c.iter().map(|s| (s.queue, s.handler.clone())).collect())
            .unwrap_or_default();
        let mut tasks = JoinSet::new();
        let mut stop = self.stop_consuming.subscribe();
        let consuming = !*stop.borrow();
        if consuming {
            for (queue, handler) in &specs {
                let ch = conn.open_channel(None).await?;
                ch.register_callback(ConsumerChannelCallback {
                    closed: closed.clone(),
                })
                .await?;
                ch.basic_qos(BasicQosArguments::new(0, self.prefetch, false))
                    .await?;
                // A larger body is never assembled (the consumer rejects it
                // unread; vendor/amqprs/PATCHED.md).
                ch.set_max_body_size(crate::messaging::consumer::MAX_BODY);
                let (tag, rx) = ch
                    .basic_consume_rx(
                        BasicConsumeArguments::new(queue, "")
                            .manual_ack(true)
                            .finish(),
                    )
                    .await
                    .with_context(|| format!("Failed to consume {queue}"))?;
                let ctx = Arc::new(ConsumerCtx {
                    queue,
                    handler: handler.clone(),
                    publisher: publisher.clone(),
                    metrics: self.metrics.clone(),
                    max_attempts: self.max_attempts,
                    concurrency: self.prefetch as usize,
                });
                tasks.spawn(consumer::run(ctx, ch, tag, rx, stop.clone()));
            }
        }
        let sample_ch = conn.open_channel(None).await?;
        self.connected.store(true, Ordering::SeqCst);
        self.sessions.send_modify(|n| *n += 1);
        tracing::info!(service = %self.metrics.service, address = %self.endpoints[at].shown, "connected to RabbitMQ");
        let mut close = self.close.subscribe();
        let mut sample = tokio::time::interval(Duration::from_secs(10));
        let had_consumers = !tasks.is_empty();
        let result = {
            let io_failure = conn.listen_network_io_failure();
            tokio::pin!(io_failure);
            loop {
                tokio::select! {
                    _ = &mut io_failure => break Err(anyhow::anyhow!("network failure talking to RabbitMQ")),
                    _ = closed.notified() => break Err(anyhow::anyhow!("RabbitMQ closed the connection or a channel")),
                    r = tasks.join_next(), if !tasks.is_empty() => {
                        // A consumer ended: on stop that's expected, otherwise its
                        // channel died and the session starts over.
                        let stopping = *stop.borrow();
                        if stopping {
                            if tasks.is_empty() { self.consumers_done.notify_waiters(); }
                            continue;
                        }
                        let _ = r;
                        break Err(anyhow::anyhow!("a consumer channel closed"));
                    }
                    _ = stop.changed(), if had_consumers => {
                        // Consumers see the same signal; keep waiting for them.
                        continue;
                    }
                    _ = sample.tick() => {
                        for (queue, _) in &specs {
                            let dlq = topology::dlq(queue);
                            match Broker::queue_depth(&sample_ch, &dlq).await {
                                Ok(depth) => self.metrics.set_dlq_depth(&dlq, i64::from(depth)),
                                Err(e) => tracing::warn!(queue = %dlq, error = %e, "could not sample the dead-letter queue's depth"),
                            }
                        }
                    }
                    _ = async { let _ = close.wait_for(|c| *c).await; } => break Ok(()),
                }
            }
        };
        self.connected.store(false, Ordering::SeqCst);
        publisher.fail_all();
        // Let consumers finish a cancel in progress: amqprs panics in its
        // reader when a request it is answering has been dropped.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if tasks.is_empty() {
            self.consumers_done.notify_waiters();
        }
        tasks.abort_all();
        let _ = conn.close().await;
        result
    }
}

struct ConsumerChannelCallback {
    closed: Arc<Notify>,
}

#[async_trait]
impl amqprs::callbacks::ChannelCallback for ConsumerChannelCallback {
    async fn close(
        &mut self,
        _: &Channel,
        close: amqprs::CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        tracing::warn!(reason = %close, "broker closed a consumer channel");
        self.closed.notify_one();
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: amqprs::Cancel) -> Result<(), amqprs::error::Error> {
        self.closed.notify_one();
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, _: amqprs::Ack) {}
    async fn publish_nack(&mut self, _: &Channel, _: amqprs::Nack) {}
    async fn publish_return(
        &mut self,
        _: &Channel,
        _: amqprs::Return,
        _: amqprs::BasicProperties,
        _: Vec<u8>,
    ) {
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_amqp_urls() {
        let a = connection_args(&SecretUrl::new("amqp://us%40er:p%2Fw@mq.local:5673/%2f")).unwrap();
        assert_eq!(a.get_host(), "mq.local");
        assert_eq!(a.get_port(), 5673);
        assert_eq!(a.get_virtual_host(), "/");
        let a = connection_args(&SecretUrl::new("amqp://guest:guest@127.0.0.1/tests")).unwrap();
        assert_eq!(a.get_port(), 5672);
        assert_eq!(a.get_virtual_host(), "tests");
        assert!(connection_args(&SecretUrl::new("http://x")).is_err());
        assert!(connection_args(&SecretUrl::new("not a url")).is_err());
    }
}
