//! Tabular output shared by `report`, `runs`, `sql`, `sweep --dry-run` and `data import`:
//! one [`Rows`] value rendered as a terminal table, Markdown, CSV or JSON.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde_json::Value;
use std::fmt::Write as _;

/// Output formats a user can ask for with `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Markdown,
    Csv,
    Json,
    /// An HTML `<table>` (a whole self-contained page for `fer-lab report`).
    Html,
}

/// A header and rows of JSON values (so JSON output keeps numbers as numbers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A plain terminal table in fer-lab's style.
pub fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled);
    table
}

/// Right-aligns every column from `first` on (counts and metrics read better that way).
pub fn align_numbers(table: &mut Table, first: usize) {
    let n = table.column_count();
    for i in first..n {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// How a value reads in a table cell: no quotes on strings, empty for NULL, 4 decimals at most.
pub fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => format_float(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn format_float(f: f64) -> String {
    if f != 0.0 && (f.abs() < 1e-3 || f.abs() >= 1e6) {
        // 3e-4, 1.25e-5: four significant digits at most, no trailing zeros.
        let s = format!("{f:.3e}");
        let (mantissa, exponent) = s.split_once('e').expect("exponent format");
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        format!("{mantissa}e{exponent}")
    } else {
        let s = format!("{f:.4}");
        let s = s.trim_end_matches('0');
        s.trim_end_matches('.').to_string()
    }
}

impl Rows {
    pub fn new(headers: impl IntoIterator<Item = impl Into<String>>) -> Rows {
        Rows {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.to_table(),
            Format::Markdown => self.to_markdown(),
            Format::Csv => self.to_csv(),
            Format::Json => self.to_json(),
            Format::Html => self.to_html(),
        }
    }

    fn numeric_column(&self, i: usize) -> bool {
        self.rows.iter().all(|r| r[i].is_number() || r[i].is_null())
            && self.rows.iter().any(|r| r[i].is_number())
    }

    /// The terminal table, its cells wrapped so that no line is wider than `width` (a wider
    /// table wraps line by line on a terminal and cannot be read).
    pub fn render_fitted(&self, width: u16) -> String {
        let mut table = self.table();
        table
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(width);
        format!("{table}\n")
    }

    fn to_table(&self) -> String {
        format!("{}\n", self.table())
    }

    fn table(&self) -> Table {
        let mut table = new_table();
        table.set_header(self.headers.iter().map(|h| printable(h)));
        for row in &self.rows {
            table.add_row(row.iter().map(|v| printable(&cell_text(v))));
        }
        for i in 0..self.headers.len() {
            if self.numeric_column(i)
                && let Some(col) = table.column_mut(i)
            {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        table
    }

    fn to_html(&self) -> String {
        let mut out = String::from("<table>\n<thead><tr>");
        for h in &self.headers {
            let _ = write!(out, "<th>{}</th>", html_escape(h));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in &self.rows {
            out.push_str("<tr>");
            for (i, v) in row.iter().enumerate() {
                let class = if self.numeric_column(i) {
                    " class=\"num\""
                } else {
                    ""
                };
                let _ = write!(out, "<td{class}>{}</td>", html_escape(&cell_text(v)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }

    fn to_markdown(&self) -> String {
        let escape = |s: &str| printable(s).replace('|', "\\|");
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| escape(h)).collect();
        let _ = writeln!(out, "| {} |", headers.join(" | "));
        let seps: Vec<&str> = (0..self.headers.len())
            .map(|i| {
                if self.numeric_column(i) {
                    "---:"
                } else {
                    "---"
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", seps.join(" | "));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|v| escape(&cell_text(v))).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }

    fn to_csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(&self.headers).expect("in-memory write");
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|v| match v {
                    Value::Number(n) => n.to_string(),
                    other => cell_text(other),
                })
                .collect();
            writer.write_record(&cells).expect("in-memory write");
        }
        String::from_utf8(writer.into_inner().expect("in-memory flush")).expect("utf-8 cells")
    }

    /// Each row as a JSON object keyed by the headers.
    pub fn objects(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|row| {
                Value::Object(
                    self.headers
                        .iter()
                        .cloned()
                        .zip(row.iter().cloned())
                        .collect(),
                )
            })
            .collect()
    }

    fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.objects()).expect("JSON values serialise");
        s.push('\n');
        s
    }
}

/// Swept keys with their values, `lr=0.001 dropout=0.5`: how a cell or run is named.
pub fn key_values(keys: &[String], values: &[String]) -> String {
    keys.iter()
        .zip(values)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text safe to print on a terminal: control characters (an escape sequence in a name or a
/// query's result would recolour or rewrite the screen) shown as `\u{1b}`; line breaks kept.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Text made safe inside HTML elements and attributes.
pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Rows {
        let mut rows = Rows::new(["run", "val_acc"]);
        rows.push(vec![json!("a|b"), json!(0.51234)]);
        rows.push(vec![json!("c"), Value::Null]);
        rows
    }

    #[test]
    fn every_format_renders_the_values() {
        let r = sample();
        assert!(r.render(Format::Table).contains("0.5123"));
        let md = r.render(Format::Markdown);
        assert!(md.contains("| run | val_acc |\n| --- | ---: |"), "{md}");
        assert!(md.contains("a\\|b"), "{md}");
        assert_eq!(r.render(Format::Csv), "run,val_acc\na|b,0.51234\nc,\n");
        let json: Value = serde_json::from_str(&r.render(Format::Json)).unwrap();
        assert_eq!(json[0]["val_acc"], json!(0.51234));
        assert_eq!(json[1]["val_acc"], Value::Null);
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let mut r = Rows::new(["na\u{1b}me"]);
        r.push(vec![json!("\u{1b}[31mred\u{7}\ttab")]);
        for format in [Format::Table, Format::Markdown] {
            let out = r.render(format);
            assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
            assert!(out.contains("\\u{1b}[31mred\\u{7}\\u{9}tab"), "{out}");
            assert!(out.contains("na\\u{1b}me"), "{out}");
        }
    }

    #[test]
    fn a_fitted_table_is_no_wider_than_asked() {
        let mut r = Rows::new(["run", "params", "val_acc"]);
        r.push(vec![
            json!("3f9c2a1b0d4e"),
            json!("lr=0.001 dropout=0.5 augment.rotation=10 loss.kind=focal loss.gamma=2"),
            json!(0.61234),
        ]);
        assert!(
            r.render(Format::Table)
                .lines()
                .any(|l| l.chars().count() > 60)
        );
        let fitted = r.render_fitted(60);
        assert!(fitted.lines().all(|l| l.chars().count() <= 60), "{fitted}");
        assert!(
            fitted.contains("0.6123") && fitted.contains("3f9c2a1b0d4e"),
            "{fitted}"
        );
    }

    #[test]
    fn floats_are_short() {
        assert_eq!(cell_text(&json!(0.5)), "0.5");
        assert_eq!(cell_text(&json!(0.0001)), "1e-4");
        assert_eq!(cell_text(&json!(0.000125)), "1.25e-4");
        assert_eq!(cell_text(&json!(3)), "3");
    }
}
