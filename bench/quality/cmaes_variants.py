#!/usr/bin/python3
"""cmaes_variants.py: hpod's cmaes variants beside Optuna 3.1's CmaEsSampler, fast.

Usage: /usr/bin/python3 bench/quality/cmaes_variants.py build/daemon/hpod [--seeds 40]
           [--trials 100] [--objectives branin,...] [--shift] [--jobs 1] [--check]
           --v NAME=JSON [--v NAME=JSON ...]

A variant named `optuna` (JSON ignored) is Optuna 3.1's CmaEsSampler(seed=s) run
without Optuna: the same calls to the `cmaes` library in the same order from the
same numpy RandomStates (trial 0 from the RandomSampler, then CMA with mean the
centre, sigma0 min range / 6, n_max_resampling 10n, generations told at the first
ask after lambda of them finished, the optimizer reseeded at every ask). It gives
Optuna's own trials bit for bit (`--check` compares one seed with real Optuna)
at a fraction of the cost. Every other name is an hpod sampler object run
through a daemon (bench/quality/run.py's run_hpod).

Printed: the median final regret per objective and variant, with the
Mann-Whitney p-value of each variant against the first. `--shift` moves each
objective by a seed-dependent shift of up to a quarter of the range per
coordinate (optimum kept inside): a default that only helps because the
optima of docs/ALGORITHMS.md §8 sit near the centre of their boxes shows up
here. Continuous objectives only.
"""

import argparse
import json
import math
import os
import pickle
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
from objectives import OBJECTIVES, Objective, optuna_suggest  # noqa: E402
from run import run_hpod  # noqa: E402

CONTINUOUS = "branin,hartmann3,hartmann6,rosenbrock5,ackley5,ackley10,levy5,styblinski_tang5"
ARGMIN = {"branin": [-math.pi, 12.275], "hartmann3": [0.114589, 0.555649, 0.852547],
          "hartmann6": [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573],
          "rosenbrock5": [1.0] * 5, "ackley5": [0.0] * 5, "ackley10": [0.0] * 10,
          "levy5": [1.0] * 5, "styblinski_tang5": [-2.903534027771178] * 5}


def shifted(obj, seed):
    rs = np.random.RandomState(1000 + seed)
    lo = np.array([d["low"] for d in obj.space], float)
    hi = np.array([d["high"] for d in obj.space], float)
    x, w = np.array(ARGMIN[obj.name]), hi - lo
    s = np.clip(x + rs.uniform(-0.25, 0.25, len(lo)) * w, lo + 0.05 * w, hi - 0.05 * w) - x
    names = [d["name"] for d in obj.space]
    return Objective(obj.name, obj.space,
                     lambda p: obj.f({k: p[k] - s[i] for i, k in enumerate(names)}), obj.optimum)


def optuna_points(obj, seed, trials):
    """Optuna 3.1 CmaEsSampler(seed=seed)'s sequential study, as (x, value) per trial."""
    import cmaes
    sp = obj.space
    n = len(sp)
    lo = np.array([d["low"] for d in sp], float)
    hi = np.array([d["high"] for d in sp], float)
    cma_rng, ind_rng = np.random.RandomState(seed), np.random.RandomState(seed)
    saved, gen, out = None, [], []
    for t in range(trials):
        if t == 0:  # n_startup_trials = 1: the independent RandomSampler
            x = np.array([ind_rng.uniform(lo[i], hi[i]) for i in range(n)])
        else:
            if saved is None:
                opt = cmaes.CMA(mean=lo + (hi - lo) / 2, sigma=float(np.min(hi - lo) / 6),
                                bounds=np.stack([lo, hi], 1),
                                seed=cma_rng.randint(1, 2 ** 31 - 2), n_max_resampling=10 * n)
            else:
                opt = pickle.loads(saved)
            if len(gen) >= opt.population_size:
                opt.tell(gen[:opt.population_size])
                gen = []
                saved = pickle.dumps(opt)
            opt._rng.seed(cma_rng.randint(1, 2 ** 16) + t)
            x = opt.ask()
        v = obj.f({d["name"]: float(x[i]) for i, d in enumerate(sp)})
        if t > 0:
            gen.append((x, v))
        out.append((x, v))
    return out


def check_against_optuna(obj, seed, trials):
    import warnings
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    study = optuna.create_study(sampler=optuna.samplers.CmaEsSampler(seed=seed))
    mine = optuna_points(obj, seed, trials)
    for k in range(trials):
        t = study.ask()
        p = optuna_suggest(t, obj.space)
        study.tell(t, obj.f(p))
        got = [p[d["name"]] for d in obj.space]
        if list(mine[k][0]) != got:
            return "trial %d differs: %r vs Optuna's %r" % (k, list(mine[k][0]), got)
    return None


def worker(args):
    hpod, jobs, trials, shift = args
    from hpodtest import Daemon
    d, out = None, []
    try:
        for oname, name, spec, seed in jobs:
            obj = shifted(OBJECTIVES[oname], seed) if shift else OBJECTIVES[oname]
            if name == "optuna":
                best, curve = math.inf, []
                for _, v in optuna_points(obj, seed, trials):
                    best = min(best, v)
                    curve.append(best)
            else:
                if d is None:
                    d = Daemon(hpod)
                    d.start()
                curve = run_hpod(d, spec, obj, seed, trials)
            out.append((oname, name, seed, curve))
    finally:
        if d is not None:
            d.stop()
            d.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("hpod")
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--objectives", default=CONTINUOUS)
    ap.add_argument("--shift", action="store_true")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--check", action="store_true", help="compare with real Optuna first")
    ap.add_argument("--v", action="append", default=[], help="NAME=JSON hpod sampler object")
    a = ap.parse_args()
    objs = a.objectives.split(",")
    if a.check:
        for o in objs:
            err = check_against_optuna(OBJECTIVES[o], 0, a.trials)
            print("check %s seed 0: %s" % (o, err or "same trials as Optuna's CmaEsSampler"))
            if err:
                return 1
    variants = [(v.split("=", 1)[0], json.loads(v.split("=", 1)[1])) for v in a.v]
    jobs = [(o, s, spec, k) for o in objs for s, spec in variants for k in range(a.seeds)]
    t0, res = time.time(), {}
    with ProcessPoolExecutor(a.jobs) as ex:
        for part in ex.map(worker, [(a.hpod, jobs[i::a.jobs], a.trials, a.shift)
                                    for i in range(a.jobs)]):
            for o, s, k, c in part:
                res[(o, s, k)] = c
    from scipy.stats import mannwhitneyu
    names = [s for s, _ in variants]
    print("%d trials x %d seeds%s, %.0f s; median final regret (p: Mann-Whitney vs %s)" %
          (a.trials, a.seeds, ", shifted" if a.shift else "", time.time() - t0, names[0]))
    print("  %-17s" % "objective" + "".join("%12s" % s for s in names))
    for o in objs:
        opt = OBJECTIVES[o].optimum
        reg = {s: [max(res[(o, s, k)][-1] - opt, 0.0) for k in range(a.seeds)] for s in names}
        print("  %-17s" % o + "".join("%12.4g" % statistics.median(reg[s]) for s in names) +
              "   p " + " ".join("%.3f" % mannwhitneyu(reg[names[0]], reg[s]).pvalue
                                 for s in names[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
