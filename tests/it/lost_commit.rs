//! POST /orders when the reply to the batch's COMMIT is lost: the server
//! committed, the order role only saw its connection drop. Each request
//! must end as exactly one order and one saga, and be answered with it.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use dop::{
    http::client::Response,
    roles::{
        order::schema::{orders, saga_events, saga_states},
        Role,
    },
};
use hyper::Method;

use crate::harness::{Opts, Stack};

/// The order writer's transaction: one COM_QUERY script that inserts
/// orders and ends in COMMIT.
fn order_script(payload: &[u8]) -> bool {
    let contains = |needle: &[u8]| payload.windows(needle.len()).any(|w| w == needle);
    payload.starts_with(b"\x03START TRANSACTION")
        && contains(b"INSERT INTO `orders`")
        && payload.ends_with(b"COMMIT")
}

async fn stack() -> Stack {
    Stack::start(Opts {
        roles: vec![Role::Order],
        db_proxy: true,
        ..Opts::default()
    })
    .await
}

async fn post(s: &Stack, user: i64, key: Option<&str>) -> Response {
    let body = Bytes::from(format!(
        r#"{{"user_id":{user},"product_id":1001,"quantity":1,"total_amount":10.50}}"#
    ));
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    s.http
        .send(
            Method::POST,
            &s.url(Role::Order, "/orders"),
            Some(body),
            &headers,
        )
        .await
        .expect("POST /orders")
}

/// Order id -> saga id of every order in the database, after checking that
/// each has exactly one saga and one creation timeline row.
async fn orders_in_db(s: &Stack) -> HashMap<i64, String> {
    let mut c = s.db(Role::Order).await;
    let rows: Vec<(i64, String)> = orders::table
        .select((orders::id, orders::saga_id))
        .load(&mut c)
        .await
        .unwrap();
    let sagas: Vec<(i64, String)> = saga_states::table
        .select((saga_states::order_id, saga_states::saga_id))
        .load(&mut c)
        .await
        .unwrap();
    let created: i64 = saga_events::table
        .filter(saga_events::event.eq("order.created"))
        .count()
        .get_result(&mut c)
        .await
        .unwrap();
    let by_order: HashMap<i64, String> = rows.into_iter().collect();
    let saga_of: HashMap<i64, String> = sagas.iter().cloned().collect();
    assert_eq!(sagas.len(), saga_of.len(), "two sagas for one order");
    assert_eq!(saga_of, by_order, "orders and sagas differ");
    assert_eq!(created as usize, by_order.len(), "order.created rows");
    by_order
}

fn created(r: &Response) -> (i64, String, bool) {
    assert_eq!(r.status, 201, "{}", r.text());
    let b = r.json().unwrap();
    (
        b["order_id"].as_i64().unwrap(),
        b["saga_id"].as_str().unwrap().to_string(),
        r.headers.get("idempotent-replayed").is_some(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_reply_places_the_order_once() {
    let s = stack().await;
    let proxy = s.db_proxy.as_ref().unwrap();

    proxy.lose_replies(1, order_script);
    let (id, saga, replayed) = created(&post(&s, 7, None).await);
    assert_eq!(proxy.replies_lost(), 1, "the commit reply was not lost");
    assert!(!replayed);
    assert_eq!(orders_in_db(&s).await, HashMap::from([(id, saga)]));

    // The same with an Idempotency-Key: created (not replayed), once; the
    // key then replays it.
    proxy.lose_replies(1, order_script);
    let (keyed, keyed_saga, replayed) = created(&post(&s, 7, Some("lost-1")).await);
    assert_eq!(proxy.replies_lost(), 2, "the commit reply was not lost");
    assert!(!replayed);
    let (again, _, replayed) = created(&post(&s, 7, Some("lost-1")).await);
    assert_eq!((again, replayed), (keyed, true));
    let db = orders_in_db(&s).await;
    assert_eq!(db.len(), 2, "{db:?}");
    assert_eq!(db[&keyed], keyed_saga);
    assert!(db.contains_key(&id));
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_commit_replies_under_concurrent_orders_place_each_once() {
    let s = stack().await;
    let proxy = s.db_proxy.as_ref().unwrap();
    // Two lost replies over two waves: each wave writes at least one
    // script, so both are lost whichever batches the writers form.
    proxy.lose_replies(2, order_script);
    let mut answers = Vec::new();
    for wave in 0..2 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12 {
            let key = match i {
                // Two requests with one key and one body: one order.
                10 | 11 => Some(format!("shared-{wave}")),
                i if i % 3 == 0 => Some(format!("w{wave}-{i}")),
                _ => None,
            };
            let (http, url) = (s.http.clone(), s.url(Role::Order, "/orders"));
            let user = wave + 1;
            tasks.spawn(async move {
                let body = Bytes::from(format!(
                    r#"{{"user_id":{user},"product_id":1001,"quantity":1,"total_amount":10.50}}"#
                ));
                let headers: Vec<(&str, &str)> = key
                    .as_deref()
                    .map(|k| ("idempotency-key", k))
                    .into_iter()
                    .collect();
                let r = http
                    .send(Method::POST, &url, Some(body), &headers)
                    .await
                    .expect("POST /orders");
                (wave, i, created(&r))
            });
        }
        answers.extend(tasks.join_all().await);
    }
    assert_eq!(proxy.replies_lost(), 2, "the commit replies were not lost");
    let db = orders_in_db(&s).await;
    // 2 waves of 12 requests, two of each wave sharing one order.
    assert_eq!(db.len(), 22, "{db:?}");
    let mut ids = HashSet::new();
    for wave in 0..2 {
        let shared: Vec<_> = answers
            .iter()
            .filter(|(w, i, _)| *w == wave && *i >= 10)
            .map(|(_, _, a)| a.clone())
            .collect();
        assert_eq!(shared[0].0, shared[1].0, "one key, two orders");
        assert_eq!(
            shared.iter().filter(|a| a.2).count(),
            1,
            "exactly one replay: {shared:?}"
        );
    }
    for (_, _, (id, saga, _)) in &answers {
        assert_eq!(
            db.get(id),
            Some(saga),
            "answered {id} is not in the database"
        );
        ids.insert(*id);
    }
    assert_eq!(ids.len(), 22);
    s.teardown().await;
}
