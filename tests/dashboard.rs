//! The dashboard driven as a person would: the real binary in a tmux pane, keys sent, the
//! screen captured. Needs tmux; `.ci/run` installs it and sets FER_LAB_REQUIRE_TMUX=1 so a
//! missing tmux fails there instead of skipping.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fer-lab")
}

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fer2013-mini")
}

fn tmux_available() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("FER_LAB_REQUIRE_TMUX").is_none(),
            "tmux is required (FER_LAB_REQUIRE_TMUX is set) but not installed"
        );
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
    }
    ok
}

/// A tmux server of its own (`-L`), one pane running a shell in `dir`.
struct Pane {
    socket: String,
}

impl Pane {
    fn new(dir: &Path, width: u16, height: u16) -> Pane {
        let socket = format!("fer-lab-test-{}-{width}", std::process::id());
        let pane = Pane { socket };
        let status = pane
            .tmux()
            .args(["new-session", "-d", "-s", "t", "-x", &width.to_string()])
            .args(["-y", &height.to_string(), "-c"])
            .arg(dir)
            .args([
                "env",
                "-i",
                "PATH=/usr/bin:/bin",
                "TERM=xterm-256color",
                "HOME=/tmp",
            ])
            .args(["bash", "--norc", "--noprofile"])
            .status()
            .unwrap();
        assert!(status.success());
        pane
    }

    fn tmux(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "-f", "/dev/null"]);
        cmd
    }

    /// Sends keys (tmux key names like Enter and Escape, or text).
    fn send(&self, keys: &[&str]) {
        assert!(
            self.tmux()
                .args(["send-keys", "-t", "t"])
                .args(keys)
                .status()
                .unwrap()
                .success()
        );
    }

    fn capture(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen and everything scrolled off it.
    fn history(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-S", "-", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn display(&self, format: &str) -> String {
        let out = self
            .tmux()
            .args(["display-message", "-p", "-t", "t", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until the screen contains every one of `needles`; returns the screen.
    fn wait_for(&self, needles: &[&str], limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let screen = self.capture();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                started.elapsed() < limit,
                "never saw {needles:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Pane {
    /// Waits until the screen no longer contains `needle`; returns the screen.
    fn wait_without(&self, needle: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let screen = self.capture();
            if !screen.contains(needle) {
                return screen;
            }
            assert!(
                started.elapsed() < limit,
                "{needle:?} never went away; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

fn write_sweep(dir: &Path, epochs: usize) {
    std::fs::write(
        dir.join("tiny.toml"),
        format!(
            "name = \"tiny\"\ndata = \"{}\"\n[base]\nepochs = {epochs}\nbatch_size = 16\n[grid]\nlr = [0.001, 0.003]\n",
            mini().display()
        ),
    )
    .unwrap();
}

fn wait_for_epoch(db: &Path, limit: Duration) {
    let started = Instant::now();
    loop {
        let out = Command::new(bin())
            .args([
                "sql",
                "SELECT count(*) AS n FROM epochs",
                "--format",
                "csv",
                "--db",
            ])
            .arg(db)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if text.lines().nth(1).is_some_and(|n| n.trim() != "0") {
            return;
        }
        assert!(started.elapsed() < limit, "no epoch recorded in time");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_attached_dashboard_shows_the_sweep_and_quits_cleanly() {
    if !tmux_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_sweep(dir, 60);
    let db = dir.join("db.sqlite");
    let _sweep = KillOnDrop(
        Command::new(bin())
            .args([
                "sweep",
                "tiny.toml",
                "--devices",
                "cpu",
                "--per-device",
                "2",
            ])
            .arg("--db")
            .arg(&db)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_epoch(&db, Duration::from_secs(120));

    let pane = Pane::new(dir, 160, 48);
    pane.send(&[
        &format!("{} dashboard --db db.sqlite; echo EXIT=$?", bin()),
        "Enter",
    ]);
    let screen = pane.wait_for(
        &[
            "Leaderboard",
            "Runs (2 of 2)",
            "loss  ━ train",
            "accuracy %",
        ],
        Duration::from_secs(30),
    );
    assert!(screen.contains("running"), "{screen}");
    assert_eq!(
        pane.display("#{alternate_on}"),
        "1",
        "the dashboard uses the alternate screen"
    );

    // Keys: the second run, its details full screen, back, help, back. Each waits for the
    // screen to change before the next key: an Escape followed at once by another key reads as
    // Alt+key in any terminal, so the test leaves with Enter and `?` instead.
    pane.send(&["j"]);
    pane.send(&["Enter"]);
    let details = pane.wait_without("Runs (2 of 2)", Duration::from_secs(10));
    assert!(
        details.contains("lr=0.003"),
        "the second run, full screen:\n{details}"
    );
    pane.send(&["Enter"]);
    pane.wait_for(&["Runs (2 of 2)"], Duration::from_secs(10));
    pane.send(&["?"]);
    pane.wait_for(&["Keys (Esc to close)"], Duration::from_secs(10));
    pane.send(&["?"]);
    pane.wait_without("Keys (Esc to close)", Duration::from_secs(10));
    // p pauses launching through the database, p again resumes.
    pane.send(&["p"]);
    pane.wait_for(&["PAUSED"], Duration::from_secs(10));
    let paused = Command::new(bin())
        .args([
            "sql",
            "SELECT paused FROM sweeps",
            "--format",
            "csv",
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&paused.stdout).lines().nth(1),
        Some("1")
    );
    pane.send(&["p"]);
    pane.wait_for(&["resumed launching"], Duration::from_secs(10));
    pane.send(&["q"]);
    let screen = pane.wait_for(&["EXIT=0"], Duration::from_secs(10));
    assert!(
        !screen.contains("Leaderboard"),
        "the dashboard is gone:\n{screen}"
    );
    assert_eq!(
        pane.display("#{alternate_on}"),
        "0",
        "alternate screen left"
    );
    assert_eq!(pane.display("#{cursor_flag}"), "1", "cursor shown again");
}

#[test]
fn a_sweep_on_a_terminal_opens_the_dashboard_and_can_go_on_headless() {
    if !tmux_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_sweep(dir, 8);
    let pane = Pane::new(dir, 100, 30);
    pane.send(&[
        &format!(
            "{} sweep tiny.toml --devices cpu --db db.sqlite; echo EXIT=$?",
            bin()
        ),
        "Enter",
    ]);
    pane.wait_for(&["fer-lab tiny", "Runs (2 of 2)"], Duration::from_secs(60));
    // q asks; k keeps the sweep training with text progress; it then finishes normally.
    pane.send(&["q"]);
    pane.wait_for(
        &["Quit?", "keep it training headless"],
        Duration::from_secs(10),
    );
    pane.send(&["k"]);
    pane.wait_for(&["EXIT=0"], Duration::from_secs(180));
    let text = pane.history();
    assert!(text.contains("goes on without the dashboard"), "{text}");
    assert!(text.contains("sweep tiny: 2 trained"), "{text}");
    assert_eq!(pane.display("#{alternate_on}"), "0");
}

#[test]
fn attaching_to_the_wrong_database_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let attach = |db: &Path, sweep: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.arg("dashboard").arg("--db").arg(db);
        if let Some(s) = sweep {
            cmd.args(["--sweep", s]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let missing = tmp.path().join("missing.sqlite");
    let (code, err) = attach(&missing, None);
    assert_eq!(code, Some(2));
    assert!(err.contains("no such database"), "{err}");
    assert!(!missing.exists(), "attaching creates nothing");

    // A database written by a newer fer-lab: its tables, a schema version beyond ours.
    let newer = tmp.path().join("newer.sqlite");
    drop(fer_lab::store::Store::open(&newer).unwrap());
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    drop(conn);
    let (code, err) = attach(&newer, None);
    assert_eq!(code, Some(2));
    assert!(err.contains("schema version 99"), "{err}");

    // A real database without that sweep.
    write_sweep(tmp.path(), 1);
    let db = tmp.path().join("db.sqlite");
    let status = Command::new(bin())
        .args(["sweep", "tiny.toml", "--no-tui", "--db"])
        .arg(&db)
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (code, err) = attach(&db, Some("nope"));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no sweep named `nope`") && err.contains("known: tiny"),
        "{err}"
    );
}
