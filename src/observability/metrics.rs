//! Every metric dop exports, one registry per role so that `--role all`
//! serves three disjoint /metrics pages.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub service: String,
    pub method: String,
    pub path: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpDurationLabels {
    pub service: String,
    pub method: String,
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishLabels {
    pub service: String,
    pub exchange: String,
    pub routing_key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumeLabels {
    pub service: String,
    pub queue: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub service: String,
    pub queue: String,
}

/// The label of the original system's `dlq_messages` gauge: the queue
/// only (its dashboard's DLQ panel is by `{{queue}}`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DlqLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The saga step that ran out of time (`RESERVING_INVENTORY`,
    /// `PROCESSING_PAYMENT`).
    pub step: String,
    /// `step_timeout` or `deadline`.
    pub deadline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatchFailureLabels {
    pub service: String,
    /// What ran the batch: `inventory`, `payment`, `saga`, `orders`.
    pub batch: String,
    /// `contention`, `duplicate`, `connection`, `permanent`, `panic`,
    /// `outcome_count`.
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub service: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub service: String,
    pub table: String,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

fn saga_buckets() -> impl Iterator<Item = f64> {
    [
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ]
    .into_iter()
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The metrics of one role.
pub struct Metrics {
    pub service: String,
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistFamily<HttpDurationLabels>,
    pub saga_total: Family<StatusLabels, Counter>,
    pub saga_duration: HistFamily<StatusLabels>,
    /// Sagas that compensated because a step or the saga ran out of time.
    pub saga_timeouts: Family<StepLabels, Counter>,
    /// Customer cancels, by what they did (`compensating`, `already_ended`,
    /// `refused_confirmed`).
    pub saga_cancellations: Family<OutcomeLabels, Counter>,
    pub published: Family<PublishLabels, Counter>,
    /// Messages the broker returned unrouted (mandatory publish, no binding).
    pub returned: Family<PublishLabels, Counter>,
    pub consumed: Family<ConsumeLabels, Counter>,
    pub outbox_backlog: Family<ServiceLabels, Gauge>,
    pub outbox_relay_latency: HistFamily<ServiceLabels>,
    pub dlq_depth: Family<QueueLabels, Gauge>,
    /// The same depth under the original system's name and label, so its
    /// dashboard's DLQ panel shows data (set through `set_dlq_depth`).
    pub dlq_messages: Family<DlqLabels, Gauge>,
    pub reserve_rejections: Family<ReasonLabels, Counter>,
    pub db_pool_connections: Family<PoolLabels, Gauge>,
    pub db_pool_max: Family<ServiceLabels, Gauge>,
    pub batch_failures: Family<BatchFailureLabels, Counter>,
    /// Rows deleted by retention, per table.
    pub retention_deleted: Family<TableLabels, Counter>,
    /// Age past its window of the oldest row still present (0: none).
    pub retention_lag: Family<TableLabels, Gauge>,
    /// Retention passes that failed (logged with their cause).
    pub retention_failures: Family<TableLabels, Counter>,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        let http_duration: HistFamily<HttpDurationLabels> =
            Family::new_with_constructor(|| Histogram::new(latency_buckets()));
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            http_duration.clone(),
        );
        let saga_total = Family::<StatusLabels, Counter>::default();
        registry.register(
            "saga",
            "Sagas that reached a terminal status",
            saga_total.clone(),
        );
        let saga_duration: HistFamily<StatusLabels> =
            Family::new_with_constructor(|| Histogram::new(saga_buckets()));
        registry.register(
            "saga_duration_seconds",
            "Time from order accepted to saga terminal",
            saga_duration.clone(),
        );
        let published = Family::<PublishLabels, Counter>::default();
        registry.register(
            "messages_published",
            "Messages confirmed by the broker",
            published.clone(),
        );
        let returned = Family::<PublishLabels, Counter>::default();
        registry.register(
            "messages_returned",
            "Messages the broker returned unrouted (no binding); they stay in the outbox",
            returned.clone(),
        );
        let consumed = Family::<ConsumeLabels, Counter>::default();
        registry.register(
            "messages_consumed",
            "Deliveries handled, by outcome (ack, retry, dead_letter, duplicate)",
            consumed.clone(),
        );
        let outbox_backlog = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "outbox_backlog",
            "Outbox rows not yet confirmed by the broker",
            outbox_backlog.clone(),
        );
        let outbox_relay_latency: HistFamily<ServiceLabels> =
            Family::new_with_constructor(|| Histogram::new(latency_buckets()));
        registry.register(
            "outbox_relay_latency_seconds",
            "From outbox commit to broker confirm",
            outbox_relay_latency.clone(),
        );
        let dlq_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "dlq_depth",
            "Messages waiting in a dead-letter queue (sampled)",
            dlq_depth.clone(),
        );
        let dlq_messages = Family::<DlqLabels, Gauge>::default();
        registry.register(
            "dlq_messages",
            "Messages waiting in a dead-letter queue (sampled); the original system's name for dlq_depth",
            dlq_messages.clone(),
        );
        let saga_timeouts = Family::<StepLabels, Counter>::default();
        registry.register(
            "saga_timeouts",
            "Sagas that compensated because a step or the whole saga ran past its deadline, by step",
            saga_timeouts.clone(),
        );
        let saga_cancellations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "saga_cancellations",
            "Customer cancels (POST /orders/:id/cancel), by outcome",
            saga_cancellations.clone(),
        );
        let reserve_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "inventory_reserve_rejections",
            "Reserves rejected, by reason",
            reserve_rejections.clone(),
        );
        let db_pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections by state (in_use, idle)",
            db_pool_connections.clone(),
        );
        let db_pool_max = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "db_pool_max",
            "Database pool size limit",
            db_pool_max.clone(),
        );
        let batch_failures = Family::<BatchFailureLabels, Counter>::default();
        registry.register(
            "batch_failures",
            "Batches (of deliveries or of orders) whose transaction failed, by cause",
            batch_failures.clone(),
        );
        let retention_deleted = Family::<TableLabels, Counter>::default();
        registry.register(
            "retention_deleted_rows",
            "Rows deleted because they aged out of their retention window",
            retention_deleted.clone(),
        );
        let retention_lag = Family::<TableLabels, Gauge>::default();
        registry.register(
            "retention_lag_seconds",
            "How far past its retention window the oldest row still present is (0: none)",
            retention_lag.clone(),
        );
        let retention_failures = Family::<TableLabels, Counter>::default();
        registry.register(
            "retention_failures",
            "Retention passes that failed (the next pass tries again)",
            retention_failures.clone(),
        );
        // Terminal counts exist from the start, so a dashboard shows 0, not
        // "no data".
        for status in ["COMPLETED", "COMPENSATED", "FAILED"] {
            let _ = saga_total.get_or_create(&StatusLabels {
                status: status.into(),
            });
        }
        for step in ["RESERVING_INVENTORY", "PROCESSING_PAYMENT"] {
            for deadline in ["step_timeout", "deadline"] {
                let _ = saga_timeouts.get_or_create(&StepLabels {
                    step: step.into(),
                    deadline: deadline.into(),
                });
            }
        }
        for outcome in ["compensating", "already_ended", "refused_confirmed"] {
            let _ = saga_cancellations.get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            });
        }
        let _ = outbox_backlog.get_or_create(&ServiceLabels {
            service: service.to_string(),
        });
        Self {
            service: service.to_string(),
            registry,
            http_requests,
            http_duration,
            saga_total,
            saga_duration,
            saga_timeouts,
            saga_cancellations,
            published,
            returned,
            consumed,
            outbox_backlog,
            outbox_relay_latency,
            dlq_depth,
            dlq_messages,
            reserve_rejections,
            db_pool_connections,
            db_pool_max,
            batch_failures,
            retention_deleted,
            retention_lag,
            retention_failures,
        }
    }

    /// The labels of one table's retention series.
    pub fn table(&self, table: &str) -> TableLabels {
        TableLabels {
            service: self.service.clone(),
            table: table.to_string(),
        }
    }

    /// Records a sampled dead-letter queue depth, as `dlq_depth` and as the
    /// original's `dlq_messages`.
    pub fn set_dlq_depth(&self, queue: &str, depth: i64) {
        self.dlq_depth
            .get_or_create(&QueueLabels {
                service: self.service.clone(),
                queue: queue.to_string(),
            })
            .set(depth);
        self.dlq_messages
            .get_or_create(&DlqLabels {
                queue: queue.to_string(),
            })
            .set(depth);
    }

    /// Counts a failed batch in `batch_failures_total`.
    pub fn batch_failed(&self, batch: &str, cause: &str) {
        self.batch_failures
            .get_or_create(&BatchFailureLabels {
                service: self.service.clone(),
                batch: batch.to_string(),
                cause: cause.to_string(),
            })
            .inc();
    }

    /// Creates the `batch_failures_total` series of a batch and cause at 0,
    /// so a dashboard shows a rate of 0 rather than "no data" until the
    /// first failure.
    pub fn batch_may_fail(&self, batch: &str, cause: &str) {
        let _ = self.batch_failures.get_or_create(&BatchFailureLabels {
            service: self.service.clone(),
            batch: batch.to_string(),
            cause: cause.to_string(),
        });
    }

    /// The Prometheus text exposition (format 0.0.4) of this role.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        to_prometheus_text(&out)
    }

    pub fn consumed(&self, queue: &str, outcome: &str) {
        self.consumed
            .get_or_create(&ConsumeLabels {
                service: self.service.clone(),
                queue: queue.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn published(&self, exchange: &str, routing_key: &str) {
        self.published
            .get_or_create(&PublishLabels {
                service: self.service.clone(),
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
            })
            .inc();
    }

    /// Counts a message the broker returned unrouted in
    /// `messages_returned_total`.
    pub fn returned(&self, exchange: &str, routing_key: &str) {
        self.returned
            .get_or_create(&PublishLabels {
                service: self.service.clone(),
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
            })
            .inc();
    }

    pub fn service_labels(&self) -> ServiceLabels {
        ServiceLabels {
            service: self.service.clone(),
        }
    }

    /// Samples the pool's state into the pool gauges.
    pub fn observe_pool(&self, status: deadpool::Status) {
        let in_use = status.size.saturating_sub(status.available) as i64;
        for (state, v) in [("in_use", in_use), ("idle", status.available as i64)] {
            self.db_pool_connections
                .get_or_create(&PoolLabels {
                    service: self.service.clone(),
                    state: state.into(),
                })
                .set(v);
        }
        self.db_pool_max
            .get_or_create(&self.service_labels())
            .set(status.max_size as i64);
    }
}

/// Every metric family name a scrape can show (used by the dashboard test).
pub const EXPORTED: &[&str] = &[
    "http_requests_total",
    "http_request_duration_seconds",
    "saga_total",
    "saga_duration_seconds",
    "saga_timeouts_total",
    "saga_cancellations_total",
    "messages_published_total",
    "messages_returned_total",
    "messages_consumed_total",
    "outbox_backlog",
    "outbox_relay_latency_seconds",
    "dlq_depth",
    "dlq_messages",
    "inventory_reserve_rejections_total",
    "db_pool_connections",
    "db_pool_max",
    "batch_failures_total",
];

/// prometheus-client writes OpenMetrics: a counter's HELP and TYPE lines
/// name the family (`http_requests`) while its samples are
/// `http_requests_total`, and the text ends with `# EOF`. The classic text
/// format that Prometheus scrapes as 0.0.4 (and `promtool check metrics`
/// reads) wants the sample name on HELP and TYPE, and no `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let counters: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for line in lines {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples() {
        let m = Metrics::new("order-service");
        m.consumed("order.events", "ack");
        let text = m.encode();
        assert!(
            text.contains("# TYPE messages_consumed_total counter"),
            "{text}"
        );
        assert!(text.contains("# HELP messages_consumed_total "), "{text}");
        assert!(text.contains("messages_consumed_total{service=\"order-service\",queue=\"order.events\",outcome=\"ack\"} 1"), "{text}");
        assert!(text.contains("# TYPE outbox_backlog gauge"), "{text}");
        assert!(!text.contains("# EOF"));
    }
}
