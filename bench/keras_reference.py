#!/usr/bin/env python3
"""Keras reference run ("keras-lstm" / "keras-lstm-char" in the peer baselines).

    Tokenizer(num_words=10000) fit on train texts -> texts_to_sequences ->
    pad_sequences(maxlen=100) -> Input(100) -> Embedding(10000, 16) ->
    LSTM(16, dropout=0.2, recurrent_dropout=0.2) -> Dense(1, sigmoid) | Dense(k, softmax)
    adam, binary / sparse categorical cross-entropy,
    fit(epochs, batch_size=32, validation_split=0.2), evaluated on test.csv.

Usage (environment: bench/requirements-keras.txt):

    python bench/keras_reference.py --data DIR --seed 42 --threads 2 --epochs 10 \
        --out result.json [--char-level]

DIR holds train.csv and test.csv with the header `text,label`.  Labels are
sorted as strings; with two labels the second one is the positive class
(sigmoid output, threshold 0.5: p > 0.5 -> positive).
"""

import argparse
import os
import sys


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory with train.csv and test.csv")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", required=True, help="result JSON path")
    ap.add_argument("--char-level", action="store_true",
                    help="Tokenizer(char_level=True) (the zh VARIANT)")
    ap.add_argument("--verbose", type=int, default=2, choices=[0, 2],
                    help="verbosity of model.fit (0 or 2)")
    return ap.parse_args()


ARGS = parse_args()

# Thread limits must be in place before TensorFlow (or numpy's BLAS) loads.
for _k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
           "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ[_k] = str(ARGS.threads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"

import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(ARGS.threads)
tf.config.threading.set_inter_op_parallelism_threads(ARGS.threads)

import keras  # noqa: E402
from keras.src.legacy.preprocessing.text import Tokenizer  # noqa: E402

NUM_WORDS = 10000
MAXLEN = 100
EMBED = 16
UNITS = 16
BATCH = 32


def read_csv(path):
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            texts.append(row["text"])
            labels.append(row["label"])
    return texts, labels


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []
        self._t0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t0)


def macro_f1(y_true, y_pred, n_classes):
    f1s = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        f1s.append(0.0 if denom == 0 else 2.0 * tp / denom)  # sklearn's zero_division=0
    return float(np.mean(f1s))


def main():
    args = ARGS
    keras.utils.set_random_seed(args.seed)

    train_texts, train_labels = read_csv(os.path.join(args.data, "train.csv"))
    test_texts, test_labels = read_csv(os.path.join(args.data, "test.csv"))
    labels = sorted(set(train_labels))
    label_id = {l: i for i, l in enumerate(labels)}
    unknown = sorted(set(test_labels) - set(labels))
    if unknown:
        sys.exit(f"test.csv has labels not in train.csv: {unknown}")
    k = len(labels)
    if k < 2:
        sys.exit("need at least two labels")
    y_train = np.array([label_id[l] for l in train_labels], dtype=np.int32)
    y_test = np.array([label_id[l] for l in test_labels], dtype=np.int32)

    t0 = time.perf_counter()
    tok = Tokenizer(num_words=NUM_WORDS, char_level=args.char_level)
    tok.fit_on_texts(train_texts)
    x_train = keras.utils.pad_sequences(tok.texts_to_sequences(train_texts), maxlen=MAXLEN)
    prep_s = time.perf_counter() - t0

    binary = k == 2
    model = keras.Sequential([
        keras.Input(shape=(MAXLEN,)),
        keras.layers.Embedding(NUM_WORDS, EMBED),
        keras.layers.LSTM(UNITS, dropout=0.2, recurrent_dropout=0.2),
        keras.layers.Dense(1, activation="sigmoid") if binary
        else keras.layers.Dense(k, activation="softmax"),
    ])
    model.compile(optimizer="adam",
                  loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    timer = EpochTimer()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    hist = model.fit(x_train, y_train.astype(np.float32) if binary else y_train,
                     epochs=args.epochs, batch_size=BATCH, validation_split=0.2,
                     callbacks=[timer], verbose=args.verbose)
    train_time_s = time.perf_counter() - wall0
    train_cpu_s = time.process_time() - cpu0

    def predict():
        seqs = tok.texts_to_sequences(test_texts)
        x = keras.utils.pad_sequences(seqs, maxlen=MAXLEN)
        return model.predict(x, batch_size=BATCH, verbose=0)

    t = time.perf_counter()
    probs = predict()
    predict_s_cold = time.perf_counter() - t
    t = time.perf_counter()
    probs_warm = predict()
    predict_s_warm = time.perf_counter() - t
    assert np.allclose(probs, probs_warm)

    if binary:
        y_pred = (probs[:, 0] > 0.5).astype(np.int32)
    else:
        y_pred = np.argmax(probs, axis=1).astype(np.int32)
    accuracy = float(np.mean(y_pred == y_test))

    result = {
        "system": "keras-lstm-char" if args.char_level else "keras-lstm",
        "dataset": os.path.basename(os.path.normpath(args.data)),
        "seed": args.seed,
        "threads": args.threads,
        "epochs": args.epochs,
        "char_level": args.char_level,
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "tensorflow": tf.__version__, "keras": keras.__version__},
        "labels": labels,
        "task": f"{k}-class",
        "params": int(model.count_params()),
        "vocab_seen": len(tok.word_index),
        "train_rows": len(train_texts),
        # Keras: split_at = floor(n * (1 - validation_split)); the rest validates
        "train_rows_fitted": int(math.floor(len(train_texts) * (1.0 - 0.2))),
        "test_rows": len(test_texts),
        "accuracy": accuracy,
        "macro_f1": macro_f1(y_test, y_pred, k),
        "prep_s": prep_s,
        "train_time_s": train_time_s,
        "train_cpu_s": train_cpu_s,
        "epoch_times_s": timer.times,
        "history": {key: [float(v) for v in vals] for key, vals in hist.history.items()},
        "predict_s_cold": predict_s_cold,
        "predict_s_warm": predict_s_warm,
        "predict_texts_per_s_cold": len(test_texts) / predict_s_cold,
        "predict_texts_per_s_warm": len(test_texts) / predict_s_warm,
        "process_cpu_s": time.process_time(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loadavg_end": list(os.getloadavg()),
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    print(f"{result['dataset']} seed={args.seed}: accuracy={accuracy:.4f} "
          f"macro_f1={result['macro_f1']:.4f} train={train_time_s:.1f}s "
          f"(cpu {train_cpu_s:.1f}s) predict warm={result['predict_texts_per_s_warm']:.0f}/s "
          f"cold={result['predict_texts_per_s_cold']:.0f}/s rss={result['peak_rss_mb']:.0f}MB "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
