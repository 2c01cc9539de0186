#!/usr/bin/env bash
# Faithfulness of `flywheel explain` (issue 3): on the tweets-sentiment test set, deleting the 3
# top-attributed tokens must change the predicted label's probability more than deleting 3 random
# tokens. Trains the reference model (keras-lstm preset, seed 42) unless MODEL is given.
#
#   bench/faithfulness.sh [DATA_DIR] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets/tweets-sentiment}
MODEL=${2:-target/bench/tweets-reference.fw}
cargo build --release -q -p flywheel-cli -p flywheel-model --example faithfulness
if [ ! -f "$MODEL" ]; then
  mkdir -p "$(dirname "$MODEL")"
  target/release/flywheel train "$DATA/train.csv" -o "$MODEL" --seed 42 --threads 1
fi
target/release/examples/faithfulness "$MODEL" "$DATA/test.csv"
target/release/examples/faithfulness "$MODEL" "$DATA/test.csv" 250
