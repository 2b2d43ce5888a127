//! Training without a database: `train_run` hands its epochs to an in-memory sink, whose verdict
//! decides whether the run goes on. On the mini sample in tests/fixtures, on the CPU.

use fer_lab::config::RunConfig;
use fer_lab::data::{FerData, Split};
use fer_lab::device::DeviceSpec;
use fer_lab::store::EpochRow;
use fer_lab::train::hook::Progress;
use fer_lab::train::sink::{EpochSink, StopReason, Verdict};
use fer_lab::train::{self, RunSpec, Splits, TrainError};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Keeps every epoch it is shown; asks to stop once it has seen `stop_after` epochs.
struct Memory {
    seen: Arc<Mutex<Vec<EpochRow>>>,
    stop_after: Option<usize>,
}

impl EpochSink for Memory {
    fn epoch(&mut self, epochs: &[EpochRow]) -> Verdict {
        let mut seen = self.seen.lock().unwrap();
        seen.push(*epochs.last().expect("the finished epoch is last"));
        match self.stop_after {
            Some(n) if seen.len() >= n => Verdict::Stop(StopReason::Interrupted),
            _ => Verdict::Continue,
        }
    }
}

fn mini() -> FerData {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fer2013-mini");
    fer_lab::data::open(&path).unwrap().0
}

fn splits(data: &FerData) -> Splits {
    Splits {
        train: Arc::new(data.split(Split::Train).clone()),
        val: Arc::new(data.split(Split::Val).clone()),
        test: Arc::new(data.split(Split::Test).clone()),
    }
}

fn tiny() -> RunConfig {
    RunConfig {
        epochs: 2,
        batch_size: 32,
        ..RunConfig::default()
    }
}

/// Trains `config` into a fresh [`Memory`] sink; returns the outcome and what the sink saw.
fn train(
    config: &RunConfig,
    dir: &Path,
    resume_from: Option<usize>,
    earlier: Vec<EpochRow>,
    stop_after: Option<usize>,
) -> (Result<train::RunOutcome, TrainError>, Vec<EpochRow>) {
    let data = mini();
    let device = DeviceSpec::Flex.device();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let spec = RunSpec {
        config,
        seed: 7,
        device: &device,
        artifact_dir: dir,
        resume_from,
        progress: Arc::new(Progress::default()),
    };
    let sink = Memory {
        seen: seen.clone(),
        stop_after,
    };
    let outcome = train::train_run(&spec, &splits(&data), earlier, Box::new(sink));
    let seen = seen.lock().unwrap().clone();
    (outcome, seen)
}

#[test]
fn a_tiny_run_hands_every_epoch_to_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, seen) = train(&tiny(), dir.path(), None, Vec::new(), None);
    let outcome = outcome.expect("a two-epoch run trains");
    assert_eq!(seen.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
    for row in &seen {
        assert!(row.train_loss.is_some_and(f64::is_finite), "{row:?}");
        assert!(
            row.val_acc.is_some_and(|a| (0.0..=1.0).contains(&a)),
            "{row:?}"
        );
        assert!(row.lr.is_some() && row.secs.is_some(), "{row:?}");
    }
    // What the sink saw is what the outcome reports, and the best epoch is one of them.
    assert_eq!(outcome.epochs.len(), 2);
    assert_eq!(outcome.epochs[1].val_acc, seen[1].val_acc);
    assert!([1, 2].contains(&outcome.best_epoch));
    assert!(outcome.best_model.is_file());
}

#[test]
fn a_sink_that_says_stop_after_epoch_one_stops_the_run_there_and_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny();
    let (outcome, seen) = train(&config, dir.path(), None, Vec::new(), Some(1));
    assert!(
        matches!(outcome, Err(TrainError::Interrupted { epoch: 1 })),
        "{outcome:?}"
    );
    assert_eq!(seen.len(), 1, "no epoch after the stop: {seen:?}");
    // burn-train checks for a stop before it checkpoints the epoch, and the sink runs on its
    // event thread: whether epoch 1 was checkpointed before the stop was seen is a race (as it
    // is for the worker's graceful stop). Either way the run goes on from what is on disk.
    let from = train::resumable_epoch(dir.path(), 1);
    assert!(matches!(from, None | Some(1)), "{from:?}");

    // The caller passes the epochs it kept; a resumed run's sink sees only what is new.
    let (outcome, resumed) = train(&config, dir.path(), from, seen.clone(), None);
    let outcome = outcome.expect("the resumed run finishes");
    let new: Vec<usize> = resumed.iter().map(|r| r.epoch).collect();
    if from == Some(1) {
        assert_eq!(new, [2]);
        assert_eq!(outcome.epochs[0].val_acc, seen[0].val_acc);
    } else {
        assert_eq!(new, [1, 2]);
    }
    assert_eq!(outcome.epochs.len(), 2);
}
