//! Step deadlines and the customer's cancel end to end over RabbitMQ: a
//! role that stays down past `saga.step_timeout` leaves its sagas to
//! compensate by themselves, and charges none of them when it returns;
//! `POST /orders/:id/cancel` compensates a saga going forward, is
//! idempotent, and refuses a confirmed order. Every test ends with the
//! invariant audit.

use std::time::Duration;

use dop::{
    cli::admin::sagas::{render_list, AdminApi, ListOpts},
    roles::Role,
};
use serde_json::{json, Value};

use crate::harness::{eventually, metric, product_id, Opts, Stack};

const T: Duration = Duration::from_secs(30);

async fn saga(s: &Stack, order_id: &str) -> Value {
    let path = format!("/admin/sagas/{}", s.saga_of(order_id).await);
    s.get(Role::Order, &path).await.json().unwrap()
}

fn events(saga: &Value) -> Vec<String> {
    saga["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

async fn assert_clean(s: &Stack) {
    let report = s.audit().await;
    assert!(report.is_clean(), "invariant violations: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_down_past_its_timeout_compensates_and_charges_nothing() {
    let mut s = Stack::start(Opts {
        roles: vec![Role::Order, Role::Inventory],
        step_timeout: Duration::from_secs(2),
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 10).await;
    let ids = [
        s.order(pid, 1, "10.00").await,
        s.order(pid, 2, "20.00").await,
        s.order(pid, 3, "30.00").await,
    ];
    // The payment never answers: past the timeout each saga cancels its
    // payment; the order keeps its status until the answer.
    for id in &ids {
        eventually("the payment timed out", T, async || {
            let g = saga(&s, id).await;
            (g["saga"]["current_step"] == "CANCELLING_PAYMENT").then_some(())
        })
        .await;
        assert_eq!(s.order_status(id).await, "INVENTORY_RESERVED");
    }
    // The payment role returns: the payment.process commands ahead of the
    // cancels in its queue are past their expiry, so none is charged.
    s.start_role(Role::Payment).await;
    s.wait_ready(Role::Payment).await;
    for id in &ids {
        assert_eq!(s.wait_terminal(id, T).await, "COMPENSATED");
        let pay = s.get(Role::Payment, &format!("/payments/{id}")).await;
        let pay = pay.json().unwrap();
        assert_eq!(pay["status"], "CANCELLED", "{pay}");
        assert!(pay["transaction_id"].is_null(), "{pay}");
        let g = saga(&s, id).await;
        let ev = events(&g);
        assert!(ev.contains(&"saga.timed_out".to_string()), "{ev:?}");
        assert!(ev.contains(&"payment.cancelled".to_string()), "{ev:?}");
        assert_eq!(ev.last().map(String::as_str), Some("inventory.released"));
        assert_eq!(g["saga"]["failure_reason"], "payment timed out");
    }
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(10), Some(0))
    );
    let m = s.get(Role::Order, "/metrics").await.text();
    assert_eq!(
        metric(&m, "saga_timeouts_total", "PROCESSING_PAYMENT"),
        3.0,
        "{m}"
    );
    // What the operator sees: `dop admin sagas --status COMPENSATED`.
    let api = AdminApi::new(&s.url(Role::Order, ""))
        .unwrap()
        .with_read_token("test-token");
    let (list, _) = api
        .list(&ListOpts {
            status: Some("COMPENSATED".into()),
            ..ListOpts::default()
        })
        .await
        .unwrap();
    let table = render_list(&list);
    assert_eq!(table.matches("payment timed out").count(), 3, "{table}");
    assert_clean(&s).await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_past_its_timeout_is_released() {
    let mut s = Stack::start(Opts {
        roles: vec![Role::Order, Role::Payment],
        step_timeout: Duration::from_secs(1),
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product_direct(pid, 5).await;
    let id = s.order(pid, 2, "10.00").await;
    eventually("the reserve timed out", T, async || {
        (s.order_status(&id).await == "FAILED").then_some(())
    })
    .await;
    let g = saga(&s, &id).await;
    assert_eq!(g["saga"]["current_step"], "RELEASING_INVENTORY");
    assert_eq!(
        g["saga"]["failure_reason"],
        "inventory reservation timed out"
    );
    // The inventory role returns: whatever order the reserve and its
    // release arrive in, the units end where they started.
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    assert_eq!(s.wait_terminal(&id, T).await, "COMPENSATED");
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(5), Some(0))
    );
    assert_eq!(
        s.get(Role::Payment, &format!("/payments/{id}"))
            .await
            .status,
        404,
        "nothing was ever charged"
    );
    assert_clean(&s).await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cancels_once_and_a_confirmed_order_refuses() {
    let mut s = Stack::start(Opts {
        roles: vec![Role::Order, Role::Payment],
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product_direct(pid, 5).await;
    // PENDING (inventory is down): the cancel compensates.
    let id = s.order(pid, 2, "10.00").await;
    let r = s
        .post(Role::Order, &format!("/orders/{id}/cancel"), json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let body = r.json().unwrap();
    assert_eq!(
        (
            body["status"].as_str(),
            body["saga_status"].as_str(),
            body["reason"].as_str()
        ),
        (
            Some("FAILED"),
            Some("COMPENSATING"),
            Some("cancelled by the customer")
        )
    );
    // Again while it compensates: 200, nothing new.
    let again = s
        .post(Role::Order, &format!("/orders/{id}/cancel"), json!({}))
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json().unwrap()["saga_status"], "COMPENSATING");
    s.start_role(Role::Inventory).await;
    s.wait_ready(Role::Inventory).await;
    assert_eq!(s.wait_terminal(&id, T).await, "COMPENSATED");
    let ev = events(&saga(&s, &id).await);
    assert_eq!(
        ev.iter().filter(|e| *e == "order.cancelled").count(),
        1,
        "{ev:?}"
    );
    // Once ended: 200 with the current state.
    let done = s
        .post(Role::Order, &format!("/orders/{id}/cancel"), json!({}))
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(done.json().unwrap()["status"], "COMPENSATED");

    // CONFIRMED: 409 with the reason.
    let paid = s.order(pid, 1, "5.00").await;
    assert_eq!(s.wait_terminal(&paid, T).await, "CONFIRMED");
    let r = s
        .post(Role::Order, &format!("/orders/{paid}/cancel"), json!({}))
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let e = r.json().unwrap();
    assert_eq!(e["code"], "ORDER_CONFIRMED");
    assert!(e["error"].as_str().unwrap().contains("CONFIRMED"), "{e}");
    // Bad ids.
    assert_eq!(
        s.post(Role::Order, "/orders/999999999/cancel", json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        s.post(Role::Order, "/orders/abc/cancel", json!({}))
            .await
            .status,
        400
    );
    let m = s.get(Role::Order, "/metrics").await.text();
    assert_eq!(metric(&m, "saga_cancellations_total", "compensating"), 1.0);
    assert_eq!(metric(&m, "saga_cancellations_total", "already_ended"), 2.0);
    assert_eq!(
        metric(&m, "saga_cancellations_total", "refused_confirmed"),
        1.0
    );
    let inv = s.inventory(pid).await;
    assert_eq!(
        (inv["available_qty"].as_i64(), inv["reserved_qty"].as_i64()),
        (Some(4), Some(1))
    );
    assert_clean(&s).await;
    s.teardown().await;
}

/// Two replicas' deadline checks at once over the same sagas: each saga is
/// interrupted exactly once (one `saga.timed_out` row, one cancel sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deadline_checks_at_once_interrupt_each_saga_once() {
    let s = Stack::start(Opts {
        roles: vec![Role::Order, Role::Inventory],
        ..Opts::default()
    })
    .await;
    let pid = product_id();
    s.add_product(pid, 50).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(s.order(pid, 1, "3.00").await);
    }
    for id in &ids {
        eventually("at the payment step", T, async || {
            (s.order_status(id).await == "INVENTORY_RESERVED").then_some(())
        })
        .await;
    }
    // The stack's own check waits 2 minutes; these two see every step late.
    let cfg = dop::config::SagaConfig {
        step_timeout: Duration::from_millis(1),
        deadline: Duration::ZERO,
        check_interval: Duration::from_secs(1),
    };
    let (a, b) = (s.ctx(Role::Order), s.ctx(Role::Order));
    let (ra, rb) = tokio::join!(
        dop::roles::order::deadlines::expire(&a, &cfg, 500),
        dop::roles::order::deadlines::expire(&b, &cfg, 500)
    );
    assert_eq!(ra.unwrap() + rb.unwrap(), ids.len());
    for id in &ids {
        let ev = events(&saga(&s, id).await);
        assert_eq!(
            ev.iter().filter(|e| *e == "saga.timed_out").count(),
            1,
            "{ev:?}"
        );
    }
    // A third check finds nothing left to interrupt.
    assert_eq!(
        dop::roles::order::deadlines::expire(&a, &cfg, 500)
            .await
            .unwrap(),
        0
    );
    // The saga's own deadline alone (step timeouts off).
    let late = s.order(pid, 1, "3.00").await;
    eventually("at the payment step", T, async || {
        (s.order_status(&late).await == "INVENTORY_RESERVED").then_some(())
    })
    .await;
    let whole = dop::config::SagaConfig {
        step_timeout: Duration::ZERO,
        deadline: Duration::from_millis(1),
        ..cfg
    };
    assert_eq!(
        dop::roles::order::deadlines::expire(&a, &whole, 500)
            .await
            .unwrap(),
        1
    );
    let g = saga(&s, &late).await;
    assert_eq!(
        g["saga"]["failure_reason"],
        "saga deadline passed during payment"
    );
    let m = s.get(Role::Order, "/metrics").await.text();
    assert_eq!(
        metric(
            &m,
            "saga_timeouts_total",
            r#"step="PROCESSING_PAYMENT",deadline="deadline""#
        ),
        1.0,
        "{m}"
    );
    s.teardown().await;
}
