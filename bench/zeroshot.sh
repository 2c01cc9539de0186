#!/usr/bin/env bash
# Zero-shot macro-F1 on each test set: label names only, then with the one-line descriptions
# of bench/descriptions/DATASET.txt, next to the majority-class baseline.
#   bench/zeroshot.sh OUT.jsonl DATASET_DIR... (ENCODER, THREADS, TEMPLATE as in fewshot.sh)
set -euo pipefail
out=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
fw=${FLYWHEEL:-$root/target/release/flywheel}
enc=${ENCODER:-$HOME/.cache/flywheel/encoders/all-minilm-l6-v2}
threads=${THREADS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for data in "$@"; do
  name=$(basename "$data")
  labels=$(python3 -c 'import csv,sys; print(",".join(sorted({r["label"] for r in csv.DictReader(open(sys.argv[1]))})))' "$data/train.csv")
  majority=$(python3 -c '
import csv, sys, collections
c = collections.Counter(r["label"] for r in csv.DictReader(open(sys.argv[1])))
top, n = c.most_common(1)[0]; total = sum(c.values())
# Predicting the majority class for all: its F1 is 2p/(1+p) with precision p, the others 0.
p = n / total
print(2 * p / (1 + p) / len(c))' "$data/test.csv")
  for variant in names descriptions; do
    flags=(--labels "$labels" --encoder "$enc" --threads "$threads")
    [ -n "${TEMPLATE:-}" ] && flags+=(--template "$TEMPLATE")
    if [ "$variant" = descriptions ]; then
      [ -f "$root/bench/descriptions/$name.txt" ] || continue
      flags+=(--descriptions "$root/bench/descriptions/$name.txt")
    fi
    "$fw" zeroshot "${flags[@]}" -o "$work/z.fw" 2>/dev/null
    f1=$("$fw" eval "$work/z.fw" "$data/test.csv" --threads "$threads" --json \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["macro_f1"])')
    printf '{"dataset":"%s","encoder":"%s","variant":"%s","template":"%s","macro_f1":%s,"majority_macro_f1":%s}\n' \
      "$name" "$(basename "$enc")" "$variant" "${TEMPLATE:-default}" "$f1" "$majority" | tee -a "$out"
  done
done
