//! The resolved configuration of one run: what a sweep expands into and what training reads.
//!
//! Parsed from TOML at the edge ([`crate::sweep`]), checked once by [`RunConfig::validate`],
//! then trusted everywhere inside. Its canonical JSON is part of the run id, so two runs with
//! the same config, data and seed are the same run.

use crate::data::augment::Augment;
use serde::{Deserialize, Deserializer, Serialize};

/// Which network to train. Each variant is a file in `src/model/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// The seed study's compact CNN: Conv32-Pool-Conv64-Pool-Dense128-Dropout-Dense7.
    Baseline,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Baseline => "baseline",
        }
    }
}

/// Optimizer of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
}

/// Training loss of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    CrossEntropy,
}

/// Everything that defines a run except its seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub model: ModelKind,
    /// Dropout before the classifier layer.
    pub dropout: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    pub loss: LossKind,
    /// `augment = false` turns augmentation off; a table sets each knob.
    #[serde(deserialize_with = "augment_or_bool")]
    pub augment: Augment,
}

impl Default for RunConfig {
    /// The seed study's recipe.
    fn default() -> Self {
        RunConfig {
            model: ModelKind::Baseline,
            dropout: 0.5,
            epochs: 30,
            batch_size: 64,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            loss: LossKind::CrossEntropy,
            augment: Augment::default(),
        }
    }
}

fn augment_or_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Augment, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bool(bool),
        Table(Augment),
    }
    match Either::deserialize(d) {
        Ok(Either::Bool(true)) => Ok(Augment::default()),
        Ok(Either::Bool(false)) => Ok(Augment::NONE),
        Ok(Either::Table(a)) => Ok(a),
        Err(_) => Err(serde::de::Error::custom(
            "augment must be true, false or a table of hflip / rotation / zoom / shift",
        )),
    }
}

/// A value out of range, with the key it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    pub key: String,
    pub message: String,
}

impl RunConfig {
    /// Checks every range; the error names the key and the value.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let bad = |key: &str, message: String| {
            Err(InvalidValue {
                key: key.to_string(),
                message,
            })
        };
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr < 10.0) {
            return bad("lr", format!("lr = {} must be > 0 (and < 10)", self.lr));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "dropout",
                format!("dropout = {} must be in [0, 1)", self.dropout),
            );
        }
        if self.epochs == 0 || self.epochs > 10_000 {
            return bad(
                "epochs",
                format!("epochs = {} must be in 1..=10000", self.epochs),
            );
        }
        if self.batch_size == 0 || self.batch_size > 8192 {
            return bad(
                "batch_size",
                format!("batch_size = {} must be in 1..=8192", self.batch_size),
            );
        }
        if let Err(message) = self.augment.validate() {
            let key = message.split(' ').next().unwrap_or("augment").to_string();
            return bad(&key, message);
        }
        Ok(())
    }

    /// The config as flat `key → value` pairs (`augment.rotation`), for the `run_params` table.
    pub fn flatten(&self) -> Vec<(String, serde_json::Value)> {
        let value = serde_json::to_value(self).expect("config serialises");
        let mut out = Vec::new();
        flatten_into("", &value, &mut out);
        out
    }
}

fn flatten_into(
    prefix: &str,
    value: &serde_json::Value,
    out: &mut Vec<(String, serde_json::Value)>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_seed_recipe_and_valid() {
        let c = RunConfig::default();
        assert_eq!(c.batch_size, 64);
        assert_eq!(c.dropout, 0.5);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let mut c = RunConfig {
            lr: -0.001,
            ..RunConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "lr");
        c.lr = 1e-3;
        c.dropout = 1.0;
        assert_eq!(c.validate().unwrap_err().key, "dropout");
        c.dropout = 0.5;
        c.epochs = 0;
        assert!(c.validate().unwrap_err().message.contains("epochs = 0"));
        c.epochs = 1;
        c.augment.rotation = -5.0;
        assert_eq!(c.validate().unwrap_err().key, "augment.rotation");
    }

    #[test]
    fn augment_accepts_bool_or_table() {
        let c: RunConfig = toml::from_str("augment = false").unwrap();
        assert!(c.augment.is_identity());
        let c: RunConfig = toml::from_str("[augment]\nrotation = 5.0").unwrap();
        assert_eq!(c.augment.rotation, 5.0);
        assert_eq!(c.augment.hflip, 0.5);
    }

    #[test]
    fn flatten_gives_dotted_keys() {
        let keys: Vec<String> = RunConfig::default()
            .flatten()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(keys.contains(&"augment.rotation".to_string()));
        assert!(keys.contains(&"lr".to_string()));
    }
}
