#!/usr/bin/env python3
"""Markdown tables from bench/fewshot.sh's JSON lines: per dataset and samples per class, the
mean macro-F1 over seeds of flywheel's families and of the setfit package, few-shot's gain over
the frozen encoder + logistic head on the same samples, and training seconds with their ratio.

    python3 bench/fewshot_summary.py bench/results/fewshot.jsonl
"""
import collections
import json
import statistics
import sys

# The last line of a (tool, family, dataset, n, seed, cap) wins: a rerun replaces a run.
latest = {}
for line in open(sys.argv[1]):
    if line.strip():
        r = json.loads(line)
        latest[(r["tool"], r["family"], r["dataset"], r["n"], r["seed"], r.get("max_pieces"))] = r
rows = list(latest.values())
groups = collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows:
    key = (r["dataset"], r["n"], r.get("max_pieces"))
    groups[key][(r["tool"], r["family"])].append(r)


def mean(rs, field="macro_f1"):
    v = [r[field] for r in rs]
    return statistics.mean(v) if v else float("nan")


print("| dataset | per class | seeds | flywheel setfit | setfit (Python) | frozen + LR (flywheel) | frozen + LR (Python) "
      "| linear | fasttext | few-shot gain over frozen (flywheel) | train s flywheel / setfit | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
gains = []
for (dataset, n, cap), g in sorted(groups.items(), key=lambda x: (x[0][0], x[0][1], str(x[0][2]))):
    fw, py = g[("flywheel", "setfit")], g[("setfit-py", "setfit")]
    frozen = g[("flywheel", "encoder")]
    seeds = sorted({r["seed"] for r in fw})
    # Gain on the same samples: the seeds both ran.
    paired = [(a["macro_f1"] - b["macro_f1"]) for a in fw for b in frozen if a["seed"] == b["seed"]]
    gain = statistics.mean(paired) if paired else float("nan")
    gains.append(gain)
    t_fw = mean(fw, "train_seconds")
    t_py = mean(py, "train_seconds")
    label = dataset + (f" (≤{cap} pieces)" if cap else "")
    sd = lambda rs: f" ± {statistics.stdev([r['macro_f1'] for r in rs]):.3f}" if len(rs) > 1 else ""
    print(f"| {label} | {n} | {len(seeds)} | {mean(fw):.3f}{sd(fw)} | {mean(py):.3f}{sd(py)} | {mean(frozen):.3f} "
          f"| {mean(g[('setfit-py', 'frozen')]):.3f} | {mean(g[('flywheel', 'linear')]):.3f} "
          f"| {mean(g[('flywheel', 'fasttext')]):.3f} | {gain:+.3f} | {t_fw:.1f} / {t_py:.1f} "
          f"| {t_fw / t_py if py else float('nan'):.2f} |")
valid = [g for g in gains if g == g]
if valid:
    print(f"\nMean few-shot gain over the frozen encoder across rows: {statistics.mean(valid):+.3f}")
