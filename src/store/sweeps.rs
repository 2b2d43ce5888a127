//! Sweeps: registering one with its planned runs, and its pause flag.

use super::records::{RunRecord, SweepRecord};
use super::{Store, StoreError, now_sql, sqlite};
use rusqlite::{Connection, params};
use serde_json::Value;

impl Store {
    /// Records a sweep and its planned runs in one transaction. Runs already known (same id)
    /// keep their status and results: that is how a re-launched sweep skips finished work.
    /// Returns the sweep id.
    pub fn register_sweep(
        &mut self,
        sweep: &SweepRecord,
        runs: &[RunRecord],
    ) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            &format!(
                "INSERT INTO sweeps (name, file, spec, data_path, data_fingerprint)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET file = ?2, spec = ?3, data_path = ?4,
                     data_fingerprint = ?5, updated_at = {}",
                now_sql()
            ),
            params![
                sweep.name,
                sweep.file,
                sweep.spec,
                sweep.data_path,
                sweep.data_fingerprint
            ],
        )
        .map_err(e)?;
        let sweep_id: i64 = tx
            .query_row(
                "SELECT id FROM sweeps WHERE name = ?1",
                [&sweep.name],
                |r| r.get(0),
            )
            .map_err(e)?;
        tx.execute("DELETE FROM sweep_axes WHERE sweep_id = ?1", [sweep_id])
            .map_err(e)?;
        for (i, key) in sweep.axes.iter().enumerate() {
            tx.execute(
                "INSERT INTO sweep_axes (sweep_id, key, position) VALUES (?1, ?2, ?3)",
                params![sweep_id, key, i as i64],
            )
            .map_err(e)?;
        }
        for (position, run) in runs.iter().enumerate() {
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO runs (id, sweep_id, seed, config, model, data_fingerprint,
                         epochs_planned, artifact_dir)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        run.id,
                        sweep_id,
                        run.seed as i64,
                        run.config_json,
                        run.model,
                        sweep.data_fingerprint,
                        run.epochs as i64,
                        run.artifact_dir
                    ],
                )
                .map_err(e)?;
            if inserted > 0 {
                for (key, value) in &run.params {
                    let num = match value {
                        Value::Number(n) => n.as_f64(),
                        Value::Bool(b) => Some(f64::from(u8::from(*b))),
                        _ => None,
                    };
                    let text = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    tx.execute(
                        "INSERT INTO run_params (run_id, key, value, num) VALUES (?1, ?2, ?3, ?4)",
                        params![run.id, key, text, num],
                    )
                    .map_err(e)?;
                }
            }
            tx.execute(
                "INSERT INTO sweep_runs (sweep_id, run_id, position) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sweep_id, run_id) DO UPDATE SET position = ?3",
                params![sweep_id, run.id, position as i64],
            )
            .map_err(e)?;
        }
        wide_params_view(&tx).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(sweep_id)
    }

    /// Pauses or resumes launching for a sweep (running runs go on either way).
    pub fn set_paused(&self, sweep_id: i64, paused: bool) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE sweeps SET paused = ?2 WHERE id = ?1",
                params![sweep_id, paused],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn is_paused(&self, sweep_id: i64) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT paused FROM sweeps WHERE id = ?1", [sweep_id], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }
}

/// `run_params_wide`: one row per run, one column per config key any run has. Its columns
/// depend on the keys recorded so far, so it is rebuilt whenever a sweep is registered rather
/// than fixed in a migration.
fn wide_params_view(conn: &Connection) -> rusqlite::Result<()> {
    let keys: Vec<String> = conn
        .prepare("SELECT DISTINCT key FROM run_params ORDER BY key")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let columns: String = keys
        .iter()
        .map(|k| {
            format!(
                ",\n    max(CASE WHEN key = '{}' THEN coalesce(num, value) END) AS \"{}\"",
                k.replace('\'', "''"),
                k.replace('"', "\"\"")
            )
        })
        .collect();
    conn.execute_batch(&format!(
        "DROP VIEW IF EXISTS run_params_wide;
         CREATE VIEW run_params_wide AS SELECT run_id{columns}\nFROM run_params GROUP BY run_id;"
    ))
}
