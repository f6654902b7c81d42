#!/usr/bin/python3
"""durable.py: ask+tell throughput under --synchronous full vs normal, side by side in one run.

Usage: bench/throughput/durable.py [--hpod build/daemon/hpod] [--hpod-before OTHER/hpod]
                                   [--seconds 4] [--repeat 3] [--clients 1,8,64]
                                   [--db postgresql://...]

Each round runs, for every binary (the one under test and, with
--hpod-before, an older build to compare with), for both modes, a fresh
daemon (fresh database in a temporary directory on the disk that holds
/tmp, or a fresh PostgreSQL database with --db) and loadgen
(bench/throughput/loadgen.c, the random sampler, one keep-alive connection
per client) at each client count. Rounds interleave the configurations so
that load from elsewhere on the machine spreads over all of them; the
medians are printed side by side with full/normal ratios against issue 18's
targets (full >= 80% of normal at 64 clients, >= 50% at 8). For SQLite it
also prints the largest size the WAL file reached in each daemon's run, which
the checkpoints must keep bounded (about 32 MB, storage/checkpoint.c).
--fdatasync noop|sleep:US runs every daemon with an LD_PRELOAD shim in
place of fdatasync and fsync (compiled here): `noop` returns at once (what
`full` costs in hpod's own mechanics: holding replies, flushers, kicks),
`sleep:US` sleeps US microseconds without I/O (a flush's wait without its CPU);
the device's share is the difference to a run without the shim. A
diagnostic only: nothing is durable under it.
Standard library only; Debian's /usr/bin/python3.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "bench", "common"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import Daemon, build_curl_tool  # noqa: E402
from run import run_hpod  # noqa: E402
from disk import fdatasync_ms  # noqa: E402

TARGETS = {64: 0.80, 8: 0.50}


class WalWatch:
    """The largest size the SQLite WAL file `db`-wal reaches while the block runs (polled every
    50 ms): the checkpoints must keep it bounded under a steady load (storage/checkpoint.c)."""

    def __init__(self, db):
        self.path = db + "-wal"
        self.largest = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self):
        while not self.stop.wait(0.05):
            try:
                self.largest = max(self.largest, os.stat(self.path).st_size)
            except OSError:
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def fdatasync_shim(spec, outdir):
    """An LD_PRELOAD library replacing fdatasync and fsync ('noop' or 'sleep:US'); its env."""
    us = 0
    if spec.startswith("sleep:"):
        us = int(spec.split(":", 1)[1])
    elif spec != "noop":
        sys.exit("--fdatasync: noop or sleep:US, not %r" % spec)
    src = os.path.join(outdir, "fdatasync-shim.c")
    with open(src, "w") as f:
        f.write("#include <time.h>\n"
                "static int nap(void) { struct timespec t = { 0, %dL * 1000 };"
                " if (t.tv_nsec > 0) nanosleep(&t, 0); return 0; }\n"
                "int fdatasync(int fd) { (void)fd; return nap(); }\n"
                "int fsync(int fd) { (void)fd; return nap(); }\n" % us)
    lib = os.path.join(outdir, "fdatasync-shim.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", lib, src], check=True)
    return {"LD_PRELOAD": lib}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--hpod-before", default=None, help="an older hpod to measure in the same run")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--db", default=None, help="a postgresql:// URI instead of a fresh SQLite file")
    ap.add_argument("--fdatasync", default=None,
                    help="noop or sleep:US: a shim in place of fdatasync/fsync (a diagnostic)")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    bins = [("after", args.hpod)] + ([("before", args.hpod_before)] if args.hpod_before else [])
    modes = ["normal", "full"]
    res = {(b, m, c): [] for b, _ in bins for m in modes for c in clients}

    with tempfile.TemporaryDirectory(prefix="hpod-bench-") as tmp:
        loadgen = build_curl_tool(os.path.join(HERE, "loadgen.c"), tmp)
        env = fdatasync_shim(args.fdatasync, tmp) if args.fdatasync else None
        for r in range(args.repeat):
            p50, p90 = fdatasync_ms(tmp)
            print("round %d: fdatasync of 4 KiB here: p50 %.3f ms, p90 %.3f ms" % (r + 1, p50, p90),
                  flush=True)
            for b, exe in bins:
                for m in modes:
                    extra = ["--synchronous", m]
                    if args.db:
                        extra += ["--db", args.db]
                    with Daemon(exe, extra_args=extra, env=env) as d, WalWatch(d.db) as wal:
                        for c in clients:
                            x = run_hpod(d, loadgen, "b-%d-%s-%d" % (r, m, c), c, args.seconds)
                            res[(b, m, c)].append(x)
                            print("round %d %-6s %-6s %2d clients: %8.0f pairs/s  p50 %.3f ms  "
                                  "p99 %.3f ms  hpod CPU %5.1f%%"
                                  % (r + 1, b, m, c, x["pairs_per_s"], x["p50_ms"], x["p99_ms"],
                                     x["hpod_cpu_pct"]), flush=True)
                    if not args.db:
                        print("round %d %-6s %-6s largest WAL file: %.1f MB"
                              % (r + 1, b, m, wal.largest / 1e6), flush=True)
    print()
    print("medians of %d rounds, ask+tell pairs/s (random sampler, %s%s)"
          % (args.repeat, "PostgreSQL" if args.db else "SQLite",
             ", fdatasync shim " + args.fdatasync if args.fdatasync else ""))
    for b, _ in bins:
        for c in clients:
            n = statistics.median(x["pairs_per_s"] for x in res[(b, "normal", c)])
            f = statistics.median(x["pairs_per_s"] for x in res[(b, "full", c)])
            fp = statistics.median(x["p50_ms"] for x in res[(b, "full", c)])
            t = TARGETS.get(c)
            # Each round's own ratio (its two modes ran back to back), then their median:
            # load from elsewhere that hits one round hits both of its figures.
            rr = [x["pairs_per_s"] / y["pairs_per_s"]
                  for x, y in zip(res[(b, "full", c)], res[(b, "normal", c)])]
            print("  %-6s %2d clients: normal %8.0f  full %8.0f  full/normal %5.1f%%  "
                  "(per round %s, median %.1f%%)  (full p50 %.3f ms)%s"
                  % (b, c, n, f, 100.0 * f / n, "/".join("%.0f" % (100 * r) for r in rr),
                     100.0 * statistics.median(rr), fp,
                     "" if t is None else "  target >= %.0f%%: %s"
                     % (100 * t, "met" if f >= t * n else "MISSED")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
