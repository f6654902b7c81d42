#!/usr/bin/python3
"""run.py: ask+tell pairs/s over HTTPS with tokens against plain HTTP, in one run.

Usage: bench/tls/run.py [--hpod build/daemon/hpod] [--seconds 5] [--repeat 3] [--clients 8]
                        [--synchronous normal|full]

Two daemons on fresh databases, both with --synchronous normal (the throughput
target's condition, bench/throughput/run.py; --synchronous full compares the
two under the default instead): plain HTTP without tokens, and HTTPS (TLS 1.3, a
P-256 certificate made here with openssl) with a tokens file and a write token.
`repeat` alternating rounds of bench/throughput/loadgen.c (C + libcurl, one keep-alive
connection per client thread, libcurl for both runs; HPOD_CACERT and HPOD_TOKEN for the TLS run), each on a
fresh study with the random sampler. Prints every round with its ratio, the medians,
the ratio of the medians and the median of the rounds' ratios (target: TLS + tokens
>= 70% of plain). Then, with 1,000 idle connections held open
to the TLS daemon (its per-client cap raised to 1100: they come from one address), the latency of 1,000 sequential /healthz over one keep-alive TLS
connection (target p99 < 10 ms).

Standard library only; Debian's /usr/bin/python3; needs openssl and libcurl's headers.
"""

import argparse
import http.client
import os
import resource
import socket
import ssl
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
from hpodtest import Daemon, build_curl_tool, make_ca, make_server_cert, mint_token  # noqa: E402
from run import proc_cpu_seconds  # noqa: E402

SPACE = [{"name": "x", "type": "float", "low": -5, "high": 5},
         {"name": "n", "type": "int", "low": 1, "high": 100, "log": True},
         {"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}]
TARGET_RATIO = 0.70
TARGET_P99_MS = 10.0


def create_study(port, name, ctx=None, token=None):
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    import json
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    conn.request("POST", "/v1/studies", body=json.dumps(
        {"name": name, "params": SPACE, "sampler": {"type": "random", "seed": 1}}), headers=h)
    r = conn.getresponse()
    r.read()
    conn.close()
    if r.status != 201:
        sys.exit("create %s: %d" % (name, r.status))


def loadgen_run(loadgen, url, study, clients, seconds, env, pid):
    e = dict(os.environ)
    e.update(env)
    cpu0 = proc_cpu_seconds(pid)
    # libcurl for both: plain and TLS runs driven by the same client.
    out = subprocess.run([loadgen, "--url", url, "--study", study, "--clients", str(clients),
                          "--seconds", str(seconds), "--warmup", "0.5", "--client", "curl"],
                         capture_output=True, text=True, timeout=seconds + 120, env=e)
    cpu1 = proc_cpu_seconds(pid)
    if out.returncode != 0:
        sys.exit("loadgen failed (%d): %s %s" % (out.returncode, out.stdout, out.stderr))
    res = {k: float(v) for k, v in (kv.split("=") for kv in out.stdout.split())}
    # hpod's CPU per 1000 pairs (warm-up included in both terms): less sensitive to a busy host.
    res["cpu_ms_per_kpair"] = 1e6 * (cpu1 - cpu0) / max(1.0, res["pairs_per_s"] * (seconds + 0.5))
    return res


def healthz_latency(port, ctx, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1300, hard), hard))
    held = []
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        held.append(s)
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            lat.append((time.perf_counter() - t0) * 1000)
            if r.status != 200:
                sys.exit("/healthz: %d" % r.status)
        conn.close()
    finally:
        for s in held:
            s.close()
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    a = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="hpod-bench-tls-")
    loadgen = build_curl_tool(os.path.join(ROOT, "bench", "throughput", "loadgen.c"), tmp.name)
    ca = make_ca(tmp.name)
    cert, key = make_server_cert(tmp.name, "server", ca)
    token, line = mint_token(a.hpod, "bench:write")
    tokens = os.path.join(tmp.name, "tokens")
    with open(tokens, "w") as f:
        f.write(line + "\n")
    ctx = ssl.create_default_context(cafile=ca[0])
    plain, tls, cpu_plain, cpu_tls = [], [], [], []
    sync = ["--synchronous", a.synchronous]
    print("hpod %s, synchronous=%s, %d clients, %d cores" % (a.hpod, a.synchronous, a.clients,
                                                             os.cpu_count()), flush=True)
    with Daemon(a.hpod, extra_args=sync) as dp, Daemon(a.hpod, extra_args=sync + [
            "--tls-cert", cert, "--tls-key", key, "--tokens", tokens,
            "--max-connections-per-client", "1100"]) as dt:
        for i in range(a.repeat):
            name = "p%d" % i
            create_study(dp.port, name)
            r = loadgen_run(loadgen, "http://127.0.0.1:%d" % dp.port, name, a.clients,
                            a.seconds, {}, dp.proc.pid)
            plain.append(r["pairs_per_s"])
            cpu_plain.append(r["cpu_ms_per_kpair"])
            print("round %d plain http        : %8.1f pairs/s  p50 %.3f ms  p99 %.3f ms  "
                  "hpod %.0f ms CPU per 1000 pairs" % (i + 1, r["pairs_per_s"], r["p50_ms"],
                                                       r["p99_ms"], r["cpu_ms_per_kpair"]),
                  flush=True)
            create_study(dt.port, name, ctx, token)
            r = loadgen_run(loadgen, "https://127.0.0.1:%d" % dt.port, name, a.clients,
                            a.seconds, {"HPOD_CACERT": ca[0], "HPOD_TOKEN": token}, dt.proc.pid)
            tls.append(r["pairs_per_s"])
            cpu_tls.append(r["cpu_ms_per_kpair"])
            print("round %d https + tokens    : %8.1f pairs/s  p50 %.3f ms  p99 %.3f ms  "
                  "hpod %.0f ms CPU per 1000 pairs  %.0f%% of plain"
                  % (i + 1, r["pairs_per_s"], r["p50_ms"], r["p99_ms"], r["cpu_ms_per_kpair"],
                     100 * tls[-1] / plain[-1]), flush=True)
        mp, mt = statistics.median(plain), statistics.median(tls)
        ratio = mt / mp
        print("median, %d clients: plain %.1f pairs/s, https + tokens %.1f pairs/s: %.0f%% "
              "(target >= %.0f%%) %s; median of the rounds' ratios %.0f%%"
              % (a.clients, mp, mt, 100 * ratio, 100 * TARGET_RATIO,
                 "OK" if ratio >= TARGET_RATIO else "BELOW TARGET",
                 100 * statistics.median(t / p for t, p in zip(tls, plain))))
        print("hpod CPU per 1000 pairs (median): plain %.0f ms, https + tokens %.0f ms"
              % (statistics.median(cpu_plain), statistics.median(cpu_tls)))
        p50, p99 = healthz_latency(dt.port, ctx, 1000)
        print("/healthz over TLS with 1000 idle connections held: p50 %.2f ms, p99 %.2f ms "
              "(target p99 < %.0f ms) %s" % (p50, p99, TARGET_P99_MS,
                                            "OK" if p99 < TARGET_P99_MS else "ABOVE TARGET"))
    tmp.cleanup()


if __name__ == "__main__":
    main()
