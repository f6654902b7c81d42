#!/usr/bin/python3
"""Per-feature L2 regularization of logistic regression, tuned by hpod's
`gradient` sampler from hypergradients computed here by implicit
differentiation, against one shared L2 strength tuned by hpod's `tpe`.

Data: scikit-learn's bundled digits (8x8 images), task "odd digit?", pixels
expanded to all degree-2 monomials (1,816 non-constant features), standardized;
300 training, 300 validation and 1,197 test images. One hyperparameter per
feature: lam_j in [1e-5, 10] (log), so the study has 1,816 hyperparameters.

Inner problem:  w*(lam) = argmin_w  mean logloss(train; w) + 1/2 sum_j lam_j w_j^2
                (the bias is not regularized), solved by Newton-CG, warm-started.
Outer value:    L_V = mean logloss(validation; w*).
Hypergradient (implicit function theorem, docs/ALGORITHMS.md §7.6):
                dL_V/dlam_j = -q_j w*_j   with   H q = grad_w L_V,
                H = X'DX/n + diag(lam) the training Hessian at w*, solved by
                conjugate gradients with Hessian-vector products only.

The client sends G = dL_V/dlam in lam's own units; hpod applies the chain rule
for the log transform (g = lam * G) and steps Adam. A vector over 1,000
elements comes back from ask as {"size", "href"}: it is downloaded with
GET .../params/lam and the gradient uploaded with PUT .../gradient/lam
(little-endian float64). Smaller vectors go inline as JSON arrays.

Usage:
  /usr/bin/python3 examples/l2_logreg_hypergrad.py --url http://127.0.0.1:8080
  /usr/bin/python3 examples/l2_logreg_hypergrad.py --hpod build/daemon/hpod   (own daemon)
  /usr/bin/python3 examples/l2_logreg_hypergrad.py --local   (no daemon: Python stand-ins)
Options: --trials N (default 30, for both studies), --lr (Adam, default 0.1), --seed.
Exits 0 when the per-feature study reaches a lower validation loss than the
best shared strength that tpe found with the same number of trials, else 1.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

# Small matrices: BLAS threads only add overhead (and the machine may be shared).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.preprocessing import PolynomialFeatures, StandardScaler  # noqa: E402

LAM_LOW, LAM_HIGH, LAM_INIT = 1e-5, 10.0, 1e-2


# ---- data and the inner problem ---------------------------------------------

def load_data(seed, n_train=300, n_val=300):
    """Digits, odd vs even, degree-2 monomials; a bias column last."""
    x, y = load_digits(return_X_y=True)
    y = (y % 2).astype(float)
    poly = PolynomialFeatures(2, include_bias=False).fit_transform(x / 16.0)
    poly = poly[:, poly.std(axis=0) > 1e-12]
    idx = np.random.RandomState(seed).permutation(len(y))
    tr, va, te = idx[:n_train], idx[n_train:n_train + n_val], idx[n_train + n_val:]
    z = StandardScaler().fit(poly[tr]).transform(poly)
    z = np.hstack([z, np.ones((len(y), 1))])
    return (z[tr], y[tr]), (z[va], y[va]), (z[te], y[te])


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def logloss(data, w):
    x, y = data
    z = x @ w
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def logloss_grad(data, w):
    x, y = data
    return x.T @ (sigmoid(x @ w) - y) / len(y)


def cg(hv, b, tol, maxit=1000):
    """Conjugate gradients for H x = b from x = 0, to ||r|| <= tol ||b||."""
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rs = r @ r
    stop = (tol * np.sqrt(b @ b)) ** 2
    for _ in range(maxit):
        if rs <= stop:
            break
        hp = hv(p)
        a = rs / (p @ hp)
        x += a * p
        r -= a * hp
        rs_new = r @ r
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


def hessian_vp(train, w, lam_full):
    x, _ = train
    s = sigmoid(x @ w)
    d = s * (1.0 - s) / x.shape[0]
    return lambda v: x.T @ (d * (x @ v)) + lam_full * v


def solve_inner(train, lam, w0, tol=1e-10):
    """Newton-CG (inexact, forcing term sqrt(||g||)) with a halving safeguard."""
    lam_full = np.append(lam, 0.0)
    w = w0.copy()

    def objective(v):
        return logloss(train, v) + 0.5 * float(np.sum(lam_full * v * v))

    for _ in range(100):
        g = logloss_grad(train, w) + lam_full * w
        gn = float(np.sqrt(g @ g))
        if gn < tol:
            break
        step = cg(hessian_vp(train, w, lam_full), -g, min(0.1, np.sqrt(gn)))
        f0, t = objective(w), 1.0
        # Halve only on a real increase, not on rounding noise near the optimum.
        while objective(w + t * step) > f0 + 1e-12 * abs(f0) and t > 1e-6:
            t *= 0.5
        w = w + t * step
    return w


def hypergradient(train, val, lam, w):
    """dL_V/dlam by the implicit function theorem (CG on the training Hessian)."""
    q = cg(hessian_vp(train, w, np.append(lam, 0.0)), logloss_grad(val, w), 1e-10)
    return -(q * w)[:-1]


# ---- talking to hpod ---------------------------------------------------------

class Hpod:
    """A minimal JSON-over-HTTP client for hpod (stdlib only)."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=300)

    def call(self, method, path, body=None, raw=None, ok=(200, 201, 204)):
        headers, data = {}, None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = "application/octet-stream"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        payload = r.read()
        if r.status not in ok:
            raise RuntimeError("%s %s -> %d %s" % (method, path, r.status,
                                                   payload[:400].decode(errors="replace")))
        if r.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(payload)
        return payload

    def recreate(self, study):
        self.call("DELETE", "/v1/studies/" + study["name"], ok=(204, 404))
        return self.call("POST", "/v1/studies", study)

    def ask(self, name):
        return self.call("POST", "/v1/studies/%s/ask" % name, {})

    def vector(self, value):
        """A vector param's value: inline array, or {"size", "href"} to download."""
        if isinstance(value, dict):
            v = np.frombuffer(self.call("GET", value["href"]), dtype="<f8")
            if v.size != value["size"]:
                raise RuntimeError("downloaded %d elements, expected %d" % (v.size, value["size"]))
            return v.copy()
        return np.asarray(value, dtype=float)

    def tell(self, name, number, value, gradient=None, binary=False):
        base = "/v1/studies/%s/trials/%d" % (name, number)
        body = {"value": value}
        if gradient is not None:
            if binary:
                for pname, g in gradient.items():
                    self.call("PUT", "%s/gradient/%s" % (base, pname),
                              raw=np.asarray(g, dtype="<f8").tobytes())
            else:
                body["gradient"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                    for k, v in gradient.items()}
        return self.call("POST", base + "/tell", body)


def start_daemon(exe):
    """Start our own hpod on 127.0.0.1:0; returns (process, url, state dir)."""
    state = tempfile.mkdtemp(prefix="hpod-example-")
    proc = subprocess.Popen([exe, "--listen", "127.0.0.1:0", "--db",
                             os.path.join(state, "hpod.db")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if m:
            subprocess.Popen(["cat"], stdin=proc.stderr, stdout=subprocess.DEVNULL)
            return proc, m.group(1), state
    proc.kill()
    raise SystemExit("hpod did not start")


# ---- local stand-ins (--local): the same math as the hpod samplers ------------

class LocalAdam:
    """hpod's gradient sampler for one log vector param, client gradients, adam."""

    def __init__(self, size, lr, init):
        self.u = np.full(size, np.log(init))
        self.m = np.zeros(size)
        self.v = np.zeros(size)
        self.k = 0
        self.lr = lr

    def value(self):
        return np.exp(self.u)

    def step(self, lam, grad):
        g = lam * grad  # chain rule at the value the trial was given
        self.k += 1
        self.m = 0.9 * self.m + 0.1 * g
        self.v = 0.999 * self.v + 0.001 * g * g
        d = self.m * (1.0 / (1.0 - 0.9 ** self.k)) / (
            np.sqrt(self.v) * (1.0 / np.sqrt(1.0 - 0.999 ** self.k)) + 1e-8)
        self.u = np.clip(self.u - self.lr * d, np.log(LAM_LOW), np.log(LAM_HIGH))


# ---- the two studies -----------------------------------------------------------

def run_gradient(client, args, train, val, test, p, log):
    name = "l2-logreg-per-feature"
    study = {"name": name,
             "params": [{"name": "lam", "type": "float", "low": LAM_LOW, "high": LAM_HIGH,
                         "log": True, "size": p}],
             "sampler": {"type": "gradient", "optimizer": "adam", "lr": args.lr,
                         "init": {"lam": LAM_INIT}, "seed": args.seed}}
    local = LocalAdam(p, args.lr, LAM_INIT)
    if client is not None:
        client.recreate(study)
    w = np.zeros(p + 1)
    rows, drift = [], 0.0
    for i in range(args.trials):
        if client is not None:
            trial = client.ask(name)
            raw = trial["params"]["lam"]
            lam = client.vector(raw)
            # The stand-in, fed the same gradients, must hand out the same vector.
            drift = max(drift, float(np.max(np.abs(lam - local.value()) / local.value())))
        else:
            lam = local.value()
        w = solve_inner(train, lam, w)
        lv, lt = logloss(val, w), logloss(test, w)
        grad = hypergradient(train, val, lam, w)
        if client is not None:
            client.tell(name, trial["number"], lv, {"lam": grad}, binary=isinstance(raw, dict))
        local.step(lam, grad)
        rows.append((lv, lt))
        log("  per-feature trial %2d: val %.5f  test %.5f  lam median %.2e [%.1e, %.1e]"
            % (i, lv, lt, np.median(lam), lam.min(), lam.max()))
    if client is not None:
        summary = client.call("GET", "/v1/studies/" + name)
        log("  hpod summary: %s; stand-in agreement max rel |dlam| = %.1e"
            % (json.dumps(summary.get("gradient")), drift))
    return rows, drift


def run_shared(client, args, train, val, test, p, log):
    name = "l2-logreg-shared"
    study = {"name": name,
             "params": [{"name": "lam", "type": "float", "low": LAM_LOW, "high": LAM_HIGH,
                         "log": True}],
             "sampler": {"type": "tpe", "seed": args.seed}}
    if client is not None:
        client.recreate(study)
    grid = np.logspace(np.log10(LAM_LOW), np.log10(LAM_HIGH), args.trials)
    w = np.zeros(p + 1)
    rows = []
    for i in range(args.trials):
        if client is not None:
            trial = client.ask(name)
            lam = float(trial["params"]["lam"])
        else:
            lam = float(grid[i])  # no daemon: a log grid stands in for tpe
        w = solve_inner(train, np.full(p, lam), w)
        lv, lt = logloss(val, w), logloss(test, w)
        if client is not None:
            client.tell(name, trial["number"], lv)
        rows.append((lv, lt, lam))
        log("  shared     trial %2d: val %.5f  test %.5f  lam %.3e" % (i, lv, lt, lam))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--url", default="http://127.0.0.1:8080", help="a running hpod")
    where.add_argument("--hpod", help="start this hpod binary on 127.0.0.1:0")
    where.add_argument("--local", action="store_true", help="no daemon: Python stand-ins")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    def log(msg):
        if not args.quiet:
            print(msg, flush=True)

    train, val, test = load_data(args.seed)
    p = train[0].shape[1] - 1
    print("digits odd/even: %d train, %d validation, %d test; %d features = %d hyperparameters"
          % (len(train[1]), len(val[1]), len(test[1]), p, p))
    proc, state, client = None, None, None
    try:
        if args.hpod:
            proc, url, state = start_daemon(args.hpod)
            client = Hpod(url)
        elif not args.local:
            client = Hpod(args.url)
        t0 = time.monotonic()
        shared = run_shared(client, args, train, val, test, p, log)
        t1 = time.monotonic()
        per, drift = run_gradient(client, args, train, val, test, p, log)
        t2 = time.monotonic()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
            shutil.rmtree(state, ignore_errors=True)
    best_s = min(shared, key=lambda r: r[0])
    best_p = min(per, key=lambda r: r[0])
    who = "a log grid" if args.local else "hpod tpe"
    print("shared L2 (%s, %d trials, %.1f s): best val loss %.5f at lam %.3e (its test loss %.5f)"
          % (who, args.trials, t1 - t0, best_s[0], best_s[2], best_s[1]))
    print("per-feature L2 (%s, %d trials, %.1f s): best val loss %.5f (its test loss %.5f)"
          % ("hpod gradient" if not args.local else "stand-in adam", args.trials, t2 - t1,
             best_p[0], best_p[1]))
    ok = best_p[0] < best_s[0]
    print("per-feature validation loss is %s than the best shared strength's (%.5f vs %.5f)"
          % ("LOWER" if ok else "NOT lower", best_p[0], best_s[0]))
    if client is not None and drift > 1e-9:
        print("hpod's vectors drifted from the stand-in Adam by %.1e (> 1e-9)" % drift)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
