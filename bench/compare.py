#!/usr/bin/env python3
"""Side-by-side benchmark: the Keras reference model vs flywheel's `--preset keras-lstm`.

Both run in one go, one process per run, on the same machine with the same thread count, on the
same files (a dataset folder with train.csv / test.csv). For each system it records test accuracy
and macro-F1, training wall time (10 epochs incl. validation), prediction throughput (tokenisation
included) and peak RSS of the process, then prints a Markdown table with the speed ratios.

    python3 bench/compare.py --datasets ../shared/datasets/spam ../shared/datasets/tweets-sentiment \
        --threads 2 --seed 42 --keras-python bench/.venv/bin/python --out bench/results.json

`--keras-python` is a Python with bench/requirements-keras.txt installed (bench/setup-keras.sh
makes one); `--skip-keras` runs flywheel alone. Standard library only.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_rss(cmd, stdout_path=None):
    """Runs a command with its stdout to a file (or a pipe); returns (wall s, peak RSS MiB, stdout)."""
    out_f = open(stdout_path, "w") if stdout_path else tempfile.TemporaryFile("w+")
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.dup2(out_f.fileno(), 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    text = ""
    if not stdout_path:
        out_f.seek(0)
        text = out_f.read()
    out_f.close()
    return wall, usage.ru_maxrss / 1024.0, text


def count_rows(csv_path):
    import csv
    with open(csv_path, newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.DictReader(f))


def flywheel(binary, data_dir, threads, seed, work):
    train_csv = os.path.join(data_dir, "train.csv")
    test_csv = os.path.join(data_dir, "test.csv")
    model = os.path.join(work, "model.fw")
    train_s, train_rss, _ = run_rss([binary, "train", train_csv, "-o", model, "--preset",
                                     "keras-lstm", "--seed", str(seed), "--threads",
                                     str(threads)])
    _, _, report = run_rss([binary, "eval", model, test_csv, "--json", "--threads",
                            str(threads)])
    metrics = json.loads(report)
    n_test = count_rows(test_csv)
    # Two predict runs; the second (warm page cache) is reported, like Keras's warm call.
    cold_s, _, _ = run_rss([binary, "predict", model, test_csv, "--threads", str(threads)],
                           stdout_path=os.devnull)
    warm_s, pred_rss, _ = run_rss([binary, "predict", model, test_csv, "--threads",
                                   str(threads)], stdout_path=os.devnull)
    return {
        "system": "flywheel keras-lstm",
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "train_time_s": train_s,
        "train_peak_rss_mb": train_rss,
        "predict_texts_per_s": n_test / warm_s,
        "predict_texts_per_s_cold": n_test / cold_s,
        "predict_peak_rss_mb": pred_rss,
        "note": "whole processes: train = read + tokenize + 10 epochs + save; "
                "predict = load + read + tokenize + predict + JSON out",
    }


def keras(python, data_dir, threads, seed, work):
    out = os.path.join(work, "keras.json")
    run_rss([python, os.path.join(HERE, "keras_reference.py"), "--data", data_dir, "--seed",
             str(seed), "--threads", str(threads), "--epochs", "10", "--out", out,
             "--verbose", "0"])
    with open(out) as f:
        r = json.load(f)
    return {
        "system": "keras 3 / tf 2.21 reference",
        "accuracy": r["accuracy"],
        "macro_f1": r["macro_f1"],
        "train_time_s": r["train_time_s"],
        "train_peak_rss_mb": r["peak_rss_mb"],
        "predict_texts_per_s": r["predict_texts_per_s_warm"],
        "predict_texts_per_s_cold": r["predict_texts_per_s_cold"],
        "note": "model.fit wall time; predict = texts_to_sequences + pad + model.predict",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--flywheel", default=os.path.join(ROOT, "target", "release", "flywheel"))
    ap.add_argument("--keras-python", default=os.path.join(HERE, ".venv", "bin", "python"))
    ap.add_argument("--skip-keras", action="store_true")
    ap.add_argument("--out", default=None, help="write all results as JSON here")
    args = ap.parse_args()

    results = []
    for d in args.datasets:
        name = os.path.basename(os.path.normpath(d))
        with tempfile.TemporaryDirectory() as work:
            fw = flywheel(args.flywheel, d, args.threads, args.seed, work)
            fw["dataset"] = name
            results.append(fw)
            print(f"{name}: flywheel {json.dumps(fw)}", file=sys.stderr)
            if not args.skip_keras:
                kr = keras(args.keras_python, d, args.threads, args.seed, work)
                kr["dataset"] = name
                results.append(kr)
                print(f"{name}: keras {json.dumps(kr)}", file=sys.stderr)

    print(f"| dataset | system | test accuracy | test macro-F1 | train s (10 epochs) "
          f"| predict texts/s | train peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['dataset']} | {r['system']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} "
              f"| {r['train_time_s']:.1f} | {r['predict_texts_per_s']:,.0f} "
              f"| {r['train_peak_rss_mb']:.0f} |")
    if not args.skip_keras:
        print()
        for d in sorted({r["dataset"] for r in results}):
            fw = next(r for r in results if r["dataset"] == d and r["system"].startswith("flywheel"))
            kr = next(r for r in results if r["dataset"] == d and r["system"].startswith("keras"))
            print(f"- {d}: training {kr['train_time_s'] / fw['train_time_s']:.1f}x faster, "
                  f"prediction {fw['predict_texts_per_s'] / kr['predict_texts_per_s']:.1f}x "
                  f"faster, peak RSS {fw['train_peak_rss_mb']:.0f} MiB vs "
                  f"{kr['train_peak_rss_mb']:.0f} MiB")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "seed": args.seed, "results": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
