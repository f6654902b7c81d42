/*
** gp-model.c: the Gaussian process of the gp sampler (docs/ALGORITHMS.md §4.1-4.4,
** 4.8): Matern-5/2 ARD kernel with Hamming distance on categorical dims, a
** cached Cholesky factor extended by rows, batched posterior with BLAS, the
** MAP log posterior with its gradient, the NLopt L-BFGS fit, and logEI.
**
** Matrices are column-major (LAPACK's layout); the factor L has leading
** dimension m->cap so rows can be appended without moving it.
*/
#include <cblas.h>
#include <errno.h>
#include <lapacke.h>
#include <math.h>
#include <nlopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gp.h"

#define SQRT5       2.23606797749978969641
#define LN_SQRT_2PI 0.91893853320467274178
#define PRED_BLOCK  512 /* candidates per dtrsm in hpo_gp_predict */
#define MAX_JITTER_TRIES 5

/*
** Upper bounds of the raw hyperparameters (hpod choice; BoTorch has none):
** they only keep L-BFGS out of overflow. The lower bounds are BoTorch's
** constraints (HPO_GP_MIN_LENGTHSCALE, HPO_GP_MIN_FIT_NOISE).
*/
#define LN_ELL_MAX   9.2  /* l <= ~1e4 */
#define LN_NOISE_MAX 2.3  /* sigma^2 <= ~10 on standardized targets */
#define MEAN_MAX     10.0 /* |c| on standardized targets */

/* Stopping rule of the hyperparameter fit, on the log posterior per row. */
#ifndef GP_FIT_FTOL
#define GP_FIT_FTOL 1e-7
#endif
#ifndef GP_FIT_XTOL
#define GP_FIT_XTOL 1e-5
#endif
#define GP_FIT_MAXEVAL 300

double hpo_gp_matern52(double r2)
{
    double r = sqrt(r2);

    return (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * exp(-SQRT5 * r);
}

double hpo_gp_matern52_d(double r2)
{
    double r = sqrt(r2);

    return -(5.0 / 6.0) * (1.0 + SQRT5 * r) * exp(-SQRT5 * r);
}

/* The kernel's correlation M(r^2) and dM/d(r^2) (RBF: e^{-r^2/2}, -M/2). */
static inline double corr(int kernel, double r2)
{
    return kernel == HPO_GP_RBF ? exp(-0.5 * r2) : hpo_gp_matern52(r2);
}

static inline void corr_both(int kernel, double r2, double *mk, double *mkd)
{
    if (kernel == HPO_GP_RBF) {
        double e = exp(-0.5 * r2);
        *mk = e;
        *mkd = -0.5 * e;
    } else {
        double r = sqrt(r2), e = exp(-SQRT5 * r);
        *mk = (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * e;
        *mkd = -(5.0 / 6.0) * (1.0 + SQRT5 * r) * e;
    }
}

double hpo_gp_lengthscale_log_prior(double ell, size_t d)
{
    double mu = M_SQRT2 + 0.5 * log((double)(d ? d : 1)), u = log(ell);

    return -u - log(HPO_GP_LS_PRIOR_SIGMA) - LN_SQRT_2PI -
            (u - mu) * (u - mu) / (2.0 * HPO_GP_LS_PRIOR_SIGMA * HPO_GP_LS_PRIOR_SIGMA);
}

double hpo_gp_noise_log_prior(double noise)
{
    double v = log(noise);

    return -v - LN_SQRT_2PI - (v - HPO_GP_NOISE_PRIOR_MU) * (v - HPO_GP_NOISE_PRIOR_MU) / 2.0;
}

double hpo_gp_lengthscale_mode(size_t d)
{
    double mu = M_SQRT2 + 0.5 * log((double)(d ? d : 1));

    return exp(mu - HPO_GP_LS_PRIOR_SIGMA * HPO_GP_LS_PRIOR_SIGMA);
}

int hpo_gp_model_init(struct hpo_gp_model *m, size_t d, const bool *is_cat)
{
    memset(m, 0, sizeof(*m));
    m->d = d;
    m->is_cat = calloc(d ? d : 1, sizeof(*m->is_cat));
    m->theta = malloc((d ? d : 1) * sizeof(*m->theta));
    if (m->is_cat == NULL || m->theta == NULL) {
        hpo_gp_model_free(m);
        return -ENOMEM;
    }
    for (size_t k = 0; k < d; k++) {
        m->is_cat[k] = is_cat != NULL && is_cat[k];
        m->theta[k] = 1.0;
    }
    m->scale = 1.0;
    m->noise = HPO_GP_MIN_NOISE;
    m->mean = 0.0;
    m->kernel = HPO_GP_RBF;
    m->exact_from = SIZE_MAX;
    return 0;
}

void hpo_gp_model_free(struct hpo_gp_model *m)
{
    free(m->is_cat);
    free(m->theta);
    free(m->x);
    free(m->xt);
    free(m->y);
    free(m->L);
    free(m->alpha);
    memset(m, 0, sizeof(*m));
}

int hpo_gp_model_reserve(struct hpo_gp_model *m, size_t cap)
{
    double *x, *xt, *y, *L, *alpha;

    if (cap <= m->cap) {
        return 0;
    }
    if (cap < 2 * m->cap) {
        cap = 2 * m->cap;
    }
    x = realloc(m->x, cap * (m->d ? m->d : 1) * sizeof(*x));
    if (x == NULL) {
        return -ENOMEM;
    }
    m->x = x;
    xt = malloc(cap * (m->d ? m->d : 1) * sizeof(*xt));
    if (xt == NULL) {
        return -ENOMEM;
    }
    for (size_t k = 0; k < m->d && m->n > 0; k++) {
        memcpy(&xt[k * cap], &m->xt[k * m->cap], m->n * sizeof(*xt));
    }
    free(m->xt);
    m->xt = xt;
    y = realloc(m->y, cap * sizeof(*y));
    if (y == NULL) {
        return -ENOMEM;
    }
    m->y = y;
    alpha = realloc(m->alpha, cap * sizeof(*alpha));
    if (alpha == NULL) {
        return -ENOMEM;
    }
    m->alpha = alpha;
    L = malloc(cap * cap * sizeof(*L));
    if (L == NULL) {
        return -ENOMEM;
    }
    /* Re-lay the factored block with the new leading dimension. */
    for (size_t j = 0; j < m->n_factored; j++) {
        memcpy(&L[j * cap], &m->L[j * m->cap], m->n_factored * sizeof(*L));
    }
    free(m->L);
    m->L = L;
    m->cap = cap;
    return 0;
}

int hpo_gp_model_add(struct hpo_gp_model *m, const double *x, double y)
{
    int r = hpo_gp_model_reserve(m, m->n + 1);

    if (r < 0) {
        return r;
    }
    memcpy(&m->x[m->n * m->d], x, m->d * sizeof(*x));
    for (size_t k = 0; k < m->d; k++) {
        m->xt[k * m->cap + m->n] = x[k];
    }
    m->y[m->n] = y;
    m->n++;
    return 0;
}

void hpo_gp_truncate(struct hpo_gp_model *m, size_t n)
{
    if (n < m->n) {
        m->n = n;
    }
    if (n < m->n_factored) {
        m->n_factored = n;
    }
}

static inline double sq_dist(const struct hpo_gp_model *m, const double *a, const double *b)
{
    double r2 = 0.0;

    for (size_t k = 0; k < m->d; k++) {
        if (m->is_cat[k]) {
            r2 += a[k] != b[k] ? m->theta[k] : 0.0;
        } else {
            double t = a[k] - b[k];
            r2 += m->theta[k] * t * t;
        }
    }
    return r2;
}

double hpo_gp_kernel(const struct hpo_gp_model *m, const double *a, const double *b)
{
    return m->scale * corr(m->kernel, sq_dist(m, a, b));
}

/*
** r2[i - lo] = sq_dist(m, x, row i) for rows [lo, hi), dim by dim over the
** transposed rows: the same sums in the same order as sq_dist (so the same
** bits; sq_dist(row i, x) too, as (-t)^2 = t^2 exactly), in loops over the
** rows that the compiler vectorizes.
*/
static void row_sq_dists(const struct hpo_gp_model *m, const double *x, size_t lo, size_t hi,
        double *r2)
{
    size_t n = hi - lo;

    for (size_t i = 0; i < n; i++) {
        r2[i] = 0.0;
    }
    for (size_t k = 0; k < m->d; k++) {
        const double *col = &m->xt[k * m->cap + lo];
        double th = m->theta[k], xk = x[k];
        if (m->is_cat[k]) {
            for (size_t i = 0; i < n; i++) {
                r2[i] += xk != col[i] ? th : 0.0;
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                double t = xk - col[i];
                r2[i] += th * t * t;
            }
        }
    }
}

/* Fill the lower triangle of K for rows [r0, r1) x columns [0, r1) into m->L. */
static void fill_kernel(struct hpo_gp_model *m, size_t r0, size_t r1, double diag_add)
{
    for (size_t j = 0; j < r1; j++) {
        size_t i0 = j > r0 ? j : r0;
        for (size_t i = i0; i < r1; i++) {
            double k = hpo_gp_kernel(m, &m->x[i * m->d], &m->x[j * m->d]);
            if (i == j) {
                k += (i >= m->exact_from ? HPO_GP_MIN_NOISE : m->noise) + diag_add;
            }
            m->L[i + j * m->cap] = k;
        }
    }
}

int hpo_gp_factor(struct hpo_gp_model *m)
{
    double jitter = 0.0;

    m->n_factored = 0;
    if (m->n == 0) {
        return 0;
    }
    for (int attempt = 0; attempt <= MAX_JITTER_TRIES; attempt++) {
        lapack_int info;
        fill_kernel(m, 0, m->n, jitter);
        info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)m->n, m->L,
                (lapack_int)m->cap);
        if (info == 0) {
            m->n_factored = m->n;
            m->jitter = jitter;
            return 0;
        }
        jitter = jitter == 0.0 ? 1e-6 * (m->scale + m->noise) : jitter * 10.0;
    }
    return -EDOM;
}

int hpo_gp_extend(struct hpo_gp_model *m)
{
    size_t n0 = m->n_factored, r = m->n - n0, cap = m->cap;
    double *l21 = &m->L[n0], *l22 = &m->L[n0 + n0 * cap];
    lapack_int info;

    if (n0 == 0) {
        return hpo_gp_factor(m);
    }
    if (r == 0) {
        return 0;
    }
    fill_kernel(m, n0, m->n, m->jitter);
    /* L21 = K21 L11^-T: solve X L11^T = K21. */
    cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, (int)r, (int)n0,
            1.0, m->L, (int)cap, l21, (int)cap);
    /* K22 - L21 L21^T, then its Cholesky. */
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (int)r, (int)n0, -1.0, l21, (int)cap,
            1.0, l22, (int)cap);
    info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)r, l22, (lapack_int)cap);
    if (info != 0) {
        /* The new rows made K numerically indefinite: start again with jitter. */
        return hpo_gp_factor(m);
    }
    m->n_factored = m->n;
    return 0;
}

int hpo_gp_solve(struct hpo_gp_model *m)
{
    size_t n = m->n;

    if (m->n_factored != n) {
        return -EDOM;
    }
    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        m->alpha[i] = m->y[i] - m->mean;
    }
    cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)n, m->L, (int)m->cap,
            m->alpha, 1);
    cblas_dtrsv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, (int)n, m->L, (int)m->cap,
            m->alpha, 1);
    return 0;
}

void hpo_gp_predict(const struct hpo_gp_model *m, size_t count, const double *xs, double *mean,
        double *var, double *work)
{
    size_t n = m->n;

    for (size_t c0 = 0; c0 < count; c0 += PRED_BLOCK) {
        size_t b = count - c0 < PRED_BLOCK ? count - c0 : PRED_BLOCK;
        if (n == 0) {
            for (size_t c = 0; c < b; c++) {
                mean[c0 + c] = m->mean;
                var[c0 + c] = m->scale;
            }
            continue;
        }
        for (size_t c = 0; c < b; c++) {
            double *kc = &work[c * n];
            row_sq_dists(m, &xs[(c0 + c) * m->d], 0, n, kc);
            for (size_t i = 0; i < n; i++) {
                kc[i] = m->scale * corr(m->kernel, kc[i]);
            }
        }
        for (size_t c = 0; c < b; c++) {
            mean[c0 + c] = m->mean;
        }
        cblas_dgemv(CblasColMajor, CblasTrans, (int)n, (int)b, 1.0, work, (int)n, m->alpha, 1, 1.0,
                &mean[c0], 1);
        cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)n,
                (int)b, 1.0, m->L, (int)m->cap, work, (int)n);
        for (size_t c = 0; c < b; c++) {
            double q = cblas_ddot((int)n, &work[c * n], 1, &work[c * n], 1);
            double v = m->scale - q;
            var[c0 + c] = v > 0.0 ? v : 0.0;
        }
    }
}

void hpo_gp_predict_grad(const struct hpo_gp_model *m, const double *x, double *mean,
        double *var, double *dmean, double *dvar, double *work)
{
    size_t n = m->n, d = m->d;
    double *kv = work, *coef = work + n, q;

    for (size_t k = 0; k < d; k++) {
        dmean[k] = 0.0;
        dvar[k] = 0.0;
    }
    if (n == 0) {
        *mean = m->mean;
        *var = m->scale;
        return;
    }
    row_sq_dists(m, x, 0, n, kv);
    for (size_t i = 0; i < n; i++) {
        double mk, mkd;
        corr_both(m->kernel, kv[i], &mk, &mkd);
        kv[i] = m->scale * mk;
        coef[i] = 2.0 * m->scale * mkd;
    }
    *mean = m->mean + cblas_ddot((int)n, kv, 1, m->alpha, 1);
    cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)n, m->L, (int)m->cap,
            kv, 1);
    q = cblas_ddot((int)n, kv, 1, kv, 1);
    *var = m->scale - q > 0.0 ? m->scale - q : 0.0;
    /* kv becomes K^-1 k. */
    cblas_dtrsv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, (int)n, m->L, (int)m->cap,
            kv, 1);
    for (size_t i = 0; i < n; i++) {
        const double *xi = &m->x[i * d];
        double ca = coef[i] * m->alpha[i], cw = -2.0 * coef[i] * kv[i];
        for (size_t k = 0; k < d; k++) {
            if (!m->is_cat[k]) {
                double t = x[k] - xi[k];
                dmean[k] += ca * t;
                dvar[k] += cw * t;
            }
        }
    }
    for (size_t k = 0; k < d; k++) {
        dmean[k] *= m->theta[k];
        dvar[k] *= m->theta[k];
    }
}

size_t hpo_gp_n_raw(size_t d, bool deterministic)
{
    return d + (deterministic ? 1 : 2);
}

void hpo_gp_set_raw(struct hpo_gp_model *m, const double *raw, bool deterministic)
{
    for (size_t k = 0; k < m->d; k++) {
        m->theta[k] = exp(-2.0 * raw[k]);
    }
    m->scale = 1.0;
    m->noise = deterministic ? HPO_GP_MIN_NOISE : exp(raw[m->d]);
    m->mean = raw[hpo_gp_n_raw(m->d, deterministic) - 1];
}

void hpo_gp_prior_mode(size_t d, bool deterministic, double *raw)
{
    double u = log(hpo_gp_lengthscale_mode(d));

    for (size_t k = 0; k < d; k++) {
        raw[k] = u;
    }
    if (!deterministic) {
        raw[d] = HPO_GP_NOISE_PRIOR_MU - 1.0; /* the mode of LogNormal(-4, 1): e^-5 */
    }
    raw[hpo_gp_n_raw(d, deterministic) - 1] = 0.0;
}

/* Scratch memory of one log posterior evaluation over n rows. */
struct lp_ws {
    size_t n;
    double *mk, *mkd, *kf, *alpha, *theta;
};

static void lp_ws_free(struct lp_ws *ws)
{
    free(ws->mk);
    free(ws->mkd);
    free(ws->kf);
    free(ws->alpha);
    free(ws->theta);
    memset(ws, 0, sizeof(*ws));
}

static int lp_ws_init(struct lp_ws *ws, size_t n, size_t d)
{
    ws->n = n;
    ws->mk = malloc((n * n + 1) * sizeof(double));
    ws->mkd = malloc((n * n + 1) * sizeof(double));
    ws->kf = malloc((n * n + 1) * sizeof(double));
    ws->alpha = malloc((n + 1) * sizeof(double));
    ws->theta = malloc((d + 1) * sizeof(double));
    if (ws->mk == NULL || ws->mkd == NULL || ws->kf == NULL || ws->alpha == NULL ||
            ws->theta == NULL) {
        lp_ws_free(ws);
        return -ENOMEM;
    }
    return 0;
}

/*
** log p(y | X, phi) (+ log priors) at raw = (ln l_1..d, [ln sigma^2], c),
** K = M(r^2) + sigma^2 I (output scale 1 on standardized targets), residuals
** y - c. Gradient: 1/2 tr((a a^T - K^-1) dK/dphi) for the kernel
** parameters, sum(a) for c, a = K^-1 (y - c).
*/
static int log_posterior(const struct hpo_gp_model *m, const double *raw, bool deterministic,
        bool with_prior, double *ret_value, double *grad, struct lp_ws *ws)
{
    size_t n = m->n, d = m->d, n_raw = hpo_gp_n_raw(d, deterministic);
    struct hpo_gp_model h = *m; /* shallow copy carrying the trial hyperparameters */
    double *mk = ws->mk, *mkd = ws->mkd, *kf = ws->kf, *alpha = ws->alpha;
    double jitter = 0.0, value, trace_w = 0.0, sum_a = 0.0;
    lapack_int info = 1;

    h.theta = ws->theta;
    hpo_gp_set_raw(&h, raw, deterministic);
    for (size_t j = 0; j < n; j++) {
        row_sq_dists(&h, &m->x[j * d], j, n, &mk[j + j * n]);
        for (size_t i = j; i < n; i++) {
            corr_both(h.kernel, mk[i + j * n], &mk[i + j * n], &mkd[i + j * n]);
        }
    }
    for (int attempt = 0; attempt <= MAX_JITTER_TRIES && info != 0; attempt++) {
        for (size_t j = 0; j < n; j++) {
            for (size_t i = j; i < n; i++) {
                kf[i + j * n] = h.scale * mk[i + j * n];
            }
            kf[j + j * n] += h.noise + jitter;
        }
        info = n ? LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, kf, (lapack_int)n)
                 : 0;
        jitter = jitter == 0.0 ? 1e-6 * (h.scale + h.noise) : jitter * 10.0;
    }
    if (info != 0) {
        return -EDOM;
    }
    for (size_t i = 0; i < n; i++) {
        alpha[i] = m->y[i] - h.mean;
    }
    value = -(double)n * LN_SQRT_2PI;
    for (size_t i = 0; i < n; i++) {
        value -= log(kf[i + i * n]);
    }
    if (n > 0) {
        cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)n, kf, (int)n,
                alpha, 1);
        value -= 0.5 * cblas_ddot((int)n, alpha, 1, alpha, 1);
        cblas_dtrsv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, (int)n, kf, (int)n,
                alpha, 1);
    }
    if (grad != NULL) {
        for (size_t k = 0; k < n_raw; k++) {
            grad[k] = 0.0;
        }
    }
    if (grad != NULL && n > 0) {
        /* W = alpha alpha^T - K^-1; dMLL/dphi = 1/2 tr(W dK/dphi). */
        info = LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, kf, (lapack_int)n);
        if (info != 0) {
            return -EDOM;
        }
        for (size_t j = 0; j < n; j++) {
            const double *xj = &m->x[j * d];
            trace_w += alpha[j] * alpha[j] - kf[j + j * n];
            sum_a += alpha[j];
            for (size_t i = j + 1; i < n; i++) {
                const double *xi = &m->x[i * d];
                double cw = (alpha[i] * alpha[j] - kf[i + j * n]) * mkd[i + j * n];
                for (size_t k = 0; k < d; k++) {
                    if (m->is_cat[k]) {
                        grad[k] += xi[k] != xj[k] ? cw : 0.0;
                    } else {
                        double t = xi[k] - xj[k];
                        grad[k] += cw * t * t;
                    }
                }
            }
        }
        /*
        ** Off-diagonal pairs appear twice in the trace: the 1/2 cancels.
        ** d theta / d ln l = -2 theta.
        */
        for (size_t k = 0; k < d; k++) {
            grad[k] *= -2.0 * h.scale * h.theta[k];
        }
        if (!deterministic) {
            grad[d] = 0.5 * trace_w * h.noise;
        }
        grad[n_raw - 1] = sum_a;
    }
    if (with_prior) {
        double mu = M_SQRT2 + 0.5 * log((double)(d ? d : 1));
        double s2 = HPO_GP_LS_PRIOR_SIGMA * HPO_GP_LS_PRIOR_SIGMA;
        for (size_t k = 0; k < d; k++) {
            value += hpo_gp_lengthscale_log_prior(exp(raw[k]), d);
            if (grad != NULL) {
                grad[k] += -1.0 - (raw[k] - mu) / s2;
            }
        }
        if (!deterministic) {
            value += hpo_gp_noise_log_prior(h.noise);
            if (grad != NULL) {
                grad[d] += -1.0 - (raw[d] - HPO_GP_NOISE_PRIOR_MU);
            }
        }
    }
    *ret_value = value;
    return 0;
}

int hpo_gp_log_posterior(const struct hpo_gp_model *m, const double *raw, bool deterministic,
        bool with_prior, double *ret_value, double *grad)
{
    struct lp_ws ws;
    int r = lp_ws_init(&ws, m->n, m->d);

    if (r == 0) {
        r = log_posterior(m, raw, deterministic, with_prior, ret_value, grad, &ws);
        lp_ws_free(&ws);
    }
    return r;
}

struct fit_ctx {
    const struct hpo_gp_model *m;
    bool deterministic;
    size_t n_raw;
    double scale; /* 1/n: the objective is per row so tolerances do not depend on n */
    double best;
    double *best_raw;
    int evals;
    struct lp_ws ws;
};

static double fit_objective(unsigned n_raw, const double *raw, double *grad, void *data)
{
    struct fit_ctx *ctx = data;
    double value;
    int r;

    ctx->evals++;
    r = log_posterior(ctx->m, raw, ctx->deterministic, true, &value, grad, &ctx->ws);
    if (r < 0 || !isfinite(value)) {
        /* A large finite value makes the line search back off. */
        if (grad != NULL) {
            memset(grad, 0, n_raw * sizeof(*grad));
        }
        return 1e100;
    }
    if (grad != NULL) {
        for (unsigned k = 0; k < n_raw; k++) {
            grad[k] *= -ctx->scale;
        }
    }
    value *= -ctx->scale;
    if (value < ctx->best) {
        ctx->best = value;
        memcpy(ctx->best_raw, raw, n_raw * sizeof(*raw));
    }
    return value;
}

void hpo_gp_raw_bounds(size_t d, bool deterministic, double *lb, double *ub)
{
    size_t n_raw = hpo_gp_n_raw(d, deterministic);

    for (size_t k = 0; k < d; k++) {
        lb[k] = log(HPO_GP_MIN_LENGTHSCALE);
        ub[k] = LN_ELL_MAX;
    }
    if (!deterministic) {
        lb[d] = log(HPO_GP_MIN_FIT_NOISE);
        ub[d] = LN_NOISE_MAX;
    }
    lb[n_raw - 1] = -MEAN_MAX;
    ub[n_raw - 1] = MEAN_MAX;
}

int hpo_gp_fit(struct hpo_gp_model *m, double *raw, bool deterministic, int *ret_evals)
{
    size_t n_raw = hpo_gp_n_raw(m->d, deterministic);
    double *lb = malloc(n_raw * sizeof(double)), *ub = malloc(n_raw * sizeof(double));
    double *x = malloc(n_raw * sizeof(double)), *best = malloc(n_raw * sizeof(double));
    struct fit_ctx ctx = { m, deterministic, n_raw, 1.0 / (double)(m->n ? m->n : 1), HUGE_VAL,
        best, 0, { 0 } };
    nlopt_opt opt = NULL;
    nlopt_result res;
    double f;
    int r = 0;

    if (lb == NULL || ub == NULL || x == NULL || best == NULL ||
            lp_ws_init(&ctx.ws, m->n, m->d) < 0) {
        r = -ENOMEM;
        goto out;
    }
    hpo_gp_raw_bounds(m->d, deterministic, lb, ub);
    for (size_t k = 0; k < n_raw; k++) {
        x[k] = raw[k] < lb[k] ? lb[k] : (raw[k] > ub[k] ? ub[k] : raw[k]);
    }
    opt = nlopt_create(NLOPT_LD_LBFGS, (unsigned)n_raw);
    if (opt == NULL) {
        r = -ENOMEM;
        goto out;
    }
    nlopt_set_lower_bounds(opt, lb);
    nlopt_set_upper_bounds(opt, ub);
    nlopt_set_min_objective(opt, fit_objective, &ctx);
    nlopt_set_ftol_abs(opt, GP_FIT_FTOL);
    nlopt_set_xtol_rel(opt, GP_FIT_XTOL);
    nlopt_set_maxeval(opt, GP_FIT_MAXEVAL);
    res = nlopt_optimize(opt, x, &f);
    /* Keep the best point seen: L-BFGS may stop on round-off after progress. */
    if (ctx.best < 1e99 && (res > 0 || res == NLOPT_ROUNDOFF_LIMITED || res == NLOPT_FAILURE)) {
        memcpy(raw, best, n_raw * sizeof(double));
        hpo_gp_set_raw(m, raw, deterministic);
    } else {
        r = res == NLOPT_OUT_OF_MEMORY ? -ENOMEM : -EDOM;
    }
out:
    if (ret_evals != NULL) {
        *ret_evals += ctx.evals;
    }
    if (opt != NULL) {
        nlopt_destroy(opt);
    }
    lp_ws_free(&ctx.ws);
    free(lb);
    free(ub);
    free(x);
    free(best);
    return r;
}

/*
** c(x) = 1/(x + 2/(x + 3/(x + ...))), x > 0, by backward recursion of the
** Laplace continued fraction. With Mills' ratio m(x) = Q(x)/phi(x) =
** 1/(x + c), h(-x)/phi(x) = 1 - x m(x) = c/(x + c) without cancellation.
*/
static double mills_tail(double x)
{
    double t = 0.0;

    for (int k = 400; k >= 2; k--) {
        t = (double)k / (x + t);
    }
    return 1.0 / (x + t);
}

#define LOGH_SWITCH -3.0

double hpo_gp_log_h(double z)
{
    if (z > LOGH_SWITCH) {
        double phi = exp(-0.5 * z * z - LN_SQRT_2PI);
        double cdf = 0.5 * erfc(-z / M_SQRT2);
        return log(phi + z * cdf);
    }
    double x = -z, c = mills_tail(x);
    return -0.5 * z * z - LN_SQRT_2PI + log(c / (x + c));
}

double hpo_gp_log_h_dz(double z)
{
    if (z > LOGH_SWITCH) {
        double phi = exp(-0.5 * z * z - LN_SQRT_2PI);
        double cdf = 0.5 * erfc(-z / M_SQRT2);
        return cdf / (phi + z * cdf);
    }
    return 1.0 / mills_tail(-z);
}
