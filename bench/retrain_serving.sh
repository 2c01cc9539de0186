#!/usr/bin/env bash
# Does a background retrain slow serving? `flywheel serve --retrain-after 1 --retrain-threads 1
# --threads 1` on a SQLite store with a model of tweets-sentiment (base data = its training
# split); oha sends classify requests at a fixed RATE for SECS seconds twice: with no retrain
# running, then while corrections keep the server retraining back to back. Prints one markdown
# row per phase and the number of retrains that ran.
#   bash bench/retrain_serving.sh [DATA_DIR] [SECS] [RATE] [MODEL_ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets/tweets-sentiment}
SECS=${2:-20}
RATE=${3:-500}
MODEL_ARGS=${4:---model linear}
BIN=${BIN:-target/release/flywheel}
command -v oha >/dev/null || { echo "needs oha on the PATH (cargo install oha --locked)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
export DATABASE_URL="sqlite://$WORK/flywheel.db"
head -n 2001 "$DATA/test.csv" > "$WORK/holdout.csv"
# shellcheck disable=SC2086
"$BIN" train "$DATA/train.csv" -o "$WORK/m.fw" $MODEL_ARGS --threads 2 >/dev/null 2>&1
"$BIN" models push "$WORK/m.fw" --name m --data "$DATA/train.csv" --holdout "$WORK/holdout.csv" >/dev/null 2>&1
"$BIN" models promote m 1 >/dev/null
"$BIN" models public m >/dev/null
"$BIN" plans create p --requests-per-minute 100000000 --texts-per-month 1000000000 >/dev/null
"$BIN" tenants create t >/dev/null
KEY=$("$BIN" keys create --tenant t --plan p 2>/dev/null)
P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --database-url "$DATABASE_URL" --addr 127.0.0.1:$P --threads 1 \
    --retrain-after 1 --retrain-threads 1 --registry-poll-ms 200 2>"$WORK/serve.log" & PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$P/readyz" >/dev/null && break; sleep 0.05; done
BODY='{"model":"m","inputs":["what a great flight, thank you so much"]}'
load() {
    oha -z "${SECS}s" -q "$RATE" -c 4 --worker-threads 1 --no-tui --output-format json \
        -m POST -T application/json -H "authorization: Bearer $KEY" -d "$BODY" \
        "http://127.0.0.1:$P/v1/classify"
}
row() {
    python3 - "$1" "$2" <<'PY'
import json, sys
name, d = sys.argv[1], json.loads(sys.argv[2])
s, p = d["summary"], d["latencyPercentiles"]
print(f"| {name} | {s['requestsPerSec']:,.0f} | {p['p50']*1e3:.2f} | {p['p90']*1e3:.2f} | {p['p99']*1e3:.2f} | {d.get('statusCodeDistribution', {})} |")
PY
}
retrains() { curl -s "http://127.0.0.1:$P/metrics" | awk '/^flywheel_retrains_total/ {n += $2} END {print n + 0}'; }
echo "| phase | req/s | p50 ms | p90 ms | p99 ms | statuses |"
echo "|---|---:|---:|---:|---:|---|"
row "no retrain running" "$(load)"
before=$(retrains)
# Corrections every second keep a retrain running for the whole second phase.
( end=$((SECONDS + SECS + 2)); i=0
  while [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    curl -s -o /dev/null "http://127.0.0.1:$P/v1/feedback" -H "authorization: Bearer $KEY" \
        -H 'content-type: application/json' -d "{\"model\":\"m\",\"text\":\"great crew $i\",\"label\":\"positive\"}"
    sleep 1
  done ) &
FEED=$!
sleep 1
row "retraining in the background" "$(load)"
wait $FEED
sleep 1
echo
echo "retrains finished during the second phase: $(( $(retrains) - before ))"
"$BIN" models history m | tail -n 3
