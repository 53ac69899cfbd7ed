//! Redrive: dead letters back to the exchange and
//! routing key they came from, with the same message id, each acked in the
//! DLQ only once its republish is confirmed.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use amqprs::{
    channel::{BasicAckArguments, BasicGetArguments, BasicNackArguments},
    BasicProperties,
};
use anyhow::{bail, Context};
use serde::Serialize;
use tokio::sync::Notify;

use super::{connect, depth, original_route};
use crate::{
    config::{Config, RetentionConfig},
    messaging::{
        publisher::{ConfirmChannel, Outgoing},
        topology::{self, QUEUES},
    },
};

/// What a redrive did.
#[derive(Clone, Debug, Serialize)]
pub struct RedriveReport {
    pub dlq: String,
    pub depth_at_start: u32,
    /// Republished (confirmed) and removed from the DLQ.
    pub moved: u32,
    /// Left in the DLQ, with why.
    pub skipped: Vec<Skipped>,
    /// Set when the redrive stopped early (the message in hand stays).
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub message_id: Option<String>,
    pub why: String,
}

/// Operator write actions need admin.token configured; a `--token` given
/// must match it.
pub fn authorize(cfg: &Config, token: Option<&str>) -> anyhow::Result<()> {
    if cfg.admin.token.is_empty() {
        bail!(
            "refusing to redrive: operator write actions are disabled until admin.token is configured (DOP_ADMIN__TOKEN)"
        );
    }
    if token.is_some_and(|t| t != cfg.admin.token.expose()) {
        bail!("refusing to redrive: --token does not match admin.token");
    }
    Ok(())
}

/// The consumed queue named by `arg` (`Q` or `Q.dlq`).
pub fn consumed_queue(arg: &str) -> anyhow::Result<&'static topology::QueueSpec> {
    let name = arg.strip_suffix(".dlq").unwrap_or(arg);
    QUEUES.iter().find(|q| q.name == name).with_context(|| {
        let names: Vec<&str> = QUEUES.iter().map(|q| q.name).collect();
        format!(
            "unknown queue {arg:?}: expected one of {} (or its .dlq)",
            names.join(", ")
        )
    })
}

/// Moves up to `limit` messages (default: the depth at the start, so the
/// loop ends even while new dead letters arrive) from `queue`'s DLQ back to
/// where they came from.
pub async fn redrive(
    cfg: &Config,
    queue: &str,
    limit: Option<u32>,
    token: Option<&str>,
) -> anyhow::Result<RedriveReport> {
    authorize(cfg, token)?;
    let spec = consumed_queue(queue)?;
    let dlq = topology::dlq(spec.name);
    let conn = connect(cfg).await?;
    let mut ch = conn.open_channel(None).await?;
    let Some(start) = depth(&conn, &mut ch, &dlq).await? else {
        bail!("{dlq} does not exist: no role has declared the topology on this broker yet");
    };
    if depth(&conn, &mut ch, spec.name).await?.is_none() {
        bail!(
            "{} does not exist: start a role first, so the messages have somewhere to go",
            spec.name
        );
    }
    let publisher = ConfirmChannel::open(
        conn.open_channel(None).await?,
        cfg.rabbitmq.confirm_timeout,
        Arc::new(Notify::new()),
    )
    .await
    .context("Failed to open a confirming channel")?;
    let budget = limit.map_or(start, |l| l.min(start));
    let mut report = RedriveReport {
        dlq: dlq.clone(),
        depth_at_start: start,
        moved: 0,
        skipped: Vec::new(),
        error: None,
    };
    // Skipped messages stay unacked until the end, so the next get does not
    // return them again; then they go back.
    let mut held = Vec::new();
    for _ in 0..budget {
        let Some((ok, props, body)) = ch
            .basic_get(BasicGetArguments::new(&dlq))
            .await
            .with_context(|| format!("Failed to read from {dlq}"))?
        else {
            break;
        };
        let tag = ok.delivery_tag();
        let out = match fresh_enough(cfg, &props, SystemTime::now())
            .and_then(|()| republished(spec, &props, body))
        {
            Ok(out) => out,
            Err(why) => {
                held.push(tag);
                report.skipped.push(Skipped {
                    message_id: props.message_id().cloned(),
                    why,
                });
                continue;
            }
        };
        match publisher.publish_confirmed(&out).await {
            Ok(()) => {
                ch.basic_ack(BasicAckArguments::new(tag, false))
                    .await
                    .with_context(|| {
                        format!("Failed to ack message {} in {dlq}", out.message_id)
                    })?;
                report.moved += 1;
                tracing::info!(message_id = %out.message_id, routing_key = %out.routing_key, "redrove a dead letter");
            }
            Err(e) => {
                held.push(tag);
                report.error = Some(format!(
                    "republishing message {} was not confirmed ({e}); it stays in {dlq}",
                    out.message_id
                ));
                break;
            }
        }
    }
    for tag in held {
        ch.basic_nack(BasicNackArguments::new(tag, false, true))
            .await
            .with_context(|| format!("Failed to put a skipped message back in {dlq}"))?;
    }
    let _ = ch.close().await;
    let _ = publisher.channel().clone().close().await;
    let _ = conn.close().await;
    Ok(report)
}

/// When the message was first sent: the time in its UUIDv7 id (every id dop
/// draws), else its AMQP `timestamp` property. None for a UUIDv4 id without
/// a timestamp (the original system's messages).
pub(super) fn born_at(props: &BasicProperties) -> Option<SystemTime> {
    let id = props
        .message_id()
        .and_then(|id| uuid::Uuid::parse_str(id).ok());
    if let Some(ts) = id
        .filter(|u| u.get_version_num() == 7)
        .and_then(|u| u.get_timestamp())
    {
        let (secs, nanos) = ts.to_unix();
        return UNIX_EPOCH.checked_add(Duration::new(secs, nanos));
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(props.timestamp()?))
}

/// Redrive sends a message back only while its deduplication record, if a
/// copy of it was handled, is certainly still there: it must be younger
/// than `retention.dedup` less the time its retries may still take.
/// Otherwise (or when its age is unknown) it stays in the DLQ, with why.
pub(super) fn fresh_enough(
    cfg: &Config,
    props: &BasicProperties,
    now: SystemTime,
) -> Result<(), String> {
    let Some(born) = born_at(props) else {
        return Err(
            "its age is unknown (its message id is not a UUIDv7 and it has no AMQP timestamp), so a copy handled earlier may have left the deduplication window; check its saga and resend by hand (docs/operations.md, Retention)".into(),
        );
    };
    let age = now.duration_since(born).unwrap_or_default();
    let limit = cfg
        .retention
        .dedup
        .saturating_sub(RetentionConfig::retry_span(&cfg.retry));
    if age >= limit {
        return Err(format!(
            "it was sent {} ago, past the deduplication window (retention.dedup {} less {} of retries); check its saga and resend by hand (docs/operations.md, Retention)",
            humantime_serde::re::humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime_serde::re::humantime::format_duration(cfg.retention.dedup),
            humantime_serde::re::humantime::format_duration(RetentionConfig::retry_span(&cfg.retry)),
        ));
    }
    Ok(())
}

/// The message as it goes back: same id, body and trace headers, to the
/// route it was dead-lettered from, without the dead-letter and retry
/// headers (its retry budget starts over).
pub(super) fn republished(
    spec: &topology::QueueSpec,
    props: &BasicProperties,
    body: Vec<u8>,
) -> Result<Outgoing, String> {
    let h = props.headers();
    let (exchange, routing_key) = original_route(h)
        .ok_or("no x-original-exchange/x-original-routing-key or x-death header")?;
    let routes_back = spec.exchange == exchange && spec.keys.contains(&routing_key.as_str());
    if !routes_back {
        return Err(format!(
            "its original route {exchange:?}/{routing_key:?} does not lead to {}",
            spec.name
        ));
    }
    let message_id = props.message_id().cloned().unwrap_or_default();
    if uuid::Uuid::parse_str(&message_id).is_err() {
        return Err(format!(
            "message_id {message_id:?} is not a UUID; it would be dead-lettered again"
        ));
    }
    let headers = h
        .map(|t| {
            t.as_ref()
                .iter()
                .filter(|(k, _)| !k.to_string().starts_with("x-"))
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Outgoing {
        exchange,
        routing_key,
        message_id,
        body,
        headers,
    })
}
