//! The inventory rules, as one pure function: the stock rows and log rows a
//! batch read, and its reserve/release commands in arrival order, in; the
//! writes and one outcome per command out. No I/O: `exec` reads, calls
//! this, and writes what it returns in the same transaction.
//!
//! The commands are folded one after the other over an in-memory copy of
//! what was read, so a batch decides exactly what the same commands one per
//! transaction would (two commands of one order in a batch included).
//! Quantities are i64 and every sum is checked; a command whose quantity
//! is out of `1..=MAX_QTY`, or whose move would take a stock column past
//! INT, is refused with a reason, never wrapped
//! (docs/design/inventory-decision.md).

use std::collections::{BTreeMap, HashMap};

use crate::{
    domain::MAX_QTY,
    messaging::contracts::{InventoryCommand, InventoryResult, Message},
};

/// `inventory_logs.action` of a reserve.
pub const RESERVE: &str = "RESERVE";
/// `inventory_logs.action` of a release.
pub const RELEASE: &str = "RELEASE";

/// Largest value of `available_qty` and `reserved_qty` (INT columns).
pub const MAX_STOCK: i64 = i32::MAX as i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Reserve,
    Release,
}

/// One command as it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub action: Action,
    pub cmd: InventoryCommand,
    pub message_id: String,
    pub trace_id: String,
}

/// A product's stock as read (and as it is to be written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stock {
    pub available: i64,
    pub reserved: i64,
}

/// A product whose stock changed: its new values, and how many commands
/// moved it (`version` grows by one per move, as one transaction per
/// command would have it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockChange {
    pub stock: Stock,
    pub moves: i64,
}

/// The recorded outcome of one action of an order (its log row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub success: bool,
    pub reason: Option<String>,
}

/// The log rows of one order, as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderLog {
    pub reserve: Option<Recorded>,
    pub release: Option<Recorded>,
}

/// A log row to insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLog {
    pub order_id: i64,
    pub saga_id: String,
    pub product_id: i64,
    pub action: &'static str,
    pub quantity: i32,
    pub success: bool,
    pub reason: Option<String>,
    pub message_id: String,
}

/// A stored failed release that has now succeeded: its row becomes a
/// success with this quantity and message id, and no reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseRetried {
    pub order_id: i64,
    pub quantity: i32,
    pub message_id: String,
}

/// What happened to a command, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// Decided now (moved stock, or was refused).
    Decided,
    /// Seen before: the recorded outcome is sent again, nothing moves.
    Repeated,
    /// A release with nothing reserved, or one that could not move the
    /// units back: worth a warning.
    Unmatched,
}

/// The outcome of one command.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    /// The result to publish (`inventory.reserved` / `inventory.released`).
    pub message: Message,
    /// `reason` label of `inventory_reserve_rejections_total`, for a
    /// refused reserve.
    pub rejection: Option<&'static str>,
    pub note: Note,
    /// For the log line: what the reason code in the message stands for
    /// (`0 available, 3 requested`), when there is more to say.
    pub detail: Option<String>,
}

/// Everything a batch writes, and one outcome per command in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub stock: BTreeMap<i64, StockChange>,
    pub inserts: Vec<NewLog>,
    pub updates: Vec<ReleaseRetried>,
    pub outcomes: Vec<Decided>,
}

/// Where an action's log row of this batch lives.
#[derive(Clone, Copy)]
enum Row {
    /// Read from the database.
    Stored,
    /// In `inserts`, at this index.
    New(usize),
}

#[derive(Default)]
struct Order {
    reserve: Option<(Recorded, Row)>,
    release: Option<(Recorded, Row)>,
}

struct Fold {
    stock: HashMap<i64, Stock>,
    orders: HashMap<i64, Order>,
    out: Decision,
}

/// Decides `cmds` in arrival order against `stock` (every product of the
/// batch that exists) and `logs` (every order of the batch that has rows).
pub fn decide(
    stock: &HashMap<i64, Stock>,
    logs: &HashMap<i64, OrderLog>,
    cmds: &[Command],
) -> Decision {
    let mut f = Fold {
        stock: stock.clone(),
        orders: HashMap::new(),
        out: Decision::default(),
    };
    for c in cmds {
        let id = c.cmd.order_id;
        f.orders.entry(id).or_insert_with(|| {
            let l = logs.get(&id).cloned().unwrap_or_default();
            Order {
                reserve: l.reserve.map(|r| (r, Row::Stored)),
                release: l.release.map(|r| (r, Row::Stored)),
            }
        });
        let d = match c.action {
            Action::Reserve => f.reserve(c),
            Action::Release => f.release(c),
        };
        f.out.outcomes.push(d);
    }
    f.out
}

fn result(cmd: &InventoryCommand, success: bool, reason: Option<String>) -> InventoryResult {
    InventoryResult {
        saga_id: cmd.saga_id.clone(),
        order_id: cmd.order_id,
        product_id: cmd.product_id,
        quantity: cmd.quantity,
        success,
        reason,
    }
}

fn valid(q: i64) -> bool {
    (1..=MAX_QTY).contains(&q)
}

impl Fold {
    fn order(&mut self, c: &Command) -> &mut Order {
        self.orders.entry(c.cmd.order_id).or_default()
    }

    /// Appends the log row of `c` and returns where it is.
    fn insert(&mut self, c: &Command, action: &'static str, quantity: i32, r: &Recorded) -> Row {
        self.out.inserts.push(NewLog {
            order_id: c.cmd.order_id,
            saga_id: c.cmd.saga_id.clone(),
            product_id: c.cmd.product_id,
            action,
            quantity,
            success: r.success,
            reason: r.reason.clone(),
            message_id: c.message_id.clone(),
        });
        Row::New(self.out.inserts.len() - 1)
    }

    /// Records a move of `pid`'s stock to the values `s`.
    fn moved(&mut self, pid: i64, s: Stock) {
        self.stock.insert(pid, s);
        let ch = self
            .out
            .stock
            .entry(pid)
            .or_insert(StockChange { stock: s, moves: 0 });
        ch.stock = s;
        ch.moves = ch.moves.saturating_add(1);
    }

    /// Moves the command's units from available to reserved, or says why
    /// not (reason, rejection label).
    fn take(&mut self, cmd: &InventoryCommand) -> Result<(), (String, &'static str)> {
        let q = i64::from(cmd.quantity);
        if !valid(q) {
            return Err((
                format!("quantity {q} is not between 1 and {MAX_QTY}"),
                "invalid_quantity",
            ));
        }
        let Some(s) = self.stock.get(&cmd.product_id).copied() else {
            return Err((
                format!("product {} not found", cmd.product_id),
                "product_not_found",
            ));
        };
        let Some(available) = s.available.checked_sub(q).filter(|a| *a >= 0) else {
            return Err((
                format!(
                    "insufficient stock: {} available, {q} requested",
                    s.available
                ),
                "insufficient_stock",
            ));
        };
        let Some(reserved) = s.reserved.checked_add(q).filter(|r| *r <= MAX_STOCK) else {
            return Err((
                format!(
                    "reserved stock would exceed {MAX_STOCK}: {} reserved, {q} requested",
                    s.reserved
                ),
                "reserved_overflow",
            ));
        };
        self.moved(
            cmd.product_id,
            Stock {
                available,
                reserved,
            },
        );
        Ok(())
    }

    /// Moves the command's units from reserved back to available, or says
    /// why not.
    fn give_back(&mut self, cmd: &InventoryCommand) -> Result<(), String> {
        let q = i64::from(cmd.quantity);
        if !valid(q) {
            return Err(format!("quantity {q} is not between 1 and {MAX_QTY}"));
        }
        let Some(s) = self.stock.get(&cmd.product_id).copied() else {
            return Err(format!("product {} not found", cmd.product_id));
        };
        let Some(reserved) = s.reserved.checked_sub(q).filter(|r| *r >= 0) else {
            return Err("reserved stock is lower than the release; needs an operator".into());
        };
        let Some(available) = s.available.checked_add(q).filter(|a| *a <= MAX_STOCK) else {
            return Err(format!(
                "available stock would exceed {MAX_STOCK}; needs an operator"
            ));
        };
        self.moved(
            cmd.product_id,
            Stock {
                available,
                reserved,
            },
        );
        Ok(())
    }

    fn reserve(&mut self, c: &Command) -> Decided {
        let cmd = &c.cmd;
        let order = self.order(c);
        if let Some((prev, _)) = &order.reserve {
            return Decided {
                message: Message::Reserved(result(cmd, prev.success, prev.reason.clone())),
                rejection: None,
                note: Note::Repeated,
                detail: None,
            };
        }
        let taken = if order.release.is_some() {
            Err((
                "order already released; late reserve rejected".to_string(),
                "already_released",
            ))
        } else {
            self.take(cmd)
        };
        // The message and the log row carry the original's code
        // (INSUFFICIENT_STOCK, ...): the label in upper case.
        let (rec, rejection, detail) = match taken {
            Ok(()) => (ok(None), None, None),
            Err((detail, label)) => (
                failed(label.to_ascii_uppercase()),
                Some(label),
                Some(detail),
            ),
        };
        let row = self.insert(c, RESERVE, cmd.quantity, &rec);
        let message = Message::Reserved(result(cmd, rec.success, rec.reason.clone()));
        self.order(c).reserve = Some((rec, row));
        Decided {
            message,
            rejection,
            note: Note::Decided,
            detail,
        }
    }

    fn release(&mut self, c: &Command) -> Decided {
        let cmd = &c.cmd;
        let order = self.order(c);
        let reserved = order.reserve.as_ref().is_some_and(|(r, _)| r.success);
        let prev = order.release.clone();
        let repeat = |prev: &Recorded| Decided {
            message: Message::Released(result(cmd, prev.success, prev.reason.clone())),
            rejection: None,
            note: Note::Repeated,
            detail: None,
        };
        let (rec, note) = match prev {
            // Released already (or released nothing): the same answer.
            Some((p, _)) if p.success => return repeat(&p),
            // Nothing to give back: the recorded failure again.
            Some((p, _)) if !reserved => return repeat(&p),
            // A release that failed (and that an operator retries) may
            // succeed now: its row records the new outcome.
            Some((p, row)) => {
                if self.give_back(cmd).is_err() {
                    return repeat(&p);
                }
                match row {
                    Row::New(i) => {
                        let r = &mut self.out.inserts[i];
                        r.success = true;
                        r.quantity = cmd.quantity;
                        r.reason = None;
                        r.message_id = c.message_id.clone();
                    }
                    Row::Stored => self.out.updates.push(ReleaseRetried {
                        order_id: cmd.order_id,
                        quantity: cmd.quantity,
                        message_id: c.message_id.clone(),
                    }),
                }
                self.order(c).release = Some((ok(None), row));
                (ok(None), Note::Decided)
            }
            None => {
                let (qty, rec, note) = if !reserved {
                    // Nothing reserved: record a release of nothing, so a
                    // reserve arriving later is rejected and stock never
                    // leaks.
                    let rec = ok(Some("nothing was reserved for this order".into()));
                    (0, rec, Note::Unmatched)
                } else {
                    match self.give_back(cmd) {
                        Ok(()) => (cmd.quantity, ok(None), Note::Decided),
                        Err(reason) => (cmd.quantity, failed(reason), Note::Unmatched),
                    }
                };
                let row = self.insert(c, RELEASE, qty, &rec);
                self.order(c).release = Some((rec.clone(), row));
                (rec, note)
            }
        };
        Decided {
            message: Message::Released(result(cmd, rec.success, rec.reason)),
            rejection: None,
            note,
            detail: None,
        }
    }
}

fn ok(reason: Option<String>) -> Recorded {
    Recorded {
        success: true,
        reason,
    }
}

fn failed(reason: String) -> Recorded {
    Recorded {
        success: false,
        reason: Some(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: i64 = 7;

    fn order(n: u32) -> i64 {
        i64::from(n)
    }

    fn cmd(action: Action, n: u32, product_id: i64, quantity: i32) -> Command {
        Command {
            action,
            cmd: InventoryCommand {
                saga_id: format!("0190a0c4-7c1e-7000-9000-{n:012}"),
                order_id: order(n),
                product_id,
                quantity,
            },
            message_id: uuid::Uuid::new_v4().to_string(),
            trace_id: "t".into(),
        }
    }

    fn reserve(n: u32, q: i32) -> Command {
        cmd(Action::Reserve, n, P, q)
    }

    fn release(n: u32, q: i32) -> Command {
        cmd(Action::Release, n, P, q)
    }

    fn stock(available: i64, reserved: i64) -> HashMap<i64, Stock> {
        HashMap::from([(
            P,
            Stock {
                available,
                reserved,
            },
        )])
    }

    fn none() -> HashMap<i64, OrderLog> {
        HashMap::new()
    }

    /// (success, reason) of each outcome's message.
    fn answers(d: &Decision) -> Vec<(bool, Option<&str>)> {
        d.outcomes
            .iter()
            .map(|o| match &o.message {
                Message::Reserved(r) | Message::Released(r) => (r.success, r.reason.as_deref()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn after(d: &Decision) -> Option<(i64, i64, i64)> {
        d.stock
            .get(&P)
            .map(|c| (c.stock.available, c.stock.reserved, c.moves))
    }

    fn labels(d: &Decision) -> Vec<Option<&'static str>> {
        d.outcomes.iter().map(|o| o.rejection).collect()
    }

    #[test]
    fn reserves_are_first_come_first_served_and_never_wrap() {
        // Eight of 2^29 sum to 2^32: an i32 sum wrapped to 0 and moved
        // them all. Each is refused against the 10 units there are.
        let cmds: Vec<Command> = (0..16).map(|n| reserve(n, 536_870_912)).collect();
        let d = decide(&stock(10, 0), &none(), &cmds);
        assert_eq!(after(&d), None);
        for (ok, reason) in answers(&d) {
            assert!(!ok);
            assert_eq!(reason, Some("INSUFFICIENT_STOCK"));
        }
        assert_eq!(d.inserts.len(), 16);
        assert!(labels(&d).iter().all(|l| *l == Some("insufficient_stock")));

        let qty = [400_000_000, 500_000_000, 600_000_000, 100_000_000, 1];
        let cmds: Vec<Command> = (0..5).map(|n| reserve(n, qty[n as usize])).collect();
        let d = decide(&stock(1_000_000_000, 0), &none(), &cmds);
        assert_eq!(
            answers(&d),
            [
                (true, None),
                (true, None),
                (false, Some("INSUFFICIENT_STOCK")),
                (true, None),
                (false, Some("INSUFFICIENT_STOCK")),
            ]
        );
        assert_eq!(after(&d), Some((0, 1_000_000_000, 3)));
    }

    #[test]
    fn quantities_out_of_range_are_refused() {
        let cmds = [
            reserve(1, 0),
            reserve(2, -5),
            reserve(3, MAX_QTY as i32 + 1),
            reserve(4, i32::MAX),
            reserve(5, MAX_QTY as i32),
        ];
        let d = decide(&stock(MAX_STOCK, 0), &none(), &cmds);
        let a = answers(&d);
        assert_eq!(a[0], (false, Some("INVALID_QUANTITY")));
        assert_eq!(a[3], (false, Some("INVALID_QUANTITY")));
        assert_eq!(a[4], (true, None));
        assert_eq!(
            labels(&d)[..4],
            [Some("invalid_quantity"); 4],
            "{:?}",
            labels(&d)
        );
        assert_eq!(after(&d), Some((MAX_STOCK - MAX_QTY, MAX_QTY, 1)));
        // A release of a reserved order with a bad quantity fails (an
        // operator looks at it) and moves nothing.
        let cmds = [reserve(1, 5), release(1, MAX_QTY as i32 + 1)];
        let d = decide(&stock(10, 0), &none(), &cmds);
        assert_eq!(
            answers(&d)[1],
            (
                false,
                Some("quantity 1000000001 is not between 1 and 1000000000")
            )
        );
        assert_eq!(after(&d), Some((5, 5, 1)));
    }

    #[test]
    fn reserved_stock_never_passes_int() {
        // i32::MAX reserved already: one more unit does not fit the column.
        let d = decide(&stock(MAX_QTY, MAX_STOCK), &none(), &[reserve(1, 1)]);
        assert_eq!(answers(&d), [(false, Some("RESERVED_OVERFLOW"))]);
        assert_eq!(labels(&d), [Some("reserved_overflow")]);
        assert_eq!(after(&d), None);
        // Many orders up to the limit exactly, then one past it.
        let mut cmds: Vec<Command> = (0..2).map(|n| reserve(n, MAX_QTY as i32)).collect();
        cmds.push(reserve(2, 147_483_647));
        cmds.push(reserve(3, 1));
        let d = decide(&stock(MAX_STOCK, 0), &none(), &cmds);
        let a = answers(&d);
        assert!(a[..3].iter().all(|(ok, _)| *ok), "{a:?}");
        assert_eq!(a[3], (false, Some("INSUFFICIENT_STOCK")));
        assert_eq!(after(&d), Some((0, MAX_STOCK, 3)));
        // A release that would take available past INT fails too.
        let d = decide(&stock(MAX_STOCK, 0), &none(), &[reserve(1, 10)]);
        assert_eq!(after(&d), Some((MAX_STOCK - 10, 10, 1)));
        let logs = HashMap::from([(
            order(1),
            OrderLog {
                reserve: Some(ok(None)),
                release: None,
            },
        )]);
        let d = decide(&stock(MAX_STOCK, 10), &logs, &[release(1, 10)]);
        assert_eq!(
            answers(&d),
            [(
                false,
                Some("available stock would exceed 2147483647; needs an operator")
            )]
        );
        assert_eq!(after(&d), None);
    }

    #[test]
    fn unknown_product_is_refused() {
        let d = decide(&HashMap::new(), &none(), &[reserve(1, 1)]);
        assert_eq!(answers(&d), [(false, Some("PRODUCT_NOT_FOUND"))]);
        assert_eq!(labels(&d), [Some("product_not_found")]);
        assert_eq!(d.inserts[0].action, RESERVE);
        assert!(!d.inserts[0].success);
    }

    #[test]
    fn a_repeated_reserve_re_emits_without_moving_again() {
        let r = reserve(1, 3);
        let d = decide(
            &stock(10, 0),
            &none(),
            &[r.clone(), r.clone(), reserve(1, 4)],
        );
        assert_eq!(answers(&d), [(true, None); 3]);
        assert_eq!(
            d.outcomes.iter().map(|o| o.note).collect::<Vec<_>>(),
            [Note::Decided, Note::Repeated, Note::Repeated]
        );
        assert_eq!(after(&d), Some((7, 3, 1)));
        assert_eq!(d.inserts.len(), 1);
        // Recorded by an earlier batch: the same answer, nothing written.
        let logs = HashMap::from([(
            order(1),
            OrderLog {
                reserve: Some(failed("INSUFFICIENT_STOCK".into())),
                release: None,
            },
        )]);
        let d = decide(&stock(10, 0), &logs, &[r]);
        assert_eq!(answers(&d), [(false, Some("INSUFFICIENT_STOCK"))]);
        assert_eq!(labels(&d), [None]);
        assert!(d.inserts.is_empty() && d.stock.is_empty());
    }

    #[test]
    fn release_before_reserve_records_a_release_of_nothing_and_rejects_the_reserve() {
        let d = decide(&stock(10, 0), &none(), &[release(1, 3), reserve(1, 3)]);
        assert_eq!(
            answers(&d),
            [
                (true, Some("nothing was reserved for this order")),
                (false, Some("ALREADY_RELEASED")),
            ]
        );
        assert_eq!(labels(&d), [None, Some("already_released")]);
        assert_eq!(d.outcomes[0].note, Note::Unmatched);
        assert_eq!(after(&d), None);
        assert_eq!(
            d.inserts
                .iter()
                .map(|l| (l.action, l.quantity, l.success))
                .collect::<Vec<_>>(),
            [(RELEASE, 0, true), (RESERVE, 3, false)]
        );
        // Across batches too.
        let logs = HashMap::from([(
            order(1),
            OrderLog {
                reserve: None,
                release: Some(ok(Some("nothing was reserved for this order".into()))),
            },
        )]);
        let d = decide(&stock(10, 0), &logs, &[reserve(1, 3), release(1, 3)]);
        assert_eq!(
            answers(&d),
            [
                (false, Some("ALREADY_RELEASED")),
                (true, Some("nothing was reserved for this order")),
            ]
        );
        assert_eq!(d.inserts.len(), 1);
    }

    #[test]
    fn reserve_then_release_in_one_batch_is_as_one_after_the_other() {
        let cmds = [reserve(1, 4), reserve(2, 5), release(1, 4), release(1, 4)];
        let d = decide(&stock(10, 0), &none(), &cmds);
        assert_eq!(answers(&d), [(true, None); 4]);
        assert_eq!(d.outcomes[3].note, Note::Repeated);
        // 10 -> 6 -> 1 -> 5 available; three moves.
        assert_eq!(after(&d), Some((5, 5, 3)));
        assert_eq!(d.inserts.len(), 3);
    }

    #[test]
    fn a_release_that_cannot_give_back_fails_and_may_succeed_later() {
        // Reserved 5, but an operator lowered reserved stock to 2.
        let logs = HashMap::from([(
            order(1),
            OrderLog {
                reserve: Some(ok(None)),
                release: None,
            },
        )]);
        let lower = "reserved stock is lower than the release; needs an operator";
        let d = decide(&stock(0, 2), &logs, &[release(1, 5), release(1, 5)]);
        assert_eq!(answers(&d), [(false, Some(lower)); 2]);
        assert_eq!(d.outcomes[0].note, Note::Unmatched);
        assert_eq!(d.outcomes[1].note, Note::Repeated);
        assert_eq!(after(&d), None);
        assert_eq!(d.inserts.len(), 1);
        assert_eq!(d.inserts[0].quantity, 5);
        // Retried once the stock is there: the stored row becomes a success.
        let logs = HashMap::from([(
            order(1),
            OrderLog {
                reserve: Some(ok(None)),
                release: Some(failed(lower.into())),
            },
        )]);
        let again = release(1, 5);
        let d = decide(&stock(0, 5), &logs, &[again.clone(), again.clone()]);
        assert_eq!(answers(&d), [(true, None); 2]);
        assert_eq!(after(&d), Some((5, 0, 1)));
        assert!(d.inserts.is_empty());
        assert_eq!(
            d.updates,
            [ReleaseRetried {
                order_id: order(1),
                quantity: 5,
                message_id: again.message_id.clone(),
            }]
        );
        // Still short: the recorded failure again, nothing written.
        let d = decide(&stock(0, 4), &logs, &[again]);
        assert_eq!(answers(&d), [(false, Some(lower))]);
        assert!(d.updates.is_empty() && d.stock.is_empty());
        // Failed and retried within one batch: the new row is written as
        // the success it became.
        let s = HashMap::from([
            (
                P,
                Stock {
                    available: 0,
                    reserved: 0,
                },
            ),
            (
                8,
                Stock {
                    available: 10,
                    reserved: 0,
                },
            ),
        ]);
        // Order 1 reserved 5 of product 8 but its release names product 7.
        let cmds = [
            cmd(Action::Reserve, 1, 8, 5),
            release(1, 5),
            cmd(Action::Release, 1, 8, 5),
        ];
        let d = decide(&s, &none(), &cmds);
        assert_eq!(
            answers(&d),
            [(true, None), (false, Some(lower)), (true, None)]
        );
        assert_eq!(d.inserts.len(), 2);
        let rel = &d.inserts[1];
        assert_eq!(
            (
                rel.action,
                rel.success,
                rel.reason.as_deref(),
                rel.product_id
            ),
            (RELEASE, true, None, P)
        );
        assert_eq!(rel.message_id, cmds[2].message_id);
        assert!(d.updates.is_empty());
    }

    #[test]
    fn a_release_of_a_refused_reserve_releases_nothing() {
        let d = decide(&stock(1, 0), &none(), &[reserve(1, 5), release(1, 5)]);
        assert_eq!(
            answers(&d),
            [
                (false, Some("INSUFFICIENT_STOCK")),
                (true, Some("nothing was reserved for this order")),
            ]
        );
        assert_eq!(after(&d), None);
    }

    #[test]
    fn many_orders_per_product_with_duplicates() {
        let mut cmds = Vec::new();
        for n in 0..1000 {
            cmds.push(reserve(n, 1_000_000));
            cmds.push(reserve(n, 1_000_000));
        }
        for n in (0..1000).step_by(2) {
            cmds.push(release(n, 1_000_000));
        }
        let d = decide(&stock(MAX_QTY, 0), &none(), &cmds);
        assert_eq!(d.outcomes.len(), 2500);
        assert!(answers(&d).iter().all(|(ok, _)| *ok));
        assert_eq!(after(&d), Some((500_000_000, 500_000_000, 1500)));
        assert_eq!(d.inserts.len(), 1500);
    }
}
