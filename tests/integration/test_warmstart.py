#!/usr/bin/python3
"""test_warmstart.py: warm start across studies (issue 17 part 4, docs/API.md
"Warm start"): prior studies recorded with known trials; tpe and gp studies
naming them read their finished trials once at the first ask; the summary's
counts and ignored params are exact; a missing or incompatible prior study is
a summary entry, not an error; trials added to a prior study after the first
ask change nothing; the definition survives a restart (where the snapshot is
read again); warm-started suggestions stay inside the space.

Usage: test_warmstart.py PATH/TO/hpod. Prints TAP.
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()

SPACE = [
    {"name": "x", "type": "float", "low": 0, "high": 1},
    {"name": "k", "type": "int", "low": 1, "high": 8},
    {"name": "opt", "type": "categorical", "choices": ["adam", "sgd"]},
]


def record(d, study, params, value):
    d.post("/v1/studies/%s/trials" % study, {"params": params, "value": value}).expect(201)


def make_prior_a(d):
    """10 complete trials, 1 failed, 1 running: 10 usable."""
    d.post("/v1/studies", {"name": "a", "params": SPACE}).expect(201)
    for i in range(10):
        record(d, "a", {"x": i / 10, "k": 1 + i % 8, "opt": ["adam", "sgd"][i % 2]}, (i - 3) ** 2)
    t = d.post("/v1/studies/a/ask").expect(201)
    d.post("/v1/studies/a/trials/%d/tell" % t["number"], {"state": "failed"}).expect(200)
    d.post("/v1/studies/a/ask").expect(201)


def make_prior_b(d):
    """x in [0.5, 2] (overlapping), k a float (incompatible), an extra param w,
    opt with one unknown choice: trials with x > 1 or opt "rmsprop" are outside."""
    space = [{"name": "x", "type": "float", "low": 0.5, "high": 2},
             {"name": "k", "type": "float", "low": 1, "high": 8},
             {"name": "w", "type": "int", "low": 0, "high": 3},
             {"name": "opt", "type": "categorical", "choices": ["sgd", "rmsprop", "adam"]}]
    d.post("/v1/studies", {"name": "b", "params": space}).expect(201)
    rows = [(0.5, "sgd"), (0.6, "adam"), (0.9, "sgd"), (1.0, "adam"), (1.5, "sgd"),
            (0.7, "rmsprop"), (0.8, "adam")]
    for i, (x, opt) in enumerate(rows):
        record(d, "b", {"x": x, "k": 2.5, "w": i % 4, "opt": opt}, x)
    # usable: x <= 1 and opt != rmsprop -> 5; outside: 2


def summary(d, name):
    return d.get("/v1/studies/%s" % name).expect(200)["warm_start"]


def make_warm(d, name, sampler, studies):
    body = {"name": name, "params": SPACE, "sampler": sampler, "warm_start": {"studies": studies}}
    got = d.post("/v1/studies", body).expect(201)
    ws = got["warm_start"]
    check(ws["studies"] == studies and ws["loaded"] is False and ws["trials"] == 0,
          "before the first ask: %r" % ws)
    return got


EXPECT_SOURCES = [
    {"study": "a", "status": "ok", "trials": 10, "outside_space": 0, "ignored_params": [],
     "missing_params": []},
    {"study": "b", "status": "ok", "trials": 5, "outside_space": 2, "ignored_params": ["k", "w"],
     "missing_params": ["k"]},
    {"study": "nope", "status": "not_found", "trials": 0},
    {"study": "max", "status": "incompatible", "reason": "the objective's direction differs",
     "trials": 0, "outside_space": 0, "ignored_params": [], "missing_params": []},
    {"study": "other", "status": "incompatible",
     "reason": "no param in common (same name and type, overlapping range)",
     "trials": 0, "outside_space": 0, "ignored_params": ["q"], "missing_params": ["x", "k", "opt"]},
]


def make_all_priors(d):
    make_prior_a(d)
    make_prior_b(d)
    d.post("/v1/studies", {"name": "max", "params": SPACE, "direction": "maximize"}).expect(201)
    record(d, "max", {"x": 0.5, "k": 2, "opt": "sgd"}, 1.0)
    d.post("/v1/studies", {"name": "other", "params": [
        {"name": "q", "type": "float", "low": 0, "high": 1}]}).expect(201)
    record(d, "other", {"q": 0.5}, 1.0)


def check_loaded(ws, studies):
    check(ws["loaded"] is True and ws["used"] is True, "loaded/used: %r" % ws)
    check(ws["studies"] == studies, "studies %r" % ws["studies"])
    want = [e for e in EXPECT_SOURCES if e["study"] in studies]
    check(ws["sources"] == want, "sources %r\n want %r" % (ws["sources"], want))
    check(ws["trials"] == sum(e["trials"] for e in want), "trials %r" % ws["trials"])
    want_ignored = sorted({p for e in want if e["status"] == "ok"
                           for p in e["ignored_params"] + e["missing_params"]})
    check(ws["ignored_params"] == want_ignored, "ignored_params %r" % ws["ignored_params"])


def run_asks(d, name, n):
    for _ in range(n):
        t = d.post("/v1/studies/%s/ask" % name).expect(201)
        p = t["params"]
        check(0 <= p["x"] <= 1 and p["k"] in range(1, 9) and p["opt"] in ("adam", "sgd"),
              "suggestion outside the space: %r" % p)
        d.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]),
               {"value": (p["x"] - 0.3) ** 2}).expect(200)


@tap.test
def summary_counts_and_ignored_params(exe):
    studies = ["a", "b", "nope", "max", "other"]
    with Daemon(exe) as d:
        make_all_priors(d)
        for sampler in ({"type": "tpe", "seed": 1}, {"type": "gp", "seed": 1}):
            name = "w-" + sampler["type"]
            make_warm(d, name, sampler, studies)
            run_asks(d, name, 12)
            check_loaded(summary(d, name), studies)


@tap.test
def snapshot_taken_once(exe):
    with Daemon(exe) as d:
        make_prior_a(d)
        make_warm(d, "w", {"type": "tpe", "seed": 2}, ["a"])
        run_asks(d, "w", 1)
        check(summary(d, "w")["trials"] == 10, "first read")
        # Changes to the prior study after the first ask are not read.
        record(d, "a", {"x": 0.25, "k": 3, "opt": "sgd"}, 0.0)
        run_asks(d, "w", 3)
        ws = summary(d, "w")
        check(ws["trials"] == 10 and ws["sources"][0]["trials"] == 10, "after change %r" % ws)
        # Deleting the prior study does not disturb the warm-started one either.
        d.request("DELETE", "/v1/studies/a").expect(204)
        run_asks(d, "w", 2)
        check(summary(d, "w")["trials"] == 10, "after delete")


@tap.test
def restart_keeps_definition(exe):
    with Daemon(exe) as d:
        make_prior_a(d)
        make_warm(d, "w", {"type": "gp", "seed": 3}, ["a", "gone"])
        run_asks(d, "w", 2)
        d.stop()
        d.start()
        st = d.get("/v1/studies/w").expect(200)
        ws = st["warm_start"]
        check(ws["studies"] == ["a", "gone"] and ws["loaded"] is False, "after restart %r" % ws)
        # The same create again is idempotent; another list is a conflict.
        body = {"name": "w", "params": SPACE, "sampler": {"type": "gp", "seed": 3},
                "warm_start": {"studies": ["a", "gone"]}}
        d.post("/v1/studies", body).expect(200)
        body["warm_start"] = {"studies": ["a"]}
        d.post("/v1/studies", body).expect_error(409, "conflict", "warm_start.studies")
        # Read again at the first ask after the restart (docs/API.md "Warm start").
        run_asks(d, "w", 1)
        ws = summary(d, "w")
        check(ws["loaded"] is True and ws["trials"] == 10, "re-read %r" % ws)
        check([e["status"] for e in ws["sources"]] == ["ok", "not_found"], "sources %r" % ws)


@tap.test
def other_samplers_ignore_it(exe):
    with Daemon(exe) as d:
        make_prior_a(d)
        d.post("/v1/studies", {"name": "r", "params": SPACE, "sampler": {"type": "random"},
                               "warm_start": {"studies": ["a"]}}).expect(201)
        run_asks(d, "r", 2)
        ws = summary(d, "r")
        check(ws == {"studies": ["a"], "used": False, "loaded": False, "trials": 0,
                     "ignored_params": [], "sources": []}, "random %r" % ws)
        # A study without warm_start shows no such key.
        check("warm_start" not in d.get("/v1/studies/a").expect(200), "no key when absent")


@tap.test
def prior_only_incompatible_is_not_an_error(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "other", "params": [
            {"name": "q", "type": "float", "low": 0, "high": 1}]}).expect(201)
        record(d, "other", {"q": 0.5}, 1.0)
        make_warm(d, "w", {"type": "tpe", "seed": 4}, ["other", "missing"])
        run_asks(d, "w", 3)
        ws = summary(d, "w")
        check(ws["trials"] == 0 and ws["ignored_params"] == [], "summary %r" % ws)
        check([e["status"] for e in ws["sources"]] == ["incompatible", "not_found"],
              "sources %r" % ws["sources"])


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
