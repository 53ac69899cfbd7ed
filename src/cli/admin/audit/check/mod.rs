//! The invariants of docs/contract.md section 9 over a `Snapshot`: pure, no I/O, so
//! each breach has a unit test.
//!
//! Sagas in flight are judged only once they are older than the grace:
//! until then their messages may be on the way, and what the three
//! databases say of them need not agree yet. Terminal sagas are judged
//! exactly (see `load` for why the read order makes that safe).

mod payments;
mod stock;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    time::Duration,
};

use super::{
    load::{OrderRec, PaymentRec, SagaRec, Snapshot},
    report::{Report, Violation},
};
use crate::{
    cli::admin::table::human_age,
    roles::inventory::commands::{RELEASE, RESERVE},
    saga::{OrderStatus, SagaStatus, SagaStep},
};

use OrderStatus as O;
use SagaStatus as S;
use SagaStep as P;

/// The (saga status, step, order status) combinations invariant 1 accepts.
/// They are the states the transition table of `saga::transition` (plus the
/// operator's retry of a failed compensation) can reach, which a unit test
/// checks, plus COMPENSATING with a PENDING order, which docs/contract.md section 9
/// allows ("in flight and PENDING") though this implementation marks the
/// order FAILED as soon as the payment fails. A FAILED saga is at DONE; the
/// step it failed at (`failed_step`) tells the rest of the checks what it
/// holds.
pub const ACCEPTED: [(SagaStatus, SagaStep, OrderStatus); 8] = [
    (S::InProgress, P::ReservingInventory, O::Pending),
    (S::InProgress, P::ProcessingPayment, O::InventoryReserved),
    (S::Compensating, P::CancellingPayment, O::InventoryReserved),
    (S::Compensating, P::ReleasingInventory, O::Failed),
    (S::Compensating, P::ReleasingInventory, O::Pending),
    (S::Completed, P::Done, O::Confirmed),
    (S::Compensated, P::Done, O::Compensated),
    (S::Failed, P::Done, O::Failed),
];

pub const PAYMENT_SUCCESS: &str = "SUCCESS";
pub const PAYMENT_FAILED: &str = "FAILED";
pub const PAYMENT_PENDING: &str = "PENDING";
/// The payment role's tombstone: the order is never to be charged.
pub const PAYMENT_CANCELLED: &str = "CANCELLED";

fn order_status(s: &str) -> Option<OrderStatus> {
    [
        O::Pending,
        O::InventoryReserved,
        O::Confirmed,
        O::Failed,
        O::Compensated,
    ]
    .into_iter()
    .find(|o| o.as_str() == s)
}

/// Where a saga stands for the audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Terminal: everything it caused is committed.
    Settled,
    /// In flight and younger than the grace: not judged yet.
    InGrace,
    /// In flight for longer than the grace (invariant 4).
    Stuck,
}

/// What inventory_logs say about one order.
#[derive(Default)]
struct OrderLogs {
    reserves: Vec<i32>,
    releases: Vec<i32>,
    products: BTreeSet<i64>,
}

impl OrderLogs {
    /// Units this order holds in `reserved_qty` according to its logs.
    fn net(&self) -> i64 {
        self.reserves.iter().map(|q| *q as i64).sum::<i64>()
            - self.releases.iter().map(|q| *q as i64).sum::<i64>()
    }
}

struct Checker<'a> {
    s: &'a Snapshot,
    grace: chrono::Duration,
    report: Report,
    logs: HashMap<i64, OrderLogs>,
    payments: HashMap<i64, Vec<&'a PaymentRec>>,
    /// Units per product that orders hold, by their saga (or their logs
    /// where the saga does not tell yet).
    standing: BTreeMap<i64, i64>,
}

/// Checks every invariant; sagas in flight for less than `grace` are left
/// alone.
pub fn check(s: &Snapshot, grace: Duration) -> Report {
    let mut c = Checker {
        s,
        grace: chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX),
        report: Report {
            grace_seconds: grace.as_secs_f64(),
            ..Report::default()
        },
        logs: HashMap::new(),
        payments: HashMap::new(),
        standing: BTreeMap::new(),
    };
    c.index();
    c.orders();
    c.orphans();
    c.products();
    c.report
}

impl<'a> Checker<'a> {
    fn violation<I>(&mut self, invariant: u8, kind: &'static str, ids: I, message: String)
    where
        I: IntoIterator,
        I::Item: ToString,
    {
        self.report.violations.push(Violation {
            invariant,
            kind,
            ids: ids.into_iter().map(|s| s.to_string()).collect(),
            message,
        });
    }

    fn index(&mut self) {
        let s = self.s;
        for l in &s.logs {
            let e = self.logs.entry(l.order_id).or_default();
            e.products.insert(l.product_id);
            if l.success && l.action == RESERVE {
                e.reserves.push(l.quantity);
            } else if l.success && l.action == RELEASE {
                e.releases.push(l.quantity);
            }
        }
        for p in &s.payments {
            self.payments.entry(p.order_id).or_default().push(p);
        }
        self.report.orders = s.orders.len() as u64;
        for o in &s.orders {
            *self
                .report
                .orders_by_status
                .entry(o.status.clone())
                .or_default() += 1;
        }
        self.report.sagas = s.sagas.len() as u64;
        for g in &s.sagas {
            *self
                .report
                .sagas_by_status
                .entry(g.status.clone())
                .or_default() += 1;
            if SagaStatus::parse(&g.status).is_some_and(|st| !st.is_terminal()) {
                self.report.in_flight += 1;
            }
        }
        self.report.products = s.stock.len() as u64;
    }

    fn orders(&mut self) {
        let s = self.s;
        let mut sagas: HashMap<i64, Vec<&SagaRec>> = HashMap::new();
        for g in &s.sagas {
            sagas.entry(g.order_id).or_default().push(g);
        }
        let known: HashSet<i64> = s.orders.iter().map(|o| o.id).collect();
        for g in &s.sagas {
            if !known.contains(&g.order_id) {
                self.violation(
                    1,
                    "saga_without_order",
                    &[g.saga_id.clone(), g.order_id.to_string()],
                    format!(
                        "saga {} belongs to order {}, which does not exist",
                        g.saga_id, g.order_id
                    ),
                );
            }
        }
        for o in &s.orders {
            let of_order = sagas.get(&o.id).map(Vec::as_slice).unwrap_or(&[]);
            let expected = self.order(o, of_order);
            let net = self.logs.get(&o.id).map_or(0, OrderLogs::net);
            *self.standing.entry(o.product_id).or_default() += expected.unwrap_or(net);
        }
    }

    /// Checks one order; returns the units it must hold reserved, when its
    /// saga says so for sure.
    fn order(&mut self, o: &'a OrderRec, sagas: &[&'a SagaRec]) -> Option<i64> {
        let saga = match sagas {
            [one] => *one,
            [] => {
                self.violation(
                    1,
                    "order_without_saga",
                    &[&o.id],
                    format!("order {} has no saga", o.id),
                );
                return None;
            }
            many => {
                self.report.duplicates.extra_sagas += many.len() as u64 - 1;
                let ids: Vec<&str> = many.iter().map(|g| g.saga_id.as_str()).collect();
                self.violation(
                    1,
                    "several_sagas",
                    std::iter::once(o.id.to_string()).chain(ids.iter().map(|i| i.to_string())),
                    format!(
                        "order {} has {} sagas: {}",
                        o.id,
                        many.len(),
                        ids.join(", ")
                    ),
                );
                return None;
            }
        };
        if saga.saga_id != o.saga_id {
            self.violation(
                1,
                "saga_id_mismatch",
                &[o.id.to_string(), o.saga_id.clone(), saga.saga_id.clone()],
                format!(
                    "order {} names saga {} but its saga is {}",
                    o.id, o.saga_id, saga.saga_id
                ),
            );
        }
        let (Some(status), Some(step), Some(ostatus)) = (
            SagaStatus::parse(&saga.status),
            SagaStep::parse(&saga.current_step),
            order_status(&o.status),
        ) else {
            self.violation(
                1,
                "unknown_status",
                &[o.id.to_string(), saga.saga_id.clone()],
                format!(
                    "order {} is {:?} with saga {} at {:?}/{:?}: not a known status",
                    o.id, o.status, saga.saga_id, saga.status, saga.current_step
                ),
            );
            return None;
        };
        if !ACCEPTED.contains(&(status, step, ostatus)) {
            self.violation(
                1,
                "status_mismatch",
                &[o.id.to_string(), saga.saga_id.clone()],
                format!(
                    "order {} is {} but its saga {} is {}/{}",
                    o.id, o.status, saga.saga_id, status, step
                ),
            );
            return None;
        }
        // Where a FAILED saga failed: at its reserve (it holds nothing) or
        // at its compensation (it may hold its units). Unknown: treated as a
        // failed compensation, the case that is looked at.
        let step = match (
            status,
            saga.failed_step.as_deref().and_then(SagaStep::parse),
        ) {
            (S::Failed, Some(at)) => at,
            (S::Failed, None) => P::ReleasingInventory,
            _ => step,
        };
        let phase = self.phase(saga, status);
        self.logs_of(o);
        self.payments_of(o, saga, status, step, phase);
        let q = o.quantity as i64;
        let expected = match (phase, status, step) {
            (Phase::Settled, S::Completed, _) => Some(q),
            (Phase::Settled, S::Compensated, _) => Some(0),
            (Phase::Settled, S::Failed, P::ReservingInventory) => Some(0),
            (Phase::Settled, S::Failed, _) => {
                self.report.warnings.push(format!(
                    "saga {} (order {}) failed its compensation: {} unit(s) of product {} stay reserved until an operator runs `dop admin sagas retry {}`",
                    saga.saga_id, o.id, o.quantity, o.product_id, saga.saga_id
                ));
                let released = self
                    .logs
                    .get(&o.id)
                    .is_some_and(|l| l.releases.iter().any(|r| *r > 0));
                Some(if released { 0 } else { q })
            }
            // Past the reserve and not moved for the grace: its reserve stands.
            (Phase::Stuck, S::InProgress, P::ProcessingPayment)
                if self.s.now - saga.updated_at >= self.grace =>
            {
                Some(q)
            }
            _ => None,
        };
        let net = self.logs.get(&o.id).map_or(0, OrderLogs::net);
        if let Some(e) = expected.filter(|e| *e != net) {
            let what = if e == 0 {
                format!("should hold no stock, yet inventory_logs show {net} unit(s) of product {} still reserved for it", o.product_id)
            } else {
                format!(
                    "should hold {e} unit(s) of product {} reserved, but inventory_logs show {net}",
                    o.product_id
                )
            };
            self.violation(
                2,
                "order_reservation",
                &[o.id.to_string(), saga.saga_id.clone()],
                format!(
                    "order {} (saga {}, {status}/{step}) {what}",
                    o.id, saga.saga_id
                ),
            );
        }
        expected
    }

    fn phase(&mut self, saga: &SagaRec, status: SagaStatus) -> Phase {
        if status.is_terminal() {
            return Phase::Settled;
        }
        let age = self.s.now - saga.created_at;
        if age < self.grace {
            self.report.in_grace += 1;
            return Phase::InGrace;
        }
        self.violation(
            4,
            "stuck",
            &[saga.saga_id.clone(), saga.order_id.to_string()],
            format!(
                "saga {} (order {}) is still {}/{} {} after it started (last moved {} ago)",
                saga.saga_id,
                saga.order_id,
                saga.status,
                saga.current_step,
                human_age(age.num_seconds()),
                human_age((self.s.now - saga.updated_at).num_seconds())
            ),
        );
        Phase::Stuck
    }
}

#[cfg(test)]
mod tests;
