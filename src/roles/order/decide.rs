//! The saga rules of the order role as pure functions (no I/O), unit tested
//! like `saga::transition`, which stays the table they apply:
//!
//! - [`decide_events`]: the message ids already processed, the sagas and
//!   orders read (locked) and the events in arrival order in; the processed
//!   ids, saga and order rows, timeline rows, commands to send, sagas that
//!   ended and one outcome per event out. Two events of one saga in one
//!   batch apply in order on the in-memory state, exactly as if they had
//!   come one at a time.
//! - [`decide_resend`]: re-sending a saga's pending command (recovery) or
//!   an operator's retry, as the same kind of writes.
//!
//! The executors (`sagas::execute`, `sagas::resend`) read, call these and
//! write what they return with one `sagas::write`.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;

use super::model::{NewSagaEvent, OrderRow, SagaRow};
use crate::{
    domain::Money,
    messaging::{
        contracts::{InventoryCommand, Message, PaymentCommand},
        outbox::Emit,
    },
    saga::{self, pending_command, Command, Event, SagaStatus, SagaStep},
};

/// Longest reason the timeline and the saga keep (VARCHAR(255)).
const REASON_MAX: usize = 255;

/// The message that carries `cmd` for this order.
pub fn command_message(cmd: Command, order: &OrderRow) -> Message {
    let inv = || InventoryCommand {
        saga_id: order.saga_id.clone(),
        order_id: order.id,
        product_id: order.product_id,
        quantity: order.quantity,
    };
    let pay = || PaymentCommand {
        saga_id: order.saga_id.clone(),
        order_id: order.id,
        amount: Money::from_db(order.total_amount),
        expires_at: None,
    };
    match cmd {
        Command::Reserve => Message::Reserve(inv()),
        Command::Release => Message::Release(inv()),
        Command::ProcessPayment => Message::ProcessPayment(pay()),
        Command::CancelPayment => Message::CancelPayment(pay()),
    }
}

/// The deadlines of `saga.step_timeout` and `saga.deadline` (None: off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub step_timeout: Option<chrono::Duration>,
    pub deadline: Option<chrono::Duration>,
}

impl Limits {
    pub fn new(cfg: &crate::config::SagaConfig) -> Self {
        let d = |v: std::time::Duration| {
            (!v.is_zero())
                .then(|| chrono::Duration::from_std(v).ok())
                .flatten()
        };
        Self {
            step_timeout: d(cfg.step_timeout),
            deadline: d(cfg.deadline),
        }
    }

    /// When the deadline check gives up on the saga's current step: the
    /// earlier of its step timeout and the saga's deadline.
    pub fn expiry(&self, saga: &SagaRow) -> Option<NaiveDateTime> {
        let step = self.step_timeout.map(|t| saga.step_started_at + t);
        let whole = self.deadline.map(|t| saga.created_at + t);
        match (step, whole) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Stamps every `payment.process` among `w`'s commands with its saga's
/// expiry (`Limits::expiry` of the saga as written), so a payment role that
/// gets it after the order role gave up does not charge.
pub fn stamp_expiry(w: &mut SagaWrites, limits: &Limits) {
    for e in &mut w.outbox {
        if let Message::ProcessPayment(c) = &mut e.message {
            let saga = w.sagas.iter().find(|s| s.saga_id == c.saga_id);
            c.expires_at = saga.and_then(|s| limits.expiry(s)).map(|t| t.and_utc());
        }
    }
}

/// At most `max` characters of `s`.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// One event to decide.
#[derive(Clone, Debug)]
pub struct SagaEvent {
    pub message_id: String,
    pub trace_id: String,
    pub saga_id: String,
    pub event: Event,
    pub reason: Option<String>,
}

/// What one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// Its message id was processed before (in the table or earlier in the
    /// batch): nothing done.
    Duplicate,
    /// The transition table says no for the saga's state: recorded as
    /// processed, the saga does not move.
    Stale,
    /// The saga moved to this status and step.
    Moved { status: SagaStatus, step: SagaStep },
    /// No such saga: nothing written, its id not recorded, so a redrive
    /// after the saga exists is processed.
    UnknownSaga,
}

/// A saga that reached a terminal status.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    /// Index of the event that ended it.
    pub item: usize,
    pub status: SagaStatus,
    /// Seconds from the saga's creation to `now`.
    pub secs: f64,
}

/// The rows a decision writes (one transaction, one round trip).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SagaWrites {
    /// Message ids to record as processed (new ones only).
    pub processed: Vec<String>,
    /// Sagas that changed, as they are now.
    pub sagas: Vec<SagaRow>,
    /// Orders whose status changed, as they are now.
    pub orders: Vec<OrderRow>,
    /// Timeline rows, in the order the events applied.
    pub timeline: Vec<NewSagaEvent>,
    pub outbox: Vec<Emit>,
}

/// Writes and outcomes of a batch of events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventsDecision {
    pub writes: SagaWrites,
    pub ended: Vec<Ended>,
    pub outcomes: Vec<EventOutcome>,
}

/// What moved a saga: an event (its id becomes `last_event_id`) or a
/// re-send of its pending command (`retry_count` goes up).
enum Applied {
    Event,
    Resend,
    /// A deadline or a customer's cancel: neither an event id nor a re-send.
    Interrupt,
}

/// The in-memory state of the sagas a batch touches, with the order in
/// which they were first changed (so the writes are deterministic).
struct State {
    rows: HashMap<String, (SagaRow, OrderRow)>,
    touched: Vec<String>,
    orders_changed: HashSet<i64>,
}

impl State {
    fn new(rows: Vec<(SagaRow, OrderRow)>) -> Self {
        Self {
            rows: rows
                .into_iter()
                .map(|(s, o)| (s.saga_id.clone(), (s, o)))
                .collect(),
            touched: Vec::new(),
            orders_changed: HashSet::new(),
        }
    }

    /// Applies a move to the saga in memory; returns its timeline row.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        kind: Applied,
        saga_id: &str,
        to: (SagaStatus, SagaStep),
        order_status: Option<&str>,
        event: &str,
        message_id: Option<String>,
        reason: Option<&str>,
        now: NaiveDateTime,
    ) -> Option<NewSagaEvent> {
        let (saga, order) = self.rows.get_mut(saga_id)?;
        let reason = reason.map(|r| truncate(r, REASON_MAX));
        let row = NewSagaEvent {
            saga_id: saga.saga_id.clone(),
            event: event.into(),
            from_status: Some(saga.status.clone()),
            from_step: Some(saga.current_step.clone()),
            to_status: to.0.as_str().into(),
            to_step: to.1.as_str().into(),
            message_id,
            reason: reason.clone(),
        };
        // A saga keeps the reason it failed or started compensating for
        // (a step of the compensation does not replace it: a payment
        // cancelled after a timeout still says why it was cancelled).
        let starts_compensating = to.0 == SagaStatus::Compensating
            && SagaStatus::parse(&saga.status) != Some(SagaStatus::Compensating);
        if to.0 == SagaStatus::Failed || starts_compensating {
            if let Some(r) = reason {
                saga.failure_reason = Some(r);
            }
        }
        // A FAILED saga is at DONE, as in the original; the step it failed
        // at is kept beside (a failed compensation is what an operator's
        // retry takes up again). Leaving FAILED clears it.
        if to.0 == SagaStatus::Failed {
            if SagaStatus::parse(&saga.status) != Some(SagaStatus::Failed) {
                saga.failed_step = Some(saga.current_step.clone());
            }
        } else {
            saga.failed_step = None;
        }
        match &kind {
            Applied::Event => saga.last_event_id = row.message_id.clone(),
            Applied::Resend => saga.retry_count = saga.retry_count.saturating_add(1),
            Applied::Interrupt => {}
        }
        if saga.current_step != to.1.as_str() {
            saga.step_started_at = now;
        }
        saga.status = to.0.as_str().into();
        saga.current_step = to.1.as_str().into();
        saga.updated_at = now;
        if let Some(st) = order_status.filter(|st| order.status != *st) {
            order.status = st.into();
            order.updated_at = now;
            self.orders_changed.insert(order.id);
        }
        if !self.touched.iter().any(|t| t == saga_id) {
            self.touched.push(saga_id.to_string());
        }
        Some(row)
    }

    /// The saga and order rows that changed.
    fn rows_to_write(&self, w: &mut SagaWrites) {
        for id in &self.touched {
            if let Some((s, o)) = self.rows.get(id) {
                w.sagas.push(s.clone());
                if self.orders_changed.contains(&o.id) {
                    w.orders.push(o.clone());
                }
            }
        }
    }
}

/// Decides a batch of saga events; see the module doc. `seen` holds the
/// batch's message ids already processed; `sagas` the sagas (with their
/// orders) the events name, as read under lock; `now` stamps the rows.
pub fn decide_events(
    seen: &HashSet<String>,
    sagas: Vec<(SagaRow, OrderRow)>,
    events: &[SagaEvent],
    now: NaiveDateTime,
) -> EventsDecision {
    let mut state = State::new(sagas);
    let mut fresh: HashSet<&str> = HashSet::new();
    let mut d = EventsDecision::default();
    for (i, ev) in events.iter().enumerate() {
        let id = ev.message_id.as_str();
        if seen.contains(id) || fresh.contains(id) {
            d.outcomes.push(EventOutcome::Duplicate);
            continue;
        }
        let Some((saga, order)) = state.rows.get(&ev.saga_id) else {
            d.outcomes.push(EventOutcome::UnknownSaga);
            continue;
        };
        fresh.insert(id);
        d.writes.processed.push(ev.message_id.clone());
        let t = match (
            SagaStatus::parse(&saga.status),
            SagaStep::parse(&saga.current_step),
        ) {
            (Some(status), Some(step)) => saga::transition(status, step, ev.event),
            _ => None,
        };
        let Some(t) = t else {
            d.outcomes.push(EventOutcome::Stale);
            continue;
        };
        if let Some(c) = t.command {
            d.writes.outbox.push(Emit {
                item: i,
                message: command_message(c, order),
                trace_id: ev.trace_id.clone(),
                message_id: None,
            });
        }
        if t.status.is_terminal() {
            let secs = (now - saga.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            d.ended.push(Ended {
                item: i,
                status: t.status,
                secs: secs.max(0.0),
            });
        }
        if let Some(row) = state.apply(
            Applied::Event,
            &ev.saga_id,
            (t.status, t.step),
            Some(t.order.as_str()),
            ev.event.name(),
            Some(ev.message_id.clone()),
            ev.reason.as_deref(),
            now,
        ) {
            d.writes.timeline.push(row);
        }
        d.outcomes.push(EventOutcome::Moved {
            status: t.status,
            step: t.step,
        });
    }
    state.rows_to_write(&mut d.writes);
    d
}

/// Who asks for a re-send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// The recovery loop: only a saga in flight that has not moved since
    /// `cutoff`.
    Stuck { cutoff: NaiveDateTime },
    /// An operator: a failed compensation goes back to COMPENSATING with
    /// its release sent again; a saga in flight has its pending command
    /// sent now.
    Operator,
}

/// What a re-send does.
#[derive(Clone, Debug, PartialEq)]
pub struct Resent {
    /// `release re-sent` or `pending command re-sent`.
    pub action: &'static str,
    /// Id of the command sent (also on its timeline row).
    pub message_id: String,
    pub writes: SagaWrites,
}

/// Why a saga was not re-sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotResent {
    /// It moved since the cutoff (recovery only).
    NotStuck,
    /// Nothing to re-send in this status and step.
    NotInFlight { status: String, step: String },
}

/// Decides a re-send for one saga (read under lock). `message_id` and
/// `trace_id` are the new command's.
pub fn decide_resend(
    saga: SagaRow,
    order: OrderRow,
    who: Resend,
    now: NaiveDateTime,
    message_id: String,
    trace_id: String,
) -> Result<Resent, NotResent> {
    let not_in_flight = |saga: &SagaRow| NotResent::NotInFlight {
        status: saga.status.clone(),
        step: saga.current_step.clone(),
    };
    if let Resend::Stuck { cutoff } = who {
        if saga.updated_at > cutoff {
            return Err(NotResent::NotStuck);
        }
    }
    let (Some(status), Some(step)) = (
        SagaStatus::parse(&saga.status),
        SagaStep::parse(&saga.current_step),
    ) else {
        return Err(not_in_flight(&saga));
    };
    let (to, cmd, event, action) = match (who, pending_command(status, step)) {
        (Resend::Operator, _)
            if status == SagaStatus::Failed
                && saga.failed_step.as_deref() == Some(SagaStep::ReleasingInventory.as_str()) =>
        {
            (
                (SagaStatus::Compensating, SagaStep::ReleasingInventory),
                Command::Release,
                "operator.retry",
                "release re-sent",
            )
        }
        (Resend::Operator, Some(c)) => (
            (status, step),
            c,
            "operator.resend",
            "pending command re-sent",
        ),
        (Resend::Stuck { .. }, Some(c)) => (
            (status, step),
            c,
            "recovery.resend",
            "pending command re-sent",
        ),
        (_, None) => return Err(not_in_flight(&saga)),
    };
    let message = command_message(cmd, &order);
    let saga_id = saga.saga_id.clone();
    let mut state = State::new(vec![(saga, order)]);
    let mut writes = SagaWrites::default();
    // The order's status stays: a re-send is not a transition of the table.
    if let Some(row) = state.apply(
        Applied::Resend,
        &saga_id,
        to,
        None,
        event,
        Some(message_id.clone()),
        None,
        now,
    ) {
        writes.timeline.push(row);
    }
    state.rows_to_write(&mut writes);
    writes.outbox.push(Emit {
        item: 0,
        message,
        trace_id,
        message_id: Some(message_id.clone()),
    });
    Ok(Resent {
        action,
        message_id,
        writes,
    })
}

/// What interrupts a saga going forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// The deadline check: a step that began at or before `step_cutoff`,
    /// or a saga created at or before `saga_cutoff`, has run out of time
    /// (None: that deadline is off).
    Timeout {
        step_cutoff: Option<NaiveDateTime>,
        saga_cutoff: Option<NaiveDateTime>,
    },
    /// The customer's `POST /orders/:id/cancel`.
    Cancel,
}

/// Which deadline a saga ran past.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    Step,
    Saga,
}

impl Deadline {
    pub fn as_str(self) -> &'static str {
        match self {
            Deadline::Step => "step_timeout",
            Deadline::Saga => "deadline",
        }
    }
}

/// A saga an interrupt moved.
#[derive(Clone, Debug, PartialEq)]
pub struct Interrupted {
    /// The step it was at when interrupted.
    pub step: SagaStep,
    /// For a timeout: which deadline.
    pub deadline: Option<Deadline>,
    pub reason: String,
    pub writes: SagaWrites,
}

/// Why an interrupt left a saga as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotInterrupted {
    /// Still within its deadlines (it moved since the check read it).
    InTime,
    /// Not going forward any more: compensating or ended.
    NotForward { status: String, step: String },
}

/// The timeline reason of a saga that ran out of time at `step`.
fn timeout_reason(step: SagaStep, deadline: Deadline) -> String {
    let what = match step {
        SagaStep::ReservingInventory => "inventory reservation",
        SagaStep::ProcessingPayment => "payment",
        other => other.as_str(),
    };
    match deadline {
        Deadline::Step => format!("{what} timed out"),
        Deadline::Saga => format!("saga deadline passed during {what}"),
    }
}

/// Decides an interrupt for one saga (read under lock): the table's move
/// for `Event::TimedOut` or `Event::Cancelled`, its compensating command
/// (`message_id`, `trace_id`) and its timeline row. Re-checks the deadline
/// against the locked row, so a saga that moved since the check read it is
/// left alone, and one interrupted already is not interrupted again.
pub fn decide_interrupt(
    saga: SagaRow,
    order: OrderRow,
    why: Interrupt,
    now: NaiveDateTime,
    message_id: String,
    trace_id: String,
) -> Result<Interrupted, NotInterrupted> {
    let (Some(status), Some(step)) = (
        SagaStatus::parse(&saga.status),
        SagaStep::parse(&saga.current_step),
    ) else {
        return Err(NotInterrupted::NotForward {
            status: saga.status.clone(),
            step: saga.current_step.clone(),
        });
    };
    let (event, deadline, reason) = match why {
        Interrupt::Cancel => (
            Event::Cancelled,
            None,
            "cancelled by the customer".to_string(),
        ),
        Interrupt::Timeout {
            step_cutoff,
            saga_cutoff,
        } => {
            let d = if step_cutoff.is_some_and(|c| saga.step_started_at <= c) {
                Deadline::Step
            } else if saga_cutoff.is_some_and(|c| saga.created_at <= c) {
                Deadline::Saga
            } else {
                return Err(NotInterrupted::InTime);
            };
            (Event::TimedOut, Some(d), timeout_reason(step, d))
        }
    };
    let Some(t) = saga::transition(status, step, event) else {
        return Err(NotInterrupted::NotForward {
            status: saga.status.clone(),
            step: saga.current_step.clone(),
        });
    };
    let message = t.command.map(|c| command_message(c, &order));
    let saga_id = saga.saga_id.clone();
    let mut state = State::new(vec![(saga, order)]);
    let mut writes = SagaWrites::default();
    if let Some(row) = state.apply(
        Applied::Interrupt,
        &saga_id,
        (t.status, t.step),
        Some(t.order.as_str()),
        event.name(),
        Some(message_id.clone()),
        Some(&reason),
        now,
    ) {
        writes.timeline.push(row);
    }
    state.rows_to_write(&mut writes);
    if let Some(message) = message {
        writes.outbox.push(Emit {
            item: 0,
            message,
            trace_id,
            message_id: Some(message_id),
        });
    }
    Ok(Interrupted {
        step,
        deadline,
        reason,
        writes,
    })
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
