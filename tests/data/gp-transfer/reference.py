#!/usr/bin/python3
"""reference.py: the stacked residual GP of tests/unit/test-samplers-gp-transfer.c
computed independently with numpy (run once with Debian's /usr/bin/python3,
numpy 1.24; the printed numbers are pasted into the test).

Two prior levels over d = 3 model dims (dims 0, 1 continuous, dim 2 a
categorical choice index with Hamming distance), Matern-5/2 with s = 1 and
fixed raw hyperparameters (ln l_0, ln l_1, ln l_2, ln noise, c) per level:
  level 1 on (X1, y1): targets y1 / sd1, sd1 = sample std of y1 (n >= 3);
  level 2 on (X2, y2): residuals r = y2 - mu1(X2), targets r / sd2;
  mu_k(x) = sd_k (c_k + k_k(x)^T K_k^-1 (t_k - c_k)),
  v_k(x) = sd_k^2 (1 - k_k(x)^T K_k^-1 k_k(x)), K_k = M + noise_k I;
  mean = mu1 + mu2; var = v2^a v1^(1-a), a = alpha(n2 = 5, n1 = 6, d = 3):
  H = d + 2, dof(N) = max(N - H, N / (1 + H)), b2 = dof2/dof1 (1 + dof1 + 1), a = b2/(1+b2).
"""
import numpy as np

X1 = np.array([[0.1, 0.2, 0], [0.4, 0.9, 1], [0.8, 0.3, 2], [0.5, 0.5, 0], [0.95, 0.85, 1],
               [0.25, 0.65, 2]])
y1 = np.array([0.3, -1.1, 0.8, 1.5, -0.6, 0.2])
X2 = np.array([[0.15, 0.3, 0], [0.6, 0.4, 2], [0.45, 0.55, 0], [0.9, 0.9, 1], [0.3, 0.1, 1]])
y2 = np.array([0.9, 0.4, 1.8, -0.9, -0.2])
RAW1 = [np.log(0.4), np.log(0.7), np.log(1.5), np.log(1e-3), 0.1]
RAW2 = [np.log(0.6), np.log(0.3), np.log(0.8), np.log(1e-2), -0.2]
XS = np.array([[0.2, 0.25, 0], [0.55, 0.6, 2], [0.7, 0.8, 1]])


def kern(A, B, raw):
    th = np.exp(-2.0 * np.array(raw[:3]))
    d2 = th[0] * (A[:, None, 0] - B[None, :, 0]) ** 2 + th[1] * (A[:, None, 1] - B[None, :, 1]) ** 2
    d2 = d2 + th[2] * (A[:, None, 2] != B[None, :, 2])
    r = np.sqrt(d2)
    return (1 + np.sqrt(5) * r + 5 * d2 / 3) * np.exp(-np.sqrt(5) * r)


def level(X, t, raw):
    K = kern(X, X, raw) + np.exp(raw[3]) * np.eye(len(X))
    c = raw[4]
    alpha = np.linalg.solve(K, t - c)

    def post(Z):
        ks = kern(Z, X, raw)
        m = c + ks @ alpha
        v = 1.0 - np.einsum("ij,ji->i", ks, np.linalg.solve(K, ks.T))
        return m, np.maximum(v, 0.0)
    return post


sd1 = np.std(y1, ddof=1)
p1 = level(X1, y1 / sd1, RAW1)
m1x2, _ = p1(X2)
r = y2 - sd1 * m1x2
sd2 = np.std(r, ddof=1)
p2 = level(X2, r / sd2, RAW2)
H = 3 + 2
dof = lambda n: max(n - H, n / (1 + H))  # noqa: E731
b2 = dof(5) / dof(6) * (1 + dof(6) + 1.0)
a = b2 / (1 + b2)
m1, v1 = p1(XS)
m2, v2 = p2(XS)
mean = sd1 * m1 + sd2 * m2
var = (sd2 ** 2 * v2) ** a * (sd1 ** 2 * v1) ** (1 - a)
np.set_printoptions(precision=17)
print("sd1", repr(sd1), "sd2", repr(sd2), "alpha", repr(a))
print("mean", [repr(x) for x in mean])
print("var", [repr(x) for x in var])
