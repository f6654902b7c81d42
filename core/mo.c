/*
** mo.c: losses, constraint violations, constrained domination,
** non-dominated ranks, crowding distance and elite selection (mo.h;
** docs/ALGORITHMS.md §9.1, §9.2, §9.3).
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mo.h"

void hpo_mo_loss(const double *values, const unsigned char *maximize, unsigned m,
        double *ret_loss)
{
    for (unsigned k = 0; k < m; k++) {
        double v = values[k];

        if (isnan(v)) {
            ret_loss[k] = INFINITY;
        } else {
            ret_loss[k] = maximize != NULL && maximize[k] ? -v : v;
        }
    }
}

double hpo_mo_constraint_value(double c, double lo, double hi)
{
    double a, b;

    if (isnan(c)) {
        return INFINITY;
    }
    /* c - (+inf) = -inf and (-inf) - c = -inf: a missing bound never binds. */
    a = c - hi;
    b = lo - c;
    return a > b ? a : b;
}

double hpo_mo_violation(const double *cvalues, size_t n)
{
    double v = 0.0;

    for (size_t i = 0; i < n; i++) {
        if (isnan(cvalues[i])) {
            return INFINITY;
        }
        if (cvalues[i] > 0.0) {
            v += cvalues[i];
        }
    }
    return v;
}

int hpo_mo_dominates(const double *a, const double *b, unsigned m)
{
    int strict = 0;

    for (unsigned k = 0; k < m; k++) {
        if (a[k] > b[k]) {
            return 0;
        }
        if (a[k] < b[k]) {
            strict = 1;
        }
    }
    return strict;
}

int hpo_mo_constrained_dominates(const double *a, double va, const double *b, double vb,
        unsigned m)
{
    int fa = va <= 0.0, fb = vb <= 0.0;

    if (fa && fb) {
        return hpo_mo_dominates(a, b, m);
    }
    if (fa != fb) {
        return fa;
    }
    return va < vb;
}

/* ---- ranks ---- */

struct lex_ctx {
    const double *loss;
    unsigned m;
};

/* qsort_r comparator: lexicographic on the loss vector, then by index (stable). */
static int lex_cmp(const void *pa, const void *pb, void *arg)
{
    const struct lex_ctx *c = arg;
    size_t ia = *(const size_t *)pa, ib = *(const size_t *)pb;
    const double *a = c->loss + ia * c->m, *b = c->loss + ib * c->m;

    for (unsigned k = 0; k < c->m; k++) {
        if (a[k] < b[k]) {
            return -1;
        }
        if (a[k] > b[k]) {
            return 1;
        }
    }
    return ia < ib ? -1 : ia > ib;
}

static int same_vec(const double *a, const double *b, unsigned m)
{
    for (unsigned k = 0; k < m; k++) {
        if (a[k] != b[k]) {
            return 0;
        }
    }
    return 1;
}

/*
** Pareto ranks of the points ord[0..n-1] (lexsorted), written to rank[ord[i]]
** + base. Returns the number of ranks used. n_stop as in hpo_mo_rank, counted
** by the caller through *ranked.
*/
static size_t rank_sorted_2d(const double *loss, const size_t *ord, size_t n, size_t base,
        size_t *rank, double *front_min)
{
    size_t n_fronts = 0;

    /*
    ** In lexicographic order a point can only be dominated by an earlier one.
    ** Front k is dominated-free for p unless its smallest f2 so far is <= p's
    ** f2; those minima increase with k, so binary search for the first front
    ** that takes p. An identical predecessor shares p's rank.
    */
    for (size_t i = 0; i < n; i++) {
        const double *p = loss + ord[i] * 2;
        size_t lo = 0, hi = n_fronts;

        if (i > 0 && same_vec(p, loss + ord[i - 1] * 2, 2)) {
            rank[ord[i]] = rank[ord[i - 1]];
            continue;
        }
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;

            if (front_min[mid] <= p[1]) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        front_min[lo] = p[1];
        if (lo == n_fronts) {
            n_fronts++;
        }
        rank[ord[i]] = base + lo;
    }
    return n_fronts;
}

/*
** Peel fronts from the lexsorted points ord[0..n-1] (m >= 3, or m = 1/2 with
** n_stop): a point is on the current front iff no earlier point of the front
** dominates it (transitivity makes that enough). Stops after the front that
** brings the count to n_stop (if > 0); the rest get one rank more. Returns
** the number of ranks used.
*/
static size_t rank_sorted_peel(const double *loss, unsigned m, size_t *ord, size_t n,
        size_t base, size_t n_stop, size_t *rank, size_t *front)
{
    size_t left = n, r = 0, done = 0;

    while (left > 0) {
        size_t nf = 0, keep = 0;

        for (size_t i = 0; i < left; i++) {
            const double *p = loss + ord[i] * m;
            int dominated = 0;

            for (size_t j = 0; j < nf; j++) {
                if (hpo_mo_dominates(loss + front[j] * m, p, m)) {
                    dominated = 1;
                    break;
                }
            }
            if (dominated) {
                ord[keep++] = ord[i];
            } else {
                front[nf++] = ord[i];
                rank[ord[i]] = base + r;
            }
        }
        left = keep;
        done += nf;
        r++;
        if (n_stop > 0 && done >= n_stop && left > 0) {
            for (size_t i = 0; i < left; i++) {
                rank[ord[i]] = base + r;
            }
            return r + 1;
        }
    }
    return r;
}

static int dbl_cmp(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;

    return a < b ? -1 : a > b;
}

int hpo_mo_rank(const double *loss, size_t n, unsigned m, const double *violation,
        size_t n_stop, size_t *ret_rank)
{
    size_t *ord, *work, nf = 0, ni = 0, n_ranks = 0;
    double *fmin = NULL;
    struct lex_ctx ctx = { loss, m };

    if (n == 0) {
        return 0;
    }
    ord = malloc(2 * n * sizeof(*ord));
    fmin = malloc(n * sizeof(*fmin));
    if (ord == NULL || fmin == NULL) {
        free(ord);
        free(fmin);
        return -ENOMEM;
    }
    work = ord + n;
    for (size_t i = 0; i < n; i++) {
        /* A NaN violation fails "<= 0": infeasible, ranked with +inf below. */
        if (violation == NULL || violation[i] <= 0.0) {
            ord[nf++] = i;
        } else {
            work[ni++] = i;
        }
    }
    qsort_r(ord, nf, sizeof(*ord), lex_cmp, &ctx);
    if (m == 1 || m == 2) {
        if (m == 2) {
            n_ranks = rank_sorted_2d(loss, ord, nf, 0, ret_rank, fmin);
        } else {
            /* One objective: rank = index of the distinct value. */
            for (size_t i = 0; i < nf; i++) {
                if (i > 0 && loss[ord[i]] != loss[ord[i - 1]]) {
                    n_ranks++;
                }
                ret_rank[ord[i]] = n_ranks;
            }
            n_ranks += nf > 0;
        }
        if (n_stop > 0 && nf > n_stop) {
            /* Keep the ranks that reach n_stop points; the rest share the next. */
            size_t *cnt = calloc(n_ranks + 1, sizeof(*cnt));
            size_t cut = n_ranks, acc = 0;

            if (cnt == NULL) {
                free(ord);
                free(fmin);
                return -ENOMEM;
            }
            for (size_t i = 0; i < nf; i++) {
                cnt[ret_rank[ord[i]]]++;
            }
            for (size_t r = 0; r < n_ranks; r++) {
                acc += cnt[r];
                if (acc >= n_stop) {
                    cut = r + 1;
                    break;
                }
            }
            free(cnt);
            for (size_t i = 0; i < nf; i++) {
                if (ret_rank[ord[i]] > cut) {
                    ret_rank[ord[i]] = cut;
                }
            }
            n_ranks = cut < n_ranks ? cut + 1 : n_ranks;
        }
    } else {
        size_t *front = malloc(nf * sizeof(*front) + 1);

        if (front == NULL) {
            free(ord);
            free(fmin);
            return -ENOMEM;
        }
        n_ranks = rank_sorted_peel(loss, m, ord, nf, 0, n_stop, ret_rank, front);
        free(front);
    }
    if (ni > 0) {
        /* Infeasible: K+1 + dense rank of the violation among distinct values. */
        double *v = fmin;
        size_t nd = 0;

        for (size_t i = 0; i < ni; i++) {
            v[i] = isnan(violation[work[i]]) ? INFINITY : violation[work[i]];
        }
        qsort(v, ni, sizeof(*v), dbl_cmp);
        for (size_t i = 0; i < ni; i++) {
            if (nd == 0 || v[i] != v[nd - 1]) {
                v[nd++] = v[i];
            }
        }
        for (size_t i = 0; i < ni; i++) {
            size_t lo = 0, hi = nd;
            double x = isnan(violation[work[i]]) ? INFINITY : violation[work[i]];

            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (v[mid] < x) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            ret_rank[work[i]] = n_ranks + lo;
        }
    }
    free(ord);
    free(fmin);
    return 0;
}

/* ---- crowding distance and selection ---- */

struct col_ctx {
    const double *loss;
    unsigned m, k;
    const size_t *idx;
    const size_t *pos; /* position of each entry in the order before this sort */
};

/* Stable sort on objective k: by value, then by the previous position. */
static int col_cmp(const void *pa, const void *pb, void *arg)
{
    const struct col_ctx *c = arg;
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    double va = c->loss[c->idx[a] * c->m + c->k], vb = c->loss[c->idx[b] * c->m + c->k];

    if (va < vb) {
        return -1;
    }
    if (va > vb) {
        return 1;
    }
    return c->pos[a] < c->pos[b] ? -1 : c->pos[a] > c->pos[b];
}

int hpo_mo_crowding(const double *loss, unsigned m, const size_t *idx, size_t k,
        double *ret_dist, size_t *order)
{
    size_t *pos;
    struct col_ctx ctx = { loss, m, 0, idx, NULL };

    if (k == 0) {
        return 0;
    }
    pos = malloc(k * sizeof(*pos));
    if (pos == NULL) {
        return -ENOMEM;
    }
    for (size_t j = 0; j < k; j++) {
        ret_dist[j] = 0.0;
    }
    ctx.pos = pos;
    for (unsigned c = 0; c < m; c++) {
        double vmin = NAN, vmax = NAN, width;

        for (size_t j = 0; j < k; j++) {
            pos[order[j]] = j;
        }
        ctx.k = c;
        qsort_r(order, k, sizeof(*order), col_cmp, &ctx);
#define V(j) (loss[idx[order[j]] * m + c])
        /* All equal (also [inf, inf]): this objective adds nothing. */
        if (V(0) == V(k - 1)) {
            continue;
        }
        for (size_t j = 0; j < k; j++) {
            if (V(j) != -INFINITY) {
                vmin = V(j);
                break;
            }
        }
        for (size_t j = k; j-- > 0;) {
            if (V(j) != INFINITY) {
                vmax = V(j);
                break;
            }
        }
        /* Optuna pads with -inf/+inf; those count as "finite" bounds when nothing else is. */
        if (isnan(vmin)) {
            vmin = INFINITY;
        }
        if (isnan(vmax)) {
            vmax = -INFINITY;
        }
        width = vmax - vmin;
        if (!(width > 0.0)) {
            width = 1.0;
        }
        for (size_t j = 0; j < k; j++) {
            double lo = j == 0 ? -INFINITY : V(j - 1);
            double hi = j + 1 == k ? INFINITY : V(j + 1);

            /* inf - inf and (-inf) - (-inf) count as 0. */
            if (lo != hi) {
                ret_dist[order[j]] += (hi - lo) / width;
            }
        }
#undef V
    }
    free(pos);
    return 0;
}

struct dist_ctx {
    const double *dist;
    const size_t *pos;
};

/* Distance descending; ties: later position (in the last objective's order) first. */
static int dist_cmp(const void *pa, const void *pb, void *arg)
{
    const struct dist_ctx *c = arg;
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;

    if (c->dist[a] > c->dist[b]) {
        return -1;
    }
    if (c->dist[a] < c->dist[b]) {
        return 1;
    }
    return c->pos[a] > c->pos[b] ? -1 : c->pos[a] < c->pos[b];
}

long hpo_mo_select(const double *loss, size_t n, unsigned m, const double *violation, size_t p,
        size_t *ret_idx)
{
    size_t *rank, *byrank, *order, *pos, n_out = 0, max_rank = 0;
    double *dist;
    int rc;

    if (p > n) {
        p = n;
    }
    if (p == 0) {
        return 0;
    }
    rank = malloc(4 * n * sizeof(*rank));
    dist = malloc(n * sizeof(*dist));
    if (rank == NULL || dist == NULL) {
        free(rank);
        free(dist);
        return -ENOMEM;
    }
    byrank = rank + n;
    order = rank + 2 * n;
    pos = rank + 3 * n;
    rc = hpo_mo_rank(loss, n, m, violation, 0, rank);
    if (rc < 0) {
        free(rank);
        free(dist);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (rank[i] > max_rank) {
            max_rank = rank[i];
        }
    }
    for (size_t r = 0; r <= max_rank && n_out < p; r++) {
        size_t k = 0;

        for (size_t i = 0; i < n; i++) {
            if (rank[i] == r) {
                byrank[k++] = i;
            }
        }
        if (n_out + k <= p) {
            memcpy(ret_idx + n_out, byrank, k * sizeof(*byrank));
            n_out += k;
            continue;
        }
        /* The straddling front: crowding distance, largest first. */
        for (size_t j = 0; j < k; j++) {
            order[j] = j;
        }
        rc = hpo_mo_crowding(loss, m, byrank, k, dist, order);
        if (rc < 0) {
            free(rank);
            free(dist);
            return rc;
        }
        for (size_t j = 0; j < k; j++) {
            pos[order[j]] = j;
        }
        {
            struct dist_ctx dc = { dist, pos };

            qsort_r(order, k, sizeof(*order), dist_cmp, &dc);
        }
        for (size_t j = 0; n_out < p; j++) {
            ret_idx[n_out++] = byrank[order[j]];
        }
    }
    free(rank);
    free(dist);
    return (long)n_out;
}

long hpo_mo_front(const double *loss, size_t n, unsigned m, const double *violation,
        size_t *ret_idx)
{
    size_t *rank, k = 0;
    double *v;
    int rc;

    if (n == 0) {
        return 0;
    }
    rank = malloc(n * sizeof(*rank));
    v = malloc(n * sizeof(*v));
    if (rank == NULL || v == NULL) {
        free(rank);
        free(v);
        return -ENOMEM;
    }
    /* Ranked as all-infeasible-but-one-class: rank 0 is the feasible front only. */
    for (size_t i = 0; i < n; i++) {
        v[i] = violation == NULL || violation[i] <= 0.0 ? 0.0 : INFINITY;
    }
    rc = hpo_mo_rank(loss, n, m, v, 0, rank);
    if (rc < 0) {
        free(rank);
        free(v);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i] == 0.0 && rank[i] == 0) {
            ret_idx[k++] = i;
        }
    }
    free(rank);
    free(v);
    return (long)k;
}
