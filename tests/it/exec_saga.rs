//! The saga event executor (`roles::order::sagas::execute`) against the
//! real MariaDB: a property test that random events for a few sagas
//! (duplicates, redeliveries, stale and reordered events, events for a saga
//! that does not exist) cut into random batches end with the same rows and
//! outcomes as the same sequence one event per batch, each on a fresh
//! database, with every order consistent with its saga and every processed
//! id applied once after every batch; and a test that one event failing
//! for good in a batch fails alone.
//!
//! 8 cases by default; `DOP_PROPTEST_CASES=N` runs N.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use dop::{
    db::batch::ItemFailure,
    observability::Metrics,
    roles::{
        order::{
            decide::{EventOutcome, SagaEvent},
            model::{OrderRow, SagaRow},
            sagas,
            schema::{orders, processed_events, saga_events, saga_states},
        },
        Role,
    },
    saga::{Event, SagaStatus, SagaStep},
};
use proptest::prelude::*;

use crate::{exec_payment::runner, harness::ScratchDb};

/// Sagas that exist; saga number `SAGAS` does not.
const SAGAS: usize = 3;

fn uuid(kind: u8, n: usize) -> String {
    format!("00000000-0000-4000-8{kind:03}-{n:012}")
}

const EVENTS: [Event; 6] = [
    Event::InventoryReserved { success: true },
    Event::InventoryReserved { success: false },
    Event::PaymentProcessed { success: true },
    Event::PaymentProcessed { success: false },
    Event::InventoryReleased { success: true },
    Event::InventoryReleased { success: false },
];

/// Event number `pos`: saga `s`, event kind `e`, message variant `k` (the
/// same triple is a redelivery of the same message).
fn event(pos: usize, (s, e, k): (usize, usize, usize)) -> SagaEvent {
    let ev = EVENTS[e];
    SagaEvent {
        message_id: uuid(1, s * 100 + e * 10 + k),
        trace_id: format!("trace-{pos}"),
        saga_id: uuid(2, s),
        event: ev,
        reason: (e % 2 == 1).then(|| format!("{} {k}", ev.name())),
    }
}

/// The order status a saga status and step imply (docs/contract.md section 2).
fn order_status_of(saga: &str, step: &str) -> &'static str {
    match SagaStatus::parse(saga) {
        Some(SagaStatus::InProgress) if step == "PROCESSING_PAYMENT" => "INVENTORY_RESERVED",
        Some(SagaStatus::InProgress) => "PENDING",
        Some(SagaStatus::Completed) => "CONFIRMED",
        Some(SagaStatus::Failed | SagaStatus::Compensating) => "FAILED",
        Some(SagaStatus::Compensated) => "COMPENSATED",
        None => "?",
    }
}

async fn fresh_db() -> ScratchDb {
    let db = ScratchDb::new(Role::Order).await;
    let t = chrono::Utc::now().naive_utc();
    let (mut sagas, mut orders_) = (Vec::new(), Vec::new());
    for s in 0..SAGAS {
        orders_.push(OrderRow {
            id: s as i64 + 1,
            saga_id: uuid(2, s),
            user_id: 42,
            product_id: 1001,
            quantity: 2,
            total_amount: "199.98".parse().unwrap(),
            status: "PENDING".into(),
            idempotency_key: None,
            trace_id: "t".into(),
            created_at: t,
            updated_at: t,
        });
        sagas.push(SagaRow {
            saga_id: uuid(2, s),
            order_id: s as i64 + 1,
            status: SagaStatus::InProgress.as_str().into(),
            current_step: SagaStep::ReservingInventory.as_str().into(),
            failure_reason: None,
            last_event_id: None,
            retry_count: 0,
            failed_step: None,
            step_started_at: t,
            created_at: t,
            updated_at: t,
        });
    }
    let mut c = db.conn().await;
    diesel::insert_into(orders::table)
        .values(&orders_)
        .execute(&mut c)
        .await
        .unwrap();
    diesel::insert_into(saga_states::table)
        .values(&sagas)
        .execute(&mut c)
        .await
        .unwrap();
    db
}

type Timeline = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
);

#[derive(Debug, PartialEq)]
struct Rows {
    sagas: Vec<(i64, String, String, Option<String>)>,
    orders: Vec<(i64, String)>,
    /// By saga, in the order written.
    timeline: Vec<Timeline>,
    processed: Vec<String>,
    outbox: Vec<(String, String, String)>,
}

async fn rows(db: &ScratchDb) -> Rows {
    use dop::messaging::outbox::outbox;
    let mut c = db.conn().await;
    let sagas = saga_states::table
        .order(saga_states::saga_id)
        .select((
            saga_states::order_id,
            saga_states::status,
            saga_states::current_step,
            saga_states::failure_reason,
        ))
        .load(&mut c)
        .await
        .unwrap();
    let orders_ = orders::table
        .order(orders::id)
        .select((orders::id, orders::status))
        .load(&mut c)
        .await
        .unwrap();
    let timeline = saga_events::table
        .order((saga_events::saga_id, saga_events::id))
        .select((
            saga_events::saga_id,
            saga_events::event,
            saga_events::from_status,
            saga_events::from_step,
            saga_events::to_status,
            saga_events::to_step,
            saga_events::message_id,
            saga_events::reason,
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
        sagas,
        orders: orders_,
        timeline,
        processed,
        outbox,
    }
}

/// Runs `events` cut into batches on a fresh database, checking the
/// invariants after every batch.
async fn run(
    events: &[SagaEvent],
    cut: &[bool],
) -> Result<(Vec<EventOutcome>, Rows), TestCaseError> {
    let db = fresh_db().await;
    let metrics = Metrics::new("order");
    let r = runner("saga", &db, &metrics);
    let mut outcomes = Vec::new();
    let mut from = 0;
    for i in 0..events.len() {
        if !(cut[i] || i + 1 == events.len()) {
            continue;
        }
        for (n, res) in sagas::execute(&r, &events[from..=i], &Default::default())
            .await
            .into_iter()
            .enumerate()
        {
            let a =
                res.map_err(|e| TestCaseError::fail(format!("event {} failed: {e:?}", from + n)))?;
            prop_assert_eq!(
                a.ended.is_some(),
                matches!(a.outcome, EventOutcome::Moved { status, .. } if status.is_terminal())
            );
            outcomes.push(a.outcome);
        }
        from = i + 1;
        let now = rows(&db).await;
        let order_status: HashMap<&i64, &String> =
            now.orders.iter().map(|(id, st)| (id, st)).collect();
        for (order_id, status, step, _) in &now.sagas {
            prop_assert_eq!(
                order_status[order_id].as_str(),
                order_status_of(status, step),
                "order {} of a {} saga",
                order_id,
                status
            );
        }
        for (e, o) in events.iter().zip(&outcomes) {
            let recorded = now
                .processed
                .iter()
                .filter(|id| **id == e.message_id)
                .count();
            let applied = now
                .timeline
                .iter()
                .filter(|t| t.6.as_deref() == Some(e.message_id.as_str()))
                .count();
            prop_assert!(
                applied <= 1,
                "message {} applied {} times",
                e.message_id,
                applied
            );
            match o {
                EventOutcome::UnknownSaga => prop_assert_eq!(recorded, 0),
                _ => prop_assert_eq!(recorded, 1, "processed id {}", e.message_id),
            }
        }
    }
    let end = rows(&db).await;
    db.drop().await;
    Ok((outcomes, end))
}

fn sequence() -> impl Strategy<Value = (Vec<SagaEvent>, Vec<bool>)> {
    prop::collection::vec((0..=SAGAS, 0..EVENTS.len(), 0..2usize), 1..30).prop_flat_map(|seq| {
        let n = seq.len();
        let events: Vec<SagaEvent> = seq
            .into_iter()
            .enumerate()
            .map(|(i, s)| event(i, s))
            .collect();
        (
            Just(events),
            prop::collection::vec(prop::bool::weighted(0.3), n),
        )
    })
}

#[test]
fn batches_decide_as_one_event_at_a_time() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runner = crate::harness::prop_runner(8);
    runner
        .run(&sequence(), |(events, cut)| {
            rt.block_on(async {
                let (batched, rows_batched) = run(&events, &cut).await?;
                let (alone, rows_alone) = run(&events, &vec![true; events.len()]).await?;
                prop_assert_eq!(&batched, &alone);
                prop_assert_eq!(&rows_batched, &rows_alone);
                Ok(())
            })
        })
        .unwrap();
}

/// An event whose writes the database refuses (a message id longer than
/// its column) fails alone as permanent; the others of the batch commit.
#[tokio::test]
async fn a_permanent_failure_fails_only_its_event() {
    let db = fresh_db().await;
    let metrics = Metrics::new("order");
    let r = runner("saga", &db, &metrics);
    let mut events: Vec<SagaEvent> = (0..SAGAS).map(|s| event(s, (s, 0, 0))).collect();
    events[1].message_id = "x".repeat(40);
    let res = sagas::execute(&r, &events, &Default::default()).await;
    assert!(
        matches!(&res[1], Err(ItemFailure::Permanent(why)) if why.contains("too long")),
        "{res:?}"
    );
    for i in [0, 2] {
        let a = res[i].as_ref().unwrap();
        assert_eq!(
            a.outcome,
            EventOutcome::Moved {
                status: SagaStatus::InProgress,
                step: SagaStep::ProcessingPayment
            }
        );
        assert!(a.msg.is_some());
    }
    let end = rows(&db).await;
    let steps: Vec<&str> = end.sagas.iter().map(|s| s.2.as_str()).collect();
    assert_eq!(
        steps,
        [
            "PROCESSING_PAYMENT",
            "RESERVING_INVENTORY",
            "PROCESSING_PAYMENT"
        ]
    );
    assert_eq!(end.outbox.len(), 2);
    db.drop().await;
}
