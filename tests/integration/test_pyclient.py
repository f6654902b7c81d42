#!/usr/bin/python3
"""test_pyclient.py: the Python client (client/python/hpod_client) against the real hpod.

Usage: test_pyclient.py PATH/TO/hpod [MESON_BUILD_ROOT]
       (HPOD_TEST_ONLY=a,b runs a subset)

The Optuna-shaped surface: objectives in Optuna's documentation style run
unchanged (the same source also runs on Optuna itself when python3-optuna
is installed), suggest_* against the declared space (and the errors when a
call does not match), best_trial/best_params/trials/FrozenTrial fields,
trials_dataframe, optimize's callbacks/catch/stop/timeout, create_study's
load_if_exists, enqueue_trial, user attrs on running trials and studies
(skipped while the daemon answers PATCH with 405), errors with the API's
code; the transport: one keep-alive connection per thread (no TIME_WAIT
socket per request, server side), reconnection after the daemon restarts,
which requests are resent after a lost answer (against a fake server), the
bearer token; the install: meson's Python site directory and an offline
pip install. Prints TAP.
"""

import datetime
import json
import importlib.util
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
PYDIR = os.path.join(SRC, "client", "python")
sys.path.insert(0, HERE)
sys.path.insert(0, PYDIR)
import hpod_client  # noqa: E402
import hpod_client as optuna_like  # noqa: E402
from hpodtest import Daemon, Tap, check  # noqa: E402

tap = Tap()
ARGS = {}


def url(d):
    return "http://127.0.0.1:%d" % d.port


def client(d, **kw):
    kw.setdefault("retries", 1)
    kw.setdefault("backoff", 0.01)
    return hpod_client.Client(url(d), **kw)


def raises(exc, fn, *words):
    """fn() must raise exc whose message holds every word; returns it."""
    try:
        fn()
    except exc as e:
        for w in words:
            check(w in str(e), "%r lacks %r" % (str(e), w))
        return e
    check(False, "expected %s" % exc.__name__)


ANY = object()


def api_error(code, fn, status=None, field=None):
    e = raises(hpod_client.HpodError, fn)
    check(e.code == code, "expected %s, got %s" % (code, e))
    if status is not None:
        check(e.status == status, "expected status %d, got %d" % (status, e.status))
    if field is not ANY:
        check(e.field == field, "expected field %r, got %r" % (field, e.field))
    return e


def patch_supported(d):
    """Whether the daemon has PATCH for user attrs yet (405 before)."""
    r = d.client().request("PATCH", "/v1/studies/no-such-study", {"user_attrs": {}})
    return r.status != 405


def skip(reason):
    print("# SKIP %s" % reason, flush=True)


# --- Optuna's documentation style --------------------------------------------

# One objective source, run on hpod (import hpod_client as optuna) and, when
# installed, on Optuna: the objective lines are the same, only the study's
# creation differs (hpod declares the space up front).
PRUNING_OBJECTIVE = '''
import sklearn.datasets
import sklearn.linear_model
import sklearn.model_selection


def objective(trial):
    iris = sklearn.datasets.load_iris()
    classes = list(set(iris.target))
    train_x, valid_x, train_y, valid_y = sklearn.model_selection.train_test_split(
        iris.data, iris.target, test_size=0.25, random_state=0)

    alpha = trial.suggest_float("alpha", 1e-5, 1e-1, log=True)
    loss = trial.suggest_categorical("loss", ["hinge", "log_loss"])
    epochs = trial.suggest_int("epochs", 5, 12)
    clf = sklearn.linear_model.SGDClassifier(alpha=alpha, loss=loss, random_state=0)

    for step in range(epochs):
        clf.partial_fit(train_x, train_y, classes=classes)
        intermediate_value = 1.0 - clf.score(valid_x, valid_y)
        trial.report(intermediate_value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return 1.0 - clf.score(valid_x, valid_y)
'''

PRUNING_SPACE = {
    "alpha": hpod_client.distributions.FloatDistribution(1e-5, 1e-1, log=True),
    "loss": hpod_client.distributions.CategoricalDistribution(["hinge", "log_loss"]),
    "epochs": hpod_client.distributions.IntDistribution(5, 12),
}


@tap.test
def optuna_quadratic_example(d):
    # Optuna's first example, the import line being the only change.
    optuna = optuna_like

    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        return (x - 2) ** 2

    study = optuna.create_study(storage=url(d), study_name="quadratic",
                                sampler=optuna.samplers.RandomSampler(seed=11),
                                params={"x": optuna.distributions.FloatDistribution(-10, 10)})
    study.optimize(objective, n_trials=25)
    trials = study.trials
    check(len(trials) == 25 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
          "states %r" % [t.state for t in trials])
    for t in trials:
        check(t.value == (t.params["x"] - 2) ** 2, "value of %d" % t.number)
    best = min(trials, key=lambda t: t.value)
    check(study.best_trial.number == best.number and study.best_value == best.value
          and study.best_params == {"x": best.params["x"]}, "best %r" % study.best_trial)
    check(isinstance(study.best_trial, optuna.trial.FrozenTrial), "best_trial is a FrozenTrial")
    check(study.direction == optuna.study.StudyDirection.MINIMIZE, "direction")


@tap.test
def optuna_pruning_example_same_source(d):
    check(importlib.util.find_spec("sklearn") is not None,
          "python3-sklearn is needed (scripts/deps.sh --test)")
    ns = {"optuna": optuna_like}
    exec(compile(PRUNING_OBJECTIVE, "objective", "exec"), ns)
    study = optuna_like.create_study(storage=url(d), study_name="sgd-iris",
                                     params=PRUNING_SPACE,
                                     sampler=optuna_like.samplers.TPESampler(seed=3, n_startup_trials=4),
                                     pruner=optuna_like.pruners.MedianPruner(n_startup_trials=3))
    study.optimize(ns["objective"], n_trials=16)
    trials = study.trials
    states = [t.state for t in trials]
    check(len(trials) == 16 and set(states) <= {"complete", "pruned"}, "states %r" % states)
    check(states.count("pruned") >= 1 and states.count("complete") >= 3, "states %r" % states)
    for t in trials:
        steps = sorted(t.intermediate_values)
        check(steps == list(range(len(steps))), "steps %r" % steps)
        if t.state == "complete":
            check(len(steps) == t.params["epochs"], "complete trial %d: %r" % (t.number, t.info))
            check(t.value == t.intermediate_values[steps[-1]], "value is the last report")
        else:
            check(len(steps) <= t.params["epochs"], "pruned trial %d: %r" % (t.number, t.info))
    # The same source on Optuna itself (an in-memory study), when installed.
    try:
        import optuna
    except ImportError:
        skip("python3-optuna not installed: the objective ran on hpod only")
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ns = {"optuna": optuna}
    exec(compile(PRUNING_OBJECTIVE, "objective", "exec"), ns)
    ostudy = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
                                 sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=4))
    ostudy.optimize(ns["objective"], n_trials=6)
    check(len(ostudy.trials) == 6, "the same objective runs on Optuna")


@tap.test
def suggest_checks_the_space(d):
    c = client(d)
    s = c.create_study(name="space", sampler={"type": "random", "seed": 5}, params=[
        {"name": "lr", "type": "float", "low": 1e-5, "high": 0.1, "log": True},
        {"name": "drop", "type": "float", "low": 0.0, "high": 0.5, "step": 0.05},
        {"name": "layers", "type": "int", "low": 1, "high": 8},
        {"name": "units", "type": "int", "low": 16, "high": 512, "log": True},
        {"name": "bs", "type": "int", "low": 16, "high": 128, "step": 16},
        {"name": "opt", "type": "categorical", "choices": ["adam", "sgd", 3, True]},
        {"name": "mom", "type": "float", "low": 0.5, "high": 0.99, "when": {"opt": ["sgd"]}},
        {"name": "vec", "type": "float", "low": 0, "high": 1, "size": 3},
    ])
    s.enqueue({"opt": "adam"})
    t = s.ask()
    check(t.params["opt"] == "adam" and "mom" not in t.params, "enqueued %r" % t.params)
    lr = t.suggest_float("lr", 1e-5, 1e-1, log=True)
    check(lr == t.params["lr"] and type(lr) is float and 1e-5 <= lr <= 0.1, "lr %r" % lr)
    drop = t.suggest_float("drop", 0.0, 0.5, step=0.05)
    check(drop == t.params["drop"] and abs(drop / 0.05 - round(drop / 0.05)) < 1e-9, "drop %r" % drop)
    layers = t.suggest_int("layers", 1, 8)
    check(layers == t.params["layers"] and type(layers) is int, "layers %r" % layers)
    check(t.suggest_int("units", 16, 512, log=True) == t.params["units"], "units")
    check(t.suggest_int("bs", 16, 128, step=16) % 16 == 0, "bs")
    choices = ["sgd", True, 3, "adam"]  # another order is the same choice set
    got = t.suggest_categorical("opt", choices)
    check(got == "adam" and got is choices[3], "categorical %r" % got)
    # Deprecated Optuna spellings.
    check(t.suggest_loguniform("lr", 1e-5, 0.1) == lr, "suggest_loguniform")
    check(t.suggest_discrete_uniform("drop", 0.0, 0.5, 0.05) == drop, "suggest_discrete_uniform")

    err = hpod_client.SearchSpaceError
    check(issubclass(err, ValueError), "SearchSpaceError is a ValueError")
    raises(err, lambda: t.suggest_float("momentum", 0.5, 0.99), "declares no param 'momentum'",
           "declared: bs, drop, layers, lr, mom, opt, units, vec")
    raises(err, lambda: t.suggest_float("lr", 1e-4, 1e-1, log=True), "low/high", '"low": 1e-05')
    raises(err, lambda: t.suggest_float("lr", 1e-5, 0.2, log=True), "low/high")
    raises(err, lambda: t.suggest_float("lr", 1e-5, 1e-1), "log differs")
    raises(err, lambda: t.suggest_float("drop", 0.0, 0.5), "step differs")
    raises(err, lambda: t.suggest_float("drop", 0.0, 0.5, step=0.1), "step differs")
    raises(err, lambda: t.suggest_int("lr", 1, 8), "declared float, not int")
    raises(err, lambda: t.suggest_float("layers", 1, 8), "declared int, not float")
    raises(err, lambda: t.suggest_int("layers", 1, 9), "low/high")
    raises(err, lambda: t.suggest_int("units", 16, 512), "log differs")
    raises(err, lambda: t.suggest_int("bs", 16, 128), "step differs")
    raises(err, lambda: t.suggest_categorical("opt", ["adam", "sgd", 3]), "choices differ")
    raises(err, lambda: t.suggest_categorical("opt", ["adam", "sgd", 3, 1]), "choices differ")
    raises(err, lambda: t.suggest_categorical("opt", ["adam", "sgd", 3, False]), "choices differ")
    raises(err, lambda: t.suggest_float("mom", 0.5, 0.99), "inactive in trial",
           '{"opt": ["sgd"]}')
    raises(err, lambda: t.suggest_float("vec", 0, 1), "vector of 3 floats", "trial.vector('vec')")
    # Conditional params: active when their condition holds.
    s.enqueue({"opt": "sgd"})
    u = s.ask()
    m = u.suggest_float("mom", 0.5, 0.99)
    check(m == u.params["mom"] and 0.5 <= m <= 0.99, "active conditional %r" % u.params)
    # A mismatch inside optimize fails the trial and is raised.

    def wrong(trial):
        return trial.suggest_float("lr", 0.0, 1.0)

    raises(err, lambda: s.optimize(wrong, n_trials=3), "low/high")
    check(s.trials[-1].state == "failed" and len(s.trials) == 3, "the mismatched trial failed")


@tap.test
def frozen_trials_and_best(d):
    c = client(d)
    s = c.create_study(name="frozen", direction="maximize", sampler={"type": "random", "seed": 1},
                       params=[{"name": "x", "type": "float", "low": 0, "high": 1}])
    check(s.direction == "maximize" and s.direction == hpod_client.StudyDirection.MAXIMIZE
          and s.study_name == "frozen", "direction %r" % s.direction)
    raises(ValueError, lambda: s.best_trial, "no trial", "complete")
    check(s.best_value is None and s.best_params is None, "best_value/params None (0.1)")
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    t = s.ask()
    t.report(0.25, 0)           # Optuna's order: (value, step)
    t.report(1, 0.5)            # hpod_client 0.1's order: (step, value)
    t.report(value=0.75, step=2)
    t.set_user_attr("k", "v") if patch_supported(d) else None
    time.sleep(0.01)
    t.tell(0.9, user_attrs={"note": "n"})
    u = s.ask()
    u.report(0.1, 0)
    u.prune()
    w = s.ask()
    w.fail()
    ft = s.trial(t.number)
    check(isinstance(ft, hpod_client.FrozenTrial) and ft.state is hpod_client.TrialState.COMPLETE,
          "state %r" % ft.state)
    check(ft.value == 0.9 and ft.values == [0.9] and ft.params == t.params, "value %r" % ft.info)
    check(ft.intermediate_values == {0: 0.25, 1: 0.5, 2: 0.75} and ft.last_step == 2,
          "intermediate %r" % ft.intermediate_values)
    check(ft.user_attrs.get("note") == "n", "user_attrs %r" % ft.user_attrs)
    check(ft.datetime_start.tzinfo is not None and before <= ft.datetime_start <= ft.datetime_complete,
          "datetimes %r %r" % (ft.datetime_start, ft.datetime_complete))
    check(ft.duration == ft.datetime_complete - ft.datetime_start
          and ft.duration >= datetime.timedelta(milliseconds=10), "duration %r" % ft.duration)
    check(ft.distributions == {"x": s.space["x"]}, "distributions %r" % ft.distributions)
    trials = s.trials
    check([x.state for x in trials] == ["complete", "pruned", "failed"]
          and [x.state.name for x in trials] == ["COMPLETE", "PRUNED", "FAIL"], "states")
    check(trials[1].value == 0.1 and trials[2].value is None and trials[2].duration is not None,
          "pruned/failed %r" % [x.info for x in trials])
    # study.trials is a list and, for 0.1 code, callable.
    check([x.number for x in s.trials()] == [0, 1, 2], "trials()")
    check([x.number for x in s.trials(state="failed")] == [2], "trials(state=)")
    P = hpod_client.TrialState
    check([x.number for x in s.get_trials(states=(P.COMPLETE, P.PRUNED))] == [0, 1], "get_trials")
    check([x.number for x in s.get_trials(states=[P.FAIL])] == [2], "get_trials one state")
    check(s.best_trial.number == t.number and s.best_value == 0.9 and s.best_params == t.params,
          "best")
    # Optuna's ask/tell interface on the study.
    a = s.ask()
    s.tell(a, 0.95)
    b = s.ask()
    s.tell(b.number, state=P.PRUNED)
    f = s.ask()
    s.tell(f, state=hpod_client.trial.TrialState.FAIL)
    check([x.state for x in s.trials[3:]] == ["complete", "pruned", "failed"], "study.tell")
    check(s.best_trial.number == a.number, "best after tell")
    # add_trial from a FrozenTrial copies params, value and user attrs.
    n = s.add_trial(s.trial(t.number))
    check(n.state == "complete" and n.value == 0.9 and n.params == t.params
          and n.user_attrs.get("note") == "n", "add_trial(frozen) %r" % n.info)
    # As Optuna: told without a value, or a value that is not finite, the trial fails.
    g, h = s.ask(), s.ask()
    s.tell(g)
    s.tell(h, float("nan"))
    check(s.trial(g.number).state == "failed" and s.trial(h.number).state == "failed", "tell no value")
    raises(ValueError, lambda: s.tell(s.ask(), None, state=P.COMPLETE), "finite value")


def brute_front(trials, dirs):
    """Numbers of the feasible complete trials no other feasible one dominates."""
    pts = {t.number: [v if dr == "minimize" else -v for v, dr in zip(t.values, dirs)]
           for t in trials if t.state == hpod_client.TrialState.COMPLETE and t.feasible}

    def dom(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))
    return sorted(n for n, p in pts.items() if not any(dom(q, p) for q in pts.values()))


@tap.test
def multiobjective(d):
    space = {"x": hpod_client.distributions.FloatDistribution(0, 1),
             "y": hpod_client.distributions.FloatDistribution(0, 1)}
    study = optuna_like.create_study(
        storage=url(d), study_name="py-mo", params=space,
        objectives={"error": "minimize", "speed": "maximize"},
        constraints={"memory_gb": {"max": 16}}, sampler={"type": "nsga2", "seed": 3,
                                                         "population_size": 8})
    check(study.directions == ["minimize", "maximize"] and study.is_multi_objective and
          study.objective_names == ["error", "speed"] and
          study.constraints == [{"name": "memory_gb", "max": 16}], "study %r" % study.info)
    raises(RuntimeError, lambda: study.direction, "directions")
    raises(RuntimeError, lambda: study.best_trial, "best_trials")
    check(study.best_trials == [] and study.pareto()["hypervolume"] == 0, "empty front")

    def objective(trial):
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        trial.set_constraints({"memory_gb": 30 * y})
        if trial.number % 2:
            return {"speed": 1 - x * x, "error": x + y}
        return (x + y, 1 - x * x)  # the objectives' order

    study.optimize(objective, n_trials=30, n_jobs=2)
    trials = study.trials
    check(len(trials) == 30 and all(t.state == "complete" for t in trials), "30 complete")
    for t in trials:
        x, y = t.params["x"], t.params["y"]
        check(t.values == [x + y, 1 - x * x] and
              t.values_dict == {"error": x + y, "speed": 1 - x * x} and
              t.constraints == {"memory_gb": 30 * y} and t.feasible == (30 * y <= 16),
              "trial %r" % t.info)
    try:
        import pandas  # noqa: F401
        df = study.trials_dataframe()
        cols = list(df.columns)
        check(cols[:4] == ["number", "values_error", "values_speed", "constraints_memory_gb"]
              and list(df["values_error"]) == [t.values[0] for t in trials] and
              list(df["constraints_memory_gb"]) == [30 * t.params["y"] for t in trials],
              "dataframe columns %r" % cols)
    except ImportError:
        skip("pandas is not installed")
    front = [t.number for t in study.best_trials]
    check(front and front == brute_front(trials, ["minimize", "maximize"]),
          "front %r vs brute force %r" % (front, brute_front(trials, ["minimize", "maximize"])))
    feas = [t.number for t in study.feasible_trials()]
    check(feas == [t.number for t in trials if t.feasible] and
          [t.number for t in study.feasible_trials(False)] ==
          [t.number for t in trials if not t.feasible], "feasible filter")
    # Hypervolume (2-D, exact) against the reference point the daemon gives.
    p = study.pareto()
    ref = p["reference_point"]
    pts = sorted((t.values_dict["error"], -t.values_dict["speed"]) for t in p["trials"])
    r0, r1 = ref["error"], -ref["speed"]
    hv, last = 0.0, r1
    for a, b in pts:
        if a < r0 and b < last:
            hv += (r0 - a) * (last - b)
            last = b
    check(abs(p["hypervolume"] - hv) <= 1e-9 * max(1, hv), "hv %r vs %r" % (p["hypervolume"], hv))

    # Results that do not fit the objectives fail the trial (as Optuna).
    study.optimize(lambda t: (1.0,), n_trials=1)
    study.optimize(lambda t: {"error": 1.0, "nope": 2.0}, n_trials=1)
    study.optimize(lambda t: 0.5, n_trials=1)
    study.optimize(lambda t: (1.0, float("nan")), n_trials=1)
    check([t.state for t in study.trials[30:]] == ["failed"] * 4, "bad results fail")
    # Optuna's ask/tell: values= in order, constraints by declared order.
    t = study.ask()
    study.tell(t, values=[0.5, 0.25], constraints=[3.0])
    got = study.trial(t.number)
    check(got.values == [0.5, 0.25] and got.constraints == {"memory_gb": 3} and got.feasible,
          "tell values %r" % got.info)
    t = study.ask()
    raises(ValueError, lambda: t.set_constraints({"nope": 1}), "nope")
    raises(ValueError, lambda: t.set_constraints([1, 2]), "declared")
    raises(ValueError, lambda: t.tell([1.0]), "2 objectives")
    t.tell({"error": 0.1, "speed": 2})
    check(study.trial(t.number).feasible is False, "no constraint told: infeasible")

    # One objective with constraints: the best feasible trial; directions has one entry.
    one = optuna_like.create_study(storage=url(d), study_name="py-oc", params=space,
                                   constraints={"c": {"min": 0, "max": 0.5}},
                                   sampler={"type": "random", "seed": 2})
    check(one.directions == ["minimize"] and one.direction == "minimize", "one objective")

    def single(trial):
        trial.set_constraint("c", trial.params["y"])
        return trial.params["x"]
    one.optimize(single, n_trials=20)
    feasible = [t for t in one.trials if t.params["y"] <= 0.5]
    check(feasible and one.best_trial.number == min(feasible, key=lambda t: t.value).number and
          [t.number for t in one.best_trials] == [one.best_trial.number] and
          one.best_trial.values == [one.best_trial.value], "best feasible")
    # directions=[...] names them values_0, values_1 (Optuna's dataframe columns).
    two = optuna_like.create_study(storage=url(d), study_name="py-dirs", params=space,
                                   directions=["minimize", "minimize"])
    check(two.objective_names == ["values_0", "values_1"] and
          two.info["sampler"]["type"] == "nsga2", "directions %r" % two.info)


@tap.test
def dataframe(d):
    c = client(d)
    s = c.create_study(name="df", sampler={"type": "random", "seed": 2}, params=[
        {"name": "x", "type": "float", "low": 0, "high": 1},
        {"name": "c", "type": "categorical", "choices": ["a", "b"]}])
    t = s.ask()
    t.report(0.5, 0)
    t.tell(0.25, user_attrs={"u": 1})
    s.ask().fail()
    saved = sys.modules.get("pandas")
    sys.modules["pandas"] = None  # import pandas now raises ImportError
    try:
        raises(ImportError, s.trials_dataframe, "pandas", "python3-pandas")
    finally:
        if saved is None:
            del sys.modules["pandas"]
        else:
            sys.modules["pandas"] = saved
    try:
        import pandas as pd
    except ImportError:
        skip("python3-pandas not installed: the DataFrame itself is not checked")
        return
    df = s.trials_dataframe()
    check(list(df.columns) == ["number", "value", "datetime_start", "datetime_complete", "duration",
                               "params_x", "params_c", "user_attrs_u", "state"],
          "columns %r" % list(df.columns))
    check(list(df["number"]) == [0, 1] and list(df["state"]) == ["COMPLETE", "FAIL"], "rows")
    check(df["value"][0] == 0.25 and pd.isna(df["value"][1]), "values %r" % list(df["value"]))
    check(df["params_x"][0] == t.params["x"] and df["params_c"][0] == t.params["c"], "params")
    check(df["user_attrs_u"][0] == 1, "user attrs")
    check(pd.api.types.is_datetime64_any_dtype(df["datetime_start"])
          and pd.api.types.is_timedelta64_dtype(df["duration"]), "dtypes %r" % df.dtypes)
    mi = s.trials_dataframe(attrs=("number", "params", "intermediate_values"), multi_index=True)
    check(list(mi.columns) == [("number", ""), ("params", "x"), ("params", "c"),
                               ("intermediate_values", 0)], "multi-index %r" % list(mi.columns))
    check(mi[("intermediate_values", 0)][0] == 0.5, "intermediate column")


@tap.test
def optimize_semantics(d):
    optuna = optuna_like
    s = optuna.create_study(storage=client(d), study_name="opt", load_if_exists=True,
                            sampler={"type": "random", "seed": 9},
                            params={"x": optuna.distributions.FloatDistribution(0, 1)})
    seen = []

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 1:
            raise optuna.TrialPruned()
        if trial.number == 2:
            raise KeyError("caught")
        return x

    def cb(study, frozen):
        check(study is s and isinstance(frozen, optuna.trial.FrozenTrial), "callback args")
        seen.append((frozen.number, str(frozen.state), frozen.value))

    s.optimize(objective, n_trials=4, catch=KeyError, callbacks=[cb])
    check([n for n, _, _ in seen] == [0, 1, 2, 3]
          and [st for _, st, _ in seen] == ["complete", "pruned", "failed", "complete"],
          "callbacks saw %r" % seen)
    check(seen[0][2] == s.trial(0).params["x"], "callback's frozen trial has the value")
    # Not caught: the trial fails and the exception is raised; callbacks do not see it.
    seen.clear()

    def boom(trial):
        raise RuntimeError("boom")

    raises(RuntimeError, lambda: s.optimize(boom, n_trials=3, catch=(KeyError,), callbacks=[cb]),
           "boom")
    check(seen == [] and s.trials[-1].state == "failed" and len(s.trials) == 5, "uncaught")
    # study.stop() from a callback ends the loop after that trial.
    n0 = len(s.trials)

    def stop_at_two(study, frozen):
        if frozen.number == n0 + 1:
            study.stop()

    s.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=50, callbacks=[stop_at_two])
    check(len(s.trials) == n0 + 2, "stop(): %d trials" % (len(s.trials) - n0))
    # timeout stops asking (each trial sleeps 0.2 s; 1 s allows a few, never 50).
    n0 = len(s.trials)
    s.optimize(lambda t: time.sleep(0.2) or 1.0, n_trials=50, timeout=1.0, n_jobs=2)
    k = len(s.trials) - n0
    check(2 <= k < 50 and all(t.state == "complete" for t in s.trials[n0:]), "timeout ran %d" % k)
    # show_progress_bar: tqdm or plain lines, the study runs the same.
    n0 = len(s.trials)
    s.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3, show_progress_bar=True,
               gc_after_trial=True)
    check(len(s.trials) == n0 + 3, "progress bar run")
    raises(ValueError, lambda: s.optimize(lambda t: 1.0, n_jobs=0), "n_jobs")
    raises(RuntimeError, s.stop, "optimize")


@tap.test
def create_and_load(d):
    optuna = optuna_like
    space = {"x": optuna.distributions.FloatDistribution(-1, 1),
             "k": optuna.distributions.IntDistribution(0, 3, step=1)}
    s = optuna.create_study(storage=url(d), study_name="cl", params=space, direction="maximize",
                            sampler=optuna.samplers.TPESampler(seed=1))
    check(s.name == "cl" and s.direction == "maximize" and s.info["sampler"]["seed"] == 1, "create")
    e = raises(optuna.exceptions.DuplicatedStudyError,
               lambda: optuna.create_study(storage=url(d), study_name="cl", params=space,
                                           direction="maximize"), "exists")
    check(isinstance(e, hpod_client.HpodError) and e.code == "duplicated_study", "code %r" % e.code)
    again = optuna.create_study(storage=url(d), study_name="cl", params=space, direction="maximize",
                                load_if_exists=True)
    check(again.name == "cl", "load_if_exists with the same definition")
    check(optuna.create_study(storage=url(d), study_name="cl", load_if_exists=True).name == "cl",
          "load_if_exists without params loads it")
    api_error("conflict", lambda: optuna.create_study(storage=url(d), study_name="cl", params=space,
                                                      load_if_exists=True), 409, ANY)
    raises(ValueError, lambda: optuna.create_study(storage=url(d), study_name="new"), "params")
    raises(ValueError, lambda: optuna.create_study(storage=url(d), params=space,
                                                   directions=["minimize", "maximize"],
                                                   direction="minimize"), "one of")
    anon = optuna.create_study(storage=url(d), params=space)
    check(anon.name.startswith("no-name-"), "generated name %r" % anon.name)
    optuna.delete_study(study_name=anon.name, storage=url(d))
    check(optuna.load_study(study_name="cl", storage=url(d)).name == "cl", "load_study")
    api_error("not_found", lambda: optuna.load_study(study_name="nope", storage=url(d)), 404)
    check("cl" in optuna.get_all_study_names(url(d)), "names")
    # enqueue_trial: the next ask gets the params; skip_if_exists skips a repeat.
    s.enqueue_trial({"x": 0.5, "k": 2}, user_attrs={"from": "queue"})
    s.enqueue_trial({"x": 0.5, "k": 2}, skip_if_exists=True)
    s.enqueue_trial({"k": 1})
    t = s.ask()
    check(t.params == {"x": 0.5, "k": 2} and t.user_attrs == {"from": "queue"}, "first %r" % t.info)
    t2 = s.ask()
    check(t2.params["k"] == 1 and -1 <= t2.params["x"] <= 1, "partial %r" % t2.params)
    check(len(s.trials) == 2, "skip_if_exists enqueued nothing: %d" % len(s.trials))
    # Client.create_study with a {name: spec} space.
    c2 = client(d).create_study(name="cl2", params=space)
    check([p["name"] for p in c2.info["params"]] == ["x", "k"], "mapping space")


@tap.test
def user_attrs_patch(d):
    if not patch_supported(d):
        skip("the daemon answers PATCH with 405 (user attrs on running trials and studies "
             "come with the daemon side of issue 11): set_user_attr not checked")
        return
    c = client(d)
    s = c.create_study(name="attrs", user_attrs={"owner": "me"}, sampler={"type": "random"},
                       params=[{"name": "x", "type": "float", "low": 0, "high": 1}])
    s.set_user_attr("team", "ml")
    check(s.user_attrs == {"owner": "me", "team": "ml"}, "study attrs %r" % s.user_attrs)
    s.set_user_attr("owner", None)
    check(s.user_attrs == {"team": "ml"}, "null removes %r" % s.user_attrs)

    def objective(trial):
        trial.set_user_attr("phase", "start")
        check(c.load_study("attrs").trial(trial.number).user_attrs == {"phase": "start"},
              "visible while running")
        trial.set_user_attr("phase", "end")
        trial.set_user_attr("extra", [1, 2])
        trial.set_user_attr("extra", None)
        return 1.0

    s.optimize(objective, n_trials=2)
    check([t.user_attrs for t in s.trials] == [{"phase": "end"}] * 2,
          "trial attrs %r" % [t.user_attrs for t in s.trials])
    api_error("not_found", lambda: hpod_client.Trial(s, {"number": 99}).set_user_attr("a", 1), 404)


@tap.test
def errors_and_token(d):
    c = client(d)
    e = api_error("not_found", lambda: c.load_study("missing"), 404)
    check(e.request_id, "request id %r" % e.request_id)
    api_error("invalid_argument", lambda: c.create_study(
        name="bad", params=[{"name": "x", "type": "float", "low": 1, "high": 0}]), 400, "params[0].low")
    api_error("method_not_allowed", lambda: c.request("PUT", "/v1/studies"), 405)
    few = c.create_study(name="few", max_trials=1, params=[{"name": "x", "type": "int", "low": 0,
                                                            "high": 3}])
    few.ask()
    api_error("exhausted", few.ask, 409)
    raises(ValueError, lambda: hpod_client.Client("ftp://x"), "http")
    raises(ValueError, lambda: hpod_client.Client(url(d), cafile="/nonexistent"), "https")
    bad = hpod_client.Client("http://127.0.0.1:1", retries=2, backoff=0.001)
    api_error("transport", bad.studies, 0)
    # The token from $HPOD_TOKEN is sent as a bearer token (seen by a fake server).
    with FakeServer(mode="answer") as fake:
        os.environ["HPOD_TOKEN"] = "s3cret"
        try:
            fc = hpod_client.Client("http://127.0.0.1:%d" % fake.port, retries=0)
        finally:
            del os.environ["HPOD_TOKEN"]
        fc.health()
        check("authorization: bearer s3cret" in fake.heads[0].lower(), "head %r" % fake.heads[0])


# --- the transport --------------------------------------------------------------

def tcp_states(port):
    """Counts by TCP state of the IPv4 sockets with port at either end."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            lport = int(parts[1].split(":")[1], 16)
            rport = int(parts[2].split(":")[1], 16)
            if port in (lport, rport):
                out[parts[3]] = out.get(parts[3], 0) + 1
    return out


TIME_WAIT = "06"


@tap.test
def keep_alive(d):
    d.close_clients()
    c = client(d)
    s = c.create_study(name="ka", sampler={"type": "random", "seed": 4},
                       params=[{"name": "x", "type": "float", "low": 0, "high": 1}])
    sock = c.transport.local_socket()
    check(sock is not None, "a kept connection")
    local = sock.getsockname()
    tw0 = tcp_states(d.port).get(TIME_WAIT, 0)
    for _ in range(100):
        t = s.ask()
        t.report(0.5, 0)
        t.tell(t.params["x"])
    check(c.transport.connections_opened == 1, "opened %d" % c.transport.connections_opened)
    check(c.transport.local_socket().getsockname() == local, "the same socket")
    tw1 = tcp_states(d.port).get(TIME_WAIT, 0)
    check(tw1 == tw0, "300 requests left %d TIME_WAIT sockets" % (tw1 - tw0))
    # One connection per thread.
    socks = set()
    lock = threading.Lock()

    def work():
        for _ in range(10):
            s.ask().tell(0.5)
        with lock:
            socks.add(c.transport.local_socket().getsockname())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    check(len(socks) == 3 and local not in socks and c.transport.connections_opened == 4,
          "threads: %r, opened %d" % (socks, c.transport.connections_opened))
    # keep_alive=False: a connection per request, each closed by the daemon.
    old = client(d, keep_alive=False)
    for _ in range(20):
        old.health()
    tw2 = tcp_states(d.port).get(TIME_WAIT, 0)
    check(old.transport.connections_opened == 20 and tw2 - tw1 >= 20,
          "per-request mode: %d opened, %d TIME_WAIT" % (old.transport.connections_opened, tw2 - tw1))
    # A child after fork() opens its own connection; the parent's stays usable.
    pid = os.fork()
    if pid == 0:
        try:
            ok = c.health()["status"] == "ok" and c.transport.local_socket().getsockname() != local
        except BaseException:  # noqa: B902 - the child reports by exit status only
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    check(os.WEXITSTATUS(status) == 0, "the child's request failed")
    check(c.health()["status"] == "ok" and c.transport.local_socket().getsockname() == local,
          "the parent's connection after fork")
    c.close()
    check(c.transport.local_socket() is None, "closed")
    check(c.health()["status"] == "ok", "a request after close reconnects")


def free_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


@tap.test
def reconnect_after_restart(d):
    port = free_port()
    with Daemon(ARGS["hpod"], extra_args=["--listen", "127.0.0.1:%d" % port]) as d2:
        check(d2.port == port, "fixed port %d, got %d" % (port, d2.port))
        c = client(d2, retries=3)
        s = c.create_study(name="rs", sampler={"type": "random", "seed": 1},
                           params=[{"name": "x", "type": "float", "low": 0, "high": 1}])
        s.ask().tell(0.5)
        check(c.transport.connections_opened == 1, "one connection")
        d2.stop()
        d2.start()
        check(d2.port == port, "same port after restart")
        # ask is never resent after it may have arrived; the stale connection is
        # noticed before sending, so it goes out once on a new one.
        t = s.ask()
        t.tell(0.25)
        check(c.transport.connections_opened == 2, "reconnected: %d" % c.transport.connections_opened)
        check([x.state for x in s.trials] == ["complete", "complete"] and t.number == 1,
              "no duplicate ask: %r" % [x.info for x in s.trials])
        d2.kill()
        d2.start()
        check(s.ask().number == 2 and len(s.trials) == 3, "after SIGKILL")
        check(c.transport.connections_opened == 3, "reconnected again")
        d2.stop()


class FakeServer:
    """A socket server on 127.0.0.1 that records request heads. mode:
    "answer" answers 200 {} and keeps the connection; "drop" reads a request
    and closes without answering; "once" answers the first request of each
    connection, then closes it."""

    def __init__(self, mode, tls=None):
        self.mode = mode
        self.tls = tls  # an ssl.SSLContext for the server side, or None
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.bodies = []
        self.connections = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(10)
        self.sock.close()

    def _serve(self):
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.connections += 1
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn):
        conn.settimeout(10)
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                return
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                n = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v)
                while len(buf) < n:
                    buf += conn.recv(65536)
                self.bodies.append(buf[:n])
                buf = buf[n:]
                self.heads.append(head.decode())
                if self.mode == "drop":
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
                if self.mode == "once":
                    time.sleep(0.05)
                    return


@tap.test
def resend_rules(d):
    # A lost answer: ask/enqueue/delete (idempotent=False) are not resent; tell is.
    with FakeServer(mode="drop") as fake:
        fc = hpod_client.Client("http://127.0.0.1:%d" % fake.port, retries=2, backoff=0.001)
        st = hpod_client.Study(fc, {"name": "s", "params": []})
        api_error("transport", st.ask, 0)
        check(len(fake.heads) == 1, "ask sent %d times" % len(fake.heads))
        t = hpod_client.Trial(st, {"number": 0})
        api_error("transport", lambda: t.tell(1.0), 0)
        check(len(fake.heads) == 4 and all("/tell" in h for h in fake.heads[1:]),
              "tell sent %d times" % (len(fake.heads) - 1))
    # The daemon closed the kept connection between requests: noticed before
    # sending, so even ask goes out once, on a new connection, and succeeds.
    with FakeServer(mode="once") as fake:
        fc = hpod_client.Client("http://127.0.0.1:%d" % fake.port, retries=0)
        fc.health()
        time.sleep(0.3)
        check(fc.request("POST", "/v1/studies/s/ask", idempotent=False) == {}, "ask after close")
        check(len(fake.heads) == 2 and fake.connections == 2 and fc.transport.connections_opened == 2,
              "%d requests over %d connections" % (len(fake.heads), fake.connections))


@tap.test
def patch_requests(d):
    # What set_user_attr sends (the daemon's PATCH may not be there yet: a fake answers).
    with FakeServer(mode="answer") as fake:
        fc = hpod_client.Client("http://127.0.0.1:%d" % fake.port, retries=0)
        st = hpod_client.Study(fc, {"name": "s/1", "params": []})
        t = hpod_client.Trial(st, {"number": 7, "user_attrs": {"a": 1, "b": 2}})
        t.set_user_attr("c", [1, "x"])
        t.set_user_attr("a", None)
        st.set_user_attr("owner", "me")
        lines = [h.split("\r\n")[0] for h in fake.heads]
        check(lines == ["PATCH /v1/studies/s%2F1/trials/7 HTTP/1.1"] * 2
              + ["PATCH /v1/studies/s%2F1 HTTP/1.1"], "requests %r" % lines)
        check([json.loads(b) for b in fake.bodies] == [{"user_attrs": {"c": [1, "x"]}},
                                                       {"user_attrs": {"a": None}},
                                                       {"user_attrs": {"owner": "me"}}],
              "bodies %r" % fake.bodies)
        # An answer without the trial: merged locally (None removes).
        check(t.user_attrs == {"b": 2, "c": [1, "x"]}, "local merge %r" % t.user_attrs)


@tap.test
def https_cafile(d):
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", key, "-out", cert], capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "openssl: %s" % p.stderr)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        with FakeServer(mode="answer", tls=ctx) as fake:
            u = "https://127.0.0.1:%d" % fake.port
            check(hpod_client.Client(u, cafile=cert, retries=0).health() == {}, "https with cafile")
            os.environ["HPOD_CACERT"] = cert
            try:
                ec = hpod_client.Client(u, retries=0)
            finally:
                del os.environ["HPOD_CACERT"]
            check(ec.health() == {} and ec.health() == {} and ec.transport.connections_opened == 1,
                  "https with $HPOD_CACERT, kept")
            e = api_error("transport", hpod_client.Client(u, retries=0).health, 0)
            check("CERTIFICATE_VERIFY_FAILED" in e.message, "unverified: %s" % e.message)


# --- install ----------------------------------------------------------------------

@tap.test
def install_paths(d):
    site_dir = os.path.join(PYDIR, "site_dir.py")
    probe = ("import site, sys; print('\\n'.join(site.getsitepackages()))")
    read = subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, text=True,
                          check=True).stdout.split()
    for prefix in ("/usr", "/usr/local"):
        out = subprocess.run(["/usr/bin/python3", site_dir, prefix], capture_output=True, text=True,
                             check=True).stdout.strip()
        check(out.startswith(prefix + "/lib/") and out in read,
              "prefix %s: %r not among %r" % (prefix, out, read))
    out = subprocess.run(["/usr/bin/python3", site_dir, "/opt/nowhere"], capture_output=True,
                         text=True, check=True).stdout.strip()
    check(out == "", "a prefix Python does not read: %r" % out)
    build = ARGS.get("build_root")
    if build and shutil.which("meson"):
        with tempfile.TemporaryDirectory() as dest:
            p = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", dest,
                                "--tags", "python-runtime"], capture_output=True, text=True,
                               timeout=120)
            check(p.returncode == 0, "meson install: %s%s" % (p.stdout, p.stderr))
            found = [os.path.join(r, "") for r, _, fs in os.walk(dest) if "__init__.py" in fs]
            check(len(found) == 1 and found[0].endswith("/hpod_client/"), "installed %r" % found)
            site = os.path.dirname(found[0].rstrip("/"))[len(dest):]
            check(site in read, "installed into %s, which /usr/bin/python3 does not read (%r)"
                  % (site, read))
            code = "import hpod_client, sys; print(hpod_client.__version__, hpod_client.__file__)"
            q = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                               env=dict(os.environ, PYTHONPATH=dest + site), cwd=dest)
            check(q.returncode == 0 and q.stdout.startswith(hpod_client.__version__ + " " + dest),
                  "import: %s%s" % (q.stdout, q.stderr))
    else:
        skip("no build root given: meson install not checked")


@tap.test
def pip_install_offline(d):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src")
        shutil.copytree(PYDIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                  "__pycache__"))
        target = os.path.join(tmp, "target")
        # --no-index: nothing may come from the network.
        p = subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "--no-build-isolation",
                            "--no-index", "--no-deps", "--target", target, src],
                           capture_output=True, text=True, timeout=300)
        check(p.returncode == 0, "pip install: %s%s" % (p.stdout, p.stderr))
        code = ("import hpod_client, hpod_client.trial; print(hpod_client.__version__, "
                "hpod_client.__file__)")
        q = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=target), cwd=tmp)
        check(q.returncode == 0 and q.stdout.split()[0] == hpod_client.__version__
              and q.stdout.split()[1].startswith(target), "import: %s%s" % (q.stdout, q.stderr))
        check(os.path.exists(os.path.join(target, "hpod_client", "py.typed")), "py.typed")


@tap.test
def binary_vectors(d):
    """A vector over the inline size in binary: vector_array() fills an array.array("d")
    from the socket, byte for byte the daemon's vector, and vector() is the same as a
    list; put_gradient takes a list, an array.array, a numpy array (sent from its own
    memory), a strided or float32 array (converted): each steps its study to E6's first
    Adam step (docs/ALGORITHMS.md §7.7), the float64 ones bit for bit alike."""
    import array
    import numpy as np
    n = 200000
    c = client(d)
    e6 = np.array([1.0, 1.105170915129, 1.105170916970, 1.105170917486,
                   1.105170917707])[np.arange(n) % 5]
    nxt = {}
    for kind in ("list", "array", "numpy", "strided", "float32"):
        s = c.create_study(name="bin-" + kind, params=[
            {"name": "lam", "type": "float", "low": 1e-3, "high": 1e3, "log": True, "size": n}],
            sampler={"type": "gradient", "optimizer": "adam", "lr": 0.1, "seed": 1})
        t = s.ask()
        got = t.vector_array("lam")
        raw = d.get(t.params["lam"]["href"]).body
        check(isinstance(got, array.array) and got.typecode == "d" and got.tobytes() == raw
              and len(raw) == 8 * n, "%s: vector_array differs from the download" % kind)
        check(t.vector("lam") == got.tolist(), "%s: vector() differs" % kind)
        lam = np.asarray(got)
        a = 2.0 + np.arange(n) % 5
        g = -(a / (1.0 + lam) - 1.0) * a / (1.0 + lam) ** 2
        values = {"list": g.tolist(), "array": array.array("d", g), "numpy": g,
                  "strided": np.repeat(g, 2)[::2], "float32": g.astype(np.float32)}[kind]
        t.put_gradient("lam", values)
        t.tell(0.0)
        nxt[kind] = s.ask().vector_array("lam")
        err = float(np.max(np.abs(np.asarray(nxt[kind]) - e6)))
        check(err < 1e-9, "%s: E6 step 1 max |err| %.3g" % (kind, err))
    check(all(nxt[k] == nxt["list"] for k in ("array", "numpy", "strided")),
          "float64 uploads of the same gradient stepped apart")


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: %s PATH/TO/hpod [MESON_BUILD_ROOT]\n" % sys.argv[0])
        return 2
    ARGS["hpod"] = os.path.abspath(sys.argv[1])
    ARGS["build_root"] = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
    with Daemon(ARGS["hpod"]) as d:
        rc = tap.run(d)
        d.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
