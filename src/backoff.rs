//! The one retry schedule dop uses wherever it tries again after a
//! failure (a batch that collided, a broker reconnect, an outbox delete):
//! the delay doubles from `first` up to `max`. Callers differ only in
//! those two numbers and in how many attempts they allow.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the second attempt.
    pub first: Duration,
    /// No wait is longer than this.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The wait after failed attempt number `attempt` (1 for the first).
    /// Saturates instead of overflowing, whatever the attempt count.
    pub fn delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        self.first
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_never_overflows() {
        let b = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
        let ms: Vec<u128> = (1..=8).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(ms, [5, 10, 20, 40, 80, 160, 200, 200]);
        assert_eq!(b.delay(0), Duration::from_millis(5));
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(200));
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        assert_eq!(huge.delay(40), Duration::MAX);
    }
}
