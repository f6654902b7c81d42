/*
** gp-mo.c: the gp sampler with constraints and with 2-3 objectives
** (docs/ALGORITHMS.md §4.10, Optuna's LogCEI / LogCEHVI in analytic form).
**
** One independent GP per objective (several objectives) and per
** constraint, each the model of gp.c (same kernel, priors, fit, refit
** cadence and row subset), on targets standardized without warping:
** -loss for an objective, -value for a constraint, fitted on the trials
** that told it.
**
** Acquisition, maximized by gp.c's optimizer:
** - one objective: logEI against the best feasible row + sum log PoF;
** - 2-3 objectives: log EHVI against the feasible Pareto front, exact: the
**   non-dominated region below the reference point is cut into the boxes of
**   a grid over the front's first m-1 coordinates (the last one bounded per
**   cell), and per box the expectation is a product of 1-D expectations
**   E[(u - max(l, Y))+] = psi(u) - psi(l), psi(a) = sigma h((a - mu)/sigma),
**   summed in log space; + sum log PoF;
** - no feasible trial yet: sum log PoF alone.
** log PoF_j = log P(lo_j <= c_j <= hi_j) under constraint j's posterior.
** The reference point is the one GET .../pareto uses (the study's
** reference_point, else the worst feasible loss + 10% of the range).
**
** Running trials: kriging believers in every objective and constraint
** model (exact rows at the posterior mean); with several objectives their
** believed losses also join the front (when believed feasible), so EHVI
** vanishes at a running trial. With one objective the objective model keeps
** gp.c's constant liar at the best feasible row.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/history.h"
#include "../core/mo.h"
#include "../core/rng.h"
#include "../core/space.h"
#include "gp-int.h"
#include "gp.h"

#define VAR_EPS  1e-12
#define BLOCK    512
#define LN_SQRT_2PI 0.91893853320467274178
#define MAX_MODELS (3 + 64)
/*
** gp.c refits a model above 300 complete trials only when they grew by 5%
** or by 64 since its last fit; several models fitted at the same ask would
** all refit together again. Model k of K instead records its fit as made
** k/K of that interval earlier, so later refits fall on different asks.
*/
#define STAGGER_FROM 300

struct gp_mo {
    size_t n_obj_models; /* models of objectives: 0 (one objective: gp.c's own) or n_obj */
    size_t n_sub;
    struct gp_state **sub; /* objective models, then one per constraint */
    /* Per ask. */
    size_t n_models;                   /* models in the acquisition: objectives then constraints */
    const struct hpo_gp_model *model[MAX_MODELS];
    size_t m;                          /* objectives in the acquisition term (0: PoF only) */
    bool ehvi;                         /* several objectives */
    double f0;                         /* one objective: best feasible standardized target */
    double ylo[MAX_MODELS], yhi[MAX_MODELS]; /* constraint models: feasible standardized band */
    struct hpo_gp_hvgrid grid;
    double *mean, *var;                /* n_models x BLOCK */
    double *work, *gwork;              /* max rows x BLOCK, 2 max rows */
    double *dmean, *dvar;              /* n_models x d */
    int64_t start;                     /* trial number of the extra local-search start, or -1 */
};

/* ---- numerics ---- */

/* log Phi(z), accurate in both tails. */
static double log_ndtr(double z)
{
    if (z > 5.0) {
        return log1p(-0.5 * erfc(z / M_SQRT2));
    }
    if (z > -35.0) {
        return log(0.5 * erfc(-z / M_SQRT2));
    }
    double z2 = 1.0 / (z * z);
    return -0.5 * z * z - LN_SQRT_2PI - log(-z) +
            log1p(z2 * (-1.0 + z2 * (3.0 + z2 * (-15.0 + z2 * 105.0))));
}

/* log(1 - e^x), x <= 0 (Maechler's switch). */
static double log1mexp(double x)
{
    return x > -M_LN2 ? log(-expm1(x)) : log1p(-exp(x));
}

/*
** ln h(z), h(z) = phi(z) + z Phi(z), and d ln h / dz = Phi(z) / h(z) in one
** go. gp-model.c's hpo_gp_log_h switches to a 400-term continued fraction
** below z = -3, exact but costly when EHVI needs it for every box; here the
** direct form is used down to z = -10 (it loses about 2 log10(-z) digits to
** cancellation: 1e-14 relative) and the asymptotic series below.
*/
double hpo_gp_log_h_fast(double z, double *dz)
{
    if (z > -10.0) {
        double phi = exp(-0.5 * z * z - LN_SQRT_2PI), cdf = 0.5 * erfc(-z / M_SQRT2);
        double h = phi + z * cdf;
        if (h > 0.0) {
            *dz = cdf / h;
            return log(h);
        }
    }
    /*
    ** x = -z >= 10: Mills' ratio by its asymptotic series, x m(x) = s0 and
    ** h(z)/phi(z) = 1 - x m(x) = s1 (24 terms: truncation below 1e-16 of s1).
    */
    double x = -z, ix2 = 1.0 / (x * x), term = 1.0, s0 = 1.0, s1 = 0.0;
    for (int k = 1; k <= 24; k++) {
        term *= -(double)(2 * k - 1) * ix2;
        s0 += term;
        s1 -= term;
    }
    *dz = s0 / (x * s1);
    return -0.5 * z * z - LN_SQRT_2PI + log(s1);
}

static double log_phi(double z)
{
    return -0.5 * z * z - LN_SQRT_2PI;
}

double hpo_gp_log_pof(double mu, double var, double lo, double hi, double *dmu, double *dvar)
{
    double sd = sqrt(var + VAR_EPS), za = (lo - mu) / sd, zb = (hi - mu) / sd, lp, ga = 0.0,
           gb = 0.0;

    if (isinf(lo) && isinf(hi)) {
        lp = 0.0;
    } else if (isinf(lo)) {
        lp = log_ndtr(zb);
    } else if (isinf(hi)) {
        lp = log_ndtr(-za);
    } else if (za > 0.0) {
        double l1 = log_ndtr(-za), l2 = log_ndtr(-zb);
        lp = l1 + log1mexp(l2 - l1);
    } else {
        double l1 = log_ndtr(zb), l2 = log_ndtr(za);
        lp = l1 + log1mexp(l2 - l1);
    }
    if (dmu != NULL) {
        /* d log P / d mu = (phi(za) - phi(zb)) / (sd P); / d sd = (za phi(za) - zb phi(zb)) / (sd P). */
        if (isfinite(lp)) {
            ga = isinf(lo) ? 0.0 : exp(log_phi(za) - lp);
            gb = isinf(hi) ? 0.0 : exp(log_phi(zb) - lp);
        }
        *dmu = (ga - gb) / sd;
        *dvar = ((isinf(lo) ? 0.0 : za * ga) - (isinf(hi) ? 0.0 : zb * gb)) / sd / (2.0 * sd);
    }
    return lp;
}

/*
** log(psi(hi) - psi(lo)), psi(a) = E[(a - Y)+] = sd h((a - mu)/sd), Y ~ N(mu, sd^2),
** lo may be -inf; with its derivatives in mu and sd. -inf (and zero
** derivatives) when the difference underflows.
*/
static double log_dpsi(double lo, double hi, double mu, double sd, double *dmu, double *dsd)
{
    double zu = (hi - mu) / sd, gu, lu = log(sd) + hpo_gp_log_h_fast(zu, &gu);
    double zl, ll, gl, rho, one_m;

    if (isinf(lo)) {
        *dmu = -gu / sd;
        *dsd = (1.0 - zu * gu) / sd;
        return lu;
    }
    zl = (lo - mu) / sd;
    ll = log(sd) + hpo_gp_log_h_fast(zl, &gl);
    if (!(ll < lu)) {
        *dmu = *dsd = 0.0;
        return -HUGE_VAL;
    }
    rho = exp(ll - lu);
    one_m = -expm1(ll - lu);
    *dmu = (-gu + gl * rho) / (sd * one_m);
    *dsd = ((1.0 - zu * gu) - (1.0 - zl * gl) * rho) / (sd * one_m);
    return lu + log1mexp(ll - lu);
}

void hpo_gp_hvgrid_free(struct hpo_gp_hvgrid *g)
{
    free(g->b[0]);
    free(g->b[1]);
    free(g->cell_u);
    free(g->u);
    free(g->scratch);
    memset(g, 0, sizeof(*g));
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Sorted unique values of coordinate k of the n points; returns their count. */
static size_t unique_coords(const double *pts, size_t n, unsigned m, unsigned k, double *out)
{
    size_t c = 0;

    for (size_t i = 0; i < n; i++) {
        out[i] = pts[i * m + k];
    }
    qsort(out, n, sizeof(double), cmp_dbl);
    for (size_t i = 0; i < n; i++) {
        if (c == 0 || out[i] != out[c - 1]) {
            out[c++] = out[i];
        }
    }
    return c;
}

/* Position of v in the sorted unique array a[0..n-1] (present). */
static size_t find_coord(const double *a, size_t n, double v)
{
    size_t lo = 0, hi = n;

    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (a[mid] <= v) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int hpo_gp_hvgrid_build(struct hpo_gp_hvgrid *g, const double *front, size_t n, unsigned m,
        const double *ref)
{
    double *pts = malloc((n ? n : 1) * m * sizeof(double)), *tmp = NULL, *u = NULL;
    size_t np = 0, k[2] = { 0, 0 }, nc;
    int r = -ENOMEM;

    memset(g, 0, sizeof(*g));
    if (m < 2 || m > 3) {
        free(pts);
        return -EINVAL;
    }
    if (pts == NULL) {
        return -ENOMEM;
    }
    g->m = m;
    memcpy(g->ref, ref, m * sizeof(double));
    /* Only points strictly below the reference point count. */
    for (size_t i = 0; i < n; i++) {
        bool below = true;
        for (unsigned j = 0; j < m; j++) {
            below = below && front[i * m + j] < ref[j];
        }
        if (below) {
            memcpy(&pts[np * m], &front[i * m], m * sizeof(double));
            np++;
        }
    }
    tmp = malloc((np ? np : 1) * sizeof(double));
    if (tmp == NULL) {
        goto out;
    }
    /* Bounds of the grid dims: -inf, the front's coordinates, ref. */
    for (unsigned d = 0; d < 2; d++) {
        if (d + 1 >= m) {
            g->b[d] = malloc(2 * sizeof(double));
            if (g->b[d] == NULL) {
                goto out;
            }
            g->b[d][0] = -HUGE_VAL;
            g->b[d][1] = HUGE_VAL;
            continue;
        }
        k[d] = unique_coords(pts, np, m, d, tmp);
        g->b[d] = malloc((k[d] + 2) * sizeof(double));
        if (g->b[d] == NULL) {
            goto out;
        }
        g->b[d][0] = -HUGE_VAL;
        memcpy(&g->b[d][1], tmp, k[d] * sizeof(double));
        g->b[d][k[d] + 1] = ref[d];
    }
    g->k[0] = k[0] + 1;
    g->k[1] = k[1] + 1;
    nc = g->k[0] * g->k[1];
    g->n_cells = nc;
    u = malloc(nc * sizeof(double));
    g->cell_u = malloc(nc * sizeof(size_t));
    if (u == NULL || g->cell_u == NULL) {
        goto out;
    }
    for (size_t c = 0; c < nc; c++) {
        u[c] = ref[m - 1];
    }
    /* Each point bounds its own cell; then a running minimum over both grid dims. */
    for (size_t i = 0; i < np; i++) {
        size_t i0 = 1 + find_coord(&g->b[0][1], k[0], pts[i * m]);
        size_t i1 = m == 3 ? 1 + find_coord(&g->b[1][1], k[1], pts[i * m + 1]) : 0;
        double *cu = &u[i0 * g->k[1] + i1];
        *cu = pts[i * m + m - 1] < *cu ? pts[i * m + m - 1] : *cu;
    }
    for (size_t i0 = 0; i0 < g->k[0]; i0++) {
        for (size_t i1 = 0; i1 < g->k[1]; i1++) {
            double *cu = &u[i0 * g->k[1] + i1];
            if (i0 > 0 && u[(i0 - 1) * g->k[1] + i1] < *cu) {
                *cu = u[(i0 - 1) * g->k[1] + i1];
            }
            if (i1 > 0 && u[i0 * g->k[1] + i1 - 1] < *cu) {
                *cu = u[i0 * g->k[1] + i1 - 1];
            }
        }
    }
    /* The distinct upper bounds of the last dim, and each cell's. */
    g->u = malloc(nc * sizeof(double));
    if (g->u == NULL) {
        goto out;
    }
    memcpy(g->u, u, nc * sizeof(double));
    qsort(g->u, nc, sizeof(double), cmp_dbl);
    g->n_u = 0;
    for (size_t c = 0; c < nc; c++) {
        if (g->n_u == 0 || g->u[c] != g->u[g->n_u - 1]) {
            g->u[g->n_u++] = g->u[c];
        }
    }
    for (size_t c = 0; c < nc; c++) {
        g->cell_u[c] = find_coord(g->u, g->n_u, u[c]);
    }
    /* Per-candidate scratch: log terms and weights of both grid dims and of the u's. */
    g->scratch = malloc((4 * (g->k[0] + g->k[1] + g->n_u) + nc) * sizeof(double));
    if (g->scratch == NULL) {
        goto out;
    }
    r = 0;
out:
    if (r < 0) {
        hpo_gp_hvgrid_free(g);
    }
    free(pts);
    free(tmp);
    free(u);
    return r;
}

double hpo_gp_log_ehvi(const struct hpo_gp_hvgrid *g, const double *mu, const double *var,
        double *dmu, double *dvar)
{
    unsigned m = g->m;
    size_t k0 = g->k[0], k1 = g->k[1], nu = g->n_u, nc = g->n_cells;
    double sd[3], *a0 = g->scratch, *a1 = a0 + k0, *au = a1 + k1;
    double *d0 = au + nu, *d1 = d0 + 2 * k0, *du = d1 + 2 * k1; /* (dmu, dsd) pairs */
    double *w = du + 2 * nu, mx = -HUGE_VAL, sum = 0.0, lse;
    double *wk0, *wk1, *wku;

    for (unsigned j = 0; j < m; j++) {
        sd[j] = sqrt(var[j] + VAR_EPS);
    }
    for (size_t t = 0; t < k0; t++) {
        a0[t] = log_dpsi(g->b[0][t], g->b[0][t + 1], mu[0], sd[0], &d0[2 * t], &d0[2 * t + 1]);
    }
    for (size_t t = 0; t < k1; t++) {
        if (m == 3) {
            a1[t] = log_dpsi(g->b[1][t], g->b[1][t + 1], mu[1], sd[1], &d1[2 * t],
                    &d1[2 * t + 1]);
        } else {
            a1[t] = 0.0;
            d1[2 * t] = d1[2 * t + 1] = 0.0;
        }
    }
    for (size_t q = 0; q < nu; q++) {
        au[q] = log_dpsi(-HUGE_VAL, g->u[q], mu[m - 1], sd[m - 1], &du[2 * q], &du[2 * q + 1]);
    }
    for (size_t i0 = 0, c = 0; i0 < k0; i0++) {
        for (size_t i1 = 0; i1 < k1; i1++, c++) {
            w[c] = a0[i0] + a1[i1] + au[g->cell_u[c]];
            mx = w[c] > mx ? w[c] : mx;
        }
    }
    if (!(mx > -HUGE_VAL)) {
        if (dmu != NULL) {
            memset(dmu, 0, m * sizeof(double));
            memset(dvar, 0, m * sizeof(double));
        }
        return -HUGE_VAL;
    }
    for (size_t c = 0; c < nc; c++) {
        w[c] = exp(w[c] - mx);
        sum += w[c];
    }
    lse = mx + log(sum);
    if (dmu == NULL) {
        return lse;
    }
    /* Weights of each cell, summed per interval of each dim (reusing a0/a1/au). */
    wk0 = a0;
    wk1 = a1;
    wku = au;
    memset(wk0, 0, k0 * sizeof(double));
    memset(wk1, 0, k1 * sizeof(double));
    memset(wku, 0, nu * sizeof(double));
    for (size_t i0 = 0, c = 0; i0 < k0; i0++) {
        for (size_t i1 = 0; i1 < k1; i1++, c++) {
            double wc = w[c] / sum;
            wk0[i0] += wc;
            wk1[i1] += wc;
            wku[g->cell_u[c]] += wc;
        }
    }
    double gm[3] = { 0.0, 0.0, 0.0 }, gs[3] = { 0.0, 0.0, 0.0 };
    for (size_t t = 0; t < k0; t++) {
        if (wk0[t] > 0.0) {
            gm[0] += wk0[t] * d0[2 * t];
            gs[0] += wk0[t] * d0[2 * t + 1];
        }
    }
    if (m == 3) {
        for (size_t t = 0; t < k1; t++) {
            if (wk1[t] > 0.0) {
                gm[1] += wk1[t] * d1[2 * t];
                gs[1] += wk1[t] * d1[2 * t + 1];
            }
        }
    }
    for (size_t q = 0; q < nu; q++) {
        if (wku[q] > 0.0) {
            gm[m - 1] += wku[q] * du[2 * q];
            gs[m - 1] += wku[q] * du[2 * q + 1];
        }
    }
    for (unsigned j = 0; j < m; j++) {
        dmu[j] = gm[j];
        dvar[j] = gs[j] / (2.0 * sd[j]);
    }
    return lse;
}

/* ---- targets and feasibility ---- */

double hpo__gp_mo_target_y(const struct hpo_history *h, const struct hpo_trial *t, int target)
{
    size_t k = (size_t)target;

    if (k < h->n_obj) {
        double v = t->results != NULL ? t->results[k] : (k == 0 ? t->value : NAN);
        return h->obj_maximize != NULL && h->obj_maximize[k] ? v : -v;
    }
    if (t->results == NULL || k >= h->n_obj + h->n_cons) {
        return NAN;
    }
    return -t->results[k];
}

bool hpo__gp_mo_feasible(const struct hpo_history *h, const struct hpo_trial *t)
{
    if (h->n_cons == 0) {
        return true;
    }
    if (t->results == NULL) {
        return false;
    }
    for (size_t j = 0; j < h->n_cons; j++) {
        double v = t->results[h->n_obj + j];
        if (!(v >= h->cons_lo[j] && v <= h->cons_hi[j])) {
            return false;
        }
    }
    return true;
}

/* The mean and sample std BoTorch's standardization used on a model's observed rows. */
static void row_stats(const struct ctx *c, const struct gp_state *s, double *ret_mean,
        double *ret_sd)
{
    double mean = 0.0, var = 0.0, sd;
    size_t n = s->n_obs;

    for (size_t i = 0; i < n; i++) {
        mean += hpo__gp_mo_target_y(c->h, c->h->trials[s->row_trial[i]], s->target);
    }
    mean /= (double)(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        double y = hpo__gp_mo_target_y(c->h, c->h->trials[s->row_trial[i]], s->target);
        var += (y - mean) * (y - mean);
    }
    sd = n > 1 ? sqrt(var / (double)(n - 1)) : 1.0;
    *ret_mean = mean;
    *ret_sd = sd < 1e-8 ? 1.0 : sd;
}

void hpo__gp_mo_free(struct gp_mo *mo)
{
    if (mo == NULL) {
        return;
    }
    for (size_t i = 0; i < mo->n_sub; i++) {
        if (mo->sub[i] != NULL) {
            hpo__gp_cache_reset(mo->sub[i]);
            free(mo->sub[i]);
        }
    }
    free(mo->sub);
    free(mo);
}

static struct gp_mo *mo_new(const struct gp_state *s, const struct hpo_history *h)
{
    struct gp_mo *mo = calloc(1, sizeof(*mo));

    if (mo == NULL) {
        return NULL;
    }
    mo->n_obj_models = h->n_obj > 1 ? h->n_obj : 0;
    mo->n_sub = mo->n_obj_models + h->n_cons;
    mo->sub = calloc(mo->n_sub ? mo->n_sub : 1, sizeof(*mo->sub));
    if (mo->sub == NULL) {
        hpo__gp_mo_free(mo);
        return NULL;
    }
    for (size_t i = 0; i < mo->n_sub; i++) {
        struct gp_state *sub = calloc(1, sizeof(*sub));
        if (sub == NULL) {
            hpo__gp_mo_free(mo);
            return NULL;
        }
        sub->n_startup = s->n_startup;
        sub->acq = ACQ_LOGEI;
        sub->kernel = s->kernel;
        sub->warp = false; /* affine targets: the front and bounds map through them */
        sub->beta = s->beta;
        sub->deterministic = s->deterministic;
        sub->n_candidates = s->n_candidates;
        sub->n_local = s->n_local;
        sub->target = (int)(i < mo->n_obj_models ? i : h->n_obj + (i - mo->n_obj_models));
        sub->liar = GP_LIAR_BELIEVER;
        mo->sub[i] = sub;
    }
    return mo;
}

/* Per-ask buffers. */
static void ask_free(struct gp_mo *mo)
{
    hpo_gp_hvgrid_free(&mo->grid);
    free(mo->mean);
    free(mo->var);
    free(mo->work);
    free(mo->gwork);
    free(mo->dmean);
    free(mo->dvar);
    mo->mean = mo->var = mo->work = mo->gwork = mo->dmean = mo->dvar = NULL;
    mo->n_models = 0;
}

void hpo__gp_mo_finish(struct ctx *c)
{
    struct gp_mo *mo = c->s->mo;

    if (mo == NULL || c->mo == NULL) {
        return;
    }
    for (size_t i = 0; i < mo->n_sub; i++) {
        hpo_gp_truncate(&mo->sub[i]->model, mo->sub[i]->n_obs);
    }
    ask_free(mo);
    c->mo = NULL;
}

static void stagger(struct gp_state *sub, size_t n, size_t k, size_t n_models)
{
    double interval = 0.05 * (double)n < 64.0 ? 0.05 * (double)n : 64.0;

    if (sub->stats.refactors > 0 && n > STAGGER_FROM && sub->n_at_fit == n) {
        sub->n_at_fit = n - (size_t)floor((double)k * interval / (double)n_models);
    }
}

static void add_stats(struct gp_state *s, const struct gp_state *sub)
{
    s->stats.fits += sub->stats.fits;
    s->stats.refactors += sub->stats.refactors;
    s->stats.extends += sub->stats.extends;
    s->stats.fit_evals += sub->stats.fit_evals;
}

/*
** The feasible Pareto front of several objectives in standardized loss
** space, with the running trials believed feasible, and the grid of its
** non-dominated region. Sets mo->ehvi, or leaves it false when nothing is
** feasible (PoF alone).
*/
static int build_front(struct ctx *c, struct gp_mo *mo, bool feasible_any)
{
    const struct hpo_history *h = c->h;
    unsigned m = (unsigned)h->n_obj;
    size_t n = h->count[HPO_STATE_COMPLETE], k = 0, n_run = SIZE_MAX, np = 0;
    double *loss = NULL, *viol = NULL, *pts = NULL, ref[3], my[3], sy[3], v[3];
    size_t *idx = NULL, *trial = NULL;
    unsigned char maxi[3];
    long nf;
    int r = -ENOMEM;

    for (unsigned j = 0; j < m; j++) {
        maxi[j] = h->obj_maximize[j];
        row_stats(c, mo->sub[j], &my[j], &sy[j]);
        size_t nr = mo->sub[j]->model.n - mo->sub[j]->n_obs;
        n_run = nr < n_run ? nr : n_run;
    }
    for (size_t j = mo->n_obj_models; j < mo->n_sub; j++) {
        size_t nr = mo->sub[j]->model.n - mo->sub[j]->n_obs;
        if (mo->sub[j]->n_obs > 0 && nr != n_run) {
            n_run = 0; /* believers not aligned: leave them out */
        }
    }
    loss = malloc((n + n_run + 1) * m * sizeof(double));
    viol = malloc((n + n_run + 1) * sizeof(double));
    idx = malloc((n + n_run + 1) * sizeof(size_t));
    trial = malloc((n + 1) * sizeof(size_t));
    if (loss == NULL || viol == NULL || idx == NULL || trial == NULL) {
        goto out;
    }
    for (size_t i = 0; i < h->n_trials && k < n; i++) {
        const struct hpo_trial *t = h->trials[i];
        if (t->state != HPO_STATE_COMPLETE) {
            continue;
        }
        for (unsigned j = 0; j < m; j++) {
            v[j] = t->results != NULL ? t->results[j] : (j == 0 ? t->value : NAN);
        }
        hpo_mo_loss(v, maxi, m, &loss[k * m]);
        viol[k] = !feasible_any || hpo__gp_mo_feasible(h, t) ? 0.0 : 1.0;
        trial[k] = i;
        k++;
    }
    if (h->reference != NULL) {
        for (unsigned j = 0; j < m; j++) {
            ref[j] = maxi[j] ? -h->reference[j] : h->reference[j];
        }
    } else if (hpo_mo_nadir_reference(loss, k, m, viol, 0.1, ref) < 0) {
        r = 0; /* nothing feasible */
        goto out;
    }
    nf = hpo_mo_front(loss, k, m, viol, idx);
    if (nf < 0) {
        goto out;
    }
    /* A random point of the front starts one more local search. */
    mo->start = nf > 0 ? (int64_t)trial[idx[hpo_rng_below(c->rng, (uint64_t)nf)]] : -1;
    pts = malloc(((size_t)nf + n_run + 1) * m * sizeof(double));
    if (pts == NULL) {
        goto out;
    }
    /* Standardized losses: (loss + mean(-loss)) / std(-loss). */
    for (long i = 0; i < nf; i++) {
        for (unsigned j = 0; j < m; j++) {
            pts[np * m + j] = (loss[idx[i] * m + j] + my[j]) / sy[j];
        }
        np++;
    }
    for (size_t i = 0; i < n_run; i++) {
        bool ok = true;
        for (size_t j = mo->n_obj_models; j < mo->n_sub && ok; j++) {
            const struct gp_state *cs = mo->sub[j]; /* model j of the acquisition too */
            if (cs->n_obs > 0) {
                double y = cs->model.y[cs->n_obs + i];
                ok = y >= mo->ylo[j] && y <= mo->yhi[j];
            }
        }
        for (unsigned j = 0; j < m && ok; j++) {
            pts[np * m + j] = -mo->sub[j]->model.y[mo->sub[j]->n_obs + i];
        }
        np += ok;
    }
    for (unsigned j = 0; j < m; j++) {
        ref[j] = (ref[j] + my[j]) / sy[j];
    }
    /* Non-dominated subset of front + believers. */
    nf = hpo_mo_front(pts, np, m, NULL, idx);
    if (nf < 0) {
        goto out;
    }
    for (long i = 0; i < nf; i++) {
        memmove(&pts[i * m], &pts[idx[i] * m], m * sizeof(double));
    }
    r = hpo_gp_hvgrid_build(&mo->grid, pts, (size_t)nf, m, ref);
    mo->ehvi = r == 0;
out:
    free(loss);
    free(viol);
    free(idx);
    free(trial);
    free(pts);
    return r;
}

int hpo__gp_mo_update(struct ctx *c, const size_t *complete, size_t n_complete, const char **why)
{
    struct gp_state *s = c->s;
    const struct hpo_history *h = c->h;
    struct gp_mo *mo = s->mo;
    size_t *list = malloc((n_complete ? n_complete : 1) * sizeof(size_t)), max_n = 0, nm = 0;
    bool feasible_any = false, have_cons = false;
    int r = 0;

    *why = "out of memory";
    if (list == NULL) {
        return -ENOMEM;
    }
    if (h->n_obj > 3 || h->n_cons + 3 > MAX_MODELS) {
        free(list);
        *why = "too many objectives or constraints for gp";
        return -EINVAL;
    }
    if (mo == NULL) {
        mo = s->mo = mo_new(s, h);
        if (mo == NULL) {
            free(list);
            return -ENOMEM;
        }
    }
    ask_free(mo);
    mo->ehvi = false;
    mo->m = 0;
    mo->start = -1;
    for (size_t i = 0; i < n_complete; i++) {
        feasible_any = feasible_any || hpo__gp_mo_feasible(h, h->trials[complete[i]]);
    }
    /* One objective: gp.c's own model (warped, best constant liar at the best feasible row). */
    if (mo->n_obj_models == 0) {
        s->feasible_best = true;
        r = hpo__gp_update_model(c, complete, n_complete, why);
        if (r < 0) {
            goto out;
        }
        mo->f0 = c->f0;
        mo->model[nm++] = &s->model;
        max_n = s->model.n;
    }
    for (size_t i = 0; i < mo->n_sub; i++) {
        struct gp_state *sub = mo->sub[i];
        struct ctx cs = *c;
        size_t n = 0;
        cs.s = sub;
        for (size_t t = 0; t < n_complete; t++) {
            if (!isnan(hpo__gp_mo_target_y(h, h->trials[complete[t]], sub->target))) {
                list[n++] = complete[t];
            }
        }
        r = hpo__gp_ensure_cache(sub, c->space, s->dims, s->d);
        if (r < 0) {
            goto out;
        }
        sub->stats.fits = sub->stats.refactors = sub->stats.extends = 0;
        sub->stats.fit_evals = 0;
        if (n == 0) {
            /* A constraint nobody told: not modelled (every trial is infeasible). */
            hpo_gp_truncate(&sub->model, 0);
            sub->n_obs = 0;
            mo->model[nm] = NULL;
            nm++;
            continue;
        }
        r = hpo__gp_update_model(&cs, list, n, why);
        add_stats(s, sub);
        if (r < 0) {
            goto out;
        }
        stagger(sub, n, mo->n_obj_models == 0 ? 1 + i : i,
                mo->n_sub + (mo->n_obj_models == 0));
        mo->model[nm] = &sub->model;
        if (i >= mo->n_obj_models) {
            double mean, sd;
            size_t j = (size_t)sub->target - h->n_obj;
            row_stats(c, sub, &mean, &sd);
            /* c in [lo, hi]  <=>  y = -c in [-hi, -lo], standardized. */
            mo->ylo[nm] = isinf(h->cons_hi[j]) ? -HUGE_VAL : (-h->cons_hi[j] - mean) / sd;
            mo->yhi[nm] = isinf(h->cons_lo[j]) ? HUGE_VAL : (-h->cons_lo[j] - mean) / sd;
            have_cons = true;
        }
        max_n = sub->model.n > max_n ? sub->model.n : max_n;
        nm++;
    }
    mo->n_models = nm;
    /*
    ** The objective term: against the feasible trials; with none feasible
    ** PoF alone, unless no constraint could be modelled (then the objective
    ** alone, every trial taken as feasible).
    */
    if (feasible_any || !have_cons) {
        if (mo->n_obj_models == 0) {
            mo->m = 1;
            if (!feasible_any) {
                mo->f0 = -HUGE_VAL;
                for (size_t i = 0; i < s->n_obs; i++) {
                    mo->f0 = s->model.y[i] > mo->f0 ? s->model.y[i] : mo->f0;
                }
            }
            /* The best feasible row starts one local search. */
            for (size_t i = 0; i < s->n_obs; i++) {
                const struct hpo_trial *t = h->trials[s->row_trial[i]];
                if (s->model.y[i] == mo->f0 && (!feasible_any || hpo__gp_mo_feasible(h, t))) {
                    mo->start = t->number;
                    break;
                }
            }
        } else {
            r = build_front(c, mo, feasible_any);
            if (r < 0) {
                goto out;
            }
            mo->m = mo->ehvi ? h->n_obj : 0;
        }
    }
    if (mo->n_obj_models > 0) {
        /* L-BFGS preconditioning: the mean inverse squared lengthscale of the models. */
        for (size_t k = 0; k < c->d; k++) {
            double sum = 0.0;
            size_t cnt = 0;
            for (size_t i = 0; i < nm; i++) {
                if (mo->model[i] != NULL) {
                    sum += mo->model[i]->theta[k];
                    cnt++;
                }
            }
            s->model.theta[k] = cnt ? sum / (double)cnt : 1.0;
        }
    }
    mo->mean = malloc(nm * BLOCK * sizeof(double));
    mo->var = malloc(nm * BLOCK * sizeof(double));
    mo->work = malloc((max_n * BLOCK + 1) * sizeof(double));
    mo->gwork = malloc((2 * max_n + 1) * sizeof(double));
    mo->dmean = malloc(nm * (c->d ? c->d : 1) * sizeof(double));
    mo->dvar = malloc(nm * (c->d ? c->d : 1) * sizeof(double));
    if (mo->mean == NULL || mo->var == NULL || mo->work == NULL || mo->gwork == NULL ||
            mo->dmean == NULL || mo->dvar == NULL) {
        r = -ENOMEM;
        goto out;
    }
    c->mo = mo;
out:
    if (r < 0) {
        c->mo = mo;
        hpo__gp_mo_finish(c);
        hpo_gp_truncate(&s->model, s->n_obs);
    }
    free(list);
    return r;
}

/*
** The acquisition from the posteriors of the models (objectives first),
** and when dmu is non-NULL its derivatives in each model's mean and variance.
*/
static double acq_point(const struct gp_mo *mo, const double *mu, const double *var,
        double *dmu, double *dvar)
{
    size_t first_cons = mo->n_obj_models > 0 ? mo->n_obj_models : 1;
    double val = 0.0;

    if (dmu != NULL) {
        memset(dmu, 0, mo->n_models * sizeof(double));
        memset(dvar, 0, mo->n_models * sizeof(double));
    }
    if (mo->m == 1) {
        double sd = sqrt(var[0] + VAR_EPS), z = (mu[0] - mo->f0) / sd, g;
        val = log(sd) + hpo_gp_log_h_fast(z, &g);
        if (dmu != NULL) {
            dmu[0] = g / sd;
            dvar[0] = (1.0 / sd - g * z / sd) / (2.0 * sd);
        }
    } else if (mo->m > 1) {
        /* Losses are the negated targets. */
        double lmu[3], gm[3], gv[3];
        for (size_t j = 0; j < mo->m; j++) {
            lmu[j] = -mu[j];
        }
        val = hpo_gp_log_ehvi(&mo->grid, lmu, var, dmu != NULL ? gm : NULL, gv);
        if (dmu != NULL) {
            for (size_t j = 0; j < mo->m; j++) {
                dmu[j] = -gm[j];
                dvar[j] = gv[j];
            }
        }
    }
    for (size_t i = first_cons; i < mo->n_models; i++) {
        if (mo->model[i] == NULL) {
            continue;
        }
        val += hpo_gp_log_pof(mu[i], var[i], mo->ylo[i], mo->yhi[i],
                dmu != NULL ? &dmu[i] : NULL, dmu != NULL ? &dvar[i] : NULL);
    }
    return val;
}

void hpo__gp_mo_acq_batch(struct ctx *c, size_t count, const double *xs, double *out)
{
    struct gp_mo *mo = c->mo;
    double mu[MAX_MODELS], var[MAX_MODELS];

    for (size_t i0 = 0; i0 < count; i0 += BLOCK) {
        size_t b = count - i0 < BLOCK ? count - i0 : BLOCK;
        for (size_t k = 0; k < mo->n_models; k++) {
            if (mo->model[k] != NULL) {
                hpo_gp_predict(mo->model[k], b, &xs[i0 * c->d], &mo->mean[k * BLOCK],
                        &mo->var[k * BLOCK], mo->work);
            }
        }
        for (size_t i = 0; i < b; i++) {
            for (size_t k = 0; k < mo->n_models; k++) {
                mu[k] = mo->model[k] != NULL ? mo->mean[k * BLOCK + i] : 0.0;
                var[k] = mo->model[k] != NULL ? mo->var[k * BLOCK + i] : 1.0;
            }
            out[i0 + i] = acq_point(mo, mu, var, NULL, NULL);
        }
    }
}

double hpo__gp_mo_acq_grad(struct ctx *c, const double *x, double *grad)
{
    struct gp_mo *mo = c->mo;
    double mu[MAX_MODELS], var[MAX_MODELS], gmu[MAX_MODELS], gvar[MAX_MODELS], val;
    size_t d = c->d;

    for (size_t k = 0; k < mo->n_models; k++) {
        if (mo->model[k] != NULL) {
            hpo_gp_predict_grad(mo->model[k], x, &mu[k], &var[k], &mo->dmean[k * d],
                    &mo->dvar[k * d], mo->gwork);
        } else {
            mu[k] = 0.0;
            var[k] = 1.0;
        }
    }
    val = acq_point(mo, mu, var, gmu, gvar);
    memset(grad, 0, d * sizeof(double));
    for (size_t k = 0; k < mo->n_models; k++) {
        if (mo->model[k] == NULL) {
            continue;
        }
        for (size_t j = 0; j < d; j++) {
            grad[j] += gmu[k] * mo->dmean[k * d + j] + gvar[k] * mo->dvar[k * d + j];
        }
    }
    return val;
}

bool hpo__gp_mo_start(struct ctx *c, double *x)
{
    const struct gp_mo *mo = c->mo;

    if (mo == NULL || mo->start < 0 || (size_t)mo->start >= c->h->n_trials) {
        return false;
    }
    return hpo__gp_trial_coords(c, c->h->trials[mo->start], x);
}
