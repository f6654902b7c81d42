#!/usr/bin/python3
"""bench/gradient: round-trip latency of the gradient sampler over HTTP.

One round = ask + download of the vector + upload of the gradient + tell,
on docs/ALGORITHMS.md §7.7 E6 (a_i = 2 + i mod 5, b = 1, per-coordinate closed-form
hypergradient, λ log in [1e-3, 1e3], adam lr 0.1). Modes:

  binary  N = 10^6: GET .../params/lam and PUT .../gradient/lam (float64 LE)
  json    N = 10^4: params via GET (a vector over 1000 elements is an href),
          gradient as a JSON array in the tell body
  json    N = 1000: params inline in the ask reply, gradient in the tell body

It also checks E6's first Adam step over HTTP to 1e-9, reports the daemon's
resident memory in vectors' worth (8N bytes) and runs the sampler-only micro
benchmark (bench-sampler.c, compiled here) for the sampler's own share.

Usage: /usr/bin/python3 bench/gradient/run.py [--hpod build/daemon/hpod]
       [--n 1000000] [--rounds 30]
"""
import argparse
import glob
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
E6_ADAM_ONE_STEP = [1.0, 1.105170915129, 1.105170916970, 1.105170917486, 1.105170917707]


class Daemon:
    def __init__(self, hpod):
        self.dir = tempfile.mkdtemp(prefix="hpod-bench-grad-")
        self.proc = subprocess.Popen(
            [hpod, "--listen", "127.0.0.1:0", "--db", os.path.join(self.dir, "hpod.db")],
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        self.port = None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.stop()
            raise SystemExit("hpod did not start")
        # Drain stderr so the daemon never blocks on a full pipe.
        self.drain = subprocess.Popen(["cat"], stdin=self.proc.stderr,
                                      stdout=subprocess.DEVNULL)

    def rss_mb(self):
        fields = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        return (int(fields["VmRSS"].split()[0]) / 1024.0,
                int(fields["VmHWM"].split()[0]) / 1024.0)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None, raw=None, ctype="application/json"):
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = ctype
        self.c.request(method, path, body=data, headers=headers)
        r = self.c.getresponse()
        payload = r.read()
        if r.status >= 300:
            raise RuntimeError("%s %s -> %d %s" % (method, path, r.status, payload[:300]))
        if r.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(payload)
        return payload


def e6_grad(lam):
    a = 2.0 + (np.arange(lam.size) % 5)
    w = a / (1.0 + lam)
    g = -(w - 1.0) * a / (1.0 + lam) ** 2
    return g, float(0.5 * np.sum((w - 1.0) ** 2))


def run(cli, name, n, rounds, mode):
    study = {"name": name, "params": [{"name": "lam", "type": "float", "low": 1e-3,
                                       "high": 1e3, "log": True, "size": n}],
             "sampler": {"type": "gradient", "optimizer": "adam", "lr": 0.1, "seed": 1}}
    cli.call("POST", "/v1/studies", study)
    times = {"ask": [], "get": [], "grad": [], "put": [], "tell": [], "total": []}
    first_step_err = None
    for r in range(rounds):
        t0 = time.perf_counter()
        trial = cli.call("POST", "/v1/studies/%s/ask" % name, {})
        t1 = time.perf_counter()
        p = trial["params"]["lam"]
        if isinstance(p, dict):
            lam = np.frombuffer(cli.call("GET", p["href"]), dtype="<f8")
        else:
            lam = np.asarray(p, dtype=float)
        t2 = time.perf_counter()
        g, loss = e6_grad(lam)
        t3 = time.perf_counter()
        base = "/v1/studies/%s/trials/%d" % (name, trial["number"])
        if mode == "binary":
            # The array's own buffer (float64, little-endian here): no copy on the client.
            cli.call("PUT", base + "/gradient/lam", raw=memoryview(np.ascontiguousarray(g, "<f8")),
                     ctype="application/octet-stream")
            t4 = time.perf_counter()
            cli.call("POST", base + "/tell", {"value": loss})
        else:
            t4 = time.perf_counter()
            cli.call("POST", base + "/tell", {"value": loss, "gradient": {"lam": g.tolist()}})
        t5 = time.perf_counter()
        if r == 1:
            want = np.array(E6_ADAM_ONE_STEP)[np.arange(n) % 5]
            first_step_err = float(np.max(np.abs(lam - want)))
        for k, v in (("ask", t1 - t0), ("get", t2 - t1), ("grad", t3 - t2), ("put", t4 - t3),
                     ("tell", t5 - t4), ("total", t5 - t0 - (t3 - t2))):
            times[k].append(v * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("%-6s N=%-8d rounds=%d  median ms: round trip %.1f (ask %.1f, download %.1f, "
          "upload %.1f, tell %.1f; client numpy %.1f)  E6 step-1 max|err| %.2e"
          % (mode, n, rounds, med["total"], med["ask"], med["get"], med["put"], med["tell"],
             med["grad"], first_step_err))
    return med


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--n", type=int, default=1000000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()

    # The meson target bench/bench-sampler of the build that holds --hpod, when there is one;
    # otherwise one cc command over the sampler and every core source.
    build = os.path.dirname(os.path.dirname(os.path.abspath(args.hpod)))
    exe = os.path.join(build, "bench", "bench-sampler")
    if not os.path.exists(os.path.join(build, "build.ninja")) or subprocess.call(
            ["ninja", "-C", build, "bench/bench-sampler"], stdout=subprocess.DEVNULL) != 0:
        exe = os.path.join(tempfile.gettempdir(), "hpod-bench-gradient-sampler")
        core = sorted(glob.glob(os.path.join(ROOT, "core", "*.c")))
        subprocess.check_call(
            ["cc", "-O2", "-D_GNU_SOURCE", "-o", exe, os.path.join(HERE, "bench-sampler.c"),
             os.path.join(ROOT, "samplers", "gradient.c")] + core +
            ["-ljansson", "-lm", "-lpthread"])
    # E6 at N: sgd lr 1.0 must bring every element within 1e-9 of lam* in 100 steps.
    for opt, rounds in (("adam", args.rounds), ("sgd", 100)):
        subprocess.check_call([exe, str(args.n), str(rounds), opt])

    d = Daemon(args.hpod)
    try:
        cli = Client(d.port)
        rss0, _ = d.rss_mb()
        med = run(cli, "bench-bin", args.n, args.rounds, "binary")
        rss1, hwm1 = d.rss_mb()
        vec_mb = 8.0 * args.n / 2 ** 20
        print("daemon memory: RSS %.0f MB before the study, %.0f MB after (+%.1f vectors of "
              "%.1f MB), peak %.0f MB (+%.1f vectors)"
              % (rss0, rss1, (rss1 - rss0) / vec_mb, vec_mb, hwm1, (hwm1 - rss0) / vec_mb))
        run(cli, "bench-json-1e4", 10000, args.rounds, "json")
        run(cli, "bench-json-1e3", 1000, args.rounds, "json")
        verdict = "PASS" if med["total"] <= 50.0 else "OVER"
        print("target: <= 50 ms median per round trip at N=%d: %s" % (args.n, verdict))
    finally:
        d.stop()


if __name__ == "__main__":
    sys.exit(main())
