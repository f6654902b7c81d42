#!/usr/bin/python3
"""test_samplers_http.py: the cmaes and qmc samplers over HTTP (issue 17):
GET /v1/samplers lists them with their options; a study asked and told 30
times with a daemon restart in the middle (SIGTERM, then SIGKILL) gets the
same suggestions as a twin study with the same seed run without a restart;
cmaes told asynchronously (batches told out of order) likewise; cmaes's step
size after each of 6 generations equals the `cmaes` library's (0.9.1, what
Optuna 3.1 runs) told the same points; bad options are 400 naming the field
and create nothing.

Usage: test_samplers_http.py PATH/TO/hpod. Prints TAP.
"""

import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()

# Every kind the samplers handle: log float, int, categorical, a conditional float.
SPACE = [
    {"name": "x", "type": "float", "low": -5, "high": 10},
    {"name": "y", "type": "float", "low": 0, "high": 15},
    {"name": "lr", "type": "float", "low": 1e-5, "high": 1, "log": True},
    {"name": "k", "type": "int", "low": 0, "high": 10},
    {"name": "opt", "type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
    {"name": "mom", "type": "float", "low": 0, "high": 1, "when": {"opt": ["sgd"]}},
]
TRIALS = 30


def objective(p):
    v = (p["x"] - 1) ** 2 + 0.1 * (p["y"] - 3) ** 2 + (math.log10(p["lr"]) + 3) ** 2
    v += 0.1 * (p["k"] - 7) ** 2 + {"adam": 0.5, "sgd": 0.0, "rmsprop": 1.0}[p["opt"]]
    return v + (p["mom"] - 0.9) ** 2 if "mom" in p else v


def create(d, name, sampler):
    d.post("/v1/studies", {"name": name, "params": SPACE, "sampler": sampler}).expect(201)


def rounds(d, name, count, batch=1):
    """`count` trials in batches of `batch` asks, each batch told in reverse order."""
    got = []
    while count > 0:
        ts = [d.post("/v1/studies/%s/ask" % name).expect(201) for _ in range(min(batch, count))]
        for t in reversed(ts):
            d.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]),
                   {"value": objective(t["params"])}).expect(200)
        got += [(t["number"], t["params"]) for t in ts]
        count -= len(ts)
    return got


def twin_check(exe, sampler, batch, kill):
    """The asks of a study restarted after 15 trials equal those of its twin."""
    with Daemon(exe) as d:
        create(d, "twin", sampler)
        want = rounds(d, "twin", TRIALS, batch)
    with Daemon(exe) as d:
        create(d, "s", sampler)
        got = rounds(d, "s", TRIALS // 2, batch)
        if kill:
            d.kill()
        else:
            d.stop()
        d.start()
        got += rounds(d, "s", TRIALS - TRIALS // 2, batch)
        st = d.get("/v1/studies/s").expect(200)
    check(len(got) == len(want) == TRIALS, "trial counts %d %d" % (len(got), len(want)))
    for (n1, p1), (n2, p2) in zip(want, got):
        check(n1 == n2 and p1 == p2, "trial %d: %r without restart, %r with" % (n1, p1, p2))
    # Not a constant sequence: the sampler explored.
    check(len({repr(p) for _, p in got}) == TRIALS, "repeated suggestions: %r" % got)
    return st


@tap.test
def samplers_listed_with_options(exe):
    with Daemon(exe) as d:
        lst = d.get("/v1/samplers").expect(200)["samplers"]
        by = {s["type"]: s for s in lst}
        check("cmaes" in by and "qmc" in by, "samplers: %r" % sorted(by))
        check(set(by["qmc"]["options"]) == {"seed", "qmc_type", "scramble"},
              "qmc options %r" % by["qmc"]["options"])
        check(by["qmc"]["options"]["qmc_type"]["default"] == "sobol", "qmc default type")
        check(by["qmc"]["options"]["scramble"]["default"] is True, "qmc default scramble")
        want = {"seed", "sigma0", "popsize", "restart_strategy", "inc_popsize",
                "use_separable_cma", "separable_above", "with_margin", "consider_pruned_trials"}
        check(set(by["cmaes"]["options"]) == want, "cmaes options %r" % by["cmaes"]["options"])
        check(by["cmaes"]["options"]["restart_strategy"]["default"] == "ipop", "cmaes restart")
        check(by["cmaes"]["vectors"] is False and by["qmc"]["vectors"] is False, "vectors")
        # The study echoes every option with its default filled in.
        create(d, "echo", {"type": "cmaes", "seed": 3})
        got = d.get("/v1/studies/echo").expect(200)["sampler"]
        check(got == {"type": "cmaes", "seed": 3, "sigma0": 1 / 6, "popsize": 0,
                      "restart_strategy": "ipop", "inc_popsize": 2, "use_separable_cma": False,
                      "separable_above": 100, "with_margin": True,
                      "consider_pruned_trials": False}, "cmaes echo %r" % got)
        create(d, "echo2", {"type": "qmc", "seed": 3, "qmc_type": "halton"})
        got = d.get("/v1/studies/echo2").expect(200)["sampler"]
        check(got == {"type": "qmc", "seed": 3, "qmc_type": "halton", "scramble": True},
              "qmc echo %r" % got)


@tap.test
def qmc_sobol_restart_continues_sequence(exe):
    twin_check(exe, {"type": "qmc", "seed": 11}, 1, kill=False)


@tap.test
def qmc_halton_restart_after_sigkill(exe):
    twin_check(exe, {"type": "qmc", "seed": 12, "qmc_type": "halton"}, 1, kill=True)


@tap.test
def cmaes_restart_continues_generations(exe):
    st = twin_check(exe, {"type": "cmaes", "seed": 13}, 1, kill=False)
    # 4 modelled params (x, y, lr, k) beside a categorical and a conditional drawn at random:
    # the library's lambda 4 + floor(3 ln 4) = 8, so 30 sequential trials make 3 generations.
    ss = st.get("sampler_status") or {}
    check(ss.get("generation") == 3 and ss.get("popsize") == 8 and ss.get("dimensions") == 4,
          "sampler_status %r" % ss)


@tap.test
def cmaes_async_batches_restart_after_sigkill(exe):
    twin_check(exe, {"type": "cmaes", "seed": 14}, 3, kill=True)


def unit(p, d):
    """hpod's unit coordinate of value p of param d (docs/ALGORITHMS.md §0)."""
    if d.get("log"):
        return (math.log(p) - math.log(d["low"])) / (math.log(d["high"]) - math.log(d["low"]))
    return (p - d["low"]) / (d["high"] - d["low"])


@tap.test
def cmaes_generations_match_library(exe):
    # Replays hpod's trials into the library, generation by generation (trial-number
    # order), on the unit cube hpod models: mean 0.5, sigma0 1/6, bounds [0, 1], and
    # hpod's default population for n = 4, min(4 + floor(3 ln 4), 5 + floor(ln 4)) = 6.
    import numpy as np
    from cmaes import CMA
    space = [d for d in SPACE if d["type"] == "float" and "when" not in d]
    space.append({"name": "z", "type": "float", "low": 0, "high": 1})
    n = len(space)
    lam = 6
    lib = CMA(mean=np.full(n, 0.5), sigma=1 / 6, bounds=np.array([[0.0, 1.0]] * n), seed=1,
              population_size=lam)

    def f(p):
        return 100 * (p["y"] / 15 - (p["x"] / 10) ** 2) ** 2 + (1 - p["x"] / 10) ** 2 + \
            (math.log10(p["lr"]) + 2) ** 2 + 3 * (p["z"] - 0.2) ** 2

    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "lib", "params": space,
                               "sampler": {"type": "cmaes", "seed": 5}}).expect(201)
        sigmas = []
        for g in range(6):
            sols = []
            for _ in range(lam):
                t = d.post("/v1/studies/lib/ask").expect(201)
                v = f(t["params"])
                d.post("/v1/studies/lib/trials/%d/tell" % t["number"], {"value": v}).expect(200)
                sols.append((np.array([unit(t["params"][p["name"]], p) for p in space]), v))
            ss = d.get("/v1/studies/lib").expect(200)["sampler_status"]
            lib.tell(sols)
            check(ss["generation"] == g + 1 and ss["popsize"] == lam,
                  "sampler_status %r after %d generations" % (ss, g + 1))
            check(abs(ss["sigma"] - lib._sigma) <= 1e-9 * lib._sigma,
                  "generation %d: sigma %.17g, library %.17g" % (g + 1, ss["sigma"], lib._sigma))
            sigmas.append(ss["sigma"])
        check(len(set(sigmas)) == 6, "sigma never moved: %r" % sigmas)


@tap.test
def bad_options_name_the_field(exe):
    cases = [({"type": "cmaes", "popsize": 2}, "sampler.popsize"),
             ({"type": "cmaes", "sigma0": 0}, "sampler.sigma0"),
             ({"type": "cmaes", "restart_strategy": "bipop"}, "sampler.restart_strategy"),
             ({"type": "cmaes", "x0": {}}, "sampler.x0"),
             ({"type": "qmc", "qmc_type": "latin"}, "sampler.qmc_type"),
             ({"type": "qmc", "scramble": 1}, "sampler.scramble")]
    with Daemon(exe) as d:
        for sampler, field in cases:
            d.post("/v1/studies", {"name": "bad", "params": SPACE, "sampler": sampler}) \
                .expect_error(400, "invalid_argument", field)
        d.get("/v1/studies/bad").expect(404)


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
