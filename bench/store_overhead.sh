#!/usr/bin/env bash
# What accounts cost a request: `flywheel serve` with model files (no keys, no metering) beside
# the same model served from a store, where every request is authenticated, checked against its
# plan and metered (one committed write) before the answer: SQLite, and PostgreSQL when
# FLYWHEEL_TEST_POSTGRES_URL (or PG_URL) names a server (a scratch database is created there).
#
#   bash bench/store_overhead.sh [MODEL.fw] [SECONDS=10] [CONNECTIONS=16]
#
# Load: `oha` closed loop (CONNECTIONS connections, 1 worker thread), one text per request.
# Without MODEL, the reference model is trained on ../shared/datasets/tweets-sentiment.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${2:-10}
CONN=${3:-16}
BIN=target/release/flywheel
[ -x "$BIN" ] || cargo build --release -p flywheel-cli
command -v oha >/dev/null || { echo "needs oha on the PATH (cargo install oha --locked)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
MODEL=${1:-}
if [ -z "$MODEL" ]; then
    MODEL=$WORK/tweets.fw
    "$BIN" train ../shared/datasets/tweets-sentiment/train.csv -o "$MODEL" --threads 2 --seed 42 >/dev/null 2>&1
fi
BODY='{"model":"m","inputs":["what a great flight, thank you so much"]}'

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.05; done; return 1; }

# run NAME PORT [HEADER...]: prints one markdown row.
run() {
    local name=$1 p=$2; shift 2
    local out
    out=$(oha -z "${SECS}s" -c "$CONN" --worker-threads 1 --no-tui --output-format json \
        -m POST -T application/json -d "$BODY" "$@" "http://127.0.0.1:$p/v1/classify")
    python3 - "$name" "$out" <<'PY'
import json, sys
name, d = sys.argv[1], json.loads(sys.argv[2])
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
print(f"| {name} | {s['requestsPerSec']:,.0f} | {p['p50']*1e3:.2f} | {p['p99']*1e3:.2f} | {codes} |")
PY
}

setup_store() { # URL -> prints the key
    local url=$1
    DATABASE_URL=$url "$BIN" models push "$MODEL" --name m >/dev/null 2>&1
    DATABASE_URL=$url "$BIN" models promote m 1 >/dev/null
    DATABASE_URL=$url "$BIN" models public m >/dev/null
    DATABASE_URL=$url "$BIN" plans create p --requests-per-minute 100000000 --texts-per-month 1000000000 >/dev/null
    DATABASE_URL=$url "$BIN" tenants create t >/dev/null
    DATABASE_URL=$url "$BIN" keys create --tenant t --plan p 2>/dev/null
}

echo "| server | req/s | p50 ms | p99 ms | statuses |"
echo "|---|---:|---:|---:|---|"
P=$(port); "$BIN" serve --model m="$MODEL" --addr 127.0.0.1:$P --threads 1 ${SERVE_ARGS:-} 2>/dev/null & PID=$!
wait_ready $P; run "file model, no accounts" $P; kill $PID; wait $PID 2>/dev/null || true

URL="sqlite://$WORK/flywheel.db"
KEY=$(setup_store "$URL")
P=$(port); "$BIN" serve --database-url "$URL" --addr 127.0.0.1:$P --threads 1 ${SERVE_ARGS:-} 2>/dev/null & PID=$!
wait_ready $P; run "store: SQLite (key, limits, metered commit)" $P -H "authorization: Bearer $KEY"; kill $PID; wait $PID 2>/dev/null || true
echo "events recorded: $(DATABASE_URL=$URL "$BIN" usage report --format csv | awk -F, 'NR>1 {n+=$5} END {print n+0}')" >&2

BASE=${PG_URL:-${FLYWHEEL_TEST_POSTGRES_URL:-}}
if [ -n "$BASE" ]; then
    DB=flywheel_bench_$$
    psql "$BASE" -qc "CREATE DATABASE $DB" >/dev/null
    URL=$(python3 -c 'import sys; b=sys.argv[1]; h,_,q=b.partition("?"); print(h.rsplit("/",1)[0]+"/"+sys.argv[2]+("?"+q if q else ""))' "$BASE" "$DB")
    KEY=$(setup_store "$URL")
    P=$(port); "$BIN" serve --database-url "$URL" --addr 127.0.0.1:$P --threads 1 ${SERVE_ARGS:-} 2>/dev/null & PID=$!
    wait_ready $P; run "store: PostgreSQL (key, limits, metered commit)" $P -H "authorization: Bearer $KEY"; kill $PID; wait $PID 2>/dev/null || true
    psql "$BASE" -qc "DROP DATABASE $DB WITH (FORCE)" >/dev/null
fi
