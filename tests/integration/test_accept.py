#!/usr/bin/python3
"""test_accept.py: the balanced accept of the HTTP threads (api/loops.c).

Usage: test_accept.py PATH/TO/hpod   (HPOD_TEST_ONLY=name,name runs a subset)

With more than one HTTP thread no libmicrohttpd daemon accepts on the shared
listening socket: an acceptor thread accepts and gives each connection to the
thread with the fewest open connections (before, one thread's accept often took
every connection of a burst and the other thread served none).
`hpod_http_thread_connections{thread}` in /metrics shows each thread's share.

- spread_evenly: 8 keep-alive clients (and the scrape's own connection) over 2
  and over 4 HTTP threads: the shares differ by at most one and add up to
  hpod_open_connections; after the 8 close, the shares drop back to the
  scrape's one connection, and 4 new clients spread again.
- one_study_killed_mid_request: 8 clients on ONE study over 2 HTTP threads (4
  each, checked while they wait at a barrier) ask and tell with exact values
  until the daemon is SIGKILLed while they are mid-request; after a restart
  the study's trials are numbered 0..M-1 without a gap (write k+1 of a study
  never commits without write k), every acknowledged ask is among them and
  every acknowledged tell is complete with its exact value.
- out_of_descriptors: the daemon's descriptor limit lowered (prlimit) a few
  above what it holds: of 12 new connections some are served and the rest
  wait unaccepted (the acceptor pauses instead of spinning on the readable
  socket); once they close, new connections are served again, and the
  daemon stops cleanly.

Prints TAP.
"""

import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Client, Daemon, Skip, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()
STUDY = {"name": "s", "params": [{"name": "x", "type": "float", "low": -5, "high": 5},
                                 {"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}],
         "sampler": {"type": "random", "seed": 5}}


def shares(d):
    """(per-thread open connections, hpod_open_connections) from one scrape."""
    r = d.get("/metrics")
    check(r.status == 200, "metrics: %s" % r.describe())
    text = r.body.decode("utf-8") if isinstance(r.body, bytes) else r.body
    per = {}
    total = None
    for line in text.splitlines():
        m = re.match(r'hpod_http_thread_connections\{thread="(\d+)"\} (\d+)$', line)
        if m:
            per[int(m.group(1))] = int(m.group(2))
        m = re.match(r"hpod_open_connections (\d+)$", line)
        if m:
            total = int(m.group(1))
    check(total is not None, "no hpod_open_connections in /metrics")
    return [per[k] for k in sorted(per)], total


def check_even(d, threads, want_total):
    got, total = shares(d)
    check(len(got) == threads, "%d thread shares, want %d: %r" % (len(got), threads, got))
    check(sum(got) == total == want_total,
          "shares %r (sum %d), open %d, want %d" % (got, sum(got), total, want_total))
    check(max(got) - min(got) <= 1, "connections not spread evenly: %r" % got)


@tap.test
def spread_evenly(exe):
    for threads in (2, 4):
        with Daemon(exe, extra_args=["--http-threads", str(threads)]) as d:
            clients = [Client(d.port) for _ in range(8)]
            for c in clients:
                r = c.get("/healthz")
                check(r.status == 200, "healthz: %s" % r.describe())
            check_even(d, threads, 9)  # the 8 and the scrape's own
            for c in clients:
                c.close()
            # The closes reach the threads as events: bounded wait for the counts to drop.
            for _ in range(200):
                got, total = shares(d)
                if total == 1:
                    break
                time.sleep(0.05)
            check(total == 1 and sum(got) == 1, "after the closes: %r, open %d" % (got, total))
            clients = [Client(d.port) for _ in range(4)]
            for c in clients:
                check(c.get("/healthz").status == 200, "healthz after reconnect")
            got, total = shares(d)
            check(sum(got) == total == 5 and max(got) - min(got) <= 1,
                  "4 new clients: %r, open %d" % (got, total))
            for c in clients:
                c.close()


@tap.test
def one_study_killed_mid_request(exe):
    with Daemon(exe, extra_args=["--synchronous", "normal", "--http-threads", "2"]) as d:
        d.post("/v1/studies", STUDY).expect(201)
        d.close_clients()
        asked = {}
        told = {}
        lock = threading.Lock()
        ready = threading.Barrier(9, timeout=60)
        stop = threading.Event()

        def client(i):
            c = Client(d.port)
            try:
                r = c.get("/healthz")
                check(r.status == 200, "healthz: %s" % r.describe())
                ready.wait()  # every client connected: the shares are checked
                ready.wait()  # then all go
                for k in range(100000):
                    if stop.is_set():
                        return
                    r = c.post("/v1/studies/s/ask", {})
                    check(r.status == 201, "ask: %s" % r.describe())
                    num = r.json["number"]
                    with lock:
                        check(num not in asked, "trial %d handed out twice" % num)
                        asked[num] = i
                    value = i * 10000.0 + k + 0.375
                    r = c.post("/v1/studies/s/trials/%d/tell" % num, {"value": value})
                    check(r.status == 200 and r.json["value"] == value, "tell: %s" % r.describe())
                    with lock:
                        told[num] = value
            except Exception:  # noqa: BLE001 - the SIGKILL cuts requests short
                if not stop.is_set():
                    raise
            finally:
                c.close()

        errors = []

        def wrap(i):
            try:
                client(i)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=wrap, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        ready.wait()
        check_even(d, 2, 9)  # 4 and 4, and the scrape's own
        d.close_clients()
        ready.wait()
        # Let them run: until 400 tells are acknowledged (at most 60 s), then SIGKILL.
        for _ in range(1200):
            with lock:
                if len(told) >= 400 or errors:
                    break
            time.sleep(0.05)
        stop.set()
        d.kill()
        for t in threads:
            t.join(timeout=60)
            check(not t.is_alive(), "a client did not finish within 60 s of the SIGKILL")
        if errors:
            raise errors[0]
        check(len(told) > 0, "no tell acknowledged before the SIGKILL")
        d.start()
        c = d.client()
        r = c.get("/v1/studies/s")
        check(r.status == 200, "study after restart: %s" % r.describe())
        total = r.json["trials"]["total"]
        check(total >= len(asked), "%d trials stored, %d asks acknowledged" % (total, len(asked)))
        for num in range(total):
            r = c.get("/v1/studies/s/trials/%d" % num)
            check(r.status == 200, "trial %d of 0..%d missing: %s" % (num, total - 1, r.describe()))
            if num in told:
                check(r.json["state"] == "complete" and r.json["value"] == told[num],
                      "acknowledged tell of trial %d lost or changed: %s" % (num, r.describe()))
        r = c.get("/v1/studies/s/trials/%d" % total)
        check(r.status == 404, "a trial past 0..%d: %s" % (total - 1, r.describe()))
        check(all(num < total for num in asked), "an acknowledged ask is not stored")


@tap.test
def out_of_descriptors(exe):
    if shutil.which("prlimit") is None:
        raise Skip("no prlimit (util-linux) to lower the daemon's descriptor limit")
    with Daemon(exe, extra_args=["--http-threads", "2"]) as d:
        d.post("/v1/studies", STUDY).expect(201)
        d.close_clients()
        opened = len(os.listdir("/proc/%d/fd" % d.proc.pid))
        with open("/proc/%d/limits" % d.proc.pid) as f:
            soft = [line.split()[3] for line in f if line.startswith("Max open files")][0]
        limit = opened + 6
        # The soft limit only (lowering and raising it back needs no privilege).
        subprocess.run(["prlimit", "--pid", str(d.proc.pid), "--nofile=%d:" % limit], check=True)
        # Up to the limit: each served; past it the accept fails (EMFILE), the rest wait in the backlog.
        held = []
        for _ in range(12):
            c = Client(d.port, timeout=1)
            try:
                ok = c.get("/healthz").status == 200
            except Exception:  # noqa: BLE001 - not accepted: no answer within 1 s
                ok = False
            held.append((c, ok))
        served = sum(1 for _, ok in held if ok)
        check(0 < served < 12, "%d of 12 connections served at %d descriptors" % (served, limit))
        for c, _ in held:
            c.close()
        # Descriptors free again: the acceptor takes new connections (bounded wait: 60 s).
        for _ in range(60):
            c = Client(d.port, timeout=1)
            try:
                if c.get("/healthz").status == 200:
                    break
            except Exception:  # noqa: BLE001 - not yet
                pass
            finally:
                c.close()
        else:
            check(False, "no connection served after the descriptors were freed")
        subprocess.run(["prlimit", "--pid", str(d.proc.pid), "--nofile=%s:" % soft], check=True)
        c = d.client()
        check(c.post("/v1/studies/s/ask", {}).status == 201, "ask after the descriptors came back")
        c.close()
        d.stop()


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
