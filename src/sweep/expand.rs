//! Grid expansion and run identity.

use crate::config::RunConfig;
use sha2::{Digest, Sha256};

/// Keys set together by one value of an axis.
pub type Assignment = Vec<(String, toml::Value)>;

/// One dimension of the sweep: a grid key and its values, or the random-search samples (each
/// sets every key of the search space at once).
#[derive(Debug, Clone)]
pub struct Axis {
    /// The grid key, or `search`.
    pub name: String,
    pub values: Vec<Assignment>,
    /// Line of the axis in the sweep file.
    pub line: usize,
}

impl Axis {
    /// A grid axis: one key, several values.
    pub fn grid(key: &str, values: &[toml::Value], line: usize) -> Axis {
        Axis {
            name: key.to_string(),
            values: values
                .iter()
                .map(|v| vec![(key.to_string(), v.clone())])
                .collect(),
            line,
        }
    }

    /// The keys this axis sets.
    pub fn keys(&self) -> Vec<String> {
        self.values
            .first()
            .map(|a| a.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default()
    }

    fn owns(&self, key: &str) -> bool {
        self.keys()
            .iter()
            .any(|k| k == key || key.starts_with(&format!("{k}.")))
    }
}

/// A run the sweep will train: a resolved config and a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    pub config: RunConfig,
    pub seed: u64,
    /// The swept keys and this run's value of each, in axis order.
    pub swept: Vec<(String, toml::Value)>,
}

/// Why a cell of the grid is invalid.
#[derive(Debug)]
pub struct ExpandError {
    pub key: String,
    pub axis_line: Option<usize>,
    pub message: String,
}

/// Why a value cannot be set at a dotted key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// The config did not serialise to TOML (a bug, not an input error).
    #[error("{0}")]
    Serialize(String),
    #[error("`{0}` is not a table")]
    NotATable(String),
    /// toml's message on one line: the wrong type, or an unknown key.
    #[error("{0}")]
    Invalid(String),
}

/// Sets the dotted `key` of `base` to `value`, re-checking types and unknown keys.
pub fn apply(base: &RunConfig, key: &str, value: &toml::Value) -> Result<RunConfig, ApplyError> {
    let mut root = toml::Value::try_from(base).map_err(|e| ApplyError::Serialize(e.to_string()))?;
    let mut slot = &mut root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let table = match slot {
            toml::Value::Table(t) => t,
            _ => return Err(ApplyError::NotATable(parts[..i].join("."))),
        };
        if i == parts.len() - 1 {
            table.insert(part.to_string(), value.clone());
            break;
        }
        slot = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    root.try_into::<RunConfig>()
        .map_err(|e| ApplyError::Invalid(e.to_string().trim().replace('\n', " ")))
}

fn apply_all(base: &RunConfig, assignment: &Assignment) -> Result<RunConfig, (String, String)> {
    let mut config = base.clone();
    for (key, value) in assignment {
        config = apply(&config, key, value)
            .map_err(|why| (key.clone(), format!("value `{value}`: {why}")))?;
    }
    Ok(config)
}

/// The cartesian product of the axes over `base`, each cell once per seed. Every config is
/// validated; the first invalid one is the error.
pub fn expand(
    base: &RunConfig,
    axes: &[Axis],
    seeds: &[u64],
) -> Result<Vec<PlannedRun>, ExpandError> {
    // A bad [base] value is wrong where it is written, even when an axis overrides it.
    base.validate().map_err(|e| ExpandError {
        axis_line: None,
        key: e.key,
        message: e.message,
    })?;
    // Check every value of every axis alone first, so the error points at the axis.
    for axis in axes {
        for value in &axis.values {
            apply_all(base, value).map_err(|(key, why)| ExpandError {
                axis_line: Some(axis.line),
                message: format!(
                    "{}.{key} {why}",
                    if axis.name == "search" {
                        "search.space"
                    } else {
                        "grid"
                    }
                ),
                key,
            })?;
        }
    }
    let mut runs = Vec::new();
    let mut index = vec![0usize; axes.len()];
    loop {
        let mut config = base.clone();
        let mut swept = Vec::with_capacity(axes.len());
        for (axis, &i) in axes.iter().zip(&index) {
            let assignment = &axis.values[i];
            config = apply_all(&config, assignment).map_err(|(key, why)| ExpandError {
                key,
                axis_line: Some(axis.line),
                message: why,
            })?;
            swept.extend(assignment.iter().cloned());
        }
        config.validate().map_err(|e| ExpandError {
            axis_line: axes.iter().find(|a| a.owns(&e.key)).map(|a| a.line),
            key: e.key,
            message: e.message,
        })?;
        for &seed in seeds {
            let run = PlannedRun {
                config: config.clone(),
                seed,
                swept: swept.clone(),
            };
            if !runs.contains(&run) {
                runs.push(run);
            }
        }
        // Odometer: the last axis turns fastest.
        let mut k = axes.len();
        loop {
            if k == 0 {
                return Ok(runs);
            }
            k -= 1;
            index[k] += 1;
            if index[k] < axes[k].values.len() {
                break;
            }
            index[k] = 0;
        }
    }
}

/// A run's identity: hash of its resolved config, the data fingerprint and the seed.
pub fn run_id(config: &RunConfig, data_fingerprint: &str, seed: u64) -> String {
    let json = config.canonical_json();
    let mut hasher = Sha256::new();
    hasher.update(json.as_bytes());
    hasher.update(b"\n");
    hasher.update(data_fingerprint.as_bytes());
    hasher.update(b"\n");
    hasher.update(seed.to_le_bytes());
    crate::data::cache::hex(&hasher.finalize())[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_is_deterministic_and_sensitive() {
        let c = RunConfig::default();
        let id = run_id(&c, "abc", 1);
        assert_eq!(id.len(), 12);
        assert_eq!(id, run_id(&c.clone(), "abc", 1));
        assert_ne!(id, run_id(&c, "abc", 2));
        assert_ne!(id, run_id(&c, "abd", 1));
        let other = RunConfig {
            lr: 3e-4,
            ..RunConfig::default()
        };
        assert_ne!(id, run_id(&other, "abc", 1));
    }

    #[test]
    fn no_axes_is_one_cell() {
        let runs = expand(&RunConfig::default(), &[], &[1, 2]).unwrap();
        assert_eq!(runs.len(), 2);
    }
}
