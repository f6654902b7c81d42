"""dashfill.py: fill a study with many trials quickly (the dashboard's test and benchmark).

fill(port, name, n, pruned=..., with_reports=...) creates a 6-param study with a median
pruner and records n complete trials with POST /v1/studies/{s}/trials (params and value,
deterministic), over several keep-alive connections; then runs `with_reports` trials
through ask/report/tell so part of the study has intermediate values (some pruned, some
failed). Answers the number of seconds the fill took.
"""
import http.client
import json
import math
import random
import threading
import time

PARAMS = [
    {"name": "lr", "type": "float", "low": 1e-5, "high": 1.0, "log": True},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
    {"name": "layers", "type": "int", "low": 1, "high": 8},
    {"name": "units", "type": "int", "low": 16, "high": 512, "log": True},
    {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
    {"name": "wd", "type": "float", "low": 1e-6, "high": 0.1, "log": True},
]


def objective(p):
    """A smooth function of the params (positive, minimized near lr=1e-2, dropout=0.2)."""
    v = (math.log10(p["lr"]) + 2) ** 2 + 4 * (p["dropout"] - 0.2) ** 2 + 0.05 * abs(p["layers"] - 4)
    v += 0.1 * abs(math.log2(p["units"]) - 7) + {"adam": 0.0, "sgd": 0.3, "rmsprop": 0.15}[p["optimizer"]]
    v += 0.02 * (math.log10(p["wd"]) + 4) ** 2
    return round(v + 0.01, 12)


def params_for(i):
    r = random.Random(i)
    return {"lr": 10 ** r.uniform(-5, 0), "dropout": r.uniform(0, 0.5), "layers": r.randint(1, 8),
            "units": int(round(2 ** r.uniform(4, 9))), "optimizer": r.choice(["adam", "sgd", "rmsprop"]),
            "wd": 10 ** r.uniform(-6, -1)}


def _post(conn, path, body):
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status not in (200, 201, 204):
        raise RuntimeError("%s -> %d %s" % (path, r.status, data[:200]))
    return json.loads(data) if data else None


def create(port, name):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    _post(conn, "/v1/studies", {"name": name, "params": PARAMS, "direction": "minimize",
                                 "sampler": {"type": "random", "seed": 1},
                                 "pruner": {"type": "median", "n_startup_trials": 3}})
    conn.close()


def record(port, name, start, stop, threads=6):
    """POST trials start..stop-1 with their values (numbers follow the order of arrival)."""
    nxt = [start]
    lock = threading.Lock()
    errors = []

    def work():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while True:
                with lock:
                    i = nxt[0]
                    if i >= stop:
                        return
                    nxt[0] += 1
                p = params_for(i)
                _post(conn, "/v1/studies/%s/trials" % name, {"params": p, "value": objective(p)})
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)
        finally:
            conn.close()

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def run_with_reports(port, name, count, steps=8):
    """ask, report `steps` values, tell: every 5th pruned, every 7th failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for k in range(count):
        t = _post(conn, "/v1/studies/%s/ask" % name, {"worker": "w%d" % (k % 3)})
        num = t["number"]
        base = objective(t["params"])
        for s in range(steps):
            _post(conn, "/v1/studies/%s/trials/%d/report" % (name, num), {"step": s, "value": base + 1.0 / (s + 1)})
        if k % 7 == 6:
            _post(conn, "/v1/studies/%s/trials/%d/tell" % (name, num), {"state": "failed"})
        elif k % 5 == 4:
            _post(conn, "/v1/studies/%s/trials/%d/tell" % (name, num), {"state": "pruned"})
        else:
            _post(conn, "/v1/studies/%s/trials/%d/tell" % (name, num), {"value": base})
    conn.close()


# The multi-objective study: loss (minimize) against cost (minimize), memory bounded.
OBJECTIVES = [{"name": "loss", "direction": "minimize"}, {"name": "cost", "direction": "minimize"}]
CONSTRAINTS = [{"name": "memory", "max": 2.0}]


def results(p):
    """values and constraints of a trial of the multi-objective study (deterministic)."""
    cost = round(p["layers"] * math.log2(p["units"]) / 10 + (1 - p["dropout"]) + 2 * p["lr"], 12)
    return ({"loss": objective(p), "cost": cost},
            {"memory": round(p["layers"] * p["units"] / 1000, 12)})


def create_mo(port, name):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    _post(conn, "/v1/studies", {"name": name, "params": PARAMS, "objectives": OBJECTIVES,
                                 "constraints": CONSTRAINTS, "sampler": {"type": "random", "seed": 1}})
    conn.close()


def record_mo(port, name, start, stop, threads=6):
    """POST trials start..stop-1 with values and constraints."""
    nxt = [start]
    lock = threading.Lock()
    errors = []

    def work():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while True:
                with lock:
                    i = nxt[0]
                    if i >= stop:
                        return
                    nxt[0] += 1
                p = params_for(i)
                v, c = results(p)
                _post(conn, "/v1/studies/%s/trials" % name, {"params": p, "values": v, "constraints": c})
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)
        finally:
            conn.close()

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def run_mo_with_reports(port, name, count, steps=8):
    """ask, report `steps` loss values, tell both objectives: every 7th failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for k in range(count):
        t = _post(conn, "/v1/studies/%s/ask" % name, {"worker": "w%d" % (k % 3)})
        num = t["number"]
        v, c = results(t["params"])
        for s in range(steps):
            _post(conn, "/v1/studies/%s/trials/%d/report" % (name, num), {"step": s, "value": v["loss"] + 1.0 / (s + 1)})
        if k % 7 == 6:
            _post(conn, "/v1/studies/%s/trials/%d/tell" % (name, num), {"state": "failed"})
        else:
            _post(conn, "/v1/studies/%s/trials/%d/tell" % (name, num), {"values": v, "constraints": c})
    conn.close()


def fill_mo(port, name, n, with_reports=300):
    t0 = time.monotonic()
    create_mo(port, name)
    record_mo(port, name, 0, n)
    run_mo_with_reports(port, name, with_reports)
    return time.monotonic() - t0


def fill_mo_direct(daemon, name, n, via_api=2000, with_reports=300):
    """The multi-objective study of n + with_reports trials, most of it written straight into
    the SQLite database: `via_api` trials through POST .../trials (the rows hpod writes
    itself), `with_reports` trials through ask/report/tell (numbers via_api and up: while
    the study is small, as an ask at 100,000 trials recomputes the summary's Pareto front),
    then hpod is stopped, the remaining trials are inserted as the same rows (trials:
    state 2 = complete, value = the first objective, results = the JSON array of
    objectives then constraints; params: values form, a categorical's choice index), and
    hpod is started again (it loads them). Under ASan POST .../trials takes some 4 ms a
    trial, the insert about 0.1 ms. Answers the seconds it took. `daemon` is hpodtest's
    Daemon (its port changes)."""
    import sqlite3
    t0 = time.monotonic()
    create_mo(daemon.port, name)
    k = min(n, via_api)
    record_mo(daemon.port, name, 0, k)
    run_mo_with_reports(daemon.port, name, with_reports)
    if k < n:
        daemon.stop()
        con = sqlite3.connect(daemon.db)
        with con:
            sid = con.execute("SELECT id FROM studies WHERE name = ?", (name,)).fetchone()[0]
            base = con.execute("SELECT MAX(completed_at) FROM trials WHERE study_id = ?", (sid,)).fetchone()[0]
            trials = []
            params = []
            choices = PARAMS[4]["choices"]
            for i in range(k + with_reports, n + with_reports):
                p = params_for(i)
                v, c = results(p)
                at = base + 1 + (i - k) // 20
                trials.append((sid, i, 2, v["loss"], -1, 0, at, 0, at, 0,
                               json.dumps([v["loss"], v["cost"], c["memory"]])))
                for j, q in enumerate(PARAMS):
                    x = p[q["name"]]
                    params.append((sid, i, j, float(choices.index(x) if q["type"] == "categorical" else x)))
            con.executemany("INSERT INTO trials (study_id, number, state, value, retry_of, retries, created_at,"
                            " started_at, completed_at, heartbeat_at, results) VALUES (?,?,?,?,?,?,?,?,?,?,?)", trials)
            con.executemany("INSERT INTO params (study_id, number, idx, value) VALUES (?,?,?,?)", params)
        con.close()
        daemon.start()
    return time.monotonic() - t0


def fill(port, name, n, with_reports=300):
    t0 = time.monotonic()
    create(port, name)
    record(port, name, 0, n)
    run_with_reports(port, name, with_reports)
    return time.monotonic() - t0


if __name__ == "__main__":
    import sys
    print("%.1f s" % fill(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
