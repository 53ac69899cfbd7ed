//! The payment executor (`roles::payment::charge::execute`) against the
//! real MariaDB: a property test that random command sequences (many
//! orders, repeated commands, redeliveries, random declines, amounts at and
//! past the limits) cut into random batches end with the same rows and the
//! same outcomes as the same sequence one command per batch, each on a
//! fresh database, with at most one payment per order after every batch;
//! and a test that one command failing for good in a batch fails alone.
//!
//! The property test runs 8 cases by default; `DOP_PROPTEST_CASES=N`
//! runs N (of each property test in this directory).

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use dop::{
    db::batch::{ItemFailure, Runner},
    observability::Metrics,
    roles::{
        payment::{
            charge::{self, Charged},
            decide::{PayCommand, PayKind, PayOutcome},
            schema::{payments, processed_events},
        },
        Role,
    },
};
use proptest::prelude::*;

use crate::harness::{metric, ScratchDb};

/// A runner as the role builds it, over a scratch database.
pub fn runner<'a>(name: &'static str, db: &'a ScratchDb, metrics: &'a Metrics) -> Runner<'a> {
    Runner::new(name, &db.pool, metrics)
}

/// Amounts of the orders: the extremes, ordinary ones, and two refused.
const AMOUNTS: [&str; 7] = [
    "199.98",
    "0.01",
    "9999999999.99",
    "12.30",
    "1.005",
    "10000000000.00",
    "5",
];

fn uuid(kind: u8, n: usize) -> String {
    format!("00000000-0000-4000-8{kind:03}-{n:012}")
}

/// Command number `pos` of a sequence: order `o`, message variant `k` (the
/// same (o, k) is a redelivery of the same message; another k is another
/// command for the same order), and its decline draw.
fn command(pos: usize, (o, k, declined): (usize, usize, bool)) -> PayCommand {
    PayCommand {
        kind: PayKind::Process,
        message_id: uuid(1, o * 10 + k),
        trace_id: format!("trace-{pos}"),
        saga_id: uuid(2, o),
        order_id: o as i64 + 1,
        amount: AMOUNTS[o % AMOUNTS.len()].parse().unwrap(),
        declined,
        expired: false,
        tx_id: uuid(4, pos),
    }
}

type PaymentRow = (
    i64,
    Option<String>,
    rust_decimal::Decimal,
    String,
    Option<String>,
    Option<String>,
);

/// Everything the executor leaves behind, in a comparable order.
#[derive(Debug, PartialEq)]
struct Rows {
    payments: Vec<PaymentRow>,
    processed: Vec<String>,
    /// (routing key, payload, trace id), sorted.
    outbox: Vec<(String, String, String)>,
}

async fn rows(db: &ScratchDb) -> Rows {
    use dop::messaging::outbox::outbox;
    let mut c = db.conn().await;
    let payments = payments::table
        .order(payments::order_id)
        .select((
            payments::order_id,
            payments::saga_id,
            payments::amount,
            payments::status,
            payments::tx_id,
            payments::reason,
        ))
        .load(&mut c)
        .await
        .unwrap();
    let processed = processed_events::table
        .order(processed_events::message_id)
        .select(processed_events::message_id)
        .load(&mut c)
        .await
        .unwrap();
    let mut outbox: Vec<(String, String, String)> = outbox::table
        .select((outbox::routing_key, outbox::payload, outbox::trace_id))
        .load(&mut c)
        .await
        .unwrap();
    outbox.sort();
    Rows {
        payments,
        processed,
        outbox,
    }
}

/// Runs `cmds` cut into batches (`cut[i]`: a batch ends after command i)
/// on a fresh database, checking the invariants after every batch.
async fn run(cmds: &[PayCommand], cut: &[bool]) -> Result<(Vec<PayOutcome>, Rows), TestCaseError> {
    let db = ScratchDb::new(Role::Payment).await;
    let metrics = Metrics::new("payment");
    let r = runner("payment", &db, &metrics);
    let mut outcomes = Vec::new();
    let mut from = 0;
    for i in 0..cmds.len() {
        if !(cut[i] || i + 1 == cmds.len()) {
            continue;
        }
        for (n, res) in charge::execute(&r, &cmds[from..=i])
            .await
            .into_iter()
            .enumerate()
        {
            let Charged { outcome, msg } = res
                .map_err(|e| TestCaseError::fail(format!("command {} failed: {e:?}", from + n)))?;
            prop_assert_eq!(msg.is_some(), !matches!(outcome, PayOutcome::Refused(_)));
            outcomes.push(outcome);
        }
        from = i + 1;
        // At most one payment per order, every handled id recorded once.
        let now = rows(&db).await;
        let mut orders: Vec<&i64> = now.payments.iter().map(|p| &p.0).collect();
        orders.dedup();
        prop_assert_eq!(
            orders.len(),
            now.payments.len(),
            "two payments for one order"
        );
        for (c, o) in cmds.iter().zip(&outcomes) {
            let recorded = now
                .processed
                .iter()
                .filter(|id| **id == c.message_id)
                .count();
            match o {
                PayOutcome::Refused(_) => {}
                _ => prop_assert_eq!(recorded, 1, "processed id {}", c.message_id),
            }
        }
    }
    let end = rows(&db).await;
    db.drop().await;
    Ok((outcomes, end))
}

fn sequence() -> impl Strategy<Value = (Vec<PayCommand>, Vec<bool>)> {
    (1..=AMOUNTS.len() + 2)
        .prop_flat_map(|orders| prop::collection::vec((0..orders, 0..3usize, any::<bool>()), 1..24))
        .prop_flat_map(|seq| {
            let n = seq.len();
            let cmds: Vec<PayCommand> = seq
                .into_iter()
                .enumerate()
                .map(|(i, s)| command(i, s))
                .collect();
            (
                Just(cmds),
                prop::collection::vec(prop::bool::weighted(0.3), n),
            )
        })
}

#[test]
fn batches_decide_as_one_command_at_a_time() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runner = crate::harness::prop_runner(8);
    runner
        .run(&sequence(), |(cmds, cut)| {
            rt.block_on(async {
                let (batched, rows_batched) = run(&cmds, &cut).await?;
                let (alone, rows_alone) = run(&cmds, &vec![true; cmds.len()]).await?;
                prop_assert_eq!(&batched, &alone);
                prop_assert_eq!(&rows_batched, &rows_alone);
                // The rule itself: an order's first valid command charges
                // it, every later one re-emits that charge.
                let mut first = std::collections::HashMap::new();
                for (c, o) in cmds.iter().zip(&batched) {
                    match o {
                        PayOutcome::Charged(r) => {
                            prop_assert!(first.insert(c.order_id, r.clone()).is_none());
                            prop_assert_eq!(r.success, !c.declined);
                        }
                        PayOutcome::Repeated(r) => prop_assert_eq!(Some(r), first.get(&c.order_id)),
                        PayOutcome::Refused(_) => prop_assert!(!first.contains_key(&c.order_id)),
                        PayOutcome::Cancelled { .. } => prop_assert!(false, "no cancel was sent"),
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}

/// One command whose writes the database refuses (a message id longer than
/// its column) fails alone as permanent; one whose amount does not fit is
/// refused; the rest of the batch commits.
#[tokio::test]
async fn a_permanent_failure_fails_only_its_command() {
    let db = ScratchDb::new(Role::Payment).await;
    let metrics = Metrics::new("payment");
    let r = runner("payment", &db, &metrics);
    let mut cmds: Vec<PayCommand> = (0..6).map(|i| command(i, (i, 0, false))).collect();
    for c in &mut cmds {
        c.amount = "10.00".parse().unwrap();
    }
    cmds[1].amount = "10000000000.00".parse().unwrap();
    cmds[3].message_id = "x".repeat(40);
    let res = charge::execute(&r, &cmds).await;
    for (i, res) in res.iter().enumerate() {
        match (i, res) {
            (
                1,
                Ok(Charged {
                    outcome: PayOutcome::Refused(why),
                    msg: None,
                }),
            ) => {
                assert!(why.contains("DECIMAL(12,2)"), "{why}")
            }
            (3, Err(ItemFailure::Permanent(why))) => assert!(why.contains("too long"), "{why}"),
            (1 | 3, other) => panic!("command {i}: {other:?}"),
            (
                _,
                Ok(Charged {
                    outcome: PayOutcome::Charged(p),
                    msg: Some(_),
                }),
            ) => assert!(p.success),
            (_, other) => panic!("command {i}: {other:?}"),
        }
    }
    let end = rows(&db).await;
    let charged: Vec<i64> = end.payments.iter().map(|p| p.0).collect();
    assert_eq!(
        charged,
        [&cmds[0], &cmds[2], &cmds[4], &cmds[5]].map(|c| c.order_id)
    );
    assert_eq!(end.outbox.len(), 4);
    // The failed attempts were counted.
    let text = metrics.encode();
    assert!(
        metric(&text, "batch_failures_total", "cause=\"permanent\"") >= 1.0,
        "{text}"
    );
    db.drop().await;
}

/// Two replicas charging the same order at once: the other one's charge,
/// not yet committed, is invisible to this executor's read; its insert
/// waits on the unique key and fails as a duplicate once the other commits;
/// the Runner tries again, the re-read finds the row and re-emits it.
#[tokio::test]
async fn a_concurrent_charge_of_the_same_order_is_re_emitted() {
    use diesel_async::SimpleAsyncConnection;
    let db = ScratchDb::new(Role::Payment).await;
    let metrics = Metrics::new("payment");
    let r = runner("payment", &db, &metrics);
    let mut cmds: Vec<PayCommand> = (0..3).map(|i| command(i, (i, 0, false))).collect();
    for c in &mut cmds {
        c.amount = "10.00".parse().unwrap();
    }
    let mut other = db.conn().await;
    other
        .batch_execute(&format!(
            "START TRANSACTION; INSERT INTO payments (order_id, saga_id, amount, status, tx_id) \
             VALUES ('{}', '{}', 7.00, 'SUCCESS', '{}')",
            cmds[1].order_id,
            cmds[1].saga_id,
            uuid(9, 1)
        ))
        .await
        .unwrap();
    let mut probe = db.conn().await;
    let commit_when_blocked = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // A statement of this database's executor waiting in InnoDB
            // (MariaDB shows a row lock wait of an insert as `Update`).
            let waiting: i64 =
                diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                    "(SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE DB = '{}' AND STATE = 'Update' AND ID <> CONNECTION_ID())",
                    db.name
                )))
                .get_result(&mut probe)
                .await
                .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the executor never waited on the unique key"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        other.batch_execute("COMMIT").await.unwrap();
    };
    let (res, ()) = tokio::join!(charge::execute(&r, &cmds), commit_when_blocked);
    let outcomes: Vec<PayOutcome> = res.into_iter().map(|x| x.unwrap().outcome).collect();
    assert!(
        matches!(&outcomes[0], PayOutcome::Charged(_)),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], PayOutcome::Charged(_)),
        "{outcomes:?}"
    );
    match &outcomes[1] {
        PayOutcome::Repeated(p) => {
            assert_eq!(p.amount.unwrap().to_string(), "7.00");
            assert_eq!(p.tx_id.as_deref(), Some(uuid(9, 1).as_str()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rows(&db).await.payments.len(), 3);
    let dups = metric(
        &metrics.encode(),
        "batch_failures_total",
        "cause=\"duplicate\"",
    );
    assert_eq!(dups, 1.0);
    db.drop().await;
}
