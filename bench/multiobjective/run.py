#!/usr/bin/python3
"""run.py: final hypervolume of multi-objective samplers on the docs/ALGORITHMS.md §9.6 problems
(bench/multiobjective/problems.py), median over seeds.

Every sampler is driven through the same ask/tell adapter (OptunaAdapter
here); an hpod adapter only needs ask() -> (handle, params dict) and
tell(handle, values tuple, constraint values tuple), see `run_one`.
The hypervolume counts feasible trials only, against the problem's fixed
reference point; "ratio" is HV / HV(true front).

  /usr/bin/python3 bench/multiobjective/run.py --seeds 10 --trials 200
  /usr/bin/python3 bench/multiobjective/run.py --problems zdt1,binh_korn --samplers optuna-nsga2
  /usr/bin/python3 bench/multiobjective/run.py --hpod build/daemon/hpod \
      --samplers hpod-nsga2,hpod-random,optuna-nsga2,optuna-random
"""

import argparse
import os
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from problems import feasible, hypervolume, make_problems  # noqa: E402


class OptunaAdapter:
    """Optuna 3.1 through its ask/tell interface. Constraint values are passed
    to the sampler's constraints_func through a user attribute."""

    def __init__(self, problem, kind, seed):
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.simplefilter("ignore")
        self.optuna = optuna
        cf = None
        if problem.constraints:
            limits = [c["max"] for c in problem.constraints]

            def cf(trial):
                return [v - b for v, b in zip(trial.user_attrs["constraints"], limits)]
        if kind == "nsga2":
            sampler = optuna.samplers.NSGAIISampler(seed=seed, constraints_func=cf)
        elif kind == "nsga2-indep":
            # Optuna 3.1 seeds its RandomSampler (first generation, mutations) and the
            # NSGA-II choices (crossover, tournaments, mutation draws) with the same seed:
            # two identical MT19937 streams. This variant reseeds the RandomSampler with
            # an unrelated seed, to show what that correlation does (README).
            sampler = optuna.samplers.NSGAIISampler(seed=seed, constraints_func=cf)
            sampler._random_sampler = optuna.samplers.RandomSampler(seed=(seed + 7919 * 1000003) % 2**32)
        elif kind == "tpe":
            sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=cf)
        elif kind == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            raise ValueError(kind)
        self.study = optuna.create_study(directions=["minimize"] * len(problem.objectives),
                                         sampler=sampler)
        self.dists = {p["name"]: optuna.distributions.FloatDistribution(p["low"], p["high"])
                      for p in problem.space}

    def ask(self):
        trial = self.study.ask(self.dists)
        return trial, dict(trial.params)

    def tell(self, handle, values, constraints):
        handle.set_user_attr("constraints", list(constraints))
        self.study.tell(handle, list(values))


class CoreNsga2Adapter:
    """hpod's NSGA-II core (core/mo-nsga2.c: hpo_nsga2_child) through ctypes,
    before the service exposes it: a check that the C algorithm matches
    Optuna's. Sequential, so told_at = number + 1. Needs a shared build of
    core, named by $HPOD_CORE_SO:
      cc -shared -o /tmp/libhpo-mo.so -Wl,--whole-archive build/core/libhpo-core.a \
         -Wl,--no-whole-archive $(pkg-config --libs jansson) -lm -lpthread
    """

    def __init__(self, problem, seed):
        import ctypes as C

        class Trial(C.Structure):
            _fields_ = [("number", C.c_uint64), ("told_at", C.c_uint64),
                        ("loss", C.POINTER(C.c_double)), ("violation", C.c_double),
                        ("u", C.POINTER(C.c_double))]

        class Options(C.Structure):
            _fields_ = [("population_size", C.c_size_t), ("crossover_prob", C.c_double),
                        ("swapping_prob", C.c_double), ("mutation_prob", C.c_double),
                        ("constrained", C.c_int)]

        self.C, self.Trial = C, Trial
        self.lib = C.CDLL(os.environ.get("HPOD_CORE_SO", "/tmp/libhpo-mo.so"))
        self.lib.hpo_nsga2_child.restype = C.c_int
        self.opt = Options()
        self.lib.hpo_nsga2_defaults(C.byref(self.opt))
        self.opt.constrained = 1 if problem.constraints else 0
        self.problem, self.seed = problem, seed
        self.m, self.d = len(problem.objectives), len(problem.space)
        self.keep = []  # ctypes buffers the trials point into
        self.trials = []
        self.next = 0

    def ask(self):
        C = self.C
        arr = (self.Trial * max(1, len(self.trials)))(*self.trials)
        u = (C.c_double * self.d)()
        rc = self.lib.hpo_nsga2_child(C.byref(self.opt), arr, C.c_size_t(len(self.trials)),
                                      C.c_uint(self.m), C.c_uint(self.d),
                                      C.c_uint64(self.seed), C.c_uint64(self.next), u, None)
        if rc != 0:
            raise RuntimeError("hpo_nsga2_child: %d" % rc)
        number = self.next
        self.next += 1
        params = {p["name"]: p["low"] + u[j] * (p["high"] - p["low"])
                  for j, p in enumerate(self.problem.space)}
        return (number, u), params

    def tell(self, handle, values, constraints):
        C = self.C
        number, u = handle
        loss = (C.c_double * self.m)(*values)
        viol = sum(max(c - b["max"], 0.0) for c, b in zip(constraints, self.problem.constraints))
        self.keep.append((loss, u))
        self.trials.append(self.Trial(number, self.next, C.cast(loss, C.POINTER(C.c_double)),
                                      viol, C.cast(u, C.POINTER(C.c_double))))


class HpodAdapter:
    """A study on a running hpod (REST ask/tell, one keep-alive connection):
    objectives o0..o(m-1) minimized, the problem's constraints declared as
    {"name", "max"}. The daemon: --hpod PATH starts one on a temporary
    database (127.0.0.1, a free port), or $HPOD_URL names one."""
    url = None
    count = 0

    def __init__(self, problem, kind, seed):
        import http.client
        import urllib.parse
        u = urllib.parse.urlparse(HpodAdapter.url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        HpodAdapter.count += 1
        self.name = "%s-%s-%d-%d-%d" % (problem.name, kind, seed, os.getpid(), HpodAdapter.count)
        self.objs = ["o%d" % i for i in range(len(problem.objectives))]
        body = {"name": self.name, "params": problem.space,
                "objectives": [{"name": o, "direction": "minimize"} for o in self.objs],
                "sampler": {"type": kind, "seed": seed}}
        if problem.constraints:
            body["constraints"] = [{"name": c["name"], "max": c["max"]}
                                   for c in problem.constraints]
        self.cons = [c["name"] for c in problem.constraints]
        self._req("POST", "/v1/studies", body, 201)

    def _req(self, method, path, body, want):
        import json
        self.conn.request(method, path, body=json.dumps(body),
                          headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status != want:
            raise RuntimeError("%s %s -> %d %s" % (method, path, r.status, data[:300]))
        return json.loads(data)

    def ask(self):
        t = self._req("POST", "/v1/studies/%s/ask" % self.name, {}, 201)
        return t["number"], t["params"]

    def tell(self, handle, values, constraints):
        body = {"values": dict(zip(self.objs, values))}
        if self.cons:
            body["constraints"] = dict(zip(self.cons, constraints))
        self._req("POST", "/v1/studies/%s/trials/%d/tell" % (self.name, handle), body, 200)


def start_hpod(exe):
    """Start hpod on a temporary database; returns (process, URL)."""
    import re
    import subprocess
    import tempfile
    tmp = tempfile.mkdtemp(prefix="hpod-bench-mo-")
    proc = subprocess.Popen([exe, "--listen", "127.0.0.1:0", "--db", os.path.join(tmp, "hpod.db"),
                             "--log-level", "notice"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"listening on (http://[0-9.]+:[0-9]+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("hpod did not start")


SAMPLERS = {
    "core-nsga2": CoreNsga2Adapter,
    "optuna-nsga2": lambda prob, seed: OptunaAdapter(prob, "nsga2", seed),
    "optuna-nsga2-indep": lambda prob, seed: OptunaAdapter(prob, "nsga2-indep", seed),
    "optuna-tpe": lambda prob, seed: OptunaAdapter(prob, "tpe", seed),
    "optuna-random": lambda prob, seed: OptunaAdapter(prob, "random", seed),
    "hpod-nsga2": lambda prob, seed: HpodAdapter(prob, "nsga2", seed),
    "hpod-random": lambda prob, seed: HpodAdapter(prob, "random", seed),
    "hpod-tpe": lambda prob, seed: HpodAdapter(prob, "tpe", seed),
    "hpod-gp": lambda prob, seed: HpodAdapter(prob, "gp", seed),
}


def run_one(adapter, problem, n_trials):
    """Ask/tell n_trials sequentially; returns (HV of the feasible trials, seconds)."""
    t0 = time.perf_counter()
    feasible_values = []
    for _ in range(n_trials):
        handle, params = adapter.ask()
        values, constraints = problem.f(params)
        adapter.tell(handle, values, constraints)
        if feasible(problem, constraints):
            feasible_values.append(values)
    return hypervolume(feasible_values, problem.ref), time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--problems", default="zdt1,zdt2,zdt3,dtlz2,binh_korn")
    ap.add_argument("--samplers", default="optuna-nsga2,optuna-tpe,optuna-random")
    ap.add_argument("--zdt-n", type=int, default=30)
    ap.add_argument("--json", help="also write every seed's HV to this file "
                    "({problem: {sampler: [hv per seed]}})")
    ap.add_argument("--hpod", help="hpod binary to start for the hpod-* samplers "
                    "(else $HPOD_URL)")
    args = ap.parse_args()
    proc = None
    if args.hpod:
        proc, HpodAdapter.url = start_hpod(args.hpod)
    else:
        HpodAdapter.url = os.environ.get("HPOD_URL", "http://127.0.0.1:8080")
    try:
        run_all(args)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


def run_all(args):
    problems = make_problems(zdt_n=args.zdt_n)
    samplers = args.samplers.split(",")
    print("trials %d, seeds 0..%d, ZDT n = %d; median HV (ratio to true front) [s per run]"
          % (args.trials, args.seeds - 1, args.zdt_n))
    print("%-10s %-8s" % ("problem", "ref") + "".join("%-30s" % s for s in samplers))
    per_seed = {}
    for pname in args.problems.split(","):
        prob = problems[pname]
        cells = []
        for sname in samplers:
            hvs, secs = [], []
            for seed in range(args.seeds):
                hv, dt = run_one(SAMPLERS[sname](prob, seed), prob, args.trials)
                hvs.append(hv)
                secs.append(dt)
            med = statistics.median(hvs)
            per_seed.setdefault(pname, {})[sname] = hvs
            cells.append("%-30s" % ("%.6g (%.4f) [%.1f]" % (med, med / prob.true_hv,
                                                            statistics.mean(secs))))
        print("%-10s %-8s" % (pname, ",".join("%g" % r for r in prob.ref)) + "".join(cells),
              flush=True)
        if args.json:
            import json
            with open(args.json, "w") as f:
                json.dump(per_seed, f)


if __name__ == "__main__":
    main()
