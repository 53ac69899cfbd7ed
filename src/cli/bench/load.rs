//! The load generator: POST /orders closed-loop (N workers back to back) or
//! open-loop (request i sent at start + i/rate on its own task, latency
//! counted from that intended time, so a stall on the server or in the
//! generator shows instead of being hidden). Cheap per request: bodies are
//! rendered up front, responses are read for their status only, and
//! nothing is logged.

use std::{
    collections::BTreeMap,
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};

use super::stats;
use crate::http::client::Client;

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// `concurrency` workers, each sending as soon as its last answer came.
    Closed { concurrency: usize },
    /// `rate` requests per second on schedule, at most `max_in_flight` open.
    Open { rate: f64, max_in_flight: usize },
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Closed { concurrency } => write!(f, "closed loop, {concurrency} workers"),
            Shape::Open { rate, .. } => write!(f, "open loop, {rate} orders/s"),
        }
    }
}

/// Why a request did not get its 201.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    Status(u16),
    Timeout,
    Connect,
    Io,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Status(s) => write!(f, "http {s}"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Io => f.write_str("io"),
        }
    }
}

/// Sorts a client error into timeout, connect or other I/O.
pub fn classify(e: &anyhow::Error) -> ErrorKind {
    if e.downcast_ref::<tokio::time::error::Elapsed>().is_some() {
        return ErrorKind::Timeout;
    }
    for cause in e.chain() {
        if let Some(h) = cause.downcast_ref::<hyper_util::client::legacy::Error>() {
            if h.is_connect() {
                return ErrorKind::Connect;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return ErrorKind::Connect;
            }
        }
    }
    ErrorKind::Io
}

/// Counters and the latency histogram, shared by every request task and
/// read once a second by the progress line.
pub struct Recorder {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    kinds: Mutex<BTreeMap<ErrorKind, u64>>,
    latency: Mutex<Histogram<u64>>,
}

impl Recorder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            kinds: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(stats::histogram()?),
        })
    }

    /// Records one answered (or failed) request. Failed requests count in
    /// the latency too: a timeout is the worst latency there is.
    pub fn record(&self, latency: Duration, outcome: Result<(), ErrorKind>) {
        if let Ok(mut h) = self.latency.lock() {
            stats::record(&mut h, latency);
        }
        match outcome {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(kind) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut k) = self.kinds.lock() {
                    *k.entry(kind).or_default() += 1;
                }
            }
        }
    }

    /// The p99 so far, in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        self.latency
            .lock()
            .map(|h| {
                if h.is_empty() {
                    0.0
                } else {
                    h.value_at_quantile(0.99) as f64 / 1000.0
                }
            })
            .unwrap_or(0.0)
    }

    pub fn latency(&self) -> stats::Percentiles {
        self.latency
            .lock()
            .map(|h| stats::Percentiles::from_histogram(&h))
            .unwrap_or_default()
    }

    pub fn errors_by_kind(&self) -> BTreeMap<String, u64> {
        self.kinds
            .lock()
            .map(|k| k.iter().map(|(kind, n)| (kind.to_string(), *n)).collect())
            .unwrap_or_default()
    }
}

/// What every request needs: the client, the URLs and the pre-rendered bodies.
pub struct Target {
    pub client: Client,
    /// One URL per replica of the order role; requests take turns.
    pub urls: Vec<String>,
    bodies: Vec<Bytes>,
    next: AtomicUsize,
    /// Failed requests whose error has been printed (the first few only).
    printed: AtomicUsize,
}

/// Failed requests of a run whose error text is printed: a kind and a count
/// say that something failed, the text says what (a reset connection, a
/// closed keep-alive, a TLS error). The bench logs no other way: tracing is
/// set up by `serve` only.
const PRINTED_ERRORS: usize = 5;

impl Target {
    /// Renders `n` order bodies: a random user, a random product among
    /// `products`, one unit at 9.99. `urls` must not be empty.
    pub fn new(client: Client, urls: Vec<String>, products: &[i64], n: usize, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let bodies = (0..n.max(1))
            .map(|_| {
                let user: u32 = rng.random_range(1..=1_000_000);
                let product = products
                    .get(rng.random_range(0..products.len().max(1)))
                    .copied()
                    .unwrap_or(8001);
                Bytes::from(format!(
                    r#"{{"user_id":{user},"product_id":{product},"quantity":1,"total_amount":9.99}}"#
                ))
            })
            .collect();
        Self {
            client,
            urls,
            bodies,
            next: AtomicUsize::new(0),
            printed: AtomicUsize::new(0),
        }
    }

    /// Sends the next order to the next URL in turn; `Ok` only for a 201.
    /// A refused connection (a replica stopped or not yet listening) goes
    /// to the following URL, as a load balancer routes around a target that
    /// is gone: no byte of the request reached anyone, so the retry cannot
    /// place an order twice. Any other failure is the request's result.
    pub async fn post_order(&self) -> Result<(), ErrorKind> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let body = self.bodies[n % self.bodies.len()].clone();
        let mut last = ErrorKind::Connect;
        for k in 0..self.urls.len() {
            let url = &self.urls[(n + k) % self.urls.len()];
            match self
                .client
                .send(Method::POST, url, Some(body.clone()), &[])
                .await
            {
                Ok(r) if r.status == StatusCode::CREATED => return Ok(()),
                Ok(r) => return Err(ErrorKind::Status(r.status.as_u16())),
                Err(e) => match classify(&e) {
                    ErrorKind::Connect => last = ErrorKind::Connect,
                    other => {
                        if self.printed.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS {
                            eprintln!("bench: POST {url} failed ({other}): {e:#}");
                        }
                        return Err(other);
                    }
                },
            }
        }
        Err(last)
    }
}

/// When request `i` is due, counted from the start of an open-loop run.
pub fn intended_offset(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// How many requests an open-loop run of `duration` at `rate` sends: every
/// `i` whose intended time falls before the end.
pub fn planned_requests(duration: Duration, rate: f64) -> u64 {
    if rate <= 0.0 {
        return 0;
    }
    // The epsilon keeps 30 s x 1000/s at 30,000 despite float rounding.
    (duration.as_secs_f64() * rate - 1e-9).ceil().max(0.0) as u64
}

/// Runs the load; returns when every request sent has been answered.
pub async fn run(target: Arc<Target>, rec: Arc<Recorder>, shape: Shape, duration: Duration) {
    match shape {
        Shape::Closed { concurrency } => {
            let end = Instant::now() + duration;
            let mut workers = JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let (target, rec) = (target.clone(), rec.clone());
                workers.spawn(async move {
                    while Instant::now() < end {
                        rec.sent.fetch_add(1, Ordering::Relaxed);
                        let t0 = Instant::now();
                        let outcome = target.post_order().await;
                        rec.record(t0.elapsed(), outcome);
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
        Shape::Open {
            rate,
            max_in_flight,
        } => {
            let total = planned_requests(duration, rate);
            open_loop(rate, total, max_in_flight, |_, intended| {
                let (target, rec) = (target.clone(), rec.clone());
                async move {
                    rec.sent.fetch_add(1, Ordering::Relaxed);
                    let outcome = target.post_order().await;
                    rec.record(intended.elapsed(), outcome);
                }
            })
            .await;
        }
    }
}

/// The open-loop scheduler: issues `total` requests, request `i` at
/// `start + i/rate` (late ones at once, in a burst, as a real arrival
/// process would pile up), each on its own task, with at most
/// `max_in_flight` open. `issue(i, intended)` makes request `i`'s future;
/// it measures from `intended`, so time spent waiting here is counted.
pub async fn open_loop<F, Fut>(rate: f64, total: u64, max_in_flight: usize, mut issue: F)
where
    F: FnMut(u64, Instant) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cap = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(cap));
    let start = Instant::now();
    for i in 0..total {
        let intended = start + intended_offset(i, rate);
        if intended > Instant::now() {
            tokio::time::sleep_until(intended).await;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let fut = issue(i, intended);
        tokio::spawn(async move {
            fut.await;
            drop(permit);
        });
    }
    // Every slot free again: the last request has its answer.
    let _ = slots.acquire_many(cap as u32).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_math() {
        assert_eq!(intended_offset(0, 1000.0), Duration::ZERO);
        assert_eq!(intended_offset(1000, 1000.0), Duration::from_secs(1));
        assert_eq!(intended_offset(3, 2.0), Duration::from_millis(1500));
        assert_eq!(planned_requests(Duration::from_secs(30), 1000.0), 30_000);
        assert_eq!(planned_requests(Duration::from_secs(3), 0.1 * 10.0), 3);
        // 0 s, 2 s: both before the end of a 3 s run.
        assert_eq!(planned_requests(Duration::from_secs(3), 0.5), 2);
        assert_eq!(planned_requests(Duration::from_millis(1500), 1500.0), 2250);
        assert_eq!(planned_requests(Duration::from_secs(10), 0.0), 0);
        assert_eq!(planned_requests(Duration::ZERO, 100.0), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_sends_on_schedule() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let log = sent.clone();
        open_loop(100.0, 50, 1000, move |i, intended| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((i, intended - start, Instant::now() - start));
            }
        })
        .await;
        let sent = sent.lock().unwrap();
        assert_eq!(sent.len(), 50);
        for (i, intended, actual) in sent.iter() {
            assert_eq!(*intended, Duration::from_millis(10 * i));
            assert!(*actual >= *intended);
            assert!(
                *actual - *intended < Duration::from_millis(2),
                "request {i} late"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_counts_from_the_intended_time() {
        // One slot and a server that takes 100 ms: requests meant every 10 ms
        // queue behind each other, and their latency must show the queueing
        // (coordinated omission would report 100 ms for each).
        let lat = Arc::new(Mutex::new(Vec::new()));
        let log = lat.clone();
        open_loop(100.0, 10, 1, move |_, intended| {
            let log = log.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                log.lock().unwrap().push(intended.elapsed());
            }
        })
        .await;
        let lat = lat.lock().unwrap();
        assert_eq!(lat.len(), 10);
        assert_eq!(lat[0], Duration::from_millis(100));
        // The 10th was meant at 90 ms and answered at 1000 ms.
        assert!(lat[9] >= Duration::from_millis(900), "{:?}", lat[9]);
        assert!(
            lat.windows(2).all(|w| w[1] > w[0]),
            "latency must grow: {lat:?}"
        );
    }

    #[test]
    fn recorder_counts_by_kind() {
        let r = Recorder::new().unwrap();
        r.record(Duration::from_millis(2), Ok(()));
        r.record(Duration::from_millis(4), Err(ErrorKind::Status(503)));
        r.record(Duration::from_millis(4), Err(ErrorKind::Status(503)));
        r.record(Duration::from_secs(10), Err(ErrorKind::Timeout));
        assert_eq!(r.ok.load(Ordering::Relaxed), 1);
        assert_eq!(r.errors.load(Ordering::Relaxed), 3);
        let kinds = r.errors_by_kind();
        assert_eq!(kinds["http 503"], 2);
        assert_eq!(kinds["timeout"], 1);
        assert_eq!(r.latency().count, 4);
        assert!(r.p99_ms() >= 9_990.0);
    }

    #[test]
    fn bodies_are_valid_orders_for_the_products() {
        let products = [8001, 8002, 8003];
        let t = Target::new(
            Client::default(),
            vec!["http://x/orders".into()],
            &products,
            64,
            7,
        );
        for b in &t.bodies {
            let v: serde_json::Value = serde_json::from_slice(b).unwrap();
            assert!(products.contains(&v["product_id"].as_i64().unwrap()));
            assert!(v["user_id"].as_i64().unwrap() >= 1);
            assert_eq!(v["quantity"], 1);
            assert_eq!(v["total_amount"].to_string(), "9.99");
        }
    }

    /// A stand-in order role that answers 201 and counts what it got.
    async fn counting_role() -> (String, Arc<AtomicU64>) {
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/orders",
            axum::routing::post(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::Relaxed);
                    StatusCode::CREATED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/orders"), hits)
    }

    #[tokio::test]
    async fn orders_take_turns_over_the_replicas() {
        let (a, hits_a) = counting_role().await;
        let (b, hits_b) = counting_role().await;
        let t = Target::new(Client::default(), vec![a, b], &[8001], 8, 1);
        for _ in 0..6 {
            assert_eq!(t.post_order().await, Ok(()));
        }
        assert_eq!(hits_a.load(Ordering::Relaxed), 3);
        assert_eq!(hits_b.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_goes_to_the_next_replica() {
        let (live, hits) = counting_role().await;
        // Nothing listens on port 1 of loopback: a stopped replica.
        let dead = "http://127.0.0.1:1/orders".to_string();
        let t = Target::new(Client::default(), vec![dead.clone(), live], &[8001], 8, 1);
        for _ in 0..4 {
            assert_eq!(t.post_order().await, Ok(()));
        }
        assert_eq!(
            hits.load(Ordering::Relaxed),
            4,
            "every order reached the live one"
        );
        let none = Target::new(Client::default(), vec![dead], &[8001], 8, 1);
        assert_eq!(none.post_order().await, Err(ErrorKind::Connect));
    }

    #[tokio::test]
    async fn errors_are_classified() {
        // Nothing listens on port 1 of loopback: a connect error.
        let c = Client::new(Duration::from_secs(2));
        let e = c.get("http://127.0.0.1:1/").await.unwrap_err();
        assert_eq!(classify(&e), ErrorKind::Connect);
        let elapsed = tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .unwrap_err();
        let e = anyhow::Error::new(elapsed).context("did not answer");
        assert_eq!(classify(&e), ErrorKind::Timeout);
    }
}
