#!/usr/bin/env bash
# Runs every fuzz target for MINUTES (default 10), JOBS at a time (default 2), from seed corpora
# made by fuzz/seeds/make.sh, after replaying fuzz/regressions. Prints one line per target:
# executions, seconds, corpus size, and whether it found a crash (saved under fuzz/artifacts/).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
minutes=${1:-10}
jobs=${2:-2}
targets=(read_data tokenize artifact http_bodies)
[ -d corpus/artifact ] || bash seeds/make.sh
cargo +nightly fuzz build -O >/dev/null
# Every saved crash must stay fixed.
for f in regressions/*; do
  [ -e "$f" ] || continue
  target=${f#regressions/}; target=${target%%-*}
  cargo +nightly fuzz run -O "$target" "$f" >/dev/null 2>&1 || { echo "regression $f crashes again"; exit 1; }
done
mkdir -p logs
run() {
  local t=$1 status=clean
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time=$((minutes * 60)) \
      -rss_limit_mb=2048 -print_final_stats=1 >"logs/$t.log" 2>&1 || status=CRASH
  local runs secs
  runs=$(grep -oE 'Done [0-9]+ runs' "logs/$t.log" | grep -oE '[0-9]+' || echo "?")
  secs=$(grep -oE 'in [0-9]+ second' "logs/$t.log" | grep -oE '[0-9]+' || echo "?")
  echo "$t: $status, $runs executions in $secs s, corpus $(ls "corpus/$t" | wc -l) files"
}
pids=()
for t in "${targets[@]}"; do
  run "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
wait
