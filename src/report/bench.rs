//! `fer-lab bench report`: how long `fer-lab report` takes on a big sweep — a synthetic one
//! of `runs` finished runs (cells of three seeds, per-class metrics and confusion matrices),
//! the same database the dashboard benchmark uses.

use super::RankMetric;
use super::analysis::analyse;
use crate::store::{Store, StoreError};
use crate::table::{Format, Rows};
use serde_json::Value;
use std::time::Instant;

pub fn run(runs: usize, repeats: usize) -> Result<Rows, super::ReportError> {
    let dir = std::env::temp_dir().join(format!("fer-lab-report-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::Folder(dir.clone(), e))?;
    let db = dir.join("bench.sqlite");
    let result = (|| {
        crate::store::synthetic_sweep(&db, runs, 10, 0)?;
        let mut rows = Rows::new(["format", "median ms", "min ms", "max ms", "cells"]);
        for format in [Format::Table, Format::Json] {
            let mut times = Vec::new();
            let mut cells = 0;
            for _ in 0..repeats {
                // The whole command's work: open, read, analyse, render.
                let start = Instant::now();
                let store = Store::open_read_only(&db)?;
                let analysis = analyse(&store, Some("bench"), RankMetric::ValAcc)?;
                let text = analysis.render(format, None);
                times.push(start.elapsed().as_secs_f64() * 1e3);
                cells = analysis.cells.len();
                std::hint::black_box(text);
            }
            times.sort_by(f64::total_cmp);
            rows.push(vec![
                Value::from(format!("{format:?}").to_lowercase()),
                Value::from((times[times.len() / 2] * 10.0).round() / 10.0),
                Value::from((times[0] * 10.0).round() / 10.0),
                Value::from((times[times.len() - 1] * 10.0).round() / 10.0),
                Value::from(cells),
            ]);
        }
        Ok(rows)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
