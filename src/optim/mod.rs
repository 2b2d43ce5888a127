//! The optimizer of a run: its spec ([`OptimizerSpec`], each kind's knobs, defaults and
//! validation) and the burn optimizer built from it ([`build`]). Weight decay is the run's
//! `weight_decay` (coupled L2 for adam and sgd, decoupled for adamw), gradient clipping its
//! `grad_clip`.

pub mod fused_adam;
pub mod members;
pub mod schedule;

use crate::invalid::InvalidValue;
use burn::optim::ModuleOptimizer;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use serde::{Deserialize, Serialize};

/// Which optimizer, with its own knobs: `optimizer = "adamw"` or
/// `optimizer = { kind = "sgd", momentum = 0.9 }` in a sweep (a knob of another kind is an
/// error). The bare name is read and written by `crate::config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerSpec {
    Adam(AdamConfig),
    #[serde(rename = "adamw")]
    AdamW(AdamWConfig),
    Sgd(SgdConfig),
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Adam(AdamConfig {})
    }
}

/// Adam (burn's defaults: β = (0.9, 0.999), ε = 1e-5): no knobs of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {}

/// AdamW, Adam with decoupled weight decay: no knobs of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {}

/// SGD with (optionally Nesterov) momentum, dampening 0; momentum 0 is plain SGD. (Not burn's
/// `SgdConfig`, which [`build`] makes from it.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    /// In [0, 1).
    #[serde(default = "point_nine")]
    pub momentum: f64,
    #[serde(default)]
    pub nesterov: bool,
}

fn point_nine() -> f64 {
    0.9
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: point_nine(),
            nesterov: false,
        }
    }
}

impl OptimizerSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            OptimizerSpec::Adam(_) => "adam",
            OptimizerSpec::AdamW(_) => "adamw",
            OptimizerSpec::Sgd(_) => "sgd",
        }
    }

    /// The name alone when the optimizer has no knobs (how run configs write it).
    pub fn bare_name(&self) -> Option<&'static str> {
        match self {
            OptimizerSpec::Adam(_) => Some("adam"),
            OptimizerSpec::AdamW(_) => Some("adamw"),
            OptimizerSpec::Sgd(_) => None,
        }
    }

    pub fn validate(&self) -> Result<(), InvalidValue> {
        match self {
            OptimizerSpec::Adam(_) | OptimizerSpec::AdamW(_) => Ok(()),
            OptimizerSpec::Sgd(c) => c.validate(),
        }
    }
}

impl SgdConfig {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let momentum = self.momentum;
        if !(0.0..1.0).contains(&momentum) {
            return Err(InvalidValue::new(
                "optimizer.momentum",
                format!("optimizer.momentum = {momentum} must be in [0, 1)"),
            ));
        }
        Ok(())
    }
}

fn clipped(optim: ModuleOptimizer, clip: Option<GradientClippingConfig>) -> ModuleOptimizer {
    match clip {
        Some(clip) => optim.with_grad_clipping(clip.init()),
        None => optim,
    }
}

/// The optimizer of a run; `weight_decay` is L2 for adam / sgd and decoupled for adamw;
/// `grad_clip` clips each parameter's gradient norm.
pub fn build(spec: &OptimizerSpec, weight_decay: f64, grad_clip: Option<f64>) -> ModuleOptimizer {
    let clip = grad_clip.map(|c| GradientClippingConfig::Norm(c as f32));
    let decay = (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32));
    match spec {
        // libtorch's fused kernel on LibTorch, burn's Adam elsewhere (src/optim/fused_adam.rs).
        OptimizerSpec::Adam(_) => {
            clipped(fused_adam::FusedAdam::new(weight_decay as f32).init(), clip)
        }
        OptimizerSpec::AdamW(_) => clipped(
            fused_adam::FusedAdamW::new(weight_decay as f32).init(),
            clip,
        ),
        OptimizerSpec::Sgd(SgdConfig { momentum, nesterov }) => burn::optim::SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum((*momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(*momentum)
                    .with_dampening(0.0)
                    .with_nesterov(*nesterov)
            }))
            .with_gradient_clipping(clip)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_knobs_read_as_their_kind() {
        let read =
            |text: &str| toml::from_str::<crate::config::RunConfig>(text).map(|c| c.optimizer);
        assert_eq!(
            read("optimizer = \"adamw\"").unwrap(),
            OptimizerSpec::AdamW(AdamWConfig {})
        );
        assert_eq!(
            read("optimizer = \"sgd\"").unwrap(),
            OptimizerSpec::Sgd(SgdConfig::default())
        );
        let e = read("optimizer = { kind = \"adam\", momentum = 0.9 }").unwrap_err();
        assert!(e.to_string().contains("momentum"), "{e}");
        assert!(read("optimizer = \"adam_w\"").is_err());
        let sgd = OptimizerSpec::Sgd(SgdConfig {
            momentum: -0.1,
            nesterov: false,
        });
        assert_eq!(sgd.validate().unwrap_err().key, "optimizer.momentum");
    }
}
