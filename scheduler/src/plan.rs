//! Splitting fragments into tasks and ordering them.
//!
//! A task is a half-open range of *physical* rows of one fragment (deleted
//! rows included, so that positions line up with the fragment's files).
//! [`shuffle`] orders tasks so that consecutive tasks come from different
//! fragments while at most `diversity` fragments are open at once: wide
//! enough to spread a hot fragment's rows over many appliers, narrow enough
//! that fragments keep finishing one after another (their writes overlap
//! the work left) and intermediate commits happen while the job runs
//! rather than all at its end.

use std::collections::VecDeque;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Index of a task within its job's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub u32);

/// One batch of physical rows of one fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Position of the task in the plan before shuffling.
    pub id: TaskId,
    /// Lance fragment id.
    pub fragment_id: u64,
    /// Physical row offsets within the fragment.
    pub rows: Range<u64>,
}

impl Task {
    /// Number of physical rows the task covers.
    pub fn len(&self) -> u64 {
        self.rows.end - self.rows.start
    }

    /// Whether the task covers no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a fragment stands when the job starts, as found in checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FragmentStart {
    /// Every task must run, except those listed as checkpointed.
    #[default]
    Compute,
    /// Its data file is written and checkpointed but not committed.
    Written,
}

/// A fragment as the driver found it when planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentInput {
    /// Lance fragment id.
    pub id: u64,
    /// Rows in the fragment's files, deleted ones included.
    pub physical_rows: u64,
    /// What is already done for it.
    pub start: FragmentStart,
    /// Row ranges whose batch checkpoint is present and valid.
    pub checkpointed: Vec<Range<u64>>,
    /// Rows those checkpoints computed and skipped (they count against the
    /// job's skip budget as if computed now).
    pub checkpointed_counts: (u64, u64),
}

impl FragmentInput {
    /// A fragment with nothing done yet.
    pub fn new(id: u64, physical_rows: u64) -> Self {
        Self { id, physical_rows, start: FragmentStart::Compute, checkpointed: Vec::new(), checkpointed_counts: (0, 0) }
    }
}

/// Splits each fragment into tasks ([`fragment_ranges`]), fragment by
/// fragment in the order given. Ids follow that order.
pub fn split(fragments: &[FragmentInput], batch_size: u64) -> Vec<Task> {
    let mut tasks = Vec::new();
    for fragment in fragments {
        for rows in fragment_ranges(fragment.physical_rows, &fragment.checkpointed, batch_size) {
            let id = TaskId(u32::try_from(tasks.len()).unwrap_or(u32::MAX));
            tasks.push(Task { id, fragment_id: fragment.id, rows });
        }
    }
    tasks
}

/// The row ranges of one fragment, in row order: each of `checkpointed`
/// (its batches are found stored, whatever size they were computed at;
/// those out of bounds or overlapping one before are left out), and the
/// gaps between them in pieces of at most `batch_size` rows.
pub fn fragment_ranges(physical_rows: u64, checkpointed: &[Range<u64>], batch_size: u64) -> Vec<Range<u64>> {
    let batch_size = batch_size.max(1);
    let mut stored: Vec<&Range<u64>> = checkpointed.iter().filter(|r| r.start < r.end && r.end <= physical_rows).collect();
    stored.sort_by_key(|r| (r.start, r.end));
    let mut ranges = Vec::new();
    let gap = |from: u64, to: u64, ranges: &mut Vec<Range<u64>>| {
        let mut start = from;
        while start < to {
            let end = (start + batch_size).min(to);
            ranges.push(start..end);
            start = end;
        }
    };
    let mut next = 0;
    for rows in stored {
        if rows.start < next {
            continue;
        }
        gap(next, rows.start, &mut ranges);
        ranges.push(rows.clone());
        next = rows.end;
    }
    gap(next, physical_rows, &mut ranges);
    ranges
}

/// The row ranges of one fragment that [`split`] makes for `batch_size`
/// with nothing checkpointed.
pub fn row_ranges(physical_rows: u64, batch_size: u64) -> Vec<Range<u64>> {
    fragment_ranges(physical_rows, &[], batch_size)
}

/// The open fragment with the fewest tasks left takes every this many
/// tasks in [`shuffle`].
const LEAD_EVERY: usize = 3;

/// Orders `tasks` (grouped by fragment, as [`split`] makes them) over a
/// window of at most `diversity` open fragments. Every third task comes
/// from the open fragment with the fewest tasks left (the first opened, on
/// a tie); the others take turns in between. So every open fragment is
/// under way, yet they finish one after another, not all in the same few
/// tasks: their writes overlap the work left instead of waiting at the
/// end. When a fragment runs out of tasks, the next one opens.
///
/// With `diversity` 1 the order is unchanged. With two or more fragments
/// open, no two consecutive tasks come from the same fragment.
pub fn shuffle(tasks: Vec<Task>, diversity: usize) -> Vec<Task> {
    let diversity = diversity.max(1);
    let mut pending: VecDeque<VecDeque<Task>> = VecDeque::new();
    for task in tasks {
        match pending.back_mut() {
            Some(group) if group.back().is_some_and(|t| t.fragment_id == task.fragment_id) => {
                group.push_back(task)
            }
            _ => pending.push_back(VecDeque::from([task])),
        }
    }
    let total: usize = pending.iter().map(VecDeque::len).sum();
    // The open fragments' tasks, each with the task number it last gave
    // (0: none yet).
    let mut window: Vec<(VecDeque<Task>, usize)> = Vec::new();
    let mut out: Vec<Task> = Vec::with_capacity(total);
    let mut since_lead = LEAD_EVERY;
    loop {
        while window.len() < diversity {
            match pending.pop_front() {
                Some(group) => window.push((group, 0)),
                None => break,
            }
        }
        let last = out.last().map(|task| task.fragment_id);
        let from = |i: usize| window[i].0.front().map(|task| task.fragment_id);
        let Some(lead) = (0..window.len()).min_by_key(|&i| window[i].0.len()) else { break };
        // The others in turn: the one that waited longest (or never gave).
        let other = (0..window.len()).filter(|&i| i != lead && from(i) != last).min_by_key(|&i| window[i].1);
        let pick = match other {
            Some(other) if since_lead + 1 < LEAD_EVERY || from(lead) == last => other,
            _ => lead,
        };
        since_lead = if pick == lead { 0 } else { since_lead + 1 };
        let (tasks, gave) = &mut window[pick];
        if let Some(task) = tasks.pop_front() {
            out.push(task);
        }
        *gave = out.len();
        if tasks.is_empty() {
            window.remove(pick);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragments(rows: &[u64]) -> Vec<FragmentInput> {
        rows.iter().enumerate().map(|(id, &n)| FragmentInput::new(id as u64, n)).collect()
    }

    #[test]
    fn split_covers_every_physical_row_once() {
        let tasks = split(&fragments(&[25, 0, 10]), 10);
        let ranges: Vec<_> = tasks.iter().map(|t| (t.fragment_id, t.rows.clone())).collect();
        assert_eq!(ranges, vec![(0, 0..10), (0, 10..20), (0, 20..25), (2, 0..10)]);
        assert_eq!(row_ranges(25, 10), vec![0..10, 10..20, 20..25]);
    }

    #[test]
    fn checkpointed_ranges_of_any_size_are_kept_and_the_gaps_split() {
        let stored = [30..50, 0..7, 45..60, 95..120, 60..64];
        let ranges = fragment_ranges(100, &stored, 20);
        assert_eq!(ranges, vec![0..7, 7..27, 27..30, 30..50, 50..60, 60..64, 64..84, 84..100]);
        assert_eq!(fragment_ranges(64, &stored[..2], 20), vec![0..7, 7..27, 27..30, 30..50, 50..64]);
        let mut input = FragmentInput::new(0, 64);
        input.checkpointed = vec![30..50, 60..64];
        let tasks = split(&[input], 25);
        let ranges: Vec<_> = tasks.iter().map(|t| t.rows.clone()).collect();
        assert_eq!(ranges, vec![0..25, 25..30, 30..50, 50..60, 60..64]);
    }

    #[test]
    fn shuffle_alternates_fragments_within_the_window() {
        let tasks = split(&fragments(&[40, 40, 40, 40]), 10);
        let shuffled = shuffle(tasks.clone(), 2);
        assert_eq!(shuffled.len(), tasks.len());
        let order: Vec<u64> = shuffled.iter().map(|t| t.fragment_id).collect();
        assert_eq!(order, vec![0, 1, 0, 1, 0, 1, 0, 2, 1, 3, 2, 3, 2, 3, 2, 3]);
        for pair in shuffled.windows(2) {
            assert_ne!(pair[0].fragment_id, pair[1].fragment_id);
        }
        // Each fragment's tasks keep their row order.
        let rows_of_0: Vec<_> =
            shuffled.iter().filter(|t| t.fragment_id == 0).map(|t| t.rows.start).collect();
        assert_eq!(rows_of_0, vec![0, 10, 20, 30]);
    }

    #[test]
    fn shuffle_window_refills_as_fragments_finish() {
        let tasks = split(&fragments(&[10, 30, 20]), 10);
        let order: Vec<u64> = shuffle(tasks, 2).iter().map(|t| t.fragment_id).collect();
        assert_eq!(order, vec![0, 1, 2, 1, 2, 1]);
    }

    #[test]
    fn open_fragments_finish_one_after_another_and_all_are_under_way() {
        let diversity = 8;
        let tasks = split(&fragments(&[250; 16]), 10);
        let shuffled = shuffle(tasks.clone(), diversity);
        assert_eq!(shuffled.len(), tasks.len());
        let mut sorted = shuffled.clone();
        sorted.sort_by_key(|t| (t.fragment_id, t.rows.start));
        assert_eq!(sorted, tasks, "every task once, each fragment's in row order");
        let last_task = |id: u64| shuffled.iter().rposition(|t| t.fragment_id == id).unwrap_or(usize::MAX);
        let first_task = |id: u64| shuffled.iter().position(|t| t.fragment_id == id).unwrap_or(usize::MAX);
        let mut finishes: Vec<usize> = (0..16).map(last_task).collect();
        finishes.sort_unstable();
        // Round-robin over 8 fragments of 25 tasks would finish all 8 in
        // the same 8 tasks (193-200) and the next 8 in the last 8; here no
        // 4 finish within 8 tasks, and one finishes in the first fifth.
        let in_last_8 = finishes.iter().filter(|at| **at >= shuffled.len() - 8).count();
        assert!(in_last_8 <= 3, "finishes at {finishes:?}");
        assert!(finishes[0] < 80, "the first fragment finishes early: {finishes:?}");
        assert!(finishes.windows(4).all(|four| four[3] - four[0] > 8), "4 finish within 8 tasks: {finishes:?}");
        // At most `diversity` open at once, and the first 8 all under way
        // within the first 24 tasks.
        for at in 0..shuffled.len() {
            let open = (0..16).filter(|&id| first_task(id) <= at && last_task(id) > at).count();
            assert!(open <= diversity, "{open} fragments open at task {at}");
        }
        assert!((0..8).all(|id| first_task(id) < 24), "{:?}", (0..8).map(first_task).collect::<Vec<_>>());
        for pair in shuffled[..shuffled.len() - 10].windows(2) {
            assert_ne!(pair[0].fragment_id, pair[1].fragment_id);
        }
    }

    #[test]
    fn diversity_one_keeps_plan_order() {
        let tasks = split(&fragments(&[20, 20]), 10);
        assert_eq!(shuffle(tasks.clone(), 1), tasks);
        assert_eq!(shuffle(tasks.clone(), 0), tasks);
    }
}
