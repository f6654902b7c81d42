/*
** test-samplers-tpe-mo.c: TPE with several objectives and constraints
** (samplers/tpe-mo.c): the below split and weights against Optuna 3.1's
** values and brute force, and the sampler through its type table on
** histories with objectives and constraints.
*/
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "history.h"
#include "mo.h"
#include "rng.h"
#include "sampler.h"
#include "space.h"
#include "tpe-mo.h"

/*
** Reference values: Optuna 3.1.0 (Debian's python3-optuna) with numpy,
** computed once by
**   from optuna.samplers._tpe.sampler import _split_observation_pairs, \
**       _calculate_weights_below_for_multi_objective
**   scores = [(-inf, list(v)) for v in LV]
**   below, _ = _split_observation_pairs(scores, K, VIOL)   # VIOL None or a list
**   w = _calculate_weights_below_for_multi_objective(scores, below, VIOL)
** printing sorted(below) and w in that order (%.17g). LV2 and LV3 came from
** numpy.random.RandomState(7): randint(0, 20, (40, 2)) / 4 (a grid: ties and
** duplicates), then 50 points rand(50, 3) scaled to norms in [1, 2] and
** rounded to 3 decimals; VIOL2: 0 for every third trial, else
** round(3 rand, 2), trial 5 +inf (its constraint not told).
*/
static const double LV2[40][2] = {
    { 3.75, 1.0 }, { 0.75, 4.75 }, { 1.75, 3.5 }, { 2.0, 3.5 }, { 2.5, 2.0 }, { 1.75, 1.5 },
    { 1.0, 4.0 }, { 1.75, 3.0 }, { 0.0, 2.75 }, { 1.5, 4.75 }, { 3.0, 1.25 }, { 4.0, 0.0 },
    { 0.5, 2.25 }, { 3.5, 1.5 }, { 1.0, 3.5 }, { 2.25, 0.75 }, { 0.75, 2.0 }, { 4.75, 4.0 },
    { 0.25, 0.0 }, { 4.0, 3.0 }, { 1.75, 2.5 }, { 2.25, 0.75 }, { 0.0, 1.75 }, { 0.0, 1.0 },
    { 0.75, 0.25 }, { 0.75, 0.25 }, { 4.75, 1.0 }, { 4.75, 0.25 }, { 1.25, 2.25 },
    { 4.25, 0.5 }, { 4.75, 4.5 }, { 4.5, 0.75 }, { 2.75, 3.75 }, { 4.0, 3.0 }, { 2.75, 2.25 },
    { 2.25, 3.0 }, { 0.75, 3.5 }, { 3.5, 3.75 }, { 0.75, 4.0 }, { 1.0, 2.75 },
};

static const double LV3[50][3] = {
    { 0.341, 1.4, 1.371 }, { 1.201, 0.669, 1.191 }, { 0.375, 0.884, 1.325 },
    { 1.456, 0.954, 0.269 }, { 0.729, 0.688, 0.637 }, { 0.342, 0.857, 0.926 },
    { 0.787, 0.808, 0.53 }, { 0.58, 0.98, 1.118 }, { 0.524, 0.621, 0.729 },
    { 0.084, 1.806, 0.57 }, { 0.593, 0.993, 0.894 }, { 0.313, 1.403, 0.147 },
    { 0.4, 0.911, 0.479 }, { 0.808, 0.981, 1.106 }, { 1.59, 0.015, 0.879 },
    { 1.056, 0.127, 1.235 }, { 0.542, 0.738, 0.839 }, { 0.322, 0.58, 1.658 },
    { 0.241, 0.407, 1.044 }, { 0.264, 1.219, 1.335 }, { 0.055, 0.878, 1.313 },
    { 1.224, 0.344, 0.212 }, { 1.038, 1.076, 0.234 }, { 0.602, 0.981, 1.153 },
    { 0.2, 0.79, 0.959 }, { 1.766, 0.529, 0.114 }, { 0.467, 1.34, 0.074 },
    { 0.042, 1.863, 0.328 }, { 0.502, 0.078, 1.764 }, { 0.925, 0.567, 0.179 },
    { 0.471, 0.839, 1.336 }, { 1.273, 0.31, 0.014 }, { 1.099, 1.226, 0.607 },
    { 0.908, 1.02, 0.718 }, { 1.391, 0.038, 0.433 }, { 0.548, 0.238, 1.799 },
    { 0.048, 1.05, 0.111 }, { 0.967, 1.12, 0.486 }, { 0.853, 0.876, 0.519 },
    { 0.98, 0.213, 0.256 }, { 1.114, 1.189, 0.648 }, { 1.156, 1.042, 0.134 },
    { 1.115, 0.702, 1.361 }, { 0.407, 0.739, 1.358 }, { 0.532, 0.904, 0.829 },
    { 1.408, 0.115, 1.395 }, { 0.911, 0.581, 0.277 }, { 0.6, 0.636, 0.586 },
    { 0.186, 1.229, 1.207 }, { 0.796, 1.113, 0.074 },
};

static const double VIOL2[40] = {
    0.0, 1.08, 2.63, 0.0, 0.98, INFINITY, 0.0, 1.93, 0.99, 0.0, 0.18, 0.74, 0.0, 2.91,
    1.22, 0.0, 0.48, 0.89, 0.0, 2.7, 0.49, 0.0, 2.33, 0.4, 0.0, 2.88, 1.59, 0.0, 0.13,
    2.79, 0.0, 1.07, 2.19, 0.0, 1.57, 0.28, 0.0, 0.32, 0.45, 0.0,
};

struct ref_case {
    const char *name;
    size_t k;
    size_t below[25];
    double w[25];
};

/* Unconstrained cases on LV2 (2 objectives). */
static const struct ref_case REF2[] = {
    { "2d k=1", 1, { 18 }, { 1 } },
    { "2d k=3", 3, { 18, 23, 24 }, { 1, 0.048192771086172197, 1.927710843369778e-12 } },
    { "2d k=4", 4, { 18, 22, 23, 24 },
            { 1, 1.9277108433697784e-12, 0.36144578313376113, 1.9277108433697784e-12 } },
    { "2d k=7", 7, { 11, 15, 18, 22, 23, 24, 25 },
            { 7.6190476190418029e-13, 7.6190476190418029e-13, 1, 7.6190476190418029e-13,
                    0.14285714285779572, 7.6190476190418029e-13, 7.6190476190418029e-13 } },
    { "2d k=12", 12, { 5, 8, 11, 12, 15, 16, 18, 22, 23, 24, 25, 29 },
            { 7.619047619041813e-13, 7.6055134716940127e-13, 7.619047619041813e-13,
                    7.619047619041813e-13, 7.619047619041813e-13, 7.619047619041813e-13, 1,
                    7.6055134716940127e-13, 0.14285714285779591, 7.619047619041813e-13,
                    7.619047619041813e-13, 7.619047619041813e-13 } },
};

/* Unconstrained cases on LV3 (3 objectives). */
static const struct ref_case REF3[] = {
    { "3d k=2", 2, { 36, 39 }, { 1, 0.11545991788209971 } },
    { "3d k=5", 5, { 18, 31, 34, 36, 39 },
            { 0.23423778779400153, 0.22975947677216244, 0.082227135702763063,
                    0.46216268732177129, 1 } },
    { "3d k=9", 9, { 18, 26, 28, 29, 31, 34, 36, 39, 47 },
            { 0.78270443985750016, 0.012230945511474455, 0.11486308927389965,
                    0.071763939127004323, 0.14011494921097728, 0.10216977942239983, 1,
                    0.43555964521715257, 0.18861127338833195 } },
};

/* LV2 with the violations VIOL2. */
#define W3 3.3472803347269121e-13
#define WE 9.9999999999999998e-13
static const struct ref_case REFC[] = {
    { "2d constrained k=4", 4, { 12, 15, 18, 24 },
            { 6.2015503875930505e-13, 6.2015503875930505e-13, 1, 6.2015503875930505e-13 } },
    { "2d constrained k=14", 14, { 0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39 },
            { W3, W3, W3, W3, W3, W3, 1, W3, W3, W3, W3, W3, W3, W3 } },
    { "2d constrained k=20", 20,
            { 0, 3, 6, 9, 10, 12, 15, 18, 21, 23, 24, 27, 28, 30, 33, 35, 36, 37, 38, 39 },
            { W3, W3, W3, W3, WE, W3, W3, 1, W3, WE, W3, W3, WE, W3, W3, WE, W3, WE, WE, W3 } },
};

static bool close_to(double got, double want, double tol)
{
    return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

/* Weights in [0, 1]: equal to 1e-9 absolute (the 1e-12 floor compares as 0). */
static void check_weights(const char *name, const double *got, const double *want, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        if (!close_to(got[i], want[i], 1e-9)) {
            fail_msg("%s: weight %zu is %.17g, Optuna %.17g", name, i, got[i], want[i]);
        }
    }
}

static void check_select(const struct ref_case *c, const double *loss, size_t n, unsigned m)
{
    size_t idx[40];
    double bl[25 * 3], w[25];

    assert_int_equal(hpo_tpe_mo_select(loss, n, m, c->k, idx), 0);
    for (size_t i = 0; i < c->k; i++) {
        if (idx[i] != c->below[i]) {
            fail_msg("%s: below[%zu] = %zu, Optuna %zu", c->name, i, idx[i], c->below[i]);
        }
        memcpy(bl + i * m, loss + idx[i] * m, m * sizeof(double));
    }
    assert_int_equal(hpo_tpe_mo_weights(bl, c->k, m, w), 0);
    check_weights(c->name, w, c->w, c->k);
}

/* ---------------------------------------------------------------------- */
/* The split and the weights against Optuna 3.1                             */

/*
** docs/ALGORITHMS.md E9.2: four front points (1,4) (2,2.5) (3,1.5) (4,1) and
** 26 dominated ones; k = 3 takes (2,2.5), (3,1.5), then (1,4) by HSSP;
** weights 0.4, 1.5, 0.3 over 1.5 (Optuna 3.1: 0.26666666666715577, 1,
** 0.20000000000053347).
*/
static void test_e92(void **unused)
{
    double loss[30 * 2] = { 1, 4, 2, 2.5, 3, 1.5, 4, 1 };
    struct ref_case c = { "E9.2", 3, { 0, 1, 2 },
        { 0.26666666666715577, 1, 0.20000000000053347 } };

    for (int i = 0; i < 26; i++) {
        loss[8 + 2 * i] = 5 + i % 5;
        loss[9 + 2 * i] = 5 + i / 5;
    }
    check_select(&c, loss, 30, 2);
    (void)unused;
}

static void test_optuna_unconstrained(void **unused)
{
    for (size_t i = 0; i < sizeof(REF2) / sizeof(REF2[0]); i++) {
        check_select(&REF2[i], &LV2[0][0], 40, 2);
    }
    for (size_t i = 0; i < sizeof(REF3) / sizeof(REF3[0]); i++) {
        check_select(&REF3[i], &LV3[0][0], 50, 3);
    }
    (void)unused;
}

/* Two objectives (the second maximized), one constraint c <= 0, given as a history. */
static const bool MAXI2[2] = { false, true };
static const double CLO[1] = { -INFINITY }, CHI[1] = { 0.0 };

static struct hpo_trial *add_mo(struct hpo_history *h, enum hpo_state st, const double *vals,
        size_t nv)
{
    struct hpo_trial *t = hpo_history_append(h, st);

    assert_non_null(t);
    for (size_t j = 0; j < h->space->dim; j++) {
        t->unit[j] = 0.5;
        t->values[j] = 0.5;
    }
    if (vals != NULL) {
        t->results = malloc(nv * sizeof(double));
        assert_non_null(t->results);
        memcpy(t->results, vals, nv * sizeof(double));
        t->value = vals[0];
    }
    return t;
}

static struct hpo_space *space_1d(void)
{
    json_t *j = json_loads("[{\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 1}]", 0,
            NULL);
    struct hpo_space *space = NULL;
    struct hpo_error err;

    assert_non_null(j);
    assert_int_equal(hpo_space_parse(j, &space, &err), 0);
    json_decref(j);
    return space;
}

static void test_optuna_constrained(void **unused)
{
    struct hpo_space *space = space_1d();
    struct hpo_history h;
    uint32_t fin[40], below[25];
    double w[25];

    hpo_history_init(&h, space, "t", false);
    h.n_obj = 2;
    h.obj_maximize = MAXI2;
    h.n_cons = 1;
    h.cons_lo = CLO;
    h.cons_hi = CHI;
    for (size_t i = 0; i < 40; i++) {
        /* Told values: the second objective maximized (its loss negated back). */
        double v[3] = { LV2[i][0], -LV2[i][1], isinf(VIOL2[i]) ? NAN : VIOL2[i] };
        add_mo(&h, HPO_STATE_COMPLETE, v, 3);
        fin[i] = (uint32_t)i;
    }
    for (size_t c = 0; c < sizeof(REFC) / sizeof(REFC[0]); c++) {
        const struct ref_case *rc = &REFC[c];
        assert_int_equal(hpo_tpe_mo_split(&h, fin, 40, rc->k, below, w), 1);
        for (size_t i = 0; i < rc->k; i++) {
            if (below[i] != rc->below[i]) {
                fail_msg("%s: below[%zu] = %u, Optuna %zu", rc->name, i, below[i],
                        rc->below[i]);
            }
        }
        check_weights(rc->name, w, rc->w, rc->k);
    }
    /* Without the constraint the same history splits as REF2 (through the history). */
    h.n_cons = 0;
    for (size_t c = 0; c < sizeof(REF2) / sizeof(REF2[0]); c++) {
        assert_int_equal(hpo_tpe_mo_split(&h, fin, 40, REF2[c].k, below, w), 1);
        for (size_t i = 0; i < REF2[c].k; i++) {
            assert_int_equal(below[i], REF2[c].below[i]);
        }
        check_weights(REF2[c].name, w, REF2[c].w, REF2[c].k);
    }
    hpo_history_finish(&h);
    hpo_space_destroy(space);
    (void)unused;
}

/*
** docs/ALGORITHMS.md E9.3, one objective: (value, c) = (1.0, 0.0), (3.0,
** -1.0), (0.5, 0.2), (0.2, 1.5) and k = 3 gives {0, 1, 2} (Optuna 3.1 the
** same); default weights (return 0). With 4 feasible trials of 6, k = 3 is
** the 3 best feasible values whatever the infeasible ones are worth.
*/
static void test_one_objective_constrained(void **unused)
{
    struct hpo_space *space = space_1d();
    struct hpo_history h;
    static const double tv[6][2] = {
        { 1.0, 0.0 }, { 3.0, -1.0 }, { 0.5, 0.2 }, { 0.2, 1.5 }, { 2.0, -3.0 }, { 0.7, NAN },
    };
    uint32_t fin[6] = { 0, 1, 2, 3, 4, 5 }, below[6];
    double w[6];

    hpo_history_init(&h, space, "t", false);
    h.n_cons = 1;
    h.cons_lo = CLO;
    h.cons_hi = CHI;
    for (size_t i = 0; i < 4; i++) {
        add_mo(&h, HPO_STATE_COMPLETE, tv[i], 2);
    }
    assert_int_equal(hpo_tpe_mo_split(&h, fin, 4, 3, below, w), 0);
    assert_int_equal(below[0], 0);
    assert_int_equal(below[1], 1);
    assert_int_equal(below[2], 2);
    /* Trial 4 feasible (2.0), trial 5 without its constraint (infeasible). */
    add_mo(&h, HPO_STATE_COMPLETE, tv[4], 2);
    add_mo(&h, HPO_STATE_COMPLETE, tv[5], 2);
    assert_int_equal(hpo_tpe_mo_split(&h, fin, 6, 3, below, w), 0);
    assert_int_equal(below[0], 0);
    assert_int_equal(below[1], 1);
    assert_int_equal(below[2], 4);
    /* k = 2: the two best feasible values, 1.0 and 2.0; maximized 3.0 and 2.0. */
    assert_int_equal(hpo_tpe_mo_split(&h, fin, 6, 2, below, w), 0);
    assert_int_equal(below[0], 0);
    assert_int_equal(below[1], 4);
    h.maximize = true;
    assert_int_equal(hpo_tpe_mo_split(&h, fin, 6, 2, below, w), 0);
    assert_int_equal(below[0], 1);
    assert_int_equal(below[1], 4);
    /* k = 5: all four feasible, then the least violation (trial 2, 0.2). */
    h.maximize = false;
    assert_int_equal(hpo_tpe_mo_split(&h, fin, 6, 5, below, w), 0);
    assert_int_equal(below[4], 4);
    assert_int_equal(below[2], 2);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
    (void)unused;
}

/*
** Pruned trials of a study with several objectives come after the complete
** ones, by (-last step, last value of the first objective), those without
** reports last; they weigh 1e-12 like infeasible ones. With a constraint
** declared, a pruned trial (its constraints never told) is infeasible.
*/
static void test_pruned(void **unused)
{
    struct hpo_space *space = space_1d();
    struct hpo_history h;
    uint32_t fin[6] = { 0, 1, 2, 3, 4, 5 }, below[5];
    double w[5], v0[3] = { 1, -2, -1 }, v1[3] = { 2, -1, -1 };
    bool added;
    struct hpo_trial *t;

    hpo_history_init(&h, space, "t", false);
    h.n_obj = 2;
    h.obj_maximize = MAXI2;
    add_mo(&h, HPO_STATE_COMPLETE, v0, 3);
    t = add_mo(&h, HPO_STATE_PRUNED, NULL, 0); /* 1: step 3, value 9 */
    assert_int_equal(hpo_trial_add_report(t, 3, 9.0, &added), 0);
    t = add_mo(&h, HPO_STATE_PRUNED, NULL, 0); /* 2: no reports */
    t = add_mo(&h, HPO_STATE_PRUNED, NULL, 0); /* 3: step 5, value 4 */
    assert_int_equal(hpo_trial_add_report(t, 5, 4.0, &added), 0);
    add_mo(&h, HPO_STATE_COMPLETE, v1, 3);
    t = add_mo(&h, HPO_STATE_PRUNED, NULL, 0); /* 5: step 3, value 1 */
    assert_int_equal(hpo_trial_add_report(t, 3, 1.0, &added), 0);
    /* k = 4: trials 0 and 4, then 3 (step 5), then 5 (step 3, value 1 < 9). */
    assert_int_equal(hpo_tpe_mo_split(&h, fin, 6, 4, below, w), 1);
    assert_int_equal(below[0], 0);
    assert_int_equal(below[1], 3);
    assert_int_equal(below[2], 4);
    assert_int_equal(below[3], 5);
    /* Losses (1, 2) and (2, 1) (the second objective maximized): ref (2.2, 2.2), equal shares. */
    assert_true(close_to(w[0], 1.0, 1e-9) && close_to(w[2], 1.0, 1e-9));
    assert_true(w[1] == HPO_TPE_MO_EPS && w[3] == HPO_TPE_MO_EPS);
    /* With a constraint declared, the pruned trials are infeasible (+inf, by number). */
    h.n_cons = 1;
    h.cons_lo = CLO;
    h.cons_hi = CHI;
    assert_int_equal(hpo_tpe_mo_split(&h, fin, 6, 4, below, w), 1);
    assert_int_equal(below[0], 0);
    assert_int_equal(below[1], 1);
    assert_int_equal(below[2], 2);
    assert_int_equal(below[3], 4);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
    (void)unused;
}

/*
** Brute force on random sets (2-4 objectives, coarse grid values so that
** ranks hold ties): the chosen set is every point of the ranks below the
** straddling one plus k - (their count) points of that rank, and its
** hypervolume (reference from that rank) is at least (1 - 1/e) of the best
** subset of that size found by trying all of them (small fronts only).
*/
static size_t brute_ranks(const double *loss, size_t n, unsigned m, size_t *rank)
{
    size_t done = 0, r = 0;

    for (size_t i = 0; i < n; i++) {
        rank[i] = SIZE_MAX;
    }
    while (done < n) {
        size_t newly[256], nn = 0;
        for (size_t i = 0; i < n; i++) {
            bool dom = false;
            if (rank[i] != SIZE_MAX) {
                continue;
            }
            for (size_t j = 0; j < n && !dom; j++) {
                dom = rank[j] == SIZE_MAX && hpo_mo_dominates(loss + j * m, loss + i * m, m);
            }
            if (!dom) {
                newly[nn++] = i;
            }
        }
        for (size_t q = 0; q < nn; q++) {
            rank[newly[q]] = r;
        }
        done += nn;
        r++;
    }
    return r;
}

static void test_brute_force(void **unused)
{
    struct hpo_rng rng;

    hpo_rng_seed(&rng, 99);
    for (int round = 0; round < 300; round++) {
        unsigned m = 2 + (unsigned)(round % 3);
        size_t n = 5 + hpo_rng_below(&rng, 40), k = 1 + hpo_rng_below(&rng, n);
        double loss[45 * 4], ref[4], fl[45 * 4];
        size_t idx[45], rank[45], cnt[46] = { 0 }, lower = 0, r = 0, nf = 0, in_r = 0;

        for (size_t i = 0; i < n * m; i++) {
            loss[i] = (double)hpo_rng_below(&rng, 8) - 2.0;
        }
        brute_ranks(loss, n, m, rank);
        assert_int_equal(hpo_tpe_mo_select(loss, n, m, k, idx), 0);
        for (size_t i = 0; i < n; i++) {
            cnt[rank[i]]++;
        }
        while (lower + cnt[r] <= k && lower < n) {
            lower += cnt[r++];
        }
        for (size_t i = 0; i + 1 < k; i++) {
            assert_true(idx[i] < idx[i + 1]);
        }
        for (size_t i = 0; i < n; i++) {
            bool chosen = false;
            for (size_t q = 0; q < k; q++) {
                chosen = chosen || idx[q] == i;
            }
            if (rank[i] < r) {
                assert_true(chosen);
            } else if (rank[i] > r) {
                assert_false(chosen);
            } else {
                in_r += chosen;
                memcpy(fl + nf * m, loss + i * m, m * sizeof(double));
                nf++;
            }
        }
        assert_int_equal(in_r, k - lower);
        if (in_r > 0 && nf <= 12) {
            /* The greedy subset against the best subset of the same size. */
            double got_l[45 * 4], best = 0.0, got, sub[12 * 4];
            size_t g = 0;
            hpo_mo_reference_point(fl, nf, m, ref);
            for (size_t q = 0; q < k; q++) {
                if (rank[idx[q]] == r) {
                    memcpy(got_l + g * m, loss + idx[q] * m, m * sizeof(double));
                    g++;
                }
            }
            assert_int_equal(hpo_mo_hypervolume(got_l, g, m, ref, &got), 0);
            for (unsigned mask = 0; mask < (1u << nf); mask++) {
                size_t c = 0;
                double hv;
                if ((size_t)__builtin_popcount(mask) != in_r) {
                    continue;
                }
                for (size_t i = 0; i < nf; i++) {
                    if (mask & (1u << i)) {
                        memcpy(sub + c * m, fl + i * m, m * sizeof(double));
                        c++;
                    }
                }
                assert_int_equal(hpo_mo_hypervolume(sub, c, m, ref, &hv), 0);
                best = hv > best ? hv : best;
            }
            assert_true(got >= (1.0 - exp(-1.0)) * best - 1e-9);
        }
    }
    (void)unused;
}

/* ---------------------------------------------------------------------- */
/* The sampler                                                              */

static void *configure(const char *opts, const struct hpo_space *space)
{
    json_t *o = json_loads(opts, 0, NULL);
    struct hpo_error err;
    void *state = NULL;

    assert_non_null(o);
    assert_int_equal(hpo_sampler_tpe.configure(o, space, &state, &err), 0);
    json_decref(o);
    return state;
}

static void suggest(void *state, const struct hpo_space *space, const struct hpo_history *h,
        uint64_t seed, double *unit)
{
    struct hpo_rng rng;
    struct hpo_error err;

    hpo_rng_init(&rng, seed, h->n_trials);
    assert_int_equal(hpo_sampler_tpe.suggest(state, space, h, &rng, unit, &err), 0);
}

/*
** One objective, f = x (minimized), constraint x >= 0.6 (c = 0.6 - x <= 0),
** 30 random trials: the best values (x near 0) are infeasible, so with the
** constraint TPE's below group is the best feasible trials (0.600, 0.641,
** 0.645) and suggestions stay away from 0; the same history without the
** constraint puts most of them below 0.25.
*/
static void test_sampler_feasible_region(void **unused)
{
    struct hpo_space *space = space_1d();
    struct hpo_history h;
    static const double lo[1] = { 0.6 }, hi[1] = { INFINITY };
    void *state = configure("{}", space);
    struct hpo_rng gen;
    int low_c = 0, low_u = 0;

    hpo_history_init(&h, space, "t", false);
    h.n_cons = 1;
    h.cons_lo = lo;
    h.cons_hi = hi;
    hpo_rng_seed(&gen, 3);
    for (int i = 0; i < 30; i++) {
        double x = hpo_rng_uniform(&gen), v[2] = { x, x };
        struct hpo_trial *t = add_mo(&h, HPO_STATE_COMPLETE, v, 2);
        t->unit[0] = x;
        t->values[0] = x;
    }
    for (uint64_t seed = 0; seed < 200; seed++) {
        double u[1];
        suggest(state, space, &h, seed, u);
        low_c += u[0] < 0.25;
    }
    h.n_cons = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        double u[1];
        suggest(state, space, &h, seed, u);
        low_u += u[0] < 0.25;
    }
    print_message("# below 0.25: %d of 200 with the constraint, %d without\n", low_c, low_u);
    assert_true(low_c <= 20 && low_u >= 120);
    hpo_sampler_tpe.destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
    (void)unused;
}

/*
** Two objectives f1 = x, f2 = 1 - x + 4 y (y only hurts): the front is
** y = 0. After 40 random trials TPE's suggestions have small y far more
** often than random draws would (y < 0.15 for 15% of random points).
*/
static void test_sampler_front(void **unused)
{
    json_t *j = json_loads("[{\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
            " {\"name\": \"y\", \"type\": \"float\", \"low\": 0, \"high\": 1}]", 0, NULL);
    struct hpo_space *space = NULL;
    struct hpo_error err;
    struct hpo_history h;
    struct hpo_rng gen;
    void *state, *cold;
    int small = 0;
    static const bool maxi[2] = { false, false };
    double a[2], b[2];

    assert_int_equal(hpo_space_parse(j, &space, &err), 0);
    json_decref(j);
    state = configure("{}", space);
    hpo_history_init(&h, space, "t", false);
    h.n_obj = 2;
    h.obj_maximize = maxi;
    hpo_rng_seed(&gen, 5);
    for (int i = 0; i < 40; i++) {
        double x = hpo_rng_uniform(&gen), y = hpo_rng_uniform(&gen);
        double v[2] = { x, 1.0 - x + 4.0 * y };
        struct hpo_trial *t = add_mo(&h, i % 9 == 4 ? HPO_STATE_RUNNING : HPO_STATE_COMPLETE,
                i % 9 == 4 ? NULL : v, 2);
        t->unit[0] = t->values[0] = x;
        t->unit[1] = t->values[1] = y;
    }
    for (uint64_t seed = 0; seed < 200; seed++) {
        double u[2];
        suggest(state, space, &h, seed, u);
        small += u[1] < 0.15;
    }
    print_message("# y < 0.15: %d of 200\n", small);
    assert_true(small >= 100);
    /* A fresh state (cold cache) gives the same bits as the warm one. */
    cold = configure("{}", space);
    suggest(state, space, &h, 77, a);
    suggest(cold, space, &h, 77, b);
    assert_memory_equal(a, b, sizeof(a));
    hpo_sampler_tpe.destroy(cold);
    hpo_sampler_tpe.destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
    (void)unused;
}

/*
** A conditional mixed space, three objectives and two constraints, with
** running, pruned and failed trials and constraints sometimes untold, in
** every mode: every suggestion is a valid point.
*/
static void test_sampler_valid(void **unused)
{
    static const char *const modes[] = { "{}", "{\"multivariate\": false}",
        "{\"group\": false}", "{\"constant_liar\": false, \"n_startup_trials\": 3}" };
    json_t *j = json_loads(
            "[{\"name\": \"x\", \"type\": \"float\", \"low\": -5, \"high\": 10},"
            " {\"name\": \"k\", \"type\": \"int\", \"low\": 0, \"high\": 10},"
            " {\"name\": \"opt\", \"type\": \"categorical\", \"choices\": [\"a\", \"b\", \"c\"]},"
            " {\"name\": \"mom\", \"type\": \"float\", \"low\": 0, \"high\": 1,"
            "  \"when\": {\"opt\": [\"b\"]}}]", 0, NULL);
    struct hpo_space *space = NULL;
    struct hpo_error err;
    static const bool maxi[3] = { false, true, false };
    static const double lo[2] = { -INFINITY, 0.0 }, hi[2] = { 3.0, INFINITY };

    assert_int_equal(hpo_space_parse(j, &space, &err), 0);
    json_decref(j);
    for (size_t md = 0; md < sizeof(modes) / sizeof(modes[0]); md++) {
        struct hpo_history h;
        void *state = configure(modes[md], space);

        hpo_history_init(&h, space, "t", false);
        h.n_obj = 3;
        h.obj_maximize = maxi;
        h.n_cons = 2;
        h.cons_lo = lo;
        h.cons_hi = hi;
        for (int i = 0; i < 150; i++) {
            double unit[8], values[8];
            enum hpo_state st = i % 7 == 3 ? HPO_STATE_RUNNING :
                    (i % 11 == 5 ? HPO_STATE_FAILED :
                    (i % 13 == 6 ? HPO_STATE_PRUNED : HPO_STATE_COMPLETE));
            struct hpo_trial *t;

            suggest(state, space, &h, 11, unit);
            hpo_space_decode(space, unit, values);
            for (size_t p = 0; p < space->n_params; p++) {
                const struct hpo_param *q = &space->params[p];
                if (hpo_space_active(space, p, values)) {
                    assert_true(hpo_param_valid(q, values[q->offset]));
                } else {
                    assert_true(isnan(values[q->offset]));
                }
            }
            {
                double x = values[0], mom = isnan(values[3]) ? 0.5 : values[3];
                double v[5] = { x * x + values[1], x + mom, fabs(x - 2.0) + values[2],
                    values[1] / 2.0, i % 5 == 2 ? NAN : x };
                t = add_mo(&h, st, st == HPO_STATE_COMPLETE ? v : NULL, 5);
                memcpy(t->unit, unit, space->dim * sizeof(double));
                memcpy(t->values, values, space->dim * sizeof(double));
                if (st == HPO_STATE_PRUNED && i % 2 == 0) {
                    bool added;
                    assert_int_equal(hpo_trial_add_report(t, i % 4, v[0], &added), 0);
                }
            }
        }
        hpo_sampler_tpe.destroy(state);
        hpo_history_finish(&h);
    }
    hpo_space_destroy(space);
    (void)unused;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e92),
        cmocka_unit_test(test_optuna_unconstrained),
        cmocka_unit_test(test_optuna_constrained),
        cmocka_unit_test(test_one_objective_constrained),
        cmocka_unit_test(test_pruned),
        cmocka_unit_test(test_brute_force),
        cmocka_unit_test(test_sampler_feasible_region),
        cmocka_unit_test(test_sampler_front),
        cmocka_unit_test(test_sampler_valid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
