//! The live progress line on stderr, once a second: elapsed, sent, ok,
//! errors, the rate of the last second, p99 so far and the saga backlog.
//! On a terminal it rewrites one line; otherwise it prints one per second.

use std::{
    io::{IsTerminal, Write},
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{task::JoinHandle, time::Instant};

use super::{load::Recorder, stats};

/// One progress sample, ready to print.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub elapsed: Duration,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub rate: f64,
    pub p99_ms: f64,
    /// None when unknown.
    pub backlog: Option<u64>,
}

impl Line {
    pub fn render(&self) -> String {
        let backlog = self
            .backlog
            .map(stats::fmt_count)
            .unwrap_or_else(|| "?".into());
        format!(
            "[{:>4.0}s] sent {}  ok {}  errors {}  {}  p99 {}  backlog {}",
            self.elapsed.as_secs_f64(),
            stats::fmt_count(self.sent),
            stats::fmt_count(self.ok),
            stats::fmt_count(self.errors),
            stats::fmt_rate(self.rate),
            stats::fmt_ms(self.p99_ms),
            backlog,
        )
    }
}

/// The running progress printer; `stop` ends it.
pub struct Progress {
    task: JoinHandle<()>,
    tty: bool,
}

impl Progress {
    pub fn start(rec: Arc<Recorder>, backlog: Arc<AtomicI64>) -> Self {
        let tty = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            let mut last_ok = 0;
            let mut last_at = start;
            loop {
                let now = tick.tick().await;
                let ok = rec.ok.load(Ordering::Relaxed);
                let b = backlog.load(Ordering::Relaxed);
                let line = Line {
                    elapsed: now - start,
                    sent: rec.sent.load(Ordering::Relaxed),
                    ok,
                    errors: rec.errors.load(Ordering::Relaxed),
                    rate: stats::per_second(ok - last_ok, (now - last_at).as_secs_f64()),
                    p99_ms: rec.p99_ms(),
                    backlog: u64::try_from(b).ok(),
                };
                last_ok = ok;
                last_at = now;
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r\x1b[2K{}", line.render())
                } else {
                    writeln!(err, "{}", line.render())
                };
                let _ = err.flush();
            }
        });
        Self { task, tty }
    }

    pub fn stop(self) {
        self.task.abort();
        if self.tty {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reads_well() {
        let l = Line {
            elapsed: Duration::from_secs(12),
            sent: 12_345,
            ok: 12_300,
            errors: 45,
            rate: 1001.4,
            p99_ms: 8.123,
            backlog: Some(1_200),
        };
        assert_eq!(
            l.render(),
            "[  12s] sent 12,345  ok 12,300  errors 45  1,001/s  p99 8.12 ms  backlog 1,200"
        );
        let l = Line { backlog: None, ..l };
        assert!(l.render().ends_with("backlog ?"));
    }
}
