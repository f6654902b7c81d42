#!/usr/bin/python3
"""test_rounds.py: round commits on the HTTP threads (docs/STYLE.md rule 33).

Usage: test_rounds.py PATH/TO/hpod [normal|full]   (HPOD_TEST_ONLY=name,name runs a subset)

On SQLite each HTTP thread (a libmicrohttpd daemon of its own, api/loops.c) runs a
study's quick requests inline, commits the writes of its round in one group
transaction at the round's end, and sends the replies it held in its next round
without suspending their connections. The suite runs it under both --synchronous
modes (the second argument, normal by default): under full a flusher thread's
fdatasync releases the replies, which wait unsuspended while the HTTP thread sleeps
on its daemon's epoll set until the release kicks it (hpo__loops_hold); the replies'
order against the fdatasync itself is checked by test_powercut.py.

- one_study_many_clients: 8 clients ask and tell on ONE study over two HTTP threads
  (bounded loops), each tell with its own exact value: every answer is 201 (ask) or 200 (tell), no trial
  number is handed out twice and they are 0..N-1; the daemon is then SIGKILLed (no
  clean stop) and restarted: every acknowledged tell is complete with its exact value
  (a reply goes only after its commit), every acknowledged ask is stored.
- clients_gone_mid_round: 6 threads send asks on fresh connections and close each
  at once without reading the reply (every other one with a reset), while 2 clients ask and tell normally: those
  keep getting 200, the daemon stays up, and it stops cleanly (exit 0) with every
  request record released (under ASan, LeakSanitizer and use-after-free checks).
- handed_off_and_gone: 8 clients on ONE study over two HTTP threads (whose round ends
  hand their writes to each other's commits, or commit them, as they meet); 2 of them
  send every third tell with its own exact value and close the connection at once
  (reset) without reading the reply: those 2 and the 6 others keep going; after a
  SIGKILL and a restart every acknowledged ask is a trial (numbers 0..N-1, none twice),
  every acknowledged tell is complete with its exact value, and a tell whose client left
  is either complete with its own value or not applied (the trial still running).
- other_studies_and_workers: while 4 clients ask and tell on one study inline, 2
  clients read the study list and the study (answered by workers, resumed from
  them: the kick of the connection's HTTP thread) and create studies: every read
  answers 200 within the request timeout and shows every trial it counts.

Prints TAP.
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
MODE = sys.argv[2] if len(sys.argv) > 2 else "normal"
ARGS = ["--synchronous", MODE, "--http-threads", "2"]
PAIRS = 60  # per client


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


@tap.test
def one_study_many_clients(exe):
    with Daemon(exe, extra_args=ARGS) as d:
        d.post("/v1/studies", STUDY).expect(201)
        asked = {}
        told = {}
        lock = threading.Lock()

        def client(i):
            c = Client(d.port)
            try:
                for k in range(PAIRS):
                    r = c.post("/v1/studies/s/ask", {})
                    check(r.status == 201, "ask: %s" % r.describe())
                    num = r.json["number"]
                    with lock:
                        check(num not in asked, "trial %d handed out twice" % num)
                        asked[num] = i
                    value = i * 1000.0 + k + 0.25
                    r = c.post("/v1/studies/s/trials/%d/tell" % num, {"value": value})
                    check(r.status == 200, "tell: %s" % r.describe())
                    check(r.json["state"] == "complete" and r.json["value"] == value,
                          "tell reply: %s" % r.describe())
                    with lock:
                        told[num] = value
            finally:
                c.close()

        run_clients(8, client)
        check(sorted(asked) == list(range(8 * PAIRS)),
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
        check(r.status == 200 and r.json["trials"]["complete"] == 8 * PAIRS,
              "study after restart: %s" % r.describe())


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
def clients_gone_mid_round(exe):
    with Daemon(exe, extra_args=ARGS) as d:
        d.post("/v1/studies", STUDY).expect(201)

        def client(i):
            if i >= 2:
                ask_and_leave(d.port, 150)
                return
            c = Client(d.port)
            try:
                for k in range(80):
                    r = c.post("/v1/studies/s/ask", {})
                    check(r.status == 201, "ask: %s" % r.describe())
                    r = c.post("/v1/studies/s/trials/%d/tell" % r.json["number"],
                               {"value": float(k)})
                    check(r.status == 200, "tell: %s" % r.describe())
            finally:
                c.close()

        run_clients(8, client)
        c = d.client()
        r = c.post("/v1/studies/s/ask", {})
        check(r.status == 201, "ask after the gone clients: %s" % r.describe())
        d.stop()


def tell_and_leave(port, num, value):
    """A tell sent on a fresh connection closed with a reset right after it, reply unread."""
    body = ('{"value": %r}' % value).encode()
    req = (b"POST /v1/studies/s/trials/%d/tell HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (num, len(body), body))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.sendall(req)
    s.close()


@tap.test
def handed_off_and_gone(exe):
    with Daemon(exe, extra_args=ARGS) as d:
        d.post("/v1/studies", STUDY).expect(201)
        asked = set()
        told = {}
        left = {}
        lock = threading.Lock()

        def client(i):
            c = Client(d.port)
            try:
                for k in range(PAIRS):
                    r = c.post("/v1/studies/s/ask", {})
                    check(r.status == 201, "ask: %s" % r.describe())
                    num = r.json["number"]
                    with lock:
                        check(num not in asked, "trial %d handed out twice" % num)
                        asked.add(num)
                    value = -(i * 1000.0 + k + 0.625)
                    if i < 2 and k % 3 == 0:
                        tell_and_leave(d.port, num, value)
                        with lock:
                            left[num] = value
                        continue
                    r = c.post("/v1/studies/s/trials/%d/tell" % num, {"value": value})
                    check(r.status == 200 and r.json["value"] == value, "tell: %s" % r.describe())
                    with lock:
                        told[num] = value
            finally:
                c.close()

        run_clients(8, client)
        check(sorted(asked) == list(range(8 * PAIRS)),
              "trial numbers are not 0..%d" % (8 * PAIRS - 1))
        d.kill()
        d.start()
        c = d.client()
        for num in sorted(asked):
            r = c.get("/v1/studies/s/trials/%d" % num)
            check(r.status == 200, "acknowledged ask of trial %d lost: %s" % (num, r.describe()))
            if num in told:
                check(r.json["state"] == "complete" and r.json["value"] == told[num],
                      "acknowledged tell of trial %d lost or changed: %s" % (num, r.describe()))
            elif num in left:
                check(r.json["state"] == "running" or
                      (r.json["state"] == "complete" and r.json["value"] == left[num]),
                      "tell of trial %d whose client left: %s" % (num, r.describe()))
        r = c.get("/v1/studies/s")
        check(r.status == 200 and r.json["trials"]["total"] == 8 * PAIRS,
              "study after restart: %s" % r.describe())


@tap.test
def other_studies_and_workers(exe):
    with Daemon(exe, extra_args=ARGS) as d:
        d.post("/v1/studies", STUDY).expect(201)
        done = threading.Event()

        def client(i):
            c = Client(d.port)
            try:
                if i < 4:
                    for k in range(PAIRS):
                        r = c.post("/v1/studies/s/ask", {})
                        check(r.status == 201, "ask: %s" % r.describe())
                        r = c.post("/v1/studies/s/trials/%d/tell" % r.json["number"],
                                   {"value": float(k)})
                        check(r.status == 200, "tell: %s" % r.describe())
                    return
                for k in range(40):
                    r = c.get("/v1/studies/s")
                    check(r.status == 200, "study: %s" % r.describe())
                    t = r.json["trials"]
                    check(t["total"] == t["running"] + t["complete"] + t["waiting"] +
                          t["pruned"] + t["failed"], "counts: %s" % r.describe())
                    r = c.get("/v1/studies")
                    check(r.status == 200, "list: %s" % r.describe())
                    if i == 5 and k % 8 == 0:
                        other = dict(STUDY, name="o%d" % k)
                        c.post("/v1/studies", other).expect(201)
            finally:
                c.close()

        run_clients(6, client)
        done.set()
        c = d.client()
        r = c.get("/v1/studies/s")
        check(r.status == 200 and r.json["trials"]["complete"] == 4 * PAIRS,
              "study: %s" % r.describe())
        d.stop()


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
