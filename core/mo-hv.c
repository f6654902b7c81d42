/*
** mo-hv.c: exact hypervolume (2-D sweep, 3-D sweep, WFG above), exclusive
** contributions, Optuna's reference point and greedy HSSP (mo.h;
** docs/ALGORITHMS.md §9.4).
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mo.h"

/* Volume of the box [p, ref] (all p < ref assumed). */
static double box(const double *p, const double *ref, unsigned m)
{
    double v = 1.0;

    for (unsigned k = 0; k < m; k++) {
        v *= ref[k] - p[k];
    }
    return v;
}

struct key_ctx {
    const double *pts;
    unsigned m, k; /* sort on objective k, then lexicographically on the others */
};

static int key_cmp(const void *pa, const void *pb, void *arg)
{
    const struct key_ctx *c = arg;
    const double *a = c->pts + *(const size_t *)pa * c->m;
    const double *b = c->pts + *(const size_t *)pb * c->m;

    if (a[c->k] != b[c->k]) {
        return a[c->k] < b[c->k] ? -1 : 1;
    }
    for (unsigned j = 0; j < c->m; j++) {
        if (a[j] != b[j]) {
            return a[j] < b[j] ? -1 : 1;
        }
    }
    return 0;
}

/* Sort the rows of pts (n x m) in place by objective k (then lexicographically). */
static int sort_rows(double *pts, size_t n, unsigned m, unsigned k)
{
    size_t *ix = malloc(n * sizeof(*ix));
    double *tmp = malloc(n * m * sizeof(*tmp));
    struct key_ctx c = { pts, m, k };

    if (ix == NULL || tmp == NULL) {
        free(ix);
        free(tmp);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ix[i] = i;
    }
    qsort_r(ix, n, sizeof(*ix), key_cmp, &c);
    for (size_t i = 0; i < n; i++) {
        memcpy(tmp + i * m, pts + ix[i] * m, m * sizeof(*tmp));
    }
    memcpy(pts, tmp, n * m * sizeof(*tmp));
    free(ix);
    free(tmp);
    return 0;
}

/* 2-D: sorted by f1 (then f2), sweep keeping the running minimum of f2. */
static int hv2d(double *pts, size_t n, const double *ref, double *ret_hv)
{
    double hv = 0.0, ymin = ref[1];
    int rc = sort_rows(pts, n, 2, 0);

    if (rc < 0) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        double y = pts[2 * i + 1];

        if (y < ymin) {
            hv += (ref[0] - pts[2 * i]) * (ymin - y);
            ymin = y;
        }
    }
    *ret_hv = hv;
    return 0;
}

/*
** 3-D: sweep over f3 ascending; the (f1, f2) staircase of the points seen so
** far is kept sorted by f1 in two arrays, its area updated by the exclusive
** area of each inserted point (binary search plus one memmove, so O(n) per
** insert in the worst case and O(log n) when the staircase stays short).
*/
static int hv3d(double *pts, size_t n, const double *ref, double *ret_hv)
{
    double *sx = malloc(n * sizeof(*sx)), *sy = malloc(n * sizeof(*sy));
    double hv = 0.0, area = 0.0;
    size_t c = 0;
    int rc = sx == NULL || sy == NULL ? -ENOMEM : sort_rows(pts, n, 3, 2);

    if (rc < 0) {
        free(sx);
        free(sy);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        double x = pts[3 * i], y = pts[3 * i + 1], z = pts[3 * i + 2];
        double znext = i + 1 < n ? pts[3 * (i + 1) + 2] : ref[2];
        size_t lo = 0, hi = c, q;

        while (lo < hi) { /* first staircase point with sx >= x */
            size_t mid = lo + (hi - lo) / 2;

            if (sx[mid] < x) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (!((lo > 0 && sy[lo - 1] <= y) || (lo < c && sx[lo] == x && sy[lo] <= y))) {
            double top = lo > 0 ? sy[lo - 1] : ref[1], cx = x;

            /* Points with sx >= x and sy >= y are dominated by (x, y): drop them. */
            for (q = lo; q < c && sy[q] >= y; q++) {
                area += (sx[q] - cx) * (top - y);
                top = sy[q];
                cx = sx[q];
            }
            area += ((q < c ? sx[q] : ref[0]) - cx) * (top - y);
            if (q != lo + 1) {
                memmove(sx + lo + 1, sx + q, (c - q) * sizeof(*sx));
                memmove(sy + lo + 1, sy + q, (c - q) * sizeof(*sy));
                c = c + lo + 1 - q;
            }
            sx[lo] = x;
            sy[lo] = y;
        }
        hv += area * (znext - z);
    }
    free(sx);
    free(sy);
    *ret_hv = hv;
    return 0;
}

/*
** Keep the non-dominated rows of pts (n x m), one copy of duplicates, in
** their order. Returns the new count.
*/
static size_t nd_filter(double *pts, size_t n, unsigned m)
{
    size_t keep = 0;

    for (size_t i = 0; i < n; i++) {
        const double *p = pts + i * m;
        int out = 0;

        for (size_t j = 0; j < n && !out; j++) {
            const double *q = pts + j * m;

            if (j == i) {
                continue;
            }
            if (hpo_mo_dominates(q, p, m)) {
                out = 1;
            } else if (j < i && memcmp(p, q, m * sizeof(*p)) == 0) {
                out = 1; /* an identical earlier row stays instead */
            }
        }
        if (!out) {
            if (keep != i) {
                memmove(pts + keep * m, p, m * sizeof(*p));
            }
            keep++;
        }
    }
    return keep;
}

static int hv_any(double *pts, size_t n, unsigned m, const double *ref, double *ret_hv);

/*
** WFG (While, Bradstreet, Barone 2012) with its dimension reduction. By
** telescoping, HV(S) = sum_i [box(p_i) - HV({max(p_i, p_j) : j < i})] for
** any order; with the rows sorted by the last objective ascending, every
** limited point max(p_i, p_j), j < i, has p_i's last objective, so the
** subtracted volume is (ref_m - p_i,m) times an (m-1)-dimensional HV of the
** projections: the recursion ends in the 3-D sweep. (Optuna 3.1's
** _compute_rec sorts by f1 and keeps all m objectives at every level.)
*/
static int hv_wfg(double *pts, size_t n, unsigned m, const double *ref, double *ret_hv)
{
    const unsigned mm = m - 1;
    double hv = 0.0, *lim;
    int rc;

    if (n == 1) {
        *ret_hv = box(pts, ref, m);
        return 0;
    }
    rc = sort_rows(pts, n, m, mm);
    if (rc < 0) {
        return rc;
    }
    lim = malloc(n * mm * sizeof(*lim));
    if (lim == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const double *p = pts + i * m;
        double sub = 0.0;

        for (size_t j = 0; j < i; j++) {
            for (unsigned d = 0; d < mm; d++) {
                lim[j * mm + d] = fmax(p[d], pts[j * m + d]);
            }
        }
        rc = hv_any(lim, i, mm, ref, &sub);
        if (rc < 0) {
            free(lim);
            return rc;
        }
        hv += (ref[mm] - p[mm]) * (box(p, ref, mm) - sub);
    }
    free(lim);
    *ret_hv = hv;
    return 0;
}

/* HV of rows already filtered (every row strictly below a finite ref, all finite). */
static int hv_any(double *pts, size_t n, unsigned m, const double *ref, double *ret_hv)
{
    if (n == 0) {
        *ret_hv = 0.0;
        return 0;
    }
    if (m == 1) {
        double lo = pts[0];

        for (size_t i = 1; i < n; i++) {
            lo = fmin(lo, pts[i]);
        }
        *ret_hv = ref[0] - lo;
        return 0;
    }
    if (m == 2) {
        return hv2d(pts, n, ref, ret_hv);
    }
    if (m == 3) {
        return hv3d(pts, n, ref, ret_hv);
    }
    n = nd_filter(pts, n, m);
    return hv_wfg(pts, n, m, ref, ret_hv);
}

/* 1 iff p is strictly below ref in every objective (NaN fails). */
static int below(const double *p, const double *ref, unsigned m)
{
    for (unsigned k = 0; k < m; k++) {
        if (!(p[k] < ref[k])) {
            return 0;
        }
    }
    return 1;
}

static int infinite_row(const double *p, const double *ref, unsigned m)
{
    for (unsigned k = 0; k < m; k++) {
        if (isinf(p[k]) || isinf(ref[k])) {
            return 1;
        }
    }
    return 0;
}

int hpo_mo_hypervolume(const double *loss, size_t n, unsigned m, const double *ref,
        double *ret_hv)
{
    double *pts, hv = 0.0;
    size_t k = 0;
    int rc;

    if (n == 0 || m == 0) {
        *ret_hv = 0.0;
        return 0;
    }
    pts = malloc(n * m * sizeof(*pts));
    if (pts == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const double *p = loss + i * m;

        if (!below(p, ref, m)) {
            continue;
        }
        if (infinite_row(p, ref, m)) {
            free(pts);
            *ret_hv = INFINITY;
            return 0;
        }
        memcpy(pts + k * m, p, m * sizeof(*p));
        k++;
    }
    rc = hv_any(pts, k, m, ref, &hv);
    free(pts);
    if (rc == 0) {
        *ret_hv = hv;
    }
    return rc;
}

/*
** prod(ref - p) - HV({max(p, q) : q in sel}) for the rows q of `loss`
** listed in sel[0..k-1] (or every row but `skip` when sel is NULL): what p
** adds to the union of the others. `lim` has room for n rows.
*/
static int exclusive(const double *loss, size_t n, unsigned m, const double *ref, size_t skip,
        const size_t *sel, size_t k, double *lim, double *ret)
{
    const double *p = loss + skip * m;
    size_t c = 0;
    double sub = 0.0;
    int rc;

    if (sel == NULL) {
        k = n;
    }
    for (size_t j = 0; j < k; j++) {
        size_t q = sel != NULL ? sel[j] : j;

        if ((sel == NULL && q == skip) || !below(loss + q * m, ref, m)) {
            continue;
        }
        for (unsigned d = 0; d < m; d++) {
            lim[c * m + d] = fmax(p[d], loss[q * m + d]);
        }
        c++;
    }
    rc = hv_any(lim, c, m, ref, &sub);
    if (rc < 0) {
        return rc;
    }
    *ret = box(p, ref, m) - sub;
    return 0;
}

int hpo_mo_hv_contributions(const double *loss, size_t n, unsigned m, const double *ref,
        double *ret_contrib)
{
    double *lim, *out;
    int rc = 0;

    if (n == 0) {
        return 0;
    }
    lim = malloc(n * m * sizeof(*lim));
    out = malloc(n * sizeof(*out));
    if (lim == NULL || out == NULL) {
        free(lim);
        free(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        out[i] = 0.0;
        if (!below(loss + i * m, ref, m)) {
            continue;
        }
        if (infinite_row(loss + i * m, ref, m)) {
            out[i] = INFINITY;
            continue;
        }
        rc = exclusive(loss, n, m, ref, i, NULL, 0, lim, &out[i]);
        /* Rounding must not make a dominated point's share negative. */
        if (out[i] < 0.0) {
            out[i] = 0.0;
        }
    }
    if (rc == 0) {
        memcpy(ret_contrib, out, n * sizeof(*out));
    }
    free(lim);
    free(out);
    return rc;
}

void hpo_mo_reference_point(const double *loss, size_t n, unsigned m, double *ret_ref)
{
    for (unsigned k = 0; k < m; k++) {
        double w = -INFINITY, r;

        for (size_t i = 0; i < n; i++) {
            w = fmax(w, loss[i * m + k]);
        }
        r = fmax(1.1 * w, 0.9 * w);
        ret_ref[k] = r == 0.0 ? 1e-12 : r;
    }
}

int hpo_mo_nadir_reference(const double *loss, size_t n, unsigned m, const double *violation,
        double frac, double *ret_ref)
{
    double lo[HPO_MO_MAX_OBJECTIVES], hi[HPO_MO_MAX_OBJECTIVES];
    size_t k = 0;

    if (m > HPO_MO_MAX_OBJECTIVES) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (violation != NULL && !(violation[i] <= 0.0)) {
            continue;
        }
        for (unsigned d = 0; d < m; d++) {
            double x = loss[i * m + d];

            lo[d] = k == 0 ? x : fmin(lo[d], x);
            hi[d] = k == 0 ? x : fmax(hi[d], x);
        }
        k++;
    }
    if (k == 0) {
        return -ENOENT;
    }
    for (unsigned d = 0; d < m; d++) {
        ret_ref[d] = hi[d] + frac * (hi[d] - lo[d]);
    }
    return 0;
}

int hpo_mo_hssp(const double *loss, size_t n, unsigned m, const double *ref, size_t k,
        size_t *ret_idx)
{
    double *lim = malloc((n + 1) * m * sizeof(*lim));
    size_t *sel = malloc((n + 1) * sizeof(*sel));
    unsigned char *taken = calloc(n + 1, 1);
    int rc = 0;

    if (lim == NULL || sel == NULL || taken == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (k > n) {
        k = n;
    }
    for (unsigned d = 0; d < m; d++) {
        /* An infinite reference makes every gain infinite: take the first k, as Optuna. */
        if (!isfinite(ref[d])) {
            for (size_t s = 0; s < k; s++) {
                ret_idx[s] = s;
            }
            goto out;
        }
    }
    for (size_t s = 0; s < k; s++) {
        size_t best = n;
        double best_gain = -INFINITY;

        for (size_t i = 0; i < n; i++) {
            double gain = 0.0;

            if (taken[i]) {
                continue;
            }
            if (below(loss + i * m, ref, m)) {
                rc = exclusive(loss, n, m, ref, i, sel, s, lim, &gain);
                if (rc < 0) {
                    goto out;
                }
            }
            if (isnan(gain)) {
                gain = 0.0;
            }
            if (gain > best_gain) {
                best_gain = gain;
                best = i;
            }
        }
        taken[best] = 1;
        sel[s] = best;
    }
    memcpy(ret_idx, sel, k * sizeof(*sel));
out:
    free(lim);
    free(sel);
    free(taken);
    return rc;
}
