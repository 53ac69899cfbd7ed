//! A hostile HTTP client: made-up methods that would grow the metrics,
//! half-sent requests that would hold connections, more connections than
//! the server takes, and amounts more precise than a float can tell apart.

use std::time::Duration;

use bytes::Bytes;
use dop::roles::Role;
use hyper::Method;
use rand::Rng;

use crate::harness::{Opts, Stack};

fn order_only() -> Opts {
    Opts {
        roles: vec![Role::Order],
        ..Opts::default()
    }
}

/// The series on a /metrics page (lines that are not comments).
fn series(page: &str) -> usize {
    page.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

fn random_method(rng: &mut impl Rng) -> Method {
    let len = rng.random_range(3..=16);
    let name: String = (0..len)
        .map(|_| char::from(rng.random_range(b'A'..=b'Z')))
        .collect();
    Method::from_bytes(name.as_bytes()).unwrap()
}

async fn send_random_methods(s: &Stack, n: usize) {
    let url = s.url(Role::Order, "/orders");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let http = s.http.clone();
        let url = url.clone();
        let methods: Vec<Method> = {
            let mut rng = rand::rng();
            (0..n / 8).map(|_| random_method(&mut rng)).collect()
        };
        tasks.push(tokio::spawn(async move {
            for m in methods {
                let r = http.send(m.clone(), &url, None, &[]).await.unwrap();
                assert!(
                    r.status.is_client_error(),
                    "{m} answered {}: {}",
                    r.status,
                    r.text()
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_grow_the_metrics() {
    let s = Stack::start(order_only()).await;
    // A first few create whatever series a made-up method may have.
    send_random_methods(&s, 16).await;
    let before = s.get(Role::Order, "/metrics").await.text();
    send_random_methods(&s, 10_000).await;
    let after = s.get(Role::Order, "/metrics").await.text();
    assert_eq!(series(&before), series(&after), "{after}");
    // Only counters and sums grew: a few digits, not a line per method.
    assert!(
        after.len() < before.len() + 512,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    assert!(after.contains("method=\"OTHER\""), "{after}");
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_are_read_from_the_text_not_a_float() {
    let s = Stack::start(order_only()).await;
    let url = s.url(Role::Order, "/orders");
    let post = |amount: &'static str| {
        let body =
            format!(r#"{{"user_id":1,"product_id":1,"quantity":1,"total_amount":{amount}}}"#);
        let http = s.http.clone();
        let url = url.clone();
        async move {
            http.send(Method::POST, &url, Some(Bytes::from(body)), &[])
                .await
                .unwrap()
        }
    };
    for amount in ["0.0100000000000000001", "\"0.0100000000000000001\"", "1e-3"] {
        let r = post(amount).await;
        assert_eq!(r.status, 400, "{amount}: {}", r.text());
        let msg = r.json().unwrap()["error"].as_str().unwrap().to_string();
        assert!(
            msg.contains("total_amount") && msg.contains("two decimals"),
            "{amount}: {msg}"
        );
    }
    for amount in ["199.98", "\"199.98\"", "1e2"] {
        let r = post(amount).await;
        assert_eq!(r.status, 201, "{amount}: {}", r.text());
    }
    s.teardown().await;
}
