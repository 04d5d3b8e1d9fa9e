//! Showing a job's progress: a live bar on a terminal (rows, fragments,
//! rows/s, ETA), plain lines on stderr otherwise (logs, CI, pipes).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use leman_engine::{Job, JobEvent, Progress};

use crate::cli::format::{progress_line, rows_per_second};

/// Follows `job` until its last event, drawing its progress.
pub(crate) async fn follow(job: &Job, label: &str) {
    let mut view = View::new(label);
    while let Some(event) = job.next_event().await {
        match event {
            JobEvent::Queued { behind } => view.note(&format!("waiting for job {behind}, which backfills this column")),
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

/// How following a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Followed {
    /// The job ended (perhaps cancelled by a first Ctrl-C).
    Ended,
    /// A second Ctrl-C: quit without waiting for the batches in flight.
    Abandoned,
}

/// Follows `job` as [`follow`] does; a Ctrl-C cancels it (it stops after
/// its batches in flight), a second one gives up waiting.
pub(crate) async fn follow_until_ctrl_c(job: &Job) -> Followed {
    let job_id = job.id().to_string();
    let label = format!("job {job_id}");
    tokio::select! {
        () = follow(job, &label) => Followed::Ended,
        Ok(()) = tokio::signal::ctrl_c() => {
            eprintln!("job {job_id}: cancelling; waiting for batches in flight (Ctrl-C again to quit at once)");
            job.cancel();
            tokio::select! {
                () = follow(job, &label) => Followed::Ended,
                Ok(()) = tokio::signal::ctrl_c() => Followed::Abandoned,
            }
        }
    }
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
                bar.set_message(format!("{}/{} fragments  {:.0} rows/s", p.fragments_committed, p.fragments_total, rows_per_second(p)));
            }
            View::Lines { label } => eprintln!("{label}: {}", progress_line(p)),
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
