//! `dop admin queues migrate`: re-creates every queue of the topology whose
//! type or arguments differ from the configuration (e.g. classic queues
//! when `rabbitmq.queue_type` is now quorum), keeping every message. A
//! queue's type cannot change in place, so each such queue is emptied into
//! a holding queue, deleted, declared again, and refilled. Every move is
//! publish, confirm, then ack: a crash in between leaves a copy in both
//! places, never in neither, and running the command again finishes the
//! job. The procedure around it is in docs/operations.md, "Moving to
//! quorum queues".

use std::{fmt::Write, path::Path, process::ExitCode, sync::Arc};

use amqprs::{
    channel::{
        BasicAckArguments, BasicGetArguments, BasicNackArguments, Channel, QueueDeclareArguments,
        QueueDeleteArguments,
    },
    connection::Connection,
    BasicProperties, FieldTable, FieldValue,
};
use anyhow::{bail, Context};
use serde::Serialize;
use tokio::sync::Notify;

use crate::{
    config::Config,
    messaging::{broker, publisher::ConfirmChannel, topology},
};

/// Headers a message carries while it waits in a holding queue: the route
/// that brings it back to the queue it came from.
const FROM_EXCHANGE: &str = "x-dop-moved-exchange";
const FROM_ROUTING_KEY: &str = "x-dop-moved-routing-key";

#[derive(clap::Args, Debug)]
pub struct Opts {
    #[command(subcommand)]
    pub action: QueuesAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum QueuesAction {
    /// Re-create the queues whose type or arguments differ from the
    /// configuration (rabbitmq.queue_type, retry.delay), keeping their
    /// messages. Every dop role must be stopped (operator action: needs
    /// admin.token configured).
    Migrate(MigrateOpts),
}

#[derive(clap::Args, Debug)]
pub struct MigrateOpts {
    /// Must equal admin.token when given.
    #[arg(long)]
    pub token: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What happened to one queue.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct QueueMove {
    pub queue: String,
    /// `kept` (already as configured), `created` (did not exist) or
    /// `recreated`.
    pub action: &'static str,
    /// Messages taken out into the holding queue.
    pub moved_out: u64,
    /// Messages put back (more than `moved_out` when an interrupted run
    /// had left some in the holding queue).
    pub moved_back: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MigrateReport {
    pub queue_type: &'static str,
    pub queues: Vec<QueueMove>,
}

fn holding(queue: &str) -> String {
    format!("{queue}.migrating")
}

/// Depth and consumers of a queue, or None when it does not exist (the
/// failed passive declare closed the channel: a fresh one replaces it).
async fn probe(
    conn: &Connection,
    ch: &mut Channel,
    queue: &str,
) -> anyhow::Result<Option<(u32, u32)>> {
    match ch
        .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish())
        .await
    {
        Ok(r) => Ok(Some(r.map(|(_, n, c)| (n, c)).unwrap_or((0, 0)))),
        Err(_) if !ch.is_open() && conn.is_open() => {
            *ch = conn.open_channel(None).await?;
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("Failed to look at queue {queue}")),
    }
}

/// Deletes `queue` once it is empty and unused. The check is a passive
/// declare just before the delete, not the delete's `if-empty` and
/// `if-unused` flags: a quorum queue answers those with a connection error
/// (NOT_IMPLEMENTED). Every dop role is stopped (checked at the start), so
/// nothing arrives in between.
async fn delete_empty(conn: &Connection, ch: &mut Channel, queue: &str) -> anyhow::Result<()> {
    match probe(conn, ch, queue).await? {
        None => return Ok(()),
        Some((0, 0)) => {}
        Some((n, c)) => bail!("{queue} is not empty and unused ({n} messages, {c} consumers) after moving its messages: is a role still running? Run the command again once it is stopped"),
    }
    ch.queue_delete(QueueDeleteArguments::new(queue))
        .await
        .with_context(|| format!("Failed to delete {queue}"))?;
    Ok(())
}

/// Whether `queue` (which exists) already has the configured type and
/// arguments: declaring it as configured succeeds. Tried on a throwaway
/// channel, as a refusal closes it.
async fn conforms(
    conn: &Connection,
    cfg: &Config,
    decl: &topology::QueueDecl,
) -> anyhow::Result<bool> {
    let ch = conn.open_channel(None).await?;
    let reason = topology::CloseReason::default();
    ch.register_callback(reason.clone()).await?;
    let kind = cfg.rabbitmq.queue_type;
    match topology::declare_queue(&ch, &decl.name, kind, decl.args.clone()).await {
        Ok(()) => {
            let _ = ch.close().await;
            Ok(true)
        }
        Err(e) => match reason.wait().await {
            Some(why) if why.contains("PRECONDITION_FAILED") => {
                tracing::info!(queue = %decl.name, reason = %why, "queue differs from the configuration; re-creating it");
                Ok(false)
            }
            _ => Err(e),
        },
    }
}

/// Moves every message of `from` elsewhere: `route` says where (exchange,
/// routing key) and may rewrite the properties. Each message is acked in
/// `from` only once its copy is confirmed. Ends when `from` is empty.
async fn drain(
    ch: &Channel,
    publisher: &ConfirmChannel,
    from: &str,
    route: impl Fn(&amqprs::GetOk, BasicProperties) -> anyhow::Result<(String, String, BasicProperties)>,
) -> anyhow::Result<u64> {
    let mut moved = 0;
    while let Some((ok, props, body)) = ch
        .basic_get(BasicGetArguments::new(from))
        .await
        .with_context(|| format!("Failed to read from {from}"))?
    {
        let tag = ok.delivery_tag();
        let id = props.message_id().cloned().unwrap_or_default();
        let sent = match route(&ok, props) {
            Ok((exchange, key, props)) => publisher
                .publish_as_is(&exchange, &key, props, body)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "publishing it to {exchange:?} with key {key:?} was not confirmed ({e})"
                    )
                }),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            let _ = ch
                .basic_nack(BasicNackArguments::new(tag, false, true))
                .await;
            bail!("stopped moving message {id:?} out of {from}: {e:#}; it stays in {from}, run the command again once fixed");
        }
        ch.basic_ack(BasicAckArguments::new(tag, false))
            .await
            .with_context(|| format!("Failed to ack message {id:?} in {from}"))?;
        moved += 1;
    }
    Ok(moved)
}

fn header(h: &FieldTable, key: &str) -> Option<String> {
    match h.get(&key.try_into().ok()?)? {
        FieldValue::S(s) => Some(s.as_ref().clone()),
        _ => None,
    }
}

/// A message on its way out: its headers remember where it was routed from.
fn remember_route(
    ok: &amqprs::GetOk,
    mut props: BasicProperties,
) -> anyhow::Result<(String, BasicProperties)> {
    let mut h = props.headers().cloned().unwrap_or_default();
    for (k, v) in [
        (FROM_EXCHANGE, ok.exchange()),
        (FROM_ROUTING_KEY, ok.routing_key()),
    ] {
        h.insert(
            k.try_into()
                .map_err(|_| anyhow::anyhow!("bad header name {k}"))?,
            FieldValue::from(v.as_str()),
        );
    }
    props.with_headers(h);
    Ok((ok.routing_key().clone(), props))
}

/// A message on its way back: the route it came by, headers as before.
fn recall_route(mut props: BasicProperties) -> anyhow::Result<(String, String, BasicProperties)> {
    let mut h = props.headers().cloned().unwrap_or_default();
    let (Some(exchange), Some(key)) = (header(&h, FROM_EXCHANGE), header(&h, FROM_ROUTING_KEY))
    else {
        bail!("it has no {FROM_EXCHANGE}/{FROM_ROUTING_KEY} headers, so where it came from is unknown");
    };
    for k in [FROM_EXCHANGE, FROM_ROUTING_KEY] {
        if let Ok(name) = k.try_into() {
            h.remove(&name);
        }
    }
    props.with_headers(h);
    Ok((exchange, key, props))
}

/// Operator write actions need admin.token configured; a `--token` given
/// must match it.
fn authorize(cfg: &Config, token: Option<&str>) -> anyhow::Result<()> {
    if cfg.admin.token.is_empty() {
        bail!("refusing to migrate queues: operator write actions are disabled until admin.token is configured (DOP_ADMIN__TOKEN)");
    }
    if token.is_some_and(|t| t != cfg.admin.token.expose()) {
        bail!("refusing to migrate queues: --token does not match admin.token");
    }
    Ok(())
}

/// Brings every queue of the topology to the configuration, keeping its
/// messages (see the module comment).
pub async fn migrate(cfg: &Config, token: Option<&str>) -> anyhow::Result<MigrateReport> {
    authorize(cfg, token)?;
    let kind = cfg.rabbitmq.queue_type;
    let conn = broker::connect(cfg).await?;
    let mut ch = conn.open_channel(None).await?;
    let decls = topology::queue_decls(cfg.retry.delay);
    // A role still consuming would re-declare a deleted queue with its own
    // (old) settings, or take messages while they move.
    for d in &decls {
        if let Some((_, consumers)) = probe(&conn, &mut ch, &d.name).await? {
            if consumers > 0 {
                bail!(
                    "queue {} has {consumers} consumer(s): stop every dop role (and any other consumer) before migrating",
                    d.name
                );
            }
        }
    }
    let publisher = ConfirmChannel::open(
        conn.open_channel(None).await?,
        cfg.rabbitmq.confirm_timeout,
        Arc::new(Notify::new()),
    )
    .await
    .context("Failed to open a confirming channel")?;
    let mut report = MigrateReport {
        queue_type: kind.as_str(),
        queues: Vec::new(),
    };
    for d in &decls {
        let mut entry = QueueMove {
            queue: d.name.clone(),
            action: "kept",
            moved_out: 0,
            moved_back: 0,
        };
        if probe(&conn, &mut ch, &d.name).await?.is_none() {
            entry.action = "created";
        } else if !conforms(&conn, cfg, d).await? {
            entry.action = "recreated";
            let hold = holding(&d.name);
            // The holding queue is of the new type: it is the only copy
            // of these messages for a while.
            topology::declare_queue(&ch, &hold, kind, vec![])
                .await
                .with_context(|| format!("Failed to declare the holding queue {hold} (left over from another queue type? delete it once it is empty)"))?;
            entry.moved_out = drain(&ch, &publisher, &d.name, |ok, props| {
                let (_, props) = remember_route(ok, props)?;
                Ok((String::new(), hold.clone(), props))
            })
            .await?;
            ch.queue_delete(
                QueueDeleteArguments::new(&d.name)
                    .if_empty(true)
                    .if_unused(true)
                    .finish(),
            )
            .await
            .with_context(|| {
                format!(
                    "Failed to delete {} (a message arrived meanwhile? run the command again)",
                    d.name
                )
            })?;
            tracing::info!(queue = %d.name, moved = entry.moved_out, "queue emptied and deleted");
        }
        report.queues.push(entry);
    }
    topology::declare_checked(&conn, cfg.retry.delay, kind).await?;
    for entry in &mut report.queues {
        let hold = holding(&entry.queue);
        if probe(&conn, &mut ch, &hold).await?.is_none() {
            continue;
        }
        entry.moved_back = drain(&ch, &publisher, &hold, |_, props| recall_route(props)).await?;
        delete_empty(&conn, &mut ch, &hold).await?;
        tracing::info!(queue = %entry.queue, moved = entry.moved_back, "messages back in the re-created queue");
    }
    let _ = ch.close().await;
    let _ = publisher.channel().clone().close().await;
    let _ = conn.close().await;
    Ok(report)
}

pub fn render(r: &MigrateReport) -> String {
    let mut out = format!("queue type: {}\n", r.queue_type);
    let _ = writeln!(
        out,
        "{:<28} {:<10} {:>9} {:>10}",
        "QUEUE", "ACTION", "MOVED OUT", "MOVED BACK"
    );
    for q in &r.queues {
        let _ = writeln!(
            out,
            "{:<28} {:<10} {:>9} {:>10}",
            q.queue, q.action, q.moved_out, q.moved_back
        );
    }
    out
}

pub async fn run(opts: Opts, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, None)?;
    match opts.action {
        QueuesAction::Migrate(o) => {
            let r = migrate(&cfg, o.token.as_deref()).await?;
            if o.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", render(&r));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
