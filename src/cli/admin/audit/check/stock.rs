//! Invariant 2 beyond one saga's view: an order's own log rows, rows of
//! orders that do not exist, and each product's `reserved_qty` against the
//! logs and the orders.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::Checker;
use crate::{
    cli::admin::audit::load::{LogRec, OrderRec},
    roles::inventory::commands::{RELEASE, RESERVE},
};

impl Checker<'_> {
    /// The order's own log rows: each action at most once, for its product
    /// and quantity.
    pub(super) fn logs_of(&mut self, o: &OrderRec) {
        let Some(l) = self.logs.get(&o.id) else {
            return;
        };
        let (reserves, releases) = (l.reserves.clone(), l.releases.clone());
        let products: Vec<i64> = l.products.iter().copied().collect();
        if reserves.len() > 1 {
            self.report.duplicates.double_reserve += 1;
            self.violation(
                2,
                "double_reserve",
                &[&o.id],
                format!("order {} was reserved {} times", o.id, reserves.len()),
            );
        }
        if releases.len() > 1 {
            self.report.duplicates.double_release += 1;
            self.violation(
                2,
                "double_release",
                &[&o.id],
                format!("order {} was released {} times", o.id, releases.len()),
            );
        }
        if products.iter().any(|p| *p != o.product_id) {
            self.violation(
                2,
                "log_product_mismatch",
                &[&o.id],
                format!(
                    "order {} is for product {} but inventory_logs name product(s) {products:?}",
                    o.id, o.product_id
                ),
            );
        }
        if let Some(q) = reserves.iter().find(|q| **q != o.quantity) {
            self.violation(
                2,
                "log_quantity_mismatch",
                &[&o.id],
                format!(
                    "order {} is for {} unit(s) but its reserve moved {q}",
                    o.id, o.quantity
                ),
            );
        }
    }

    /// Log and payment rows of orders that do not exist (rows of orders
    /// placed during the audit, or retired by `retention.sagas`, are left
    /// alone; their units still count).
    pub(super) fn orphans(&mut self) {
        let s = self.s;
        let known: HashSet<i64> = s.orders.iter().map(|o| o.id).collect();
        let retired = |at: &chrono::NaiveDateTime| s.retired_before.is_some_and(|b| *at < b);
        let mut retired_orders = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for l in &s.logs {
            let id = l.order_id;
            if known.contains(&id) || !seen.insert(id) {
                continue;
            }
            let is_retired = retired(&l.created_at);
            if is_retired {
                retired_orders.insert(id);
            }
            if s.late_orders.contains(&id) || is_retired {
                if let Some(ol) = self.logs.get(&id) {
                    *self.standing.entry(l.product_id).or_default() += ol.net();
                }
                continue;
            }
            self.orphan_log(l);
        }
        let mut seen = BTreeSet::new();
        for p in &s.payments {
            let id = p.order_id;
            if known.contains(&id) || s.late_orders.contains(&id) || !seen.insert(id) {
                continue;
            }
            if retired(&p.created_at) {
                retired_orders.insert(id);
                continue;
            }
            self.violation(
                3,
                "payment_without_order",
                [id],
                format!(
                    "payments has a {} payment of {} for order {id}, which does not exist",
                    p.status, p.amount
                ),
            );
        }
        self.report.retired = retired_orders.len() as u64;
    }

    fn orphan_log(&mut self, l: &LogRec) {
        self.violation(
            2,
            "log_without_order",
            &[&l.order_id],
            format!(
                "inventory_logs have rows for order {} (product {}), which does not exist",
                l.order_id, l.product_id
            ),
        );
    }

    /// Invariant 2 per product: `reserved_qty` against the logs and against
    /// the orders; neither quantity negative.
    pub(super) fn products(&mut self) {
        let s = self.s;
        let mut logged: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for l in s.logs.iter().filter(|l| l.success) {
            let e = logged.entry(l.product_id).or_default();
            if l.action == RESERVE {
                e.0 += l.quantity as i64;
            } else if l.action == RELEASE {
                e.1 += l.quantity as i64;
            }
        }
        let stock: BTreeMap<i64, (i64, i64)> = s
            .stock
            .iter()
            .map(|r| {
                (
                    r.product_id,
                    (r.available_qty as i64, r.reserved_qty as i64),
                )
            })
            .collect();
        let products: BTreeSet<i64> = stock
            .keys()
            .chain(logged.keys())
            .chain(self.standing.keys())
            .copied()
            .collect();
        for p in products {
            let (available, reserved) = stock.get(&p).copied().unwrap_or((0, 0));
            let row = if stock.contains_key(&p) {
                ""
            } else {
                " (no inventories row)"
            };
            let pid = p.to_string();
            if available < 0 || reserved < 0 {
                self.violation(
                    2,
                    "negative_stock",
                    &[&pid],
                    format!(
                        "product {p}: available_qty {available}, reserved_qty {reserved}: negative"
                    ),
                );
            }
            let (res, rel) = logged.get(&p).copied().unwrap_or((0, 0));
            if reserved != res - rel {
                self.violation(
                    2,
                    "reserved_vs_logs",
                    &[&pid],
                    format!(
                        "product {p}{row}: reserved_qty is {reserved} but inventory_logs say {} ({res} reserved - {rel} released)",
                        res - rel
                    ),
                );
            }
            let standing = self.standing.get(&p).copied().unwrap_or(0);
            if reserved != standing {
                self.violation(
                    2,
                    "reserved_vs_orders",
                    &[&pid],
                    format!(
                        "product {p}{row}: reserved_qty is {reserved} but the orders whose reservation stands hold {standing}"
                    ),
                );
            }
        }
    }
}
