//! `fer-lab sweep --executor slurm` against a real Slurm (slurmctld + slurmd on this machine,
//! `scripts/slurm-local.sh`), no mock: job arrays, journals merged into SQLite, a cancelled task
//! and a killed sweep process, USR1 before a time limit, a bad partition.
//!
//! Where no Slurm answers (and this process cannot start one), the tests skip loudly;
//! `FER_LAB_REQUIRE_SLURM=1` (set by `.ci/run`) makes that a failure instead.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time: they share the cluster's two cores.
static CLUSTER: Mutex<()> = Mutex::new(());

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fer2013-mini")
}

/// Whether a Slurm cluster answers, starting the local one when it is installed and we may.
fn slurm() -> bool {
    let idle = || {
        Command::new("sinfo")
            .args(["-h", "-o", "%T"])
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
    };
    if idle() {
        return true;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh");
    let started = Path::new("/usr/sbin/slurmctld").exists()
        && Command::new(script)
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if started && idle() {
        return true;
    }
    if std::env::var("FER_LAB_REQUIRE_SLURM").is_ok_and(|v| v == "1") {
        panic!(
            "FER_LAB_REQUIRE_SLURM=1 but no Slurm answers (scripts/slurm-local.sh install; start)"
        );
    }
    eprintln!("!! SKIPPING a Slurm test: no Slurm here (scripts/slurm-local.sh install; start)");
    false
}

fn sweep_file(dir: &Path, name: &str, seeds: &str, epochs: usize) {
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "name = \"{name}\"\ndata = \"{}\"\nseeds = [{seeds}]\n[base]\nepochs = {epochs}\nbatch_size = 16\ndropout = 0.3\n[base.augment]\nerasing = 0.3\n",
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

fn sweep(dir: &Path, name: &str, db: &str, extra: &[&str]) -> Child {
    let file = format!("{name}.toml");
    let mut args = vec![
        "sweep",
        file.as_str(),
        "--devices",
        "cpu",
        "--no-tui",
        "--db",
        db,
    ];
    args.extend(extra);
    fer_lab(dir, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn finish(mut child: Child) -> std::process::ExitStatus {
    let started = Instant::now();
    // A guard against hangs: a requeued Slurm task waits about 2 minutes before it restarts.
    while started.elapsed() < Duration::from_secs(900) {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the sweep hung");
}

fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// Every run done with exactly `epochs` rows, a healthy file; the rows.
fn complete(db: &Path, runs: i64, epochs: i64) -> Vec<(String, i64, f64, f64)> {
    let conn = open(db);
    let done: i64 = conn
        .query_row("SELECT count(*) FROM runs WHERE status = 'done'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(done, runs, "every run done");
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT run_id || '/' || epoch) FROM epochs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (rows, distinct),
        (runs * epochs, runs * epochs),
        "no row lost or doubled"
    );
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut stmt = conn
        .prepare("SELECT run_id, epoch, train_loss, val_acc FROM epochs ORDER BY run_id, epoch")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every run's stored predictions: (run, split, labels, probabilities).
fn predictions(db: &Path) -> Vec<(String, String, Vec<u8>, Vec<u8>)> {
    let conn = open(db);
    let mut stmt = conn
        .prepare("SELECT run_id, split, labels, probs FROM predictions ORDER BY run_id, split")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Polls `query` on `db` (which may not exist yet) until it returns a row.
fn wait_for<T: rusqlite::types::FromSql>(db: &Path, query: &str) -> T {
    let started = Instant::now();
    loop {
        if db.exists()
            && let Ok(v) = open(db).query_row(query, [], |r| r.get(0))
        {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "never saw: {query}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `query` on `db` until it returns a row of two values.
fn wait_pair<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    db: &Path,
    query: &str,
) -> (A, B) {
    let started = Instant::now();
    loop {
        if db.exists()
            && let Ok(v) = open(db).query_row(query, [], |r| Ok((r.get(0)?, r.get(1)?)))
        {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "never saw: {query}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The open files of the processes whose command line contains `needle`.
fn open_files_of(needle: &str) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains(needle) {
            continue;
        }
        for fd in std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                files.push(target.display().to_string());
            }
        }
    }
    files
}

#[test]
fn the_quickstart_runs_as_a_job_array_merges_its_journals_and_matches_a_local_one() {
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // The shipped quickstart (4 runs: 2 learning rates × 2 dropouts), 3 epochs each.
    let quickstart = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/quickstart.toml"),
    )
    .unwrap()
    .replace(
        "\"../tests/fixtures/fer2013-mini\"",
        &format!("{:?}", mini().display().to_string()),
    );
    std::fs::write(t.join("quickstart.toml"), quickstart).unwrap();
    let epochs = ["--set", "epochs=3"];
    assert!(finish(sweep(t, "quickstart", "local/fer-lab.sqlite", &epochs)).success());
    let local = complete(&t.join("local/fer-lab.sqlite"), 4, 3);

    let child = sweep(
        t,
        "quickstart",
        "slurm/fer-lab.sqlite",
        &["--executor", "slurm", "--set", "epochs=3"],
    );
    // While a task trains: its worker has the journal open, never the database.
    let db = t.join("slurm/fer-lab.sqlite");
    let _: i64 = wait_for(&db, "SELECT 1 FROM runs WHERE status = 'running' LIMIT 1");
    let started = Instant::now();
    let mut seen = Vec::new();
    while seen.is_empty() && started.elapsed() < Duration::from_secs(120) {
        seen = open_files_of("worker --journal");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!seen.is_empty(), "never saw a worker of the job array");
    assert!(
        seen.iter().all(|f| !f.contains("fer-lab.sqlite")),
        "a worker on a node opened the database: {seen:?}"
    );
    assert!(finish(child).success());
    let slurm = complete(&db, 4, 3);
    assert_eq!(
        slurm, local,
        "the same runs, the same numbers, wherever they ran"
    );
    // The class probabilities ensembles use travel in the journals, bit for bit.
    assert_eq!(
        predictions(&db),
        predictions(&t.join("local/fer-lab.sqlite"))
    );
    assert_eq!(predictions(&db).len(), 8, "val and test of each run");
    let conn = open(&db);
    let jobs: i64 = conn
        .query_row(
            "SELECT count(DISTINCT batch_job) FROM runs WHERE batch_job LIKE '%\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(jobs, 4, "each run was an array task");
    let script = std::fs::read_dir(t.join("slurm/journal/arrays"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "sh"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    assert!(
        script.contains("--journal") && !script.contains("--db"),
        "{script}"
    );

    // --dry-run prints the script and submits nothing.
    let out = fer_lab(
        t,
        &[
            "sweep",
            "quickstart.toml",
            "--executor",
            "slurm",
            "--dry-run",
            "--db",
            "dry/x.sqlite",
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("#SBATCH --requeue") && text.contains("worker --journal"),
        "{text}"
    );
    assert!(!t.join("dry/x.sqlite").exists());
}

#[test]
fn a_cancelled_task_and_a_killed_sweep_process_lose_nothing() {
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    sweep_file(t, "four", "1, 2, 3, 4", 6);
    assert!(finish(sweep(t, "four", "ref/fer-lab.sqlite", &[])).success());
    let reference = complete(&t.join("ref/fer-lab.sqlite"), 4, 6);

    let db = t.join("slurm/fer-lab.sqlite");
    let args = ["--executor", "slurm", "--slurm", "parallelism=2"];
    let mut child = sweep(t, "four", "slurm/fer-lab.sqlite", &args);
    // A worker dies with no goodbye (a node lost, the OOM killer): SIGKILL, after its first
    // checkpoint. Its pid is the one its heartbeats carried (the node is this machine).
    let (killed, pid): (String, i64) = wait_pair(
        &db,
        "SELECT id, worker_pid FROM runs WHERE status = 'running' AND epochs_done BETWEEN 1 AND 3
           AND worker_pid IS NOT NULL LIMIT 1",
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Another task is cancelled (scancel: its worker records `interrupted` and stops).
    let (cancelled, job): (String, String) = wait_pair(
        &db,
        &format!(
            "SELECT id, batch_job FROM runs WHERE status = 'running' AND epochs_done >= 1
               AND batch_job IS NOT NULL AND id != '{killed}' LIMIT 1"
        ),
    );
    let out = Command::new("scancel").arg(&job).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _: i64 = wait_for(
        &db,
        &format!("SELECT 1 FROM runs WHERE id = '{cancelled}' AND status = 'interrupted'"),
    );
    // Then the sweep's own process dies too (it may have finished the others by now).
    let _ = child.kill();
    child.wait().unwrap();
    assert!(finish(sweep(t, "four", "slurm/fer-lab.sqlite", &args)).success());
    let resumed = complete(&db, 4, 6);
    assert_eq!(resumed, reference, "every run as if nothing had happened");
    let resumes: i64 = open(&db)
        .query_row(
            "SELECT count(*) FROM run_events WHERE kind = 'resumed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        resumes >= 2,
        "both resumed from their checkpoints: {resumes}"
    );
}

#[test]
fn usr1_before_the_time_limit_checkpoints_requeues_and_resumes() {
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    sweep_file(t, "one", "7", 6);
    assert!(finish(sweep(t, "one", "ref/fer-lab.sqlite", &[])).success());
    let reference = complete(&t.join("ref/fer-lab.sqlite"), 1, 6);

    let db = t.join("slurm/fer-lab.sqlite");
    let child = sweep(t, "one", "slurm/fer-lab.sqlite", &["--executor", "slurm"]);
    let job: String = wait_for(
        &db,
        "SELECT batch_job FROM runs WHERE status = 'running' AND epochs_done >= 1
           AND batch_job IS NOT NULL",
    );
    // What Slurm sends `signal_secs` before the time limit, now.
    let out = Command::new("scancel")
        .args(["--signal=USR1", "--batch", &job])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(finish(child).success());
    assert_eq!(complete(&db, 1, 6), reference, "resumed bitwise");
    let resumed: i64 = open(&db)
        .query_row(
            "SELECT count(*) FROM run_events WHERE kind = 'resumed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        resumed >= 1,
        "the requeued task resumed from its checkpoint"
    );
}

#[test]
fn a_partition_slurm_does_not_have_gets_one_clear_error() {
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    sweep_file(t, "bad", "1", 1);
    let out = fer_lab(
        t,
        &[
            "sweep",
            "bad.toml",
            "--executor",
            "slurm",
            "--slurm",
            "partition=no-such-partition",
            "--no-tui",
            "--db",
            "r/fer-lab.sqlite",
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Slurm refuses") && err.contains("invalid partition"),
        "{err}"
    );
    assert!(!t.join("r/fer-lab.sqlite").exists(), "nothing recorded");
}
