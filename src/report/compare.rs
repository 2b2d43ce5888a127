//! `fer-lab report --compare A B`: two sweeps (their best cells, tested against each other over
//! seeds) or two runs (metrics, per-class F1 and the config keys that differ), side by side.

use super::analysis::{Analysis, analyse};
use super::{RankMetric, ReportError};
use crate::data::Split;
use crate::emotion::Emotion;
use crate::stats::welch;
use crate::store::Store;
use crate::table::{Format, Rows};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What a name on the command line is.
enum Side {
    Sweep(String),
    Run(String),
}

fn identify(store: &Store, name: &str) -> Result<Side, ReportError> {
    if store.sweep_exists(name)? {
        return Ok(Side::Sweep(name.to_string()));
    }
    let runs = store.runs_matching(name)?;
    match runs.as_slice() {
        [one] => Ok(Side::Run(one.clone())),
        _ => Err(ReportError::NoSuchSweep {
            name: name.to_string(),
            db: store.path().display().to_string(),
            known: format!(
                "{} (or a run id; {} runs match)",
                store.sweep_names_joined()?,
                runs.len()
            ),
        }),
    }
}

/// Compares `a` and `b` (each a sweep name, or a run id or unique prefix).
pub fn compare(
    store: &Store,
    a: &str,
    b: &str,
    metric: RankMetric,
    format: Format,
) -> Result<String, ReportError> {
    match (identify(store, a)?, identify(store, b)?) {
        (Side::Sweep(x), Side::Sweep(y)) => {
            let (ax, ay) = (
                analyse(store, Some(&x), metric)?,
                analyse(store, Some(&y), metric)?,
            );
            Ok(compare_sweeps(&ax, &ay, format))
        }
        (Side::Run(x), Side::Run(y)) => compare_runs(store, &x, &y, format),
        _ => Err(ReportError::Compare(format!(
            "`{a}` and `{b}`: compare two sweeps or two runs, not one of each"
        ))),
    }
}

fn compare_sweeps(a: &Analysis, b: &Analysis, format: Format) -> String {
    let m = a.metric;
    let mut rows = Rows::new(
        [
            "sweep",
            "best cell",
            "n",
            "val mean",
            "val sd",
            "test mean",
            "test sd",
            "finished runs",
        ]
        .map(String::from),
    );
    let vals = |an: &Analysis| -> Vec<f64> {
        an.cells
            .first()
            .map(|c| c.runs.iter().map(|&i| m.of(&an.runs[i].val)).collect())
            .unwrap_or_default()
    };
    for an in [a, b] {
        let Some(best) = an.cells.first() else {
            rows.push(vec![
                Value::from(an.sweep.clone()),
                Value::from("no finished run"),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::from(0),
            ]);
            continue;
        };
        let label = crate::table::key_values(&an.axes, &best.params);
        let r = |v: f64| Value::from((v * 1e4).round() / 1e4);
        rows.push(vec![
            Value::from(an.sweep.clone()),
            Value::from(if label.is_empty() { "-".into() } else { label }),
            Value::from(best.val.n),
            r(best.val.mean),
            r(best.val.sd),
            r(best.test.mean),
            r(best.test.sd),
            Value::from(an.runs.len()),
        ]);
    }
    let verdict = match welch(&vals(a), &vals(b)) {
        Some(w) => format!(
            "val {} of the best cells: {} − {} = {:+.4}; Welch's t = {:.3}, df = {:.1}, p = {:.4}: {}",
            m.name(),
            a.sweep,
            b.sweep,
            mean(&vals(a)) - mean(&vals(b)),
            w.t,
            w.df,
            w.p,
            if w.p < super::analysis::TIE_P {
                "a real difference at the 5 % level"
            } else {
                "not distinguishable from seed noise"
            }
        ),
        None => "fewer than two seeds in a best cell: no test of the difference".to_string(),
    };
    render(
        format,
        &format!("{} vs {}", a.sweep, b.sweep),
        &[verdict],
        vec![("best cells", rows)],
    )
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn compare_runs(store: &Store, a: &str, b: &str, format: Format) -> Result<String, ReportError> {
    let metrics = |id: &str| -> Result<Vec<Value>, ReportError> {
        Ok(store.run_outcome(id)?.map_or_else(Vec::new, |o| {
            vec![
                Value::from(o.status.as_str()),
                Value::from(o.val_acc),
                Value::from(o.test_acc),
                Value::from(o.val_macro_f1),
                Value::from(o.test_macro_f1),
                Value::from(o.epochs_done),
                Value::from(o.best_epoch),
                Value::from(o.params),
                Value::from(o.wall_secs),
            ]
        }))
    };
    let (ma, mb) = (metrics(a)?, metrics(b)?);
    let names = [
        "status",
        "val_acc",
        "test_acc",
        "val_macro_f1",
        "test_macro_f1",
        "epochs",
        "best_epoch",
        "params",
        "wall_secs",
    ];
    let mut summary = Rows::new(["measure", a, b].map(String::from));
    for (i, name) in names.iter().enumerate() {
        summary.push(vec![
            Value::from(*name),
            ma.get(i).cloned().unwrap_or(Value::Null),
            mb.get(i).cloned().unwrap_or(Value::Null),
        ]);
    }
    // Config keys whose values differ.
    let params = |id: &str| -> Result<BTreeMap<String, Value>, ReportError> {
        Ok(store
            .run_param_texts(id)?
            .into_iter()
            .map(|(key, value)| (key, Value::from(value)))
            .collect())
    };
    let (pa, pb) = (params(a)?, params(b)?);
    let mut diff = Rows::new(["key", a, b].map(String::from));
    let keys: std::collections::BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
    for key in keys {
        let (x, y) = (pa.get(key), pb.get(key));
        if x != y {
            diff.push(vec![
                Value::from(key.clone()),
                x.cloned().unwrap_or(Value::Null),
                y.cloned().unwrap_or(Value::Null),
            ]);
        }
    }
    let seed_line = store
        .seeds_of(a, b)?
        .iter()
        .map(|(id, seed)| format!("{id} seed {seed}"))
        .collect::<Vec<_>>()
        .join(", ");
    // Per-class F1 on both splits.
    let f1 = |id: &str| -> Result<BTreeMap<(Split, i64), f64>, ReportError> {
        Ok(store
            .class_metrics(id, None)?
            .into_iter()
            .map(|m| ((m.split, m.class_id), m.f1))
            .collect())
    };
    let (fa, fb) = (f1(a)?, f1(b)?);
    let mut classes = Rows::new(
        [
            "emotion",
            &format!("val F1 {a}"),
            &format!("val F1 {b}"),
            &format!("test F1 {a}"),
            &format!("test F1 {b}"),
        ]
        .map(String::from),
    );
    for e in Emotion::ALL {
        let c = i64::from(e.id());
        let get = |m: &BTreeMap<(Split, i64), f64>, split: Split| {
            m.get(&(split, c))
                .map_or(Value::Null, |v| Value::from((v * 1e4).round() / 1e4))
        };
        classes.push(vec![
            Value::from(e.name()),
            get(&fa, Split::Val),
            get(&fb, Split::Val),
            get(&fa, Split::Test),
            get(&fb, Split::Test),
        ]);
    }
    Ok(render(
        format,
        &format!("run {a} vs run {b}"),
        &[
            seed_line,
            "two single runs differ by seed noise too (about ±0.5 points on FER-2013): compare cells over seeds for a verdict".into(),
        ],
        vec![
            ("metrics", summary),
            ("config keys that differ", diff),
            ("per-class F1", classes),
        ],
    ))
}

fn render(format: Format, title: &str, notes: &[String], sections: Vec<(&str, Rows)>) -> String {
    let mut out = String::new();
    match format {
        Format::Table | Format::Markdown | Format::Html => {
            let md = format == Format::Markdown;
            let _ = writeln!(out, "{}{title}", if md { "# " } else { "" });
            for n in notes {
                let _ = writeln!(out, "{}{n}", if md { "- " } else { "" });
            }
            for (name, rows) in sections {
                let _ = write!(
                    out,
                    "\n{}{name}\n{}{}",
                    if md { "## " } else { "" },
                    if md { "\n" } else { "" },
                    rows.render(format)
                );
            }
        }
        Format::Csv => {
            out = super::csv_sections(sections.iter().map(|(name, rows)| (*name, rows)));
        }
        Format::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("title".into(), Value::from(title));
            obj.insert("notes".into(), Value::from(notes.to_vec()));
            for (name, rows) in sections {
                obj.insert(name.replace(' ', "_"), Value::Array(rows.objects()));
            }
            out = super::json_document(obj);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::analysis::{Eval, RunResult, cells};

    fn sweep(name: &str, vals: &[f64]) -> Analysis {
        let runs: Vec<RunResult> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| RunResult {
                id: format!("{name}{i}"),
                seed: i as u64 + 1,
                params: vec!["0.001".into()],
                val: Eval {
                    accuracy: v,
                    macro_f1: v,
                    loss: 1.0,
                },
                test: Eval {
                    accuracy: v,
                    macro_f1: v,
                    loss: 1.0,
                },
                epochs: 30,
                best_epoch: None,
                tta: "none".into(),
                n_params: None,
            })
            .collect();
        Analysis {
            sweep: name.into(),
            metric: RankMetric::ValAcc,
            axes: vec!["lr".into()],
            cells: cells(&runs, RankMetric::ValAcc),
            runs,
            effects: vec![],
            classes: vec![],
            confusion: [[0; 7]; 7],
            pending: 0,
            never_learned: vec![],
            ensemble: None,
        }
    }

    #[test]
    fn two_sweeps_are_tested_over_seeds() {
        // 0.61 ± 0.01 vs 0.60 ± 0.01 over three seeds: t = 1.2247, p = 0.2879, a tie.
        let text = compare_sweeps(
            &sweep("a", &[0.60, 0.61, 0.62]),
            &sweep("b", &[0.59, 0.60, 0.61]),
            Format::Json,
        );
        let json: Value = serde_json::from_str(&text).unwrap();
        let verdict = json["notes"][0].as_str().unwrap();
        assert!(
            verdict.contains("+0.0100") && verdict.contains("p = 0.2879"),
            "{verdict}"
        );
        assert!(
            verdict.contains("not distinguishable from seed noise"),
            "{verdict}"
        );
        assert_eq!(json["best_cells"][0]["best cell"], "lr=0.001");
        // Far apart: a real difference.
        let text = compare_sweeps(
            &sweep("a", &[0.60, 0.61, 0.62]),
            &sweep("b", &[0.50, 0.51, 0.52]),
            Format::Table,
        );
        assert!(text.contains("a real difference"), "{text}");
    }
}
