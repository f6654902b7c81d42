#!/usr/bin/python3
"""run.py: the Python client's ask+tell pairs, kept connections against one per request.

Usage: bench/pyclient/run.py [HPOD] [--pairs 1000] [--repeat 3] [--threads 1]

HPOD defaults to build/daemon/hpod. Each mode gets a daemon of its own (its
own port, so its TIME_WAIT sockets are told apart); then `repeat` rounds, each
running every mode once in turn: a new random-sampler study of one float and
`pairs` ask+tell pairs (each trial told its param), timed (wall; CPU of this
process and of hpod). Modes:

  keepalive    hpod_client 0.2: one persistent connection per thread
  per-request  hpod_client 0.2 with keep_alive=False: a new connection per
               request, Connection: close (the transport's old behaviour)
  urllib       urllib.request.urlopen per request, as hpod_client 0.1 sent them

Around each run, `ss -tan state time-wait` counts the sockets in TIME_WAIT
with the daemon's port at either end; the difference is what the run left
behind (a TIME_WAIT socket lives 60 s). The median run
(CPU) and the fastest and median (wall) runs are printed per mode: the
machine may be shared, and the fastest run is the least disturbed. Standard library only; Debian's /usr/bin/python3.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "client", "python"))
import hpod_client  # noqa: E402
from hpodtest import Daemon  # noqa: E402

SPACE = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]


def time_wait(port):
    """Sockets in TIME_WAIT with port at either end (ss, else /proc/net/tcp)."""
    try:
        out = subprocess.run(["ss", "-Htan", "state", "time-wait"], capture_output=True, text=True,
                             check=True).stdout
        n = 0
        for line in out.splitlines():
            cols = line.split()
            ends = [c.rsplit(":", 1)[-1] for c in cols if ":" in c]
            if str(port) in ends:
                n += 1
        return n
    except (OSError, subprocess.CalledProcessError):
        n = 0
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                ports = {int(p[1].split(":")[1], 16), int(p[2].split(":")[1], 16)}
                if p[3] == "06" and port in ports:
                    n += 1
        return n


def proc_cpu(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pairs_client(client, study, n):
    s = client.load_study(study)
    for _ in range(n):
        t = s.ask()
        t.tell(t.params["x"])


def pairs_urllib(url, study, n):
    def post(path, body):
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    base = "/v1/studies/" + study
    for _ in range(n):
        t = post(base + "/ask", {})
        post(base + "/trials/%d/tell" % t["number"], {"value": t["params"]["x"]})


def run_once(d, client, mode, r, pairs, threads):
    """One run of `pairs` pairs on a fresh study: (wall, client cpu, hpod cpu, connections,
    new TIME_WAIT sockets)."""
    url = "http://127.0.0.1:%d" % d.port
    name = "bench-%s-%d" % (mode.replace("-", ""), r)
    client.create_study(name=name, params=SPACE, sampler={"type": "random", "seed": r})
    opened0 = client.transport.connections_opened
    per = [pairs // threads + (1 if i < pairs % threads else 0) for i in range(threads)]
    if mode == "urllib":
        work = [lambda k=k: pairs_urllib(url, name, k) for k in per]
    else:
        work = [lambda k=k: pairs_client(client, name, k) for k in per]
    tw0 = time_wait(d.port)
    d0 = proc_cpu(d.proc.pid)
    c0, t0 = time.process_time(), time.perf_counter()
    if threads == 1:
        work[0]()
    else:
        ths = [threading.Thread(target=w) for w in work]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    dcpu = proc_cpu(d.proc.pid) - d0
    tw = time_wait(d.port) - tw0
    info = client.load_study(name).info["trials"]
    assert info["complete"] == pairs, info
    if mode == "urllib":
        conns = 2 * pairs
    else:
        # The kept connection of the main thread was opened by create_study.
        conns = client.transport.connections_opened - opened0 + (1 if mode == "keepalive" else 0)
    return wall, cpu, dcpu, conns, tw


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("hpod", nargs="?", default=os.path.join(SRC, "build", "daemon", "hpod"))
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default="keepalive,per-request,urllib")
    a = ap.parse_args()
    print("%d ask+tell pairs, %d thread(s), %d runs: wall min and median; CPU medians"
          % (a.pairs, a.threads, a.repeat))
    print("%-12s %8s %8s %10s %10s %9s %12s %14s" % (
        "mode", "wall min", "median", "client cpu", "hpod cpu", "pairs/s", "connections",
        "new TIME_WAIT"))
    modes = a.modes.split(",")
    daemons = {m: Daemon(a.hpod).__enter__() for m in modes}
    try:
        clients = {m: hpod_client.Client("http://127.0.0.1:%d" % daemons[m].port,
                                         keep_alive=(m == "keepalive")) for m in modes}
        runs = {m: [] for m in modes}
        # Round robin, so that load from elsewhere on the machine hits every mode alike.
        for r in range(a.repeat):
            for m in modes:
                runs[m].append(run_once(daemons[m], clients[m], m, r, a.pairs, a.threads))
        for m in modes:
            tw = statistics.median(x[4] for x in runs[m])
            walls = [x[0] for x in runs[m]]
            cpu = statistics.median(x[1] for x in runs[m])
            dcpu = statistics.median(x[2] for x in runs[m])
            print("%-12s %8.3f %8.3f %10.3f %10.3f %9.0f %12d %14.0f" % (
                m, min(walls), statistics.median(walls), cpu, dcpu, a.pairs / min(walls),
                runs[m][-1][3], tw), flush=True)
    finally:
        for d in daemons.values():
            d.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
