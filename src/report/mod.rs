//! `fer-lab report` and `fer-lab runs`: leaderboards and run lists read from SQLite.
//!
//! Ranking uses val metrics only: ranking on test would select on test, which the FER-2013
//! protocol forbids. Test metrics are shown beside, never used to order.

pub mod analysis;
pub mod bench;
pub mod compare;
pub mod plots;

use crate::store::{RunStatus, Store, StoreError};
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
    #[error("{0}: no sweep recorded yet; run `fer-lab sweep FILE` first")]
    NoSweeps(String),
    #[error("--compare {0}")]
    Compare(String),
    #[error("plot {0}")]
    Plot(String),
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
    fn order_by(self) -> &'static str {
        match self {
            RankMetric::ValAcc => "v.accuracy DESC",
            RankMetric::ValMacroF1 => "v.macro_f1 DESC",
            RankMetric::ValLoss => "v.loss ASC",
        }
    }
}

/// Resolves `--sweep` (or the most recently launched sweep) to its id and name.
pub fn resolve_sweep(store: &Store, name: Option<&str>) -> Result<(i64, String), ReportError> {
    let rows = store.query(
        "SELECT id, name FROM sweeps ORDER BY updated_at DESC, id DESC",
        &[],
    )?;
    let db = store.path().display().to_string();
    let pick = |row: &Vec<Value>| {
        (
            row[0].as_i64().unwrap_or(0),
            row[1].as_str().unwrap_or("").to_string(),
        )
    };
    match name {
        None => rows.rows.first().map(pick).ok_or(ReportError::NoSweeps(db)),
        Some(name) => rows
            .rows
            .iter()
            .map(pick)
            .find(|(_, n)| n == name)
            .ok_or_else(|| ReportError::NoSuchSweep {
                name: name.to_string(),
                db,
                known: rows
                    .rows
                    .iter()
                    .map(|r| r[1].as_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
    }
}

/// The config keys whose values differ between the runs of a sweep: the leaderboard's columns.
/// Read from the runs themselves, not only from the axes the file declared, so runs added by a
/// later launch with `--set` (or with another `tta`) are never mixed in silently. Declared axes
/// come first, in file order.
pub(crate) fn axes(conn: &rusqlite::Connection, sweep_id: i64) -> rusqlite::Result<Vec<String>> {
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
pub(crate) type SweptValues = HashMap<(String, String), Value>;

/// The swept values of the runs of a sweep.
pub(crate) fn swept_values(
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

/// The leaderboard of a sweep: finished runs ranked by a val metric.
/// Returns the sweep name, the table and how many runs have no results yet.
pub fn leaderboard(
    store: &Store,
    sweep: Option<&str>,
    metric: RankMetric,
    top: Option<usize>,
) -> Result<(String, Rows, usize), ReportError> {
    let (sweep_id, name) = resolve_sweep(store, sweep)?;
    let axes = axes(store.conn(), sweep_id).map_err(|e| store.sqlite_error(e))?;
    let values = swept_values(store.conn(), sweep_id, &axes).map_err(|e| store.sqlite_error(e))?;
    let data = store.query(
        &format!(
            "SELECT r.id, r.seed, v.accuracy, t.accuracy, t.macro_f1, r.epochs_done, r.best_epoch,
                    r.wall_secs, r.params
             FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
             JOIN evals v ON v.run_id = r.id AND v.split = 'val'
             JOIN evals t ON t.run_id = r.id AND t.split = 'test'
             WHERE sr.sweep_id = ?1 AND r.status = 'done'
             ORDER BY {}, sr.position",
            metric.order_by()
        ),
        &[&sweep_id],
    )?;
    let pending = store.query(
        "SELECT count(*) FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
         WHERE sr.sweep_id = ?1 AND r.status != 'done'",
        &[&sweep_id],
    )?;
    let pending = pending.rows[0][0].as_u64().unwrap_or(0) as usize;

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
    for (rank, r) in data.rows.iter().enumerate() {
        if top.is_some_and(|n| rank >= n) {
            break;
        }
        let run = r[0].as_str().unwrap_or("").to_string();
        let mut row = vec![Value::from(rank + 1), Value::from(run.clone())];
        for key in &axes {
            row.push(
                values
                    .get(&(run.clone(), key.clone()))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        let wall = r[7]
            .as_f64()
            .map(|w| Value::from((w * 10.0).round() / 10.0))
            .unwrap_or(Value::Null);
        row.extend([
            r[1].clone(),
            r[2].clone(),
            r[3].clone(),
            r[4].clone(),
            r[5].clone(),
            r[6].clone(),
            wall,
            r[8].clone(),
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
    let data = store.query(
        "SELECT r.id, s.name, r.status, r.seed, r.model, r.epochs_done, r.epochs_planned,
                r.device, r.wall_secs, r.error, sr.sweep_id
         FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id JOIN sweeps s ON s.id = sr.sweep_id
         WHERE (?1 IS NULL OR sr.sweep_id = ?1) AND (?2 IS NULL OR r.status = ?2)
         ORDER BY s.name, sr.position",
        &[&sweep_id, &status],
    )?;
    // Swept keys and values of every sweep that appears, read once per sweep.
    let mut swept: HashMap<i64, (Vec<String>, SweptValues)> = HashMap::new();
    let mut never_learned: std::collections::HashSet<String> = Default::default();
    for r in &data.rows {
        let sid = r[10].as_i64().unwrap_or(0);
        if let std::collections::hash_map::Entry::Vacant(slot) = swept.entry(sid) {
            let keys = axes(store.conn(), sid).map_err(|e| store.sqlite_error(e))?;
            let values =
                swept_values(store.conn(), sid, &keys).map_err(|e| store.sqlite_error(e))?;
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
        "wall_secs",
        "error",
        "note",
    ]);
    for r in &data.rows {
        let (sweep_axes, values) = &swept[&r[10].as_i64().unwrap_or(0)];
        let run = r[0].as_str().unwrap_or("").to_string();
        let params: Vec<String> = sweep_axes
            .iter()
            .filter_map(|k| {
                values
                    .get(&(run.clone(), k.clone()))
                    .map(|v| format!("{k}={}", crate::table::cell_text(v)))
            })
            .collect();
        let epochs = format!(
            "{}/{}",
            r[5].as_i64().unwrap_or(0),
            r[6].as_i64().unwrap_or(0)
        );
        let wall = r[8]
            .as_f64()
            .map(|w| Value::from((w * 10.0).round() / 10.0))
            .unwrap_or(Value::Null);
        let note = if never_learned.contains(&run) {
            Value::from(crate::store::NEVER_LEARNED)
        } else {
            Value::Null
        };
        rows.push(vec![
            Value::from(run),
            r[1].clone(),
            r[2].clone(),
            Value::from(params.join(" ")),
            r[3].clone(),
            r[4].clone(),
            Value::from(epochs),
            r[7].clone(),
            wall,
            r[9].clone(),
            note,
        ]);
    }
    Ok(rows)
}
