//! Reading and validating a sweep file.

use super::PlannedRun;
use super::expand::{Axis, expand};
use crate::config::RunConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A bad sweep file: one message that names the file, the line when known, and the key.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct SweepError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// The file as written, before expansion.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepToml {
    name: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    data: String,
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    base: RunConfig,
    #[serde(default)]
    grid: BTreeMap<String, Spanned<toml::Value>>,
    search: Option<Spanned<super::search::SearchToml>>,
    resources: Option<Resources>,
    pruning: Option<Spanned<crate::pruning::Pruning>>,
}

/// `[resources]`: where and how wide a sweep runs (the command line overrides each key).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// `"auto"`, `"cpu"`, or a list like `["cuda:0", "cuda:1"]`.
    pub devices: Option<crate::device::choice::DeviceChoice>,
    /// Runs at once per device.
    pub per_device: Option<usize>,
    /// Retries after a failure that counts (see the scheduler).
    pub max_retries: Option<u32>,
    /// Keep a finished run's epoch checkpoints (model and optimizer state, several MB each)
    /// beside `best.bpk`; by default they are removed once the run is done.
    pub keep_checkpoints: Option<bool>,
    /// How many runs train as one fused model: `"auto"`, a number, or `false`.
    pub fuse: Option<crate::device::fusion::Fuse>,
    /// Where workers run: `"local"` or `"slurm"`.
    pub executor: Option<crate::cluster::ExecutorKind>,
    /// `[resources.slurm]`: the cluster's options.
    pub slurm: Option<crate::cluster::SlurmOptions>,
}

/// The same file again, only to find the line of each `[base]` key for range errors.
#[derive(Deserialize)]
struct BaseSpans {
    #[serde(default)]
    base: BTreeMap<String, Spanned<toml::Value>>,
}

/// A parsed, validated, expanded sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub file: PathBuf,
    /// The file's text, stored with the sweep.
    pub spec: String,
    /// Where the data is (a cache directory or a raw source).
    pub data: PathBuf,
    /// The swept keys, in file order.
    pub axes: Vec<String>,
    /// Every run, cells in grid order, seeds innermost.
    pub runs: Vec<PlannedRun>,
    pub resources: Resources,
    pub pruning: Option<crate::pruning::Pruning>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Sweep {
    /// Reads, validates and expands a sweep file. `overrides` are `key=value` pairs applied to
    /// `[base]` (what `--set` passes), `data` replaces the file's `data`.
    pub fn load(
        path: &Path,
        overrides: &[(String, toml::Value)],
        data: Option<&Path>,
    ) -> Result<Sweep, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|e| SweepError {
            file: path.to_path_buf(),
            line: None,
            message: e.to_string(),
        })?;
        Sweep::parse(path, &text, overrides, data)
    }

    /// [`Sweep::load`] on text already read.
    pub fn parse(
        path: &Path,
        text: &str,
        overrides: &[(String, toml::Value)],
        data: Option<&Path>,
    ) -> Result<Sweep, SweepError> {
        let err = |line: Option<usize>, message: String| SweepError {
            file: path.to_path_buf(),
            line,
            message: plain_words(&message),
        };
        // toml's own message already carries "line N, column M" and a snippet.
        let doc: SweepToml = toml::from_str(text).map_err(|e| err(None, e.to_string()))?;
        let spans: BaseSpans = toml::from_str(text).map_err(|e| err(None, e.to_string()))?;

        let name = match doc.name {
            Some(name) => name,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(err(
                None,
                format!(
                    "name `{name}` must be letters, digits, '.', '_' or '-' (it names a folder)"
                ),
            ));
        }
        let seeds = doc.seeds.unwrap_or_else(|| vec![1]);
        if seeds.is_empty() {
            return Err(err(None, "seeds = [] expands to zero runs".into()));
        }
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != seeds.len() {
            return Err(err(None, format!("seeds {seeds:?} repeat a seed")));
        }

        let mut base = doc.base;
        for (key, value) in overrides {
            base = super::expand::apply(&base, key, value)
                .map_err(|why| err(None, format!("--set {key}={value}: {why}")))?;
        }

        let mut axes = Vec::new();
        for (key, spanned) in &doc.grid {
            let line = line_of(text, spanned.span().start);
            flatten_axis(key, spanned.get_ref(), line, &mut axes)
                .map_err(|e| err(Some(line), e.to_string()))?;
        }
        axes.sort_by_key(|a| a.line);
        if let Some(search) = &doc.search {
            let line = line_of(text, search.span().start);
            let axis = super::search::axis(search.get_ref(), line)
                .map_err(|e| err(Some(line), e.to_string()))?;
            if let Some(key) = axis
                .keys()
                .into_iter()
                .find(|k| axes.iter().any(|a| a.name == *k))
            {
                return Err(err(
                    Some(line),
                    format!("{key} is both a grid axis and a search key"),
                ));
            }
            axes.push(axis);
        }

        let base_line = |key: &str| {
            let top = key.split('.').next().unwrap_or(key);
            spans.base.get(top).map(|s| line_of(text, s.span().start))
        };
        let runs = expand(&base, &axes, &seeds).map_err(|e| {
            let line = e.axis_line.or_else(|| base_line(&e.key));
            err(line, e.message)
        })?;
        // A path in a file is read relative to the file's folder, so the sweep runs the same
        // from any directory; `--data` is the command line's, relative to where it runs.
        let data = match data {
            Some(d) => d.to_path_buf(),
            None => match path.parent() {
                Some(folder) if Path::new(&doc.data).is_relative() => folder.join(&doc.data),
                _ => PathBuf::from(&doc.data),
            },
        };
        let pruning = match doc.pruning {
            Some(p) => {
                let line = line_of(text, p.span().start);
                let p = p.into_inner();
                p.validate().map_err(|m| err(Some(line), m.to_string()))?;
                Some(p)
            }
            None => None,
        };
        let resources = doc.resources.unwrap_or_default();
        if resources.per_device == Some(0) {
            return Err(err(None, "resources.per_device = 0 runs nothing".into()));
        }
        Ok(Sweep {
            name,
            file: path.to_path_buf(),
            spec: text.to_string(),
            data,
            axes: varying_keys(&axes, &runs),
            runs,
            resources,
            pruning,
        })
    }
}

/// serde names Rust types in its messages ("expected usize"); a sweep file's author thinks in
/// numbers.
fn plain_words(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("usize", "a whole number ≥ 0"),
        ("u64", "a whole number ≥ 0"),
        ("u32", "a whole number ≥ 0"),
        ("u8", "a whole number ≥ 0"),
        ("i64", "a whole number"),
        ("f64", "a number"),
        ("f32", "a number"),
    ];
    let mut out = message.to_string();
    for (rust, words) in WORDS {
        for prefix in ["expected ", "expected `"] {
            let from = format!("{prefix}{rust}");
            if let Some(at) = out.find(&from) {
                let end = at + from.len();
                // Whole words only: `u8` must not match inside `u8x`.
                if !out[end..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                    let closing = usize::from(prefix.ends_with('`') && out[end..].starts_with('`'));
                    out.replace_range(at..end + closing, &format!("expected {words}"));
                }
            }
        }
    }
    out
}

/// The flat config keys (`model.channels`, `loss.kind`) that differ between runs, in axis
/// order: what a leaderboard shows as columns, even when an axis swept whole tables.
fn varying_keys(axes: &[Axis], runs: &[PlannedRun]) -> Vec<String> {
    let flat: Vec<BTreeMap<String, serde_json::Value>> = runs
        .iter()
        .map(|r| r.config.flatten().into_iter().collect())
        .collect();
    let mut out: Vec<String> = Vec::new();
    for key in axes.iter().flat_map(Axis::keys) {
        let prefix = format!("{key}.");
        let mut candidates: Vec<&String> = flat
            .iter()
            .flat_map(|f| f.keys())
            .filter(|k| **k == key || k.starts_with(&prefix))
            .collect();
        // `kind` first: it says how to read the knobs after it.
        candidates.sort_by_key(|k| (!k.ends_with(".kind"), k.to_string()));
        candidates.dedup();
        for k in candidates {
            // A key one kind lacks reads as null (`loss.alpha` of a plain cross-entropy).
            let value =
                |f: &BTreeMap<String, serde_json::Value>| f.get(k).cloned().unwrap_or_default();
            let varies = flat.iter().any(|f| value(f) != value(&flat[0]));
            if varies && !out.contains(k) {
                out.push(k.clone());
            }
        }
    }
    out
}

/// A `[grid]` entry that is not an axis.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GridError {
    #[error("grid.{0} = [] expands to zero runs")]
    Empty(String),
    #[error(
        "grid.{key} must be a list of values to sweep, found `{found}` (put fixed values in [base])"
    )]
    NotAList { key: String, found: String },
}

/// `[grid]` tables nest (`augment.rotation = [...]` is a table `augment`): each array leaf is
/// one axis named by its dotted path.
fn flatten_axis(
    key: &str,
    value: &toml::Value,
    line: usize,
    out: &mut Vec<Axis>,
) -> Result<(), GridError> {
    match value {
        toml::Value::Array(values) => {
            if values.is_empty() {
                return Err(GridError::Empty(key.to_string()));
            }
            out.push(Axis::grid(key, values, line));
            Ok(())
        }
        toml::Value::Table(table) => {
            for (k, v) in table {
                flatten_axis(&format!("{key}.{k}"), v, line, out)?;
            }
            Ok(())
        }
        other => Err(GridError::NotAList {
            key: key.to_string(),
            found: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Sweep, SweepError> {
        Sweep::parse(Path::new("s.toml"), text, &[], None)
    }

    #[test]
    fn grid_expands_in_file_order_with_seeds() {
        let s = parse(
            "data = \"d\"\nseeds = [1, 2]\n[base]\nepochs = 2\n[grid]\nlr = [0.001, 0.0003]\ndropout = [0.25, 0.5, 0.75]\n",
        )
        .unwrap();
        assert_eq!(s.name, "s");
        assert_eq!(s.axes, vec!["lr", "dropout"]);
        assert_eq!(s.runs.len(), 12);
        assert_eq!(s.runs[0].config.epochs, 2);
        assert_eq!(s.runs[0].seed, 1);
        assert_eq!(s.runs[1].seed, 2);
        assert_eq!(s.runs[2].config.dropout, 0.5);
        assert_eq!(s.runs[6].config.lr, 0.0003);
    }

    #[test]
    fn nested_axes_and_integers_for_floats() {
        let s = parse("data = \"d\"\n[grid]\naugment.rotation = [0, 10]\n").unwrap();
        assert_eq!(s.axes, vec!["augment.rotation"]);
        assert_eq!(s.runs[1].config.augment.rotation, 10.0);
        let s = parse("data = \"d\"\n[grid]\naugment = [true, false]\n").unwrap();
        assert!(s.runs[1].config.augment.is_identity());
        assert_eq!(
            s.axes,
            vec![
                "augment.hflip",
                "augment.rotation",
                "augment.shift",
                "augment.zoom"
            ]
        );
        let s = parse("data = \"d\"\n[grid]\nmodel = [{ kind = \"compact\", channels = [8] }, { kind = \"compact\", channels = [8, 16] }]\n").unwrap();
        assert_eq!(s.axes, vec!["model.channels"]);
    }

    #[test]
    fn unknown_key_in_base_names_key_and_line() {
        let e = parse("data = \"d\"\n[base]\nepochs = 1\nlearning_rate = 0.1\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("learning_rate") && msg.contains("line 4"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let msg = parse("data = \"d\"\n[base]\nepochs = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("epochs") && msg.contains("line 3"), "{msg}");
        let msg = parse("data = \"d\"\n[grid]\n\nlr = [\"fast\"]\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 4") && msg.contains("grid.lr"), "{msg}");
    }

    #[test]
    fn unknown_grid_key_is_rejected() {
        let msg = parse("data = \"d\"\n[grid]\nlearning_rate = [0.1]\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 3") && msg.contains("learning_rate"),
            "{msg}"
        );
    }

    #[test]
    fn out_of_range_values_name_key_value_and_line() {
        let e = parse("data = \"d\"\n[base]\nlr = -0.001\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("lr = -0.001"), "{}", e.message);
        let e = parse("data = \"d\"\n[grid]\ndropout = [0.5, 1.0]\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("dropout = 1"), "{}", e.message);
        let e = parse("data = \"d\"\n[base]\nepochs = 0\n").unwrap_err();
        assert!(e.message.contains("epochs = 0"), "{}", e.message);
    }

    #[test]
    fn zero_runs_is_an_error() {
        assert!(
            parse("data = \"d\"\n[grid]\nlr = []\n")
                .unwrap_err()
                .to_string()
                .contains("zero runs")
        );
        assert!(
            parse("data = \"d\"\nseeds = []\n")
                .unwrap_err()
                .to_string()
                .contains("zero runs")
        );
    }

    #[test]
    fn overrides_apply_to_base_and_grid_wins() {
        let set = vec![
            ("epochs".to_string(), toml::Value::Integer(1)),
            ("lr".to_string(), toml::Value::Float(0.5)),
        ];
        let s = Sweep::parse(
            Path::new("s.toml"),
            "data = \"d\"\n[grid]\nlr = [0.1]\n",
            &set,
            None,
        )
        .unwrap();
        assert_eq!(s.runs[0].config.epochs, 1);
        assert_eq!(s.runs[0].config.lr, 0.1);
        let bad = vec![("epochz".to_string(), toml::Value::Integer(1))];
        let msg = Sweep::parse(Path::new("s.toml"), "data = \"d\"\n", &bad, None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--set epochz"), "{msg}");
    }

    #[test]
    fn random_search_crosses_the_grid() {
        let s = parse(
            "data = \"d\"\nseeds = [1, 2]\n[grid]\nloss = [\"cross_entropy\", \"focal\"]\n[search]\nmethod = \"random\"\nsamples = 3\n[search.space]\nlr = { loguniform = [1e-4, 1e-2] }\n",
        )
        .unwrap();
        assert_eq!(s.runs.len(), 2 * 3 * 2);
        assert_eq!(s.axes, vec!["loss.kind", "loss.gamma", "lr"]);
        // The same three learning rates under each loss.
        let lrs = |loss: &str| -> Vec<f64> {
            s.runs
                .iter()
                .filter(|r| r.config.loss.kind() == loss && r.seed == 1)
                .map(|r| r.config.lr)
                .collect()
        };
        assert_eq!(lrs("cross_entropy"), lrs("focal"));
        let e = parse("data = \"d\"\n[grid]\nlr = [0.1]\n[search]\nmethod = \"random\"\nsamples = 1\n[search.space]\nlr = { uniform = [0.1, 0.2] }\n").unwrap_err();
        assert!(e.message.contains("both a grid axis"), "{e}");
    }

    #[test]
    fn type_errors_speak_of_numbers_not_rust_types() {
        let e = parse("data = \"d\"\n[base]\nepochs = -1\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("expected a whole number ≥ 0") && msg.contains("line 3"),
            "{msg}"
        );
        assert!(!msg.contains("usize"), "{msg}");
        let msg = parse("data = \"d\"\n[grid]\nlr = [\"fast\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("expected a number") && !msg.contains("f64"),
            "{msg}"
        );
        assert!(msg.contains("line 3"), "{msg}");
        assert_eq!(plain_words("expected u8x"), "expected u8x");
    }

    #[test]
    fn a_bad_base_value_is_reported_where_it_is_written() {
        // The grid overrides lr with valid values; the bad value is the base's, on line 3.
        let e = parse("data = \"d\"\n[base]\nlr = -1.0\n[grid]\nlr = [0.1, 0.2]\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("lr = -1"), "{e}");
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let msg = parse("data = \"d\"\nseed = 3\n").unwrap_err().to_string();
        assert!(msg.contains("seed") && msg.contains("line 2"), "{msg}");
    }
}
