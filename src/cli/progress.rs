//! Showing a job's progress: a live bar on a terminal (rows, fragments,
//! rows/s, ETA), plain lines on stderr otherwise (logs, CI, pipes).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use leman_engine::{Job, JobEvent, Progress};

/// Follows `job` until its last event, drawing its progress.
pub(crate) async fn follow(job: &Job, label: &str) {
    let mut view = View::new(label);
    while let Some(event) = job.next_event().await {
        match event {
            JobEvent::Planned { rows, fragments, .. } => view.planned(rows, fragments),
            JobEvent::Progress(progress) => view.progress(&progress),
            JobEvent::Committed { fragments, version } => view.note(&format!(
                "committed {} fragment(s) as version {version}",
                fragments.len()
            )),
            JobEvent::Finished(_) | JobEvent::Failed(_) => {}
        }
    }
    view.done();
}

pub(crate) enum View {
    Bar(ProgressBar),
    Lines { label: String },
}

impl View {
    pub(crate) fn new(label: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return View::Lines { label: label.to_string() };
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30.cyan/blue}] {human_pos}/{human_len} rows  {msg}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        View::Bar(bar)
    }

    fn planned(&mut self, rows: u64, fragments: u64) {
        match self {
            View::Bar(bar) => {
                bar.set_length(rows);
                bar.set_message(format!("0/{fragments} fragments"));
            }
            View::Lines { label } => eprintln!("{label}: planned {rows} rows in {fragments} fragments"),
        }
    }

    pub(crate) fn progress(&mut self, p: &Progress) {
        match self {
            View::Bar(bar) => {
                bar.set_length(p.rows_total);
                bar.set_position(p.rows_done);
                bar.set_message(format!("{}/{} fragments  {:.0} rows/s", p.fragments_committed, p.fragments_total, rate(p)));
            }
            View::Lines { label } => eprintln!("{label}: {}", line(p)),
        }
    }

    fn note(&mut self, text: &str) {
        match self {
            View::Bar(bar) => bar.println(text),
            View::Lines { label } => eprintln!("{label}: {text}"),
        }
    }

    pub(crate) fn done(self) {
        if let View::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// `rows 500/1000 (50.0%), fragments 1/4 committed, 1234 rows/s, eta 1s`
fn line(p: &Progress) -> String {
    let rate = rate(p);
    let percent = if p.rows_total > 0 { 100.0 * p.rows_done as f64 / p.rows_total as f64 } else { 100.0 };
    let eta = if rate > 0.0 { format!("{:.0}s", (p.rows_total - p.rows_done.min(p.rows_total)) as f64 / rate) } else { "?".to_string() };
    format!(
        "rows {}/{} ({percent:.1}%), fragments {}/{} committed, {rate:.0} rows/s, eta {eta}",
        p.rows_done, p.rows_total, p.fragments_committed, p.fragments_total
    )
}

fn rate(p: &Progress) -> f64 {
    let seconds = p.elapsed.as_secs_f64();
    if seconds > 0.0 { p.rows_done as f64 / seconds } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(line(&p), "rows 500/1000 (50.0%), fragments 1/4 committed, 250 rows/s, eta 2s");
    }
}
