//! What a refresh changes in the view, decided from hashes alone (sans IO):
//! the view's rows as they are, the source rows that may have changed
//! (the candidates), and, when the candidates are not every source row,
//! the ids of every source row the view must hold.

use std::collections::{HashMap, HashSet};

/// A row of the view as a refresh finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewRow {
    /// Its source row.
    pub source_row_id: u64,
    /// Its address in the view.
    pub address: u64,
    /// Hash of its copied values.
    pub values_hash: [u8; 16],
    /// Hash of its UDF inputs.
    pub inputs_hash: [u8; 16],
}

/// A source row that may be new or changed since the version reflected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its row id.
    pub source_row_id: u64,
    /// Hash of the values the view copies.
    pub values_hash: [u8; 16],
    /// Hash of its UDF inputs.
    pub inputs_hash: [u8; 16],
}

/// A row to write into the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insert {
    /// Which candidate, by its index.
    pub candidate: usize,
    /// The view row (being deleted) whose UDF values it keeps, because its
    /// inputs are the same.
    pub carry_from: Option<u64>,
}

/// What a refresh does to the view.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Addresses of the view rows to delete: gone from the source, out of
    /// the filter, changed, or held twice.
    pub delete: Vec<u64>,
    /// The rows to write.
    pub insert: Vec<Insert>,
}

impl Changes {
    /// Whether the view is right as it is.
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.insert.is_empty()
    }

    /// Rows written that keep UDF values.
    pub fn carried(&self) -> usize {
        self.insert.iter().filter(|insert| insert.carry_from.is_some()).count()
    }
}

/// The changes that make the view hold exactly the source rows of the
/// target version: `candidates` are every source row that may differ from
/// what the view holds, `view` the view's rows (every one, or at least
/// those of the candidates and of the source rows that may be gone: the
/// rest are kept as they are), and `present` the ids of the source rows
/// the view must hold among those (`None`: the candidates are all of
/// them).
///
/// A row written keeps the UDF values of the row of the same id it
/// replaces, where their inputs are the same. With `moved_rows` (the
/// source's row ids are addresses, which compaction and updates change),
/// it keeps those of any row deleted with the same inputs, as a row moved
/// to a new address comes back under a new id.
pub fn changes(view: &[ViewRow], candidates: &[Candidate], present: Option<&HashSet<u64>>, moved_rows: bool) -> Changes {
    let by_id: HashMap<u64, usize> = candidates.iter().enumerate().map(|(i, c)| (c.source_row_id, i)).collect();
    let mut kept: HashSet<u64> = HashSet::with_capacity(view.len());
    let mut delete = Vec::new();
    let mut deleted_by_id: HashMap<u64, &ViewRow> = HashMap::new();
    let mut deleted_by_inputs: HashMap<[u8; 16], u64> = HashMap::new();
    for row in view {
        let wanted = match by_id.get(&row.source_row_id) {
            Some(&i) => candidates[i].values_hash == row.values_hash,
            None => present.is_some_and(|present| present.contains(&row.source_row_id)),
        };
        if wanted && kept.insert(row.source_row_id) {
            continue;
        }
        delete.push(row.address);
        deleted_by_id.entry(row.source_row_id).or_insert(row);
        deleted_by_inputs.entry(row.inputs_hash).or_insert(row.address);
    }
    let insert = candidates
        .iter()
        .enumerate()
        .filter(|(_, candidate)| !kept.contains(&candidate.source_row_id))
        .map(|(i, candidate)| {
            let own = deleted_by_id.get(&candidate.source_row_id).filter(|old| old.inputs_hash == candidate.inputs_hash);
            let moved = || moved_rows.then(|| deleted_by_inputs.get(&candidate.inputs_hash).copied()).flatten();
            let carry_from = own.map(|old| old.address).or_else(moved);
            Insert { candidate: i, carry_from }
        })
        .collect();
    Changes { delete, insert }
}
