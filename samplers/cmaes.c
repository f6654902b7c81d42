/*
** cmaes.c: CMA-ES (docs/ALGORITHMS.md §10, departures marked **hpod**
** there), with the defaults and update equations of
** the `cmaes` library Optuna's CmaEsSampler uses: active (negative-weight)
** covariance update, separable CMA above a dimension, IPOP restarts, and a
** margin that keeps integer params from fixating.
**
** What it models: scalar float and int params without `when` conditions and
** with low < high, in the unit cube (log and half-step padding included),
** bounds [0,1], mean 0.5 and sigma0 1/6 (Optuna 3.3+). Every other
** coordinate (categoricals, conditional params) is drawn uniformly, as
** Optuna's independent RandomSampler would.
**
** Generations: a trial the sampler suggests becomes a member of the current
** generation, recorded with its raw CMA point (before clipping or margin
** encoding). The generation is told as soon as its first lambda members in
** trial-number order that did not fail (nor were pruned, unless
** consider_pruned_trials) are all finished; members beyond those are
** overflow asks from the same distribution whose results are not used. The
** population is thus fixed by trial numbers, whatever order workers finish
** in, and tell() happens inside the finishing trial's write (or at the next
** ask, for trials failed by the daemon), so the saved state always matches
** the stored trials and a restart continues exactly.
**
** State (saved whole; see save/load): the distribution (mean, sigma, C and
** its eigen decomposition B, D, the paths, the margin scales A, the recent
** best/worst values), the run's population size and restart count, the
** generation's members, and a private rng for IPOP's random restart means
** (seeded from the first suggesting trial's rng, so from the study seed).
** B and D are saved rather than recomputed, so a loaded state samples bit
** for bit as the one that was saved.
*/
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "../core/history.h"
#include "../core/rng.h"
#include "../core/space.h"
#include "cmaes.h"
#include "sampler.h"

#define CMA_EPS       1e-8
#define CMA_SIGMA_MAX 1e32
#define CMA_MAX_POP   8192 /* IPOP stops doubling here */
#define CMA_MAGIC     0x31414d43u /* "CMA1" */

struct cma {
    /* Options. */
    double sigma0;
    long long popsize; /* 0: default_lambda(n) */
    bool ipop;
    long long inc_popsize;
    bool use_separable;
    long long separable_above;
    bool with_margin;
    bool consider_pruned;

    /* The modelled coordinates. */
    size_t n;
    size_t *coord;                  /* point coordinate of CMA dimension i */
    const struct hpo_param **param; /* its param */
    bool *discrete;                 /* int or stepped float (margin applies) */
    bool sep;

    /* Constants of the current run (depend on n and lambda). */
    int lambda, mu, term;
    double *w; /* lambda weights (sep: mu) */
    double mu_eff, c1, cmu, cs, ds, cc, chi_n, sum_w, margin;

    /* The distribution. */
    int64_t g;        /* updates in this run */
    int64_t restarts; /* IPOP restarts so far */
    int64_t updates;  /* updates over all runs */
    double sigma, tolx;
    double *m, *C, *B, *D, *ps, *pc, *A, *funhist;

    /* Members of the current generation, in ask order. */
    size_t n_mem, cap_mem;
    int64_t *mem_num;
    double *mem_x;

    /* IPOP's rng (restart means). */
    bool seeded;
    struct hpo_rng rs;

    bool dirty;

    /* Scratch sized for lambda and n. */
    double *ys, *f, *tmp, *yw;
    size_t *order;
};

static const char *const cma_keys[] = { "sigma0", "popsize", "restart_strategy", "inc_popsize",
    "use_separable_cma", "separable_above", "with_margin", "consider_pruned_trials", NULL };
static const char *const restart_names[] = { "none", "ipop", NULL };

/* ---- constants --------------------------------------------------------- */

/*
** The default population (**hpod**, docs/ALGORITHMS.md §10.2): the library's
** 4 + floor(3 ln n), capped at 5 + floor(ln n) (n = 2: 5, 3..7: 6, 8..20: 7)
** when every param that varies is modelled. An HPO study is a short run (100
** trials are 12 generations of 8 at n = 5): more, smaller generations adapt
** sigma and C sooner. When some varying param is drawn at random
** (categorical, conditional), the loss CMA sees is noisy and the library's
** larger population averages it better: its 4 + floor(3 ln n) then.
*/
static int default_lambda(size_t n, bool noisy)
{
    int lib = 4 + (int)floor(3.0 * log((double)n));
    int cap = 5 + (int)floor(log((double)n));

    return (noisy || lib < cap) ? lib : cap;
}

/* Allocate the per-lambda arrays and compute the strategy constants. */
static int set_lambda(struct cma *c, int lambda)
{
    size_t n = c->n, l = (size_t)lambda;
    double nd = (double)n, wsum_pos = 0, wsum_neg = 0, s1 = 0, s2 = 0, t1 = 0, t2 = 0;
    double *w = malloc(l * sizeof(*w));
    double *ys = malloc(l * (n ? n : 1) * sizeof(*ys));
    double *f = malloc(l * sizeof(*f));
    size_t *order = malloc(l * sizeof(*order));
    size_t cap = 2 * l;
    int64_t *mem_num = malloc(cap * sizeof(*mem_num));
    double *mem_x = malloc(cap * (n ? n : 1) * sizeof(*mem_x));
    int term = 10 + (int)ceil(30.0 * nd / (double)lambda);
    double *funhist = calloc(2 * (size_t)term, sizeof(*funhist));

    if (!w || !ys || !f || !order || !mem_num || !mem_x || !funhist) {
        free(w);
        free(ys);
        free(f);
        free(order);
        free(mem_num);
        free(mem_x);
        free(funhist);
        return -ENOMEM;
    }
    free(c->w);
    free(c->ys);
    free(c->f);
    free(c->order);
    free(c->mem_num);
    free(c->mem_x);
    free(c->funhist);
    c->w = w;
    c->ys = ys;
    c->f = f;
    c->order = order;
    c->mem_num = mem_num;
    c->mem_x = mem_x;
    c->cap_mem = cap;
    c->n_mem = 0;
    c->funhist = funhist;
    c->term = term;
    c->lambda = lambda;
    c->mu = lambda / 2;

    if (c->sep) {
        /* Ros & Hansen 2008, as cmaes/_sepcma.py: positive weights only. */
        for (int i = 0; i < c->mu; i++) {
            w[i] = log((double)c->mu + 1.0) - log((double)i + 1.0);
            s1 += w[i];
        }
        for (int i = 0; i < c->mu; i++) {
            w[i] /= s1;
            s2 += w[i] * w[i];
        }
        c->mu_eff = 1.0 / s2;
        c->c1 = 2.0 / ((nd + 1.3) * (nd + 1.3) + c->mu_eff);
        double cmu_full = 2.0 / c->mu_eff / ((nd + sqrt(2.0)) * (nd + sqrt(2.0))) +
                (1.0 - 1.0 / c->mu_eff) *
                        fmin(1.0, (2.0 * c->mu_eff - 1.0) / ((nd + 2) * (nd + 2) + c->mu_eff));
        c->cmu = (nd + 2.0) / 3.0 * cmu_full;
        c->cs = (c->mu_eff + 2.0) / (nd + c->mu_eff + 3.0);
        c->cc = 4.0 / (nd + 4.0);
        c->sum_w = 0;
        for (int i = 0; i < c->mu; i++) {
            c->sum_w += w[i];
        }
    } else {
        /* Hansen 2016 eq. 48-53, as cmaes/_cma.py. */
        for (int i = 0; i < lambda; i++) {
            w[i] = log(((double)lambda + 1.0) / 2.0) - log((double)i + 1.0);
        }
        for (int i = 0; i < lambda; i++) {
            if (i < c->mu) {
                s1 += w[i];
                s2 += w[i] * w[i];
            } else {
                t1 += w[i];
                t2 += w[i] * w[i];
            }
            if (w[i] > 0) {
                wsum_pos += w[i];
            } else if (w[i] < 0) {
                wsum_neg += fabs(w[i]);
            }
        }
        c->mu_eff = s1 * s1 / s2;
        double mu_eff_minus = t2 > 0 ? t1 * t1 / t2 : 0.0;
        c->c1 = 2.0 / ((nd + 1.3) * (nd + 1.3) + c->mu_eff);
        c->cmu = fmin(1.0 - c->c1 - 1e-8, 2.0 * (c->mu_eff - 2.0 + 1.0 / c->mu_eff) /
                                                  ((nd + 2.0) * (nd + 2.0) + c->mu_eff));
        double min_alpha = fmin(1.0 + c->c1 / c->cmu,
                fmin(1.0 + 2.0 * mu_eff_minus / (c->mu_eff + 2.0),
                        (1.0 - c->c1 - c->cmu) / (nd * c->cmu)));
        c->sum_w = 0;
        for (int i = 0; i < lambda; i++) {
            w[i] = w[i] >= 0 ? w[i] / wsum_pos : min_alpha / wsum_neg * w[i];
            c->sum_w += w[i];
        }
        c->cs = (c->mu_eff + 2.0) / (nd + c->mu_eff + 5.0);
        c->cc = (4.0 + c->mu_eff / nd) / (nd + 4.0 + 2.0 * c->mu_eff / nd);
    }
    c->ds = 1.0 + 2.0 * fmax(0.0, sqrt((c->mu_eff - 1.0) / (nd + 1.0)) - 1.0) + c->cs;
    c->chi_n = sqrt(nd) * (1.0 - 1.0 / (4.0 * nd) + 1.0 / (21.0 * nd * nd));
    c->margin = 1.0 / (nd * (double)lambda); /* CMAwM's default */
    return 0;
}

/* ---- the distribution -------------------------------------------------- */

/*
** Eigen decomposition C = B diag(D^2) B^T (negative eigenvalues -> 1e-8),
** then C rebuilt from it, as cmaes does. Sep: D = sqrt(C). 0 or -ENOMEM/-EIO.
*/
static int decompose(struct cma *c)
{
    size_t n = c->n;

    if (c->sep) {
        for (size_t i = 0; i < n; i++) {
            c->D[i] = sqrt(c->C[i] < 0 ? CMA_EPS : c->C[i]);
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            double v = (c->C[i * n + j] + c->C[j * n + i]) / 2.0;
            c->C[i * n + j] = v;
            c->C[j * n + i] = v;
        }
    }
    memcpy(c->B, c->C, n * n * sizeof(double));
    hpo_sampler_blas_single_thread(); /* same seed, same bits: no threaded sums */
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'L', (lapack_int)n, c->B,
            (lapack_int)n, c->tmp);
    if (info != 0) {
        return info < 0 ? -ENOMEM : -EIO;
    }
    for (size_t k = 0; k < n; k++) {
        c->D[k] = sqrt(c->tmp[k] < 0 ? CMA_EPS : c->tmp[k]);
    }
    /* C = B diag(D^2) B^T */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j <= i; j++) {
            double s = 0;
            for (size_t k = 0; k < n; k++) {
                s += c->B[i * n + k] * c->D[k] * c->D[k] * c->B[j * n + k];
            }
            c->C[i * n + j] = s;
            c->C[j * n + i] = s;
        }
    }
    return 0;
}

/* Standard normal quantile by bisection on erfc (only for the margin). */
static double normal_quantile(double p)
{
    double lo = -40, hi = 40;

    for (int i = 0; i < 200 && hi - lo > 1e-15; i++) {
        double mid = (lo + hi) / 2;
        if (0.5 * erfc(-mid / sqrt(2.0)) < p) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return (lo + hi) / 2;
}

/*
** Margin (hpod's form of CMAwM, Hamano et al. 2022): for each discrete
** dimension, scale A_i >= 1 so that the encoded coordinate m + A(x - m)
** leaves the grid cell holding the mean, on each side that has a
** neighbour, with probability >= margin / 2.
*/
static void update_margin(struct cma *c)
{
    double z = normal_quantile(1.0 - c->margin / 2.0);

    for (size_t i = 0; i < c->n; i++) {
        const struct hpo_param *p = c->param[i];
        double s, v, lo, hi, need = 1.0;
        c->A[i] = 1.0;
        if (!c->with_margin || !c->discrete[i]) {
            continue;
        }
        s = c->sigma * sqrt(c->sep ? c->C[i] : c->C[i * c->n + i]);
        if (!(s > 0) || !(z > 0)) {
            continue;
        }
        v = hpo_param_from_unit(p, c->m[i]);
        hpo_param_bin(p, v, &lo, &hi);
        if (lo > 1e-12) {
            need = fmax(need, (c->m[i] - lo) / (s * z));
        }
        if (hi < 1.0 - 1e-12) {
            need = fmax(need, (hi - c->m[i]) / (s * z));
        }
        c->A[i] = need;
    }
}

/* Start a run: mean m0 (NULL: the centre), sigma0, C = I. */
static void start_run(struct cma *c, const double *m0)
{
    size_t n = c->n;

    for (size_t i = 0; i < n; i++) {
        c->m[i] = m0 ? m0[i] : 0.5;
        c->ps[i] = 0;
        c->pc[i] = 0;
        c->D[i] = 1;
    }
    if (c->sep) {
        for (size_t i = 0; i < n; i++) {
            c->C[i] = 1;
        }
    } else {
        for (size_t i = 0; i < n * n; i++) {
            c->C[i] = 0;
            c->B[i] = 0;
        }
        for (size_t i = 0; i < n; i++) {
            c->C[i * n + i] = 1;
            c->B[i * n + i] = 1;
        }
    }
    c->sigma = c->sigma0;
    c->tolx = 1e-12 * c->sigma0;
    c->g = 0;
    c->n_mem = 0;
    update_margin(c);
}

/* One sample x ~ N(m, sigma^2 C) inside [0,1]^n (10n tries, then clipped). */
static void sample(struct cma *c, struct hpo_rng *rng, double *x)
{
    size_t n = c->n;
    size_t tries = 10 * n;

    for (size_t t = 0; t <= tries; t++) {
        bool inside = true;
        for (size_t k = 0; k < n; k++) {
            c->tmp[k] = c->D[k] * hpo_rng_normal(rng);
        }
        for (size_t i = 0; i < n; i++) {
            double y = 0;
            if (c->sep) {
                y = c->tmp[i];
            } else {
                for (size_t k = 0; k < n; k++) {
                    y += c->B[i * n + k] * c->tmp[k];
                }
            }
            x[i] = c->m[i] + c->sigma * y;
            inside = inside && x[i] >= 0.0 && x[i] <= 1.0;
        }
        if (inside) {
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        x[i] = x[i] < 0.0 ? 0.0 : (x[i] > 1.0 ? 1.0 : x[i]);
    }
}

/* The unit coordinate written for raw x_i (the margin's encoding for discrete dims). */
static double encode(const struct cma *c, size_t i, double xi)
{
    double u = xi;

    if (c->with_margin && c->discrete[i]) {
        u = c->m[i] + c->A[i] * (xi - c->m[i]);
    }
    return u < 0.0 ? 0.0 : (u > 1.0 ? 1.0 : u);
}

/* C^{-1/2} v into out (out may not alias v). */
static void inv_sqrt_c(const struct cma *c, const double *v, double *out, double *scratch)
{
    size_t n = c->n;

    if (c->sep) {
        for (size_t i = 0; i < n; i++) {
            out[i] = v[i] / c->D[i];
        }
        return;
    }
    for (size_t k = 0; k < n; k++) {
        double s = 0;
        for (size_t i = 0; i < n; i++) {
            s += c->B[i * n + k] * v[i];
        }
        scratch[k] = s / c->D[k];
    }
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t k = 0; k < n; k++) {
            s += c->B[i * n + k] * scratch[k];
        }
        out[i] = s;
    }
}

/* Sort indices by f (stable: ties keep trial-number order). */
static void sort_by_value(const double *f, size_t *order, size_t l)
{
    for (size_t i = 0; i < l; i++) {
        order[i] = i;
    }
    for (size_t i = 1; i < l; i++) {
        size_t k = order[i], j = i;
        while (j > 0 && f[order[j - 1]] > f[k]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = k;
    }
}

/*
** The update (cmaes CMA.tell / SepCMA.tell) with the lambda points
** xs[k * n ...] and values f[k], given in trial-number order.
*/
static void update(struct cma *c, const double *xs, const double *f)
{
    size_t n = c->n, l = (size_t)c->lambda, mu = (size_t)c->mu;
    double *y = c->ys, *yw = c->yw;
    double *cy = malloc(2 * n * sizeof(double));
    double norm = 0, left, right, hs, delta, decay;

    if (cy == NULL) {
        return; /* retried at the next call */
    }
    c->g++;
    c->updates++;
    sort_by_value(f, c->order, l);
    c->funhist[2 * (c->g % c->term)] = f[c->order[0]];
    c->funhist[2 * (c->g % c->term) + 1] = f[c->order[l - 1]];
    for (size_t k = 0; k < l; k++) {
        const double *x = xs + c->order[k] * n;
        for (size_t i = 0; i < n; i++) {
            y[k * n + i] = (x[i] - c->m[i]) / c->sigma;
        }
    }
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t k = 0; k < mu; k++) {
            s += y[k * n + i] * c->w[k];
        }
        yw[i] = s;
    }
    for (size_t i = 0; i < n; i++) {
        c->m[i] += c->sigma * yw[i];
    }
    inv_sqrt_c(c, yw, cy, cy + n);
    for (size_t i = 0; i < n; i++) {
        c->ps[i] = (1 - c->cs) * c->ps[i] + sqrt(c->cs * (2 - c->cs) * c->mu_eff) * cy[i];
        norm += c->ps[i] * c->ps[i];
    }
    norm = sqrt(norm);
    c->sigma *= exp((c->cs / c->ds) * (norm / c->chi_n - 1));
    c->sigma = fmin(c->sigma, CMA_SIGMA_MAX);
    left = norm / sqrt(1 - pow(1 - c->cs, 2.0 * ((double)c->g + 1.0)));
    right = (1.4 + 2.0 / ((double)n + 1.0)) * c->chi_n;
    hs = left < right ? 1.0 : 0.0;
    for (size_t i = 0; i < n; i++) {
        c->pc[i] = (1 - c->cc) * c->pc[i] + hs * sqrt(c->cc * (2 - c->cc) * c->mu_eff) * yw[i];
    }
    delta = (1 - hs) * c->cc * (2 - c->cc);
    decay = 1 + c->c1 * delta - c->c1 - c->cmu * c->sum_w;
    if (c->sep) {
        for (size_t i = 0; i < n; i++) {
            double rank_mu = 0;
            for (size_t k = 0; k < mu; k++) {
                rank_mu += c->w[k] * y[k * n + i] * y[k * n + i];
            }
            c->C[i] = decay * c->C[i] + c->c1 * c->pc[i] * c->pc[i] + c->cmu * rank_mu;
        }
    } else {
        /* w°_k: negative weights rescaled by n / |C^{-1/2} y_k|^2. */
        for (size_t k = 0; k < l; k++) {
            double wk = c->w[k];
            if (wk < 0) {
                double s = 0;
                inv_sqrt_c(c, y + k * n, cy, cy + n);
                for (size_t i = 0; i < n; i++) {
                    s += cy[i] * cy[i];
                }
                wk *= (double)n / (s + CMA_EPS);
            }
            c->f[k] = wk; /* f is free now: reuse for w° */
        }
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j <= i; j++) {
                double rank_mu = 0;
                for (size_t k = 0; k < l; k++) {
                    rank_mu += c->f[k] * y[k * n + i] * y[k * n + j];
                }
                double v = decay * c->C[i * n + j] + c->c1 * c->pc[i] * c->pc[j] +
                        c->cmu * rank_mu;
                c->C[i * n + j] = v;
                c->C[j * n + i] = v;
            }
        }
    }
    free(cy);
}

/* cmaes should_stop(), after decompose(). */
static bool should_stop(const struct cma *c)
{
    size_t n = c->n;
    double fmax_ = -INFINITY, fmin_ = INFINITY, dmax = 0, dmin = INFINITY;
    bool all_small = true;

    if (c->g > c->term) {
        for (int i = 0; i < 2 * c->term; i++) {
            fmax_ = fmax(fmax_, c->funhist[i]);
            fmin_ = fmin(fmin_, c->funhist[i]);
        }
        if (fmax_ - fmin_ < 1e-12) {
            return true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        double dc = c->sep ? c->C[i] : c->C[i * n + i];
        if (!(c->sigma * dc < c->tolx && c->sigma * c->pc[i] < c->tolx)) {
            all_small = false;
        }
    }
    if (all_small) {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        dmax = fmax(dmax, c->D[i]);
        dmin = fmin(dmin, c->D[i]);
    }
    if (c->sigma * dmax > 1e4) {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        double dc = c->sep ? c->C[i] : c->C[i * n + i];
        if (c->m[i] == c->m[i] + 0.2 * c->sigma * sqrt(dc)) {
            return true;
        }
    }
    size_t a = (size_t)(c->g % (int64_t)n);
    bool no_effect = true;
    for (size_t i = 0; i < n; i++) {
        double b = c->sep ? 1.0 : c->B[i * n + a];
        if (c->m[i] != c->m[i] + 0.1 * c->sigma * c->D[a] * b) {
            no_effect = false;
        }
    }
    if (no_effect) {
        return true;
    }
    return dmax / dmin > 1e14;
}

/* The loss of a finished member, or NaN when it does not count; +inf: not finished yet. */
static double member_loss(const struct cma *c, const struct hpo_history *h, size_t k)
{
    int64_t num = c->mem_num[k];
    const struct hpo_trial *t;
    const double *x = c->mem_x + k * c->n;

    if (num < 0 || (size_t)num >= h->n_trials) {
        return INFINITY;
    }
    t = h->trials[num];
    switch (t->state) {
    case HPO_STATE_WAITING:
    case HPO_STATE_RUNNING:
        return INFINITY;
    case HPO_STATE_FAILED:
        return NAN;
    default:
        break;
    }
    /* The trial must hold the point suggested (a re-asked or overridden trial does not). */
    for (size_t i = 0; i < c->n; i++) {
        double want = hpo_param_from_unit(c->param[i], encode(c, i, x[i]));
        double got = t->values[c->coord[i]];
        if (!(fabs(want - got) <= 1e-12 * fmax(1.0, fabs(want)))) {
            return NAN;
        }
    }
    if (t->state == HPO_STATE_COMPLETE) {
        double v = hpo_history_loss(h, t);
        return isfinite(v) ? v : NAN;
    }
    if (t->state == HPO_STATE_PRUNED && c->consider_pruned) {
        const struct hpo_report *r = hpo_trial_last_report(t);
        double v = r ? (h->maximize ? -r->value : r->value) : NAN;
        return isfinite(v) ? v : NAN;
    }
    return NAN;
}

/*
** Make room among 2 lambda members by dropping those that can never count
** (failed, pruned without consider_pruned_trials, overridden): otherwise a
** study whose trials mostly fail would fill the list and stall.
*/
static void drop_dead_members(struct cma *c, const struct hpo_history *h)
{
    size_t kept = 0;

    for (size_t k = 0; k < c->n_mem; k++) {
        if (isnan(member_loss(c, h, k))) {
            continue;
        }
        if (kept != k) {
            c->mem_num[kept] = c->mem_num[k];
            memcpy(c->mem_x + kept * c->n, c->mem_x + k * c->n, c->n * sizeof(double));
        }
        kept++;
    }
    c->n_mem = kept;
}

/* A new run after IPOP's stop test: lambda *= inc_popsize, random mean. */
static int restart(struct cma *c)
{
    long long l = (long long)c->lambda * c->inc_popsize;
    double *m0 = malloc(c->n * sizeof(double));

    if (m0 == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < c->n; i++) {
        m0[i] = hpo_rng_uniform(&c->rs);
    }
    if (l > CMA_MAX_POP) {
        l = CMA_MAX_POP;
    }
    if (set_lambda(c, (int)l) < 0) {
        free(m0);
        return -ENOMEM;
    }
    c->restarts++;
    start_run(c, m0);
    free(m0);
    return 0;
}

/*
** Tell the current generation if its population is complete (see the file
** comment); then decompose, test IPOP's stop and update the margin.
*/
static void advance(struct cma *c, const struct hpo_history *h)
{
    size_t l = (size_t)c->lambda, taken = 0;
    double *xs, *f;

    if (c->n == 0 || c->n_mem < l) {
        return;
    }
    xs = malloc(l * c->n * sizeof(double));
    f = malloc(l * sizeof(double));
    if (xs == NULL || f == NULL) {
        free(xs);
        free(f);
        return;
    }
    /* Members in trial-number order. */
    for (size_t done = 0; done < c->n_mem && taken < l; done++) {
        size_t best = SIZE_MAX;
        for (size_t k = 0; k < c->n_mem; k++) {
            if (c->mem_num[k] >= 0 && (best == SIZE_MAX || c->mem_num[k] < c->mem_num[best])) {
                best = k;
            }
        }
        if (best == SIZE_MAX) {
            break;
        }
        double v = member_loss(c, h, best);
        if (v == INFINITY) {
            break; /* not finished: the population is not known yet */
        }
        if (!isnan(v)) {
            memcpy(xs + taken * c->n, c->mem_x + best * c->n, c->n * sizeof(double));
            f[taken++] = v;
        }
        c->mem_num[best] = -1 - c->mem_num[best]; /* visited */
    }
    for (size_t k = 0; k < c->n_mem; k++) {
        if (c->mem_num[k] < 0) {
            c->mem_num[k] = -1 - c->mem_num[k];
        }
    }
    if (taken == l) {
        update(c, xs, f);
        c->n_mem = 0;
        if (decompose(c) < 0) {
            /* A failed eigen solve keeps the last B, D (C stays as updated). */
            c->dirty = true;
        }
        if (c->ipop && should_stop(c)) {
            (void)restart(c);
        }
        update_margin(c);
        c->dirty = true;
    }
    free(xs);
    free(f);
}

/* ---- plugin ------------------------------------------------------------ */

static void cma_destroy(void *state)
{
    struct cma *c = state;

    if (c == NULL) {
        return;
    }
    free(c->coord);
    free(c->param);
    free(c->discrete);
    free(c->w);
    free(c->m);
    free(c->C);
    free(c->B);
    free(c->D);
    free(c->ps);
    free(c->pc);
    free(c->A);
    free(c->funhist);
    free(c->mem_num);
    free(c->mem_x);
    free(c->ys);
    free(c->f);
    free(c->tmp);
    free(c->yw);
    free(c->order);
    free(c);
}

static int cma_configure(const json_t *options, const struct hpo_space *space, void **state,
        struct hpo_error *err)
{
    struct cma *c;
    int r, restart_kind;
    double sigma0;
    long long popsize, inc, sep_above;
    bool use_sep, margin, pruned, noisy = false;

    r = hpo_options_check_keys(options, cma_keys, "sampler", err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_double(options, "sigma0", "sampler", 1.0 / 6.0, 0.0, 1.0, &sigma0, err);
    if (r < 0) {
        return r;
    }
    if (!(sigma0 > 0)) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "sampler.sigma0",
                "sampler.sigma0 must be > 0");
    }
    r = hpo_option_int(options, "popsize", "sampler", 0, 0, CMA_MAX_POP, &popsize, err);
    if (r < 0) {
        return r;
    }
    if (popsize != 0 && popsize < 4) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "sampler.popsize",
                "sampler.popsize must be >= 4 (or 0 for the default)");
    }
    r = hpo_option_enum(options, "restart_strategy", "sampler", restart_names, 1, &restart_kind,
            err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "inc_popsize", "sampler", 2, 1, 16, &inc, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_bool(options, "use_separable_cma", "sampler", false, &use_sep, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "separable_above", "sampler", 100, 1, 1000, &sep_above, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_bool(options, "with_margin", "sampler", true, &margin, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_bool(options, "consider_pruned_trials", "sampler", false, &pruned, err);
    if (r < 0) {
        return r;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    c->sigma0 = sigma0;
    c->popsize = popsize;
    c->ipop = restart_kind == 1;
    c->inc_popsize = inc;
    c->use_separable = use_sep;
    c->separable_above = sep_above;
    c->with_margin = margin;
    c->consider_pruned = pruned;
    c->coord = malloc((space->n_params ? space->n_params : 1) * sizeof(*c->coord));
    c->param = malloc((space->n_params ? space->n_params : 1) * sizeof(*c->param));
    c->discrete = malloc((space->n_params ? space->n_params : 1) * sizeof(*c->discrete));
    if (!c->coord || !c->param || !c->discrete) {
        goto oom;
    }
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (p->type == HPO_PARAM_CATEGORICAL || p->size > 0 || p->n_conditions > 0 ||
                !(p->low < p->high)) {
            noisy = noisy || (p->type == HPO_PARAM_CATEGORICAL ? p->n_choices > 1 :
                                                                 p->low < p->high);
            continue;
        }
        c->coord[c->n] = p->offset;
        c->param[c->n] = p;
        c->discrete[c->n] = p->type == HPO_PARAM_INT || p->step > 0;
        c->n++;
    }
    c->sep = c->use_separable || (long long)c->n > c->separable_above;
    if (c->n > 0) {
        size_t n = c->n, nc = c->sep ? n : n * n;
        int lambda = popsize ? (int)popsize : default_lambda(n, noisy);
        c->m = malloc(n * sizeof(double));
        c->C = malloc(nc * sizeof(double));
        c->B = malloc(nc * sizeof(double));
        c->D = malloc(n * sizeof(double));
        c->ps = malloc(n * sizeof(double));
        c->pc = malloc(n * sizeof(double));
        c->A = malloc(n * sizeof(double));
        c->tmp = malloc(n * sizeof(double));
        c->yw = malloc(n * sizeof(double));
        if (!c->m || !c->C || !c->B || !c->D || !c->ps || !c->pc || !c->A || !c->tmp || !c->yw ||
                set_lambda(c, lambda) < 0) {
            goto oom;
        }
        start_run(c, NULL);
    }
    *state = c;
    return 0;
oom:
    cma_destroy(c);
    return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
}

static json_t *cma_describe(const void *state)
{
    const struct cma *c = state;

    return json_pack("{s:f, s:I, s:s, s:I, s:b, s:I, s:b, s:b}", "sigma0", c->sigma0, "popsize",
            (json_int_t)c->popsize, "restart_strategy", restart_names[c->ipop ? 1 : 0],
            "inc_popsize", (json_int_t)c->inc_popsize, "use_separable_cma", c->use_separable,
            "separable_above", (json_int_t)c->separable_above, "with_margin", c->with_margin,
            "consider_pruned_trials", c->consider_pruned);
}

static int cma_suggest(void *state, const struct hpo_space *space,
        const struct hpo_history *history, struct hpo_rng *rng, double *unit_point,
        struct hpo_error *err)
{
    struct cma *c = state;
    double *x = NULL;

    if (!c->seeded) {
        hpo_rng_seed(&c->rs, hpo_rng_next(rng));
        c->seeded = true;
        c->dirty = true;
    }
    if (c->n > 0) {
        advance(c, history);
        if (c->n_mem == c->cap_mem) {
            drop_dead_members(c, history);
        }
        if (c->n_mem < c->cap_mem) {
            x = c->mem_x + c->n_mem * c->n;
        } else {
            /* Overflow beyond 2 lambda: sampled, not recorded. */
            x = malloc(c->n * sizeof(double));
            if (x == NULL) {
                return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            }
        }
        sample(c, rng, x);
    }
    for (size_t j = 0; j < space->dim; j++) {
        unit_point[j] = NAN;
    }
    for (size_t i = 0; i < c->n; i++) {
        unit_point[c->coord[i]] = encode(c, i, x[i]);
    }
    for (size_t j = 0; j < space->dim; j++) {
        if (isnan(unit_point[j])) {
            unit_point[j] = hpo_rng_uniform(rng);
        }
    }
    if (c->n > 0) {
        if (c->n_mem < c->cap_mem) {
            c->mem_num[c->n_mem++] = hpo_sampler_asked_number(history);
        } else {
            free(x);
        }
        c->dirty = true;
    }
    return 0;
}

static void cma_tell(void *state, const struct hpo_space *space, const struct hpo_history *history,
        size_t trial, const double *gradient)
{
    struct cma *c = state;

    for (size_t k = 0; k < c->n_mem; k++) {
        if (c->mem_num[k] == (int64_t)trial) {
            advance(c, history);
            return;
        }
    }
}

static bool cma_needs_save(const void *state)
{
    const struct cma *c = state;

    return c->dirty;
}

/* ---- save / load --------------------------------------------------------- */

/*
** Blob: a header of 16 int64 (magic, n, sep, lambda, g, restarts, updates,
** n_mem, seeded, rs[4], term, 0, 0), then doubles: sigma, tolx, m, C, B, D,
** ps, pc, A (n each; C and B n or n*n), funhist (2 term), mem_x (n_mem * n),
** then n_mem int64 member numbers. Native byte order (the file is local).
*/
#define CMA_HDR 16

static size_t blob_size(const struct cma *c)
{
    size_t n = c->n, nc = c->sep ? n : n * n;

    return CMA_HDR * 8 + (2 + 6 * n + 2 * nc + 2 * (size_t)c->term + c->n_mem * n) * 8 +
            c->n_mem * 8;
}

static unsigned char *put(unsigned char *p, const void *src, size_t bytes)
{
    memcpy(p, src, bytes);
    return p + bytes;
}

static int cma_save(const void *state, void **blob, size_t *len)
{
    struct cma *c = (struct cma *)state;
    size_t n = c->n, nc = c->sep ? n : n * n, need = blob_size(c);
    int64_t hdr[CMA_HDR] = { CMA_MAGIC, (int64_t)n, c->sep, c->lambda, c->g, c->restarts,
        c->updates, (int64_t)c->n_mem, c->seeded, (int64_t)c->rs.s[0], (int64_t)c->rs.s[1],
        (int64_t)c->rs.s[2], (int64_t)c->rs.s[3], c->term, 0, 0 };
    unsigned char *p = *blob, *q;

    if (p == NULL || *len < need) {
        p = realloc(p, need);
        if (p == NULL) {
            return -ENOMEM;
        }
    }
    q = put(p, hdr, sizeof(hdr));
    q = put(q, &c->sigma, 8);
    q = put(q, &c->tolx, 8);
    if (n > 0) {
        q = put(q, c->m, n * 8);
        q = put(q, c->C, nc * 8);
        q = put(q, c->B, nc * 8);
        q = put(q, c->D, n * 8);
        q = put(q, c->ps, n * 8);
        q = put(q, c->pc, n * 8);
        q = put(q, c->A, n * 8);
        q = put(q, c->funhist, 2 * (size_t)c->term * 8);
        q = put(q, c->mem_x, c->n_mem * n * 8);
        q = put(q, c->mem_num, c->n_mem * 8);
    }
    *blob = p;
    *len = need;
    c->dirty = false;
    return 0;
}

static int cma_load(void *state, const void *blob, size_t len)
{
    struct cma *c = state;
    const unsigned char *q = blob;
    int64_t hdr[CMA_HDR];
    size_t n = c->n, nc = c->sep ? n : n * n;
    int lambda;

    if (len < sizeof(hdr)) {
        return -EINVAL;
    }
    memcpy(hdr, q, sizeof(hdr));
    q += sizeof(hdr);
    if (hdr[0] != CMA_MAGIC || hdr[1] != (int64_t)n || hdr[2] != (int64_t)c->sep ||
            hdr[4] < 0 || hdr[5] < 0 || hdr[6] < 0 || hdr[7] < 0 ||
            (hdr[8] != 0 && hdr[8] != 1)) {
        return -EINVAL;
    }
    if (n > 0 && (hdr[3] < 4 || hdr[3] > CMA_MAX_POP || hdr[7] > 2 * hdr[3] ||
                         hdr[13] != 10 + (int64_t)ceil(30.0 * (double)n / (double)hdr[3]))) {
        return -EINVAL;
    }
    if (n == 0 && (hdr[3] != 0 || hdr[7] != 0)) {
        return -EINVAL;
    }
    lambda = (int)hdr[3];
    size_t n_mem = (size_t)hdr[7], term = (size_t)hdr[13];
    size_t need = CMA_HDR * 8 + (2 + (n ? 6 * n + 2 * nc + 2 * term : 0) + n_mem * n) * 8 +
            (n ? n_mem * 8 : 0);
    if (len != need) {
        return -EINVAL;
    }
    if (n > 0 && lambda != c->lambda && set_lambda(c, lambda) < 0) {
        return -ENOMEM;
    }
    c->g = hdr[4];
    c->restarts = hdr[5];
    c->updates = hdr[6];
    c->n_mem = n > 0 ? n_mem : 0;
    c->seeded = hdr[8] == 1;
    for (int i = 0; i < 4; i++) {
        c->rs.s[i] = (uint64_t)hdr[9 + i];
    }
    memcpy(&c->sigma, q, 8);
    memcpy(&c->tolx, q + 8, 8);
    q += 16;
    if (n > 0) {
        memcpy(c->m, q, n * 8);
        q += n * 8;
        memcpy(c->C, q, nc * 8);
        q += nc * 8;
        memcpy(c->B, q, nc * 8);
        q += nc * 8;
        memcpy(c->D, q, n * 8);
        q += n * 8;
        memcpy(c->ps, q, n * 8);
        q += n * 8;
        memcpy(c->pc, q, n * 8);
        q += n * 8;
        memcpy(c->A, q, n * 8);
        q += n * 8;
        memcpy(c->funhist, q, 2 * (size_t)c->term * 8);
        q += 2 * (size_t)c->term * 8;
        memcpy(c->mem_x, q, n_mem * n * 8);
        q += n_mem * n * 8;
        memcpy(c->mem_num, q, n_mem * 8);
    }
    c->dirty = false;
    return 0;
}

static json_t *cma_status(const void *state)
{
    const struct cma *c = state;

    if (c->n == 0) {
        return NULL;
    }
    return json_pack("{s:I, s:I, s:I, s:f, s:b, s:I}", "generation", (json_int_t)c->updates,
            "restarts", (json_int_t)c->restarts, "popsize", (json_int_t)c->lambda, "sigma",
            c->sigma, "separable", c->sep, "dimensions", (json_int_t)c->n);
}

void hpo_cmaes_inspect(const void *state, struct hpo_cmaes_view *ret)
{
    const struct cma *c = state;

    ret->n = c->n;
    ret->separable = c->sep;
    ret->lambda = c->lambda;
    ret->restarts = c->restarts;
    ret->generation = c->g;
    ret->sigma = c->sigma;
    ret->mean = c->m;
    ret->cov = c->C;
    ret->p_sigma = c->ps;
    ret->p_c = c->pc;
    ret->margin_scale = c->A;
    ret->n_members = c->n_mem;
}

const struct hpo_sampler_type hpo_sampler_cmaes = {
    .name = "cmaes",
    .supports_vectors = false,
    .options_schema = "{\"sigma0\": {\"type\": \"number\", \"default\": 0.16666666666666666}, "
                      "\"popsize\": {\"type\": \"integer\", \"default\": 0}, "
                      "\"restart_strategy\": {\"type\": \"string\", \"enum\": [\"none\", "
                      "\"ipop\"], \"default\": \"ipop\"}, "
                      "\"inc_popsize\": {\"type\": \"integer\", \"default\": 2}, "
                      "\"use_separable_cma\": {\"type\": \"boolean\", \"default\": false}, "
                      "\"separable_above\": {\"type\": \"integer\", \"default\": 100}, "
                      "\"with_margin\": {\"type\": \"boolean\", \"default\": true}, "
                      "\"consider_pruned_trials\": {\"type\": \"boolean\", \"default\": false}}",
    .configure = cma_configure,
    .describe = cma_describe,
    .suggest = cma_suggest,
    .tell = cma_tell,
    .save = cma_save,
    .load = cma_load,
    .destroy = cma_destroy,
    .needs_save = cma_needs_save,
    .status = cma_status,
};
