#!/usr/bin/python3
"""gp_vs_botorch.py: median regret at 80 trials beside BoTorch's (docs/ALGORITHMS.md §4.9).

Usage: bench/quality/gp_vs_botorch.py RUN.json [RUN.json ...] [--seeds 5] [--at 80]
                                      [--optuna-cache optuna.json]

Reads the raw curves that bench/quality/run.py writes with --out (and,
optionally, the Optuna cache of run_gp.py --cache), takes seeds 0..seeds-1
of every sampler found, and prints per continuous function the median
simple regret after `at` trials of each sampler next to BoTorch 0.18's
figure (SingleTaskGP + LogEI, optimize_acqf(10, 512), 10 Sobol initial
points, 5 seeds x 80 trials; quoted in docs/ALGORITHMS.md §4.9), then for each
sampler on how many functions it is below BoTorch (target for hpod gp: at
least 6 of 8). Standard library only.
"""

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from objectives import OBJECTIVES  # noqa: E402

BOTORCH = {"branin": 3.5e-4, "hartmann3": 5.0e-4, "hartmann6": 0.035, "rosenbrock5": 476.0,
           "ackley5": 5.6, "ackley10": 7.9, "levy5": 0.21, "styblinski_tang5": 23.1}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--at", type=int, default=80)
    ap.add_argument("--optuna-cache")
    a = ap.parse_args()
    curves = {}
    for path in a.runs:
        with open(path) as fh:
            for o, s, seed, c in json.load(fh)["runs"]:
                curves[(o, s, seed)] = c
    if a.optuna_cache:
        with open(a.optuna_cache) as fh:
            for k, v in json.load(fh).items():
                o, s, seed, _ = k.split("|")
                curves[(o, s, int(seed))] = v[0]
    samplers = sorted({s for _, s, _ in curves})
    funcs = [f for f in BOTORCH if any((f, s, 0) in curves for s in samplers)]
    print("median regret after %d trials, seeds 0..%d" % (a.at, a.seeds - 1))
    print("  %-17s %10s  %s" % ("function", "BoTorch", "  ".join("%12s" % s for s in samplers)))
    below = {s: 0 for s in samplers}
    for f in funcs:
        opt = OBJECTIVES[f].optimum
        row = []
        for s in samplers:
            regs = [max(curves[(f, s, k)][a.at - 1] - opt, 0.0) for k in range(a.seeds)
                    if (f, s, k) in curves and len(curves[(f, s, k)]) >= a.at]
            if len(regs) < a.seeds:
                row.append("%12s" % "-")
                continue
            m = statistics.median(regs)
            below[s] += m < BOTORCH[f]
            row.append("%11.3g%s" % (m, "*" if m < BOTORCH[f] else " "))
        print("  %-17s %10.3g  %s" % (f, BOTORCH[f], "  ".join(row)))
    print("  (* = below BoTorch)")
    for s in samplers:
        print("  %-14s below BoTorch on %d of %d" % (s, below[s], len(funcs)))


if __name__ == "__main__":
    main()
