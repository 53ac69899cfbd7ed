//! The barrier, as a property against the real MariaDB: a few sagas run
//! through the real executors of the three roles (the order role's event
//! executor and interrupt, the inventory and payment executors), each on
//! its own fresh database, while a random schedule delivers the messages
//! in flight in any order, delivers some twice (same message id), re-sends
//! commands (new message id, as recovery does), times out or cancels sagas
//! at any point, and delivers some payments past their expiry. Every
//! interleaving and duplicate of a command and its compensation happens:
//! action before compensation, compensation before action, compensation
//! without action, each twice.
//!
//! Once everything in flight is delivered, every saga has ended and the
//! invariant audit (`dop admin audit`, over the three databases) is clean:
//! no charge without a confirmed order, no units reserved for an order that
//! is not confirmed, and order, saga, payment and stock agree.
//!
//! It runs 16 cases by default (about 15 seconds); set
//! `DOP_PROPTEST_CASES=N` to run N.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use dop::{
    config::{Config, SecretUrl},
    db::batch::Runner,
    messaging::{
        contracts::{InventoryCommand, Message},
        OutboxMessage,
    },
    observability::Metrics,
    roles::{
        inventory::{
            decide::{Action, Command},
            exec,
            schema::inventories,
        },
        order::{
            decide::{Interrupt, Limits, SagaEvent},
            model::{OrderRow, SagaRow},
            sagas,
            schema::{orders, saga_states},
        },
        payment::{
            charge,
            decide::{PayCommand, PayKind},
        },
        Role,
    },
    saga::{Event, SagaStatus, SagaStep},
};
use proptest::{prelude::*, sample::Index, test_runner::TestCaseError};

use crate::harness::{prop_runner, ScratchDb, MYSQL};

const PRODUCT: i64 = 1001;

#[derive(Clone, Debug)]
enum Op {
    /// Deliver a message in flight; `again`: it stays in flight and is
    /// delivered once more later (a redelivery); `late`: a payment.process
    /// arrives past its expiry; `declined`: a payment is declined.
    Deliver {
        pick: Index,
        again: bool,
        late: bool,
        declined: bool,
    },
    /// A deadline (or the customer) interrupts a saga.
    Interrupt { saga: Index, cancel: bool },
    /// A command sent before is sent again with a new message id.
    Resend(Index),
}

#[derive(Clone, Debug)]
struct Case {
    stock: i32,
    quantities: Vec<i32>,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    let op = prop_oneof![
        6 => (any::<Index>(), prop::bool::weighted(0.25), prop::bool::weighted(0.2), prop::bool::weighted(0.15))
            .prop_map(|(pick, again, late, declined)| Op::Deliver { pick, again, late, declined }),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(saga, cancel)| Op::Interrupt { saga, cancel }),
        1 => any::<Index>().prop_map(Op::Resend),
    ];
    (
        0i32..8,
        proptest::collection::vec(1i32..4, 1..=3),
        proptest::collection::vec(op, 0..40),
    )
        .prop_map(|(stock, quantities, ops)| Case {
            stock,
            quantities,
            ops,
        })
}

/// A message on the wire.
#[derive(Clone, Debug)]
struct Wire {
    message_id: String,
    routing_key: String,
    payload: String,
}

impl From<OutboxMessage> for Wire {
    fn from(m: OutboxMessage) -> Self {
        Wire {
            message_id: m.row.message_id,
            routing_key: m.row.routing_key,
            payload: m.row.payload,
        }
    }
}

struct World {
    order: ScratchDb,
    inventory: ScratchDb,
    payment: ScratchDb,
    metrics: Metrics,
    saga_ids: Vec<String>,
    in_flight: Vec<Wire>,
    /// Every command sent, for re-sends.
    commands: Vec<Wire>,
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

impl World {
    async fn new(c: &Case) -> World {
        let (order, inventory, payment) = tokio::join!(
            ScratchDb::new(Role::Order),
            ScratchDb::new(Role::Inventory),
            ScratchDb::new(Role::Payment)
        );
        let now = chrono::Utc::now().naive_utc();
        let mut w = World {
            order,
            inventory,
            payment,
            metrics: Metrics::new("barrier"),
            saga_ids: Vec::new(),
            in_flight: Vec::new(),
            commands: Vec::new(),
        };
        let mut conn = w.inventory.conn().await;
        diesel::insert_into(inventories::table)
            .values((
                inventories::product_id.eq(PRODUCT),
                inventories::available_qty.eq(c.stock),
                inventories::reserved_qty.eq(0),
            ))
            .execute(&mut conn)
            .await
            .expect("insert the product");
        let mut conn = w.order.conn().await;
        for (i, q) in c.quantities.iter().enumerate() {
            let id = i as i64 + 1;
            let saga_id = uuid::Uuid::now_v7().to_string();
            let order = OrderRow {
                id,
                saga_id: saga_id.clone(),
                user_id: 42,
                product_id: PRODUCT,
                quantity: *q,
                total_amount: "19.99".parse().expect("amount"),
                status: "PENDING".into(),
                idempotency_key: None,
                trace_id: "t".into(),
                created_at: now,
                updated_at: now,
            };
            let saga = SagaRow {
                saga_id: saga_id.clone(),
                order_id: id,
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
            diesel::insert_into(orders::table)
                .values(&order)
                .execute(&mut conn)
                .await
                .expect("insert the order");
            diesel::insert_into(saga_states::table)
                .values(&saga)
                .execute(&mut conn)
                .await
                .expect("insert the saga");
            w.send(OutboxMessage::new(
                &Message::Reserve(InventoryCommand {
                    saga_id: saga_id.clone(),
                    order_id: id,
                    product_id: PRODUCT,
                    quantity: *q,
                }),
                "t",
            ));
            w.saga_ids.push(saga_id);
        }
        w
    }

    /// A message leaves its role (committed): it is in flight.
    fn send(&mut self, m: OutboxMessage) {
        let wire = Wire::from(m);
        if matches!(
            wire.routing_key.as_str(),
            "inventory.reserve" | "inventory.release" | "payment.process" | "payment.cancel"
        ) {
            self.commands.push(wire.clone());
        }
        self.in_flight.push(wire);
    }

    fn runner<'a>(&'a self, db: &'a ScratchDb) -> Runner<'a> {
        Runner::new("barrier", &db.pool, &self.metrics)
    }

    /// Delivers one message to the role that consumes it.
    async fn deliver(&mut self, w: &Wire, late: bool, declined: bool) -> Result<(), TestCaseError> {
        let msg = Message::parse(&w.routing_key, w.payload.as_bytes()).map_err(fail)?;
        let out: Option<OutboxMessage> = match msg {
            Message::Reserve(cmd) | Message::Release(cmd) => {
                let action = if w.routing_key == "inventory.reserve" {
                    Action::Reserve
                } else {
                    Action::Release
                };
                let c = Command {
                    action,
                    cmd,
                    message_id: w.message_id.clone(),
                    trace_id: "t".into(),
                };
                let r = exec::run(&self.runner(&self.inventory), &[c]).await;
                let h = r.into_iter().next().ok_or_else(|| fail("no result"))?;
                Some(h.map_err(|e| fail(format!("inventory: {e:?}")))?.message)
            }
            Message::ProcessPayment(c) | Message::CancelPayment(c) => {
                let kind = if w.routing_key == "payment.cancel" {
                    PayKind::Cancel
                } else {
                    PayKind::Process
                };
                let p = PayCommand {
                    kind,
                    message_id: w.message_id.clone(),
                    trace_id: "t".into(),
                    saga_id: c.saga_id,
                    order_id: c.order_id,
                    amount: c.amount.decimal(),
                    declined: declined && kind == PayKind::Process,
                    expired: late && kind == PayKind::Process,
                    tx_id: uuid::Uuid::now_v7().to_string(),
                };
                let r = charge::execute(&self.runner(&self.payment), &[p]).await;
                let h = r.into_iter().next().ok_or_else(|| fail("no result"))?;
                h.map_err(|e| fail(format!("payment: {e:?}")))?.msg
            }
            event => {
                let (event, reason) = match &event {
                    Message::Reserved(r) => (
                        Event::InventoryReserved { success: r.success },
                        r.reason.clone(),
                    ),
                    Message::Released(r) => (
                        Event::InventoryReleased { success: r.success },
                        r.reason.clone(),
                    ),
                    Message::PaymentProcessed(r) => (
                        Event::PaymentProcessed { success: r.success },
                        r.reason.clone(),
                    ),
                    Message::PaymentCancelled(r) => (
                        Event::PaymentCancelled {
                            charged: !r.cancelled,
                        },
                        r.reason.clone(),
                    ),
                    other => return Err(fail(format!("unexpected {other:?}"))),
                };
                let e = SagaEvent {
                    message_id: w.message_id.clone(),
                    trace_id: "t".into(),
                    saga_id: event_saga(&w.payload)?,
                    event,
                    reason,
                };
                let r = sagas::execute(&self.runner(&self.order), &[e], &Limits::default()).await;
                let a = r.into_iter().next().ok_or_else(|| fail("no result"))?;
                a.map_err(|e| fail(format!("order: {e:?}")))?.msg
            }
        };
        if let Some(m) = out {
            self.send(m);
        }
        Ok(())
    }

    async fn interrupt(&mut self, saga: usize, cancel: bool) -> Result<(), TestCaseError> {
        let why = if cancel {
            Interrupt::Cancel
        } else {
            // Every step is past its time.
            Interrupt::Timeout {
                step_cutoff: Some(chrono::Utc::now().naive_utc() + chrono::Duration::days(1)),
                saga_cutoff: None,
            }
        };
        let mut conn = self.order.conn().await;
        let id = self.saga_ids[saga].clone();
        let r = sagas::interrupt_in(&mut conn, &id, why, "t")
            .await
            .map_err(fail)?
            .ok_or_else(|| fail("no saga"))?;
        for m in r.1 {
            self.send(m);
        }
        Ok(())
    }

    fn config(&self) -> Config {
        let mut cfg = Config::default();
        cfg.order.database_url = SecretUrl::new(format!("{MYSQL}/{}", self.order.name));
        cfg.inventory.database_url = SecretUrl::new(format!("{MYSQL}/{}", self.inventory.name));
        cfg.payment.database_url = SecretUrl::new(format!("{MYSQL}/{}", self.payment.name));
        cfg
    }

    async fn drop(self) {
        self.order.drop().await;
        self.inventory.drop().await;
        self.payment.drop().await;
    }
}

fn event_saga(payload: &str) -> Result<String, TestCaseError> {
    let v: serde_json::Value = serde_json::from_str(payload).map_err(fail)?;
    v["saga_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| fail("no saga_id"))
}

async fn run(c: Case) -> Result<(), TestCaseError> {
    let mut w = World::new(&c).await;
    let r = schedule(&mut w, &c).await;
    let end = match r {
        Ok(()) => settle(&mut w).await,
        Err(e) => Err(e),
    };
    let audit = dop::cli::admin::audit::audit(&w.config(), Duration::ZERO).await;
    w.drop().await;
    end?;
    let report = audit.map_err(|e| fail(format!("audit: {e:#}")))?;
    prop_assert!(report.is_clean(), "audit: {:?}", report.violations);
    prop_assert_eq!(report.in_flight, 0, "every saga ended");
    Ok(())
}

async fn schedule(w: &mut World, c: &Case) -> Result<(), TestCaseError> {
    for op in &c.ops {
        match op {
            Op::Deliver {
                pick,
                again,
                late,
                declined,
            } => {
                if w.in_flight.is_empty() {
                    continue;
                }
                let i = pick.index(w.in_flight.len());
                let m = if *again {
                    w.in_flight[i].clone()
                } else {
                    w.in_flight.remove(i)
                };
                w.deliver(&m, *late, *declined).await?;
            }
            Op::Interrupt { saga, cancel } => {
                w.interrupt(saga.index(w.saga_ids.len()), *cancel).await?
            }
            Op::Resend(i) => {
                if w.commands.is_empty() {
                    continue;
                }
                let mut m = w.commands[i.index(w.commands.len())].clone();
                m.message_id = uuid::Uuid::now_v7().to_string();
                w.in_flight.push(m);
            }
        }
    }
    Ok(())
}

/// Delivers everything still in flight, in order, once each.
async fn settle(w: &mut World) -> Result<(), TestCaseError> {
    let mut n = 0;
    while !w.in_flight.is_empty() {
        n += 1;
        prop_assert!(n < 1000, "messages keep coming: {:?}", w.in_flight);
        let m = w.in_flight.remove(0);
        w.deliver(&m, false, false).await?;
    }
    Ok(())
}

#[test]
fn every_interleaving_of_actions_and_compensations_ends_consistent() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Each case creates three databases: shrink a failure only so far.
    let mut runner = prop_runner(16);
    let cfg = proptest::test_runner::Config {
        max_shrink_iters: 40,
        ..runner.config().clone()
    };
    runner = proptest::test_runner::TestRunner::new(cfg);
    runner.run(&case(), |c| rt.block_on(run(c))).unwrap();
}
