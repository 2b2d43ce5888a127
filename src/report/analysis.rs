//! What actually helped: a sweep's finished runs grouped into cells (runs that differ only by
//! seed), each summarised as mean ± sd with a 95 % CI and compared with the best cell by
//! Welch's t-test; the effect of each swept key marginalised over the others; the per-class
//! metrics and confusion matrix of the best cell.
//!
//! Ranking and selection use the val split only. Test numbers stand beside them and are never
//! used to order or pick anything.

use super::{RankMetric, ReportError, resolve_sweep};
use crate::data::Split;
use crate::emotion::Emotion;
use crate::stats::{Summary, Welch, cells_over_seeds, welch};
use crate::store::Store;
use crate::table::{Format, Rows, cell_text};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;

/// A cell is "tied" with the best when Welch's test cannot tell them apart at this level.
pub const TIE_P: f64 = 0.05;

/// Accuracy, macro-F1 and loss of one split of a run's best checkpoint.
pub use crate::store::EvalScores as Eval;

impl RankMetric {
    pub fn of(self, e: &Eval) -> f64 {
        match self {
            RankMetric::ValAcc => e.accuracy,
            RankMetric::ValMacroF1 => e.macro_f1,
            RankMetric::ValLoss => e.loss,
        }
    }

    pub fn higher_is_better(self) -> bool {
        !matches!(self, RankMetric::ValLoss)
    }

    /// The metric's name without the split.
    pub fn name(self) -> &'static str {
        match self {
            RankMetric::ValAcc => "accuracy",
            RankMetric::ValMacroF1 => "macro-F1",
            RankMetric::ValLoss => "loss",
        }
    }

    /// Accuracy and F1 read as percentages; loss as is.
    pub(crate) fn show(self, v: f64) -> String {
        match self {
            RankMetric::ValLoss => format!("{v:.4}"),
            _ => format!("{:.2}", 100.0 * v),
        }
    }

    pub(crate) fn unit(self) -> &'static str {
        match self {
            RankMetric::ValLoss => "",
            _ => " %",
        }
    }
}

/// A finished run's results.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub id: String,
    pub seed: u64,
    /// Values of the swept keys, in [`Analysis::axes`] order.
    pub params: Vec<String>,
    pub val: Eval,
    pub test: Eval,
    pub epochs: u64,
    pub best_epoch: Option<u64>,
    pub tta: String,
    pub n_params: Option<i64>,
}

/// How a cell compares with the best cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Versus {
    Best,
    /// Welch p ≥ [`TIE_P`]: seed noise may explain the gap.
    Tied(Welch),
    Worse(Welch),
    /// Fewer than two seeds on one side: no test possible.
    Untested,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub params: Vec<String>,
    /// Indices into [`Analysis::runs`].
    pub runs: Vec<usize>,
    pub val: Summary,
    pub test: Summary,
    pub versus: Versus,
}

/// The mean of the metric at one value of one swept key, over every run with that value.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub key: String,
    pub value: String,
    pub val: Summary,
    pub test: Summary,
    /// Mean minus the reference value's mean (the key's first value in sweep order).
    pub delta: f64,
    pub reference: String,
}

/// Per-class metrics of the best cell, averaged over its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassRow {
    pub emotion: Emotion,
    pub val_f1: f64,
    pub test_precision: f64,
    pub test_recall: f64,
    pub test_f1: f64,
    pub support: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub sweep: String,
    pub metric: RankMetric,
    pub axes: Vec<String>,
    pub runs: Vec<RunResult>,
    /// Best first.
    pub cells: Vec<Cell>,
    pub effects: Vec<Effect>,
    pub classes: Vec<ClassRow>,
    /// Test confusion matrix of the best cell, summed over its runs: `[true][pred]`.
    pub confusion: [[i64; 7]; 7],
    /// Runs of the sweep without results (not done).
    pub pending: usize,
    /// Finished runs that stayed at chance (see [`crate::store::NEVER_LEARNED_BELOW`]).
    pub never_learned: Vec<String>,
    /// The soft votes of the best cells, when asked for ([`super::ensemble::ensembles`]).
    pub ensemble: Option<super::ensemble::Ensembles>,
}

/// Reads a sweep's finished runs and analyses them.
pub fn analyse(
    store: &Store,
    sweep: Option<&str>,
    metric: RankMetric,
) -> Result<Analysis, ReportError> {
    let (sweep_id, name) = resolve_sweep(store, sweep)?;
    let mut keys = store.sweep_axes(sweep_id)?;
    // The seed is what a cell averages over; tta and epochs are shown on every row instead.
    keys.retain(|k| k != "seed");
    let values = store.swept_values(sweep_id, &keys)?;
    let extra = store.swept_values(sweep_id, &["tta".to_string()])?;
    let runs: Vec<RunResult> = store
        .finished_runs(sweep_id)?
        .into_iter()
        .map(|r| RunResult {
            params: keys
                .iter()
                .map(|k| {
                    values
                        .get(&(r.id.clone(), k.clone()))
                        .map_or_else(|| "-".into(), cell_text)
                })
                .collect(),
            tta: extra
                .get(&(r.id.clone(), "tta".to_string()))
                .map_or_else(|| "none".into(), cell_text),
            seed: r.seed as u64,
            val: r.val,
            test: r.test,
            epochs: r.epochs_done as u64,
            best_epoch: r.best_epoch.map(|e| e as u64),
            n_params: r.params,
            id: r.id,
        })
        .collect();
    let pending = store.unfinished_count(sweep_id)?;

    let cells = cells(&runs, metric);
    let effects = effects(&keys, &runs, metric);
    let (classes, confusion) = match cells.first() {
        Some(best) => best_cell_classes(store, &runs, best)?,
        None => (Vec::new(), [[0; 7]; 7]),
    };
    Ok(Analysis {
        sweep: name,
        metric,
        axes: keys,
        runs,
        cells,
        effects,
        classes,
        confusion,
        pending,
        never_learned: store.never_learned(sweep_id)?,
        ensemble: None,
    })
}

/// Groups runs into cells, best first, each compared with the best.
pub fn cells(runs: &[RunResult], metric: RankMetric) -> Vec<Cell> {
    let groups = cells_over_seeds(runs.iter().map(|r| r.params.as_slice()));
    let vals = |idx: &[usize], f: &dyn Fn(&RunResult) -> f64| -> Vec<f64> {
        idx.iter().map(|&i| f(&runs[i])).collect()
    };
    let mut cells: Vec<Cell> = groups
        .into_iter()
        .map(|(params, idx)| {
            let v = vals(&idx, &|r| metric.of(&r.val));
            let t = vals(&idx, &|r| metric.of(&r.test));
            Cell {
                params: params.to_vec(),
                val: Summary::of(&v).expect("a cell has a run"),
                test: Summary::of(&t).expect("a cell has a run"),
                runs: idx,
                versus: Versus::Untested,
            }
        })
        .collect();
    let sign = if metric.higher_is_better() { -1.0 } else { 1.0 };
    // Stable: equal means keep sweep order.
    cells.sort_by(|a, b| (sign * a.val.mean).total_cmp(&(sign * b.val.mean)));
    let Some(best) = cells.first() else {
        return cells;
    };
    let best_vals = vals(&best.runs, &|r| metric.of(&r.val));
    for (i, cell) in cells.iter_mut().enumerate() {
        cell.versus = if i == 0 {
            Versus::Best
        } else {
            match welch(&vals(&cell.runs, &|r| metric.of(&r.val)), &best_vals) {
                Some(w) if w.p >= TIE_P => Versus::Tied(w),
                Some(w) => Versus::Worse(w),
                None => Versus::Untested,
            }
        };
    }
    cells
}

/// Per swept key, the metric at each of its values over every run with that value.
pub fn effects(keys: &[String], runs: &[RunResult], metric: RankMetric) -> Vec<Effect> {
    let mut out = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        // A knob that only some runs have (focal's gamma when the loss is swept) is part of
        // the cell, not an effect of its own: its `.kind` key carries the comparison.
        if runs.iter().any(|r| r.params[k] == "-") {
            continue;
        }
        let mut by_value: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
        for r in runs {
            let value = &r.params[k];
            let at = match by_value.iter().position(|g| &g.0 == value) {
                Some(i) => i,
                None => {
                    by_value.push((value.clone(), Vec::new(), Vec::new()));
                    by_value.len() - 1
                }
            };
            by_value[at].1.push(metric.of(&r.val));
            by_value[at].2.push(metric.of(&r.test));
        }
        let Some(reference) = by_value.first().map(|g| (g.0.clone(), g.1.clone())) else {
            continue;
        };
        let ref_mean = Summary::of(&reference.1).map_or(0.0, |s| s.mean);
        for (value, v, t) in by_value {
            let val = Summary::of(&v).expect("a value has a run");
            out.push(Effect {
                key: key.clone(),
                value,
                delta: val.mean - ref_mean,
                val,
                test: Summary::of(&t).expect("a value has a run"),
                reference: reference.0.clone(),
            });
        }
    }
    out
}

type Classes = (Vec<ClassRow>, [[i64; 7]; 7]);

fn best_cell_classes(
    store: &Store,
    runs: &[RunResult],
    best: &Cell,
) -> Result<Classes, ReportError> {
    let n = best.runs.len() as f64;
    let mut sums: HashMap<(Split, i64), [f64; 4]> = HashMap::new();
    let mut confusion = [[0i64; 7]; 7];
    for &i in &best.runs {
        let id = &runs[i].id;
        for m in store.class_metrics(id, None)? {
            let s = sums.entry((m.split, m.class_id)).or_insert([0.0; 4]);
            for (acc, x) in s
                .iter_mut()
                .zip([m.precision, m.recall, m.f1, m.support as f64])
            {
                *acc += x;
            }
        }
        for (t, p, c) in store.confusion_cells(id, Split::Test)? {
            if (0..7).contains(&t) && (0..7).contains(&p) {
                confusion[t as usize][p as usize] += c;
            }
        }
    }
    let classes = Emotion::ALL
        .iter()
        .map(|&emotion| {
            let c = i64::from(emotion.id());
            let val = sums.get(&(Split::Val, c)).copied().unwrap_or_default();
            let test = sums.get(&(Split::Test, c)).copied().unwrap_or_default();
            ClassRow {
                emotion,
                val_f1: val[2] / n,
                test_precision: test[0] / n,
                test_recall: test[1] / n,
                test_f1: test[2] / n,
                support: test[3] / n,
            }
        })
        .collect();
    Ok((classes, confusion))
}

pub(super) fn pm(metric: RankMetric, s: &Summary) -> String {
    if s.n > 1 {
        format!("{} ± {}", metric.show(s.mean), metric.show(s.sd))
    } else {
        metric.show(s.mean)
    }
}

pub(super) fn ci(metric: RankMetric, s: &Summary) -> String {
    s.ci95.map_or_else(
        || "-".into(),
        |h| format!("[{}, {}]", metric.show(s.mean - h), metric.show(s.mean + h)),
    )
}

pub(super) fn num(v: f64) -> Value {
    if v.is_finite() {
        Value::from((v * 1e6).round() / 1e6)
    } else {
        Value::Null
    }
}

/// One table of the report.
pub struct Section {
    pub name: &'static str,
    pub title: String,
    pub rows: Rows,
}

impl Analysis {
    pub(super) fn versus_text(&self, v: &Versus) -> (String, Option<f64>) {
        match v {
            Versus::Best => ("best".into(), None),
            Versus::Tied(w) => (format!("tied (p={:.2})", w.p), Some(w.p)),
            Versus::Worse(w) => (format!("worse (p={:.3})", w.p), Some(w.p)),
            Versus::Untested => ("n<2, untested".into(), None),
        }
    }

    /// Every row says what it was measured on: epochs, TTA, parameters.
    pub(super) fn cell_context(&self, cell: &Cell) -> (String, String, Value) {
        let runs: Vec<&RunResult> = cell.runs.iter().map(|&i| &self.runs[i]).collect();
        let mut epochs: Vec<u64> = runs.iter().map(|r| r.epochs).collect();
        epochs.sort_unstable();
        epochs.dedup();
        let epochs = epochs
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("/");
        let mut tta: Vec<&str> = runs.iter().map(|r| r.tta.as_str()).collect();
        tta.sort_unstable();
        tta.dedup();
        let params = runs
            .first()
            .and_then(|r| r.n_params)
            .map_or(Value::Null, Value::from);
        (epochs, tta.join("/"), params)
    }

    /// The report's tables, in [`super::sections::ALL`]'s order; `human` formats numbers for
    /// reading (mean ± sd in one cell), otherwise every number gets its own column.
    pub fn sections(&self, top: Option<usize>, human: bool) -> Vec<Section> {
        super::sections::ALL
            .iter()
            .filter_map(|build| build(self, top, human))
            .collect()
    }

    /// Lines that say how to read the tables.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "sweep {}: {} finished run(s) in {} cell(s){}",
            self.sweep,
            self.runs.len(),
            self.cells.len(),
            if self.pending > 0 {
                format!(", {} run(s) without results yet", self.pending)
            } else {
                String::new()
            }
        )];
        notes.push(format!(
            "ranked on the val split by {}; test (the held-out split) is shown, never used to rank or select",
            self.metric.name()
        ));
        notes.push(format!(
            "vs best: Welch's t-test of each cell's val {} over seeds against the best cell's; tied = p ≥ {TIE_P} (seed noise may explain the gap); needs ≥ 2 seeds per cell",
            self.metric.name()
        ));
        if !self.never_learned.is_empty() {
            notes.push(format!(
                "{} run(s) {}: {}",
                self.never_learned.len(),
                crate::store::NEVER_LEARNED,
                self.never_learned.join(", ")
            ));
        }
        let mut weakest: Vec<&ClassRow> = self.classes.iter().collect();
        weakest.sort_by(|a, b| a.val_f1.total_cmp(&b.val_f1));
        if weakest.len() >= 2 {
            notes.push(format!(
                "weakest classes of the best cell (val F1): {} {:.3}, {} {:.3}",
                weakest[0].emotion.name(),
                weakest[0].val_f1,
                weakest[1].emotion.name(),
                weakest[1].val_f1
            ));
        }
        notes
    }

    /// The report as one self-contained HTML page: notes, tables and the figures inline (SVG).
    pub fn html(&self, top: Option<usize>, figures: &[(String, String)]) -> String {
        use crate::table::html_escape;
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>fer-lab report: {name}</title>\n<style>\n\
             body {{ font-family: 'DejaVu Sans', sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}\n\
             table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}\n\
             th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; }}\n\
             th {{ background: #f0f3f8; }} td.num {{ text-align: right; }}\n\
             figure {{ margin: 1em 0; }} figure svg {{ max-width: 100%; height: auto; }}\n\
             </style>\n</head>\n<body>\n<h1>Report of sweep <code>{name}</code></h1>\n<ul>\n",
            name = html_escape(&self.sweep)
        );
        for n in self.notes() {
            let _ = writeln!(out, "<li>{}</li>", html_escape(&n));
        }
        out.push_str("</ul>\n");
        for s in self.sections(top, true) {
            let _ = write!(
                out,
                "<h2>{}</h2>\n{}",
                html_escape(&s.title),
                s.rows.render(Format::Html)
            );
        }
        if !figures.is_empty() {
            out.push_str("<h2>Figures</h2>\n");
            for (name, svg) in figures {
                // The SVG's own XML declaration is not allowed inside HTML.
                let svg = svg.trim_start_matches(|c| c != '<');
                let svg = match svg.strip_prefix("<?xml") {
                    Some(rest) => rest.split_once("?>").map_or(rest, |(_, body)| body),
                    None => svg,
                };
                let _ = writeln!(
                    out,
                    "<figure id=\"{}\">\n{}\n</figure>",
                    html_escape(name),
                    svg.trim()
                );
            }
        }
        out.push_str("</body>\n</html>\n");
        out
    }

    pub fn render(&self, format: Format, top: Option<usize>) -> String {
        if format == Format::Html {
            return self.html(top, &[]);
        }
        let human = matches!(format, Format::Table | Format::Markdown);
        let sections = self.sections(top, human);
        let mut out = String::new();
        match format {
            Format::Table => {
                for n in self.notes() {
                    let _ = writeln!(out, "{n}");
                }
                for s in &sections {
                    let _ = write!(out, "\n{}\n{}", s.title, s.rows.render(format));
                }
            }
            Format::Markdown => {
                let _ = writeln!(out, "# Report of sweep `{}`\n", self.sweep);
                for n in self.notes() {
                    let _ = writeln!(out, "- {n}");
                }
                for s in &sections {
                    let _ = write!(out, "\n## {}\n\n{}", s.title, s.rows.render(format));
                }
            }
            Format::Csv => {
                out = super::csv_sections(sections.iter().map(|s| (s.name, &s.rows)));
            }
            Format::Html => unreachable!("handled above"),
            Format::Json => {
                let mut obj = Map::new();
                obj.insert("sweep".into(), json!(self.sweep));
                obj.insert("metric".into(), json!(self.metric.name()));
                obj.insert("notes".into(), json!(self.notes()));
                for s in &sections {
                    obj.insert(s.name.into(), Value::Array(s.rows.objects()));
                }
                out = super::json_document(obj);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunRecord, RunStatus, SweepRecord, SyntheticEval, SyntheticState};

    fn result(id: &str, lr: &str, loss: &str, seed: u64, val: f64) -> RunResult {
        let e = |a: f64| Eval {
            accuracy: a,
            macro_f1: a - 0.1,
            loss: 2.0 - a,
        };
        RunResult {
            id: id.into(),
            seed,
            params: vec![lr.into(), loss.into()],
            val: e(val),
            test: e(val + 0.01),
            epochs: 30,
            best_epoch: Some(20),
            tta: "none".into(),
            n_params: Some(1000),
        }
    }

    /// lr × loss, three seeds each for three cells, one seed for the fourth.
    fn runs() -> Vec<RunResult> {
        vec![
            result("a1", "0.001", "ce", 1, 0.60),
            result("a2", "0.001", "ce", 2, 0.61),
            result("a3", "0.001", "ce", 3, 0.62),
            result("b1", "0.001", "focal", 1, 0.62),
            result("b2", "0.001", "focal", 2, 0.63),
            result("b3", "0.001", "focal", 3, 0.61),
            result("c1", "0.01", "ce", 1, 0.50),
            result("c2", "0.01", "ce", 2, 0.51),
            result("c3", "0.01", "ce", 3, 0.52),
            result("d1", "0.01", "focal", 1, 0.55),
        ]
    }

    #[test]
    fn cells_rank_on_val_and_flag_ties() {
        let cells = cells(&runs(), RankMetric::ValAcc);
        let order: Vec<Vec<String>> = cells.iter().map(|c| c.params.clone()).collect();
        assert_eq!(order[0], ["0.001", "focal"]);
        assert_eq!(order[1], ["0.001", "ce"]);
        assert_eq!(order[3], ["0.01", "ce"]);
        let best = &cells[0];
        assert_eq!(best.versus, Versus::Best);
        assert!((best.val.mean - 0.62).abs() < 1e-12 && (best.val.sd - 0.01).abs() < 1e-12);
        // 0.62 ± t(.975, 2) · 0.01 / √3 = 0.62 ± 0.024841.
        assert!((best.val.ci95.unwrap() - 0.024841).abs() < 1e-5);
        // ce at 0.001 (0.61 ± 0.01 vs 0.62 ± 0.01): t = −1.2247, p = 0.2879 → tied.
        match cells[1].versus {
            Versus::Tied(w) => assert!((w.p - 0.2879).abs() < 1e-3, "{w:?}"),
            other => panic!("expected a tie, got {other:?}"),
        }
        // One seed cannot be tested; 0.51 vs 0.62 with sd 0.01 each is clearly worse.
        assert_eq!(cells[2].versus, Versus::Untested);
        assert!(matches!(cells[3].versus, Versus::Worse(w) if w.p < 0.001));
        // Loss ranks ascending: the same order as accuracy here (loss = 2 − acc).
        let by_loss = super::cells(&runs(), RankMetric::ValLoss);
        assert_eq!(by_loss[0].params, ["0.001", "focal"]);
    }

    #[test]
    fn effects_marginalise_over_the_other_keys() {
        let keys = vec!["lr".to_string(), "loss".to_string()];
        let effects = effects(&keys, &runs(), RankMetric::ValAcc);
        let get = |k: &str, v: &str| effects.iter().find(|e| e.key == k && e.value == v).unwrap();
        // lr 0.001: six runs, mean 0.615; lr 0.01: four runs, mean (0.5+0.51+0.52+0.55)/4 = 0.52.
        assert_eq!(get("lr", "0.001").val.n, 6);
        assert!((get("lr", "0.001").val.mean - 0.615).abs() < 1e-12);
        assert!((get("lr", "0.01").delta - (0.52 - 0.615)).abs() < 1e-12);
        // loss ce: 0.6 0.61 0.62 0.5 0.51 0.52 → 0.56; focal: 0.62 0.63 0.61 0.55 → 0.6025.
        assert_eq!(get("loss", "ce").delta, 0.0);
        assert!((get("loss", "focal").delta - (0.6025 - 0.56)).abs() < 1e-12);
        assert_eq!(get("loss", "focal").reference, "ce");
    }

    /// A database with the runs of [`runs`], per-class metrics and confusion matrices.
    fn synthetic_db(dir: &std::path::Path) -> std::path::PathBuf {
        let db = dir.join("db.sqlite");
        let mut store = Store::open(&db).unwrap();
        let rs = runs();
        let record = SweepRecord::for_test("s", &["lr", "loss"]);
        let records: Vec<RunRecord> = rs
            .iter()
            .map(|r| RunRecord {
                config_json: format!("{{\"lr\":{},\"loss\":\"{}\"}}", r.params[0], r.params[1]),
                ..RunRecord::for_test(
                    r.id.clone(),
                    r.seed,
                    30,
                    vec![
                        (
                            "lr".into(),
                            Value::from(r.params[0].parse::<f64>().unwrap()),
                        ),
                        ("loss".into(), Value::from(r.params[1].clone())),
                        ("tta".into(), Value::from("none")),
                    ],
                )
            })
            .collect();
        store.register_sweep(&record, &records).unwrap();
        for (i, r) in rs.iter().enumerate() {
            let state = SyntheticState {
                status: RunStatus::Done,
                epochs_done: 30,
                best_epoch: Some(20),
                params: Some(1000),
                slot: None,
                launched_at: None,
                progress: None,
            };
            store.set_synthetic_state(&r.id, &state).unwrap();
            for (split, e) in [(Split::Val, r.val), (Split::Test, r.test)] {
                let eval = SyntheticEval {
                    split,
                    epoch: 20,
                    n: 3589,
                    accuracy: e.accuracy,
                    loss: e.loss,
                    macro_precision: 0.5,
                    macro_recall: 0.5,
                    macro_f1: e.macro_f1,
                    classes: (0..7i64)
                        .map(|class| {
                            let f1 = 0.1 * class as f64 + 0.01 * i as f64;
                            (class, f1, f1, f1, 100)
                        })
                        .collect(),
                    confusion: (0..7i64).map(|class| (class, class, 10)).collect(),
                };
                store.add_synthetic_eval(&r.id, &eval).unwrap();
            }
        }
        // A run without results counts as pending.
        drop(store);
        db
    }

    #[test]
    fn the_best_cell_per_class_and_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let db = synthetic_db(dir.path());
        let store = Store::open_read_only(&db).unwrap();
        let a = analyse(&store, None, RankMetric::ValAcc).unwrap();
        assert_eq!(a.axes, ["lr", "loss"]);
        assert_eq!(a.cells[0].params, ["0.001", "focal"]);
        // The best cell is runs b1 b2 b3 (indices 3, 4, 5): F1 of class c = 0.1c + 0.01 · mean(3, 4, 5).
        assert!(
            (a.classes[2].test_f1 - 0.24).abs() < 1e-12,
            "{:?}",
            a.classes[2]
        );
        assert_eq!(a.confusion[4][4], 30);
        assert!(
            a.notes()
                .iter()
                .any(|n| n.contains("weakest classes") && n.contains("Angry"))
        );

        insta::assert_snapshot!("report_table", a.render(Format::Table, None));
        insta::assert_snapshot!("report_markdown", a.render(Format::Markdown, Some(2)));
        insta::assert_snapshot!("report_csv", a.render(Format::Csv, None));
        let json: Value = serde_json::from_str(&a.render(Format::Json, None)).unwrap();
        assert_eq!(json["cells"].as_array().unwrap().len(), 4);
        assert_eq!(json["cells"][0]["vs best"], "best");
        assert!((json["cells"][1]["p_vs_best"].as_f64().unwrap() - 0.2879).abs() < 1e-3);
        assert_eq!(json["effects"].as_array().unwrap().len(), 4);
        assert_eq!(json["classes"].as_array().unwrap().len(), 7);
        insta::assert_snapshot!("report_json", a.render(Format::Json, None));

        // That the cell_stats view agrees is tested beside it, in the store.
    }
}
