#!/usr/bin/env bash
# fer-lab against PyTorch eager in one sitting: every stage run A B A B … (fer-lab, PyTorch,
# fer-lab, PyTorch) with the same thread count on both sides, then a table of medians and the
# fer-lab / PyTorch ratio.
#
#   bench/compare.sh [--model baseline|compact|residual|se|cbam|vgg] [--width W]
#                    [--batch 64] [--threads 2] [--repeats 3] [--epochs 2]
#                    [--stages "step data eval loop"] [--device cpu|tch-cpu|cuda:N]
#                    [--precision f32|bf16]
#                    [--fer-lab target/release/fer-lab] [--python python3] [--data data/fer2013]
#
# Models: every fer-lab kind at its default knobs (`se` and `cbam` are the attention net with
# that gate; `attention` is `se`). --width: vgg's channel scale (default 0.25 on the CPU, 1.0 on
# cuda:N), or the residual / attention nets' channels (default 32).
#
# Stages: step (forward + backward + Adam on a fixed batch), data (the augmentation pipeline
# alone on real images), eval (the val split, no gradients), loop (one real epoch: fer-lab
# trains it with `fer-lab sweep`, its loader, burn-train loop and SQLite logging; PyTorch with a
# plain training loop that augments on the CPU; both then evaluate val), loop-gpu (--epochs
# real epochs, the last compared: fer-lab's sweep again, PyTorch with the data set and the
# augmentation on the device and no read-back per step — bench/pytorch_reference.py
# --stage loop-gpu). PyTorch-only, CUDA only: step-graph and loop-gpu-graph (the same with the
# training step captured as a CUDA graph, --cuda-graph), set beside fer-lab's step / loop-gpu.
# --precision bf16: both sides in bf16 mixed precision (fer-lab's `precision = "bf16"`, PyTorch's
# torch.autocast to bfloat16); fer-lab needs tch-cpu or cuda:N for it.
# Needs the data imported (`fer-lab data import`) and a python with torch. Raw JSON lines are
# kept in $OUT (default bench/out/).
set -euo pipefail
cd "$(dirname "$0")/.."

model=baseline width="" batch=64 threads=2 repeats=3 epochs=2 stages="step data eval loop" device=cpu
precision=f32
ferlab=target/release/fer-lab python=python3 data=data/fer2013
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=$2; shift 2 ;;
        --width) width=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --repeats) repeats=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --stages) stages=$2; shift 2 ;;
        --device) device=$2; shift 2 ;;
        --precision) precision=$2; shift 2 ;;
        --fer-lab) ferlab=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        *) echo "bench/compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -x "$ferlab" ] || { echo "bench/compare.sh: $ferlab not found (cargo build --release)" >&2; exit 2; }
[ -f "$data/train.bin" ] || { echo "bench/compare.sh: no data at $data (fer-lab data import …)" >&2; exit 2; }
"$python" -c 'import torch' 2>/dev/null || { echo "bench/compare.sh: $python has no torch" >&2; exit 2; }
for stage in $stages; do
    case "$stage" in
        step | data | eval | loop | loop-gpu) ;;
        step-graph | loop-gpu-graph)
            case "$device" in cuda:*) ;; *)
                echo "bench/compare.sh: $stage captures a CUDA graph: it needs --device cuda:N" >&2; exit 2 ;;
            esac ;;
        *) echo "bench/compare.sh: unknown stage $stage (step data eval loop loop-gpu step-graph loop-gpu-graph)" >&2; exit 2 ;;
    esac
done
case "$precision" in
    f32) ;;
    bf16) case "$device" in cpu) echo "bench/compare.sh: --precision bf16 needs --device tch-cpu or cuda:N" >&2; exit 2 ;; esac ;;
    *) echo "bench/compare.sh: --precision f32 or bf16" >&2; exit 2 ;;
esac

# PyTorch runs on the same kind of device: the CPU for cpu / tch-cpu, the GPU for cuda:N.
case "$device" in cuda:*) py_device=$device ;; *) py_device=cpu ;; esac

# The model as fer-lab's `bench --model` and a sweep's `model =` take it, and PyTorch's options.
whole_width() {
    case "$width" in
        '') ;;
        *[!0-9]*) echo "bench/compare.sh: --width $width: the $model net takes a whole number of channels" >&2; exit 2 ;;
    esac
}
py_model=(--model "$model")
case "$model" in
    baseline | compact) fer_model="\"$model\"" ;;
    residual)
        whole_width
        if [ -n "$width" ]; then fer_model="{ kind = \"residual\", width = $width }"; py_model+=(--res-width "$width")
        else fer_model='"residual"'; fi ;;
    se | cbam | attention)
        whole_width
        gate=$model; [ "$gate" = attention ] && gate=se
        fer_model="{ kind = \"attention\", attention = \"$gate\"${width:+, width = $width} }"
        py_model=(--model "$gate")
        if [ -n "$width" ]; then py_model+=(--res-width "$width"); fi ;;
    vgg)
        if [ -z "$width" ]; then case "$device" in cuda:*) width=1.0 ;; *) width=0.25 ;; esac; fi
        case "$width" in *.*) ;; *) width=$width.0 ;; esac # a TOML float
        fer_model="{ kind = \"vgg\", width = $width }"
        py_model+=(--width "$width") ;;
    *) echo "bench/compare.sh: --model baseline, compact, residual, se, cbam or vgg" >&2; exit 2 ;;
esac
# `bench --model` takes a bare name or an inline table.
bench_model=${fer_model//\"/}
case "$fer_model" in '{'*) bench_model=$fer_model ;; esac

out=${OUT:-bench/out}
mkdir -p "$out"
lines="$out/$(date -u +%Y%m%dT%H%M%SZ)-$model${width:+-w$width}-b$batch-t$threads-$precision.jsonl"
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n_train=$("$python" -c 'import sys; f = open(sys.argv[1], "rb"); f.seek(8); print(int.from_bytes(f.read(4), "little"))' "$data/train.bin")

# One fer-lab sweep of one run of $2 epochs; prints the last epoch as stage $1 (and its SQLite
# write time).
fer_lab_loop() {
    local stage=$1 n_epochs=$2 name=$1-$3
    printf 'name = "bench-%s"\ndata = "%s"\n[base]\nmodel = %s\nepochs = %s\nbatch_size = %s\nprecision = "%s"\n' \
        "$name" "$(realpath "$data")" "$fer_model" "$n_epochs" "$batch" "$precision" > "$tmp/$name.toml"
    "$ferlab" sweep "$tmp/$name.toml" --no-tui --devices "$device" --db "$tmp/$name.sqlite" > "$tmp/$name.log" 2>&1
    "$ferlab" sql "SELECT e.epoch, e.secs, e.write_ms FROM epochs e ORDER BY e.epoch DESC LIMIT 1" \
        --db "$tmp/$name.sqlite" --format json |
        "$python" -c '
import json, sys
row = json.load(sys.stdin)[0]
stage, threads, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(json.dumps({"side": "fer-lab", "stage": stage, "epoch": row["epoch"], "seconds": row["secs"],
                  "img_s": n / row["secs"], "threads": threads}))
if stage == "loop":
    print(json.dumps({"side": "fer-lab", "stage": "sqlite", "seconds": row["write_ms"] / 1000,
                      "share_of_epoch": row["write_ms"] / 1000 / row["secs"], "threads": threads}))
' "$stage" "$threads" "$n_train"
}

pytorch() {
    "$python" -W ignore bench/pytorch_reference.py "${py_model[@]}" --batch "$batch" --threads "$threads" \
        --data "$data" --steps 30 --device "$py_device" --precision "$precision" "$@"
}

echo "fer-lab vs PyTorch: model $model${width:+ (width $width)}, batch $batch, $threads threads, device $device, $precision, $repeats × A B"
for r in $(seq 1 "$repeats"); do
    for stage in $stages; do
        case "$stage" in
            loop) fer_lab_loop loop 1 "$r" >> "$lines"; pytorch --stage loop >> "$lines" ;;
            loop-gpu)
                fer_lab_loop loop-gpu "$epochs" "$r" >> "$lines"
                pytorch --stage loop-gpu --epochs "$epochs" >> "$lines" ;;
            loop-gpu-graph) pytorch --stage loop-gpu --epochs "$epochs" --cuda-graph >> "$lines" ;;
            step-graph) pytorch --stage step --cuda-graph >> "$lines" ;;
            *)
                "$ferlab" bench stage "$stage" --model "$bench_model" --batch "$batch" --device "$device" \
                    --data "$data" --steps 30 --precision "$precision" >> "$lines"
                pytorch --stage "$stage" >> "$lines" ;;
        esac
        echo "  round $r: $stage done" >&2
    done
done

"$python" - "$lines" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for r in rows:  # a PyTorch line with a captured graph is its own row: step-graph, loop-gpu-graph
    if r.get("cuda_graph"):
        r["stage"] += "-graph"
def med(side, stage, key="img_s"):
    v = [r[key] for r in rows if r["side"] == side and r["stage"] == stage and r.get(key) is not None]
    return (statistics.median(v), len(v)) if v else (None, 0)
print(f"{'stage':<15} {'fer-lab img/s':>14} {'PyTorch img/s':>14} {'ratio':>7} {'runs':>5}  "
      "peak RSS MB fer-lab / PyTorch  peak GPU MB fer-lab / PyTorch")
for stage in ["step", "step-graph", "data", "eval", "loop", "loop-gpu", "loop-gpu-graph"]:
    fer_stage = stage.removesuffix("-graph")  # the graph rows set fer-lab's eager stage beside
    f, n = med("fer-lab", fer_stage)
    p, m = med("pytorch", stage)
    if p is None and (f is None or stage != fer_stage):
        continue
    ratio = f"{f / p:.2f}×" if f and p else "-"
    def pair(key):
        a, _ = med("fer-lab", fer_stage, key)
        b, _ = med("pytorch", stage, key)
        return f"{a:.0f}" if a else "-", f"{b:.0f}" if b else "-"
    rss = " / ".join(pair("peak_rss_mb"))
    gpu = pair("peak_gpu_mb")
    gpu = " / ".join(gpu) if gpu != ("-", "-") else "-"
    runs = min(n, m) if stage == fer_stage else m
    print(f"{stage:<15} {f or 0:>14.0f} {p or 0:>14.0f} {ratio:>7} {runs:>5}  {rss:>30}  {gpu:>30}")
s, n = med("fer-lab", "sqlite", "share_of_epoch")
if s is not None:
    w, _ = med("fer-lab", "sqlite", "seconds")
    print(f"sqlite   fer-lab writes an epoch's metrics in {w * 1e3:.2f} ms = {100 * s:.4f} % of the epoch (PyTorch: no logging)")
print(f"raw lines: {sys.argv[1]}")
EOF
