//! Ensembles of a sweep's best cells: every run of the top-k cells (ranked on val), soft-voted
//! — their stored class probabilities averaged image by image — and scored on val and test.
//!
//! The members are chosen on val only (the cells' rank), never on test; `fer-lab predict
//! --ensemble K` uses the same members ([`members`]). The probabilities come from the database
//! ([`crate::metrics::predictions`]), so an ensemble of runs trained on a GPU machine is formed where only
//! the database came back.

use super::ReportError;
use super::analysis::{Analysis, Cell, RunResult};
use crate::data::Split;
use crate::metrics::Evaluation;
use crate::metrics::SplitPredictions;
use crate::store::Store;

/// The ensemble of the top `cells` cells.
#[derive(Debug, Clone, PartialEq)]
pub struct EnsembleRow {
    /// How many of the best cells it draws from.
    pub cells: usize,
    /// The runs soft-voted, in cell rank then seed order.
    pub members: Vec<String>,
    pub val: Evaluation,
    pub test: Evaluation,
}

/// Ensembles of the top 1, 2, …, K cells, so the table shows what each added cell brings (on
/// val, where K may be chosen; test beside).
#[derive(Debug, Clone, PartialEq)]
pub struct Ensembles {
    /// The K asked for.
    pub asked: usize,
    pub rows: Vec<EnsembleRow>,
    /// The best single run on val, scored from its own stored predictions (a baseline).
    pub best_run: Option<(String, Evaluation, Evaluation)>,
    /// Runs of the chosen cells left out: they have no stored predictions.
    pub without_predictions: Vec<String>,
}

/// The runs of the top `k` cells, in cell rank then seed order: an ensemble's members.
pub fn members(analysis: &Analysis, k: usize) -> Result<Vec<&RunResult>, ReportError> {
    check_k(k)?;
    Ok(analysis
        .cells
        .iter()
        .take(k)
        .flat_map(|cell| cell_members(analysis, cell))
        .collect())
}

/// The runs of one cell, in seed order.
fn cell_members<'a>(analysis: &'a Analysis, cell: &Cell) -> Vec<&'a RunResult> {
    let mut runs: Vec<&RunResult> = cell.runs.iter().map(|&i| &analysis.runs[i]).collect();
    runs.sort_by_key(|r| r.seed);
    runs
}

fn check_k(k: usize) -> Result<(), ReportError> {
    if k == 0 {
        return Err(ReportError::Ensemble(
            "--ensemble 0: give the number of best cells to combine (1 or more)".into(),
        ));
    }
    Ok(())
}

/// Soft-votes the top 1..=`k` cells of `analysis` from the predictions stored in `store`.
pub fn ensembles(store: &Store, analysis: &Analysis, k: usize) -> Result<Ensembles, ReportError> {
    check_k(k)?;
    // Every member's predictions, read once.
    let mut stored: Vec<(String, SplitPredictions, SplitPredictions)> = Vec::new();
    let mut without_predictions = Vec::new();
    let mut member_cells: Vec<usize> = Vec::new();
    for (rank, cell) in analysis.cells.iter().take(k).enumerate() {
        for run in cell_members(analysis, cell) {
            match (
                store.predictions(&run.id, Split::Val)?,
                store.predictions(&run.id, Split::Test)?,
            ) {
                (Some(val), Some(test)) => {
                    stored.push((run.id.clone(), val, test));
                    member_cells.push(rank);
                }
                _ => without_predictions.push(run.id.clone()),
            }
        }
    }
    if stored.is_empty() {
        return Err(ReportError::Ensemble(format!(
            "--ensemble: sweep {}: no run of its top {k} cell(s) has stored predictions (runs finished by a fer-lab before schema 8 lack them; `fer-lab sweep FILE --restart RUN` trains one again)",
            analysis.sweep
        )));
    }
    let cells = analysis.cells.len().min(k);
    let mut rows = Vec::new();
    for top in 1..=cells {
        let chosen: Vec<&(String, SplitPredictions, SplitPredictions)> = stored
            .iter()
            .zip(&member_cells)
            .filter(|&(_, &c)| c < top)
            .map(|(s, _)| s)
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let vote =
            |split: fn(&(String, SplitPredictions, SplitPredictions)) -> &SplitPredictions| {
                let named: Vec<(&str, &SplitPredictions)> =
                    chosen.iter().map(|s| (s.0.as_str(), split(s))).collect();
                SplitPredictions::average(&named)
                    .map(SplitPredictions::evaluate)
                    .map_err(|e| ReportError::Ensemble(format!("--ensemble: {e}")))
            };
        rows.push(EnsembleRow {
            cells: top,
            members: chosen.iter().map(|s| s.0.clone()).collect(),
            val: vote(|s| &s.1)?,
            test: vote(|s| &s.2)?,
        });
    }
    let best_run = best_single_run(store, analysis)?;
    Ok(Ensembles {
        asked: k,
        rows,
        best_run,
        without_predictions,
    })
}

/// The single run with the best val metric, scored from its stored predictions.
fn best_single_run(
    store: &Store,
    analysis: &Analysis,
) -> Result<Option<(String, Evaluation, Evaluation)>, ReportError> {
    let metric = analysis.metric;
    let sign = if metric.higher_is_better() { 1.0 } else { -1.0 };
    let Some(best) = analysis
        .runs
        .iter()
        .max_by(|a, b| (sign * metric.of(&a.val)).total_cmp(&(sign * metric.of(&b.val))))
    else {
        return Ok(None);
    };
    Ok(
        match (
            store.predictions(&best.id, Split::Val)?,
            store.predictions(&best.id, Split::Test)?,
        ) {
            (Some(v), Some(t)) => Some((best.id.clone(), v.evaluate(), t.evaluate())),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RankMetric;
    use crate::report::analysis::analyse;
    use crate::store::{RunRecord, SweepRecord};
    use crate::table::Format;
    use serde_json::Value;

    fn row(class: usize, p: f32) -> [f32; 7] {
        let mut r = [(1.0 - p) / 6.0; 7];
        r[class] = p;
        r
    }

    /// Four images of classes 0, 1, 2, 3; `right[i]` says whether the run is right on image
    /// i (sure when right, unsure when wrong, so two runs right where a third is wrong win).
    fn preds(right: [bool; 4], confidence: f32) -> SplitPredictions {
        let labels = vec![0, 1, 2, 3];
        let probs = (0..4)
            .map(|i| {
                if right[i] {
                    row(i, confidence)
                } else {
                    row(6, 0.4)
                }
            })
            .collect();
        SplitPredictions::new(labels, probs).unwrap()
    }

    /// Cell lr=0.001 (seeds 1, 2: each right on 3 of 4 val images, on different ones), cell
    /// lr=0.01 (seed 1: 2 of 4), cell lr=0.1 (seed 1: 1 of 4, no stored predictions).
    fn db(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("db.sqlite");
        let mut store = Store::open(&path).unwrap();
        let runs = [
            (
                "a1",
                1,
                0.001,
                [true, true, true, false],
                [true, true, false, false],
            ),
            (
                "a2",
                2,
                0.001,
                [false, true, true, true],
                [false, true, true, false],
            ),
            (
                "b1",
                1,
                0.01,
                [true, false, true, false],
                [true, false, false, true],
            ),
            (
                "c1",
                1,
                0.1,
                [true, false, false, false],
                [true, false, false, false],
            ),
        ];
        let records: Vec<RunRecord> = runs
            .iter()
            .map(|(id, seed, lr, _, _)| RunRecord {
                config_json: format!("{{\"lr\":{lr}}}"),
                ..RunRecord::for_test(*id, *seed, 1, vec![("lr".into(), Value::from(*lr))])
            })
            .collect();
        store
            .register_sweep(&SweepRecord::for_test("s", &["lr"]), &records)
            .unwrap();
        for (id, _, _, val, test) in runs {
            let mut v = preds(val, 0.9).evaluate();
            let mut t = preds(test, 0.9).evaluate();
            if id == "c1" {
                // Finished by an older fer-lab: metrics, no predictions.
                v.predictions = None;
                t.predictions = None;
            }
            store
                .finish_run(id, 1, 1.0, &[(Split::Val, &v, 4), (Split::Test, &t, 4)])
                .unwrap();
        }
        path
    }

    #[test]
    fn the_top_cells_runs_are_soft_voted_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_read_only(&db(dir.path())).unwrap();
        let mut a = analyse(&store, None, RankMetric::ValAcc).unwrap();
        assert_eq!(a.cells[0].params, ["0.001"]);
        let ids = |rs: Vec<&RunResult>| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(members(&a, 1).unwrap()), ["a1", "a2"]);
        assert_eq!(ids(members(&a, 5).unwrap()), ["a1", "a2", "b1", "c1"]);
        assert!(members(&a, 0).is_err());

        let e = ensembles(&store, &a, 3).unwrap();
        assert_eq!(e.without_predictions, ["c1"]);
        assert_eq!(e.rows.len(), 3);
        // a1 + a2: each wrong where the other is sure and right, so the vote is right on all
        // four val images; on test both miss image 3.
        assert_eq!(e.rows[0].members, ["a1", "a2"]);
        assert_eq!(e.rows[0].val.accuracy, 1.0);
        assert_eq!(e.rows[0].test.accuracy, 0.75);
        assert_eq!(e.rows[0].test.per_class[3].f1, 0.0);
        // + b1, which is right on test image 3.
        assert_eq!(e.rows[1].members, ["a1", "a2", "b1"]);
        assert_eq!(e.rows[1].test.accuracy, 1.0);
        // The third cell has no predictions: its row repeats the second's members.
        assert_eq!(e.rows[2].members, e.rows[1].members);
        // The best single run on val is a1 or a2 (tied at 3 of 4), scored from its own
        // predictions.
        let (best, val, _) = e.best_run.clone().unwrap();
        assert!(best == "a1" || best == "a2", "{best}");
        assert_eq!(val.accuracy, 0.75);

        a.ensemble = Some(e);
        let json: Value = serde_json::from_str(&a.render(Format::Json, None)).unwrap();
        let rows = json["ensemble"].as_array().unwrap();
        assert_eq!(rows.len(), 4, "{json}");
        assert_eq!(rows[1]["ensemble"], "top 1 cell(s)");
        assert_eq!(rows[1]["runs"], 2);
        assert_eq!(rows[1]["val_acc"], 1.0);
        assert_eq!(rows[2]["test_acc"], 1.0);
        assert_eq!(rows[1]["test_f1_surprise"], 0.0);
        let table = a.render(Format::Table, None);
        assert!(
            table.contains("Ensembles of the top 1–3 cells")
                && table.contains("left out for want of stored predictions: c1"),
            "{table}"
        );
    }

    #[test]
    fn no_stored_predictions_or_k_zero_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_read_only(&db(dir.path())).unwrap();
        let a = analyse(&store, None, RankMetric::ValAcc).unwrap();
        let e = ensembles(&store, &a, 0).unwrap_err().to_string();
        assert!(e.contains("--ensemble 0"), "{e}");
        // A sweep whose best cell has no stored predictions.
        let only_c1 = Analysis {
            cells: a.cells[2..].to_vec(),
            ..a.clone()
        };
        assert_eq!(only_c1.cells[0].params, ["0.1"]);
        let e = ensembles(&store, &only_c1, 1).unwrap_err().to_string();
        assert!(
            e.contains("no run of its top 1 cell(s) has stored predictions"),
            "{e}"
        );
    }
}
