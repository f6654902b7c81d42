#!/usr/bin/python3
"""asha_sgd.py: early stopping with hpod's `asha` pruner, epoch by epoch.

    /usr/bin/python3 examples/asha_sgd.py --hpod build/daemon/hpod     # starts its own hpod
    /usr/bin/python3 examples/asha_sgd.py --url http://127.0.0.1:8080  # or uses a running one

Tunes scikit-learn's SGDClassifier (trained with partial_fit, one epoch at a
time) on the digits data set, twice over the same configurations: once without
a pruner and once with {"type": "asha"} (successive halving, min_resource
"auto", reduction factor 4). Both studies use the random sampler with the same
seed, so they try the same configurations in the same order; the only
difference is that the second one stops trials when hpod answers
{"prune": true} to a report. Prints the best validation accuracy of each and
the fraction of epochs that pruning saved.

Plain HTTP with the standard library (http.client, one keep-alive connection).
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

PARAMS = [
    {"name": "alpha", "type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    {"name": "eta0", "type": "float", "low": 1e-5, "high": 1.0, "log": True},
    {"name": "loss", "type": "categorical", "choices": ["hinge", "log_loss", "modified_huber"]},
    {"name": "learning_rate", "type": "categorical", "choices": ["constant", "invscaling"]},
]


class Hpod:
    """A tiny JSON-over-HTTP client for the calls this example needs."""

    def __init__(self, url):
        m = re.match(r"^http://([^:/]+):(\d+)/?$", url)
        if m is None:
            raise SystemExit("--url must look like http://HOST:PORT")
        self.conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=30)

    def call(self, path, body=None, expect=(200, 201)):
        data = json.dumps(body or {}).encode()
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        out = json.loads(r.read() or b"null")
        if r.status not in expect:
            raise SystemExit("POST %s -> %d %s" % (path, r.status, out))
        return out


def start_daemon(exe, tmp):
    """Start hpod on a free port; returns (process, url)."""
    log = open(os.path.join(tmp, "hpod.log"), "w+")
    proc = subprocess.Popen([exe, "--listen", "127.0.0.1:0", "--db", os.path.join(tmp, "hpod.db")],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.seek(0)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read())
        if m:
            return proc, "http://127.0.0.1:%s" % m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    log.seek(0)
    raise SystemExit("hpod did not start:\n" + log.read())


def run_study(hpod, name, pruner, data, n_trials, epochs):
    X_train, X_val, y_train, y_val, classes = data
    hpod.call("/v1/studies", {"name": name, "direction": "maximize", "params": PARAMS,
                              "sampler": {"type": "random", "seed": 7}, "pruner": pruner})
    base = "/v1/studies/" + name
    epochs_run = 0
    configs = []
    t0 = time.monotonic()
    for _ in range(n_trials):
        trial = hpod.call(base + "/ask")
        n, p = trial["number"], trial["params"]
        configs.append(p)
        clf = SGDClassifier(alpha=p["alpha"], eta0=p["eta0"], loss=p["loss"],
                            learning_rate=p["learning_rate"], random_state=n)
        accuracy = 0.0
        pruned = False
        for epoch in range(epochs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.partial_fit(X_train, y_train, classes=classes)
            accuracy = clf.score(X_val, y_val)
            epochs_run += 1
            if hpod.call("%s/trials/%d/report" % (base, n),
                         {"step": epoch, "value": accuracy})["prune"]:
                pruned = True
                break
        if pruned:
            hpod.call("%s/trials/%d/tell" % (base, n), {"state": "pruned"})
        else:
            hpod.call("%s/trials/%d/tell" % (base, n), {"value": accuracy})
    seconds = time.monotonic() - t0
    hpod.conn.request("GET", base + "/best")
    best = json.loads(hpod.conn.getresponse().read())
    hpod.conn.request("GET", base)
    counts = json.loads(hpod.conn.getresponse().read())["trials"]
    return {"best": best["value"], "best_number": best["number"], "epochs": epochs_run,
            "counts": counts, "seconds": seconds, "configs": configs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hpod", help="path to an hpod binary to start (temporary database)")
    ap.add_argument("--url", default=os.environ.get("HPOD_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()

    X, y = load_digits(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=0)
    scaler = StandardScaler().fit(X_train)
    data = (scaler.transform(X_train), scaler.transform(X_val), y_train, y_val, np.unique(y))

    with tempfile.TemporaryDirectory(prefix="asha-sgd-") as tmp:
        proc = None
        url = args.url
        if args.hpod:
            proc, url = start_daemon(args.hpod, tmp)
        try:
            hpod = Hpod(url)
            tag = "%d-%d" % (os.getpid(), int(time.time()))
            full = run_study(hpod, "asha-sgd-full-" + tag, {"type": "none"}, data,
                             args.trials, args.epochs)
            asha = run_study(hpod, "asha-sgd-asha-" + tag, {"type": "asha"}, data,
                             args.trials, args.epochs)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)

    same = full["configs"] == asha["configs"]
    total = args.trials * args.epochs
    print("SGDClassifier on digits, %d configurations x up to %d epochs (%s configurations "
          "in both studies)" % (args.trials, args.epochs, "the same" if same else "DIFFERENT"))
    print("without pruning: best accuracy %.4f (trial %d), %d epochs, %.1f s"
          % (full["best"], full["best_number"], full["epochs"], full["seconds"]))
    print("with asha:       best accuracy %.4f (trial %d), %d epochs, %.1f s; "
          "%d complete, %d pruned"
          % (asha["best"], asha["best_number"], asha["epochs"], asha["seconds"],
             asha["counts"]["complete"], asha["counts"]["pruned"]))
    print("epochs saved by pruning: %d of %d (%.1f%%)"
          % (full["epochs"] - asha["epochs"], total,
             100.0 * (full["epochs"] - asha["epochs"]) / full["epochs"]))


if __name__ == "__main__":
    sys.exit(main())
