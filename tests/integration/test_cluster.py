#!/usr/bin/python3
"""test_cluster.py: several hpod daemons on one PostgreSQL (docs/CLUSTER.md).

Usage: test_cluster.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset;
HPOD_TEST_KEEP_LOGS=DIR keeps the daemons' logs, hpodtest.py)

A throwaway PostgreSQL cluster from pgtest.py; three daemons on one database,
each on 127.0.0.1 and a free port.

- every_request_on_every_daemon: 20 studies (random, tpe, gp, gradient)
  created through the three daemons in turn; ask, tell, report, get, lists,
  best and trial reads answered on each daemon with the same body and the same
  X-Hpod-Owner, a live daemon's URL; each study has one owner; the study list
  of every daemon holds all 20; a study created twice through two daemons is
  one study; delete through a non-owner removes it everywhere.
- sigkill_owner_under_load: 8 clients spread over the daemons ask and tell
  across the studies while the owner of a busy gradient study is killed with
  SIGKILL and restarted, 10 rounds: every acknowledged tell is stored with
  its value on every daemon, each study's numbers are unique and dense, and
  each gradient study's iterate, at each acknowledged tell and after the last,
  equals bit for bit that of one daemon that never failed.
- hand_over_seen_by_one_side: a study handed over (owner and epoch changed in
  the database, as a hand-over does) while the new owner's heartbeat waits
  on a row lock, so its view still names the old owner while the old owner's
  names it: an ask sent to each of them at once is forwarded by each to the
  other; both are answered once the new owner's view catches up (no lane
  held by a forward: each daemon's forward would wait in the other's lane),
  and both asks are stored.
- handed_over_while_queued: an ask waiting in its study's lane behind a slow
  one (a suggestion delay) when the study is handed over: it is routed again
  and answered by the new owner (not 404 from the copy dropped meanwhile).
- owners_unread_never_404: a daemon whose heartbeat waits on a row lock (its
  view cannot be read again) is asked about studies another daemon created
  and kept meanwhile: 503, never 404; once its view is read again, the study.
- sigterm_hands_over: SIGTERM to the owner of a busy study: it drains, exits
  0 and hands its studies over, so another daemon answers for them at once
  (no lease to wait for); nothing acknowledged is lost.
- sigstop_owner_is_fenced: the owner of a study is frozen (SIGSTOP) in the
  middle of an ask (a suggestion delay holds it there) past its lease while
  clients keep working through the other two; the study is taken over; after
  SIGCONT the frozen daemon's write is refused by fencing (503, counted in its
  /metrics), it forwards the study to the new owner, and nothing anyone
  acknowledged is lost.
- cross_forwards_beyond_the_workers: two daemons with 17 workers each, 30
  clients on each asking and telling on a study the other daemon owns (every
  request forwarded, more at once than a daemon has workers): every client is
  answered throughout, and every acknowledged tell is stored (forwards wait on
  threads of their own; on the workers both daemons hung until the forwards
  timed out); /metrics shows forwards on the forward threads meanwhile (at
  most 16), and its two forward gauges are 0 once the clients stopped.
- event_stream_on_its_owner: the dashboard's event stream of a study opens on
  its owner only; another daemon answers 503 unavailable naming the owner in
  X-Hpod-Owner; an ask sent through the other daemon (forwarded) reaches the
  owner's open stream as the next event.
- same_create_at_once: one name created through the three daemons at the same
  instant: one study; the same definition answers 201 once and 200 on the
  others (never 409); different definitions answer 201 once and 409. Each
  daemon creating the name itself (as forwarded): the losers never answer 409.
- database_outage_with_three_daemons: PostgreSQL stopped for 10 s under load
  through three daemons: nothing acknowledged meanwhile (clients get 503),
  then tells resume by themselves, nothing acknowledged is lost, and each study
  has one live owner that every daemon agrees on (no daemon answers from a
  copy it no longer owns: a tell of a trial asked through the new owner never
  gets 404).
- gone_daemons_forgotten: the rows of restarted (SIGKILLed) daemons are
  removed once gone for 10 leases; the live daemons' stay.
- studies_spread_evenly: 16 studies on 2 daemons are 8/8; a third joins: 6/5/5,
  the 5 that move all go to it; a 17th study: 6/6/5, no other moves; SIGTERM of
  one: 9/8, only its studies moved; it comes back and is SIGKILLed: 5 move to
  it, then exactly those move back (docs/CLUSTER.md, "Placement").
- gone_daemons_batch_markers_removed: the batch markers of daemons gone for 10
  leases are removed with their rows (and a marker without a row); a daemon
  frozen and cut from the database meanwhile exits 75 when it wakes.
- forwarding_over_tls: two daemons on https:// with certificates of a test CA
  given as --cluster-cacert forward to each other.

Prints TAP.
"""

import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgtest  # noqa: E402
from hpodtest import Client, Daemon, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()
RETRY_S = 40.0  # a request is retried (503, a dead daemon) this long at most

X = {"name": "x", "type": "float", "low": -5, "high": 5}
Y = {"name": "y", "type": "float", "low": 0, "high": 1}
LAM = {"name": "lam", "type": "float", "low": 1e-3, "high": 1e3, "log": True}


def specs():
    """20 studies: 6 random, 6 tpe, 4 gp, 4 gradient."""
    out = []
    for i in range(6):
        out.append({"name": "r%d" % i, "params": [X, Y], "sampler": {"type": "random", "seed": i}})
    for i in range(6):
        out.append({"name": "t%d" % i, "params": [X, Y],
                    "sampler": {"type": "tpe", "seed": i, "n_startup_trials": 4}})
    for i in range(4):
        out.append({"name": "p%d" % i, "params": [X, Y],
                    "sampler": {"type": "gp", "seed": i, "n_startup_trials": 3}})
    for i in range(4):
        out.append({"name": "g%d" % i, "params": [LAM],
                    "sampler": {"type": "gradient", "optimizer": "adam", "lr": 0.05,
                                "seed": i}})
    return out


def objective(params):
    return (params["x"] - 1.25) ** 2 + params["y"]


def hypergrad(lam, a=3.0, b=1.0):
    w = a / (1.0 + lam)
    return 0.5 * (w - b) ** 2, -(w - b) * a / (1.0 + lam) ** 2


def url_of(d):
    return "http://127.0.0.1:%d" % d.port


def metric(d, name):
    r = d.get("/metrics")
    r.expect(200, "metrics")
    text = r.body.decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    check(m is not None, "%s on /metrics" % name)
    return float(m.group(1))


class Fleet:
    """The daemons clients may use now (a killed or frozen one is left out)."""

    def __init__(self, daemons):
        self.lock = threading.Lock()
        self.daemons = list(daemons)
        self.up = {id(d): True for d in daemons}

    def ports(self):
        with self.lock:
            return [d.port for d in self.daemons if self.up[id(d)] and d.port]

    def set_up(self, d, up):
        with self.lock:
            self.up[id(d)] = up


class Worker:
    """One client thread's connections, and retries over the fleet."""

    def __init__(self, fleet, seed):
        self.fleet = fleet
        self.rng = random.Random(seed)
        self.clients = {}

    def request(self, method, path, body=None, ok=(200, 201, 204), headers=None):
        t_start = time.monotonic()
        deadline = t_start + RETRY_S
        last = None
        tries = []  # (start, daemon's port, status or error, seconds, X-Hpod-Owner): the message
        while time.monotonic() < deadline:
            ports = self.fleet.ports()
            if not ports:
                time.sleep(0.05)
                continue
            port = self.rng.choice(ports)
            c = self.clients.get(port)
            if c is None:
                c = self.clients[port] = Client(port, timeout=20)
            t1 = time.monotonic()
            try:
                r = c.request(method, path, body=body, headers=headers)
            except OSError as e:  # killed under us: its requests may or may not have run
                tries.append((round(t1 - t_start, 2), port, repr(e),
                              round(time.monotonic() - t1, 2)))
                c.close()
                self.clients.pop(port, None)
                last = "%r from daemon %d" % (e, port)
                time.sleep(0.02)
                continue
            tries.append((round(t1 - t_start, 2), port, r.status, round(time.monotonic() - t1, 2),
                          r.header("X-Hpod-Owner")))
            if r.status in ok:
                return r
            if r.status != 503:
                return r
            last = "%s (daemon %d, X-Hpod-Owner %s)" % (r.describe(), port,
                                                       r.header("X-Hpod-Owner"))
            time.sleep(0.05)
        raise AssertionError("%s %s: no answer within %.0f s (last: %s; the last tries: %r)" % (
            method, path, RETRY_S, last, tries[-6:]))

    def close(self):
        for c in self.clients.values():
            c.close()


def start_fleet(exe, uri, n=3, env=None, args=()):
    """n daemons on `uri`; when one fails to start, those started are closed first."""
    ds = []
    try:
        for _ in range(n):
            d = Daemon(exe, extra_args=args, env=env)
            d.db = uri
            ds.append(d)
            d.start()
    except BaseException:
        for d in ds:
            d.close()
        raise
    return ds


@tap.test
def every_request_on_every_daemon(exe):
    uri = pgtest.shared().new_database()
    ds = start_fleet(exe, uri)
    try:
        urls = {url_of(d) for d in ds}
        for k, spec in enumerate(specs()):
            ds[k % 3].post("/v1/studies", spec).expect(201, "create %s" % spec["name"])
        # The same definition again through another daemon: the same study (200).
        again = ds[1].post("/v1/studies", specs()[0]).expect(200, "create again")
        check(again["name"] == "r0", "create again answers the study")
        for spec in specs():
            name = spec["name"]
            owners = set()
            for k, d in enumerate(ds):
                t = d.post("/v1/studies/%s/ask" % name)
                t.expect(201, "ask %s on daemon %d" % (name, k))
                owners.add(t.header("X-Hpod-Owner"))
                num = t.json["number"]
                if spec["sampler"]["type"] == "gradient":
                    loss, g = hypergrad(t.json["params"]["lam"])
                    body = {"value": loss, "gradient": {"lam": g}}
                else:
                    ds[(k + 1) % 3].post("/v1/studies/%s/trials/%d/report" % (name, num),
                                         {"step": 1, "value": 0.5}).expect(200, "report")
                    body = {"value": objective(t.json["params"])}
                r = ds[(k + 2) % 3].post("/v1/studies/%s/trials/%d/tell" % (name, num), body)
                r.expect(200, "tell %s on daemon %d" % (name, (k + 2) % 3))
                owners.add(r.header("X-Hpod-Owner"))
            check(len(owners) == 1 and owners <= urls, "%s: one live owner, got %r" % (name, owners))
            answers = []
            for d in ds:
                st = d.get("/v1/studies/%s" % name)
                tr = d.get("/v1/studies/%s/trials?limit=100" % name)
                one = d.get("/v1/studies/%s/trials/1" % name)
                best = d.get("/v1/studies/%s/best" % name)
                for r in (st, tr, one, best):
                    r.expect(200, "read %s through %d" % (r.path, d.port))
                    check(r.header("X-Hpod-Owner") in owners, "X-Hpod-Owner on %s" % r.path)
                check(tr.header("X-Total-Count") == "3", "X-Total-Count passed on")
                answers.append((st.body, tr.body, one.body, best.body))
            check(answers[0] == answers[1] == answers[2], "%s: the same answers everywhere"
                  % name)
        for d in ds:
            names = [s["name"] for s in d.get("/v1/studies").expect(200)["studies"]]
            check(names == sorted(s["name"] for s in specs()), "list on %d: %r" % (d.port, names))
        # Delete through a daemon that is not the owner: gone everywhere.
        owner = ds[0].get("/v1/studies/r1").header("X-Hpod-Owner")
        other = next(d for d in ds if url_of(d) != owner)
        other.delete("/v1/studies/r1").expect(204, "delete through a non-owner")
        for d in ds:
            d.get("/v1/studies/r1").expect_error(404, "not_found", None, "deleted everywhere")
        # Every daemon sees the others and reports its share (the views catch up in a tick).
        deadline = time.monotonic() + 10
        while True:
            hs = [d.get("/healthz?cluster").expect(200)["cluster"] for d in ds]
            owned = sum(h["owned_studies"] for h in hs)
            if owned == 19 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for h in hs:
            check(h["live_daemons"] == 3 and h["lease_ok"], "healthz cluster %r" % h)
        check(owned == 19, "owned studies add up to 19: %d" % owned)
    finally:
        for d in ds:
            d.close()


def load_worker(fleet, seed, names, stop, acked, errors):
    w = Worker(fleet, seed)
    rng = random.Random(seed)
    try:
        while not stop.is_set():
            name = rng.choice(names)
            t = w.request("POST", "/v1/studies/%s/ask" % name)
            if t.status != 201:
                errors.append(t.describe())
                return
            value = objective(t.json["params"])
            r = w.request("POST", "/v1/studies/%s/trials/%d/tell" % (name, t.json["number"]),
                          {"value": value})
            if r.status != 200:
                errors.append(r.describe())
                return
            acked.append((name, t.json["number"], value))
    except Exception as e:  # noqa: BLE001 - reported by the main thread
        errors.append(repr(e))
    finally:
        w.close()


def gradient_worker(fleet, seed, name, stop, lams, errors):
    """Sequential steps of one gradient study: the iterate at each acknowledged tell."""
    w = Worker(fleet, seed)
    try:
        while not stop.is_set():
            t = w.request("POST", "/v1/studies/%s/ask" % name)
            check(t.status == 201, t.describe())
            lam = t.json["params"]["lam"]
            loss, g = hypergrad(lam)
            r = w.request("POST", "/v1/studies/%s/trials/%d/tell" % (name, t.json["number"]),
                          {"value": loss, "gradient": {"lam": g}})
            check(r.status == 200, r.describe())
            lams.append(lam)
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))
    finally:
        w.close()


def reference_lams(exe, spec, n):
    """The iterates of one SQLite daemon that never failed: n + 1 asks, n tells."""
    out = []
    with Daemon(exe) as d:
        d.post("/v1/studies", spec).expect(201)
        for _ in range(n + 1):
            t = d.post("/v1/studies/%s/ask" % spec["name"]).expect(201)
            lam = t["params"]["lam"]
            out.append(lam)
            loss, g = hypergrad(lam)
            d.post("/v1/studies/%s/trials/%d/tell" % (spec["name"], t["number"]),
                   {"value": loss, "gradient": {"lam": g}}).expect(200)
    return out


def check_stored(ds, acked, names):
    """Every acknowledged tell stored with its value; numbers unique and dense."""
    by = {}
    for name, num, value in acked:
        by.setdefault(name, {})[num] = value
    for k, name in enumerate(names):
        d = ds[k % len(ds)]
        lst = d.get("/v1/studies/%s/trials?limit=1000000" % name).expect(200)["trials"]
        numbers = [t["number"] for t in lst]
        check(numbers == list(range(len(lst))), "%s: numbers 0..N-1: %r" % (name, numbers[:30]))
        stored = {t["number"]: t for t in lst}
        for num, value in by.get(name, {}).items():
            t = stored.get(num)
            check(t is not None and t["state"] == "complete" and t["value"] == value,
                  "%s: acknowledged tell %d=%r stored as %r" % (name, num, value, t))
    return sum(len(v) for v in by.values())


@tap.test
def sigkill_owner_under_load(exe):
    uri = pgtest.shared().new_database()
    ds = start_fleet(exe, uri)
    fleet = Fleet(ds)
    stop = threading.Event()
    acked, errors = [], []
    grads = [s for s in specs() if s["sampler"]["type"] == "gradient"]
    others = [s["name"] for s in specs() if s["sampler"]["type"] != "gradient"]
    lams = {s["name"]: [] for s in grads}
    threads = []
    kills = 0
    try:
        for k, spec in enumerate(specs()):
            ds[k % 3].post("/v1/studies", spec).expect(201)
        for i in range(4):
            threads.append(threading.Thread(target=load_worker, args=(fleet, 100 + i, others,
                                                                      stop, acked, errors)))
        for i, s in enumerate(grads):
            threads.append(threading.Thread(target=gradient_worker, args=(
                fleet, 200 + i, s["name"], stop, lams[s["name"]], errors)))
        for t in threads:
            t.start()
        deadline = time.monotonic() + 240  # a bound: 10 rounds take about 30 s
        for rnd in range(10):
            if time.monotonic() > deadline or errors:
                break
            time.sleep(1.0)
            # The owner of a busy gradient study: kill it mid-load, then bring it back.
            owner = ds[0].get("/v1/studies/%s" % grads[rnd % len(grads)]["name"]).header(
                "X-Hpod-Owner") if fleet.ports() else None
            victim = next((d for d in ds if url_of(d) == owner), ds[rnd % 3])
            fleet.set_up(victim, False)
            victim.kill()
            kills += 1
            time.sleep(1.5)  # the others take its studies over meanwhile
            victim.start()
            fleet.set_up(victim, True)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=RETRY_S + 30)
        check(not any(t.is_alive() for t in threads), "clients did not finish")
        check(not errors, "client errors: %r" % errors[:5])
        check(kills == 10, "only %d kills" % kills)
        n = check_stored(ds, acked, others)
        check(n >= 50, "only %d tells acknowledged" % n)
        for s in grads:
            got = lams[s["name"]]
            want = reference_lams(exe, s, len(got))
            check(got == want[:len(got)], "%s: iterates at acknowledged tells differ from one"
                  " daemon's: %r vs %r" % (s["name"], got[:5], want[:5]))
            nxt = ds[1].post("/v1/studies/%s/ask" % s["name"]).expect(201)["params"]["lam"]
            check(nxt == want[len(got)], "%s: the iterate after the last tell %r, want %r" %
                  (s["name"], nxt, want[len(got)]))
        claims = sum(metric(d, "hpod_cluster_claims_total") for d in ds)
        print("# %d kills, %d tells acknowledged, %d gradient steps, %d claims since the last"
              " restarts" % (kills, n, sum(len(v) for v in lams.values()), claims))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        for d in ds:
            d.close()


@tap.test
def sigstop_owner_is_fenced(exe):
    uri = pgtest.shared().new_database()
    # Every suggestion takes 600 ms: an ask is easy to catch in the middle.
    ds = start_fleet(exe, uri, env={"HPOD_TEST_SUGGEST_DELAY_MS": "600"})
    fleet = Fleet(ds)
    stop = threading.Event()
    acked, errors = [], []
    threads = []
    frozen = None
    try:
        names = ["r%d" % i for i in range(6)]
        for k, spec in enumerate(specs()[:6]):
            ds[k % 3].post("/v1/studies", spec).expect(201)
        owner = ds[0].get("/v1/studies/r0").header("X-Hpod-Owner")
        frozen = next(d for d in ds if url_of(d) == owner)
        for i in range(4):
            threads.append(threading.Thread(target=load_worker, args=(fleet, 300 + i, names,
                                                                      stop, acked, errors)))
        for t in threads:
            t.start()
        time.sleep(1.0)
        # An ask straight to the owner, frozen while it suggests: it writes after SIGCONT.
        held = {}

        def ask_owner():
            try:
                held["r"] = Client(frozen.port, timeout=60).post("/v1/studies/r0/ask")
            except OSError as e:
                held["r"] = e
        asker = threading.Thread(target=ask_owner)
        fleet.set_up(frozen, False)
        asker.start()
        time.sleep(0.3)
        frozen.proc.send_signal(signal.SIGSTOP)
        # Past the lease (3 s): the others take its studies over while clients go on.
        time.sleep(5.0)
        others = [d for d in ds if d is not frozen]
        r = others[0].get("/v1/studies/r0")
        r.expect(200, "r0 served while its owner is frozen")
        check(r.header("X-Hpod-Owner") != owner, "r0 taken over: %s" % r.header("X-Hpod-Owner"))
        before = others[0].get("/v1/studies/r0/trials?limit=1000000").expect(200)["total"]
        frozen.proc.send_signal(signal.SIGCONT)
        asker.join(timeout=60)
        got = held.get("r")
        check(got is not None and not isinstance(got, OSError) and got.status == 503,
              "the frozen owner's ask after SIGCONT: %r" % (got.describe() if hasattr(got,
                                                             "describe") else got))
        check(metric(frozen, "hpod_cluster_fenced_writes_total") >= 1, "fenced write counted")
        after = frozen.get("/v1/studies/r0")
        after.expect(200, "r0 through the woken daemon")
        check(after.header("X-Hpod-Owner") != owner, "the woken daemon forwards r0")
        lst = others[1].get("/v1/studies/r0/trials?limit=1000000").expect(200)
        check(lst["total"] >= before, "nothing of r0 lost: %d < %d" % (lst["total"], before))
        fleet.set_up(frozen, True)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(timeout=RETRY_S + 30)
        check(not errors, "client errors: %r" % errors[:5])
        n = check_stored(ds, acked, names)
        print("# %d tells acknowledged around the freeze" % n)
    finally:
        stop.set()
        if frozen is not None and frozen.proc is not None:
            frozen.proc.send_signal(signal.SIGCONT)
        for t in threads:
            t.join(timeout=5)
        for d in ds:
            d.close()


class RowLock:
    """A session holding a row of `daemons` FOR UPDATE: that daemon's heartbeat waits on it."""

    def __init__(self, pg, uri, daemon_id):
        self.proc = subprocess.Popen(
            [os.path.join(pg.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", pg.sock, "-U", pgtest.USER, "-d", uri.rsplit("/", 1)[1]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.proc.stdin.write("BEGIN;\nSELECT 'locked' FROM daemons WHERE id = %d FOR UPDATE;\n"
                              % daemon_id)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()  # psql exits (EOF) on an error
        check(line == "locked", "row lock on daemon %d: %r" % (daemon_id, line))

    def release(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.write("COMMIT;\n")
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def wait_ticks_blocked(d):
    """Until d's heartbeat is older than a tick and a bit: no tick of it reads a view now."""
    deadline = time.monotonic() + 10
    while d.get("/healthz?cluster").expect(200)["cluster"]["heartbeat_age_ms"] < 1300:
        check(time.monotonic() < deadline, "the heartbeat of %d went on" % d.port)
        time.sleep(0.05)


@tap.test
def hand_over_seen_by_one_side(exe):
    pg = pgtest.shared()
    uri = pg.new_database()
    # A long lease: the new owner stays live while its heartbeat waits on the row lock.
    ds = start_fleet(exe, uri, n=2, args=("--lease-ms", "20000"))
    lock = None
    try:
        ds[0].post("/v1/studies", specs()[0]).expect(201, "create r0")
        owner = ds[0].get("/v1/studies/r0").header("X-Hpod-Owner")
        old = next(d for d in ds if url_of(d) == owner)
        new = next(d for d in ds if d is not old)
        new_id = new.get("/healthz?cluster").expect(200)["cluster"]["daemon_id"]
        new.get("/v1/studies").expect(200, "list")  # its view has r0 (a list reads the owners)
        # The new owner's ticks wait on its row from here: its view stays as it is.
        lock = RowLock(pg, uri, new_id)
        wait_ticks_blocked(new)
        pg.psql("UPDATE study_owners SET owner = %d, epoch = epoch + 1" % new_id,
                db=uri.rsplit("/", 1)[1])
        deadline = time.monotonic() + 10
        while old.get("/healthz?cluster").expect(200)["cluster"]["owned_studies"] != 0:
            check(time.monotonic() < deadline, "the old owner's view never saw the hand-over")
            time.sleep(0.02)
        check(new.get("/healthz?cluster").expect(200)["cluster"]["owned_studies"] == 0,
              "the new owner's view saw the hand-over too early")
        # Each forwards r0 to the other now.
        got = {}

        def ask(d):
            w = Worker(Fleet([d]), 0)
            try:
                got[d.port] = w.request("POST", "/v1/studies/r0/ask")
            except Exception as e:  # noqa: BLE001 - reported below
                got[d.port] = e
            finally:
                w.close()
        threads = [threading.Thread(target=ask, args=(d,)) for d in (old, new)]
        for t in threads:
            t.start()
        # Past a lookup's wait (3 s) with the views still apart, then the new owner catches up.
        time.sleep(4.0)
        lock.release()
        for t in threads:
            t.join(timeout=RETRY_S + 30)
        check(not any(t.is_alive() for t in threads), "asks did not finish")
        for d in (old, new):
            r = got.get(d.port)
            check(r is not None and not isinstance(r, Exception) and r.status == 201,
                  "ask through %d: %r" % (d.port, r.describe() if hasattr(r, "describe") else r))
            check(r.header("X-Hpod-Owner") == url_of(new), "ask through %d answered by %s"
                  % (d.port, r.header("X-Hpod-Owner")))
        numbers = sorted(got[d.port].json["number"] for d in (old, new))
        check(numbers == [0, 1], "the two asks' numbers: %r" % numbers)
        for d in (old, new):
            lst = d.get("/v1/studies/r0/trials?limit=100").expect(200, "trials through %d"
                                                                  % d.port)
            check([t["number"] for t in lst["trials"]] == [0, 1] and
                  all(t["state"] == "running" for t in lst["trials"]),
                  "r0's trials through %d: %r" % (d.port, lst["trials"]))
    finally:
        if lock is not None:
            lock.release()
        for d in ds:
            d.close()


@tap.test
def handed_over_while_queued(exe):
    pg = pgtest.shared()
    uri = pg.new_database()
    # Every suggestion takes 4 s: a second ask waits that long in the study's lane.
    ds = start_fleet(exe, uri, n=2, env={"HPOD_TEST_SUGGEST_DELAY_MS": "4000"})
    try:
        ds[0].post("/v1/studies", specs()[0]).expect(201, "create r0")
        owner = ds[0].get("/v1/studies/r0").header("X-Hpod-Owner")
        old = next(d for d in ds if url_of(d) == owner)
        new = next(d for d in ds if d is not old)
        new_id = new.get("/healthz?cluster").expect(200)["cluster"]["daemon_id"]
        got = {}

        def ask(k):
            try:
                got[k] = Client(old.port, timeout=60).post("/v1/studies/r0/ask")
            except OSError as e:
                got[k] = e
        first = threading.Thread(target=ask, args=("first",))
        first.start()
        time.sleep(0.5)
        second = threading.Thread(target=ask, args=("second",))  # routed here, then queued
        second.start()
        time.sleep(0.5)
        # Handed over meanwhile: the old owner drops its copy at its next tick.
        pg.psql("UPDATE study_owners SET owner = %d, epoch = epoch + 1" % new_id,
                db=uri.rsplit("/", 1)[1])
        for t in (first, second):
            t.join(timeout=90)
        check(not first.is_alive() and not second.is_alive(), "asks did not finish")
        r = got.get("second")
        check(r is not None and not isinstance(r, OSError) and r.status == 201,
              "the queued ask: %r" % (r.describe() if hasattr(r, "describe") else r))
        check(r.header("X-Hpod-Owner") == url_of(new), "the queued ask answered by %s"
              % r.header("X-Hpod-Owner"))
        r1 = got.get("first")
        check(r1 is not None and not isinstance(r1, OSError) and r1.status in (201, 503),
              "the ask in the lane: %r" % (r1.describe() if hasattr(r1, "describe") else r1))
        lst = new.get("/v1/studies/r0/trials?limit=100").expect(200)["trials"]
        want = [0, 1] if r1.status == 201 else [0]
        check([t["number"] for t in lst] == want and r.json["number"] == want[-1],
              "r0's trials %r, the queued ask's %r" % (lst, r.json))
    finally:
        for d in ds:
            d.close()


@tap.test
def owners_unread_never_404(exe):
    pg = pgtest.shared()
    uri = pg.new_database()
    ds = start_fleet(exe, uri, n=2, args=("--lease-ms", "20000"))
    lock = None
    try:
        blind = ds[1]
        blind_id = blind.get("/healthz?cluster").expect(200)["cluster"]["daemon_id"]
        # Its heartbeat waits on its row (and fails): its view lacks what is created now.
        lock = RowLock(pg, uri, blind_id)
        wait_ticks_blocked(blind)
        for spec in specs()[:4]:
            ds[0].post("/v1/studies", spec).expect(201, "create %s" % spec["name"])
        # Those the other daemon kept (the rest went to the blind one, which created them).
        kept = [s["name"] for s in specs()[:4]
                if ds[0].get("/v1/studies/%s" % s["name"]).header("X-Hpod-Owner") == url_of(ds[0])]
        check(len(kept) >= 1, "studies kept by their creator: %r" % kept)
        for name in kept:
            r = blind.get("/v1/studies/%s" % name)
            check(r.status == 503, "%s through a daemon whose view lacks it: %s"
                  % (name, r.describe()))
        r = blind.post("/v1/studies/%s/ask" % kept[0])
        check(r.status == 503, "ask through it: %s" % r.describe())
        lock.release()
        w = Worker(Fleet([blind]), 0)
        try:
            for name in kept:
                r = w.request("GET", "/v1/studies/%s" % name)
                r.expect(200, "%s once its view is read again" % name)
                check(r.header("X-Hpod-Owner") == url_of(ds[0]), "%s owned by its creator" % name)
        finally:
            w.close()
    finally:
        if lock is not None:
            lock.release()
        for d in ds:
            d.close()


@tap.test
def sigterm_hands_over(exe):
    uri = pgtest.shared().new_database()
    ds = start_fleet(exe, uri)
    fleet = Fleet(ds)
    stop = threading.Event()
    acked, errors = [], []
    threads = []
    try:
        names = ["r%d" % i for i in range(6)]
        for k, spec in enumerate(specs()[:6]):
            ds[k % 3].post("/v1/studies", spec).expect(201)
        owner = ds[0].get("/v1/studies/r0").header("X-Hpod-Owner")
        leaving = next(d for d in ds if url_of(d) == owner)
        for i in range(4):
            threads.append(threading.Thread(target=load_worker, args=(fleet, 400 + i, names,
                                                                      stop, acked, errors)))
        for t in threads:
            t.start()
        time.sleep(1.0)
        fleet.set_up(leaving, False)
        leaving.stop()  # SIGTERM: drains, then hands every study over (exit 0)
        others = [d for d in ds if d is not leaving]
        # Handed over at the stop, not after a lease: the next owner answers at once.
        r = others[0].get("/v1/studies/r0")
        r.expect(200, "r0 right after its owner stopped")
        check(r.header("X-Hpod-Owner") in {url_of(d) for d in others},
              "r0 handed to a live daemon: %s" % r.header("X-Hpod-Owner"))
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=RETRY_S + 30)
        check(not errors, "client errors: %r" % errors[:5])
        n = check_stored(others, acked, names)
        print("# %d tells acknowledged around the hand-off" % n)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        for d in ds:
            d.close()


def next_study_event(resp, deadline):
    """The data of the next `event: study` on an open stream, or None at its end."""
    kind = None
    while time.monotonic() < deadline:
        line = resp.readline()
        if line == b"":
            return None
        line = line.decode().rstrip("\n")
        if line.startswith("event:"):
            kind = line.partition(":")[2].strip()
        elif line.startswith("data:") and kind == "study":
            return json.loads(line.partition(":")[2])
    return None


CROSS_CLIENTS = 30  # per daemon, each for the other daemon's study: more than its 17 workers
CROSS_SECONDS = 4.0


@tap.test
def cross_forwards_beyond_the_workers(exe):
    """Each daemon forwards more requests at once to the other than it has workers."""
    uri = pgtest.shared().new_database()
    ds = start_fleet(exe, uri, n=2, args=("--threads", "1"))  # 1 + 16 workers each
    try:
        urls = [url_of(d) for d in ds]
        owned = {}
        for k in range(16):
            name = "x%d" % k
            ds[0].post("/v1/studies", {"name": name, "params": [X],
                                       "sampler": {"type": "random"}}).expect(201, "create")
            got = ds[0].get("/v1/studies/" + name)
            got.expect(200, "get " + name)
            owner = got.header("X-Hpod-Owner")
            owned.setdefault(urls.index(owner), name)
            if len(owned) == 2:
                break
        check(len(owned) == 2, "a study on each daemon: %r" % owned)
        stop = threading.Event()
        acked = {owned[0]: 0, owned[1]: 0}
        counts = []
        errors = []
        lock = threading.Lock()

        def client(d, name, slot):
            # The daemon's forward waits up to 300 s: a hang shows as this client's timeout.
            c = Client(d.port, timeout=20)
            try:
                while not stop.is_set():
                    t = c.request("POST", "/v1/studies/%s/ask" % name)
                    if t.status != 201:
                        errors.append(t.describe())
                        return
                    r = c.request("POST", "/v1/studies/%s/trials/%d/tell" % (name, t.json["number"]),
                                  body={"value": 0.5})
                    if r.status != 200:
                        errors.append(r.describe())
                        return
                    with lock:
                        acked[name] += 1
                        counts[slot] += 1
            except OSError as e:
                errors.append("through :%d for %s: %r" % (d.port, name, e))
            finally:
                c.close()

        threads = []
        for i in (0, 1):
            for _ in range(CROSS_CLIENTS):
                counts.append(0)
                threads.append(threading.Thread(target=client, args=(ds[i], owned[1 - i],
                                                                      len(counts) - 1)))
        for t in threads:
            t.start()
        busy_seen = 0
        deadline = time.monotonic() + CROSS_SECONDS
        while time.monotonic() < deadline:
            for d in ds:
                busy = metric(d, "hpod_forward_threads_busy")
                check(0 <= busy <= 16, "hpod_forward_threads_busy %r" % busy)
                busy_seen = max(busy_seen, busy)
            time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        check(not any(t.is_alive() for t in threads), "clients did not finish")
        check(not errors, "errors: %r" % errors[:3])
        check(busy_seen >= 1, "forwards seen waiting on the forward threads (/metrics)")
        for d in ds:
            check(metric(d, "hpod_forward_threads_busy") == 0 and
                  metric(d, "hpod_forward_queue") == 0, "forward gauges back to 0 on :%d" % d.port)
        check(min(counts) > 0, "every client was answered: %d of %d never were" % (
            counts.count(0), len(counts)))
        for name, n in acked.items():
            for d in ds:
                got = d.get("/v1/studies/%s/trials?state=complete&limit=1" % name)
                got.expect(200, "trials of " + name)
                check(int(got.header("X-Total-Count")) == n, "%s: %s complete through :%d, %d acked"
                      % (name, got.header("X-Total-Count"), d.port, n))
    finally:
        for d in ds:
            d.close()


@tap.test
def event_stream_on_its_owner(exe):
    uri = pgtest.shared().new_database()
    ds = start_fleet(exe, uri, n=2)
    conn = None
    try:
        ds[1].post("/v1/studies", specs()[0]).expect(201)
        owner = ds[0].get("/v1/studies/r0").header("X-Hpod-Owner")
        own = next(d for d in ds if url_of(d) == owner)
        other = next(d for d in ds if d is not own)
        r = other.get("/v1/studies/r0/events")
        err = r.expect_error(503, "unavailable", None, "events on a daemon that does not own r0")
        check("another daemon" in err["message"], "the 503 says why: %r" % err["message"])
        check(r.header("X-Hpod-Owner") == owner, "X-Hpod-Owner names the owner: %r"
              % r.header("X-Hpod-Owner"))
        conn = http.client.HTTPConnection("127.0.0.1", own.port, timeout=10)
        conn.request("GET", "/v1/studies/r0/events")
        resp = conn.getresponse()
        check(resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream",
              "the owner streams r0: %d %s" % (resp.status, resp.getheader("Content-Type")))
        deadline = time.monotonic() + 10
        first = next_study_event(resp, deadline)
        check(first is not None and first["total"] == 0, "first event: %r" % first)
        other.post("/v1/studies/r0/ask").expect(201, "ask through the other daemon")
        ev = next_study_event(resp, deadline)
        check(ev is not None and ev["total"] == 1 and ev["trials"]["running"] == 1,
              "the forwarded ask reaches the owner's stream: %r" % ev)
    finally:
        if conn is not None:
            conn.close()
        for d in ds:
            d.close()


def same_create(ds, spec_of, marked=False):
    """POST /v1/studies through every daemon at the same instant; the replies by daemon.

    marked: as forwarded by another daemon (X-Hpod-Forwarded, no cluster token
    here), so that each daemon creates the study itself rather than sending the
    create to the preferred daemon: the database decides which one wins.
    """
    go = threading.Barrier(len(ds))
    out = [None] * len(ds)

    def one(k):
        w = Worker(Fleet([ds[k]]), k)
        try:
            go.wait(timeout=30)
            if marked:
                c = Client(ds[k].port, timeout=30)
                try:
                    out[k] = c.request("POST", "/v1/studies", body=spec_of(k),
                                       headers={"X-Hpod-Forwarded": "1"})
                finally:
                    c.close()
                return
            out[k] = w.request("POST", "/v1/studies", spec_of(k), ok=(200, 201, 409))
        except Exception as e:  # noqa: BLE001 - reported below
            out[k] = e
        finally:
            w.close()

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(ds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=RETRY_S + 30)
    return out


@tap.test
def same_create_at_once(exe):
    """One name created through the three daemons at once: one study, idempotent answers."""
    uri = pgtest.shared().new_database()
    ds = start_fleet(exe, uri)
    try:
        for i in range(12):
            spec = {"name": "same%d" % i, "params": [X, Y], "sampler": {"type": "random", "seed": 7}}
            got = same_create(ds, lambda k: spec)
            codes = sorted(r.status if hasattr(r, "status") else repr(r) for r in got)
            check(codes == [200, 200, 201], "%s, same definition: %r" % (spec["name"], codes))
            ids = {r.json["name"] for r in got}
            check(ids == {spec["name"]}, "one study: %r" % ids)
            other = {"name": "diff%d" % i, "params": [X, Y], "sampler": {"type": "random"}}
            got = same_create(ds, lambda k: dict(other, sampler={"type": "random", "seed": k}))
            codes = sorted(r.status if hasattr(r, "status") else repr(r) for r in got)
            check(codes == [201, 409, 409], "%s, other definitions: %r" % (other["name"], codes))
            for r in got:
                if r.status == 409:
                    check(r.json["error"]["code"] == "conflict", r.describe())
        # Each daemon creates it itself: the losers of the race for the name in the
        # database answer as for a create forwarded to a daemon that does not own
        # the study (503, X-Hpod-Owner the winner: their sender asks it), never 409.
        for i in range(12):
            spec = {"name": "race%d" % i, "params": [X, Y], "sampler": {"type": "random"}}
            got = same_create(ds, lambda k: spec, marked=True)
            codes = sorted(r.status if hasattr(r, "status") else repr(r) for r in got)
            check(codes == [201, 503, 503], "%s, created at once: %r" % (spec["name"], codes))
            winner = next(url_of(d) for d, r in zip(ds, got) if r.status == 201)
            for r in got:
                if r.status == 503:
                    check(r.header("X-Hpod-Owner") == winner, "%s: %s, winner %s" % (
                        spec["name"], r.describe(), winner))
            r = ds[i % 3].post("/v1/studies", spec)
            r.expect(200, "%s created again" % spec["name"])
        for d in ds:
            lst = d.get("/v1/studies?limit=1000").expect(200)["studies"]
            check(len(lst) == 36, "36 studies through %s: %d" % (url_of(d), len(lst)))
    finally:
        for d in ds:
            d.close()


@tap.test
def database_outage_with_three_daemons(exe):
    """PostgreSQL stopped for 10 s under load: 503 meanwhile, then everything resumes."""
    pg = pgtest.shared()
    uri = pg.new_database()
    ds = start_fleet(exe, uri)
    fleet = Fleet(ds)
    stop = threading.Event()
    acked, errors = [], []
    names = ["r%d" % i for i in range(6)]
    threads = []
    try:
        for k, spec in enumerate(specs()[:6]):
            ds[k % 3].post("/v1/studies", spec).expect(201)
        for i in range(4):
            threads.append(threading.Thread(target=load_worker, args=(fleet, 500 + i, names,
                                                                      stop, acked, errors)))
        for t in threads:
            t.start()
        time.sleep(1.0)
        pg.stop("fast")
        try:
            time.sleep(2.0)
            before = len(acked)
            time.sleep(8.0)
            during = len(acked) - before
        finally:
            pg.start()
        # Resumes by itself: tells are acknowledged again, bounded in time.
        resumed = len(acked)
        deadline = time.monotonic() + 60
        while len(acked) < resumed + 40 and time.monotonic() < deadline and not errors:
            time.sleep(0.2)
        check(len(acked) >= resumed + 40, "did not resume: %d tells after the restart (%r)" %
              (len(acked) - resumed, errors[:3]))
        stop.set()
        for t in threads:
            t.join(timeout=RETRY_S + 30)
        check(not errors, "client errors: %r" % errors[:5])
        check(during == 0, "%d tells acknowledged while PostgreSQL was down" % during)
        n = check_stored(ds, acked, names)
        # Each study has one live owner again, and every daemon sees the same one.
        for name in names:
            owners = set()
            for d in ds:
                r = Worker(Fleet([d]), 1).request("GET", "/v1/studies/%s" % name)
                r.expect(200, "%s through %s" % (name, url_of(d)))
                owners.add(r.header("X-Hpod-Owner"))
            check(len(owners) == 1 and owners <= {url_of(d) for d in ds},
                  "%s: owners %r" % (name, owners))
        print("# %d tells acknowledged around a 10 s outage" % n)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        for d in ds:
            d.close()


@tap.test
def gone_daemons_forgotten(exe):
    """The rows of daemons gone for 10 leases are removed; the live ones stay."""
    pg = pgtest.shared()
    uri = pg.new_database()
    db = uri.rsplit("/", 1)[1]
    ds = []
    try:
        for _ in range(2):
            ds.append(Daemon(exe, ["--lease-ms", "1000"]))
            ds[-1].db = uri
            ds[-1].start()
        ds[0].post("/v1/studies", specs()[0]).expect(201)
        for _ in range(3):
            ds[1].kill()
            ds[1].start()
        rows = int(pg.psql("SELECT count(*) FROM daemons", db))
        check(rows == 5, "one row per start: %d" % rows)
        # Gone for 10 leases (1 s each), looked for every 5 heartbeats.
        deadline = time.monotonic() + 40
        while rows > 2 and time.monotonic() < deadline:
            time.sleep(1.0)
            rows = int(pg.psql("SELECT count(*) FROM daemons", db))
        check(rows == 2, "%d rows left, want the 2 live daemons'" % rows)
        live = int(pg.psql("SELECT count(*) FROM daemons WHERE heartbeat > now() -"
                           " interval '5 seconds'", db))
        check(live == 2, "the live daemons' rows stay: %d" % live)
        for d in ds:
            d.get("/v1/studies/%s" % specs()[0]["name"]).expect(200)
    finally:
        for d in ds:
            d.close()


def owners_now(pg, db):
    """{study name: its owner's URL ('' when none)} from the database."""
    out = {}
    rows = pg.psql("SELECT s.name, coalesce(d.url, '') FROM studies s LEFT JOIN study_owners o"
                   " ON o.study_id = s.id LEFT JOIN daemons d ON d.id = o.owner", db)
    for line in rows.splitlines():
        if line:
            name, url = line.split("|", 1)
            out[name] = url
    return out


def settled(pg, db, ds, n):
    """The owners once every one of the n studies is owned by a daemon of ds and nothing
    has moved for 4 s (four heartbeats: hand-offs to a daemon that joined take two)."""
    urls = {url_of(d) for d in ds}
    deadline = time.monotonic() + 60
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        own = owners_now(pg, db)
        if own != last:
            last, since = own, time.monotonic()
        elif (len(own) == n and set(own.values()) <= urls and
              time.monotonic() - since >= 4.0):
            return own
        time.sleep(0.25)
    raise AssertionError("owners not settled within 60 s: %r" % last)


def counts(own, ds):
    return sorted(list(own.values()).count(url_of(d)) for d in ds)


def moved(before, after):
    return sorted(n for n in before if n in after and before[n] != after[n])


def claims(ds):
    """Studies the daemons took over so far (hand-offs are not claims)."""
    return sum(int(metric(d, "hpod_cluster_claims_total")) for d in ds)


def no_lapse(before, after, expected, what):
    """Whether the daemons claimed `expected` studies meanwhile: more means a heartbeat
    lapsed (a daemon seen gone for a moment on this shared machine), which moves studies
    as a daemon leaving and joining would, so the churn of `what` is not checked."""
    if after - before == expected:
        return True
    print("# %s: %d studies claimed, %d expected (a heartbeat lapsed): churn not checked"
          % (what, after - before, expected))
    return False


@tap.test
def studies_spread_evenly(exe):
    """16 and 17 studies on 2 and 3 daemons: each daemon owns floor(n/d) or ceil(n/d);
    a daemon joining takes exactly its share from the others (nothing else moves), a
    new study moves no other, a daemon leaving (SIGTERM or SIGKILL) moves its own only."""
    pg = pgtest.shared()
    uri = pg.new_database()
    db = uri.rsplit("/", 1)[1]
    ds = start_fleet(exe, uri, n=2)
    try:
        names = ["p%02d" % i for i in range(17)]
        for k, name in enumerate(names[:16]):
            ds[k % 2].post("/v1/studies", {"name": name, "params": [X],
                                           "sampler": {"type": "random"}}).expect(201)
        own = settled(pg, db, ds, 16)
        check(counts(own, ds) == [8, 8], "16 studies on 2 daemons: %r" % counts(own, ds))

        # A third daemon joins: 16 on 3 is 6/5/5; from 8/8 that is 5 studies, all to it.
        c0 = claims(ds)
        ds.append(Daemon(exe))
        ds[2].db = uri
        ds[2].start()
        after = settled(pg, db, ds, 16)
        check(counts(after, ds) == [5, 5, 6], "16 studies on 3 daemons: %r" % counts(after, ds))
        m = moved(own, after)
        if no_lapse(c0, claims(ds), 0, "join"):
            check(len(m) == 5 and all(after[n] == url_of(ds[2]) for n in m),
                  "a join moves 5 studies, all to the new daemon: %r" %
                  [(n, after[n]) for n in m])

        # A 17th study: 6/6/5, and no other study moves.
        c0 = claims(ds)
        ds[0].post("/v1/studies", {"name": names[16], "params": [X],
                                   "sampler": {"type": "random"}}).expect(201)
        own = settled(pg, db, ds, 17)
        check(counts(own, ds) == [5, 6, 6], "17 studies on 3 daemons: %r" % counts(own, ds))
        if no_lapse(c0, claims(ds), 0, "create"):
            check(moved(after, own) == [], "a new study moves no other: %r" % moved(after, own))
        for d in ds:
            got = d.get("/v1/studies/%s" % names[16])
            got.expect(200)
            check(got.header("X-Hpod-Owner") == own[names[16]], "every daemon routes the new study")

        # SIGTERM one: 17 on 2 is 9/8, and only its studies move (handed over, not claimed).
        leaver = ds.pop(1)
        its = sorted(n for n in own if own[n] == url_of(leaver))
        c0 = claims(ds)
        leaver.stop()
        after = settled(pg, db, ds, 17)
        check(counts(after, ds) == [8, 9], "17 studies on 2 daemons: %r" % counts(after, ds))
        if no_lapse(c0, claims(ds), 0, "SIGTERM"):
            check(moved(own, after) == its, "a leave moves its %d studies only: %r" %
                  (len(its), moved(own, after)))

        # It comes back (a new daemon): from 9/8 it takes 5 (6/6/5); SIGKILLed, they go back.
        c0 = claims(ds)
        leaver.start()
        ds.append(leaver)
        own = settled(pg, db, ds, 17)
        check(counts(own, ds) == [5, 6, 6], "17 studies on 3 daemons again: %r" % counts(own, ds))
        m = moved(after, own)
        if no_lapse(c0, claims(ds), 0, "join again"):
            check(len(m) == 5 and all(own[n] == url_of(leaver) for n in m),
                  "a join moves 5 studies to the new daemon: %r" % m)
        ds.pop()
        its = sorted(n for n in own if own[n] == url_of(leaver))
        c0 = claims(ds)
        leaver.kill()
        after = settled(pg, db, ds, 17)
        check(counts(after, ds) == [8, 9], "17 studies on 2 daemons: %r" % counts(after, ds))
        if no_lapse(c0, claims(ds), len(its), "SIGKILL"):
            check(moved(own, after) == its, "a death moves its studies only: %r" %
                  moved(own, after))
        for name in names:
            r = ds[0].post("/v1/studies/%s/ask" % name)
            r.expect(201)
            check(r.header("X-Hpod-Owner") == after[name], "%s asked at its owner" % name)
        ds.append(leaver)
    finally:
        for d in ds:
            d.close()


@tap.test
def gone_daemons_batch_markers_removed(exe):
    """The batch markers (hpod_batches) of daemons gone for 10 leases go with their rows
    (and markers left without a row); a daemon that was frozen, cut from the database and
    removed meanwhile exits 75 when it wakes, rather than run without its marker."""
    pg = pgtest.shared()
    uri = pg.new_database()
    db = uri.rsplit("/", 1)[1]
    ds = []
    try:
        for _ in range(3):
            ds.append(Daemon(exe, ["--lease-ms", "1000"]))
            ds[-1].db = uri
            ds[-1].start()
        ds[0].post("/v1/studies", specs()[0]).expect(201)
        for _ in range(3):
            ds[1].kill()
            ds[1].start()
        pg.psql("INSERT INTO hpod_batches VALUES (1000000, 7)", db)
        markers = int(pg.psql("SELECT count(*) FROM hpod_batches", db))
        check(markers == 7, "one marker per start, and the stray one: %d" % markers)
        # The third daemon is frozen and its sessions cut: to the others it is gone.
        frozen = ds[2]
        frozen_id = frozen.get("/healthz?cluster").expect(200)["cluster"]["daemon_id"]
        frozen.close_clients()
        frozen.proc.send_signal(signal.SIGSTOP)
        pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE '%% pid %d'" % frozen.proc.pid, db)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = int(pg.psql("SELECT count(*) FROM daemons", db))
            markers = int(pg.psql("SELECT count(*) FROM hpod_batches", db))
            if rows == 2 and markers == 2:
                break
            time.sleep(1.0)
        check((rows, markers) == (2, 2), "left: %d daemons, %d markers; want the 2 live"
              " daemons' rows and markers" % (rows, markers))
        same = int(pg.psql("SELECT count(*) FROM hpod_batches b JOIN daemons d"
                           " ON d.id = b.daemon", db))
        check(same == 2, "the markers left are the live daemons': %d" % same)
        gone = int(pg.psql("SELECT count(*) FROM daemons WHERE id = %d" % frozen_id, db))
        check(gone == 0, "the frozen daemon's row removed")
        frozen.proc.send_signal(signal.SIGCONT)
        try:
            rc = frozen.proc.wait(timeout=30)
        except Exception:
            rc = None
        check(rc == 75, "the woken daemon exits 75: %r\n%s" % (rc, frozen.log_tail()))
        check("removed from the database as gone" in frozen.log_text(), "it says why")
        frozen.proc = None
        for d in ds[:2]:
            d.get("/v1/studies/%s" % specs()[0]["name"]).expect(200)
        rows = int(pg.psql("SELECT count(*) FROM daemons", db))
        check(rows == 2, "the woken daemon did not write its row again: %d" % rows)
    finally:
        for d in ds:
            if d.proc is not None:
                d.proc.send_signal(signal.SIGCONT)
            d.close()


@tap.test
def forwarding_over_tls(exe):
    """Daemons on https:// forward to each other, trusting the CA of --cluster-cacert."""
    import http.client
    import json
    import ssl
    import tempfile
    from hpodtest import make_ca, make_server_cert

    tmp = tempfile.TemporaryDirectory(prefix="hpod-cluster-tls-")
    ca = make_ca(tmp.name)
    uri = pgtest.shared().new_database()
    ds = []
    try:
        for k in range(2):
            cert, key = make_server_cert(tmp.name, "d%d" % k, ca)
            ds.append(Daemon(exe, ["--tls-cert", cert, "--tls-key", key,
                                   "--cluster-cacert", ca[0]]))
            ds[-1].db = uri
            ds[-1].start()
        ctx = ssl.create_default_context(cafile=ca[0])

        def req(d, method, path, body=None):
            c = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=30)
            try:
                c.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                return r.status, r.getheader("X-Hpod-Owner"), r.read()
            finally:
                c.close()

        urls = {"https://127.0.0.1:%d" % d.port for d in ds}
        owners = set()
        for i in range(8):
            spec = {"name": "tls%d" % i, "params": [X], "sampler": {"type": "random"}}
            status, owner, body = req(ds[i % 2], "POST", "/v1/studies", spec)
            check(status == 201, "create over https: %d %r" % (status, body))
        # Until the studies are spread (a daemon that just joined gets its share after
        # two heartbeats), bounded.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen = {req(ds[0], "GET", "/v1/studies/tls%d" % i)[1] for i in range(8)}
            if seen == urls:
                break
            time.sleep(0.5)
        for i in range(8):
            for d in ds:
                status, owner, body = req(d, "POST", "/v1/studies/tls%d/ask" % i)
                check(status == 201, "ask tls%d through :%d: %d %r" % (i, d.port, status, body))
                check(owner in urls, "X-Hpod-Owner %r" % owner)
                owners.add(owner)
        check(owners == urls, "studies on both daemons, each reached through the other: %r" %
              owners)
    finally:
        for d in ds:
            d.close()
        tmp.cleanup()


if __name__ == "__main__":
    why = pgtest.available()
    if why is not None:
        print("1..0 # SKIP %s" % why)
        sys.exit(0)
    sys.exit(tap.run(exe_from_argv()))
