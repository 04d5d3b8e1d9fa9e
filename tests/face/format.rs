//! How the command line writes times and progress.

use std::time::Duration;

use leman::Progress;
use leman::cli::format::{progress_line, utc};

#[test]
fn utc_formats_known_instants() {
    assert_eq!(utc(0), "1970-01-01 00:00:00");
    assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06:40");
    assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
}

#[test]
fn plain_lines_show_rows_fragments_rate_and_eta() {
    let p = Progress {
        rows_done: 500,
        rows_total: 1000,
        fragments_committed: 1,
        fragments_total: 4,
        elapsed: Duration::from_secs(2),
        ..Progress::default()
    };
    assert_eq!(progress_line(&p), "rows 500/1000 (50.0%), fragments 1/4 committed, 250 rows/s, eta 2s");
}
