"""problems.py: the multi-objective test problems of docs/ALGORITHMS.md §9.6 (all
minimized), their reference points and the exact hypervolumes of their true
fronts, plus an exact hypervolume for the benchmark's own use.

Problem fields: name, space (hpod param definitions, docs/REFERENCE.md),
f(params dict) -> (objective values tuple, constraint values tuple), the
objective names, the constraints as a study declares them ({"name", "max"}), the
reference point and HV(true front; reference point) from docs/ALGORITHMS.md §9.6.

Standard library only; Debian's /usr/bin/python3. Run it to self-check.
"""

import math
from collections import namedtuple

Problem = namedtuple("Problem", "name space f objectives constraints ref true_hv")


def _unit_space(n):
    return [{"name": "x%d" % i, "type": "float", "low": 0.0, "high": 1.0} for i in range(n)]


def _xs(params, n):
    return [params["x%d" % i] for i in range(n)]


def _zdt_g(x):
    return 1.0 + 9.0 * sum(x[1:]) / (len(x) - 1)


def zdt1(x):
    g = _zdt_g(x)
    return (x[0], g * (1.0 - math.sqrt(x[0] / g)))


def zdt2(x):
    g = _zdt_g(x)
    return (x[0], g * (1.0 - (x[0] / g) ** 2))


def zdt3(x):
    g = _zdt_g(x)
    h = 1.0 - math.sqrt(x[0] / g) - (x[0] / g) * math.sin(10.0 * math.pi * x[0])
    return (x[0], g * h)


def dtlz2(x, m=3):
    g = sum((xi - 0.5) ** 2 for xi in x[m - 1:])
    f = []
    for i in range(m):
        v = 1.0 + g
        for j in range(m - 1 - i):
            v *= math.cos(0.5 * math.pi * x[j])
        if i > 0:
            v *= math.sin(0.5 * math.pi * x[m - 1 - i])
        f.append(v)
    return tuple(f)


def binh_korn(x, y):
    """Optuna FAQ's Binh-Korn: objectives and constraint values (feasible iff <= 0)."""
    f = (4 * x * x + 4 * y * y, (x - 5) ** 2 + (y - 5) ** 2)
    c = ((x - 5) ** 2 + y * y - 25, -(x - 8) ** 2 - (y + 3) ** 2 + 7.7)
    return f, c


def _unconstrained(name, n, fn, m, ref, true_hv):
    def f(params):
        return fn(_xs(params, n)), ()
    objectives = ["f%d" % (i + 1) for i in range(m)]
    return Problem(name, _unit_space(n), f, objectives, [], ref, true_hv)


def make_problems(zdt_n=30, dtlz_n=12):
    """The five benchmark problems. ZDT: n = zdt_n (30 as in Zitzler et al.),
    r = (11, 11); DTLZ2: M = 3, n = dtlz_n (k = 10), r = (1.1, 1.1, 1.1);
    Binh-Korn (Optuna box [-15, 30]^2): r = (200, 50). HVs of the true fronts
    from the docs/ALGORITHMS.md §9.6 table."""
    probs = [
        _unconstrained("zdt1", zdt_n, zdt1, 2, (11.0, 11.0), 120.666666666667),
        _unconstrained("zdt2", zdt_n, zdt2, 2, (11.0, 11.0), 120.333333333333),
        _unconstrained("zdt3", zdt_n, zdt3, 2, (11.0, 11.0), 128.778116130691),
        _unconstrained("dtlz2", dtlz_n, dtlz2, 3, (1.1, 1.1, 1.1), 0.807401224402),
    ]

    def bk(params):
        f, c = binh_korn(params["x"], params["y"])
        # Declared constraints {"name": "c0", "max": 0}: the told value is c itself.
        return f, c
    space = [{"name": "x", "type": "float", "low": -15.0, "high": 30.0},
             {"name": "y", "type": "float", "low": -15.0, "high": 30.0}]
    probs.append(Problem("binh_korn", space, bk, ["f1", "f2"],
                         [{"name": "c0", "max": 0.0}, {"name": "c1", "max": 0.0}],
                         (200.0, 50.0), 10000.0 - 5000.0 / 3.0))
    return {p.name: p for p in probs}


def feasible(problem, constraint_values):
    return all(c <= b["max"] for c, b in zip(constraint_values, problem.constraints))


def hypervolume(points, ref):
    """Exact hypervolume of minimized `points` w.r.t. `ref` (points not strictly
    below ref in every objective are ignored): 2-D sweep, otherwise slicing on
    the last objective (fine for the benchmark's few hundred points, M <= 3)."""
    pts = [tuple(p) for p in points if all(a < r for a, r in zip(p, ref))]
    if not pts:
        return 0.0
    m = len(ref)
    if m == 1:
        return ref[0] - min(p[0] for p in pts)
    if m == 2:
        pts.sort()
        hv, ymin = 0.0, ref[1]
        for x, y in pts:
            if y < ymin:
                hv += (ref[0] - x) * (ymin - y)
                ymin = y
        return hv
    pts.sort(key=lambda p: p[-1])
    hv = 0.0
    for i, p in enumerate(pts):
        top = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if top > p[-1]:
            hv += hypervolume([q[:-1] for q in pts[:i + 1]], ref[:-1]) * (top - p[-1])
    return hv


def _check():
    probs = make_problems(zdt_n=5)
    # Points on the true fronts (x_2..n = 0 / 0.5) reach the table's HVs.
    k = 2001
    front = [zdt1([i / (k - 1)] + [0.0] * 4) for i in range(k)]
    assert abs(hypervolume(front, (11, 11)) - probs["zdt1"].true_hv) < 1e-2
    front = [zdt2([i / (k - 1)] + [0.0] * 4) for i in range(k)]
    assert abs(hypervolume(front, (11, 11)) - probs["zdt2"].true_hv) < 1e-2
    front = [zdt3([i / (k - 1)] + [0.0] * 4) for i in range(k)]
    assert abs(hypervolume(front, (11, 11)) - probs["zdt3"].true_hv) < 1e-2
    p = dtlz2([0.3, 0.7] + [0.5] * 10)
    assert abs(sum(v * v for v in p) - 1.0) < 1e-12
    assert abs(hypervolume([(1, 2, 3), (2, 3, 1), (3, 1, 2)], (4, 4, 4)) - 13.0) < 1e-12
    f, c = binh_korn(2.0, 2.0)
    assert f == (32.0, 18.0) and all(v <= 0 for v in c)
    print("problems.py: ok")


if __name__ == "__main__":
    _check()
