#!/usr/bin/env bash
# A dashboard to look at: builds a store from a labelled dataset (two versions of a model, a
# retrain decision, two tenants with keys, logged traffic) and serves it. With --screenshots DIR
# it also runs the browser walk-through (tests/browser/dashboard.mjs), which saves a picture
# of every page to DIR and exits; docs/images/dashboard-*.png were made this way.
#
#   tools/dashboard-demo.sh [--data DIR] [--port 8080] [--screenshots DIR]
#
# DIR holds train.csv (header text,label), e.g. ../shared/datasets/tweets-sentiment or what
# `flywheel datasets fetch tweets-sentiment` wrote. Needs a release build (cargo build --release)
# and, for screenshots, Node.js, Debian's chromium and `npm ci --prefix tests/browser`.
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/datasets/tweets-sentiment
port=8080
shots=
while [ $# -gt 0 ]; do
    case "$1" in
        --data) data=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --screenshots) shots=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
fw=${FLYWHEEL_BIN:-$PWD/target/release/flywheel}
[ -x "$fw" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
export DATABASE_URL="sqlite://$work/demo.db"
admin=demo-admin-token-0123456789
python3 - "$data/train.csv" "$work" <<'EOF'
import csv, random, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")))
random.Random(7).shuffle(rows)
def write(name, part):
    with open(f"{sys.argv[2]}/{name}", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([r["text"], r["label"]] for r in part)
write("base.csv", rows[:6000])
write("holdout.csv", rows[6000:7000])
write("traffic.csv", rows[7000:7400])
EOF
cd "$work"
common=(--model fasttext --dim 16 --validation-split 0.2 --threads 2)
"$fw" train base.csv -o v1.fw "${common[@]}" --epochs 5 --seed 1 >/dev/null
"$fw" train base.csv -o v2.fw "${common[@]}" --epochs 25 --lr 0.5 --word-ngrams 2 --seed 2 >/dev/null
"$fw" models push v1.fw --name sentiment --data base.csv --holdout holdout.csv >/dev/null
"$fw" models push v2.fw --name sentiment --data base.csv >/dev/null
"$fw" models promote sentiment 1 >/dev/null
"$fw" models public sentiment >/dev/null
"$fw" plans create starter --requests-per-minute 600 --texts-per-month 100000 >/dev/null
"$fw" plans create pro --requests-per-minute 6000 --texts-per-month 5000000 >/dev/null
"$fw" tenants create acme >/dev/null
"$fw" tenants create globex >/dev/null
acme=$("$fw" keys create --tenant acme --plan starter 2>/dev/null)
globex=$("$fw" keys create --tenant globex --plan pro 2>/dev/null)
"$fw" serve --database-url "$DATABASE_URL" --admin-token "$admin" --addr "127.0.0.1:$port" \
    --threads 2 --registry-poll-ms 200 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
python3 - "$port" "$acme" "$globex" <<'EOF'
import csv, json, sys, urllib.request
port, keys = sys.argv[1], sys.argv[2:]
rows = list(csv.DictReader(open("traffic.csv", newline="", encoding="utf-8")))
for i in range(0, len(rows), 8):
    body = json.dumps({"model": "sentiment", "inputs": [r["text"] for r in rows[i:i + 8]],
                       "log": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/classify", data=body, headers={
        "authorization": f"Bearer {keys[(i // 8) % 2]}", "content-type": "application/json"})
    urllib.request.urlopen(req).read()
# Label a quarter of the logged predictions with their true label, as reviewers would.
for i, r in enumerate(rows[:100]):
    body = json.dumps({"model": "sentiment", "text": r["text"], "label": r["label"]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/feedback", data=body, headers={
        "authorization": f"Bearer {keys[0]}", "content-type": "application/json"})
    urllib.request.urlopen(req).read()
EOF
"$fw" retrain sentiment --threads 2 >/dev/null 2>&1 || true
echo "dashboard: http://127.0.0.1:$port/ (admin token: $admin; acme's key: $acme)"
if [ -n "$shots" ]; then
    case "$shots" in /*) ;; *) shots="$OLDPWD/$shots" ;; esac
    BASE_URL="http://127.0.0.1:$port" ADMIN_TOKEN="$admin" TENANT_KEY="$acme" TENANT=acme \
        OTHER_TENANT=globex PLAN=starter MODEL=sentiment SCREENSHOTS="$shots" \
        node "$OLDPWD/tests/browser/dashboard.mjs"
else
    wait "$server"
fi
