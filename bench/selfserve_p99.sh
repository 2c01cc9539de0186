#!/usr/bin/env bash
# Serving latency while a tenant's training job runs on the same machine, side by side in one
# run: one `flywheel serve` on a SQLite store (1 inference thread, --train-workers 1) serves the
# reference model to a metered key at a fixed RATE req/s (`oha`, latency correction, one text
# per request) for SECONDS — first with no job (the baseline), then while a training job
# (tweets-sentiment's train.csv, uploaded through the API; FAMILY, default autotune, with a
# BUDGET) runs on its own thread. Prints a markdown table and writes bench/results/selfserve-p99.json.
#
#   bash bench/selfserve_p99.sh [SECONDS=20] [RATE=1000] [FAMILY=autotune] [BUDGET=120]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
RATE=${2:-1000}
FAMILY=${3:-autotune}
BUDGET=${4:-120}
DATA=${DATA:-../shared/datasets/tweets-sentiment/train.csv}
BIN=target/release/flywheel
[ -x "$BIN" ] || cargo build --release -p flywheel-cli
command -v oha >/dev/null || { echo "needs oha on the PATH (cargo install oha --locked)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
MODEL=$WORK/tweets.fw
"$BIN" train "$DATA" -o "$MODEL" --threads 2 --seed 42 >/dev/null 2>&1
URL="sqlite://$WORK/flywheel.db"
DATABASE_URL=$URL "$BIN" models push "$MODEL" --name m >/dev/null 2>&1
DATABASE_URL=$URL "$BIN" models promote m 1 >/dev/null
DATABASE_URL=$URL "$BIN" models public m >/dev/null
DATABASE_URL=$URL "$BIN" plans create p --requests-per-minute 100000000 --texts-per-month 1000000000 >/dev/null
DATABASE_URL=$URL "$BIN" tenants create t >/dev/null
KEY=$(DATABASE_URL=$URL "$BIN" keys create --tenant t --plan p 2>/dev/null)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --database-url "$URL" --addr "127.0.0.1:$PORT" --threads 1 --train-workers 1 \
    >"$WORK/serve.log" 2>&1 &
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.05; done
BODY='{"model":"m","inputs":["what a great flight, thank you so much"]}'

load() { # NAME -> one JSON line
    oha -z "${SECS}s" -c 16 --worker-threads 1 --no-tui --output-format json -q "$RATE" \
        --latency-correction -m POST -T application/json -H "authorization: Bearer $KEY" \
        -d "$BODY" "http://127.0.0.1:$PORT/v1/classify" >"$WORK/$1.json"
}

load baseline
DATASET=$(curl -sf -X POST -H "authorization: Bearer $KEY" -H 'content-type: text/csv' \
    --data-binary @"$DATA" "http://127.0.0.1:$PORT/v1/datasets?name=tweets" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
JOB=$(curl -sf -X POST -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
    -d "{\"dataset\": $DATASET, \"model\": \"$FAMILY\", \"budget\": $BUDGET, \"name\": \"t-tweets\"}" \
    "http://127.0.0.1:$PORT/v1/training-jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
job() { curl -sf -H "authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/training-jobs/$JOB"; }
until job | grep -q '"state":"running"'; do sleep 0.2; done
sleep 2
job >"$WORK/job-before.json"
load training
job >"$WORK/job-after.json"
# The job was running for the whole load (not done before it ended).
until job | grep -Eq '"state":"(succeeded|failed|cancelled)"'; do sleep 1; done
job >"$WORK/job-final.json"

python3 - "$WORK" "$SECS" "$RATE" "$FAMILY" "$BUDGET" <<'PY'
import json, sys, os, datetime
work, secs, rate, family, budget = sys.argv[1:6]
rows = {}
for name in ("baseline", "training"):
    d = json.load(open(f"{work}/{name}.json"))
    s, p = d["summary"], d["latencyPercentiles"]
    rows[name] = {
        "req_per_s": s["requestsPerSec"],
        "p50_ms": p["p50"] * 1e3,
        "p99_ms": p["p99"] * 1e3,
        "p999_ms": p.get("p99.9", p["p99"]) * 1e3,
        "statuses": d.get("statusCodeDistribution", {}),
    }
before = json.load(open(f"{work}/job-before.json"))
after = json.load(open(f"{work}/job-after.json"))
final = json.load(open(f"{work}/job-final.json"))
assert after["state"] == "running" or after["state"] == "succeeded", after["state"]
print(f"| load | req/s | p50 ms | p99 ms | p99.9 ms | statuses |")
print(f"|---|---:|---:|---:|---:|---|")
for name, r in rows.items():
    label = "no job" if name == "baseline" else f"while a {family} job trains (budget {budget} s)"
    print(f"| {label} | {r['req_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['statuses']} |")
print(f"job: {final['state']}, during the load {before['progress'].get('elapsed_seconds', 0):.0f}"
      f"-{after['progress'].get('elapsed_seconds', 0):.0f} s of it ran; result "
      f"{json.dumps({k: final['result'].get(k) for k in ('configuration', 'training_seconds')}) if final.get('result') else final.get('error')}")
out = {
    "date": datetime.date.today().isoformat(),
    "command": f"bash bench/selfserve_p99.sh {secs} {rate} {family} {budget}",
    "rate": int(rate),
    "seconds": int(secs),
    "loads": rows,
    "job": {"state": final["state"], "result": final.get("result"), "error": final.get("error"),
            "running_during_load": after["state"] == "running"},
}
os.makedirs("bench/results", exist_ok=True)
json.dump(out, open(os.environ.get("OUT", "bench/results/selfserve-p99.json"), "w"), indent=1)
PY
