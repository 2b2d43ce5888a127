//! The resolved configuration of one run: what a sweep expands into and what training reads.
//!
//! Parsed from TOML at the edge ([`crate::sweep`]), checked once by [`RunConfig::validate`],
//! then trusted everywhere inside. Its canonical JSON is part of the run id, so two runs with
//! the same config, data and seed are the same run.
//!
//! Knobs added after a run was recorded are left out of the canonical JSON while they hold
//! their default (which reproduces the old behaviour), so adding a knob never renames old runs.
//! Model, loss, optimizer and schedule are written either as a bare name (`"focal"`) or as a
//! table with `kind` and that variant's own knobs (`{ kind = "focal", gamma = 2.0 }`): a knob
//! that does not belong to the chosen kind is an error, not silently ignored.

// Tta lives beside the views it makes: config composes augment, never the other way round.
use crate::data::augment::Augment;
pub use crate::data::augment::Tta;
use crate::emotion::NUM_CLASSES;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `"name"` or `{ kind = "name", knob = … }`, for any kind-tagged enum. The table goes through
/// a JSON value so the same code reads sweep files (TOML) and stored configs (JSON).
fn from_name_or_table<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Name(String),
        Table(serde_json::Map<String, serde_json::Value>),
    }
    let table = match Repr::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a name or a table with `kind`"))?
    {
        Repr::Name(name) => {
            let mut t = serde_json::Map::new();
            t.insert("kind".into(), serde_json::Value::String(name));
            t
        }
        Repr::Table(t) => t,
    };
    serde_json::from_value(serde_json::Value::Object(table)).map_err(serde::de::Error::custom)
}

/// Writes a knob-less variant as its bare name, anything else as a table.
fn to_name_or_table<S: Serializer, T: Serialize>(
    value: &T,
    bare: Option<&str>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match bare {
        Some(name) => s.serialize_str(name),
        None => value.serialize(s),
    }
}

macro_rules! name_or_table {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                from_name_or_table::<D, Tagged<$ty>>(d).map(|t| t.0)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                to_name_or_table(&Tagged(self.clone()), self.bare_name(), s)
            }
        }
    };
}

/// Serde's derived, `kind`-tagged form of the enums below.
#[derive(Clone)]
struct Tagged<T>(T);

macro_rules! tagged_via {
    ($ty:ty, $repr:ident) => {
        impl<'de> Deserialize<'de> for Tagged<$ty> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $repr::deserialize(d).map(|r| Tagged(r.into()))
            }
        }
        impl Serialize for Tagged<$ty> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $repr::from(self.0.clone()).serialize(s)
            }
        }
    };
}

pub use crate::model::{AttentionKind, ModelSpec};

/// `model = "baseline"` or a table with `kind`; a knob-less model is written as its name.
fn model_from_name_or_table<'de, D: Deserializer<'de>>(d: D) -> Result<ModelSpec, D::Error> {
    from_name_or_table(d)
}

fn model_to_name_or_table<S: Serializer>(model: &ModelSpec, s: S) -> Result<S::Ok, S::Error> {
    to_name_or_table(model, model.bare_name(), s)
}

/// Per-class weights of the weighted cross-entropy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    /// `"inverse_frequency"`: 1 / (train images of the class), normalised to mean 1.
    Named(WeightsName),
    /// Seven explicit weights in class-id order.
    Explicit(Vec<f64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsName {
    InverseFrequency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum LossRepr {
    CrossEntropy {},
    WeightedCrossEntropy {
        #[serde(default = "inverse_frequency")]
        weights: ClassWeights,
    },
    Focal {
        #[serde(default = "two_f64")]
        gamma: f64,
        #[serde(default)]
        alpha: Option<Vec<f64>>,
    },
}

fn inverse_frequency() -> ClassWeights {
    ClassWeights::Named(WeightsName::InverseFrequency)
}
fn two_f64() -> f64 {
    2.0
}

/// The training loss.
#[derive(Debug, Clone, PartialEq)]
pub enum LossSpec {
    CrossEntropy,
    /// Cross-entropy with per-class weights (mean weighted by the targets' weights, as PyTorch).
    WeightedCrossEntropy {
        weights: ClassWeights,
    },
    /// Focal loss: −α_y (1 − p_y)^γ log p_y.
    Focal {
        gamma: f64,
        alpha: Option<Vec<f64>>,
    },
}

impl From<LossRepr> for LossSpec {
    fn from(r: LossRepr) -> Self {
        match r {
            LossRepr::CrossEntropy {} => LossSpec::CrossEntropy,
            LossRepr::WeightedCrossEntropy { weights } => {
                LossSpec::WeightedCrossEntropy { weights }
            }
            LossRepr::Focal { gamma, alpha } => LossSpec::Focal { gamma, alpha },
        }
    }
}

impl From<LossSpec> for LossRepr {
    fn from(l: LossSpec) -> Self {
        match l {
            LossSpec::CrossEntropy => LossRepr::CrossEntropy {},
            LossSpec::WeightedCrossEntropy { weights } => {
                LossRepr::WeightedCrossEntropy { weights }
            }
            LossSpec::Focal { gamma, alpha } => LossRepr::Focal { gamma, alpha },
        }
    }
}

tagged_via!(LossSpec, LossRepr);
name_or_table!(LossSpec);

impl LossSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            LossSpec::CrossEntropy => "cross_entropy",
            LossSpec::WeightedCrossEntropy { .. } => "weighted_cross_entropy",
            LossSpec::Focal { .. } => "focal",
        }
    }

    fn bare_name(&self) -> Option<&'static str> {
        match self {
            LossSpec::CrossEntropy => Some("cross_entropy"),
            LossSpec::WeightedCrossEntropy { weights } if *weights == inverse_frequency() => {
                Some("weighted_cross_entropy")
            }
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), InvalidValue> {
        let check7 = |key: &str, values: &[f64]| {
            if values.len() != NUM_CLASSES
                || values.iter().any(|w| !(w.is_finite() && *w >= 0.0))
                || values.iter().all(|w| *w == 0.0)
            {
                Err(InvalidValue {
                    key: format!("loss.{key}"),
                    message: format!(
                        "loss.{key} = {values:?} must be 7 non-negative numbers (one per class), not all 0"
                    ),
                })
            } else {
                Ok(())
            }
        };
        match self {
            LossSpec::CrossEntropy => Ok(()),
            LossSpec::WeightedCrossEntropy { weights } => match weights {
                ClassWeights::Named(_) => Ok(()),
                ClassWeights::Explicit(w) => check7("weights", w),
            },
            LossSpec::Focal { gamma, alpha } => {
                if !(0.0..=10.0).contains(gamma) {
                    return Err(InvalidValue {
                        key: "loss.gamma".into(),
                        message: format!("loss.gamma = {gamma} must be in [0, 10]"),
                    });
                }
                alpha.as_deref().map_or(Ok(()), |a| check7("alpha", a))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum OptimizerRepr {
    Adam {},
    Adamw {},
    Sgd {
        #[serde(default = "point_nine")]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
    },
}

fn point_nine() -> f64 {
    0.9
}

/// The optimizer. Weight decay is the run's `weight_decay` (coupled L2 for adam and sgd,
/// decoupled for adamw).
#[derive(Debug, Clone, PartialEq)]
pub enum OptimizerSpec {
    Adam,
    AdamW,
    Sgd { momentum: f64, nesterov: bool },
}

impl From<OptimizerRepr> for OptimizerSpec {
    fn from(r: OptimizerRepr) -> Self {
        match r {
            OptimizerRepr::Adam {} => OptimizerSpec::Adam,
            OptimizerRepr::Adamw {} => OptimizerSpec::AdamW,
            OptimizerRepr::Sgd { momentum, nesterov } => OptimizerSpec::Sgd { momentum, nesterov },
        }
    }
}

impl From<OptimizerSpec> for OptimizerRepr {
    fn from(o: OptimizerSpec) -> Self {
        match o {
            OptimizerSpec::Adam => OptimizerRepr::Adam {},
            OptimizerSpec::AdamW => OptimizerRepr::Adamw {},
            OptimizerSpec::Sgd { momentum, nesterov } => OptimizerRepr::Sgd { momentum, nesterov },
        }
    }
}

tagged_via!(OptimizerSpec, OptimizerRepr);
name_or_table!(OptimizerSpec);

impl OptimizerSpec {
    fn bare_name(&self) -> Option<&'static str> {
        match self {
            OptimizerSpec::Adam => Some("adam"),
            OptimizerSpec::AdamW => Some("adamw"),
            OptimizerSpec::Sgd { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ScheduleRepr {
    Constant {},
    Step {
        #[serde(default = "ten")]
        step_size: usize,
        #[serde(default = "point_one")]
        gamma: f64,
    },
    Cosine {
        #[serde(default)]
        warmup: usize,
        #[serde(default)]
        min_lr: f64,
    },
    Plateau {
        #[serde(default = "half")]
        factor: f64,
        #[serde(default = "three")]
        patience: usize,
    },
}

fn ten() -> usize {
    10
}
fn three() -> usize {
    3
}
fn point_one() -> f64 {
    0.1
}
fn half() -> f64 {
    0.5
}

/// How the learning rate moves over epochs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Schedule {
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step { step_size: usize, gamma: f64 },
    /// Linear warm-up over `warmup` epochs, then cosine decay to `min_lr` by the last epoch.
    Cosine { warmup: usize, min_lr: f64 },
    /// Multiply by `factor` when val accuracy has not improved for `patience` epochs.
    Plateau { factor: f64, patience: usize },
}

impl From<ScheduleRepr> for Schedule {
    fn from(r: ScheduleRepr) -> Self {
        match r {
            ScheduleRepr::Constant {} => Schedule::Constant,
            ScheduleRepr::Step { step_size, gamma } => Schedule::Step { step_size, gamma },
            ScheduleRepr::Cosine { warmup, min_lr } => Schedule::Cosine { warmup, min_lr },
            ScheduleRepr::Plateau { factor, patience } => Schedule::Plateau { factor, patience },
        }
    }
}

impl From<Schedule> for ScheduleRepr {
    fn from(s: Schedule) -> Self {
        match s {
            Schedule::Constant => ScheduleRepr::Constant {},
            Schedule::Step { step_size, gamma } => ScheduleRepr::Step { step_size, gamma },
            Schedule::Cosine { warmup, min_lr } => ScheduleRepr::Cosine { warmup, min_lr },
            Schedule::Plateau { factor, patience } => ScheduleRepr::Plateau { factor, patience },
        }
    }
}

tagged_via!(Schedule, ScheduleRepr);
name_or_table!(Schedule);

impl Schedule {
    fn bare_name(&self) -> Option<&'static str> {
        matches!(self, Schedule::Constant).then_some("constant")
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step { .. } => "step",
            Schedule::Cosine { .. } => "cosine",
            Schedule::Plateau { .. } => "plateau",
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Everything that defines a run except its seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    #[serde(
        deserialize_with = "model_from_name_or_table",
        serialize_with = "model_to_name_or_table"
    )]
    pub model: ModelSpec,
    /// Dropout before the classifier layer(s).
    pub dropout: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    /// Peak learning rate.
    pub lr: f64,
    pub loss: LossSpec,
    /// `augment = false` turns augmentation off; a table sets each knob.
    #[serde(deserialize_with = "augment_or_bool")]
    pub augment: Augment,
    /// Label smoothing ε on any loss: targets become (1 − ε)·one-hot + ε/7.
    #[serde(skip_serializing_if = "is_default")]
    pub label_smoothing: f64,
    #[serde(skip_serializing_if = "is_default")]
    pub weight_decay: f64,
    #[serde(skip_serializing_if = "is_default")]
    pub schedule: Schedule,
    /// Stop when val accuracy has not improved for this many epochs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<usize>,
    /// Clip the gradient norm of each parameter to this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    #[serde(skip_serializing_if = "is_default")]
    pub tta: Tta,
}

impl Default for RunConfig {
    /// The seed study's recipe.
    fn default() -> Self {
        RunConfig {
            model: ModelSpec::default(),
            dropout: 0.5,
            epochs: 30,
            batch_size: 64,
            optimizer: OptimizerSpec::Adam,
            lr: 1e-3,
            loss: LossSpec::CrossEntropy,
            augment: Augment::default(),
            label_smoothing: 0.0,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            early_stopping: None,
            grad_clip: None,
            tta: Tta::None,
        }
    }
}

fn augment_or_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Augment, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bool(bool),
        Table(serde_json::Map<String, serde_json::Value>),
    }
    match Either::deserialize(d) {
        Ok(Either::Bool(true)) => Ok(Augment::default()),
        Ok(Either::Bool(false)) => Ok(Augment::NONE),
        Ok(Either::Table(t)) => serde_json::from_value(serde_json::Value::Object(t))
            .map_err(|e| serde::de::Error::custom(format!("augment: {e}"))),
        Err(_) => Err(serde::de::Error::custom(
            "augment must be true, false or a table of augmentation knobs",
        )),
    }
}

pub use crate::invalid::InvalidValue;

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
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "label_smoothing",
                format!(
                    "label_smoothing = {} must be in [0, 1)",
                    self.label_smoothing
                ),
            );
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return bad(
                "weight_decay",
                format!("weight_decay = {} must be in [0, 1)", self.weight_decay),
            );
        }
        if let Some(p) = self.early_stopping
            && p == 0
        {
            return bad(
                "early_stopping",
                "early_stopping = 0 must be ≥ 1 epoch of patience".into(),
            );
        }
        if let Some(c) = self.grad_clip
            && !(c.is_finite() && c > 0.0)
        {
            return bad("grad_clip", format!("grad_clip = {c} must be > 0"));
        }
        if let OptimizerSpec::Sgd { momentum, .. } = self.optimizer
            && !(0.0..1.0).contains(&momentum)
        {
            return bad(
                "optimizer.momentum",
                format!("optimizer.momentum = {momentum} must be in [0, 1)"),
            );
        }
        match &self.schedule {
            Schedule::Step { step_size, gamma } => {
                if *step_size == 0 {
                    return bad(
                        "schedule.step_size",
                        "schedule.step_size = 0 must be ≥ 1".into(),
                    );
                }
                if !(*gamma > 0.0 && *gamma <= 1.0) {
                    return bad(
                        "schedule.gamma",
                        format!("schedule.gamma = {gamma} must be in (0, 1]"),
                    );
                }
            }
            Schedule::Cosine { warmup, min_lr } => {
                if *warmup >= self.epochs {
                    return bad(
                        "schedule.warmup",
                        format!(
                            "schedule.warmup = {warmup} must be fewer than epochs = {}",
                            self.epochs
                        ),
                    );
                }
                if !(*min_lr >= 0.0 && *min_lr < self.lr) {
                    return bad(
                        "schedule.min_lr",
                        format!("schedule.min_lr = {min_lr} must be in [0, lr)"),
                    );
                }
            }
            Schedule::Plateau { factor, patience } => {
                if !(*factor > 0.0 && *factor < 1.0) {
                    return bad(
                        "schedule.factor",
                        format!("schedule.factor = {factor} must be in (0, 1)"),
                    );
                }
                if *patience == 0 {
                    return bad(
                        "schedule.patience",
                        "schedule.patience = 0 must be ≥ 1".into(),
                    );
                }
            }
            Schedule::Constant => {}
        }
        self.model.validate()?;
        self.loss.validate()?;
        if let Err(e) = self.augment.validate() {
            return bad(&format!("augment.{}", e.key), e.to_string());
        }
        Ok(())
    }

    /// The canonical JSON that run ids hash (knobs at a later-added default are left out).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// Every key of the config as flat `key → value` pairs (`augment.rotation`,
    /// `model.kind`), defaults included, for the `run_params` table.
    pub fn flatten(&self) -> Vec<(String, serde_json::Value)> {
        let mut out = Vec::new();
        flatten_into("", &self.full_json(), &mut out);
        out
    }

    /// The config as a JSON object with every knob spelled out (kinds as `{kind: …}` tables).
    pub fn full_json(&self) -> serde_json::Value {
        let tagged = |v: serde_json::Result<serde_json::Value>| v.expect("config serialises");
        serde_json::json!({
            "model": tagged(serde_json::to_value(&self.model)),
            "dropout": self.dropout,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "optimizer": tagged(serde_json::to_value(Tagged(self.optimizer.clone()))),
            "lr": self.lr,
            "loss": tagged(serde_json::to_value(Tagged(self.loss.clone()))),
            "augment": self.augment.full_json(),
            "label_smoothing": self.label_smoothing,
            "weight_decay": self.weight_decay,
            "schedule": tagged(serde_json::to_value(Tagged(self.schedule.clone()))),
            "early_stopping": self.early_stopping,
            "grad_clip": self.grad_clip,
            "tta": self.tta,
        })
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
    fn canonical_json_of_the_seed_recipe_is_stable() {
        // Run ids hash this text: it must not change when knobs are added.
        assert_eq!(
            RunConfig::default().canonical_json(),
            r#"{"model":"baseline","dropout":0.5,"epochs":30,"batch_size":64,"optimizer":"adam","lr":0.001,"loss":"cross_entropy","augment":{"hflip":0.5,"rotation":10.0,"zoom":0.1,"shift":0.1}}"#
        );
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
    fn kinds_read_as_names_or_tables() {
        let c: RunConfig =
            toml::from_str("model = \"compact\"\nloss = { kind = \"focal\", gamma = 1.5 }")
                .unwrap();
        assert_eq!(
            c.model,
            ModelSpec::Compact(crate::model::CompactConfig::default())
        );
        assert_eq!(
            c.loss,
            LossSpec::Focal {
                gamma: 1.5,
                alpha: None
            }
        );
        let c: RunConfig = toml::from_str("[model]\nkind = \"residual\"\nwidth = 16").unwrap();
        assert_eq!(
            c.model,
            ModelSpec::Residual(crate::model::ResidualConfig {
                width: 16,
                depth: 2
            })
        );
        let c: RunConfig = toml::from_str(
            "optimizer = { kind = \"sgd\", nesterov = true }\nschedule = \"cosine\"",
        )
        .unwrap();
        assert_eq!(
            c.optimizer,
            OptimizerSpec::Sgd {
                momentum: 0.9,
                nesterov: true
            }
        );
        assert_eq!(
            c.schedule,
            Schedule::Cosine {
                warmup: 0,
                min_lr: 0.0
            }
        );
    }

    #[test]
    fn a_knob_of_another_kind_is_an_error() {
        let e =
            toml::from_str::<RunConfig>("[model]\nkind = \"baseline\"\nwidth = 16").unwrap_err();
        assert!(e.to_string().contains("width"), "{e}");
        let e = toml::from_str::<RunConfig>("model = \"resnet\"").unwrap_err();
        assert!(e.to_string().contains("resnet"), "{e}");
    }

    #[test]
    fn every_kind_round_trips_through_its_stored_json() {
        // Workers read the config back from SQLite as JSON: nulls (focal's alpha) included.
        for text in [
            "loss = { kind = \"focal\", gamma = 2.0 }",
            "loss = { kind = \"focal\", gamma = 1.0, alpha = [1, 2, 1, 1, 1, 1, 1] }",
            "optimizer = { kind = \"sgd\", nesterov = true }",
            "schedule = { kind = \"step\" }",
            "model = { kind = \"vgg\", width = 0.25 }",
        ] {
            let c: RunConfig = toml::from_str(text).unwrap();
            let back: RunConfig =
                serde_json::from_str(&c.canonical_json()).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(back, c, "{text}");
        }
    }

    #[test]
    fn round_trips_through_json() {
        let c: RunConfig = toml::from_str(
            "model = { kind = \"attention\", attention = \"cbam\" }\nloss = { kind = \"weighted_cross_entropy\", weights = [1, 2, 1, 1, 1, 1, 1] }\nlabel_smoothing = 0.1\nschedule = { kind = \"plateau\" }\ntta = \"ten_crop\"\n[augment]\nerasing = 0.25",
        )
        .unwrap();
        let back: RunConfig = serde_json::from_str(&c.canonical_json()).unwrap();
        assert_eq!(back, c);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn augment_accepts_bool_or_table() {
        let c: RunConfig = toml::from_str("augment = false").unwrap();
        assert!(c.augment.is_identity());
        let c: RunConfig = toml::from_str("[augment]\nrotation = 5.0").unwrap();
        assert_eq!(c.augment.rotation, 5.0);
        assert_eq!(c.augment.hflip, 0.5);
        assert!(
            toml::from_str::<RunConfig>("[augment]\nrotaton = 5.0")
                .unwrap_err()
                .to_string()
                .contains("rotaton")
        );
    }

    #[test]
    fn flatten_spells_out_every_key() {
        let keys: Vec<String> = RunConfig::default()
            .flatten()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for key in [
            "augment.rotation",
            "augment.mixup",
            "lr",
            "model.kind",
            "loss.kind",
            "schedule.kind",
            "label_smoothing",
            "tta",
            "grad_clip",
        ] {
            assert!(
                keys.contains(&key.to_string()),
                "{key} missing from {keys:?}"
            );
        }
    }
}
