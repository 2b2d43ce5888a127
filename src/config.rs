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
//! that does not belong to the chosen kind is an error, not silently ignored. Each spec lives
//! beside its implementation, with its knobs, defaults and validation ([`crate::model`],
//! [`crate::loss`], [`crate::train::optimizer`], [`crate::train::schedule`]); this file only
//! reads and writes the bare-name form and composes them.

// Tta lives beside the views it makes: config composes augment, never the other way round.
pub use crate::data::augment::Tta;
use crate::data::augment::{Augment, EraseOn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::loss::{ClassWeights, LossSpec, WeightsName};
pub use crate::model::{AttentionKind, ModelSpec, Precision};
pub use crate::optim::OptimizerSpec;
pub use crate::optim::schedule::Schedule;

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

/// Writes a knob-less variant as its bare name, anything else as its `kind`-tagged table.
fn to_name_or_table<S: Serializer, T: Serialize + BareName>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value.bare() {
        Some(name) => s.serialize_str(name),
        None => value.serialize(s),
    }
}

/// The specs written as a bare name when they have no knobs (each spec's own `bare_name`).
trait BareName {
    fn bare(&self) -> Option<&'static str>;
}

impl BareName for ModelSpec {
    fn bare(&self) -> Option<&'static str> {
        self.bare_name()
    }
}

impl BareName for LossSpec {
    fn bare(&self) -> Option<&'static str> {
        self.bare_name()
    }
}

impl BareName for OptimizerSpec {
    fn bare(&self) -> Option<&'static str> {
        self.bare_name()
    }
}

impl BareName for Schedule {
    fn bare(&self) -> Option<&'static str> {
        self.bare_name()
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
        deserialize_with = "from_name_or_table",
        serialize_with = "to_name_or_table"
    )]
    pub model: ModelSpec,
    /// Dropout before the classifier layer(s).
    pub dropout: f64,
    pub epochs: usize,
    pub batch_size: usize,
    #[serde(
        deserialize_with = "from_name_or_table",
        serialize_with = "to_name_or_table"
    )]
    pub optimizer: OptimizerSpec,
    /// Peak learning rate.
    pub lr: f64,
    #[serde(
        deserialize_with = "from_name_or_table",
        serialize_with = "to_name_or_table"
    )]
    pub loss: LossSpec,
    /// `augment = false` turns augmentation off; a table sets each knob.
    #[serde(deserialize_with = "augment_or_bool")]
    pub augment: Augment,
    /// Label smoothing ε on any loss: targets become (1 − ε)·one-hot + ε/7.
    #[serde(skip_serializing_if = "is_default")]
    pub label_smoothing: f64,
    #[serde(skip_serializing_if = "is_default")]
    pub weight_decay: f64,
    #[serde(
        skip_serializing_if = "is_default",
        deserialize_with = "from_name_or_table",
        serialize_with = "to_name_or_table"
    )]
    pub schedule: Schedule,
    /// Stop when val accuracy has not improved for this many epochs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<usize>,
    /// Clip the gradient norm of each parameter to this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    #[serde(skip_serializing_if = "is_default")]
    pub tta: Tta,
    /// Train on random `crop`×`crop` windows of the augmented 48×48 images and evaluate on the
    /// centre one (TTA views become crops of this side); unset, the whole image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<usize>,
    /// What the layers compute in: float32, or bf16 mixed precision on a libtorch device.
    #[serde(skip_serializing_if = "is_default")]
    pub precision: Precision,
}

/// The smallest and largest `crop`.
pub const CROP_RANGE: std::ops::RangeInclusive<usize> = 16..=crate::data::IMAGE_SIDE;

impl Default for RunConfig {
    /// The seed study's recipe.
    fn default() -> Self {
        RunConfig {
            model: ModelSpec::default(),
            dropout: 0.5,
            epochs: 30,
            batch_size: 64,
            optimizer: OptimizerSpec::Adam(Default::default()),
            lr: 1e-3,
            loss: LossSpec::CrossEntropy(Default::default()),
            augment: Augment::default(),
            label_smoothing: 0.0,
            weight_decay: 0.0,
            schedule: Schedule::Constant(Default::default()),
            early_stopping: None,
            grad_clip: None,
            tta: Tta::None,
            crop: None,
            precision: Precision::F32,
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
        if let Some(crop) = self.crop
            && !CROP_RANGE.contains(&crop)
        {
            return bad(
                "crop",
                format!(
                    "crop = {crop} must be in {}..={} (pixels of the 48×48 image's side)",
                    CROP_RANGE.start(),
                    CROP_RANGE.end()
                ),
            );
        }
        self.optimizer.validate()?;
        self.schedule.validate(self.epochs, self.lr)?;
        self.model.validate()?;
        self.model.validate_side(self.input_side())?;
        self.loss.validate()?;
        if let Err(e) = self.augment.validate() {
            return bad(&format!("augment.{}", e.key), e.to_string());
        }
        if self.augment.crops > 1 && self.crop.is_none() {
            return bad(
                "augment.crops",
                format!(
                    "augment.crops = {} needs a `crop` (random crops of the whole image are all \
                     the same image; when a grid sweeps `crop`, set one in [base] too)",
                    self.augment.crops
                ),
            );
        }
        if self.augment.erasing_on == EraseOn::Crop && self.crop.is_none() {
            return bad(
                "augment.erasing_on",
                "augment.erasing_on = \"crop\" needs a `crop` (without one there are no crops to \
                 erase: leave erasing_on out to erase the whole image)"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// Side of the images the model sees: `crop`, or the whole 48.
    pub fn input_side(&self) -> usize {
        self.crop.unwrap_or(crate::data::IMAGE_SIDE)
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
            "optimizer": tagged(serde_json::to_value(&self.optimizer)),
            "lr": self.lr,
            "loss": tagged(serde_json::to_value(&self.loss)),
            "augment": self.augment.full_json(),
            "label_smoothing": self.label_smoothing,
            "weight_decay": self.weight_decay,
            "schedule": tagged(serde_json::to_value(&self.schedule)),
            "early_stopping": self.early_stopping,
            "grad_clip": self.grad_clip,
            "tta": self.tta,
            "crop": self.crop,
            "precision": self.precision,
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
    fn canonical_json_of_every_kind_is_stable() {
        // Knob-less values are bare names, the rest tables in field order, focal's absent
        // alpha a null: run ids hash this text.
        let c: RunConfig = toml::from_str(
            "optimizer = { kind = \"sgd\", nesterov = true }\nloss = \"focal\"\nschedule = { kind = \"step\" }",
        )
        .unwrap();
        assert_eq!(
            c.canonical_json(),
            r#"{"model":"baseline","dropout":0.5,"epochs":30,"batch_size":64,"optimizer":{"kind":"sgd","momentum":0.9,"nesterov":true},"lr":0.001,"loss":{"kind":"focal","gamma":2.0,"alpha":null},"augment":{"hflip":0.5,"rotation":10.0,"zoom":0.1,"shift":0.1},"schedule":{"kind":"step","step_size":10,"gamma":0.1}}"#
        );
        let c: RunConfig = toml::from_str(
            "optimizer = { kind = \"adamw\" }\nloss = { kind = \"weighted_cross_entropy\" }\nschedule = { kind = \"constant\" }",
        )
        .unwrap();
        assert_eq!(
            c.canonical_json(),
            r#"{"model":"baseline","dropout":0.5,"epochs":30,"batch_size":64,"optimizer":"adamw","lr":0.001,"loss":"weighted_cross_entropy","augment":{"hflip":0.5,"rotation":10.0,"zoom":0.1,"shift":0.1}}"#
        );
    }

    #[test]
    fn out_of_range_knobs_of_a_kind_name_their_key() {
        let c: RunConfig = toml::from_str(
            "epochs = 5\noptimizer = { kind = \"sgd\", momentum = 1.0 }\nschedule = { kind = \"cosine\", warmup = 7 }",
        )
        .unwrap();
        assert_eq!(
            c.validate().unwrap_err().message,
            "optimizer.momentum = 1 must be in [0, 1)"
        );
        let c = RunConfig {
            optimizer: OptimizerSpec::default(),
            ..c
        };
        assert_eq!(
            c.validate().unwrap_err().message,
            "schedule.warmup = 7 must be fewer than epochs = 5"
        );
        let c: RunConfig = toml::from_str("loss = { kind = \"focal\", gamma = 11 }").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "loss.gamma");
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
            LossSpec::Focal(crate::loss::FocalConfig {
                gamma: 1.5,
                alpha: None
            })
        );
        let c: RunConfig = toml::from_str("[model]\nkind = \"residual\"\nwidth = 16").unwrap();
        assert_eq!(
            c.model,
            ModelSpec::Residual(crate::model::ResidualConfig {
                width: 16,
                ..Default::default()
            })
        );
        let c: RunConfig = toml::from_str(
            "optimizer = { kind = \"sgd\", nesterov = true }\nschedule = \"cosine\"",
        )
        .unwrap();
        assert_eq!(
            c.optimizer,
            OptimizerSpec::Sgd(crate::optim::SgdConfig {
                momentum: 0.9,
                nesterov: true
            })
        );
        assert_eq!(
            c.schedule,
            Schedule::Cosine(crate::optim::schedule::CosineConfig {
                warmup: 0,
                min_lr: 0.0
            })
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
    fn precision_is_a_knob_of_the_run_id_only_when_not_f32() {
        let c: RunConfig = toml::from_str("precision = \"bf16\"").unwrap();
        assert_eq!(c.precision, Precision::Bf16);
        assert!(c.validate().is_ok());
        assert!(
            c.canonical_json().ends_with(r#","precision":"bf16"}"#),
            "{}",
            c.canonical_json()
        );
        let f32: RunConfig = toml::from_str("precision = \"f32\"").unwrap();
        assert_eq!(f32.canonical_json(), RunConfig::default().canonical_json());
        assert!(
            c.flatten()
                .contains(&("precision".into(), serde_json::json!("bf16")))
        );
        let e = toml::from_str::<RunConfig>("precision = \"fp16\"").unwrap_err();
        assert!(
            e.to_string().contains("f32") && e.to_string().contains("bf16"),
            "{e}"
        );
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
            "crop",
            "augment.crops",
        ] {
            assert!(
                keys.contains(&key.to_string()),
                "{key} missing from {keys:?}"
            );
        }
    }

    #[test]
    fn crop_and_the_new_model_knobs_keep_old_canonical_json_and_name_their_keys() {
        // Unset crop, one crop per image and the residual defaults leave the JSON as it was.
        let c: RunConfig = toml::from_str(
            "crop = 40\nmodel = { kind = \"residual\", width = 64, depth = 2, stages = 4, stem_pool = false }\n[augment]\ncrops = 10",
        )
        .unwrap();
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        assert_eq!(c.input_side(), 40);
        let json = c.canonical_json();
        assert!(
            json.ends_with(r#""crop":40}"#)
                && json.contains(r#""stages":4,"stem_pool":false"#)
                && json.contains(r#""crops":10"#),
            "{json}"
        );
        let back: RunConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let old: RunConfig =
            toml::from_str("model = { kind = \"residual\", width = 32, depth = 2 }").unwrap();
        assert_eq!(
            old.canonical_json(),
            r#"{"model":{"kind":"residual","width":32,"depth":2},"dropout":0.5,"epochs":30,"batch_size":64,"optimizer":"adam","lr":0.001,"loss":"cross_entropy","augment":{"hflip":0.5,"rotation":10.0,"zoom":0.1,"shift":0.1}}"#
        );
        assert_eq!(RunConfig::default().input_side(), 48);
        let flat = c.flatten();
        assert!(flat.contains(&("crop".into(), serde_json::json!(40))));
        assert!(flat.contains(&("augment.crops".into(), serde_json::json!(10))));
        assert!(flat.contains(&("model.stages".into(), serde_json::json!(4))));
        // At their defaults the residual knobs stay out of `run_params` and of sweep labels and
        // leaderboards, which list a model axis' keys: shipped sweeps show what they showed.
        let keys: Vec<String> = old.flatten().into_iter().map(|(k, _)| k).collect();
        assert!(
            !keys
                .iter()
                .any(|k| k == "model.stages" || k == "model.stem_pool")
        );

        for crop in [15, 49, 0] {
            let c = RunConfig {
                crop: Some(crop),
                ..RunConfig::default()
            };
            let e = c.validate().unwrap_err();
            assert_eq!(e.key, "crop");
            assert!(e.message.contains(&format!("crop = {crop}")), "{e:?}");
        }
        // A crop the model's pooling would erase names the model.
        let c: RunConfig =
            toml::from_str("crop = 24\nmodel = { kind = \"compact\", channels = [8, 8, 8, 8, 8] }")
                .unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "crop");
        assert!(
            e.message.contains("crop = 24") && e.message.contains("compact"),
            "{e:?}"
        );
        // Several crops per image need a crop.
        let c: RunConfig = toml::from_str("[augment]\ncrops = 2").unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "augment.crops");
        let c: RunConfig = toml::from_str("[augment]\ncrops = 0").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "augment.crops");
        // So does erasing each crop.
        let c: RunConfig = toml::from_str("[augment]\nerasing_on = \"crop\"").unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "augment.erasing_on");
        assert!(e.message.contains("needs a `crop`"), "{e:?}");
        let c: RunConfig = toml::from_str("crop = 40\n[augment]\nerasing_on = \"crop\"").unwrap();
        assert!(c.validate().is_ok());
        // The baseline adapts to a crop; every model accepts the smallest.
        for model in ["baseline", "compact", "residual", "attention", "vgg"] {
            let c: RunConfig = toml::from_str(&format!("crop = 16\nmodel = \"{model}\"")).unwrap();
            assert!(c.validate().is_ok(), "{model}: {:?}", c.validate());
        }
    }
}
