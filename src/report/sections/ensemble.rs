//! `--ensemble K`: the soft vote of the top 1..=K cells' runs (chosen on val), with val and
//! test accuracy, test macro-F1 and per-class test F1, beside the best single run on val.

use crate::emotion::Emotion;
use crate::metrics::Evaluation;
use crate::report::analysis::{Analysis, Section, num};
use crate::table::Rows;
use serde_json::Value;

pub fn section(a: &Analysis, _top: Option<usize>, human: bool) -> Option<Section> {
    let e = a.ensemble.as_ref()?;
    let pct = |v: f64| {
        if human {
            Value::from(format!("{:.2}", 100.0 * v))
        } else {
            num(v)
        }
    };
    let f1 = |v: f64| {
        if human {
            Value::from(format!("{:.3}", v))
        } else {
            num(v)
        }
    };
    let mut headers: Vec<String> = [
        "ensemble",
        "cells",
        "runs",
        if human { "val acc %" } else { "val_acc" },
        if human { "test acc %" } else { "test_acc" },
        if human {
            "test macro-F1"
        } else {
            "test_macro_f1"
        },
    ]
    .map(String::from)
    .to_vec();
    headers.extend(Emotion::ALL.iter().map(|e| {
        if human {
            format!("{} F1", e.name())
        } else {
            format!("test_f1_{}", e.name().to_lowercase())
        }
    }));
    let mut rows = Rows::new(headers);
    let mut push =
        |what: String, cells: Value, runs: usize, val: &Evaluation, test: &Evaluation| {
            let mut row = vec![
                Value::from(what),
                cells,
                Value::from(runs),
                pct(val.accuracy),
                pct(test.accuracy),
                f1(test.macro_f1),
            ];
            row.extend(test.per_class.iter().map(|c| f1(c.f1)));
            rows.push(row);
        };
    if let Some((id, val, test)) = &e.best_run {
        push(format!("best run {id}"), Value::Null, 1, val, test);
    }
    for r in &e.rows {
        push(
            format!("top {} cell(s)", r.cells),
            Value::from(r.cells),
            r.members.len(),
            &r.val,
            &r.test,
        );
    }
    let cells = match e.rows.last().map_or(e.asked, |r| r.cells) {
        1 => "the best cell".to_string(),
        k => format!("the top 1–{k} cells"),
    };
    let mut title = format!(
        "Ensembles of {cells} (soft vote of all their runs, chosen on val), per-class F1 on test"
    );
    if !e.without_predictions.is_empty() {
        title.push_str(&format!(
            "; left out for want of stored predictions: {}",
            e.without_predictions.join(", ")
        ));
    }
    Some(Section {
        name: "ensemble",
        title,
        rows,
    })
}
