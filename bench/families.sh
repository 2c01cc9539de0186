#!/usr/bin/env bash
# Every sequence family (lstm, gru, bilstm, cnn) with its default settings on each dataset:
# `flywheel train DATA/train.csv --model F --threads 2 --seed 42`, then `flywheel eval` on
# DATA/test.csv. One markdown row per run: test macro-F1, accuracy, training wall time (the
# train command's own "Trained N epochs in X s"), epochs and parameters.
#
#   bash bench/families.sh [DATASETS_DIR=../shared/datasets] [DATASETS="bbc-news tweets-sentiment"]
#
# Models and logs go to $OUT (default /tmp/flywheel-families).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-../shared/datasets}
DATASETS=${2:-"bbc-news tweets-sentiment"}
FAMILIES=${FAMILIES:-"lstm gru bilstm cnn"}
OUT=${OUT:-/tmp/flywheel-families}
BIN=target/release/flywheel
[ -x "$BIN" ] || cargo build --release -p flywheel-cli
mkdir -p "$OUT"
echo "| dataset | --model | test macro-F1 | test accuracy | train s | parameters |"
echo "|---|---|---:|---:|---:|---:|"
for name in $DATASETS; do
    d="$DIR/$name"
    for family in $FAMILIES; do
        m="$OUT/$name-$family.fw"
        "$BIN" train "$d/train.csv" -o "$m" --model "$family" --threads 2 --seed 42 \
            2>"$OUT/$name-$family.log"
        secs=$(grep -oE 'Trained [0-9]+ epochs in [0-9.]+ s' "$OUT/$name-$family.log" | awk '{print $5}')
        params=$("$BIN" info "$m" | grep -oE 'parameters [0-9]+' | awk '{print $2}')
        "$BIN" eval "$m" "$d/test.csv" --json --threads 2 >"$OUT/$name-$family.eval.json"
        python3 - "$name" "$family" "$OUT/$name-$family.eval.json" "$secs" "$params" <<'PY'
import json, sys
name, family, path, secs, params = sys.argv[1:]
d = json.load(open(path))
print(f"| {name} | {family} | {d['macro_f1']:.4f} | {d['accuracy']:.4f} | {float(secs):.1f} | {int(params):,} |", flush=True)
PY
    done
done
