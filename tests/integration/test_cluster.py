#!/usr/bin/python3
"""test_cluster.py: several hpod daemons on one PostgreSQL (docs/CLUSTER.md).

Usage: test_cluster.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset)

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
  SIGKILL and restarted, several rounds: every acknowledged tell is stored with
  its value on every daemon, each study's numbers are unique and dense, and
  each gradient study's iterate, at each acknowledged tell and after the last,
  equals bit for bit that of one daemon that never failed.
- sigterm_hands_over: SIGTERM to the owner of a busy study: it drains, exits
  0 and hands its studies over, so another daemon answers for them at once
  (no lease to wait for); nothing acknowledged is lost.
- sigstop_owner_is_fenced: the owner of a study is frozen (SIGSTOP) in the
  middle of an ask (a suggestion delay holds it there) past its lease while
  clients keep working through the other two; the study is taken over; after
  SIGCONT the frozen daemon's write is refused by fencing (503, counted in its
  /metrics), it forwards the study to the new owner, and nothing anyone
  acknowledged is lost.

Prints TAP.
"""

import os
import random
import re
import signal
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
        deadline = time.monotonic() + RETRY_S
        last = None
        while time.monotonic() < deadline:
            ports = self.fleet.ports()
            if not ports:
                time.sleep(0.05)
                continue
            port = self.rng.choice(ports)
            c = self.clients.get(port)
            if c is None:
                c = self.clients[port] = Client(port, timeout=20)
            try:
                r = c.request(method, path, body=body, headers=headers)
            except OSError as e:  # killed under us: its requests may or may not have run
                c.close()
                self.clients.pop(port, None)
                last = repr(e)
                time.sleep(0.02)
                continue
            if r.status in ok:
                return r
            if r.status != 503:
                return r
            last = r.describe()
            time.sleep(0.05)
        raise AssertionError("%s %s: no answer within %.0f s (last: %s)" % (method, path,
                                                                            RETRY_S, last))

    def close(self):
        for c in self.clients.values():
            c.close()


def start_fleet(exe, uri, n=3, env=None):
    ds = []
    for _ in range(n):
        d = Daemon(exe, env=env)
        d.db = uri
        d.start()
        ds.append(d)
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
        deadline = time.monotonic() + 120
        for rnd in range(6):
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
        check(kills >= 4, "only %d kills" % kills)
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


if __name__ == "__main__":
    why = pgtest.available()
    if why is not None:
        print("1..0 # SKIP %s" % why)
        sys.exit(0)
    sys.exit(tap.run(exe_from_argv()))
