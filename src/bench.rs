//! `fer-lab bench`: training-step throughput of each model on a device — forward, backward and
//! an Adam step on a fixed batch, timed after warm-up, median over the steps. Speed is a
//! benchmark, never a test: run it, read the table, write the numbers in docs/benchmarks.md.

use crate::config::{ModelSpec, RunConfig};
use crate::data::IMAGE_SIDE;
use crate::model::{self, FerModel};
use crate::table::Rows;
use crate::train::loss::Loss;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use serde_json::Value;
use std::time::Instant;

/// The models `bench` measures when none is named: each at its default knobs.
pub fn default_models() -> Vec<ModelSpec> {
    ["baseline", "compact", "residual", "attention", "vgg"]
        .iter()
        .map(|name| parse_model(name).expect("built-in model names parse"))
        .collect()
}

/// A model as the command line gives it: a name or an inline TOML table.
pub fn parse_model(text: &str) -> Result<ModelSpec, String> {
    let value = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        format!("\"{text}\"")
    };
    let config: RunConfig = toml::from_str(&format!("model = {value}"))
        .map_err(|e| format!("--model {text}: {}", e.message()))?;
    Ok(config.model)
}

/// Median seconds of one training step of `spec` at `batch`, over `steps` timed steps.
pub fn train_step_seconds(
    spec: &ModelSpec,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
) -> f64 {
    let device = device.clone().autodiff();
    let config = RunConfig {
        model: spec.clone(),
        ..RunConfig::default()
    };
    device.seed(1);
    let mut model = FerModel::new(&config, &device);
    let mut optim = AdamConfig::new().init();
    let loss = Loss::cross_entropy();
    let pixels: Vec<f32> = (0..batch * IMAGE_SIDE * IMAGE_SIDE)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect();
    let images = Tensor::<4>::from_data(
        TensorData::new(pixels, [batch, 1, IMAGE_SIDE, IMAGE_SIDE]),
        &device,
    );
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 7).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let mut times = Vec::with_capacity(steps);
    for step in 0..warmup + steps {
        let started = Instant::now();
        let l = loss.forward(model.forward(images.clone()), targets.clone());
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(1e-3, model, grads);
        // Reading a weight back waits for the step to finish on asynchronous devices.
        let _ = l.into_scalar::<f32>();
        if step >= warmup {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The table `fer-lab bench` prints.
pub fn run(
    models: &[ModelSpec],
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
    device_name: &str,
) -> Rows {
    let mut rows = Rows::new([
        "model",
        "knobs",
        "params",
        "mflops_per_image",
        "device",
        "batch",
        "step_ms",
        "img_per_s",
    ]);
    for spec in models {
        let config = RunConfig {
            model: spec.clone(),
            ..RunConfig::default()
        };
        let size = model::size(&FerModel::new(&config, device), &config);
        let secs = train_step_seconds(spec, batch, warmup, steps, device);
        let knobs = config
            .flatten()
            .into_iter()
            .filter(|(k, _)| k.starts_with("model.") && k != "model.kind")
            .map(|(k, v)| format!("{}={}", &k[6..], crate::table::cell_text(&v)))
            .collect::<Vec<_>>()
            .join(" ");
        rows.push(vec![
            Value::from(spec.kind()),
            Value::from(knobs),
            Value::from(size.params),
            Value::from((size.flops as f64 / 1e6 * 10.0).round() / 10.0),
            Value::from(device_name),
            Value::from(batch),
            Value::from((secs * 1e4).round() / 10.0),
            Value::from((batch as f64 / secs).round()),
        ]);
    }
    rows
}
