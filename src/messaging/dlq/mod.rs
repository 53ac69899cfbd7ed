//! Dead letters over AMQP only (no management plugin needed), shared by
//! `dop admin dlq` and the order role's `/admin/dlq` routes: `list` peeks
//! without consuming; `redrive` sends messages back where they were
//! dead-lettered from. This file holds what both read from a dead letter's
//! headers.

mod list;
mod redrive;

use amqprs::{channel::Channel, connection::Connection, BasicProperties, FieldTable, FieldValue};
use anyhow::Context;
use serde::Serialize;

pub use list::{list, DlqStatus, SAMPLE};
pub use redrive::{authorize, consumed_queue, redrive, RedriveReport, Skipped};

use crate::{config::Config, messaging::broker::Broker};

/// A dead letter, as its headers describe it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: Option<String>,
    /// Where it was first published, if known.
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    /// `x-dlq-reason`, written by the consumer that gave up on it.
    pub reason: Option<String>,
    pub retry_count: Option<String>,
    pub saga_id: Option<String>,
    pub trace_id: Option<String>,
}

fn header(h: Option<&FieldTable>, key: &str) -> Option<String> {
    let name = key.try_into().ok()?;
    match h?.get(&name)? {
        FieldValue::S(s) => Some(s.as_ref().clone()),
        other => Some(other.to_string()),
    }
}

/// The broker's most recent `x-death` record, if it dead-lettered the
/// message itself (a consumer rejected it without forwarding it).
fn last_death(h: Option<&FieldTable>) -> Option<FieldTable> {
    let name = "x-death".try_into().ok()?;
    let FieldValue::A(deaths) = h?.get(&name)? else {
        return None;
    };
    let deaths: Vec<FieldValue> = deaths.clone().into();
    match deaths.into_iter().next()? {
        FieldValue::F(first) => Some(first),
        _ => None,
    }
}

/// Where a dead letter came from: the consumer's `x-original-*` headers, or
/// else the broker's `x-death` record.
fn original_route(h: Option<&FieldTable>) -> Option<(String, String)> {
    if let (Some(e), Some(k)) = (
        header(h, "x-original-exchange"),
        header(h, "x-original-routing-key"),
    ) {
        return Some((e, k));
    }
    let death = last_death(h)?;
    let exchange = header(Some(&death), "exchange")?;
    let key_name = "routing-keys".try_into().ok()?;
    let FieldValue::A(keys) = death.get(&key_name)? else {
        return None;
    };
    let keys: Vec<FieldValue> = keys.clone().into();
    match keys.into_iter().next()? {
        FieldValue::S(k) => Some((exchange, k.as_ref().clone())),
        _ => None,
    }
}

pub(crate) fn describe(props: &BasicProperties) -> DeadLetter {
    let h = props.headers();
    let route = original_route(h);
    DeadLetter {
        message_id: props.message_id().cloned(),
        exchange: route.as_ref().map(|r| r.0.clone()),
        routing_key: route.map(|r| r.1),
        reason: header(h, "x-dlq-reason").or_else(|| {
            let why = header(last_death(h).as_ref(), "reason")?;
            Some(format!("{why} (dead-lettered by the broker, x-death)"))
        }),
        retry_count: header(h, "x-retry-count"),
        saga_id: header(h, "saga_id"),
        trace_id: header(h, "trace_id"),
    }
}

async fn connect(cfg: &Config) -> anyhow::Result<Connection> {
    crate::messaging::broker::connect(cfg)
        .await
        .context("cannot reach RabbitMQ")
}

/// A queue's depth, or None when it does not exist. A passive declare of a
/// missing queue closes the channel, so a fresh one replaces it then.
async fn depth(conn: &Connection, ch: &mut Channel, queue: &str) -> anyhow::Result<Option<u32>> {
    match Broker::queue_depth(ch, queue).await {
        Ok(n) => Ok(Some(n)),
        Err(e) if !ch.is_open() && conn.is_open() => {
            tracing::debug!(queue, error = %e, "queue does not exist");
            *ch = conn.open_channel(None).await?;
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("Failed to read the depth of {queue}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{
        redrive::{consumed_queue, fresh_enough, republished},
        *,
    };
    use crate::{
        config::Secret,
        messaging::{
            consumer::{dead_letter, Delivery},
            publisher::Outgoing,
            topology,
        },
    };

    fn props_of(out: &Outgoing) -> BasicProperties {
        let mut t = FieldTable::new();
        for (k, v) in &out.headers {
            t.insert(k.as_str().try_into().unwrap(), v.clone());
        }
        BasicProperties::default()
            .with_message_id(&out.message_id)
            .with_headers(t)
            .finish()
    }

    fn delivery(routing_key: &str) -> Delivery {
        Delivery {
            queue: topology::INVENTORY_COMMANDS.into(),
            exchange: topology::COMMANDS.into(),
            routing_key: routing_key.into(),
            message_id: uuid::Uuid::new_v4().to_string(),
            trace_id: "trace-1".into(),
            saga_id: Some("saga-1".into()),
            retry_count: 2,
            body: b"{}".to_vec(),
        }
    }

    /// What `consumer::dead_letter` writes is what redrive reads back.
    #[test]
    fn a_dead_letter_goes_back_where_it_came_from() {
        let d = delivery(topology::RK_RESERVE);
        let props = props_of(&dead_letter(&d, "malformed body"));
        let seen = describe(&props);
        assert_eq!(seen.reason.as_deref(), Some("malformed body"));
        assert_eq!(seen.routing_key.as_deref(), Some(topology::RK_RESERVE));
        assert_eq!(seen.retry_count.as_deref(), Some("2"));
        let spec = consumed_queue("inventory.commands.dlq").unwrap();
        let out = republished(spec, &props, d.body.clone()).unwrap();
        assert_eq!(out.exchange, topology::COMMANDS);
        assert_eq!(out.routing_key, topology::RK_RESERVE);
        assert_eq!(out.message_id, d.message_id);
        let mut keys: Vec<&str> = out.headers.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["saga_id", "trace_id"]);
    }

    /// A message the broker dead-lettered itself carries only `x-death`.
    #[test]
    fn the_brokers_x_death_is_read_too() {
        let mut death = FieldTable::new();
        death.insert(
            "exchange".try_into().unwrap(),
            FieldValue::from("saga.commands"),
        );
        death.insert("reason".try_into().unwrap(), FieldValue::from("rejected"));
        let keys =
            amqprs::FieldArray::try_from(vec![FieldValue::from("inventory.release")]).unwrap();
        death.insert("routing-keys".try_into().unwrap(), FieldValue::A(keys));
        let deaths = amqprs::FieldArray::try_from(vec![FieldValue::F(death)]).unwrap();
        let mut h = FieldTable::new();
        h.insert("x-death".try_into().unwrap(), FieldValue::A(deaths));
        h.insert("trace_id".try_into().unwrap(), FieldValue::from("t"));
        let props = BasicProperties::default()
            .with_message_id(&uuid::Uuid::new_v4().to_string())
            .with_headers(h)
            .finish();
        let seen = describe(&props);
        assert_eq!(seen.routing_key.as_deref(), Some("inventory.release"));
        assert_eq!(
            seen.reason.as_deref(),
            Some("rejected (dead-lettered by the broker, x-death)")
        );
        let spec = consumed_queue("inventory.commands").unwrap();
        let out = republished(spec, &props, vec![]).unwrap();
        assert_eq!(
            (out.exchange.as_str(), out.headers.len()),
            ("saga.commands", 1)
        );
    }

    /// A message older than the deduplication window (less the retries it
    /// may still go through) stays in the DLQ; its age comes from its
    /// UUIDv7 id, or from its AMQP timestamp; an undated one stays too.
    #[test]
    fn redrive_refuses_what_may_have_outlived_its_deduplication_record() {
        use std::time::{Duration, SystemTime};
        let mut cfg = Config::default();
        cfg.retention.dedup = Duration::from_secs(3600);
        cfg.retry.delay = Duration::from_secs(1);
        cfg.retry.max_attempts = 5;
        let now = SystemTime::now();
        let v7_at = |t: SystemTime| {
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, d.as_secs(), d.subsec_nanos());
            uuid::Uuid::new_v7(ts).to_string()
        };
        let props = |id: String, ts: Option<u64>| {
            let mut p = BasicProperties::default();
            p.with_message_id(&id);
            if let Some(t) = ts {
                p.with_timestamp(t);
            }
            p.finish()
        };
        let young = props(v7_at(now - Duration::from_secs(3590)), None);
        assert_eq!(fresh_enough(&cfg, &young, now), Ok(()));
        let old = props(v7_at(now - Duration::from_secs(3596)), None);
        let err = fresh_enough(&cfg, &old, now).unwrap_err();
        assert!(err.contains("past the deduplication window"), "{err}");
        assert!(err.contains("retention.dedup 1h less 5s"), "{err}");
        let secs = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let v4 = || uuid::Uuid::new_v4().to_string();
        let dated = props(v4(), Some(secs(now - Duration::from_secs(60))));
        assert_eq!(fresh_enough(&cfg, &dated, now), Ok(()));
        let stale = props(v4(), Some(secs(now - Duration::from_secs(7200))));
        assert!(fresh_enough(&cfg, &stale, now).is_err());
        let undated = props(v4(), None);
        let err = fresh_enough(&cfg, &undated, now).unwrap_err();
        assert!(err.contains("age is unknown"), "{err}");
    }

    #[test]
    fn routes_elsewhere_are_not_redriven() {
        let d = delivery(topology::RK_PAY);
        let props = props_of(&dead_letter(&d, "x"));
        let spec = consumed_queue("inventory.commands").unwrap();
        let err = republished(spec, &props, vec![]).unwrap_err();
        assert!(err.contains("does not lead to inventory.commands"), "{err}");
        assert!(consumed_queue("nope.dlq").is_err());
    }

    #[test]
    fn redrive_needs_a_configured_token() {
        let mut cfg = Config::default();
        let err = authorize(&cfg, None).unwrap_err().to_string();
        assert!(err.contains("admin.token is configured"), "{err}");
        cfg.admin.token = Secret::new("s3cret");
        assert!(authorize(&cfg, None).is_ok());
        assert!(authorize(&cfg, Some("s3cret")).is_ok());
        assert!(authorize(&cfg, Some("wrong")).is_err());
    }
}
