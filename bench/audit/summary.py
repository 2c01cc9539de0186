"""The injected-noise table from bench/audit/noise.py's JSON lines (means over seeds).

    python3 bench/audit/summary.py bench/results/audit-noise.jsonl
"""

import collections
import json
import statistics
import sys


def main(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    groups = collections.OrderedDict()
    for r in rows:
        groups.setdefault((r["dataset"], r["kind"], r["rate"]), {}).setdefault(r["tool"], []).append(r)
    print("| dataset | noise | rate | seeds | flywheel P / R / F1 | cleanlab P / R / F1 | flywheel s | cleanlab s | time ratio |")
    print("|---|---|---:|---:|---|---|---:|---:|---:|")
    f1s = {"flywheel": [], "cleanlab": []}
    secs = {"flywheel": 0.0, "cleanlab": 0.0}
    for (ds, kind, rate), tools in groups.items():
        if "flywheel" not in tools or "cleanlab" not in tools:
            continue
        m = {t: {k: statistics.mean(x[k] for x in v) for k in ("precision", "recall", "f1", "seconds")}
             for t, v in tools.items()}
        for t in f1s:
            f1s[t].append(m[t]["f1"])
            secs[t] += sum(x["seconds"] for x in tools[t])
        fw, cl = m["flywheel"], m["cleanlab"]
        print(f"| {ds} | {kind} | {rate:.0%} | {len(tools['flywheel'])} | "
              f"{fw['precision']:.3f} / {fw['recall']:.3f} / **{fw['f1']:.3f}** | "
              f"{cl['precision']:.3f} / {cl['recall']:.3f} / **{cl['f1']:.3f}** | "
              f"{fw['seconds']:.1f} | {cl['seconds']:.1f} | {cl['seconds'] / fw['seconds']:.1f}× |")
    n = len(f1s["flywheel"])
    print(f"\nMean F1 over {n} settings: flywheel {statistics.mean(f1s['flywheel']):.4f}, "
          f"cleanlab {statistics.mean(f1s['cleanlab']):.4f}; wall time in all: flywheel "
          f"{secs['flywheel']:.0f} s, cleanlab {secs['cleanlab']:.0f} s "
          f"({secs['cleanlab'] / secs['flywheel']:.1f}×).")
    print("\n| dataset | noise | rate | clean | noisy | flagged dropped | flagged relabelled |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (ds, kind, rate), tools in groups.items():
        fw = [x for x in tools.get("flywheel", []) if x.get("test_macro_f1_noisy") is not None]
        if not fw:
            continue
        mean = lambda k: statistics.mean(x[k] for x in fw)
        print(f"| {ds} | {kind} | {rate:.0%} | {fw[0]['test_macro_f1_clean']:.4f} | {mean('test_macro_f1_noisy'):.4f} | "
              f"{mean('test_macro_f1_dropped'):.4f} | {mean('test_macro_f1_relabelled'):.4f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/audit-noise.jsonl")
