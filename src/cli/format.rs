//! How the command line writes times and progress, the same in every
//! command.

use leman_engine::Progress;

/// `YYYY-MM-DD HH:MM:SS` in UTC from Unix milliseconds.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm), for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `rows 500/1000 (50.0%), fragments 1/4 committed, 1234 rows/s, eta 1s`
pub fn progress_line(p: &Progress) -> String {
    let rate = rows_per_second(p);
    let percent = if p.rows_total > 0 { 100.0 * p.rows_done as f64 / p.rows_total as f64 } else { 100.0 };
    let eta = if rate > 0.0 { format!("{:.0}s", (p.rows_total - p.rows_done.min(p.rows_total)) as f64 / rate) } else { "?".to_string() };
    format!(
        "rows {}/{} ({percent:.1}%), fragments {}/{} committed, {rate:.0} rows/s, eta {eta}",
        p.rows_done, p.rows_total, p.fragments_committed, p.fragments_total
    )
}

/// Rows done per second since the job started (0 before any time passed).
pub fn rows_per_second(p: &Progress) -> f64 {
    let seconds = p.elapsed.as_secs_f64();
    if seconds > 0.0 { p.rows_done as f64 / seconds } else { 0.0 }
}
