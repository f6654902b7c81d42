#!/usr/bin/python3
"""test_durability.py: concurrency, SIGKILL durability and loop responsiveness of hpod.

Usage: test_durability.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset)

- sigkill_under_load: 8 client threads ask/tell in a loop (bounded by count and
  time) and record every tell that got a 2xx with its value. SIGKILL while they
  run; start again on the same database: every acknowledged tell is stored,
  complete, with its exact value; no number was handed out twice; numbers are
  0..N-1 with no gap; every acknowledged ask is there.
- concurrent_asks_unique: 8 clients x 500 concurrent asks get the numbers
  0..3999 exactly once.
- healthz_during_slow_ask: with HPOD_TEST_SUGGEST_DELAY_MS=2000, /healthz (kept-alive and
  on fresh connections) answers within 100 ms while an ask is in flight.
- sigterm_finishes_inflight: SIGTERM during a slow ask: the ask still gets its
  201, the daemon exits 0, and the trial is stored.

Prints TAP.
"""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()

STUDY = {"name": "load", "params": [{"name": "x", "type": "float", "low": -5, "high": 5},
                                    {"name": "n", "type": "int", "low": 1, "high": 100, "log": True},
                                    {"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}],
         "sampler": {"type": "random", "seed": 11}}


def run_threads(n, target):
    errors = []

    def wrap(i):
        try:
            target(i)
        except Exception as e:  # noqa: BLE001 - collected and reported by the main thread
            errors.append("thread %d: %s: %s" % (i, type(e).__name__, e))

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, errors


@tap.test
def sigkill_under_load(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        lock = threading.Lock()
        asked = {}       # number -> params of every acknowledged ask
        told = {}        # number -> value of every acknowledged tell
        dup = []
        stop = threading.Event()
        max_iters, max_seconds = 400, 20.0
        t_end = time.monotonic() + max_seconds

        def worker(i):
            c = d.client()
            try:
                for k in range(max_iters):
                    if stop.is_set() or time.monotonic() > t_end:
                        return
                    try:
                        r = c.post("/v1/studies/load/ask", {"worker": "w%d" % i})
                    except OSError:
                        return  # the daemon was killed
                    if r.status != 201:
                        raise AssertionError("ask: %s" % r.describe())
                    t = r.json
                    with lock:
                        if t["number"] in asked:
                            dup.append(t["number"])
                        asked[t["number"]] = t["params"]
                    value = t["params"]["x"] * 1.0000000000000002 + i * 1e-9 + k
                    try:
                        r = c.post("/v1/studies/load/trials/%d/tell" % t["number"], {"value": value})
                    except OSError:
                        return
                    if r.status != 200:
                        raise AssertionError("tell: %s" % r.describe())
                    with lock:
                        told[t["number"]] = value
            finally:
                c.close()

        threads, errors = run_threads(8, worker)
        # Kill once a good number of tells were acknowledged (bounded wait).
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            with lock:
                n = len(told)
            if n >= 1500:
                break
            if not any(t.is_alive() for t in threads):
                break
            time.sleep(0.01)
        d.kill()
        stop.set()
        for t in threads:
            t.join(30)
        check(not errors, "client errors before the kill: %s" % errors[:5])
        check(not dup, "numbers handed out twice: %r" % dup[:10])
        check(len(told) >= 100, "only %d tells acknowledged before the kill" % len(told))
        d.start()
        lst = d.get("/v1/studies/load/trials?limit=100000").expect(200)
        by_no = {t["number"]: t for t in lst["trials"]}
        check(len(by_no) == len(lst["trials"]) == lst["total"], "duplicate numbers in storage")
        check(sorted(by_no) == list(range(len(by_no))), "numbers stored are not 0..N-1")
        lost = [n for n in told if n not in by_no or by_no[n]["state"] != "complete" or
                by_no[n]["value"] != told[n]]
        check(not lost, "%d of %d acknowledged tells lost or changed after SIGKILL, e.g. %r"
              % (len(lost), len(told), [(n, told[n], by_no.get(n)) for n in lost[:3]]))
        missing = [n for n in asked if n not in by_no or by_no[n]["params"] != asked[n]]
        check(not missing, "acknowledged asks missing after SIGKILL: %r" % missing[:10])
        # The study goes on: the next ask gets the next number.
        nxt = d.post("/v1/studies/load/ask").expect(201)
        check(nxt["number"] == len(by_no), "next number %r after restart, expected %d"
              % (nxt["number"], len(by_no)))
        print("# %d asks, %d tells acknowledged before SIGKILL; %d trials stored"
              % (len(asked), len(told), len(by_no)))


@tap.test
def concurrent_asks_unique(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        lock = threading.Lock()
        numbers = []
        barrier = threading.Barrier(8)

        def worker(i):
            c = d.client()
            got = []
            try:
                c.get("/healthz").expect(200)
                barrier.wait(30)
                for _ in range(500):
                    r = c.post("/v1/studies/load/ask", {"worker": "w%d" % i})
                    if r.status != 201:
                        raise AssertionError("ask: %s" % r.describe())
                    got.append(r.json["number"])
            finally:
                c.close()
                with lock:
                    numbers.extend(got)

        t0 = time.monotonic()
        threads, errors = run_threads(8, worker)
        for t in threads:
            t.join(120)
        dt = time.monotonic() - t0
        check(not any(t.is_alive() for t in threads), "clients still running after 120 s")
        check(not errors, "client errors: %s" % errors[:5])
        check(sorted(numbers) == list(range(4000)),
              "numbers are not 0..3999 exactly once: %d numbers, %d distinct, min %r max %r"
              % (len(numbers), len(set(numbers)), min(numbers, default=None),
                 max(numbers, default=None)))
        s = d.get("/v1/studies/load").expect(200)
        check(s["trials"]["running"] == 4000 and s["trials"]["total"] == 4000, "counts %r" % s["trials"])
        print("# 4000 concurrent asks in %.2f s (%.0f/s)" % (dt, 4000 / dt))


@tap.test
def healthz_during_slow_ask(exe):
    with Daemon(exe, env={"HPOD_TEST_SUGGEST_DELAY_MS": "2000"}) as d:
        d.post("/v1/studies", STUDY).expect(201)
        result = {}

        def slow():
            c = d.client()
            t = time.monotonic()
            result["resp"] = c.post("/v1/studies/load/ask")
            result["seconds"] = time.monotonic() - t
            c.close()

        th = threading.Thread(target=slow)
        th.start()
        # Give the ask 300 ms to reach the sampler (the delay is 2000 ms), then
        # time /healthz on a kept-alive connection and on fresh connections.
        time.sleep(0.3)
        c = d.client()
        c.get("/healthz").expect(200)  # connect outside the timed window
        worst = 0.0
        for i in range(20):
            if i % 5 == 4:
                fresh = d.client()
                t = time.monotonic()
                fresh.get("/healthz").expect(200)
                worst = max(worst, time.monotonic() - t)
                fresh.close()
            else:
                t = time.monotonic()
                c.get("/healthz").expect(200)
                worst = max(worst, time.monotonic() - t)
            time.sleep(0.03)
        still_in_flight = th.is_alive()
        # Informational: a read of the study list (not required by API.md to be fast).
        t = time.monotonic()
        c.get("/v1/studies").expect(200)
        list_ms = (time.monotonic() - t) * 1000
        c.close()
        th.join(30)
        check(still_in_flight, "the slow ask finished before the /healthz checks ended "
              "(HPOD_TEST_SUGGEST_DELAY_MS not honoured?)")
        check(worst < 0.1, "/healthz took %.0f ms while a slow ask was in flight" % (worst * 1000))
        check(result["resp"].status == 201 and result["seconds"] >= 1.9,
              "slow ask: %s after %.2f s" % (result["resp"].describe(), result["seconds"]))
        print("# GET /v1/studies during the slow ask took %.0f ms (informational)" % list_ms)
        print("# worst /healthz during a 2 s ask: %.1f ms" % (worst * 1000))


@tap.test
def sigterm_finishes_inflight(exe):
    with Daemon(exe, env={"HPOD_TEST_SUGGEST_DELAY_MS": "1000"}) as d:
        d.post("/v1/studies", STUDY).expect(201)
        result = {}

        def slow():
            c = d.client()
            try:
                result["resp"] = c.post("/v1/studies/load/ask")
            except OSError as e:
                result["error"] = e
            c.close()

        th = threading.Thread(target=slow)
        th.start()
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGTERM)
        th.join(30)
        check("resp" in result, "in-flight ask got no answer on SIGTERM: %r" % result.get("error"))
        check(result["resp"].status == 201, "in-flight ask: %s" % result["resp"].describe())
        rc = d.proc.wait(30)
        check(rc == 0, "exit status %d after SIGTERM" % rc)
        msgs = "\n".join(d.notify_messages()).split("\n")
        check("STOPPING=1" in msgs, "no STOPPING=1 after SIGTERM: %r" % msgs)
        d.proc = None
        d._close_notify()
        d.start()
        t = d.get("/v1/studies/load/trials/0").expect(200)
        check(t["state"] == "running" and t["params"] == result["resp"].json["params"],
              "the in-flight trial was not stored: %r" % t)


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
