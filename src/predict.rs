//! `fer-lab predict` and `fer-lab export`: use a trained run's best-on-val model outside
//! fer-lab's sweeps — classify any image, or hand the weights and their config on.

use crate::config::RunConfig;
use crate::data::IMAGE_PIXELS;
use crate::emotion::{Emotion, NUM_CLASSES};
use crate::model::FerModel;
use crate::store::{Store, StoreError};
use crate::train::{self, BEST_MODEL};
use burn::module::Module;
use burn::prelude::Device;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "no run `{0}` in the database (ids from `fer-lab runs`; a unique prefix of 4+ characters will do)"
    )]
    NoSuchRun(String),
    #[error("run id prefix `{0}` matches several runs: {1}")]
    Ambiguous(String, String),
    #[error("sweep {0} has no finished run yet")]
    NoFinishedRun(String),
    #[error("run {run} has no trained model at {path} (is it finished? `fer-lab runs`)")]
    NoModel { run: String, path: PathBuf },
    #[error("run {run}: its stored config does not parse: {why}")]
    Config { run: String, why: String },
    #[error("{path}: not a readable image: {why}")]
    Image { path: PathBuf, why: String },
    #[error(transparent)]
    Load(crate::train::LoadError),
    #[error("{path}: {why}")]
    Write { path: PathBuf, why: String },
}

/// A finished run whose model can be loaded.
#[derive(Debug, Clone)]
pub struct TrainedRun {
    pub id: String,
    pub config: RunConfig,
    pub model_path: PathBuf,
    pub val_acc: Option<f64>,
}

/// Which run: `--run ID` (or a unique prefix), else the best finished run of a sweep on val
/// accuracy (`--best [--sweep NAME]`).
pub fn resolve(
    store: &Store,
    run: Option<&str>,
    sweep: Option<&str>,
) -> Result<TrainedRun, PredictError> {
    let id = match run {
        Some(prefix) => {
            let ids = store.runs_matching(prefix)?;
            match ids.as_slice() {
                [] => return Err(PredictError::NoSuchRun(prefix.into())),
                [one] => one.clone(),
                many if many.iter().any(|i| i == prefix) => prefix.to_string(),
                many => return Err(PredictError::Ambiguous(prefix.into(), many.join(", "))),
            }
        }
        None => {
            let (sweep_id, name) = store.resolve_sweep(sweep)?;
            store
                .best_finished_run(sweep_id)?
                .ok_or(PredictError::NoFinishedRun(name))?
        }
    };
    trained_run(store, id)
}

/// A finished run by its full id, with its model.
pub fn trained_run(store: &Store, id: String) -> Result<TrainedRun, PredictError> {
    let row = store
        .trained_run(&id)?
        .ok_or_else(|| PredictError::NoSuchRun(id.clone()))?;
    let config: RunConfig =
        serde_json::from_str(&row.config_json).map_err(|e| PredictError::Config {
            run: id.clone(),
            why: e.to_string(),
        })?;
    let model_path = PathBuf::from(row.artifact_dir.as_deref().unwrap_or("")).join(BEST_MODEL);
    if !model_path.is_file() {
        return Err(PredictError::NoModel {
            run: id,
            path: model_path,
        });
    }
    Ok(TrainedRun {
        id,
        config,
        model_path,
        val_acc: row.val_acc,
    })
}

/// Any image fer-lab can decode (JPEG, PNG, BMP), as 48×48 grayscale: center-cropped to a
/// square and resized, the way `data import --resize` does it.
pub fn load_image(path: &Path) -> Result<[u8; IMAGE_PIXELS], PredictError> {
    let bad = |why: String| PredictError::Image {
        path: path.into(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let image = image::load_from_memory(&bytes).map_err(|e| bad(e.to_string()))?;
    let gray = crate::data::import::tree::to_48x48(&image);
    Ok(gray
        .into_raw()
        .try_into()
        .expect("48×48 luma image has 2304 bytes"))
}

/// One image's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub image: PathBuf,
    pub emotion: Emotion,
    pub probabilities: [f32; NUM_CLASSES],
}

/// Loads the run's model and classifies `images` (with the run's own test-time augmentation).
pub fn predict(
    run: &TrainedRun,
    images: &[PathBuf],
    device: &Device,
) -> Result<Vec<Prediction>, PredictError> {
    predict_ensemble(std::slice::from_ref(run), images, device)
}

/// Classifies `images` with every run's model (each with its own test-time augmentation) and
/// averages their class probabilities: the soft vote `report --ensemble` scores.
pub fn predict_ensemble(
    runs: &[TrainedRun],
    images: &[PathBuf],
    device: &Device,
) -> Result<Vec<Prediction>, PredictError> {
    let pixels: Vec<[u8; IMAGE_PIXELS]> = images
        .iter()
        .map(|p| load_image(p))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&[u8; IMAGE_PIXELS]> = pixels.iter().collect();
    let mut probs = vec![[0f32; NUM_CLASSES]; images.len()];
    for run in runs {
        let model =
            train::load_model(&run.config, &run.model_path, device).map_err(PredictError::Load)?;
        let inference = train::eval::Inference::on(&run.config, device);
        for (sum, p) in probs
            .iter_mut()
            .zip(train::eval::predict(&model, &refs, inference, device))
        {
            for (s, x) in sum.iter_mut().zip(p) {
                *s += x / runs.len() as f32;
            }
        }
    }
    Ok(images
        .iter()
        .zip(probs)
        .map(|(image, p)| {
            let best = (0..NUM_CLASSES)
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .expect("seven classes");
            Prediction {
                image: image.clone(),
                emotion: Emotion::from_id(best as u8).expect("a class id"),
                probabilities: p,
            }
        })
        .collect())
}

/// What an exported model reads: the whole 48×48 image, or its centre crop.
fn input_text(crop: Option<usize>) -> String {
    match crop {
        None => "N × 1 × 48 × 48 float32, grayscale scaled to [0, 1] (pixel / 255)".into(),
        Some(c) => format!(
            "N × 1 × {c} × {c} float32, grayscale scaled to [0, 1] (pixel / 255): the centre \
             {c}×{c} crop of the 48×48 image"
        ),
    }
}

/// Writes the run's model alone (burn's burnpack format, loadable with
/// `FerModel::new(&config.model, config.input_side(), config.dropout, &device).load_file(path)`) and `<out>.json` beside it: the config
/// that builds the network, the class order and the input it expects.
pub fn export(run: &TrainedRun, out: &Path, device: &Device) -> Result<PathBuf, PredictError> {
    let model: FerModel =
        train::load_model(&run.config, &run.model_path, device).map_err(PredictError::Load)?;
    let write = |path: &Path, why: String| PredictError::Write {
        path: path.into(),
        why,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| write(dir, e.to_string()))?;
    }
    // Both files appear whole or not at all: written beside, then renamed.
    let tmp = out.with_extension("tmp-export");
    model
        .save_file(&tmp)
        .map_err(|e| write(out, e.to_string()))?;
    let sidecar = PathBuf::from(format!("{}.json", out.display()));
    let meta = serde_json::json!({
        "run": run.id,
        "val_acc": run.val_acc,
        "config": run.config.full_json(),
        "classes": Emotion::ALL.iter().map(|e| e.name()).collect::<Vec<_>>(),
        "input": input_text(run.config.crop),
        "output": "N × 7 logits in the order of `classes` (softmax for probabilities)",
        "format": "burn 0.22 burnpack: FerModel::new(&config.model, config.input_side(), config.dropout, &device).load_file(path)",
    });
    let text = serde_json::to_string_pretty(&meta).expect("JSON serialises");
    std::fs::write(&sidecar, text).map_err(|e| write(&sidecar, e.to_string()))?;
    let saved = if tmp.is_file() {
        tmp.clone()
    } else {
        // burn may have added its own extension.
        tmp.with_extension("bpk")
    };
    std::fs::rename(&saved, out).map_err(|e| write(out, e.to_string()))?;
    Ok(sidecar)
}
