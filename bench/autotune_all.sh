#!/usr/bin/env bash
# `flywheel autotune` on every shared dataset, then `flywheel eval` of the chosen model on its
# test.csv: one markdown row per dataset (test macro-F1 and accuracy, the choice, wall time).
#
#   bash bench/autotune_all.sh [BUDGET=5m] [DATASETS_DIR=../shared/datasets] [SEED=42]
#
# Logs (every trial) go to $OUT (default /tmp/flywheel-autotune).
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-5m}
DIR=${2:-../shared/datasets}
SEED=${3:-42}
OUT=${OUT:-/tmp/flywheel-autotune}
BIN=target/release/flywheel
[ -x "$BIN" ] || cargo build --release -p flywheel-cli
mkdir -p "$OUT"
echo "| dataset | test macro-F1 | test accuracy | chosen configuration (validation macro-F1) | autotune wall s |"
echo "|---|---:|---:|---|---:|"
for d in "$DIR"/*/; do
    name=$(basename "$d")
    [ -f "$d/train.csv" ] || continue
    start=$(date +%s.%N)
    "$BIN" autotune "$d/train.csv" -o "$OUT/$name.fw" --budget "$BUDGET" --seed "$SEED" 2>"$OUT/$name.log"
    end=$(date +%s.%N)
    chose=$(grep '^Chose' "$OUT/$name.log" | sed -E 's/^Chose (.*) from .*/\1/')
    "$BIN" eval "$OUT/$name.fw" "$d/test.csv" --json >"$OUT/$name.eval.json"
    python3 - "$name" "$OUT/$name.eval.json" "$chose" "$start" "$end" <<'PY'
import json, sys
name, path, chose, t0, t1 = sys.argv[1:]
d = json.load(open(path))
print(f"| {name} | {d['macro_f1']:.4f} | {d['accuracy']:.4f} | {chose} | {float(t1) - float(t0):.0f} |", flush=True)
PY
done
