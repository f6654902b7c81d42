/*
** test-core-nsga2.c: NSGA-II generations and children (core/mo-nsga2.c):
** generation 0 is random; the parent population is the elite of
** E9.1 (docs/ALGORITHMS.md §9.3) where hand-checked; a trial told late joins the next
** selection; a simulated asynchronous run (workers finishing out of order)
** rebuilt from the final trial list after a "restart", in any input order,
** proposes exactly the children it proposed live; crossover, copy and
** mutation behave as documented; tournaments prefer feasible parents.
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

#define D 3
#define MAXT 200

/* A store of told trials as the service would hold them. */
struct store {
    struct hpo_mo_trial t[MAXT];
    double loss[MAXT][2];
    double u[MAXT][D];
    size_t n;
};

static void tell(struct store *s, uint64_t number, uint64_t told_at, const double *u,
        const double *loss, double violation)
{
    struct hpo_mo_trial *t = &s->t[s->n];

    memcpy(s->u[s->n], u, sizeof(s->u[0]));
    memcpy(s->loss[s->n], loss, sizeof(s->loss[0]));
    t->number = number;
    t->told_at = told_at;
    t->loss = s->loss[s->n];
    t->u = s->u[s->n];
    t->violation = violation;
    s->n++;
}

/* A ZDT1-like objective of the unit-cube point, and a constraint on it. */
static void objective(const double *u, double *loss, double *violation)
{
    double g = 1 + 9 * (u[1] + u[2]) / 2;

    loss[0] = u[0];
    loss[1] = g * (1 - sqrt(u[0] / g));
    *violation = u[1] > 0.7 ? u[1] - 0.7 : 0;
}

static void test_generation0_random(void **state)
{
    struct hpo_nsga2_options opt;
    struct hpo_nsga2_child info;
    double a[D], b[D], c[D];

    hpo_nsga2_defaults(&opt);
    assert_int_equal(opt.population_size, 50);
    assert_true(opt.crossover_prob == 0.9 && opt.swapping_prob == 0.5);
    assert_true(opt.mutation_prob < 0);
    assert_int_equal(hpo_nsga2_child(&opt, NULL, 0, 2, D, 7, 49, a, &info), 0);
    assert_int_equal(info.kind, 0);
    assert_int_equal(info.generation, 0);
    assert_int_equal(hpo_nsga2_child(&opt, NULL, 0, 2, D, 7, 49, b, NULL), 0);
    assert_memory_equal(a, b, sizeof(a));
    assert_int_equal(hpo_nsga2_child(&opt, NULL, 0, 2, D, 8, 49, c, NULL), 0);
    assert_memory_not_equal(a, c, sizeof(a));
    for (int j = 0; j < D; j++) {
        assert_true(a[j] >= 0 && a[j] < 1);
    }
    /* Generation 1 with nothing told yet: still random. */
    assert_int_equal(hpo_nsga2_child(&opt, NULL, 0, 2, D, 7, 50, a, &info), 0);
    assert_int_equal(info.kind, 0);
    assert_int_equal(info.generation, 1);
}

static void test_bad_input(void **state)
{
    struct hpo_nsga2_options opt;
    struct store s = { .n = 0 };
    double u[D] = { 0.1, 0.2, 0.3 }, l[2] = { 1, 2 }, out[D];
    uint64_t nums[4];
    size_t k;

    hpo_nsga2_defaults(&opt);
    opt.population_size = 1;
    assert_int_equal(hpo_nsga2_child(&opt, NULL, 0, 2, D, 1, 0, out, NULL), -EINVAL);
    opt.population_size = 4;
    opt.crossover_prob = 1.5;
    assert_int_equal(hpo_nsga2_child(&opt, NULL, 0, 2, D, 1, 0, out, NULL), -EINVAL);
    opt.crossover_prob = 0.9;
    assert_int_equal(hpo_nsga2_child(&opt, NULL, 0, 9, D, 1, 0, out, NULL), -EINVAL);
    tell(&s, 0, 0, u, l, 0);
    tell(&s, 0, 3, u, l, 0);
    assert_int_equal(hpo_nsga2_parents(&opt, s.t, s.n, 2, 1, nums, &k), -EINVAL);
}

/* E9.1's losses as trials 0-7, told in order (told_at = number + 1). */
static void e91_store(struct store *s)
{
    static const double e91[16] = { 1, 5, 2, 3, 4, 1, 2, 6, 3, 4.5, 4, 3.5, 6, 2, 5, 5 };
    double u[D];

    s->n = 0;
    for (uint64_t i = 0; i < 8; i++) {
        u[0] = i / 8.0, u[1] = 0.5, u[2] = 1 - i / 8.0;
        tell(s, i, i + 1, u, e91 + 2 * i, 0);
    }
}

static int has(const uint64_t *v, size_t k, uint64_t x)
{
    for (size_t i = 0; i < k; i++) {
        if (v[i] == x) {
            return 1;
        }
    }
    return 0;
}

static void test_elite_hand_checked(void **state)
{
    struct hpo_nsga2_options opt;
    struct store s;
    uint64_t nums[8];
    size_t k;

    hpo_nsga2_defaults(&opt);
    e91_store(&s);
    /* P = 4: generation 1's parents are block 0 (all four), generation 2's the E9.1 elite of 4. */
    opt.population_size = 4;
    assert_int_equal(hpo_nsga2_parents(&opt, s.t, s.n, 2, 1, nums, &k), 0);
    assert_int_equal(k, 4);
    assert_true(nums[0] == 0 && nums[1] == 1 && nums[2] == 2 && nums[3] == 3);
    assert_int_equal(hpo_nsga2_parents(&opt, s.t, s.n, 2, 2, nums, &k), 0);
    assert_int_equal(k, 4);
    assert_true(has(nums, 4, 0) && has(nums, 4, 1) && has(nums, 4, 2) && has(nums, 4, 3));
    /* Generation 5: nothing new after selection 1, the elite stays. */
    assert_int_equal(hpo_nsga2_parents(&opt, s.t, s.n, 2, 5, nums, &k), 0);
    assert_int_equal(k, 4);
    assert_true(has(nums, 4, 0) && has(nums, 4, 1) && has(nums, 4, 2) && has(nums, 4, 3));
    /* P = 5: selection 1 takes all eight, the E9.1 elite of 5 = {0, 1, 2, 3, 6}. */
    opt.population_size = 5;
    assert_int_equal(hpo_nsga2_parents(&opt, s.t, s.n, 2, 2, nums, &k), 0);
    assert_int_equal(k, 5);
    assert_true(has(nums, 5, 0) && has(nums, 5, 1) && has(nums, 5, 2) && has(nums, 5, 3) &&
            has(nums, 5, 6));
    /* Constrained, E9.1 penalties: trial 2 (violation 2) is the one left out of 7. */
    {
        static const double pen[8] = { 0, 0, 2, 0, 0, 0.5, 0, 0.5 };

        for (int i = 0; i < 8; i++) {
            s.t[i].violation = pen[i];
        }
        opt.constrained = 1;
        opt.population_size = 7;
        s.t[7].number = 13; /* generation 1, so selection 1 sees all eight */
        assert_int_equal(hpo_nsga2_parents(&opt, s.t, s.n, 2, 2, nums, &k), 0);
        assert_int_equal(k, 7);
        assert_false(has(nums, 7, 2));
    }
}

static void test_late_finisher(void **state)
{
    struct hpo_nsga2_options opt;
    struct store s;
    uint64_t nums[8];
    size_t k;
    double a[D], b[D];

    hpo_nsga2_defaults(&opt);
    opt.population_size = 4;
    e91_store(&s);
    /* Trial 1 (on the front) was told only after trials 4 and 5 were asked. */
    s.t[1].told_at = 6;
    assert_int_equal(hpo_nsga2_parents(&opt, s.t, s.n, 2, 1, nums, &k), 0);
    assert_int_equal(k, 3);
    assert_false(has(nums, k, 1));
    /* It joins selection 1 instead of being dropped. */
    assert_int_equal(hpo_nsga2_parents(&opt, s.t, s.n, 2, 2, nums, &k), 0);
    assert_true(has(nums, k, 1));
    /* Trial 5's child, as proposed live (trials 0, 2, 3 told) and after everything was told. */
    {
        struct store live;

        live.n = 0;
        for (size_t i = 0; i < 4; i++) {
            if (i != 1) {
                tell(&live, s.t[i].number, s.t[i].told_at, s.t[i].u, s.t[i].loss, 0);
            }
        }
        assert_int_equal(hpo_nsga2_child(&opt, live.t, live.n, 2, D, 3, 5, a, NULL), 0);
        assert_int_equal(hpo_nsga2_child(&opt, s.t, s.n, 2, D, 3, 5, b, NULL), 0);
        assert_memory_equal(a, b, sizeof(a));
    }
    /* Without told_at (0), the block is whatever was told: trial 1 counts for generation 1. */
    s.t[1].told_at = 0;
    assert_int_equal(hpo_nsga2_parents(&opt, s.t, s.n, 2, 1, nums, &k), 0);
    assert_int_equal(k, 4);
}

/*
** Simulated asynchronous study: W workers, finish times drawn at random, so
** trials are told out of number order and generations overlap. Each child is
** recorded when it is asked (from the trials told so far); then every child
** is recomputed from the final list, once as stored and once shuffled.
*/
static void run_async(int constrained)
{
    enum { W = 6, N = 120, P = 8 };
    struct hpo_nsga2_options opt;
    struct store s;
    struct hpo_rng sched;
    double child[N][D], finish[N], again[D];
    uint64_t asked = 0;
    int running[W], crossed = 0;
    double now = 0;

    hpo_nsga2_defaults(&opt);
    opt.population_size = P;
    opt.constrained = constrained;
    s.n = 0;
    hpo_rng_seed(&sched, 4242 + constrained);
    for (int w = 0; w < W; w++) {
        struct hpo_nsga2_child info;

        assert_int_equal(hpo_nsga2_child(&opt, s.t, s.n, 2, D, 11, asked, child[asked], &info), 0);
        finish[asked] = now + hpo_rng_uniform(&sched) * 10;
        running[w] = (int)asked++;
    }
    while (s.n < N) {
        int w_done = -1;
        double loss[2], viol;

        for (int w = 0; w < W; w++) {
            if (running[w] >= 0 && (w_done < 0 || finish[running[w]] < finish[running[w_done]])) {
                w_done = w;
            }
        }
        assert_true(w_done >= 0);
        now = finish[running[w_done]];
        objective(child[running[w_done]], loss, &viol);
        tell(&s, (uint64_t)running[w_done], asked, child[running[w_done]], loss, viol);
        running[w_done] = -1;
        if (asked < N) {
            struct hpo_nsga2_child info;

            assert_int_equal(
                    hpo_nsga2_child(&opt, s.t, s.n, 2, D, 11, asked, child[asked], &info), 0);
            crossed += info.kind == 1;
            finish[asked] = now + hpo_rng_uniform(&sched) * 10;
            running[w_done] = (int)asked++;
        }
    }
    assert_true(crossed > N / 2); /* most children after generation 0 are crossovers */
    /* Restart: rebuild every child from the full list. */
    for (uint64_t n = 0; n < N; n++) {
        assert_int_equal(hpo_nsga2_child(&opt, s.t, s.n, 2, D, 11, n, again, NULL), 0);
        assert_memory_equal(again, child[n], sizeof(again));
    }
    /* Any order of the list (a different storage scan) gives the same children. */
    for (size_t i = s.n - 1; i > 0; i--) {
        size_t j = (size_t)hpo_rng_below(&sched, i + 1);
        struct hpo_mo_trial t = s.t[i];

        s.t[i] = s.t[j];
        s.t[j] = t;
    }
    for (uint64_t n = 0; n < N; n++) {
        assert_int_equal(hpo_nsga2_child(&opt, s.t, s.n, 2, D, 11, n, again, NULL), 0);
        assert_memory_equal(again, child[n], sizeof(again));
    }
}

static void test_async_restart(void **state)
{
    run_async(0);
    run_async(1);
}

static void test_operators(void **state)
{
    struct hpo_nsga2_options opt;
    struct store s;
    double u[D], cu[D];
    int kinds[3] = { 0 };

    hpo_nsga2_defaults(&opt);
    opt.population_size = 4;
    e91_store(&s);
    /* crossover 1, no mutation: every coordinate is one of the two parents'. */
    opt.crossover_prob = 1;
    opt.mutation_prob = 0;
    for (uint64_t n = 8; n < 60; n++) {
        struct hpo_nsga2_child info;
        const double *p0 = NULL, *p1 = NULL;

        assert_int_equal(hpo_nsga2_child(&opt, s.t, s.n, 2, D, 5, n, u, &info), 0);
        assert_int_equal(info.kind, 1);
        assert_int_not_equal(info.parent[0], info.parent[1]); /* second drawn without the first */
        assert_int_equal(info.n_mutated, 0);
        for (size_t i = 0; i < s.n; i++) {
            p0 = s.t[i].number == info.parent[0] ? s.t[i].u : p0;
            p1 = s.t[i].number == info.parent[1] ? s.t[i].u : p1;
        }
        assert_true(p0 != NULL && p1 != NULL);
        for (int j = 0; j < D; j++) {
            assert_true(u[j] == p0[j] || u[j] == p1[j]);
        }
    }
    /* crossover 0: an exact copy of one parent; mutation 1: everything resampled. */
    opt.crossover_prob = 0;
    for (uint64_t n = 8; n < 30; n++) {
        struct hpo_nsga2_child info;

        assert_int_equal(hpo_nsga2_child(&opt, s.t, s.n, 2, D, 5, n, u, &info), 0);
        kinds[info.kind]++;
        assert_memory_equal(u, s.u[info.parent[0]], sizeof(u));
    }
    assert_int_equal(kinds[2], 22);
    opt.mutation_prob = 1;
    {
        struct hpo_nsga2_child info;

        assert_int_equal(hpo_nsga2_child(&opt, s.t, s.n, 2, D, 5, 9, cu, &info), 0);
        assert_int_equal(info.n_mutated, D);
    }
    /* An unset (NaN) coordinate of the parent is resampled, never copied. */
    opt.mutation_prob = 0;
    for (size_t i = 0; i < s.n; i++) {
        s.u[i][2] = NAN;
    }
    for (uint64_t n = 8; n < 20; n++) {
        struct hpo_nsga2_child info;

        assert_int_equal(hpo_nsga2_child(&opt, s.t, s.n, 2, D, 5, n, u, &info), 0);
        assert_true(u[2] >= 0 && u[2] < 1);
        assert_int_equal(info.n_mutated, 1);
    }
}

/*
** Tournaments: with one feasible member among four mutually non-dominated
** ones, the first parent is it with probability 1 - (3/4)^2 = 7/16 under
** constrained domination and 1/4 without it.
*/
static void test_tournament_feasibility(void **state)
{
    static const double losses[8] = { 1, 4, 2, 3, 3, 2, 4, 1 };
    struct hpo_nsga2_options opt;
    struct store s;
    double u[D] = { 0.5, 0.5, 0.5 }, out[D];
    int hits[2] = { 0, 0 };
    const int draws = 2000;

    hpo_nsga2_defaults(&opt);
    opt.population_size = 4;
    opt.crossover_prob = 1;
    for (int cons = 0; cons < 2; cons++) {
        s.n = 0;
        for (uint64_t i = 0; i < 4; i++) {
            tell(&s, i, 0, u, losses + 2 * i, i == 2 ? 0 : 1.0 + (double)i);
        }
        opt.constrained = cons;
        for (int n = 0; n < draws; n++) {
            struct hpo_nsga2_child info;

            assert_int_equal(hpo_nsga2_child(&opt, s.t, s.n, 2, D, 17, 4 + (uint64_t)n * 4, out,
                                     &info), 0);
            hits[cons] += info.parent[0] == 2;
        }
    }
    /* 5 standard deviations: 0.25 +- 0.048, 0.4375 +- 0.055. */
    assert_in_range(hits[0], 404, 596);
    assert_in_range(hits[1], 765, 985);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generation0_random),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_elite_hand_checked),
        cmocka_unit_test(test_late_finisher),
        cmocka_unit_test(test_async_restart),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_tournament_feasibility),
    };

    return cmocka_run_group_tests_name("core-nsga2", tests, NULL, NULL);
}
