//! The vendored amqprs sends the frames queued behind a frame in one write
//! (vendor/amqprs/PATCHED.md). Against the real RabbitMQ: a burst far larger
//! than one coalesced write (128 KiB), from two channels of one connection at
//! once, is confirmed message by message and arrives complete and in order on
//! each queue. The broker closes a connection that sends a malformed or
//! interleaved frame, so a coalescing bug fails here.

use std::{sync::Arc, time::Duration};

use amqprs::{
    channel::{BasicConsumeArguments, QueueDeclareArguments},
    connection::Connection,
};
use dop::{
    config::SecretUrl,
    messaging::publisher::{ConfirmChannel, Outgoing},
};

use crate::harness::AMQP_HOST;

const MESSAGES: usize = 2_000;
/// 2,000 x 700 bytes: about 1.3 MiB per channel, ten coalesced writes or more.
const BODY: usize = 700;

fn body(channel: usize, seq: usize) -> Vec<u8> {
    let mut b = format!("{channel}:{seq:06}:").into_bytes();
    b.resize(BODY, b'a' + (seq % 26) as u8);
    b
}

async fn connect() -> Connection {
    let url = SecretUrl::new(format!("amqp://guest:guest@{AMQP_HOST}/%2f"));
    let args = dop::messaging::broker::connection_args(&url).expect("amqp url");
    Connection::open(&args).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach RabbitMQ at {AMQP_HOST} ({e}); start it with `rabbitmq-server -detached`"
        )
    })
}

/// Publishes the whole burst without waiting between messages, then waits
/// for every confirm.
async fn burst(confirm: &ConfirmChannel, channel: usize, queue: &str) {
    let mut confirms = Vec::with_capacity(MESSAGES);
    for seq in 0..MESSAGES {
        let out = Outgoing {
            exchange: String::new(),
            routing_key: queue.to_string(),
            message_id: format!("m-{channel}-{seq}"),
            body: body(channel, seq),
            headers: vec![("trace_id".into(), amqprs::FieldValue::from("burst"))],
        };
        confirms.push(confirm.publish(&out).await.expect("publish"));
    }
    for (seq, c) in confirms.into_iter().enumerate() {
        c.await
            .unwrap_or_else(|e| panic!("channel {channel}: message {seq} not confirmed: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_writes_from_two_channels_arrive_whole_and_in_order() {
    let conn = connect().await;
    let mut queues = Vec::new();
    let mut publishers = Vec::new();
    for _ in 0..2 {
        let ch = conn.open_channel(None).await.expect("channel");
        let (queue, _, _) = ch
            .queue_declare(QueueDeclareArguments::exclusive_server_named())
            .await
            .expect("declare queue")
            .expect("server-named queue");
        queues.push(queue);
        let confirm = ConfirmChannel::open(
            ch,
            Duration::from_secs(60),
            Arc::new(tokio::sync::Notify::new()),
        )
        .await
        .expect("confirm mode");
        publishers.push(confirm);
    }

    // Both channels publish at once: their frames share the connection's
    // writes.
    tokio::join!(
        burst(&publishers[0], 0, &queues[0]),
        burst(&publishers[1], 1, &queues[1]),
    );

    let reader = conn.open_channel(None).await.expect("consumer channel");
    for (channel, queue) in queues.iter().enumerate() {
        let args = BasicConsumeArguments::new(queue, &format!("check-{channel}"))
            .manual_ack(false)
            .exclusive(true)
            .finish();
        let (_, mut rx) = reader.basic_consume_rx(args).await.expect("consume");
        for seq in 0..MESSAGES {
            let msg = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("queue {channel}: message {seq} never arrived"))
                .expect("consumer open");
            let got = msg.content.expect("a body");
            assert!(
                got == body(channel, seq),
                "queue {channel}: message {seq} is {:?}",
                String::from_utf8_lossy(&got[..got.len().min(20)])
            );
        }
    }
    conn.close().await.ok();
}
