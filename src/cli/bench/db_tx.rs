//! The five transactions of one successful saga for `dop bench --mode db`,
//! run by the roles' own executors (the order writer's, inventory's,
//! payment's and the saga's, each through `db::batch::Runner` as in
//! production), with batches of one: what the database costs per saga
//! without the broker and HTTP in front of it. The outbox rows the
//! executors write are part of the cost; nothing relays or deletes them.

use std::time::Duration;

use rust_decimal::Decimal;
use tokio::time::Instant;

use crate::{
    db::{
        batch::{ItemFailure, Runner},
        DbPool,
    },
    domain::Money,
    messaging::contracts::InventoryCommand,
    observability::Metrics,
    roles::{
        inventory::{
            decide::{Action, Command},
            exec,
        },
        order::{
            decide::{EventOutcome, SagaEvent},
            ids::IdAllocator,
            orders::NewOrder,
            place::{Outcome, Planned},
            sagas, writer,
        },
        payment::{
            charge,
            decide::{PayCommand, PayKind, PayOutcome},
        },
    },
    saga::Event,
};

/// One pool per scratch schema, and the metrics the runners count into.
pub struct Pools {
    pub orders: DbPool,
    pub inventory: DbPool,
    pub payments: DbPool,
    pub metrics: Metrics,
    /// Order ids, from blocks as the order role takes them.
    pub ids: IdAllocator,
}

impl Pools {
    fn runner<'a>(&'a self, name: &'static str, pool: &'a DbPool) -> Runner<'a> {
        Runner::new(name, pool, &self.metrics)
    }
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The one result of a batch of one, or why there is none.
fn one<T>(what: &str, mut r: Vec<Result<T, ItemFailure>>) -> anyhow::Result<T> {
    match r.pop() {
        Some(Ok(v)) if r.is_empty() => Ok(v),
        Some(Err(e)) => anyhow::bail!("{what} failed: {e:?}"),
        _ => anyhow::bail!("{what}: not exactly one result"),
    }
}

/// Runs one saga's five transactions; `lat` gets each one's latency
/// (from asking the pool for a connection to the commit).
pub async fn one_saga(
    p: &Pools,
    product: i64,
    user: i64,
    lat: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    let amount =
        Money::new(Decimal::new(999, 2)).map_err(|e| anyhow::anyhow!("bench amount: {e:?}"))?;
    let trace = id();

    let t = Instant::now();
    let plan = Planned::new(
        NewOrder {
            user_id: user,
            product_id: product,
            quantity: 1,
            total_amount: amount,
        },
        None,
        &trace,
        p.ids.next().await?,
    );
    let placed = writer::execute(&p.runner("orders", &p.orders), std::slice::from_ref(&plan)).await;
    anyhow::ensure!(
        matches!(one("order", placed)?, Outcome::Created),
        "order not created"
    );
    lat.push(t.elapsed());
    let (order_id, saga_id) = (plan.rows.row.id, plan.rows.row.saga_id.clone());

    let t = Instant::now();
    let reserve = Command {
        action: Action::Reserve,
        cmd: InventoryCommand {
            saga_id: saga_id.clone(),
            order_id,
            product_id: product,
            quantity: 1,
        },
        message_id: id(),
        trace_id: trace.clone(),
    };
    let reserved = exec::run(&p.runner("inventory", &p.inventory), &[reserve]).await;
    anyhow::ensure!(
        one("reserve", reserved)?.rejection.is_none(),
        "reserve rejected"
    );
    lat.push(t.elapsed());

    event(
        p,
        &saga_id,
        &trace,
        Event::InventoryReserved { success: true },
        lat,
    )
    .await?;

    let t = Instant::now();
    let pay = PayCommand {
        kind: PayKind::Process,
        message_id: id(),
        trace_id: trace.clone(),
        saga_id: saga_id.clone(),
        order_id,
        amount: amount.decimal(),
        declined: false,
        expired: false,
        tx_id: id(),
    };
    let charged = charge::execute(&p.runner("payment", &p.payments), &[pay]).await;
    anyhow::ensure!(
        matches!(one("payment", charged)?.outcome, PayOutcome::Charged(_)),
        "payment not charged"
    );
    lat.push(t.elapsed());

    event(
        p,
        &saga_id,
        &trace,
        Event::PaymentProcessed { success: true },
        lat,
    )
    .await
}

/// One saga event through the saga executor.
async fn event(
    p: &Pools,
    saga_id: &str,
    trace: &str,
    event: Event,
    lat: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let e = SagaEvent {
        message_id: id(),
        trace_id: trace.to_string(),
        saga_id: saga_id.to_string(),
        event,
        reason: None,
    };
    let applied = sagas::execute(&p.runner("saga", &p.orders), &[e], &Default::default()).await;
    anyhow::ensure!(
        matches!(
            one("saga event", applied)?.outcome,
            EventOutcome::Moved { .. }
        ),
        "saga did not move"
    );
    lat.push(t.elapsed());
    Ok(())
}
