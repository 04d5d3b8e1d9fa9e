//! Adaptive batch sizes (`--batch-size auto`).
//!
//! Each applier's tasks are sized from what its last task cost: rows enough
//! for about [`AutoBatch::target`] of UDF time, within `min..=max`. An
//! applier starts at `min`, so that a UDF taking a second a row checkpoints
//! after a few rows rather than after 10,240; a cheap one reaches `max`
//! within a few tasks. A size grows by at most [`MAX_GROWTH`] a task, so
//! one quick sample (a cache hit, a short input) cannot jump a slow UDF to
//! hours a batch; it shrinks at once when a task took too long.
//!
//! Sizes change only where a task is cut: the plan's tasks are ranges of at
//! most `max` rows, and an applier given a longer one than its size takes
//! its head and leaves the rest queued (see [`crate::Scheduler`]).
//! Checkpoints are reused whatever size they were computed at
//! ([`crate::plan::fragment_ranges`]), so a job resumed after a kill
//! computes only the rows no batch holds.

use std::time::Duration;

/// How much a size may grow from one task to the next.
pub const MAX_GROWTH: u64 = 4;

/// The bounds and aim of adaptive batch sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoBatch {
    /// UDF time one batch should take.
    pub target: Duration,
    /// Fewest physical rows a batch (the first of each applier's).
    pub min: u64,
    /// Most physical rows a batch.
    pub max: u64,
}

impl AutoBatch {
    /// The size of an applier's first task.
    pub fn first(&self) -> u64 {
        self.min.max(1)
    }

    /// The size after a task of `rows` physical rows whose UDF took
    /// `udf_time` (`None` when no row was selected, so the UDF cost
    /// nothing), for an applier whose size was `previous`.
    pub fn next(&self, previous: u64, rows: u64, udf_time: Option<Duration>) -> u64 {
        let grown = previous.max(1).saturating_mul(MAX_GROWTH);
        let aimed = match udf_time {
            Some(took) if !took.is_zero() && rows > 0 => {
                let per_row = took.as_secs_f64() / rows as f64;
                let rows = self.target.as_secs_f64() / per_row;
                if rows.is_finite() { rows.round() as u64 } else { u64::MAX }
            }
            _ => u64::MAX,
        };
        aimed.min(grown).clamp(self.first(), self.max.max(self.first()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> AutoBatch {
        AutoBatch { target: Duration::from_secs(10), min: 1, max: 10_240 }
    }

    #[test]
    fn a_slow_udf_gets_batches_of_the_target_time() {
        // 20 ms a row: 500 rows make 10 s, reached by growing 4x a task.
        let mut size = auto().first();
        let mut sizes = Vec::new();
        for _ in 0..8 {
            size = auto().next(size, size, Some(Duration::from_millis(20) * size as u32));
            sizes.push(size);
        }
        assert_eq!(sizes, [4, 16, 64, 256, 500, 500, 500, 500]);
        // One second a row: ten rows.
        assert_eq!(auto().next(64, 64, Some(Duration::from_secs(64))), 10);
    }

    #[test]
    fn a_cheap_udf_reaches_the_maximum_and_stays_there() {
        let mut size = auto().first();
        for _ in 0..10 {
            size = auto().next(size, size, Some(Duration::from_nanos(100) * size as u32));
        }
        assert_eq!(size, 10_240);
        assert_eq!(auto().next(10_240, 10_240, None), 10_240, "nothing selected costs nothing");
    }

    #[test]
    fn a_task_that_took_too_long_shrinks_the_next_at_once_within_bounds() {
        let bounded = AutoBatch { min: 8, max: 100, ..auto() };
        assert_eq!(bounded.next(100, 100, Some(Duration::from_secs(1000))), 8);
        assert_eq!(bounded.next(100, 100, Some(Duration::from_secs(20))), 50);
        assert_eq!(bounded.next(8, 8, Some(Duration::ZERO)), 32);
        assert_eq!(bounded.first(), 8);
    }
}
