#!/usr/bin/python3
"""python_sklearn.py: tune a scikit-learn classifier with hpod's Python client.

    hpod --listen 127.0.0.1:8080 --db /tmp/hpod.db &
    HPOD_URL=http://127.0.0.1:8080 /usr/bin/python3 examples/python_sklearn.py [N_TRIALS]

An SGD classifier on the digits data set, trained epoch by epoch with
partial_fit; each epoch's validation accuracy is reported, and the median
pruner stops trials that fall behind. Two trials run at once (threads).
hpod_client is found installed, or next to this file in ../client/python.
"""

import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(HERE, "..", "client", "python"))

import hpod_client  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import SGDClassifier  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

EPOCHS = 10


def main():
    n_trials = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    X, y = load_digits(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_val = scaler.transform(X_train), scaler.transform(X_val)
    classes = np.unique(y)

    client = hpod_client.Client()  # $HPOD_URL, else http://127.0.0.1:8080
    study = client.create_study({
        "name": "sklearn-sgd",
        "direction": "maximize",
        "params": [
            {"name": "alpha", "type": "float", "low": 1e-6, "high": 1e-1, "log": True},
            {"name": "loss", "type": "categorical", "choices": ["hinge", "log_loss", "modified_huber"]},
            {"name": "penalty", "type": "categorical", "choices": ["l2", "l1", "elasticnet"]},
            {"name": "l1_ratio", "type": "float", "low": 0.0, "high": 1.0,
             "when": {"penalty": ["elasticnet"]}},
            {"name": "eta0", "type": "float", "low": 1e-4, "high": 1.0, "log": True},
        ],
        "sampler": {"type": "tpe", "n_startup_trials": 8, "seed": 0},
        "pruner": {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 2},
    })

    def objective(trial):
        p = trial.params
        clf = SGDClassifier(alpha=p["alpha"], loss=p["loss"], penalty=p["penalty"],
                            l1_ratio=p.get("l1_ratio", 0.15), learning_rate="adaptive",
                            eta0=p["eta0"], random_state=0)
        accuracy = 0.0
        for epoch in range(EPOCHS):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.partial_fit(X_train, y_train, classes=classes)
            accuracy = clf.score(X_val, y_val)
            if trial.report(epoch, accuracy):
                raise hpod_client.TrialPruned()
        return accuracy

    study.optimize(objective, n_trials=n_trials, n_jobs=2)
    best = study.best()
    counts = study.refresh()["trials"]
    print(f"trials: {counts['complete']} complete, {counts['pruned']} pruned, "
          f"{counts['failed']} failed")
    print(f"best accuracy {best.value:.4f} with {best.params}")


if __name__ == "__main__":
    main()
