#!/usr/bin/env python3
"""SetFit few-shot reference runs, on the very rows flywheel trains on.

    bench/.venv-setfit/bin/python bench/setfit_compare.py \
        --dataset ../shared/datasets/tweets-sentiment [--dataset DIR ...] \
        --n 8 [16 ...] --seeds 0 1 2 3 4 \
        --encoder /root/.cache/flywheel/encoders/all-minilm-l6-v2 \
        --outdir bench/results/setfit-samples --out bench/results/setfit.jsonl \
        [--threads 2] [--max-length 128] [--only-sample] [--dump-pairs]
        [--num-iterations K] [--train-seed 42]

Environment: bench/setfit/setup.sh (creates bench/.venv-setfit from bench/setfit/requirements.txt).

For every dataset folder (train.csv and test.csv, header `text,label`), every N (samples per class)
and every seed:

1. Sample. The train split is read as strings (pandas, keep_default_na=False) into a
   `datasets.Dataset` with columns text, label (plus a `row` column: the 0-based data-row index in
   train.csv) and drawn with SetFit's own protocol, `setfit.sample_dataset(ds, label_column="label",
   num_samples=N, seed=seed)`, which is:
       a. `ds.shuffle(seed)`: the permutation `numpy.random.default_rng(seed).permutation(len(ds))`
       b. keep the first N rows of each label in that shuffled order
          (pandas `groupby("label").head(N)`; a class with fewer than N rows keeps all of them)
       c. `.shuffle(seed)` again over the kept rows (same default_rng(seed).permutation(len(kept)))
   The sample is written, in that final order, to OUTDIR/<dataset>-n<N>-s<seed>.csv with the header
   `text,label` (RFC 4180 quoting, LF line ends), so flywheel can train on the same rows in the same
   order (SetFit's pair generation depends on the row order). With --dump-pairs, the exact sequence of
   contrastive pairs SetFit trains on (see /tmp/setfit-notes.md) is also written to
   OUTDIR/<dataset>-n<N>-s<seed>.pairs.jsonl, one {"step","a","b","label"} per line, `step` being the
   0-based optimizer step (batch) the pair lands in.

2. Unless --only-sample: train SetFit with its defaults: `SetFitModel.from_pretrained(ENCODER)`
   (LogisticRegression head) and `setfit.Trainer(model, TrainingArguments(...), train_dataset=sample)`.
   The only TrainingArguments set are ones that do not change the result: output_dir (a temporary
   folder), save_strategy="no" (no checkpoint writes inside the timed section), report_to="none",
   show_progress_bar=False; plus --num-iterations / --train-seed / --max-length when given. The time is
   the wall time of `trainer.train()` alone (pair generation, embedding fine-tuning, head fit).
   torch.set_num_threads(--threads); the tokenizer thread pool is capped likewise (RAYON_RS_NUM_CPUS).
   Scored by macro-F1 (sklearn f1_score(average="macro")) and accuracy of `model.predict` on test.csv.

3. Also the frozen-encoder baseline on the same rows: a fresh `SetFitModel.from_pretrained(ENCODER)`
   whose head alone is fitted (`model.fit`, SetFit's sklearn branch: `model_body.encode(texts)` with
   the encoder's own L2 Normalize module, then `LogisticRegression()` with sklearn defaults).

--max-length L: SetFit's TrainingArguments.max_length only caps the differentiable-head dataloader,
not the contrastive phase nor encode(); so the cap is applied by setting
`model.model_body.max_seq_length = L` (tokenizer truncation in training, head fitting and prediction)
and also passing TrainingArguments(max_length=L). Without it, all-MiniLM-L6-v2 truncates at 256.

One JSON line per (dataset, N, seed) is appended to --out.
"""

import argparse
import json
import os
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", action="append", required=True, help="dataset folder (repeatable)")
    p.add_argument("--n", type=int, nargs="+", required=True, help="samples per class")
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--outdir", required=True, help="where the sampled CSVs go")
    p.add_argument("--out", help="JSON-lines results file (appended); required unless --only-sample")
    p.add_argument("--encoder", default="/root/.cache/flywheel/encoders/all-minilm-l6-v2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-length", type=int, default=None, help="cap on tokens per text")
    p.add_argument("--num-iterations", type=int, default=None,
                   help="SetFit num_iterations (default None: sampling_strategy 'oversampling')")
    p.add_argument("--train-seed", type=int, default=None, help="TrainingArguments.seed (default 42)")
    p.add_argument("--only-sample", action="store_true", help="write the samples and stop")
    p.add_argument("--dump-pairs", action="store_true", help="also write SetFit's pair sequence")
    p.add_argument("--no-frozen", action="store_true", help="skip the frozen-encoder baseline")
    a = p.parse_args()
    if not a.only_sample and not a.out:
        p.error("--out is required unless --only-sample")
    return a


ARGS = parse_args()
# Thread caps must be in place before torch / tokenizers start their pools.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["RAYON_RS_NUM_CPUS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402

import setfit  # noqa: E402
from setfit import SetFitModel, Trainer, TrainingArguments, sample_dataset  # noqa: E402
from setfit.sampler import ContrastiveDataset  # noqa: E402


def read_split(path):
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(df.columns[:2]) != ["text", "label"]:
        raise SystemExit(f"{path}: expected header text,label, got {list(df.columns)}")
    return df[["text", "label"]]


def draw(train_df, n, seed):
    ds = Dataset.from_pandas(train_df.assign(row=np.arange(len(train_df))), preserve_index=False)
    return sample_dataset(ds, label_column="label", num_samples=n, seed=seed)


def write_sample(sample, path):
    df = pd.DataFrame({"text": sample["text"], "label": sample["label"]})
    df.to_csv(path, index=False, lineterminator="\n")


def pair_sequence(texts, labels, args):
    """The pairs SetFit's default embedding phase trains on, in training order, batched."""
    ds = ContrastiveDataset(texts, labels, False, args.num_iterations, args.sampling_strategy)
    pairs = list(ds)
    gen = torch.Generator()
    gen.manual_seed(args.seed)
    order = torch.randperm(len(pairs), generator=gen).tolist()
    bs = args.embedding_batch_size
    return [dict(step=i // bs, a=pairs[j]["sentence_1"], b=pairs[j]["sentence_2"], label=pairs[j]["label"])
            for i, j in enumerate(order)]


def training_args(tmp):
    kw = dict(output_dir=tmp, save_strategy="no", report_to="none", show_progress_bar=False)
    if ARGS.num_iterations is not None:
        kw["num_iterations"] = ARGS.num_iterations
    if ARGS.train_seed is not None:
        kw["seed"] = ARGS.train_seed
    if ARGS.max_length is not None:
        kw["max_length"] = ARGS.max_length
    return TrainingArguments(**kw)


def load_model():
    model = SetFitModel.from_pretrained(ARGS.encoder)
    if ARGS.max_length is not None:
        model.model_body.max_seq_length = ARGS.max_length
    return model


def score(y_true, y_pred):
    from sklearn.metrics import accuracy_score, f1_score

    y_pred = [str(y) for y in y_pred]
    return f1_score(y_true, y_pred, average="macro"), accuracy_score(y_true, y_pred)


def versions():
    import datasets
    import sentence_transformers
    import sklearn
    import transformers

    return {
        "python": sys.version.split()[0],
        "setfit": setfit.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "scikit_learn": sklearn.__version__,
        "numpy": np.__version__,
        "datasets": datasets.__version__,
    }


def main():
    torch.set_num_threads(ARGS.threads)
    os.makedirs(ARGS.outdir, exist_ok=True)
    for folder in ARGS.dataset:
        name = os.path.basename(os.path.normpath(folder))
        train_df = read_split(os.path.join(folder, "train.csv"))
        test_df = None
        for n in ARGS.n:
            for seed in ARGS.seeds:
                sample = draw(train_df, n, seed)
                stem = os.path.join(ARGS.outdir, f"{name}-n{n}-s{seed}")
                write_sample(sample, stem + ".csv")
                texts, labels = list(sample["text"]), list(sample["label"])
                counts = pd.Series(labels).value_counts().sort_index().to_dict()
                print(f"{stem}.csv: {len(texts)} rows {counts}", flush=True)
                if ARGS.dump_pairs:
                    with tempfile.TemporaryDirectory() as tmp:
                        seq = pair_sequence(texts, labels, training_args(tmp))
                    with open(stem + ".pairs.jsonl", "w") as f:
                        for rec in seq:
                            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    print(f"{stem}.pairs.jsonl: {len(seq)} pairs, {seq[-1]['step'] + 1} steps", flush=True)
                if ARGS.only_sample:
                    continue
                if test_df is None:
                    test_df = read_split(os.path.join(folder, "test.csv"))
                x_test, y_test = list(test_df["text"]), list(test_df["label"])
                rec = {
                    "dataset": name,
                    "n_per_class": n,
                    "seed": seed,
                    "sample_csv": os.path.abspath(stem + ".csv"),
                    "train_rows": list(map(int, sample["row"])),
                    "class_counts": counts,
                    "test_rows": len(x_test),
                    "encoder": os.path.abspath(ARGS.encoder),
                    "threads": ARGS.threads,
                    "max_length": ARGS.max_length,
                    "num_iterations": ARGS.num_iterations,
                }
                with tempfile.TemporaryDirectory() as tmp:
                    model = load_model()
                    args = training_args(tmp)
                    trainer = Trainer(model=model, args=args, train_dataset=sample.select_columns(["text", "label"]))
                    t0 = time.perf_counter()
                    trainer.train()
                    rec["train_seconds"] = time.perf_counter() - t0
                    rec["train_seed"] = args.seed
                    rec["n_pairs"] = len(trainer.st_trainer.train_dataset)
                    rec["train_steps"] = trainer.st_trainer.state.global_step
                    t0 = time.perf_counter()
                    pred = model.predict(x_test)
                    rec["predict_seconds"] = time.perf_counter() - t0
                    rec["setfit_macro_f1"], rec["setfit_accuracy"] = score(y_test, pred)
                    del trainer, model
                if not ARGS.no_frozen:
                    frozen = load_model()
                    t0 = time.perf_counter()
                    frozen.fit(texts, labels, num_epochs=1, show_progress_bar=False)
                    rec["frozen_fit_seconds"] = time.perf_counter() - t0
                    rec["frozen_macro_f1"], rec["frozen_accuracy"] = score(y_test, frozen.predict(x_test))
                    del frozen
                rec["versions"] = versions()
                rec["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                with open(ARGS.out, "a") as f:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                print(json.dumps({k: v for k, v in rec.items() if k != "train_rows"}), flush=True)


if __name__ == "__main__":
    main()
