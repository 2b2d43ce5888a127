//! The Kaggle challenge CSV: `emotion,pixels,Usage`, one 48×48 image per row as 2304
//! space-separated grey values, Usage = Training / PublicTest / PrivateTest.

use super::ImportError;
use crate::data::{IMAGE_PIXELS, Split, SplitImages};
use crate::emotion::Emotion;
use std::collections::BTreeMap;

/// Columns found by name, so `emotion, Usage, pixels` (the ICML variant) reads too.
struct Columns {
    emotion: usize,
    pixels: usize,
    usage: usize,
}

fn columns(header: &csv::StringRecord) -> Option<Columns> {
    let find = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    Some(Columns {
        emotion: find("emotion")?,
        pixels: find("pixels")?,
        usage: find("usage")?,
    })
}

/// Whether the first line of `bytes` is a FER-2013 CSV header.
pub fn looks_like_fer_csv(bytes: &[u8]) -> bool {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    reader.headers().ok().and_then(columns).is_some()
}

/// Parses the whole CSV into images per split (Training → train, PublicTest → val,
/// PrivateTest → test).
pub fn parse(origin: &str, bytes: &[u8]) -> Result<BTreeMap<Split, SplitImages>, ImportError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = reader.headers().map_err(|e| ImportError::Csv {
        origin: origin.to_string(),
        line: 1,
        why: e.to_string(),
    })?;
    let cols = columns(header).ok_or_else(|| ImportError::CsvHeader {
        origin: origin.to_string(),
        found: header.iter().collect::<Vec<_>>().join(","),
    })?;
    let mut splits: BTreeMap<Split, SplitImages> = BTreeMap::new();
    let mut pixels = [0u8; IMAGE_PIXELS];
    for record in reader.records() {
        let record = record.map_err(|e| ImportError::Csv {
            origin: origin.to_string(),
            line: e.position().map_or(0, |p| p.line()),
            why: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let row_err = |why: String| ImportError::Csv {
            origin: origin.to_string(),
            line,
            why,
        };
        let field = |i: usize, name: &str| {
            record
                .get(i)
                .map(str::trim)
                .ok_or_else(|| row_err(format!("row has no `{name}` column")))
        };
        let emotion = field(cols.emotion, "emotion")?;
        let label = emotion
            .parse::<u8>()
            .ok()
            .and_then(Emotion::from_id)
            .ok_or_else(|| row_err(format!("emotion `{emotion}` is not a class id 0..6")))?;
        let usage = field(cols.usage, "Usage")?;
        let split = match usage {
            "Training" => Split::Train,
            "PublicTest" => Split::Val,
            "PrivateTest" => Split::Test,
            other => {
                return Err(row_err(format!(
                    "Usage `{other}` is not Training, PublicTest or PrivateTest"
                )));
            }
        };
        let mut n = 0;
        for value in field(cols.pixels, "pixels")?.split_ascii_whitespace() {
            let v = value
                .parse::<u8>()
                .map_err(|_| row_err(format!("pixel {} is `{value}`, not 0..255", n + 1)))?;
            if n < IMAGE_PIXELS {
                pixels[n] = v;
            }
            n += 1;
        }
        if n != IMAGE_PIXELS {
            return Err(row_err(format!(
                "row has {n} pixels, expected {IMAGE_PIXELS} (48×48)"
            )));
        }
        splits.entry(split).or_default().push(&pixels, label);
    }
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: u8, value: u8, usage: &str) -> String {
        let pixels = vec![value.to_string(); IMAGE_PIXELS].join(" ");
        format!("{label},{pixels},{usage}\n")
    }

    #[test]
    fn rows_land_in_their_split_and_class() {
        let csv = format!(
            "emotion,pixels,Usage\n{}{}{}",
            row(6, 10, "Training"),
            row(1, 20, "PublicTest"),
            row(4, 30, "PrivateTest")
        );
        let splits = parse("t.csv", csv.as_bytes()).unwrap();
        assert_eq!(splits[&Split::Train].label(0), Emotion::Neutral);
        assert_eq!(splits[&Split::Train].image(0)[0], 10);
        assert_eq!(splits[&Split::Val].label(0), Emotion::Disgust);
        assert_eq!(splits[&Split::Test].label(0), Emotion::Sad);
        assert_eq!(splits[&Split::Test].image(0)[IMAGE_PIXELS - 1], 30);
    }

    #[test]
    fn columns_are_found_by_name() {
        let pixels = vec!["7"; IMAGE_PIXELS].join(" ");
        let csv = format!("emotion, Usage, pixels\n3,Training,{pixels}\n");
        let splits = parse("icml.csv", csv.as_bytes()).unwrap();
        assert_eq!(splits[&Split::Train].label(0), Emotion::Happy);
    }

    #[test]
    fn wrong_header_is_named() {
        let err = parse("x.csv", b"label,data\n1,2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.csv"), "{err}");
        assert!(err.contains("label,data"), "{err}");
    }

    #[test]
    fn short_row_names_its_line() {
        let pixels = vec!["1"; 2300].join(" ");
        let csv = format!(
            "emotion,pixels,Usage\n{}0,{pixels},Training\n",
            row(0, 1, "Training")
        );
        let err = parse("x.csv", csv.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("2300 pixels"), "{err}");
    }

    #[test]
    fn bad_label_and_usage_are_rejected() {
        let csv = format!("emotion,pixels,Usage\n{}", row(9, 1, "Training"));
        assert!(
            parse("x.csv", csv.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("`9`")
        );
        let csv = format!("emotion,pixels,Usage\n{}", row(0, 1, "Holdout"));
        assert!(
            parse("x.csv", csv.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("Holdout")
        );
    }
}
