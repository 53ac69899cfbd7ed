//! A hostile HTTP client: made-up methods that would grow the metrics,
//! half-sent requests that would hold connections, more connections than
//! the server takes, and amounts more precise than a float can tell apart.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dop::roles::Role;
use hyper::Method;
use rand::Rng;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::harness::{self, Opts, Stack};

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

/// A made-up method: never one of the standard ones (a random "GET" or
/// "PUT", about one draw in 250,000, would be a real request with a label
/// of its own and make the series count grow for a good reason).
fn random_method(rng: &mut impl Rng) -> Method {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
    ];
    loop {
        let len = rng.random_range(3..=16);
        let name: String = (0..len)
            .map(|_| char::from(rng.random_range(b'A'..=b'Z')))
            .collect();
        if !STANDARD.contains(&name.as_str()) {
            return Method::from_bytes(name.as_bytes()).unwrap();
        }
    }
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

/// A stack whose order role has the given HTTP limits.
async fn order_with(f: impl FnOnce(&mut dop::config::HttpConfig)) -> Stack {
    let mut s = Stack::start(Opts {
        roles: vec![],
        ..Opts::default()
    })
    .await;
    f(&mut s.cfg.http);
    s.start_role(Role::Order).await;
    s.wait_ready(Role::Order).await;
    s
}

/// Reads until the server closes the connection; `None` if it did not
/// within `within`.
async fn read_to_close(tcp: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_cut_off_while_others_are_served() {
    let s = order_with(|h| h.header_read_timeout = Duration::from_secs(1)).await;
    let addr = s.addrs[&Role::Order];
    let mut idle = Vec::new();
    for _ in 0..5 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        idle.push(tcp);
    }
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(s.get(Role::Order, "/health").await.status, 200);
    }
    for mut tcp in idle {
        assert!(
            read_to_close(&mut tcp, Duration::from_secs(5))
                .await
                .is_some(),
            "a half-sent request still held its connection after 5 s"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(s.get(Role::Order, "/health").await.status, 200);
    s.teardown().await;
}

/// A connection that sends nothing, and one left idle after a keep-alive
/// answer, are closed after `http.header_read_timeout` too: neither holds
/// one of the `http.max_connections` slots for longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    let s = order_with(|h| h.header_read_timeout = Duration::from_secs(1)).await;
    let addr = s.addrs[&Role::Order];
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        read_to_close(&mut silent, Duration::from_secs(5))
            .await
            .is_some(),
        "a connection that sent nothing was still open after 5 s"
    );
    assert!(
        read_to_close(&mut idle, Duration::from_secs(5))
            .await
            .is_some(),
        "an idle keep-alive connection was still open after 5 s"
    );
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_503_with_retry_after() {
    let mut s = order_with(|h| h.max_connections = 2).await;
    let addr = s.addrs[&Role::Order];
    // Two connections served and kept open (keep-alive).
    // wait_ready's pooled connection is let go first.
    s.http = dop::http::client::Client::new(Duration::from_secs(15));
    let mut held: Vec<TcpStream> = Vec::new();
    while held.len() < 2 {
        let tcp = harness::eventually("a connection slot", Duration::from_secs(5), || async {
            let mut tcp = TcpStream::connect(addr).await.ok()?;
            tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .ok()?;
            let mut buf = [0u8; 1024];
            let n = tcp.read(&mut buf).await.ok()?;
            String::from_utf8_lossy(&buf[..n])
                .starts_with("HTTP/1.1 200")
                .then_some(tcp)
        })
        .await;
        held.push(tcp);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut third, Duration::from_secs(5))
        .await
        .expect("the refused connection is closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Once one is closed, a new connection is served again.
    drop(held.pop());
    harness::eventually(
        "a freed connection slot",
        Duration::from_secs(5),
        || async {
            let r = s.http.get(&s.url(Role::Order, "/health")).await.ok()?;
            (r.status == 200).then_some(())
        },
    )
    .await;
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_gets_503_timeout() {
    let s = order_with(|h| h.request_timeout = Duration::from_secs(1)).await;
    let addr = s.addrs[&Role::Order];
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The head is whole; the body stops half way.
    tcp.write_all(
        b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user_id\":",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("TIMEOUT"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    s.teardown().await;
}
