#!/usr/bin/python3
"""cluster.py: one hpod vs two hpods on one PostgreSQL (docs/CLUSTER.md).

Usage: bench/pg/cluster.py [--hpod build/daemon/hpod] [--seconds 5] [--gp-seconds 20]
                           [--gp-trials 300] [--gp-runs 1] [--takeovers 5] [--latency-n 2000]
                           [--check]

In one run, on one throwaway PostgreSQL cluster (tests/integration/pgtest.py, Unix socket,
fsync on), each daemon pinned to one core with taskset when the machine has two or more:

1. ask+tell pairs/s, random sampler, 8 clients (bench/throughput/loadgen.c, one process and
   one study per client): one daemon, then two daemons with the clients spread over both
   (each client talks to one daemon; its study's owner is either, so about half the
   requests are forwarded).
2. GP-heavy: 16 gp studies, each filled with --gp-trials finished trials, then 16 clients
   (one per study, each talking to its study's owner) ask and tell for --gp-seconds: asks/s
   with one daemon and with two, --gp-runs times (the studies per daemon printed: the
   placement gives each of two daemons 8). Target: two >= 1.7x one (median ratio). OpenBLAS runs one thread
   (samplers/gp.c) and a daemon's workers share its one pinned core, so one daemon is one
   core's worth of GP work.
3. Takeover after SIGKILL: two daemons; a client asks through one for a study the other
   owns; the owner is killed; the time until an ask succeeds again. Median of --takeovers.
   Target <= 5 s.
4. Forwarding overhead: median latency of GET /v1/studies/{study} sent to the owner and
   sent to the other daemon (forwarded), --latency-n each, one keep-alive connection.
   Target: added median <= 1 ms.
"""

import argparse
import contextlib
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


def wait_spread(ds, names, timeout=30.0):
    """Until every study has an owner among ds and none moved for 3 s: the placement
    settled (a create lands on a daemon's share at once, but creates through several
    daemons, or a daemon that just joined, are evened out by hand-offs at the next
    heartbeats)."""
    urls = {url(d) for d in ds}
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        owners = [owner_of(ds, n) for n in names]
        if owners != last:
            last, since = owners, time.monotonic()
        elif all(o in urls for o in owners) and time.monotonic() - since >= 3.0:
            break
        time.sleep(0.25)
    return last


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
    owners = wait_spread(ds, names)
    # Each study's client talks to its owner: the GP work is where the study is, and no
    # daemon spends its core forwarding another's asks.
    port = [next((d.port for d in ds if url(d) == o), ds[i % len(ds)].port)
            for i, o in enumerate(owners)]
    spread = {o: owners.count(o) for o in set(owners)}
    # Fill through each study's owner (no GP work: trials created with their values).
    for i, n in enumerate(names):
        c = Client(port[i], timeout=60)
        for k in range(trials):
            x, y = ((k * 7919) % 1000) / 100.0 - 5, ((k * 104729) % 1000) / 100.0 - 5
            c.request("POST", "/v1/studies/%s/trials" % n,
                      {"params": {"x": x, "y": y}, "value": x * x + y * y}).expect(201)
        c.close()
    counts = [0] * n_studies
    retries = [0] * n_studies
    moves0 = moves(ds)
    stop = time.monotonic() + seconds

    def call(c, i, path, body, status):
        # 503 (a study moved, e.g. a heartbeat that lapsed on a loaded machine): retry,
        # as clients do; counted.
        for _ in range(2000):
            r = c.request("POST", path, body)
            if r.status != 503:
                return r.expect(status)
            retries[i] += 1
            time.sleep(0.05)
        return r.expect(status)

    def client(i):
        c = Client(port[i], timeout=120)
        while time.monotonic() < stop:
            t = call(c, i, "/v1/studies/%s/ask" % names[i], None, 201)
            p = t["params"]
            call(c, i, "/v1/studies/%s/trials/%d/tell" % (names[i], t["number"]),
                 {"value": p["x"] ** 2 + p["y"] ** 2}, 200)
            counts[i] += 1
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_studies)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = sum(counts) / (time.monotonic() - t0)
    moved = moves(ds) - moves0
    if moved or sum(retries):
        print("  (during the GP load: %d studies changed owner, %d requests answered 503 and"
              " retried)" % (moved, sum(retries)), flush=True)
    return rate, sorted(spread.values())


def moves(ds):
    """Claims and hand-offs so far, over the daemons (/metrics)."""
    total = 0
    for d in ds:
        text = d.get("/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith(("hpod_cluster_claims_total ", "hpod_cluster_releases_total ")):
                total += int(float(line.split()[1]))
    return total


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


@contextlib.contextmanager
def fleet(exe, cores, cluster, n):
    """n pinned daemons started on a fresh database of `cluster`, closed on leaving."""
    uri = cluster.new_database()
    ds = [Pinned(exe, cores[i], uri) for i in range(n)]
    try:
        for d in ds:
            d.start()
        yield ds
    finally:
        for d in ds:
            d.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--gp-studies", type=int, default=16)
    ap.add_argument("--gp-trials", type=int, default=300)
    ap.add_argument("--gp-seconds", type=float, default=20.0)
    ap.add_argument("--gp-runs", type=int, default=1, help="GP-heavy comparisons (one then two"
                    " daemons, each on a fresh database); the median ratio is checked")
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
    print("PostgreSQL %s (Unix socket, fsync on); %d cores; daemons pinned to %s;"
          " load average %.2f %.2f %.2f" % ((version, ncpu, "cores 0 and 1" if cores[0] is not None
                                            else "nothing") + os.getloadavg()), flush=True)
    res = {}
    with tempfile.TemporaryDirectory(prefix="hpod-bench-") as tmp:
        loadgen = build_curl_tool(os.path.join(ROOT, "bench", "throughput", "loadgen.c"), tmp)
        for n in (1, 2):
            with fleet(args.hpod, cores, cluster, n) as ds:
                pairs, p50 = throughput(ds, loadgen, "tp%d" % n, args.clients, args.seconds)
                print("ask+tell, random, %d clients, %d daemon(s): %8.0f pairs/s  p50 %.3f ms"
                      % (args.clients, n, pairs, p50), flush=True)
                res["pairs%d" % n] = pairs
                if n == 2:
                    lat = latency(ds, args.latency_n)
                    res["lat"] = lat
                    print("GET /v1/studies/{study} median latency: %.3f ms at the owner,"
                          " %.3f ms forwarded (+%.3f ms)" % (lat["direct"], lat["forwarded"],
                                                            lat["forwarded"] - lat["direct"]),
                          flush=True)
        # GP-heavy: one daemon then two, --gp-runs times (each a fresh database).
        ratios = []
        for r in range(args.gp_runs):
            asks = {}
            for n in (1, 2):
                with fleet(args.hpod, cores, cluster, n) as ds:
                    asks[n], spread = gp_load(ds, "gp%d" % n, args.gp_studies, args.gp_trials,
                                              args.gp_seconds)
                print("GP-heavy run %d, %d studies at %d+ trials, %d daemon(s): %7.1f asks/s"
                      " (studies per daemon %s; load average %.2f)"
                      % (r + 1, args.gp_studies, args.gp_trials, n, asks[n], spread,
                         os.getloadavg()[0]), flush=True)
            ratios.append(asks[2] / asks[1] if asks[1] > 0 else 0.0)
            print("GP-heavy run %d: two/one daemons %.2fx" % (r + 1, ratios[-1]), flush=True)
            res.setdefault("gp1", []).append(asks[1])
            res.setdefault("gp2", []).append(asks[2])
        times = takeover(args.hpod, cores, cluster, args.takeovers)
        print("takeover after SIGKILL: %s s" % ", ".join("%.2f" % t for t in times), flush=True)
    cluster.close()
    scale = statistics.median(ratios)
    added = res["lat"]["forwarded"] - res["lat"]["direct"]
    take = statistics.median(times)
    print()
    print("ask+tell pairs/s, %d clients: one daemon %.0f, two daemons %.0f (%.2fx)" %
          (args.clients, res["pairs1"], res["pairs2"], res["pairs2"] / res["pairs1"]))
    checks = [("GP-heavy two/one daemons >= 1.70x (median of %d runs)" % len(ratios),
               scale >= 1.7, "%.2fx; runs %s" % (scale, ", ".join("%.2fx" % x for x in ratios))),
              ("takeover after SIGKILL median <= 5 s", take <= 5.0, "%.2f s" % take),
              ("forwarding adds <= 1 ms median", added <= 1.0, "%.3f ms" % added)]
    for what, ok, val in checks:
        print("target %s: %s (%s)" % (what, "met" if ok else "MISSED", val))
    print(json.dumps({k: v for k, v in res.items()}, sort_keys=True))
    if args.check and not all(ok for _, ok, _ in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
