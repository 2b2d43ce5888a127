#!/usr/bin/env bash
# Runs a sweep on a lent GPU machine (no cargo there): the caller builds `fer-lab` here with
# `--features tch`, and carries in .device/:
#   fer-lab.xz        the stripped release binary, xz-compressed
#   fer2013.tar.gz    FER-2013 as downloaded (imported on the machine in about a second)
#   fer-lab.sqlite    optional: the database of an earlier call, so done runs are skipped
# Usage: scripts/device-sweep.sh SWEEP_FILE SECONDS [fer-lab sweep options…]
# Results (database, log) land in $OUT.
set -euo pipefail
file=$1
seconds=$2
shift 2
export LD_LIBRARY_PATH=${TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
work=/tmp/fer-lab
mkdir -p "$work" "$OUT"
xz -dc .device/fer-lab.xz > "$work/fer-lab"
chmod +x "$work/fer-lab"
LD_BIND_NOW=1 "$work/fer-lab" --version
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -d data/fer2013 ] || "$work/fer-lab" data import .device/fer2013.tar.gz --out data/fer2013 | tail -3
db=results/fer-lab.sqlite
mkdir -p results
[ -f .device/fer-lab.sqlite ] && cp .device/fer-lab.sqlite "$db"
set +e
timeout --signal=INT "$seconds" "$work/fer-lab" sweep "$file" --device cuda:0 "$@" 2>&1 | tee "$OUT/sweep.log"
set -e
# Checkpoint the WAL into the main file so one file carries everything.
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()" "$db"
cp "$db" "$OUT/fer-lab.sqlite"
# With the ensemble of the best cells when the runs stored their predictions (schema 8 on).
"$work/fer-lab" report --db "$db" --ensemble 3 || "$work/fer-lab" report --db "$db" || true
