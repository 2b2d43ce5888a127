#!/usr/bin/env bash
# The GPU check of issue 12: one call on a lent GPU machine (no cargo there) prints one table of
# fer-lab against PyTorch 2.11 on the same GPU, in one sitting:
#   - the training step (forward + backward + Adam on a fixed batch of real faces) of every
#     model kind (baseline, compact, residual, attention SE and CBAM, vgg width 1.0) at batch 64
#     and 256: `fer-lab bench stage step` against bench/pytorch_reference.py's eager step and
#     its CUDA-graph step, with the parameter counts and peak GPU memory of each side;
#   - one real epoch (batch 64) of the baseline and, when time is left, the compact net, as
#     `fer-lab sweep` trains it (epoch 2's `secs` from its SQLite, validation and checkpoint
#     included) against PyTorch's CPU-augmenting `loop`, its `loop-gpu` (data set and
#     augmentation on the GPU, no read-back per step) and `loop-gpu --cuda-graph`; the first
#     epoch's extra cost (epoch 1 − epoch 2) and launch to first step (runs.first_step_at −
#     runs.launched_at);
#   - runs per hour of 8 baseline runs of 2 epochs at per_device 1 and 8 (fusion off) and fused
#     (`fuse = "auto"`: groups of up to 16 on a GPU) — wall time of `fer-lab sweep --no-tui`;
#     runs done × 3600 / wall when a sweep is cut by its time limit;
#   - fused groups (issue 15), as time allows: `fer-lab bench fused` — one run's step alone,
#     then groups of the baseline and the compact net as one model, with model-images per
#     second and the speed-up over training the same runs one at a time (its own table, after
#     the main one).
#
# What travels to the machine (as for scripts/device-sweep.sh), in .device/:
#   fer-lab.xz        the stripped `--features tch` release binary, xz-compressed
#   fer2013.tar.gz    FER-2013 as downloaded (imported here in about a second)
#
#   bench/gpu-check.sh [--device cuda:0] [--budget 440]
#
# The whole check keeps to --budget seconds (default 440, for a call of at most 8 minutes):
# every part runs under `timeout`, capped by what is left, and shows "-" when it failed or was
# cut; nothing aborts the table. Results in $OUT (default bench/out/gpu-check): gpu-check.md
# (the table), gpu-check.jsonl (every raw JSON line, written as it comes), gpu-check.log (the
# commands' output).
#
# Knobs (environment), for a dry run on a CPU machine or a shorter check:
#   FER_LAB_CHECK_DEVICE      fer-lab's device (cuda:N, tch-cpu or cpu; default cuda:0); PyTorch
#                             runs on the same GPU, or on the CPU for cpu / tch-cpu (the CUDA-graph
#                             columns then show "-")
#   FER_LAB_BIN               a fer-lab binary to use instead of .device/fer-lab.xz (default:
#                             .device/fer-lab.xz, else target/release/fer-lab)
#   FER_LAB_CHECK_DATA        an imported cache to use instead of importing .device/fer2013.tar.gz
#   PYTHON                    python with torch (default python3); TORCH_LIB: libtorch's folder
#                             (default: torch/lib of that python)
#   FER_LAB_CHECK_MODELS      step models (default "baseline compact residual se cbam vgg"; set
#                             but empty, as every list knob below, skips the part)
#   FER_LAB_CHECK_BATCHES     step batches (default "64 256")
#   FER_LAB_CHECK_PRECISION   the step's precision on both sides: f32 (default) or bf16 (fer-lab's
#                             `precision = "bf16"` against PyTorch's autocast to bfloat16)
#   FER_LAB_CHECK_STEPS / _WARMUP   timed / warm-up steps of PyTorch (default 20 / 5; fer-lab's
#                             bench warms up 3 steps and times --steps)
#   FER_LAB_CHECK_VGG_WIDTH   default 1.0
#   FER_LAB_CHECK_EPOCH_MODELS  default "baseline compact"
#   FER_LAB_CHECK_EPOCH_BATCH   default 64
#   FER_LAB_CHECK_RUNS / _PER_DEVICE / _RUN_EPOCHS   default 8 / "fuse 8 1" / 2 (a number is
#                             per_device N without fusion, `fuse` the fused launch; per_device 1
#                             last: cut by the time limit, it still gives a rate)
#   FER_LAB_CHECK_RPH_MODEL   the runs-per-hour model (default baseline). Issue 15's measurement
#                             is two calls of their own: FER_LAB_CHECK_MODELS= FER_LAB_CHECK_EPOCH_MODELS=
#                             FER_LAB_CHECK_FUSED= and RUNS=16 RUN_EPOCHS=10 (baseline), then
#                             RUNS=6 RUN_EPOCHS=5 RPH_MODEL=compact (docs/benchmarks.md)
#   FER_LAB_CHECK_THREADS     PyTorch's CPU threads (default: all cores)
#   FER_LAB_CHECK_FUSED       fused groups to time, "model:sizes …" (default
#                             "baseline:8,16,32 compact:2,6"; empty skips the part)
set -uo pipefail
cd "$(dirname "$0")/.."

device=${FER_LAB_CHECK_DEVICE:-cuda:0}
budget=${FER_LAB_CHECK_BUDGET:-440}
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        *) echo "bench/gpu-check.sh: unknown option $1 (--device, --budget; knobs are environment variables)" >&2; exit 2 ;;
    esac
done
models=${FER_LAB_CHECK_MODELS-baseline compact residual se cbam vgg}
batches=${FER_LAB_CHECK_BATCHES:-64 256}
precision=${FER_LAB_CHECK_PRECISION:-f32}
steps=${FER_LAB_CHECK_STEPS:-20}
warmup=${FER_LAB_CHECK_WARMUP:-5}
vgg_width=${FER_LAB_CHECK_VGG_WIDTH:-1.0}
epoch_models=${FER_LAB_CHECK_EPOCH_MODELS-baseline compact}
epoch_batch=${FER_LAB_CHECK_EPOCH_BATCH:-64}
runs=${FER_LAB_CHECK_RUNS:-8}
per_devices=${FER_LAB_CHECK_PER_DEVICE-fuse 8 1}
rph_model=${FER_LAB_CHECK_RPH_MODEL:-baseline}
run_epochs=${FER_LAB_CHECK_RUN_EPOCHS:-2}
python=${PYTHON:-python3}
threads=${FER_LAB_CHECK_THREADS:-$(nproc)}
case "$device" in
    cuda:*) py_device=$device cuda=1 ;;
    *) py_device=cpu cuda=0 ;;
esac

out=${OUT:-bench/out/gpu-check}
mkdir -p "$out"
raw=$out/gpu-check.jsonl
log=$out/gpu-check.log
md=$out/gpu-check.md
: > "$raw"
: > "$log"
work=$(mktemp -d /tmp/fer-lab-check.XXXXXX)
trap 'rm -rf "$work"' EXIT

say() { echo "[gpu-check ${SECONDS}s] $*" | tee -a "$log" >&2; }

# Seconds a part may take: $1, or what is left of the budget if less (0: skip the part).
cap() {
    local left=$((budget - SECONDS))
    if [ "$left" -lt "${2:-10}" ]; then echo 0; elif [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}

# Appends stdin's JSON lines to the raw file with the fields of the JSON object $1 added.
tag() {
    "$python" -c '
import json, sys
extra = json.loads(sys.argv[1])
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        try:
            print(json.dumps({**json.loads(line), **extra}), flush=True)
        except ValueError:
            pass
' "$1" >> "$raw"
}

# A JSON line of its own: tag '{"check": …}' with an empty object.
note() { echo '{}' | tag "$1"; }

# Runs "$@" under timeout $1 (seconds; 0 skips), its output into the log, its JSON lines to
# stdout; the exit status is timeout's (124: cut).
timed() {
    local t=$1
    shift
    if [ "$t" -le 0 ]; then
        echo "skipped (no time left): $*" >> "$log"
        return 125
    fi
    echo "\$ $*" >> "$log"
    timeout -k 5 "$t" "$@" 2>> "$log" | tee -a "$log" | grep '^{'
    return "${PIPESTATUS[0]}"
}

# The error of an exit status of `timed`.
why() {
    case "$1" in 124 | 137) echo timeout ;; 125) echo skipped ;; *) echo "exit $1" ;; esac
}

# --- Set-up: the binary, libtorch, the data -----------------------------------------------------
say "device $device, budget ${budget}s, PyTorch on $py_device"
if [ -n "${FER_LAB_BIN:-}" ]; then
    ferlab=$FER_LAB_BIN
elif [ -f .device/fer-lab.xz ]; then
    ferlab=$work/fer-lab
    xz -dc .device/fer-lab.xz > "$ferlab" && chmod +x "$ferlab"
else
    ferlab=target/release/fer-lab
fi
torch_lib=${TORCH_LIB:-$("$python" -W ignore -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")' 2>> "$log")}
if [ -z "$torch_lib" ]; then
    say "$python has no torch: the PyTorch columns will be empty and a tch fer-lab will not start"
fi
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
version=$("$ferlab" --version 2>> "$log")
say "fer-lab: ${version:-does not start ($ferlab)}"
gpu=""
if [ "$cuda" = 1 ] && command -v nvidia-smi > /dev/null; then
    gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>> "$log" | head -1)
fi
torch_version=$("$python" -W ignore -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>> "$log")
say "GPU: ${gpu:--}; torch ${torch_version:--}"

if [ -n "${FER_LAB_CHECK_DATA:-}" ]; then
    data=$FER_LAB_CHECK_DATA
elif [ -f data/fer2013/train.bin ]; then
    data=data/fer2013
else
    data=$work/fer2013
    t0=$SECONDS
    timed "$(cap 60)" "$ferlab" data import .device/fer2013.tar.gz --out "$data" > /dev/null
    say "imported the data in $((SECONDS - t0))s"
fi
data=$(realpath "$data")
n_train=$("$python" -c 'import sys; f = open(sys.argv[1], "rb"); f.seek(8); print(int.from_bytes(f.read(4), "little"))' "$data/train.bin" 2>> "$log")
if [ -z "$n_train" ]; then
    say "no data at $data: nothing to measure"
    n_train=0
fi
"$python" -c '
import json, sys
keys = ["device", "gpu", "fer_lab", "torch", "n_train", "steps", "warmup", "budget", "date", "precision"]
meta = dict(zip(keys, sys.argv[1:]))
for k in ["n_train", "steps", "warmup", "budget"]:
    meta[k] = int(meta[k])
print(json.dumps({"check": "meta", **meta}))
' "$device" "$gpu" "$version" "$torch_version" "$n_train" "$steps" "$warmup" "$budget" "$(date -u +%Y-%m-%dT%H:%MZ)" "$precision" >> "$raw"

# A model label as a sweep's `model =` and `bench --model` take it.
fer_model() {
    case "$1" in
        se | cbam) echo "{ kind = \"attention\", attention = \"$1\" }" ;;
        vgg) echo "{ kind = \"vgg\", width = $vgg_width }" ;;
        *) echo "\"$1\"" ;;
    esac
}
bench_model() {
    case "$1" in se | cbam | vgg) fer_model "$1" ;; *) echo "$1" ;; esac
}
pytorch=("$python" -W ignore bench/pytorch_reference.py --data "$data" --device "$py_device" --threads "$threads"
    --width "$vgg_width")
sql() { "$ferlab" sql "$1" --db "$2" --format json 2>> "$log"; }

# --- 1. The training step of every model kind ---------------------------------------------------
say "step: fer-lab bench, $models at batch $batches"
for m in $models; do
    for b in $batches; do
        timed "$(cap 40)" "$ferlab" bench stage step --model "$(bench_model "$m")" --batch "$b" \
            --device "$device" --data "$data" --steps "$steps" --precision "$precision" |
            tag "{\"check\": \"step\", \"label\": \"$m\", \"batch\": $b, \"side\": \"fer-lab\"}"
        rc=${PIPESTATUS[0]}
        [ "$rc" = 0 ] || note "{\"check\": \"step\", \"label\": \"$m\", \"batch\": $b, \"side\": \"fer-lab\", \"error\": \"$(why "$rc")\"}"
    done
done
list_models=$(echo $models | tr ' ' ,)
list_batches=$(echo $batches | tr ' ' ,)
graph_modes="eager"
[ "$cuda" = 1 ] && graph_modes="eager graph"
[ -n "$list_models" ] || graph_modes=""  # FER_LAB_CHECK_MODELS= skips the step part
for mode in $graph_modes; do
    say "step: PyTorch $mode"
    flag=()
    [ "$mode" = graph ] && flag=(--cuda-graph)
    # PyTorch's lines name each model as the command line does (se, cbam): that is the label.
    timed "$(cap 150)" "${pytorch[@]}" --stage step --model "$list_models" --batch "$list_batches" \
        --steps "$steps" --warmup "$warmup" --precision "$precision" "${flag[@]}" | tag '{"check": "step"}'
done

# --- 2. One real epoch ---------------------------------------------------------------------------
# fer-lab sweep ($1: label, $2: epochs, $3: seeds, $4: per_device N without fusion, `fuse` for
# the fused launch, or "" for the defaults, $5: time) into $work/$6/; prints one JSON line:
# epochs' secs, launch to first step, runs done, wall seconds.
sweep() {
    local m=$1 epochs=$2 seeds=$3 per=$4 t=$5 dir=$work/$6
    mkdir -p "$dir"
    {
        printf 'name = "%s"\ndata = "%s"\nseeds = [%s]\n[base]\nmodel = %s\nepochs = %s\nbatch_size = %s\n' \
            "$6" "$data" "$seeds" "$(fer_model "$m")" "$epochs" "$epoch_batch"
        case "$per" in
            "") ;;
            fuse) printf '[resources]\nfuse = "auto"\n' ;;
            *) printf '[resources]\nper_device = %s\nfuse = false\n' "$per" ;;
        esac
    } > "$dir/sweep.toml"
    local start rc
    start=$(date +%s.%N)
    if [ "$t" -le 0 ]; then
        echo '{"error": "skipped"}'
        return
    fi
    echo "\$ fer-lab sweep $dir/sweep.toml ($(tr '\n' ' ' < "$dir/sweep.toml"))" >> "$log"
    timeout -k 10 --signal=INT "$t" "$ferlab" sweep "$dir/sweep.toml" --no-tui --devices "$device" \
        --db "$dir/fer-lab.sqlite" >> "$log" 2>&1
    rc=$?
    local end
    end=$(date +%s.%N)
    "$python" -c '
import json, sys
epochs, runs, rc, start, end = sys.argv[1:6]
def rows(text):
    try:
        return json.loads(text)
    except ValueError:
        return []
epochs, runs = rows(epochs), rows(runs)
first = [r["epoch_secs"] for r in epochs if r.get("run_no") == 0]
line = {"rc": int(rc), "wall": float(end) - float(start), "epoch_secs": first,
        "runs": len(runs), "runs_done": sum(r["status"] == "done" for r in runs)}
starts = [r["first_step_at"] - r["launched_at"] for r in runs if r.get("first_step_at") and r.get("launched_at")]
if starts:
    line["launch_to_first_step"] = sorted(starts)[len(starts) // 2]
if int(rc) == 124:
    line["cut"] = True
print(json.dumps(line))
' "$(sql "SELECT (SELECT count(*) FROM runs r2 WHERE r2.id < e.run_id) AS run_no, e.epoch, e.secs AS epoch_secs
              FROM epochs e ORDER BY e.run_id, e.epoch" "$dir/fer-lab.sqlite")" \
      "$(sql "SELECT status, launched_at, first_step_at FROM runs" "$dir/fer-lab.sqlite")" \
      "$rc" "$start" "$end"
}

epoch_part() {
    local m=$1
    say "epoch: $m (fer-lab sweep, 2 epochs)"
    sweep "$m" 2 1 "" "$(cap 120 30)" "epoch-$m" |
        tag "{\"check\": \"epoch\", \"label\": \"$m\", \"side\": \"fer-lab\", \"batch\": $epoch_batch}"
    say "epoch: $m (PyTorch loop, loop-gpu)"
    timed "$(cap 90 20)" "${pytorch[@]}" --stage loop --model "$m" --batch "$epoch_batch" |
        tag "{\"check\": \"epoch\", \"label\": \"$m\"}"
    timed "$(cap 90 20)" "${pytorch[@]}" --stage loop-gpu --epochs 2 --model "$m" --batch "$epoch_batch" |
        tag "{\"check\": \"epoch\", \"label\": \"$m\"}"
    if [ "$cuda" = 1 ]; then
        timed "$(cap 90 20)" "${pytorch[@]}" --stage loop-gpu --epochs 2 --cuda-graph --model "$m" --batch "$epoch_batch" |
            tag "{\"check\": \"epoch\", \"label\": \"$m\"}"
    fi
}

# The first (the baseline) before the runs per hour, the others after them.
read -r first_epoch_model other_epoch_models <<< "$epoch_models"
if [ -n "${first_epoch_model:-}" ]; then epoch_part "$first_epoch_model"; fi

# --- 3. Runs per hour ----------------------------------------------------------------------------
seeds=$(seq -s ', ' 1 "$runs")
for per in $per_devices; do
    say "runs per hour: $runs $rph_model runs of $run_epochs epochs, per_device $per"
    sweep "$rph_model" "$run_epochs" "$seeds" "$per" "$(cap 150 30)" "rph-$per" |
        tag "{\"check\": \"rph\", \"per_device\": \"$per\", \"model\": \"$rph_model\", \"planned\": $runs, \"epochs\": $run_epochs, \"batch\": $epoch_batch, \"side\": \"fer-lab\"}"
done

# --- 4. The other epochs, as time allows -----------------------------------------------------------
for m in ${other_epoch_models:-}; do
    if [ "$(cap 60 60)" -gt 0 ]; then
        epoch_part "$m"
    else
        say "epoch: $m skipped (no time left)"
    fi
done

# --- 5. Fused groups, as time allows ------------------------------------------------------------
fused_md=$out/fused.md
: > "$fused_md"
for part in ${FER_LAB_CHECK_FUSED-baseline:8,16,32 compact:2,6}; do
    m=${part%%:*} sizes=${part#*:}
    t=$(cap 90 30)
    if [ "$t" -eq 0 ]; then
        say "fused: $m skipped (no time left)"
        continue
    fi
    say "fused: $m, groups of $sizes"
    timeout "$t" "$ferlab" bench fused --model "$(bench_model "$m")" --members "$sizes" \
        --batch "$epoch_batch" --steps 10 --device "$device" --data "$data" --format markdown \
        >> "$fused_md" 2>> "$log" || say "fused: $m cut or failed (exit $?)"
done

# --- The table -------------------------------------------------------------------------------------
say "done in ${SECONDS}s; the table:"
"$python" - "$raw" "$models" "$batches" "$epoch_models" "$per_devices" > "$md" 2>> "$log" <<'EOF'
import json, sys
raw, models, batches, epoch_models, per_devices = sys.argv[1:6]
rows = []
for line in open(raw):
    try:
        rows.append(json.loads(line))
    except ValueError:
        pass
meta = next((r for r in rows if r.get("check") == "meta"), {})
n_train = meta.get("n_train") or 0

def find(check, side, **kw):
    for r in rows:
        r.setdefault("label", r.get("model"))
        if r.get("check") == check and r.get("side") == side and all(r.get(k) == v for k, v in kw.items()):
            return r
    return None

def num(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"

def failure(r):
    """How a part that gave no number ended: skipped (no time left), timeout, or failed."""
    e = str(r.get("error"))
    return e if e in ("skipped", "timeout") else "failed"

def val(r, key, digits=0):
    if r is None:
        return "-"
    if r.get("error"):
        return failure(r)
    return num(r.get(key), digits)

def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "-"

def good(r, key):
    return r.get(key) if r and not r.get("error") else None

head = ["measure", "model", "batch", "params (fer-lab / PyTorch)", "fer-lab", "PyTorch eager",
        "fer-lab / eager", "PyTorch CUDA graph", "fer-lab / graph",
        "GPU MB: step rows nvidia-smi's per process (fer-lab / eager / graph); epoch rows PyTorch's peak allocated"]
table = []
for m in models.split():
    for b in batches.split():
        b = int(b)
        f = find("step", "fer-lab", label=m, batch=b)
        e = find("step", "pytorch", label=m, batch=b, cuda_graph=False)
        g = find("step", "pytorch", label=m, batch=b, cuda_graph=True)
        fp, pp = good(f, "params"), good(e, "params") or good(g, "params")
        params = f"{num(fp)} / {num(pp)}" + (" ≠" if fp and pp and fp != pp else "")
        fi, ei, gi = good(f, "img_s"), good(e, "img_s"), good(g, "img_s")
        peaks = " / ".join(val(r, "gpu_process_mb") for r in (f, e, g))
        table.append(["step img/s", m, str(b), params, val(f, "img_s"), val(e, "img_s"), ratio(fi, ei),
                      val(g, "img_s"), ratio(fi, gi), peaks])

def secs(v):
    return "-" if v is None else f"{v:.2f} s"

for m in epoch_models.split():
    f = find("epoch", "fer-lab", label=m)
    loop = find("epoch", "pytorch", label=m, stage="loop")
    e = find("epoch", "pytorch", label=m, stage="loop-gpu", cuda_graph=False)
    g = find("epoch", "pytorch", label=m, stage="loop-gpu", cuda_graph=True)
    if not any((f, loop, e, g)):
        continue
    es = (good(f, "epoch_secs") or [])
    f2 = es[1] if len(es) > 1 else None
    fi = n_train / f2 if f2 else None
    b = str((f or e or loop or {}).get("batch", "-"))
    params = num(good(e, "params") or good(loop, "params"))
    def epoch_cell(r):
        if r is None:
            return "-"
        if r.get("error"):
            return failure(r)
        return f"{r['img_s']:,.0f} ({r['seconds']:.2f} s)"
    if fi:
        fcell = f"{fi:,.0f} ({f2:.2f} s)"
    elif f is None:
        fcell = "-"
    elif f.get("error"):
        fcell = failure(f)
    else:
        fcell = "timeout" if f.get("cut") else f"failed (exit {f.get('rc')})"
    peaks = f"- / {val(e, 'peak_gpu_mb')} / {val(g, 'peak_gpu_mb')}"
    table.append(["epoch img/s (s): fer-lab sweep epoch 2 vs PyTorch loop-gpu, last of 2 epochs; val included",
                  m, b, params, fcell, epoch_cell(e), ratio(fi, good(e, "img_s")), epoch_cell(g),
                  ratio(fi, good(g, "img_s")), peaks])
    table.append(["epoch img/s (s): vs PyTorch `loop` (CPU augmentation, loss.item() per step, 1st epoch)",
                  m, b, params, fcell, epoch_cell(loop), ratio(fi, good(loop, "img_s")), "-", "-",
                  f"- / {val(loop, 'peak_gpu_mb')} / -"])
    def extra(r):  # the first epoch's extra seconds (and a graph's capture) over the second
        s = good(r, "epoch_seconds")
        if not s or len(s) < 2:
            return None
        return s[0] - s[1] + (r.get("capture_seconds") or 0)
    table.append(["first epoch's extra cost (epoch 1 − epoch 2; graph: + capture)", m, b, "",
                  secs(es[0] - es[1]) if len(es) > 1 else "-", secs(extra(e)), "-", secs(extra(g)), "-", ""])
    table.append(["launch to first step (runs.first_step_at − launched_at)", m, b, "",
                  secs(good(f, "launch_to_first_step")), "-", "-", "-", "-", ""])

def rate(r):
    if r is None or r.get("error") or not r.get("runs_done"):
        return None
    return r["runs_done"] * 3600 / r["wall"]

one_at_a_time = rate(find("rph", "fer-lab", per_device="1"))
for per in per_devices.split():
    r = find("rph", "fer-lab", per_device=per)
    if r is None:
        continue
    if r.get("error"):
        cell = failure(r)
    elif not r.get("runs_done"):
        cell = f"0 done ({'timeout' if r.get('cut') else 'exit ' + str(r.get('rc'))}, {r.get('wall', 0):.1f} s)"
    else:
        cell = f"{rate(r):,.0f} ({r['runs_done']}/{r['planned']} done in {r['wall']:.1f} s{', cut' if r.get('cut') else ''})"
        if one_at_a_time and per != "1":
            cell += f", {rate(r) / one_at_a_time:.1f}× one at a time"
    how = "fused (fuse = auto)" if per == "fuse" else f"per_device {per}, no fusion"
    rph_model = r.get("model", "baseline")
    table.append([f"runs per hour, {r.get('planned')} {rph_model} runs of {r.get('epochs')} epochs, {how}",
                  rph_model, str(r.get("batch", "-")), "", cell, "-", "-", "-", "-", ""])

print(f"# fer-lab GPU check ({meta.get('date', '?')})\n")
print(f"- device: {meta.get('device')} — {meta.get('gpu') or 'no nvidia-smi'}")
print(f"- fer-lab: {meta.get('fer_lab') or '-'}; PyTorch: {meta.get('torch') or '-'}")
print(f"- step: PyTorch {meta.get('warmup')} warm-up + {meta.get('steps')} timed steps (median), "
      f"both sides in {meta.get('precision', 'f32')}, "
      f"fer-lab 3 warm-up + {meta.get('steps')}; img/s are medians of one process each")
print(f"- epoch img/s = {n_train:,} training images / the epoch's seconds (validation included on both sides; "
      "fer-lab's also its checkpoint and SQLite writes)\n")
print("| " + " | ".join(head) + " |")
print("| " + " | ".join("---" if i < 2 else "---:" for i in range(len(head))) + " |")
for row in table:
    print("| " + " | ".join(row) + " |")
EOF
if [ -s "$fused_md" ]; then
    printf '\n## Fused groups (`fer-lab bench fused`, batch %s per run)\n\n' "$epoch_batch" >> "$md"
    cat "$fused_md" >> "$md"
fi
cat "$md"
say "raw lines: $raw, log: $log, table: $md"
