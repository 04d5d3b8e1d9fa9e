//! What happens when a UDF call fails: the [`ErrorPolicy`] and, for
//! `retry`, the [`RetryBackoff`] between tries. Both read and print as the
//! command line and the column's UDF record write them: `fail`, `retry:3`,
//! `skip`; `200,20000` (first and longest delay in milliseconds).

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::time::Duration;

/// What happens when a UDF call fails or panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// The job fails, naming the fragment and rows; nothing of the failed
    /// batch reaches the table.
    #[default]
    Fail,
    /// The call is tried up to this many more times, waiting a
    /// [`RetryBackoff`] between tries, then the job fails.
    Retry { attempts: u32 },
    /// The failing rows become null and each error is recorded with its
    /// row address; the job goes on (within its skip budget).
    Skip,
}

impl fmt::Display for ErrorPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorPolicy::Fail => f.write_str("fail"),
            ErrorPolicy::Retry { attempts } => write!(f, "retry:{attempts}"),
            ErrorPolicy::Skip => f.write_str("skip"),
        }
    }
}

impl FromStr for ErrorPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is no error policy: give fail, retry:N (N more tries, 1 to 100) or skip");
        match text.trim() {
            "fail" => Ok(ErrorPolicy::Fail),
            "skip" => Ok(ErrorPolicy::Skip),
            other => {
                let attempts: u32 = other.strip_prefix("retry:").ok_or_else(bad)?.trim().parse().map_err(|_| bad())?;
                if !(1..=100).contains(&attempts) {
                    return Err(bad());
                }
                Ok(ErrorPolicy::Retry { attempts })
            }
        }
    }
}

/// The wait before each retry of a failing call: `first` doubling up to
/// `max`, each drawn between half and all of that (jitter), so that the
/// threads of many appliers that failed together do not call again
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryBackoff {
    /// Before the first retry.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for RetryBackoff {
    /// 200 ms, doubling up to 20 s.
    fn default() -> Self {
        Self { first: Duration::from_millis(200), max: Duration::from_secs(20) }
    }
}

impl RetryBackoff {
    /// The wait before retry `retry` (0 for the first), for a jitter
    /// `unit` in [0, 1].
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let doubled = self.first.saturating_mul(2u32.saturating_pow(retry.min(31)));
        let ceiling = doubled.min(self.max);
        ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// The wait before retry `retry`, with jitter from the process's
    /// random state.
    pub fn delay(&self, retry: u32) -> Duration {
        let unit = RandomState::new().hash_one((retry, std::thread::current().id())) as f64 / u64::MAX as f64;
        self.delay_with(retry, unit)
    }
}

impl fmt::Display for RetryBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.first.as_millis(), self.max.as_millis())
    }
}

impl FromStr for RetryBackoff {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is no retry backoff: give FIRST,MAX in milliseconds, FIRST <= MAX <= 3600000 (e.g. 200,20000)");
        let (first, max) = text.split_once(',').ok_or_else(bad)?;
        let first: u64 = first.trim().parse().map_err(|_| bad())?;
        let max: u64 = max.trim().parse().map_err(|_| bad())?;
        if first > max || max > 3_600_000 {
            return Err(bad());
        }
        Ok(Self { first: Duration::from_millis(first), max: Duration::from_millis(max) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_read_as_they_print() {
        for text in ["fail", "skip", "retry:3", "retry:100"] {
            let policy: ErrorPolicy = text.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!(" retry: 2 ".parse::<ErrorPolicy>(), Ok(ErrorPolicy::Retry { attempts: 2 }));
        for bad in ["", "retry", "retry:0", "retry:-1", "retry:101", "retry:x", "ignore", "Skip"] {
            let error = bad.parse::<ErrorPolicy>().err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert!(error.contains("fail, retry:N"), "{error}");
        }
    }

    #[test]
    fn backoff_doubles_to_its_max_with_jitter_down_to_half() {
        let backoff: RetryBackoff = "100,1000".parse().unwrap_or_else(|e| panic!("{e}"));
        let ceilings: Vec<u128> = (0..6).map(|retry| backoff.delay_with(retry, 1.0).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay_with(2, 0.0), Duration::from_millis(200), "half at the least");
        assert_eq!(backoff.delay_with(u32::MAX, 1.0), Duration::from_millis(1000), "no overflow");
        let drawn: Vec<Duration> = (0..20).map(|_| backoff.delay(4)).collect();
        assert!(drawn.iter().all(|d| (Duration::from_millis(500)..=Duration::from_millis(1000)).contains(d)), "{drawn:?}");
        assert_eq!(backoff.to_string(), "100,1000");
        for bad in ["100", "a,b", "1000,100", "0,3600001", "-1,5"] {
            assert!(bad.parse::<RetryBackoff>().is_err(), "{bad:?} parsed");
        }
    }
}
