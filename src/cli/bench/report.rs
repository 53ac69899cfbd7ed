//! The human-readable table of a saga bench (`--json` prints the report
//! itself instead).

use std::fmt::Write;

use super::{
    saga::BenchReport,
    stats::{fmt_count, fmt_ms, fmt_rate, Percentiles},
};

/// `p50 1.20 ms  p95 ...`; `with_tail` adds p95 and p99.9.
pub fn percentiles_line(p: &Percentiles, with_tail: bool) -> String {
    if p.count == 0 {
        return "no samples".into();
    }
    let mut s = format!("p50 {}", fmt_ms(p.p50_ms));
    if with_tail {
        let _ = write!(s, "  p95 {}", fmt_ms(p.p95_ms));
    }
    let _ = write!(s, "  p99 {}", fmt_ms(p.p99_ms));
    if with_tail {
        let _ = write!(s, "  p99.9 {}", fmt_ms(p.p999_ms));
    }
    let _ = write!(s, "  max {}", fmt_ms(p.max_ms));
    s
}

/// `COMPLETED 10  FAILED 2` from counts by key.
pub fn counts_line<'a>(counts: impl IntoIterator<Item = (&'a String, &'a u64)>) -> String {
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(k, n)| format!("{k} {}", fmt_count(*n)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("  ")
    }
}

/// The table, ending in a newline.
pub fn render(r: &BenchReport) -> String {
    let mut o = String::new();
    let s = &r.sagas;
    let _ = writeln!(
        o,
        "dop bench: {}, {:.0} s, {} products",
        r.load, r.duration_s, r.products
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "POST /orders");
    let _ = writeln!(o, "  {:<20}{}", "sent", fmt_count(r.sent));
    let _ = writeln!(
        o,
        "  {:<20}{}  ({} over {:.1} s)",
        "accepted (201)",
        fmt_count(r.ok),
        fmt_rate(r.accepted_per_s),
        r.load_s
    );
    let _ = writeln!(
        o,
        "  {:<20}{}  ({})",
        "errors",
        fmt_count(r.errors),
        counts_line(&r.errors_by_kind)
    );
    let _ = writeln!(
        o,
        "  {:<20}{}",
        "latency",
        percentiles_line(&r.latency, true)
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "Sagas, end to end");
    let _ = writeln!(o, "  {:<20}{}", "created", fmt_count(s.created));
    let _ = writeln!(
        o,
        "  {:<20}{}  ({})",
        "terminal",
        fmt_count(s.terminal),
        counts_line(&s.by_status)
    );
    let span = s
        .last_terminal_s
        .map(|t| format!("{t:.1} s from the first request to the last saga terminal"))
        .unwrap_or_else(|| "no saga finished".into());
    let _ = writeln!(
        o,
        "  {:<20}{}  ({span})",
        "completed",
        fmt_rate(s.completed_per_s)
    );
    let _ = writeln!(
        o,
        "  {:<20}{}",
        "duration",
        percentiles_line(&s.duration, false)
    );
    let _ = writeln!(
        o,
        "  {:<20}{} at the stop, {} at most",
        "backlog",
        fmt_count(s.backlog_at_stop),
        fmt_count(s.max_backlog)
    );
    let drain = if s.drained {
        format!("{:.2} s after the load stopped", s.drain_s)
    } else {
        format!(
            "NOT DRAINED: {} sagas still in flight after {:.0} s",
            fmt_count(s.pending),
            s.drain_s
        )
    };
    let _ = writeln!(o, "  {:<20}{drain}", "drain");
    let _ = writeln!(o);
    let audit = match (&r.audit.ran, &r.audit.error) {
        (false, _) => "skipped".to_string(),
        (true, Some(e)) => format!("FAILED to run: {e}"),
        (true, None) if r.audit.clean => "clean".to_string(),
        (true, None) => format!("{} VIOLATIONS", fmt_count(r.audit.violations as u64)),
    };
    let _ = writeln!(o, "{:<22}{audit}", "Invariant audit");
    for v in &r.audit.examples {
        let _ = writeln!(o, "  - {v}");
    }
    let _ = writeln!(
        o,
        "{:<22}{}",
        "Result",
        if r.passed() { "PASS" } else { "FAIL" }
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::saga::{AuditSummary, SagaSummary};
    use std::collections::BTreeMap;

    fn report() -> BenchReport {
        BenchReport {
            mode: "saga",
            load: "closed loop, 50 workers".into(),
            concurrency: Some(50),
            rate: None,
            duration_s: 30.0,
            load_s: 30.01,
            products: 10,
            sent: 60_010,
            ok: 60_000,
            errors: 10,
            errors_by_kind: BTreeMap::from([("http 503".to_string(), 10)]),
            accepted_per_s: 1999.3,
            latency: Percentiles {
                count: 60_010,
                p50_ms: 20.1,
                p95_ms: 40.2,
                p99_ms: 55.5,
                p999_ms: 90.0,
                max_ms: 130.0,
            },
            sagas: SagaSummary {
                created: 60_000,
                terminal: 60_000,
                pending: 0,
                by_status: BTreeMap::from([("COMPLETED".to_string(), 60_000)]),
                completed_per_s: 1990.0,
                duration: Percentiles {
                    count: 60_000,
                    p50_ms: 40.0,
                    p99_ms: 120.0,
                    max_ms: 300.0,
                    ..Percentiles::default()
                },
                backlog_at_stop: 120,
                max_backlog: 340,
                drained: true,
                drain_s: 0.25,
                last_terminal_s: Some(30.15),
            },
            audit: AuditSummary {
                ran: true,
                clean: true,
                ..AuditSummary::default()
            },
        }
    }

    #[test]
    fn table_shows_every_figure() {
        let t = render(&report());
        for want in [
            "dop bench: closed loop, 50 workers, 30 s, 10 products",
            "accepted (201)      60,000  (1,999/s over 30.0 s)",
            "errors              10  (http 503 10)",
            "p50 20.1 ms  p95 40.2 ms  p99 55.5 ms  p99.9 90.0 ms  max 130.0 ms",
            "terminal            60,000  (COMPLETED 60,000)",
            "completed           1,990/s  (30.1 s from the first request",
            "duration            p50 40.0 ms  p99 120.0 ms  max 300.0 ms",
            "backlog             120 at the stop, 340 at most",
            "drain               0.25 s after the load stopped",
            "Invariant audit       clean",
            "Result                PASS",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
    }

    #[test]
    fn failures_are_spelled_out() {
        let mut r = report();
        r.sagas.drained = false;
        r.sagas.pending = 7;
        r.sagas.drain_s = 60.0;
        r.audit.clean = false;
        r.audit.violations = 2;
        r.audit.examples = vec!["order x: saga COMPLETED but order PENDING".into()];
        let t = render(&r);
        assert!(
            t.contains("NOT DRAINED: 7 sagas still in flight after 60 s"),
            "{t}"
        );
        assert!(t.contains("2 VIOLATIONS"), "{t}");
        assert!(t.contains("  - order x: saga COMPLETED"), "{t}");
        assert!(t.contains("Result                FAIL"), "{t}");
        assert!(!r.passed());
        r.audit.error = Some("cannot reach inventory_db".into());
        assert!(render(&r).contains("FAILED to run: cannot reach inventory_db"));
    }

    #[test]
    fn json_is_one_object_with_the_figures() {
        let v = serde_json::to_value(report()).unwrap();
        assert_eq!(v["ok"], 60_000);
        assert_eq!(v["latency"]["p99_ms"], 55.5);
        assert_eq!(v["sagas"]["completed_per_s"], 1990.0);
        assert_eq!(v["sagas"]["drained"], true);
        assert_eq!(v["audit"]["clean"], true);
        assert_eq!(v["errors_by_kind"]["http 503"], 10);
    }

    #[test]
    fn empty_distributions_say_so() {
        assert_eq!(
            percentiles_line(&Percentiles::default(), true),
            "no samples"
        );
        assert_eq!(counts_line(&BTreeMap::new()), "none");
    }
}
