#!/usr/bin/env python3
"""Other linear model classes on TF-IDF features, scored two ways: 5-fold stratified
cross-validation on train.csv (what a search can see) and train.csv -> test.csv (what the
issue's bar measures). Asks whether any class is better on both, which autotune could then
choose honestly.

    python3 bench/model_classes.py DATASET_DIR

Features: word unigrams (min_df 1); word 1-2-grams (min_df 2); word unigrams + `char_wb` 2-5-grams
(min_df 2), all `sublinear_tf=True`. Models: logistic regression (C 10, 100), linear SVM (C 0.3,
1), ridge classifier, complement naive Bayes (alpha 0.1), SGD with modified Huber loss. Needs
scikit-learn.
"""
import csv
import os
import sys
import warnings

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

warnings.filterwarnings("ignore")
csv.field_size_limit(1 << 30)

FEATURES = {
    "word-1": lambda: [TfidfVectorizer(sublinear_tf=True, min_df=1)],
    "word-1-2": lambda: [TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)],
    "word-1+char-2-5": lambda: [
        TfidfVectorizer(sublinear_tf=True, min_df=1),
        TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(2, 5), min_df=2),
    ],
}
MODELS = {
    "logreg C=10": lambda: LogisticRegression(C=10, max_iter=300),
    "logreg C=100": lambda: LogisticRegression(C=100, max_iter=300),
    "linear SVM C=0.3": lambda: LinearSVC(C=0.3),
    "linear SVM C=1": lambda: LinearSVC(C=1),
    "ridge": lambda: RidgeClassifier(alpha=1.0),
    "complement NB": lambda: ComplementNB(alpha=0.1),
    "SGD modified Huber": lambda: SGDClassifier(
        loss="modified_huber", alpha=1e-5, max_iter=50, random_state=0
    ),
}


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return np.array([r["text"] for r in rows], dtype=object), np.array([r["label"] for r in rows])


def featurize(make, fit_on, apply_to):
    fitted, applied = [], []
    for v in make():
        fitted.append(v.fit_transform(fit_on))
        applied.append(v.transform(apply_to))
    return hstack(fitted).tocsr(), hstack(applied).tocsr()


def main():
    d = sys.argv[1]
    x, y = read(os.path.join(d, "train.csv"))
    xt, yt = read(os.path.join(d, "test.csv"))
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))
    print("| features | model | 5-fold CV macro-F1 | test macro-F1 |")
    print("|---|---|---:|---:|")
    for fname, make in FEATURES.items():
        per_fold = [featurize(make, x[tr], x[va]) for tr, va in folds]
        full = featurize(make, x, xt)
        for mname, model in MODELS.items():
            cv = np.mean(
                [
                    f1_score(y[va], model().fit(a, y[tr]).predict(b), average="macro")
                    for (tr, va), (a, b) in zip(folds, per_fold)
                ]
            )
            test = f1_score(yt, model().fit(full[0], y).predict(full[1]), average="macro")
            print(f"| {fname} | {mname} | {cv:.4f} | {test:.4f} |", flush=True)


if __name__ == "__main__":
    main()
