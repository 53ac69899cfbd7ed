//! The transactional outbox of every role. A state change inserts its
//! messages into `outbox` in the same transaction; after the commit the
//! relay publishes them at once with pipelined confirms and deletes the
//! confirmed rows in batches. A sweeper republishes rows left behind by a
//! crash or a broker outage.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use amqprs::FieldValue;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio::sync::mpsc;

use super::{
    contracts::Message,
    publisher::{Outgoing, PublishError},
    topology, Broker,
};
use crate::{
    config::OutboxConfig,
    db::{DbPool, Script},
    observability::Metrics,
};

diesel::table! {
    outbox (message_id) {
        message_id -> Varchar,
        exchange -> Varchar,
        routing_key -> Varchar,
        payload -> Text,
        trace_id -> Varchar,
        saga_id -> Varchar,
        created_at -> Datetime,
        attempts -> Integer,
    }
}

/// One message waiting in the outbox.
#[derive(Clone, Debug, Insertable, Queryable, Selectable)]
#[diesel(table_name = outbox)]
#[diesel(check_for_backend(diesel::mysql::Mysql))]
pub struct OutboxRow {
    pub message_id: String,
    pub exchange: String,
    pub routing_key: String,
    pub payload: String,
    pub trace_id: String,
    pub saga_id: String,
}

#[derive(Clone, Debug)]
pub struct OutboxMessage {
    pub row: OutboxRow,
    pub enqueued: Instant,
}

impl OutboxMessage {
    /// A new message with a fresh message id.
    pub fn new(msg: &Message, trace_id: &str) -> Self {
        let rk = msg.routing_key();
        Self {
            row: OutboxRow {
                message_id: uuid::Uuid::now_v7().to_string(),
                exchange: topology::exchange_for(rk)
                    .unwrap_or(topology::EVENTS)
                    .to_string(),
                routing_key: rk.to_string(),
                payload: msg.to_json(),
                trace_id: trace_id.to_string(),
                saga_id: msg.saga_id().to_string(),
            },
            enqueued: Instant::now(),
        }
    }

    /// A message with the id the caller chose (an id that is also written
    /// elsewhere in the same transaction, such as a saga's timeline).
    pub fn with_id(msg: &Message, trace_id: &str, message_id: String) -> Self {
        let mut m = Self::new(msg, trace_id);
        m.row.message_id = message_id;
        m
    }

    fn outgoing(&self) -> Outgoing {
        Outgoing {
            exchange: self.row.exchange.clone(),
            routing_key: self.row.routing_key.clone(),
            message_id: self.row.message_id.clone(),
            body: self.row.payload.clone().into_bytes(),
            headers: vec![
                (
                    "trace_id".into(),
                    FieldValue::from(self.row.trace_id.as_str()),
                ),
                (
                    "saga_id".into(),
                    FieldValue::from(self.row.saga_id.as_str()),
                ),
            ],
        }
    }
}

/// A message a pure decision wants sent: what and for which trace, and
/// which of the decision's inputs caused it. The executor turns it into an
/// [`OutboxMessage`] (which draws a fresh message id unless `message_id`
/// names one) and inserts it with the decision's other writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Emit {
    /// Index of the command or event (in the decision's input) it answers.
    pub item: usize,
    pub message: Message,
    pub trace_id: String,
    pub message_id: Option<String>,
}

impl Emit {
    /// The outbox row of this message.
    pub fn to_outbox(&self) -> OutboxMessage {
        match &self.message_id {
            Some(id) => OutboxMessage::with_id(&self.message, &self.trace_id, id.clone()),
            None => OutboxMessage::new(&self.message, &self.trace_id),
        }
    }
}

/// The insert of `msgs` (non-empty), for a `db::Script`.
pub fn insert_statement(
    msgs: &[OutboxMessage],
) -> impl diesel::query_builder::QueryFragment<diesel::mysql::Mysql> + '_ {
    diesel::insert_into(outbox::table).values(msgs.iter().map(|m| &m.row).collect::<Vec<_>>())
}

/// Inserts messages inside the caller's transaction.
pub async fn insert(
    conn: &mut diesel_async::AsyncMysqlConnection,
    msgs: &[OutboxMessage],
) -> QueryResult<()> {
    if msgs.is_empty() {
        return Ok(());
    }
    let rows: Vec<&OutboxRow> = msgs.iter().map(|m| &m.row).collect();
    diesel::insert_into(outbox::table)
        .values(rows)
        .execute(conn)
        .await
        .map(|_| ())
}

/// The relay's handle: hand it committed messages.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<OutboxMessage>,
    inflight: Arc<Mutex<HashSet<String>>>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Outbox {
    /// Starts the relay, the deleter and the sweeper.
    pub fn start(pool: DbPool, broker: Broker, metrics: Arc<Metrics>, cfg: OutboxConfig) -> Self {
        let (tx, rx) = mpsc::channel(20_000);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let inflight = Arc::new(Mutex::new(HashSet::new()));
        let outbox = Self {
            tx,
            inflight: inflight.clone(),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        let handles = vec![
            tokio::spawn(relay(
                rx,
                broker.clone(),
                done_tx,
                inflight.clone(),
                metrics.clone(),
            )),
            tokio::spawn(deleter(
                done_rx,
                pool.clone(),
                metrics.clone(),
                inflight.clone(),
            )),
            tokio::spawn(sweeper(outbox.clone(), pool, broker, metrics, cfg)),
        ];
        if let Ok(mut t) = outbox.tasks.lock() {
            *t = handles;
        }
        outbox
    }

    /// Stops the relay at once (a crash in tests; after `flush` at shutdown).
    pub fn abort(&self) {
        if let Ok(mut t) = self.tasks.lock() {
            for h in t.drain(..) {
                h.abort();
            }
        }
    }

    /// Hands committed messages to the relay. When its queue is full they
    /// stay in the table for the sweeper: nothing is lost, only later.
    pub fn enqueue(&self, msgs: Vec<OutboxMessage>) {
        for m in msgs {
            let id = m.row.message_id.clone();
            if let Ok(mut f) = self.inflight.lock() {
                if !f.insert(id.clone()) {
                    continue;
                }
            }
            if self.tx.try_send(m).is_err() {
                if let Ok(mut f) = self.inflight.lock() {
                    f.remove(&id);
                }
            }
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// Waits (bounded) until everything handed over is confirmed.
    pub async fn flush(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.inflight() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

type Done = (OutboxMessage, bool);

async fn relay(
    mut rx: mpsc::Receiver<OutboxMessage>,
    broker: Broker,
    done: mpsc::UnboundedSender<Done>,
    inflight: Arc<Mutex<HashSet<String>>>,
    metrics: Arc<Metrics>,
) {
    let mut buf = Vec::with_capacity(256);
    while rx.recv_many(&mut buf, 256).await > 0 {
        for m in buf.drain(..) {
            let Some(publisher) = broker.publisher() else {
                // Broker down: the sweeper republishes once it is back.
                if let Ok(mut f) = inflight.lock() {
                    f.remove(&m.row.message_id);
                }
                continue;
            };
            match publisher.publish(&m.outgoing()).await {
                Ok(confirm) => {
                    let done = done.clone();
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        let ok = match confirm.await {
                            Ok(()) => true,
                            Err(e @ PublishError::Returned(_)) => {
                                // No queue took it: the row stays for the
                                // sweeper, which publishes it again once
                                // the binding is back.
                                metrics.returned(&m.row.exchange, &m.row.routing_key);
                                tracing::error!(error = %e, message_id = %m.row.message_id, exchange = %m.row.exchange, routing_key = %m.row.routing_key, saga_id = %m.row.saga_id, "outbox message returned unrouted; its row stays for the sweeper");
                                false
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, message_id = %m.row.message_id, "outbox publish not confirmed; the sweeper will retry");
                                false
                            }
                        };
                        let _ = done.send((m, ok));
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox publish failed; the sweeper will retry");
                    if let Ok(mut f) = inflight.lock() {
                        f.remove(&m.row.message_id);
                    }
                }
            }
        }
    }
}

async fn deleter(
    mut rx: mpsc::UnboundedReceiver<Done>,
    pool: DbPool,
    metrics: Arc<Metrics>,
    inflight: Arc<Mutex<HashSet<String>>>,
) {
    let mut buf = Vec::with_capacity(DELETE_MAX);
    let labels = metrics.service_labels();
    while rx.recv_many(&mut buf, DELETE_MAX).await > 0 {
        // Confirmed rows wait a moment so that one statement deletes what
        // many confirms settled: at 1,000 sagas/s that is a few deletes a
        // second instead of hundreds, each its own commit and fsync. A
        // confirmed row left in the table is harmless (the sweeper only
        // takes rows older than outbox.sweep_after, and nothing in flight).
        let deadline = tokio::time::Instant::now() + DELETE_GATHER;
        while buf.len() < DELETE_MAX {
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut buf, DELETE_MAX)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        for (m, ok) in &buf {
            if *ok {
                metrics.published(&m.row.exchange, &m.row.routing_key);
                metrics
                    .outbox_relay_latency
                    .get_or_create(&labels)
                    .observe(m.enqueued.elapsed().as_secs_f64());
            }
        }
        let confirmed: Vec<&OutboxMessage> =
            buf.iter().filter(|(_, ok)| *ok).map(|(m, _)| m).collect();
        if !confirmed.is_empty() {
            let mut ids: Vec<&str> = confirmed
                .iter()
                .map(|m| m.row.message_id.as_str())
                .collect();
            // In key order, so two deletes never lock rows in opposite orders.
            ids.sort_unstable();
            let mut deleted = false;
            for attempt in 0..5u64 {
                let r = async {
                    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                    for chunk in ids.chunks(DELETE_CHUNK) {
                        delete_ids(&mut conn, chunk)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(())
                }
                .await;
                match r {
                    Ok(_) => {
                        deleted = true;
                        break;
                    }
                    Err(e) => {
                        // A deadlock with concurrent outbox inserts is
                        // routine under load; the retry settles it.
                        tracing::debug!(error = %e, "could not delete confirmed outbox rows; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                    }
                }
            }
            if !deleted {
                // They will be published again by the sweeper; consumers are
                // idempotent, so the cost is a duplicate, not a loss.
                tracing::warn!(rows = ids.len(), "confirmed outbox rows left in place");
            }
        }
        if let Ok(mut f) = inflight.lock() {
            for (m, _) in buf.iter() {
                f.remove(&m.row.message_id);
            }
        }
        buf.clear();
    }
}

/// Most ids in one delete statement.
const DELETE_CHUNK: usize = 200;
/// Most confirmed rows the deleter takes at once.
const DELETE_MAX: usize = 2000;
/// How long confirmed rows gather before they are deleted together.
const DELETE_GATHER: Duration = Duration::from_millis(100);

/// Deletes confirmed rows by primary key, each row through its key, in
/// one text statement (db::script: no prepare for a statement whose text
/// changes with every batch size).
///
/// The plain `DELETE ... WHERE message_id IN (...)` is planned as a full
/// scan: the outbox is nearly empty whenever InnoDB samples its statistics,
/// so the optimizer believes a scan of "one row" is cheaper than a lookup
/// per id. A scanning DELETE locks every row it passes, including rows
/// that concurrent business transactions have just inserted, so every
/// writer of the role queued behind the deleter (and deadlocked with it).
/// Joining the ids as a derived table, read first (`STRAIGHT_JOIN`),
/// turns the plan into one primary-key lookup per id (`eq_ref`) on MySQL 8
/// and MariaDB alike, and locks only the rows it deletes. One statement
/// is atomic on its own, so no explicit transaction is needed.
pub async fn delete_ids(
    conn: &mut diesel_async::AsyncMysqlConnection,
    ids: &[&str],
) -> QueryResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut q = diesel::sql_query(delete_sql(ids.len())).into_boxed();
    for id in ids {
        q = q.bind::<diesel::sql_types::Text, _>(*id);
    }
    let mut script = Script::new();
    script.push(&q)?;
    script.run(conn).await
}

/// The text of `delete_ids` for `n` (at least one) ids, one `?` each.
pub fn delete_sql(n: usize) -> String {
    let mut sql = String::from("DELETE outbox FROM (SELECT ? AS id");
    for _ in 1..n {
        sql.push_str(" UNION ALL SELECT ?");
    }
    // The ids arrive as utf8mb4 text and message_id is ascii_bin: said
    // explicitly, the comparison stays in the column's collation, so MySQL 8
    // (which would otherwise convert the column, not the value) still looks
    // each id up by primary key. MariaDB plans both forms the same.
    sql.push_str(
        ") AS ids STRAIGHT_JOIN outbox \
         ON outbox.message_id = CONVERT(ids.id USING ascii) COLLATE ascii_bin",
    );
    sql
}

async fn sweeper(
    outbox: Outbox,
    pool: DbPool,
    broker: Broker,
    metrics: Arc<Metrics>,
    cfg: OutboxConfig,
) {
    let mut sessions = broker.sessions();
    let mut tick = tokio::time::interval(cfg.sweep_interval);
    loop {
        // Right after (re)connecting, everything not in flight is due.
        let min_age = tokio::select! {
            _ = tick.tick() => cfg.sweep_after,
            r = sessions.changed() => {
                if r.is_err() { return; }
                Duration::ZERO
            }
        };
        if let Err(e) = sweep_once(&outbox, &pool, &broker, &metrics, &cfg, min_age).await {
            tracing::debug!(error = %e, "outbox sweep skipped");
        }
    }
}

async fn sweep_once(
    outbox: &Outbox,
    pool: &DbPool,
    broker: &Broker,
    metrics: &Metrics,
    cfg: &OutboxConfig,
    min_age: Duration,
) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    let backlog: i64 = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            outbox::table.count().get_result(c).await
        })
        .await?;
    metrics
        .outbox_backlog
        .get_or_create(&metrics.service_labels())
        .set(backlog);
    if backlog == 0 || !broker.is_connected() {
        return Ok(());
    }
    let cutoff = chrono::Utc::now().naive_utc() - chrono::Duration::from_std(min_age)?;
    let rows: Vec<OutboxRow> = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            outbox::table
                .filter(outbox::created_at.le(cutoff))
                .order(outbox::created_at.asc())
                .limit(cfg.batch_size as i64)
                .select(OutboxRow::as_select())
                .load(c)
                .await
        })
        .await?;
    drop(conn);
    if !rows.is_empty() {
        tracing::info!(rows = rows.len(), "republishing outbox rows left behind");
    }
    outbox.enqueue(
        rows.into_iter()
            .map(|row| OutboxMessage {
                row,
                enqueued: Instant::now(),
            })
            .collect(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::OutboxMessage;
    use crate::messaging::contracts::{InventoryCommand, Message};

    fn reserve() -> Message {
        Message::Reserve(InventoryCommand {
            saga_id: "0190a0c4-7c1e-7000-8000-000000000001".into(),
            order_id: 2,
            product_id: 1,
            quantity: 1,
        })
    }

    /// The inbox of the receiving role is keyed by this id: a UUIDv7 keeps
    /// its inserts at the right-hand end of the index (docs/design/keys-that-age.md).
    #[test]
    fn fresh_message_ids_are_uuidv7_and_ordered_by_time() {
        let ids: Vec<String> = (0..50)
            .map(|_| OutboxMessage::new(&reserve(), "t").row.message_id)
            .collect();
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 7, "{id}");
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "ids drawn later sort later");
    }
}
