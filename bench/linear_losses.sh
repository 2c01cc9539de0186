#!/usr/bin/env bash
# The `linear` family's two losses side by side: logistic regression and the squared-hinge
# linear SVM on the same features (words + character 2-5-grams, every n-gram kept), trained on
# each dataset's train.csv and scored on its test.csv. One markdown row per dataset and loss.
#
#   bash bench/linear_losses.sh [DATASETS_DIR=../shared/datasets] [DATASET...]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-../shared/datasets}
shift || true
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(spam bbc-news)
BIN=target/release/flywheel
[ -x "$BIN" ] || cargo build --release -p flywheel-cli
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "| dataset | loss | C | test macro-F1 | test accuracy | train s (2 threads) |"
echo "|---|---|---:|---:|---:|---:|"
for d in "${SETS[@]}"; do
    for loss in logistic squared-hinge; do
        for c in 1 3 10; do
            start=$(date +%s.%N)
            "$BIN" train "$DIR/$d/train.csv" -o "$OUT/m.fw" --model linear --loss "$loss" --c "$c" \
                --word-ngrams 1 --minn 2 --maxn 5 --min-df 1 --threads 2 >/dev/null 2>&1
            end=$(date +%s.%N)
            "$BIN" eval "$OUT/m.fw" "$DIR/$d/test.csv" --json >"$OUT/e.json"
            python3 - "$d" "$loss" "$c" "$OUT/e.json" "$start" "$end" <<'PY'
import json, sys
d, loss, c, path, t0, t1 = sys.argv[1:]
r = json.load(open(path))
print(f"| {d} | {loss} | {c} | {r['macro_f1']:.4f} | {r['accuracy']:.4f} | {float(t1) - float(t0):.1f} |", flush=True)
PY
        done
    done
done
