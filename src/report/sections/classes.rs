//! The best cell per class: val F1 and test precision, recall, F1 and support, averaged
//! over its runs.

use crate::report::analysis::{Analysis, Section, num};
use crate::table::Rows;
use serde_json::Value;

pub fn section(a: &Analysis, _top: Option<usize>, human: bool) -> Option<Section> {
    let best = a.cells.first()?;
    let label = crate::table::key_values(&a.axes, &best.params);
    let mut rows = Rows::new(
        [
            "emotion",
            "val F1",
            "test precision",
            "test recall",
            "test F1",
            "test support",
        ]
        .map(String::from),
    );
    for c in &a.classes {
        let f = |v: f64| {
            if human {
                Value::from(format!("{v:.3}"))
            } else {
                num(v)
            }
        };
        rows.push(vec![
            Value::from(c.emotion.name()),
            f(c.val_f1),
            f(c.test_precision),
            f(c.test_recall),
            f(c.test_f1),
            num(c.support.round()),
        ]);
    }
    Some(Section {
        name: "classes",
        title: format!(
            "Best cell ({}), per class, mean over its {} run(s)",
            if label.is_empty() {
                "the only one".into()
            } else {
                label
            },
            best.runs.len()
        ),
        rows,
    })
}
