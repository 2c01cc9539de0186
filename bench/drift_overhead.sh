#!/usr/bin/env bash
# Serving throughput with the drift monitor on and off, same machine, same run, alternating:
#   [MODELS="tweets-sentiment bbc-news"] bash bench/drift_overhead.sh [DATASETS_DIR] [SECONDS] [ROUNDS]
# For tweets-sentiment and bbc-news, trains the linear model, then ROUNDS times serves it with
# --no-drift and with the monitor on (default settings), and drives it with oha (closed loop,
# 16 connections, one test text per request, the texts in turn) for SECONDS; prints requests/s
# of each run, the CPU time of the monitor's thread beside the server's, and the ratio of the
# means (on / off).
set -euo pipefail
DATA=${1:-../shared/datasets}
SECS=${2:-10}
ROUNDS=${3:-3}
FW=${FW:-target/release/flywheel}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for name in ${MODELS:-tweets-sentiment bbc-news}; do
  "$FW" train "$DATA/$name/train.csv" --model linear -o "$TMP/$name.fw" >/dev/null 2>&1
  python3 - "$DATA/$name/test.csv" "$name" > "$TMP/$name.bodies" <<'PY'
import csv, json, sys
csv.field_size_limit(sys.maxsize)
for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")):
    print(json.dumps({"model": sys.argv[2], "inputs": [r["text"]]}))
PY
  declare -A sum=([off]=0 [on]=0)
  for round in $(seq "$ROUNDS"); do
    for mode in off on; do
      flag=""; [ "$mode" = off ] && flag="--no-drift"
      port=$((18000 + RANDOM % 1000))
      "$FW" serve --model "$name=$TMP/$name.fw" --addr "127.0.0.1:$port" --threads 1 $flag >/dev/null 2>&1 &
      pid=$!
      for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
      rps=$(oha -z "${SECS}s" -c 16 --no-tui --output-format json -m POST -T application/json \
              -Z "$TMP/$name.bodies" "http://127.0.0.1:$port/v1/classify" \
            | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["summary"]["requestsPerSec"]))')
      observed=$(curl -s "http://127.0.0.1:$port/v1/models/$name/drift" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["observed"], d["dropped"])')
      # CPU seconds of the monitor's own thread (named drift-MODEL) and of the whole server.
      cpu=$(python3 - "$pid" <<'PY'
import os, sys
pid, tick = sys.argv[1], os.sysconf("SC_CLK_TCK")
def cpu(stat):
    f = open(stat).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
monitor = sum(cpu(f"/proc/{pid}/task/{t}/stat") for t in os.listdir(f"/proc/{pid}/task")
              if open(f"/proc/{pid}/task/{t}/comm").read().startswith("drift-"))
print(f"monitor {monitor:.2f} s CPU of the server's {cpu(f'/proc/{pid}/stat'):.2f} s")
PY
)
      kill "$pid"; wait "$pid" 2>/dev/null || true
      echo "$name round $round drift $mode: $rps req/s (monitor observed, dropped batches: $observed; $cpu)"
      sum[$mode]=$(( ${sum[$mode]} + rps ))
    done
  done
  python3 -c "print(f'$name: mean off {${sum[off]}/$ROUNDS:.0f} req/s, on {${sum[on]}/$ROUNDS:.0f} req/s, on/off {${sum[on]}/${sum[off]}:.3f}')"
done
