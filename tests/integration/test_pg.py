#!/usr/bin/python3
"""test_pg.py: hpod on PostgreSQL (a throwaway cluster from pgtest.py).

Usage: test_pg.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset)

- daemons_share_database: a second hpod on the same database joins the first
  (several daemons, docs/CLUSTER.md): both answer for the study with the same
  X-Hpod-Owner; `hpod migrate` from it is refused while they run.
- password_from_file: a URI holding a password is refused; a role that needs
  a password connects with PGPASSFILE or the systemd credential `pgpass`, and
  fails without one.
- lock_timeout_unavailable: another session holds a table lock past
  lock_timeout: ask and tell answer 503 unavailable and change nothing,
  /healthz answers 503; all recovers once the lock is gone.
- outage_then_resume: 4 clients ask and tell while PostgreSQL is stopped for
  10 s: requests get 503 unavailable (and no other error; a client whose
  write committed just before waits for its flush instead, under full),
  then everything resumes by itself; after a restart of hpod every acknowledged tell is
  stored with its value and the numbers are 0..N-1.
- failing_write_rolls_back_alone: a server-side trigger fails every trial
  write of one study; the writes of other studies batched with them commit.
- outage_during_commit: PostgreSQL stops while a COMMIT is under way: that
  tell waits for its outcome, a later ask of its study is answered 503 at once.
- lost_commits_exit: the batch marker behind the last acknowledged commit
  (a server crash with synchronous_commit off) makes hpod exit 75 at its
  reconnect; a restart loads what the database holds.
- migrate_round_trip: studies of every kind (random, tpe, gradient with a
  vector in a SQLite side file, reports, attrs, failed and pruned trials)
  copied SQLite -> PostgreSQL -> SQLite by `hpod migrate` answer every GET
  the same, vectors bit for bit, and the gradient iterate continues the same;
  a non-empty destination and a database in use are refused.

Prints TAP.
"""

import os
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgtest  # noqa: E402
from hpodtest import Client, Daemon, Tap, check, exe_from_argv, fail  # noqa: E402

tap = Tap()

STUDY = {"name": "load", "params": [{"name": "x", "type": "float", "low": -5, "high": 5},
                                    {"name": "c", "type": "categorical", "choices": ["a", "b"]}],
         "sampler": {"type": "random", "seed": 5}}


def pg_daemon(exe, uri=None, env=None):
    d = Daemon(exe, env=env)
    d.db = uri or pgtest.shared().new_database()
    return d


def run_hpod(exe, args, env=None, timeout=60):
    return subprocess.run([exe] + args, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)


@tap.test
def daemons_share_database(exe):
    with pg_daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        second = Daemon(exe)
        second.db = d.db
        with second:
            owners = set()
            for x in (d, second):
                r = x.get("/v1/studies/load")
                check(r.expect(200)["name"] == "load", "study on both daemons")
                owners.add(r.header("X-Hpod-Owner"))
            check(len(owners) == 1 and owners <= {"http://127.0.0.1:%d" % d.port,
                                                   "http://127.0.0.1:%d" % second.port},
                  "one owner for the study: %r" % owners)
            with tempfile.TemporaryDirectory() as tmp:
                r = run_hpod(exe, ["migrate", "--from", d.db, "--to",
                                   os.path.join(tmp, "copy.db")], timeout=30)
            check(r.returncode == 1 and "in use" in r.stderr, "migrate while daemons run: %d %s"
                  % (r.returncode, r.stderr))
        d.stop()
        third = Daemon(exe)
        third.db = d.db
        with third:
            check(third.get("/v1/studies/load").expect(200)["name"] == "load", "study kept")


@tap.test
def password_from_file(exe):
    c = pgtest.shared()
    uri = c.add_password_role("hpodpw", "s3cret-pw", "hpod_pw_%d" % os.getpid())
    with_pw = uri.replace("hpodpw@", "hpodpw:s3cret-pw@")
    r = run_hpod(exe, ["--listen", "127.0.0.1:0", "--db", with_pw], timeout=30)
    check(r.returncode == 1 and "passfile" in r.stderr, "password in URI: %d %s" %
          (r.returncode, r.stderr))
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PGPASSFILE": os.path.join(tmp, "none"), "HOME": tmp}
        r = run_hpod(exe, ["--listen", "127.0.0.1:0", "--db", uri], env=env, timeout=30)
        check(r.returncode == 1 and "password" in r.stderr, "no password: %d %s" %
              (r.returncode, r.stderr))
        passfile = os.path.join(tmp, "pgpass")
        with open(passfile, "w") as f:
            f.write("*:*:*:hpodpw:s3cret-pw\n")
        os.chmod(passfile, 0o600)
        with pg_daemon(exe, uri, env={"PGPASSFILE": passfile}) as d:
            d.post("/v1/studies", STUDY).expect(201)
        env = dict(os.environ)
        env.pop("PGPASSFILE", None)
        with pg_daemon(exe, uri, env={"CREDENTIALS_DIRECTORY": tmp, "HOME": tmp}) as d:
            check(d.get("/v1/studies/load").expect(200)["name"] == "load", "study kept")


@tap.test
def lock_timeout_unavailable(exe):
    c = pgtest.shared()
    with pg_daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        t0 = d.post("/v1/studies/load/ask").expect(201)
        before = d.snapshot()
        psql = subprocess.Popen([os.path.join(c.bin, "psql"), "-X", "-q", "-A", "-t",
                                 "-h", c.sock, "-U", pgtest.USER, "-d", d.db.rsplit("/", 1)[1]],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            psql.stdin.write("BEGIN; LOCK TABLE trials IN ACCESS EXCLUSIVE MODE;"
                             " SELECT 'locked';\n")
            psql.stdin.flush()
            check(psql.stdout.readline().strip() == "locked", "psql took the lock")
            d.post("/v1/studies/load/ask").expect_error(503, "unavailable", None,
                                                        "ask while locked")
            d.post("/v1/studies/load/trials/%d/tell" % t0["number"],
                   {"value": 1.0}).expect_error(503, "unavailable", None, "tell while locked")
            d.get("/healthz").expect(503, "healthz while the database refuses writes")
        finally:
            psql.stdin.close()
            psql.wait(timeout=30)
        # After the lock: the ask's write was pipelined, so its study copy is read back from
        # the database, which the lock kept from reads too (a read meanwhile answers 503).
        check(d.snapshot() == before, "a 503 changed the state")
        t1 = d.post("/v1/studies/load/ask").expect(201, "ask after the lock is gone")
        check(t1["number"] == 1, "the failed ask used up a number: %r" % t1["number"])
        d.post("/v1/studies/load/trials/%d/tell" % t0["number"], {"value": 1.0}).expect(200)
        d.get("/healthz").expect(200, "healthz after a commit")
        d.restart()
        lst = d.get("/v1/studies/load/trials").expect(200)["trials"]
        check([(t["number"], t["state"]) for t in lst] == [(0, "complete"), (1, "running")],
              "after restart: %r" % lst)


@tap.test
def outage_then_resume(exe):
    c = pgtest.shared()
    with pg_daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        acked = {}
        codes = {}
        errors = []
        lock = threading.Lock()
        phase = {"after": None, "ok_after": 0, "stop": False}

        def note(r):
            with lock:
                codes[r.status] = codes.get(r.status, 0) + 1
                if r.status == 503 and r.json["error"]["code"] != "unavailable":
                    errors.append("503 with %r" % r.body)
                if r.status not in (200, 201, 503):
                    errors.append("%d: %r" % (r.status, r.body))

        def worker(k):
            cl = Client(d.port, timeout=60)
            try:
                deadline = time.monotonic() + 90
                while not phase["stop"] and time.monotonic() < deadline:
                    r = cl.post("/v1/studies/load/ask")
                    note(r)
                    if r.status != 201:
                        time.sleep(0.1)
                        continue
                    n = r.json["number"]
                    value = k * 100000.0 + n
                    while time.monotonic() < deadline:
                        r = cl.post("/v1/studies/load/trials/%d/tell" % n, {"value": value})
                        note(r)
                        if r.status == 200:
                            with lock:
                                acked[n] = value
                                if phase["after"] is not None:
                                    phase["ok_after"] += 1
                            break
                        time.sleep(0.1)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                with lock:
                    errors.append(repr(e))
            finally:
                cl.close()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        c.stop("fast")
        # Under full, a worker whose write committed just before the stop waits for its flush
        # (the server's return); a request made meanwhile is answered 503 at once.
        t_up = time.monotonic() + 10
        try:
            probe = Client(d.port, timeout=30)
            for _ in range(5):
                time.sleep(1.5)
                note(probe.post("/v1/studies/load/ask"))
            probe.close()
            time.sleep(max(0.0, t_up - time.monotonic()))
        except BaseException:
            # The server comes back whatever happened: the later tests share it.
            phase["stop"] = True
            c.start()
            raise
        with lock:
            during = codes.get(503, 0)
        c.start()
        phase["after"] = time.monotonic()
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            with lock:
                if phase["ok_after"] >= 40:
                    break
            time.sleep(0.2)
        phase["stop"] = True
        for t in threads:
            t.join(timeout=120)
        check(not errors, "errors: %r" % errors[:5])
        check(during > 0, "no 503 while PostgreSQL was down: %r" % codes)
        check(phase["ok_after"] >= 40, "did not resume: %d tells after the restart" %
              phase["ok_after"])
        d.get("/healthz").expect(200, "healthz after the outage")
        d.restart()
        lst = d.get("/v1/studies/load/trials?limit=1000000").expect(200)["trials"]
        numbers = [t["number"] for t in lst]
        check(numbers == list(range(len(lst))), "numbers 0..N-1: %r" % numbers[:20])
        stored = {t["number"]: t for t in lst}
        for n, v in acked.items():
            check(n in stored and stored[n]["state"] == "complete" and stored[n]["value"] == v,
                  "acknowledged tell %d=%r stored as %r" % (n, v, stored.get(n)))
        print("# %d tells acknowledged, %d answers 503 during the outage, codes %r" %
              (len(acked), during, codes))


@tap.test
def outage_during_commit(exe):
    """PostgreSQL stops while a group transaction's COMMIT is under way, so its outcome is
    unknown until the server is back. The tell in it waits for that; a later request of the
    same study does not wait behind it: it is answered 503 at once (and a read of another
    study 200), while the server is still down. Once the server is back, the tell gets its
    outcome (not committed: 503) and a retry stores it."""
    c = pgtest.shared()
    with pg_daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        d.post("/v1/studies", dict(STUDY, name="other")).expect(201)
        t0 = d.post("/v1/studies/load/ask").expect(201)
        db = d.db.rsplit("/", 1)[1]
        # The COMMIT of a trial update sleeps in a deferred trigger: the stop finds it under way.
        c.psql("CREATE FUNCTION hpod_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$"
               " BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;"
               " CREATE CONSTRAINT TRIGGER hpod_test_slow AFTER UPDATE ON trials"
               " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hpod_test_slow()", db)
        out = {}

        def tell():
            cl = Client(d.port, timeout=120)
            try:
                out["tell"] = cl.post("/v1/studies/load/trials/%d/tell" % t0["number"],
                                      {"value": 2.5})
            finally:
                cl.close()

        th = threading.Thread(target=tell)
        th.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if c.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
                          " AND wait_event = 'PgSleep'" % db).strip() == "1":
                    break
                time.sleep(0.1)
            else:
                fail("the tell's COMMIT never reached the trigger")
            c.stop("fast")
            # The server stays down until the probe is answered: an ask that waited for it
            # would never be answered (the client's timeout ends the test).
            probe = Client(d.port, timeout=15)
            r = probe.post("/v1/studies/load/ask")
            r.expect_error(503, "unavailable")
            probe.get("/v1/studies/other").expect(200, "a read of another study")
            probe.close()
            check("tell" not in out, "the tell was answered before its outcome was known: %r"
                  % out.get("tell"))
        finally:
            c.start()
        th.join(timeout=90)
        check(not th.is_alive(), "the tell got no answer after the server came back")
        out["tell"].expect_error(503, "unavailable")
        c.psql("DROP TRIGGER hpod_test_slow ON trials", db)
        d.post("/v1/studies/load/trials/%d/tell" % t0["number"], {"value": 2.5}).expect(200)
        d.restart()
        lst = d.get("/v1/studies/load/trials").expect(200)["trials"]
        check([(t["number"], t["state"], t["value"]) for t in lst] == [(0, "complete", 2.5)],
              "after restart: %r" % lst)


@tap.test
def lost_commits_exit(exe):
    """The database lost a commit hpod acknowledged (as a server crash with synchronous_commit
    off would): at the next reconnect hpod sees the batch marker behind and exits 75, and a
    restart loads what the database holds."""
    c = pgtest.shared()
    with pg_daemon(exe) as d:
        d.post("/v1/studies", STUDY).expect(201)
        db = d.db.rsplit("/", 1)[1]
        c.psql("UPDATE hpod_batches SET id = 42", db)
        c.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
               " AND application_name LIKE 'hpod %%'" % db)
        d.close_clients()
        try:
            # The daemon exits while it answers: no reply is fine, a 201 is not.
            r = Client(d.port, timeout=30).post("/v1/studies/load/ask")
            check(r.status != 201, "an ask was acknowledged after the loss")
        except OSError:
            pass
        try:
            rc = d.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 75, "exit status %r" % rc)
        d.proc = None
        d._close_notify()
        check("lost group transactions" in d.log_text(), "message: %s" % d.log_tail())
        d.start()
        check(d.get("/v1/studies/load").expect(200)["name"] == "load", "study loaded")


@tap.test
def failing_write_rolls_back_alone(exe):
    """A trigger makes every trial write of study `bad` fail in the server: its asks answer
    500 (a write alone) or 503 (pipelined: the request depended on a write that failed) and
    store nothing, while the writes of three other studies grouped into the same
    transactions commit (the batch is sent again without the failed write)."""
    c = pgtest.shared()
    names = ["good0", "good1", "good2", "bad"]
    with pg_daemon(exe) as d:
        for n in names:
            d.post("/v1/studies", dict(STUDY, name=n)).expect(201)
        db = d.db.rsplit("/", 1)[1]
        bad_id = int(c.psql("SELECT id FROM studies WHERE name = 'bad'", db))
        c.psql("CREATE FUNCTION hpod_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$"
               " BEGIN IF NEW.study_id = %d THEN RAISE EXCEPTION 'injected'; END IF;"
               " RETURN NEW; END $$;"
               " CREATE TRIGGER hpod_test_fail BEFORE INSERT OR UPDATE ON trials"
               " FOR EACH ROW EXECUTE FUNCTION hpod_test_fail()" % bad_id, db)
        acked = {n: [] for n in names}
        statuses = {n: {} for n in names}
        lock = threading.Lock()

        def worker(name):
            cl = Client(d.port)
            try:
                for _ in range(150):
                    r = cl.post("/v1/studies/%s/ask" % name)
                    with lock:
                        statuses[name][r.status] = statuses[name].get(r.status, 0) + 1
                    if r.status != 201:
                        continue
                    n = r.json["number"]
                    r = cl.post("/v1/studies/%s/trials/%d/tell" % (name, n), {"value": n * 0.5})
                    if r.status == 200:
                        with lock:
                            acked[name].append(n)
            finally:
                cl.close()

        threads = [threading.Thread(target=worker, args=(n,)) for n in names for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        check(statuses["bad"] and set(statuses["bad"]) <= {500, 503},
              "bad study answers: %r" % statuses["bad"])
        for n in names[:3]:
            check(set(statuses[n]) == {201} and len(acked[n]) == 300,
                  "%s: %r, %d told" % (n, statuses[n], len(acked[n])))
        metrics = d.get("/metrics").body.decode()
        one = total = None
        for line in metrics.splitlines():
            if line.startswith('hpod_storage_commit_writes_bucket{le="1"}'):
                one = int(float(line.split()[-1]))
            if line.startswith("hpod_storage_commit_writes_count"):
                total = int(float(line.split()[-1]))
        check(one is not None and total is not None and one < total,
              "no transaction held several writes (%r of %r)" % (one, total))
        d.restart()
        for n in names[:3]:
            lst = d.get("/v1/studies/%s/trials?limit=1000" % n).expect(200)["trials"]
            check([(t["number"], t["state"], t["value"]) for t in lst] ==
                  [(k, "complete", k * 0.5) for k in range(300)], "%s stored" % n)
        check(d.get("/v1/studies/bad/trials").expect(200)["total"] == 0, "bad stored nothing")
        check(c.psql("SELECT count(*) FROM trials WHERE study_id = %d" % bad_id, db).strip() ==
              "0", "no row of bad")
        print("# %d of %d group transactions held several writes" % (total - one, total))


BIG = 200000  # 1.6 MB: a SQLite side file


def populate(d):
    d.post("/v1/studies", {"name": "r", "params": [
        {"name": "x", "type": "float", "low": -1, "high": 1},
        {"name": "n", "type": "int", "low": 1, "high": 9},
        {"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}],
        "sampler": {"type": "random", "seed": 3}}).expect(201)
    for k in range(6):
        t = d.post("/v1/studies/r/ask").expect(201)
        n = t["number"]
        d.post("/v1/studies/r/trials/%d/report" % n, {"step": 1, "value": 0.5 * k}).expect(200)
        if k == 2:
            d.post("/v1/studies/r/trials/%d/tell" % n, {"state": "failed"}).expect(200)
        elif k == 3:
            d.post("/v1/studies/r/trials/%d/tell" % n, {"state": "pruned"}).expect(200)
        elif k < 5:
            d.post("/v1/studies/r/trials/%d/tell" % n,
                   {"value": 1.0 / (k + 1), "user_attrs": {"k": k, "s": "é\"x"}}).expect(200)
    d.post("/v1/studies", {"name": "t", "params": [
        {"name": "x", "type": "float", "low": 0, "high": 1}],
        "sampler": {"type": "tpe", "seed": 4, "n_startup_trials": 3}}).expect(201)
    for k in range(8):
        t = d.post("/v1/studies/t/ask").expect(201)
        d.post("/v1/studies/t/trials/%d/tell" % t["number"],
               {"value": (t["params"]["x"] - 0.3) ** 2}).expect(200)
    d.post("/v1/studies", {"name": "g", "params": [
        {"name": "w", "type": "float", "low": -10, "high": 10, "size": BIG}],
        "sampler": {"type": "gradient", "optimizer": "adam", "lr": 0.01}}).expect(201)
    for k in range(3):
        t = d.post("/v1/studies/g/ask").expect(201)
        d.request("PUT", "/v1/studies/g/trials/%d/gradient/w" % t["number"],
                  body=struct.pack("<%dd" % BIG, *([0.001 * (k + 1)] * BIG)),
                  headers={"Content-Type": "application/octet-stream"}).expect(204)
        d.post("/v1/studies/g/trials/%d/tell" % t["number"], {"value": float(k)}).expect(200)
    d.post("/v1/studies", {"name": "v", "params": [
        {"name": "wd", "type": "float", "low": 0.1, "high": 1, "size": 3}],
        "sampler": {"type": "random", "seed": 9}}).expect(201)
    for k in range(3):
        d.post("/v1/studies/v/ask").expect(201)


def full_snapshot(d):
    snap = d.snapshot()
    vectors = {}
    for name, size in (("g", BIG), ("v", 3)):
        for t in snap["detail"][name]["trials"]["trials"]:
            r = d.get("/v1/studies/%s/trials/%d/params/%s" % (name, t["number"],
                                                           "w" if name == "g" else "wd"))
            vectors[(name, t["number"])] = (r.status, r.body)
    snap["vectors"] = vectors
    return snap


@tap.test
def migrate_round_trip(exe):
    c = pgtest.shared()
    with Daemon(exe) as src, tempfile.TemporaryDirectory() as tmp:
        populate(src)
        want = full_snapshot(src)
        check(len(want["studies"]) == 4, "four studies")
        check(want["vectors"][("g", 2)][0] == 200 and
              len(want["vectors"][("g", 2)][1]) == 8 * BIG, "big vector readable")
        check(os.listdir(src.db + ".blobs"), "the big vectors live in SQLite side files")
        uri = c.new_database()
        r = run_hpod(exe, ["migrate", "--from", src.db, "--to", uri])
        check(r.returncode == 1 and "in use" in r.stderr, "source in use: %d %s" %
              (r.returncode, r.stderr))
        src.stop()
        r = run_hpod(exe, ["migrate", "--from", src.db, "--to", uri])
        check(r.returncode == 0, "migrate to pg: %s" % r.stderr)
        check("copied 4 studies, 20 trials" in r.stdout, "summary: %s" % r.stdout)
        r = run_hpod(exe, ["migrate", "--from", src.db, "--to", uri])
        check(r.returncode == 1 and "not empty" in r.stderr, "non-empty destination: %s" % r.stderr)
        pgd = Daemon(exe)
        pgd.db = uri
        with pgd:
            check(full_snapshot(pgd) == want, "PostgreSQL copy answers differently")
        back = os.path.join(tmp, "back.db")
        r = run_hpod(exe, ["migrate", "--from", uri, "--to", back])
        check(r.returncode == 0, "migrate to sqlite: %s" % r.stderr)
        again = Daemon(exe, state_dir=tmp)
        again.db = back
        with again:
            check(full_snapshot(again) == want, "SQLite copy answers differently")
            t = again.post("/v1/studies/g/ask").expect(201)
            copy_next = again.get(t["params"]["w"]["href"]).body
        src.start()
        t = src.post("/v1/studies/g/ask").expect(201)
        orig_next = src.get(t["params"]["w"]["href"]).body
        check(orig_next == copy_next and len(orig_next) == 8 * BIG,
              "the gradient iterate continues the same after two migrations")
        print("# %s" % r.stdout.strip())


if __name__ == "__main__":
    why = pgtest.available()
    if why is not None:
        print("1..0 # SKIP %s" % why)
        sys.exit(0)
    sys.exit(tap.run(exe_from_argv()))
