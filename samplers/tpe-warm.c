/*
** tpe-warm.c: TPE warm-started from prior studies (docs/ALGORITHMS.md §12.2).
**
** Each prior study is split by its own gamma rule (ranks of its losses, so
** scales need not match) into below and above; its trials join this
** study's l and g with kernel weight omega * default_weights, omega =
** 0.5 * 20 / (20 + n_cur) (n_cur: finished trials of this study), so the
** priors' influence halves after 20 trials of this study. The TPE prior
** kernel keeps its weight. n_startup_trials counts prior trials. This
** study's own trials are split and weighted as by tpe.c (complete trials by
** loss, then pruned ones; running ones join g under constant_liar).
**
** A prior trial without a value in a dim (the prior study has no
** compatible param of that name, or it was inactive) contributes the TPE
** prior kernel in that dim: it informs the dims it has only.
**
** This is a plain (not incremental) implementation: l and g are rebuilt at
** every suggest, O((n + n_prior) * d * n_ei_candidates). Bandwidths follow
** tpe.c: the neighbour rule in each group per dim, Optuna's magic clip
** 1/min(m + 2, 100), divided by sqrt(d) for the joint (multivariate) below
** mixture as tpe.c does.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/history.h"
#include "../core/rng.h"
#include "../core/space.h"
#include "prior.h"
#include "tpe-warm.h"
#include "tpe.h"

#define OMEGA0 0.5
#define OMEGA_N0 20.0

double hpo_tpe_warm_omega(size_t n_cur)
{
    return OMEGA0 * OMEGA_N0 / (OMEGA_N0 + (double)n_cur);
}

/* One observation of a group: its unit row (dim coordinates, NaN = none) and weight. */
struct wobs {
    const double *u;
    double w;
};

/* A group (l or g) over the dims of one unit. */
struct wmix {
    struct wobs *o;
    size_t m;
    double *logw;      /* m normalized log weights */
    double logw_prior; /* the prior kernel's */
    double *sig;       /* m x nd bandwidths (numeric dims) */
    double *hit, *miss; /* per dim: categorical log probabilities */
};

struct wdim {
    const struct hpo_param *p;
    size_t coord;
    int kind; /* 0 continuous, 1 discrete, 2 categorical */
};

struct sort_item {
    double key;
    size_t idx;
};

static int by_key(const void *a, const void *b)
{
    const struct sort_item *x = a, *y = b;

    if (x->key != y->key) {
        return x->key < y->key ? -1 : 1;
    }
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static double trunc_sample(struct hpo_rng *rng, double mu, double sigma)
{
    for (int i = 0; i < 1000; i++) {
        double x = mu + sigma * hpo_rng_normal(rng);
        if (x >= 0.0 && x <= 1.0) {
            return x;
        }
    }
    return mu < 0.0 ? 0.0 : (mu > 1.0 ? 1.0 : mu);
}

/* Append observations (rows in chronological order) with weights scale * default_weights. */
static void add_group(struct wobs *dst, size_t *m, const double *const *rows, size_t n,
        double scale, double *wtmp)
{
    hpo_tpe_default_weights(n, wtmp);
    for (size_t i = 0; i < n; i++) {
        dst[*m].u = rows[i];
        dst[*m].w = scale * wtmp[i];
        (*m)++;
    }
}

static double log_kernel(const struct wdim *dd, double x, double lo, double hi, double mu,
        double sg)
{
    if (dd->kind == 0) {
        return hpo_tpe_trunc_logpdf(x, mu, sg, 0.0, 1.0);
    }
    return hpo_tpe_trunc_logmass(lo, hi, mu, sg, 0.0, 1.0);
}

/* Bandwidths of group mx in dim j of the unit: neighbour rule, observations with a value. */
static void mix_sigmas(const struct hpo_tpe_warm_opts *o, struct wmix *mx, const struct wdim *dd,
        size_t j, size_t nd, double minsig, struct sort_item *it)
{
    size_t na = 0;

    for (size_t i = 0; i < mx->m; i++) {
        double v = mx->o[i].u[dd->coord];
        mx->sig[i * nd + j] = 1.0;
        if (!isnan(v)) {
            it[na].key = v;
            it[na].idx = i;
            na++;
        }
    }
    qsort(it, na, sizeof(*it), by_key);
    for (size_t q = 0; q < na; q++) {
        double v = it[q].key;
        double left = q > 0 ? v - it[q - 1].key : v;
        double right = q + 1 < na ? it[q + 1].key - v : 1.0 - v;
        double sg;
        if (!o->consider_endpoints && na >= 2) {
            sg = q == 0 ? right : (q + 1 == na ? left : (left > right ? left : right));
        } else {
            sg = left > right ? left : right;
        }
        sg = sg < minsig ? minsig : (sg > 1.0 ? 1.0 : sg);
        mx->sig[it[q].idx * nd + j] = sg;
    }
}

static void mix_weights(const struct hpo_tpe_warm_opts *o, struct wmix *mx)
{
    double total = o->prior_weight;

    for (size_t i = 0; i < mx->m; i++) {
        total += mx->o[i].w;
    }
    for (size_t i = 0; i < mx->m; i++) {
        mx->logw[i] = mx->o[i].w > 0.0 ? log(mx->o[i].w / total) : -INFINITY;
    }
    mx->logw_prior = log(o->prior_weight / total);
}

/* log of the mixture at candidate c (nd coordinates x, bins lo/hi). */
static double mix_logpdf(const struct wmix *mx, const struct wdim *dd, size_t nd, const double *x,
        const double *lo, const double *hi, const double *prior_term, double *terms)
{
    double mx_v = -INFINITY, sum = 0.0, pt = 0.0;

    for (size_t j = 0; j < nd; j++) {
        pt += prior_term[j];
    }
    for (size_t i = 0; i < mx->m; i++) {
        double t = mx->logw[i];
        for (size_t j = 0; j < nd && isfinite(t); j++) {
            double mu = mx->o[i].u[dd[j].coord];
            if (isnan(mu)) {
                t += prior_term[j];
            } else if (dd[j].kind == 2) {
                double cx = floor(x[j] * (double)dd[j].p->n_choices);
                double cm = floor(mu * (double)dd[j].p->n_choices);
                t += cx == cm ? mx->hit[j] : mx->miss[j];
            } else {
                t += log_kernel(&dd[j], x[j], lo[j], hi[j], mu, mx->sig[i * nd + j]);
            }
        }
        terms[i] = t;
        mx_v = t > mx_v ? t : mx_v;
    }
    terms[mx->m] = mx->logw_prior + pt;
    mx_v = terms[mx->m] > mx_v ? terms[mx->m] : mx_v;
    if (!isfinite(mx_v)) {
        return mx_v;
    }
    for (size_t i = 0; i <= mx->m; i++) {
        sum += exp(terms[i] - mx_v);
    }
    return mx_v + log(sum);
}

/* One TPE unit over dims dd[0..nd): draw candidates from l, keep the best l/g. */
static int run_unit(const struct hpo_tpe_warm_opts *o, struct wmix *l, struct wmix *g,
        const struct wdim *dd, size_t nd, struct hpo_rng *rng, double *unit_point)
{
    size_t nc = (size_t)o->n_ei_candidates, mmax = (l->m > g->m ? l->m : g->m) + 1;
    struct sort_item *it = malloc(mmax * sizeof(*it));
    double *x = malloc(nd * 3 * sizeof(double)), *best = malloc(nd * sizeof(double));
    double *pterm = malloc(nd * sizeof(double)), *terms = malloc(mmax * sizeof(double));
    double best_score = -INFINITY;
    int r = -ENOMEM;

    l->sig = malloc((l->m ? l->m : 1) * nd * sizeof(double));
    g->sig = malloc((g->m ? g->m : 1) * nd * sizeof(double));
    l->hit = malloc(2 * nd * sizeof(double));
    g->hit = malloc(2 * nd * sizeof(double));
    if (it == NULL || x == NULL || best == NULL || pterm == NULL || terms == NULL ||
            l->sig == NULL || g->sig == NULL || l->hit == NULL || g->hit == NULL) {
        goto out;
    }
    l->miss = l->hit + nd;
    g->miss = g->hit + nd;
    for (size_t j = 0; j < nd; j++) {
        struct wmix *mixes[2] = { l, g };
        for (int k = 0; k < 2; k++) {
            struct wmix *mx = mixes[k];
            double kk = (double)mx->m + 2.0, minsig;
            if (dd[j].kind == 2) {
                double C = (double)dd[j].p->n_choices, a = o->prior_weight / ((double)mx->m + 1.0);
                mx->hit[j] = log((1.0 + a) / (1.0 + C * a));
                mx->miss[j] = log(a / (1.0 + C * a));
                continue;
            }
            minsig = o->consider_magic_clip ? 1.0 / (kk < 100.0 ? kk : 100.0) : 1e-12;
            if (o->consider_magic_clip && k == 0 && nd > 1) {
                minsig /= sqrt((double)nd);
            }
            mix_sigmas(o, mx, &dd[j], j, nd, minsig, it);
        }
    }
    for (size_t c = 0; c < nc; c++) {
        double *lo = x + nd, *hi = x + 2 * nd, rr = hpo_rng_uniform(rng), cum = 0.0, score;
        size_t k = l->m;
        for (size_t i = 0; i < l->m; i++) {
            cum += exp(l->logw[i]);
            if (rr < cum) {
                k = i;
                break;
            }
        }
        for (size_t j = 0; j < nd; j++) {
            const struct hpo_param *p = dd[j].p;
            double mu = k < l->m ? l->o[k].u[dd[j].coord] : NAN;
            if (dd[j].kind == 2) {
                uint64_t C = p->n_choices, ci;
                if (isnan(mu)) {
                    ci = hpo_rng_below(rng, C);
                } else {
                    uint64_t cm = (uint64_t)floor(mu * (double)C);
                    cm = cm >= C ? C - 1 : cm;
                    if (C == 1 || hpo_rng_uniform(rng) < exp(l->hit[j])) {
                        ci = cm;
                    } else {
                        ci = hpo_rng_below(rng, C - 1);
                        ci += ci >= cm;
                    }
                }
                x[j] = ((double)ci + 0.5) / (double)C;
                pterm[j] = -log((double)C);
                continue;
            }
            x[j] = isnan(mu) ? trunc_sample(rng, 0.5, 1.0) :
                    trunc_sample(rng, mu, l->sig[k * nd + j]);
            if (dd[j].kind == 1) {
                double value = hpo_param_from_unit(p, x[j]);
                hpo_param_bin(p, value, &lo[j], &hi[j]);
                x[j] = hpo_param_to_unit(p, value);
                pterm[j] = hpo_tpe_trunc_logmass(lo[j], hi[j], 0.5, 1.0, 0.0, 1.0);
            } else {
                pterm[j] = hpo_tpe_trunc_logpdf(x[j], 0.5, 1.0, 0.0, 1.0);
            }
        }
        score = mix_logpdf(l, dd, nd, x, lo, hi, pterm, terms) -
                mix_logpdf(g, dd, nd, x, lo, hi, pterm, terms);
        if (c == 0 || score > best_score) {
            best_score = score;
            memcpy(best, x, nd * sizeof(double));
        }
    }
    for (size_t j = 0; j < nd; j++) {
        unit_point[dd[j].coord] = best[j];
    }
    r = 0;
out:
    free(it);
    free(x);
    free(best);
    free(pterm);
    free(terms);
    free(l->sig);
    free(g->sig);
    free(l->hit);
    free(g->hit);
    l->sig = g->sig = l->hit = g->hit = NULL;
    return r;
}

int hpo_tpe_warm_suggest(const struct hpo_prior *prior, const struct hpo_tpe_warm_opts *o,
        const struct hpo_space *space, const struct hpo_history *h, struct hpo_rng *rng,
        double *unit_point, struct hpo_error *err)
{
    size_t n_fin = h->count[HPO_STATE_COMPLETE] + h->count[HPO_STATE_PRUNED];
    size_t cap = h->n_trials + prior->n_total + 1, n_below, nb = 0, na = 0, nd = 0, mrows;
    struct sort_item *it = malloc(cap * sizeof(*it));
    const double **rows = malloc(cap * sizeof(*rows));
    double *wtmp = malloc(cap * sizeof(double));
    struct wobs *below = malloc(cap * sizeof(*below)), *above = malloc(cap * sizeof(*above));
    struct wdim *dd = malloc((space->n_params + 1) * sizeof(*dd));
    struct wmix l = { 0 }, g = { 0 };
    double omega = hpo_tpe_warm_omega(n_fin);
    int r = -ENOMEM;

    if (it == NULL || rows == NULL || wtmp == NULL || below == NULL || above == NULL ||
            dd == NULL) {
        goto out;
    }
    if (n_fin + prior->n_total < (size_t)o->n_startup_trials) {
        r = 0;
        goto out;
    }
    /* This study: complete trials by loss, then pruned ones; below = the first gamma(n). */
    mrows = 0;
    for (size_t t = 0; t < h->n_trials; t++) {
        const struct hpo_trial *tr = h->trials[t];
        if (tr->state == HPO_STATE_COMPLETE) {
            double loss = hpo_history_loss(h, tr);
            it[mrows].key = isnan(loss) ? HUGE_VAL : loss;
            it[mrows++].idx = t;
        }
    }
    qsort(it, mrows, sizeof(*it), by_key);
    for (size_t t = 0; t < h->n_trials; t++) {
        if (h->trials[t]->state == HPO_STATE_PRUNED) {
            it[mrows].key = HUGE_VAL;
            it[mrows++].idx = t;
        }
    }
    n_below = hpo_tpe_gamma(n_fin);
    {
        /* Each group in trial order for the weights. */
        struct sort_item *grp = malloc((mrows + 1) * sizeof(*grp));
        size_t ng = 0;
        if (grp == NULL) {
            goto out;
        }
        for (int side = 0; side < 2; side++) {
            ng = 0;
            for (size_t i = side == 0 ? 0 : n_below; i < (side == 0 ? n_below : mrows); i++) {
                grp[ng].key = (double)it[i].idx;
                grp[ng++].idx = it[i].idx;
            }
            if (side == 1 && o->constant_liar) {
                for (size_t t = 0; t < h->n_trials; t++) {
                    if (h->trials[t]->state == HPO_STATE_RUNNING &&
                            h->trials[t]->unit != NULL) {
                        grp[ng].key = (double)t;
                        grp[ng++].idx = t;
                    }
                }
            }
            qsort(grp, ng, sizeof(*grp), by_key);
            for (size_t i = 0; i < ng; i++) {
                rows[i] = h->trials[grp[i].idx]->unit;
            }
            if (side == 0) {
                add_group(below, &nb, rows, ng, 1.0, wtmp);
            } else {
                add_group(above, &na, rows, ng, 1.0, wtmp);
            }
        }
        free(grp);
    }
    /* Each prior study by its own gamma rule, weight omega. */
    for (size_t k = 0; k < prior->n_studies; k++) {
        const struct hpo_prior_study *ps = &prior->studies[k];
        size_t gb = hpo_tpe_gamma(ps->n), m = 0;
        for (size_t i = 0; i < ps->n; i++) {
            it[i].key = ps->loss[i];
            it[i].idx = i;
        }
        qsort(it, ps->n, sizeof(*it), by_key);
        for (int side = 0; side < 2; side++) {
            size_t from = side == 0 ? 0 : gb, to = side == 0 ? gb : ps->n;
            /* back to trial order within the group */
            for (size_t i = from; i < to; i++) {
                it[i].key = (double)it[i].idx;
            }
            qsort(it + from, to - from, sizeof(*it), by_key);
            m = 0;
            for (size_t i = from; i < to; i++) {
                rows[m++] = ps->unit + it[i].idx * prior->dim;
            }
            if (side == 0) {
                add_group(below, &nb, rows, m, omega, wtmp);
            } else {
                add_group(above, &na, rows, m, omega, wtmp);
            }
        }
    }
    l.o = below;
    l.m = nb;
    g.o = above;
    g.m = na;
    l.logw = malloc((nb + 1) * sizeof(double));
    g.logw = malloc((na + 1) * sizeof(double));
    if (l.logw == NULL || g.logw == NULL) {
        goto out;
    }
    mix_weights(o, &l);
    mix_weights(o, &g);
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (p->size != 0) {
            continue;
        }
        dd[nd].p = p;
        dd[nd].coord = p->offset;
        dd[nd].kind = p->type == HPO_PARAM_CATEGORICAL ? 2 : (p->n_grid > 0.0 ? 1 : 0);
        nd++;
    }
    r = 0;
    if (o->multivariate) {
        r = run_unit(o, &l, &g, dd, nd, rng, unit_point);
    } else {
        for (size_t j = 0; j < nd && r == 0; j++) {
            r = run_unit(o, &l, &g, &dd[j], 1, rng, unit_point);
        }
    }
out:
    if (r < 0) {
        hpo_error_set(err, r, HPO_INTERNAL, NULL, "tpe: out of memory");
    }
    free(it);
    free(rows);
    free(wtmp);
    free(below);
    free(above);
    free(dd);
    free(l.logw);
    free(g.logw);
    return r;
}
