-- fer-lab schema, version 3: steering a running sweep from a dashboard.

-- `p` in a dashboard: the scheduler launches nothing while set; running runs go on.
ALTER TABLE sweeps ADD COLUMN paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1));
