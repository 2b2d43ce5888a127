//! SQLite: the one place results live (`results/fer-lab.sqlite` by default).
//!
//! WAL mode so readers (`report`, `sql`, the dashboard) never block the training writer, foreign
//! keys on, a busy timeout instead of "database is locked", and every multi-row change in one
//! transaction so a crash never leaves half a sweep or half an evaluation behind.

mod analysis;
mod dashboard;
mod epochs;
mod groups;
mod heartbeat;
pub mod journal;
pub mod journal_bench;
mod leases;
pub mod migrations;
mod reads;
mod recorder;
mod records;
mod report;
mod runs;
mod sweeps;
mod synthetic;

pub use analysis::{ClassMetricRow, EvalScores, FinishedRun, RunOutcome};
pub use dashboard::{RunEvent, SweepMeta, SweepRunRow};
pub use groups::GroupMember;
pub use heartbeat::{Beat, Heartbeat, SharedRecorder};
pub use leases::now_unix;
pub use reads::{RunningProgress, StoredRun, TrainedRunRow};
pub use recorder::Recorder;
pub use records::{
    EPOCH_COLUMNS, EpochRow, EventKind, RunRecord, RunState, RunStatus, SweepRecord, UnknownWord,
};
pub use report::{LeaderOrder, LeaderRow, RunListRow, SweptValues};
pub use synthetic::{SyntheticEval, SyntheticState, synthetic_sweep};

use crate::table::Rows;
use rusqlite::{Connection, OpenFlags, types::ValueRef};
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
    #[error("no sweep named `{name}` in {} (known: {known})", .db.display())]
    NoSuchSweep {
        name: String,
        db: PathBuf,
        known: String,
    },
    #[error("{0}: no sweep recorded yet; run `fer-lab sweep FILE` first")]
    NoSweeps(PathBuf),
    #[error("fer-lab sql is read-only: {0}")]
    ReadOnly(String),
    #[error("the query is empty: give one SQL statement, e.g. \"SELECT * FROM leaderboard\"")]
    EmptyQuery,
    #[error("the query ran longer than {0:?} and was stopped (raise --timeout, or narrow it)")]
    Timeout(Duration),
    #[error("{path}: {sql_error}")]
    Query { path: PathBuf, sql_error: String },
    #[error("run {run}: `{status}` is not a status a run ends in")]
    NotAnEnd { run: String, status: RunStatus },
    #[error("{0}: cannot create its folder: {1}")]
    Folder(PathBuf, std::io::Error),
    /// A journal file or task file that cannot be read or written (see [`journal`]).
    #[error("journal: {0}")]
    Journal(String),
    /// Stored bytes that do not decode as what wrote them (a hand-edited database).
    #[error("{path}: {why}", path = .0.display(), why = .1)]
    Corrupt(PathBuf, crate::metrics::predictions::PredictionsError),
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

    #[cfg(test)]
    fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Stamps the file with another schema version, for tests of what readers refuse.
    #[cfg(test)]
    pub(crate) fn set_schema_version_for_test(&self, version: usize) {
        self.conn
            .pragma_update(None, "user_version", version as i64)
            .expect("the test's database takes a pragma");
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sqlite(&self.path, e)
    }

    /// The schema version of the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map(|v| v as usize)
            .map_err(|e| self.err(e))
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
    use crate::data::Split;

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
                .finish_run(id, 1, 1.0, &[(Split::Val, &e, 14), (Split::Test, &e, 14)])
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
