#!/usr/bin/env bash
# What accounts cost a request, side by side in one run: `flywheel serve` with a model file (no
# keys, no metering) and the same model served from a store, where every request is
# authenticated, checked against its plan and metered (its usage event committed, by group
# commit, before the answer) — on SQLite and on PostgreSQL as it ships (fsync on,
# synchronous_commit on). Each server is loaded twice with `oha` (1 worker thread, one text per
# request): closed loop with CONNECTIONS connections, then a fixed RATE req/s with latency
# correction (no coordinated omission). Then the usage the store recorded is reconciled with
# the 200s the load tool saw.
#
#   bash bench/store_overhead.sh [MODEL.fw] [SECONDS=10] [CONNECTIONS=16] [RATE=1000]
#
# FLYWHEEL names the binary (default target/release/flywheel, built when missing).
# PostgreSQL: a private cluster with PostgreSQL's default durability is started by
# .ci/postgres-setup (FLYWHEEL_PG_DURABLE=1, in BENCH_PG_DIR=/tmp/flywheel-bench-pg on
# BENCH_PG_PORT=55433) unless PG_URL names a server; a scratch database is created there and
# dropped after.
# Without MODEL, the reference model is trained on ../shared/datasets/tweets-sentiment.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${2:-10}
CONN=${3:-16}
RATE=${4:-1000}
BIN=${FLYWHEEL:-target/release/flywheel}
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

# load NAME PORT MODE [HEADER...]: one markdown row; the 200s and abandoned requests are added
# to $WORK/ok and $WORK/abandoned, the closed-loop rate kept in $WORK/rate.NAME.
load() {
    local name=$1 p=$2 mode=$3; shift 3
    local rate_args=()
    [ "$mode" = fixed ] && rate_args=(-q "$RATE" --latency-correction)
    local out
    out=$(oha -z "${SECS}s" -c "$CONN" --worker-threads 1 --no-tui --output-format json \
        "${rate_args[@]}" -m POST -T application/json -d "$BODY" "$@" "http://127.0.0.1:$p/v1/classify")
    python3 - "$name" "$mode" "$WORK" "$out" <<'PY'
import json, sys
name, mode, work, d = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
abandoned = d.get("errorDistribution", {}).get("aborted due to deadline", 0)
others = {k: v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
for f, n in (("ok", codes.get("200", 0)), ("abandoned", abandoned)):
    try:
        old = int(open(f"{work}/{f}").read())
    except FileNotFoundError:
        old = 0
    open(f"{work}/{f}", "w").write(str(old + n))
if mode == "closed":
    open(f"{work}/rate.{name}", "w").write(str(s["requestsPerSec"]))
label = "closed loop" if mode == "closed" else "fixed rate"
print(f"| {name} | {label} | {s['requestsPerSec']:,.0f} | {p['p50']*1e3:.2f} | {p['p99']*1e3:.2f} "
      f"| {codes} | {abandoned} | {others or ''} |")
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

# metered NAME URL: both loads on a server over the store at URL, then the reconciliation.
metered() {
    local name=$1 url=$2 key p pid
    key=$(setup_store "$url")
    rm -f "$WORK/ok" "$WORK/abandoned"
    p=$(port); "$BIN" serve --database-url "$url" --addr 127.0.0.1:$p --threads 1 ${SERVE_ARGS:-} 2>/dev/null & pid=$!
    wait_ready $p
    load "$name" $p closed -H "authorization: Bearer $key"
    load "$name" $p fixed -H "authorization: Bearer $key"
    kill $pid; wait $pid 2>/dev/null || true
    local events ok abandoned
    events=$(DATABASE_URL=$url "$BIN" usage report --format csv | awk -F, 'NR>1 {n+=$5} END {print n+0}')
    ok=$(cat "$WORK/ok"); abandoned=$(cat "$WORK/abandoned")
    echo "$name: $events usage events for $ok answered 200s; $((events - ok)) more, of $abandoned requests the load tool abandoned at its deadline (answered by the server after oha stopped waiting)" >> "$WORK/reconcile"
    if [ "$events" -lt "$ok" ] || [ $((events - ok)) -gt "$abandoned" ]; then
        echo "$name: MISMATCH — every 200 must have exactly one event" >> "$WORK/reconcile"
    fi
}

echo "| server | load | req/s | p50 ms | p99 ms | statuses | abandoned at the deadline | errors |"
echo "|---|---|---:|---:|---:|---|---:|---|"
P=$(port); "$BIN" serve --model m="$MODEL" --addr 127.0.0.1:$P --threads 1 ${SERVE_ARGS:-} 2>/dev/null & PID=$!
wait_ready $P
load "file model, no accounts" $P closed
load "file model, no accounts" $P fixed
kill $PID; wait $PID 2>/dev/null || true

metered "SQLite (key, limits, metered)" "sqlite://$WORK/flywheel.db"

BASE=${PG_URL:-}
if [ -z "$BASE" ]; then
    # shellcheck source=/dev/null
    source .ci/postgres-setup
    unset FLYWHEEL_TEST_POSTGRES_URL
    export FLYWHEEL_PG_DIR=${BENCH_PG_DIR:-/tmp/flywheel-bench-pg} FLYWHEEL_PG_PORT=${BENCH_PG_PORT:-55433}
    export FLYWHEEL_PG_DURABLE=1
    flywheel_postgres_setup >&2
    BASE=$FLYWHEEL_TEST_POSTGRES_URL
    if [ "$(psql "$BASE" -Atc "SELECT current_setting('fsync') || '/' || current_setting('synchronous_commit')")" != on/on ]; then
        echo "the cluster in $FLYWHEEL_PG_DIR does not run with fsync=on and synchronous_commit=on; stop it or set BENCH_PG_DIR" >&2
        exit 1
    fi
fi
DB=flywheel_bench_$$
psql "$BASE" -qc "CREATE DATABASE $DB" >/dev/null
URL=$(python3 -c 'import sys; b=sys.argv[1]; h,_,q=b.partition("?"); print(h.rsplit("/",1)[0]+"/"+sys.argv[2]+("?"+q if q else ""))' "$BASE" "$DB")
DURABILITY=$(psql "$URL" -Atc "SELECT current_setting('fsync') || '/' || current_setting('synchronous_commit')")
metered "PostgreSQL (key, limits, metered)" "$URL"
psql "$BASE" -qc "DROP DATABASE $DB WITH (FORCE)" >/dev/null 2>&1 || psql "$BASE" -qc "DROP DATABASE $DB" >/dev/null 2>&1 || true

echo
echo "PostgreSQL fsync/synchronous_commit: $DURABILITY"
python3 - "$WORK" <<'PY'
import glob, os, sys
work = sys.argv[1]
rates = {os.path.basename(f)[5:]: float(open(f).read()) for f in glob.glob(f"{work}/rate.*")}
base = rates.pop("file model, no accounts")
for name, r in rates.items():
    print(f"{name}: {r / base:.2f}x the unmetered server's closed-loop throughput")
PY
cat "$WORK/reconcile"
