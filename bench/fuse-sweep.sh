#!/usr/bin/env bash
# Fused against one at a time, as a user runs it: the quickstart recipe (experiments/
# quickstart.toml's [base], on the mini sample) with N seeds, trained by `fer-lab sweep` once
# with fusion off (one run after another) and once with all N runs fused into one group, on
# each device asked for. Prints a markdown table: wall time of the whole sweep, runs per hour,
# and the fused launch's runs per hour over the sequential one's (above 1: fusion wins).
#
#   bench/fuse-sweep.sh [--devices "cpu tch-cpu"] [--seeds 4] [--epochs 20] [--repeat 1]
#
# FER_LAB_BIN: the fer-lab binary (default target/release/fer-lab; tch-cpu and cuda need a
# `--features tch` build, with libtorch's lib/ on LD_LIBRARY_PATH). With --repeat > 1 each
# sweep runs that many times and the table quotes the median wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

devices="cpu"
seeds=4
epochs=20
repeat=1
while [ $# -gt 0 ]; do
    case "$1" in
        --devices) devices=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        *) echo "bench/fuse-sweep.sh: unknown option $1 (--devices, --seeds, --epochs, --repeat)" >&2; exit 2 ;;
    esac
done
ferlab=${FER_LAB_BIN:-target/release/fer-lab}
[ -x "$ferlab" ] || { echo "no fer-lab binary at $ferlab (cargo build --release, or FER_LAB_BIN)" >&2; exit 2; }
work=$(mktemp -d /tmp/fer-lab-fuse.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The quickstart's [base] and data, N seeds, no grid: N runs that differ only by seed.
sed -e "s|^seeds = .*|seeds = [$(seq -s ', ' 1 "$seeds")]|" \
    -e "s|^data = \"\.\./|data = \"$(pwd)/|" \
    -e '/^\[grid\]/,$d' experiments/quickstart.toml > "$work/quickstart.toml"

# Wall seconds of one sweep: $1 device, $2 fuse, $3 folder.
wall() {
    local dir=$work/$3
    rm -rf "$dir"
    mkdir -p "$dir"
    local start end
    start=$(date +%s.%N)
    "$ferlab" sweep "$work/quickstart.toml" --devices "$1" --per-device 1 --fuse "$2" \
        --set "epochs=$epochs" --no-tui --db "$dir/fer-lab.sqlite" > "$dir/out.log" 2>&1 ||
        { echo "fer-lab sweep failed; its output:" >&2; cat "$dir/out.log" >&2; exit 1; }
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "# fer-lab sweep: $seeds quickstart runs ($epochs epochs, mini sample), fused vs one at a time"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $("$ferlab" --version), median of $repeat"
echo
echo "| device | launch | wall s | runs/hour | fused / one at a time |"
echo "| --- | --- | ---: | ---: | ---: |"
for d in $devices; do
    alone=() fused=()
    for _ in $(seq "$repeat"); do
        alone+=("$(wall "$d" off "$d-off")")
        fused+=("$(wall "$d" "$seeds" "$d-fused")")
    done
    a=$(echo "${alone[@]}" | median)
    f=$(echo "${fused[@]}" | median)
    awk -v d="$d" -v a="$a" -v f="$f" -v n="$seeds" 'BEGIN {
        printf "| %s | one at a time (--fuse off) | %.1f | %.0f | |\n", d, a, n * 3600 / a
        printf "| %s | fused (--fuse %d) | %.1f | %.0f | %.2f× |\n", d, n, f, n * 3600 / f, a / f
    }'
done
