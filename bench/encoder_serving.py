#!/usr/bin/env python3
"""Single-text latency and memory of `flywheel serve` for model files (an encoder model beside
others), on loopback.

    python3 bench/encoder_serving.py --model enc=/tmp/enc.fw --model linear=/tmp/lin.fw \
        [--data ../shared/datasets/tweets-sentiment/test.csv] [--n 1000] [--threads 2] \
        [--serve-bin target/release/flywheel]

For each model, one `flywheel serve --model NAME=PATH --threads THREADS` process:
  1. 50 warm-up requests, then N single-text POST /v1/classify requests one after another
     (closed loop, one connection per request, texts from DATA in order): p50, p90, p99, max
     latency in ms as the client sees it.
  2. The server's peak resident memory (VmHWM from /proc/PID/status) after the run.
Prints one JSON line per model and a markdown table.
"""

import argparse
import csv
import http.client
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v1/classify", body=body, headers={"content-type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
    return data


def vm_hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def pct(xs, p):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def measure(name, path, texts, args):
    port = free_port()
    server = subprocess.Popen(
        [args.serve_bin, "serve", "--model", f"{name}={path}", "--threads", str(args.threads),
         "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("server not ready")
            time.sleep(0.1)
        bodies = [json.dumps({"model": name, "inputs": [t]}) for t in texts]
        for b in bodies[:50]:
            post(port, b)
        lat = []
        for b in bodies[: args.n]:
            t0 = time.perf_counter()
            post(port, b)
            lat.append((time.perf_counter() - t0) * 1000.0)
        rss = vm_hwm_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "model": name,
        "file": path,
        "requests": len(lat),
        "threads": args.threads,
        "p50_ms": round(pct(lat, 50), 2),
        "p90_ms": round(pct(lat, 90), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "max_ms": round(max(lat), 2),
        "peak_rss_mb": round(rss, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets",
                                                   "tweets-sentiment", "test.csv"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--serve-bin", default=os.path.join(ROOT, "target", "release", "flywheel"))
    args = ap.parse_args()
    with open(args.data, newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    texts = texts[: args.n + 50]
    rows = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        row = measure(name, path, texts, args)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| model | requests | threads | p50 ms | p90 ms | p99 ms | max ms | server peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['requests']} | {r['threads']} | {r['p50_ms']} | {r['p90_ms']} "
              f"| {r['p99_ms']} | {r['max_ms']} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    sys.exit(main())
