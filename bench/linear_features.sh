#!/usr/bin/env bash
# One `linear` configuration on a dataset with and without the n-gram pruning (min_df) and
# with fastText's 2 million hash buckets or the linear family's 2^30: test macro-F1, training
# wall seconds and model size, one markdown row each.
#
#   bash bench/linear_features.sh DATASET_DIR [TRAIN FLAGS...]
#   e.g. bash bench/linear_features.sh ../shared/datasets/zh-news-sentiment \
#            --tokenizer cjk --word-ngrams 3 --c 100 --balanced
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:?dataset directory}
shift
BIN=target/release/flywheel
[ -x "$BIN" ] || cargo build --release -p flywheel-cli
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "| min_df | buckets | test macro-F1 | train s | model MB |"
echo "|---:|---:|---:|---:|---:|"
for variant in "1 2000000" "2 2000000" "1 1073741824" "2 1073741824"; do
    read -r min_df buckets <<<"$variant"
    start=$(date +%s.%N)
    "$BIN" train "$D/train.csv" -o "$OUT/m.fw" --model linear --threads 2 \
        --min-df "$min_df" --buckets "$buckets" "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    f1=$("$BIN" eval "$OUT/m.fw" "$D/test.csv" --json | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["macro_f1"])')
    mb=$(python3 -c "import os; print(f'{os.path.getsize(\"$OUT/m.fw\") / 1e6:.1f}')")
    python3 -c "print(f'| $min_df | $buckets | $f1 | {$end - $start:.1f} | $mb |')"
done
