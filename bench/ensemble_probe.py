#!/usr/bin/env python3
"""Would averaging several flywheel models beat the best single one? Each configuration (one line
of CONFIG_FILE: `flywheel train` flags) is trained twice: on a stratified 80 % of train.csv, to
predict the other 20 % (validation), and on all of train.csv, to predict test.csv. Prints each
configuration's validation and test macro-F1, then the mean of the probabilities of the top k
by validation (k = 1..6) and a greedy ensemble selection (Caruana et al., 2004: add, with
replacement, whichever model most raises validation macro-F1) on both.

    python3 bench/ensemble_probe.py DATASET_DIR CONFIG_FILE [WORK_DIR]

Needs numpy and a release build (target/release/flywheel).
"""
import csv
import json
import os
import random
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "flywheel")
csv.field_size_limit(1 << 30)


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        w.writerows(rows)


def macro_f1(probs, rows, labels):
    y = np.array([labels.index(r["label"]) for r in rows])
    p = probs.argmax(1)
    f1 = []
    for c in range(len(labels)):
        tp = ((p == c) & (y == c)).sum()
        wrong = ((p == c) & (y != c)).sum() + ((p != c) & (y == c)).sum()
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + wrong))
    return float(np.mean(f1))


def main():
    d, config_file = sys.argv[1], sys.argv[2]
    work = sys.argv[3] if len(sys.argv) > 3 else "/tmp/flywheel-ensemble-probe"
    os.makedirs(work, exist_ok=True)
    rows, test = read(os.path.join(d, "train.csv")), read(os.path.join(d, "test.csv"))
    labels = sorted({r["label"] for r in rows})
    rng, held = random.Random(7), set()
    for label in labels:
        idx = [i for i, r in enumerate(rows) if r["label"] == label]
        rng.shuffle(idx)
        held.update(idx[: round(len(idx) * 0.2)])
    train = [r for i, r in enumerate(rows) if i not in held]
    val = [r for i, r in enumerate(rows) if i in held]
    write(os.path.join(work, "train80.csv"), train)
    write(os.path.join(work, "val20.csv"), val)

    def probs(model, path):
        out = subprocess.run([BIN, "predict", model, path], capture_output=True, text=True, check=True)
        return np.array([[json.loads(l)["scores"][k] for k in labels] for l in out.stdout.splitlines()])

    results = []
    with open(config_file) as f:
        configs = [line.split() for line in f if line.strip()]
    for k, flags in enumerate(configs):
        part, full = os.path.join(work, f"m{k}-80.fw"), os.path.join(work, f"m{k}-all.fw")
        for data, model in ((os.path.join(work, "train80.csv"), part), (os.path.join(d, "train.csv"), full)):
            subprocess.run([BIN, "train", data, "-o", model] + flags, capture_output=True, check=True)
        v, t = probs(part, os.path.join(work, "val20.csv")), probs(full, os.path.join(d, "test.csv"))
        results.append((v, t))
        print(f"{macro_f1(v, val, labels):.4f} {macro_f1(t, test, labels):.4f}  {' '.join(flags)}", flush=True)
    order = sorted(range(len(results)), key=lambda i: -macro_f1(results[i][0], val, labels))
    for k in range(1, min(6, len(results)) + 1):
        v = sum(results[i][0] for i in order[:k]) / k
        t = sum(results[i][1] for i in order[:k]) / k
        print(f"top {k} mean: validation {macro_f1(v, val, labels):.4f} test {macro_f1(t, test, labels):.4f}")
    chosen, best = [], -1.0
    for _ in range(15):
        score = lambda i: macro_f1(sum(results[j][0] for j in chosen + [i]) / (len(chosen) + 1), val, labels)
        i = max(range(len(results)), key=score)
        if chosen and score(i) < best:
            break
        best = max(best, score(i))
        chosen.append(i)
    t = sum(results[j][1] for j in chosen) / len(chosen)
    print(f"greedy selection {chosen}: validation {best:.4f} test {macro_f1(t, test, labels):.4f}")


if __name__ == "__main__":
    main()
