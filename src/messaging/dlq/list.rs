//! The depth of each dead-letter queue and why its
//! first messages died, read without consuming them.

use amqprs::channel::{BasicGetArguments, BasicNackArguments, Channel};
use anyhow::Context;
use serde::Serialize;

use super::{connect, depth, describe, DeadLetter};
use crate::{
    config::Config,
    messaging::topology::{self, QUEUES},
};

/// Messages `list` shows per dead-letter queue.
pub const SAMPLE: usize = 5;

/// One consumed queue's dead letters.
#[derive(Clone, Debug, Serialize)]
pub struct DlqStatus {
    pub queue: String,
    pub dlq: String,
    /// None when the queue does not exist (no role has declared it yet).
    pub depth: Option<u32>,
    /// The first few messages, left in the queue.
    pub samples: Vec<DeadLetter>,
}

/// Takes up to `n` messages unacked, reads them, and puts them back.
async fn peek(ch: &Channel, queue: &str, n: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let mut seen = Vec::new();
    let mut last_tag = None;
    for _ in 0..n {
        let Some((ok, props, _body)) = ch
            .basic_get(BasicGetArguments::new(queue))
            .await
            .with_context(|| format!("Failed to read from {queue}"))?
        else {
            break;
        };
        last_tag = Some(ok.delivery_tag());
        seen.push(describe(&props));
    }
    if let Some(tag) = last_tag {
        ch.basic_nack(BasicNackArguments::new(tag, true, true))
            .await
            .with_context(|| format!("Failed to put the messages back in {queue}"))?;
    }
    Ok(seen)
}

/// Depth and a sample of each dead-letter queue of `cfg`'s broker.
pub async fn list(cfg: &Config) -> anyhow::Result<Vec<DlqStatus>> {
    let conn = connect(cfg).await?;
    let mut ch = conn.open_channel(None).await?;
    let mut out = Vec::new();
    for q in QUEUES.iter() {
        let dlq = topology::dlq(q.name);
        let depth = depth(&conn, &mut ch, &dlq).await?;
        let samples = match depth {
            Some(d) if d > 0 => peek(&ch, &dlq, SAMPLE).await?,
            _ => Vec::new(),
        };
        out.push(DlqStatus {
            queue: q.name.to_string(),
            dlq,
            depth,
            samples,
        });
    }
    let _ = ch.close().await;
    let _ = conn.close().await;
    Ok(out)
}
