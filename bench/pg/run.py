#!/usr/bin/python3
"""run.py: ask+tell throughput of one hpod on PostgreSQL under --synchronous full and normal,
beside one hpod on SQLite, and Optuna 3.1 RDBStorage on the same PostgreSQL.

Usage: bench/pg/run.py [--hpod build/daemon/hpod] [--seconds 5] [--repeat 3] [--clients 1,8,64]
                       [--optuna-procs 8] [--optuna-seconds 5] [--fsync on|off]
                       [--optuna-synchronous-commit on|off] [--no-sqlite] [--no-optuna]
                       [--before OTHER-HPOD] [--check]

In one run, on one throwaway PostgreSQL cluster (tests/integration/pgtest.py: Debian's
initdb/pg_ctl, Unix socket only, fsync on unless --fsync off): `repeat` rounds of, for each
client count, hpod with that many concurrent clients (bench/throughput/loadgen.c, a fresh
random-sampler study per measurement) on SQLite (the daemon's default, synchronous full), on
PostgreSQL with --synchronous full (the default: nothing is acknowledged before PostgreSQL
flushed its WAL, as synchronous_commit = on) and with --synchronous normal (synchronous_commit
= off: a server crash may lose the last acknowledged commits); then Optuna doing the same
ask/tell loop with RDBStorage on a fresh PostgreSQL database (psycopg2, same socket; the
database's synchronous_commit on unless --optuna-synchronous-commit off, so it is as durable
as hpod's full) in `optuna-procs` forked processes sharing one study. Prints every round, the
medians, full's share of normal at each client count, and the ratios to Optuna. With --before,
another hpod binary (an earlier build) also runs on PostgreSQL under full in each round, for a
before/after comparison measured at the same moments. Targets (issue
16): hpod on PostgreSQL under full, 8 clients: >= 1,500 pairs/s and >= 30x Optuna.

Needs: Debian's postgresql, python3-psycopg2, python3-optuna (scripts/deps.sh --test).
"""

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "bench", "throughput"))
import pgtest  # noqa: E402
from hpodtest import Daemon, build_curl_tool  # noqa: E402
from run import optuna_dists, optuna_processes, run_hpod  # noqa: E402

TARGET_PAIRS = 1500.0
TARGET_RATIO = 30.0
TARGET_CLIENTS = 8

LABELS = {"sqlite": "SQLite (full)", "pg-full": "PostgreSQL full", "pg-normal":
          "PostgreSQL normal", "pg-before": "PostgreSQL full, before"}


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
    n, errors = optuna_processes(url, "bench", seconds, procs)
    return {"pairs": n, "pairs_per_s": n / seconds, "errors": errors,
            "version": optuna.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--optuna-seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", default="8", help="client counts, comma-separated")
    ap.add_argument("--optuna-procs", type=int, default=8)
    ap.add_argument("--fsync", choices=["on", "off"], default="on")
    ap.add_argument("--optuna-synchronous-commit", choices=["on", "off"], default="on",
                    help="PostgreSQL's synchronous_commit for Optuna's database")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--no-optuna", action="store_true")
    ap.add_argument("--before", help="another hpod binary to run on PostgreSQL under full too")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    why = pgtest.available()
    if why is not None:
        sys.exit("cannot run: %s" % why)
    counts = [int(x) for x in args.clients.split(",")]
    cluster = pgtest.Cluster(fsync=args.fsync == "on")
    version = cluster.psql("SHOW server_version").strip()
    names = (([] if args.no_sqlite else ["sqlite"]) + (["pg-before"] if args.before else []) +
             ["pg-full", "pg-normal"])
    rounds = {(n, c): [] for n in names for c in counts}
    orounds = []
    with tempfile.TemporaryDirectory(prefix="hpod-bench-") as tmp:
        loadgen = build_curl_tool(os.path.join(ROOT, "bench", "throughput", "loadgen.c"), tmp)
        daemons = {}
        if "sqlite" in names:
            daemons["sqlite"] = Daemon(args.hpod)
        for mode in ("full", "normal"):
            # hpod sets synchronous_commit on its sessions itself, from --synchronous.
            d = Daemon(args.hpod, extra_args=["--synchronous", mode])
            d.db = cluster.new_database()
            daemons["pg-" + mode] = d
        if args.before:
            d = Daemon(args.before, extra_args=["--synchronous", "full"])
            d.db = cluster.new_database()
            daemons["pg-before"] = d
        for d in daemons.values():
            d.__enter__()
        try:
            first = daemons[names[0]]
            print("hpod %s (%s); PostgreSQL %s (fsync %s, Unix socket); clients %s; %d cores"
                  % (first.get("/healthz").expect(200)["version"], args.hpod, version,
                     args.fsync, args.clients, os.cpu_count()), flush=True)
            for r in range(args.repeat):
                for c in counts:
                    for name in names:
                        res = run_hpod(daemons[name], loadgen, "bench-%d-%d" % (r, c), c,
                                       args.seconds)
                        rounds[(name, c)].append(res)
                        print("round %d  hpod on %-23s %3d clients: %8.0f pairs/s  p50 %.3f ms"
                              "  p99 %.3f ms  hpod CPU %5.1f%%"
                              % (r + 1, LABELS[name], c, res["pairs_per_s"], res["p50_ms"],
                                 res["p99_ms"], res["hpod_cpu_pct"]), flush=True)
                if not args.no_optuna:
                    o = run_optuna_pg(cluster, args.optuna_seconds, args.optuna_procs,
                                      args.optuna_synchronous_commit)
                    orounds.append(o)
                    print("round %d  optuna %s RDB PostgreSQL (synchronous_commit %s) %d"
                          " processes: %8.1f pairs/s (%d pairs, %d errors)"
                          % (r + 1, o["version"], args.optuna_synchronous_commit,
                             args.optuna_procs, o["pairs_per_s"], o["pairs"], o["errors"]),
                          flush=True)
        finally:
            for d in daemons.values():
                d.__exit__(None, None, None)
    cluster.close()
    med = {k: statistics.median(x["pairs_per_s"] for x in v) for k, v in rounds.items()}
    mo = statistics.median(x["pairs_per_s"] for x in orounds) if orounds else 0.0
    print()
    print("median of %d rounds (ask+tell pairs per second, random sampler):" % args.repeat)
    for c in counts:
        line = "  %3d clients:" % c
        for name in names:
            line += "  %s %7.0f" % (LABELS[name], med[(name, c)])
        line += "   full/normal %.2f" % (med[("pg-full", c)] / med[("pg-normal", c)])
        if args.before:
            line += "  full/before %.2f" % (med[("pg-full", c)] / med[("pg-before", c)])
        print(line)
    if orounds:
        print("  Optuna %s RDBStorage PostgreSQL, %d procs: %.1f" % (orounds[0]["version"],
                                                                   args.optuna_procs, mo))
    if TARGET_CLIENTS in counts:
        mpg = med[("pg-full", TARGET_CLIENTS)]
        ok_pairs = mpg >= TARGET_PAIRS
        ok_ratio = mo == 0 or mpg / mo >= TARGET_RATIO
        print("target >= %.0f pairs/s on PostgreSQL (full, %d clients): %s (%.0f)"
              % (TARGET_PAIRS, TARGET_CLIENTS, "met" if ok_pairs else "MISSED", mpg))
        if mo > 0:
            print("target >= %.0fx Optuna: %s (%.0fx; normal %.0fx)"
                  % (TARGET_RATIO, "met" if ok_ratio else "MISSED", mpg / mo,
                     med[("pg-normal", TARGET_CLIENTS)] / mo))
        if args.check and not (ok_pairs and ok_ratio):
            sys.exit(1)


if __name__ == "__main__":
    main()
