//! Typed queries for the readers: report, dashboard, progress, predict, the worker, pruning.

use super::records::RunStatus;
use super::{NEVER_LEARNED_BELOW, Store, StoreError};
use crate::data::Split;
use rusqlite::params;

impl Store {
    /// The finished runs of a sweep that never learned (see [`NEVER_LEARNED_BELOW`]), in sweep
    /// order.
    pub fn never_learned(&self, sweep_id: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.id FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
                 JOIN evals v ON v.run_id = r.id AND v.split = ?4
                 WHERE sr.sweep_id = ?1 AND r.status = ?2 AND v.macro_recall < ?3
                 ORDER BY sr.position",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![sweep_id, RunStatus::Done, NEVER_LEARNED_BELOW, Split::Val],
            |r| r.get(0),
        )
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }
}
