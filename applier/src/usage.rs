//! What this thread and process use, for what a job cost: a thread's CPU
//! time (`CLOCK_THREAD_CPUTIME_ID`), so that a UDF's CPU-seconds are its
//! threads' own, not the process's; the CPU time of the process's live
//! threads (each one's `/proc/self/task/*/schedstat`, summed); the
//! process's peak resident memory from `/proc/self/status` (`VmHWM`).
//! `None` where the kernel does not say.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time the calling thread has spent on a CPU, to the nanosecond
/// (`CLOCK_THREAD_CPUTIME_ID`; `/proc/thread-self/schedstat` lags for a
/// running thread until the scheduler's next tick, and costs a file read).
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

/// Time this process's live threads have spent on a CPU, in nanoseconds
/// (`/proc/self/task/*/schedstat`); the time of threads that have ended is
/// not counted, so only differences over a span in which the process's
/// threads live on (a runtime's workers and pools) mean anything.
pub fn process_cpu_time() -> Option<Duration> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(text) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else { continue };
        nanos += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(nanos))
}

/// This process's peak resident memory so far, in bytes.
pub fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// How old the peak a task reports may be.
const PEAK_MEMORY_EVERY: Duration = Duration::from_millis(100);

/// [`peak_memory`] as read at most [`PEAK_MEMORY_EVERY`] ago: every task
/// reports it, and reading `/proc/self/status` for each cost about 2% of
/// the CPU of a cheap UDF's job. A job's driver reads its own process's
/// afresh for each snapshot of the job's cost; a worker's may be that
/// much older.
pub(crate) fn recent_peak_memory() -> Option<u64> {
    static LAST: Mutex<Option<(Instant, Option<u64>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match *last {
        Some((read, peak)) if read.elapsed() < PEAK_MEMORY_EVERY => peak,
        _ => {
            let peak = peak_memory();
            *last = Some((Instant::now(), peak));
            peak
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_counts_its_own_time() {
        let Some(before) = thread_cpu_time() else { return };
        // Spin until the thread's own clock has counted 20 ms (however
        // loaded the machine), for at most 10 s of wall time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while thread_cpu_time().unwrap_or_default().saturating_sub(before) < Duration::from_millis(20) {
            assert!(std::time::Instant::now() < deadline, "a spinning thread's CPU time did not advance 20 ms in 10 s");
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let idle = std::thread::spawn(|| {
            let before = thread_cpu_time().unwrap_or_default();
            std::thread::sleep(Duration::from_millis(50));
            thread_cpu_time().unwrap_or_default().saturating_sub(before)
        });
        let idle = idle.join().unwrap_or_else(|_| panic!("thread panicked"));
        assert!(idle < Duration::from_millis(20), "a sleeping thread spends no CPU: {idle:?}");
    }

    #[test]
    fn the_process_counts_the_time_of_its_threads() {
        let Some(before) = process_cpu_time() else { return };
        // Two threads spinning 20 ms of their own CPU time each (at most
        // 10 s of wall time): each sees at least its own 20 ms added to
        // the process's.
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    let (start, deadline) = (thread_cpu_time().unwrap_or_default(), std::time::Instant::now() + Duration::from_secs(10));
                    let mut x = 0u64;
                    while thread_cpu_time().unwrap_or_default().saturating_sub(start) < Duration::from_millis(20) && std::time::Instant::now() < deadline {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    // Counted while the thread still lives.
                    process_cpu_time().unwrap_or_default()
                })
            })
            .collect();
        let seen = spinners.into_iter().map(|t| t.join().unwrap_or_else(|_| panic!("thread panicked"))).max().unwrap_or_default();
        assert!(seen.saturating_sub(before) >= Duration::from_millis(20), "{before:?} before, {seen:?} while spinning");
    }

    #[test]
    fn peak_memory_grows_with_what_was_touched() {
        let Some(before) = peak_memory() else { return };
        let touched = std::hint::black_box(vec![1u8; 256 << 20]);
        let after = peak_memory().unwrap_or_default();
        assert!(after >= before.max(256 << 20), "{after} bytes at peak after touching 256 MiB ({})", touched.len());
    }
}
