//! A property of the inventory executor against the real MariaDB: a random
//! sequence of reserve and release commands for 2-3 products (redeliveries,
//! releases before reserves, failed releases retried, quantities up to and
//! past `MAX_QTY`, stock up to `i32::MAX`, many orders per product) is
//! applied (a) cut into random batches and (b) one command per batch,
//! through the same executor, each on its own fresh database. Both must
//! answer every command the same, end with the same stock and log rows,
//! and keep the invariants after every batch: units conserved per product,
//! no count negative, reserved stock equal to what the logged moves add
//! up to, each order reserved at most once, and a release that gave units
//! back only after a reserve that took them.
//!
//! It runs 12 cases by default (a few seconds); set `DOP_PROPTEST_CASES=N`
//! to run N.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
use dop::{
    config::{Config, SecretUrl},
    db::{batch::Runner, DbPool},
    domain::MAX_QTY,
    messaging::contracts::InventoryCommand,
    observability::Metrics,
    roles::{
        inventory::{
            decide::{Action, Command},
            exec,
            schema::{inventories, inventory_logs},
        },
        Role,
    },
};
use proptest::{prelude::*, sample::Index, test_runner::TestCaseError};

use crate::harness::{drop_db, MYSQL};

const MAX_STOCK: i64 = i32::MAX as i64;

#[derive(Clone, Debug)]
enum Op {
    /// A new command for an order; a release may name another quantity.
    Fresh {
        order: Index,
        release: bool,
        qty: Option<i32>,
    },
    /// An earlier command delivered again (same message id).
    Again(Index),
}

#[derive(Clone, Debug)]
struct Case {
    /// Available units of each product at the start.
    stock: Vec<i64>,
    /// (product index, quantity) of each order.
    orders: Vec<(Index, i32)>,
    ops: Vec<Op>,
    /// Sizes of the batches of run (a); the rest goes in one last batch.
    cuts: Vec<usize>,
}

fn qty() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => 1i32..10,
        2 => 1i32..=MAX_QTY as i32,
        1 => Just(MAX_QTY as i32),
        1 => prop_oneof![Just(0), Just(MAX_QTY as i32 + 1), Just(i32::MAX)],
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let stock = prop_oneof![
        2 => 0i64..20,
        1 => 0i64..=MAX_QTY,
        1 => MAX_STOCK - 100..=MAX_STOCK,
        1 => Just(MAX_STOCK),
    ];
    let op = prop_oneof![
        4 => (any::<Index>(), any::<bool>(), proptest::option::weighted(0.2, qty()))
            .prop_map(|(order, release, qty)| Op::Fresh { order, release, qty }),
        1 => any::<Index>().prop_map(Op::Again),
    ];
    (
        proptest::collection::vec(stock, 2..=3),
        proptest::collection::vec((any::<Index>(), qty()), 1..10),
        proptest::collection::vec(op, 1..40),
        proptest::collection::vec(1usize..8, 0..40),
    )
        .prop_map(|(stock, orders, ops, cuts)| Case {
            stock,
            orders,
            ops,
            cuts,
        })
}

fn pid(i: usize) -> i64 {
    1001 + i as i64
}

/// The commands of a case, in arrival order.
fn commands(c: &Case) -> Vec<Command> {
    let ids: Vec<(String, i64)> = c
        .orders
        .iter()
        .map(|_| {
            (
                uuid::Uuid::new_v4().to_string(),
                crate::harness::next_order_id(),
            )
        })
        .collect();
    let mut cmds: Vec<Command> = Vec::new();
    for op in &c.ops {
        match op {
            Op::Fresh {
                order,
                release,
                qty,
            } => {
                let o = order.index(c.orders.len());
                let (product, q) = &c.orders[o];
                let action = if *release {
                    Action::Release
                } else {
                    Action::Reserve
                };
                let quantity = if *release { qty.unwrap_or(*q) } else { *q };
                cmds.push(Command {
                    action,
                    cmd: InventoryCommand {
                        saga_id: ids[o].0.clone(),
                        order_id: ids[o].1,
                        product_id: pid(product.index(c.stock.len())),
                        quantity,
                    },
                    message_id: uuid::Uuid::new_v4().to_string(),
                    trace_id: "prop".into(),
                });
            }
            Op::Again(i) if !cmds.is_empty() => {
                let again = cmds[i.index(cmds.len())].clone();
                cmds.push(again);
            }
            Op::Again(_) => {}
        }
    }
    cmds
}

/// A fresh inventory database with the case's products.
struct Db {
    name: String,
    pool: DbPool,
    conn: AsyncMysqlConnection,
}

impl Db {
    async fn fresh(stock: &[i64]) -> Db {
        let name = format!(
            "dop_t_{}_inventory",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let url = format!("{MYSQL}/{name}");
        dop::db::migrate::migrate(Role::Inventory, &url)
            .await
            .expect("migrate a fresh inventory database");
        let mut cfg = Config::default();
        cfg.inventory.database_url = SecretUrl::new(url.clone());
        cfg.inventory.pool_size = 2;
        let pool = dop::db::connect_pool(&cfg.db(Role::Inventory)).expect("pool");
        let mut conn = AsyncMysqlConnection::establish(&url)
            .await
            .expect("connect");
        for (i, a) in stock.iter().enumerate() {
            diesel::insert_into(inventories::table)
                .values((
                    inventories::product_id.eq(pid(i)),
                    inventories::available_qty.eq(*a as i32),
                    inventories::reserved_qty.eq(0),
                    inventories::version.eq(1),
                ))
                .execute(&mut conn)
                .await
                .expect("seed stock");
        }
        Db { name, pool, conn }
    }

    /// Runs one batch; returns (result payload, rejection) per command.
    async fn run(
        &self,
        metrics: &Metrics,
        batch: &[Command],
    ) -> Result<Vec<(String, Option<&'static str>)>, String> {
        let runner = Runner::new("inventory_commands", &self.pool, metrics);
        exec::run(&runner, batch)
            .await
            .into_iter()
            .map(|r| {
                r.map(|h| (h.message.row.payload, h.rejection))
                    .map_err(|e| format!("{e:?}"))
            })
            .collect()
    }

    /// (product, available, reserved, version) of every product.
    async fn stock(&mut self) -> Vec<(i64, i32, i32, i64)> {
        inventories::table
            .select((
                inventories::product_id,
                inventories::available_qty,
                inventories::reserved_qty,
                inventories::version,
            ))
            .order(inventories::product_id)
            .load(&mut self.conn)
            .await
            .expect("stock")
    }

    /// Every log row but its id and time, in a fixed order.
    async fn logs(&mut self) -> Vec<LogRow> {
        inventory_logs::table
            .select((
                inventory_logs::order_id,
                inventory_logs::action,
                inventory_logs::saga_id,
                inventory_logs::product_id,
                inventory_logs::quantity,
                inventory_logs::success,
                inventory_logs::reason,
                inventory_logs::message_id,
            ))
            .order((inventory_logs::order_id, inventory_logs::action))
            .load(&mut self.conn)
            .await
            .expect("logs")
    }

    async fn drop(self) {
        self.pool.close();
        drop(self.conn);
        drop_db(&self.name).await;
    }
}

type LogRow = (i64, String, String, i64, i32, bool, Option<String>, String);

/// The invariants of the module doc.
async fn invariants(db: &mut Db, start: &[i64]) -> Result<(), String> {
    let stock = db.stock().await;
    let logs = db.logs().await;
    let mut moved: BTreeMap<i64, i64> = BTreeMap::new();
    let mut reserved_orders = std::collections::HashSet::new();
    for (order, action, _, product, qty, success, _, _) in &logs {
        match (action.as_str(), success) {
            ("RESERVE", true) => {
                if !reserved_orders.insert(*order) {
                    return Err(format!("order {order} reserved twice"));
                }
                *moved.entry(*product).or_default() += i64::from(*qty);
            }
            ("RELEASE", true) if *qty != 0 => {
                *moved.entry(*product).or_default() -= i64::from(*qty);
            }
            _ => {}
        }
    }
    for (order, action, _, _, qty, success, _, _) in &logs {
        if action == "RELEASE" && *success && *qty != 0 && !reserved_orders.contains(order) {
            return Err(format!("order {order} gave back {qty} units it never took"));
        }
    }
    for (i, (product, available, reserved, _)) in stock.iter().enumerate() {
        let (a, r) = (i64::from(*available), i64::from(*reserved));
        if a < 0 || r < 0 {
            return Err(format!("product {product}: {a} available, {r} reserved"));
        }
        if a + r != start[i] {
            return Err(format!(
                "product {product}: {a} + {r} units, {} at the start",
                start[i]
            ));
        }
        if r != moved.get(product).copied().unwrap_or(0) {
            return Err(format!(
                "product {product}: {r} reserved, the logs moved {:?}",
                moved.get(product)
            ));
        }
    }
    Ok(())
}

async fn check(c: Case) -> Result<(), String> {
    let cmds = commands(&c);
    let metrics = Metrics::new("inventory");
    let mut a = Db::fresh(&c.stock).await;
    let mut b = Db::fresh(&c.stock).await;
    let r = compare(&c, &cmds, &metrics, &mut a, &mut b).await;
    a.drop().await;
    b.drop().await;
    r
}

async fn compare(
    c: &Case,
    cmds: &[Command],
    metrics: &Metrics,
    a: &mut Db,
    b: &mut Db,
) -> Result<(), String> {
    // (a) random batches.
    let mut answers_a = Vec::new();
    let mut rest = cmds;
    let mut cuts = c.cuts.iter();
    while !rest.is_empty() {
        let n = cuts.next().copied().unwrap_or(rest.len()).min(rest.len());
        let (batch, tail) = rest.split_at(n);
        answers_a.extend(a.run(metrics, batch).await?);
        invariants(a, &c.stock)
            .await
            .map_err(|e| format!("(a) {e}"))?;
        rest = tail;
    }
    // (b) one command per batch.
    let mut answers_b = Vec::new();
    for cmd in cmds {
        answers_b.extend(b.run(metrics, std::slice::from_ref(cmd)).await?);
        invariants(b, &c.stock)
            .await
            .map_err(|e| format!("(b) {e}"))?;
    }
    if answers_a != answers_b {
        return Err(format!(
            "answers differ:\n(a) {answers_a:#?}\n(b) {answers_b:#?}"
        ));
    }
    let (sa, sb) = (a.stock().await, b.stock().await);
    if sa != sb {
        return Err(format!("stock differs: (a) {sa:?} (b) {sb:?}"));
    }
    let (la, lb) = (a.logs().await, b.logs().await);
    if la != lb {
        return Err(format!("logs differ:\n(a) {la:#?}\n(b) {lb:#?}"));
    }
    Ok(())
}

#[test]
fn batches_decide_as_one_command_at_a_time_and_keep_the_invariants() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = crate::harness::prop_runner(12);
    let result = runner.run(&case(), |c| {
        rt.block_on(check(c)).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
