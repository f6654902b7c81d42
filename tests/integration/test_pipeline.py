#!/usr/bin/python3
"""test_pipeline.py: pipelined writes on one study, and a commit failing mid-pipeline.

Usage: test_pipeline.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset)
With HPOD_TEST_BACKEND=pg (meson test pipeline-pg) the same on PostgreSQL.

A study's next request runs while its last write commits (daemon/dispatch.h,
storage.h): replies wait for their writes, and a failed write fails the study's
later writes in flight, whose study copy is then reloaded from the database.

- failure_mid_pipeline: 8 clients ask and tell on ONE study in bounded loops; while
  they run the test makes writes fail for a moment, then lets them work again. On
  SQLite (--synchronous normal) it lowers hpod's RLIMIT_FSIZE to 1 byte (prlimit:
  every write of the database fails, EFBIG). On PostgreSQL (the default --synchronous
  full) a trigger fails, in the server, each ask's insert of a trial numbered 2 mod 5,
  while the study's later writes in flight would succeed: only the chain rule fails
  them (without it the next ask commits the next number and leaves a gap; a write sent
  again after the failed one was dropped from its group transaction must not commit
  either). Every answer is 2xx or 503
  `unavailable` with the error body; no trial number is handed out twice; some
  group transaction held several writes of the study (the pipeline ran) and some
  requests were refused (the failure hit it). After the failure, asks and tells
  work again on the same daemon. After a restart: every acknowledged ask is stored,
  every acknowledged tell with its exact value, the numbers are 0..N-1, and a trial
  that no ask acknowledged is not complete (a refused write left nothing).
- reads_during_failure: GETs of the study and the study list while writes fail:
  each answers 200 (a read that saw a write which failed runs again on the study
  reloaded from the database) and never shows a trial the database lacks.
- backend_terminated (PostgreSQL only): the server ends every session of hpod's
  (pg_terminate_backend, three times) under the same load: group transactions in
  flight fail or commit (their outcome read back from the batch marker), requests
  meanwhile get 503 at once; the same checks afterwards.

Prints TAP.
"""

import os
import resource
import sqlite3
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hpodtest  # noqa: E402
from hpodtest import Daemon, Skip, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()
STUDY = {"name": "s", "params": [{"name": "x", "type": "float", "low": -5, "high": 5},
                                 {"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}],
         "sampler": {"type": "random", "seed": 7}}
CLIENTS = 8
COMPLETE = 2  # the trials table's state of a complete trial


def expect_write(r, ok_status, what):
    """A write answers ok_status or 503 unavailable with the error body; True if it worked."""
    if r.status == ok_status:
        return True
    r.expect_error(503, "unavailable", None, what)
    return False


class Load:
    """CLIENTS clients asking and telling on study s, recording what was acknowledged."""

    def __init__(self, d, seconds=30.0, iters=100000):
        self.d = d
        self.lock = threading.Lock()
        self.asked = {}   # number -> worker
        self.told = {}    # number -> value
        self.refused = 0
        self.ok = 0
        self.errors = []
        self.stop = threading.Event()
        self.t_end = time.monotonic() + seconds
        self.iters = iters
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def run(self, i):
        c = self.d.client()
        try:
            for k in range(self.iters):
                if self.stop.is_set() or time.monotonic() > self.t_end:
                    return
                r = c.post("/v1/studies/s/ask", {"worker": "w%d" % i})
                if not expect_write(r, 201, "ask"):
                    with self.lock:
                        self.refused += 1
                    time.sleep(0.01)  # as a client backs off after a 503
                    continue
                number = r.json["number"]
                with self.lock:
                    check(number not in self.asked, "number %d handed out twice" % number)
                    self.asked[number] = "w%d" % i
                    self.ok += 1
                value = i + k * 1e-3 + 1.0000000000000002
                r = c.post("/v1/studies/s/trials/%d/tell" % number, {"value": value})
                with self.lock:
                    if expect_write(r, 200, "tell"):
                        self.told[number] = value
                        self.ok += 1
                    else:
                        self.refused += 1
                        time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.errors.append("client %d: %s: %s" % (i, type(e).__name__, e))
        finally:
            c.close()

    def counts(self):
        with self.lock:
            return self.ok, self.refused

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        check(not any(t.is_alive() for t in self.threads), "a client did not finish")
        check(not self.errors, "client errors: %s" % self.errors[:3])


def wait_for(cond, seconds, what):
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(0.01)
        continue
    check(False, "timed out waiting for %s" % what)


def batches_over_one(d):
    """Group transactions that held two writes or more, from /metrics."""
    r = d.get("/metrics")
    r.expect(200, "/metrics")
    total = one = None
    for line in r.body.decode().splitlines():
        if line.startswith("hpod_storage_commit_writes_count"):
            total = float(line.split()[-1])
        elif line.startswith('hpod_storage_commit_writes_bucket{le="1"}'):
            one = float(line.split()[-1])
    check(total is not None and one is not None, "no batch histogram in /metrics")
    return total - one


class FileLimit:
    """Every write of hpod's files fails (EFBIG) while on: its RLIMIT_FSIZE soft limit is 1 byte."""

    def __init__(self, pid):
        self.pid = pid
        self.limit = resource.prlimit(pid, resource.RLIMIT_FSIZE)

    def on(self):
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (1, self.limit[1]))

    def off(self):
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, self.limit)


class TriggerFailure:
    """PostgreSQL: while on, the server fails every insert of a running trial of study s whose
    number is 2 mod 5 (an ask), by a trigger; other writes of the study would succeed."""

    def __init__(self, d):
        import pgtest
        self.cluster = pgtest.shared()
        self.db = d.db.rsplit("/", 1)[1]
        self.cluster.psql(
            "CREATE OR REPLACE FUNCTION hpod_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.number %% 5 = 2 AND NEW.state <> %d AND NEW.study_id ="
            " (SELECT id FROM studies WHERE name = 's') THEN RAISE EXCEPTION 'injected';"
            " END IF; RETURN NEW; END $$" % COMPLETE, self.db)

    def on(self):
        self.cluster.psql("CREATE TRIGGER hpod_test_fail BEFORE INSERT OR UPDATE ON trials"
                          " FOR EACH ROW EXECUTE FUNCTION hpod_test_fail()", self.db)

    def off(self):
        self.cluster.psql("DROP TRIGGER IF EXISTS hpod_test_fail ON trials", self.db)


def write_failure(d):
    """Writes fail while on(): the file size limit (SQLite) or the trigger (PostgreSQL)."""
    return TriggerFailure(d) if hpodtest.BACKEND == "pg" else FileLimit(d.proc.pid)


def stored(db_path):
    sql = ("SELECT t.number, t.state, t.value, t.worker FROM trials t JOIN studies s"
           " ON s.id = t.study_id WHERE s.name = 's' ORDER BY t.number")
    if hpodtest.BACKEND == "pg":
        import pgtest
        rows = []
        for line in pgtest.shared().psql(sql, db_path.rsplit("/", 1)[1]).splitlines():
            number, state, value, worker = line.split("|")
            rows.append((int(number), int(state), float(value) if value else None,
                         worker or None))
        return rows
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(sql).fetchall()
    finally:
        db.close()
    return rows


def mode_args():
    """SQLite: normal (its writes are not slowed by fsyncs); PostgreSQL: full, the default."""
    return [] if hpodtest.BACKEND == "pg" else ["--synchronous", "normal"]


def check_stored(d, load):
    """After a restart: every acknowledged ask and tell stored, numbers dense, nothing more."""
    d.restart()
    rows = stored(d.db)
    numbers = [r[0] for r in rows]
    check(numbers == list(range(len(numbers))), "numbers are not 0..N-1: %r" % numbers[:20])
    by_number = {r[0]: r for r in rows}
    missing = [n for n in load.asked if n not in by_number]
    check(not missing, "acknowledged asks not stored: %r" % missing[:10])
    for n, value in load.told.items():
        check(by_number[n][1] == COMPLETE and by_number[n][2] == value,
              "acknowledged tell of trial %d: stored %r, told %r" % (n, by_number[n], value))
    unacked_complete = [n for n in numbers
                        if n not in load.told and by_number[n][1] == COMPLETE]
    check(not unacked_complete, "trials complete without an acknowledged tell: %r"
          % unacked_complete[:10])
    # What the API shows after the restart is what is stored.
    lst = d.get("/v1/studies/s/trials?limit=1000000").expect(200)["trials"]
    check([t["number"] for t in lst] == numbers, "the API's trials differ from the database's")


def study_goes_on(d, load):
    """An ask and a tell on the same daemon after the failure."""
    c = d.client()
    t = c.post("/v1/studies/s/ask").expect(201, "ask after the failure")
    check(t["number"] not in load.asked, "number %d handed out twice" % t["number"])
    c.post("/v1/studies/s/trials/%d/tell" % t["number"], {"value": 0.5}).expect(200)
    c.close()
    load.asked[t["number"]] = None
    load.told[t["number"]] = 0.5


@tap.test
def failure_mid_pipeline(exe):
    with Daemon(exe, extra_args=mode_args()) as d:
        d.post("/v1/studies", STUDY).expect(201)
        d.close_clients()
        limit = write_failure(d)
        load = Load(d)
        try:
            wait_for(lambda: load.counts()[0] >= 400, 20, "400 acknowledged writes")
            limit.on()
            wait_for(lambda: load.counts()[1] >= 8, 10, "refused writes while writes fail")
            time.sleep(0.1)
        finally:
            limit.off()
        ok_at_lift = load.counts()[0]
        wait_for(lambda: load.counts()[0] >= ok_at_lift + 400, 20,
                 "400 more acknowledged writes after the failure")
        load.join()
        ok, refused = load.counts()
        pipelined = batches_over_one(d)
        print("# %d writes acknowledged, %d refused; %d group transactions held several writes"
              % (ok, refused, pipelined))
        check(refused > 0, "no request was refused while writes failed")
        check(pipelined > 0, "no group transaction held two writes of the study: not pipelined")
        study_goes_on(d, load)
        check_stored(d, load)


@tap.test
def backend_terminated(exe):
    if hpodtest.BACKEND != "pg":
        raise Skip("PostgreSQL's sessions (HPOD_TEST_BACKEND=pg)")
    import pgtest
    cluster = pgtest.shared()
    db = None
    with Daemon(exe) as d:
        db = d.db.rsplit("/", 1)[1]
        d.post("/v1/studies", STUDY).expect(201)
        d.close_clients()
        load = Load(d, seconds=60)
        wait_for(lambda: load.counts()[0] >= 400, 20, "400 acknowledged writes")
        for k in range(30):
            cluster.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE"
                         " datname = current_database() AND application_name LIKE 'hpod %'"
                         " AND pid <> pg_backend_pid()", db)
            ok_then = load.counts()[0]
            wait_for(lambda: load.counts()[0] >= ok_then + 50, 20,
                     "50 more acknowledged writes after the sessions ended")
            if k >= 2 and load.counts()[1] > 0:
                break
        load.join()
        ok, refused = load.counts()
        print("# %d writes acknowledged, %d refused" % (ok, refused))
        check(refused > 0, "no request was refused while the sessions were ended")
        check(d.proc.poll() is None, "the daemon exited (its commits were not lost)")
        study_goes_on(d, load)
        check_stored(d, load)


@tap.test
def reads_during_failure(exe):
    with Daemon(exe, extra_args=mode_args()) as d:
        d.post("/v1/studies", STUDY).expect(201)
        d.close_clients()
        limit = write_failure(d)
        load = Load(d, seconds=20)
        reads = 0
        try:
            wait_for(lambda: load.counts()[0] >= 200, 20, "200 acknowledged writes")
            limit.on()
            c = d.client()
            t_end = time.monotonic() + 1.0
            while time.monotonic() < t_end:
                summary = c.get("/v1/studies/s").expect(200, "GET the study while writes fail")
                studies = c.get("/v1/studies").expect(200, "GET the list while writes fail")
                check(studies["studies"][0]["trials"]["total"] >= 0, "a study list without counts")
                n = summary["trials"]["total"]
                # Every trial the study shows is one an ask stored (the limit stops new ones):
                # in the database, or acknowledged from its redo log and not applied yet.
                check(n <= max(len(stored(d.db)), len(load.asked)) + CLIENTS,
                      "the study shows %d trials, the database holds %d, %d asks acknowledged"
                      % (n, len(stored(d.db)), len(load.asked)))
                reads += 2
            c.close()
        finally:
            limit.off()
        load.join()
        print("# %d reads answered 200 while writes failed" % reads)
        check(reads > 0, "no read ran")
        d.restart()
        shown = d.get("/v1/studies/s").expect(200)["trials"]["total"]
        check(shown == len(stored(d.db)), "after restart: %d trials shown, %d stored"
              % (shown, len(stored(d.db))))


if __name__ == "__main__":
    tap.run(exe_from_argv())
