//! SQLite: the one place results live (`results/fer-lab.sqlite` by default).
//!
//! WAL mode so readers (`report`, `sql`, the dashboard) never block the training writer, foreign
//! keys on, a busy timeout instead of "database is locked", and every multi-row change in one
//! transaction so a crash never leaves half a sweep or half an evaluation behind.

pub mod migrations;

use crate::metrics::Evaluation;
use crate::table::Rows;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, types::ValueRef};
use rusqlite_migration::SchemaVersion;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A finished run whose val balanced accuracy (macro recall) stays below this learned nothing:
/// chance over the seven classes is 1/7, and a network that predicts one class for every face
/// scores exactly that. Readers flag such runs, so that a newcomer reads "never learned" (a
/// too-high learning rate, too few epochs) rather than "fer-lab is broken".
pub const NEVER_LEARNED_BELOW: f64 = 1.0 / 7.0 + 0.03;

/// What readers print beside a run that never learned.
pub const NEVER_LEARNED: &str = "never learned: val at chance (1/7); try a lower lr or more epochs";

/// Default database path, relative to the working directory.
pub const DEFAULT_DB: &str = "results/fer-lab.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // SQLite's message is part of this one, not a `source`: anyhow would print it twice.
    #[error("{path}: {err}")]
    Sqlite { path: PathBuf, err: rusqlite::Error },
    #[error("{0}: no such database (run a sweep first, or pass --db)")]
    NoDatabase(PathBuf),
    #[error(
        "{0}: not a SQLite database, so not fer-lab's results (pass --db with the file a sweep wrote)"
    )]
    NotADatabase(PathBuf),
    #[error(
        "{0}: an empty database with no fer-lab results in it (run a sweep first, or pass --db)"
    )]
    EmptyDatabase(PathBuf),
    #[error(
        "{path}: a SQLite database that fer-lab did not write (it holds {tables}); fer-lab leaves it alone: pass --db with fer-lab's results file"
    )]
    Foreign { path: PathBuf, tables: String },
    #[error(
        "{path}: written by an older fer-lab (schema version {found}; this one reads {readable} or newer); run `fer-lab sweep` once to upgrade it"
    )]
    OlderSchema {
        path: PathBuf,
        found: usize,
        readable: usize,
    },
    #[error(
        "{path}: schema version {found} is newer than this fer-lab knows ({known}); upgrade fer-lab"
    )]
    NewerSchema {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("{path}: cannot prepare the database: {why}")]
    Migration { path: PathBuf, why: String },
    #[error("fer-lab sql is read-only: {0}")]
    ReadOnly(String),
    #[error("the query is empty: give one SQL statement, e.g. \"SELECT * FROM leaderboard\"")]
    EmptyQuery,
    #[error("the query ran longer than {0:?} and was stopped (raise --timeout, or narrow it)")]
    Timeout(Duration),
    #[error("{path}: {sql_error}")]
    Query { path: PathBuf, sql_error: String },
    #[error("{0}: cannot create its folder: {1}")]
    Folder(PathBuf, std::io::Error),
}

impl StoreError {
    /// Whether the machine, not the input, failed: a full disk or an I/O error while writing.
    pub fn is_runtime(&self) -> bool {
        match self {
            StoreError::Sqlite { err, .. } => matches!(
                err.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure)
            ),
            StoreError::Folder(_, e) => crate::data::cache::is_runtime_io(e),
            _ => false,
        }
    }
}

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
    Diverged,
    Pruned,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Diverged => "diverged",
            RunStatus::Pruned => "pruned",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "done" => RunStatus::Done,
            "failed" => RunStatus::Failed,
            "diverged" => RunStatus::Diverged,
            "pruned" => RunStatus::Pruned,
            "interrupted" => RunStatus::Interrupted,
            _ => return None,
        })
    }
}

/// A sweep as stored.
#[derive(Debug, Clone)]
pub struct SweepRecord {
    pub name: String,
    pub file: String,
    pub spec: String,
    pub data_path: String,
    pub data_fingerprint: String,
    pub axes: Vec<String>,
}

#[cfg(test)]
impl SweepRecord {
    /// A sweep record for tests: file `<name>.toml`, data `d`, fingerprint `f`.
    pub(crate) fn for_test(name: &str, axes: &[&str]) -> SweepRecord {
        SweepRecord {
            name: name.into(),
            file: format!("{name}.toml"),
            spec: String::new(),
            data_path: "d".into(),
            data_fingerprint: "f".into(),
            axes: axes.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// A planned run as stored.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: String,
    pub seed: u64,
    pub config_json: String,
    pub model: String,
    pub epochs: usize,
    pub params: Vec<(String, Value)>,
    pub artifact_dir: String,
}

#[cfg(test)]
impl RunRecord {
    /// A baseline run record for tests: config `{}`, artifacts in `x`.
    pub(crate) fn for_test(
        id: impl Into<String>,
        seed: u64,
        epochs: usize,
        params: Vec<(String, Value)>,
    ) -> RunRecord {
        RunRecord {
            id: id.into(),
            seed,
            config_json: "{}".into(),
            model: "baseline".into(),
            epochs,
            params,
            artifact_dir: "x".into(),
        }
    }
}

/// Seconds since the Unix epoch, the unit of leases.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A run as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub status: RunStatus,
    /// Launches, including those lost to a scheduler's death.
    pub attempts: u32,
    /// Failures that count against `max_retries` (see the scheduler).
    pub failures: u32,
    pub lease_expires: Option<f64>,
    pub worker_pid: Option<i64>,
    pub epochs_done: usize,
    pub error: Option<String>,
}

impl RunState {
    /// A `running` run whose worker stopped renewing its lease.
    pub fn lease_expired(&self, now: f64) -> bool {
        self.status == RunStatus::Running && self.lease_expires.is_none_or(|t| t < now)
    }
}

/// One epoch of training curves.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: Option<f64>,
    pub train_acc: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub lr: Option<f64>,
    pub secs: Option<f64>,
    /// Milliseconds the hook spent writing this row.
    pub write_ms: Option<f64>,
}

/// The `epochs` columns an [`EpochRow`] is read from, in [`EpochRow::from_row`]'s order.
pub const EPOCH_COLUMNS: &str =
    "epoch, train_loss, train_acc, val_loss, val_acc, lr, secs, write_ms";

impl EpochRow {
    /// Reads [`EPOCH_COLUMNS`] from `r`, starting at column `first`.
    pub fn from_row(r: &rusqlite::Row, first: usize) -> rusqlite::Result<EpochRow> {
        Ok(EpochRow {
            epoch: r.get::<_, i64>(first)? as usize,
            train_loss: r.get(first + 1)?,
            train_acc: r.get(first + 2)?,
            val_loss: r.get(first + 3)?,
            val_acc: r.get(first + 4)?,
            lr: r.get(first + 5)?,
            secs: r.get(first + 6)?,
            write_ms: r.get(first + 7)?,
        })
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

fn now_sql() -> &'static str {
    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date: what commands
    /// that write (`sweep`, its workers) use. A file that is not fer-lab's is refused untouched.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Folder(parent.into(), e))?;
        }
        // A zero-byte file is an empty SQLite database: fer-lab may make it its own.
        let has_content = path.metadata().is_ok_and(|m| m.len() > 0);
        let mut conn = Connection::open(path).map_err(|e| sqlite(path, e))?;
        if has_content {
            // Before `configure`, which already writes (WAL mode).
            match inspect(&conn, path)? {
                Contents::Empty => {}
                Contents::FerLab(v) => newer_refused(v, path)?,
                Contents::Foreign(tables) => {
                    return Err(StoreError::Foreign {
                        path: path.into(),
                        tables,
                    });
                }
            }
        }
        configure(&conn, path)?;
        check_version(&conn, path)?;
        migrations::migrations()
            .to_latest(&mut conn)
            .map_err(|e| migration_error(path, e))?;
        Ok(Store {
            conn,
            path: path.into(),
        })
    }

    /// Opens an existing fer-lab database read-only: what `sql`, `report`, `runs`, `predict`,
    /// `export` and the dashboard use. Readers never create or migrate: an empty or foreign
    /// file, or one too old to read, is an error that says so, and the file is left as it was.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Self::open_fer_lab(path, flags, Duration::from_secs(10), "query_only")
    }

    /// Opens an existing fer-lab database for a small write (a dashboard's pause flag or
    /// retry) without creating or migrating it.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Self::open_fer_lab(path, flags, Duration::from_secs(30), "foreign_keys")
    }

    /// Opens a file that must already be a readable fer-lab database, with `flags`, a busy
    /// timeout and one boolean pragma switched on; never creates or migrates.
    fn open_fer_lab(
        path: &Path,
        flags: OpenFlags,
        busy: Duration,
        pragma: &str,
    ) -> Result<Store, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NoDatabase(path.into()));
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sqlite(path, e))?;
        conn.busy_timeout(busy)
            .and_then(|()| conn.pragma_update(None, pragma, true))
            .map_err(|e| sqlite(path, e))?;
        readable(&conn, path)?;
        add_functions(&conn, path)?;
        Ok(Store {
            conn,
            path: path.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sqlite(&self.path, e)
    }

    /// A rusqlite error on this database, as the store reports it (with the path).
    pub fn sqlite_error(&self, e: rusqlite::Error) -> StoreError {
        self.err(e)
    }

    /// The schema version of the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map(|v| v as usize)
            .map_err(|e| self.err(e))
    }

    /// The connection, for a reader that keeps its own prepared statements.
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    /// Records a sweep and its planned runs in one transaction. Runs already known (same id)
    /// keep their status and results: that is how a re-launched sweep skips finished work.
    /// Returns the sweep id.
    pub fn register_sweep(
        &mut self,
        sweep: &SweepRecord,
        runs: &[RunRecord],
    ) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            &format!(
                "INSERT INTO sweeps (name, file, spec, data_path, data_fingerprint)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET file = ?2, spec = ?3, data_path = ?4,
                     data_fingerprint = ?5, updated_at = {}",
                now_sql()
            ),
            params![
                sweep.name,
                sweep.file,
                sweep.spec,
                sweep.data_path,
                sweep.data_fingerprint
            ],
        )
        .map_err(e)?;
        let sweep_id: i64 = tx
            .query_row(
                "SELECT id FROM sweeps WHERE name = ?1",
                [&sweep.name],
                |r| r.get(0),
            )
            .map_err(e)?;
        tx.execute("DELETE FROM sweep_axes WHERE sweep_id = ?1", [sweep_id])
            .map_err(e)?;
        for (i, key) in sweep.axes.iter().enumerate() {
            tx.execute(
                "INSERT INTO sweep_axes (sweep_id, key, position) VALUES (?1, ?2, ?3)",
                params![sweep_id, key, i as i64],
            )
            .map_err(e)?;
        }
        for (position, run) in runs.iter().enumerate() {
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO runs (id, sweep_id, seed, config, model, data_fingerprint,
                         epochs_planned, artifact_dir)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        run.id,
                        sweep_id,
                        run.seed as i64,
                        run.config_json,
                        run.model,
                        sweep.data_fingerprint,
                        run.epochs as i64,
                        run.artifact_dir
                    ],
                )
                .map_err(e)?;
            if inserted > 0 {
                for (key, value) in &run.params {
                    let num = match value {
                        Value::Number(n) => n.as_f64(),
                        Value::Bool(b) => Some(f64::from(u8::from(*b))),
                        _ => None,
                    };
                    let text = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    tx.execute(
                        "INSERT INTO run_params (run_id, key, value, num) VALUES (?1, ?2, ?3, ?4)",
                        params![run.id, key, text, num],
                    )
                    .map_err(e)?;
                }
            }
            tx.execute(
                "INSERT INTO sweep_runs (sweep_id, run_id, position) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sweep_id, run_id) DO UPDATE SET position = ?3",
                params![sweep_id, run.id, position as i64],
            )
            .map_err(e)?;
        }
        wide_params_view(&tx).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(sweep_id)
    }

    pub fn run_status(&self, id: &str) -> Result<Option<RunStatus>, StoreError> {
        let status: Option<String> = self
            .conn
            .query_row("SELECT status FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(status.and_then(|s| RunStatus::parse(&s)))
    }

    /// A worker starts (or resumes) a run on `device`. A fresh start clears everything an earlier
    /// attempt recorded; a resume from epoch `e` keeps epochs 1..=e and drops the rest, so no
    /// epoch row is ever duplicated or left from a lost attempt. The wall time of earlier
    /// attempts is kept (only `--restart` forgets it) and returned: this attempt adds to it.
    pub fn start_attempt(
        &mut self,
        id: &str,
        device: &str,
        params: usize,
        flops: u64,
        resume_from: Option<usize>,
    ) -> Result<f64, StoreError> {
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let kept = resume_from.unwrap_or(0) as i64;
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "DELETE FROM epochs WHERE run_id = ?1 AND epoch > ?2",
            params![id, kept],
        )
        .map_err(e)?;
        for table in ["evals", "class_metrics", "confusion"] {
            tx.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [id])
                .map_err(e)?;
        }
        tx.execute(
            &format!(
                "UPDATE runs SET status = 'running', device = ?2, params = ?3, flops = ?4,
                     started_at = coalesce(CASE WHEN ?5 > 0 THEN started_at END, {now}),
                     finished_at = NULL, error = NULL, stopped_epoch = NULL,
                     epochs_done = ?5, best_epoch = NULL, resumed_from = nullif(?5, 0),
                     first_step_at = NULL
                 WHERE id = ?1",
                now = now_sql()
            ),
            params![id, device, params as i64, flops as i64, kept],
        )
        .map_err(e)?;
        if kept > 0 {
            tx.execute(
                "INSERT INTO run_events (run_id, kind, detail) VALUES (?1, 'resumed', ?2)",
                params![id, format!("from the checkpoint of epoch {kept}")],
            )
            .map_err(e)?;
        }
        let wall: Option<f64> = tx
            .query_row("SELECT wall_secs FROM runs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(wall.unwrap_or(0.0))
    }

    /// The scheduler takes a queued run for a worker: status running, one more attempt, a
    /// lease the worker must renew. Returns the attempt number.
    pub fn claim_run(&mut self, id: &str, slot: &str, lease_secs: f64) -> Result<u32, StoreError> {
        let now = now_unix();
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "UPDATE runs SET status = 'running', attempts = attempts + 1, slot = ?2,
                 launched_at = ?3, lease_expires = ?4, worker_pid = NULL
             WHERE id = ?1",
            params![id, slot, now, now + lease_secs],
        )
        .map_err(e)?;
        let attempts: i64 = tx
            .query_row("SELECT attempts FROM runs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .map_err(e)?;
        tx.execute(
            "INSERT INTO run_events (run_id, kind, detail) VALUES (?1, 'launched', ?2)",
            params![id, format!("attempt {attempts} on {slot}")],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(attempts as u32)
    }

    /// The worker's heartbeat: it is alive and holds the run for `lease_secs` more, and the run
    /// has trained `wall_secs` in all (so a killed attempt's time is not lost).
    pub fn heartbeat(
        &self,
        id: &str,
        pid: u32,
        lease_secs: f64,
        wall_secs: f64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "UPDATE runs SET worker_pid = ?2, lease_expires = ?3, wall_secs = ?4,
                         heartbeat_at = {}
                     WHERE id = ?1 AND status = 'running'",
                    now_sql()
                ),
                params![id, pid, now_unix() + lease_secs, wall_secs],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The scheduler records the pid of the worker it just started, so that a later launch can
    /// tell a dead worker from a live one before the worker's first heartbeat.
    pub fn set_worker_pid(&self, id: &str, pid: u32) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET worker_pid = ?2 WHERE id = ?1 AND status = 'running'",
                params![id, pid],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// One more failure of a run that counts against its retries; returns how many it has.
    pub fn count_failure(&self, id: &str) -> Result<u32, StoreError> {
        self.conn
            .query_row(
                "UPDATE runs SET failures = failures + 1 WHERE id = ?1 RETURNING failures",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u32)
            .map_err(|e| self.err(e))
    }

    /// Where a running run is inside its current split (from the worker's heartbeat).
    pub fn set_progress(
        &self,
        id: &str,
        split: &str,
        done: usize,
        total: usize,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET split = ?2, items_done = ?3, items_total = ?4 WHERE id = ?1",
                params![id, split, done as i64, total as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// When the worker ran its first training step (scheduler overhead = this − launched_at).
    pub fn set_first_step(&self, id: &str, at: f64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET first_step_at = ?2 WHERE id = ?1",
                params![id, at],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Puts a run back in the queue (its checkpoints stay, so it resumes), with the reason.
    pub fn requeue(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET status = 'queued', worker_pid = NULL, lease_expires = NULL WHERE id = ?1",
                [id],
            )
            .map_err(|e| self.err(e))?;
        self.record_event(id, "requeued", Some(reason))
    }

    /// Forgets everything a run recorded: it trains again from scratch.
    pub fn reset_run(&mut self, id: &str) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        for table in ["epochs", "evals", "class_metrics", "confusion"] {
            tx.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [id])
                .map_err(e)?;
        }
        tx.execute(
            "UPDATE runs SET status = 'queued', attempts = 0, failures = 0, epochs_done = 0,
                 best_epoch = NULL,
                 error = NULL, stopped_epoch = NULL, resumed_from = NULL, finished_at = NULL,
                 wall_secs = NULL, worker_pid = NULL, lease_expires = NULL
             WHERE id = ?1",
            [id],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Pauses or resumes launching for a sweep (running runs go on either way).
    pub fn set_paused(&self, sweep_id: i64, paused: bool) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE sweeps SET paused = ?2 WHERE id = ?1",
                params![sweep_id, paused],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn is_paused(&self, sweep_id: i64) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT paused FROM sweeps WHERE id = ?1", [sweep_id], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// Puts a failed or diverged run back in the queue with a fresh retry budget; it resumes
    /// from its last checkpoint. Returns false (and changes nothing) for a run in another state.
    pub fn retry_run(&self, id: &str, why: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE runs SET status = 'queued', failures = 0, error = NULL, stopped_epoch = NULL,
                     worker_pid = NULL, lease_expires = NULL
                 WHERE id = ?1 AND status IN ('failed', 'diverged')",
                [id],
            )
            .map_err(|e| self.err(e))?;
        if changed > 0 {
            self.record_event(id, "requeued", Some(why))?;
        }
        Ok(changed > 0)
    }

    /// The queued runs of a sweep, in sweep order: how a scheduler notices runs that a
    /// dashboard put back in the queue.
    pub fn queued_runs(&self, sweep_id: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.id FROM runs r JOIN sweep_runs sr ON sr.run_id = r.id AND sr.sweep_id = ?1
                 WHERE r.status = 'queued' ORDER BY sr.position",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([sweep_id], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Appends to a run's event log.
    pub fn record_event(
        &self,
        id: &str,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO run_events (run_id, kind, detail) VALUES (?1, ?2, ?3)",
                params![id, kind, detail],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// What the scheduler needs to know of a run.
    pub fn run_state(&self, id: &str) -> Result<Option<RunState>, StoreError> {
        self.conn
            .query_row(
                "SELECT status, attempts, lease_expires, worker_pid, epochs_done, error, failures
                 FROM runs WHERE id = ?1",
                [id],
                |r| {
                    Ok(RunState {
                        status: RunStatus::parse(&r.get::<_, String>(0)?)
                            .unwrap_or(RunStatus::Failed),
                        attempts: r.get::<_, i64>(1)? as u32,
                        lease_expires: r.get(2)?,
                        worker_pid: r.get(3)?,
                        epochs_done: r.get::<_, i64>(4)? as usize,
                        error: r.get(5)?,
                        failures: r.get::<_, i64>(6)? as u32,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Writes one epoch's curves (the training hook calls this as each epoch ends).
    /// The row and the run's progress go in one transaction; the time it took is stored with
    /// the row (`write_ms`) and returned.
    pub fn record_epoch(&mut self, run_id: &str, row: &EpochRow) -> Result<f64, StoreError> {
        let started = std::time::Instant::now();
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "INSERT INTO epochs (run_id, epoch, train_loss, train_acc, val_loss, val_acc, lr, secs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (run_id, epoch) DO UPDATE SET train_loss = ?3, train_acc = ?4,
                 val_loss = ?5, val_acc = ?6, lr = ?7, secs = ?8",
            params![
                run_id,
                row.epoch as i64,
                row.train_loss,
                row.train_acc,
                row.val_loss,
                row.val_acc,
                row.lr,
                row.secs
            ],
        )
        .map_err(e)?;
        tx.execute(
            "UPDATE runs SET epochs_done = max(epochs_done, ?2) WHERE id = ?1",
            params![run_id, row.epoch as i64],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        self.conn
            .execute(
                "UPDATE epochs SET write_ms = ?3 WHERE run_id = ?1 AND epoch = ?2",
                params![run_id, row.epoch as i64, ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(ms)
    }

    /// Every recorded epoch of a run, in order.
    pub fn epoch_rows(&self, run_id: &str) -> Result<Vec<EpochRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {EPOCH_COLUMNS} FROM epochs WHERE run_id = ?1 ORDER BY epoch"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| EpochRow::from_row(r, 0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Per-epoch val accuracy of a run, in epoch order.
    pub fn val_accuracies(&self, run_id: &str) -> Result<Vec<(usize, f64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT epoch, val_acc FROM epochs WHERE run_id = ?1 AND val_acc IS NOT NULL
                 ORDER BY epoch",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| Ok((r.get::<_, i64>(0)? as usize, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Stores the evaluations of the best checkpoint and marks the run done, atomically.
    pub fn finish_run(
        &mut self,
        id: &str,
        best_epoch: usize,
        wall_secs: f64,
        evals: &[(&str, &Evaluation, usize)],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        for (split, eval, n) in evals {
            tx.execute(
                "INSERT OR REPLACE INTO evals (run_id, split, epoch, n, accuracy, loss,
                     macro_precision, macro_recall, macro_f1)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    split,
                    best_epoch as i64,
                    *n as i64,
                    eval.accuracy,
                    eval.loss,
                    eval.macro_precision,
                    eval.macro_recall,
                    eval.macro_f1
                ],
            )
            .map_err(e)?;
            for (class, m) in eval.per_class.iter().enumerate() {
                tx.execute(
                    "INSERT OR REPLACE INTO class_metrics (run_id, split, class_id, precision,
                         recall, f1, support)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        id,
                        split,
                        class as i64,
                        m.precision,
                        m.recall,
                        m.f1,
                        m.support as i64
                    ],
                )
                .map_err(e)?;
            }
            for (t, row) in eval.confusion.counts.iter().enumerate() {
                for (p, count) in row.iter().enumerate() {
                    tx.execute(
                        "INSERT OR REPLACE INTO confusion (run_id, split, true_id, pred_id, count)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, split, t as i64, p as i64, *count as i64],
                    )
                    .map_err(e)?;
                }
            }
        }
        tx.execute(
            &format!(
                "UPDATE runs SET status = 'done', best_epoch = ?2, wall_secs = ?3,
                     finished_at = {}, error = NULL, worker_pid = NULL, lease_expires = NULL
                 WHERE id = ?1",
                now_sql()
            ),
            params![id, best_epoch as i64, wall_secs],
        )
        .map_err(e)?;
        tx.execute(
            "INSERT INTO run_events (run_id, kind, detail) VALUES (?1, 'done', ?2)",
            params![id, format!("best epoch {best_epoch}")],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Marks a run as ended without results (`failed`, `diverged`, `pruned`, `interrupted`),
    /// with the epoch it stopped at when known. `wall_secs` None keeps the time the worker's
    /// heartbeat last recorded (when the worker is gone and only the scheduler knows).
    pub fn end_run(
        &self,
        id: &str,
        status: RunStatus,
        wall_secs: Option<f64>,
        error: Option<&str>,
        stopped_epoch: Option<usize>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "UPDATE runs SET status = ?2, wall_secs = coalesce(?3, wall_secs), error = ?4,
                         finished_at = {},
                         stopped_epoch = ?5, worker_pid = NULL, lease_expires = NULL
                     WHERE id = ?1",
                    now_sql()
                ),
                params![
                    id,
                    status.as_str(),
                    wall_secs,
                    error,
                    stopped_epoch.map(|e| e as i64)
                ],
            )
            .map_err(|e| self.err(e))?;
        let detail = match (error, stopped_epoch) {
            (Some(e), _) => Some(e.to_string()),
            (None, Some(epoch)) => Some(format!("at epoch {epoch}")),
            (None, None) => None,
        };
        self.record_event(id, status.as_str(), detail.as_deref())
    }

    /// [`Store::query`], stopped with [`StoreError::Timeout`] once it has run for `limit`.
    pub fn query_for(&self, sql: &str, limit: Duration) -> Result<Rows, StoreError> {
        let handle = self.conn.get_interrupt_handle();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let timer = std::thread::spawn(move || {
            let expired = matches!(
                wait.recv_timeout(limit),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            if expired {
                handle.interrupt();
            }
            expired
        });
        let result = self.query(sql, &[]);
        let _ = done.send(());
        let expired = timer.join().unwrap_or(false);
        match result {
            Err(StoreError::Query { sql_error, .. })
                if expired && sql_error.contains("interrupt") =>
            {
                Err(StoreError::Timeout(limit))
            }
            other => other,
        }
    }

    /// The finished runs of a sweep that never learned (see [`NEVER_LEARNED_BELOW`]), in sweep
    /// order.
    pub fn never_learned(&self, sweep_id: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.id FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
                 JOIN evals v ON v.run_id = r.id AND v.split = 'val'
                 WHERE sr.sweep_id = ?1 AND r.status = ?2 AND v.macro_recall < ?3
                 ORDER BY sr.position",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![sweep_id, RunStatus::Done.as_str(), NEVER_LEARNED_BELOW],
            |r| r.get(0),
        )
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Runs one SQL statement and returns its rows. On a read-only store, writes are refused.
    pub fn query(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Rows, StoreError> {
        let query_err = |e: rusqlite::Error| {
            let text = e.to_string();
            if text.contains("readonly")
                || text.contains("read-only")
                || text.contains("query_only")
            {
                StoreError::ReadOnly(format!("`{}` would write ({text})", sql.trim()))
            } else {
                StoreError::Query {
                    path: self.path.clone(),
                    sql_error: text,
                }
            }
        };
        // SQLite prepares such a text to no statement, and stepping it says "API misuse".
        if without_comments(sql).trim().is_empty() {
            return Err(StoreError::EmptyQuery);
        }
        let mut stmt = self.conn.prepare(sql).map_err(query_err)?;
        if !stmt.readonly() && self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(StoreError::ReadOnly(format!(
                "`{}` is not a read-only statement",
                sql.trim()
            )));
        }
        let headers: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let n = headers.len();
        let mut out = Rows::new(headers);
        let mut rows = stmt.query(args).map_err(query_err)?;
        while let Some(row) = rows.next().map_err(query_err)? {
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                cells.push(match row.get_ref(i).map_err(query_err)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::from(v),
                    ValueRef::Real(v) => serde_json::Number::from_f64(v)
                        .map(Value::Number)
                        .unwrap_or(Value::Null),
                    ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::String(format!("<{} bytes>", b.len())),
                });
            }
            out.push(cells);
        }
        Ok(out)
    }
}

/// `sql` without its leading whitespace and comments (`-- …` lines, `/* … */`).
fn without_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after
                .split_once('\n')
                .map_or("", |(_, next)| next)
                .trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after
                .split_once("*/")
                .map_or("", |(_, next)| next)
                .trim_start();
        } else {
            return rest;
        }
    }
}

fn sqlite(path: &Path, err: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.into(),
        err,
    }
}

/// `run_params_wide`: one row per run, one column per config key any run has. Its columns
/// depend on the keys recorded so far, so it is rebuilt whenever a sweep is registered rather
/// than fixed in a migration.
fn wide_params_view(conn: &Connection) -> rusqlite::Result<()> {
    let keys: Vec<String> = conn
        .prepare("SELECT DISTINCT key FROM run_params ORDER BY key")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let columns: String = keys
        .iter()
        .map(|k| {
            format!(
                ",\n    max(CASE WHEN key = '{}' THEN coalesce(num, value) END) AS \"{}\"",
                k.replace('\'', "''"),
                k.replace('"', "\"\"")
            )
        })
        .collect();
    conn.execute_batch(&format!(
        "DROP VIEW IF EXISTS run_params_wide;
         CREATE VIEW run_params_wide AS SELECT run_id{columns}\nFROM run_params GROUP BY run_id;"
    ))
}

/// SQL functions fer-lab's views and users' queries rely on that the bundled SQLite lacks
/// (it is built without math functions): sqrt, for standard deviations.
fn add_functions(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "sqrt",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let x: Option<f64> = ctx.get(0)?;
            Ok(x.filter(|x| *x >= 0.0).map(f64::sqrt))
        },
    )
    .map_err(|e| sqlite(path, e))
}

fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    add_functions(conn, path)?;
    conn.busy_timeout(Duration::from_secs(30))
        .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
        .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|()| conn.pragma_update(None, "foreign_keys", true))
        .map_err(|e| sqlite(path, e))
}

fn check_version(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    match migrations::migrations().current_version(conn) {
        Ok(SchemaVersion::Outside(v)) => Err(StoreError::NewerSchema {
            path: path.into(),
            found: v.get(),
            known: migrations::LATEST,
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(migration_error(path, e)),
    }
}

/// rusqlite_migration's own Display is a debug dump of the query; say what SQLite said.
fn migration_error(path: &Path, e: rusqlite_migration::Error) -> StoreError {
    match e {
        rusqlite_migration::Error::RusqliteError { err, .. } => match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => StoreError::NotADatabase(path.into()),
            _ => sqlite(path, err),
        },
        other => StoreError::Migration {
            path: path.into(),
            why: other.to_string(),
        },
    }
}

/// What a database file holds, found by reading only.
#[derive(Debug, PartialEq)]
enum Contents {
    /// No schema at all: a new (or zero-byte) database.
    Empty,
    /// fer-lab's tables, at this schema version.
    FerLab(usize),
    /// Someone else's database, described for the error message.
    Foreign(String),
}

fn inspect(conn: &Connection, path: &Path) -> Result<Contents, StoreError> {
    let read_err = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => StoreError::NotADatabase(path.into()),
        _ => sqlite(path, e),
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(read_err)?;
    let objects: Vec<(String, String)> = conn
        .prepare(
            "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
        })
        .map_err(read_err)?;
    if objects.is_empty() && version == 0 {
        return Ok(Contents::Empty);
    }
    let tables: Vec<&str> = objects
        .iter()
        .filter(|(kind, _)| kind == "table")
        .map(|(_, name)| name.as_str())
        .collect();
    let ours = ["sweeps", "runs", "epochs"]
        .iter()
        .all(|t| tables.contains(t));
    if ours && version > 0 {
        return Ok(Contents::FerLab(version as usize));
    }
    const SHOWN: usize = 5;
    let described = match tables.len() {
        0 => format!("no tables, user_version {version}"),
        n if n <= SHOWN => format!("tables {}", tables.join(", ")),
        n => format!(
            "tables {} and {} more",
            tables[..SHOWN].join(", "),
            n - SHOWN
        ),
    };
    Ok(Contents::Foreign(described))
}

fn newer_refused(version: usize, path: &Path) -> Result<(), StoreError> {
    if version > migrations::LATEST {
        return Err(StoreError::NewerSchema {
            path: path.into(),
            found: version,
            known: migrations::LATEST,
        });
    }
    Ok(())
}

/// Whether a reader can use the database as it is (see [`migrations::READABLE_FROM`]).
fn readable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    match inspect(conn, path)? {
        Contents::Empty => Err(StoreError::EmptyDatabase(path.into())),
        Contents::Foreign(tables) => Err(StoreError::Foreign {
            path: path.into(),
            tables,
        }),
        Contents::FerLab(v) if v < migrations::READABLE_FROM => Err(StoreError::OlderSchema {
            path: path.into(),
            found: v,
            readable: migrations::READABLE_FROM,
        }),
        Contents::FerLab(v) => newer_refused(v, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_sweep() -> (SweepRecord, Vec<RunRecord>) {
        let sweep = SweepRecord::for_test("s", &["lr"]);
        let runs = (0..2)
            .map(|i| {
                RunRecord::for_test(
                    format!("run{i}"),
                    1,
                    1,
                    vec![("lr".into(), Value::from(0.1 * f64::from(i + 1)))],
                )
            })
            .collect();
        (sweep, runs)
    }

    #[test]
    fn open_migrates_and_sets_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/db.sqlite");
        let store = Store::open(&path).unwrap();
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let version: i64 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, migrations::LATEST);
        drop(store);
        // Re-opening an up-to-date database is a no-op.
        Store::open(&path).unwrap();
    }

    #[test]
    fn older_sqlite_readers_can_open_the_database() {
        // Python's sqlite3 (3.40 on Debian 12) and older shells parse every view of the schema:
        // nothing newer than SQLite 3.35 may appear in one.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).unwrap();
        let views = store
            .query("SELECT sql FROM sqlite_schema WHERE type = 'view'", &[])
            .unwrap();
        assert!(!views.rows.is_empty());
        for view in views.rows {
            let sql = view[0].as_str().unwrap().to_ascii_uppercase();
            // An ORDER BY inside an aggregate's parentheses needs SQLite 3.44.
            for (start, _) in sql.match_indices("GROUP_CONCAT(") {
                let mut depth = 0;
                let args: String = sql[start + "GROUP_CONCAT".len()..]
                    .chars()
                    .take_while(|&c| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth > 0
                    })
                    .collect();
                assert!(
                    !args.contains("ORDER BY"),
                    "aggregate ORDER BY in a view: {sql}"
                );
            }
        }
    }

    #[test]
    fn readers_read_only_fer_labs_databases_at_a_schema_they_know() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.sqlite");
        std::fs::write(&empty, b"").unwrap();
        let err = Store::open_read_only(&empty).err().unwrap();
        assert!(matches!(err, StoreError::EmptyDatabase(_)), "{err}");
        let err = Store::open_existing(&empty).err().unwrap();
        assert!(matches!(err, StoreError::EmptyDatabase(_)), "{err}");
        assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
        // A sweep makes an empty file its own.
        Store::open(&empty).unwrap();
        Store::open_read_only(&empty).unwrap();

        let at = |version: usize| {
            let path = dir.path().join(format!("v{version}.sqlite"));
            let mut conn = Connection::open(&path).unwrap();
            migrations::migrations()
                .to_version(&mut conn, version)
                .unwrap();
            path
        };
        let v3 = at(3);
        let err = Store::open_read_only(&v3).err().unwrap().to_string();
        assert!(
            err.contains("schema version 3") && err.contains("`fer-lab sweep`"),
            "{err}"
        );
        assert!(Store::open_existing(&v3).is_err());
        // Readers read version 4 as it is; a sweep brings it up to date.
        let v4 = at(migrations::READABLE_FROM);
        let reader = Store::open_read_only(&v4).unwrap();
        reader.query("SELECT * FROM leaderboard", &[]).unwrap();
        reader.query("SELECT * FROM cell_stats", &[]).unwrap();
        drop(reader);
        let version = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(version(&v4), migrations::READABLE_FROM as i64);
        Store::open(&v4).unwrap();
        assert_eq!(version(&v4), migrations::LATEST as i64);

        let foreign = dir.path().join("foreign.sqlite");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE runs (x); PRAGMA user_version = 2;")
            .unwrap();
        for err in [
            Store::open(&foreign).err().unwrap(),
            Store::open_read_only(&foreign).err().unwrap(),
        ] {
            assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
        }
        let text = dir.path().join("text.sqlite");
        std::fs::write(&text, "hello\n".repeat(100)).unwrap();
        for err in [
            Store::open(&text).err().unwrap(),
            Store::open_read_only(&text).err().unwrap(),
        ] {
            assert!(matches!(err, StoreError::NotADatabase(_)), "{err}");
        }
    }

    #[test]
    fn launches_are_not_failures_and_wall_time_adds_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let (sweep, runs) = sample_sweep();
        store.register_sweep(&sweep, &runs).unwrap();
        store.claim_run("run0", "cpu#1", 20.0).unwrap();
        assert_eq!(store.start_attempt("run0", "cpu", 1, 1, None).unwrap(), 0.0);
        store.heartbeat("run0", 1, 20.0, 5.0).unwrap();
        // Its scheduler died; the next launch takes it again.
        store.requeue("run0", "gone").unwrap();
        assert_eq!(store.claim_run("run0", "cpu#1", 20.0).unwrap(), 2);
        let state = store.run_state("run0").unwrap().unwrap();
        assert_eq!((state.attempts, state.failures), (2, 0));
        assert_eq!(
            store.start_attempt("run0", "cpu", 1, 1, Some(1)).unwrap(),
            5.0
        );
        assert_eq!(store.count_failure("run0").unwrap(), 1);
        assert_eq!(store.count_failure("run0").unwrap(), 2);
        store
            .end_run("run0", RunStatus::Failed, None, Some("boom"), None)
            .unwrap();
        let wall: f64 = store
            .conn()
            .query_row("SELECT wall_secs FROM runs WHERE id = 'run0'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(wall, 5.0, "the last heartbeat's time is kept");
        assert!(store.retry_run("run0", "again").unwrap());
        assert_eq!(store.run_state("run0").unwrap().unwrap().failures, 0);
    }

    #[test]
    fn the_leaderboard_is_best_first_and_runs_at_chance_are_known() {
        use crate::metrics::{Confusion, Evaluation};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let sweep = SweepRecord::for_test("s", &[]);
        let runs: Vec<RunRecord> = ["chance", "good", "unfinished", "half"]
            .iter()
            .map(|id| RunRecord::for_test(*id, 1, 1, vec![]))
            .collect();
        let sweep_id = store.register_sweep(&sweep, &runs).unwrap();
        // Two faces of each class; `right` of each class predicted right, the rest as class 0.
        let eval = |right: usize| {
            let mut c = Confusion::default();
            for class in 0..7 {
                for k in 0..2 {
                    c.add(class, if k < right { class } else { 0 });
                }
            }
            Evaluation::from_confusion(c, 1.0)
        };
        for (id, right) in [("chance", 0), ("good", 2), ("half", 1)] {
            let e = eval(right);
            store
                .finish_run(id, 1, 1.0, &[("val", &e, 14), ("test", &e, 14)])
                .unwrap();
        }
        let order: Vec<Value> = store
            .query("SELECT run FROM leaderboard", &[])
            .unwrap()
            .rows
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(order, ["good", "half", "chance", "unfinished"]);
        // Predicting class 0 for every face: 1/7 balanced accuracy, a run that never learned.
        assert_eq!(store.never_learned(sweep_id).unwrap(), ["chance"]);
    }

    #[test]
    fn a_query_without_a_statement_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        for sql in ["", "  \n", "-- just a comment", "/* a */ -- b\n  "] {
            let err = store.query(sql, &[]).unwrap_err();
            assert!(matches!(err, StoreError::EmptyQuery), "{sql:?}: {err}");
        }
        let rows = store.query("-- the count\nSELECT 1 AS one", &[]).unwrap();
        assert_eq!(rows.rows[0][0], Value::from(1));
    }

    #[test]
    fn newer_schema_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).unwrap();
        store
            .conn()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(store);
        let err = Store::open_read_only(&path).err().unwrap().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }

    #[test]
    fn registering_twice_keeps_results_and_read_only_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut store = Store::open(&path).unwrap();
        let (sweep, runs) = sample_sweep();
        store.register_sweep(&sweep, &runs).unwrap();
        store
            .end_run("run0", RunStatus::Failed, Some(1.0), Some("boom"), None)
            .unwrap();
        store.register_sweep(&sweep, &runs).unwrap();
        assert_eq!(store.run_status("run0").unwrap(), Some(RunStatus::Failed));
        let n = store
            .query("SELECT count(*) AS n FROM run_params", &[])
            .unwrap();
        assert_eq!(n.rows[0][0], Value::from(2));

        let ro = Store::open_read_only(&path).unwrap();
        let rows = ro
            .query("SELECT run, params FROM leaderboard ORDER BY run", &[])
            .unwrap();
        assert_eq!(rows.rows[0][1], Value::from("lr=0.1"));
        let err = ro.query("DELETE FROM runs", &[]).unwrap_err().to_string();
        assert!(err.contains("read-only"), "{err}");
        assert_eq!(store.run_status("run1").unwrap(), Some(RunStatus::Queued));
    }
}
