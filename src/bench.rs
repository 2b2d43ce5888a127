//! `fer-lab bench`: training-step throughput of each model on a device — forward, backward and
//! an Adam step on a fixed batch of real training images (synthetic pixels only when no data is
//! imported), timed after warm-up, median over the steps. Speed is a
//! benchmark, never a test: run it, read the table, write the numbers in docs/benchmarks.md.

use crate::config::{ModelSpec, RunConfig};
use crate::data::{IMAGE_PIXELS, IMAGE_SIDE, SplitImages};
use crate::loss::Loss;
use crate::model::{self, FerModel};
use crate::table::Rows;
use burn::optim::GradientsParams;
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

/// A `--model` the command line gave that names no model, with why.
#[derive(Debug, thiserror::Error)]
#[error("--model {text}: {why}")]
pub struct BadModel {
    text: String,
    why: String,
}

/// A model as the command line gives it: a name or an inline TOML table.
pub fn parse_model(text: &str) -> Result<ModelSpec, BadModel> {
    let value = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        format!("\"{text}\"")
    };
    let config: RunConfig = toml::from_str(&format!("model = {value}")).map_err(|e| BadModel {
        text: text.to_string(),
        why: e.message().to_string(),
    })?;
    Ok(config.model)
}

/// A model, Adam and one fixed batch, ready to take training steps.
///
/// The batch is `batch` real training images from `train` when given: activations of real faces
/// decide how branchy kernels such as max-pooling run (a synthetic periodic pattern made the
/// pooling twice as cheap as on real data). Without data the pixels are synthetic.
pub struct StepBench {
    model: Option<FerModel>,
    optim: burn::optim::ModuleOptimizer,
    loss: Loss,
    images: Tensor<4>,
    targets: Tensor<1, Int>,
}

impl StepBench {
    pub fn new(
        spec: &ModelSpec,
        batch: usize,
        device: &Device,
        train: Option<&SplitImages>,
    ) -> Self {
        let device = device.clone().autodiff();
        let config = RunConfig {
            model: spec.clone(),
            ..RunConfig::default()
        };
        device.seed(1);
        let model = FerModel::new(&config.model, IMAGE_SIDE, config.dropout, &device);
        let (images, targets) = fixed_batch(batch, &device, train);
        StepBench {
            model: Some(model),
            optim: crate::optim::fused_adam::FusedAdam::new(0.0).init(),
            loss: Loss::cross_entropy(),
            images,
            targets,
        }
    }

    /// Forward and loss, backward, Adam: the three phases of a step, each given to `phase`.
    fn step_in(&mut self, mut phase: impl FnMut(Phase, &mut dyn FnMut())) -> f32 {
        let model = self.model.take().expect("a model between steps");
        let mut loss = None;
        phase(Phase::Forward, &mut || {
            loss = Some(
                self.loss
                    .forward(model.forward(self.images.clone()), self.targets.clone()),
            );
        });
        let loss = loss.expect("forward ran");
        let mut grads = None;
        phase(Phase::Backward, &mut || {
            grads = Some(GradientsParams::from_grads(loss.backward(), &model));
        });
        let mut model = Some(model);
        phase(Phase::Optimizer, &mut || {
            let m = model.take().expect("one optimizer step");
            model = Some(
                self.optim
                    .step(1e-3, m, grads.take().expect("backward ran")),
            );
        });
        self.model = model;
        // Reading the loss back waits for the step to finish on asynchronous devices.
        loss.into_scalar::<f32>()
    }

    /// One training step.
    pub fn step(&mut self) -> f32 {
        self.step_in(|_, run| run())
    }
}

/// The phases of a training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Backward,
    Optimizer,
}

/// `batch` real training images from `train` (spread over the split, a stride prime to its
/// size, as a shuffled loader would), or synthetic pixels without data, with their labels.
fn fixed_batch(
    batch: usize,
    device: &Device,
    train: Option<&SplitImages>,
) -> (Tensor<4>, Tensor<1, Int>) {
    let (pixels, labels): (Vec<f32>, Vec<i64>) = match train.filter(|t| !t.is_empty()) {
        Some(train) => {
            // Spread over the split (a stride prime to its size), as a shuffled loader would.
            let picks: Vec<usize> = (0..batch)
                .map(|i| (i * 104_729 + 17) % train.len())
                .collect();
            let mut pixels = Vec::with_capacity(batch * IMAGE_PIXELS);
            for &i in &picks {
                pixels.extend(train.image(i).iter().map(|&p| f32::from(p) / 255.0));
            }
            let labels = picks
                .iter()
                .map(|&i| i64::from(train.label(i).id()))
                .collect();
            (pixels, labels)
        }
        None => (
            (0..batch * IMAGE_PIXELS)
                .map(|i| ((i * 7919) % 255) as f32 / 255.0)
                .collect(),
            (0..batch as i64).map(|i| i % 7).collect(),
        ),
    };
    let images = Tensor::<4>::from_data(
        TensorData::new(pixels, [batch, 1, IMAGE_SIDE, IMAGE_SIDE]),
        device,
    );
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), device);
    (images, targets)
}

/// Median seconds of one training step of a fused group of `members` runs of `spec` at
/// `batch` each (every member on the same fixed batch; Adam, dropout 0.5), over `steps` timed
/// steps: what [`crate::train::group`] runs per step.
pub fn fused_step_seconds(
    spec: &ModelSpec,
    members: usize,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
    train: Option<&SplitImages>,
) -> f64 {
    use crate::model::fuse;
    use crate::optim::members::{MemberOptimizer, MemberRates, MemberSettings};
    let device = device.clone().autodiff();
    let solos: Vec<FerModel> = (0..members)
        .map(|m| {
            device.seed(m as u64 + 1);
            FerModel::new(spec, IMAGE_SIDE, 0.5, &device).with_weights_drawn()
        })
        .collect();
    let mut model = Some(fuse::stack(spec, IMAGE_SIDE, &solos, &device));
    drop(solos);
    let rates = MemberRates::default();
    rates.set(vec![1e-3; members]);
    let settings = MemberSettings {
        weight_decay: 0.0,
        grad_clip: None,
        momentum: 0.0,
    };
    let adam = crate::optim::OptimizerSpec::Adam(crate::optim::AdamConfig {});
    let mut optim = MemberOptimizer::new(&adam, vec![settings; members], rates).init();
    let (images, targets) = fixed_batch(batch, &device, train);
    let images = fuse::images(vec![images; members]);
    let loss = Loss::cross_entropy();
    median_seconds(warmup, steps, || {
        let m = model.take().expect("a model between steps");
        let logits = m.forward(images.clone());
        let total = (0..members)
            .map(|i| loss.forward(fuse::logits_of(logits.clone(), i), targets.clone()))
            .reduce(|a, b| a + b)
            .expect("at least one member");
        let grads = GradientsParams::from_grads(total.backward(), &m);
        model = Some(optim.step(1e-3, m, grads));
        // Reading the loss back waits for the step on asynchronous devices.
        total.into_scalar::<f32>();
    })
}

/// `fer-lab bench fused`: one run's training step alone, then fused groups of each size in
/// `members`, with the throughput of model-images (members × batch per step) and the speed-up
/// over training the same runs one at a time.
#[allow(clippy::too_many_arguments)]
pub fn fused_rows(
    spec: &ModelSpec,
    members: &[usize],
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
    device_name: &str,
    train: Option<&SplitImages>,
) -> Rows {
    let alone = train_step_seconds(spec, batch, warmup, steps, device, train);
    let mut rows = Rows::new(
        [
            "model",
            "device",
            "batch",
            "runs",
            "how",
            "step_ms",
            "img_per_s",
            "vs_one_at_a_time",
        ]
        .map(String::from),
    );
    let mut row = |runs: usize, how: &str, seconds: f64| {
        rows.push(vec![
            Value::from(spec.kind()),
            Value::from(device_name),
            Value::from(batch),
            Value::from(runs),
            Value::from(how),
            Value::from((seconds * 1e4).round() / 10.0),
            Value::from(((runs * batch) as f64 / seconds).round() as u64),
            Value::from(((runs as f64 * alone / seconds) * 100.0).round() / 100.0),
        ]);
    };
    row(1, "alone", alone);
    for &m in members {
        let seconds = fused_step_seconds(spec, m, batch, warmup, steps, device, train);
        row(m, "fused", seconds);
    }
    rows
}

/// Median seconds of one training step of `spec` at `batch`, over `steps` timed steps.
pub fn train_step_seconds(
    spec: &ModelSpec,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
    train: Option<&SplitImages>,
) -> f64 {
    let mut bench = StepBench::new(spec, batch, device, train);
    median_seconds(warmup, steps, || {
        bench.step();
    })
}

/// One traced operator: the phase of the step, the ATen operator or autograd node (`backward`
/// scope), and the shapes of its tensor inputs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TracedOp {
    pub phase: String,
    pub backward_node: bool,
    pub name: String,
    pub shapes: String,
}

/// What libtorch runs in one training step of `spec` (after two untraced steps): every
/// top-level ATen operator and every autograd node, per phase, as `(op, calls)` in first-call
/// order. This is the structural check that each layer's forward and backward are libtorch's
/// native kernels with PyTorch's shapes; `bench/pytorch_reference.py --stage ops` prints the
/// same for PyTorch's module.
#[cfg(feature = "tch")]
pub fn traced_step(
    spec: &ModelSpec,
    batch: usize,
    device: &Device,
    train: Option<&SplitImages>,
) -> Vec<(TracedOp, usize)> {
    let mut bench = StepBench::new(spec, batch, device, train);
    bench.step();
    bench.step();
    let mut ops: Vec<(TracedOp, usize)> = Vec::new();
    bench.step_in(|phase, run| {
        let ((), lines) = crate::model::torch_native::trace(run);
        for line in lines.lines() {
            let mut fields = line.split('\t');
            let (Some(depth), Some(scope), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let backward_node = scope == "backward";
            // Top-level operators, and every autograd node (they run nested in the engine).
            if depth != "0" && !backward_node {
                continue;
            }
            let op = TracedOp {
                phase: format!("{phase:?}").to_lowercase(),
                backward_node,
                name: name
                    .trim_start_matches("autograd::engine::evaluate_function: ")
                    .to_string(),
                shapes: fields.next().unwrap_or("").to_string(),
            };
            match ops.iter_mut().find(|(o, _)| *o == op) {
                Some((_, calls)) => *calls += 1,
                None => ops.push((op, 1)),
            }
        }
    });
    ops
}

/// `fer-lab bench ops`: [`traced_step`] as a table.
#[cfg(feature = "tch")]
pub fn ops_rows(
    spec: &ModelSpec,
    batch: usize,
    device: &Device,
    train: Option<&SplitImages>,
) -> Rows {
    let mut rows = Rows::new(["phase", "kind", "op", "input_shapes", "calls"]);
    for (op, calls) in traced_step(spec, batch, device, train) {
        rows.push(vec![
            Value::from(op.phase),
            Value::from(if op.backward_node {
                "autograd node"
            } else {
                "aten op"
            }),
            Value::from(op.name),
            Value::from(op.shapes),
            Value::from(calls),
        ]);
    }
    rows
}

/// The table `fer-lab bench` prints.
pub fn run(
    models: &[ModelSpec],
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
    device_name: &str,
    train: Option<&SplitImages>,
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
        let size = model::size(
            &FerModel::new(&config.model, IMAGE_SIDE, config.dropout, device),
            &config.model,
            IMAGE_SIDE,
        );
        let secs = train_step_seconds(spec, batch, warmup, steps, device, train);
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

/// What `fer-lab bench stage` measures; the PyTorch reference (`bench/pytorch_reference.py`)
/// has the same stages, so `bench/compare.sh` can put the two side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Forward + backward + Adam on one fixed batch of real training images.
    Step,
    /// The data pipeline alone: a batch of real training images through fer-lab's loader with
    /// its default augmentation, into a tensor.
    Data,
    /// Forward passes over the real validation split, no gradients.
    Eval,
}

/// Peak resident memory of this process, MB.
pub fn peak_rss_mb() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss() as f64 / 1024.0)
        .unwrap_or(f64::NAN)
}

/// One stage's measurement as the JSON line `bench/compare.sh` reads. `params` is counted as
/// `fer-lab bench` and the runs table count it (burn's `num_params`, running statistics
/// included), so a line shows which net was measured; on a GPU, `gpu_process_mb` is what
/// nvidia-smi says this process holds (its CUDA context and libtorch's cache included) —
/// PyTorch's side reports the same measure.
pub fn stage_line(
    stage: Stage,
    spec: &ModelSpec,
    batch: usize,
    seconds: f64,
    images: usize,
    threads: usize,
    device: (&str, &Device),
) -> Value {
    let config = RunConfig {
        model: spec.clone(),
        ..RunConfig::default()
    };
    let params = FerModel::new(&config.model, IMAGE_SIDE, config.dropout, device.1).num_params();
    let mut line = serde_json::json!({
        "side": "fer-lab",
        "stage": format!("{stage:?}").to_lowercase(),
        "model": spec.kind(),
        "params": params,
        "batch": batch,
        "threads": threads,
        "device": device.0,
        "seconds": seconds,
        "img_s": images as f64 / seconds,
        "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
    });
    if device.0.starts_with("cuda") {
        let pid = std::process::id();
        if let Some((_, mib)) = crate::device::discover::gpu_memory_by_pid()
            .into_iter()
            .find(|(p, _)| *p == pid)
        {
            line["gpu_process_mb"] = Value::from(mib);
        }
    }
    line
}

/// Median seconds per batch of the data pipeline on real training images.
pub fn data_seconds(
    data: &crate::data::FerData,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
) -> f64 {
    use burn::data::dataloader::batcher::Batcher;
    let images = std::sync::Arc::new(data.train.clone());
    let batcher = crate::data::batcher::FerBatcher::train(
        images,
        crate::data::augment::Augment::default(),
        None,
        1,
    );
    let n = data.train.len();
    let mut times = Vec::with_capacity(steps);
    for step in 0..warmup + steps {
        let items: Vec<crate::data::batcher::FerItem> = (0..batch)
            .map(|i| crate::data::batcher::FerItem {
                index: (step * 7919 + i * 104_729) % n,
                epoch: 0,
            })
            .collect();
        let started = Instant::now();
        // Building the batch tensor is the loader's whole job on the CPU backends (both copy the
        // host pixels in `from_data`); reading it back would add a copy no training step makes.
        let b = batcher.batch(items, device);
        std::hint::black_box(&b);
        if step >= warmup {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    median(times)
}

/// Seconds for one pass of `spec` (fresh weights) over the validation split; the second of two
/// passes, so allocation warm-up is not counted.
pub fn eval_seconds(
    data: &crate::data::FerData,
    spec: &ModelSpec,
    batch: usize,
    device: &Device,
) -> f64 {
    let config = RunConfig {
        model: spec.clone(),
        ..RunConfig::default()
    };
    let model = crate::train::init_model(&config, 1, device);
    let val = std::sync::Arc::new(data.val.clone());
    let inference = crate::train::eval::Inference::of(&config);
    crate::train::eval::evaluate(&model, &val, batch, inference, device);
    let started = Instant::now();
    crate::train::eval::evaluate(&model, &val, batch, inference, device);
    started.elapsed().as_secs_f64()
}

/// The median of timed samples (the upper one of an even count).
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median milliseconds of `f` over `steps` calls after `warmup`; reading the result back waits
/// for asynchronous devices.
fn median_ms<const D: usize>(warmup: usize, steps: usize, mut f: impl FnMut() -> Tensor<D>) -> f64 {
    median_seconds(warmup, steps, || {
        let _ = f().into_data();
    }) * 1e3
}

/// Median seconds of `f` over `steps` calls after `warmup` untimed ones.
fn median_seconds(warmup: usize, steps: usize, mut f: impl FnMut()) -> f64 {
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let started = Instant::now();
        f();
        if i >= warmup {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    median(times)
}

/// `fer-lab bench conv`: each of the baseline's two convolutions in training, forward +
/// backward, burn's module against fer-lab's layer (`model::conv` on flex, libtorch's own
/// kernels on LibTorch); on flex also the weight and bias gradients alone.
pub fn conv_rows(device: &Device, batch: usize, steps: usize) -> Rows {
    use crate::model::conv::{ValidConv, bias_grad};
    use crate::model::layers::{self, Layer};
    use burn::backend::Dispatch;
    use burn::backend::ops::{ConvOptions, ModuleOps};
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    let mut rows = Rows::new(["layer", "what", "burn_ms", "fer_lab_ms", "speedup"]);
    let mut push = |layer: &str, what: &str, burn: f64, ours: f64| {
        rows.push(vec![
            Value::from(layer),
            Value::from(what),
            Value::from((burn * 100.0).round() / 100.0),
            Value::from((ours * 100.0).round() / 100.0),
            Value::from((burn / ours * 100.0).round() / 100.0),
        ]);
    };
    // The baseline's layers: 1 → 32 on the 48×48 image, 32 → 64 on the pooled 23×23 map.
    for (c_in, c_out, side) in [(1, 32, IMAGE_SIDE), (32, 64, 23)] {
        let layer = format!("{c_in}→{c_out}, {side}×{side}");
        let out = side - 2;
        let x = Tensor::<4>::random([batch, c_in, side, side], Distribution::Default, device);
        let w = Tensor::<4>::random([c_out, c_in, 3, 3], Distribution::Default, device);
        let b = Tensor::<1>::random([c_out], Distribution::Default, device);
        let g = Tensor::<4>::random([batch, c_out, out, out], Distribution::Default, device);
        let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let dispatch = |t: &Tensor<4>| t.clone().into_dispatch();
        let on_flex = matches!(device.as_dispatch(), burn::backend::DispatchDevice::Flex(_));
        // The gradient pieces are flex's extension (src/model/conv.rs).
        if on_flex {
            let burn = median_ms(3, steps, || {
                Tensor::<4>::from_dispatch(
                    <Dispatch as ModuleOps<Dispatch>>::conv2d_weight_backward(
                        dispatch(&x),
                        dispatch(&w),
                        dispatch(&g),
                        options.clone(),
                    ),
                )
            });
            let ours = median_ms(3, steps, || {
                Tensor::<4>::from_dispatch(<Dispatch as ValidConv>::conv2d_valid_weight_grad(
                    dispatch(&x),
                    dispatch(&w),
                    dispatch(&g),
                    options.clone(),
                ))
            });
            push(&layer, "weight gradient", burn, ours);
            let burn = median_ms(3, steps, || {
                Tensor::<1>::from_dispatch(<Dispatch as ModuleOps<Dispatch>>::conv2d_bias_backward(
                    dispatch(&x),
                    b.clone().into_dispatch(),
                    dispatch(&g),
                ))
            });
            let ours = median_ms(3, steps, || {
                Tensor::<1>::from_dispatch(bias_grad::<Dispatch>(dispatch(&g)))
            });
            push(&layer, "bias gradient", burn, ours);
        }

        // The layer in training: forward, then backward into its weight, bias and (after the
        // first layer, whose input is the image) its input.
        let autodiff = device.clone().autodiff();
        let conv = Conv2dConfig::new([c_in, c_out], [3, 3]).init(&autodiff);
        let xa = Tensor::<4>::from_data(x.to_data(), &autodiff);
        let ga = Tensor::<4>::from_data(g.to_data(), &autodiff);
        let train = |forward: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            median_ms(3, steps, || {
                let input = if c_in > 1 {
                    xa.clone().require_grad()
                } else {
                    xa.clone()
                };
                let grads = (forward(input) * ga.clone()).sum().backward();
                conv.weight.val().grad(&grads).expect("weight gradient")
            })
        };
        let burn = train(&|input| conv.forward(input));
        let ours = train(&|input| layers::features(input, vec![Layer::Conv(&conv)]));
        push(&layer, "forward + backward", burn, ours);
    }
    rows
}
