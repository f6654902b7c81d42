#!/usr/bin/python3
"""run.py: warm start across studies (issue 17 part 4, docs/ALGORITHMS.md §12).

Usage: /usr/bin/python3 bench/transfer/run.py [build/daemon/hpod] [--seeds 7]
           [--families branin,hartmann6,krr] [--prior-trials 50] [--priors 5]
           [--trials 25] [--out results.json]

Per family and seed: a random family of tasks is drawn (the seed fixes it),
`priors` earlier studies of `prior-trials` trials each are run with hpod's
tpe (seeded), one per earlier task, then the new task is optimized for
`trials` trials four ways: tpe and gp, cold and warm-started from the earlier
studies (`"warm_start": {"studies": [...]}`). Regret = best value so far -
the new task's optimum, in the family's unscaled units.

Families:
  branin     Branin with shifted inputs (|shift| <= 1.5 per coordinate) and
             values scaled by a in [0.5, 2] plus an offset in [-5, 5];
             optimum a * 0.397887 + b (a global minimizer stays inside).
  hartmann6  Hartmann-6 on x - s (|s_j| <= 0.08, optimum stays inside),
             scaled/offset likewise; optimum a * -3.32237 + b.
  krr        scikit-learn KernelRidge (RBF) on the diabetes data (standardized):
             each task is another random subset (200 train / 200 validation
             rows), params alpha in [1e-4, 10] and gamma in [1e-4, 1], both
             log; value = validation mean squared error; the optimum is the
             least value on a 16 x 16 log grid or seen in any run.

Printed: median [q1, q3] regret after 10 and 25 trials per family and
sampler, warm/cold ratios of the medians, and the targets: warm <= half of
cold at 10 trials on at least 2 of 3 families, warm never worse than cold
(beyond noise: the warm median above the cold third quartile counts as worse).
Runs one daemon, sequentially (a few minutes with the defaults).
"""

import argparse
import json
import math
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "bench", "quality"))
from objectives import H6_A, H6_P, branin, hartmann  # noqa: E402

BRANIN_MIN = 0.397887357729738
H6_MIN = -3.32236801141551


class Task:
    """One task of a family: space, f(params) -> value, optimum, unit (regret scale)."""

    def __init__(self, space, f, optimum, unit=1.0):
        self.space, self.f, self.optimum, self.unit = space, f, optimum, unit


def branin_task(rng):
    s1, s2 = rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5)
    a, b = rng.uniform(0.5, 2.0), rng.uniform(-5, 5)
    space = [{"name": "x1", "type": "float", "low": -5, "high": 10},
             {"name": "x2", "type": "float", "low": 0, "high": 15}]
    return Task(space, lambda p: a * branin(p["x1"] - s1, p["x2"] - s2) + b,
                a * BRANIN_MIN + b, a)


def hartmann6_task(rng):
    s = [rng.uniform(-0.08, 0.08) for _ in range(6)]
    a, b = rng.uniform(0.5, 2.0), rng.uniform(-5, 5)
    space = [{"name": "x%d" % i, "type": "float", "low": 0, "high": 1} for i in range(6)]

    def f(p):
        x = [min(1.0, max(0.0, p["x%d" % i] - s[i])) for i in range(6)]
        return a * hartmann(x, H6_A, H6_P) + b
    return Task(space, f, a * H6_MIN + b, a)


_DIABETES = None


def krr_task(rng):
    global _DIABETES
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.kernel_ridge import KernelRidge
    if _DIABETES is None:
        X, y = load_diabetes(return_X_y=True)
        _DIABETES = ((X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std())
    X, y = _DIABETES
    idx = np.random.RandomState(rng.randrange(2 ** 31)).permutation(len(y))
    tr, va = idx[:200], idx[200:400]
    space = [{"name": "alpha", "type": "float", "low": 1e-4, "high": 10, "log": True},
             {"name": "gamma", "type": "float", "low": 1e-4, "high": 1, "log": True}]
    cache = {}

    def f(p):
        key = (p["alpha"], p["gamma"])
        if key not in cache:
            m = KernelRidge(alpha=p["alpha"], kernel="rbf", gamma=p["gamma"]).fit(X[tr], y[tr])
            cache[key] = float(((m.predict(X[va]) - y[va]) ** 2).mean())
        return cache[key]
    task = Task(space, f, None)
    task.optimum = min(f({"alpha": 10 ** (-4 + 5 * i / 15), "gamma": 10 ** (-4 + 4 * j / 15)})
                       for i in range(16) for j in range(16))
    return task


FAMILIES = {"branin": branin_task, "hartmann6": hartmann6_task, "krr": krr_task}
SAMPLERS = ["tpe", "gp"]


def run_study(c, name, task, sampler, trials, warm=None):
    body = {"name": name, "params": task.space, "sampler": sampler}
    if warm:
        body["warm_start"] = {"studies": warm}
    c.post("/v1/studies", body).expect(201)
    best, curve, seen = math.inf, [], []
    for _ in range(trials):
        t = c.post("/v1/studies/%s/ask" % name).expect(201)
        v = task.f(t["params"])
        c.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]), {"value": v}).expect(200)
        best = min(best, v)
        curve.append(best)
        seen.append(v)
    return curve, seen


def one(c, family, seed, args):
    rng = random.Random(1000 * seed + sum(map(ord, family)))
    make = FAMILIES[family]
    priors = []
    for k in range(args.priors):
        task = make(rng)
        name = "p-%s-%d-%d" % (family, seed, k)
        run_study(c, name, task, {"type": "tpe", "seed": 100 * seed + k}, args.prior_trials)
        priors.append(name)
    target = make(rng)
    out = {}
    for s in SAMPLERS:
        for mode in ("cold", "warm"):
            name = "t-%s-%d-%s-%s" % (family, seed, s, mode)
            curve, seen = run_study(c, name, target, {"type": s, "seed": seed}, args.trials,
                                    priors if mode == "warm" else None)
            out["%s-%s" % (s, mode)] = curve
            if target.optimum is not None:
                target.optimum = min(target.optimum, min(seen))
            if mode == "warm":
                ws = c.get("/v1/studies/%s" % name).expect(200)["warm_start"]
                assert ws["trials"] == args.priors * args.prior_trials, ws
    return {k: [(v - target.optimum) / target.unit for v in curve] for k, curve in out.items()}


def quart(xs):
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def fmt(x):
    return "%.3g" % x


def report(results, families, args):
    checkpoints = [c for c in (10, args.trials) if c <= args.trials]
    halves, worse = 0, []
    print("\nmedian [q1, q3] regret over %d seeds (priors: %d studies x %d trials)" %
          (len(next(iter(results.values()))), args.priors, args.prior_trials))
    print("%-10s %-10s " % ("family", "sampler") +
          " ".join("%-28s" % ("@%d" % c) for c in checkpoints) + " warm/cold@10")
    for fam in families:
        runs = results[fam]
        fam_half = False
        for s in SAMPLERS:
            for mode in ("cold", "warm"):
                key = "%s-%s" % (s, mode)
                cells = []
                for c in checkpoints:
                    q1, med, q3 = quart([r[key][c - 1] for r in runs])
                    cells.append("%-28s" % ("%s [%s, %s]" % (fmt(med), fmt(q1), fmt(q3))))
                ratio = ""
                if mode == "warm":
                    mc = quart([r[s + "-cold"][9] for r in runs])
                    mw = quart([r[key][9] for r in runs])
                    ratio = "%.2f" % (mw[1] / mc[1]) if mc[1] > 0 else ("0" if mw[1] == 0 else "inf")
                    if mw[1] <= 0.5 * mc[1]:
                        fam_half = True
                    for c in checkpoints:
                        qc = quart([r[s + "-cold"][c - 1] for r in runs])
                        qw = quart([r[key][c - 1] for r in runs])
                        if qw[1] > qc[2] and qw[1] > qc[1] + 1e-12:
                            worse.append("%s %s @%d" % (fam, s, c))
                print("%-10s %-10s " % (fam, key) + " ".join(cells) + " " + ratio)
        # The family counts when warm halves cold's regret at 10 for tpe or gp.
        halves += fam_half
    print("\ntarget 1: warm <= 1/2 cold at 10 trials (tpe or gp) on %d of %d families: %s" %
          (halves, len(families), "MET" if halves >= min(2, len(families)) else "NOT MET"))
    print("target 2: warm never worse than cold beyond noise: %s" %
          ("MET" if not worse else "NOT MET (" + ", ".join(worse) + ")"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hpod", nargs="?", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--seeds", type=int, default=7)
    ap.add_argument("--families", default="branin,hartmann6,krr")
    ap.add_argument("--priors", type=int, default=5)
    ap.add_argument("--prior-trials", type=int, default=50)
    ap.add_argument("--trials", type=int, default=25)
    ap.add_argument("--out")
    args = ap.parse_args()
    families = args.families.split(",")
    from hpodtest import Client, Daemon
    results = {f: [] for f in families}
    t0 = time.time()
    with Daemon(args.hpod) as d:
        c = Client(d.port)
        for fam in families:
            for seed in range(args.seeds):
                results[fam].append(one(c, fam, seed, args))
            print("%s: %d seeds done (%.0f s)" % (fam, args.seeds, time.time() - t0), flush=True)
    if args.out:
        with open(args.out, "w") as fp:
            json.dump(results, fp)
    report(results, families, args)


if __name__ == "__main__":
    main()
