#!/usr/bin/python3
"""run.py: optimization quality of hpod's samplers beside Optuna's, side by side.

Usage: /usr/bin/python3 bench/quality/run.py [build/daemon/hpod] [--trials 100] [--seeds 10]
           [--objectives branin,...] [--samplers hpod-tpe,hpod-random,optuna-tpe,optuna-tpe-mv]
           [--extra NAME=JSON ...] [--jobs 2] [--out results.json] [--load results.json]

Every (objective, sampler, seed) is one study of `trials` sequential ask/tell
rounds. hpod samplers run through a real daemon over HTTP (one per worker,
started by tests/integration/hpodtest.py on 127.0.0.1:0 with a temp db);
Optuna 3.1 samplers run in process with in-memory storage. Objectives are
docs/ALGORITHMS.md §8 (bench/quality/objectives.py). Seeds are 0..seeds-1
for every sampler (hpod `sampler.seed`, Optuna `seed=`).

Printed per objective: the median best-so-far at 25/50/100 trials, the median
[q1, q3] final regret (best - optimum), and the mean rank (1 = lowest final
best value among the samplers run, ties share the mean rank). Then the mean
rank over all objectives and seeds, and the checks of issue 3 for hpod-tpe
against the better (by mean rank) of Optuna's two TPE variants.

The sampler list is data: add an entry to SAMPLERS (hpod: the study's
`sampler` object; optuna: a factory) or pass --extra name='{"type": "tpe", ...}'
for an hpod variant.
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
from objectives import OBJECTIVES, optuna_suggest  # noqa: E402


def _optuna(cls, **kw):
    def make(seed):
        import optuna
        return getattr(optuna.samplers, cls)(seed=seed, **kw)
    return make


# name -> ("hpod", sampler object) | ("optuna", factory(seed) -> sampler)
SAMPLERS = {
    "hpod-tpe": ("hpod", {"type": "tpe"}),
    "hpod-random": ("hpod", {"type": "random"}),
    "hpod-gp": ("hpod", {"type": "gp"}),
    "optuna-tpe": ("optuna", _optuna("TPESampler")),
    "optuna-tpe-mv": ("optuna", _optuna("TPESampler", multivariate=True)),
    "optuna-random": ("optuna", _optuna("RandomSampler")),
    "optuna-cmaes": ("optuna", _optuna("CmaEsSampler")),
    "hpod-cmaes": ("hpod", {"type": "cmaes"}),
    "hpod-qmc": ("hpod", {"type": "qmc"}),
    # Optuna 3.1's QMCSampler defaults to scramble=False; scrambled, so seeds differ.
    "optuna-qmc": ("optuna", _optuna("QMCSampler", scramble=True)),
}
# Pairs compared per objective after the table: (hpod sampler, its Optuna counterpart).
PAIRS = [("hpod-cmaes", "optuna-cmaes"), ("hpod-qmc", "optuna-qmc")]
DEFAULT_SAMPLERS = ["hpod-tpe", "hpod-random", "optuna-tpe", "optuna-tpe-mv"]
CHECKPOINTS = (25, 50, 100)


def run_hpod(daemon, sampler_obj, obj, seed, trials):
    from hpodtest import Client
    c = Client(daemon.port)
    name = "q-%s-%d-%d-%d" % (obj.name, seed, os.getpid(), int(time.time() * 1e6) % 10 ** 9)
    c.post("/v1/studies", {"name": name, "params": obj.space,
                           "sampler": dict(sampler_obj, seed=seed)}).expect(201)
    curve, best = [], math.inf
    for _ in range(trials):
        t = c.post("/v1/studies/%s/ask" % name).expect(201)
        v = obj.f(t["params"])
        c.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]), {"value": v}).expect(200)
        best = min(best, v)
        curve.append(best)
    c.delete("/v1/studies/%s" % name)
    c.close()
    return curve


def run_optuna(factory, obj, seed, trials):
    import warnings
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    study = optuna.create_study(sampler=factory(seed))
    curve, best = [], math.inf
    for _ in range(trials):
        trial = study.ask()
        v = obj.f(optuna_suggest(trial, obj.space))
        study.tell(trial, v)
        best = min(best, v)
        curve.append(best)
    return curve


def worker(args):
    """Run a list of jobs; the hpod ones share one daemon per worker process."""
    hpod, jobs, trials, extra = args
    from hpodtest import Daemon
    table = dict(SAMPLERS)
    table.update({k: ("hpod", v) for k, v in extra.items()})
    out, daemon = [], None
    try:
        for oname, sname, seed in jobs:
            kind, spec = table[sname]
            t0 = time.perf_counter()
            if kind == "hpod":
                if daemon is None:
                    daemon = Daemon(hpod)
                    daemon.start()
                curve = run_hpod(daemon, spec, OBJECTIVES[oname], seed, trials)
            else:
                curve = run_optuna(spec, OBJECTIVES[oname], seed, trials)
            out.append((oname, sname, seed, curve, time.perf_counter() - t0))
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
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def report(results, objectives, samplers, seeds, trials):
    cps = [c for c in CHECKPOINTS if c <= trials]
    all_ranks = {s: [] for s in samplers}
    med_regret = {}
    for oname in objectives:
        opt = OBJECTIVES[oname].optimum
        print("\n%s (optimum %.10g)" % (oname, opt))
        print("  %-16s %s  %-32s %s" % ("sampler", "  ".join("best@%-3d   " % c for c in cps),
                                        "final regret median [q1, q3]", "mean rank"))
        obj_ranks = {s: [] for s in samplers}
        for seed in range(seeds):
            vals = [results[(oname, s, seed)][-1] for s in samplers]
            for s, r in zip(samplers, ranks(vals)):
                obj_ranks[s].append(r)
                all_ranks[s].append(r)
        for s in samplers:
            curves = [results[(oname, s, seed)] for seed in range(seeds)]
            at = ["%11.5g" % statistics.median(c[cp - 1] for c in curves) for cp in cps]
            reg = [max(c[-1] - opt, 0.0) for c in curves]
            q1, q2, q3 = quartiles(reg)
            med_regret[(oname, s)] = q2
            print("  %-16s %s  %10.4g [%9.3g, %9.3g]  %6.2f" %
                  (s, "  ".join(at), q2, q1, q3, statistics.mean(obj_ranks[s])))
    print("\nmean rank over %d objectives x %d seeds (1 = best of %d):" %
          (len(objectives), seeds, len(samplers)))
    mean_rank = {s: statistics.mean(all_ranks[s]) for s in samplers}
    for s in sorted(samplers, key=lambda s: mean_rank[s]):
        print("  %-16s %.3f" % (s, mean_rank[s]))
    for mine, ref in PAIRS:
        if mine not in samplers or ref not in samplers:
            continue
        print("\n%s against %s (median final regret):" % (mine, ref))
        n_ok = 0
        for oname in objectives:
            a, b = med_regret[(oname, mine)], med_regret[(oname, ref)]
            n_ok += a <= b
            print("    %-18s %10.4g vs %10.4g  %s" % (oname, a, b, "ok" if a <= b else "worse"))
        print("  no worse on %d of %d" % (n_ok, len(objectives)))
    tpes = [s for s in ("optuna-tpe", "optuna-tpe-mv") if s in samplers]
    for mine in [s for s in samplers if s.startswith("hpod-tpe")]:
        if not tpes:
            break
        ref = min(tpes, key=lambda s: mean_rank[s])
        print("\nchecks for %s against %s (the better Optuna TPE by mean rank):" % (mine, ref))
        print("  mean rank %.3f vs %.3f: %s" % (mean_rank[mine], mean_rank[ref],
              "OK" if mean_rank[mine] <= mean_rank[ref] else "NOT MET"))
        n_ok = 0
        for oname in objectives:
            a, b = med_regret[(oname, mine)], med_regret[(oname, ref)]
            n_ok += a <= b
            print("    %-18s median regret %10.4g vs %10.4g  %s" %
                  (oname, a, b, "ok" if a <= b else "worse"))
        need = math.ceil(0.75 * len(objectives))
        print("  median final regret no worse on %d of %d (target >= %d): %s" %
              (n_ok, len(objectives), need, "OK" if n_ok >= need else "NOT MET"))
        if "hpod-random" in samplers:
            worse = []
            for oname in objectives:
                a, r = med_regret[(oname, mine)], med_regret[(oname, "hpod-random")]
                print("    %-18s regret / random's regret = %.3g" %
                      (oname, a / r if r > 0 else float("nan")))
                if not a < r:
                    worse.append(oname)
            print("  better than random on all: %s" % ("OK" if not worse else
                                                       "NOT MET on " + ", ".join(worse)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("hpod", nargs="?", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS))
    ap.add_argument("--extra", action="append", default=[],
                    help="an extra hpod sampler: NAME=JSON sampler object")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", help="write raw curves to this JSON file")
    ap.add_argument("--load", help="report from JSON files written by --out (comma-separated; "
                    "a later file's runs replace an earlier one's); run nothing")
    a = ap.parse_args()
    objectives = a.objectives.split(",")
    samplers = a.samplers.split(",")
    extra = {}
    for e in a.extra:
        name, spec = e.split("=", 1)
        extra[name] = json.loads(spec)
        if name not in samplers:
            samplers.append(name)
    for s in samplers:
        if s not in SAMPLERS and s not in extra:
            ap.error("unknown sampler %r (known: %s)" % (s, ", ".join(SAMPLERS)))
    results = {}
    if a.load:
        for path in a.load.split(","):
            with open(path) as fh:
                for o, s, seed, curve in json.load(fh)["runs"]:
                    results[(o, s, seed)] = curve
        print("quality: loaded %s" % a.load)
    else:
        if any(s in extra or SAMPLERS[s][0] == "hpod" for s in samplers) and \
                not os.access(a.hpod, os.X_OK):
            ap.error("no hpod binary at %s" % a.hpod)
        jobs = [(o, s, seed) for seed in range(a.seeds) for o in objectives for s in samplers]
        chunks = [jobs[i::a.jobs] for i in range(a.jobs)]
        t0 = time.time()
        secs = {s: 0.0 for s in samplers}
        with ProcessPoolExecutor(max_workers=a.jobs) as ex:
            for part in ex.map(worker, [(a.hpod, ch, a.trials, extra) for ch in chunks]):
                for o, s, seed, curve, dt in part:
                    results[(o, s, seed)] = curve
                    secs[s] += dt
        print("quality: %d trials, seeds 0..%d, %d studies in %.0f s (hpod: %s)" %
              (a.trials, a.seeds - 1, len(jobs), time.time() - t0, a.hpod))
        print("  wall time per study (incl. objective): " + ", ".join(
            "%s %.2f s" % (s, secs[s] / (a.seeds * len(objectives))) for s in samplers))
        if a.out:
            with open(a.out, "w") as fh:
                json.dump({"trials": a.trials, "seeds": a.seeds,
                           "runs": [[o, s, seed, c] for (o, s, seed), c in results.items()]}, fh)
    report(results, objectives, samplers, a.seeds, a.trials)


if __name__ == "__main__":
    main()
