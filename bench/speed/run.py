#!/usr/bin/python3
"""run.py: the time of one TPE ask with n finished trials in d dimensions,
hpod over HTTP beside Optuna 3.1 in memory, and the daemon's memory.

Usage: /usr/bin/python3 bench/speed/run.py [build/daemon/hpod] [--sizes 1000x5,1000x20,10000x5,10000x20]
           [--asks 30] [--optuna-asks 5] [--optuna-max-n 1000] [--sampler '{"type": "tpe"}']

For each n x d: a study of d floats in [0, 1] gets n complete trials through
POST /v1/studies/{study}/trials with a value (random points, value = squared
distance to (0.3, ..., 0.3)). Then `asks` rounds of ask (timed, the whole
HTTP round trip) and tell (not timed), so n grows by at most `asks`; the
median and 90th percentile are printed. Unless --no-baseline, a second study
with the same trials and the random sampler gets an ask after each timed
one: its median is the HTTP + storage cost under the same load. The daemon's RSS (/proc VmRSS) is
read before the study is created, after it is loaded, and after the asks.

Optuna: the same points as FrozenTrials in an in-memory study, then
`optuna-asks` rounds of study.ask() + suggest_float for the d params + tell,
timed around ask+suggest, for TPESampler() and TPESampler(multivariate=True).
Optuna needs seconds per ask at n = 10,000, so by default it runs only for
n <= --optuna-max-n (1000) and says so.

A 2-core machine shared with others is noisy: compare within one run.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import Client, Daemon  # noqa: E402


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def points(n, d, seed):
    rng = random.Random(seed)
    for _ in range(n):
        x = [rng.random() for _ in range(d)]
        yield x, sum((v - 0.3) ** 2 for v in x)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def load_study(c, name, n, d, sampler):
    params = [{"name": "x%d" % i, "type": "float", "low": 0, "high": 1} for i in range(d)]
    c.post("/v1/studies", {"name": name, "params": params, "sampler": sampler}).expect(201)
    for x, v in points(n, d, 1):
        c.post("/v1/studies/%s/trials" % name,
               {"params": {"x%d" % i: x[i] for i in range(d)}, "value": v}).expect(201)


def ask_tell(c, name, d):
    t0 = time.perf_counter()
    t = c.post("/v1/studies/%s/ask" % name).expect(201)
    ms = 1e3 * (time.perf_counter() - t0)
    v = sum((t["params"]["x%d" % i] - 0.3) ** 2 for i in range(d))
    c.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]), {"value": v}).expect(200)
    return ms


def bench_hpod(daemon, n, d, asks, sampler, baseline):
    """Time asks on a loaded study; with `baseline`, interleave asks on a random-sampler
    study with the same trials, so both see the same machine load."""
    c = Client(daemon.port)
    name = "speed-%d-%d" % (n, d)
    if baseline:
        load_study(c, name + "-random", n, d, {"type": "random", "seed": 0})
    rss0 = rss_mb(daemon.proc.pid)
    t0 = time.perf_counter()
    load_study(c, name, n, d, sampler)
    load_s = time.perf_counter() - t0
    rss1 = rss_mb(daemon.proc.pid)
    times, base = [], []
    for _ in range(asks):
        times.append(ask_tell(c, name, d))
        if baseline:
            base.append(ask_tell(c, name + "-random", d))
    rss2 = rss_mb(daemon.proc.pid)
    c.close()
    return {"median": statistics.median(times), "p90": pct(times, 0.9), "first": times[0],
            "load_s": load_s, "rss_before": rss0, "rss_loaded": rss1, "rss_after": rss2,
            "random": statistics.median(base) if base else None}


def bench_optuna(n, d, asks, multivariate):
    import warnings
    import optuna
    from optuna.distributions import FloatDistribution
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    dists = {"x%d" % i: FloatDistribution(0.0, 1.0) for i in range(d)}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(
        seed=0, multivariate=multivariate))
    study.add_trials([optuna.trial.create_trial(
        params={"x%d" % i: x[i] for i in range(d)}, distributions=dists, value=v)
        for x, v in points(n, d, 1)])
    times = []
    for _ in range(asks):
        t0 = time.perf_counter()
        trial = study.ask()
        x = [trial.suggest_float("x%d" % i, 0.0, 1.0) for i in range(d)]
        times.append(1e3 * (time.perf_counter() - t0))
        study.tell(trial, sum((v - 0.3) ** 2 for v in x))
    return {"median": statistics.median(times), "p90": pct(times, 0.9)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("hpod", nargs="?", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--sizes", default="1000x5,1000x20,10000x5,10000x20")
    ap.add_argument("--asks", type=int, default=30)
    ap.add_argument("--optuna-asks", type=int, default=5)
    ap.add_argument("--optuna-max-n", type=int, default=1000)
    ap.add_argument("--sampler", default='{"type": "tpe", "seed": 0}')
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the interleaved random-sampler study (HTTP + storage cost)")
    a = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    sampler = json.loads(a.sampler)
    daemon = Daemon(a.hpod)
    daemon.start()
    rows = []
    try:
        for n, d in sizes:
            h = bench_hpod(daemon, n, d, a.asks, sampler, not a.no_baseline)
            o1 = o2 = None
            if n <= a.optuna_max_n:
                o1 = bench_optuna(n, d, a.optuna_asks, False)
                o2 = bench_optuna(n, d, a.optuna_asks, True)
            rows.append((n, d, h, o1, o2))
            print("n=%-6d d=%-3d hpod %s: ask median %.2f ms (p90 %.2f, first %.2f); "
                  "load %.1f s; RSS %.1f -> %.1f -> %.1f MB" %
                  (n, d, sampler["type"], h["median"], h["p90"], h["first"], h["load_s"],
                   h["rss_before"], h["rss_loaded"], h["rss_after"]), flush=True)
            if h["random"] is not None:
                print("%18s hpod random on the same trials, interleaved: ask median %.2f ms "
                      "(the HTTP + storage part)" % ("", h["random"]), flush=True)
            if o1:
                print("%18s optuna TPESampler(): median %.1f ms; multivariate=True: %.1f ms;"
                      " ratio to hpod %.0fx / %.0fx" %
                      ("", o1["median"], o2["median"], o1["median"] / h["median"],
                       o2["median"] / h["median"]), flush=True)
            else:
                print("%18s optuna not run at n=%d (> --optuna-max-n %d)" %
                      ("", n, a.optuna_max_n), flush=True)
    finally:
        daemon.stop()
        daemon.close()
    print("\nsummary (ms per ask, median):")
    print("  %-12s %10s %12s %16s %16s" % ("n x d", "hpod", "hpod random", "optuna tpe",
                                            "optuna tpe mv"))
    for n, d, h, o1, o2 in rows:
        print("  %-12s %10.2f %12s %16s %16s" % ("%dx%d" % (n, d), h["median"],
              "%.2f" % h["random"] if h["random"] is not None else "-",
              "%.1f" % o1["median"] if o1 else "not run", "%.1f" % o2["median"] if o2 else
              "not run"))
    big = [r for r in rows if r[0] == 10000 and r[1] == 20]
    if big:
        h = big[0][2]
        print("target n=10000 d=20: median %.2f ms (<= 5 ms: %s); daemon RSS with the study "
              "%.1f MB, study's share %.1f MB (< 50 MB: %s)" %
              (h["median"], "OK" if h["median"] <= 5 else "NOT MET", h["rss_after"],
               h["rss_after"] - h["rss_before"],
               "OK" if h["rss_after"] - h["rss_before"] < 50 else "NOT MET"))


if __name__ == "__main__":
    main()
