#!/usr/bin/python3
"""run.py: ask+tell throughput of one hpod on SQLite vs one hpod on PostgreSQL, and Optuna 3.1
RDBStorage on the same PostgreSQL.

Usage: bench/pg/run.py [--hpod build/daemon/hpod] [--seconds 5] [--repeat 3] [--clients 8]
                       [--optuna-procs 8] [--optuna-seconds 5] [--fsync on|off] [--check]

In one run, on one throwaway PostgreSQL cluster (tests/integration/pgtest.py: Debian's
initdb/pg_ctl, Unix socket only, fsync on unless --fsync off; synchronous_commit on unless
--synchronous-commit off, set on hpod's and Optuna's databases alike; hpod sets it on its
session from --synchronous, so it runs with --synchronous full for on, normal for off):
`repeat` rounds of hpod with `clients` concurrent clients (bench/throughput/loadgen.c, a
fresh random-sampler study per measurement) on SQLite (the daemon's default synchronous=NORMAL)
and on PostgreSQL, then Optuna doing the same ask/tell loop with RDBStorage on a fresh
PostgreSQL database (psycopg2, same socket) in `optuna-procs` forked processes sharing one study.
Prints every round, the medians and the ratios. Targets: hpod on PostgreSQL >= 1,500 pairs/s
and >= 30x Optuna.

Needs: Debian's postgresql, python3-psycopg2, python3-optuna (scripts/deps.sh --test).
"""

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "bench", "throughput"))
import pgtest  # noqa: E402
from hpodtest import Daemon, build_curl_tool  # noqa: E402
from run import optuna_dists, optuna_worker, run_hpod  # noqa: E402

TARGET_PAIRS = 1500.0
TARGET_RATIO = 30.0


def new_database(cluster, sync):
    uri = cluster.new_database()
    cluster.psql("ALTER DATABASE %s SET synchronous_commit = %s" % (uri.rsplit("/", 1)[1], sync))
    return uri


def run_optuna_pg(cluster, seconds, procs, sync):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = new_database(cluster, sync).rsplit("/", 1)[1]
    url = "postgresql+psycopg2://%s@/%s?host=%s" % (pgtest.USER, db, cluster.sock)
    study = optuna.create_study(storage=optuna.storages.RDBStorage(url), study_name="bench",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    dists = optuna_dists()
    for _ in range(5):
        t = study.ask(dists)
        study.tell(t, 0.0)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start = time.time() + 3.0
    workers = [ctx.Process(target=optuna_worker, args=(url, "bench", start, seconds, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    results = [out.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    n = sum(r[0] for r in results)
    return {"pairs": n, "pairs_per_s": n / seconds, "errors": sum(r[1] for r in results),
            "version": optuna.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--optuna-seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--optuna-procs", type=int, default=8)
    ap.add_argument("--fsync", choices=["on", "off"], default="on")
    ap.add_argument("--synchronous-commit", choices=["on", "off"], default="on",
                    help="PostgreSQL's synchronous_commit for hpod's and Optuna's databases")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    why = pgtest.available()
    if why is not None:
        sys.exit("cannot run: %s" % why)
    cluster = pgtest.Cluster(fsync=args.fsync == "on")
    version = cluster.psql("SHOW server_version").strip()
    c = args.clients
    rounds = {"sqlite": [], "pg": []}
    orounds = []
    with tempfile.TemporaryDirectory(prefix="hpod-bench-") as tmp:
        loadgen = build_curl_tool(os.path.join(ROOT, "bench", "throughput", "loadgen.c"), tmp)
        sq = Daemon(args.hpod)
        # hpod sets synchronous_commit on its session: on with --synchronous full, else off.
        pg = Daemon(args.hpod, extra_args=["--synchronous", "full" if args.synchronous_commit ==
                                           "on" else "normal"])
        pg.db = new_database(cluster, args.synchronous_commit)
        with sq, pg:
            print("hpod %s (%s); PostgreSQL %s (fsync %s, synchronous_commit %s, Unix socket);"
                  " %d clients; %d cores" % (sq.get("/healthz").expect(200)["version"], args.hpod,
                                             version, args.fsync, args.synchronous_commit, c,
                                             os.cpu_count()), flush=True)
            for r in range(args.repeat):
                for name, d in (("sqlite", sq), ("pg", pg)):
                    res = run_hpod(d, loadgen, "bench-%d" % r, c, args.seconds)
                    rounds[name].append(res)
                    print("round %d  hpod on %-10s %d clients: %8.0f pairs/s  p50 %.3f ms  "
                          "p99 %.3f ms  hpod CPU %5.1f%%"
                          % (r + 1, "SQLite" if name == "sqlite" else "PostgreSQL", c,
                             res["pairs_per_s"], res["p50_ms"], res["p99_ms"],
                             res["hpod_cpu_pct"]), flush=True)
                o = run_optuna_pg(cluster, args.optuna_seconds, args.optuna_procs,
                                  args.synchronous_commit)
                orounds.append(o)
                print("round %d  optuna %s RDB PostgreSQL %d processes: %8.1f pairs/s "
                      "(%d pairs, %d errors)" % (r + 1, o["version"], args.optuna_procs,
                                                 o["pairs_per_s"], o["pairs"], o["errors"]),
                      flush=True)
    cluster.close()
    msq = statistics.median(x["pairs_per_s"] for x in rounds["sqlite"])
    mpg = statistics.median(x["pairs_per_s"] for x in rounds["pg"])
    mo = statistics.median(x["pairs_per_s"] for x in orounds)
    print()
    print("median of %d rounds (ask+tell pairs per second, random sampler, %d clients):"
          % (args.repeat, c))
    print("  hpod on SQLite:                          %9.0f" % msq)
    print("  hpod on PostgreSQL:                      %9.0f   (%.2fx SQLite)" % (mpg, mpg / msq))
    print("  Optuna %s RDBStorage PostgreSQL, %d procs: %7.1f" % (orounds[0]["version"],
                                                                 args.optuna_procs, mo))
    ok_pairs = mpg >= TARGET_PAIRS
    ok_ratio = mo > 0 and mpg / mo >= TARGET_RATIO
    print("target >= %.0f pairs/s on PostgreSQL: %s (%.0f); target >= %.0fx Optuna: %s (%.0fx)"
          % (TARGET_PAIRS, "met" if ok_pairs else "MISSED", mpg, TARGET_RATIO,
             "met" if ok_ratio else "MISSED", mpg / mo if mo > 0 else float("inf")))
    if args.check and not (ok_pairs and ok_ratio):
        sys.exit(1)


if __name__ == "__main__":
    main()
