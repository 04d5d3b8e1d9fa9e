//! How long a worker waits between attempts to find and join its head:
//! jittered exponential backoff, so that a hundred workers of a restarted
//! head do not knock at the same instant.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Doubling delays from `first` up to `max`, each jittered down by up to a
/// quarter, so that workers at the cap do not fall into step.
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

    /// The next delay for a jitter `unit` in [0, 1]: the base delay (capped
    /// at `max`) times 0.75 to 1.
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let base = self.next.min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        let factor = 0.75 + 0.25 * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base)
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
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay_with(1.0).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
        backoff.reset();
        assert_eq!(backoff.next_delay_with(1.0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_spreads_delays_below_the_cap() {
        let mut low = Backoff::joining();
        assert_eq!(low.next_delay_with(0.0), Duration::from_millis(375));
        let at_cap: Vec<Duration> = (0..10).map(|_| low.next_delay_with(0.0)).collect();
        assert_eq!(at_cap.last(), Some(&Duration::from_millis(11250)), "a quarter below the cap");
        let mut random = Backoff::joining();
        let delays: Vec<Duration> = (0..30).map(|_| random.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(15)));
        let capped = &delays[10..];
        assert!(capped.iter().any(|d| *d != capped[0]), "delays at the cap differ: {capped:?}");
        let mut huge = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        for _ in 0..3 {
            assert!(huge.next_delay_with(0.5) > Duration::ZERO, "no overflow");
        }
    }
}
