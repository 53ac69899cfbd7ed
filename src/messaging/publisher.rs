//! A confirming publisher on one channel with many publishes in flight: tags
//! are assigned under a lock held only for tag + send, each caller awaits
//! its own confirm, `multiple` acks settle a range, and a closing channel
//! fails every pending confirm. Every publish is `mandatory`: a message the
//! broker cannot route comes back (`basic.return`, before its confirm) and
//! its confirm then resolves to `PublishError::Returned`, never to success.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use amqprs::{
    callbacks::ChannelCallback,
    channel::{BasicPublishArguments, Channel, ConfirmSelectArguments},
    Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return,
};
use async_trait::async_trait;
use tokio::sync::{oneshot, Notify};

#[derive(Debug, thiserror::Error, Clone)]
pub enum PublishError {
    #[error("not connected to the broker")]
    NotConnected,
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the channel closed before the confirm")]
    ChannelClosed,
    #[error("no confirm within {0:?}")]
    Timeout(Duration),
    #[error("publish failed: {0}")]
    Send(String),
    /// The broker could not route the message (no binding) and returned it.
    #[error("the broker returned the message unrouted: {0}")]
    Returned(String),
}

type Waiter = oneshot::Sender<Result<(), PublishError>>;

/// A publish awaiting its confirm.
struct Entry {
    message_id: String,
    waiter: Waiter,
    /// The broker's reply text when it returned this message.
    returned: Option<String>,
}

#[derive(Default)]
struct Pending {
    waiters: BTreeMap<u64, Entry>,
}

/// State shared between the publisher and its channel callback.
struct Shared {
    pending: Mutex<Pending>,
    open: AtomicBool,
    /// Woken when the server closes the channel, so the supervisor reconnects.
    closed: Arc<Notify>,
}

impl Shared {
    fn settle(&self, tag: u64, multiple: bool, result: Result<(), PublishError>) {
        let done: Vec<Entry> = {
            let Ok(mut p) = self.pending.lock() else {
                return;
            };
            if multiple {
                let rest = p.waiters.split_off(&(tag + 1));
                std::mem::replace(&mut p.waiters, rest)
                    .into_values()
                    .collect()
            } else {
                p.waiters.remove(&tag).into_iter().collect()
            }
        };
        for e in done {
            let r = match (&result, e.returned) {
                (Ok(()), Some(reply)) => Err(PublishError::Returned(reply)),
                (r, _) => r.clone(),
            };
            let _ = e.waiter.send(r);
        }
    }

    /// Marks the pending publish of `message_id` as returned. The return
    /// comes before the message's confirm on the same channel, so the
    /// earliest unreturned publish of that id is the one.
    fn returned(&self, message_id: &str, reply: String) -> bool {
        let Ok(mut p) = self.pending.lock() else {
            return false;
        };
        match p
            .waiters
            .values_mut()
            .find(|e| e.message_id == message_id && e.returned.is_none())
        {
            Some(e) => {
                e.returned = Some(reply);
                true
            }
            None => false,
        }
    }

    /// The broker closed the channel: fails every pending confirm and tells
    /// the supervisor. `notify_one` stores the signal when the supervisor is
    /// not waiting at that moment (busy sampling, or still opening the
    /// session); `notify_waiters` would drop it and the session would carry
    /// on with a dead publisher.
    fn closed_by_broker(&self) {
        self.fail_all();
        self.closed.notify_one();
    }

    fn fail_all(&self) {
        self.open.store(false, Ordering::SeqCst);
        let all = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut p.waiters),
            Err(_) => return,
        };
        for (_, e) in all {
            let _ = e.waiter.send(Err(PublishError::ChannelClosed));
        }
    }
}

struct Callback {
    shared: Arc<Shared>,
}

#[async_trait]
impl ChannelCallback for Callback {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        tracing::warn!(reason = %close, "broker closed the publishing channel");
        self.shared.closed_by_broker();
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.shared
            .settle(ack.delivery_tag(), ack.mutiple(), Ok(()));
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.shared.settle(
            nack.delivery_tag(),
            nack.multiple(),
            Err(PublishError::Nacked),
        );
    }
    async fn publish_return(
        &mut self,
        _: &Channel,
        ret: Return,
        props: BasicProperties,
        _: Vec<u8>,
    ) {
        let message_id = props.message_id().cloned().unwrap_or_default();
        let reply = format!("{} {}", ret.reply_code(), ret.reply_text());
        let matched = self.shared.returned(&message_id, reply);
        // Counted by whoever awaits the confirm (it knows the service).
        tracing::error!(
            exchange = %ret.exchange(),
            routing_key = %ret.routing_key(),
            message_id = %message_id,
            reply_code = ret.reply_code(),
            reply_text = %ret.reply_text(),
            awaited = matched,
            "broker returned an unroutable message; it is not treated as delivered"
        );
    }
}

/// One message to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub message_id: String,
    pub body: Vec<u8>,
    /// AMQP headers (trace_id, saga_id, x-retry-count, ...).
    pub headers: Vec<(String, FieldValue)>,
}

impl Outgoing {
    fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::new();
        for (k, v) in &self.headers {
            if let Ok(name) = k.as_str().try_into() {
                headers.insert(name, v.clone());
            }
        }
        BasicProperties::default()
            .with_message_id(&self.message_id)
            .with_content_type("application/json")
            .with_delivery_mode(2)
            .with_headers(headers)
            .finish()
    }
}

/// A channel in confirm mode.
pub struct ConfirmChannel {
    channel: Channel,
    /// Next delivery tag; held only across tag assignment and the send.
    next_tag: tokio::sync::Mutex<u64>,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl ConfirmChannel {
    /// Puts `channel` in confirm mode; `closed` is notified when it dies.
    pub async fn open(
        channel: Channel,
        timeout: Duration,
        closed: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            open: AtomicBool::new(true),
            closed,
        });
        channel
            .register_callback(Callback {
                shared: shared.clone(),
            })
            .await?;
        channel
            .confirm_select(ConfirmSelectArguments::default())
            .await?;
        Ok(Self {
            channel,
            next_tag: tokio::sync::Mutex::new(1),
            shared,
            timeout,
        })
    }

    pub fn is_open(&self) -> bool {
        self.shared.open.load(Ordering::SeqCst) && self.channel.is_open()
    }

    /// Sends the message and returns a future of its confirm.
    pub async fn publish(
        &self,
        msg: &Outgoing,
    ) -> Result<impl std::future::Future<Output = Result<(), PublishError>>, PublishError> {
        self.send(
            &msg.exchange,
            &msg.routing_key,
            &msg.message_id,
            msg.properties(),
            msg.body.clone(),
        )
        .await
    }

    /// Publishes a message with its properties exactly as given (a message
    /// moved from one queue to another keeps all of them) and waits for
    /// the confirm.
    pub async fn publish_as_is(
        &self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: Vec<u8>,
    ) -> Result<(), PublishError> {
        let id = props.message_id().cloned().unwrap_or_default();
        self.send(exchange, routing_key, &id, props, body)
            .await?
            .await
    }

    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
        props: BasicProperties,
        body: Vec<u8>,
    ) -> Result<impl std::future::Future<Output = Result<(), PublishError>>, PublishError> {
        if !self.is_open() {
            return Err(PublishError::NotConnected);
        }
        let mut args = BasicPublishArguments::new(exchange, routing_key);
        // Unroutable must come back, not be confirmed and dropped.
        args.mandatory(true);
        let (tx, rx) = oneshot::channel();
        {
            let mut tag = self.next_tag.lock().await;
            let this = *tag;
            if let Ok(mut p) = self.shared.pending.lock() {
                p.waiters.insert(
                    this,
                    Entry {
                        message_id: message_id.to_string(),
                        waiter: tx,
                        returned: None,
                    },
                );
            }
            if let Err(e) = self.channel.basic_publish(props, body, args).await {
                if let Ok(mut p) = self.shared.pending.lock() {
                    p.waiters.remove(&this);
                }
                return Err(PublishError::Send(e.to_string()));
            }
            *tag += 1;
        }
        let timeout = self.timeout;
        Ok(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(PublishError::ChannelClosed),
                Err(_) => Err(PublishError::Timeout(timeout)),
            }
        })
    }

    /// Publishes and waits for the confirm.
    pub async fn publish_confirmed(&self, msg: &Outgoing) -> Result<(), PublishError> {
        self.publish(msg).await?.await
    }

    /// Fails every pending confirm (the connection died under us).
    pub fn fail_all(&self) {
        self.shared.fail_all();
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            open: AtomicBool::new(true),
            closed: Arc::new(Notify::new()),
        })
    }

    fn wait(s: &Shared, tag: u64) -> oneshot::Receiver<Result<(), PublishError>> {
        wait_id(s, tag, &format!("m{tag}"))
    }

    fn wait_id(s: &Shared, tag: u64, id: &str) -> oneshot::Receiver<Result<(), PublishError>> {
        let (tx, rx) = oneshot::channel();
        s.pending.lock().unwrap().waiters.insert(
            tag,
            Entry {
                message_id: id.into(),
                waiter: tx,
                returned: None,
            },
        );
        rx
    }

    #[test]
    fn a_returned_message_is_not_confirmed() {
        let s = shared();
        let mut a = wait_id(&s, 1, "same");
        let mut b = wait_id(&s, 2, "same");
        let mut c = wait(&s, 3);
        assert!(s.returned("same", "312 NO_ROUTE".into()));
        assert!(!s.returned("unknown", "312 NO_ROUTE".into()));
        s.settle(3, true, Ok(()));
        assert!(matches!(a.try_recv(), Ok(Err(PublishError::Returned(r))) if r == "312 NO_ROUTE"));
        assert!(
            matches!(b.try_recv(), Ok(Ok(()))),
            "only one publish was returned"
        );
        assert!(matches!(c.try_recv(), Ok(Ok(()))));
    }

    #[tokio::test]
    async fn a_close_nobody_waits_for_is_not_lost() {
        let s = shared();
        let rx = wait(&s, 1);
        // The supervisor is busy elsewhere: nobody waits on `closed` yet.
        s.closed_by_broker();
        assert!(matches!(rx.await, Ok(Err(PublishError::ChannelClosed))));
        tokio::time::timeout(Duration::from_secs(5), s.closed.notified())
            .await
            .expect("the close signal must wait for the supervisor");
    }

    #[test]
    fn multiple_ack_settles_every_tag_up_to_it() {
        let s = shared();
        let mut rx: Vec<_> = (1..=5).map(|t| wait(&s, t)).collect();
        s.settle(3, true, Ok(()));
        for r in rx.iter_mut().take(3) {
            assert!(matches!(r.try_recv(), Ok(Ok(()))));
        }
        assert!(rx[3].try_recv().is_err(), "tag 4 must still wait");
        s.settle(5, false, Err(PublishError::Nacked));
        assert!(matches!(rx[4].try_recv(), Ok(Err(PublishError::Nacked))));
        assert!(rx[3].try_recv().is_err());
        s.fail_all();
        assert!(matches!(
            rx[3].try_recv(),
            Ok(Err(PublishError::ChannelClosed))
        ));
    }
}
