//! The payment rule as a pure function (no I/O): the payments already
//! recorded for a batch's orders and the commands in arrival order in; the
//! rows to insert, the processed message ids, the outcome events and one
//! outcome per command out. The executor (`charge::execute`) reads, calls
//! it and writes what it returns; a batch of one is the same call.
//!
//! The rule: at most one payment row per order, ever. A repeated command (the
//! order is in the table, or was charged earlier in the same batch) re-emits
//! the recorded outcome, with the recorded amount, status and tx id, and
//! writes no second row. An amount that is not positive or does not fit
//! DECIMAL(12,2) is refused for that command, with a reason; it is never
//! rounded or wrapped.
//!
//! `payment.cancel` is the same rule seen from the other side (the barrier,
//! docs/design/barrier.md): for an order with no row yet it writes the
//! order's one row as a CANCELLED tombstone, so a `payment.process` that
//! arrives later finds it and is answered "not charged"
//! (`PAYMENT_CANCELLED`) without charging; for an order with a row it writes
//! nothing and answers what the row says: a SUCCESS charge stands
//! (`cancelled: false`), anything else was never charged.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::schema::payments;
use crate::{
    domain::Money,
    messaging::{
        contracts::{Message, PaymentCancelResult, PaymentResult},
        outbox::Emit,
    },
};

/// Why a declined payment failed, as recorded and sent.
pub const DECLINED: &str = "SIMULATED_FAILURE";

/// Status and reason of the tombstone `payment.cancel` writes.
pub const CANCELLED: &str = "CANCELLED";
pub const CANCELLED_REASON: &str = "PAYMENT_CANCELLED";
/// Reason of the tombstone a `payment.process` past its `expires_at` writes.
pub const EXPIRED_REASON: &str = "PAYMENT_EXPIRED";

/// What a payment command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayKind {
    /// `payment.process`: charge the order (once).
    Process,
    /// `payment.cancel`: make sure the order is never charged, unless it
    /// already was.
    Cancel,
}

/// One command to decide, with what the caller drew for it before the
/// transaction (so the decision stays a function of its input).
#[derive(Clone, Debug)]
pub struct PayCommand {
    pub kind: PayKind,
    pub message_id: String,
    pub trace_id: String,
    pub saga_id: String,
    pub order_id: i64,
    /// The amount as it arrived; checked here, not trusted.
    pub amount: Decimal,
    /// Drawn from `payment.failure_rate`: decline this charge.
    pub declined: bool,
    /// Read from the clock on arrival: the command is past its
    /// `expires_at`, so the order role has given up on it.
    pub expired: bool,
    /// The transaction id a successful new charge records.
    pub tx_id: String,
}

/// A payment already in the table (the columns the rule needs).
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub order_id: i64,
    /// None for a payment POST /payments recorded.
    pub saga_id: Option<String>,
    pub amount: Decimal,
    pub status: String,
    pub tx_id: Option<String>,
    pub reason: Option<String>,
}

/// A payment row to insert.
#[derive(Clone, Debug, PartialEq, diesel::Insertable)]
#[diesel(table_name = payments)]
pub struct NewPayment {
    pub order_id: i64,
    pub saga_id: String,
    pub amount: Decimal,
    pub status: &'static str,
    pub tx_id: Option<String>,
    pub reason: Option<String>,
}

/// What happened to one command.
#[derive(Clone, Debug, PartialEq)]
pub enum PayOutcome {
    /// A new payment row (successful or declined); its result is sent.
    Charged(PaymentResult),
    /// The order was charged before: the recorded result is sent again.
    Repeated(PaymentResult),
    /// The command can never be charged (dead-letter it with this reason).
    Refused(String),
    /// The answer to a `payment.cancel`; `tombstone` when it wrote the
    /// order's CANCELLED row (nothing was recorded before).
    Cancelled {
        result: PaymentCancelResult,
        tombstone: bool,
    },
}

/// Everything the executor writes for a batch, and one outcome per command.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PayDecision {
    pub payments: Vec<NewPayment>,
    /// Message ids of the handled commands, each once.
    pub processed: Vec<String>,
    pub outbox: Vec<Emit>,
    pub outcomes: Vec<PayOutcome>,
}

/// Largest amount DECIMAL(12,2) holds.
fn max_amount() -> Decimal {
    Decimal::new(999_999_999_999, 2)
}

/// The amount as stored, or why it cannot be.
pub fn check_amount(amount: Decimal) -> Result<Money, String> {
    if amount <= Decimal::ZERO {
        return Err(format!("amount {amount} must be positive"));
    }
    if amount > max_amount() {
        return Err(format!("amount {amount} does not fit DECIMAL(12,2)"));
    }
    Money::new(amount).map_err(|e| format!("amount {amount} {e}"))
}

/// The result a command gets for a recorded payment. A payment POST
/// /payments recorded (PENDING, no saga) is the order's one payment too: the
/// command does not charge again, it reports a payment that did not
/// succeed, as the original does (docs/compatibility.md).
fn result_of(r: &Recorded, c: &PayCommand) -> PaymentResult {
    let success = r.status == "SUCCESS";
    let reason = match &r.reason {
        None if !success => Some(format!("payment recorded as {}", r.status)),
        other => other.clone(),
    };
    PaymentResult {
        saga_id: r.saga_id.clone().unwrap_or_else(|| c.saga_id.clone()),
        order_id: c.order_id,
        amount: Some(Money::from_db(r.amount)),
        success,
        tx_id: r.tx_id.clone(),
        reason,
    }
}

/// Decides a batch of payment commands; see the module doc.
pub fn decide(recorded: &[Recorded], cmds: &[PayCommand]) -> PayDecision {
    let mut known: HashMap<i64, Recorded> =
        recorded.iter().map(|r| (r.order_id, r.clone())).collect();
    let mut processed = std::collections::HashSet::new();
    let mut d = PayDecision::default();
    for (i, c) in cmds.iter().enumerate() {
        if c.kind == PayKind::Cancel {
            let outcome = match cancel(&mut known, c) {
                Ok((result, row)) => {
                    let tombstone = row.is_some();
                    d.payments.extend(row);
                    PayOutcome::Cancelled { result, tombstone }
                }
                Err(reason) => {
                    d.outcomes.push(PayOutcome::Refused(reason));
                    continue;
                }
            };
            if processed.insert(c.message_id.as_str()) {
                d.processed.push(c.message_id.clone());
            }
            if let PayOutcome::Cancelled { result, .. } = &outcome {
                d.outbox.push(Emit {
                    item: i,
                    message: Message::PaymentCancelled(result.clone()),
                    trace_id: c.trace_id.clone(),
                    message_id: None,
                });
            }
            d.outcomes.push(outcome);
            continue;
        }
        let result = if let Some(r) = known.get(&c.order_id) {
            PayOutcome::Repeated(result_of(r, c))
        } else {
            let amount = match check_amount(c.amount) {
                Ok(m) => m,
                Err(reason) => {
                    d.outcomes.push(PayOutcome::Refused(reason));
                    continue;
                }
            };
            let (status, tx_id, reason) = if c.expired {
                // Too late to charge: the order's one row becomes the
                // tombstone a cancel would have written.
                (CANCELLED, None, Some(EXPIRED_REASON.to_string()))
            } else if c.declined {
                ("FAILED", None, Some(DECLINED.to_string()))
            } else {
                ("SUCCESS", Some(c.tx_id.clone()), None)
            };
            let row = NewPayment {
                order_id: c.order_id,
                saga_id: c.saga_id.clone(),
                amount: amount.decimal(),
                status,
                tx_id,
                reason,
            };
            let rec = Recorded {
                order_id: row.order_id,
                saga_id: Some(row.saga_id.clone()),
                amount: row.amount,
                status: status.to_string(),
                tx_id: row.tx_id.clone(),
                reason: row.reason.clone(),
            };
            let result = result_of(&rec, c);
            known.insert(c.order_id, rec);
            d.payments.push(row);
            PayOutcome::Charged(result)
        };
        if processed.insert(c.message_id.as_str()) {
            d.processed.push(c.message_id.clone());
        }
        let (PayOutcome::Charged(r) | PayOutcome::Repeated(r)) = &result else {
            continue;
        };
        d.outbox.push(Emit {
            item: i,
            message: Message::PaymentProcessed(r.clone()),
            trace_id: c.trace_id.clone(),
            message_id: None,
        });
        d.outcomes.push(result);
    }
    d
}

/// A cancel against what is known of its order: the answer, and the
/// tombstone row to insert when the order has no row yet.
fn cancel(
    known: &mut HashMap<i64, Recorded>,
    c: &PayCommand,
) -> Result<(PaymentCancelResult, Option<NewPayment>), String> {
    let answer = |r: &Recorded| {
        let charged = r.status == "SUCCESS";
        PaymentCancelResult {
            saga_id: c.saga_id.clone(),
            order_id: c.order_id,
            cancelled: !charged,
            tx_id: if charged { r.tx_id.clone() } else { None },
            reason: Some(if charged {
                "charged before the cancel arrived".to_string()
            } else {
                format!("payment recorded as {}", r.status)
            }),
        }
    };
    if let Some(r) = known.get(&c.order_id) {
        return Ok((answer(r), None));
    }
    let amount = check_amount(c.amount)?;
    let row = NewPayment {
        order_id: c.order_id,
        saga_id: c.saga_id.clone(),
        amount: amount.decimal(),
        status: CANCELLED,
        tx_id: None,
        reason: Some(CANCELLED_REASON.into()),
    };
    let rec = Recorded {
        order_id: c.order_id,
        saga_id: Some(c.saga_id.clone()),
        amount: row.amount,
        status: CANCELLED.into(),
        tx_id: None,
        reason: row.reason.clone(),
    };
    let result = answer(&rec);
    known.insert(c.order_id, rec);
    Ok((result, Some(row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cancel_cmd(n: usize, order: i64) -> PayCommand {
        PayCommand {
            kind: PayKind::Cancel,
            ..cmd(n, order, "5.00")
        }
    }

    fn answer(d: &PayDecision, i: usize) -> (&PaymentCancelResult, bool) {
        match &d.outcomes[i] {
            PayOutcome::Cancelled { result, tombstone } => (result, *tombstone),
            other => panic!("command {i}: {other:?}"),
        }
    }

    /// Every order of a cancel and a process of one order, each once or
    /// twice, in one batch and across batches: the order is charged only if
    /// a process came first, and the cancel's answer says which.
    #[test]
    fn cancel_and_process_in_every_order() {
        // Cancel first (also cancel without any process, and twice).
        let d = decide(
            &[],
            &[
                cancel_cmd(1, 1),
                cancel_cmd(2, 1),
                cmd(3, 1, "5.00"),
                cmd(4, 1, "5.00"),
            ],
        );
        assert_eq!(d.payments.len(), 1, "only the tombstone");
        assert_eq!(d.payments[0].status, CANCELLED);
        let (a, tomb) = answer(&d, 0);
        assert!(a.cancelled && tomb && a.tx_id.is_none());
        let (b, tomb) = answer(&d, 1);
        assert!(b.cancelled && !tomb);
        for i in [2, 3] {
            let PayOutcome::Repeated(r) = &d.outcomes[i] else {
                panic!("{:?}", d.outcomes[i]);
            };
            assert!(!r.success);
            assert_eq!(r.reason.as_deref(), Some(CANCELLED_REASON));
        }
        assert_eq!(d.processed, ["m1", "m2", "m3", "m4"]);
        // The same across batches: the recorded tombstone refuses the charge.
        let rec = Recorded {
            order_id: 1,
            saga_id: Some("s-1".into()),
            amount: "5.00".parse().unwrap(),
            status: CANCELLED.into(),
            tx_id: None,
            reason: Some(CANCELLED_REASON.into()),
        };
        let d = decide(std::slice::from_ref(&rec), &[cmd(5, 1, "5.00")]);
        assert!(d.payments.is_empty());
        assert!(matches!(&d.outcomes[0], PayOutcome::Repeated(r) if !r.success));

        // Process first, then cancel twice: the charge stands.
        let d = decide(
            &[],
            &[cmd(1, 2, "5.00"), cancel_cmd(2, 2), cancel_cmd(3, 2)],
        );
        assert_eq!(d.payments.len(), 1);
        assert_eq!(d.payments[0].status, "SUCCESS");
        for i in [1, 2] {
            let (a, tomb) = answer(&d, i);
            assert!(!a.cancelled && !tomb);
            assert_eq!(a.tx_id.as_deref(), Some("tx1"));
        }
        // A declined payment was never charged: cancelled, nothing written.
        let mut declined = cmd(1, 3, "5.00");
        declined.declined = true;
        let d = decide(&[], &[declined, cancel_cmd(2, 3)]);
        assert_eq!(d.payments.len(), 1);
        let (a, tomb) = answer(&d, 1);
        assert!(a.cancelled && !tomb && a.tx_id.is_none());
        assert!(matches!(
            &d.outbox[1].message,
            Message::PaymentCancelled(r) if r.cancelled
        ));
    }

    /// A process past its expiry is never charged: it writes the
    /// tombstone, and a cancel after it finds nothing was charged.
    #[test]
    fn an_expired_process_writes_the_tombstone() {
        let mut late = cmd(1, 1, "5.00");
        late.expired = true;
        let d = decide(&[], &[late, cancel_cmd(2, 1), cmd(3, 1, "5.00")]);
        assert_eq!(d.payments.len(), 1);
        assert_eq!(
            (d.payments[0].status, d.payments[0].reason.as_deref()),
            (CANCELLED, Some(EXPIRED_REASON))
        );
        let r = charged(&d, 0);
        assert!(!r.success && r.tx_id.is_none());
        assert!(answer(&d, 1).0.cancelled);
        assert!(matches!(&d.outcomes[2], PayOutcome::Repeated(r) if !r.success));
    }

    fn cmd(n: usize, order: i64, amount: &str) -> PayCommand {
        PayCommand {
            kind: PayKind::Process,
            message_id: format!("m{n}"),
            trace_id: format!("t{n}"),
            saga_id: format!("s-{order}"),
            order_id: order,
            amount: amount.parse().unwrap(),
            declined: false,
            expired: false,
            tx_id: format!("tx{n}"),
        }
    }

    fn charged(d: &PayDecision, i: usize) -> &PaymentResult {
        match &d.outcomes[i] {
            PayOutcome::Charged(r) => r,
            other => panic!("command {i}: {other:?}"),
        }
    }

    #[test]
    fn new_orders_are_charged_once_each() {
        let mut declined = cmd(2, 2, "5.00");
        declined.declined = true;
        let d = decide(&[], &[cmd(1, 1, "199.98"), declined]);
        assert_eq!(d.payments.len(), 2);
        assert_eq!(d.processed, ["m1", "m2"]);
        let a = charged(&d, 0);
        assert!(a.success);
        assert_eq!(a.tx_id.as_deref(), Some("tx1"));
        assert_eq!(a.amount.unwrap().to_string(), "199.98");
        let b = charged(&d, 1);
        assert!(!b.success);
        assert_eq!(
            (b.tx_id.as_deref(), b.reason.as_deref()),
            (None, Some(DECLINED))
        );
        assert_eq!(d.payments[1].status, "FAILED");
        assert_eq!(d.outbox.len(), 2);
        assert_eq!(d.outbox[1].item, 1);
        assert_eq!(d.outbox[1].trace_id, "t2");
    }

    #[test]
    fn a_repeat_in_the_batch_re_emits_the_first_charge() {
        // The repeat drew "decline" and another tx id: neither is used.
        let mut again = cmd(2, 1, "199.98");
        again.declined = true;
        let d = decide(&[], &[cmd(1, 1, "199.98"), again, cmd(1, 1, "199.98")]);
        assert_eq!(d.payments.len(), 1);
        assert_eq!(d.processed, ["m1", "m2"]);
        let first = charged(&d, 0).clone();
        assert_eq!(d.outcomes[1], PayOutcome::Repeated(first.clone()));
        assert_eq!(d.outcomes[2], PayOutcome::Repeated(first));
        assert_eq!(d.outbox.len(), 3);
    }

    #[test]
    fn a_repeat_of_a_recorded_payment_re_emits_it() {
        let rec = Recorded {
            order_id: 1,
            saga_id: Some("s-1".into()),
            amount: "12.30".parse().unwrap(),
            status: "FAILED".into(),
            tx_id: None,
            reason: Some(DECLINED.into()),
        };
        // Even with another amount: the recorded one is what was charged.
        let d = decide(&[rec], &[cmd(7, 1, "99.00")]);
        assert!(d.payments.is_empty());
        assert_eq!(d.processed, ["m7"]);
        let PayOutcome::Repeated(r) = &d.outcomes[0] else {
            panic!("{:?}", d.outcomes[0]);
        };
        assert_eq!(
            (
                r.success,
                r.amount.unwrap().to_string(),
                r.reason.as_deref()
            ),
            (false, "12.30".to_string(), Some(DECLINED))
        );
        assert_eq!(d.outbox[0].message, Message::PaymentProcessed(r.clone()));
    }

    #[test]
    fn a_posted_pending_payment_is_not_charged_again() {
        // POST /payments recorded it: no saga, PENDING, a transaction id.
        let rec = Recorded {
            order_id: 1,
            saga_id: None,
            amount: "5.00".parse().unwrap(),
            status: "PENDING".into(),
            tx_id: Some("tx-posted".into()),
            reason: None,
        };
        let d = decide(&[rec], &[cmd(3, 1, "5.00")]);
        assert!(d.payments.is_empty(), "no second row for the order");
        let PayOutcome::Repeated(r) = &d.outcomes[0] else {
            panic!("{:?}", d.outcomes[0]);
        };
        assert!(!r.success);
        assert_eq!(r.saga_id, "s-1", "the command's saga hears about it");
        assert_eq!(r.tx_id.as_deref(), Some("tx-posted"));
        assert_eq!(r.reason.as_deref(), Some("payment recorded as PENDING"));
    }

    #[test]
    fn extreme_amounts_are_exact_or_refused() {
        let d = decide(
            &[],
            &[
                cmd(1, 3, "9999999999.99"),
                cmd(2, 4, "0.01"),
                cmd(3, 5, "1.005"),
                cmd(4, 6, "10000000000.00"),
                cmd(5, 7, "0"),
                cmd(6, 8, "-1.00"),
                cmd(7, 9, "1.500"),
            ],
        );
        assert_eq!(charged(&d, 0).amount.unwrap().to_string(), "9999999999.99");
        assert_eq!(charged(&d, 1).amount.unwrap().to_string(), "0.01");
        for (i, want) in [
            (2, "more than two decimals"),
            (3, "does not fit DECIMAL(12,2)"),
            (4, "must be positive"),
            (5, "must be positive"),
        ] {
            match &d.outcomes[i] {
                PayOutcome::Refused(r) => assert!(r.contains(want), "{r}"),
                other => panic!("command {i}: {other:?}"),
            }
        }
        assert_eq!(charged(&d, 6).amount.unwrap().to_string(), "1.50");
        // Refused commands write nothing and are not recorded as processed.
        assert_eq!(d.payments.len(), 3);
        assert_eq!(d.processed, ["m1", "m2", "m7"]);
        assert_eq!(d.outbox.len(), 3);
        assert_eq!(d.outcomes.len(), 7);
    }

    #[test]
    fn a_refused_command_does_not_block_a_valid_one_for_the_order() {
        let d = decide(&[], &[cmd(1, 1, "0.001"), cmd(2, 1, "3.00")]);
        assert!(matches!(d.outcomes[0], PayOutcome::Refused(_)));
        assert_eq!(charged(&d, 1).amount.unwrap().to_string(), "3.00");
    }
}
