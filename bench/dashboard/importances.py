#!/usr/bin/python3
"""importances.py: hpod's PED-ANOVA importances against Optuna 4's evaluator, same trials.

Usage: bench/dashboard/importances.py HPOD --optuna-src DIR [--trials 300] [--seed 0]

DIR holds an Optuna 4 source tree (its `optuna` package; Debian ships Optuna 3.1, which
has no PedAnovaImportanceEvaluator). An Optuna study with RandomSampler(seed) runs a
benchmark function over a float, a log float, an int, a log int, a stepped float and a
categorical; its complete trials are recorded into hpod (POST .../trials with value), and
GET /v1/studies/{s}/importances is compared with
PedAnovaImportanceEvaluator().evaluate(study) param by param (relative difference).
"""
import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hpodtest import Daemon  # noqa: E402

SPACE = [
    {"name": "x", "type": "float", "low": -10, "high": 10},
    {"name": "lr", "type": "float", "low": 1e-5, "high": 1.0, "log": True},
    {"name": "z", "type": "int", "low": 0, "high": 10},
    {"name": "units", "type": "int", "low": 16, "high": 512, "log": True},
    {"name": "drop", "type": "float", "low": 0.0, "high": 0.5, "step": 0.05},
    {"name": "opt", "type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
]


def objective(t):
    x = t.suggest_float("x", -10, 10)
    lr = t.suggest_float("lr", 1e-5, 1.0, log=True)
    z = t.suggest_int("z", 0, 10)
    units = t.suggest_int("units", 16, 512, log=True)
    drop = t.suggest_float("drop", 0.0, 0.5, step=0.05)
    opt = t.suggest_categorical("opt", ["adam", "sgd", "rmsprop"])
    return (x ** 2 / 10 + (math.log10(lr) + 2) ** 2 + 0.05 * z + 0.2 * abs(math.log2(units) - 7)
            + 0.5 * (drop - 0.2) ** 2 + {"adam": 0.0, "sgd": 1.0, "rmsprop": 0.3}[opt])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hpod")
    ap.add_argument("--optuna-src", required=True)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, args.optuna_src)
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings
    warnings.simplefilter("ignore")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    study.optimize(objective, n_trials=args.trials)
    want = PedAnovaImportanceEvaluator().evaluate(study)
    with Daemon(args.hpod) as d:
        d.post("/v1/studies", {"name": "imp", "params": SPACE, "sampler": {"type": "random"}}).expect(201)
        for t in study.trials:
            d.post("/v1/studies/imp/trials", {"params": t.params, "value": t.value}).expect(201)
        got = d.get("/v1/studies/imp/importances").expect(200)
    have = {e["param"]: e["importance"] for e in got["importances"]}
    print("Optuna %s, %d trials (seed %d), %d top trials" % (optuna.__version__, args.trials, args.seed,
                                                            got["top_trials"]))
    print("%-6s %14s %14s %10s" % ("param", "optuna", "hpod", "rel.diff"))
    worst = 0.0
    for name in want:
        w, h = want[name], have[name]
        rel = abs(w - h) / max(abs(w), 1e-300)
        worst = max(worst, rel)
        print("%-6s %14.8g %14.8g %10.2e" % (name, w, h, rel))
    order_same = sorted(want, key=lambda k: -want[k]) == sorted(have, key=lambda k: -have[k])
    print("same ranking: %s; largest relative difference: %.2e" % (order_same, worst))


if __name__ == "__main__":
    main()
