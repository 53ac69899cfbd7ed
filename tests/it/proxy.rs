//! A TCP proxy on loopback that a test can cut and restore, to take the
//! broker or the database away from the roles without stopping the real
//! server that other tests share. Through it, a test can also lose the
//! reply to a MySQL command (`lose_replies`): the server gets the command
//! and runs it to the end, the client never hears back.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Which MySQL commands (the payload of a client packet) lose their reply.
pub type Matcher = fn(&[u8]) -> bool;

#[derive(Default)]
struct Lose {
    /// Commands still to lose the reply of, and which.
    armed: Mutex<(usize, Option<Matcher>)>,
    /// Replies lost so far.
    done: AtomicUsize,
}

impl Lose {
    /// Whether this command's reply is to be lost (counts it as armed).
    fn take(&self, payload: &[u8]) -> bool {
        let mut a = self.armed.lock().unwrap();
        match *a {
            (n, Some(m)) if n > 0 && m(payload) => {
                a.0 = n - 1;
                true
            }
            _ => false,
        }
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    lose: Arc<Lose>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy that copies bytes both ways.
    pub async fn start(upstream: &str) -> Proxy {
        Self::start_with(upstream, false).await
    }

    /// A proxy for a MySQL server, through which replies can be lost
    /// (`lose_replies`).
    pub async fn start_mysql(upstream: &str) -> Proxy {
        Self::start_with(upstream, true).await
    }

    async fn start_with(upstream: &str, mysql: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let lose = Arc::new(Lose::default());
        let upstream = upstream.to_string();
        let (up2, conns2, lose2) = (up.clone(), conns.clone(), lose.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let lose = lose2.clone();
                let h = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    if mysql {
                        pipe(client, server, &lose).await;
                    } else {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().unwrap().push(h);
            }
        });
        Proxy {
            addr,
            up,
            conns,
            lose,
            accept,
        }
    }

    /// Drops every connection and refuses new ones; returns once the
    /// connections are closed.
    pub async fn cut(&self) {
        let handles: Vec<JoinHandle<()>> = {
            self.up.store(false, Ordering::SeqCst);
            self.conns.lock().unwrap().drain(..).collect()
        };
        for h in handles {
            h.abort();
            let _ = h.await;
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// The next `times` MySQL commands that `matches` are delivered to the
    /// server, which runs them to their last reply packet; that reply is
    /// swallowed and the connection closed on both sides, as when the
    /// network fails right after a COMMIT reached the server. Only on a
    /// proxy from `start_mysql`, for plain-text MySQL (no TLS, no
    /// compression), as the tests connect.
    pub fn lose_replies(&self, times: usize, matches: Matcher) {
        *self.lose.armed.lock().unwrap() = (times, Some(matches));
    }

    /// Replies lost so far.
    pub fn replies_lost(&self) -> usize {
        self.lose.done.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.up.store(false, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// Copies both ways until either side closes. Client to server goes packet
/// by packet (MySQL framing: 3-byte length, sequence number, payload), so a
/// command can be recognised whole; a command whose reply is to be lost
/// switches server to client from copying to swallowing.
async fn pipe(client: TcpStream, server: TcpStream, lose: &Lose) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let swallow = AtomicBool::new(false);
    let up = async {
        loop {
            let Some((head, payload)) = packet(&mut cr).await else {
                return;
            };
            // Set before the server can answer: the MySQL protocol has
            // one command in flight, so every byte it sends from now on
            // answers this command.
            if lose.take(&payload) {
                swallow.store(true, Ordering::SeqCst);
            }
            if sw.write_all(&head).await.is_err() || sw.write_all(&payload).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut swallowed = Vec::new();
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if swallow.load(Ordering::SeqCst) {
                swallowed.extend_from_slice(&buf[..n]);
                if last_reply_in(&swallowed) {
                    lose.done.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            } else if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either side done: both sockets are dropped (closed) here.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// One packet: its header and its payload.
async fn packet(r: &mut (impl AsyncRead + Unpin)) -> Option<([u8; 4], Vec<u8>)> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await.ok()?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.ok()?;
    Some((head, payload))
}

/// Whether `bytes` (server packets from the start of a reply) hold the
/// command's last reply packet: an error, or an OK packet without
/// SERVER_MORE_RESULTS_EXISTS (each statement of a multi-statement script
/// answers an OK with that flag, but the last).
fn last_reply_in(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0]) as usize;
        let Some(payload) = bytes.get(4..4 + len) else {
            return false;
        };
        match payload.first() {
            Some(0xff) => return true,
            Some(0x00) => {
                let mut rest = &payload[1..];
                // affected rows, last insert id, then the status flags.
                for _ in 0..2 {
                    let Some(n) = lenenc_len(rest) else {
                        return false;
                    };
                    rest = &rest[n.min(rest.len())..];
                }
                if let [lo, hi, ..] = rest {
                    if u16::from_le_bytes([*lo, *hi]) & 0x0008 == 0 {
                        return true;
                    }
                }
            }
            _ => {}
        }
        bytes = &bytes[4 + len..];
    }
    false
}

/// The encoded length of a length-encoded integer.
fn lenenc_len(b: &[u8]) -> Option<usize> {
    Some(match *b.first()? {
        0xfc => 3,
        0xfd => 4,
        0xfe => 9,
        _ => 1,
    })
}
