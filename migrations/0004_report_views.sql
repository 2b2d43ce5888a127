-- fer-lab schema, version 4: statistics over seeds in SQL.

-- One row per cell of a sweep: finished runs with the same resolved config (they differ only by
-- seed). sd is the sample standard deviation (n − 1), NULL for a single run; fer-lab's own
-- connections provide sqrt(), as do SQLite builds with math functions (Python's, the shell's).
CREATE VIEW cell_stats AS
WITH per_run AS (
    SELECT s.name AS sweep, r.config AS config, r.id AS run, r.params AS n_params,
           r.epochs_done AS epochs, v.accuracy AS val_acc, t.accuracy AS test_acc,
           v.macro_f1 AS val_macro_f1, t.macro_f1 AS test_macro_f1,
           (SELECT group_concat(kv, ' ') FROM (
                SELECT a.key || '=' || p.value AS kv
                  FROM sweep_axes a JOIN run_params p ON p.run_id = r.id AND p.key = a.key
                 WHERE a.sweep_id = s.id
                 ORDER BY a.position)) AS params
      FROM sweeps s
      JOIN sweep_runs sr ON sr.sweep_id = s.id
      JOIN runs r ON r.id = sr.run_id AND r.status = 'done'
      JOIN evals v ON v.run_id = r.id AND v.split = 'val'
      JOIN evals t ON t.run_id = r.id AND t.split = 'test'
)
SELECT sweep,
       min(params)                AS params,
       count(*)                   AS n,
       avg(val_acc)               AS val_acc_mean,
       CASE WHEN count(*) > 1 THEN sqrt(max(0.0,
           (sum(val_acc * val_acc) - count(*) * avg(val_acc) * avg(val_acc)) / (count(*) - 1))) END
                                  AS val_acc_sd,
       avg(test_acc)              AS test_acc_mean,
       CASE WHEN count(*) > 1 THEN sqrt(max(0.0,
           (sum(test_acc * test_acc) - count(*) * avg(test_acc) * avg(test_acc)) / (count(*) - 1))) END
                                  AS test_acc_sd,
       avg(val_macro_f1)          AS val_macro_f1_mean,
       avg(test_macro_f1)         AS test_macro_f1_mean,
       min(epochs)                AS epochs,
       min(n_params)              AS n_params,
       group_concat(run, ' ')     AS runs,
       config
  FROM per_run
 GROUP BY sweep, config;
