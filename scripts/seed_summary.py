#!/usr/bin/env python3
"""Turns the audit reports of scripts/seed_experiment.sh (OUT/audit-*/audit.json) into the
Markdown tables of docs/seed-experiment.md: accuracy with its exact 95% interval per run,
per-class recall before and after stage 2, and every check's verdict.
Usage: scripts/seed_summary.py [OUT]   (default out/seed)"""
import json
import math
import sys
from pathlib import Path


def binom_tail_ge(k, n, p):
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def clopper_pearson(k, n, alpha=0.05):
    """Exact two-sided interval by bisection on the binomial tails."""
    if n == 0:
        return (0.0, 1.0)

    def solve(f):
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2
            if f(mid):
                hi = mid
            else:
                lo = mid
        return (lo + hi) / 2

    low = 0.0 if k == 0 else solve(lambda p: binom_tail_ge(k, n, p) >= alpha / 2)
    high = 1.0 if k == n else solve(lambda p: 1 - binom_tail_ge(k + 1, n, p) <= alpha / 2)
    return (low, high)


def rate(k, n):
    if n == 0:
        return "–"
    lo, hi = clopper_pearson(k, n)
    return f"{k}/{n} = {100 * k / n:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def per_class(audit):
    c = audit["confusion"]
    out = {}
    for i, label in enumerate(c["labels"]):
        n = c["support"][i]
        if n:
            out[label] = (c["matrix"][i][i], n)
    return out


def main(out):
    runs = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("audit-*/audit.json"))}
    print("| run | test crops | accuracy [95% CI] | overall verdict |")
    print("|---|---:|---|---|")
    for name, a in runs.items():
        i = a["accuracy"]["interval"]
        print(f"| {name} | {i['n']} | {rate(i['successes'], i['n'])} | {a['overall']} |")
    for name in ("audit-shift",):
        if name in runs:
            print(f"\nPer class, {name}:\n\n| class | recall [95% CI] |\n|---|---|")
            for label, (k, n) in per_class(runs[name]).items():
                print(f"| {label} | {rate(k, n)} |")
    if "audit-before" in runs and "audit-stage2" in runs:
        before, after = per_class(runs["audit-before"]), per_class(runs["audit-stage2"])
        print("\nStage 2, same held-out photos:\n")
        print("| class | before (stage 1) | after (stage 2) |\n|---|---|---|")
        for label in sorted(set(before) | set(after)):
            print(f"| {label} | {rate(*before.get(label, (0, 0)))} | {rate(*after.get(label, (0, 0)))} |")
    for name, a in runs.items():
        print(f"\nChecks, {name}:\n\n| check | verdict | why |\n|---|---|---|")
        for c in a["checks"]:
            why = c["why"].replace("|", "\\|")
            print(f"| {c['name']} | {c['verdict']} | {why} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/seed"))
