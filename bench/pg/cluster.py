#!/usr/bin/python3
"""cluster.py: one hpod vs two hpods on one PostgreSQL (docs/CLUSTER.md).

Usage: bench/pg/cluster.py [--hpod build/daemon/hpod] [--seconds 5] [--gp-seconds 20]
                           [--gp-trials 200] [--takeovers 5] [--latency-n 2000] [--check]

In one run, on one throwaway PostgreSQL cluster (tests/integration/pgtest.py, Unix socket,
fsync on), each daemon pinned to one core with taskset when the machine has two or more:

1. ask+tell pairs/s, random sampler, 8 clients (bench/throughput/loadgen.c, one process and
   one study per client): one daemon, then two daemons with the clients spread over both
   (each client talks to one daemon; its study's owner is either, so about half the
   requests are forwarded).
2. GP-heavy: 16 gp studies, each filled with --gp-trials finished trials, then 16 clients
   (one per study, spread over the daemons) ask and tell for --gp-seconds: asks/s with one
   daemon and with two. Target: two >= 1.7x one.
3. Takeover after SIGKILL: two daemons; a client asks through one for a study the other
   owns; the owner is killed; the time until an ask succeeds again. Median of --takeovers.
   Target <= 5 s.
4. Forwarding overhead: median latency of GET /v1/studies/{study} sent to the owner and
   sent to the other daemon (forwarded), --latency-n each, one keep-alive connection.
   Target: added median <= 1 ms.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import pgtest  # noqa: E402
from hpodtest import Client, Daemon, build_curl_tool  # noqa: E402

SPACE = [{"name": "x", "type": "float", "low": -5, "high": 5},
         {"name": "y", "type": "float", "low": -5, "high": 5}]


class Pinned(Daemon):
    """A daemon started under taskset -c CORE (when there are cores to pin to)."""

    def __init__(self, exe, core, uri, extra_args=()):
        self.core = core
        self.real_exe = os.path.abspath(exe)
        super().__init__(exe, extra_args=extra_args)
        self.db = uri

    def start(self):
        if self.core is not None:
            wrapper = os.path.join(self.state_dir, "pinned.sh")
            with open(wrapper, "w") as f:
                f.write("#!/bin/sh\nexec taskset -c %d %s \"$@\"\n" % (self.core, self.real_exe))
            os.chmod(wrapper, 0o755)
            self.exe = wrapper
        return super().start()


def url(d):
    return "http://127.0.0.1:%d" % d.port


def owner_of(ds, name):
    return ds[0].get("/v1/studies/%s" % name).header("X-Hpod-Owner")


def wait_spread(ds, names, timeout=10.0):
    """Until every study has an owner among ds (hand-offs after a join settle)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owners = [owner_of(ds, n) for n in names]
        if all(o in {url(d) for d in ds} for o in owners):
            time.sleep(2.5)  # two heartbeats: hand-offs to a newly live daemon are done
            return [owner_of(ds, n) for n in names]
        time.sleep(0.2)
    return [owner_of(ds, n) for n in names]


def throughput(ds, loadgen, tag, clients, seconds):
    names = ["%s-%d" % (tag, i) for i in range(clients)]
    for n in names:
        ds[0].post("/v1/studies", {"name": n, "params": SPACE,
                                   "sampler": {"type": "random", "seed": 1}}).expect(201)
    wait_spread(ds, names)
    procs = []
    for i, n in enumerate(names):
        d = ds[i % len(ds)]
        procs.append(subprocess.Popen([loadgen, "--url", url(d), "--study", n, "--clients", "1",
                                       "--seconds", str(seconds), "--warmup", "0.5"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    total = 0.0
    p50 = []
    for p in procs:
        out, err = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            sys.exit("loadgen failed: %s %s" % (out, err))
        res = dict(kv.split("=") for kv in out.split())
        total += float(res["pairs_per_s"])
        p50.append(float(res["p50_ms"]))
    return total, statistics.median(p50)


def gp_load(ds, tag, n_studies, trials, seconds):
    names = ["%s-%d" % (tag, i) for i in range(n_studies)]
    for i, n in enumerate(names):
        ds[0].post("/v1/studies", {"name": n, "params": SPACE,
                                   "sampler": {"type": "gp", "seed": i}}).expect(201)
    wait_spread(ds, names)
    # Fill through each study's owner (no GP work: trials created with their values).
    for i, n in enumerate(names):
        c = Client(ds[i % len(ds)].port, timeout=60)
        for k in range(trials):
            x, y = ((k * 7919) % 1000) / 100.0 - 5, ((k * 104729) % 1000) / 100.0 - 5
            c.request("POST", "/v1/studies/%s/trials" % n,
                      {"params": {"x": x, "y": y}, "value": x * x + y * y}).expect(201)
        c.close()
    counts = [0] * n_studies
    stop = time.monotonic() + seconds

    def client(i):
        c = Client(ds[i % len(ds)].port, timeout=120)
        while time.monotonic() < stop:
            t = c.request("POST", "/v1/studies/%s/ask" % names[i]).expect(201)
            p = t["params"]
            c.request("POST", "/v1/studies/%s/trials/%d/tell" % (names[i], t["number"]),
                      {"value": p["x"] ** 2 + p["y"] ** 2}).expect(200)
            counts[i] += 1
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_studies)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def takeover(exe, cores, cluster, n):
    times = []
    for r in range(n):
        uri = cluster.new_database()
        a = Pinned(exe, cores[0], uri).start()
        b = Pinned(exe, cores[1], uri).start()
        try:
            names = ["k%d" % i for i in range(8)]
            for s in names:
                a.post("/v1/studies", {"name": s, "params": SPACE,
                                       "sampler": {"type": "random", "seed": 1}}).expect(201)
            owners = wait_spread([a, b], names)
            victim = next(s for s, o in zip(names, owners) if o == url(a))
            c = Client(b.port, timeout=30)
            c.request("POST", "/v1/studies/%s/ask" % victim).expect(201)
            a.kill()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60:
                r_ = c.request("POST", "/v1/studies/%s/ask" % victim)
                if r_.status == 201:
                    break
                time.sleep(0.01)
            times.append(time.monotonic() - t0)
            c.close()
        finally:
            a.close()
            b.close()
    return times


def latency(ds, n):
    ds[0].post("/v1/studies", {"name": "lat", "params": SPACE,
                               "sampler": {"type": "random", "seed": 1}}).expect(201)
    owner = wait_spread(ds, ["lat"])[0]
    direct = next(d for d in ds if url(d) == owner)
    other = next(d for d in ds if url(d) != owner)
    out = {}
    for name, d in (("direct", direct), ("forwarded", other)):
        conn = http.client.HTTPConnection("127.0.0.1", d.port)
        lat = []
        for k in range(n + 100):
            t0 = time.perf_counter()
            conn.request("GET", "/v1/studies/lat")
            r = conn.getresponse()
            r.read()
            if k >= 100:  # warm-up: connections, caches
                lat.append((time.perf_counter() - t0) * 1000.0)
        conn.close()
        out[name] = statistics.median(lat)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--gp-studies", type=int, default=16)
    ap.add_argument("--gp-trials", type=int, default=200)
    ap.add_argument("--gp-seconds", type=float, default=20.0)
    ap.add_argument("--takeovers", type=int, default=5)
    ap.add_argument("--latency-n", type=int, default=2000)
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    why = pgtest.available()
    if why is not None:
        sys.exit("cannot run: %s" % why)
    ncpu = os.cpu_count() or 1
    cores = [0, 1] if ncpu >= 2 else [None, None]
    cluster = pgtest.Cluster(fsync=True)
    version = cluster.psql("SHOW server_version").strip()
    print("PostgreSQL %s (Unix socket, fsync on); %d cores; daemons pinned to %s" %
          (version, ncpu, "cores 0 and 1" if cores[0] is not None else "nothing"), flush=True)
    res = {}
    with tempfile.TemporaryDirectory(prefix="hpod-bench-") as tmp:
        loadgen = build_curl_tool(os.path.join(ROOT, "bench", "throughput", "loadgen.c"), tmp)
        for n in (1, 2):
            uri = cluster.new_database()
            ds = [Pinned(args.hpod, cores[i], uri) for i in range(n)]
            for d in ds:
                d.start()
            try:
                pairs, p50 = throughput(ds, loadgen, "tp%d" % n, args.clients, args.seconds)
                print("ask+tell, random, %d clients, %d daemon(s): %8.0f pairs/s  p50 %.3f ms"
                      % (args.clients, n, pairs, p50), flush=True)
                res["pairs%d" % n] = pairs
                asks = gp_load(ds, "gp%d" % n, args.gp_studies, args.gp_trials, args.gp_seconds)
                print("GP-heavy, %d studies at %d+ trials, %d daemon(s): %7.1f asks/s"
                      % (args.gp_studies, args.gp_trials, n, asks), flush=True)
                res["gp%d" % n] = asks
                if n == 2:
                    lat = latency(ds, args.latency_n)
                    res["lat"] = lat
                    print("GET /v1/studies/{study} median latency: %.3f ms at the owner,"
                          " %.3f ms forwarded (+%.3f ms)" % (lat["direct"], lat["forwarded"],
                                                            lat["forwarded"] - lat["direct"]),
                          flush=True)
            finally:
                for d in ds:
                    d.close()
        times = takeover(args.hpod, cores, cluster, args.takeovers)
        print("takeover after SIGKILL: %s s" % ", ".join("%.2f" % t for t in times), flush=True)
    cluster.close()
    scale = res["gp2"] / res["gp1"] if res["gp1"] > 0 else 0.0
    added = res["lat"]["forwarded"] - res["lat"]["direct"]
    take = statistics.median(times)
    print()
    print("ask+tell pairs/s, %d clients: one daemon %.0f, two daemons %.0f (%.2fx)" %
          (args.clients, res["pairs1"], res["pairs2"], res["pairs2"] / res["pairs1"]))
    checks = [("GP-heavy two/one daemons >= 1.70x", scale >= 1.7, "%.2fx" % scale),
              ("takeover after SIGKILL median <= 5 s", take <= 5.0, "%.2f s" % take),
              ("forwarding adds <= 1 ms median", added <= 1.0, "%.3f ms" % added)]
    for what, ok, val in checks:
        print("target %s: %s (%s)" % (what, "met" if ok else "MISSED", val))
    print(json.dumps({k: v for k, v in res.items()}, sort_keys=True))
    if args.check and not all(ok for _, ok, _ in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
