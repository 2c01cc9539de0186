"""Injected label noise, side by side: `flywheel audit` against cleanlab's find_label_issues on
out-of-fold probabilities of scikit-learn TF-IDF + logistic regression, on the same folds.

For each dataset, noise kind (uniform: a flipped row takes any other label at random;
class-conditional: class i's rows flip to class i+1 (mod k), each class at its own rate, the
rates averaging the target), rate and seed: flip that share of the training labels (the flips are
recorded), draw 5 stratified folds, run both auditors, score the flagged rows against the flips
(precision, recall, F1) and time each end to end (reading the file, fitting 5 models,
confident learning). Then train flywheel's linear model on the noisy rows, on them without the
rows flywheel flagged, and with those rows relabelled as suggested, and evaluate each on the
untouched test set (macro-F1).

    bench/.venv-audit/bin/python bench/audit/noise.py --datasets bbc-news,spam \
        --out bench/results/audit-noise.jsonl

One JSON line per (dataset, kind, rate, seed, tool), flywheel's with the flipped rows (0-based
data rows); bench/audit/summary.py makes the table.
"""

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np
from joblib import Parallel, delayed
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline

csv.field_size_limit(sys.maxsize)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def write(path, texts, labels):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, l in zip(texts, labels):
            w.writerow([t, l])


def flip(labels, classes, kind, rate, seed):
    """Returns (noisy labels, flipped row indices)."""
    rng = random.Random(seed)
    n = len(labels)
    noisy = list(labels)
    if kind == "uniform":
        rows = rng.sample(range(n), round(rate * n))
        for r in rows:
            noisy[r] = rng.choice([c for c in classes if c != labels[r]])
        return noisy, sorted(rows)
    # Class-conditional: class i -> class i+1 (mod k), per-class rates around the target.
    k = len(classes)
    weights = [rng.uniform(0.5, 1.5) for _ in classes]
    by_class = {c: [r for r in range(n) if labels[r] == c] for c in classes}
    total = sum(weights[i] * len(by_class[c]) for i, c in enumerate(classes))
    scale = rate * n / total
    rows = []
    for i, c in enumerate(classes):
        take = min(len(by_class[c]) - 1, round(weights[i] * scale * len(by_class[c])))
        chosen = rng.sample(by_class[c], take)
        for r in chosen:
            noisy[r] = classes[(i + 1) % k]
        rows.extend(chosen)
    return noisy, sorted(rows)


def score(flagged, flipped):
    flagged, flipped = set(flagged), set(flipped)
    tp = len(flagged & flipped)
    p = tp / len(flagged) if flagged else 0.0
    r = tp / len(flipped) if flipped else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1


def cleanlab_audit(train_csv, folds, zh):
    """cleanlab on TF-IDF + LR out-of-fold probabilities; returns (flagged rows, seconds)."""
    from cleanlab.filter import find_label_issues

    start = time.perf_counter()
    texts, labels = read(train_csv)
    classes = sorted(set(labels))
    y = np.array([classes.index(l) for l in labels])
    probs = np.zeros((len(y), len(classes)))

    def fit_fold(f):
        held = np.array([i for i, x in enumerate(folds) if x == f])
        fit = np.array([i for i, x in enumerate(folds) if x != f])
        vec = (
            TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True, min_df=2)
            if zh
            else TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        )
        model = make_pipeline(vec, LogisticRegression(C=1.0, max_iter=2000))
        model.fit([texts[i] for i in fit], y[fit])
        return held, model.classes_, model.predict_proba([texts[i] for i in held])

    # The folds fit in parallel on every core (as cross_val_predict(n_jobs=-1) would); flywheel
    # uses every core too.
    for held, cols, p in Parallel(n_jobs=-1)(delayed(fit_fold)(f) for f in sorted(set(folds))):
        probs[np.ix_(held, cols)] = p
    mask = find_label_issues(y, probs)
    return [int(i) for i in np.flatnonzero(mask)], time.perf_counter() - start


def flywheel_audit(flywheel, train_csv, folds_file, out_json):
    start = time.perf_counter()
    subprocess.run(
        [flywheel, "audit", train_csv, "--folds-file", folds_file, "--json", out_json, "--top", "0"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    with open(out_json) as f:
        audit = json.load(f)
    return audit, seconds


def macro_f1(flywheel, train_csv, test_csv, model_path):
    subprocess.run(
        [flywheel, "train", train_csv, "--model", "linear", "-o", model_path],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = subprocess.run(
        [flywheel, "eval", model_path, test_csv, "--json"], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)["macro_f1"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="bbc-news,spam,tweets-sentiment,drug-reviews-sentiment,zh-news-sentiment")
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "datasets"))
    ap.add_argument("--flywheel", default=os.path.join(ROOT, "target", "release", "flywheel"))
    ap.add_argument("--rates", default="0.05,0.10")
    ap.add_argument("--kinds", default="uniform,class")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--no-retrain", action="store_true", help="skip the test macro-F1 after cleaning")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="audit-noise-")
    out = open(args.out, "a")
    for name in args.datasets.split(","):
        texts, labels = read(os.path.join(args.data_dir, name, "train.csv"))
        test_csv = os.path.join(args.data_dir, name, "test.csv")
        classes = sorted(set(labels))
        zh = name.startswith("zh-")
        clean_f1 = None
        if not args.no_retrain:
            clean_f1 = macro_f1(args.flywheel, os.path.join(args.data_dir, name, "train.csv"), test_csv,
                                os.path.join(tmp, f"{name}-clean.fw"))
        for kind in args.kinds.split(","):
            if kind == "class" and len(classes) == 2 and "uniform" in args.kinds:
                continue  # with two classes both kinds are the same flips
            for rate in [float(r) for r in args.rates.split(",")]:
                for seed in [int(s) for s in args.seeds.split(",")]:
                    noisy, flipped = flip(labels, classes, kind, rate, seed)
                    train_csv = os.path.join(tmp, f"{name}-{kind}-{rate}-{seed}.csv")
                    write(train_csv, texts, noisy)
                    skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
                    folds = [0] * len(noisy)
                    for f, (_, held) in enumerate(skf.split(texts, noisy)):
                        for i in held:
                            folds[i] = f
                    folds_file = train_csv + ".folds"
                    with open(folds_file, "w") as f:
                        f.write("\n".join(map(str, folds)) + "\n")
                    base = {"dataset": name, "kind": kind, "rate": rate, "seed": seed,
                            "rows": len(noisy), "flipped": len(flipped)}
                    audit, fw_secs = flywheel_audit(args.flywheel, train_csv, folds_file, train_csv + ".json")
                    fw_flagged = [s["row"] for s in audit["suspects"]]
                    p, r, f1 = score(fw_flagged, flipped)
                    line = dict(base, tool="flywheel", flagged=len(fw_flagged), precision=p, recall=r,
                                f1=f1, seconds=fw_secs, flipped_rows=flipped)
                    if not args.no_retrain:
                        model = train_csv + ".fw"
                        line["test_macro_f1_noisy"] = macro_f1(args.flywheel, train_csv, test_csv, model)
                        drop = set(fw_flagged)
                        keep = [i for i in range(len(noisy)) if i not in drop]
                        dropped = train_csv + ".dropped.csv"
                        write(dropped, [texts[i] for i in keep], [noisy[i] for i in keep])
                        line["test_macro_f1_dropped"] = macro_f1(args.flywheel, dropped, test_csv, model)
                        relabel = {s["row"]: s["suggested"] for s in audit["suspects"]}
                        relabelled = train_csv + ".relabelled.csv"
                        write(relabelled, texts, [relabel.get(i, l) for i, l in enumerate(noisy)])
                        line["test_macro_f1_relabelled"] = macro_f1(args.flywheel, relabelled, test_csv, model)
                        line["test_macro_f1_clean"] = clean_f1
                    print(json.dumps(line), file=out, flush=True)
                    cl_flagged, cl_secs = cleanlab_audit(train_csv, folds, zh)
                    p, r, f1 = score(cl_flagged, flipped)
                    print(json.dumps(dict(base, tool="cleanlab", flagged=len(cl_flagged), precision=p,
                                          recall=r, f1=f1, seconds=cl_secs)), file=out, flush=True)
                    print(f"{name} {kind} {rate} seed {seed}: flywheel F1 {line['f1']:.3f} in {fw_secs:.1f} s, "
                          f"cleanlab F1 {f1:.3f} in {cl_secs:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
