#!/usr/bin/python3
"""ask_latency.py: wall time of one ask over HTTP at N finished trials, for each
multi-objective sampler (issue 14: <= 20 ms at 1,000 trials; gp <= 300 ms).

A study with 2 objectives (ZDT1 on 10 params) and 2 constraints
(memory <= 8, recall >= 0.1) gets N complete trials recorded with
POST .../trials (random points, every 7th without constraints); then
--asks asks, each told at once (so every ask sees N, N+1, ... finished
trials), are timed client-side over one keep-alive connection.

  /usr/bin/python3 bench/multiobjective/ask_latency.py --hpod build/daemon/hpod
  /usr/bin/python3 bench/multiobjective/ask_latency.py --samplers tpe --trials 1000 --asks 50
"""

import argparse
import http.client
import json
import math
import os
import random
import statistics
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import start_hpod  # noqa: E402

D = 10


def zdt1(x):
    g = 1 + 9 * sum(x[1:]) / (len(x) - 1)
    return x[0], g * (1 - math.sqrt(x[0] / g))


class Conn:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def req(self, method, path, body, want):
        self.c.request(method, path, body=json.dumps(body),
                       headers={"Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        if r.status != want:
            raise RuntimeError("%s %s -> %d %s" % (method, path, r.status, data[:300]))
        return json.loads(data)


def result(x, i):
    f1, f2 = zdt1(x)
    body = {"values": {"f1": f1, "f2": f2}}
    if i % 7 != 3:
        body["constraints"] = {"memory": 10 * x[1] + x[2], "recall": x[3]}
    return body


def measure(conn, sampler, n, asks, seed):
    name = "lat-%s-%d-%d" % (sampler, n, os.getpid())
    conn.req("POST", "/v1/studies", {
        "name": name,
        "params": [{"name": "x%d" % j, "type": "float", "low": 0, "high": 1} for j in range(D)],
        "objectives": [{"name": "f1", "direction": "minimize"},
                       {"name": "f2", "direction": "minimize"}],
        "constraints": [{"name": "memory", "max": 8}, {"name": "recall", "min": 0.1}],
        "sampler": {"type": sampler, "seed": seed}}, 201)
    rng = random.Random(seed)
    for i in range(n):
        x = [rng.random() for _ in range(D)]
        body = result(x, i)
        body["params"] = {"x%d" % j: x[j] for j in range(D)}
        conn.req("POST", "/v1/studies/%s/trials" % name, body, 201)
    times = []
    for i in range(asks):
        t0 = time.perf_counter()
        t = conn.req("POST", "/v1/studies/%s/ask" % name, {}, 201)
        times.append(time.perf_counter() - t0)
        x = [t["params"]["x%d" % j] for j in range(D)]
        conn.req("POST", "/v1/studies/%s/trials/%d/tell" % (name, t["number"]),
                 result(x, n + i), 200)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samplers", default="tpe,nsga2,random")
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--asks", type=int, default=50)
    ap.add_argument("--hpod", help="hpod binary to start (else $HPOD_URL)")
    args = ap.parse_args()
    proc = None
    url = os.environ.get("HPOD_URL", "http://127.0.0.1:8080")
    if args.hpod:
        proc, url = start_hpod(args.hpod)
    try:
        conn = Conn(url)
        print("%d finished trials (2 objectives, 2 constraints, %d params); %d asks"
              % (args.trials, D, args.asks))
        for s in args.samplers.split(","):
            med, p95 = measure(conn, s, args.trials, args.asks, 1)
            print("%-8s ask median %.2f ms, p95 %.2f ms" % (s, 1e3 * med, 1e3 * p95), flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
