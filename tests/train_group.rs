//! A fused group trained as one model (`train::group`): each member follows the run it would
//! be alone, and a member that stops leaves the others training. On the mini sample, on the CPU.

use burn::prelude::Device;
use fer_lab::config::{LossSpec, Precision, RunConfig, Schedule};
use fer_lab::data::{FerData, Split};
use fer_lab::device::DeviceSpec;
use fer_lab::loss::FocalConfig;
use fer_lab::optim::schedule::CosineConfig;
use fer_lab::store::EpochRow;
use fer_lab::train::group::{self, Checkpoints, Member, MemberOutcome, train_group};
use fer_lab::train::hook::Progress;
use fer_lab::train::sink::{EpochSink, StopReason, Verdict};
use fer_lab::train::{self, RunSpec, Splits, TrainError};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Runs draw their first weights from the device's generator right after seeding it, and that
/// generator is one per process: tests that compare runs must not seed it at the same time.
static GENERATOR: Mutex<()> = Mutex::new(());

/// Keeps every epoch; asks to stop (pruned) once it has seen `prune_after` epochs.
#[derive(Default)]
struct Memory {
    seen: Vec<EpochRow>,
    prune_after: Option<usize>,
}

impl EpochSink for Memory {
    fn epoch(&mut self, epochs: &[EpochRow]) -> Verdict {
        self.seen
            .push(*epochs.last().expect("the finished epoch is last"));
        match self.prune_after {
            Some(n) if self.seen.len() >= n => Verdict::Stop(StopReason::Pruned),
            _ => Verdict::Continue,
        }
    }
}

fn splits() -> Splits {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fer2013-mini");
    let data: FerData = fer_lab::data::open(&path).unwrap().0;
    Splits {
        train: Arc::new(data.split(Split::Train).clone()),
        val: Arc::new(data.split(Split::Val).clone()),
        test: Arc::new(data.split(Split::Test).clone()),
    }
}

/// Two runs that differ in everything a group lets differ: learning rate and its schedule,
/// dropout, loss, label smoothing, weight decay, augmentation and seed.
fn two_runs() -> [(RunConfig, u64); 2] {
    let base = RunConfig {
        epochs: 2,
        batch_size: 32,
        ..RunConfig::default()
    };
    let other = RunConfig {
        lr: 3e-3,
        dropout: 0.3,
        loss: LossSpec::Focal(FocalConfig {
            gamma: 2.0,
            alpha: None,
        }),
        label_smoothing: 0.1,
        weight_decay: 1e-4,
        augment: fer_lab::data::augment::Augment::NONE,
        schedule: Schedule::Cosine(CosineConfig {
            warmup: 1,
            min_lr: 0.0,
        }),
        ..base.clone()
    };
    [(base, 7), (other, 11)]
}

/// A group's checkpoints in `dir`, starting afresh.
/// Each run as a member starting fresh, each with its sink.
fn fresh_members<'a>(
    runs: &'a [(RunConfig, u64); 2],
    sinks: &'a mut [Memory; 2],
) -> Vec<Member<'a>> {
    runs.iter()
        .zip(sinks.iter_mut())
        .map(|((config, seed), sink)| Member {
            config,
            seed: *seed,
            sink: sink as &mut dyn EpochSink,
            earlier: Vec::new(),
            stopped: false,
        })
        .collect()
}

/// `two_runs` in bf16 mixed precision.
fn two_runs_in_bf16() -> [(RunConfig, u64); 2] {
    two_runs().map(|(config, seed)| {
        let config = RunConfig {
            precision: Precision::Bf16,
            ..config
        };
        (config, seed)
    })
}

/// `members` trained as one group from scratch, its checkpoints in `dir`.
fn train_fresh(
    members: Vec<Member<'_>>,
    dir: &Path,
    splits: &Splits,
    device: &Device,
) -> Vec<Result<MemberOutcome, TrainError>> {
    train_group(members, &fresh(dir), splits, device, &Progress::default())
}

fn fresh(dir: &Path) -> Checkpoints<'_> {
    Checkpoints {
        dir,
        resume_from: None,
    }
}

fn alone(config: &RunConfig, seed: u64, splits: &Splits, on: DeviceSpec) -> train::RunOutcome {
    let dir = tempfile::tempdir().unwrap();
    let device = on.device();
    let spec = RunSpec {
        config,
        seed,
        device: &device,
        artifact_dir: dir.path(),
        resume_from: None,
        progress: Arc::new(Progress::default()),
    };
    struct Keep;
    impl EpochSink for Keep {
        fn epoch(&mut self, _: &[EpochRow]) -> Verdict {
            Verdict::Continue
        }
    }
    train::train_run(&spec, splits, Vec::new(), Box::new(Keep)).expect("the run trains alone")
}

#[test]
fn fused_members_follow_the_runs_they_would_be_alone() {
    members_follow_their_runs(DeviceSpec::Flex);
}

/// The same on libtorch's CPU, where the group's convolutions are libtorch's grouped kernels.
#[cfg(feature = "tch")]
#[test]
fn fused_members_follow_the_runs_they_would_be_alone_on_libtorch() {
    members_follow_their_runs(DeviceSpec::TchCpu);
}

/// Two runs on 40×40 crops, two random crops per image, evaluated on ten crops: a fused group
/// crops each member's images as the member's own run does.
#[test]
fn fused_members_on_crops_follow_the_runs_they_would_be_alone() {
    let runs = two_runs().map(|(config, seed)| {
        let config = RunConfig {
            crop: Some(40),
            augment: fer_lab::data::augment::Augment {
                crops: 2,
                ..config.augment
            },
            tta: fer_lab::config::Tta::TenCrop,
            ..config
        };
        config.validate().expect("a valid cropped run");
        (config, seed)
    });
    assert!(group::fusable(&runs[0].0, &runs[1].0).is_ok());
    let uncropped = RunConfig {
        crop: None,
        ..runs[1].0.clone()
    };
    assert!(group::fusable(&runs[0].0, &uncropped).is_err());
    let one_crop = RunConfig {
        augment: fer_lab::data::augment::Augment {
            crops: 1,
            ..runs[1].0.augment
        },
        ..runs[1].0.clone()
    };
    assert!(group::fusable(&runs[0].0, &one_crop).is_err());
    follow(&runs, DeviceSpec::Flex);
}

#[test]
fn runs_of_different_precisions_never_fuse() {
    let [(a, _), (b, _)] = two_runs();
    assert!(group::fusable(&a, &b).is_ok());
    let bf16 = RunConfig {
        precision: Precision::Bf16,
        ..b
    };
    let why = group::fusable(&a, &bf16).unwrap_err();
    assert!(why.contains("precisions differ"), "{why}");
}

/// A run or a group in bf16 on flex fails with the device's reason before touching anything.
#[test]
fn bf16_on_flex_is_refused_alone_and_fused_leaving_artifacts_alone() {
    let runs = two_runs_in_bf16();
    let splits = splits();
    let device = DeviceSpec::Flex.device();
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("checkpoint").join("kept");
    std::fs::create_dir_all(&kept).unwrap();
    let spec = RunSpec {
        config: &runs[0].0,
        seed: runs[0].1,
        device: &device,
        artifact_dir: dir.path(),
        resume_from: None,
        progress: Arc::new(Progress::default()),
    };
    let mut sinks = [Memory::default(), Memory::default()];
    let Err(e) = train::train_run(&spec, &splits, Vec::new(), Box::new(Memory::default())) else {
        panic!("bf16 on flex trained");
    };
    assert!(
        matches!(&e, TrainError::Device(why) if why.contains("needs a libtorch device")),
        "{e}"
    );
    assert!(kept.exists(), "a refused run removed its checkpoints");
    let members = fresh_members(&runs, &mut sinks);
    let outcomes = train_fresh(members, dir.path(), &splits, &device);
    for outcome in outcomes {
        let Err(e) = outcome else {
            panic!("a member trained in bf16 on flex");
        };
        assert!(matches!(e, TrainError::Device(_)), "{e}");
    }
    assert!(sinks.iter().all(|s| s.seen.is_empty()));
}

/// bf16 mixed precision, fused: each member follows its run alone in bf16 within bf16's
/// rounding (grouped and single convolutions round differently in 8 bits of mantissa).
#[cfg(feature = "tch")]
#[test]
fn fused_members_in_bf16_follow_the_runs_alone_on_libtorch() {
    let runs = two_runs_in_bf16();
    follow(&runs, DeviceSpec::TchCpu);
}

fn members_follow_their_runs(on: DeviceSpec) {
    follow(&two_runs(), on);
}

fn follow(runs: &[(RunConfig, u64); 2], on: DeviceSpec) {
    let _generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let splits = splits();
    let device = on.device();
    let mut sinks = [Memory::default(), Memory::default()];
    let members = fresh_members(runs, &mut sinks);
    let dir = tempfile::tempdir().unwrap();
    let outcomes = train_fresh(members, dir.path(), &splits, &device);
    for (m, ((config, seed), outcome)) in runs.iter().zip(outcomes).enumerate() {
        let outcome = outcome.expect("every member finishes");
        let solo_outcome = alone(config, *seed, &splits, on);
        let solo = &solo_outcome.epochs;
        assert_eq!(outcome.epochs.len(), solo.len());
        if on == DeviceSpec::Flex {
            // The best model's final evaluation (its TTA views at its crop) agrees too.
            for (split, g, s) in [
                ("val", &outcome.val, &solo_outcome.val),
                ("test", &outcome.test, &solo_outcome.test),
            ] {
                assert!(
                    (g.loss - s.loss).abs() < 1e-4 && g.accuracy == s.accuracy,
                    "member {m} {split}: {g:?} fused, {s:?} alone"
                );
            }
        }
        assert_eq!(sinks[m].seen.len(), 2, "the sink saw every epoch");
        for (g, s) in outcome.epochs.iter().zip(solo) {
            // On flex both sides run the same kernels but the grouped ones; on libtorch a run
            // alone takes Adam steps in libtorch's fused kernel and a group in tensor ops (the
            // same formula, other rounding), which two epochs carry to the fourth digit, and
            // may tip one image.
            let (tolerance, images) = match (on, config.precision) {
                (DeviceSpec::Flex, _) => (1e-5, 0.0),
                (_, Precision::F32) => (1e-3, 1.0),
                (_, Precision::Bf16) => (3e-2, 4.0),
            };
            let close = |what: &str, a: Option<f64>, b: Option<f64>| {
                let (a, b) = (a.unwrap(), b.unwrap());
                let one_image = if what.ends_with("accuracy") {
                    images
                        / if what.starts_with("val") {
                            splits.val.len()
                        } else {
                            splits.train.len()
                        } as f64
                } else {
                    0.0
                };
                assert!(
                    (a - b).abs() <= tolerance * b.abs().max(1.0) + one_image,
                    "member {m} epoch {}: {what} {a} fused, {b} alone",
                    g.epoch
                );
            };
            close("train loss", g.train_loss, s.train_loss);
            close("train accuracy", g.train_acc, s.train_acc);
            close("val loss", g.val_loss, s.val_loss);
            close("val accuracy", g.val_acc, s.val_acc);
            close("learning rate", g.lr, s.lr);
        }
    }
}

#[test]
fn a_pruned_and_a_diverged_member_stop_while_the_other_finishes() {
    let _generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let splits = splits();
    let [(base, _), _] = two_runs();
    let exploding = RunConfig {
        lr: 1e30,
        ..base.clone()
    };
    let mut pruned = Memory {
        prune_after: Some(1),
        ..Memory::default()
    };
    let (mut diverging, mut finishing) = (Memory::default(), Memory::default());
    let members = vec![
        Member {
            config: &base,
            seed: 1,
            sink: &mut pruned,
            earlier: Vec::new(),
            stopped: false,
        },
        Member {
            config: &exploding,
            seed: 2,
            sink: &mut diverging,
            earlier: Vec::new(),
            stopped: false,
        },
        Member {
            config: &base,
            seed: 3,
            sink: &mut finishing,
            earlier: Vec::new(),
            stopped: false,
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let outcomes = train_fresh(members, dir.path(), &splits, &DeviceSpec::Flex.device());
    let mut outcomes = outcomes.into_iter();
    assert!(
        matches!(outcomes.next(), Some(Err(TrainError::Pruned { epoch: 1 }))),
        "the pruned member stops after epoch 1"
    );
    assert!(
        matches!(outcomes.next(), Some(Err(TrainError::Diverged { .. }))),
        "the member whose loss blew up is diverged"
    );
    let done = outcomes.next().unwrap().expect("the third member finishes");
    assert_eq!(done.epochs.len(), 2);
    assert!(
        done.epochs
            .iter()
            .all(|r| r.train_loss.is_some_and(f64::is_finite))
    );
    assert_eq!(
        pruned.seen.len(),
        1,
        "nothing after the prune: {:?}",
        pruned.seen
    );
    assert_eq!(finishing.seen.len(), 2);
    // Its best model is an ordinary run's model, evaluated on val and test.
    assert!(done.val.accuracy > 0.0 && done.test.accuracy > 0.0);
}

/// Asks to stop (interrupted, as a first Ctrl-C does) once it has seen `stop_after` epochs.
#[derive(Default)]
struct StopAfter {
    seen: Vec<EpochRow>,
    stop_after: Option<usize>,
}

impl EpochSink for StopAfter {
    fn epoch(&mut self, epochs: &[EpochRow]) -> Verdict {
        self.seen
            .push(*epochs.last().expect("the finished epoch is last"));
        match self.stop_after {
            Some(n) if self.seen.len() >= n => Verdict::Stop(StopReason::Interrupted),
            _ => Verdict::Continue,
        }
    }
}

/// A group stopped after epoch 1 (and one member pruned there) resumes from its checkpoint:
/// the members still training finish epoch 2 exactly as an unbroken group does, and the pruned
/// one stays stopped.
#[test]
fn a_group_resumes_from_its_checkpoint_as_if_never_stopped() {
    let _generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let splits = splits();
    let runs = two_runs();
    let third = RunConfig {
        lr: 2e-3,
        ..runs[0].0.clone()
    };
    let configs = [
        (&runs[0].0, runs[0].1),
        (&runs[1].0, runs[1].1),
        (&third, 5),
    ];
    let device = DeviceSpec::Flex.device();
    let run = |dir: &Path,
               resume_from: Option<usize>,
               earlier: &[Vec<EpochRow>],
               stop: [Option<usize>; 3],
               prune_third: bool| {
        let mut sinks: Vec<Box<dyn EpochSink>> = (0..3)
            .map(|i| -> Box<dyn EpochSink> {
                if i == 2 && prune_third {
                    Box::new(Memory {
                        prune_after: Some(1),
                        ..Memory::default()
                    })
                } else {
                    Box::new(StopAfter {
                        stop_after: stop[i],
                        ..StopAfter::default()
                    })
                }
            })
            .collect();
        let members = configs
            .iter()
            .zip(sinks.iter_mut())
            .enumerate()
            .map(|(i, ((config, seed), sink))| Member {
                config,
                seed: *seed,
                sink: sink.as_mut(),
                earlier: earlier.get(i).cloned().unwrap_or_default(),
                stopped: resume_from.is_some() && i == 2,
            })
            .collect();
        train_group(
            members,
            &Checkpoints { dir, resume_from },
            &splits,
            &device,
            &Progress::default(),
        )
    };

    // Unbroken: the third member pruned after epoch 1, the others train 2 epochs.
    let whole = tempfile::tempdir().unwrap();
    let unbroken = run(whole.path(), None, &[], [None; 3], true);

    // Broken: everyone stops after epoch 1 (the third pruned, as above), then the group resumes.
    let broken = tempfile::tempdir().unwrap();
    let first = run(broken.path(), None, &[], [Some(1), Some(1), None], true);
    let mut earlier = Vec::new();
    for outcome in &first {
        match outcome {
            Err(TrainError::Interrupted { epoch: 1 }) | Err(TrainError::Pruned { epoch: 1 }) => {}
            other => panic!("epoch 1 ends every member: {other:?}"),
        }
    }
    assert_eq!(group::resumable_epoch(broken.path(), 2), Some(1));
    // What the sinks kept of epoch 1 is what the caller hands back, the pruned member's too;
    // the caller knows that one stopped, and it stays stopped.
    let epoch1: Vec<EpochRow> = unbroken
        .iter()
        .map(|o| match o {
            Ok(out) => out.epochs[0],
            Err(_) => EpochRow {
                epoch: 1,
                ..EpochRow::default()
            },
        })
        .collect();
    for row in &epoch1 {
        earlier.push(vec![*row]);
    }
    let resumed = run(broken.path(), Some(1), &earlier, [None; 3], false);

    for i in 0..2 {
        let a = unbroken[i].as_ref().expect("finishes unbroken");
        let b = resumed[i].as_ref().expect("finishes after the resume");
        assert_eq!(
            b.epochs.len(),
            2,
            "member {i}: epoch 1 kept, epoch 2 trained"
        );
        for (x, y) in a.epochs.iter().zip(&b.epochs) {
            let strip = |r: &EpochRow| EpochRow { secs: None, ..*r };
            assert_eq!(
                strip(x),
                strip(y),
                "member {i}: resumed epochs are the unbroken ones"
            );
        }
        assert_eq!(a.best_epoch, b.best_epoch);
        assert_eq!(a.test.accuracy, b.test.accuracy);
    }
    assert!(
        matches!(resumed[2], Err(TrainError::StoppedEarlier { epoch: 1 })),
        "{:?}",
        resumed[2].as_ref().err()
    );
    assert!(matches!(unbroken[2], Err(TrainError::Pruned { epoch: 1 })));
}
