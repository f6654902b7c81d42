#!/usr/bin/python3
"""run.py: ask+tell throughput of hpod over HTTP vs a bare libmicrohttpd server and vs Optuna 3.1.

Usage: bench/throughput/run.py [--hpod build-it/daemon/hpod] [--baseline OTHER/hpod]
                               [--seconds 5] [--repeat 3]
                               [--clients 1,8,64] [--optuna-seconds 5] [--optuna-procs 1,8]
                               [--synchronous normal|full] [--no-optuna] [--check]

In one run, `repeat` rounds of: for each client count, the bare libmicrohttpd
server (bench/throughput/bare-mhd.c: a fixed JSON body of the size of hpod's
replies, no routing, storage or logging; libmicrohttpd set up as hpod sets it
up: its poll() threads one per core (hpod's HTTP threads on PostgreSQL; on
SQLite hpod runs one per two cores beside its redo log's applier), the same flags,
memory and connection limits) and then hpod (bench/throughput/loadgen.c:
one keep-alive connection per client thread speaking HTTP/1.1 itself, a fresh
study with the random sampler per measurement, the daemon's default
synchronous unless --synchronous), both driven the same way, so hpod's share of
the bare server's pairs/s is measured on the same machine at the same moment
(the machine may be shared: the ratio per round is the figure to trust, and
the medians of several rounds). Then Optuna doing the same loop in-process
(study.ask(distributions) / study.tell) with RDBStorage on a fresh
sqlite:///<tmp>/optuna.db and RandomSampler: in one process, and in 8
processes sharing one study (forked, started together; the same concurrency
as hpod's 8 clients). The same three-parameter space
(float, log int, categorical) for both. Prints every round, the medians and the
ratios, plus the CPU seconds used by the load generator and by hpod, so one can
see that the generator is not the bottleneck, and hpod's CPU time per pair.
With --baseline, a second hpod (an older build, say) runs beside the first
and is measured right after it in every round, so a change is judged
before/after in one run (the ratio per round and its median).

Targets (issue 18): at 8 clients >= 10,000 pairs/s and >= 50% of the bare server's
figure; 1 client: the ask's p50 <= 0.3 ms. Kept from before: >= 2,000 pairs/s and
>= 100x Optuna RDB (unless --no-optuna).

loadgen and bare-mhd are compiled by this script: cc -O2 loadgen.c $(pkg-config --cflags --libs libcurl) -pthread -lm,
cc -O2 bare-mhd.c $(pkg-config --cflags --libs libmicrohttpd).
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
TARGET_PAIRS_8 = 10000.0   # at 8 clients
TARGET_BARE_SHARE = 0.50   # of the bare libmicrohttpd server's pairs/s, at 8 clients
TARGET_ASK_P50_MS = 0.3    # 1 client


def build_bare(outdir):
    """Compile bare-mhd.c (the yardstick) into outdir."""
    exe = os.path.join(outdir, "bare-mhd")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmicrohttpd"], check=True,
                           capture_output=True, text=True).stdout.split()
    subprocess.run(["cc", "-std=gnu17", "-O2", "-Wall", "-Wextra", "-o", exe,
                    os.path.join(HERE, "bare-mhd.c")] + flags, check=True)
    return exe


HTTP_THREADS_MAX_AUTO = 8  # bare-mhd: one thread per core, at most this many (its best)


class Bare:
    """bare-mhd on a free port of 127.0.0.1, MHD's threads one per core (at most 8)."""

    def __init__(self, exe, extra=()):
        threads = min(os.cpu_count() or 1, HTTP_THREADS_MAX_AUTO)
        self.proc = subprocess.Popen([exe, "--threads", str(threads)] + list(extra),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("port="):
            self.proc.kill()
            sys.exit("bare-mhd did not start: %r" % line)
        self.port = int(line.split("=")[1])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run_loadgen(loadgen, port, study, clients, seconds, pid):
    """One measurement: loadgen's figures, plus the server's CPU share of one core."""
    cpu0 = proc_cpu_seconds(pid)
    out = subprocess.run([loadgen, "--url", "http://127.0.0.1:%d" % port, "--study", study,
                          "--clients", str(clients), "--seconds", str(seconds), "--warmup", "0.5"],
                         capture_output=True, text=True, timeout=seconds + 120)
    cpu1 = proc_cpu_seconds(pid)
    if out.returncode != 0:
        sys.exit("loadgen failed (%d): %s %s" % (out.returncode, out.stdout, out.stderr))
    res = {k: float(v) for k, v in (kv.split("=") for kv in out.stdout.split())}
    # Server CPU is measured over warm-up + window; scale it to the window's share.
    res["server_cpu_pct"] = 100.0 * (cpu1 - cpu0) / (seconds + 0.5)
    return res


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)


def cpu_per_pair(res):
    """The server's CPU time per ask+tell pair, in microseconds."""
    return 1e4 * res["server_cpu_pct"] / res["pairs_per_s"]


def run_hpod(d, loadgen, study, clients, seconds):
    d.post("/v1/studies", {"name": study, "params": SPACE,
                           "sampler": {"type": "random", "seed": 1}}).expect(201)
    d.close_clients()
    res = run_loadgen(loadgen, d.port, study, clients, seconds, d.proc.pid)
    res["hpod_cpu_pct"] = res["server_cpu_pct"]
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


def print_hpod_round(r, label, c, res, tail):
    """One round's line for an hpod (`label` hpod or base), ending with `tail`."""
    print("round %d  %-4s   %2d client%s: %8.0f pairs/s  p50 %.3f ms  ask p50 %.3f ms"
          "  p99 %.3f ms  loadgen CPU %5.1f%%  %s CPU %5.1f%%  %s"
          % (r + 1, label, c, "s" if c > 1 else " ", res["pairs_per_s"], res["p50_ms"],
             res["ask_p50_ms"], res["p99_ms"], res["loadgen_cpu_pct"], label,
             res["hpod_cpu_pct"], tail), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build-it", "daemon", "hpod"))
    ap.add_argument("--baseline", default=None,
                    help="another hpod (e.g. main's build) measured in the same rounds")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--optuna-seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--optuna-procs", default="1,8",
                    help="Optuna process counts (each on one shared SQLite study)")
    ap.add_argument("--synchronous", choices=["normal", "full"], default=None,
                    help="pass --synchronous to hpod (default: hpod's own default)")
    ap.add_argument("--no-optuna", action="store_true", help="leave Optuna out")
    ap.add_argument("--bare-args", default="",
                    help="more bare-mhd options: '--epoll --small-bodies' is the yardstick of before")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    procs = [] if args.no_optuna else [int(c) for c in args.optuna_procs.split(",")]

    with tempfile.TemporaryDirectory(prefix="hpod-bench-") as tmp:
        loadgen = build_curl_tool(os.path.join(HERE, "loadgen.c"), tmp)
        bare_exe = build_bare(tmp)
        extra = ["--synchronous", args.synchronous] if args.synchronous else []
        rounds = {c: [] for c in clients}
        bare_rounds = {c: [] for c in clients}
        optuna_rounds = {p: [] for p in procs}
        base_rounds = {c: [] for c in clients}
        base = Daemon(args.baseline, extra_args=extra).__enter__() if args.baseline else None
        # bare-mhd exits when its stdin closes: with this script at the latest.
        bare = Bare(bare_exe, args.bare_args.split())
        with Daemon(args.hpod, extra_args=extra) as d:
            print("hpod %s (%s), synchronous=%s; loadgen: C, HTTP/1.1 keep-alive; bare "
                  "libmicrohttpd %s, %d threads%s; %d cores; load average %s"
                  % (d.get("/healthz").expect(200)["version"], args.hpod,
                     args.synchronous or "default",
                     subprocess.run(["pkg-config", "--modversion", "libmicrohttpd"],
                                    capture_output=True, text=True).stdout.strip(),
                     min(os.cpu_count() or 1, HTTP_THREADS_MAX_AUTO),
                     " " + args.bare_args if args.bare_args else "", os.cpu_count(),
                     " ".join("%.1f" % x for x in os.getloadavg())))
            for r in range(args.repeat):
                for c in clients:
                    b = run_loadgen(loadgen, bare.port, "bare", c, args.seconds, bare.proc.pid)
                    bare_rounds[c].append(b)
                    # The baseline goes first in every other round: neither gets the later slot always.
                    o = None
                    if base is not None and r % 2 == 1:
                        o = run_hpod(base, loadgen, "bench-%d-%d" % (r, c), c, args.seconds)
                    res = run_hpod(d, loadgen, "bench-%d-%d" % (r, c), c, args.seconds)
                    res["share"] = res["pairs_per_s"] / b["pairs_per_s"]
                    rounds[c].append(res)
                    print("round %d  bare   %2d client%s: %8.0f pairs/s  p50 %.3f ms  ask p50 %.3f ms"
                          "  loadgen CPU %5.1f%%  server CPU %5.1f%%"
                          % (r + 1, c, "s" if c > 1 else " ", b["pairs_per_s"], b["p50_ms"],
                             b["ask_p50_ms"], b["loadgen_cpu_pct"], b["server_cpu_pct"]))
                    print_hpod_round(r, "hpod", c, res, "%.0f%% of bare" % (100 * res["share"]))
                    if base is not None:
                        if o is None:
                            o = run_hpod(base, loadgen, "bench-%d-%d" % (r, c), c, args.seconds)
                        o["vs"] = res["pairs_per_s"] / o["pairs_per_s"]
                        base_rounds[c].append(o)
                        print_hpod_round(r, "base", c, o, "hpod/base %.2f" % o["vs"])
                for p in procs:
                    o = run_optuna(tmp, args.optuna_seconds, p)
                    optuna_rounds[p].append(o)
                    print("round %d  optuna %s RDB sqlite %d process%s: %8.1f pairs/s (%d pairs, "
                          "%d errors)" % (r + 1, o["version"], p, "es" if p > 1 else "  ",
                                          o["pairs_per_s"], o["pairs"], o["errors"]), flush=True)
        bare.close()
        if base is not None:
            base.__exit__(None, None, None)
        omed = {p: statistics.median(o["pairs_per_s"] for o in optuna_rounds[p]) for p in procs}
        opt = omed[procs[0]] if procs else None
        print()
        print("median of %d rounds (ask+tell pairs per second, random sampler):" % args.repeat)
        best = 0.0
        for c in clients:
            m = statistics.median(x["pairs_per_s"] for x in rounds[c])
            bm = statistics.median(x["pairs_per_s"] for x in bare_rounds[c])
            share = statistics.median(x["share"] for x in rounds[c])
            ask = statistics.median(x["ask_p50_ms"] for x in rounds[c])
            lg = statistics.median(x["loadgen_cpu_pct"] for x in rounds[c])
            hc = statistics.median(x["hpod_cpu_pct"] for x in rounds[c])
            best = max(best, m)
            print("  hpod HTTP, %2d client%s: %9.0f   bare MHD %9.0f   hpod/bare %3.0f%%   ask p50 "
                  "%.3f ms%s; loadgen CPU %.0f%%, hpod CPU %.0f%% of one core"
                  % (c, "s" if c > 1 else " ", m, bm, 100 * share, ask,
                     "  (%.0fx Optuna RDB)" % (m / opt) if opt else "", lg, hc))
            if base is not None:
                bm = statistics.median(x["pairs_per_s"] for x in base_rounds[c])
                vs = statistics.median(x["vs"] for x in base_rounds[c])
                print("  baseline,  %2d client%s: %9.0f   hpod/baseline %.2f (median of the rounds' "
                      "ratios); ask p50 %.3f ms; hpod CPU %.0f us/pair, baseline %.0f us/pair"
                      % (c, "s" if c > 1 else " ", bm, vs,
                         statistics.median(x["ask_p50_ms"] for x in base_rounds[c]),
                         statistics.median(cpu_per_pair(x) for x in rounds[c]),
                         statistics.median(cpu_per_pair(x) for x in base_rounds[c])))
        for p in procs:
            print("  Optuna %s RDBStorage sqlite, %d process%s: %9.1f"
                  % (optuna_rounds[p][0]["version"], p, "es" if p > 1 else "  ", omed[p]))
        for c in clients:
            if procs and c in omed and c != procs[0]:
                m = statistics.median(x["pairs_per_s"] for x in rounds[c])
                print("  same concurrency: hpod %d clients / Optuna %d processes = %.0fx"
                      % (c, c, m / omed[c]))
        ok_pairs = best >= TARGET_PAIRS
        ok_ratio = opt is None or best / opt >= TARGET_RATIO
        print("target >= %.0f pairs/s: %s (%.0f)%s"
              % (TARGET_PAIRS, "met" if ok_pairs else "MISSED", best,
                 "" if opt is None else "; target >= %.0fx Optuna RDB: %s (%.0fx)"
                 % (TARGET_RATIO, "met" if ok_ratio else "MISSED", best / opt)))
        ok = ok_pairs and ok_ratio
        if 8 in clients:
            m8 = statistics.median(x["pairs_per_s"] for x in rounds[8])
            s8 = statistics.median(x["share"] for x in rounds[8])
            ok8 = m8 >= TARGET_PAIRS_8
            oks = s8 >= TARGET_BARE_SHARE
            print("target 8 clients >= %.0f pairs/s: %s (%.0f); >= %.0f%% of bare libmicrohttpd: "
                  "%s (%.0f%%)" % (TARGET_PAIRS_8, "met" if ok8 else "MISSED", m8,
                                   100 * TARGET_BARE_SHARE, "met" if oks else "MISSED", 100 * s8))
            ok = ok and ok8 and oks
        if 1 in clients:
            a1 = statistics.median(x["ask_p50_ms"] for x in rounds[1])
            oka = a1 <= TARGET_ASK_P50_MS
            print("target 1 client ask p50 <= %.1f ms: %s (%.3f ms)"
                  % (TARGET_ASK_P50_MS, "met" if oka else "MISSED", a1))
            ok = ok and oka
        if args.check and not ok:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
