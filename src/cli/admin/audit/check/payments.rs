//! Invariant 3 for one order: at most one payment, for its amount, SUCCESS
//! exactly when CONFIRMED, FAILED or CANCELLED when compensated, none when
//! the reserve failed or was interrupted (timed out, cancelled) before it
//! answered. A saga interrupted at its payment has the payment role's row
//! (the tombstone `payment.cancel` writes, or the charge that came first).

use super::{
    Checker, Phase, P, PAYMENT_CANCELLED, PAYMENT_FAILED, PAYMENT_PENDING, PAYMENT_SUCCESS, S,
};
use crate::{
    cli::admin::audit::load::{OrderRec, PaymentRec, SagaRec},
    saga::{SagaStatus, SagaStep},
};

impl Checker<'_> {
    /// Invariant 3 for one order.
    pub(super) fn payments_of(
        &mut self,
        o: &OrderRec,
        saga: &SagaRec,
        status: SagaStatus,
        step: SagaStep,
        phase: Phase,
    ) {
        let pays: Vec<&PaymentRec> = self.payments.get(&o.id).cloned().unwrap_or_default();
        if pays.len() > 1 {
            self.report.duplicates.double_charge += 1;
            let st: Vec<&str> = pays.iter().map(|p| p.status.as_str()).collect();
            self.violation(
                3,
                "double_charge",
                &[&o.id],
                format!(
                    "order {} has {} payments ({})",
                    o.id,
                    pays.len(),
                    st.join(", ")
                ),
            );
        }
        for p in &pays {
            if p.amount != o.total_amount {
                self.violation(
                    3,
                    "payment_amount",
                    &[&o.id],
                    format!(
                        "order {} totals {} but its payment is {}",
                        o.id, o.total_amount, p.amount
                    ),
                );
            }
            if ![
                PAYMENT_SUCCESS,
                PAYMENT_FAILED,
                PAYMENT_PENDING,
                PAYMENT_CANCELLED,
            ]
            .contains(&p.status.as_str())
            {
                self.violation(
                    3,
                    "payment_status",
                    &[&o.id],
                    format!("order {}'s payment has unknown status {:?}", o.id, p.status),
                );
            }
        }
        if phase != Phase::Settled {
            return;
        }
        let success = pays.iter().any(|p| p.status == PAYMENT_SUCCESS);
        // A PENDING payment (recorded by POST /payments) did not succeed:
        // the saga that met it failed its payment, as for a FAILED one.
        let failed = pays.iter().any(|p| {
            [PAYMENT_FAILED, PAYMENT_PENDING, PAYMENT_CANCELLED].contains(&p.status.as_str())
        });
        let ids = [o.id.to_string(), saga.saga_id.clone()];
        // Interrupted before its reserve answered: no payment was ever
        // asked for, as for a failed reserve.
        let step = match self.s.interrupted.get(&saga.saga_id) {
            Some(at) if at == P::ReservingInventory.as_str() => P::ReservingInventory,
            _ => step,
        };
        match (status, step) {
            (S::Completed, _) if !success => {
                let why = if failed {
                    "its payment FAILED"
                } else {
                    "it has no payment"
                };
                self.violation(
                    3,
                    "confirmed_without_payment",
                    &ids,
                    format!("order {} is CONFIRMED but {why}", o.id),
                );
            }
            (S::Completed, _) => {}
            (_, P::ReservingInventory) if !pays.is_empty() => self.violation(
                3,
                "charged_after_failed_reserve",
                &ids,
                format!(
                    "order {} failed or was interrupted at its reserve, yet has a payment ({})",
                    o.id, pays[0].status
                ),
            ),
            (_, P::ReservingInventory) => {}
            _ if success => self.violation(
                3,
                "success_not_confirmed",
                &ids,
                format!("order {} is {} but its payment is SUCCESS", o.id, o.status),
            ),
            _ if !failed => self.violation(
                3,
                "failed_without_payment",
                &ids,
                format!(
                    "order {} is {} after a payment failure or cancel, but has no FAILED or CANCELLED payment",
                    o.id, o.status
                ),
            ),
            _ => {}
        }
        let released = self.logs.get(&o.id).is_some_and(|l| !l.releases.is_empty());
        if status == S::Compensated && !released {
            self.violation(
                3,
                "compensated_without_release",
                &ids,
                format!(
                    "order {} is COMPENSATED but inventory_logs have no successful RELEASE for it",
                    o.id
                ),
            );
        }
    }
}
