//! Running one batch of work as transactions, the same way in every role.
//!
//! A role gives a list of items (deliveries, orders) and one `attempt`
//! function that reads what it needs, decides, and writes, all in one
//! transaction, returning one result per item. The runner calls it for the
//! whole list; a batch of one is the ordinary case of the same code.
//!
//! - Contention (deadlock, lock wait timeout), a duplicate key (a
//!   concurrent writer won a race) or a lost connection: the same items are
//!   tried again after a backoff, up to the budget. `attempt` reads before it
//!   writes, so what an earlier attempt committed (a commit whose reply was
//!   lost) is found and not written twice.
//! - A permanent error (or a duplicate key that persists): the items are
//!   split in halves, and each half is run by the same `attempt`, down to
//!   the single item that fails; only that one gets the failure.
//! - Every failed attempt is logged with its cause and counted in
//!   `batch_failures_total{batch, cause}`.

use std::time::Duration;

use super::{errors::ErrorClass, pool::DbPool, Conn};
use crate::{backoff::Backoff, observability::Metrics};

/// Why an item was not done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemFailure {
    /// The database could not be used for now; the same item may succeed
    /// later (retry it through the retry queue, answer 503).
    Transient(String),
    /// The item itself fails, alone, every time (dead-letter it, answer
    /// 500).
    Permanent(String),
}

/// How a batch is run: its name on logs and metrics, and its retries.
pub struct Runner<'a> {
    /// `batch` label of `batch_failures_total`.
    pub name: &'static str,
    pub pool: &'a DbPool,
    pub metrics: &'a Metrics,
    pub backoff: Backoff,
    /// Attempts per part before its items fail as transient.
    pub attempts: u32,
}

/// The wait between attempts of every executor: short, since contention
/// clears in milliseconds, capped so a retry never holds a delivery long.
pub const BACKOFF: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
/// Attempts per part unless the role configures its own.
pub const ATTEMPTS: u32 = 5;

impl<'a> Runner<'a> {
    /// A runner with the default backoff and attempts; `name` is its
    /// `batch` label.
    pub fn new(name: &'static str, pool: &'a DbPool, metrics: &'a Metrics) -> Self {
        Self {
            name,
            pool,
            metrics,
            backoff: BACKOFF,
            attempts: ATTEMPTS,
        }
    }

    /// The same runner with its own attempt budget (at least one).
    pub fn attempts(self, attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            ..self
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    Db(diesel::result::Error),
    /// No connection from the pool in time.
    Pool(String),
    /// `attempt` returned a different number of results than it got
    /// items: a bug, never a reason to ack.
    Count {
        got: usize,
        expected: usize,
    },
}

impl From<diesel::result::Error> for AttemptError {
    fn from(e: diesel::result::Error) -> Self {
        AttemptError::Db(e)
    }
}

impl AttemptError {
    fn cause(&self) -> &'static str {
        match self {
            AttemptError::Db(e) => super::errors::classify(e).as_str(),
            AttemptError::Pool(_) => "connection",
            AttemptError::Count { .. } => "outcome_count",
        }
    }

    fn class(&self) -> ErrorClass {
        match self {
            AttemptError::Db(e) => super::errors::classify(e),
            AttemptError::Pool(_) => ErrorClass::Connection,
            // Trying the same items again would give the same count.
            AttemptError::Count { .. } => ErrorClass::Permanent,
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Db(e) => write!(f, "{e}"),
            AttemptError::Pool(e) => write!(f, "no database connection: {e}"),
            AttemptError::Count { got, expected } => {
                write!(f, "the batch returned {got} results for {expected} items")
            }
        }
    }
}

/// How a part ended after its retries.
enum PartError {
    /// Split it (or, alone, fail it for good).
    Permanent(String),
    /// Fail all of it for now.
    Transient(String),
}

impl Runner<'_> {
    /// Runs `attempt` over `items` as described in the module doc; returns
    /// one result per item, in order.
    pub async fn run<I, O>(
        &self,
        items: &[I],
        mut attempt: impl AsyncFnMut(&mut Conn, &[I]) -> Result<Vec<O>, AttemptError>,
    ) -> Vec<Result<O, ItemFailure>> {
        let mut results: Vec<Option<Result<O, ItemFailure>>> =
            (0..items.len()).map(|_| None).collect();
        // Parts still to run, the next one last: the first half of a split
        // runs before the second, so arrival order is kept.
        let mut parts = vec![(0, items.len())];
        while let Some((from, to)) = parts.pop() {
            if from == to {
                continue;
            }
            let part = &items[from..to];
            match self.run_part(part, &mut attempt).await {
                Ok(outs) => {
                    for (slot, o) in results[from..to].iter_mut().zip(outs) {
                        *slot = Some(Ok(o));
                    }
                }
                Err(PartError::Permanent(_)) if part.len() > 1 => {
                    let mid = from + part.len() / 2;
                    parts.push((mid, to));
                    parts.push((from, mid));
                }
                Err(PartError::Permanent(reason)) => {
                    results[from] = Some(Err(ItemFailure::Permanent(reason)));
                }
                Err(PartError::Transient(reason)) => {
                    for slot in &mut results[from..to] {
                        *slot = Some(Err(ItemFailure::Transient(reason.clone())));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ItemFailure::Transient("not run".into()))))
            .collect()
    }

    /// One part, tried again while trying again can help.
    async fn run_part<I, O>(
        &self,
        part: &[I],
        attempt: &mut impl AsyncFnMut(&mut Conn, &[I]) -> Result<Vec<O>, AttemptError>,
    ) -> Result<Vec<O>, PartError> {
        let mut n = 0;
        loop {
            n += 1;
            let r = match self.pool.get().await {
                Ok(mut conn) => match attempt(&mut conn, part).await {
                    Ok(outs) if outs.len() == part.len() => Ok(outs),
                    Ok(outs) => Err(AttemptError::Count {
                        got: outs.len(),
                        expected: part.len(),
                    }),
                    Err(e) => Err(e),
                },
                Err(e) => Err(AttemptError::Pool(e.to_string())),
            };
            let e = match r {
                Ok(outs) => return Ok(outs),
                Err(e) => e,
            };
            let class = e.class();
            let again = n < self.attempts
                && matches!(
                    class,
                    ErrorClass::Contention | ErrorClass::Connection | ErrorClass::Duplicate
                )
                && !matches!(e, AttemptError::Count { .. });
            self.metrics.batch_failed(self.name, e.cause());
            tracing::warn!(
                batch = self.name,
                items = part.len(),
                attempt = n,
                cause = e.cause(),
                error = %e,
                again,
                "batch transaction failed"
            );
            if again {
                tokio::time::sleep(self.backoff.delay(n)).await;
                continue;
            }
            return Err(match (&e, class) {
                (AttemptError::Count { .. }, _) => PartError::Transient(e.to_string()),
                (_, ErrorClass::Permanent | ErrorClass::Duplicate) => {
                    PartError::Permanent(e.to_string())
                }
                _ => PartError::Transient(e.to_string()),
            });
        }
    }
}
