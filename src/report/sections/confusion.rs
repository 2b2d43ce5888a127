//! The best cell's test confusion matrix, counts summed over its runs.

use crate::emotion::Emotion;
use crate::report::analysis::{Analysis, Section};
use crate::table::Rows;
use serde_json::Value;

pub fn section(a: &Analysis, _top: Option<usize>, _human: bool) -> Option<Section> {
    a.cells.first()?;
    let mut headers = vec!["true \\ predicted".to_string()];
    headers.extend(Emotion::ALL.iter().map(|e| e.name().to_string()));
    let mut rows = Rows::new(headers);
    for (t, e) in Emotion::ALL.iter().enumerate() {
        let mut row = vec![Value::from(e.name())];
        row.extend(a.confusion[t].iter().map(|&n| Value::from(n)));
        rows.push(row);
    }
    Some(Section {
        name: "confusion",
        title: "Best cell, test confusion matrix (counts summed over its runs)".into(),
        rows,
    })
}
