#!/usr/bin/python3
"""run_gp.py: optimization quality of hpod's gp sampler against its peers.

Usage: bench/quality/run_gp.py [--hpod build-gp/daemon/hpod] [--trials 100] [--seeds 10]
                               [--functions branin,...] [--samplers gp,tpe,...] [--jobs 2]

Runs every (function, sampler, seed) study for `trials` sequential ask/tell
rounds and prints, per function, the median and quartiles of the final regret
(best value - optimum) and log10 regret per sampler, which sampler wins, and
the mean rank of each sampler over all (function, seed) pairs (rank 1 = lowest
final best value; ties share the mean rank).

hpod samplers (gp, tpe, random) run through the real daemon over HTTP
(tests/integration/hpodtest.py starts it); Optuna's TPESampler (univariate and
multivariate=True), CmaEsSampler and RandomSampler run in-process (Optuna 3.1,
in-memory storage). Functions are docs/ALGORITHMS.md §8 from the shared
bench/quality/objectives.py (seven continuous ones and the mixed/conditional
one). Seeds are 0..seeds-1 for every sampler. (bench/quality/run.py runs the
same studies with the TPE-focused report; this driver adds the gp checks.)

Standard library plus optuna; Debian's /usr/bin/python3.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import Daemon  # noqa: E402
from objectives import OBJECTIVES, optuna_suggest  # noqa: E402

# Objectives are the shared ones (objectives.py): name -> (space, f(params), optimum).
FUNCTIONS = {name: (o.space, o.f, o.optimum) for name, o in OBJECTIVES.items()}
CONTINUOUS = [f for f in FUNCTIONS if f != "mixed"]

HPOD_SAMPLERS = {"gp": {"type": "gp"}, "tpe": {"type": "tpe"}, "random": {"type": "random"}}
OPTUNA_SAMPLERS = ["optuna-tpe", "optuna-tpe-mv", "optuna-cmaes", "optuna-random"]

# ---- Runners --------------------------------------------------------------------------


def run_hpod(port, fname, sampler, seed, trials):
    from hpodtest import Client
    space, f, _ = FUNCTIONS[fname]
    c = Client(port)
    name = "q-%s-%s-%d-%d" % (fname, sampler, seed, os.getpid())
    c.post("/v1/studies", {"name": name, "params": space,
                           "sampler": dict(HPOD_SAMPLERS[sampler], seed=seed)}).expect(201)
    best, curve, ask_ms = math.inf, [], []
    for _ in range(trials):
        t0 = time.perf_counter()
        t = c.post("/v1/studies/%s/ask" % name).expect(201)
        ask_ms.append(1e3 * (time.perf_counter() - t0))
        v = f(t["params"])
        c.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]), {"value": v}).expect(200)
        best = min(best, v)
        curve.append(best)
    c.delete("/v1/studies/%s" % name)
    c.close()
    return curve, ask_ms


def run_optuna(fname, sampler, seed, trials):
    import warnings
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    space, f, _ = FUNCTIONS[fname]
    s = {"optuna-tpe": lambda: optuna.samplers.TPESampler(seed=seed),
         "optuna-tpe-mv": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True),
         "optuna-cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
         "optuna-random": lambda: optuna.samplers.RandomSampler(seed=seed)}[sampler]()
    study = optuna.create_study(sampler=s)
    best, curve, ask_ms = math.inf, [], []
    for _ in range(trials):
        t0 = time.perf_counter()
        trial = study.ask()
        p = optuna_suggest(trial, space)
        ask_ms.append(1e3 * (time.perf_counter() - t0))
        v = f(p)
        study.tell(trial, v)
        best = min(best, v)
        curve.append(best)
    return curve, ask_ms


def worker(args):
    """Run a list of jobs; hpod jobs share one daemon per worker process."""
    hpod, jobs, trials = args
    out = []
    daemon = None
    try:
        for fname, sampler, seed in jobs:
            if sampler in HPOD_SAMPLERS:
                if daemon is None:
                    daemon = Daemon(hpod)
                    daemon.start()
                curve, ms = run_hpod(daemon.port, fname, sampler, seed, trials)
            else:
                curve, ms = run_optuna(fname, sampler, seed, trials)
            out.append((fname, sampler, seed, curve, ms))
    finally:
        if daemon is not None:
            daemon.stop()
            daemon.close()
    return out


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def quartiles(xs):
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], q[1], q[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build-gp", "daemon", "hpod"))
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--functions", default=",".join(FUNCTIONS))
    ap.add_argument("--samplers", default="gp,tpe,random," + ",".join(OPTUNA_SAMPLERS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", help="JSON file of Optuna results to reuse (they are "
                    "deterministic given the seed); created or extended by this run")
    a = ap.parse_args()
    funcs = a.functions.split(",")
    samplers = a.samplers.split(",")
    cache = {}
    if a.cache and os.path.exists(a.cache):
        with open(a.cache) as fh:
            cache = {tuple(k.split("|")): v for k, v in json.load(fh).items()}
    results = {}
    jobs = []
    for seed in range(a.seeds):
        for f in funcs:
            for s in samplers:
                key = (f, s, str(seed), str(a.trials))
                if s not in HPOD_SAMPLERS and key in cache:
                    results[(f, s, seed)] = cache[key]
                else:
                    jobs.append((f, s, seed))
    # Interleave so each worker gets a mix (timings are side by side).
    chunks = [jobs[i::a.jobs] for i in range(a.jobs)]
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=a.jobs) as ex:
        for part in ex.map(worker, [(a.hpod, ch, a.trials) for ch in chunks]):
            for fname, sampler, seed, curve, ms in part:
                results[(fname, sampler, seed)] = (curve, ms)
    if a.cache:
        for (f, s, seed), v in results.items():
            if s not in HPOD_SAMPLERS:
                cache[(f, s, str(seed), str(a.trials))] = v
        with open(a.cache, "w") as fh:
            json.dump({"|".join(k): v for k, v in cache.items()}, fh)
    print("quality: %d trials, seeds 0..%d, %d studies run (%d Optuna ones from the cache) "
          "in %.0f s" % (a.trials, a.seeds - 1, len(jobs),
                         len(funcs) * len(samplers) * a.seeds - len(jobs), time.time() - t0))
    all_ranks = {s: [] for s in samplers}
    wins = {s: 0 for s in samplers}
    for f in funcs:
        opt = FUNCTIONS[f][2]
        print("\n%s (optimum %.6g): final regret median [q1, q3], median log10 regret, "
              "median ask ms" % (f, opt))
        med = {}
        for s in samplers:
            reg = [max(results[(f, s, seed)][0][-1] - opt, 0.0) for seed in range(a.seeds)]
            ms = [m for seed in range(a.seeds) for m in results[(f, s, seed)][1]]
            q1, q2, q3 = quartiles(reg)
            med[s] = q2
            print("  %-14s %11.4g [%10.4g, %10.4g]  log10 %7.2f  ask %7.2f ms" %
                  (s, q2, q1, q3, math.log10(max(q2, 1e-12)), statistics.median(ms)))
        for seed in range(a.seeds):
            vals = [results[(f, s, seed)][0][-1] for s in samplers]
            for s, r in zip(samplers, ranks(vals)):
                all_ranks[s].append(r)
        best = min(samplers, key=lambda s: med[s])
        wins[best] += 1
        tpes = [s for s in ("optuna-tpe", "optuna-tpe-mv") if s in samplers]
        if "gp" in samplers and tpes:
            better_tpe = min(med[s] for s in tpes)
            print("  gp vs better Optuna TPE (%.4g): %s" %
                  (better_tpe, "gp better" if med["gp"] < better_tpe else "gp NOT better"))
        if f == "mixed" and "gp" in samplers and "random" in samplers:
            print("  gp vs hpod random (%.4g): %s" % (med["random"], "gp at least as good"
                  if med["gp"] <= med["random"] else "gp WORSE"))
    print("\nmean rank over %d functions x %d seeds (1 = best):" % (len(funcs), a.seeds))
    for s in sorted(samplers, key=lambda s: statistics.mean(all_ranks[s])):
        print("  %-14s %.2f   (best median on %d functions)" %
              (s, statistics.mean(all_ranks[s]), wins[s]))
    if "gp" in samplers:
        tpes = [s for s in ("optuna-tpe", "optuna-tpe-mv") if s in samplers]
        if tpes:
            n_better = 0
            for f in funcs:
                if f == "mixed":
                    continue
                opt = FUNCTIONS[f][2]
                meds = {s: statistics.median([results[(f, s, seed)][0][-1] - opt
                                              for seed in range(a.seeds)]) for s in samplers}
                n_better += meds["gp"] < min(meds[s] for s in tpes)
            print("gp beats the better Optuna TPE variant on median final regret on %d of %d "
                  "continuous functions" % (n_better, len([f for f in funcs if f != "mixed"])))


if __name__ == "__main__":
    main()
