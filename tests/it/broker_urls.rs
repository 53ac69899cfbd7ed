//! `rabbitmq.urls`: a role connects to whichever address answers and, when
//! it loses its connection, reconnects through the next one.

use std::time::Duration;

use dop::{
    config::SecretUrl,
    messaging::broker::{connect_any, endpoints},
    roles::Role,
};

use crate::{
    harness::{product_id, Opts, Stack, AMQP_HOST},
    proxy::Proxy,
};

const T: Duration = Duration::from_secs(30);

/// A loopback address nothing listens on.
async fn dead_addr() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn url(addr: impl std::fmt::Display, vhost: &str) -> SecretUrl {
    SecretUrl::new(format!("amqp://guest:guest@{addr}/{vhost}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_address_is_passed_over() {
    let mut s = Stack::start(Opts {
        roles: vec![],
        ..Opts::default()
    })
    .await;
    let dead = dead_addr().await;
    s.cfg.rabbitmq.urls = vec![url(dead, &s.vhost), url(AMQP_HOST, &s.vhost)];
    // `urls` replaces `url`: were it used, nothing would work.
    s.cfg.rabbitmq.url = url(dead, &s.vhost);
    let (conn, at) = connect_any(&endpoints(&s.cfg).unwrap(), 0)
        .await
        .expect("the second address answers");
    assert_eq!(at, 1);
    let _ = conn.close().await;

    // Every address dead: the error names each, without the password.
    let mut all_dead = s.cfg.clone();
    all_dead.rabbitmq.urls = vec![url(dead, &s.vhost), url(dead_addr().await, &s.vhost)];
    let err = connect_any(&endpoints(&all_dead).unwrap(), 0)
        .await
        .err()
        .expect("nothing answers")
        .to_string();
    assert!(err.contains(&dead.to_string()), "{err}");
    assert!(!err.contains("guest@"), "{err}");

    for role in Role::ALL {
        s.start_role(role).await;
    }
    for role in Role::ALL {
        s.wait_ready(role).await;
    }
    let pid = product_id();
    s.add_product(pid, 3).await;
    let id = s.order(pid, 1, "4.00").await;
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");
    s.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_moves_to_the_next_address() {
    let mut s = Stack::start(Opts {
        roles: vec![],
        ..Opts::default()
    })
    .await;
    let a = Proxy::start(AMQP_HOST).await;
    let b = Proxy::start(AMQP_HOST).await;
    s.cfg.rabbitmq.urls = vec![url(a.addr, &s.vhost), url(b.addr, &s.vhost)];
    s.cfg.rabbitmq.url = url(dead_addr().await, &s.vhost);
    for role in Role::ALL {
        s.start_role(role).await;
    }
    for role in Role::ALL {
        s.wait_ready(role).await;
    }
    let pid = product_id();
    s.add_product(pid, 10).await;
    let id = s.order(pid, 1, "4.00").await;
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");

    // The node behind the first address is gone for good: every role
    // carries on through the second.
    a.cut().await;
    for role in Role::ALL {
        s.wait_ready(role).await;
    }
    let id = s.order(pid, 1, "4.00").await;
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");

    // Then the second goes and the first is back: around again.
    a.restore();
    b.cut().await;
    for role in Role::ALL {
        s.wait_ready(role).await;
    }
    let id = s.order(pid, 1, "4.00").await;
    assert_eq!(s.wait_terminal(&id, T).await, "CONFIRMED");
    assert!(s.audit().await.is_clean());
    s.teardown().await;
}
