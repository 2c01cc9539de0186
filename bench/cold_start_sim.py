#!/usr/bin/env python3
"""cold_start_sim: the loop from zero labels, on real data.

Starts from a zero-shot model (`flywheel zeroshot`: label names, optional descriptions), then
in rounds the reviewer (the true label) labels the most uncertain texts of an unlabelled pool
(1 - the top probability, as the review queue's uncertainty order) until the labelled set holds
8, 16, 32 and 64 texts per class on average; after each round the loop's model is retrained
few-shot (`--model setfit`) and becomes the model that picks the next round's texts. At each
point the test split's macro-F1 is recorded for the zero-shot start, SetFit, and — trained on
the very same labels — the frozen encoder + logistic head, `linear` and `fasttext`.

Writes a JSON file and an SVG picture.

  python3 bench/cold_start_sim.py --data DIR --encoder DIR [--descriptions FILE]
      [--pool 3000] [--per-class 8,16,32,64] [--seed 0] [--threads 2]
      [--setfit-args "--max-pieces 128"] [--large-args "--pair-iterations 20"]

`--large-args` are added to SetFit's flags once the labelled set exceeds 48 texts (SetFit's
every-pair default grows with the square of the texts). Needs a release build.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {"setfit": "#1f6fb4", "encoder": "#2a9d2a", "linear": "#d9541e", "fasttext": "#8e44ad"}


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def write_rows(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


def run(args):
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def evaluate(bin_, model, test, threads):
    out = run([bin_, "eval", model, test, "--json", "--threads", str(threads)])
    return json.loads(out)["macro_f1"]


def uncertainties(bin_, model, pool_file, threads):
    out = run([bin_, "predict", model, pool_file, "--threads", str(threads)])
    return [1.0 - max(json.loads(line)["scores"].values()) for line in out.splitlines() if line]


def svg(points, zero, path, title):
    w, h, m = 720, 420, 60
    xs = [p["per_class"] for p in points]
    ys = [v for p in points for v in p["macro_f1"].values()] + [zero]
    x0, x1 = 0, max(xs)
    y0, y1 = max(0.0, min(ys) - 0.02), min(1.0, max(ys) + 0.02)
    sx = lambda x: m + (x - x0) / (x1 - x0) * (w - 2 * m)
    sy = lambda y: h - m - (y - y0) / (y1 - y0) * (h - 2 * m)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="24" text-anchor="middle" font-size="15">{title}</text>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">labels per class (chosen by uncertainty)</text>',
           f'<text x="18" y="{h / 2}" text-anchor="middle" transform="rotate(-90 18 {h / 2})">macro-F1 on the test split</text>']
    for x in [0] + xs:
        out.append(f'<text x="{sx(x)}" y="{h - m + 16}" text-anchor="middle">{x}</text>')
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        out.append(f'<text x="{m - 6}" y="{sy(y) + 4}" text-anchor="end">{y:.2f}</text>')
        out.append(f'<line x1="{m}" y1="{sy(y)}" x2="{w - m}" y2="{sy(y)}" stroke="#ddd"/>')
    out.append(f'<line x1="{m}" y1="{sy(zero)}" x2="{w - m}" y2="{sy(zero)}" stroke="#888" stroke-dasharray="4 4"/>')
    out.append(f'<text x="{w - m}" y="{sy(zero) - 4}" text-anchor="end" fill="#555">zero-shot start</text>')
    for k, name in enumerate(COLORS):
        pts = [(0, zero)] if name == "setfit" else []
        pts += [(p["per_class"], p["macro_f1"][name]) for p in points if name in p["macro_f1"]]
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{COLORS[name]}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{COLORS[name]}"/>')
        label = {"setfit": "setfit (the loop's model)", "encoder": "frozen encoder + logistic head"}.get(name, name)
        out.append(f'<text x="{m + 12}" y="{m + 16 + 16 * k}" fill="{COLORS[name]}">— {label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with train.csv and test.csv")
    p.add_argument("--encoder", default=os.path.expanduser("~/.cache/flywheel/encoders/all-minilm-l6-v2"))
    p.add_argument("--descriptions", help="LABEL: DESCRIPTION lines for the zero-shot start")
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "flywheel"))
    p.add_argument("--pool", type=int, default=3000, help="unlabelled texts the reviewer picks from")
    p.add_argument("--per-class", default="8,16,32,64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--setfit-args", default="")
    p.add_argument("--large-args", default="--pair-iterations 20")
    p.add_argument("--json")
    p.add_argument("--svg")
    a = p.parse_args()
    name = os.path.basename(os.path.normpath(a.data))
    a.json = a.json or os.path.join(ROOT, "bench", "results", f"cold-start-{name}.json")
    a.svg = a.svg or os.path.join(ROOT, "docs", "images", f"cold-start-{name}.svg")
    train = read_rows(os.path.join(a.data, "train.csv"))
    test = os.path.join(a.data, "test.csv")
    labels = sorted({l for _, l in train})
    pool = random.Random(a.seed).sample(train, min(a.pool, len(train)))
    work = tempfile.mkdtemp(prefix="cold-start-")
    started = time.time()
    model = os.path.join(work, "zero.fw")
    zs = [a.bin, "zeroshot", "--labels", ",".join(labels), "--encoder", a.encoder, "-o", model,
          "--threads", str(a.threads)]
    if a.descriptions:
        zs += ["--descriptions", a.descriptions]
    run(zs)
    zero = evaluate(a.bin, model, test, a.threads)
    print(f"zero-shot: macro-F1 {zero:.4f}", flush=True)
    labelled, points = [], []
    remaining = list(pool)
    for per_class in [int(x) for x in a.per_class.split(",")]:
        need = per_class * len(labels) - len(labelled)
        pool_file = os.path.join(work, "pool.csv")
        write_rows(pool_file, remaining)
        u = uncertainties(a.bin, model, pool_file, a.threads)
        order = sorted(range(len(remaining)), key=lambda i: (-u[i], i))[:need]
        chosen = set(order)
        labelled += [remaining[i] for i in order]
        remaining = [r for i, r in enumerate(remaining) if i not in chosen]
        data = os.path.join(work, f"labelled-{per_class}.csv")
        write_rows(data, labelled)
        point = {"per_class": per_class, "labels": len(labelled),
                 "class_counts": {l: sum(1 for _, x in labelled if x == l) for l in labels},
                 "macro_f1": {}, "train_seconds": {}}
        for family in COLORS:
            out = os.path.join(work, f"{family}-{per_class}.fw")
            flags = ["--model", family, "--threads", str(a.threads), "--seed", "42"]
            if family in ("setfit", "encoder"):
                flags += ["--encoder", a.encoder]
            if family == "setfit":
                flags += a.setfit_args.split()
                if len(labelled) > 48:
                    flags += a.large_args.split()
            t = time.time()
            run([a.bin, "train", data, "-o", out] + flags)
            point["train_seconds"][family] = round(time.time() - t, 2)
            point["macro_f1"][family] = evaluate(a.bin, out, test, a.threads)
        model = os.path.join(work, f"setfit-{per_class}.fw")
        points.append(point)
        print(json.dumps(point), flush=True)
    result = {"dataset": name, "encoder": a.encoder, "pool": len(pool), "seed": a.seed,
              "threads": a.threads, "setfit_args": a.setfit_args, "large_args": a.large_args,
              "zero_shot_macro_f1": zero, "points": points,
              "seconds": round(time.time() - started, 1)}
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
    os.makedirs(os.path.dirname(a.svg), exist_ok=True)
    svg(points, zero, a.svg, f"From zero labels: {name}")
    print(f"wrote {a.json} and {a.svg}")


if __name__ == "__main__":
    main()
