//! What placing a batch of orders writes and answers: the rows of each
//! order, made once with their ids before anything is written, and the pure
//! decision (orders in arrival order + what the database already holds ->
//! rows to insert + one outcome per order). No I/O; the writer
//! (`writer.rs`) reads, calls [`decide`] and writes.

use std::collections::{HashMap, HashSet};

use super::{
    model::{NewSagaEvent, OrderRow, SagaRow},
    orders::NewOrder,
};
use crate::{
    domain::Money,
    messaging::{
        contracts::{InventoryCommand, Message},
        OutboxMessage,
    },
    saga::{OrderStatus, SagaStatus, SagaStep},
};

/// The rows one new order writes: order, saga, first timeline row, and the
/// reserve command.
#[derive(Clone, Debug)]
pub struct Rows {
    pub row: OrderRow,
    pub saga: SagaRow,
    pub event: NewSagaEvent,
    pub cmd: OutboxMessage,
}

/// One POST /orders to place, with its ids fixed: every attempt at writing
/// it writes these same rows, so an attempt whose outcome was lost is
/// recognised by its order id instead of being placed again.
#[derive(Clone, Debug)]
pub struct Planned {
    pub new: NewOrder,
    pub key: Option<String>,
    pub rows: Rows,
}

impl Planned {
    /// Makes the order's rows with its id `order_id` (from the block
    /// allocator, `ids.rs`) and its saga and message ids.
    pub fn new(new: NewOrder, key: Option<String>, trace_id: &str, order_id: i64) -> Self {
        let rows = rows(&new, key.clone(), trace_id, order_id);
        Self { new, key, rows }
    }
}

fn rows(new: &NewOrder, key: Option<String>, trace_id: &str, order_id: i64) -> Rows {
    let saga_id = uuid::Uuid::now_v7().to_string();
    let now = chrono::Utc::now().naive_utc();
    let row = OrderRow {
        id: order_id,
        saga_id: saga_id.clone(),
        user_id: new.user_id,
        product_id: new.product_id,
        quantity: new.quantity,
        total_amount: new.total_amount.decimal(),
        status: OrderStatus::Pending.as_str().into(),
        idempotency_key: key,
        trace_id: trace_id.into(),
        created_at: now,
        updated_at: now,
    };
    let saga = SagaRow {
        saga_id: saga_id.clone(),
        order_id,
        status: SagaStatus::InProgress.as_str().into(),
        current_step: SagaStep::ReservingInventory.as_str().into(),
        failure_reason: None,
        last_event_id: None,
        retry_count: 0,
        failed_step: None,
        step_started_at: now,
        created_at: now,
        updated_at: now,
    };
    let cmd = OutboxMessage::new(
        &Message::Reserve(InventoryCommand {
            saga_id: saga_id.clone(),
            order_id,
            product_id: new.product_id,
            quantity: new.quantity,
        }),
        trace_id,
    );
    let event = NewSagaEvent {
        saga_id,
        event: "order.created".into(),
        from_status: None,
        from_step: None,
        to_status: saga.status.clone(),
        to_step: saga.current_step.clone(),
        message_id: Some(cmd.row.message_id.clone()),
        reason: None,
    };
    Rows {
        row,
        saga,
        event,
        cmd,
    }
}

/// Which earlier order an Idempotency-Key names: keys belong to their
/// user and compare byte for byte (`abc` and `ABC` are two keys), as the
/// unique index on `orders (idempotency_user, idempotency_key)` (the user
/// of a keyed order) with its binary
/// collation does (docs/contract.md section 4).
pub fn key_id(user_id: i64, key: &str) -> (i64, String) {
    (user_id, key.to_string())
}

/// What an attempt must read before deciding.
#[derive(Debug, PartialEq)]
pub struct ToRead<'a> {
    /// The batch's own order ids, to learn which are written already.
    pub ids: Vec<i64>,
    /// The batch's Idempotency-Keys, to find the orders they name.
    pub keys: Vec<&'a str>,
    /// The users of those keys: a key is looked up with its user, as the
    /// unique index `(idempotency_user, idempotency_key)` is ordered. By the key
    /// alone the index cannot be sought and every keyed POST would scan
    /// it whole.
    pub users: Vec<i64>,
}

/// What to read for `jobs`. The batch's own ids only after a failed
/// attempt (before it they exist nowhere), and its keys if any: so a first
/// attempt without keys, the hot path, reads nothing.
pub fn to_read(jobs: &[Planned], after_failure: bool) -> ToRead<'_> {
    let ids = if after_failure {
        jobs.iter().map(|p| p.rows.row.id).collect()
    } else {
        Vec::new()
    };
    let keyed = jobs
        .iter()
        .filter_map(|p| Some((p.new.user_id, p.key.as_deref()?)));
    let (mut users, keys): (Vec<i64>, Vec<&str>) = keyed.unzip();
    users.sort_unstable();
    users.dedup();
    ToRead { ids, keys, users }
}

/// What the database holds of a batch, read before deciding.
#[derive(Default, Debug)]
pub struct Seen {
    /// Ids among the batch's own order ids that are already written (an
    /// earlier attempt committed, its reply was lost).
    pub ids: HashSet<i64>,
    /// Existing orders by [`key_id`] of their user and Idempotency-Key.
    pub by_key: HashMap<(i64, String), OrderRow>,
}

impl Seen {
    /// Sorts rows read for a batch into [`Seen`]: `own_ids` are the
    /// batch's order ids that were asked for.
    pub fn from_rows(rows: Vec<OrderRow>, own_ids: &HashSet<i64>) -> Self {
        let mut seen = Seen::default();
        for o in rows {
            if own_ids.contains(&o.id) {
                seen.ids.insert(o.id);
            }
            if let Some(k) = &o.idempotency_key {
                seen.by_key.insert(key_id(o.user_id, k), o);
            }
        }
        seen
    }
}

/// The answer to one order.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// This request's order (its planned rows) is written: now, or by an
    /// earlier attempt whose reply was lost.
    Created,
    /// The Idempotency-Key was used before with the same body: that order.
    Replayed(OrderRow),
    /// The Idempotency-Key was used before with a different body.
    Conflict,
}

/// What to do for a batch.
#[derive(Debug, PartialEq)]
pub struct Decision {
    /// Indexes (into the batch, ascending) of the orders to insert.
    pub insert: Vec<usize>,
    /// One per order, in order.
    pub outcomes: Vec<Outcome>,
}

/// Decides a batch in arrival order. For each order: already written under
/// its own id -> created; its key names an existing order -> replayed when
/// the body is the same, conflict when not; its key was taken by an
/// earlier order of this batch -> the same, against that order; otherwise
/// insert it.
pub fn decide(jobs: &[Planned], seen: &Seen) -> Decision {
    let mut insert = Vec::with_capacity(jobs.len());
    let mut outcomes = Vec::with_capacity(jobs.len());
    // Keys this batch inserts, with the index of the order inserting it.
    let mut claimed: HashMap<(i64, String), usize> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if seen.ids.contains(&job.rows.row.id) {
            outcomes.push(Outcome::Created);
            continue;
        }
        let Some(key) = &job.key else {
            insert.push(i);
            outcomes.push(Outcome::Created);
            continue;
        };
        let id = key_id(job.new.user_id, key);
        let earlier = seen
            .by_key
            .get(&id)
            .or_else(|| claimed.get(&id).map(|&j| &jobs[j].rows.row));
        outcomes.push(match earlier {
            Some(o) if same_request(o, &job.new) => Outcome::Replayed(o.clone()),
            Some(_) => Outcome::Conflict,
            None => {
                claimed.insert(id, i);
                insert.push(i);
                Outcome::Created
            }
        });
    }
    Decision { insert, outcomes }
}

fn same_request(o: &OrderRow, n: &NewOrder) -> bool {
    o.user_id == n.user_id
        && o.product_id == n.product_id
        && o.quantity == n.quantity
        && Money::from_db(o.total_amount) == n.total_amount
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(qty: i32, key: Option<&str>) -> Planned {
        order_of(7, qty, key)
    }

    fn order_of(user_id: i64, qty: i32, key: Option<&str>) -> Planned {
        Planned::new(
            NewOrder {
                user_id,
                product_id: 1001,
                quantity: qty,
                total_amount: "10.50".parse().unwrap(),
            },
            key.map(String::from),
            "trace",
            next_id(),
        )
    }

    /// Distinct ids, as the allocator hands out.
    fn next_id() -> i64 {
        static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn seen(ids: &[&Planned], rows: &[&Planned]) -> Seen {
        let own: HashSet<i64> = ids.iter().map(|p| p.rows.row.id).collect();
        Seen::from_rows(rows.iter().map(|p| p.rows.row.clone()).collect(), &own)
    }

    #[test]
    fn ids_are_made_once_and_tie_the_rows_together() {
        let p = order(1, Some("k"));
        let r = &p.rows;
        assert_eq!(r.saga.order_id, r.row.id);
        assert_eq!(r.saga.saga_id, r.row.saga_id);
        assert_eq!(r.event.saga_id, r.row.saga_id);
        assert_eq!(r.event.message_id.as_ref(), Some(&r.cmd.row.message_id));
        assert_eq!(r.cmd.row.saga_id, r.row.saga_id);
        assert_eq!(r.row.idempotency_key.as_deref(), Some("k"));
        // A retry of the same job writes the same rows (a clone, never a
        // new plan).
        assert_eq!(p.clone().rows.row.id, r.row.id);
        assert_ne!(order(1, None).rows.row.id, r.row.id);
    }

    #[test]
    fn a_first_attempt_without_keys_reads_nothing() {
        let jobs: Vec<Planned> = (0..64).map(|_| order(1, None)).collect();
        let none = ToRead {
            ids: vec![],
            keys: vec![],
            users: vec![],
        };
        assert_eq!(to_read(&jobs, false), none);
        assert_eq!(to_read(&jobs[..1], false), none);
        // After a failed attempt: every own id.
        let r = to_read(&jobs, true);
        assert_eq!(r.ids.len(), 64);
        assert!(r.keys.is_empty());
        // Keys are read on every attempt.
        let keyed = [order(1, None), order(1, Some("k"))];
        assert_eq!(
            to_read(&keyed, false),
            ToRead {
                ids: vec![],
                keys: vec!["k"],
                users: vec![keyed[1].new.user_id],
            }
        );
        // Each key with its user, every user once.
        let many = [
            order_of(5, 1, Some("a")),
            order_of(3, 1, Some("b")),
            order_of(5, 1, Some("c")),
            order_of(4, 1, None),
        ];
        let r = to_read(&many, false);
        assert_eq!(r.keys, vec!["a", "b", "c"]);
        assert_eq!(r.users, vec![3, 5]);
    }

    #[test]
    fn keys_are_per_user_and_byte_for_byte() {
        // In one batch and against rows already written alike.
        let jobs = [
            order_of(1, 1, Some("abc")),
            order_of(2, 1, Some("abc")),
            order_of(1, 1, Some("ABC")),
            order_of(1, 1, Some("abc")),
            order_of(1, 2, Some("abc")),
        ];
        let d = decide(&jobs, &Seen::default());
        assert_eq!(d.insert, vec![0, 1, 2]);
        assert_eq!(
            d.outcomes,
            vec![
                Outcome::Created,
                Outcome::Created,
                Outcome::Created,
                Outcome::Replayed(jobs[0].rows.row.clone()),
                Outcome::Conflict,
            ]
        );
        let written = seen(&[], &[&jobs[0]]);
        let again = [
            order_of(2, 1, Some("abc")),
            order_of(1, 1, Some("ABC")),
            order_of(1, 1, Some("abc")),
            order_of(1, 3, Some("abc")),
        ];
        let d = decide(&again, &written);
        assert_eq!(d.insert, vec![0, 1]);
        assert_eq!(
            d.outcomes[2..],
            [
                Outcome::Replayed(jobs[0].rows.row.clone()),
                Outcome::Conflict
            ]
        );
    }

    #[test]
    fn a_fresh_batch_inserts_everything() {
        for n in [1, 64] {
            let jobs: Vec<Planned> = (0..n).map(|_| order(1, None)).collect();
            let d = decide(&jobs, &Seen::default());
            assert_eq!(d.insert, (0..n).collect::<Vec<_>>());
            assert_eq!(d.outcomes, vec![Outcome::Created; n]);
        }
    }

    #[test]
    fn orders_written_by_a_lost_attempt_are_created_not_written_again() {
        let jobs: Vec<Planned> = (0..64)
            .map(|i| order(1, (i % 3 == 0).then(|| format!("k{i}")).as_deref()))
            .collect();
        // The first attempt committed every other order... (a batch is
        // all or nothing, but a split part is a batch of its own).
        let written: Vec<&Planned> = jobs.iter().step_by(2).collect();
        let all: Vec<&Planned> = jobs.iter().collect();
        let d = decide(&jobs, &seen(&all, &written));
        assert_eq!(d.insert, (1..64).step_by(2).collect::<Vec<_>>());
        assert_eq!(d.outcomes, vec![Outcome::Created; 64]);
        // ...and a batch of one.
        let one = [order(1, Some("k"))];
        let d = decide(&one, &seen(&[&one[0]], &[&one[0]]));
        assert_eq!(d.insert, Vec::<usize>::new());
        assert_eq!(d.outcomes, vec![Outcome::Created]);
    }

    #[test]
    fn an_existing_key_replays_the_same_body_and_refuses_another() {
        let earlier = order(1, Some("Key-1"));
        let jobs = [
            order(1, Some("Key-1")),
            order(2, Some("Key-1")),
            order(1, None),
        ];
        let d = decide(&jobs, &seen(&jobs.iter().collect::<Vec<_>>(), &[&earlier]));
        assert_eq!(d.insert, vec![2]);
        assert_eq!(
            d.outcomes,
            vec![
                Outcome::Replayed(earlier.rows.row.clone()),
                Outcome::Conflict,
                Outcome::Created
            ]
        );
    }

    #[test]
    fn a_key_repeated_in_a_batch_is_created_once_then_replayed_or_refused() {
        let jobs = [
            order(1, Some("a")),
            order(1, Some("b")),
            order(1, Some("a")),
            order(3, Some("a")),
            order(1, Some("b")),
        ];
        let d = decide(&jobs, &Seen::default());
        assert_eq!(d.insert, vec![0, 1]);
        assert_eq!(
            d.outcomes,
            vec![
                Outcome::Created,
                Outcome::Created,
                Outcome::Replayed(jobs[0].rows.row.clone()),
                Outcome::Conflict,
                Outcome::Replayed(jobs[1].rows.row.clone()),
            ]
        );
        // After a lost commit of that batch, the retry reads the first two
        // back (by id and by key) and answers everyone the same way.
        let all: Vec<&Planned> = jobs.iter().collect();
        let again = decide(&jobs, &seen(&all, &[&jobs[0], &jobs[1]]));
        assert_eq!(again.insert, Vec::<usize>::new());
        assert_eq!(again.outcomes, d.outcomes);
    }

    #[test]
    fn a_key_taken_by_a_concurrent_request_is_answered_from_the_read() {
        // The insert hit the unique key; the retry reads the other
        // request's order under that key.
        let theirs = order(1, Some("k"));
        let jobs = [order(1, None), order(1, Some("k")), order(1, None)];
        let all: Vec<&Planned> = jobs.iter().collect();
        let d = decide(&jobs, &seen(&all, &[&theirs]));
        assert_eq!(d.insert, vec![0, 2]);
        assert_eq!(d.outcomes[1], Outcome::Replayed(theirs.rows.row.clone()));
    }
}
