//! (10) Materialized views: what a refresh after appending 1% of the
//! source's rows costs against building the view, in the same run, and a
//! refresh with nothing to do.

use std::time::{Duration, Instant};

use leman_engine::{BackfillOptions, Error, Result};
use leman_view::{RefreshOptions, View, ViewQuery};

use super::{Figure, Sizes, rows_label, secs};
use crate::db::{CreateTableOptions, Database};
use crate::{builtins, demo};

/// The share of the source's rows appended before each refresh.
const APPENDED: f64 = 0.01;

/// Appends and refreshes measured; the quickest counts.
const ROUNDS: usize = 2;

pub(super) async fn figures(db: &Database, sizes: Sizes) -> Result<Vec<Figure>> {
    let rows = sizes.pair_rows;
    let fragments = sizes.pair_fragments;
    let per_fragment = rows.div_ceil(fragments);
    let options = CreateTableOptions { max_rows_per_file: per_fragment, stable_row_ids: true };
    let source = db.create_table("view_source", vec![demo::sample_batch(0, per_fragment)?], options).await?;
    for start in (per_fragment..rows).step_by(per_fragment) {
        source.append(vec![demo::sample_batch(start, per_fragment.min(rows - start))?]).await?;
    }
    let sha = builtins::get("sha256", &["text"], &[]).map_err(|e| Error::InvalidOptions { reason: e.to_string() })?;
    let query = ViewQuery::new(source.uri()).select(["id"]).column("sha", sha);
    let view = db.create_materialized_view("view", query).await?;

    let build = refresh(&view).await?;
    let appended = (rows as f64 * APPENDED) as usize;
    let mut update = Duration::MAX;
    for round in 0..ROUNDS {
        source.append(vec![demo::sample_batch(rows + round * appended, appended)?]).await?;
        update = update.min(refresh(&view).await?);
    }
    let idle = refresh(&view).await?;
    let ratio = update.as_secs_f64() / build.as_secs_f64().max(f64::EPSILON);
    let nothing = Figure {
        number: 10,
        what: format!("view refresh with nothing to do, {} rows", rows_label(rows + ROUNDS * appended)),
        measured: secs(idle),
        baseline: format!("building the view: {}", secs(build)),
        ratio: idle.as_secs_f64() / build.as_secs_f64().max(f64::EPSILON),
        ratio_of: "refresh time / build time".into(),
        target: "< 250 ms".into(),
        met: idle < Duration::from_millis(250),
    };
    Ok(vec![Figure {
        number: 10,
        what: format!("view refresh after appending 1% to {} rows/{fragments} frags (sha256)", rows_label(rows)),
        measured: secs(update),
        baseline: format!("building the view: {}", secs(build)),
        ratio,
        ratio_of: format!("refresh time / build time, best of {ROUNDS}"),
        target: "<= 0.03".into(),
        met: ratio <= 0.03,
    }, nothing])
}

/// One refresh, its backfill included, with 2 appliers.
async fn refresh(view: &View) -> Result<Duration> {
    let started = Instant::now();
    let backfill = BackfillOptions::default().concurrency(2).refresh_status_secs(60.0);
    let refresh = view.refresh(RefreshOptions { to_version: None, backfill }).await?;
    if let Some(job) = refresh.job {
        job.wait().await?;
    }
    Ok(started.elapsed())
}
