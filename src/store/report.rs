//! Typed queries for `report` and `runs`: the sweeps, a sweep's swept keys and values, its
//! leaderboard, its runs.

use super::records::RunStatus;
use super::{Store, StoreError};
use crate::data::Split;
use rusqlite::params;
use serde_json::Value;
use std::collections::HashMap;

/// The config keys whose values differ between the runs of a sweep: the leaderboard's columns.
/// Read from the runs themselves, not only from the axes the file declared, so runs added by a
/// later launch with `--set` (or with another `tta`) are never mixed in silently. Declared axes
/// come first, in file order.
fn axes(conn: &rusqlite::Connection, sweep_id: i64) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.key,
                (SELECT min(a.position) FROM sweep_axes a
                  WHERE a.sweep_id = ?1 AND (p.key = a.key OR p.key LIKE a.key || '.%')) AS position
         FROM run_params p JOIN sweep_runs sr ON sr.run_id = p.run_id AND sr.sweep_id = ?1
         GROUP BY p.key
         HAVING count(DISTINCT p.value) > 1
             OR count(*) < (SELECT count(*) FROM sweep_runs WHERE sweep_id = ?1)
         ORDER BY position IS NULL, position, p.key NOT LIKE '%.kind', p.key",
    )?;
    stmt.query_map([sweep_id], |r| r.get(0))?.collect()
}

/// (run id, swept key) → value.
pub type SweptValues = HashMap<(String, String), Value>;

/// The swept values of the runs of a sweep.
fn swept_values(
    conn: &rusqlite::Connection,
    sweep_id: i64,
    keys: &[String],
) -> rusqlite::Result<SweptValues> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.run_id, p.key, p.value, p.num FROM run_params p
         JOIN sweep_runs sr ON sr.run_id = p.run_id AND sr.sweep_id = ?1",
    )?;
    let mut out = SweptValues::new();
    let rows = stmt.query_map([sweep_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<f64>>(3)?,
        ))
    })?;
    for row in rows {
        let (run, key, text, num) = row?;
        if !keys.contains(&key) {
            continue;
        }
        // Numbers as numbers (so 0.001 prints as 0.001); booleans, lists and names as written.
        let value = match num {
            Some(n) if text != "true" && text != "false" => Value::from(n),
            _ => Value::String(text),
        };
        out.insert((run, key), value);
    }
    Ok(out)
}

/// A finished run on a leaderboard, with its val and test results.
#[derive(Debug, Clone)]
pub struct LeaderRow {
    pub id: String,
    pub seed: i64,
    pub val_acc: Option<f64>,
    pub test_acc: Option<f64>,
    pub test_macro_f1: Option<f64>,
    pub epochs_done: i64,
    pub best_epoch: Option<i64>,
    pub wall_secs: Option<f64>,
    pub params: Option<i64>,
}

/// The val metric a leaderboard ranks by, as the SQL `ORDER BY` that ranks by it.
#[derive(Debug, Clone, Copy)]
pub enum LeaderOrder {
    ValAcc,
    ValMacroF1,
    ValLoss,
}

/// A run as `fer-lab runs` lists it.
#[derive(Debug, Clone)]
pub struct RunListRow {
    pub id: String,
    pub sweep: String,
    pub status: RunStatus,
    pub seed: i64,
    pub model: Option<String>,
    pub epochs_done: i64,
    pub epochs_planned: i64,
    pub device: Option<String>,
    /// The fused group it last trained in (None alone, and in a file older than groups).
    pub fused: Option<String>,
    pub wall_secs: Option<f64>,
    pub error: Option<String>,
    pub sweep_id: i64,
}

impl Store {
    /// The swept keys of a sweep (see [`axes`]).
    pub fn sweep_axes(&self, sweep_id: i64) -> Result<Vec<String>, StoreError> {
        axes(&self.conn, sweep_id).map_err(|e| self.err(e))
    }

    /// The values of `keys` of every run of a sweep.
    pub fn swept_values(&self, sweep_id: i64, keys: &[String]) -> Result<SweptValues, StoreError> {
        swept_values(&self.conn, sweep_id, keys).map_err(|e| self.err(e))
    }

    /// Every sweep as (id, name), the most recently launched first.
    pub fn sweeps_newest_first(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name FROM sweeps ORDER BY updated_at DESC, id DESC")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// A sweep named on the command line (or, with `None`, the most recently launched one)
    /// as (id, name).
    pub fn resolve_sweep(&self, name: Option<&str>) -> Result<(i64, String), StoreError> {
        let sweeps = self.sweeps_newest_first()?;
        match name {
            None => sweeps
                .first()
                .cloned()
                .ok_or_else(|| StoreError::NoSweeps(self.path().to_path_buf())),
            Some(name) => sweeps
                .iter()
                .find(|(_, n)| n == name)
                .cloned()
                .ok_or_else(|| StoreError::NoSuchSweep {
                    name: name.to_string(),
                    db: self.path().to_path_buf(),
                    known: sweeps
                        .iter()
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
        }
    }

    /// The finished runs of a sweep with val and test results, best first by `order`, the
    /// earlier in the sweep on a tie.
    pub fn leaderboard_rows(
        &self,
        sweep_id: i64,
        order: LeaderOrder,
    ) -> Result<Vec<LeaderRow>, StoreError> {
        let order_by = match order {
            LeaderOrder::ValAcc => "v.accuracy DESC",
            LeaderOrder::ValMacroF1 => "v.macro_f1 DESC",
            LeaderOrder::ValLoss => "v.loss ASC",
        };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT r.id, r.seed, v.accuracy, t.accuracy, t.macro_f1, r.epochs_done,
                        r.best_epoch, r.wall_secs, r.params
                 FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
                 JOIN evals v ON v.run_id = r.id AND v.split = ?3
                 JOIN evals t ON t.run_id = r.id AND t.split = ?4
                 WHERE sr.sweep_id = ?1 AND r.status = ?2
                 ORDER BY {order_by}, sr.position"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![sweep_id, RunStatus::Done, Split::Val, Split::Test],
            |r| {
                Ok(LeaderRow {
                    id: r.get(0)?,
                    seed: r.get(1)?,
                    val_acc: r.get(2)?,
                    test_acc: r.get(3)?,
                    test_macro_f1: r.get(4)?,
                    epochs_done: r.get(5)?,
                    best_epoch: r.get(6)?,
                    wall_secs: r.get(7)?,
                    params: r.get(8)?,
                })
            },
        )
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// How many runs of a sweep are not done.
    pub fn unfinished_count(&self, sweep_id: i64) -> Result<usize, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
                 WHERE sr.sweep_id = ?1 AND r.status != ?2",
                params![sweep_id, RunStatus::Done],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| self.err(e))
    }

    /// The runs of one sweep (or of all), optionally only those in `status`, by sweep name
    /// and then in sweep order.
    pub fn run_list(
        &self,
        sweep_id: Option<i64>,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunListRow>, StoreError> {
        let fused = if self.has_fused_groups()? {
            "r.fused_group"
        } else {
            "NULL"
        };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT r.id, s.name, r.status, r.seed, r.model, r.epochs_done, r.epochs_planned,
                        r.device, r.wall_secs, r.error, sr.sweep_id, {fused}
                 FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
                 JOIN sweeps s ON s.id = sr.sweep_id
                 WHERE (?1 IS NULL OR sr.sweep_id = ?1) AND (?2 IS NULL OR r.status = ?2)
                 ORDER BY s.name, sr.position"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![sweep_id, status], |r| {
            Ok(RunListRow {
                id: r.get(0)?,
                sweep: r.get(1)?,
                status: r.get(2)?,
                seed: r.get(3)?,
                model: r.get(4)?,
                epochs_done: r.get(5)?,
                epochs_planned: r.get(6)?,
                device: r.get(7)?,
                wall_secs: r.get(8)?,
                error: r.get(9)?,
                sweep_id: r.get(10)?,
                fused: r.get(11)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }
}
