#!/usr/bin/python3
"""run.py: report + pruning decision latency through HTTP on studies with 10,000
finished trials of 100 steps each (target: at most 1 ms median).

Usage: bench/pruning/run.py [--hpod build-pruners/daemon/hpod] [--trials 10000] [--steps 100]
                            [--pruners none,median,asha,hyperband] [--reports 20000]
                            [--rounds 3] [--threads 2] [--optuna]

One daemon, one study per pruner (random sampler, one float param). Each study is
loaded over HTTP by bench/pruning/loader.c (C + libcurl, keep-alive, --threads
connections: ask, 100 reports, tell complete; 1.02M requests per study), and the
load time is printed. Then, in `rounds` rounds that visit the studies in turn (so a
busy moment on the shared machine hits every pruner alike), `loader measure` times
`reports` reports on one keep-alive connection: new trials report steps 0.. until
the pruner says prune (then tell pruned) or 100 steps (then tell complete). Each
latency is request sent -> {"prune": b} parsed. The "none" study is the baseline:
the HTTP + storage cost without a pruner.

With --optuna, Optuna 3.1's pruners are timed in process on the same kind of
history (InMemoryStorage, 10,000 complete trials added with add_trials; timed:
trial.report + trial.should_prune, no HTTP), as a point of comparison.

loader is compiled by this script: cc -O2 loader.c $(pkg-config --cflags --libs libcurl) -pthread -lm
"""

import argparse
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import Daemon, build_curl_tool  # noqa: E402

SPACE = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]
PRUNERS = {
    "none": {"type": "none"},
    "median": {"type": "median"},
    "percentile": {"type": "percentile", "percentile": 25.0},
    "running_average": {"type": "median", "compare": "running_average"},
    "asha": {"type": "asha"},
    "hyperband": {"type": "hyperband"},
}
TARGET_US = 1000.0


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(cmd), r.stdout))
    return r.stdout.strip()


def optuna_peer(name, trials, steps, reports):
    import optuna
    from optuna.distributions import FloatDistribution
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = {"median": optuna.pruners.MedianPruner(),
              "percentile": optuna.pruners.PercentilePruner(25.0),
              "asha": optuna.pruners.SuccessiveHalvingPruner(),
              "hyperband": optuna.pruners.HyperbandPruner()}.get(name)
    if pruner is None:
        return None
    rng = random.Random(1)
    study = optuna.create_study(pruner=pruner, study_name="bench-" + name)
    dist = {"x": FloatDistribution(0.0, 1.0)}

    def curve():
        f, s, r, n = (0.05 + 0.55 * rng.random(), 0.8 + 0.4 * rng.random(),
                      0.02 + 0.3 * rng.random(), 0.02 * rng.random())
        return lambda k: f + (s - f) * math.exp(-r * k) + n * (rng.random() - 0.5)
    frozen = []
    for _ in range(trials):
        c = curve()
        iv = {k: c(k) for k in range(steps)}
        frozen.append(optuna.trial.create_trial(params={"x": rng.random()}, distributions=dist,
                                                value=iv[steps - 1], intermediate_values=iv))
    study.add_trials(frozen)
    lat = []
    while len(lat) < reports:
        t = study.ask(dist)
        c = curve()
        pruned = False
        for k in range(steps):
            v = c(k)
            t0 = time.perf_counter()
            t.report(v, k)
            p = t.should_prune()
            lat.append(time.perf_counter() - t0)
            if p or len(lat) >= reports:
                pruned = p
                break
        study.tell(t, state=optuna.trial.TrialState.PRUNED) if pruned else study.tell(t, v)
    lat.sort()
    return lat[len(lat) // 2] * 1e6, lat[len(lat) * 9 // 10] * 1e6, len(lat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build-pruners", "daemon", "hpod"))
    ap.add_argument("--trials", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--pruners", default="none,median,asha,hyperband")
    ap.add_argument("--reports", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optuna", action="store_true")
    args = ap.parse_args()
    names = args.pruners.split(",")

    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as tmp:
        loader = build_curl_tool(os.path.join(HERE, "loader.c"), tmp)
        d = Daemon(args.hpod)
        d.start()
        try:
            url = "http://127.0.0.1:%d" % d.port
            print("hpod %s, %d finished trials x %d steps per study, loader threads %d"
                  % (args.hpod, args.trials, args.steps, args.threads), flush=True)
            for n in names:
                d.post("/v1/studies", {"name": "bench-" + n, "params": SPACE,
                                       "sampler": {"type": "random", "seed": 1},
                                       "pruner": PRUNERS[n]}).expect(201, "create")
                t0 = time.monotonic()
                out = run([loader, "load", "--url", url, "--study", "bench-" + n,
                           "--trials", str(args.trials), "--steps", str(args.steps),
                           "--threads", str(args.threads)])
                print("%-16s %s (%.0f s)" % (n, out, time.monotonic() - t0), flush=True)
                s = d.get("/v1/studies/bench-" + n).expect(200, "study")
                assert s["trials"]["complete"] == args.trials, s["trials"]
            results = {n: [] for n in names}
            for r in range(args.rounds):
                for n in names:
                    out = run([loader, "measure", "--url", url, "--study", "bench-" + n,
                               "--reports", str(args.reports // args.rounds),
                               "--steps", str(args.steps), "--seed", str(100 + r)])
                    m = re.search(r"median ([\d.]+) us, p90 ([\d.]+) us, p99 ([\d.]+) us", out)
                    results[n].append(tuple(float(x) for x in m.groups()))
                    print("round %d %-16s %s" % (r + 1, n, out), flush=True)
            rss = open("/proc/%d/status" % d.proc.pid).read()
            rss = re.search(r"VmRSS:\s+(\d+) kB", rss).group(1)
        finally:
            d.close()

    print("\nreport + decision latency through HTTP (median of the rounds' medians; "
          "%d x %d history):" % (args.trials, args.steps))
    base = statistics.median(r[0] for r in results["none"]) if "none" in results else None
    worst = 0.0
    for n in names:
        med = statistics.median(r[0] for r in results[n])
        p90 = statistics.median(r[1] for r in results[n])
        p99 = statistics.median(r[2] for r in results[n])
        worst = max(worst, med)
        extra = " (%.2fx none)" % (med / base) if base else ""
        print("  %-16s median %7.1f us  p90 %7.1f us  p99 %8.1f us%s" % (n, med, p90, p99, extra))
    print("hpod RSS after loading: %.0f MB" % (int(rss) / 1024.0))
    if args.optuna:
        print("\nOptuna 3.1 in process (no HTTP), report + should_prune, same history size:")
        for n in names:
            r = optuna_peer(n, args.trials, args.steps, 300)
            if r is not None:
                print("  %-16s median %9.1f us  p90 %9.1f us  (%d reports)" % (n, r[0], r[1], r[2]),
                      flush=True)
    ok = worst <= TARGET_US
    print("\n%s: worst median %.1f us (target <= %.0f us)" % ("PASS" if ok else "FAIL", worst,
                                                             TARGET_US))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
