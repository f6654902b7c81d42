#!/usr/bin/python3
"""test_multiobjective.py: objectives and constraints over HTTP (docs/API.md
"Objectives and constraints").

Usage: test_multiobjective.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset)

- front_random: a 2-objective study with two constraints, 100 trials asked
  from `random` and told (every 7th without constraints: infeasible); every
  told trial is stored with its values and constraints; GET .../best,
  .../pareto and the summary's best_trials are exactly the non-dominated
  feasible set (brute force here), the hypervolume and reference point are
  the contract's (computed here); the CSV has one column per objective and
  per constraint; all of it again after a restart and after SIGKILL.
- front_nsga2: the same with `nsga2` (population 20: 5 generations).
- front_tpe: the same with `tpe` (multi-objective and constrained split).
- tpe_restart_identity: a 2-objective constrained tpe study gives the same
  params with the daemon restarted (twice) as without: TPE derives
  everything from the told trials and the study seed.
- one_objective_constraints_tpe: a one-objective tpe study with a
  constraint, 60 trials: best is the best feasible trial (brute force), and
  TPE's asks after its startup trials gather at the feasible boundary.
- front_gp: the same with `gp` (60 trials: it fits three GPs per ask).
- gp_objectives_limit: `gp` takes 1-3 objectives; 4 is invalid_argument
  on sampler.type and creates nothing.
- nsga2_restart_identity: an nsga2 study asked in batches of 4 told in
  reverse order gives the same params with the daemon restarted every 12
  trials as without restarts (generations use when each trial was told,
  kept in the sampler state).
- one_objective_constraints: a one-objective study with a constraint: best
  is the best feasible trial, not the best value; the CSV keeps `value`.
- front_after_every_tell: the summary's best_trials (kept up to date as
  trials complete) equals the brute-force front after every one of 60 tells
  chosen to hit every case: a point dominating several members, duplicates
  of members, dominated and infeasible points, values told out of number order.
- migration_from_1_0: a database written by hpod 1.0 (schema version 1,
  tests/data/migration/hpod-1.0.db, with the JSON the 1.0 daemon answered)
  opens and migrates in place: every study and trial reads back as 1.0
  showed it (plus `objectives`), and the migrated database takes new tells.

Prints TAP.
"""

import csv
import io
import math
import os
import shutil
import sqlite3
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import BACKEND, Daemon, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "data", "migration")

MO_STUDY = {
    "name": "mo",
    "params": [{"name": "x", "type": "float", "low": 0, "high": 1},
               {"name": "y", "type": "float", "low": 0, "high": 1}],
    "objectives": [{"name": "error", "direction": "minimize"},
                   {"name": "speed", "direction": "maximize"}],
    "constraints": [{"name": "memory_gb", "max": 1.5}, {"name": "recall", "min": 0.1}],
    "sampler": {"type": "random", "seed": 11},
}


def objectives(x, y):
    error = x + 0.25 * y * y
    speed = 1.0 - math.sqrt(x) + 0.5 * y
    return {"error": error, "speed": speed}


def constraints(x, y):
    return {"memory_gb": x + y, "recall": y}


def feasible(cons, declared):
    for c in declared:
        v = cons.get(c["name"])
        if v is None or v > c.get("max", math.inf) or v < c.get("min", -math.inf):
            return False
    return True


def brute_front(trials, objs):
    """Numbers of the feasible complete trials no other feasible one dominates."""
    sign = [1.0 if o["direction"] == "minimize" else -1.0 for o in objs]
    pts = [(t["number"], [s * t["values"][o["name"]] for s, o in zip(sign, objs)])
           for t in trials if t["state"] == "complete" and t["feasible"]]
    front = []
    for n, p in pts:
        dominated = any(all(a <= b for a, b in zip(q, p)) and q != p for _, q in pts)
        if not dominated:
            front.append(n)
    return sorted(front), pts


def hv2(points, ref):
    """Exact 2-D hypervolume of minimized points below ref."""
    pts = sorted(p for p in points if p[0] < ref[0] and p[1] < ref[1])
    hv, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return hv


def check_front(d, study, told):
    objs = study["objectives"]
    trials = d.get("/v1/studies/%s/trials?limit=1000" % study["name"]).expect(200)["trials"]
    check(len(trials) == len(told), "%d trials stored, %d told" % (len(trials), len(told)))
    for t in trials:
        want = told[t["number"]]
        check(t["state"] == "complete" and t["values"] == want["values"] and
              t["constraints"] == want["constraints"],
              "trial %d: %r, told %r" % (t["number"], t, want))
        check(t["feasible"] == feasible(want["constraints"], study["constraints"]),
              "trial %d feasible %r" % (t["number"], t["feasible"]))
        check("value" not in t, "trial %d of a 2-objective study has value" % t["number"])
    front, pts = brute_front(trials, objs)
    check(len(front) >= 2, "a front of %d trials is too small to test" % len(front))
    best = d.get("/v1/studies/%s/best" % study["name"]).expect(200)
    check([t["number"] for t in best["trials"]] == front,
          "best %r, brute force %r" % ([t["number"] for t in best["trials"]], front))
    pareto = d.get("/v1/studies/%s/pareto" % study["name"]).expect(200)
    check([t["number"] for t in pareto["trials"]] == front, "pareto %r" % pareto["trials"])
    check(pareto["trials"] == best["trials"], "pareto and best trials differ")
    ref = []
    for k in range(len(objs)):
        col = [p[k] for _, p in pts]
        ref.append(max(col) + 0.1 * (max(col) - min(col)))
    want_ref = {o["name"]: (r if o["direction"] == "minimize" else -r) for o, r in zip(objs, ref)}
    got_ref = pareto["reference_point"]
    check(set(got_ref) == set(want_ref) and
          all(abs(got_ref[k] - want_ref[k]) <= 1e-12 * max(1.0, abs(want_ref[k])) for k in want_ref),
          "reference point %r, want %r" % (got_ref, want_ref))
    hv = hv2([p for n, p in pts if n in front], ref)
    check(hv > 0 and abs(pareto["hypervolume"] - hv) <= 1e-9 * hv,
          "hypervolume %r, want %r" % (pareto["hypervolume"], hv))
    summary = d.get("/v1/studies/%s" % study["name"]).expect(200)
    check([t["number"] for t in summary["best_trials"]] == front and "best_trial" not in summary,
          "summary best_trials %r" % summary.get("best_trials"))
    r = d.get("/v1/studies/%s/trials?format=csv" % study["name"])
    rows = list(csv.reader(io.StringIO(r.body.decode("utf-8"))))
    check(rows[0][:6] == ["number", "state", "error", "speed", "memory_gb", "recall"],
          "CSV header %r" % rows[0])
    for row in rows[1:]:
        want = told[int(row[0])]
        got = [float(v) if v else None for v in row[2:6]]
        exp = [want["values"]["error"], want["values"]["speed"],
               want["constraints"].get("memory_gb"), want["constraints"].get("recall")]
        check(got == exp, "CSV row %r, want %r" % (row, exp))
    return front


def run_front(exe, sampler, n_trials=100):
    with Daemon(exe) as d:
        study = d.post("/v1/studies", dict(MO_STUDY, sampler=sampler)).expect(201)
        told = {}
        for i in range(n_trials):
            t = d.post("/v1/studies/mo/ask", {}).expect(201)
            x, y = t["params"]["x"], t["params"]["y"]
            body = {"values": objectives(x, y)}
            if i % 7 != 3:
                body["constraints"] = constraints(x, y)
            got = d.post("/v1/studies/mo/trials/%d/tell" % t["number"], body).expect(200)
            check(got["values"] == body["values"], "tell %d answered %r" % (i, got))
            told[t["number"]] = {"values": body["values"],
                                 "constraints": body.get("constraints", {})}
            if i == 50:
                # A retried tell with the same result is 200; another is a conflict.
                d.post("/v1/studies/mo/trials/%d/tell" % t["number"], body).expect(200)
                other = {"values": dict(body["values"], error=body["values"]["error"] + 1)}
                other["constraints"] = body.get("constraints", {})
                d.post("/v1/studies/mo/trials/%d/tell" % t["number"], other).expect_error(
                    409, "conflict")
        front = check_front(d, study, told)
        d.stop()
        d.start()
        check(check_front(d, study, told) == front, "front changed over a restart")
        d.kill()
        d.start()
        check(check_front(d, study, told) == front, "front changed over SIGKILL")


@tap.test
def front_random(exe):
    run_front(exe, {"type": "random", "seed": 11})


@tap.test
def front_nsga2(exe):
    run_front(exe, {"type": "nsga2", "seed": 11, "population_size": 20})


@tap.test
def front_tpe(exe):
    run_front(exe, {"type": "tpe", "seed": 11})


@tap.test
def front_after_every_tell(exe):
    import random
    rng = random.Random(5)
    with Daemon(exe) as d:
        study = d.post("/v1/studies", dict(MO_STUDY, name="fe")).expect(201)
        asked = [d.post("/v1/studies/fe/ask", {}).expect(201)["number"] for _ in range(60)]
        told, trials = {}, []
        pool = []
        order = asked[:]
        rng.shuffle(order)
        for i, n in enumerate(order):
            if pool and i % 5 == 0:
                vals = dict(rng.choice(pool))  # a duplicate of an earlier result
            else:
                vals = {"error": round(rng.uniform(0, 1), 2), "speed": round(rng.uniform(0, 1), 2)}
            pool.append(vals)
            cons = {"memory_gb": 1.0 if i % 4 else 2.0, "recall": 0.5}  # every 4th infeasible
            body = {"values": vals, "constraints": cons}
            d.post("/v1/studies/fe/trials/%d/tell" % n, body).expect(200)
            told[n] = body
            trials.append({"number": n, "state": "complete", "values": vals, "constraints": cons,
                           "feasible": feasible(cons, study["constraints"])})
            front, _ = brute_front(sorted(trials, key=lambda t: t["number"]), study["objectives"])
            summary = d.get("/v1/studies/fe").expect(200)
            got = [t["number"] for t in summary["best_trials"]]
            check(got == front, "after %d tells: best_trials %r, brute force %r" % (i + 1, got, front))
            if got != front:
                break


def tpe_run(d, name, n, restart_at=()):
    """Ask and tell n trials of a 2-objective constrained tpe study one by one; the params."""
    d.post("/v1/studies", dict(MO_STUDY, name=name, sampler={"type": "tpe", "seed": 9})).expect(201)
    params = []
    for i in range(n):
        if i in restart_at:
            d.stop()
            d.start()
        t = d.post("/v1/studies/%s/ask" % name, {}).expect(201)
        x, y = t["params"]["x"], t["params"]["y"]
        tell = {"values": objectives(x, y)}
        if i % 7 != 3:
            tell["constraints"] = constraints(x, y)
        d.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]), tell).expect(200)
        params.append((t["number"], t["params"]))
    return params


@tap.test
def tpe_restart_identity(exe):
    with Daemon(exe) as a, Daemon(exe) as b:
        straight = tpe_run(a, "t", 40)
        restarted = tpe_run(b, "t", 40, restart_at=(15, 31))
        check(straight == restarted, "params differ after restarts: %r vs %r"
              % ([p for p in straight if p not in restarted][:2],
                 [p for p in restarted if p not in straight][:2]))
        check(len({(p["x"], p["y"]) for _, p in straight}) == 40, "repeated params")


@tap.test
def one_objective_constraints_tpe(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "c", "direction": "minimize",
                               "params": [{"name": "x", "type": "float", "low": 0, "high": 1}],
                               "constraints": [{"name": "size", "min": 0.5}],
                               "sampler": {"type": "tpe", "seed": 3}}).expect(201)
        told = []
        for i in range(60):
            t = d.post("/v1/studies/c/ask", {}).expect(201)
            x = t["params"]["x"]
            body = {"value": (x - 0.2) ** 2}
            if i % 9 != 4:
                body["constraints"] = {"size": x}
            d.post("/v1/studies/c/trials/%d/tell" % t["number"], body).expect(200)
            told.append((t["number"], body["value"], i % 9 != 4 and x >= 0.5, x))
        want = min((v, n) for n, v, ok, x in told if ok)[1]
        best = d.get("/v1/studies/c/best").expect(200)
        check(best["number"] == want and best["feasible"] is True,
              "best %r, want trial %d" % (best, want))
        check(min(told, key=lambda r: r[1])[0] != want, "the best value is feasible: no test")
        # The best feasible region is x just above 0.5: TPE's asks gather at that boundary
        # (random draws would put 30% of them in [0.35, 0.65]), not at the infeasible 0.2.
        near = sum(0.35 <= x <= 0.65 for n, v, ok, x in told[10:])
        check(near >= 0.6 * 50, "only %d of 50 asks after startup near 0.5" % near)


@tap.test
def front_gp(exe):
    # 60 trials, not 100: four GPs (two objectives, two constraints) are
    # fitted at every ask, which is slow under ASan.
    run_front(exe, {"type": "gp", "seed": 11}, n_trials=60)


@tap.test
def gp_objectives_limit(exe):
    with Daemon(exe) as d:
        objs = [{"name": "o%d" % k} for k in range(4)]
        body = {"name": "gp4", "params": MO_STUDY["params"], "objectives": objs,
                "sampler": {"type": "gp"}}
        d.post("/v1/studies", body).expect_error(400, "invalid_argument", "sampler.type")
        check(d.get("/v1/studies/gp4").status == 404, "a refused study was created")
        body = dict(body, objectives=objs[:3], name="gp3")
        d.post("/v1/studies", body).expect(201)


def nsga2_run(d, name, n, restart_every=0):
    """Ask n trials of an nsga2 study in batches of 4 told in reverse order; the params."""
    body = dict(MO_STUDY, name=name, sampler={"type": "nsga2", "seed": 5, "population_size": 8})
    d.post("/v1/studies", body).expect(201)
    params = []
    for b in range(n // 4):
        batch = [d.post("/v1/studies/%s/ask" % name, {}).expect(201) for _ in range(4)]
        for t in reversed(batch):
            x, y = t["params"]["x"], t["params"]["y"]
            tell = {"values": objectives(x, y), "constraints": constraints(x, y)}
            d.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]), tell).expect(200)
        params += [(t["number"], t["params"]) for t in batch]
        if restart_every and (b + 1) % restart_every == 0:
            d.stop()
            d.start()
    return params


@tap.test
def nsga2_restart_identity(exe):
    with Daemon(exe) as a, Daemon(exe) as b:
        straight = nsga2_run(a, "n", 64)
        restarted = nsga2_run(b, "n", 64, restart_every=3)
        check(straight == restarted, "params differ after restarts: %r vs %r"
              % ([p for p in straight if p not in restarted][:2],
                 [p for p in restarted if p not in straight][:2]))
        # Generation 0 is random; later children inherit coordinates from parents (crossover
        # and copies keep a parent's exact value), which random draws never repeat.
        seen, inherited = set(), 0
        for number, p in straight:
            if number >= 8:
                inherited += p["x"] in seen or p["y"] in seen
            seen.update((p["x"], p["y"]))
        check(inherited >= 28, "only %d of 56 children inherit a parent's coordinate" % inherited)


@tap.test
def one_objective_constraints(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "c", "direction": "maximize",
                               "params": [{"name": "x", "type": "float", "low": 0, "high": 1}],
                               "constraints": [{"name": "mem", "max": 4}],
                               "sampler": {"type": "random", "seed": 1}}).expect(201)
        for i, (v, mem) in enumerate([(1.0, 3), (5.0, 9), (2.0, 4), (9.0, None)]):
            d.post("/v1/studies/c/ask", {}).expect(201)
            body = {"value": v}
            if mem is not None:
                body["constraints"] = {"mem": mem}
            t = d.post("/v1/studies/c/trials/%d/tell" % i, body).expect(200)
            check(t["value"] == v and t["values"] == {"value": v} and
                  t["feasible"] == (mem is not None and mem <= 4), "trial %r" % t)
        best = d.get("/v1/studies/c/best").expect(200)
        check(best["number"] == 2 and best["value"] == 2.0, "best %r" % best)
        summary = d.get("/v1/studies/c").expect(200)
        check(summary["best_trial"]["number"] == 2, "best_trial %r" % summary["best_trial"])
        pareto = d.get("/v1/studies/c/pareto").expect(200)
        check([t["number"] for t in pareto["trials"]] == [2], "pareto %r" % pareto)
        # Feasible values 1 and 2, maximized: losses -1, -2; the reference loss is
        # -1 + 0.1 * 1 (value 0.9), the hypervolume -0.9 - (-2) = 1.1.
        check(abs(pareto["reference_point"]["value"] - 0.9) < 1e-12 and
              abs(pareto["hypervolume"] - 1.1) < 1e-12, "pareto %r" % pareto)
        rows = list(csv.reader(io.StringIO(
            d.get("/v1/studies/c/trials?format=csv").body.decode("utf-8"))))
        check(rows[0][:4] == ["number", "state", "value", "mem"], "CSV header %r" % rows[0])
        check([r[3] for r in rows[1:]] == ["3", "9", "4", ""], "CSV mem %r" % rows)
        d.stop()
        d.start()
        check(d.get("/v1/studies/c/best").expect(200)["number"] == 2, "best after restart")


@tap.test
def migration_from_1_0(exe):
    if BACKEND == "pg":
        return
    with Daemon(exe) as d:
        d.stop()
        os.remove(d.db) if os.path.exists(d.db) else None
        shutil.copyfile(os.path.join(FIXTURES, "hpod-1.0.db"), d.db)
        d.start()
        import json
        with open(os.path.join(FIXTURES, "hpod-1.0.json")) as f:
            old = json.load(f)
        for name, want in old.items():
            got = d.get("/v1/studies/%s" % name).expect(200)
            exp = dict(want["study"])
            exp["objectives"] = [{"name": "value", "direction": exp["direction"]}]
            check(got == exp, "study %s: %r, 1.0 showed %r" % (name, got, exp))
            trials = d.get("/v1/studies/%s/trials" % name).expect(200)
            check(trials == want["trials"], "trials of %s: %r, 1.0 showed %r"
                  % (name, trials, want["trials"]))
        # The migrated database takes writes and keeps them.
        d.post("/v1/studies/min/trials/5/tell", {"value": 0.25}).expect(200)
        d.stop()
        con = sqlite3.connect(d.db)
        version = con.execute("PRAGMA user_version").fetchone()[0]
        con.close()
        check(version == 3, "user_version %r after the migration" % version)
        d.start()
        t = d.get("/v1/studies/min/trials/5").expect(200)
        check(t["state"] == "complete" and t["value"] == 0.25, "trial 5 %r" % t)


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
