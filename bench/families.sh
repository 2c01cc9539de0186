#!/usr/bin/env bash
# Model families with their default settings on each dataset (FAMILIES, default the sequence
# families lstm gru bilstm cnn; also fasttext, linear, encoder, and encoder+ngrams = encoder
# --with-ngrams; the encoder ones read ENCODER, default all-minilm-l6-v2 as fetched):
# `flywheel train DATA/train.csv --model F --threads 2 --seed 42`, then `flywheel eval` on
# DATA/test.csv. One markdown row per run: test macro-F1, accuracy, training wall time (the
# train command's own "Trained N epochs in X s"), parameters, and prediction throughput
# (test rows / wall time of `flywheel predict M DATA/test.csv --threads 2`, model loading and
# CSV reading included).
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
ENCODER=${ENCODER:-all-minilm-l6-v2}
BIN=target/release/flywheel
[ -x "$BIN" ] || cargo build --release -p flywheel-cli
mkdir -p "$OUT"
echo "| dataset | --model | test macro-F1 | test accuracy | train s | parameters | predict texts/s |"
echo "|---|---|---:|---:|---:|---:|---:|"
for name in $DATASETS; do
    d="$DIR/$name"
    for family in $FAMILIES; do
        m="$OUT/$name-$family.fw"
        case "$family" in
            encoder) flags=(--model encoder --encoder "$ENCODER") ;;
            encoder+ngrams) flags=(--model encoder --encoder "$ENCODER" --with-ngrams) ;;
            *) flags=(--model "$family") ;;
        esac
        "$BIN" train "$d/train.csv" -o "$m" "${flags[@]}" --threads 2 --seed 42 \
            2>"$OUT/$name-$family.log"
        secs=$(grep -oE 'Trained [0-9]+ epochs in [0-9.]+ s' "$OUT/$name-$family.log" | awk '{print $5}')
        params=$("$BIN" info "$m" | grep -oE 'parameters [0-9]+' | awk '{print $2}')
        "$BIN" eval "$m" "$d/test.csv" --json --threads 2 >"$OUT/$name-$family.eval.json"
        t0=$(date +%s.%N)
        "$BIN" predict "$m" "$d/test.csv" --threads 2 >/dev/null
        t1=$(date +%s.%N)
        python3 - "$name" "$family" "$OUT/$name-$family.eval.json" "$secs" "$params" "$t0" "$t1" <<'PY'
import json, sys
name, family, path, secs, params, t0, t1 = sys.argv[1:]
d = json.load(open(path))
rate = d['n'] / (float(t1) - float(t0))
print(f"| {name} | {family} | {d['macro_f1']:.4f} | {d['accuracy']:.4f} | {float(secs):.1f} | {int(params):,} | {rate:,.0f} |", flush=True)
PY
    done
done
