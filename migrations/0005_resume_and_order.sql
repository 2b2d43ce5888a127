-- fer-lab schema, version 5: failures that count, and a leaderboard in order.
-- Released: never edit; add 0006_*.sql.

-- `attempts` counts launches, including those lost when the scheduler itself died; only
-- failures of the run (its worker's own error, a crash that made no progress, running out of
-- GPU memory alone on the card) count against `max_retries`.
ALTER TABLE runs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;

-- The leaderboard of 0002 came out in whatever order SQLite joined it: best val first within
-- each sweep, runs without results last, then sweep order.
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
LEFT JOIN evals t ON t.run_id = r.id AND t.split = 'test'
ORDER BY s.name, v.accuracy IS NULL, v.accuracy DESC, sr.position;
