//! How long a worker waits between attempts to find and join its head:
//! jittered exponential backoff, so that a hundred workers of a restarted
//! head do not knock at the same instant.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Doubling delays from `first` up to `max`, each jittered by ±20%.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Joining a head: 0.5 s growing to 15 s.
    pub fn joining() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(15))
    }

    /// Delays from `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, next: first }
    }

    /// The next delay, with jitter drawn from the process's random state.
    pub fn next_delay(&mut self) -> Duration {
        let unit = RandomState::new().hash_one(self.next) as f64 / u64::MAX as f64;
        self.next_delay_with(unit)
    }

    /// The next delay for a jitter `unit` in [0, 1]: the base delay times
    /// 0.8 to 1.2, never above `max`.
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0)).min(self.max)
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_half_a_second_to_fifteen() {
        let mut backoff = Backoff::joining();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay_with(0.5).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
        backoff.reset();
        assert_eq!(backoff.next_delay_with(0.5), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_within_a_fifth_and_under_the_cap() {
        let mut low = Backoff::joining();
        let mut high = Backoff::joining();
        assert_eq!(low.next_delay_with(0.0), Duration::from_millis(400));
        assert_eq!(high.next_delay_with(1.0), Duration::from_millis(600));
        let mut capped = Backoff::joining();
        let last = (0..10).map(|_| capped.next_delay_with(1.0)).last();
        assert_eq!(last, Some(Duration::from_secs(15)));
        let mut random = Backoff::joining();
        for _ in 0..20 {
            assert!(random.next_delay() <= Duration::from_secs(15));
        }
    }
}
