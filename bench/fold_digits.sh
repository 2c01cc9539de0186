#!/usr/bin/env bash
# Digit folding (`--fold-digits`) side by side: one `linear` configuration (class-weighted
# logistic regression, word 1-2-grams + character 2-5-grams, `--min-df 2`, C=3) trained on each
# dataset's train.csv with digits kept and folded to 0, scored on its test.csv. One markdown row
# per dataset.
#
#   bash bench/fold_digits.sh [DATASETS_DIR=../shared/datasets] [DATASET...]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-../shared/datasets}
shift || true
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(bbc-news drug-reviews-sentiment spam tweets-sentiment zh-news-sentiment)
BIN=target/release/flywheel
[ -x "$BIN" ] || cargo build --release -p flywheel-cli
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "| dataset | digits kept: test macro-F1 | folded: test macro-F1 | kept: words | folded: words |"
echo "|---|---:|---:|---:|---:|"
for d in "${SETS[@]}"; do
    row=("$d")
    for fold in "" --fold-digits; do
        "$BIN" train "$DIR/$d/train.csv" -o "$OUT/m$fold.fw" --model linear --c 3 --balanced \
            --word-ngrams 2 --minn 2 --maxn 5 --min-df 2 --threads 2 $fold >/dev/null 2>&1
        "$BIN" eval "$OUT/m$fold.fw" "$DIR/$d/test.csv" --json >"$OUT/e.json"
        row+=("$(python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["macro_f1"])' "$OUT/e.json")")
    done
    for fold in "" --fold-digits; do
        row+=("$("$BIN" info "$OUT/m$fold.fw" | sed -nE 's/.* words ([0-9]+) .*/\1/p')")
    done
    line="|"
    for v in "${row[@]}"; do line+=" $v |"; done
    echo "$line"
done
