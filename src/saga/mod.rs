//! The saga of docs/contract.md section 2: statuses, steps, and the pure transition
//! function (no I/O). Persistence lives with the order role.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SagaStatus {
    InProgress,
    Compensating,
    Completed,
    Compensated,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SagaStep {
    ReservingInventory,
    ProcessingPayment,
    /// A payment timed out or was cancelled: `payment.cancel` is out, and its
    /// answer says whether the charge was made first.
    CancellingPayment,
    ReleasingInventory,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    /// Its stock is reserved; the payment is next (the original's status).
    InventoryReserved,
    Confirmed,
    Failed,
    Compensated,
}

/// The command a transition sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Reserve,
    ProcessPayment,
    Release,
    /// `payment.cancel`: the payment role's tombstone (docs/design/barrier.md).
    CancelPayment,
}

/// An event the orchestrator receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    InventoryReserved {
        success: bool,
    },
    InventoryReleased {
        success: bool,
    },
    PaymentProcessed {
        success: bool,
    },
    /// The current step or the whole saga ran past its deadline (the order
    /// role's deadline check).
    TimedOut,
    /// The customer cancelled the order (`POST /orders/:id/cancel`).
    Cancelled,
    /// The payment role's answer to `payment.cancel`: `charged` when the
    /// charge was made before the cancel arrived (the charge stands).
    PaymentCancelled {
        charged: bool,
    },
}

impl Event {
    /// The name written to the saga's timeline.
    pub fn name(&self) -> &'static str {
        match self {
            Event::InventoryReserved { success: true } => "inventory.reserved",
            Event::InventoryReserved { success: false } => "inventory.reserve_failed",
            Event::InventoryReleased { success: true } => "inventory.released",
            Event::InventoryReleased { success: false } => "inventory.release_failed",
            Event::PaymentProcessed { success: true } => "payment.processed",
            Event::PaymentProcessed { success: false } => "payment.failed",
            Event::TimedOut => "saga.timed_out",
            Event::Cancelled => "order.cancelled",
            Event::PaymentCancelled { charged: false } => "payment.cancelled",
            Event::PaymentCancelled { charged: true } => "payment.cancel_too_late",
        }
    }
}

/// Where a saga goes on an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub status: SagaStatus,
    pub step: SagaStep,
    pub order: OrderStatus,
    pub command: Option<Command>,
}

/// The table of docs/contract.md section 2. `None`: the event is a duplicate or stale
/// for this state, and the saga does not move.
pub fn transition(status: SagaStatus, step: SagaStep, event: Event) -> Option<Transition> {
    use SagaStatus as S;
    use SagaStep as P;
    let t = |status, step, order, command| {
        Some(Transition {
            status,
            step,
            order,
            command,
        })
    };
    match (status, step, event) {
        (S::InProgress, P::ReservingInventory, Event::InventoryReserved { success: true }) => t(
            S::InProgress,
            P::ProcessingPayment,
            OrderStatus::InventoryReserved,
            Some(Command::ProcessPayment),
        ),
        (S::InProgress, P::ReservingInventory, Event::InventoryReserved { success: false }) => {
            t(S::Failed, P::Done, OrderStatus::Failed, None)
        }
        (S::InProgress, P::ProcessingPayment, Event::PaymentProcessed { success: true }) => {
            t(S::Completed, P::Done, OrderStatus::Confirmed, None)
        }
        (S::InProgress, P::ProcessingPayment, Event::PaymentProcessed { success: false }) => t(
            S::Compensating,
            P::ReleasingInventory,
            OrderStatus::Failed,
            Some(Command::Release),
        ),
        (S::Compensating, P::ReleasingInventory, Event::InventoryReleased { success: true }) => {
            t(S::Compensated, P::Done, OrderStatus::Compensated, None)
        }
        (S::Compensating, P::ReleasingInventory, Event::InventoryReleased { success: false }) => {
            t(S::Failed, P::Done, OrderStatus::Failed, None)
        }
        // A reserve that did not answer in time (or a cancel before it did)
        // is released: the inventory role records the release, so the
        // reserve, if it arrives later, is refused.
        (S::InProgress, P::ReservingInventory, Event::TimedOut | Event::Cancelled) => t(
            S::Compensating,
            P::ReleasingInventory,
            OrderStatus::Failed,
            Some(Command::Release),
        ),
        // A payment is cancelled before the stock goes back; whether it ends
        // FAILED or CONFIRMED depends on the answer, so the order keeps its
        // status until then.
        (S::InProgress, P::ProcessingPayment, Event::TimedOut | Event::Cancelled) => t(
            S::Compensating,
            P::CancellingPayment,
            OrderStatus::InventoryReserved,
            Some(Command::CancelPayment),
        ),
        (S::Compensating, P::CancellingPayment, Event::PaymentCancelled { charged: false }) => t(
            S::Compensating,
            P::ReleasingInventory,
            OrderStatus::Failed,
            Some(Command::Release),
        ),
        // The charge was made before the cancel arrived: it stands and the
        // order is confirmed (docs/design/barrier.md, "A charge that won").
        (S::Compensating, P::CancellingPayment, Event::PaymentCancelled { charged: true }) => {
            t(S::Completed, P::Done, OrderStatus::Confirmed, None)
        }
        _ => None,
    }
}

/// The command that moves a saga on from where it stands (what recovery
/// re-sends), if it is in flight.
pub fn pending_command(status: SagaStatus, step: SagaStep) -> Option<Command> {
    match (status, step) {
        (SagaStatus::InProgress, SagaStep::ReservingInventory) => Some(Command::Reserve),
        (SagaStatus::InProgress, SagaStep::ProcessingPayment) => Some(Command::ProcessPayment),
        (SagaStatus::Compensating, SagaStep::ReleasingInventory) => Some(Command::Release),
        (SagaStatus::Compensating, SagaStep::CancellingPayment) => Some(Command::CancelPayment),
        _ => None,
    }
}

impl SagaStatus {
    pub const ALL: [SagaStatus; 5] = [
        SagaStatus::InProgress,
        SagaStatus::Compensating,
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::InProgress => "IN_PROGRESS",
            SagaStatus::Compensating => "COMPENSATING",
            SagaStatus::Completed => "COMPLETED",
            SagaStatus::Compensated => "COMPENSATED",
            SagaStatus::Failed => "FAILED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed
        )
    }
}

impl SagaStep {
    pub const ALL: [SagaStep; 5] = [
        SagaStep::ReservingInventory,
        SagaStep::ProcessingPayment,
        SagaStep::CancellingPayment,
        SagaStep::ReleasingInventory,
        SagaStep::Done,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStep::ReservingInventory => "RESERVING_INVENTORY",
            SagaStep::ProcessingPayment => "PROCESSING_PAYMENT",
            SagaStep::CancellingPayment => "CANCELLING_PAYMENT",
            SagaStep::ReleasingInventory => "RELEASING_INVENTORY",
            SagaStep::Done => "DONE",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::InventoryReserved => "INVENTORY_RESERVED",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Failed => "FAILED",
            OrderStatus::Compensated => "COMPENSATED",
        }
    }
}

impl fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SagaStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command as C;
    use OrderStatus as O;
    use SagaStatus as S;
    use SagaStep as P;

    fn events() -> Vec<Event> {
        let mut v = Vec::new();
        for success in [true, false] {
            v.push(Event::InventoryReserved { success });
            v.push(Event::InventoryReleased { success });
            v.push(Event::PaymentProcessed { success });
            v.push(Event::PaymentCancelled { charged: success });
        }
        v.push(Event::TimedOut);
        v.push(Event::Cancelled);
        v
    }

    fn to(status: S, step: P, order: O, command: Option<C>) -> Transition {
        Transition {
            status,
            step,
            order,
            command,
        }
    }

    /// Every cell of the table: (status, step) x event.
    #[test]
    fn every_cell() {
        let table: Vec<((S, P, Event), Transition)> = vec![
            (
                (
                    S::InProgress,
                    P::ReservingInventory,
                    Event::InventoryReserved { success: true },
                ),
                Transition {
                    status: S::InProgress,
                    step: P::ProcessingPayment,
                    order: O::InventoryReserved,
                    command: Some(C::ProcessPayment),
                },
            ),
            (
                (
                    S::InProgress,
                    P::ReservingInventory,
                    Event::InventoryReserved { success: false },
                ),
                Transition {
                    status: S::Failed,
                    step: P::Done,
                    order: O::Failed,
                    command: None,
                },
            ),
            (
                (
                    S::InProgress,
                    P::ProcessingPayment,
                    Event::PaymentProcessed { success: true },
                ),
                Transition {
                    status: S::Completed,
                    step: P::Done,
                    order: O::Confirmed,
                    command: None,
                },
            ),
            (
                (
                    S::InProgress,
                    P::ProcessingPayment,
                    Event::PaymentProcessed { success: false },
                ),
                Transition {
                    status: S::Compensating,
                    step: P::ReleasingInventory,
                    order: O::Failed,
                    command: Some(C::Release),
                },
            ),
            (
                (
                    S::Compensating,
                    P::ReleasingInventory,
                    Event::InventoryReleased { success: true },
                ),
                Transition {
                    status: S::Compensated,
                    step: P::Done,
                    order: O::Compensated,
                    command: None,
                },
            ),
            (
                (
                    S::Compensating,
                    P::ReleasingInventory,
                    Event::InventoryReleased { success: false },
                ),
                Transition {
                    status: S::Failed,
                    step: P::Done,
                    order: O::Failed,
                    command: None,
                },
            ),
        ];
        let mut table = table;
        for interrupt in [Event::TimedOut, Event::Cancelled] {
            table.push((
                (S::InProgress, P::ReservingInventory, interrupt),
                to(
                    S::Compensating,
                    P::ReleasingInventory,
                    O::Failed,
                    Some(C::Release),
                ),
            ));
            table.push((
                (S::InProgress, P::ProcessingPayment, interrupt),
                to(
                    S::Compensating,
                    P::CancellingPayment,
                    O::InventoryReserved,
                    Some(C::CancelPayment),
                ),
            ));
        }
        table.push((
            (
                S::Compensating,
                P::CancellingPayment,
                Event::PaymentCancelled { charged: false },
            ),
            to(
                S::Compensating,
                P::ReleasingInventory,
                O::Failed,
                Some(C::Release),
            ),
        ));
        table.push((
            (
                S::Compensating,
                P::CancellingPayment,
                Event::PaymentCancelled { charged: true },
            ),
            to(S::Completed, P::Done, O::Confirmed, None),
        ));
        let mut moved = 0;
        for status in S::ALL {
            for step in P::ALL {
                for ev in events() {
                    let got = transition(status, step, ev);
                    let want = table
                        .iter()
                        .find(|(k, _)| *k == (status, step, ev))
                        .map(|(_, t)| *t);
                    assert_eq!(got, want, "{status:?}/{step:?} on {ev:?}");
                    moved += got.is_some() as usize;
                }
            }
        }
        assert_eq!(moved, 12);
    }

    /// An event delivered twice moves the saga once; a late event after the
    /// saga moved on is ignored.
    #[test]
    fn duplicates_and_late_events_do_not_move() {
        let ev = Event::InventoryReserved { success: true };
        let t = transition(S::InProgress, P::ReservingInventory, ev).unwrap();
        assert_eq!(transition(t.status, t.step, ev), None);
        let paid = transition(t.status, t.step, Event::PaymentProcessed { success: true }).unwrap();
        assert!(paid.status.is_terminal());
        for late in events() {
            assert_eq!(transition(paid.status, paid.step, late), None);
        }
        // A failed reserve arriving after a success is stale.
        assert_eq!(
            transition(
                t.status,
                t.step,
                Event::InventoryReserved { success: false }
            ),
            None
        );
    }

    /// A timeout or a cancel interrupts only a saga that is still going
    /// forward: once it compensates or has ended, both are stale, twice or
    /// in any order; the late answer of the interrupted step is stale too.
    #[test]
    fn interrupts_apply_once_and_late_answers_are_ignored() {
        for interrupt in [Event::TimedOut, Event::Cancelled] {
            // At the reserve: released; a late reserve answer is ignored.
            let t = transition(S::InProgress, P::ReservingInventory, interrupt).unwrap();
            for late in [
                interrupt,
                Event::TimedOut,
                Event::Cancelled,
                Event::InventoryReserved { success: true },
                Event::InventoryReserved { success: false },
                Event::PaymentCancelled { charged: false },
            ] {
                assert_eq!(transition(t.status, t.step, late), None, "{late:?}");
            }
            // At the payment: cancelled first; the late payment answer is
            // ignored, the cancel's answer decides.
            let t = transition(S::InProgress, P::ProcessingPayment, interrupt).unwrap();
            for late in [
                interrupt,
                Event::PaymentProcessed { success: true },
                Event::PaymentProcessed { success: false },
                Event::InventoryReleased { success: true },
            ] {
                assert_eq!(transition(t.status, t.step, late), None, "{late:?}");
            }
            let released =
                transition(t.status, t.step, Event::PaymentCancelled { charged: false }).unwrap();
            assert_eq!(released.command, Some(C::Release));
            assert_eq!(
                transition(
                    released.status,
                    released.step,
                    Event::PaymentCancelled { charged: false }
                ),
                None
            );
            let done = transition(
                released.status,
                released.step,
                Event::InventoryReleased { success: true },
            )
            .unwrap();
            assert_eq!((done.status, done.order), (S::Compensated, O::Compensated));
        }
        // Nothing interrupts a saga that has ended.
        for s in [S::Completed, S::Compensated, S::Failed] {
            for ev in [Event::TimedOut, Event::Cancelled] {
                assert_eq!(transition(s, P::Done, ev), None);
            }
        }
    }

    #[test]
    fn recovery_resends_the_current_step() {
        assert_eq!(
            pending_command(S::InProgress, P::ReservingInventory),
            Some(C::Reserve)
        );
        assert_eq!(
            pending_command(S::InProgress, P::ProcessingPayment),
            Some(C::ProcessPayment)
        );
        assert_eq!(
            pending_command(S::Compensating, P::ReleasingInventory),
            Some(C::Release)
        );
        assert_eq!(
            pending_command(S::Compensating, P::CancellingPayment),
            Some(C::CancelPayment)
        );
        for s in [S::Completed, S::Compensated, S::Failed] {
            for p in P::ALL {
                assert_eq!(pending_command(s, p), None);
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(SagaStatus::parse(s.as_str()), Some(s));
        }
        for p in P::ALL {
            assert_eq!(SagaStep::parse(p.as_str()), Some(p));
        }
    }
}
