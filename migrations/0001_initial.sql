-- fer-lab schema, version 1. Released: never edit this file; add 0002_*.sql instead.

-- The seven classes, so SQL can join names onto class ids.
CREATE TABLE emotions (
    id   INTEGER PRIMARY KEY CHECK (id BETWEEN 0 AND 6),
    name TEXT NOT NULL UNIQUE
);
INSERT INTO emotions (id, name) VALUES
    (0, 'Angry'), (1, 'Disgust'), (2, 'Fear'), (3, 'Happy'),
    (4, 'Sad'), (5, 'Surprise'), (6, 'Neutral');

-- One row per sweep name; launching the same sweep again updates it.
CREATE TABLE sweeps (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    file             TEXT NOT NULL,
    spec             TEXT NOT NULL,          -- the sweep file's text at the last launch
    data_path        TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- The keys a sweep varies, in file order (the columns a leaderboard shows).
CREATE TABLE sweep_axes (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (sweep_id, key)
);

-- A run is identified by a hash of its resolved config, data fingerprint and seed.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    sweep_id         INTEGER NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE, -- the sweep that trains it
    status           TEXT NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'done', 'failed', 'diverged', 'pruned', 'interrupted')),
    seed             INTEGER NOT NULL,
    config           TEXT NOT NULL CHECK (json_valid(config)),
    model            TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL,
    device           TEXT,
    params           INTEGER,
    flops            INTEGER,
    epochs_planned   INTEGER NOT NULL,
    epochs_done      INTEGER NOT NULL DEFAULT 0,
    best_epoch       INTEGER,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at       TEXT,
    finished_at      TEXT,
    wall_secs        REAL,
    error            TEXT,
    artifact_dir     TEXT
);
CREATE INDEX runs_by_sweep ON runs (sweep_id, status);

-- Which runs a sweep holds: a run planned by two sweeps is trained once and shared.
CREATE TABLE sweep_runs (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    PRIMARY KEY (sweep_id, run_id)
);
CREATE INDEX sweep_runs_by_run ON sweep_runs (run_id);

-- Every resolved config key of a run, one row each, so SQL can GROUP BY a hyperparameter.
CREATE TABLE run_params (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,   -- as JSON text: 0.001, "adam", true
    num    REAL,            -- the value when it is a number or a boolean, else NULL
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_params_by_key ON run_params (key, value);

-- Per-epoch training curves, written while the run trains.
CREATE TABLE epochs (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL CHECK (epoch >= 1),
    train_loss  REAL,
    train_acc   REAL,
    val_loss    REAL,
    val_acc     REAL,
    lr          REAL,
    secs        REAL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (run_id, epoch)
);

-- The best-on-val checkpoint evaluated on val and test.
CREATE TABLE evals (
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    split           TEXT NOT NULL CHECK (split IN ('val', 'test')),
    epoch           INTEGER NOT NULL,
    n               INTEGER NOT NULL,
    accuracy        REAL NOT NULL,
    loss            REAL NOT NULL,
    macro_precision REAL NOT NULL,
    macro_recall    REAL NOT NULL,
    macro_f1        REAL NOT NULL,
    PRIMARY KEY (run_id, split)
);

CREATE TABLE class_metrics (
    run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    split     TEXT NOT NULL CHECK (split IN ('val', 'test')),
    class_id  INTEGER NOT NULL REFERENCES emotions (id),
    precision REAL NOT NULL,
    recall    REAL NOT NULL,
    f1        REAL NOT NULL,
    support   INTEGER NOT NULL,
    PRIMARY KEY (run_id, split, class_id)
);

CREATE TABLE confusion (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    split   TEXT NOT NULL CHECK (split IN ('val', 'test')),
    true_id INTEGER NOT NULL REFERENCES emotions (id),
    pred_id INTEGER NOT NULL REFERENCES emotions (id),
    count   INTEGER NOT NULL,
    PRIMARY KEY (run_id, split, true_id, pred_id)
);

-- What a user wants to see of every run of every sweep, best-on-val checkpoint metrics.
CREATE VIEW leaderboard AS
SELECT
    s.name             AS sweep,
    r.id               AS run,
    r.status           AS status,
    (SELECT group_concat(a.key || '=' || p.value, ' ' ORDER BY a.position)
       FROM sweep_axes a JOIN run_params p ON p.run_id = r.id AND p.key = a.key
      WHERE a.sweep_id = s.id) AS params,
    r.seed             AS seed,
    r.model            AS model,
    v.accuracy         AS val_acc,
    t.accuracy         AS test_acc,
    v.macro_f1         AS val_macro_f1,
    t.macro_f1         AS test_macro_f1,
    r.best_epoch       AS best_epoch,
    r.epochs_done      AS epochs,
    r.wall_secs        AS wall_secs,
    r.params           AS n_params,
    r.device           AS device,
    r.finished_at      AS finished_at
FROM sweeps s
JOIN sweep_runs sr ON sr.sweep_id = s.id
JOIN runs r ON r.id = sr.run_id
LEFT JOIN evals v ON v.run_id = r.id AND v.split = 'val'
LEFT JOIN evals t ON t.run_id = r.id AND t.split = 'test';
