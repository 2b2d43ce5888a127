//! Typed queries for `report`'s analysis, `--compare` and `--plots`: finished runs with both
//! evaluations, per-class metrics, confusion cells, and what tells a sweep from a run.

use super::records::RunStatus;
use super::{Store, StoreError};
use crate::data::Split;
use rusqlite::{OptionalExtension, params};

/// Accuracy, macro-F1 and loss of one split of a run's best checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalScores {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub loss: f64,
}

/// A finished run with its val and test evaluations.
#[derive(Debug, Clone)]
pub struct FinishedRun {
    pub id: String,
    pub seed: i64,
    pub val: EvalScores,
    pub test: EvalScores,
    pub epochs_done: i64,
    pub best_epoch: Option<i64>,
    pub params: Option<i64>,
}

/// One class of one split of a run's evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassMetricRow {
    pub split: Split,
    pub class_id: i64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: i64,
}

/// A run's outcome as `report --compare` sets two runs side by side; the evaluations are None
/// until it has one.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub val_acc: Option<f64>,
    pub test_acc: Option<f64>,
    pub val_macro_f1: Option<f64>,
    pub test_macro_f1: Option<f64>,
    pub epochs_done: i64,
    pub best_epoch: Option<i64>,
    pub params: Option<i64>,
    pub wall_secs: Option<f64>,
}

impl Store {
    /// The finished runs of a sweep that have both evaluations, in sweep order.
    pub fn finished_runs(&self, sweep_id: i64) -> Result<Vec<FinishedRun>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.id, r.seed, v.accuracy, v.macro_f1, v.loss, t.accuracy, t.macro_f1,
                        t.loss, r.epochs_done, r.best_epoch, r.params
                 FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
                 JOIN evals v ON v.run_id = r.id AND v.split = ?3
                 JOIN evals t ON t.run_id = r.id AND t.split = ?4
                 WHERE sr.sweep_id = ?1 AND r.status = ?2
                 ORDER BY sr.position",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![sweep_id, RunStatus::Done, Split::Val, Split::Test],
            |r| {
                Ok(FinishedRun {
                    id: r.get(0)?,
                    seed: r.get(1)?,
                    val: EvalScores {
                        accuracy: r.get(2)?,
                        macro_f1: r.get(3)?,
                        loss: r.get(4)?,
                    },
                    test: EvalScores {
                        accuracy: r.get(5)?,
                        macro_f1: r.get(6)?,
                        loss: r.get(7)?,
                    },
                    epochs_done: r.get(8)?,
                    best_epoch: r.get(9)?,
                    params: r.get(10)?,
                })
            },
        )
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// A run's per-class metrics, of one split or of both, by split and class.
    pub fn class_metrics(
        &self,
        run: &str,
        split: Option<Split>,
    ) -> Result<Vec<ClassMetricRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT split, class_id, precision, recall, f1, support FROM class_metrics
                 WHERE run_id = ?1 AND (?2 IS NULL OR split = ?2) ORDER BY split, class_id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![run, split], |r| {
            Ok(ClassMetricRow {
                split: r.get(0)?,
                class_id: r.get(1)?,
                precision: r.get(2)?,
                recall: r.get(3)?,
                f1: r.get(4)?,
                support: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The stored cells of a run's confusion matrix on one split, as (true id, predicted id,
    /// count); cells never predicted may be absent.
    pub fn confusion_cells(
        &self,
        run: &str,
        split: Split,
    ) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT true_id, pred_id, count FROM confusion WHERE run_id = ?1 AND split = ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![run, split], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Whether a sweep has this name.
    pub fn sweep_exists(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM sweeps WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.err(e))
    }

    /// Every sweep's name, joined with ", ", for an error message that lists them.
    pub fn sweep_names_joined(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("SELECT group_concat(name, ', ') FROM sweeps", [], |r| {
                r.get::<_, Option<String>>(0)
            })
            .map(Option::unwrap_or_default)
            .map_err(|e| self.err(e))
    }

    /// A run's status, evaluations and size; None when no run has that id.
    pub fn run_outcome(&self, id: &str) -> Result<Option<RunOutcome>, StoreError> {
        self.conn
            .query_row(
                "SELECT r.status, v.accuracy, t.accuracy, v.macro_f1, t.macro_f1, r.epochs_done,
                        r.best_epoch, r.params, r.wall_secs
                 FROM runs r
                 LEFT JOIN evals v ON v.run_id = r.id AND v.split = ?2
                 LEFT JOIN evals t ON t.run_id = r.id AND t.split = ?3
                 WHERE r.id = ?1",
                params![id, Split::Val, Split::Test],
                |r| {
                    Ok(RunOutcome {
                        status: r.get(0)?,
                        val_acc: r.get(1)?,
                        test_acc: r.get(2)?,
                        val_macro_f1: r.get(3)?,
                        test_macro_f1: r.get(4)?,
                        epochs_done: r.get(5)?,
                        best_epoch: r.get(6)?,
                        params: r.get(7)?,
                        wall_secs: r.get(8)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every config key of a run with its value as JSON text.
    pub fn run_param_texts(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM run_params WHERE run_id = ?1")
            .map_err(|e| self.err(e))?;
        stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// (id, seed) of the runs `a` and `b` that exist.
    pub fn seeds_of(&self, a: &str, b: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, seed FROM runs WHERE id IN (?1, ?2)")
            .map_err(|e| self.err(e))?;
        stmt.query_map([a, b], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunRecord, SweepRecord, SyntheticEval, SyntheticState};
    use serde_json::Value;

    /// The SQL views a user queries agree with the report's grouping: a cell is the runs that
    /// differ only by seed, summarised as mean and sd (sqrt comes from fer-lab's connection).
    #[test]
    fn the_cell_stats_view_groups_over_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let mut store = Store::open(&db).unwrap();
        let runs = [
            ("a1", 1, 0.001, 0.61),
            ("a2", 2, 0.001, 0.62),
            ("a3", 3, 0.001, 0.63),
            ("c1", 1, 0.01, 0.50),
        ];
        let records: Vec<RunRecord> = runs
            .iter()
            .map(|&(id, seed, lr, _)| RunRecord {
                // The view's cell is the config: the runs of a cell differ only by seed.
                config_json: format!("{{\"lr\":{lr}}}"),
                ..RunRecord::for_test(id, seed, 30, vec![("lr".into(), Value::from(lr))])
            })
            .collect();
        let sweep_id = store
            .register_sweep(&SweepRecord::for_test("s", &["lr"]), &records)
            .unwrap();
        for &(id, _, _, acc) in &runs {
            let state = SyntheticState {
                status: RunStatus::Done,
                epochs_done: 30,
                best_epoch: Some(20),
                params: Some(1000),
                slot: None,
                launched_at: None,
                progress: None,
            };
            store.set_synthetic_state(id, &state).unwrap();
            for split in [Split::Val, Split::Test] {
                let eval = SyntheticEval {
                    split,
                    epoch: 20,
                    n: 3589,
                    accuracy: acc,
                    loss: 1.0,
                    macro_precision: 0.5,
                    macro_recall: 0.5,
                    macro_f1: 0.5,
                    classes: vec![],
                    confusion: vec![],
                };
                store.add_synthetic_eval(id, &eval).unwrap();
            }
        }
        let (n, mean, sd): (i64, f64, f64) = store
            .conn
            .query_row(
                "SELECT n, val_acc_mean, val_acc_sd FROM cell_stats ORDER BY val_acc_mean DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(n, 3);
        assert!(
            (mean - 0.62).abs() < 1e-9 && (sd - 0.01).abs() < 1e-6,
            "{mean} {sd}"
        );
        let wide: f64 = store
            .conn
            .query_row(
                "SELECT lr FROM run_params_wide WHERE run_id = 'c1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(wide, 0.01);
        let finished = store.finished_runs(sweep_id).unwrap();
        assert_eq!(finished.len(), 4);
        assert!(store.sweep_exists("s").unwrap() && !store.sweep_exists("t").unwrap());
        assert_eq!(store.sweep_names_joined().unwrap(), "s");
    }
}
