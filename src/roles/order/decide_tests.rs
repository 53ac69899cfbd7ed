//! Unit tests of the saga decisions: duplicates in the batch and against
//! the table, events out of order, late and twice, unknown sagas, and the
//! re-sends.

use chrono::NaiveDate;

use super::*;
use crate::saga::{Event, SagaStatus as S, SagaStep as P};

fn at(sec: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 30)
        .unwrap()
        .and_hms_opt(8, 0, sec)
        .unwrap()
}

/// A saga and its order in a state the table reaches; a FAILED saga is at
/// DONE with `step` as the step it failed at.
fn saga(n: u8, status: S, step: P) -> (SagaRow, OrderRow) {
    let order_status = match (status, step) {
        (S::InProgress, P::ProcessingPayment) => "INVENTORY_RESERVED",
        (S::InProgress, _) => "PENDING",
        (S::Completed, _) => "CONFIRMED",
        (S::Compensated, _) => "COMPENSATED",
        (S::Failed | S::Compensating, _) => "FAILED",
    };
    let (current, failed_step) = match status {
        S::Failed => (P::Done, Some(step.as_str().to_string())),
        _ => (step, None),
    };
    (
        SagaRow {
            saga_id: format!("s{n}"),
            order_id: i64::from(n),
            status: status.as_str().into(),
            current_step: current.as_str().into(),
            failure_reason: None,
            last_event_id: None,
            retry_count: 0,
            failed_step,
            step_started_at: at(0),
            created_at: at(0),
            updated_at: at(0),
        },
        OrderRow {
            id: i64::from(n),
            saga_id: format!("s{n}"),
            user_id: 42,
            product_id: 1001,
            quantity: 2,
            total_amount: "199.98".parse().unwrap(),
            status: order_status.into(),
            idempotency_key: None,
            trace_id: "t".into(),
            created_at: at(0),
            updated_at: at(0),
        },
    )
}

fn ev(id: &str, saga: u8, event: Event) -> SagaEvent {
    SagaEvent {
        message_id: id.into(),
        trace_id: format!("trace-{id}"),
        saga_id: format!("s{saga}"),
        event,
        reason: (!matches!(
            event,
            Event::InventoryReserved { success: true }
                | Event::InventoryReleased { success: true }
                | Event::PaymentProcessed { success: true }
        ))
        .then(|| format!("because {id}")),
    }
}

const RESERVED: Event = Event::InventoryReserved { success: true };
const NOT_RESERVED: Event = Event::InventoryReserved { success: false };
const PAID: Event = Event::PaymentProcessed { success: true };
const NOT_PAID: Event = Event::PaymentProcessed { success: false };
const RELEASED: Event = Event::InventoryReleased { success: true };

fn moved(status: S, step: P) -> EventOutcome {
    EventOutcome::Moved { status, step }
}

#[test]
fn a_saga_runs_to_completion_within_one_batch() {
    let d = decide_events(
        &HashSet::new(),
        vec![saga(1, S::InProgress, P::ReservingInventory)],
        &[ev("a", 1, RESERVED), ev("b", 1, PAID)],
        at(3),
    );
    assert_eq!(
        d.outcomes,
        [
            moved(S::InProgress, P::ProcessingPayment),
            moved(S::Completed, P::Done)
        ]
    );
    assert_eq!(d.writes.processed, ["a", "b"]);
    // One row per saga and order, as they end.
    assert_eq!(d.writes.sagas.len(), 1);
    assert_eq!(d.writes.sagas[0].status, "COMPLETED");
    assert_eq!(d.writes.sagas[0].updated_at, at(3));
    assert_eq!(d.writes.orders.len(), 1);
    assert_eq!(d.writes.orders[0].status, "CONFIRMED");
    // The original's last_event_id: the id of the last event applied.
    assert_eq!(d.writes.sagas[0].last_event_id.as_deref(), Some("b"));
    assert_eq!(d.writes.sagas[0].retry_count, 0);
    // The timeline has both steps, in order, chained.
    let tl: Vec<_> = d
        .writes
        .timeline
        .iter()
        .map(|r| {
            (
                r.from_step.clone().unwrap(),
                r.to_step.clone(),
                r.event.clone(),
            )
        })
        .collect();
    assert_eq!(
        tl,
        [
            (
                "RESERVING_INVENTORY".into(),
                "PROCESSING_PAYMENT".to_string(),
                "inventory.reserved".to_string()
            ),
            (
                "PROCESSING_PAYMENT".into(),
                "DONE".into(),
                "payment.processed".into()
            ),
        ]
    );
    // The payment command carries the order's amount and the event's trace.
    assert_eq!(d.writes.outbox.len(), 1);
    let e = &d.writes.outbox[0];
    assert_eq!((e.item, e.trace_id.as_str()), (0, "trace-a"));
    let Message::ProcessPayment(p) = &e.message else {
        panic!("{:?}", e.message);
    };
    assert_eq!((p.order_id, p.amount.to_string()), (1, "199.98".into()));
    assert_eq!(
        d.ended,
        [Ended {
            item: 1,
            status: S::Completed,
            secs: 3.0
        }]
    );
}

#[test]
fn the_same_events_one_at_a_time_decide_the_same() {
    let events = [
        ev("a", 1, RESERVED),
        ev("b", 2, RESERVED),
        ev("c", 1, NOT_PAID),
        ev("a", 1, RESERVED),
        ev("d", 2, PAID),
        ev("e", 1, RELEASED),
    ];
    let start = vec![
        saga(1, S::InProgress, P::ReservingInventory),
        saga(2, S::InProgress, P::ReservingInventory),
    ];
    let all = decide_events(&HashSet::new(), start.clone(), &events, at(1));
    // One at a time: the state and seen ids carried from each to the next.
    let mut state = start;
    let mut seen = HashSet::new();
    let mut outcomes = Vec::new();
    let mut timeline = Vec::new();
    for e in &events {
        let one = decide_events(&seen, state.clone(), std::slice::from_ref(e), at(1));
        seen.extend(one.writes.processed.iter().cloned());
        for s in &one.writes.sagas {
            let (row, order) = state
                .iter_mut()
                .find(|(r, _)| r.saga_id == s.saga_id)
                .unwrap();
            *row = s.clone();
            if let Some(o) = one.writes.orders.iter().find(|o| o.id == order.id) {
                *order = o.clone();
            }
        }
        outcomes.extend(one.outcomes);
        timeline.extend(one.writes.timeline);
    }
    assert_eq!(all.outcomes, outcomes);
    assert_eq!(all.writes.timeline, timeline);
    assert_eq!(all.outcomes[3], EventOutcome::Duplicate);
    let end: Vec<_> = state
        .iter()
        .map(|(s, o)| (s.status.clone(), o.status.clone()))
        .collect();
    assert_eq!(
        end,
        [
            ("COMPENSATED".to_string(), "COMPENSATED".to_string()),
            ("COMPLETED".into(), "CONFIRMED".into())
        ]
    );
    let written: Vec<_> = all.writes.sagas.iter().map(|s| s.status.clone()).collect();
    assert_eq!(written, ["COMPENSATED", "COMPLETED"]);
}

#[test]
fn duplicates_against_the_table_and_in_the_batch() {
    let seen: HashSet<String> = ["old".to_string()].into();
    let d = decide_events(
        &seen,
        vec![saga(1, S::InProgress, P::ReservingInventory)],
        &[
            ev("old", 1, RESERVED),
            ev("new", 1, RESERVED),
            ev("new", 1, RESERVED),
        ],
        at(1),
    );
    assert_eq!(
        d.outcomes,
        [
            EventOutcome::Duplicate,
            moved(S::InProgress, P::ProcessingPayment),
            EventOutcome::Duplicate
        ]
    );
    assert_eq!(d.writes.processed, ["new"]);
    assert_eq!(d.writes.timeline.len(), 1);
    assert_eq!(d.writes.outbox.len(), 1);
}

#[test]
fn late_and_out_of_order_events_are_stale_but_recorded() {
    // Payment before the reservation: stale; then the reservation moves
    // it; a second reservation (another message) is stale too.
    let d = decide_events(
        &HashSet::new(),
        vec![saga(1, S::InProgress, P::ReservingInventory)],
        &[
            ev("p", 1, PAID),
            ev("r", 1, RESERVED),
            ev("r2", 1, NOT_RESERVED),
        ],
        at(1),
    );
    assert_eq!(
        d.outcomes,
        [
            EventOutcome::Stale,
            moved(S::InProgress, P::ProcessingPayment),
            EventOutcome::Stale
        ]
    );
    assert_eq!(d.writes.processed, ["p", "r", "r2"]);
    assert_eq!(d.writes.timeline.len(), 1);
    // A finished saga ignores everything, and writes no saga row.
    let d = decide_events(
        &HashSet::new(),
        vec![saga(1, S::Completed, P::Done)],
        &[ev("x", 1, RESERVED), ev("y", 1, NOT_PAID)],
        at(1),
    );
    assert_eq!(d.outcomes, [EventOutcome::Stale, EventOutcome::Stale]);
    assert!(d.writes.sagas.is_empty() && d.writes.orders.is_empty());
    assert!(d.ended.is_empty());
}

#[test]
fn an_unknown_saga_is_not_recorded() {
    let d = decide_events(
        &HashSet::new(),
        vec![saga(1, S::InProgress, P::ReservingInventory)],
        &[
            ev("u", 9, RESERVED),
            ev("u", 9, RESERVED),
            ev("k", 1, NOT_RESERVED),
        ],
        at(1),
    );
    assert_eq!(
        d.outcomes,
        [
            EventOutcome::UnknownSaga,
            EventOutcome::UnknownSaga,
            moved(S::Failed, P::Done)
        ]
    );
    assert_eq!(d.writes.processed, ["k"]);
    // FAILED is at DONE, as in the original; the failed step is kept.
    assert_eq!(d.writes.sagas[0].current_step, "DONE");
    assert_eq!(
        d.writes.sagas[0].failed_step.as_deref(),
        Some("RESERVING_INVENTORY")
    );
    assert_eq!(
        d.writes.sagas[0].failure_reason.as_deref(),
        Some("because k")
    );
    assert_eq!(d.writes.orders[0].status, "FAILED");
}

#[test]
fn a_long_reason_is_cut_to_its_column() {
    let mut e = ev("a", 1, NOT_RESERVED);
    e.reason = Some("é".repeat(300));
    let d = decide_events(
        &HashSet::new(),
        vec![saga(1, S::InProgress, P::ReservingInventory)],
        &[e],
        at(1),
    );
    assert_eq!(
        d.writes.timeline[0]
            .reason
            .as_ref()
            .unwrap()
            .chars()
            .count(),
        255
    );
    assert_eq!(
        d.writes.sagas[0]
            .failure_reason
            .as_ref()
            .unwrap()
            .chars()
            .count(),
        255
    );
}

#[test]
fn an_unparsable_saga_state_is_stale() {
    let (mut s, o) = saga(1, S::InProgress, P::ReservingInventory);
    s.status = "WEIRD".into();
    let d = decide_events(
        &HashSet::new(),
        vec![(s, o)],
        &[ev("a", 1, RESERVED)],
        at(1),
    );
    assert_eq!(d.outcomes, [EventOutcome::Stale]);
    assert_eq!(d.writes.processed, ["a"]);
}

#[test]
fn recovery_resends_only_a_stuck_saga_in_flight() {
    let (s, o) = saga(1, S::InProgress, P::ProcessingPayment);
    let r = decide_resend(
        s.clone(),
        o.clone(),
        Resend::Stuck { cutoff: at(5) },
        at(9),
        "m".into(),
        "t".into(),
    )
    .unwrap();
    assert_eq!(r.action, "pending command re-sent");
    assert_eq!(r.writes.outbox[0].message_id.as_deref(), Some("m"));
    assert!(matches!(
        r.writes.outbox[0].message,
        Message::ProcessPayment(_)
    ));
    let tl = &r.writes.timeline[0];
    assert_eq!(
        (tl.event.as_str(), tl.message_id.as_deref()),
        ("recovery.resend", Some("m"))
    );
    assert_eq!(tl.from_status.as_deref(), Some(tl.to_status.as_str()));
    assert_eq!(r.writes.sagas[0].updated_at, at(9));
    // A re-send counts as a retry (the original's retry_count) and is not
    // an event.
    assert_eq!(r.writes.sagas[0].retry_count, 1);
    assert_eq!(r.writes.sagas[0].last_event_id, None);
    assert!(r.writes.orders.is_empty() && r.writes.processed.is_empty());
    // Moved since the cutoff.
    assert_eq!(
        decide_resend(
            s,
            o,
            Resend::Stuck {
                cutoff: at(0) - chrono::Duration::seconds(1)
            },
            at(9),
            "m".into(),
            "t".into()
        ),
        Err(NotResent::NotStuck)
    );
    let (s, o) = saga(2, S::Completed, P::Done);
    assert!(matches!(
        decide_resend(
            s,
            o,
            Resend::Stuck { cutoff: at(5) },
            at(9),
            "m".into(),
            "t".into()
        ),
        Err(NotResent::NotInFlight { .. })
    ));
}

#[test]
fn an_operator_retries_a_failed_compensation_or_a_saga_in_flight() {
    let (mut s, mut o) = saga(1, S::Failed, P::ReleasingInventory);
    s.failure_reason = Some("SIMULATED_FAILURE".into());
    o.status = "FAILED".into();
    let r = decide_resend(s, o, Resend::Operator, at(9), "m".into(), "t".into()).unwrap();
    assert_eq!(r.action, "release re-sent");
    assert_eq!(r.writes.sagas[0].status, "COMPENSATING");
    assert_eq!(r.writes.sagas[0].current_step, "RELEASING_INVENTORY");
    assert_eq!(r.writes.sagas[0].failed_step, None);
    assert_eq!(
        r.writes.sagas[0].failure_reason.as_deref(),
        Some("SIMULATED_FAILURE")
    );
    assert_eq!(r.writes.timeline[0].event, "operator.retry");
    assert!(matches!(r.writes.outbox[0].message, Message::Release(_)));
    assert!(r.writes.orders.is_empty());

    let (s, o) = saga(2, S::InProgress, P::ReservingInventory);
    let r = decide_resend(s, o, Resend::Operator, at(9), "m".into(), "t".into()).unwrap();
    assert_eq!(
        (r.action, r.writes.timeline[0].event.as_str()),
        ("pending command re-sent", "operator.resend")
    );
    assert!(matches!(r.writes.outbox[0].message, Message::Reserve(_)));

    // A failed reserve holds nothing: nothing to retry.
    for (status, step) in [
        (S::Completed, P::Done),
        (S::Failed, P::ReservingInventory),
        (S::Compensated, P::Done),
    ] {
        let (s, o) = saga(3, status, step);
        assert_eq!(
            decide_resend(s, o, Resend::Operator, at(9), "m".into(), "t".into()),
            Err(NotResent::NotInFlight {
                status: status.as_str().into(),
                step: "DONE".into()
            })
        );
    }
}

#[test]
fn a_step_past_its_timeout_compensates_once() {
    let timeout = |step_cutoff, saga_cutoff| Interrupt::Timeout {
        step_cutoff,
        saga_cutoff,
    };
    // The payment step began at 0; the cutoff is 5: timed out.
    let (s, o) = saga(1, S::InProgress, P::ProcessingPayment);
    let r = decide_interrupt(
        s.clone(),
        o.clone(),
        timeout(Some(at(5)), None),
        at(9),
        "m".into(),
        "t".into(),
    )
    .unwrap();
    assert_eq!(
        (r.step, r.deadline, r.reason.as_str()),
        (
            P::ProcessingPayment,
            Some(Deadline::Step),
            "payment timed out"
        )
    );
    let row = &r.writes.sagas[0];
    assert_eq!(
        (row.status.as_str(), row.current_step.as_str()),
        ("COMPENSATING", "CANCELLING_PAYMENT")
    );
    assert_eq!(row.step_started_at, at(9));
    assert_eq!(row.failure_reason.as_deref(), Some("payment timed out"));
    assert_eq!(row.retry_count, 0);
    assert!(r.writes.orders.is_empty(), "the order waits for the answer");
    assert_eq!(r.writes.timeline[0].event, "saga.timed_out");
    assert_eq!(r.writes.timeline[0].message_id.as_deref(), Some("m"));
    assert!(matches!(
        r.writes.outbox[0].message,
        Message::CancelPayment(_)
    ));
    // Twice (a second replica, after the first committed): nothing.
    let mut moved = s.clone();
    moved.status = row.status.clone();
    moved.current_step = row.current_step.clone();
    moved.step_started_at = row.step_started_at;
    assert!(matches!(
        decide_interrupt(
            moved.clone(),
            o.clone(),
            timeout(Some(at(5)), None),
            at(10),
            "m2".into(),
            "t".into()
        ),
        Err(NotInterrupted::InTime)
    ));
    assert!(matches!(
        decide_interrupt(
            moved,
            o.clone(),
            timeout(Some(at(20)), None),
            at(30),
            "m2".into(),
            "t".into()
        ),
        Err(NotInterrupted::NotForward { .. })
    ));
    // A step that began after the cutoff is in time, unless the saga is
    // past its own deadline.
    let mut fresh = s;
    fresh.step_started_at = at(6);
    assert_eq!(
        decide_interrupt(
            fresh.clone(),
            o.clone(),
            timeout(Some(at(5)), None),
            at(9),
            "m".into(),
            "t".into()
        ),
        Err(NotInterrupted::InTime)
    );
    let r = decide_interrupt(
        fresh,
        o,
        timeout(Some(at(5)), Some(at(0))),
        at(9),
        "m".into(),
        "t".into(),
    )
    .unwrap();
    assert_eq!(r.deadline, Some(Deadline::Saga));
    assert_eq!(r.reason, "saga deadline passed during payment");

    // A reserve that timed out is released; the order fails at once.
    let (s, o) = saga(2, S::InProgress, P::ReservingInventory);
    let r = decide_interrupt(
        s,
        o,
        timeout(Some(at(5)), None),
        at(9),
        "m".into(),
        "t".into(),
    )
    .unwrap();
    assert_eq!(r.reason, "inventory reservation timed out");
    assert!(matches!(r.writes.outbox[0].message, Message::Release(_)));
    assert_eq!(r.writes.orders[0].status, "FAILED");
}

#[test]
fn a_cancel_interrupts_only_a_saga_going_forward() {
    let (s, o) = saga(1, S::InProgress, P::ReservingInventory);
    let r = decide_interrupt(s, o, Interrupt::Cancel, at(9), "m".into(), "t".into()).unwrap();
    assert_eq!(r.deadline, None);
    assert_eq!(r.writes.timeline[0].event, "order.cancelled");
    assert_eq!(
        r.writes.timeline[0].reason.as_deref(),
        Some("cancelled by the customer")
    );
    for (status, step) in [
        (S::Compensating, P::ReleasingInventory),
        (S::Compensating, P::CancellingPayment),
        (S::Completed, P::Done),
        (S::Compensated, P::Done),
        (S::Failed, P::ReservingInventory),
    ] {
        let (s, o) = saga(3, status, step);
        assert!(matches!(
            decide_interrupt(s, o, Interrupt::Cancel, at(9), "m".into(), "t".into()),
            Err(NotInterrupted::NotForward { .. })
        ));
    }
}

#[test]
fn a_payment_command_carries_its_step_expiry() {
    let limits = Limits {
        step_timeout: Some(chrono::Duration::seconds(10)),
        deadline: Some(chrono::Duration::seconds(100)),
    };
    // The reserve answers at 9: the payment step starts then, so its
    // command expires at 19.
    let (s, o) = saga(1, S::InProgress, P::ReservingInventory);
    let mut d = decide_events(
        &HashSet::new(),
        vec![(s, o)],
        &[ev("e1", 1, RESERVED)],
        at(9),
    );
    stamp_expiry(&mut d.writes, &limits);
    let Message::ProcessPayment(c) = &d.writes.outbox[0].message else {
        panic!("{:?}", d.writes.outbox);
    };
    assert_eq!(c.expires_at, Some(at(19).and_utc()));
    // The saga's own deadline comes first when it is nearer.
    let tight = Limits {
        deadline: Some(chrono::Duration::seconds(12)),
        ..limits
    };
    let (s, o) = saga(2, S::InProgress, P::ReservingInventory);
    let mut d = decide_events(
        &HashSet::new(),
        vec![(s, o)],
        &[ev("e2", 2, RESERVED)],
        at(9),
    );
    stamp_expiry(&mut d.writes, &tight);
    let Message::ProcessPayment(c) = &d.writes.outbox[0].message else {
        panic!("{:?}", d.writes.outbox);
    };
    assert_eq!(c.expires_at, Some(at(12).and_utc()));
    // No deadlines: no expiry (the original's command).
    let (s, o) = saga(3, S::InProgress, P::ReservingInventory);
    let mut d = decide_events(
        &HashSet::new(),
        vec![(s, o)],
        &[ev("e3", 3, RESERVED)],
        at(9),
    );
    stamp_expiry(&mut d.writes, &Limits::default());
    let Message::ProcessPayment(c) = &d.writes.outbox[0].message else {
        panic!("{:?}", d.writes.outbox);
    };
    assert_eq!(c.expires_at, None);
}
