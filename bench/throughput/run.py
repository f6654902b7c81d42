#!/usr/bin/python3
"""run.py: ask+tell throughput of hpod over HTTP vs Optuna 3.1 with RDBStorage on SQLite.

Usage: bench/throughput/run.py [--hpod build-it/daemon/hpod] [--seconds 5] [--repeat 3]
                               [--clients 1,8] [--optuna-seconds 5] [--optuna-procs 1,8]
                               [--synchronous normal|full]

In one run, `repeat` rounds of: hpod with 1 and with 8 concurrent clients
(bench/throughput/loadgen.c: C + libcurl, one keep-alive connection per client
thread, a fresh study with the random sampler per measurement, the daemon's
default synchronous), then Optuna doing the same loop in-process
(study.ask(distributions) / study.tell) with RDBStorage on a fresh
sqlite:///<tmp>/optuna.db and RandomSampler: in one process, and in 8
processes sharing one study (forked, started together; the same concurrency
as hpod's 8 clients). The same three-parameter space
(float, log int, categorical) for both. Prints every round, the medians and the
ratios, plus the CPU seconds used by the load generator and by hpod, so one can
see that the generator is not the bottleneck.

loadgen is compiled by this script: cc -O2 loadgen.c $(pkg-config --cflags --libs libcurl) -pthread -lm
Standard library only (plus optuna for the peer); Debian's /usr/bin/python3.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import Daemon, build_curl_tool  # noqa: E402

SPACE = [{"name": "x", "type": "float", "low": -5, "high": 5},
         {"name": "n", "type": "int", "low": 1, "high": 100, "log": True},
         {"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}]
TARGET_PAIRS = 2000.0
TARGET_RATIO = 100.0


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)


def run_hpod(d, loadgen, study, clients, seconds):
    d.post("/v1/studies", {"name": study, "params": SPACE,
                           "sampler": {"type": "random", "seed": 1}}).expect(201)
    d.close_clients()
    cpu0 = proc_cpu_seconds(d.proc.pid)
    out = subprocess.run([loadgen, "--url", "http://127.0.0.1:%d" % d.port, "--study", study,
                          "--clients", str(clients), "--seconds", str(seconds), "--warmup", "0.5"],
                         capture_output=True, text=True, timeout=seconds + 120)
    cpu1 = proc_cpu_seconds(d.proc.pid)
    if out.returncode != 0:
        sys.exit("loadgen failed (%d): %s %s" % (out.returncode, out.stdout, out.stderr))
    res = dict(kv.split("=") for kv in out.stdout.split())
    res = {k: float(v) for k, v in res.items()}
    # hpod CPU is measured over warm-up + window; scale it to the window's share.
    res["hpod_cpu_pct"] = 100.0 * (cpu1 - cpu0) / (seconds + 0.5)
    return res


def optuna_dists():
    import optuna
    return {"x": optuna.distributions.FloatDistribution(-5, 5),
            "n": optuna.distributions.IntDistribution(1, 100, log=True),
            "c": optuna.distributions.CategoricalDistribution(["a", "b", "c"])}


def optuna_worker(url, name, start, seconds, out):
    """One Optuna process: ask/tell on the shared study from `start` for `seconds`."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = optuna_dists()
    study = optuna.load_study(study_name=name, storage=optuna.storages.RDBStorage(url),
                              sampler=optuna.samplers.RandomSampler())
    n = errors = 0
    while time.time() < start:
        time.sleep(0.001)
    while time.time() - start < seconds:
        try:
            t = study.ask(dists)
            study.tell(t, float(n % 7))
            n += 1
        except Exception:  # "database is locked" under contention: count, go on
            errors += 1
    out.put((n, errors))


def optuna_processes(url, name, seconds, procs):
    """`procs` forked optuna_worker processes on study `name`, started together; (pairs, errors)."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start = time.time() + 3.0  # every process has imported and opened the study by then
    workers = [ctx.Process(target=optuna_worker, args=(url, name, start, seconds, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    results = [out.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    return sum(r[0] for r in results), sum(r[1] for r in results)


def run_optuna(db_dir, seconds, procs=1):
    """Optuna's ask/tell loop with RDBStorage on one SQLite file, in `procs` processes."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = "sqlite:///" + os.path.join(db_dir, "optuna-%d.db" % time.monotonic_ns())
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name="bench",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    dists = optuna_dists()
    for _ in range(5):  # warm-up: tables, caches
        t = study.ask(dists)
        study.tell(t, 0.0)
    if procs == 1:
        n = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            t = study.ask(dists)
            study.tell(t, float(n % 7))
            n += 1
        dt = time.monotonic() - t0
        return {"pairs": n, "seconds": dt, "pairs_per_s": n / dt, "errors": 0,
                "version": optuna.__version__}
    n, errors = optuna_processes(url, "bench", seconds, procs)
    return {"pairs": n, "seconds": seconds, "pairs_per_s": n / seconds,
            "errors": errors, "version": optuna.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build-it", "daemon", "hpod"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--optuna-seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--optuna-procs", default="1,8",
                    help="Optuna process counts (each on one shared SQLite study)")
    ap.add_argument("--synchronous", choices=["normal", "full"], default=None,
                    help="pass --synchronous to hpod (default: hpod's own default)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    procs = [int(c) for c in args.optuna_procs.split(",")]

    with tempfile.TemporaryDirectory(prefix="hpod-bench-") as tmp:
        loadgen = build_curl_tool(os.path.join(HERE, "loadgen.c"), tmp)
        extra = ["--synchronous", args.synchronous] if args.synchronous else []
        rounds = {c: [] for c in clients}
        optuna_rounds = {p: [] for p in procs}
        with Daemon(args.hpod, extra_args=extra) as d:
            print("hpod %s (%s), synchronous=%s; loadgen: C + libcurl %s, keep-alive; %d cores"
                  % (d.get("/healthz").expect(200)["version"], args.hpod,
                     args.synchronous or "default",
                     subprocess.run(["pkg-config", "--modversion", "libcurl"], capture_output=True,
                                    text=True).stdout.strip(), os.cpu_count()))
            for r in range(args.repeat):
                for c in clients:
                    res = run_hpod(d, loadgen, "bench-%d-%d" % (r, c), c, args.seconds)
                    rounds[c].append(res)
                    print("round %d  hpod   %d client%s: %8.0f pairs/s  p50 %.3f ms  p99 %.3f ms  "
                          "loadgen CPU %5.1f%%  hpod CPU %5.1f%%"
                          % (r + 1, c, "s" if c > 1 else " ", res["pairs_per_s"], res["p50_ms"],
                             res["p99_ms"], res["loadgen_cpu_pct"], res["hpod_cpu_pct"]),
                          flush=True)
                for p in procs:
                    o = run_optuna(tmp, args.optuna_seconds, p)
                    optuna_rounds[p].append(o)
                    print("round %d  optuna %s RDB sqlite %d process%s: %8.1f pairs/s (%d pairs, "
                          "%d errors)" % (r + 1, o["version"], p, "es" if p > 1 else "  ",
                                          o["pairs_per_s"], o["pairs"], o["errors"]), flush=True)
        omed = {p: statistics.median(o["pairs_per_s"] for o in optuna_rounds[p]) for p in procs}
        opt = omed[procs[0]]
        print()
        print("median of %d rounds (ask+tell pairs per second, random sampler):" % args.repeat)
        best = 0.0
        for c in clients:
            m = statistics.median(x["pairs_per_s"] for x in rounds[c])
            lg = statistics.median(x["loadgen_cpu_pct"] for x in rounds[c])
            hc = statistics.median(x["hpod_cpu_pct"] for x in rounds[c])
            best = max(best, m)
            print("  hpod HTTP, %d client%s: %9.0f   (%.0fx Optuna RDB; loadgen CPU %.0f%%, "
                  "hpod CPU %.0f%% of one core)" % (c, "s" if c > 1 else " ", m, m / opt, lg, hc))
        for p in procs:
            print("  Optuna %s RDBStorage sqlite, %d process%s: %9.1f"
                  % (optuna_rounds[p][0]["version"], p, "es" if p > 1 else "  ", omed[p]))
        for c in clients:
            if c in omed and c != procs[0]:
                m = statistics.median(x["pairs_per_s"] for x in rounds[c])
                print("  same concurrency: hpod %d clients / Optuna %d processes = %.0fx"
                      % (c, c, m / omed[c]))
        ok_pairs = best >= TARGET_PAIRS
        ok_ratio = best / opt >= TARGET_RATIO
        print("target >= %.0f pairs/s: %s (%.0f); target >= %.0fx Optuna RDB: %s (%.0fx)"
              % (TARGET_PAIRS, "met" if ok_pairs else "MISSED", best, TARGET_RATIO,
                 "met" if ok_ratio else "MISSED", best / opt))
        if args.check and not (ok_pairs and ok_ratio):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
