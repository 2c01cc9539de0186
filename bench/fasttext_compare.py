#!/usr/bin/env python3
"""flywheel's fastText-style model beside fastText itself, same settings, same threads.

    python3 bench/fasttext_compare.py [--datasets DIR] [--threads 1,2] [--epochs 25 --lr 0.5 --word-ngrams 2]
                                      [--seeds 42,43,44] [--out results.json]

For every dataset folder under DIR (default ../shared/datasets; each has train.csv and test.csv with
a header `text,label`), and every thread count:

* fastText (PyPI `fasttext`): `train_supervised(epoch, lr, wordNgrams, dim=100, thread, seed=42)` on
  the train texts preprocessed as in ../shared/bench/RESULTS.md (lower-case, spaces around
  . ! ? , ' / ( ) " : ;, newlines -> spaces; for mostly-Chinese data every CJK character a token,
  the RESULTS "-char" variant). Time = wall time of `train_supervised` alone, in its own process
  (writing its input file excluded). Predictions: batched `model.predict(list)` on test.csv.
* flywheel: `flywheel train train.csv --model fasttext --epochs E --lr LR --word-ngrams N --threads T`
  with its default tokenizer (Unicode words; CJK detected and read per character). Time = wall time
  of the whole command (CSV parsing, tokenizing and writing the model file included).

Both are scored with the same macro-F1 (unweighted mean of per-class F1 on test.csv), averaged over
the seeds (fastText's `seed` and flywheel's `--seed`); the time is the fastest of those runs. Prints a
markdown table; writes per-run JSON with --out. Needs `pip install fasttext` and a release build
(`cargo build --release -p flywheel-cli`).
"""

import argparse
import csv
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "flywheel")
csv.field_size_limit(1 << 30)

PUNCT = re.compile(r"([.!?,'/()\":;])")
CJK = re.compile(r"([\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef])")


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def cjk_share(texts):
    chars = "".join(texts[:2000])
    chars = [c for c in chars if not c.isspace()]
    return sum(1 for c in chars if CJK.match(c)) / max(1, len(chars))


def prep(text, cjk):
    t = text.lower().replace("\r", " ").replace("\n", " ")
    t = PUNCT.sub(r" \1 ", t)
    if cjk:
        t = CJK.sub(r" \1 ", t)
    return " ".join(t.split())


def macro_f1(y_true, y_pred):
    labels = sorted(set(y_true) | set(y_pred))
    f1s = []
    for l in labels:
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == l and p == l)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != l and p == l)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == l and p != l)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    # Only labels that occur in the truth count (scikit-learn's default behaviour with
    # labels=None also includes predicted-only labels; both sets agree on these datasets).
    return sum(f1s) / len(f1s)


FASTTEXT_WORKER = r"""
import json, sys, time, resource
import fasttext
train, test, seed, epoch, lr, ngrams, threads = sys.argv[1:8]
t0 = time.perf_counter()
m = fasttext.train_supervised(input=train, epoch=int(epoch), lr=float(lr), wordNgrams=int(ngrams),
                              dim=100, thread=int(threads), seed=int(seed), verbose=0)
secs = time.perf_counter() - t0
texts = [l.rstrip("\n") for l in open(test, encoding="utf-8")]
pred, _ = m.predict(texts)
json.dump({"seconds": secs, "pred": [p[0][len("__label__"):] for p in pred],
           "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, sys.stdout)
"""


def run_fasttext(tmp, texts, labels, test_texts, cjk, a, threads, seed):
    train = os.path.join(tmp, "ft.train")
    test = os.path.join(tmp, "ft.test")
    with open(train, "w", encoding="utf-8") as f:
        for t, l in zip(texts, labels):
            f.write(f"__label__{l.replace(' ', '_')} {prep(t, cjk)}\n")
    with open(test, "w", encoding="utf-8") as f:
        for t in test_texts:
            f.write(prep(t, cjk) + "\n")
    out = subprocess.run(
        [sys.executable, "-c", FASTTEXT_WORKER, train, test, str(seed), str(a.epochs), str(a.lr),
         str(a.word_ngrams), str(threads)],
        check=True, capture_output=True, text=True)
    d = json.loads(out.stdout)
    inv = {l.replace(" ", "_"): l for l in set(labels)}
    return d["seconds"], [inv.get(p, p) for p in d["pred"]], d["rss_mb"]


def run_flywheel(tmp, data_dir, a, threads, seed):
    model = os.path.join(tmp, "m.fw")
    cmd = [BIN, "train", os.path.join(data_dir, "train.csv"), "-o", model, "--model", "fasttext",
           "--epochs", str(a.epochs), "--lr", str(a.lr), "--word-ngrams", str(a.word_ngrams),
           "--threads", str(threads), "--seed", str(seed)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed ({status})")
    out = subprocess.run([BIN, "predict", model, os.path.join(data_dir, "test.csv")],
                         check=True, capture_output=True, text=True)
    pred = [json.loads(line)["label"] for line in out.stdout.splitlines() if line.strip()]
    size = os.path.getsize(model) / 1e6
    return secs, pred, usage.ru_maxrss / 1024, size


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=os.path.join(ROOT, "..", "shared", "datasets"))
    p.add_argument("--only", default="", help="comma-separated dataset names")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--word-ngrams", type=int, default=2)
    p.add_argument("--seeds", default="42,43,44", help="one run per seed; F1 averaged, fastest time kept")
    p.add_argument("--out")
    a = p.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release -p flywheel-cli")
    names = sorted(d for d in os.listdir(a.datasets) if os.path.exists(os.path.join(a.datasets, d, "train.csv")))
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    results = []
    seeds = [int(x) for x in a.seeds.split(",")]
    print(f"settings: epoch={a.epochs} lr={a.lr} wordNgrams={a.word_ngrams} dim=100; seeds={seeds}")
    print("| dataset | threads | fastText macro-F1 | flywheel macro-F1 | Δ pt | fastText train s | flywheel train s | time ratio (fastText / flywheel) | peak RSS MB fastText / flywheel |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        d = os.path.join(a.datasets, name)
        texts, labels = read(os.path.join(d, "train.csv"))
        test_texts, test_labels = read(os.path.join(d, "test.csv"))
        cjk = cjk_share(texts) >= 0.2
        for threads in [int(t) for t in a.threads.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                ft = [run_fasttext(tmp, texts, labels, test_texts, cjk, a, threads, s) for s in seeds]
                fw = [run_flywheel(tmp, d, a, threads, s) for s in seeds]
            ft_s = min(r[0] for r in ft)
            fw_s = min(r[0] for r in fw)
            ft_f1s = [macro_f1(test_labels, r[1]) for r in ft]
            fw_f1s = [macro_f1(test_labels, r[1]) for r in fw]
            ft_f1 = sum(ft_f1s) / len(ft_f1s)
            fw_f1 = sum(fw_f1s) / len(fw_f1s)
            row = {"dataset": name, "threads": threads, "cjk": cjk, "seeds": seeds,
                   "fasttext": {"macro_f1": ft_f1, "macro_f1_per_seed": ft_f1s, "train_s": ft_s,
                                "train_s_per_seed": [r[0] for r in ft], "peak_rss_mb": max(r[2] for r in ft)},
                   "flywheel": {"macro_f1": fw_f1, "macro_f1_per_seed": fw_f1s, "train_s": fw_s,
                                "train_s_per_seed": [r[0] for r in fw], "peak_rss_mb": max(r[2] for r in fw),
                                "model_mb": fw[0][3]}}
            results.append(row)
            print(f"| {name} | {threads} | {ft_f1:.4f} | {fw_f1:.4f} | {100 * (fw_f1 - ft_f1):+.2f} | "
                  f"{ft_s:.2f} | {fw_s:.2f} | {ft_s / fw_s:.2f}× | "
                  f"{row['fasttext']['peak_rss_mb']:.0f} / {row['flywheel']['peak_rss_mb']:.0f} |", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"settings": vars(a), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
