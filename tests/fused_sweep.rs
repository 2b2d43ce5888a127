//! Fused runs through `fer-lab sweep`: a group of four runs trains as one model in one worker
//! process, each run keeps its id, rows, results and best model, and a group whose worker is
//! SIGKILLed mid-epoch resumes from its checkpoint to exactly what an undisturbed group gives.
//! On the mini sample in tests/fixtures, on flex (the CPU), where fusion must be asked for.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EPOCHS: i64 = 5;

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fer2013-mini")
}

/// Two learning rates × two seeds, with dropout and augmentation that draw from each run's
/// seed: everything that could leak between members of a group.
fn sweep_file(dir: &Path) {
    std::fs::write(
        dir.join("four.toml"),
        format!(
            "name = \"four\"\ndata = \"{}\"\nseeds = [1, 2]\n[base]\nepochs = {EPOCHS}\nbatch_size = 16\ndropout = 0.3\n[base.augment]\nerasing = 0.3\n[grid]\nlr = [0.001, 0.0005]\n",
            mini().display()
        ),
    )
    .unwrap();
}

fn fer_lab(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fer-lab"));
    cmd.args(args).current_dir(dir);
    cmd
}

fn sweep(dir: &Path, db: &str, fuse: &str) -> Child {
    fer_lab(
        dir,
        &[
            "sweep",
            "four.toml",
            "--devices",
            "cpu",
            "--fuse",
            fuse,
            "--no-tui",
            "--db",
            db,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("fer-lab starts")
}

fn finish(mut child: Child) {
    let started = Instant::now();
    // A guard against hangs, not a timing: a loaded 2-core CI box is slow.
    while started.elapsed() < Duration::from_secs(900) {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the sweep failed: {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the sweep hung");
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// Every run's epochs (run, epoch, train loss, val acc) and evaluations, after checking that
/// all four are done with exactly EPOCHS rows each.
type Rows = (Vec<(String, i64, f64, f64)>, Vec<(String, String, f64)>);

fn complete(db: &Path) -> Rows {
    let conn = open(db);
    let done: i64 = conn
        .query_row("SELECT count(*) FROM runs WHERE status = 'done'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(done, 4);
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT run_id || '/' || epoch) FROM epochs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (rows, distinct),
        (4 * EPOCHS, 4 * EPOCHS),
        "no row lost or doubled"
    );
    let mut stmt = conn
        .prepare("SELECT run_id, epoch, train_loss, val_acc FROM epochs ORDER BY run_id, epoch")
        .unwrap();
    let epochs = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut stmt = conn
        .prepare("SELECT run_id, split, accuracy FROM evals ORDER BY run_id, split")
        .unwrap();
    let evals = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (epochs, evals)
}

fn groups(db: &Path) -> Vec<(String, Option<String>)> {
    let conn = open(db);
    let mut stmt = conn
        .prepare("SELECT id, fused_group FROM runs ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The group's worker once its checkpoint of an epoch before the last is on disk.
fn worker_with_a_checkpoint(dir: &Path, db: &Path) -> i64 {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(600) {
        if db.exists() {
            let conn = open(db);
            let row = conn.query_row(
                "SELECT worker_pid, fused_group, epochs_done FROM runs
                 WHERE status = 'running' AND worker_pid IS NOT NULL AND fused_group IS NOT NULL
                 LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            );
            if let Ok((pid, group, done)) = row {
                let saved = dir
                    .join("killed/four/groups")
                    .join(&group)
                    .join(format!("group-model-{done}.bpk"));
                if (1..EPOCHS - 1).contains(&done) && saved.is_file() {
                    return pid;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never saw a group worker with a checkpoint");
}

#[test]
fn a_fused_sweep_keeps_every_run_a_run_and_resumes_a_killed_group_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    sweep_file(t);
    for d in ["alone", "results", "killed"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }

    // Alone, then fused: the same run ids, the same curves within float tolerance.
    finish(sweep(t, "alone/fer-lab.sqlite", "off"));
    finish(sweep(t, "results/fer-lab.sqlite", "4"));
    let alone = complete(&t.join("alone/fer-lab.sqlite"));
    let fused = complete(&t.join("results/fer-lab.sqlite"));
    let members = groups(&t.join("results/fer-lab.sqlite"));
    let ids: Vec<&String> = members.iter().map(|(id, _)| id).collect();
    let alone_ids: Vec<String> = groups(&t.join("alone/fer-lab.sqlite"))
        .into_iter()
        .map(|(id, group)| {
            assert_eq!(group, None, "fuse off: {id} trained alone");
            id
        })
        .collect();
    assert_eq!(
        ids,
        alone_ids.iter().collect::<Vec<_>>(),
        "run ids do not depend on fusion"
    );
    let group = members[0].1.clone().expect("the runs fused");
    assert!(members.iter().all(|(_, g)| g.as_ref() == Some(&group)));
    // Fused sums run in another order: the first epochs agree to ~1e-8 (measured ≤ 3.4e-8),
    // and training, chaotic as it is, grows that to ~1e-3 by the fifth (measured 6.8e-4),
    // enough to move a best epoch's accuracy by an image on this tiny sample.
    for (a, f) in alone.0.iter().zip(&fused.0) {
        assert_eq!((&a.0, a.1), (&f.0, f.1));
        let tolerance = if a.1 <= 2 { 1e-6 } else { 1e-2 };
        assert!(
            (a.2 - f.2).abs() <= tolerance * a.2.abs().max(1.0),
            "{} epoch {}: train loss {} alone, {} fused",
            a.0,
            a.1,
            a.2,
            f.2
        );
    }
    // The group's checkpoints are gone once every member is recorded; its log stays.
    let group_dir = t.join("results/four/groups").join(&group);
    assert!(group_dir.join("worker.log").is_file());
    assert_eq!(
        std::fs::read_dir(&group_dir)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "bpk"))
            .count(),
        0
    );

    // A member is a run: predict loads its own best model, runs shows its group.
    let image = std::fs::read_dir(mini().join("test/happy"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = ok(fer_lab(
        t,
        &[
            "predict",
            image.to_str().unwrap(),
            "--run",
            &ids[1][..8],
            "--format",
            "json",
        ],
    )
    .output()
    .unwrap());
    assert!(out.contains("\"emotion\""), "{out}");
    let runs = ok(fer_lab(t, &["runs", "--format", "csv"]).output().unwrap());
    assert!(runs.lines().next().unwrap().contains("fused"), "{runs}");
    assert_eq!(runs.matches(group.as_str()).count(), 4, "{runs}");

    // SIGKILL the group's worker mid-epoch: the same launch resumes the whole group from its
    // checkpoint, to exactly the undisturbed group's numbers.
    let child = sweep(t, "killed/fer-lab.sqlite", "4");
    let pid = worker_with_a_checkpoint(t, &t.join("killed/fer-lab.sqlite"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    finish(child);
    let resumed = complete(&t.join("killed/fer-lab.sqlite"));
    assert_eq!(resumed, fused);
    let conn = open(&t.join("killed/fer-lab.sqlite"));
    let resumes: i64 = conn
        .query_row(
            "SELECT count(*) FROM run_events WHERE kind = 'resumed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        resumes, 4,
        "every member resumed from the group's checkpoint"
    );
}
