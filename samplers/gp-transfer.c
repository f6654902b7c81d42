/*
** gp-transfer.c: stacked residual GPs for warm start (docs/ALGORITHMS.md
** §12.3), after OSS Vizier's StackedResidualGP.
**
** Levels: one per prior study with usable trials, oldest first. A level's
** targets are its study's -loss standardized (hpo_gp_standardize, then the
** sampler's output warping when on), minus the mean of the levels below at
** its rows, divided by their sample std (n >= 3; clamped to [0.05, 1e6])
** because hpod's kernel has unit signal variance (Vizier fits an
** amplitude instead). Each level fits its own hyperparameters (MAP, the
** same priors as the top). A prior study without some modelled dim gets a
** level over the dims it has; predicting a level below at a row lacking one
** of that level's dims takes the centre 0.5 (a categorical: no choice).
**
** Prediction at x: mean = sum of the levels' means (each times its scale);
** sd = sd_top^alpha * sd_base^(1 - alpha) level by level, alpha from
** hpo_gp_transfer_alpha with the level's and the level below's row counts.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/space.h"
#include "gp-transfer.h"
#include "prior.h"

#define SCALE_MIN 0.05
#define SCALE_MAX 1e6
#define VAR_FLOOR 1e-18

static double dof(double n, double h)
{
    double a = n - h, b = n / (1.0 + h);

    return a > b ? a : b;
}

double hpo_gp_transfer_alpha(size_t n_top, size_t n_base, size_t d)
{
    double h = (double)d + 2.0, dt = dof((double)n_top, h), db = dof((double)n_base, h), b2;

    if (!(dt > 0.0) || !(db > 0.0)) {
        return 0.0;
    }
    b2 = dt / db * (1.0 + db + HPO_GP_TRANSFER_EPS * HPO_GP_TRANSFER_EPS);
    return b2 / (1.0 + b2);
}

void hpo_gp_transfer_combine(double alpha, double mean_t, double var_t, double mean_b,
        double var_b, double *mean, double *var)
{
    double vt = var_t > VAR_FLOOR ? var_t : VAR_FLOOR, vb = var_b > VAR_FLOOR ? var_b : VAR_FLOOR;

    *mean = mean_t + mean_b;
    *var = exp(alpha * log(vt) + (1.0 - alpha) * log(vb));
}

void hpo_gp_stack_init(struct hpo_gp_stack *st, size_t d)
{
    memset(st, 0, sizeof(*st));
    st->d = d;
}

void hpo_gp_stack_free(struct hpo_gp_stack *st)
{
    for (size_t k = 0; k < st->n_levels; k++) {
        hpo_gp_model_free(&st->levels[k].model);
        free(st->levels[k].sel);
    }
    free(st->levels);
    free(st->work);
    memset(st, 0, sizeof(*st));
}

static int work_ensure(struct hpo_gp_stack *st, size_t need)
{
    double *w;

    if (need <= st->cap_work) {
        return 0;
    }
    w = realloc(st->work, need * sizeof(double));
    if (w == NULL) {
        return -ENOMEM;
    }
    st->work = w;
    st->cap_work = need;
    return 0;
}

/* Level k's coordinates of full point x (a missing one: 0.5, or -1 for a categorical). */
static void project(const struct hpo_gp_level *lv, const double *x, double *out)
{
    for (size_t k = 0; k < lv->model.d; k++) {
        double v = x[lv->sel[k]];
        out[k] = isnan(v) ? (lv->model.is_cat[k] ? -1.0 : 0.5) : v;
    }
}

/* Mean and variance of the first `levels` levels at count points. */
static int predict_levels(struct hpo_gp_stack *st, size_t levels, size_t count, const double *xs,
        double *mean, double *var)
{
    size_t nmax = 1;
    double *sub, *lm, *lv, *work;
    int r;

    for (size_t k = 0; k < levels; k++) {
        nmax = st->levels[k].model.n > nmax ? st->levels[k].model.n : nmax;
    }
    for (size_t i = 0; i < count; i++) {
        mean[i] = 0.0;
        var[i] = 1.0;
    }
    r = work_ensure(st, count * (st->d + 2) + nmax * 512 + 1);
    if (r < 0) {
        return r;
    }
    sub = st->work;
    lm = sub + count * st->d;
    lv = lm + count;
    work = lv + count;
    for (size_t k = 0; k < levels; k++) {
        const struct hpo_gp_level *L = &st->levels[k];
        double a = k == 0 ? 1.0 :
                hpo_gp_transfer_alpha(L->model.n, st->levels[k - 1].model.n, st->d);
        for (size_t i = 0; i < count; i++) {
            project(L, &xs[i * st->d], &sub[i * L->model.d]);
        }
        hpo_gp_predict(&L->model, count, sub, lm, lv, work);
        for (size_t i = 0; i < count; i++) {
            double mt = L->scale * lm[i], vt = L->scale * L->scale * lv[i];
            if (k == 0) {
                mean[i] = mt;
                var[i] = vt;
            } else {
                hpo_gp_transfer_combine(a, mt, vt, mean[i], var[i], &mean[i], &var[i]);
            }
        }
    }
    return 0;
}

int hpo_gp_stack_predict(struct hpo_gp_stack *st, size_t count, const double *xs, double *mean,
        double *var)
{
    return predict_levels(st, st->n_levels, count, xs, mean, var);
}

int hpo_gp_stack_predict_grad(struct hpo_gp_stack *st, const double *x, double *mean,
        double *var, double *dmean, double *dvar)
{
    size_t d = st->d, nmax = 1;
    double *sub, *dm, *dv, *work;
    int r;

    for (size_t k = 0; k < st->n_levels; k++) {
        nmax = st->levels[k].model.n > nmax ? st->levels[k].model.n : nmax;
    }
    r = work_ensure(st, 3 * d + 2 * nmax + 1);
    if (r < 0) {
        return r;
    }
    sub = st->work;
    dm = sub + d;
    dv = dm + d;
    work = dv + d;
    *mean = 0.0;
    *var = 1.0;
    for (size_t j = 0; j < d; j++) {
        dmean[j] = 0.0;
        dvar[j] = 0.0;
    }
    for (size_t k = 0; k < st->n_levels; k++) {
        const struct hpo_gp_level *L = &st->levels[k];
        double m, v, s2 = L->scale * L->scale, a, vt, vb, vn;
        project(L, x, sub);
        hpo_gp_predict_grad(&L->model, sub, &m, &v, dm, dv, work);
        m *= L->scale;
        v *= s2;
        if (k == 0) {
            *mean = m;
            *var = v;
            for (size_t q = 0; q < L->model.d; q++) {
                dmean[L->sel[q]] = L->scale * dm[q];
                dvar[L->sel[q]] = s2 * dv[q];
            }
            continue;
        }
        a = hpo_gp_transfer_alpha(L->model.n, st->levels[k - 1].model.n, d);
        vt = v > VAR_FLOOR ? v : VAR_FLOOR;
        vb = *var > VAR_FLOOR ? *var : VAR_FLOOR;
        hpo_gp_transfer_combine(a, m, v, *mean, *var, mean, &vn);
        /* d var = var (a dvt / vt + (1 - a) dvb / vb) */
        for (size_t j = 0; j < d; j++) {
            dvar[j] = vn * (1.0 - a) * dvar[j] / vb;
        }
        for (size_t q = 0; q < L->model.d; q++) {
            dmean[L->sel[q]] += L->scale * dm[q];
            dvar[L->sel[q]] += vn * a * s2 * dv[q] / vt;
        }
        *var = vn;
    }
    return 0;
}

static double residual_scale(const double *r, size_t n)
{
    double mean = 0.0, ss = 0.0, sd;

    if (n < 3) {
        return 1.0;
    }
    for (size_t i = 0; i < n; i++) {
        mean += r[i];
    }
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        ss += (r[i] - mean) * (r[i] - mean);
    }
    sd = sqrt(ss / (double)(n - 1));
    return sd < SCALE_MIN ? SCALE_MIN : (sd > SCALE_MAX ? SCALE_MAX : sd);
}

int hpo_gp_stack_add(struct hpo_gp_stack *st, size_t n, const double *x, const double *y,
        const bool *is_cat, int kernel, bool deterministic, const double *raw)
{
    size_t d = st->d, nd = 0;
    struct hpo_gp_level lv = { 0 };
    double *res = malloc((n ? n : 1) * sizeof(double)), *var = malloc((n ? n : 1) * sizeof(double));
    double *row = malloc((d ? d : 1) * sizeof(double)), *start = NULL;
    bool *cat = calloc(d ? d : 1, sizeof(bool));
    struct hpo_gp_level *levels;
    int r = -ENOMEM;

    lv.sel = malloc((d ? d : 1) * sizeof(size_t));
    if (res == NULL || var == NULL || row == NULL || cat == NULL || lv.sel == NULL || n == 0) {
        r = n == 0 ? -EDOM : -ENOMEM;
        goto fail;
    }
    for (size_t j = 0; j < d; j++) {
        bool all = true;
        for (size_t i = 0; i < n && all; i++) {
            all = !isnan(x[i * d + j]);
        }
        if (all) {
            cat[nd] = is_cat != NULL && is_cat[j];
            lv.sel[nd++] = j;
        }
    }
    if (nd == 0) {
        r = -EDOM;
        goto fail;
    }
    /* Residuals under the stack so far. */
    r = predict_levels(st, st->n_levels, n, x, res, var);
    if (r < 0) {
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        res[i] = st->n_levels > 0 ? y[i] - res[i] : y[i];
    }
    lv.scale = residual_scale(res, n);
    r = hpo_gp_model_init(&lv.model, nd, cat);
    if (r < 0) {
        goto fail;
    }
    lv.model.kernel = kernel;
    for (size_t i = 0; i < n; i++) {
        for (size_t q = 0; q < nd; q++) {
            row[q] = x[i * d + lv.sel[q]];
        }
        r = hpo_gp_model_add(&lv.model, row, res[i] / lv.scale);
        if (r < 0) {
            goto fail;
        }
    }
    start = malloc(hpo_gp_n_raw(nd, deterministic) * sizeof(double));
    if (start == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    if (raw != NULL) {
        memcpy(start, raw, hpo_gp_n_raw(nd, deterministic) * sizeof(double));
    } else {
        hpo_gp_prior_mode(nd, deterministic, start);
        if (hpo_gp_fit(&lv.model, start, deterministic, NULL) < 0) {
            hpo_gp_prior_mode(nd, deterministic, start);
        }
    }
    hpo_gp_set_raw(&lv.model, start, deterministic);
    r = hpo_gp_factor(&lv.model);
    if (r == 0) {
        r = hpo_gp_solve(&lv.model);
    }
    if (r < 0) {
        goto fail;
    }
    levels = realloc(st->levels, (st->n_levels + 1) * sizeof(*levels));
    if (levels == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    st->levels = levels;
    st->levels[st->n_levels++] = lv;
    free(res);
    free(var);
    free(row);
    free(cat);
    free(start);
    return 0;
fail:
    hpo_gp_model_free(&lv.model);
    free(lv.sel);
    free(res);
    free(var);
    free(row);
    free(cat);
    free(start);
    return r;
}

/* ---- the gp sampler's hook ------------------------------------------------------------ */

struct hpo_gp_transfer {
    const struct hpo_prior *prior;
    struct hpo_gp_stack st;
    size_t *dims;
    size_t d;
    bool built, active;
    double scale; /* the top level's residual scale */
    double *bm, *bv, *bx;
    size_t cap;
};

struct hpo_gp_transfer *hpo_gp_transfer_new(const struct hpo_prior *prior)
{
    struct hpo_gp_transfer *t = calloc(1, sizeof(*t));

    if (t != NULL) {
        t->prior = prior;
        t->scale = 1.0;
    }
    return t;
}

void hpo_gp_transfer_free(struct hpo_gp_transfer *t)
{
    if (t == NULL) {
        return;
    }
    hpo_gp_stack_free(&t->st);
    free(t->dims);
    free(t->bm);
    free(t->bv);
    free(t->bx);
    free(t);
}

bool hpo_gp_transfer_active(const struct hpo_gp_transfer *t)
{
    return t != NULL && t->built && t->active;
}

struct iy {
    double y;
    size_t i;
};

static int by_y_desc(const void *a, const void *b)
{
    const struct iy *x = a, *z = b;

    if (x->y != z->y) {
        return x->y > z->y ? -1 : 1;
    }
    return (x->i > z->i) - (x->i < z->i);
}

/* Keep at most HPO_GP_TRANSFER_MAX_ROWS rows: the best quarter, then evenly spaced others. */
static size_t pick_rows(const double *y, size_t n, size_t *keep)
{
    struct iy *o;
    size_t best, rest, want = HPO_GP_TRANSFER_MAX_ROWS, k = 0;

    if (n <= want) {
        for (size_t i = 0; i < n; i++) {
            keep[i] = i;
        }
        return n;
    }
    o = malloc(n * sizeof(*o));
    if (o == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        o[i].y = y[i];
        o[i].i = i;
    }
    qsort(o, n, sizeof(*o), by_y_desc);
    best = want / 4;
    rest = want - best;
    for (size_t i = 0; i < best; i++) {
        keep[k++] = o[i].i;
    }
    for (size_t q = 0; q < rest; q++) {
        keep[k++] = o[best + q * (n - best) / rest].i;
    }
    free(o);
    return k;
}

int hpo_gp_transfer_prepare(struct hpo_gp_transfer *t, const struct hpo_space *space,
        const size_t *dims, size_t d, int kernel, bool deterministic,
        void (*warp)(double *y, size_t n))
{
    const struct hpo_prior *pr = t->prior;
    bool *is_cat;
    int r = 0;

    if (t->built && t->d == d && memcmp(t->dims, dims, d * sizeof(*dims)) == 0) {
        return t->active ? 0 : -EDOM;
    }
    hpo_gp_stack_free(&t->st);
    free(t->dims);
    t->built = false;
    t->active = false;
    t->d = d;
    t->dims = malloc((d ? d : 1) * sizeof(*dims));
    is_cat = malloc((d ? d : 1) * sizeof(bool));
    if (t->dims == NULL || is_cat == NULL) {
        free(is_cat);
        free(t->dims);
        t->dims = NULL;
        t->d = 0;
        return -ENOMEM;
    }
    memcpy(t->dims, dims, d * sizeof(*dims));
    hpo_gp_stack_init(&t->st, d);
    for (size_t j = 0; j < d; j++) {
        is_cat[j] = space->params[dims[j]].type == HPO_PARAM_CATEGORICAL;
    }
    for (size_t k = 0; k < pr->n_studies && r != -ENOMEM; k++) {
        const struct hpo_prior_study *ps = &pr->studies[k];
        size_t nx = ps->n * (d ? d : 1);
        double *y = malloc(ps->n * sizeof(double)), *x = malloc(nx * sizeof(double));
        double *ys = malloc(ps->n * sizeof(double)), *xs = malloc(nx * sizeof(double));
        size_t *keep = malloc(ps->n * sizeof(size_t)), nk;
        if (y == NULL || x == NULL || ys == NULL || xs == NULL || keep == NULL) {
            r = -ENOMEM;
        }
        for (size_t i = 0; r == 0 && i < ps->n; i++) {
            y[i] = -ps->loss[i];
            for (size_t j = 0; j < d; j++) {
                const struct hpo_param *p = &space->params[dims[j]];
                double v = ps->values[i * pr->dim + p->offset];
                x[i * d + j] = isnan(v) || is_cat[j] ? v : hpo_param_to_unit(p, v);
            }
        }
        if (r == 0) {
            hpo_gp_standardize(y, ps->n);
            if (warp != NULL) {
                warp(y, ps->n);
            }
            nk = pick_rows(y, ps->n, keep);
            for (size_t i = 0; i < nk; i++) {
                ys[i] = y[keep[i]];
                memcpy(&xs[i * d], &x[keep[i] * d], d * sizeof(double));
            }
            r = nk > 0 ? hpo_gp_stack_add(&t->st, nk, xs, ys, is_cat, kernel, deterministic, NULL)
                       : -ENOMEM;
            if (r == -EDOM) {
                r = 0; /* this study informs none of the modelled dims, or its matrix failed */
            }
        }
        free(y);
        free(x);
        free(ys);
        free(xs);
        free(keep);
    }
    free(is_cat);
    t->built = r == 0;
    t->active = r == 0 && t->st.n_levels > 0;
    if (r < 0) {
        hpo_gp_stack_free(&t->st);
        return r;
    }
    return t->active ? 0 : -EDOM;
}

static int bufs(struct hpo_gp_transfer *t, size_t count)
{
    if (count > t->cap) {
        double *a = realloc(t->bm, count * sizeof(double));
        double *b = a ? realloc(t->bv, count * sizeof(double)) : NULL;
        if (a != NULL) {
            t->bm = a;
        }
        if (b == NULL) {
            return -ENOMEM;
        }
        t->bv = b;
        t->cap = count;
    }
    return 0;
}

int hpo_gp_transfer_residuals(struct hpo_gp_transfer *t, const double *x, double *y, size_t from,
        size_t to, bool set_scale)
{
    size_t n = to - from;
    int r;

    if (!hpo_gp_transfer_active(t) || n == 0) {
        return 0;
    }
    r = bufs(t, n);
    if (r == 0) {
        r = hpo_gp_stack_predict(&t->st, n, &x[from * t->d], t->bm, t->bv);
    }
    if (r < 0) {
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        y[from + i] -= t->bm[i];
    }
    if (set_scale) {
        t->scale = residual_scale(&y[from], n);
    }
    for (size_t i = 0; i < n; i++) {
        y[from + i] /= t->scale;
    }
    return 0;
}

int hpo_gp_transfer_apply(struct hpo_gp_transfer *t, size_t n_top, size_t count, const double *xs,
        double *mean, double *var)
{
    double a, s = t->scale;
    int r;

    if (!hpo_gp_transfer_active(t)) {
        return 0;
    }
    r = bufs(t, count);
    if (r == 0) {
        r = hpo_gp_stack_predict(&t->st, count, xs, t->bm, t->bv);
    }
    if (r < 0) {
        return r;
    }
    a = hpo_gp_transfer_alpha(n_top, t->st.levels[t->st.n_levels - 1].model.n, t->d);
    for (size_t i = 0; i < count; i++) {
        hpo_gp_transfer_combine(a, s * mean[i], s * s * var[i], t->bm[i], t->bv[i], &mean[i],
                &var[i]);
    }
    return 0;
}

int hpo_gp_transfer_apply_grad(struct hpo_gp_transfer *t, size_t n_top, const double *x,
        double *mean, double *var, double *dmean, double *dvar)
{
    size_t d = t->d;
    double mb, vb, a, s = t->scale, vt, vn;
    double *dmb, *dvb;
    int r;

    if (!hpo_gp_transfer_active(t)) {
        return 0;
    }
    r = bufs(t, 2 * d + 1);
    if (r < 0) {
        return r;
    }
    dmb = t->bm;
    dvb = t->bv;
    r = hpo_gp_stack_predict_grad(&t->st, x, &mb, &vb, dmb, dvb);
    if (r < 0) {
        return r;
    }
    a = hpo_gp_transfer_alpha(n_top, t->st.levels[t->st.n_levels - 1].model.n, d);
    vt = s * s * *var;
    hpo_gp_transfer_combine(a, s * *mean, vt, mb, vb, mean, &vn);
    vt = vt > VAR_FLOOR ? vt : VAR_FLOOR;
    vb = vb > VAR_FLOOR ? vb : VAR_FLOOR;
    for (size_t j = 0; j < d; j++) {
        dmean[j] = s * dmean[j] + dmb[j];
        dvar[j] = vn * (a * s * s * dvar[j] / vt + (1.0 - a) * dvb[j] / vb);
    }
    *var = vn;
    return 0;
}

size_t hpo_gp_transfer_replays(const struct hpo_gp_transfer *t)
{
    size_t k = t->prior->n_studies;

    return k < HPO_GP_TRANSFER_REPLAYS ? k : HPO_GP_TRANSFER_REPLAYS;
}

bool hpo_gp_transfer_replay(const struct hpo_gp_transfer *t, size_t k, double *unit_point)
{
    const struct hpo_prior *pr = t->prior;
    const struct hpo_prior_study *ps;
    size_t best = 0;

    if (pr->n_studies == 0) {
        return false;
    }
    ps = &pr->studies[pr->n_studies - 1 - k % hpo_gp_transfer_replays(t)];
    for (size_t i = 1; i < ps->n; i++) {
        if (ps->loss[i] < ps->loss[best]) {
            best = i;
        }
    }
    for (size_t j = 0; j < pr->dim; j++) {
        double u = ps->unit[best * pr->dim + j];
        if (!isnan(u)) {
            unit_point[j] = u;
        }
    }
    return true;
}
