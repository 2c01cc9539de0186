#!/usr/bin/env python3
"""Sentence-encoder throughput on CPU: sentence-transformers beside flywheel, same texts, same threads.

    HF_HUB_OFFLINE=1 VENV/bin/python bench/encoder_throughput.py \\
        --model DIR [--data CSV] [--n 2000] [--threads 1,2] \\
        [--flywheel target/release/flywheel --encoder DIR] [--out FILE]

Texts: the first --n rows of the `text` column of --data (default ../shared/datasets/tweets-sentiment/test.csv,
relative to the repository root).

For every thread count T, each side runs in its own fresh process, so thread settings and peak memory do not
leak between runs:

* sentence-transformers (needs torch + sentence-transformers, a venv with both installed): the model
  directory --model (default: --encoder, else $FLYWHEEL_ENCODER_DIR) loaded with
  `SentenceTransformer(dir, device="cpu")`, OMP/MKL/OPENBLAS_NUM_THREADS=T set before torch is imported and
  `torch.set_num_threads(T)`. One batch of 32 is encoded as warm-up, then the timed call is
  `model.encode(texts, batch_size=32, normalize_embeddings=True)` (tokenising included; model loading
  excluded). Peak RSS is the process' own `resource.getrusage(RUSAGE_SELF).ru_maxrss` (model load included).
* flywheel, only with --flywheel BIN and --encoder DIR:
  `BIN encoders bench --encoder DIR --data CSV --n N --threads T`. Contract: it prints one JSON object on a line
  of stdout with at least `texts_per_s` and `peak_rss_mb` (other fields are kept as they are). The harness also
  records the child's peak RSS as the OS reports it (`wait4`), as `os_peak_rss_mb`. If the binary is missing,
  or has no `encoders bench` yet, the line says so under `flywheel.error` and the benchmark goes on.

Output: one JSON object per thread count on stdout (and appended to --out FILE when given):

    {"threads": T, "n": N, "batch_size": 32, "data": CSV,
     "sentence_transformers": {"texts_per_s", "seconds", "peak_rss_mb", "load_s", "versions", ...} | {"error"},
     "flywheel": {"texts_per_s", "peak_rss_mb", "os_peak_rss_mb", ...} | {"error"},   (only with --flywheel)
     "speedup": flywheel texts_per_s / sentence-transformers texts_per_s}              (when both ran)

`--skip-st` runs only the flywheel side. Internal: `--_worker` is the child-process mode.
"""

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO / ".." / "shared" / "datasets" / "tweets-sentiment" / "test.csv").resolve()
BATCH_SIZE = 32
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMEXPR_NUM_THREADS")


def read_texts(path, n):
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "text" not in reader.fieldnames:
            sys.exit(f"{path}: no `text` column (header: {reader.fieldnames})")
        texts = []
        for row in reader:
            if len(texts) >= n:
                break
            texts.append(row["text"] or "")
    return texts


def maxrss_mb(ru_maxrss_kb):
    # Linux reports kilobytes (macOS bytes; this bench targets Linux).
    return round(ru_maxrss_kb / 1024.0, 1)


def thread_env(threads):
    env = dict(os.environ)
    for k in THREAD_ENV:
        env[k] = str(threads)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


# ---------------------------------------------------------------- sentence-transformers (child process)

def worker(args):
    """Runs in a fresh process whose thread env vars were set by the parent before torch is imported."""
    threads = int(args.threads)
    for k in THREAD_ENV:
        os.environ[k] = str(threads)
    texts = read_texts(args.data, args.n)

    import torch
    torch.set_num_threads(threads)
    import sentence_transformers
    import transformers
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    model = SentenceTransformer(args.model, device="cpu")
    model.eval()
    load_s = time.perf_counter() - t0
    rss_after_load = maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

    with torch.inference_mode():
        model.encode(texts[:BATCH_SIZE], batch_size=BATCH_SIZE, normalize_embeddings=True,
                     show_progress_bar=False)  # warm-up
        t0 = time.perf_counter()
        emb = model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False)
        seconds = time.perf_counter() - t0

    out = {
        "texts_per_s": round(len(texts) / seconds, 2),
        "seconds": round(seconds, 3),
        "texts": len(texts),
        "dim": int(emb.shape[1]),
        "peak_rss_mb": maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "peak_rss_after_load_mb": rss_after_load,
        "load_s": round(load_s, 3),
        "torch_threads": torch.get_num_threads(),
        "max_seq_length": int(model.max_seq_length),
        "versions": {"torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                     "transformers": transformers.__version__},
    }
    print("RESULT " + json.dumps(out), flush=True)


def run_st(args, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", "--model", args.model, "--data", args.data,
           "--n", str(args.n), "--threads", str(threads)]
    p = subprocess.run(cmd, env=thread_env(threads), capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
    return {"error": f"sentence-transformers worker exited {p.returncode}: " + " | ".join(tail)}


# ---------------------------------------------------------------- flywheel (child process)

def run_flywheel(args, threads):
    binary = args.flywheel
    resolved = shutil.which(binary) if os.sep not in binary else (binary if os.path.isfile(binary) else None)
    if not resolved or not os.access(resolved, os.X_OK):
        return {"error": f"flywheel binary not found or not executable: {binary} "
                         "(build it with `cargo build --release -p flywheel-cli`)"}
    cmd = [resolved, "encoders", "bench", "--encoder", args.encoder, "--data", args.data, "--n", str(args.n),
           "--threads", str(threads)]
    t0 = time.perf_counter()
    # Output goes to temp files (no pipe can fill up and block), then wait4 reaps the child with its rusage.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out_f, \
            tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err_f:
        try:
            p = subprocess.Popen(cmd, env=thread_env(threads), stdout=out_f, stderr=err_f)
        except OSError as e:
            return {"error": f"could not start {resolved}: {e}"}
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = " | ".join([l for l in stderr.strip().splitlines() if l.strip()][-5:])
        hint = ""
        if "encoders" in stderr or "unrecognized" in stderr.lower() or "unexpected" in stderr.lower():
            hint = " (this flywheel build probably has no `encoders bench` command yet)"
        return {"error": f"`{' '.join(cmd)}` exited {p.returncode}{hint}: {tail}"}
    result = None
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                continue
    if not isinstance(result, dict):
        return {"error": f"`{' '.join(cmd)}` printed no JSON object line; stdout tail: "
                         + " | ".join(stdout.strip().splitlines()[-3:])}
    missing = [k for k in ("texts_per_s", "peak_rss_mb") if k not in result]
    if missing:
        result["warning"] = f"missing field(s) {missing} in flywheel's JSON"
    result["os_peak_rss_mb"] = maxrss_mb(ru.ru_maxrss)
    result["wall_s"] = round(wall, 3)
    return result


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="CSV with a `text` column")
    ap.add_argument("--n", type=int, default=2000, help="first N texts (default 2000)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--model", default=None,
                    help="model directory for sentence-transformers (default: --encoder, else $FLYWHEEL_ENCODER_DIR)")
    ap.add_argument("--flywheel", default=None, help="flywheel binary; runs `BIN encoders bench ...` per T")
    ap.add_argument("--encoder", default=None, help="model directory passed to flywheel --encoder")
    ap.add_argument("--skip-st", action="store_true", help="do not run sentence-transformers")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    ap.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._worker:
        return worker(args)

    args.data = str(Path(args.data).resolve())
    if not os.path.isfile(args.data):
        sys.exit(f"no such data file: {args.data}")
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    if args.model is None:
        args.model = args.encoder or os.environ.get("FLYWHEEL_ENCODER_DIR")
    if not args.skip_st:
        if not args.model or not os.path.isfile(os.path.join(args.model, "config.json")):
            sys.exit("sentence-transformers needs a model directory (holding config.json): "
                     "--model DIR, --encoder DIR or $FLYWHEEL_ENCODER_DIR (or pass --skip-st)")
        args.model = str(Path(args.model).resolve())
    if args.flywheel and not args.encoder:
        sys.exit("--flywheel needs --encoder DIR")
    if args.encoder:
        args.encoder = str(Path(args.encoder).resolve())
    n_avail = len(read_texts(args.data, args.n))
    if n_avail < args.n:
        print(f"note: {args.data} has only {n_avail} texts; using them all", file=sys.stderr)

    out_f = open(args.out, "a", encoding="utf-8") if args.out else None
    try:
        for t in threads:
            line = {"threads": t, "n": n_avail, "batch_size": BATCH_SIZE, "data": args.data}
            if not args.skip_st:
                line["sentence_transformers"] = run_st(args, t)
            if args.flywheel:
                line["flywheel"] = run_flywheel(args, t)
                if "error" in line["flywheel"]:
                    print(f"flywheel: {line['flywheel']['error']}", file=sys.stderr)
            st, fw = line.get("sentence_transformers", {}), line.get("flywheel", {})
            if st.get("texts_per_s") and fw.get("texts_per_s"):
                line["speedup"] = round(fw["texts_per_s"] / st["texts_per_s"], 3)
            s = json.dumps(line, ensure_ascii=False)
            print(s, flush=True)
            if out_f:
                out_f.write(s + "\n")
                out_f.flush()
    finally:
        if out_f:
            out_f.close()


if __name__ == "__main__":
    main()
