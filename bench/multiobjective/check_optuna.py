#!/usr/bin/python3
"""check_optuna.py: hpod's NSGA-II core (core/mo-nsga2.c) against Optuna 3.1's NSGAIISampler,
step by step rather than by final hypervolume.

1. selection: run Optuna's NSGA-II on a problem, then ask hpod's hpo_nsga2_parents for the
   same generation from the same history; compare with the population Optuna cached (the
   last generation's). Differences can only be exact duplicate trials (tie order).
2. children: from one Optuna history, draw N children with Optuna's sample_relative
   (+ RandomSampler for dropped params, on an independent stream) and N with
   hpo_nsga2_child; compare each objective's distribution (Kolmogorov-Smirnov, Mann-Whitney).

Needs a shared build of core (as run.py's core-nsga2):
  cc -shared -o /tmp/libhpo-mo.so -Wl,--whole-archive build/core/libhpo-core.a \\
     -Wl,--no-whole-archive $(pkg-config --libs jansson) -lm -lpthread
  /usr/bin/python3 bench/multiobjective/check_optuna.py selection zdt1,dtlz2,binh_korn 5
  /usr/bin/python3 bench/multiobjective/check_optuna.py children zdt1 3000 150
"""

import ctypes as C
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from problems import make_problems  # noqa: E402


class Trial(C.Structure):
    _fields_ = [("number", C.c_uint64), ("told_at", C.c_uint64),
                ("loss", C.POINTER(C.c_double)), ("violation", C.c_double),
                ("u", C.POINTER(C.c_double))]


class Options(C.Structure):
    _fields_ = [("population_size", C.c_size_t), ("crossover_prob", C.c_double),
                ("swapping_prob", C.c_double), ("mutation_prob", C.c_double),
                ("constrained", C.c_int)]


def optuna_history(prob, seed, n):
    """An Optuna NSGA-II study on prob after n sequential trials."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    cf = None
    if prob.constraints:
        limits = [c["max"] for c in prob.constraints]

        def cf(t):
            return [v - b for v, b in zip(t.user_attrs["constraints"], limits)]
    st = optuna.create_study(directions=["minimize"] * len(prob.objectives),
                             sampler=optuna.samplers.NSGAIISampler(seed=seed,
                                                                   constraints_func=cf))
    dists = {p["name"]: optuna.distributions.FloatDistribution(p["low"], p["high"])
             for p in prob.space}
    for _ in range(n):
        t = st.ask(dists)
        vals, cons = prob.f(t.params)
        t.set_user_attr("constraints", list(cons))
        st.tell(t, list(vals))
    return st


def c_trials(prob, trials):
    """The history as struct hpo_mo_trial (told in order: told_at = number + 1)."""
    m, d = len(prob.objectives), len(prob.space)
    arr, keep = (Trial * len(trials))(), []
    for i, t in enumerate(trials):
        loss = (C.c_double * m)(*t.values)
        u = (C.c_double * d)(*[(t.params[p["name"]] - p["low"]) / (p["high"] - p["low"])
                               for p in prob.space])
        viol = sum(max(c - b["max"], 0.0)
                   for c, b in zip(t.user_attrs["constraints"], prob.constraints))
        keep.append((loss, u))
        arr[i] = Trial(t.number, t.number + 1, C.cast(loss, C.POINTER(C.c_double)), viol,
                       C.cast(u, C.POINTER(C.c_double)))
    return arr, keep


def options(lib, prob):
    opt = Options()
    lib.hpo_nsga2_defaults(C.byref(opt))
    opt.constrained = 1 if prob.constraints else 0
    return opt


def selection(lib, problems, seeds):
    probs = make_problems()
    total = differ = 0
    for pname in problems.split(","):
        prob = probs[pname]
        for seed in range(seeds):
            st = optuna_history(prob, seed, 250)
            trials = st.get_trials()
            arr, _keep = c_trials(prob, trials)
            opt = options(lib, prob)
            for key, (gen, nums) in st._storage.get_study_system_attrs(st._study_id).items():
                if not key.startswith("nsga2:population"):
                    continue
                out, cnt = (C.c_uint64 * opt.population_size)(), C.c_size_t()
                rc = lib.hpo_nsga2_parents(C.byref(opt), arr, C.c_size_t(len(trials)),
                                           C.c_uint(len(prob.objectives)), C.c_uint64(gen + 1),
                                           out, C.byref(cnt))
                assert rc == 0, rc
                mine = sorted(out[i] for i in range(cnt.value))
                total += 1
                if mine != sorted(nums):
                    differ += 1
                    only_c = sorted(set(mine) - set(nums))
                    only_o = sorted(set(nums) - set(mine))
                    dup = all(any(trials[a].values == trials[b].values for b in only_o)
                              for a in only_c)
                    print("%s seed %d generation %d: hpod-only %s, Optuna-only %s%s"
                          % (pname, seed, gen + 1, only_c, only_o,
                             " (exact duplicates)" if dup else ""))
    print("selection: %d populations compared, %d differ" % (total, differ))


def children(lib, pname, n, history):
    from scipy.stats import ks_2samp, mannwhitneyu
    prob = make_problems()[pname]
    st = optuna_history(prob, 0, history)
    trials = st.get_trials()
    names = [p["name"] for p in prob.space]
    samp = st.sampler
    asked = st.ask()
    ft = st._storage.get_trial(asked._trial_id)
    space = samp.infer_relative_search_space(st, ft)
    opt_values = []
    for i in range(n):
        samp._rng = np.random.RandomState(1000 + i)
        rs = np.random.RandomState(900000 + i)
        rel = samp.sample_relative(st, ft, space)
        x = {p["name"]: rel[p["name"]] if p["name"] in rel else rs.uniform(p["low"], p["high"])
             for p in prob.space}
        opt_values.append(prob.f(x)[0])
    arr, _keep = c_trials(prob, trials)
    opt = options(lib, prob)
    d = len(names)
    out = (C.c_double * d)()
    hpod_values = []
    for i in range(n):
        rc = lib.hpo_nsga2_child(C.byref(opt), arr, C.c_size_t(len(trials)),
                                 C.c_uint(len(prob.objectives)), C.c_uint(d),
                                 C.c_uint64(5000 + i), C.c_uint64(history), out, None)
        assert rc == 0, rc
        hpod_values.append(prob.f({p["name"]: p["low"] + out[j] * (p["high"] - p["low"])
                                   for j, p in enumerate(prob.space)})[0])
    for k in range(len(prob.objectives)):
        a = [v[k] for v in opt_values]
        b = [v[k] for v in hpod_values]
        print("children of trial %d, objective %d: Optuna mean %.4f, hpod mean %.4f, "
              "KS p=%.3f, Mann-Whitney p=%.3f" % (history, k, np.mean(a), np.mean(b),
                                                  ks_2samp(a, b).pvalue,
                                                  mannwhitneyu(a, b).pvalue))


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("selection", "children"):
        sys.stderr.write(__doc__)
        return 2
    lib = C.CDLL(os.environ.get("HPOD_CORE_SO", "/tmp/libhpo-mo.so"))
    if sys.argv[1] == "selection":
        selection(lib, sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    else:
        children(lib, sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3000,
                 int(sys.argv[4]) if len(sys.argv) > 4 else 150)
    return 0


if __name__ == "__main__":
    sys.exit(main())
