//! `fer-lab report` and `fer-lab runs`: leaderboards and run lists read from SQLite.
//!
//! Ranking uses val metrics only: ranking on test would select on test, which the FER-2013
//! protocol forbids. Test metrics are shown beside, never used to order.

pub mod analysis;
pub mod bench;
pub mod compare;
pub mod ensemble;
pub mod plots;
pub mod sections;

use crate::store::{RunStatus, Store, StoreError, SweptValues};
use crate::table::Rows;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no sweep named `{name}` in {db} (known: {known})")]
    NoSuchSweep {
        name: String,
        db: String,
        known: String,
    },
    #[error("--compare {0}")]
    Compare(String),
    #[error("plot {0}")]
    Plot(String),
    /// Each message names `--ensemble` itself.
    #[error("{0}")]
    Ensemble(String),
}

/// What a leaderboard is ordered by (val metrics only).
/// A report as one pretty-printed JSON object.
pub(crate) fn json_document(obj: serde_json::Map<String, Value>) -> String {
    let mut text = serde_json::to_string_pretty(&Value::Object(obj)).expect("JSON serialises");
    text.push('\n');
    text
}

/// Several tables as CSV: one CSV table per section, each after a `# name` line.
pub(crate) fn csv_sections<'a>(sections: impl IntoIterator<Item = (&'a str, &'a Rows)>) -> String {
    let mut out = String::new();
    for (i, (name, rows)) in sections.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "# {name}\n{}",
            rows.render(crate::table::Format::Csv)
        ));
    }
    out
}

/// Test metrics are deliberately not here: ranking on test would select on test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum RankMetric {
    #[value(alias = "acc", alias = "accuracy")]
    ValAcc,
    #[value(alias = "macro_f1")]
    ValMacroF1,
    #[value(alias = "loss")]
    ValLoss,
}

impl RankMetric {
    fn order(self) -> crate::store::LeaderOrder {
        match self {
            RankMetric::ValAcc => crate::store::LeaderOrder::ValAcc,
            RankMetric::ValMacroF1 => crate::store::LeaderOrder::ValMacroF1,
            RankMetric::ValLoss => crate::store::LeaderOrder::ValLoss,
        }
    }
}

/// Resolves `--sweep` (or the most recently launched sweep) to its id and name.
pub fn resolve_sweep(store: &Store, name: Option<&str>) -> Result<(i64, String), ReportError> {
    Ok(store.resolve_sweep(name)?)
}

/// The leaderboard of a sweep: finished runs ranked by a val metric.
/// Returns the sweep name, the table and how many runs have no results yet.
pub fn leaderboard(
    store: &Store,
    sweep: Option<&str>,
    metric: RankMetric,
    top: Option<usize>,
) -> Result<(String, Rows, usize), ReportError> {
    let (sweep_id, name) = resolve_sweep(store, sweep)?;
    let axes = store.sweep_axes(sweep_id)?;
    let values = store.swept_values(sweep_id, &axes)?;
    let data = store.leaderboard_rows(sweep_id, metric.order())?;
    let pending = store.unfinished_count(sweep_id)?;

    let mut headers = vec!["rank".to_string(), "run".to_string()];
    headers.extend(axes.iter().cloned());
    headers.extend(
        [
            "seed",
            "val_acc",
            "test_acc",
            "test_macro_f1",
            "epochs",
            "best_epoch",
            "wall_secs",
            "params",
        ]
        .map(String::from),
    );
    let mut rows = Rows::new(headers);
    for (rank, r) in data.iter().enumerate() {
        if top.is_some_and(|n| rank >= n) {
            break;
        }
        let run = r.id.clone();
        let mut row = vec![Value::from(rank + 1), Value::from(run.clone())];
        for key in &axes {
            row.push(
                values
                    .get(&(run.clone(), key.clone()))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        let wall = r
            .wall_secs
            .map(|w| Value::from((w * 10.0).round() / 10.0))
            .unwrap_or(Value::Null);
        row.extend([
            Value::from(r.seed),
            Value::from(r.val_acc),
            Value::from(r.test_acc),
            Value::from(r.test_macro_f1),
            Value::from(r.epochs_done),
            Value::from(r.best_epoch),
            wall,
            Value::from(r.params),
        ]);
        rows.push(row);
    }
    Ok((name, rows, pending))
}

/// Every run of a sweep (or of all sweeps) with its status.
pub fn runs(
    store: &Store,
    sweep: Option<&str>,
    status: Option<RunStatus>,
) -> Result<Rows, ReportError> {
    let sweep_id = match sweep {
        Some(name) => Some(resolve_sweep(store, Some(name))?.0),
        None => None,
    };
    let data = store.run_list(sweep_id, status)?;
    // Swept keys and values of every sweep that appears, read once per sweep.
    let mut swept: HashMap<i64, (Vec<String>, SweptValues)> = HashMap::new();
    let mut never_learned: std::collections::HashSet<String> = Default::default();
    for r in &data {
        let sid = r.sweep_id;
        if let std::collections::hash_map::Entry::Vacant(slot) = swept.entry(sid) {
            let keys = store.sweep_axes(sid)?;
            let values = store.swept_values(sid, &keys)?;
            slot.insert((keys, values));
            never_learned.extend(store.never_learned(sid)?);
        }
    }
    let mut rows = Rows::new([
        "run",
        "sweep",
        "status",
        "params",
        "seed",
        "model",
        "epochs",
        "device",
        "fused",
        "wall_secs",
        "error",
        "note",
    ]);
    for r in &data {
        let (sweep_axes, values) = &swept[&r.sweep_id];
        let run = r.id.clone();
        let params: Vec<String> = sweep_axes
            .iter()
            .filter_map(|k| {
                values
                    .get(&(run.clone(), k.clone()))
                    .map(|v| format!("{k}={}", crate::table::cell_text(v)))
            })
            .collect();
        let epochs = format!("{}/{}", r.epochs_done, r.epochs_planned);
        let wall = r
            .wall_secs
            .map(|w| Value::from((w * 10.0).round() / 10.0))
            .unwrap_or(Value::Null);
        let note = if never_learned.contains(&run) {
            Value::from(crate::store::NEVER_LEARNED)
        } else {
            Value::Null
        };
        rows.push(vec![
            Value::from(run),
            Value::from(r.sweep.clone()),
            Value::from(r.status.as_str()),
            Value::from(params.join(" ")),
            Value::from(r.seed),
            Value::from(r.model.clone()),
            Value::from(epochs),
            Value::from(r.device.clone()),
            Value::from(r.fused.clone()),
            wall,
            Value::from(r.error.clone()),
            note,
        ]);
    }
    Ok(rows)
}
