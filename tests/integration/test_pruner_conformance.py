#!/usr/bin/python3
"""test_pruner_conformance.py: hpod's pruners against Optuna 3.1's, report by report.

Usage: test_pruner_conformance.py --replay PATH/TO/pruner-replay [--hpod PATH/TO/hpod]
       (HPOD_TEST_ONLY=name,name runs a subset; prints TAP)

Random learning curves from a fixed seed (a few hundred trials, several at a
time, with finishing, pruned, failed and abandoned trials interleaved, some
trials reporting on after a prune, some skipping steps or repeating one) are
replayed through hpod and, in process, through Optuna's MedianPruner,
PercentilePruner, SuccessiveHalvingPruner and HyperbandPruner, for several
option settings. hpod's answers drive the simulation; every report's decision
must be the same on both sides.

hpod runs over HTTP against the real daemon when --hpod is given, and always
through tests/pruner-replay (the pruner library over an in-memory history),
once with its observe hook and once without (decide() must stay right alone).

Where Optuna 3.1 and docs/ALGORITHMS.md differ, hpod follows docs/ALGORITHMS.md and the
difference is shown, in test_differences and in the "auto" runs:
- successive halving derives a trial's rung values from its stored reports
  (6.2), so reports made before min_resource "auto" (asha) or max_resource
  "auto" (hyperband) got fixed count as rung values; Optuna records rung
  values only in prune() calls made after the fix. The "auto" runs therefore
  compare with Optuna given the resource that hpod fixed (the same decisions
  at every report), and count the reports where Optuna "auto" differs.
- a repeated report of a step is decided again on the current rungs (the
  same history gives the same answer); Optuna answers "continue" once the
  step's rung was recorded.
- "compare": "running_average" (Vizier's rule) has no Optuna counterpart; it
  is checked against the Python model of docs/ALGORITHMS.md §6.1 below.
"""

import argparse
import json
import logging
import math
import os
import random
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, fail  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)
logging.getLogger("optuna").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")

tap = Tap()
ARGS = None
SPACE = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]


# -- the two sides --------------------------------------------------------------


class ReplaySide:
    """hpod's pruner library through tests/pruner-replay (one process per study)."""

    def __init__(self, exe, name, direction, pruner, observe=True):
        self.label = "replay" + ("" if observe else "-no-observe")
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        r = self._call({"op": "create", "name": name, "direction": direction,
                        "pruner": pruner, "observe": observe})
        self.created = r

    def _call(self, ev):
        self.proc.stdin.write(json.dumps(ev) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        check(line != "", "pruner-replay died on %r" % ev)
        return json.loads(line)

    def ask(self):
        return self._call({"op": "ask"})["number"]

    def report(self, number, step, value):
        r = self._call({"op": "report", "number": number, "step": step, "value": value})
        check("prune" in r, "report failed: %r" % r)
        return r["prune"]

    def tell(self, number, state, value=None):
        ev = {"op": "tell", "number": number, "state": state}
        if value is not None:
            ev["value"] = value
        r = self._call(ev)
        check(r.get("ok"), "tell failed: %r" % r)

    def close(self):
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=30)
        check(rc == 0, "pruner-replay exited with %d" % rc)


class HttpSide:
    """hpod over HTTP: one study on a running daemon."""

    label = "http"

    def __init__(self, daemon, name, direction, pruner):
        self.d = daemon
        self.base = "/v1/studies/" + name
        body = {"name": name, "direction": direction, "params": SPACE,
                "sampler": {"type": "random", "seed": 1}, "pruner": pruner}
        self.created = self.d.post("/v1/studies", body).expect(201, "create " + name)

    def ask(self):
        return self.d.post(self.base + "/ask").expect(201, "ask")["number"]

    def report(self, number, step, value):
        r = self.d.post("%s/trials/%d/report" % (self.base, number),
                        {"step": step, "value": value}).expect(200, "report")
        return r["prune"]

    def tell(self, number, state, value=None):
        body = {"value": value} if state == "complete" else {"state": state}
        self.d.post("%s/trials/%d/tell" % (self.base, number), body).expect(200, "tell")

    def close(self):
        pass


def optuna_pruner(spec):
    t = spec["type"]
    o = {k: v for k, v in spec.items() if k != "type"}
    if t == "median":
        return optuna.pruners.MedianPruner(**o)
    if t == "percentile":
        return optuna.pruners.PercentilePruner(**o)
    if t == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(**o)
    if t == "hyperband":
        return optuna.pruners.HyperbandPruner(**o)
    raise ValueError(t)


class OptunaSide:
    """Optuna 3.1 in process, through ask / report / should_prune / tell."""

    def __init__(self, name, direction, spec):
        self.label = "optuna"
        self.study = optuna.create_study(study_name=name, direction=direction,
                                         pruner=optuna_pruner(spec))
        self.trials = {}

    def ask(self):
        t = self.study.ask()
        self.trials[t.number] = t
        return t.number

    def report(self, number, step, value):
        t = self.trials[number]
        t.report(value, step)
        return t.should_prune()

    def tell(self, number, state, value=None):
        st = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED,
              "failed": TrialState.FAIL}[state]
        self.study.tell(self.trials[number], value if state == "complete" else None, state=st)

    def close(self):
        pass


class RunningAverageModel:
    """docs/ALGORITHMS.md §6.1 with compare "running_average" (Vizier's median rule)."""

    def __init__(self, name, direction, spec):
        self.label = "model"
        self.max = direction == "maximize"
        self.p = spec.get("percentile", 50.0)
        self.startup = spec.get("n_startup_trials", 5)
        self.warmup = spec.get("n_warmup_steps", 0)
        self.interval = spec.get("interval_steps", 1)
        self.n_min = spec.get("n_min_trials", 1)
        self.reports = []
        self.state = []

    def ask(self):
        self.reports.append({})
        self.state.append("running")
        return len(self.reports) - 1

    def tell(self, number, state, value=None):
        self.state[number] = state

    def report(self, number, step, value):
        rep = self.reports[number]
        rep.setdefault(step, value)
        done = [i for i, s in enumerate(self.state) if s == "complete"]
        if not done or len(done) < self.startup:
            return False
        s = max(rep)
        if s < self.warmup:
            return False
        lower = (s - self.warmup) // self.interval * self.interval + self.warmup
        if any(lower <= k < s for k in rep):
            return False
        vals = list(rep.values())
        best = max(vals) if self.max else min(vals)
        avgs = []
        for i in done:
            upto = [v for k, v in sorted(self.reports[i].items()) if k <= s]
            if upto:
                tot = 0.0
                for v in upto:
                    tot += v
                avgs.append(tot / len(upto))
        if len(avgs) < self.n_min or not avgs:
            return False
        q = float(np.percentile(np.array(avgs), 100.0 - self.p if self.max else self.p))
        return best < q if self.max else best > q


# -- the simulation -------------------------------------------------------------


class Curves:
    """Learning curves: loss = final + (start - final) * exp(-rate * step) + noise."""

    def __init__(self, seed, direction, decimals):
        self.rng = random.Random(seed)
        self.max = direction == "maximize"
        self.decimals = decimals

    def new(self):
        r = self.rng
        return {"final": r.uniform(0.05, 0.6), "start": r.uniform(0.8, 1.2),
                "rate": r.uniform(0.02, 0.4), "noise": r.uniform(0.0, 0.03)}

    def value(self, c, step):
        v = c["final"] + (c["start"] - c["final"]) * math.exp(-c["rate"] * step)
        v += self.rng.gauss(0.0, c["noise"])
        if self.decimals is not None:
            v = round(v, self.decimals)  # ties between trials are part of the test
        return 1.0 - v if self.max else v


def simulate(sides, seed, direction, n_trials=300, max_steps=40, concurrency=5,
             skip=False, repeats=False, on_event=None):
    """Run the simulation; sides[0] drives. Returns the list of per-report decisions.

    Each entry is (trial, step, [decision of each side]).
    """
    rng = random.Random(seed * 7919 + 1)
    curves = Curves(seed, direction, decimals=3 if seed % 2 == 0 else None)
    active = []
    started = 0
    log = []
    while started < n_trials or active:
        while len(active) < concurrency and started < n_trials:
            nums = [s.ask() for s in sides]
            check(len(set(nums)) == 1, "trial numbers differ: %r" % nums)
            length = max_steps if rng.random() < 0.8 else rng.randint(3, max_steps)
            active.append({"n": nums[0], "c": curves.new(), "step": -1, "len": length,
                           "last": None, "pruned": False, "extra": 0, "steps": []})
            started += 1
        tr = rng.choice(active)
        u = rng.random()
        if u < 0.004:  # abandoned: never told, stays running
            active.remove(tr)
            continue
        if u < 0.008:
            for s in sides:
                s.tell(tr["n"], "failed")
            active.remove(tr)
            continue
        if repeats and tr["steps"] and rng.random() < 0.04:
            step = rng.choice(tr["steps"])
        else:
            step = tr["step"] + (rng.randint(1, 3) if skip and rng.random() < 0.3 else 1)
        if step > tr["len"]:
            for s in sides:
                s.tell(tr["n"], "complete", tr["last"] if tr["last"] is not None else 0.5)
            active.remove(tr)
            continue
        value = curves.value(tr["c"], step)
        if step > tr["step"]:
            tr["step"] = step
            tr["last"] = value
            tr["steps"].append(step)
        decisions = [s.report(tr["n"], step, value) for s in sides]
        log.append((tr["n"], step, decisions))
        if on_event is not None:
            on_event(tr["n"], step, decisions)
        if tr["pruned"]:
            tr["extra"] -= 1
            if tr["extra"] <= 0:
                for s in sides:
                    s.tell(tr["n"], "pruned")
                active.remove(tr)
        elif decisions[0]:
            if rng.random() < 0.15:  # keeps reporting for a while after the prune
                tr["pruned"] = True
                tr["extra"] = rng.randint(1, 6)
            else:
                for s in sides:
                    s.tell(tr["n"], "pruned")
                active.remove(tr)
    return log


def hpod_sides(name, direction, spec, daemon):
    sides = []
    if daemon is not None:
        sides.append(HttpSide(daemon, name, direction, spec))
    sides.append(ReplaySide(ARGS.replay, name, direction, spec, observe=True))
    sides.append(ReplaySide(ARGS.replay, name, direction, spec, observe=False))
    return sides


def compare(log, n_hpod, what, expect_equal_to=None):
    """Every hpod side agrees with each other and with the reference column."""
    n = 0
    pruned = 0
    for trial, step, ds in log:
        for i in range(1, n_hpod):
            if ds[i] != ds[0]:
                fail("%s: trial %d step %d: hpod sides differ: %r" % (what, trial, step, ds))
        if expect_equal_to is not None:
            ref = ds[expect_equal_to]
            if ref is not None and ds[0] != ref:
                fail("%s: trial %d step %d: hpod says %s, reference says %s"
                     % (what, trial, step, ds[0], ref))
        n += 1
        pruned += ds[0]
    return n, pruned


CONFIGS = [
    ("median-default", "minimize", {"type": "median"}, {}),
    ("median-warmup-interval", "maximize",
     {"type": "median", "n_startup_trials": 10, "n_warmup_steps": 5, "interval_steps": 3,
      "n_min_trials": 3}, {"skip": True, "repeats": True}),
    ("percentile-25", "minimize",
     {"type": "percentile", "percentile": 25.0, "n_startup_trials": 3, "n_warmup_steps": 2,
      "interval_steps": 2}, {"skip": True, "repeats": True}),
    ("percentile-75-max", "maximize",
     {"type": "percentile", "percentile": 75.0, "n_min_trials": 5}, {}),
    ("percentile-90", "minimize",
     {"type": "percentile", "percentile": 90.0, "n_startup_trials": 0}, {"repeats": True}),
    ("asha-explicit", "minimize",
     {"type": "asha", "min_resource": 1, "reduction_factor": 4}, {"max_steps": 80}),
    ("asha-eta3-rate1-max", "maximize",
     {"type": "asha", "min_resource": 2, "reduction_factor": 3, "min_early_stopping_rate": 1},
     {}),
    ("asha-bootstrap", "minimize",
     {"type": "asha", "min_resource": 1, "reduction_factor": 2, "bootstrap_count": 2}, {}),
    ("hyperband-explicit", "minimize",
     {"type": "hyperband", "min_resource": 1, "max_resource": 81, "reduction_factor": 3},
     {"max_steps": 81}),
    ("hyperband-eta2-max", "maximize",
     {"type": "hyperband", "min_resource": 2, "max_resource": 30, "reduction_factor": 2,
      "bootstrap_count": 1}, {}),
]


def daemon_or_none():
    if ARGS.hpod is None:
        return None
    return Daemon(ARGS.hpod)


def run_config(name, direction, spec, kw, seed):
    d = daemon_or_none()
    if d is not None:
        d.start()
    try:
        study = "conf-%s-%d" % (name, seed)
        sides = hpod_sides(study, direction, spec, d)
        ref = OptunaSide(study, direction, spec)
        log = simulate(sides + [ref], seed, direction, **kw)
        n, pruned = compare(log, len(sides), name, expect_equal_to=len(sides))
        for s in sides:
            s.close()
    finally:
        if d is not None:
            d.close()
    check(pruned > 0, "%s: nothing was pruned; the replay tests nothing" % name)
    print("# %-24s %5d reports, %4d pruned, identical to Optuna (%s)"
          % (name, n, pruned, ", ".join(s.label for s in sides)), flush=True)


def make_config_test(name, direction, spec, kw, seed):
    def t():
        run_config(name, direction, spec, kw, seed)
    t.__name__ = "test_" + name.replace("-", "_")
    return t


for i, (nm, dr, sp, kw) in enumerate(CONFIGS):
    tap.test(make_config_test(nm, dr, sp, kw, 1000 + i))


@tap.test
def test_running_average():
    for seed, direction, spec in [
            (31, "minimize", {"type": "median", "compare": "running_average"}),
            (32, "maximize", {"type": "percentile", "percentile": 30.0,
                              "compare": "running_average", "n_warmup_steps": 3,
                              "interval_steps": 2, "n_min_trials": 4})]:
        d = daemon_or_none()
        if d is not None:
            d.start()
        try:
            study = "conf-ra-%d" % seed
            sides = hpod_sides(study, direction, spec, d)
            ref = RunningAverageModel(study, direction, spec)
            log = simulate(sides + [ref], seed, direction, skip=True, repeats=True)
            n, pruned = compare(log, len(sides), "running_average", expect_equal_to=len(sides))
            for s in sides:
                s.close()
        finally:
            if d is not None:
                d.close()
        check(pruned > 0, "running_average: nothing pruned")
        print("# running_average %-9s %5d reports, %4d pruned, identical to the 6.1 model"
              % (direction, n, pruned), flush=True)


@tap.test
def test_restart():
    """Decisions stay Optuna's across daemon restarts (state rebuilt from the database)."""
    if ARGS.hpod is None:
        print("# no hpod binary: restart check runs only over HTTP", flush=True)
        return
    for seed, (name, direction, spec, kw) in [(51, CONFIGS[1]), (52, CONFIGS[5]),
                                              (53, CONFIGS[8])]:
        d = Daemon(ARGS.hpod)
        d.start()
        try:
            study = "restart-%s" % name
            http = HttpSide(d, study, direction, spec)
            ref = OptunaSide(study, direction, spec)
            seen = [0]
            restarts = [0]

            def on_event(trial, step, decisions):
                seen[0] += 1
                if seen[0] % 700 == 0:
                    d.restart()
                    restarts[0] += 1
            log = simulate([http, ref], seed, direction, on_event=on_event, **kw)
            n, pruned = compare(log, 1, "restart-" + name, expect_equal_to=1)
        finally:
            d.close()
        check(restarts[0] >= 1 and pruned > 0, "restart-%s: nothing tested" % name)
        print("# restart %-22s %5d reports, %4d pruned, %d restarts, identical to Optuna"
              % (name, n, pruned, restarts[0]), flush=True)


class LateOptuna:
    """An Optuna side created once the auto resource is known, replaying the past."""

    def __init__(self, name, direction, spec_fn):
        self.name = name
        self.direction = direction
        self.spec_fn = spec_fn
        self.events = []
        self.side = None
        self.n = 0
        self.label = "optuna-fixed"

    def start(self, resource):
        # The same study name as the others: Hyperband's brackets hash it.
        self.side = OptunaSide(self.name, self.direction, self.spec_fn(resource))
        for ev in self.events:
            getattr(self.side, ev[0])(*ev[1:])
        self.events = None

    def ask(self):
        if self.side is None:
            self.events.append(("ask",))
            self.n += 1
            return self.n - 1
        return self.side.ask()

    def report(self, number, step, value):
        if self.side is None:
            self.events.append(("report", number, step, value))
            return None
        return self.side.report(number, step, value)

    def tell(self, number, state, value=None):
        if self.side is None:
            self.events.append(("tell", number, state, value))
            return
        self.side.tell(number, state, value)


class AutoWatch:
    """Finds the step where hpod fixes the auto resource: the first report after a
    complete trial with reports exists (the Optuna rule), and starts LateOptuna."""

    def __init__(self, late, kind):
        self.late = late
        self.kind = kind
        self.last_step = {}
        self.complete = set()
        self.fixed_at = None
        self.n = 0

    def ask(self):
        self.n += 1
        return self.n - 1

    def report(self, number, step, value):
        self.last_step[number] = max(step, self.last_step.get(number, -1))
        if self.fixed_at is None:
            done = [self.last_step[n] for n in self.complete if n in self.last_step]
            if done:
                m = max(done)
                res = max(m // 100, 1) if self.kind == "asha" else m + 1
                self.fixed_at = (number, step, res)
                self.late.start(res)
        return None

    def tell(self, number, state, value=None):
        if state == "complete":
            self.complete.add(number)


@tap.test
def test_auto_resources():
    for seed, kind, direction, spec, spec_fn in [
            (41, "asha", "minimize", {"type": "asha"},
             lambda m: {"type": "asha", "min_resource": m}),
            (45, "asha", "minimize", {"type": "asha", "reduction_factor": 2},
             lambda m: {"type": "asha", "min_resource": m, "reduction_factor": 2}),
            (42, "asha", "maximize", {"type": "asha", "reduction_factor": 3},
             lambda m: {"type": "asha", "min_resource": m, "reduction_factor": 3}),
            (43, "hyperband", "minimize", {"type": "hyperband"},
             lambda m: {"type": "hyperband", "max_resource": m}),
            (44, "hyperband", "maximize", {"type": "hyperband", "min_resource": 2,
                                           "reduction_factor": 2},
             lambda m: {"type": "hyperband", "min_resource": 2, "max_resource": m,
                        "reduction_factor": 2})]:
        d = daemon_or_none()
        if d is not None:
            d.start()
        try:
            study = "conf-auto-%s-%d" % (kind, seed)
            sides = hpod_sides(study, direction, spec, d)
            auto = OptunaSide(study, direction, spec)
            late = LateOptuna(study, direction, spec_fn)
            watch = AutoWatch(late, kind)
            nh = len(sides)
            # The watch must see a report before the late side, so it goes first.
            max_steps = {41: 150, 42: 150, 45: 260}.get(seed, 40)
            log = simulate(sides + [watch, late, auto], seed, direction,
                           max_steps=max_steps, n_trials=200)
            check(watch.fixed_at is not None, "auto resource never fixed")
            fixed = log.index(next(e for e in log if (e[0], e[1]) == watch.fixed_at[:2]))
            for trial, step, ds in log[:fixed]:
                check(not ds[0], "hpod pruned trial %d at step %d before the auto resource "
                      "was fixed" % (trial, step))
            n, pruned = compare(log[fixed:], nh, "auto-" + kind, expect_equal_to=nh + 1)
            compare(log, nh, "auto-" + kind)
            differ = sum(1 for e in log if e[2][0] != e[2][nh + 2])
            for s in sides:
                s.close()
        finally:
            if d is not None:
                d.close()
        check(pruned > 0, "auto: nothing pruned")
        print("# %-9s auto %-8s fixed %s=%d at report %d: %5d reports after, %4d pruned, "
              "identical to Optuna with that resource; Optuna \"auto\" differs at %d reports"
              % (kind, direction, "min_resource" if kind == "asha" else "max_resource",
                 watch.fixed_at[2], fixed, n, pruned, differ), flush=True)


def script(sides, events):
    """Run fixed events on several sides; returns each report's decisions."""
    out = []
    for ev in events:
        op = ev[0]
        if op == "ask":
            nums = [s.ask() for s in sides]
            check(len(set(nums)) == 1, "numbers differ")
        elif op == "report":
            out.append([s.report(*ev[1:]) for s in sides])
        else:
            for s in sides:
                s.tell(*ev[1:])
    return out


@tap.test
def test_differences():
    """Where docs/ALGORITHMS.md and Optuna 3.1 differ, hpod follows docs/ALGORITHMS.md."""
    d = daemon_or_none()
    if d is not None:
        d.start()
    try:
        # 1. min_resource "auto": trials 0 and 1 report steps 0..8 while nothing is
        # complete; trial 2 completes at step 100, fixing min_resource = 1 (rungs
        # 1, 4, 16, 64). Trial 3 reports a bad value at step 1. hpod's rung 0 holds
        # the step-1 values of trials 0, 1, 2 and 3 (derived from their reports),
        # so 3 is not in the top quarter: prune. Optuna recorded no rung value
        # before the fix, so trial 3 competes only with itself: continue.
        ev = [("ask",), ("ask",), ("ask",)]
        for s in range(9):
            ev += [("report", 0, s, 0.5 - 0.01 * s), ("report", 1, s, 0.6 - 0.01 * s)]
        for s in range(101):
            ev.append(("report", 2, s, 0.4 - 0.001 * s))
        ev += [("tell", 2, "complete", 0.3), ("ask",), ("report", 3, 0, 0.9),
               ("report", 3, 1, 0.9)]
        spec = {"type": "asha"}
        sides = hpod_sides("diff-auto", "minimize", spec, d) + \
            [OptunaSide("diff-auto", "minimize", spec)]
        last = script(sides, ev)[-1]
        check(last[:-1] == [True] * (len(sides) - 1) and last[-1] is False,
              "auto: expected hpod prune / Optuna continue, got %r" % last)
        print("# auto min_resource, reports before the fix: hpod prunes (rung values "
              "derived from reports), Optuna continues", flush=True)

        # 2. A repeated report of a rung step after a prune: trial 0 reaches step 4
        # (rung 1) with good values and completes; trial 1 reports a worse value at
        # steps 0..4 and is pruned at rung 0 (step 1); it then repeats step 1. hpod
        # decides the same history again: prune. Optuna counts rung 0 as done and
        # answers continue.
        ev = [("ask",), ("ask",)]
        for s in range(5):
            ev.append(("report", 0, s, 0.5))
        ev += [("tell", 0, "complete", 0.5), ("report", 1, 0, 0.7), ("report", 1, 1, 0.7),
               ("report", 1, 1, 0.7)]
        spec = {"type": "asha", "min_resource": 1}
        sides = hpod_sides("diff-repeat", "minimize", spec, d) + \
            [OptunaSide("diff-repeat", "minimize", spec)]
        res = script(sides, ev)
        check(res[-2] == [True] * len(sides), "repeat: first decision %r" % res[-2])
        check(res[-1][:-1] == [True] * (len(sides) - 1) and res[-1][-1] is False,
              "repeat: expected hpod prune / Optuna continue, got %r" % res[-1])
        print("# repeated report after a rung prune: hpod prunes again, Optuna continues",
              flush=True)
        for s in sides[:-1]:
            s.close()
    finally:
        if d is not None:
            d.close()


@tap.test
def test_option_errors():
    """Invalid options are rejected at creation with the field named."""
    d = daemon_or_none()
    if d is not None:
        d.start()
    cases = [
        ({"type": "median", "n_startup_trials": -1}, "pruner.n_startup_trials"),
        ({"type": "median", "interval_steps": 0}, "pruner.interval_steps"),
        ({"type": "median", "n_min_trials": 0}, "pruner.n_min_trials"),
        ({"type": "median", "compare": "mean"}, "pruner.compare"),
        ({"type": "median", "percentile": 50}, "pruner.percentile"),
        ({"type": "percentile"}, "pruner.percentile"),
        ({"type": "percentile", "percentile": 100.5}, "pruner.percentile"),
        ({"type": "asha", "min_resource": "big"}, "pruner.min_resource"),
        ({"type": "asha", "min_resource": 0}, "pruner.min_resource"),
        ({"type": "asha", "reduction_factor": 1}, "pruner.reduction_factor"),
        ({"type": "asha", "bootstrap_count": 1}, "pruner.bootstrap_count"),
        ({"type": "asha", "min_early_stopping_rate": -1}, "pruner.min_early_stopping_rate"),
        ({"type": "hyperband", "max_resource": "x"}, "pruner.max_resource"),
        ({"type": "hyperband", "min_resource": 5, "max_resource": 4}, "pruner.max_resource"),
        ({"type": "hyperband", "bootstrap_count": 2}, "pruner.bootstrap_count"),
        ({"type": "hyperband", "eta": 3}, "pruner.eta"),
    ]
    try:
        for i, (spec, field) in enumerate(cases):
            r = ReplaySide(ARGS.replay, "err%d" % i, "minimize", spec)
            err = r.created.get("error")
            check(err is not None and err["field"] == field and err["code"] == "invalid_argument",
                  "%r: expected error on %s, got %r" % (spec, field, r.created))
            r.close()
            if d is not None:
                body = {"name": "err%d" % i, "params": SPACE, "pruner": spec}
                d.post("/v1/studies", body).expect_error(400, "invalid_argument", field)
        if d is not None:
            listing = d.get("/v1/samplers").expect(200, "listing")
            names = {p["type"]: p for p in listing["pruners"]}
            for t in ("none", "median", "percentile", "asha", "hyperband"):
                check(t in names, "pruner %s not listed" % t)
            check(names["asha"]["options"]["reduction_factor"]["default"] == 4, "asha default")
    finally:
        if d is not None:
            d.close()


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--replay", required=True)
    ap.add_argument("--hpod")
    ARGS = ap.parse_args()
    if ARGS.hpod is not None and not os.path.exists(ARGS.hpod):
        ARGS.hpod = None
    sys.exit(tap.run())


if __name__ == "__main__":
    main()
