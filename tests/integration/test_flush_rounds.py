#!/usr/bin/python3
"""test_flush_rounds.py: round commits under --synchronous full (the pipelined flush).

Usage: test_flush_rounds.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset)

Under --synchronous full on SQLite (the default) an HTTP thread runs a quick study's
requests inline and commits its round's writes at the round's end, as under normal; a
flusher thread's fdatasync then releases the replies, which wait unsuspended: the
HTTP thread sleeps on its daemon's epoll set (not in MHD's wait, which would spin on
them) until the flusher's release kicks it (api/loops.c, hpo__loops_hold).

- many_clients_one_study: 8 clients ask and tell on ONE study over two HTTP threads
  (bounded loops), each tell with its own exact value: every answer is 201 or 200 with
  that value, the trial numbers are 0..N-1, none twice; the daemon is SIGKILLed and
  restarted: every acknowledged tell is there, complete, with its exact value, and the
  study counts every trial complete.
- clients_gone_while_held: 6 threads send asks on fresh connections and close each at
  once (every other one with a reset) while their replies wait for the flush, and 2
  clients ask and tell: those keep getting their answers, the daemon stays up and stops
  cleanly (exit 0) with every request record released (ASan's leak and use-after-free
  checks under the sanitizer build).
- workers_beside_held_replies: while 4 clients ask and tell inline (their replies held
  for the flush), 2 clients read the study and the list (answered by workers and
  resumed from them: a kick of an HTTP thread that may be sleeping for a flush) and
  create studies: every read answers 200 and counts every trial it shows; at the end
  the study holds every told trial complete.

The replies' order against the fdatasync itself is checked by test_powercut.py (its
daemon runs this path: full is the default). Prints TAP.
"""

import os
import socket
import struct
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Client, Daemon, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()
STUDY = {"name": "s", "params": [{"name": "x", "type": "float", "low": -5, "high": 5},
                                 {"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}],
         "sampler": {"type": "random", "seed": 3}}
ARGS = ["--synchronous", "full", "--http-threads", "2"]
PAIRS = 50  # per client


def run_clients(n, fn):
    """fn(i) on n threads at once; their exceptions re-raised here."""
    errors = []

    def wrap(i):
        try:
            fn(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        check(not t.is_alive(), "a client thread did not finish within 120 s")
    if errors:
        raise errors[0]


def ask_tell(c, k, value):
    """One ask and its tell with `value` on Client c; the trial's number."""
    r = c.post("/v1/studies/s/ask", {})
    check(r.status == 201, "ask: %s" % r.describe())
    num = r.json["number"]
    r = c.post("/v1/studies/s/trials/%d/tell" % num, {"value": value})
    check(r.status == 200, "tell: %s" % r.describe())
    check(r.json["number"] == num and r.json["state"] == "complete" and r.json["value"] == value,
          "tell reply (pair %d): %s" % (k, r.describe()))
    return num


@tap.test
def many_clients_one_study(exe):
    with Daemon(exe, extra_args=ARGS) as d:
        d.post("/v1/studies", STUDY).expect(201)
        told = {}
        lock = threading.Lock()

        def client(i):
            c = Client(d.port)
            try:
                for k in range(PAIRS):
                    value = i * 1000.0 + k + 0.125
                    num = ask_tell(c, k, value)
                    with lock:
                        check(num not in told, "trial %d handed out twice" % num)
                        told[num] = value
            finally:
                c.close()

        run_clients(8, client)
        check(sorted(told) == list(range(8 * PAIRS)),
              "trial numbers are not 0..%d" % (8 * PAIRS - 1))
        d.kill()
        d.start()
        c = d.client()
        for num, value in sorted(told.items()):
            r = c.get("/v1/studies/s/trials/%d" % num)
            check(r.status == 200, "after SIGKILL: %s" % r.describe())
            check(r.json["state"] == "complete" and r.json["value"] == value,
                  "acknowledged tell of trial %d lost or changed: %s" % (num, r.describe()))
        r = c.get("/v1/studies/s")
        check(r.status == 200 and r.json["trials"]["complete"] == 8 * PAIRS and
              r.json["trials"]["total"] == 8 * PAIRS, "study after restart: %s" % r.describe())


def ask_and_leave(port, n):
    """n asks, each on a fresh connection closed right after sending it (every other one reset)."""
    body = b'{}'
    req = (b"POST /v1/studies/s/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    for k in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if k % 2 == 1:
            # SO_LINGER 0: the close sends a reset, which MHD sees while the reply waits.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(req)
        s.close()


@tap.test
def clients_gone_while_held(exe):
    with Daemon(exe, extra_args=ARGS) as d:
        d.post("/v1/studies", STUDY).expect(201)

        def client(i):
            if i >= 2:
                ask_and_leave(d.port, 100)
                return
            c = Client(d.port)
            try:
                for k in range(60):
                    ask_tell(c, k, float(k) + 0.5)
            finally:
                c.close()

        run_clients(8, client)
        c = d.client()
        r = c.post("/v1/studies/s/ask", {})
        check(r.status == 201, "ask after the gone clients: %s" % r.describe())
        d.stop()


@tap.test
def workers_beside_held_replies(exe):
    with Daemon(exe, extra_args=ARGS) as d:
        d.post("/v1/studies", STUDY).expect(201)

        def client(i):
            c = Client(d.port)
            try:
                if i < 4:
                    for k in range(PAIRS):
                        ask_tell(c, k, float(k))
                    return
                for k in range(30):
                    r = c.get("/v1/studies/s")
                    check(r.status == 200, "study: %s" % r.describe())
                    t = r.json["trials"]
                    check(t["total"] == t["running"] + t["complete"] + t["waiting"] +
                          t["pruned"] + t["failed"], "counts: %s" % r.describe())
                    r = c.get("/v1/studies")
                    check(r.status == 200, "list: %s" % r.describe())
                    if i == 5 and k % 6 == 0:
                        c.post("/v1/studies", dict(STUDY, name="o%d" % k)).expect(201)
            finally:
                c.close()

        run_clients(6, client)
        c = d.client()
        r = c.get("/v1/studies/s")
        check(r.status == 200 and r.json["trials"]["complete"] == 4 * PAIRS,
              "study: %s" % r.describe())
        d.stop()


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
