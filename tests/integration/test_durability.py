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
- races: 8 identical concurrent creates (one 201, seven 200), 8 conflicting
  creates (one 201, seven 409), 8 different tells on one trial (one 200, seven
  409, the winner's value stored), 8 x 20 asks against max_trials 50 (exactly
  numbers 0..49, the rest exhausted).
- delete_under_load: DELETE while 8 clients ask/tell: only 2xx/404 answers;
  the recreated study starts at 0, also after a restart.
- storage_locked_unavailable: another process holds the SQLite write lock past
  busy_timeout: an ask and a tell are acknowledged from the redo log (read
  back at once, absent from the database file meanwhile), a study's creation
  (committed to the database itself) answers 503 unavailable and changes
  nothing, /healthz answers 503 once the log could not be applied; once
  released the log is applied, /healthz is 200 again, and a restart finds
  every acknowledged write.
- redo_log_applied_after_sigkill: the same lock, then SIGKILL: the writes
  acknowledged from the redo log are in `hpod.db.redo` and not in the
  database; the next start applies them (trials, values, the next number),
  and a clean stop leaves the log empty.

Prints TAP.
"""

import os
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hpodtest  # noqa: E402
from hpodtest import Daemon, Skip, Tap, check, exe_from_argv  # noqa: E402

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
        # Informational: a read of the study list (not required by docs/REFERENCE.md to be fast).
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


@tap.test
def races(exe):
    """Concurrent creates, tells on one trial, and asks against max_trials."""
    with Daemon(exe) as d:
        lock = threading.Lock()
        statuses = []

        def record(r):
            with lock:
                statuses.append((r.status, r.json))

        # 8 identical creates at once: one 201, seven 200, all the same study.
        barrier = threading.Barrier(8)

        def create_same(i):
            c = d.client()
            c.get("/healthz")
            barrier.wait(30)
            record(c.post("/v1/studies", STUDY))
            c.close()
        threads, errors = run_threads(8, create_same)
        for t in threads:
            t.join(60)
        check(not errors, "create errors: %s" % errors)
        codes = sorted(st for st, _ in statuses)
        check(codes == [200] * 7 + [201], "8 identical concurrent creates: %r" % codes)
        bodies = [b for _, b in statuses]
        check(all(b == bodies[0] for b in bodies), "concurrent creates answered different studies")

        # 8 different definitions under one name at once: one 201, seven conflicts.
        statuses.clear()
        barrier = threading.Barrier(8)

        def create_other(i):
            c = d.client()
            c.get("/healthz")
            barrier.wait(30)
            # user_attrs are not part of the identity: max_trials makes them differ.
            record(c.post("/v1/studies", dict(STUDY, name="race", max_trials=100 + i)))
            c.close()
        threads, errors = run_threads(8, create_other)
        for t in threads:
            t.join(60)
        check(not errors, "create errors: %s" % errors)
        codes = sorted(st for st, _ in statuses)
        check(codes == [201] + [409] * 7, "8 conflicting concurrent creates: %r" % codes)
        winner = [b for st, b in statuses if st == 201][0]
        check(d.get("/v1/studies/race").expect(200) == winner, "stored study is not the 201 one")
        check(all(b["error"]["code"] == "conflict" for st, b in statuses if st == 409),
              "losers must get conflict: %r" % statuses)

        # 8 different tells on one trial at once: one 200, seven 409; the stored value is the winner's.
        t0 = d.post("/v1/studies/load/ask").expect(201)
        statuses.clear()
        barrier = threading.Barrier(8)

        def tell_one(i):
            c = d.client()
            c.get("/healthz")
            barrier.wait(30)
            record(c.post("/v1/studies/load/trials/%d/tell" % t0["number"], {"value": 0.5 + i}))
            c.close()
        threads, errors = run_threads(8, tell_one)
        for t in threads:
            t.join(60)
        check(not errors, "tell errors: %s" % errors)
        codes = sorted(st for st, _ in statuses)
        check(codes == [200] + [409] * 7, "8 different concurrent tells: %r" % codes)
        won = [b for st, b in statuses if st == 200][0]
        stored = d.get("/v1/studies/load/trials/%d" % t0["number"]).expect(200)
        check(stored["value"] == won["value"] and stored["state"] == "complete",
              "stored %r, winner said %r" % (stored, won))

        # 8 clients x 20 asks against max_trials 50: exactly 50 trials, numbers 0..49, rest exhausted.
        d.post("/v1/studies", dict(STUDY, name="capped", max_trials=50)).expect(201)
        statuses.clear()
        barrier = threading.Barrier(8)

        def ask_capped(i):
            c = d.client()
            c.get("/healthz")
            barrier.wait(30)
            for _ in range(20):
                record(c.post("/v1/studies/capped/ask"))
            c.close()
        threads, errors = run_threads(8, ask_capped)
        for t in threads:
            t.join(60)
        check(not errors, "ask errors: %s" % errors)
        ok = sorted(b["number"] for st, b in statuses if st == 201)
        rest = [(st, b["error"]["code"]) for st, b in statuses if st != 201]
        check(ok == list(range(50)), "max_trials 50 under 8 concurrent clients handed out %d: %r"
              % (len(ok), ok[:60]))
        check(all(x == (409, "exhausted") for x in rest) and len(rest) == 110,
              "the other asks: %r" % rest[:5])
        check(d.get("/v1/studies/capped").expect(200)["trials"]["total"] == 50, "capped total")


@tap.test
def delete_under_load(exe):
    """DELETE a study while 8 clients ask/tell on it; then recreate it from scratch."""
    with Daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        lock = threading.Lock()
        seen = []
        started = threading.Event()

        def worker(i):
            c = d.client()
            for _ in range(300):
                r = c.post("/v1/studies/load/ask")
                started.set()
                with lock:
                    seen.append(("ask", r.status))
                if r.status != 201:
                    break
                r = c.post("/v1/studies/load/trials/%d/tell" % r.json["number"], {"value": 1.0})
                with lock:
                    seen.append(("tell", r.status))
                if r.status != 200:
                    break
            c.close()

        threads, errors = run_threads(8, worker)
        check(started.wait(30), "no ask answered")
        time.sleep(0.2)
        r = d.delete("/v1/studies/load")
        check(r.status == 204, "delete under load: %s" % r.describe())
        for t in threads:
            t.join(60)
        check(not errors, "client errors: %s" % errors[:5])
        bad = [x for x in seen if x[1] not in (200, 201, 404)]
        check(not bad, "answers other than 2xx/404 while deleting: %r" % bad[:10])
        d.get("/v1/studies/load").expect_error(404, "not_found")
        d.post("/v1/studies", STUDY).expect(201)
        check(d.post("/v1/studies/load/ask").expect(201)["number"] == 0, "recreated study numbering")
        check(d.get("/v1/studies/load/trials").expect(200)["total"] == 1, "old trials came back")
        d.restart()
        check(d.get("/v1/studies/load/trials").expect(200)["total"] == 1,
              "old trials came back after restart")


@tap.test
def storage_locked_unavailable(exe):
    """Another process holds the database's write lock past busy_timeout: asks and tells are
    acknowledged from the redo log, a study's creation answers 503 unavailable and changes
    nothing, /healthz says 503 while the log cannot be applied; once the lock is gone the log
    is applied, /healthz is 200, and a restart finds every acknowledged write."""
    import sqlite3
    if hpodtest.BACKEND == "pg":
        raise Skip("SQLite's file lock (PostgreSQL's lock_timeout: test_pg.py)")
    with Daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        t0 = d.post("/v1/studies/load/ask").expect(201)
        db = sqlite3.connect(d.db, timeout=10, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            t1 = d.post("/v1/studies/load/ask").expect(201, "ask while the database is locked")
            check(t1["number"] == 1, "ask while locked: %r" % t1)
            d.post("/v1/studies/load/trials/%d/tell" % t0["number"], {"value": 1.0}).expect(
                200, "tell while the database is locked")
            lst = d.get("/v1/studies/load/trials").expect(200)["trials"]
            check([(t["number"], t["state"]) for t in lst] == [(0, "complete"), (1, "running")],
                  "read back while locked: %r" % lst)
            t = time.monotonic()
            r = d.post("/v1/studies", dict(STUDY, name="other"))
            waited = time.monotonic() - t
            r.expect_error(503, "unavailable", None, "a study's creation while locked")
            d.get("/v1/studies/other").expect(404, "the refused creation left a study")
            deadline = time.monotonic() + 20
            while d.get("/healthz").status != 503 and time.monotonic() < deadline:
                time.sleep(0.05)
            d.get("/healthz").expect(503, "healthz while the log cannot be applied")
            rows = db.execute("SELECT number, value FROM trials ORDER BY number").fetchall()
            check(rows == [(0, None)], "the database file before the lock's release: %r" % rows)
        finally:
            db.rollback()
            db.close()
        deadline = time.monotonic() + 20
        while d.get("/healthz").status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        d.get("/healthz").expect(200, "healthz once the log is applied")
        t2 = d.post("/v1/studies/load/ask").expect(201, "ask after the lock is released")
        check(t2["number"] == 2, "the next number after the lock: %r" % t2["number"])
        d.restart()
        lst = d.get("/v1/studies/load/trials").expect(200)["trials"]
        check([(t["number"], t["state"], t["value"]) for t in lst] ==
              [(0, "complete", 1.0), (1, "running", None), (2, "running", None)],
              "after restart: %r" % lst)
        print("# a study's creation answered 503 after %.1f s of lock wait" % waited)


@tap.test
def redo_log_applied_after_sigkill(exe):
    """Writes acknowledged from the redo log while the database is locked, then SIGKILL: they
    are in hpod.db.redo, not in the database; the next start applies them; a clean stop
    leaves the log empty."""
    import sqlite3
    if hpodtest.BACKEND == "pg":
        raise Skip("SQLite's redo log")
    with Daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        d.post("/v1/studies/load/ask").expect(201)
        db = sqlite3.connect(d.db, timeout=10, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            for i in range(1, 6):
                t = d.post("/v1/studies/load/ask").expect(201)
                check(t["number"] == i, "ask %d: %r" % (i, t))
                d.post("/v1/studies/load/trials/%d/tell" % i, {"value": i / 8}).expect(200)
            d.post("/v1/studies/load/trials/0/report", {"step": 3, "value": 0.5}).expect(200)
            d.kill()
        finally:
            db.rollback()
            db.close()
        rows = sqlite3.connect(d.db).execute("SELECT count(*) FROM trials").fetchall()
        check(rows == [(1,)], "the database holds the log's writes already: %r" % rows)
        size = os.path.getsize(d.db + ".redo")
        check(size > 0, "the redo log is empty after the kill")
        d.start()
        lst = d.get("/v1/studies/load/trials").expect(200)["trials"]
        check([(t["number"], t["state"], t["value"]) for t in lst] ==
              [(0, "running", None)] + [(i, "complete", i / 8) for i in range(1, 6)],
              "after the restart: %r" % lst)
        check(lst[0]["intermediate"] == [{"step": 3, "value": 0.5}],
              "trial 0's report: %r" % lst[0]["intermediate"])
        check(d.post("/v1/studies/load/ask").expect(201)["number"] == 6, "the next number")
        d.stop()
        check(os.path.getsize(d.db + ".redo") == 0, "a clean stop left records in the log")
        rows = sqlite3.connect(d.db).execute("SELECT count(*) FROM trials").fetchall()
        check(rows == [(7,)], "the database after a clean stop: %r" % rows)
        print("# %d bytes of redo log applied at the start" % size)


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
