//! What the audit found: counts, duplicates, violations by invariant, and
//! how they are shown (text for a person, JSON for a script).

use std::{
    collections::BTreeMap,
    fmt::{self, Write},
};

use serde::Serialize;

/// One broken invariant, with the ids involved.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's number in docs/contract.md section 9 (1 to 4).
    pub invariant: u8,
    /// A stable name for the kind of breach, for scripts.
    pub kind: &'static str,
    /// Order, saga, or product ids the breach is about.
    pub ids: Vec<String>,
    pub message: String,
}

impl fmt::Display for Violation {
    /// `invariant 3 (double_charge): order ... has 2 payments (...)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant {} ({}): {}",
            self.invariant, self.kind, self.message
        )
    }
}

/// Things that happened twice although they must happen at most once.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Duplicates {
    /// Orders with more than one successful RESERVE in inventory_logs.
    pub double_reserve: u64,
    /// Orders with more than one successful RELEASE in inventory_logs.
    pub double_release: u64,
    /// Orders with more than one payment row.
    pub double_charge: u64,
    /// Orders with more than one saga.
    pub extra_sagas: u64,
}

impl Duplicates {
    pub fn total(&self) -> u64 {
        self.double_reserve + self.double_release + self.double_charge + self.extra_sagas
    }
}

/// The audit's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub orders: u64,
    /// Orders by order status (PENDING, INVENTORY_RESERVED, CONFIRMED, FAILED,
    /// COMPENSATED).
    pub orders_by_status: BTreeMap<String, u64>,
    pub sagas: u64,
    /// Sagas by saga status (IN_PROGRESS, COMPENSATING, COMPLETED, ...).
    pub sagas_by_status: BTreeMap<String, u64>,
    /// Sagas not terminal (IN_PROGRESS or COMPENSATING).
    pub in_flight: u64,
    /// Of those, the ones younger than the grace: not judged yet.
    pub in_grace: u64,
    /// Orders whose saga `retention.sagas` deleted: their inventory logs
    /// and payments remain and still count, but have no order to match.
    pub retired: u64,
    /// Rows in `inventories`.
    pub products: u64,
    pub grace_seconds: f64,
    pub duplicates: Duplicates,
    pub violations: Vec<Violation>,
    /// Worth an operator's look, but not a broken invariant (a failed
    /// compensation waiting for `dop admin sagas retry`).
    pub warnings: Vec<String>,
}

/// Violations shown in text before the rest is summarized.
const SHOWN: usize = 200;

impl Report {
    /// True when no invariant is broken.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// The one-line summary, e.g. `audit: 1234 orders (COMPLETED 1000,
    /// COMPENSATED 100, FAILED 134, in flight 0), 10 products, 0 violations`.
    pub fn summary(&self) -> String {
        let n = |s: &str| self.sagas_by_status.get(s).copied().unwrap_or(0);
        let mut line = format!(
            "audit: {} orders (COMPLETED {}, COMPENSATED {}, FAILED {}, in flight {}",
            self.orders,
            n("COMPLETED"),
            n("COMPENSATED"),
            n("FAILED"),
            self.in_flight
        );
        if self.in_grace > 0 {
            let _ = write!(line, ", {} within the grace", self.in_grace);
        }
        if self.retired > 0 {
            let _ = write!(line, ", {} retired by retention", self.retired);
        }
        let _ = write!(
            line,
            "), {} products, {} violation{}",
            self.products,
            self.violations.len(),
            if self.violations.len() == 1 { "" } else { "s" }
        );
        if self.duplicates.total() > 0 {
            let d = &self.duplicates;
            let _ = write!(
                line,
                " (duplicates: {} double reserve, {} double release, {} double charge, {} extra sagas)",
                d.double_reserve, d.double_release, d.double_charge, d.extra_sagas
            );
        }
        line
    }

    /// Every violation and warning on its own line, then the summary.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for v in self.violations.iter().take(SHOWN) {
            let _ = writeln!(out, "violation: {v}");
        }
        if self.violations.len() > SHOWN {
            let _ = writeln!(
                out,
                "... and {} more violations (use --json to see them all)",
                self.violations.len() - SHOWN
            );
        }
        for w in self.warnings.iter().take(SHOWN) {
            let _ = writeln!(out, "warning: {w}");
        }
        if self.warnings.len() > SHOWN {
            let _ = writeln!(out, "... and {} more warnings", self.warnings.len() - SHOWN);
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_like_the_design() {
        let mut r = Report {
            orders: 1234,
            products: 10,
            ..Report::default()
        };
        for (s, n) in [("COMPLETED", 1000), ("COMPENSATED", 100), ("FAILED", 134)] {
            r.sagas_by_status.insert(s.into(), n);
        }
        assert_eq!(
            r.summary(),
            "audit: 1234 orders (COMPLETED 1000, COMPENSATED 100, FAILED 134, in flight 0), 10 products, 0 violations"
        );
        r.violations.push(Violation {
            invariant: 3,
            kind: "double_charge",
            ids: vec!["o".into()],
            message: "order o was charged twice".into(),
        });
        r.duplicates.double_charge = 1;
        let text = r.render_text();
        assert!(
            text.starts_with("violation: invariant 3 (double_charge): order o"),
            "{text}"
        );
        assert!(
            text.contains(
                "1 violation (duplicates: 0 double reserve, 0 double release, 1 double charge"
            ),
            "{text}"
        );
        assert!(!r.is_clean());
    }
}
