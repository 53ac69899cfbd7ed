//! Unit tests of the invariant checks over hand-made snapshots.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use rust_decimal::Decimal;

use super::*;
use crate::{
    cli::admin::audit::load::{LogRec, StockRec},
    saga::{transition, Event},
};

const GRACE: Duration = Duration::from_secs(30);

fn t(secs_ago: i64) -> NaiveDateTime {
    now() - chrono::Duration::seconds(secs_ago)
}

fn now() -> NaiveDateTime {
    chrono::DateTime::from_timestamp(1_800_000_000, 0)
        .unwrap()
        .naive_utc()
}

/// A snapshot builder: orders of one product, each with its saga and the
/// rows the other roles would have written.
struct B(Snapshot);

impl B {
    fn new() -> Self {
        B(Snapshot {
            now: now(),
            ..Snapshot::default()
        })
    }
    fn stock(mut self, product_id: i64, available: i32, reserved: i32) -> Self {
        self.0.stock.push(StockRec {
            product_id,
            available_qty: available,
            reserved_qty: reserved,
        });
        self
    }
    fn order(mut self, n: u32, q: i32, order: O, saga: S, step: P, age: i64) -> Self {
        let id = i64::from(n);
        self.0.orders.push(OrderRec {
            id,
            saga_id: format!("s{n}"),
            product_id: 1,
            quantity: q,
            total_amount: Decimal::new(1999, 2),
            status: order.as_str().into(),
        });
        self.0.sagas.push(SagaRec {
            saga_id: format!("s{n}"),
            order_id: id,
            status: saga.as_str().into(),
            // A FAILED saga is at DONE with the step it failed at beside.
            current_step: if saga == S::Failed { P::Done } else { step }
                .as_str()
                .into(),
            failed_step: (saga == S::Failed).then(|| step.as_str().into()),
            created_at: t(age),
            updated_at: t(age),
        });
        self
    }
    fn log(mut self, n: u32, action: &str, q: i32, success: bool) -> Self {
        self.0.logs.push(LogRec {
            order_id: i64::from(n),
            product_id: 1,
            action: action.into(),
            quantity: q,
            success,
            created_at: t(100),
        });
        self
    }
    fn pay(mut self, n: u32, status: &str) -> Self {
        self.0.payments.push(PaymentRec {
            order_id: i64::from(n),
            amount: Decimal::new(1999, 2),
            status: status.into(),
            created_at: t(100),
        });
        self
    }
    /// One order of each outcome, consistent everywhere: 2 units of
    /// product 1 stay reserved (order 1).
    fn every_outcome() -> Self {
        B::new()
            .stock(1, 5, 2)
            .order(1, 2, O::Confirmed, S::Completed, P::Done, 100)
            .log(1, RESERVE, 2, true)
            .pay(1, PAYMENT_SUCCESS)
            .order(2, 3, O::Compensated, S::Compensated, P::Done, 100)
            .log(2, RESERVE, 3, true)
            .pay(2, PAYMENT_FAILED)
            .log(2, RELEASE, 3, true)
            .order(3, 99, O::Failed, S::Failed, P::ReservingInventory, 100)
            .log(3, RESERVE, 99, false)
    }
    fn check(&self, grace: Duration) -> Report {
        check(&self.0, grace)
    }
}

fn kinds(r: &Report) -> Vec<(u8, &'static str)> {
    r.violations.iter().map(|v| (v.invariant, v.kind)).collect()
}

/// Every state the transition table (and the operator's retry) can reach
/// is accepted, and every accepted state but the one the contract adds is reached.
#[test]
fn accepted_states_are_the_reachable_ones() {
    let events = [true, false].into_iter().flat_map(|success| {
        [
            Event::InventoryReserved { success },
            Event::InventoryReleased { success },
            Event::PaymentProcessed { success },
        ]
    });
    let events: Vec<Event> = events.collect();
    let start = (S::InProgress, P::ReservingInventory, O::Pending);
    let mut seen = HashSet::from([start]);
    let mut todo = vec![start];
    while let Some((st, sp, os)) = todo.pop() {
        let mut next: Vec<_> = events
            .iter()
            .filter_map(|e| transition(st, sp, *e))
            .map(|t| (t.status, t.step, t.order))
            .collect();
        if (st, sp) == (S::Failed, P::Done) {
            next.push((S::Compensating, P::ReleasingInventory, os));
        }
        for n in next {
            if seen.insert(n) {
                todo.push(n);
            }
        }
    }
    for s in &seen {
        assert!(ACCEPTED.contains(s), "{s:?} is reachable but not accepted");
    }
    let extra: Vec<_> = ACCEPTED.iter().filter(|a| !seen.contains(a)).collect();
    assert_eq!(
        extra,
        [&(S::Compensating, P::ReleasingInventory, O::Pending)]
    );
}

#[test]
fn every_outcome_consistent_is_clean() {
    let r = B::every_outcome().check(GRACE);
    assert!(r.is_clean(), "{:#?}", r.violations);
    assert_eq!(r.orders, 3);
    assert_eq!(r.products, 1);
    assert_eq!(r.in_flight, 0);
    assert_eq!(r.sagas_by_status["COMPLETED"], 1);
    assert_eq!(r.orders_by_status["FAILED"], 1);
}

#[test]
fn reserved_qty_off_by_one_is_named_by_product() {
    let mut b = B::every_outcome();
    b.0.stock[0].reserved_qty += 1;
    let r = b.check(GRACE);
    assert_eq!(
        kinds(&r),
        [(2, "reserved_vs_logs"), (2, "reserved_vs_orders")]
    );
    assert_eq!(r.violations[0].ids, ["1"]);
    assert!(
        r.violations[0].message.contains("reserved_qty is 3"),
        "{}",
        r.violations[0].message
    );
}

#[test]
fn a_missing_payment_of_a_confirmed_order_is_named() {
    let mut b = B::every_outcome();
    b.0.payments.retain(|p| p.order_id != 1);
    let r = b.check(GRACE);
    assert_eq!(kinds(&r), [(3, "confirmed_without_payment")]);
    assert_eq!(r.violations[0].ids, ["1", "s1"]);
}

#[test]
fn statuses_that_disagree_are_invariant_1() {
    let mut b = B::every_outcome();
    b.0.orders[0].status = "PENDING".into();
    b.0.sagas.push(SagaRec {
        saga_id: "s9".into(),
        order_id: 9,
        status: "COMPLETED".into(),
        current_step: "DONE".into(),
        failed_step: None,
        created_at: t(5),
        updated_at: t(5),
    });
    let r = b.check(GRACE);
    assert_eq!(
        kinds(&r),
        [(1, "saga_without_order"), (1, "status_mismatch")]
    );
    // A payment failure leaves the order FAILED while the saga compensates.
    let r = B::new()
        .stock(1, 0, 2)
        .order(1, 2, O::Failed, S::Compensating, P::ReleasingInventory, 1)
        .log(1, RESERVE, 2, true)
        .pay(1, PAYMENT_FAILED)
        .check(GRACE);
    assert!(r.is_clean(), "{:#?}", r.violations);
}

#[test]
fn sagas_in_flight_wait_for_the_grace() {
    let young = B::every_outcome()
        .order(4, 1, O::Pending, S::InProgress, P::ReservingInventory, 5)
        .log(4, RESERVE, 1, true);
    let mut young = young;
    young.0.stock[0].reserved_qty += 1;
    let r = young.check(GRACE);
    assert!(r.is_clean(), "{:#?}", r.violations);
    assert_eq!((r.in_flight, r.in_grace), (1, 1));
    assert!(
        r.summary().contains("in flight 1, 1 within the grace"),
        "{}",
        r.summary()
    );
    // The same saga judged with no grace is stuck.
    let r = young.check(Duration::ZERO);
    assert_eq!(kinds(&r), [(4, "stuck")]);
    assert_eq!(r.violations[0].ids, ["s4", "4"]);
}

#[test]
fn a_stuck_payment_step_still_holds_its_reserve() {
    let r = B::new()
        .stock(1, 0, 2)
        .order(
            1,
            2,
            O::InventoryReserved,
            S::InProgress,
            P::ProcessingPayment,
            120,
        )
        .check(GRACE);
    // Its reserve is missing from the logs, and the saga is stuck.
    assert_eq!(
        kinds(&r),
        [
            (4, "stuck"),
            (2, "order_reservation"),
            (2, "reserved_vs_logs")
        ]
    );
}

#[test]
fn duplicates_are_counted() {
    let mut b = B::every_outcome()
        .pay(1, PAYMENT_SUCCESS)
        .log(1, RESERVE, 2, true);
    b.0.stock[0].reserved_qty += 2;
    let r = b.check(GRACE);
    assert_eq!(r.duplicates.double_charge, 1);
    assert_eq!(r.duplicates.double_reserve, 1);
    let k = kinds(&r);
    assert!(k.contains(&(3, "double_charge")), "{k:?}");
    assert!(k.contains(&(2, "double_reserve")), "{k:?}");
    assert!(r.summary().contains("1 double reserve"), "{}", r.summary());
}

#[test]
fn compensations_need_a_failed_payment_and_a_release() {
    let mut b = B::every_outcome();
    b.0.logs
        .retain(|l| !(l.order_id == 2 && l.action == RELEASE));
    b.0.payments.retain(|p| p.order_id != 2);
    b.0.stock[0].reserved_qty += 3;
    let r = b.check(GRACE);
    assert_eq!(
        kinds(&r),
        [
            (3, "failed_without_payment"),
            (3, "compensated_without_release"),
            (2, "order_reservation"),
            (2, "reserved_vs_orders")
        ]
    );
}

#[test]
fn a_charge_of_an_order_whose_reserve_failed_is_caught() {
    let r = B::every_outcome().pay(3, PAYMENT_SUCCESS).check(GRACE);
    assert_eq!(kinds(&r), [(3, "charged_after_failed_reserve")]);
}

#[test]
fn rows_of_unknown_orders_are_orphans_unless_placed_meanwhile() {
    let mut b = B::every_outcome();
    b.0.logs.push(LogRec {
        order_id: 900,
        product_id: 1,
        action: RESERVE.into(),
        quantity: 1,
        success: true,
        created_at: t(100),
    });
    b.0.stock[0].reserved_qty += 1;
    b.0.late_orders.insert(900);
    assert!(b.check(GRACE).is_clean());
    b.0.late_orders.clear();
    b.0.payments.push(PaymentRec {
        order_id: 901,
        amount: Decimal::ONE,
        status: PAYMENT_SUCCESS.into(),
        created_at: t(100),
    });
    let r = b.check(GRACE);
    assert_eq!(
        kinds(&r),
        [
            (2, "log_without_order"),
            (3, "payment_without_order"),
            (2, "reserved_vs_orders")
        ]
    );
}

#[test]
fn a_failed_compensation_is_a_warning() {
    let r = B::new()
        .stock(1, 0, 2)
        .order(1, 2, O::Failed, S::Failed, P::ReleasingInventory, 100)
        .log(1, RESERVE, 2, true)
        .log(1, RELEASE, 2, false)
        .pay(1, PAYMENT_FAILED)
        .check(GRACE);
    assert!(r.is_clean(), "{:#?}", r.violations);
    assert_eq!(r.warnings.len(), 1);
    assert!(
        r.warnings[0].contains("dop admin sagas retry s1"),
        "{}",
        r.warnings[0]
    );
}

/// With `retention.sagas`, an order whose saga aged out is gone from the
/// order database while its log and payment stay: such rows, older than
/// the window, are retired (their units still count), not orphans; a row
/// inside the window without its order is still an orphan.
#[test]
fn rows_of_orders_retired_by_retention_are_not_orphans() {
    let mut b = B::every_outcome();
    // Order 900 was CONFIRMED two hours ago and retired: its 3 units stay
    // reserved, its log and payment stay.
    b.0.logs.push(LogRec {
        order_id: 900,
        product_id: 1,
        action: RESERVE.into(),
        quantity: 3,
        success: true,
        created_at: t(7200),
    });
    b.0.payments.push(PaymentRec {
        order_id: 900,
        amount: Decimal::ONE,
        status: PAYMENT_SUCCESS.into(),
        created_at: t(7200),
    });
    b.0.stock[0].reserved_qty += 3;
    let r = b.check(GRACE);
    assert_eq!(
        kinds(&r),
        [
            (2, "log_without_order"),
            (3, "payment_without_order"),
            (2, "reserved_vs_orders")
        ],
        "without saga retention they are orphans"
    );
    b.0.retired_before = Some(t(3600));
    let r = b.check(GRACE);
    assert!(r.is_clean(), "{:#?}", r.violations);
    assert_eq!(r.retired, 1);
    // A payment inside the window whose order is missing is still caught.
    b.0.payments.push(PaymentRec {
        order_id: 901,
        amount: Decimal::ONE,
        status: PAYMENT_SUCCESS.into(),
        created_at: t(600),
    });
    assert_eq!(kinds(&b.check(GRACE)), [(3, "payment_without_order")]);
}
