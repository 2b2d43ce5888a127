//! The effect of each swept key: each value's mean over every run with it, the other keys
//! marginalised, against the key's first value.

use crate::report::analysis::{Analysis, Section, num, pm};
use crate::table::Rows;
use serde_json::Value;

pub fn section(a: &Analysis, _top: Option<usize>, human: bool) -> Option<Section> {
    let m = a.metric;
    let unit = m.unit();
    if a.effects.is_empty() {
        return None;
    }
    let headers: Vec<String> = if human {
        [
            "key",
            "value",
            "n",
            &format!("val {}{unit} mean ± sd", m.name()),
            "Δ vs first value",
            &format!("test {}{unit} mean", m.name()),
        ]
        .map(String::from)
        .to_vec()
    } else {
        [
            "key",
            "value",
            "n",
            "val_mean",
            "val_sd",
            "delta",
            "reference",
            "test_mean",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut rows = Rows::new(headers);
    for e in &a.effects {
        let mut row = vec![
            Value::from(e.key.clone()),
            Value::from(e.value.clone()),
            Value::from(e.val.n),
        ];
        if human {
            let delta = if e.value == e.reference {
                "0 (reference)".to_string()
            } else {
                let d = m.show(e.delta);
                if e.delta >= 0.0 { format!("+{d}") } else { d }
            };
            row.extend([
                Value::from(pm(m, &e.val)),
                Value::from(delta),
                Value::from(m.show(e.test.mean)),
            ]);
        } else {
            row.extend([
                num(e.val.mean),
                num(e.val.sd),
                num(e.delta),
                Value::from(e.reference.clone()),
                num(e.test.mean),
            ]);
        }
        rows.push(row);
    }
    Some(Section {
        name: "effects",
        title: "Per-key effects: each value's mean over every run with it (the other keys marginalised)".into(),
        rows,
    })
}
