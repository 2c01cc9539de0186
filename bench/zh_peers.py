#!/usr/bin/env python3
"""The zh-news-sentiment peers on the shared test.csv (../shared/bench/RESULTS.md measured them on the
source package's own test split, which is not among the shared files).

    python3 bench/zh_peers.py [DATASET_DIR]

TF-IDF + logistic regression exactly as RESULTS.md describes tfidf-lr-char and tfidf-lr-char-cv:
`TfidfVectorizer(analyzer='char', ngram_range=(1, 2), sublinear_tf=True, min_df=2)` +
`LogisticRegression(C=1.0, lbfgs, max_iter=2000)`, and the same with C chosen from {0.1, 1, 10, 100}
by 3-fold stratified CV on macro-F1 (`GridSearchCV`). fastText's "-char" row on this split is
measured by bench/fasttext_compare.py. Needs scikit-learn.
"""
import csv
import os
import sys
import time

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
csv.field_size_limit(1 << 30)


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "datasets", "zh-news-sentiment")
    x, y = read(os.path.join(d, "train.csv"))
    xt, yt = read(os.path.join(d, "test.csv"))

    def pipe(c=1.0):
        return make_pipeline(
            TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True, min_df=2),
            LogisticRegression(C=c, solver="lbfgs", max_iter=2000))

    print("| system | test accuracy | test macro-F1 | train s | notes |")
    print("|---|---:|---:|---:|---|")
    t0 = time.perf_counter()
    m = pipe().fit(x, y)
    secs = time.perf_counter() - t0
    p = m.predict(xt)
    print(f"| tfidf-lr-char | {accuracy_score(yt, p):.4f} | {f1_score(yt, p, average='macro'):.4f} | {secs:.1f} | C=1 |")
    t0 = time.perf_counter()
    g = GridSearchCV(pipe(), {"logisticregression__C": [0.1, 1, 10, 100]}, scoring="f1_macro",
                     cv=StratifiedKFold(3, shuffle=True, random_state=42), n_jobs=2).fit(x, y)
    secs = time.perf_counter() - t0
    p = g.predict(xt)
    c = g.best_params_["logisticregression__C"]
    print(f"| tfidf-lr-char-cv | {accuracy_score(yt, p):.4f} | {f1_score(yt, p, average='macro'):.4f} | {secs:.1f} | C={c} |")


if __name__ == "__main__":
    main()
