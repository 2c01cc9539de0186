#!/usr/bin/env bash
# A tenant makes its own model from a real dataset with only its API key and a browser, recorded:
# a fresh SQLite store with one plan, tenant and key; `flywheel serve` (release build, 1
# inference thread, --train-workers 1); headless Chromium (tests/browser/new-model.mjs) signs in
# with the key, uploads tweets-sentiment's train.csv, trains with autotune for BUDGET seconds,
# follows the progress bar, reads the report, deploys and classifies through the API. Then, over
# the API, the labelled test.csv is uploaded and classified by a batch job, and its macro-F1 is
# computed from the downloaded results. Screenshots go to SCREENSHOTS (default: none).
#
#   bash bench/selfserve_e2e.sh [BUDGET=120]        # needs chromium, node, npm ci --prefix tests/browser
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-120}
DATA=${DATA:-../shared/datasets/tweets-sentiment}
BIN=target/release/flywheel
[ -x "$BIN" ] || cargo build --release -p flywheel-cli
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
URL="sqlite://$WORK/flywheel.db"
DATABASE_URL=$URL "$BIN" plans create pro --requests-per-minute 100000 --texts-per-month 100000000 >/dev/null
DATABASE_URL=$URL "$BIN" tenants create acme >/dev/null
KEY=$(DATABASE_URL=$URL "$BIN" keys create --tenant acme --plan pro 2>/dev/null)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --database-url "$URL" --addr "127.0.0.1:$PORT" --threads 1 --train-workers 1 \
    >"$WORK/serve.log" 2>&1 &
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.05; done
STARTED=$(date +%s.%N)
(cd tests/browser && BASE_URL="http://127.0.0.1:$PORT" TENANT_KEY=$KEY TENANT=acme \
    CSV="$(cd - >/dev/null && realpath "$DATA/train.csv")" BUDGET=$BUDGET MIN_F1=0.6 \
    INPUTS='["thank you so much, the crew was wonderful", "my flight was cancelled and nobody helps"]' \
    EXPECTED='["positive", "negative"]' SCREENSHOTS=${SCREENSHOTS:-} node new-model.mjs)
BROWSER_S=$(python3 -c "import time; print(f'{time.time() - $STARTED:.0f}')")
python3 - "$PORT" "$KEY" "$DATA/test.csv" "$BROWSER_S" <<'PY'
import csv, http.client, json, sys, time
port, key, test, browser_s = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
auth = {"authorization": f"Bearer {key}"}
def call(method, path, body=None, ctype="application/json"):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=600)
    c.request(method, path, body, {**auth, "content-type": ctype})
    r = c.getresponse()
    data = r.read()
    return r.status, data
jobs = json.loads(call("GET", "/v1/training-jobs")[1])["training_jobs"]
job = jobs[0]
t = time.time()
status, ds = call("POST", "/v1/datasets?name=tweets-test", open(test, "rb").read(), "text/csv")
assert status == 201, ds
ds = json.loads(ds)
upload_s = time.time() - t
t = time.time()
status, b = call("POST", "/v1/batches", json.dumps({"model": job["model"], "dataset": ds["id"]}))
assert status == 202, b
b = json.loads(b)
while b["state"] not in ("succeeded", "failed", "cancelled"):
    time.sleep(0.2)
    b = json.loads(call("GET", f"/v1/batches/{b['id']}")[1])
batch_s = time.time() - t
lines = call("GET", f"/v1/batches/{b['id']}/results")[1].decode().splitlines()
pred = [json.loads(l)["label"] for l in lines]
gold = [r["label"] for r in csv.DictReader(open(test, encoding="utf-8"))]
assert len(pred) == len(gold), (len(pred), len(gold))
labels = sorted(set(gold))
f1s = []
for l in labels:
    tp = sum(p == l and g == l for p, g in zip(pred, gold))
    fp = sum(p == l and g != l for p, g in zip(pred, gold))
    fn = sum(p != l and g == l for p, g in zip(pred, gold))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
acc = sum(p == g for p, g in zip(pred, gold)) / len(gold)
r = job["result"]
print(json.dumps({
    "browser_flow_seconds": int(browser_s),
    "training_seconds": r["training_seconds"],
    "configuration": r["configuration"],
    "train_rows": r["train_rows"], "eval_rows": r["eval_rows"],
    "held_out_macro_f1": round(r["metrics"]["macro_f1"], 4),
    "test_rows": len(gold), "test_upload_seconds": round(upload_s, 2),
    "test_batch_seconds": round(batch_s, 2),
    "test_macro_f1": round(sum(f1s) / len(f1s), 4), "test_accuracy": round(acc, 4),
}, indent=1))
PY
