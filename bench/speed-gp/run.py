#!/usr/bin/python3
"""run.py: latency of one gp ask through HTTP at n finished trials, d = 10.

Usage: bench/speed-gp/run.py [--hpod build-gp/daemon/hpod] [--n 200,1000,10000] [--asks 9]

For each n: a fresh study (10 float params on [-5, 5], sampler gp, seed 1) is
loaded with n complete trials (POST /v1/studies/{s}/trials with "params" and
"value": uniform random points, Styblinski-Tang values), then the first ask is
timed (it includes the cold hyperparameter fit and the full Cholesky), then
`asks` more ask+tell rounds are timed (ask only), whose median is the number
to compare with the targets (issue 18: 50 ms at n=1000, under 1 s at
n=10000). Besides the wall time, the daemon's CPU time per ask (utime +
stime of its process from /proc, all threads) is printed: on a shared,
loaded machine it is the figure that does not depend on the other load.
Refit policy: samplers/gp.c's header.

A C micro benchmark calling the sampler directly (no HTTP) is bench-gp.c in
this directory: cc -O2 ... (see its header), or the `bench-gp` target.
Standard library only; Debian's /usr/bin/python3.
"""

import argparse
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import Daemon  # noqa: E402

D = 10


def cpu_ms(pid):
    """utime + stime of a process in ms (Linux /proc)."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e3 / os.sysconf("SC_CLK_TCK")


def styblinski(x):
    return 0.5 * sum(v ** 4 - 16 * v * v + 5 * v for v in x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build-gp", "daemon", "hpod"))
    ap.add_argument("--n", default="200,1000,10000")
    ap.add_argument("--asks", type=int, default=9)
    a = ap.parse_args()
    space = [{"name": "x%d" % i, "type": "float", "low": -5, "high": 5} for i in range(D)]
    rng = random.Random(1)
    with Daemon(a.hpod) as d:
        for n in [int(v) for v in a.n.split(",")]:
            name = "speed-gp-%d" % n
            d.post("/v1/studies", {"name": name, "params": space,
                                   "sampler": {"type": "gp", "seed": 1}}).expect(201)
            t0 = time.perf_counter()
            for _ in range(n):
                x = [rng.uniform(-5, 5) for _ in range(D)]
                d.post("/v1/studies/%s/trials" % name,
                       {"params": {"x%d" % i: x[i] for i in range(D)},
                        "value": styblinski(x)}).expect(201)
            load_s = time.perf_counter() - t0
            times, cpus = [], []
            for k in range(a.asks + 1):
                c0 = cpu_ms(d.proc.pid)
                t0 = time.perf_counter()
                t = d.post("/v1/studies/%s/ask" % name).expect(201)
                times.append(1e3 * (time.perf_counter() - t0))
                cpus.append(cpu_ms(d.proc.pid) - c0)
                x = [t["params"]["x%d" % i] for i in range(D)]
                d.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]),
                       {"value": styblinski(x)}).expect(200)
            rest = sorted(times[1:])
            print("n=%d d=%d (loaded in %.1f s): first ask %.1f ms (cold fit, %.0f ms CPU); "
                  "next %d asks median %.1f ms (min %.1f, max %.1f), daemon CPU median %.0f ms" %
                  (n, D, load_s, times[0], cpus[0], a.asks, statistics.median(rest), rest[0],
                   rest[-1], statistics.median(cpus[1:])), flush=True)
            d.delete("/v1/studies/%s" % name)


if __name__ == "__main__":
    main()
