#!/usr/bin/python3
"""run.py: CSV export of a 1,000,000-trial study: time, size and the daemon's peak memory.

Usage: bench/csv/run.py [HPOD] [--trials 1000000] [--clients 4] [--attrs 1000]
                        [--state-dir DIR] [--exports 2]

HPOD defaults to build/daemon/hpod. The study (random sampler; a float, a log
float, a log int and a categorical) is filled through the daemon with
bench/restart/fill.c (put mode: POST .../trials {"params", "value"}); `attrs`
trials then get user attrs through PATCH (so the CSV has user_attrs_*
columns). With --state-dir the database is kept and reused when it already
holds the trials.

The daemon is then restarted (memory as after a load), and each export is
GET .../trials?format=csv (every row, streamed, read and discarded in 1 MiB
reads while /proc/PID/status is sampled every 20 ms). Before each export the
peak (VmHWM) is reset through /proc/PID/clear_refs, so the VmHWM read after
it is the export's own peak. Printed: rows, MB, seconds, MB/s, VmRSS before,
VmHWM during, and the growth; a buffered export would have needed about the
CSV's size on top (printed for comparison).
Standard library only; Debian's /usr/bin/python3.
"""

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
os.environ.setdefault("HPOD_TEST_READY_TIMEOUT", "900")
os.environ.setdefault("HPOD_TEST_STOP_TIMEOUT", "300")
os.environ.setdefault("HPOD_TEST_REQUEST_TIMEOUT", "300")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import Daemon, build_curl_tool, check  # noqa: E402

STUDY = {"name": "csv", "params": [{"name": "x", "type": "float", "low": -5, "high": 5},
                                   {"name": "lr", "type": "float", "low": 1e-5, "high": 1,
                                    "log": True},
                                   {"name": "n", "type": "int", "low": 1, "high": 100, "log": True},
                                   {"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}],
         "sampler": {"type": "random", "seed": 11}}
FILL_SPEC = "x:f:-5:5,lr:lf:1e-5:1,n:i:1:100,c:c"


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def export(d, pid):
    """One streamed export; returns (rows, bytes, seconds, rss_before_kb, hwm_kb, sampled_max_kb)."""
    with open("/proc/%d/clear_refs" % pid, "w") as fh:
        fh.write("5\n")  # reset VmHWM to the current RSS
    rss0 = status_kb(pid, "VmRSS")
    peak = [rss0]
    done = threading.Event()

    def sampler():
        while not done.is_set():
            peak[0] = max(peak[0], status_kb(pid, "VmRSS"))
            time.sleep(0.02)

    th = threading.Thread(target=sampler)
    th.start()
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=300)
    conn.request("GET", "/v1/studies/csv/trials?format=csv")
    resp = conn.getresponse()
    check(resp.status == 200, "export answered %d" % resp.status)
    total = int(resp.getheader("X-Total-Count"))
    nbytes, lines, tail = 0, 0, b""
    while True:
        chunk = resp.read(1 << 20)
        if not chunk:
            break
        nbytes += len(chunk)
        lines += chunk.count(b"\n")
        tail = chunk[-200:]
    seconds = time.monotonic() - t0
    conn.close()
    done.set()
    th.join()
    hwm = status_kb(pid, "VmHWM")
    check(lines - 1 == total, "%d rows for X-Total-Count %d" % (lines - 1, total))
    check(tail.endswith(b"\n"), "export does not end with a full line")
    return lines - 1, nbytes, seconds, rss0, hwm, peak[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hpod", nargs="?", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--trials", type=int, default=1000000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--attrs", type=int, default=1000)
    ap.add_argument("--exports", type=int, default=2)
    ap.add_argument("--state-dir")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="hpod-bench-csv-")
    fill = build_curl_tool(os.path.join(ROOT, "bench", "restart", "fill.c"), tmp.name)
    d = Daemon(args.hpod, state_dir=args.state_dir)
    d.start()
    try:
        r = d.get("/v1/studies/csv")
        have = r.json["trials"]["total"] if r.status == 200 else 0
        if r.status == 404:
            d.post("/v1/studies", STUDY).expect(201)
        if have < args.trials:
            t0 = time.monotonic()
            p = subprocess.run([fill, "--url", "http://127.0.0.1:%d" % d.port, "--study", "csv",
                                "--n", str(args.trials - have), "--clients", str(args.clients),
                                "--params", FILL_SPEC], capture_output=True, text=True)
            check(p.returncode == 0, "fill failed: %s %s" % (p.stdout, p.stderr))
            step = max(1, args.trials // max(1, args.attrs))
            c = d.client()
            for k in range(args.attrs):
                c.request("PATCH", "/v1/studies/csv/trials/%d" % (k * step),
                          {"user_attrs": {"fold": k % 5, "tag": "run-%d" % (k % 7)}}).expect(200)
            c.close()
            print("filled %d trials in %.1f s (%s)" % (args.trials - have, time.monotonic() - t0,
                                                       p.stdout.strip()), flush=True)
        d.close_clients()
        d.stop()
        d.start()
        pid = d.proc.pid
        print("after restart: VmRSS %.1f MB, VmHWM %.1f MB (load)"
              % (status_kb(pid, "VmRSS") / 1024, status_kb(pid, "VmHWM") / 1024), flush=True)
        for i in range(args.exports):
            rows, nbytes, seconds, rss0, hwm, sampled = export(d, pid)
            print("export %d: %d rows, %.1f MB in %.2f s (%.0f MB/s, %.0f rows/s); "
                  "VmRSS before %.1f MB, VmHWM during %.1f MB (+%.1f MB; sampled max %.1f MB); "
                  "a buffered reply would add ~%.0f MB"
                  % (i + 1, rows, nbytes / 1e6, seconds, nbytes / 1e6 / seconds, rows / seconds,
                     rss0 / 1024, hwm / 1024, (hwm - rss0) / 1024, sampled / 1024,
                     nbytes / 1048576), flush=True)
    finally:
        d.close()
        tmp.cleanup()


if __name__ == "__main__":
    main()
