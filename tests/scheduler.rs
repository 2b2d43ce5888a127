//! The scheduler under abuse: killed workers, a killed scheduler, readers hammering the
//! database while a sweep writes. All on the mini sample in tests/fixtures, two CPU slots.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const RUNS: i64 = 6;
const EPOCHS: i64 = 6;

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fer2013-mini")
}

fn sweep_file(dir: &Path) -> PathBuf {
    let file = dir.join("six.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"six\"\ndata = \"{}\"\nseeds = [1, 2, 3]\n[base]\nepochs = {EPOCHS}\nbatch_size = 16\n[base.augment]\nerasing = 0.3\n[grid]\nlr = [0.001, 0.0005]\n",
            mini().display()
        ),
    )
    .unwrap();
    file
}

fn start_sweep(dir: &Path, db: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fer-lab"))
        .args([
            "sweep",
            "six.toml",
            "--devices",
            "cpu",
            "--per-device",
            "2",
            "--db",
            db,
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fer-lab starts")
}

fn wait(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "sweep took longer than {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// Polls the database until `query` returns a row, and returns its two integers.
fn poll(db: &Path, query: &str, limit: Duration) -> (i64, i64) {
    let started = Instant::now();
    loop {
        if db.exists() {
            let conn = open(db);
            if let Ok(row) = conn.query_row(query, [], |r| Ok((r.get(0)?, r.get(1)?))) {
                return row;
            }
        }
        assert!(started.elapsed() < limit, "never saw: {query}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A worker mid-run with a complete epoch checkpoint on disk (the files it resumes from):
/// its pid and the run's artifact directory.
fn killable_worker(db: &Path, limit: Duration) -> (i64, PathBuf) {
    let started = Instant::now();
    loop {
        if db.exists() {
            let conn = open(db);
            let row = conn.query_row(
                &format!(
                    "SELECT worker_pid, artifact_dir, epochs_done FROM runs
                     WHERE status = 'running' AND worker_pid IS NOT NULL
                       AND epochs_done BETWEEN 1 AND {} LIMIT 1",
                    EPOCHS - 2
                ),
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            );
            if let Ok((pid, dir, done)) = row {
                let dir = db.parent().unwrap().join(dir);
                let saved = |e: i64| {
                    ["model", "optim", "scheduler"].iter().all(|n| {
                        dir.join("checkpoint")
                            .join(format!("{n}-{e}.bpk"))
                            .is_file()
                    })
                };
                if (1..=done).any(saved) {
                    return (pid, dir);
                }
            }
        }
        assert!(started.elapsed() < limit, "never saw a worker to kill");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every run done, exactly EPOCHS rows each, nothing lost or doubled, a healthy file.
fn assert_complete(db: &Path) -> Vec<(String, i64, f64, f64)> {
    let conn = open(db);
    let done: i64 = conn
        .query_row("SELECT count(*) FROM runs WHERE status = 'done'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(done, RUNS);
    let mut stmt = conn
        .prepare("SELECT run_id, count(*), count(DISTINCT epoch), min(epoch), max(epoch) FROM epochs GROUP BY run_id")
        .unwrap();
    let counts: Vec<(String, i64, i64, i64, i64)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(counts.len() as i64, RUNS);
    for (run, n, distinct, first, last) in counts {
        assert_eq!(
            (n, distinct, first, last),
            (EPOCHS, EPOCHS, 1, EPOCHS),
            "run {run}"
        );
    }
    let evals: i64 = conn
        .query_row("SELECT count(*) FROM evals", [], |r| r.get(0))
        .unwrap();
    assert_eq!(evals, 2 * RUNS);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut stmt = conn
        .prepare("SELECT run_id, epoch, train_loss, val_acc FROM epochs ORDER BY run_id, epoch")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn killed_workers_and_a_killed_scheduler_lose_nothing_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    sweep_file(t);
    // Generous: a guard against hangs, not a timing (a loaded 2-core CI box is slow).
    let limit = Duration::from_secs(900);

    // An undisturbed sweep: the reference.
    assert!(wait(start_sweep(t, "ref.sqlite"), limit).success());
    let reference = assert_complete(&t.join("ref.sqlite"));

    // SIGKILL a worker mid-run: the scheduler sees it die, and the run resumes from its
    // checkpoint in the same launch.
    let sweep = start_sweep(t, "kill-worker.sqlite");
    let (pid, dir) = killable_worker(&t.join("kill-worker.sqlite"), limit);
    assert!(dir.is_dir(), "{}", dir.display());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait(sweep, limit).success());
    let resumed = assert_complete(&t.join("kill-worker.sqlite"));
    let conn = open(&t.join("kill-worker.sqlite"));
    let resumes: i64 = conn
        .query_row(
            "SELECT count(*) FROM run_events WHERE kind = 'resumed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(resumes >= 1, "the killed run resumed from a checkpoint");
    // Same seeds, same metrics — the killed-and-resumed run included.
    assert_eq!(resumed, reference);

    // SIGKILL the scheduler: its workers die with it; the next launch finishes the sweep.
    let mut sweep = start_sweep(t, "kill-scheduler.sqlite");
    poll(
        &t.join("kill-scheduler.sqlite"),
        "SELECT count(*), 0 FROM runs WHERE status = 'done' HAVING count(*) >= 1",
        limit,
    );
    poll(
        &t.join("kill-scheduler.sqlite"),
        "SELECT epochs_done, 0 FROM runs WHERE status = 'running' AND epochs_done >= 1 LIMIT 1",
        limit,
    );
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    assert!(wait(start_sweep(t, "kill-scheduler.sqlite"), limit).success());
    let relaunched = assert_complete(&t.join("kill-scheduler.sqlite"));
    assert_eq!(relaunched, reference);
}

#[test]
fn ten_readers_never_see_an_error_while_a_sweep_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().to_path_buf();
    sweep_file(&t);
    let sweep = start_sweep(&t, "db.sqlite");
    poll(
        &t.join("db.sqlite"),
        "SELECT count(*), 0 FROM sweeps HAVING count(*) > 0",
        Duration::from_secs(300),
    );
    let running = Arc::new(AtomicBool::new(true));
    let (calls, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let readers: Vec<_> = (0..10)
        .map(|i| {
            let (t, running, calls, errors) =
                (t.clone(), running.clone(), calls.clone(), errors.clone());
            std::thread::spawn(move || {
                while running.load(Ordering::SeqCst) {
                    let args: Vec<&str> = if i % 2 == 0 {
                        vec![
                            "sql",
                            "SELECT count(*) AS n FROM epochs JOIN runs ON runs.id = epochs.run_id",
                            "--db",
                            "db.sqlite",
                        ]
                    } else {
                        vec!["report", "--db", "db.sqlite", "--format", "json"]
                    };
                    let out = Command::new(env!("CARGO_BIN_EXE_fer-lab"))
                        .args(&args)
                        .current_dir(&t)
                        .output()
                        .unwrap();
                    calls.fetch_add(1, Ordering::SeqCst);
                    if !out.status.success() {
                        errors.fetch_add(1, Ordering::SeqCst);
                        eprintln!("reader {i}: {}", String::from_utf8_lossy(&out.stderr));
                    }
                }
            })
        })
        .collect();
    let status = wait(sweep, Duration::from_secs(900));
    running.store(false, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    assert!(status.success());
    assert!(
        calls.load(Ordering::SeqCst) >= 50,
        "readers ran {} times",
        calls.load(Ordering::SeqCst)
    );
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "of {} reads",
        calls.load(Ordering::SeqCst)
    );
    assert_complete(&t.join("db.sqlite"));
}
