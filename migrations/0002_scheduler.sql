-- fer-lab schema, version 2: the scheduler's state. Released: never edit; add 0003_*.sql.

-- Attempts, the worker that holds a run and its lease: a run whose lease expired has lost its
-- worker and resumes from its last checkpoint on the next launch.
ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN worker_pid INTEGER;
ALTER TABLE runs ADD COLUMN slot TEXT;                 -- device and slot, e.g. cpu#1, cuda:0#2
ALTER TABLE runs ADD COLUMN lease_expires REAL;        -- unix seconds; renewed by the worker's heartbeat
ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
ALTER TABLE runs ADD COLUMN launched_at REAL;          -- unix seconds, when the scheduler started the worker
ALTER TABLE runs ADD COLUMN first_step_at REAL;        -- unix seconds, the worker's first training step
ALTER TABLE runs ADD COLUMN resumed_from INTEGER;      -- the epoch of the checkpoint the last attempt resumed
ALTER TABLE runs ADD COLUMN stopped_epoch INTEGER;     -- the epoch a run diverged, was pruned or interrupted at
ALTER TABLE runs ADD COLUMN items_done INTEGER;        -- progress inside the current split, from the heartbeat
ALTER TABLE runs ADD COLUMN items_total INTEGER;
ALTER TABLE runs ADD COLUMN split TEXT;                -- 'train' or 'valid' while running

-- Time spent writing each epoch's row, to keep SQLite's share of an epoch honest.
ALTER TABLE epochs ADD COLUMN write_ms REAL;

-- What happened when: the dashboard's event line and a post-mortem of a sweep.
CREATE TABLE run_events (
    id      INTEGER PRIMARY KEY,
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    kind    TEXT NOT NULL CHECK (kind IN ('launched', 'resumed', 'done', 'failed', 'diverged', 'pruned', 'interrupted', 'requeued')),
    detail  TEXT
);
CREATE INDEX run_events_by_run ON run_events (run_id, id);

-- The leaderboard of 0001 ordered its params with `group_concat(… ORDER BY …)`, which only
-- SQLite ≥ 3.44 reads: Python's sqlite3 and most sqlite3 shells could not open the database.
-- The same view, ordered by a subquery instead, which every SQLite 3 reads.
DROP VIEW leaderboard;
CREATE VIEW leaderboard AS
SELECT
    s.name             AS sweep,
    r.id               AS run,
    r.status           AS status,
    (SELECT group_concat(kv, ' ') FROM (
        SELECT a.key || '=' || p.value AS kv
          FROM sweep_axes a JOIN run_params p ON p.run_id = r.id AND p.key = a.key
         WHERE a.sweep_id = s.id
         ORDER BY a.position)) AS params,
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
