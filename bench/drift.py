"""Drift alarms on the real server: a model served traffic from its own test set (shuffled, in
distribution) must stay quiet; served other traffic it must alarm within 500 requests.

    python3 bench/drift.py --flywheel target/release/flywheel --data ../shared/datasets \
        --out bench/results/drift.json

Trains the linear models it needs (bbc-news, tweets-sentiment), then for each scenario starts
`flywheel serve` on a fresh port, sends one text per request, reads GET /v1/models/NAME/drift
after every 100 requests, and records each check (observed texts, every test's value and alarm
line) and the request count of the first alarm.
"""

import argparse
import csv
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

csv.field_size_limit(sys.maxsize)


def read(path, label=None):
    with open(path, newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f) if label is None or r["label"] == label]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def serve(flywheel, name, model, extra):
    port = free_port()
    proc = subprocess.Popen(
        [flywheel, "serve", "--model", f"{name}={model}", "--addr", f"127.0.0.1:{port}"] + extra,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the server did not start")


def drift(conn, name):
    conn.request("GET", f"/v1/models/{name}/drift")
    return json.loads(conn.getresponse().read())


def scenario(flywheel, name, model, texts, requests, extra):
    proc, port = serve(flywheel, name, model, extra)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        checks, first_alarm = [], None
        for i in range(requests):
            body = json.dumps({"model": name, "inputs": [texts[i % len(texts)]]})
            conn.request("POST", "/v1/classify", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            if (i + 1) % 100 == 0:
                # The monitor runs beside the requests: wait until it has caught up.
                d, before = drift(conn, name), -1
                while d["observed"] != before:
                    before = d["observed"]
                    time.sleep(0.02)
                    d = drift(conn, name)
                last = d.get("last")
                if last and (not checks or checks[-1]["observed"] != last["observed"]):
                    checks.append({"requests": i + 1, "observed": last["observed"],
                                   "alarm": last["report"]["alarm"],
                                   "tests": {t["name"]: [round(t["value"], 4), round(t["threshold"], 4)]
                                             for t in last["report"]["tests"]}})
                    if last["report"]["alarm"] and first_alarm is None:
                        first_alarm = i + 1
        return {"requests": requests, "first_alarm": first_alarm, "server_args": extra, "checks": checks}
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flywheel", default="target/release/flywheel")
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="drift-")
    models = {}
    for name in ["bbc-news", "tweets-sentiment"]:
        models[name] = os.path.join(tmp, f"{name}.fw")
        subprocess.run([args.flywheel, "train", os.path.join(args.data, name, "train.csv"), "--model",
                        "linear", "-o", models[name]], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    rng = random.Random(7)
    bbc_test = read(os.path.join(args.data, "bbc-news", "test.csv"))
    rng.shuffle(bbc_test)
    tweets_test = read(os.path.join(args.data, "tweets-sentiment", "test.csv"))
    rng.shuffle(tweets_test)
    sport = read(os.path.join(args.data, "bbc-news", "test.csv"), "sports")
    spam = read(os.path.join(args.data, "spam", "test.csv"))
    rng.shuffle(spam)
    # Undrifted traffic is checked with every text observed (no sampling: the most checks, the
    # most chances of a false alarm); drifted traffic with the default settings.
    everything = ["--drift-max-rate", "1000000000"]
    runs = [
        ("bbc-news model, its test set shuffled", "bbc-news", bbc_test, 5000, everything),
        ("bbc-news model, only sport texts", "bbc-news", sport, 500, []),
        ("tweets-sentiment model, its test set shuffled", "tweets-sentiment", tweets_test, 5000, everything),
        ("tweets-sentiment model, spam e-mails", "tweets-sentiment", spam, 500, []),
    ]
    results = []
    for title, name, texts, n, extra in runs:
        r = scenario(args.flywheel, name, models[name], texts, n, extra)
        r["scenario"] = title
        results.append(r)
        worst = {}
        for c in r["checks"]:
            for t, (v, line) in c["tests"].items():
                worst[t] = max(worst.get(t, (float("-inf"), line)), (v, line))
        print(f"{title}: {n} requests, {len(r['checks'])} checks, first alarm at {r['first_alarm']}; largest value/line per test: "
              + ", ".join(f"{t} {v:.3f}/{line:.3f}" for t, (v, line) in worst.items()), flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
