/*
** tpe-mo.c: TPE's split into "below" and "above" for studies with several
** objectives or constraints (tpe-mo.h; docs/ALGORITHMS.md §9.4).
**
** It follows Optuna 3.1's TPESampler: feasible trials before infeasible
** ones, which are ordered by total violation (_split_observation_pairs with
** violations); among feasible trials with several objectives, whole
** non-dominated ranks and a greedy hypervolume subset of the straddling
** rank; the below kernels weighted by hypervolume contribution
** (_calculate_weights_below_for_multi_objective). Where 3.1 drops pruned
** trials of a multi-objective study, hpod uses them as Optuna 4.x does:
** after the complete ones, by progress. Everything else of TPE (kernels,
** above group, constant liar) is tpe.c's, unchanged.
*/
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/history.h"
#include "../core/mo.h"
#include "tpe-mo.h"

int hpo_tpe_mo_select(const double *loss, size_t n, unsigned m, size_t k, size_t *ret_idx)
{
    size_t *rank = NULL, *cnt = NULL, *front = NULL, *sel = NULL;
    double *fl = NULL, ref[HPO_MO_MAX_OBJECTIVES];
    size_t taken = 0, r = 0, nf = 0, w = 0;
    int rc;

    if (k >= n) {
        for (size_t i = 0; i < n; i++) {
            ret_idx[i] = i;
        }
        return 0;
    }
    if (k == 0) {
        return 0;
    }
    if (m > HPO_MO_MAX_OBJECTIVES) {
        return -EINVAL;
    }
    rank = malloc(n * sizeof(*rank));
    cnt = calloc(n + 1, sizeof(*cnt));
    if (rank == NULL || cnt == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = hpo_mo_rank(loss, n, m, NULL, k, rank);
    if (rc < 0) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        cnt[rank[i] < n ? rank[i] : n]++;
    }
    /* Whole ranks while they fit (ranks are dense: 0, 1, ... up to the straddling one). */
    while (r < n && taken + cnt[r] <= k) {
        taken += cnt[r++];
    }
    if (taken < k) {
        nf = cnt[r];
        front = malloc(nf * sizeof(*front));
        sel = malloc(nf * sizeof(*sel));
        fl = malloc(nf * m * sizeof(*fl));
        if (front == NULL || sel == NULL || fl == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0, j = 0; i < n; i++) {
            if (rank[i] == r) {
                front[j] = i;
                memcpy(fl + j * m, loss + i * m, m * sizeof(double));
                j++;
            }
        }
        hpo_mo_reference_point(fl, nf, m, ref);
        rc = hpo_mo_hssp(fl, nf, m, ref, k - taken, sel);
        if (rc < 0) {
            goto out;
        }
        /* Mark the chosen members of the straddling rank as rank r - 1 (taken). */
        for (size_t s = 0; s < k - taken; s++) {
            rank[front[sel[s]]] = SIZE_MAX;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (rank[i] < r || rank[i] == SIZE_MAX) {
            ret_idx[w++] = i;
        }
    }
    rc = w == k ? 0 : -EINVAL;
out:
    free(rank);
    free(cnt);
    free(front);
    free(sel);
    free(fl);
    return rc;
}

int hpo_tpe_mo_weights(const double *loss, size_t n, unsigned m, double *ret_w)
{
    double ref[HPO_MO_MAX_OBJECTIVES], *c, top = 0.0;
    bool finite = true;
    int rc;

    if (n <= 1) {
        if (n == 1) {
            ret_w[0] = 1.0;
        }
        return 0;
    }
    if (m > HPO_MO_MAX_OBJECTIVES) {
        return -EINVAL;
    }
    c = malloc(n * sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    hpo_mo_reference_point(loss, n, m, ref);
    rc = hpo_mo_hv_contributions(loss, n, m, ref, c);
    if (rc < 0) {
        free(c);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        c[i] += HPO_TPE_MO_EPS;
        finite = finite && isfinite(c[i]);
        top = c[i] > top ? c[i] : top;
    }
    for (size_t i = 0; i < n; i++) {
        double w = finite ? c[i] / top : 1.0;
        ret_w[i] = w < 0.0 ? 0.0 : (w > 1.0 ? 1.0 : w);
    }
    free(c);
    return 0;
}

/*
** A finished trial's place in the below order: group (0 feasible complete,
** 1 pruned with reports, 2 pruned without, 3 infeasible), then a, b, number.
*/
struct split_item {
    int grp;
    double a, b;
    uint32_t t;
    size_t pos; /* the feasible complete trials: index of its loss row */
};

static int item_cmp(const void *pa, const void *pb)
{
    const struct split_item *x = pa, *y = pb;

    if (x->grp != y->grp) {
        return x->grp < y->grp ? -1 : 1;
    }
    if (x->a != y->a) {
        return x->a < y->a ? -1 : 1;
    }
    if (x->b != y->b) {
        return x->b < y->b ? -1 : 1;
    }
    return x->t < y->t ? -1 : (x->t > y->t);
}

static double nan_inf(double x)
{
    return isnan(x) ? INFINITY : x;
}

static int u32_cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;

    return a < b ? -1 : (a > b);
}

/* Total violation of trial t's constraints (0 feasible, +inf when one is not told). */
static double violation(const struct hpo_history *h, const struct hpo_trial *t)
{
    double v = 0.0;

    for (size_t j = 0; j < h->n_cons; j++) {
        double c = t->results != NULL ? t->results[h->n_obj + j] : NAN;
        double cv = hpo_mo_constraint_value(c, h->cons_lo[j], h->cons_hi[j]);
        if (!(cv <= 0.0)) {
            v += isnan(cv) ? INFINITY : cv;
        }
    }
    return v;
}

int hpo_tpe_mo_split(const struct hpo_history *h, const uint32_t *fin, size_t n, size_t k,
        uint32_t *ret_below, double *ret_w)
{
    unsigned m = (unsigned)h->n_obj;
    unsigned char maxi[HPO_MO_MAX_OBJECTIVES];
    struct split_item *it;
    double *loss = NULL, *bl = NULL, *bw = NULL;
    size_t *idx = NULL, nf = 0, nb = 0;
    bool several = m > 1;
    int rc = 0;

    if (k > n) {
        k = n;
    }
    if (m == 0 || m > HPO_MO_MAX_OBJECTIVES) {
        return -EINVAL;
    }
    for (unsigned j = 0; j < m; j++) {
        maxi[j] = h->obj_maximize != NULL ? h->obj_maximize[j] : (j == 0 && h->maximize);
    }
    it = malloc((n ? n : 1) * sizeof(*it));
    loss = malloc((n ? n : 1) * m * sizeof(*loss));
    if (it == NULL || loss == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct hpo_trial *t = h->trials[fin[i]];
        struct split_item *x = &it[i];
        double v = h->n_cons > 0 ? violation(h, t) : 0.0;

        x->t = fin[i];
        x->a = 0.0;
        x->b = 0.0;
        x->pos = SIZE_MAX;
        if (v > 0.0) {
            x->grp = 3;
            x->a = v;
        } else if (t->state == HPO_STATE_COMPLETE) {
            x->grp = 0;
            x->pos = nf;
            if (several) {
                double vals[HPO_MO_MAX_OBJECTIVES];
                for (unsigned j = 0; j < m; j++) {
                    vals[j] = t->results != NULL ? t->results[j] : NAN;
                }
                hpo_mo_loss(vals, maxi, m, loss + nf * m);
            } else {
                x->a = nan_inf(hpo_history_loss(h, t));
            }
            nf++;
        } else if (t->n_reports == 0) {
            x->grp = 2;
        } else {
            const struct hpo_report *last = hpo_trial_last_report(t);
            x->grp = 1;
            x->a = -(double)last->step;
            x->b = nan_inf(h->maximize ? -last->value : last->value);
        }
    }
    if (several && nf >= k) {
        size_t w = 0;
        idx = malloc((nf ? nf : 1) * sizeof(*idx));
        if (idx == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        rc = hpo_tpe_mo_select(loss, nf, m, k, idx);
        if (rc < 0) {
            goto out;
        }
        /* idx ascends, as do the feasible complete items: take those chosen. */
        for (size_t i = 0, j = 0; i < n && w < k; i++) {
            if (it[i].pos != SIZE_MAX && j < k && it[i].pos == idx[j]) {
                ret_below[w++] = it[i].t;
                j++;
            }
        }
        if (w != k) {
            rc = -EINVAL;
            goto out;
        }
    } else {
        qsort(it, n, sizeof(*it), item_cmp);
        for (size_t i = 0; i < k; i++) {
            ret_below[i] = it[i].t;
        }
        qsort(ret_below, k, sizeof(*ret_below), u32_cmp);
    }
    if (!several) {
        rc = 0;
        goto out;
    }
    /* Weights: the feasible complete below trials by contribution; the rest EPS. */
    bl = malloc((k ? k : 1) * m * sizeof(*bl));
    bw = malloc((k ? k : 1) * sizeof(*bw));
    if (bl == NULL || bw == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < k; i++) {
        const struct hpo_trial *t = h->trials[ret_below[i]];
        double vals[HPO_MO_MAX_OBJECTIVES];
        if (t->state != HPO_STATE_COMPLETE || (h->n_cons > 0 && violation(h, t) > 0.0)) {
            continue;
        }
        for (unsigned j = 0; j < m; j++) {
            vals[j] = t->results != NULL ? t->results[j] : NAN;
        }
        hpo_mo_loss(vals, maxi, m, bl + nb * m);
        nb++;
    }
    rc = hpo_tpe_mo_weights(bl, nb, m, bw);
    if (rc < 0) {
        goto out;
    }
    for (size_t i = 0, j = 0; i < k; i++) {
        const struct hpo_trial *t = h->trials[ret_below[i]];
        bool feas = t->state == HPO_STATE_COMPLETE &&
                !(h->n_cons > 0 && violation(h, t) > 0.0);
        ret_w[i] = feas ? bw[j++] : HPO_TPE_MO_EPS;
    }
    rc = 1;
out:
    free(it);
    free(loss);
    free(idx);
    free(bl);
    free(bw);
    return rc;
}
