/*
** test-core-mo.c: the multi-objective core (core/mo.c, core/mo-hv.c):
** losses and constraint violations, (constrained) domination, ranks, the
** feasible front and crowding distance against brute-force references on
** random sets (fixed seed; ties, duplicates, 1-5 objectives), crowding
** against Optuna 3.1's own values, elite selection on the hand-checked case
** E9.1 (docs/ALGORITHMS.md §9.3), hypervolume against exact small cases, an
** exact grid count, Monte Carlo bounds and Optuna 3.1's WFG, hypervolume
** contributions, reference points and HSSP.
*/
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mo.h"
#include "rng.h"

/* ---- brute-force references ---- */

static int ref_dominates(const double *a, double va, const double *b, double vb, unsigned m,
        int constrained)
{
    int all_le = 1, any_lt = 0;

    if (constrained) {
        if (va <= 0 && vb > 0) {
            return 1;
        }
        if (va > 0 && vb <= 0) {
            return 0;
        }
        if (va > 0 && vb > 0) {
            return va < vb;
        }
    }
    for (unsigned k = 0; k < m; k++) {
        all_le &= a[k] <= b[k];
        any_lt |= a[k] < b[k];
    }
    return all_le && any_lt;
}

/* Peel fronts by all-pairs domination: O(n^3), obviously right. */
static void ref_rank(const double *loss, size_t n, unsigned m, const double *viol, size_t *rank)
{
    unsigned char *done = calloc(n, 1), *front = calloc(n, 1);
    size_t left = n, r = 0;

    assert_non_null(done);
    assert_non_null(front);
    while (left > 0) {
        for (size_t i = 0; i < n; i++) {
            front[i] = 0;
            if (done[i]) {
                continue;
            }
            front[i] = 1;
            for (size_t j = 0; j < n; j++) {
                if (!done[j] && j != i &&
                        ref_dominates(loss + j * m, viol ? viol[j] : 0, loss + i * m,
                                viol ? viol[i] : 0, m, viol != NULL)) {
                    front[i] = 0;
                    break;
                }
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (front[i]) {
                rank[i] = r;
                done[i] = 1;
                left--;
            }
        }
        r++;
    }
    free(done);
    free(front);
}

/*
** Optuna's _calc_crowding_distance written the slow way: the population list
** is re-sorted per objective by a stable insertion sort, starting from index
** order; returns the final order in `order`.
*/
static void ref_crowding(const double *loss, unsigned m, const size_t *idx, size_t k,
        double *dist, size_t *order)
{
    for (size_t j = 0; j < k; j++) {
        dist[j] = 0;
        order[j] = j;
    }
    for (unsigned c = 0; c < m; c++) {
        double vmin = INFINITY, vmax = -INFINITY, width;

        for (size_t i = 1; i < k; i++) {
            for (size_t j = i; j > 0 && loss[idx[order[j - 1]] * m + c] >
                    loss[idx[order[j]] * m + c]; j--) {
                size_t t = order[j];

                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        }
        if (loss[idx[order[0]] * m + c] == loss[idx[order[k - 1]] * m + c]) {
            continue;
        }
        for (size_t j = 0; j < k; j++) {
            double v = loss[idx[order[j]] * m + c];

            if (isfinite(v)) {
                vmin = fmin(vmin, v);
                vmax = fmax(vmax, v);
            }
        }
        width = vmax - vmin;
        if (!(width > 0)) {
            width = 1;
        }
        for (size_t j = 0; j < k; j++) {
            double lo = j ? loss[idx[order[j - 1]] * m + c] : -INFINITY;
            double hi = j + 1 < k ? loss[idx[order[j + 1]] * m + c] : INFINITY;

            dist[order[j]] += lo == hi ? 0 : (hi - lo) / width;
        }
    }
}

/*
** Exact hypervolume by coordinate compression: every grid cell between
** consecutive distinct coordinates is in or out. Small n and m only.
*/
static double ref_hv_grid(const double *pts, size_t n, unsigned m, const double *ref)
{
    double *cut[HPO_MO_MAX_OBJECTIVES];
    size_t nc[HPO_MO_MAX_OBJECTIVES], at[HPO_MO_MAX_OBJECTIVES] = { 0 };
    double hv = 0;

    for (unsigned k = 0; k < m; k++) {
        cut[k] = malloc((n + 1) * sizeof(double));
        assert_non_null(cut[k]);
        nc[k] = 0;
        for (size_t i = 0; i <= n; i++) {
            double v = i < n ? fmin(pts[i * m + k], ref[k]) : ref[k];
            size_t j = nc[k];

            while (j > 0 && cut[k][j - 1] > v) {
                cut[k][j] = cut[k][j - 1];
                j--;
            }
            if (j > 0 && cut[k][j - 1] == v) {
                memmove(cut[k] + j, cut[k] + j + 1, (nc[k] - j) * sizeof(double));
                continue;
            }
            cut[k][j] = v;
            nc[k]++;
        }
        if (nc[k] < 2) {
            for (unsigned q = 0; q <= k; q++) {
                free(cut[q]);
            }
            return 0;
        }
    }
    for (;;) {
        double vol = 1;
        int in = 0;

        for (unsigned k = 0; k < m; k++) {
            vol *= cut[k][at[k] + 1] - cut[k][at[k]];
        }
        for (size_t i = 0; i < n && !in; i++) {
            int le = 1;

            for (unsigned k = 0; k < m; k++) {
                le &= pts[i * m + k] <= cut[k][at[k]];
            }
            in = le;
        }
        if (in) {
            hv += vol;
        }
        unsigned k = 0;

        while (k < m && ++at[k] == nc[k] - 1) {
            at[k] = 0;
            k++;
        }
        if (k == m) {
            break;
        }
    }
    for (unsigned k = 0; k < m; k++) {
        free(cut[k]);
    }
    return hv;
}

/* Random losses: on a 5-value grid (ties, duplicates) or continuous. */
static void random_set(struct hpo_rng *rng, double *loss, size_t n, unsigned m, int grid)
{
    for (size_t i = 0; i < n * m; i++) {
        loss[i] = grid ? (double)hpo_rng_below(rng, 5) : hpo_rng_uniform(rng);
    }
    /* Explicit duplicates. */
    for (size_t i = 1; i < n; i += 7) {
        memcpy(loss + i * m, loss + (i - 1) * m, m * sizeof(double));
    }
}

/* ---- tests ---- */

static void test_loss_and_constraints(void **state)
{
    const double values[3] = { 1.5, 2.0, NAN };
    const unsigned char maximize[3] = { 0, 1, 0 };
    double loss[3], c[3];

    hpo_mo_loss(values, maximize, 3, loss);
    assert_true(loss[0] == 1.5 && loss[1] == -2.0 && loss[2] == INFINITY);
    /* Declared {"name": "memory_gb", "max": 16} told 11.2 / 17; {"min": 0.9} told 0.85. */
    assert_true(hpo_mo_constraint_value(11.2, -INFINITY, 16) == 11.2 - 16);
    assert_true(hpo_mo_constraint_value(17, -INFINITY, 16) == 1);
    assert_true(hpo_mo_constraint_value(0.85, 0.9, INFINITY) == 0.9 - 0.85);
    assert_true(hpo_mo_constraint_value(0.5, 0, 1) == -0.5);
    assert_true(hpo_mo_constraint_value(1.25, 0, 1) == 0.25);
    assert_true(hpo_mo_constraint_value(-2, 0, 1) == 2);
    assert_true(hpo_mo_constraint_value(NAN, 0, 1) == INFINITY);
    c[0] = -1;
    c[1] = 0;
    c[2] = -3;
    assert_true(hpo_mo_violation(c, 3) == 0); /* 0 is satisfied (Optuna: <= 0 feasible) */
    c[1] = 0.5;
    c[2] = 2;
    assert_true(hpo_mo_violation(c, 3) == 2.5);
    c[0] = NAN;
    assert_true(hpo_mo_violation(c, 3) == INFINITY);
    assert_true(hpo_mo_violation(c, 0) == 0);
}

static void test_dominance(void **state)
{
    const double a[2] = { 1, 2 }, b[2] = { 1, 3 }, c[2] = { 0, 4 };

    assert_true(hpo_mo_dominates(a, b, 2));
    assert_false(hpo_mo_dominates(b, a, 2));
    assert_false(hpo_mo_dominates(a, a, 2)); /* identical vectors never dominate */
    assert_false(hpo_mo_dominates(a, c, 2));
    assert_false(hpo_mo_dominates(c, a, 2));
    /* Feasible beats infeasible whatever the losses; smaller violation wins. */
    assert_true(hpo_mo_constrained_dominates(b, 0, a, 0.1, 2));
    assert_false(hpo_mo_constrained_dominates(a, 0.1, b, 0, 2));
    assert_true(hpo_mo_constrained_dominates(b, 1, a, 2, 2));
    assert_false(hpo_mo_constrained_dominates(a, 2, a, 2, 2));
    assert_true(hpo_mo_constrained_dominates(a, 3, b, INFINITY, 2));
    assert_true(hpo_mo_constrained_dominates(a, 0, b, 0, 2));
    assert_false(hpo_mo_constrained_dominates(a, 0, c, 0, 2));
}

/* E9.1 of the algorithm reference (docs/ALGORITHMS.md §9.3). */
static const double e91[16] = { 1, 5, 2, 3, 4, 1, 2, 6, 3, 4.5, 4, 3.5, 6, 2, 5, 5 };

static void test_e91(void **state)
{
    static const size_t want_rank[8] = { 0, 0, 0, 1, 1, 1, 1, 2 };
    static const size_t want_crank[8] = { 0, 0, 3, 1, 1, 2, 0, 2 };
    static const double pen[8] = { 0, 0, 2, 0, 0, 0.5, 0, 0.5 };
    size_t rank[8], idx[8], order[8];
    double dist[8];

    assert_int_equal(hpo_mo_rank(e91, 8, 2, NULL, 0, rank), 0);
    assert_memory_equal(rank, want_rank, sizeof(rank));
    assert_int_equal(hpo_mo_rank(e91, 8, 2, pen, 0, rank), 0);
    assert_memory_equal(rank, want_crank, sizeof(rank));

    idx[0] = 0, idx[1] = 1, idx[2] = 2;
    for (size_t j = 0; j < 3; j++) {
        order[j] = j;
    }
    assert_int_equal(hpo_mo_crowding(e91, 2, idx, 3, dist, order), 0);
    assert_true(dist[0] == INFINITY && dist[2] == INFINITY);
    assert_float_equal(dist[1], 2.0, 1e-12);
    idx[0] = 3, idx[1] = 4, idx[2] = 5, idx[3] = 6;
    for (size_t j = 0; j < 4; j++) {
        order[j] = j;
    }
    assert_int_equal(hpo_mo_crowding(e91, 2, idx, 4, dist, order), 0);
    assert_true(dist[0] == INFINITY && dist[3] == INFINITY);
    assert_float_equal(dist[1], 1.125, 1e-12);
    assert_float_equal(dist[2], 1.375, 1e-12);
    idx[0] = 7;
    order[0] = 0;
    assert_int_equal(hpo_mo_crowding(e91, 2, idx, 1, dist, order), 0);
    assert_true(dist[0] == 0); /* a single point: every objective is degenerate */

    /* Elite of 5: fronts 0 whole, then the two infinite ends of front 1. */
    assert_int_equal(hpo_mo_select(e91, 8, 2, NULL, 5, idx), 5);
    assert_true(idx[0] == 0 && idx[1] == 1 && idx[2] == 2);
    assert_true((idx[3] == 3 && idx[4] == 6) || (idx[3] == 6 && idx[4] == 3));
    /* Elite of 4: the inf/inf tie goes to the larger f2, trial 3 (2, 6). */
    assert_int_equal(hpo_mo_select(e91, 8, 2, NULL, 4, idx), 4);
    assert_true(idx[3] == 3);
    /* More than there are: all of them. */
    assert_int_equal(hpo_mo_select(e91, 8, 2, NULL, 50, idx), 8);
    /* Constrained: trial 2 (violation 2) is last; 5 and 7 tie on 0.5. */
    assert_int_equal(hpo_mo_select(e91, 8, 2, pen, 7, idx), 7);
    for (size_t j = 0; j < 7; j++) {
        assert_int_not_equal(idx[j], 2);
    }
}

/*
** Optuna 3.1's own crowding distances and order, produced once with
** /usr/bin/python3 by optuna.samplers.nsgaii._sampler._calc_crowding_distance
** and _crowding_distance_sort on trials 0-7 with these values, in number
** order: ties, a duplicate, an infinite value and a constant objective.
*/
static void test_crowding_optuna(void **state)
{
    static const double v[24] = { 1, 5, 2, 2, 3, 2, 2, 3, 2, 4, 1, 2, 3, 3, 2, 1, 5, 2,
        INFINITY, 0, 2, 0.5, 6, 2 };
    static const double want[8] = { 0.47619047619047616, 0.6190476190476191,
        0.2857142857142857, INFINITY, 0.9047619047619047, 0.45238095238095233, INFINITY,
        INFINITY };
    static const size_t want_sorted[8] = { 7, 3, 6, 4, 1, 0, 5, 2 };
    size_t idx[8], order[8], pos[8], sorted[8];
    double dist[8];

    for (size_t j = 0; j < 8; j++) {
        idx[j] = j;
        order[j] = j;
    }
    assert_int_equal(hpo_mo_crowding(v, 3, idx, 8, dist, order), 0);
    for (size_t j = 0; j < 8; j++) {
        assert_true(dist[j] == want[j] || fabs(dist[j] - want[j]) < 1e-12);
        pos[order[j]] = j;
    }
    /* sort(key=distance) then reverse(): descending, ties by later position first. */
    for (size_t j = 0; j < 8; j++) {
        size_t r = 0;

        for (size_t q = 0; q < 8; q++) {
            r += dist[q] > dist[j] || (dist[q] == dist[j] && pos[q] > pos[j]);
        }
        sorted[r] = j;
    }
    assert_memory_equal(sorted, want_sorted, sizeof(sorted));
}

static void test_rank_random(void **state)
{
    static const size_t sizes[] = { 1, 2, 3, 8, 25, 70, 160 };
    struct hpo_rng rng;
    size_t cases = 0;

    hpo_rng_seed(&rng, 20261206);
    for (unsigned m = 1; m <= 5; m++) {
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
            for (int grid = 0; grid < 2; grid++) {
                for (int cons = 0; cons < 2; cons++) {
                    size_t n = sizes[si];
                    double *loss = malloc(n * m * sizeof(double));
                    double *viol = malloc(n * sizeof(double));
                    size_t *got = malloc(n * sizeof(size_t)), *want = malloc(n * sizeof(size_t));

                    assert_true(loss && viol && got && want);
                    random_set(&rng, loss, n, m, grid);
                    for (size_t i = 0; i < n; i++) {
                        static const double pv[] = { 0.5, 1, 1, 2, INFINITY };

                        viol[i] = hpo_rng_below(&rng, 3) == 0 ? pv[hpo_rng_below(&rng, 5)] : 0;
                    }
                    ref_rank(loss, n, m, cons ? viol : NULL, want);
                    assert_int_equal(hpo_mo_rank(loss, n, m, cons ? viol : NULL, 0, got), 0);
                    for (size_t i = 0; i < n; i++) {
                        if (got[i] != want[i]) {
                            fail_msg("m %u n %zu grid %d cons %d: point %zu rank %zu, want %zu",
                                    m, n, grid, cons, i, got[i], want[i]);
                        }
                    }
                    /* The feasible front: feasible and no feasible point dominates it. */
                    {
                        size_t *front = malloc(n * sizeof(size_t)), k = 0;
                        long nf = hpo_mo_front(loss, n, m, cons ? viol : NULL, front);

                        assert_non_null(front);
                        for (size_t i = 0; i < n; i++) {
                            int on = !cons || viol[i] <= 0;

                            for (size_t j = 0; j < n && on; j++) {
                                on = !((!cons || viol[j] <= 0) &&
                                        hpo_mo_dominates(loss + j * m, loss + i * m, m));
                            }
                            if (on) {
                                assert_true(k < (size_t)nf && front[k] == i);
                                k++;
                            }
                        }
                        assert_int_equal(nf, (long)k);
                        free(front);
                    }
                    /* n_stop: ranks below the cut agree, the rest share one more. */
                    if (!cons && n > 3) {
                        size_t stop = n / 3, cut = 0, acc = 0;

                        while (acc < stop) {
                            for (size_t i = 0; i < n; i++) {
                                acc += want[i] == cut;
                            }
                            cut++;
                        }
                        assert_int_equal(hpo_mo_rank(loss, n, m, NULL, stop, got), 0);
                        for (size_t i = 0; i < n; i++) {
                            assert_int_equal(got[i], want[i] < cut ? want[i] : cut);
                        }
                    }
                    cases++;
                    free(loss);
                    free(viol);
                    free(got);
                    free(want);
                }
            }
        }
    }
    assert_int_equal(cases, 5 * 7 * 4);
}

static void test_crowding_random(void **state)
{
    struct hpo_rng rng;

    hpo_rng_seed(&rng, 77);
    for (unsigned m = 1; m <= 5; m++) {
        for (size_t n = 1; n <= 40; n += 3) {
            for (int grid = 0; grid < 2; grid++) {
                double loss[40 * 5], d1[40], d2[40];
                size_t idx[40], o1[40], o2[40], sel[40];
                long got;

                random_set(&rng, loss, n, m, grid);
                if (n > 4) {
                    loss[0] = INFINITY; /* infinite values: gaps inf - inf count 0 */
                    loss[m] = INFINITY;
                }
                for (size_t j = 0; j < n; j++) {
                    idx[j] = n - 1 - j; /* any subset order works */
                    o1[j] = j;
                }
                assert_int_equal(hpo_mo_crowding(loss, m, idx, n, d1, o1), 0);
                ref_crowding(loss, m, idx, n, d2, o2);
                for (size_t j = 0; j < n; j++) {
                    if (!(d1[j] == d2[j] || fabs(d1[j] - d2[j]) < 1e-12)) {
                        fail_msg("m %u n %zu: distance %zu %g, want %g", m, n, j, d1[j], d2[j]);
                    }
                    assert_int_equal(o1[j], o2[j]);
                }
                /* Selection never takes a point of a worse rank before a better one. */
                got = hpo_mo_select(loss, n, m, NULL, n / 2, sel);
                assert_int_equal(got, (long)(n / 2));
                {
                    size_t rank[40], worst = 0;

                    assert_int_equal(hpo_mo_rank(loss, n, m, NULL, 0, rank), 0);
                    for (long j = 0; j < got; j++) {
                        worst = rank[sel[j]] > worst ? rank[sel[j]] : worst;
                    }
                    for (size_t i = 0; i < n; i++) {
                        int in = 0;

                        for (long j = 0; j < got; j++) {
                            in |= sel[j] == i;
                        }
                        if (!in) {
                            assert_true(rank[i] >= worst);
                        }
                    }
                }
            }
        }
    }
}

/* E9.4 of the algorithm reference (docs/ALGORITHMS.md §9.4) and edge cases. */
static void test_hv_exact_small(void **state)
{
    static const double p2[6] = { 1, 3, 2, 2, 3, 1 }, r2[2] = { 4, 4 };
    static const double p3[9] = { 1, 2, 3, 2, 3, 1, 3, 1, 2 }, r3[3] = { 4, 4, 4 };
    static const double p4[16] = { 1, 2, 3, 4, 2, 3, 1, 4, 3, 1, 2, 4, 4, 4, 4, 1 };
    static const double r4[4] = { 5, 5, 5, 5 };
    static const double p1[3] = { 3, 1, 2 }, r1[1] = { 5 };
    double hv, c[4], out[2] = { 5, 0 }, inf2[2] = { INFINITY, 4 };

    assert_int_equal(hpo_mo_hypervolume(p2, 3, 2, r2, &hv), 0);
    assert_float_equal(hv, 6, 1e-12);
    assert_int_equal(hpo_mo_hv_contributions(p2, 3, 2, r2, c), 0);
    assert_float_equal(c[0], 1, 1e-12);
    assert_float_equal(c[1], 1, 1e-12);
    assert_float_equal(c[2], 1, 1e-12);
    assert_int_equal(hpo_mo_hypervolume(p3, 3, 3, r3, &hv), 0);
    assert_float_equal(hv, 13, 1e-12);
    assert_int_equal(hpo_mo_hypervolume(p4, 4, 4, r4, &hv), 0);
    assert_float_equal(hv, 47, 1e-12);
    assert_int_equal(hpo_mo_hypervolume(p1, 3, 1, r1, &hv), 0);
    assert_float_equal(hv, 4, 1e-12);
    /* Points not strictly below ref add nothing; none at all gives 0. */
    assert_int_equal(hpo_mo_hypervolume(out, 1, 2, r2, &hv), 0);
    assert_true(hv == 0);
    assert_int_equal(hpo_mo_hypervolume(p2, 0, 2, r2, &hv), 0);
    assert_true(hv == 0);
    /* An infinite reference with a point below it: infinite. */
    assert_int_equal(hpo_mo_hypervolume(p2, 3, 2, inf2, &hv), 0);
    assert_true(hv == INFINITY);
    /* Duplicates and dominated points do not change it (3-D sweep and WFG paths). */
    {
        double q3[15], q4[24];

        memcpy(q3, p3, sizeof(p3));
        memcpy(q3 + 9, p3, 3 * sizeof(double));
        q3[12] = 3.5, q3[13] = 3.5, q3[14] = 3.5;
        assert_int_equal(hpo_mo_hypervolume(q3, 5, 3, r3, &hv), 0);
        assert_float_equal(hv, 13, 1e-12);
        memcpy(q4, p4, sizeof(p4));
        memcpy(q4 + 16, p4 + 4, 4 * sizeof(double));
        q4[20] = 4.5, q4[21] = 4.5, q4[22] = 4.5, q4[23] = 4.5;
        assert_int_equal(hpo_mo_hypervolume(q4, 6, 4, r4, &hv), 0);
        assert_float_equal(hv, 47, 1e-12);
    }
}

static void test_hv_grid_and_contrib(void **state)
{
    struct hpo_rng rng;
    size_t cases = 0;

    hpo_rng_seed(&rng, 99);
    for (unsigned m = 2; m <= 5; m++) {
        size_t nmax = m <= 3 ? 30 : (m == 4 ? 12 : 8);

        for (size_t n = 1; n <= nmax; n += (m <= 3 ? 4 : 2)) {
            for (int grid = 0; grid < 2; grid++) {
                double pts[30 * 5], ref[5], hv, want, c[30], sub[30 * 5];

                random_set(&rng, pts, n, m, grid);
                for (unsigned k = 0; k < m; k++) {
                    ref[k] = grid ? 4.5 : 1.05;
                }
                if (n > 2) {
                    pts[m] = ref[0]; /* on the reference plane: ignored */
                }
                assert_int_equal(hpo_mo_hypervolume(pts, n, m, ref, &hv), 0);
                want = ref_hv_grid(pts, n, m, ref);
                if (fabs(hv - want) > 1e-9) {
                    fail_msg("m %u n %zu grid %d: hv %.15g, want %.15g", m, n, grid, hv, want);
                }
                /* Contributions: HV(S) - HV(S \ {p}) by the grid count. */
                assert_int_equal(hpo_mo_hv_contributions(pts, n, m, ref, c), 0);
                for (size_t i = 0; i < n; i++) {
                    double rest;

                    memcpy(sub, pts, i * m * sizeof(double));
                    memcpy(sub + i * m, pts + (i + 1) * m, (n - i - 1) * m * sizeof(double));
                    rest = ref_hv_grid(sub, n - 1, m, ref);
                    if (fabs(c[i] - (want - rest)) > 1e-9) {
                        fail_msg("m %u n %zu: contribution %zu %.15g, want %.15g", m, n, i, c[i],
                                want - rest);
                    }
                }
                cases++;
            }
        }
    }
    assert_true(cases > 40);
}

/* Monte Carlo: the exact value lies within 6 standard errors of the hit rate. */
static void test_hv_monte_carlo(void **state)
{
    static const unsigned dims[3] = { 2, 3, 5 };
    struct hpo_rng rng;

    hpo_rng_seed(&rng, 5);
    for (int t = 0; t < 3; t++) {
        unsigned m = dims[t];
        size_t n = m == 5 ? 40 : 100, hits = 0, draws = 100000;
        double *pts = malloc(n * m * sizeof(double)), ref[5], lo[5], vol = 1, hv, est, se;

        assert_non_null(pts);
        /* Points near the unit sphere (a front-like set), ref 1.1. */
        for (size_t i = 0; i < n; i++) {
            double s = 0;

            for (unsigned k = 0; k < m; k++) {
                pts[i * m + k] = fabs(hpo_rng_normal(&rng));
                s += pts[i * m + k] * pts[i * m + k];
            }
            s = sqrt(s) * (1 + 0.2 * hpo_rng_uniform(&rng));
            for (unsigned k = 0; k < m; k++) {
                pts[i * m + k] /= s;
            }
        }
        for (unsigned k = 0; k < m; k++) {
            ref[k] = 1.1;
            lo[k] = INFINITY;
            for (size_t i = 0; i < n; i++) {
                lo[k] = fmin(lo[k], pts[i * m + k]);
            }
            vol *= ref[k] - lo[k];
        }
        assert_int_equal(hpo_mo_hypervolume(pts, n, m, ref, &hv), 0);
        for (size_t s = 0; s < draws; s++) {
            double z[5];

            for (unsigned k = 0; k < m; k++) {
                z[k] = lo[k] + (ref[k] - lo[k]) * hpo_rng_uniform(&rng);
            }
            for (size_t i = 0; i < n; i++) {
                unsigned k = 0;

                while (k < m && pts[i * m + k] <= z[k]) {
                    k++;
                }
                if (k == m) {
                    hits++;
                    break;
                }
            }
        }
        est = vol * (double)hits / (double)draws;
        se = vol * sqrt((double)hits / draws * (1 - (double)hits / draws) / draws);
        if (fabs(hv - est) > 6 * se) {
            fail_msg("m %u: hv %.9g, Monte Carlo %.9g +- %.3g", m, hv, est, se);
        }
        assert_true(hv > 0.1 * vol);
        free(pts);
    }
}

/*
** Optuna 3.1 (Debian python3-optuna 3.1.0) reference values, produced once by
**   rs = np.random.RandomState(14)
**   for m, n in [(2, 12), (3, 12), (4, 10), (5, 9)]:
**       pts = np.round(rs.rand(n, m), 3); pts[-1] = pts[0]
**       pts[-2] = np.minimum(pts[1] + 0.05, 1.0); ref = np.full(m, 1.1)
**       hv = optuna._hypervolume.WFG().compute(pts, ref)
**       contrib[i] = hv - WFG().compute(np.delete(pts, i, axis=0), ref)
** with /usr/bin/python3 (numpy 1.24.2), printed with repr / %.17g.
*/
static const double opt_p2[] = { 0.514, 0.773, 0.87, 0.008, 0.31, 0.958, 0.513, 0.318, 0.539,
    0.221, 0.806, 0.342, 0.539, 0.006, 0.673, 0.21, 0.933, 0.374, 0.752, 0.763, 0.92, 0.058,
    0.514, 0.773 };
static const double opt_c2[] = { 0, 0, 0.028826000000000018, 0.012014999999999998, 0, 0,
    0.06945800000000002, 0, 0, 0, 0, 0 };
static const double opt_p3[] = { 0.673, 0.258, 0.701, 0.657, 0.182, 0.322, 0.888, 0.083, 0.747,
    0.062, 0.731, 0.743, 0.408, 0.991, 0.452, 0.19, 0.352, 0.715, 0.357, 0.052, 0.316, 0.999,
    0.288, 0.462, 0.735, 0.944, 0.175, 0.212, 0.132, 0.209, 0.7070000000000001,
    0.23199999999999998, 0.372, 0.673, 0.258, 0.701 };
static const double opt_c3[] = { 0, 0, 1.1102230246251565e-16, 0.016861824000000025, 0,
    0.0034374339999998504, 0.042933995999999919, 1.1102230246251565e-16, 0.0019359599999999588,
    0.15416804800000028, 0, 0 };
static const double opt_p4[] = { 0.621, 0.621, 0.15, 0.538, 0.12, 0.153, 0.45, 0.429, 0.734,
    0.074, 0.279, 0.165, 0.508, 0.579, 0.639, 0.214, 0.418, 0.467, 0.083, 0.57, 0.229, 0.036,
    0.965, 0.075, 0.73, 0.503, 0.093, 0.524, 0.434, 0.548, 0.935, 0.995, 0.16999999999999998,
    0.203, 0.5, 0.479, 0.621, 0.621, 0.15, 0.538 };
static const double opt_c4[] = { 0, 0.052447634100000085, 0.085005301818000034,
    0.008252817140000146, 0.032680847280000092, 0.034100198775000146, 0.0011666290560001791,
    1.1102230246251565e-16, 1.1102230246251565e-16, 0 };
static const double opt_p5[] = { 0.237, 0.393, 0.083, 0.824, 0.289, 0.164, 0.163, 0.278, 0.007,
    0.749, 0.854, 0.926, 0.302, 0.474, 0.74, 0.651, 0.268, 0.389, 0.905, 0.731, 0.076, 0.206,
    0.888, 0.413, 0.205, 0.347, 0.412, 0.755, 0.133, 0.855, 0.38, 0.477, 0.13, 0.272, 0.946,
    0.21400000000000002, 0.21300000000000002, 0.328, 0.057, 0.799, 0.237, 0.393, 0.083, 0.824,
    0.289 };
static const double opt_c5[] = { 0, 0.067435006866061964, 7.901190359999033e-05,
    9.8302376250025691e-05, 0.060061070712264075, 0, 0.005643415895039916, 0, 0 };

static void test_hv_optuna(void **state)
{
    static const struct {
        unsigned m;
        size_t n;
        const double *pts, *contrib;
        double hv;
    } cases[] = {
        { 2, 12, opt_p2, opt_c2, 0.66289200000000015 },
        { 3, 12, opt_p3, opt_c3, 0.83762364800000044 },
        { 4, 10, opt_p4, opt_c4, 0.6530168262930004 },
        { 5, 9, opt_p5, opt_c5, 0.43283462200956629 },
    };
    const double ref[5] = { 1.1, 1.1, 1.1, 1.1, 1.1 };

    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        double hv, c[12];

        assert_int_equal(hpo_mo_hypervolume(cases[t].pts, cases[t].n, cases[t].m, ref, &hv), 0);
        assert_float_equal(hv, cases[t].hv, 1e-9);
        assert_int_equal(hpo_mo_hv_contributions(cases[t].pts, cases[t].n, cases[t].m, ref, c),
                0);
        for (size_t i = 0; i < cases[t].n; i++) {
            assert_float_equal(c[i], cases[t].contrib[i], 1e-9);
        }
    }
}

/*
** E9.2 of the algorithm reference (docs/ALGORITHMS.md §9.4): HSSP on the
** front, and Optuna's reference point.
*/
static void test_hssp(void **state)
{
    static const double front[8] = { 1, 4, 2, 2.5, 3, 1.5, 4, 1 };
    static const double zero[4] = { 0, -2, 0, -1 };
    double ref[2];
    size_t idx[4];

    hpo_mo_reference_point(front, 4, 2, ref);
    assert_float_equal(ref[0], 4.4, 1e-12);
    assert_float_equal(ref[1], 4.4, 1e-12);
    hpo_mo_reference_point(zero, 2, 2, ref);
    assert_true(ref[0] == 1e-12);          /* worst 0 -> EPS */
    assert_float_equal(ref[1], -0.9, 1e-12); /* negative worst: 0.9 w is the larger */
    /* The study default: worst feasible + 10% of the feasible range. */
    {
        static const double pen[4] = { 0, 0, 1, 0 };
        double nad[2];

        assert_int_equal(hpo_mo_nadir_reference(front, 4, 2, pen, 0.1, nad), 0);
        assert_float_equal(nad[0], 4 + 0.3, 1e-12);
        assert_float_equal(nad[1], 4 + 0.3, 1e-12);
        nad[0] = 7;
        assert_int_equal(hpo_mo_nadir_reference(front, 1, 2, pen + 2, 0.1, nad), -ENOENT);
        assert_true(nad[0] == 7);
    }
    hpo_mo_reference_point(front, 4, 2, ref);
    /* Optuna 3.1 _solve_hssp(front, arange(4), 3, [4.4, 4.4]) = [1, 2, 0]. */
    assert_int_equal(hpo_mo_hssp(front, 4, 2, ref, 3, idx), 0);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 2);
    assert_int_equal(idx[2], 0);
    assert_int_equal(hpo_mo_hssp(front, 4, 2, ref, 9, idx), 0);
    assert_int_equal(idx[3], 3);
    /* An infinite reference: every gain is infinite, the first k (Optuna). */
    ref[0] = INFINITY;
    assert_int_equal(hpo_mo_hssp(front, 4, 2, ref, 2, idx), 0);
    assert_true(idx[0] == 0 && idx[1] == 1);
    /* A duplicate of a chosen point adds nothing and comes last. */
    {
        static const double dup[8] = { 1, 4, 1, 4, 2, 2.5, 3, 1.5 };
        const double r[2] = { 4.4, 4.4 };

        assert_int_equal(hpo_mo_hssp(dup, 4, 2, r, 4, idx), 0);
        assert_int_equal(idx[3], 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_and_constraints),
        cmocka_unit_test(test_dominance),
        cmocka_unit_test(test_e91),
        cmocka_unit_test(test_crowding_optuna),
        cmocka_unit_test(test_rank_random),
        cmocka_unit_test(test_crowding_random),
        cmocka_unit_test(test_hv_exact_small),
        cmocka_unit_test(test_hv_grid_and_contrib),
        cmocka_unit_test(test_hv_monte_carlo),
        cmocka_unit_test(test_hv_optuna),
        cmocka_unit_test(test_hssp),
    };

    return cmocka_run_group_tests_name("core-mo", tests, NULL, NULL);
}
