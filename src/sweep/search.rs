//! Random search: `[search] method = "random"`, `samples = N`, `seed`, and a `[search.space]`
//! of distributions. The samples are drawn once, seeded, and crossed with the grid, so grid
//! cells differ only by their grid values.
//!
//! ```toml
//! [search]
//! method = "random"
//! samples = 12
//! seed = 7
//!
//! [search.space]
//! lr = { loguniform = [1e-4, 1e-2] }
//! dropout = { uniform = [0.2, 0.6] }
//! model.width = { choice = [16, 32, 64] }
//! ```

use super::expand::{Assignment, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Random,
}

/// A distribution of one search key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Distribution {
    /// Uniform in log space between two positive bounds (learning rates, weight decay).
    Loguniform([f64; 2]),
    Uniform([f64; 2]),
    /// Uniform over whole numbers, both bounds included.
    IntUniform([i64; 2]),
    /// One of the listed values.
    Choice(Vec<toml::Value>),
}

const DISTRIBUTIONS: [&str; 4] = ["loguniform", "uniform", "int_uniform", "choice"];

/// A distribution whose bounds describe nothing to draw from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistributionError {
    #[error("loguniform [{0}, {1}] needs 0 < low < high")]
    Loguniform(f64, f64),
    #[error("uniform [{0}, {1}] needs low < high")]
    Uniform(f64, f64),
    #[error("int_uniform [{0}, {1}] needs low ≤ high")]
    IntUniform(i64, i64),
    #[error("choice [] has nothing to choose")]
    EmptyChoice,
}

/// Why a `[search]` table expands to no runs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    #[error(
        "search.space.{0} must be a distribution: {{ loguniform = [a, b] }}, {{ uniform = [a, b] }}, {{ int_uniform = [a, b] }} or {{ choice = [...] }}"
    )]
    NotADistribution(String),
    /// toml's message, trimmed.
    #[error("search.space.{key}: {message}")]
    Unreadable { key: String, message: String },
    #[error("search.space.{key}: {why}")]
    Invalid { key: String, why: DistributionError },
    #[error("search.samples = 0 expands to zero runs")]
    ZeroSamples,
    #[error("search.space is empty")]
    EmptySpace,
}

impl Distribution {
    fn check(&self) -> Result<(), DistributionError> {
        match self {
            Distribution::Loguniform([a, b]) if !(*a > 0.0 && a < b) => {
                Err(DistributionError::Loguniform(*a, *b))
            }
            Distribution::Uniform([a, b]) if a.partial_cmp(b) != Some(std::cmp::Ordering::Less) => {
                Err(DistributionError::Uniform(*a, *b))
            }
            Distribution::IntUniform([a, b]) if a > b => Err(DistributionError::IntUniform(*a, *b)),
            Distribution::Choice(v) if v.is_empty() => Err(DistributionError::EmptyChoice),
            _ => Ok(()),
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> toml::Value {
        match self {
            Distribution::Loguniform([a, b]) => {
                toml::Value::Float(rng.random_range(a.ln()..=b.ln()).exp())
            }
            Distribution::Uniform([a, b]) => toml::Value::Float(rng.random_range(*a..=*b)),
            Distribution::IntUniform([a, b]) => toml::Value::Integer(rng.random_range(*a..=*b)),
            Distribution::Choice(values) => values[rng.random_range(0..values.len())].clone(),
        }
    }
}

/// `[search]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchToml {
    pub method: Method,
    pub samples: usize,
    #[serde(default)]
    pub seed: u64,
    pub space: toml::Table,
}

/// Flattens the space (dotted keys nest as tables) into (key, distribution) in file order.
fn leaves(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, Distribution)>,
) -> Result<(), SearchError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let toml::Value::Table(t) = v else {
            return Err(SearchError::NotADistribution(key));
        };
        let is_leaf = t.len() == 1 && t.keys().all(|k| DISTRIBUTIONS.contains(&k.as_str()));
        if is_leaf {
            let dist: Distribution =
                toml::Value::Table(t.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| SearchError::Unreadable {
                        key: key.clone(),
                        message: e.message().trim().to_string(),
                    })?;
            dist.check().map_err(|why| SearchError::Invalid {
                key: key.clone(),
                why,
            })?;
            out.push((key, dist));
        } else {
            leaves(&key, t, out)?;
        }
    }
    Ok(())
}

/// The random-search axis: `samples` assignments of every space key.
pub fn axis(search: &SearchToml, line: usize) -> Result<Axis, SearchError> {
    if search.samples == 0 {
        return Err(SearchError::ZeroSamples);
    }
    let mut space = Vec::new();
    leaves("", &search.space, &mut space)?;
    if space.is_empty() {
        return Err(SearchError::EmptySpace);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(search.seed);
    let values: Vec<Assignment> = (0..search.samples)
        .map(|_| {
            space
                .iter()
                .map(|(k, d)| (k.clone(), d.draw(&mut rng)))
                .collect()
        })
        .collect();
    Ok(Axis {
        name: "search".into(),
        values,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(text: &str) -> SearchToml {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn draws_are_seeded_and_inside_their_bounds() {
        let s = search(
            "method = \"random\"\nsamples = 50\nseed = 3\n[space]\nlr = { loguniform = [1e-4, 1e-2] }\ndropout = { uniform = [0.2, 0.6] }\nmodel.width = { choice = [16, 32] }\nepochs = { int_uniform = [1, 3] }",
        );
        let a = axis(&s, 1).unwrap();
        assert_eq!(a.values.len(), 50);
        assert_eq!(a.keys(), vec!["dropout", "epochs", "lr", "model.width"]);
        assert_eq!(
            a.values,
            axis(&s, 1).unwrap().values,
            "same seed, same samples"
        );
        for sample in &a.values {
            for (k, v) in sample {
                match k.as_str() {
                    "lr" => assert!((1e-4..=1e-2).contains(&v.as_float().unwrap())),
                    "dropout" => assert!((0.2..=0.6).contains(&v.as_float().unwrap())),
                    "epochs" => assert!((1..=3).contains(&v.as_integer().unwrap())),
                    _ => assert!([16, 32].contains(&v.as_integer().unwrap())),
                }
            }
        }
        let other = search(
            "method = \"random\"\nsamples = 50\nseed = 4\n[space]\nlr = { loguniform = [1e-4, 1e-2] }",
        );
        assert_ne!(axis(&other, 1).unwrap().values[0], a.values[0]);
    }

    #[test]
    fn bad_spaces_are_named() {
        let s =
            search("method = \"random\"\nsamples = 2\n[space]\nlr = { loguniform = [0.0, 1.0] }");
        assert!(
            axis(&s, 1)
                .unwrap_err()
                .to_string()
                .contains("search.space.lr")
        );
        let s = search("method = \"random\"\nsamples = 2\n[space]\nlr = 0.1");
        assert!(
            axis(&s, 1)
                .unwrap_err()
                .to_string()
                .contains("must be a distribution")
        );
        let s = search("method = \"random\"\nsamples = 0\n[space]\nlr = { uniform = [0.1, 0.2] }");
        assert!(axis(&s, 1).unwrap_err().to_string().contains("zero runs"));
    }
}
