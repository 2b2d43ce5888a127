#!/usr/bin/env bash
# fer-lab against PyTorch eager in one sitting: every stage run A B A B … (fer-lab, PyTorch,
# fer-lab, PyTorch) with the same thread count on both sides, then a table of medians and the
# fer-lab / PyTorch ratio.
#
#   bench/compare.sh [--model baseline|vgg] [--batch 64] [--threads 2] [--repeats 3]
#                    [--stages "step data eval loop"] [--device cpu|tch-cpu|cuda:N]
#                    [--fer-lab target/release/fer-lab] [--python python3] [--data data/fer2013]
#
# Stages: step (forward + backward + Adam on a fixed batch), data (the augmentation pipeline
# alone on real images), eval (the val split, no gradients), loop (one real epoch: fer-lab
# trains it with `fer-lab sweep`, its loader, burn-train loop and SQLite logging; PyTorch with a
# plain training loop; both then evaluate val). Needs the data imported (`fer-lab data import`)
# and a python with torch. Raw JSON lines are kept in $OUT (default bench/out/).
set -euo pipefail
cd "$(dirname "$0")/.."

model=baseline batch=64 threads=2 repeats=3 stages="step data eval loop" device=cpu
ferlab=target/release/fer-lab python=python3 data=data/fer2013
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --repeats) repeats=$2; shift 2 ;;
        --stages) stages=$2; shift 2 ;;
        --device) device=$2; shift 2 ;;
        --fer-lab) ferlab=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        *) echo "bench/compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -x "$ferlab" ] || { echo "bench/compare.sh: $ferlab not found (cargo build --release)" >&2; exit 2; }
[ -f "$data/train.bin" ] || { echo "bench/compare.sh: no data at $data (fer-lab data import …)" >&2; exit 2; }
"$python" -c 'import torch' 2>/dev/null || { echo "bench/compare.sh: $python has no torch" >&2; exit 2; }

case "$model" in
    baseline) fer_model='"baseline"'; bench_model=baseline ;;
    vgg) fer_model='{ kind = "vgg", width = 0.25 }'; bench_model='{ kind = "vgg", width = 0.25 }' ;;
    *) echo "bench/compare.sh: --model baseline or vgg" >&2; exit 2 ;;
esac

# PyTorch runs on the same kind of device: the CPU for cpu / tch-cpu, the GPU for cuda:N.
case "$device" in cuda:*) py_device=$device ;; *) py_device=cpu ;; esac

out=${OUT:-bench/out}
mkdir -p "$out"
lines="$out/$(date -u +%Y%m%dT%H%M%SZ)-$model-b$batch-t$threads.jsonl"
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fer_lab_loop() {
    local n=$1
    printf 'name = "bench-loop-%s"\ndata = "%s"\n[base]\nmodel = %s\nepochs = 1\nbatch_size = %s\n' \
        "$n" "$(realpath "$data")" "$fer_model" "$batch" > "$tmp/loop$n.toml"
    "$ferlab" sweep "$tmp/loop$n.toml" --no-tui --devices "$device" --db "$tmp/loop$n.sqlite" > "$tmp/loop$n.log" 2>&1
    "$ferlab" sql "SELECT e.secs, e.write_ms, (SELECT count(*) FROM runs) AS runs FROM epochs e" \
        --db "$tmp/loop$n.sqlite" --format json |
        "$python" -c '
import json, sys
row = json.load(sys.stdin)[0]
print(json.dumps({"side": "fer-lab", "stage": "loop", "seconds": row["secs"], "img_s": 28709 / row["secs"],
                  "threads": int(sys.argv[1])}))
print(json.dumps({"side": "fer-lab", "stage": "sqlite", "seconds": row["write_ms"] / 1000,
                  "share_of_epoch": row["write_ms"] / 1000 / row["secs"], "threads": int(sys.argv[1])}))
' "$threads"
}

echo "fer-lab vs PyTorch: model $model, batch $batch, $threads threads, device $device, $repeats × A B"
for r in $(seq 1 "$repeats"); do
    for stage in $stages; do
        if [ "$stage" = loop ]; then
            fer_lab_loop "$r" >> "$lines"
        else
            "$ferlab" bench --stage "$stage" --model "$bench_model" --batch "$batch" --device "$device" \
                --data "$data" --steps 30 >> "$lines"
        fi
        "$python" -W ignore bench/pytorch_reference.py --stage "$stage" --model "$model" \
            --batch "$batch" --threads "$threads" --data "$data" --steps 30 --device "$py_device" >> "$lines"
        echo "  round $r: $stage done" >&2
    done
done

"$python" - "$lines" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(side, stage, key="img_s"):
    v = [r[key] for r in rows if r["side"] == side and r["stage"] == stage and r.get(key) is not None]
    return (statistics.median(v), len(v)) if v else (None, 0)
print(f"{'stage':<8} {'fer-lab img/s':>14} {'PyTorch img/s':>14} {'ratio':>7} {'runs':>5}  fer-lab / PyTorch peak RSS MB")
for stage in ["step", "data", "eval", "loop"]:
    f, n = med("fer-lab", stage)
    p, m = med("pytorch", stage)
    if f is None and p is None:
        continue
    ratio = f"{f / p:.2f}×" if f and p else "-"
    rf, _ = med("fer-lab", stage, "peak_rss_mb")
    rp, _ = med("pytorch", stage, "peak_rss_mb")
    rss = f"{rf:.0f} / {rp:.0f}" if rf and rp else "-"
    print(f"{stage:<8} {f or 0:>14.0f} {p or 0:>14.0f} {ratio:>7} {min(n, m):>5}  {rss}")
s, n = med("fer-lab", "sqlite", "share_of_epoch")
if s is not None:
    w, _ = med("fer-lab", "sqlite", "seconds")
    print(f"sqlite   fer-lab writes an epoch's metrics in {w * 1e3:.2f} ms = {100 * s:.4f} % of the epoch (PyTorch: no logging)")
print(f"raw lines: {sys.argv[1]}")
EOF
