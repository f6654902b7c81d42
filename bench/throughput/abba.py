#!/usr/bin/python3
"""abba.py: two hpod builds (or two modes) kept up side by side, ABBA-interleaved windows.

Usage: bench/throughput/abba.py A B MODE CLIENTS [PAIRS] [SECONDS]
  MODE: normal, full, or "normal,full" (A under the first, B under the second)

Both daemons start once (hpodtest's Daemon: a fresh SQLite file each) and
stay up; then PAIRS pairs of windows of SECONDS each (run.py's run_hpod: a
fresh study with the random sampler and run.py's space, loadgen, the
daemon's CPU), A then B, B then A, ... so that the machine's drift falls
on both alike. Prints each side's median pairs/s and CPU per pair, and the
median of the per-pair ratios B/A with their spread: the figure to trust on
a noisy machine (A/A runs of one build give its noise: medians 1.04 and
1.02, single pairs 0.80-1.21, `full` at 64 clients on the 2-core machine of
docs/DESIGN.md). durable.py restarts the daemons every round; this keeps
them up, for small differences. To compare one build under two settings,
give a wrapper script as A or B (`exec hpod "$@" --http-threads 4`, or an
environment variable before the exec).
Standard library only; Debian's /usr/bin/python3.
"""
import contextlib
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import Daemon, build_curl_tool  # noqa: E402
from run import cpu_per_pair, run_hpod  # noqa: E402


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    a, b, mode, clients = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    pairs = int(sys.argv[5]) if len(sys.argv) > 5 else 12
    secs = float(sys.argv[6]) if len(sys.argv) > 6 else 1.5
    ma, mb = mode.split(",") if "," in mode else (mode, mode)
    rates = ([], [])
    cpus = ([], [])
    with tempfile.TemporaryDirectory(prefix="hpod-abba-") as tmp, contextlib.ExitStack() as up:
        loadgen = build_curl_tool(os.path.join(HERE, "loadgen.c"), tmp)
        ds = [up.enter_context(Daemon(exe, extra_args=["--synchronous", m]))
              for exe, m in ((a, ma), (b, mb))]
        for i in range(pairs):
            for side in ((0, 1) if i % 2 == 0 else (1, 0)):
                res = run_hpod(ds[side], loadgen, "ab-%d" % i, clients, secs)
                rates[side].append(res["pairs_per_s"])
                cpus[side].append(cpu_per_pair(res))
    ratios = sorted(y / x for x, y in zip(*rates))
    print("%s, %d clients, %d ABBA pairs of %.1f s: A %.0f pairs/s (%.1f us CPU/pair), "
          "B %.0f (%.1f us); B/A median %.3f [%s]"
          % (mode, clients, pairs, secs, statistics.median(rates[0]), statistics.median(cpus[0]),
             statistics.median(rates[1]), statistics.median(cpus[1]), statistics.median(ratios),
             " ".join("%.2f" % r for r in ratios)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
