#!/usr/bin/python3
"""gp_reference.py: where does hpod gp lose to BoTorch, model fit or acquisition?

Usage: bench/quality/gp_reference.py [--probe /tmp/gp-probe] [--probe-old /tmp/gp-probe-old]
           [--functions hartmann6,ackley5] [--seeds 2] [--n 40,80] [--restarts 20]

For each function and seed, a BO trajectory is grown with the probe named by
--traj (default: the old one) up to max(n) trials (10 random points first).
At each checkpoint n, both probes (gp-probe.c built against the tree and
against the main branch) run one ask on the same n trials, print their
fitted hyperparameters and their suggestion, and this script compares with a
numpy/scipy reference on the same data:

- fit: the log posterior of each probe's model at its own fitted
  hyperparameters, against the best of `restarts` scipy L-BFGS-B MAP fits of
  the same model (same kernel, priors, targets): the gap says whether
  hpod's fit stops short of the MAP;
- model: the Spearman rank correlation of the posterior mean with -f on
  2,000 uniform test points and on 500 points in a box of side 0.1 around
  the incumbent (what the acquisition looks at);
- acquisition: logEI at the probe's suggestion, under the probe's own
  model, against the best of 4,096 Sobol points + 50 L-BFGS-B restarts
  (scipy, numerical gradients).

Models replicated here (docs/ALGORITHMS.md §4): "old" = Matern-5/2 ARD with
output scale, Optuna's priors, population-std standardization and the
bad-half warp; "new" = BoTorch SingleTaskGP (RBF ARD, no output scale,
LogNormal(sqrt2 + ln(d)/2, sqrt3) lengthscales, LogNormal(-4, 1) noise >= 1e-4,
constant mean, n-1 std), optionally with the warp and/or Matern kernel as
the probe reports. Debian's numpy/scipy; /usr/bin/python3.
"""

import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
from scipy import optimize, special, stats
from scipy.stats import qmc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from objectives import OBJECTIVES  # noqa: E402

LN_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# ---- objective in the unit cube ----------------------------------------------------


def cube_objective(name):
    o = OBJECTIVES[name]
    lo = [p["low"] for p in o.space]
    hi = [p["high"] for p in o.space]
    names = [p["name"] for p in o.space]

    def f(u):
        return o.f({k: lo[i] + u[i] * (hi[i] - lo[i]) for i, k in enumerate(names)})
    return f, len(names), o.optimum


def probe(path, units, values, seed, options=None):
    inp = json.dumps({"units": [list(map(float, u)) for u in units],
                      "values": [float(v) for v in values], "seed": seed,
                      "options": options or {}})
    out = subprocess.run([path], input=inp.encode(), stdout=subprocess.PIPE, check=True)
    return json.loads(out.stdout)


# ---- targets -----------------------------------------------------------------------


def standardize(y, ddof):
    sd = y.std(ddof=ddof) if len(y) > ddof else 1.0
    if ddof == 0:
        sd = max(sd, 1e-10)
    elif sd < 1e-8:
        sd = 1.0
    return (y - y.mean()) / sd


def warp(y, ddof):
    if len(y) < 3:
        return y
    med = np.sort(y)[len(y) // 2]
    y = np.where(y < med, med - np.log1p(np.maximum(med - y, 0)), y)
    return standardize(y, ddof)


def targets(values, kind, warped):
    y = -np.asarray(values, float)
    ddof = 0 if kind == "old" else 1
    y = standardize(y, ddof)
    return warp(y, ddof) if warped else y


# ---- kernels and log posterior -------------------------------------------------------


def corr(r2, kernel):
    if kernel == "rbf":
        return np.exp(-0.5 * r2)
    r = np.sqrt(np.maximum(r2, 0))
    return (1 + math.sqrt(5) * r + 5.0 / 3.0 * r2) * np.exp(-math.sqrt(5) * r)


def sqdist(A, B, ell):
    a, b = A / ell, B / ell
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0)


class Model:
    """(kind, kernel, ell, scale, noise, mean) with X, y."""

    def __init__(self, kind, kernel, X, y, ell, scale, noise, mean):
        self.kind, self.kernel, self.X, self.y = kind, kernel, X, y
        self.ell, self.scale, self.noise, self.mean = np.asarray(ell), scale, noise, mean
        K = scale * corr(sqdist(X, X, self.ell), kernel) + noise * np.eye(len(X))
        self.L = np.linalg.cholesky(K)
        self.alpha = np.linalg.solve(self.L.T, np.linalg.solve(self.L, y - mean))

    def predict(self, Xs):
        Ks = self.scale * corr(sqdist(Xs, self.X, self.ell), self.kernel)
        mu = self.mean + Ks @ self.alpha
        v = np.linalg.solve(self.L, Ks.T)
        var = np.maximum(self.scale - (v * v).sum(0), 0)
        return mu, var

    def log_posterior(self):
        return log_posterior(self.params_raw(), self.kind, self.kernel, self.X, self.y)

    def params_raw(self):
        if self.kind == "old":
            return np.concatenate([-2 * np.log(self.ell), [math.log(self.scale),
                                                           math.log(max(self.noise - 1e-6,
                                                                        1e-300))]])
        return np.concatenate([np.log(self.ell), [math.log(self.noise), self.mean]])


def unpack(raw, kind, d):
    if kind == "old":
        ell = np.exp(-0.5 * raw[:d])
        return ell, math.exp(raw[d]), 1e-6 + math.exp(raw[d + 1]), 0.0
    return np.exp(raw[:d]), 1.0, math.exp(raw[d]), raw[d + 1]


def log_posterior(raw, kind, kernel, X, y):
    d = X.shape[1]
    ell, scale, noise, mean = unpack(raw, kind, d)
    K = scale * corr(sqdist(X, X, ell), kernel) + noise * np.eye(len(X))
    try:
        L = np.linalg.cholesky(K)
    except np.linalg.LinAlgError:
        return -1e100
    a = np.linalg.solve(L, y - mean)
    v = -0.5 * a @ a - np.log(np.diag(L)).sum() - len(y) * LN_SQRT_2PI
    if kind == "old":
        th = 1 / ell ** 2
        v += -(0.1 / th + 0.1 * th).sum() + math.log(scale) - scale + \
            0.1 * math.log(noise) - 30 * noise
    else:
        mu, s = math.sqrt(2) + 0.5 * math.log(d), math.sqrt(3)
        u = np.log(ell)
        v += (-u - math.log(s) - LN_SQRT_2PI - (u - mu) ** 2 / (2 * s * s)).sum()
        w = math.log(noise)
        v += -w - LN_SQRT_2PI - (w + 4) ** 2 / 2
    return v


def bounds(kind, d):
    if kind == "old":
        return [(-9, 9)] * d + [(-9, 5), (-20, 3)]
    return [(math.log(0.025), 9.2)] * d + [(math.log(1e-4), 2.3), (-10, 10)]


def map_fit(kind, kernel, X, y, restarts, rng):
    d = X.shape[1]
    b = bounds(kind, d)
    starts = []
    if kind == "old":
        starts.append(np.zeros(d + 2))
    else:
        mu = math.sqrt(2) + 0.5 * math.log(d)
        starts.append(np.array([mu - 3] * d + [-5.0, 0.0]))
    for _ in range(restarts - 1):
        starts.append(np.array([rng.uniform(lo, min(hi, lo + 12)) for lo, hi in b]))
    best = None
    for s0 in starts:
        r = optimize.minimize(lambda r: -log_posterior(r, kind, kernel, X, y), s0,
                              method="L-BFGS-B", bounds=b)
        if best is None or r.fun < best.fun:
            best = r
    return best.x, -best.fun


# ---- logEI -------------------------------------------------------------------------


def log_h(z):
    z = np.asarray(z, float)
    out = np.empty_like(z)
    hi = z > -3
    zh = z[hi]
    out[hi] = np.log(np.exp(-0.5 * zh * zh - LN_SQRT_2PI) + zh * special.ndtr(zh))
    zl = z[~hi]
    out[~hi] = -0.5 * zl * zl - LN_SQRT_2PI + \
        np.log1p(zl * math.sqrt(math.pi / 2) * special.erfcx(-zl / math.sqrt(2)))
    return out


def logei(model, Xs, f0):
    mu, var = model.predict(np.atleast_2d(Xs))
    sd = np.sqrt(var + 1e-12)
    return np.log(sd) + log_h((mu - f0) / sd)


def acq_max(model, f0, d, rng, n_raw=4096, n_starts=50):
    raw = qmc.Sobol(d, scramble=True, seed=rng).random(n_raw)
    a = logei(model, raw, f0)
    best_x, best_v = raw[a.argmax()], a.max()
    for i in np.argsort(-a)[:n_starts]:
        r = optimize.minimize(lambda x: -logei(model, x, f0)[0], raw[i], method="L-BFGS-B",
                              bounds=[(0, 1)] * d)
        if -r.fun > best_v:
            best_v, best_x = -r.fun, r.x
    return best_x, best_v


# ---- main --------------------------------------------------------------------------


def spearman(a, b):
    return stats.spearmanr(a, b).correlation


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", default="/tmp/gp-probe")
    ap.add_argument("--probe-old", default="/tmp/gp-probe-old")
    ap.add_argument("--traj", default="old", help="which probe grows the trajectory")
    ap.add_argument("--functions", default="hartmann6,ackley5")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--n", default="40,80")
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--new-options", default="{}")
    a = ap.parse_args()
    checkpoints = [int(v) for v in a.n.split(",")]
    probes = {"old": a.probe_old, "new": a.probe}
    newopt = json.loads(a.new_options)
    for fname in a.functions.split(","):
        f, d, opt = cube_objective(fname)
        for seed in range(a.seeds):
            rng = np.random.default_rng(seed)
            U = list(rng.random((10, d)))
            V = [f(u) for u in U]
            while len(U) < max(checkpoints):
                out = probe(probes[a.traj], U, V, seed, newopt if a.traj == "new" else None)
                U.append(np.array(out["x"]))
                V.append(f(out["x"]))
            for n in checkpoints:
                X = np.array(U[:n])
                vals = np.array(V[:n])
                inc = X[vals.argmin()]
                test_g = rng.random((2000, d))
                test_l = np.clip(inc + (rng.random((500, d)) - 0.5) * 0.1, 0, 1)
                fg = -np.array([f(u) for u in test_g])
                fl = -np.array([f(u) for u in test_l])
                print("%s seed %d n=%d (best so far regret %.4g)" %
                      (fname, seed, n, vals.min() - opt), flush=True)
                for kind in ("old", "new"):
                    out = probe(probes[kind], X, vals, seed, newopt if kind == "new" else None)
                    if "lengthscale" not in out:
                        print("  %s: no model (%s)" % (kind, out))
                        continue
                    warped = kind == "old" or bool(newopt.get("output_warping", True))
                    y = targets(vals, kind, warped)
                    if not np.allclose(y, out["y"], atol=1e-9):
                        print("  %s: replicated targets differ by %.3g" %
                              (kind, np.abs(y - np.array(out["y"])).max()))
                    mh = Model(kind, out["kernel"], X, y, out["lengthscale"], out["scale"],
                               out["noise"], out["mean"])
                    lp_h = mh.log_posterior()
                    raw, lp_ref = map_fit(kind, out["kernel"], X, y, a.restarts, rng)
                    ell_r, sc_r, no_r, me_r = unpack(raw, kind, d)
                    mr = Model(kind, out["kernel"], X, y, ell_r, sc_r, no_r, me_r)
                    f0 = y.max()
                    xr, vr = acq_max(mh, f0, d, rng)
                    vh = logei(mh, np.array(out["x"]), f0)[0]
                    sg_h = spearman(mh.predict(test_g)[0], fg)
                    sl_h = spearman(mh.predict(test_l)[0], fl)
                    sg_r = spearman(mr.predict(test_g)[0], fg)
                    sl_r = spearman(mr.predict(test_l)[0], fl)
                    print("  %s hpod: logpost %9.3f  ell gmean %.3g [%.3g..%.3g] noise %.2g "
                          "scale %.3g | rank-corr global %.3f local %.3f" %
                          (kind, lp_h, math.exp(np.log(mh.ell).mean()), mh.ell.min(),
                           mh.ell.max(), mh.noise, mh.scale, sg_h, sl_h))
                    print("  %s ref : logpost %9.3f  ell gmean %.3g [%.3g..%.3g] noise %.2g "
                          "scale %.3g | rank-corr global %.3f local %.3f" %
                          (kind, lp_ref, math.exp(np.log(mr.ell).mean()), mr.ell.min(),
                           mr.ell.max(), mr.noise, mr.scale, sg_r, sl_r))
                    print("  %s acq : hpod logEI %.4f at its point, reference max %.4f "
                          "(gap %.3g); suggestion distance %.3f" %
                          (kind, vh, vr, vr - vh, float(np.linalg.norm(xr - out["x"]))),
                          flush=True)


if __name__ == "__main__":
    main()
