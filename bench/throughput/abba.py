#!/usr/bin/python3
"""abba.py: two hpod builds (or two modes) kept up side by side, ABBA-interleaved windows.

Usage: bench/throughput/abba.py A B MODE CLIENTS [PAIRS] [SECONDS]
  MODE: normal, full, or "normal,full" (A under the first, B under the second)

Both daemons start once (each on a fresh SQLite file in a temporary
directory, a study with the random sampler and the three-parameter space of
run.py) and stay up; then PAIRS pairs of loadgen windows of SECONDS each
(+0.3 s warm-up), A then B, B then A, ... so that the machine's drift falls
on both alike. Prints each side's median pairs/s and CPU per pair, and the
median of the per-pair ratios B/A with their spread: the figure to trust on
a noisy machine (an A/A run of one build gives its noise: 1.04, spread
0.97-1.21, on the 2-core machine of docs/DESIGN.md). durable.py and run.py
restart daemons per round; this keeps them up, for small differences.
loadgen is compiled as run.py does. Standard library only.
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import build_curl_tool  # noqa: E402

SPACE = ('{"name":"s","params":[{"name":"x","type":"float","low":-5,"high":5},'
         '{"name":"n","type":"int","low":1,"high":100,"log":true},'
         '{"name":"c","type":"categorical","choices":["a","b","c"]}],'
         '"sampler":{"type":"random","seed":1}}')


def start(exe, mode, tmp):
    d = tempfile.mkdtemp(prefix="abba-", dir=tmp)
    p = subprocess.Popen([exe, "--listen", "127.0.0.1:0", "--db", os.path.join(d, "hpod.db"),
                          "--synchronous", mode], stderr=subprocess.PIPE, text=True)
    while True:
        line = p.stderr.readline()
        if not line:
            sys.exit("%s did not start" % exe)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            break
    port = int(m.group(1))
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "POST", "-H",
                    "Content-Type: application/json", "-d", SPACE,
                    "http://127.0.0.1:%d/v1/studies" % port], check=True)
    return p, port


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def window(loadgen, p, port, clients, secs):
    c0 = cpu_s(p.pid)
    out = subprocess.run([loadgen, "--url", "http://127.0.0.1:%d" % port, "--study", "s",
                          "--clients", str(clients), "--seconds", str(secs), "--warmup", "0.3"],
                         capture_output=True, text=True, check=True).stdout
    c1 = cpu_s(p.pid)
    pps = float(dict(kv.split("=") for kv in out.split())["pairs_per_s"])
    return pps, 1e6 * (c1 - c0) / (pps * (secs + 0.3))


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    a, b, mode, clients = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    pairs = int(sys.argv[5]) if len(sys.argv) > 5 else 12
    secs = float(sys.argv[6]) if len(sys.argv) > 6 else 1.5
    ma, mb = mode.split(",") if "," in mode else (mode, mode)
    with tempfile.TemporaryDirectory(prefix="hpod-abba-") as tmp:
        loadgen = build_curl_tool(os.path.join(HERE, "loadgen.c"), tmp)
        pa, porta = start(a, ma, tmp)
        pb, portb = start(b, mb, tmp)
        ra, rb, ca, cb = [], [], [], []
        try:
            for i in range(pairs):
                order = [(pa, porta, ra, ca), (pb, portb, rb, cb)]
                for p, port, r, c in (order if i % 2 == 0 else order[::-1]):
                    x, y = window(loadgen, p, port, clients, secs)
                    r.append(x)
                    c.append(y)
        finally:
            for p in (pa, pb):
                p.terminate()
                p.wait(timeout=30)
    ratios = sorted(y / x for x, y in zip(ra, rb))
    print("%s, %d clients, %d ABBA pairs of %.1f s: A %.0f pairs/s (%.1f us CPU/pair), "
          "B %.0f (%.1f us); B/A median %.3f [%s]"
          % (mode, clients, pairs, secs, statistics.median(ra), statistics.median(ca),
             statistics.median(rb), statistics.median(cb), statistics.median(ratios),
             " ".join("%.2f" % r for r in ratios)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
