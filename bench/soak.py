#!/usr/bin/env python3
"""Soak test: `flywheel serve` on a SQLite store for MINUTES at a fixed request rate, with a mix
of valid and invalid requests (classify, classify+explain, feedback, review queue, bad JSON,
unknown model, too many inputs, unknown label, bad key). Records status counts, latency
percentiles and the server's RSS over time; passes when there is no 5xx and the RSS after the
first minute grows by less than 10 %.

  python3 bench/soak.py [--minutes 10] [--rate 200] [--json bench/results/soak.json]

Needs a release build and ../shared/datasets/tweets-sentiment (or --data DIR).
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
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "flywheel"))
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "tweets-sentiment"))
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--rate", type=float, default=200, help="requests per second, all clients")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="server inference threads")
    p.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "soak.json"))
    p.add_argument("--database-url", help="an empty database (default: a new SQLite file)")
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="flywheel-soak-")
    db = a.database_url or "sqlite://" + os.path.join(work, "soak.db")
    env = dict(os.environ, DATABASE_URL=db)

    def fw(*argv):
        out = subprocess.run([a.bin, *argv], env=env, cwd=work, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"flywheel {argv} failed: {out.stderr}")
        return out.stdout

    with open(os.path.join(a.data, "train.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    labels = sorted({r["label"] for r in rows})
    fw("train", os.path.join(a.data, "train.csv"), "-o", "m.fw", "--model", "fasttext",
       "--epochs", "5", "--threads", "2")
    fw("models", "push", "m.fw", "--name", "m")
    fw("models", "promote", "m", "1")
    fw("models", "public", "m")
    fw("plans", "create", "soak", "--requests-per-minute", "10000000", "--texts-per-month", "1000000000")
    fw("tenants", "create", "soak")
    key = fw("keys", "create", "--tenant", "soak", "--plan", "soak").strip()
    port = free_port()
    server = subprocess.Popen(
        [a.bin, "serve", "--database-url", db, "--addr", f"127.0.0.1:{port}",
         "--threads", str(a.threads)],
        env=env, cwd=work, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(work, "serve.log"), "w"))
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)

    rng = random.Random(42)

    def request(kind, r):
        t = [r.choice(texts) for _ in range(r.randint(1, 8))]
        auth = key
        if kind == "classify":
            return "POST", "/v1/classify", {"model": "m", "inputs": t}, auth
        if kind == "explain":
            return "POST", "/v1/classify", {"model": "m", "inputs": t[:2], "explain": True}, auth
        if kind == "feedback":
            return "POST", "/v1/feedback", {"model": "m", "text": t[0], "label": r.choice(labels)}, auth
        if kind == "queue":
            return "GET", "/v1/review-queue?model=m&limit=20", None, auth
        if kind == "bad_json":
            return "POST", "/v1/classify", b'{"model": "m", "inputs": [', auth
        if kind == "unknown_model":
            return "POST", "/v1/classify", {"model": "nope", "inputs": t}, auth
        if kind == "too_many":
            return "POST", "/v1/classify", {"model": "m", "inputs": ["x"] * 300}, auth
        if kind == "bad_label":
            return "POST", "/v1/feedback", {"model": "m", "text": t[0], "label": "no-such-label"}, auth
        return "POST", "/v1/classify", {"model": "m", "inputs": t}, "fw_not_a_key"

    mix = [("classify", 50), ("explain", 5), ("feedback", 10), ("queue", 5), ("bad_json", 6),
           ("unknown_model", 6), ("too_many", 6), ("bad_label", 6), ("bad_key", 6)]
    kinds = [k for k, w in mix for _ in range(w)]
    results = []
    lock = threading.Lock()
    deadline = time.time() + a.minutes * 60
    interval = a.clients / a.rate

    def client(i):
        r = random.Random(1000 + i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        next_at = time.time() + r.random() * interval
        local = []
        while True:
            now = time.time()
            if now >= deadline:
                break
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
            kind = r.choice(kinds)
            method, path, body, auth = request(kind, r)
            data = body if isinstance(body, bytes) else (None if body is None else json.dumps(body).encode())
            headers = {"authorization": f"Bearer {auth}", "content-type": "application/json"}
            started = time.perf_counter()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            local.append((kind, status, time.perf_counter() - started))
        with lock:
            results.extend(local)

    rss = []
    started = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss.append((round(time.time() - started, 1), rss_kib(server.pid),
                    rss_kib(server.pid, "RssAnon"), rss_kib(server.pid, "RssFile"),
                    rss_kib(server.pid, "RssShmem")))
        time.sleep(5)
    for t in threads:
        t.join()
    server.terminate()
    server.wait()

    lat = sorted(x[2] for x in results)
    pct = lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 2)
    by_status = {}
    for kind, status, _ in results:
        by_status.setdefault(kind, {}).setdefault(str(status), 0)
        by_status[kind][str(status)] += 1
    five_xx = sum(1 for _, s, _ in results if s >= 500 or s == 0)
    after_warmup = [r[1] for r in rss if r[0] >= 60] or [r[1] for r in rss]
    baseline = after_warmup[0]
    growth = (max(after_warmup) - baseline) / baseline
    summary = {
        "minutes": a.minutes, "rate_target": a.rate,
        "requests": len(results), "rate_achieved": round(len(results) / (a.minutes * 60), 1),
        "status_by_kind": by_status, "five_xx_or_failed": five_xx,
        "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": round(1000 * lat[-1], 2)},
        "rss_kib": {"at_60s": baseline, "max_after_60s": max(after_warmup), "end": rss[-1][1],
                    "end_anon_file_shmem": rss[-1][2:],
                    "growth_after_warmup_pct": round(100 * growth, 2)},
        "rss_samples": rss,
        "rss_columns": ["seconds", "VmRSS", "RssAnon", "RssFile", "RssShmem"],
        "passed": five_xx == 0 and growth < 0.10,
    }
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "rss_samples"}, indent=1))
    if not summary["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
