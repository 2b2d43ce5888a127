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

    chaos(t, &reference, limit);
}

/// Random SIGKILLs of workers and of the scheduler, relaunching the same command each time and
/// never passing --retry-failed: the sweep ends as the undisturbed `reference` did.
fn chaos(t: &Path, reference: &[(String, i64, f64, f64)], limit: Duration) {
    // Seeded: after 1–3 more epoch rows, SIGKILL a worker (one whose attempt saved a new
    // checkpoint, see below) or the scheduler, and relaunch the same command after a
    // scheduler kill. A worker killed before it saved anything counts as a failure by
    // design (that is what a crash loop looks like), so the chaos leaves those out.
    let db = t.join("chaos.sqlite");
    let mut rng = XorShift(0x5eed_f00d_2013);
    let mut sweep = start_sweep(t, "chaos.sqlite");
    let (mut worker_kills, mut scheduler_kills) = (0, 0);
    let started = Instant::now();
    for _ in 0..6 {
        let target =
            count(&db_or_wait(&db, limit), "SELECT count(*) FROM epochs") + 1 + rng.below(3) as i64;
        let kill_scheduler = rng.below(2) == 0;
        let victim = loop {
            if let Some(status) = sweep.try_wait().unwrap() {
                panic!("the sweep ended ({status}) before the chaos did");
            }
            let epochs = count(&db, "SELECT count(*) FROM epochs");
            if epochs >= target {
                if kill_scheduler {
                    break None;
                }
                if let Some((pid, _)) = progressed_worker(&db, None) {
                    break Some(pid);
                }
            }
            assert!(started.elapsed() < limit, "chaos never saw {target} epochs");
            std::thread::sleep(Duration::from_millis(10));
        };
        match victim {
            Some(pid) => {
                sigkill(pid);
                worker_kills += 1;
            }
            None => {
                sweep.kill().unwrap();
                sweep.wait().unwrap();
                scheduler_kills += 1;
                sweep = start_sweep(t, "chaos.sqlite");
            }
        }
    }
    assert!(worker_kills >= 1 && scheduler_kills >= 1);
    assert!(wait(sweep, limit).success(), "the last relaunch gave up");
    assert_eq!(assert_complete(&db), reference);
    let failures = count(&db, "SELECT coalesce(sum(failures), 0) FROM runs");
    assert_eq!(failures, 0, "a kill counted as a run's failure");
}

fn sigkill(pid: i64) {
    // The process may have ended on its own a moment ago: that is not the test's failure.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn count(db: &Path, query: &str) -> i64 {
    open(db).query_row(query, [], |r| r.get(0)).unwrap()
}

/// The newest complete epoch checkpoint in a run's folder.
fn checkpoint(dir: &Path) -> i64 {
    (1..=EPOCHS)
        .rev()
        .find(|e| {
            ["model", "optim", "scheduler"].iter().all(|n| {
                dir.join("checkpoint")
                    .join(format!("{n}-{e}.bpk"))
                    .is_file()
            })
        })
        .unwrap_or(0)
}

/// Whether `pid` is a live process, not a zombie: right after a scheduler is killed, the
/// database still names its dead workers until the relaunch takes their runs over.
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// A live worker (pid, run id) whose current attempt saved a checkpoint newer than the one
/// it resumed from, among `only` when given: killing it costs the run no retry. Its heartbeat
/// must be newer than its launch: until then `resumed_from` is the previous attempt's.
fn progressed_worker(db: &Path, only: Option<&str>) -> Option<(i64, String)> {
    let conn = open(db);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT worker_pid, id, artifact_dir, coalesce(resumed_from, 0) FROM runs
                 WHERE status = 'running' AND worker_pid IS NOT NULL AND epochs_done < {EPOCHS}
                   AND (julianday(heartbeat_at) - 2440587.5) * 86400.0 >= launched_at
                 ORDER BY id"
        ))
        .unwrap();
    let rows: Vec<(i64, String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.into_iter()
        .filter(|(pid, id, _, _)| only.is_none_or(|o| o == id) && alive(*pid))
        .find(|(_, _, dir, from)| checkpoint(&db.parent().unwrap().join(dir)) > *from)
        .map(|(pid, id, _, _)| (pid, id))
}

#[test]
fn a_scheduler_death_costs_no_retry_and_wall_time_adds_up() {
    // On a relaunch after a killed scheduler, the resumed run's first worker crash used to
    // exhaust max_retries (the lost launch counted as an attempt): `failed … not retried`,
    // exit 1 on every later launch.
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    sweep_file(t);
    let db = t.join("db.sqlite");
    let limit = Duration::from_secs(900);

    let mut sweep = start_sweep(t, "db.sqlite");
    let (first_pid, dir) = killable_worker(&db, limit);
    // A run's folder is named by its id.
    let run = dir.file_name().unwrap().to_str().unwrap().to_string();
    sweep.kill().unwrap();
    sweep.wait().unwrap();

    let sweep = start_sweep(t, "db.sqlite");
    let started = Instant::now();
    let pid = loop {
        if let Some((pid, _)) = progressed_worker(&db, Some(&run))
            && pid != first_pid
        {
            break pid;
        }
        assert!(started.elapsed() < limit, "run {run} never resumed");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Long enough after its checkpoint for a heartbeat to record the time trained so far.
    std::thread::sleep(Duration::from_millis(2500));
    sigkill(pid);
    assert!(
        wait(sweep, limit).success(),
        "the relaunch gave up on {run}"
    );
    assert_complete(&db);
    let conn = open(&db);
    let (attempts, failures): (i64, i64) = conn
        .query_row(
            "SELECT attempts, failures FROM runs WHERE id = ?1",
            [&run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((attempts, failures), (3, 0), "three launches, no failure");
    // Every run's wall time covers the epochs it kept, from every attempt (each killed
    // attempt may miss the last heartbeat's 2 s).
    let short: Vec<(String, f64, f64)> = conn
        .prepare(
            "SELECT r.id, r.wall_secs, sum(e.secs) FROM runs r JOIN epochs e ON e.run_id = r.id
             GROUP BY r.id HAVING r.wall_secs + 2.0 * (r.attempts - 1) < sum(e.secs)",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(short.is_empty(), "wall_secs short of the epochs: {short:?}");
}

/// A small seeded generator: the chaos below is the same on every run of the test.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `db`, once the sweep has created it.
fn db_or_wait(db: &Path, limit: Duration) -> PathBuf {
    poll(
        db,
        "SELECT count(*), 0 FROM sweeps HAVING count(*) > 0",
        limit,
    );
    db.to_path_buf()
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
