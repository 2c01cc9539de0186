#!/usr/bin/env bash
# Few-shot side by side on the same samples: flywheel's setfit, the frozen encoder + logistic
# head, linear and fasttext, next to the SetFit Python package (bench/setfit_compare.py).
#
#   bench/fewshot.sh OUT.jsonl DATASET_DIR N SEED [SEED ...]
#
# Environment: FLYWHEEL (binary, default target/release/flywheel), ENCODER (default
# ~/.cache/flywheel/encoders/all-minilm-l6-v2), THREADS (2), SAMPLES (sample folder,
# default bench/results/fewshot-samples), SETFIT=0 to skip the Python side, FAMILIES
# (default "setfit encoder linear fasttext"), MAX_PIECES (flywheel --max-pieces and SetFit
# --max-length when set).
# Needs bench/.venv-setfit (bash bench/setfit/setup.sh) for the samples and SetFit.
set -euo pipefail
out=$1 data=$2 n=$3
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
fw=${FLYWHEEL:-$root/target/release/flywheel}
enc=${ENCODER:-$HOME/.cache/flywheel/encoders/all-minilm-l6-v2}
threads=${THREADS:-2}
samples=${SAMPLES:-$root/bench/results/fewshot-samples}
py=$root/bench/.venv-setfit/bin/python
families=${FAMILIES:-setfit encoder linear fasttext}
name=$(basename "$data")
mkdir -p "$samples" "$(dirname "$out")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for seed in "$@"; do
  "$py" "$root/bench/setfit_compare.py" --dataset "$data" --n "$n" --seeds "$seed" \
    --outdir "$samples" --only-sample >/dev/null
  sample=$samples/$name-n$n-s$seed.csv
  for family in $families; do
    flags=(--model "$family" --threads "$threads" --seed 42)
    case $family in
      setfit) flags+=(--encoder "$enc"); [ -n "${MAX_PIECES:-}" ] && flags+=(--max-pieces "$MAX_PIECES") ;;
      encoder) flags+=(--encoder "$enc") ;;
    esac
    start=$(date +%s.%N)
    "$fw" train "$sample" -o "$work/m.fw" "${flags[@]}" >/dev/null 2>"$work/train.log" \
      || { echo "flywheel $family failed on $sample:"; cat "$work/train.log"; exit 1; }
    end=$(date +%s.%N)
    f1=$("$fw" eval "$work/m.fw" "$data/test.csv" --threads "$threads" --json \
      | "$py" -c 'import json,sys; print(json.load(sys.stdin)["macro_f1"])')
    printf '{"tool":"flywheel","family":"%s","dataset":"%s","n":%s,"seed":%s,"threads":%s,"max_pieces":%s,"train_seconds":%s,"macro_f1":%s}\n' \
      "$family" "$name" "$n" "$seed" "$threads" "${MAX_PIECES:-null}" \
      "$(printf "%.3f" "$(echo "$end - $start" | bc)")" "$f1" >> "$out"
    tail -n 1 "$out"
  done
  if [ "${SETFIT:-1}" != 0 ]; then
    extra=()
    [ -n "${MAX_PIECES:-}" ] && extra+=(--max-length "$MAX_PIECES")
    rm -f "$work/setfit.jsonl"
    "$py" "$root/bench/setfit_compare.py" --dataset "$data" --n "$n" --seeds "$seed" \
      --outdir "$samples" --out "$work/setfit.jsonl" --threads "$threads" --encoder "$enc" \
      "${extra[@]}" >"$work/setfit.log" 2>&1 || { cat "$work/setfit.log"; exit 1; }
    "$py" - "$work/setfit.jsonl" "$out" "${MAX_PIECES:-null}" <<'PY'
import json, sys
src, dst, cap = sys.argv[1], sys.argv[2], sys.argv[3]
for line in open(src):
    r = json.loads(line)
    for family, f1, secs in [("setfit", r["setfit_macro_f1"], r["train_seconds"]),
                             ("frozen", r["frozen_macro_f1"], r["frozen_fit_seconds"])]:
        row = {"tool": "setfit-py", "family": family, "dataset": r["dataset"], "n": r["n_per_class"],
               "seed": r["seed"], "threads": r["threads"], "max_pieces": None if cap == "null" else int(cap),
               "train_seconds": secs, "macro_f1": f1, "versions": r["versions"]}
        open(dst, "a").write(json.dumps(row) + "\n")
        print(json.dumps(row))
PY
  fi
done
