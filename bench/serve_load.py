#!/usr/bin/env python3
"""Load test of `flywheel serve` beside a minimal FastAPI/uvicorn server wrapping the Keras
reference model, on loopback only, with bounded durations.

    python3 bench/serve_load.py [--data ../shared/datasets/tweets-sentiment] [--duration 30]
        [--rate 1000] [--threads 2] [--skip-python] [--keras-epochs 1]
        [--load-tool auto|oha|python] [--oha PATH] [--serve-bin PATH]

Steps:
  1. target/release/flywheel (built if missing) trains the reference model on DATA/train.csv
     (`--threads 2 --seed 42`) unless WORK/flywheel.fw exists.
  2. `flywheel serve` on 127.0.0.1, `--threads THREADS`.
  3. Fixed rate: single-text requests (2,000 test texts in turn) at RATE req/s for DURATION s,
     latency measured from each request's *scheduled* send time, so a stalled server cannot
     hide queueing (open loop, no coordinated omission). With `oha` (`cargo install oha
     --locked`; Debian packages neither oha nor wrk2) the run is
         oha -z DURATIONs -q RATE -c 64 -w --latency-correction --worker-threads 1 --no-tui
             --output-format json -m POST -T application/json -Z BODIES.jsonl URL
     and otherwise a small asyncio client in this script does the same (it costs far more CPU,
     which on a 2-core machine it takes from the server: its tail latencies read higher).
     The output says which one ran. p50/p99/max latency; errors = non-200 answers, transport
     errors and scheduled requests never answered.
  4. Throughput (run before 3): `wrk` (closed loop, 1 thread, 8 connections, 10 s) with 64 texts per request
     and with 1 text per request; texts/s.
  5. Server peak RSS (VmHWM from /proc/PID/status).
  6. The same for the Python server (WORK/keras_server.py under
     /opt/kerasenv/bin/python, one uvicorn worker); its Keras model is trained with the
     reference recipe (bench/keras_reference.py) for --keras-epochs epochs: serving speed does
     not depend on how well the weights fit.
Prints a markdown table.
"""

import argparse
import asyncio
import csv
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"

KERAS_SERVER = r'''
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
for k in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ[k] = str(THREADS)
import csv, pickle
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)
import keras
from keras.src.legacy.preprocessing.text import Tokenizer
pad_sequences = keras.utils.pad_sequences
from fastapi import FastAPI
from pydantic import BaseModel
import uvicorn

WORK = os.environ["BENCH_WORK"]
MODEL = os.path.join(WORK, "keras.keras")
TOK = os.path.join(WORK, "keras-tokenizer.pkl")

def train(data, epochs, seed):
    texts, labels = [], []
    with open(os.path.join(data, "train.csv"), newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            texts.append(row["text"]); labels.append(row["label"])
    names = sorted(set(labels))
    keras.utils.set_random_seed(seed)
    tok = Tokenizer(num_words=10000)
    tok.fit_on_texts(texts)
    x = pad_sequences(tok.texts_to_sequences(texts), maxlen=100)
    ids = {l: i for i, l in enumerate(names)}
    y = np.array([ids[l] for l in labels], dtype=np.int32)
    k = len(names)
    model = keras.Sequential([
        keras.Input(shape=(100,)),
        keras.layers.Embedding(10000, 16),
        keras.layers.LSTM(16, dropout=0.2, recurrent_dropout=0.2),
        keras.layers.Dense(1, activation="sigmoid") if k == 2 else keras.layers.Dense(k, activation="softmax"),
    ])
    model.compile(optimizer="adam",
                  loss="binary_crossentropy" if k == 2 else "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.2, verbose=2)
    model.save(MODEL)
    with open(TOK, "wb") as fh:
        pickle.dump((tok, names), fh)

if sys.argv[1] == "train":
    train(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    sys.exit(0)

model = keras.models.load_model(MODEL)
with open(TOK, "rb") as fh:
    tok, names = pickle.load(fh)
app = FastAPI()

class Req(BaseModel):
    model: str
    inputs: list[str]

@app.post("/v1/classify")
def classify(req: Req):
    x = pad_sequences(tok.texts_to_sequences(req.inputs), maxlen=100)
    p = model.predict_on_batch(x)
    out = []
    for row in p:
        if len(names) == 2:
            q = float(row[0]); probs = [1.0 - q, q]
        else:
            probs = [float(v) for v in row]
        best = int(np.argmax(probs))
        out.append({"label": names[best], "score": probs[best],
                    "scores": dict(zip(names, probs))})
    return {"model": req.model, "version": "keras", "predictions": out}

@app.get("/readyz")
def ready():
    return {"status": "ready"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''

WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY"), "r"):read("*a")
"""


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(port, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit("server did not become ready")


def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def read_texts(path, n):
    with open(path, newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    random.Random(7).shuffle(texts)
    return texts[:n]


async def fixed_rate(port, bodies, rate, duration, connections=64):
    """Sends bodies[i % n] at t0 + i/rate over keep-alive connections; returns latencies (s)
    measured from the scheduled time (answered requests only), the error count (non-200,
    connection errors, unanswered 30 s after the last send) and the number scheduled."""
    total = int(rate * duration)
    queue = asyncio.Queue()
    lat, errors = [], [0]
    t0 = time.perf_counter() + 0.2

    async def conn_worker():
        reader = writer = None
        while True:
            i = await queue.get()
            if i is None:
                break
            scheduled = t0 + i / rate
            body = bodies[i % len(bodies)]
            req = (f"POST /v1/classify HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(m.group(1)) if m else 0)
                status = int(head[9:12])
                if status != 200:
                    errors[0] += 1
                lat.append(time.perf_counter() - scheduled)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors[0] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None

    workers = [asyncio.create_task(conn_worker()) for _ in range(connections)]
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(i)
    for _ in workers:
        queue.put_nowait(None)
    # A server that cannot keep up gets 30 s to catch up; what is unanswered then is an error.
    done, pending = await asyncio.wait(workers, timeout=30)
    for t in pending:
        t.cancel()
    unanswered = total - len(lat) - errors[0]
    return lat, errors[0] + max(0, unanswered), total


def fixed_rate_oha(oha, port, bodies, rate, duration, work, connections=64):
    """The fixed-rate run with oha; returns (p50 s, p99 s, max s, errors, scheduled, command)."""
    lines = os.path.join(work, "bodies-1.jsonl")
    with open(lines, "wb") as fh:
        for b in bodies:
            fh.write(b + b"\n")  # json.dumps escapes newlines: one body per line
    cmd = [oha, "-z", f"{duration:g}s", "-q", f"{rate:g}", "-c", str(connections), "-w",
           "--latency-correction", "--worker-threads", "1", "--no-tui",
           "--output-format", "json", "-m", "POST", "-T", "application/json", "-Z", lines,
           f"http://{HOST}:{port}/v1/classify"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if out.returncode != 0:
        sys.exit(f"oha failed ({out.returncode}): {out.stderr.strip()}")
    d = json.loads(out.stdout)
    scheduled = int(rate * duration)
    ok = int(d.get("statusCodeDistribution", {}).get("200", 0))
    answered = sum(int(v) for v in d.get("statusCodeDistribution", {}).values())
    failed = sum(int(v) for v in d.get("errorDistribution", {}).values())
    # Non-200, transport errors (including requests aborted at the end), and what oha could
    # not send at the rate because every connection was busy. On time, oha sends
    # rate x duration - 1 requests (its first one is one interval in).
    unsent = max(0, scheduled - 1 - answered - failed)
    errors = (answered - ok) + failed + unsent
    p = d.get("latencyPercentiles", {})
    nan = float("nan")
    return (p.get("p50") or nan, p.get("p99") or nan,
            d.get("summary", {}).get("slowest") or nan, errors, scheduled,
            " ".join(cmd))


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100.0 * len(s)))]


def wrk(port, body, work, seconds=10, connections=8):
    path = os.path.join(work, f"body-{len(body)}.json")
    with open(path, "wb") as fh:
        fh.write(body)
    lua = os.path.join(work, "post.lua")
    with open(lua, "w") as fh:
        fh.write(WRK_LUA)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua,
         f"http://{HOST}:{port}/v1/classify"],
        env={**os.environ, "BENCH_BODY": path}, capture_output=True, text=True,
        timeout=seconds + 30)
    text = out.stdout
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    rps = float(m.group(1)) if m else 0.0
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errs = int(bad.group(1)) if bad else 0
    sock = re.search(r"Socket errors: (.*)", text)
    return rps, errs, (sock.group(1) if sock else "")


def measure(name, port, pid, texts, args, work):
    single = [json.dumps({"model": "tweets", "inputs": [t]}).encode() for t in texts]
    batch = json.dumps({"model": "tweets", "inputs": texts[:64]}).encode()
    # Closed-loop throughput first: an overloaded server's backlog from the fixed-rate run
    # would otherwise spill into it.
    rps64, err64, sock64 = wrk(port, batch, work, seconds=args.wrk_seconds)
    rps1, err1, sock1 = wrk(port, single[0], work, seconds=args.wrk_seconds)
    if args.load_tool == "oha":
        p50, p99, worst, errors, total, cmd = fixed_rate_oha(
            args.oha, port, single, args.rate, args.duration, work)
    else:
        lat, errors, total = asyncio.run(fixed_rate(port, single, args.rate, args.duration))
        p50, p99 = pct(lat, 50), pct(lat, 99)
        worst = max(lat) if lat else float("nan")
        cmd = f"asyncio client in bench/serve_load.py (64 connections, rate {args.rate:g})"
    return {
        "server": name,
        "load_tool": args.load_tool,
        "fixed_command": cmd,
        "p50_ms": p50 * 1e3,
        "p99_ms": p99 * 1e3,
        "max_ms": worst * 1e3,
        "fixed_errors": errors,
        "fixed_sent": total,
        "texts_per_s_64": rps64 * 64,
        "errors_64": err64,
        "sock_64": sock64,
        "req_per_s_1": rps1,
        "errors_1": err1,
        "sock_1": sock1,
        "rss_mib": vm_hwm_mib(pid),
    }


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets",
                                                   "tweets-sentiment"))
    ap.add_argument("--duration", type=float, default=30.0, help="seconds at the fixed rate")
    ap.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keras-epochs", type=int, default=1)
    ap.add_argument("--skip-python", action="store_true")
    ap.add_argument("--load-tool", choices=["auto", "oha", "python"], default="auto",
                    help="fixed-rate client: oha when found (auto), or the asyncio client")
    ap.add_argument("--oha", default=shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha"),
                    help="the oha binary [default: oha on PATH, else ~/.cargo/bin/oha]")
    ap.add_argument("--serve-bin", default=os.path.join(ROOT, "target", "release", "flywheel"),
                    help="the flywheel binary to serve with [default: target/release/flywheel, "
                         "built if missing]")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra argument for flywheel serve (repeat), e.g. --serve-arg=--max-wait-us=0")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "flywheel-serve-bench"))
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    have_oha = bool(args.oha) and os.access(args.oha, os.X_OK)
    if args.load_tool == "oha" and not have_oha:
        sys.exit(f"oha is missing ({args.oha}): cargo install oha --locked")
    if args.load_tool == "auto":
        args.load_tool = "oha" if have_oha else "python"
        if not have_oha:
            print("oha not found (cargo install oha --locked): the fixed-rate run uses the "
                  "asyncio client", file=sys.stderr)
    os.makedirs(args.work, exist_ok=True)
    flywheel = args.serve_bin
    if not os.path.exists(flywheel):
        subprocess.run(["cargo", "build", "--release", "-p", "flywheel-cli"], cwd=ROOT, check=True)
    model = os.path.join(args.work, "flywheel.fw")
    if not os.path.exists(model):
        subprocess.run([flywheel, "train", os.path.join(args.data, "train.csv"), "-o", model,
                        "--threads", "2", "--seed", "42"], check=True)
    texts = read_texts(os.path.join(args.data, "test.csv"), 2000)
    rows = []

    port = free_port()
    proc = subprocess.Popen([flywheel, "serve", "--model", f"tweets={model}",
                             "--addr", f"{HOST}:{port}", "--threads", str(args.threads),
                             *args.serve_arg])
    try:
        wait_ready(port, proc)
        label = " ".join(["flywheel serve", *args.serve_arg])
        rows.append(measure(label, port, proc.pid, texts, args, args.work))
    finally:
        stop(proc)

    if not args.skip_python:
        py = "/opt/kerasenv/bin/python"
        server = os.path.join(args.work, "keras_server.py")
        with open(server, "w") as fh:
            fh.write(KERAS_SERVER)
        env = {**os.environ, "BENCH_WORK": args.work, "BENCH_THREADS": str(args.threads)}
        if not os.path.exists(os.path.join(args.work, "keras.keras")):
            subprocess.run([py, server, "train", args.data, str(args.keras_epochs), "42"],
                           env=env, check=True)
        port = free_port()
        proc = subprocess.Popen([py, server, "serve", str(port)], env=env)
        try:
            wait_ready(port, proc)
            rows.append(measure("FastAPI + Keras", port, proc.pid, texts, args, args.work))
        finally:
            stop(proc)

    tool = ("oha (open loop, --latency-correction)" if args.load_tool == "oha"
            else "the asyncio open-loop client of this script")
    print(f"\nLoopback, {args.threads} inference threads; fixed rate {args.rate:.0f} req/s for "
          f"{args.duration:.0f} s (1 text/request, {tool}, latency from the scheduled send "
          f"time); throughput: wrk -t1 -c8 {args.wrk_seconds} s.")
    print(f"Fixed-rate load tool: {args.load_tool}: {rows[0]['fixed_command']}\n")
    print("| server | p50 ms @rate | p99 ms @rate | max ms | errors @rate | texts/s (64/request) "
          "| req/s (1 text, closed loop) | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | "
              f"{r['fixed_errors']}/{r['fixed_sent']} | {r['texts_per_s_64']:.0f} | "
              f"{r['req_per_s_1']:.0f} | {r['rss_mib']:.1f} |")
    if len(rows) == 2 and rows[1]["texts_per_s_64"] > 0:
        print(f"\nflywheel / Python throughput (64 texts/request): "
              f"{rows[0]['texts_per_s_64'] / rows[1]['texts_per_s_64']:.1f}x")
    for r in rows:
        if r["errors_64"] or r["errors_1"] or r["sock_64"] or r["sock_1"]:
            print(f"{r['server']}: wrk non-2xx {r['errors_64']}/{r['errors_1']}; "
                  f"socket errors: {r['sock_64']} / {r['sock_1']}")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
