"""objectives.py: the benchmark functions of docs/ALGORITHMS.md §8, shared by
the quality drivers (all minimized).

OBJECTIVES maps a name to an Objective: the hpod search space (docs/REFERENCE.md
param definitions), f(params dict) -> value, and the known optimum f*. The same
space drives Optuna through optuna_suggest(), which honours `when`.

Standard library only; Debian's /usr/bin/python3.
"""

import math
from collections import namedtuple

Objective = namedtuple("Objective", "name space f optimum")


def branin(x1, x2):
    b, c, r, s, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


H_ALPHA = (1.0, 1.2, 3.0, 3.2)
H3_A = ((3, 10, 30), (0.1, 10, 35), (3, 10, 30), (0.1, 10, 35))
H3_P = ((3689, 1170, 2673), (4699, 4387, 7470), (1091, 8732, 5547), (381, 5743, 8828))
H6_A = ((10, 3, 17, 3.5, 1.7, 8), (0.05, 10, 17, 0.1, 8, 14), (3, 3.5, 1.7, 10, 17, 8),
        (17, 8, 0.05, 10, 0.1, 14))
H6_P = ((1312, 1696, 5569, 124, 8283, 5886), (2329, 4135, 8307, 3736, 1004, 9991),
        (2348, 1451, 3522, 2883, 3047, 6650), (4047, 8828, 8732, 5743, 1091, 381))


def hartmann(x, A, P):
    return -sum(H_ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j] * 1e-4) ** 2
                                          for j in range(len(x)))) for i in range(4))


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (x[i] - 1) ** 2 for i in range(len(x) - 1))


def ackley(x):
    d = len(x)
    return (-20 * math.exp(-0.2 * math.sqrt(sum(v * v for v in x) / d))
            - math.exp(sum(math.cos(2 * math.pi * v) for v in x) / d) + 20 + math.e)


def levy(x):
    w = [1 + (v - 1) / 4 for v in x]
    s = math.sin(math.pi * w[0]) ** 2
    for i in range(len(w) - 1):
        s += (w[i] - 1) ** 2 * (1 + 10 * math.sin(math.pi * w[i] + 1) ** 2)
    return s + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)


def styblinski_tang(x):
    return 0.5 * sum(v ** 4 - 16 * v * v + 5 * v for v in x)


MIXED_OFF = {"adam": 0.5, "sgd": 0.0, "rmsprop": 1.0, "adagrad": 2.0}


def mixed(p):
    """hpod's mixed function: log, int, categorical and a conditional param."""
    f = branin(p["x1"], p["x2"]) + (math.log10(p["lr"]) + 3) ** 2 + 0.1 * (p["k"] - 7) ** 2
    f += MIXED_OFF[p["opt"]]
    if p["opt"] in ("sgd", "rmsprop"):
        f += (p["mom"] - 0.9) ** 2
    return f


def _floats(d, lo, hi):
    return [{"name": "x%d" % i, "type": "float", "low": lo, "high": hi} for i in range(d)]


def _vec(d, fn):
    return lambda p: fn([p["x%d" % i] for i in range(d)])


BRANIN_SPACE = [{"name": "x1", "type": "float", "low": -5, "high": 10},
                {"name": "x2", "type": "float", "low": 0, "high": 15}]
MIXED_SPACE = BRANIN_SPACE + [
    {"name": "lr", "type": "float", "low": 1e-5, "high": 1, "log": True},
    {"name": "k", "type": "int", "low": 0, "high": 10},
    {"name": "opt", "type": "categorical", "choices": ["adam", "sgd", "rmsprop", "adagrad"]},
    {"name": "mom", "type": "float", "low": 0, "high": 1, "when": {"opt": ["sgd", "rmsprop"]}},
]

_LIST = [
    Objective("branin", BRANIN_SPACE, lambda p: branin(p["x1"], p["x2"]), 0.397887357729738),
    Objective("hartmann3", _floats(3, 0, 1), _vec(3, lambda x: hartmann(x, H3_A, H3_P)),
              -3.862779787),
    Objective("hartmann6", _floats(6, 0, 1), _vec(6, lambda x: hartmann(x, H6_A, H6_P)),
              -3.32236801141551),
    Objective("rosenbrock5", _floats(5, -5, 10), _vec(5, rosenbrock), 0.0),
    Objective("ackley5", _floats(5, -32.768, 32.768), _vec(5, ackley), 0.0),
    Objective("ackley10", _floats(10, -32.768, 32.768), _vec(10, ackley), 0.0),
    Objective("levy5", _floats(5, -10, 10), _vec(5, levy), 0.0),
    Objective("styblinski_tang5", _floats(5, -5, 5), _vec(5, styblinski_tang),
              -39.166165703771 * 5),
    Objective("mixed", MIXED_SPACE, mixed, 0.397887357729738),
]
OBJECTIVES = {o.name: o for o in _LIST}


def optuna_suggest(trial, space):
    """Ask an Optuna trial for every active param of an hpod space, in order."""
    p = {}
    for d in space:
        when = d.get("when")
        if when and not all(p.get(k) in v for k, v in when.items()):
            continue
        if d["type"] == "float":
            p[d["name"]] = trial.suggest_float(d["name"], d["low"], d["high"],
                                               log=d.get("log", False), step=d.get("step"))
        elif d["type"] == "int":
            p[d["name"]] = trial.suggest_int(d["name"], d["low"], d["high"],
                                             step=d.get("step", 1), log=d.get("log", False))
        else:
            p[d["name"]] = trial.suggest_categorical(d["name"], d["choices"])
    return p


def _selfcheck():
    """The optima of section 8 (run this file to check them)."""
    assert abs(branin(-math.pi, 12.275) - 0.397887357729738) < 1e-9
    assert abs(hartmann([0.114589, 0.555649, 0.852547], H3_A, H3_P) + 3.862779787) < 1e-5
    assert abs(hartmann([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573],
                        H6_A, H6_P) + 3.32236801141551) < 1e-5
    assert rosenbrock([1.0] * 5) == 0.0
    assert abs(ackley([0.0] * 5)) < 1e-12
    assert abs(levy([1.0] * 5)) < 1e-12
    assert abs(styblinski_tang([-2.903534027771178] * 5) + 39.166165703771 * 5) < 1e-9
    assert abs(mixed({"x1": math.pi, "x2": 2.275, "lr": 1e-3, "k": 7, "opt": "sgd",
                      "mom": 0.9}) - 0.397887357729738) < 1e-9
    print("objectives: optima check out")


if __name__ == "__main__":
    _selfcheck()
