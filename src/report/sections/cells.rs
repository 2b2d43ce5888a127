//! The cells (runs that differ only by seed), ranked by the val metric, each with mean ± sd,
//! a 95 % CI and Welch's test against the best; test beside, never used to rank.

use crate::report::analysis::{Analysis, Section, ci, num, pm};
use crate::table::Rows;
use serde_json::Value;

pub fn section(a: &Analysis, top: Option<usize>, human: bool) -> Option<Section> {
    let m = a.metric;
    let unit = m.unit();
    let mut headers: Vec<String> = vec!["rank".into(), "vs best".into()];
    headers.extend(a.axes.iter().cloned());
    headers.push("n".into());
    if human {
        headers.extend([
            format!("val {}{unit} mean ± sd", m.name()),
            "val 95 % CI".into(),
            format!("test {}{unit} mean ± sd", m.name()),
        ]);
    } else {
        headers.extend(
            [
                "val_mean",
                "val_sd",
                "val_ci_low",
                "val_ci_high",
                "p_vs_best",
                "test_mean",
                "test_sd",
            ]
            .map(String::from),
        );
    }
    headers.extend(["epochs", "tta", "n_params"].map(String::from));
    let mut rows = Rows::new(headers);
    for (rank, cell) in a.cells.iter().enumerate() {
        if top.is_some_and(|n| rank >= n) {
            break;
        }
        let (versus, p) = a.versus_text(&cell.versus);
        let mut row = vec![Value::from(rank + 1), Value::from(versus)];
        row.extend(cell.params.iter().map(|p| Value::from(p.clone())));
        row.push(Value::from(cell.val.n));
        if human {
            row.extend([
                Value::from(pm(m, &cell.val)),
                Value::from(ci(m, &cell.val)),
                Value::from(pm(m, &cell.test)),
            ]);
        } else {
            let (lo, hi) = cell.val.ci95.map_or((Value::Null, Value::Null), |h| {
                (num(cell.val.mean - h), num(cell.val.mean + h))
            });
            row.extend([
                num(cell.val.mean),
                num(cell.val.sd),
                lo,
                hi,
                p.map_or(Value::Null, num),
                num(cell.test.mean),
                num(cell.test.sd),
            ]);
        }
        let (epochs, tta, params) = a.cell_context(cell);
        row.extend([Value::from(epochs), Value::from(tta), params]);
        rows.push(row);
    }
    Some(Section {
        name: "cells",
        title: format!(
            "Cells (runs that differ only by seed), ranked by val {}; test beside, never used to rank",
            m.name()
        ),
        rows,
    })
}
