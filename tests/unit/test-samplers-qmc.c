/*
** test-samplers-qmc.c: the qmc sampler (samplers/qmc.c, sobol.c): unscrambled
** Sobol against scipy's sequence, unscrambled Halton against the radical
** inverse, scrambled points in [0,1) and stratified, the scramble fixed by
** the seed and carried across a restart by save/load, options errors.
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

#include "history.h"
#include "rng.h"
#include "sampler.h"
#include "space.h"

static struct hpo_space *float_space(size_t d)
{
    json_t *params = json_array();
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };

    for (size_t i = 0; i < d; i++) {
        char name[32];
        snprintf(name, sizeof(name), "x%zu", i);
        json_array_append_new(params,
                json_pack("{s:s, s:s, s:f, s:f}", "name", name, "type", "float", "low", 0.0,
                        "high", 1.0));
    }
    assert_int_equal(hpo_space_parse(params, &space, &err), 0);
    json_decref(params);
    return space;
}

static void *make(const struct hpo_space *space, const char *options)
{
    json_t *opts = json_loads(options, 0, NULL);
    struct hpo_error err = { 0 };
    void *state = NULL;

    assert_non_null(opts);
    assert_int_equal(hpo_sampler_qmc.configure(opts, space, &state, &err), 0);
    json_decref(opts);
    return state;
}

/*
** Suggest for trials first..first+count-1 (the history holding `first`
** trials before the first), seed `seed`; out holds count * dim coordinates.
*/
static void run(void *state, const struct hpo_space *space, struct hpo_history *h, uint64_t seed,
        size_t count, double *out)
{
    struct hpo_error err = { 0 };

    for (size_t i = 0; i < count; i++) {
        struct hpo_rng rng;
        hpo_rng_init(&rng, seed, (uint64_t)h->n_trials);
        assert_int_equal(hpo_sampler_qmc.suggest(state, space, h, &rng, out + i * space->dim, &err),
                0);
        assert_non_null(hpo_history_append(h, HPO_STATE_RUNNING));
    }
}

/*
** scipy 1.10.1: scipy.stats.qmc.Sobol(d=6, scramble=False).random(17)[1:],
** printed with '%.10g' (all values are dyadic, so exact). Trial n of an
** unscrambled study takes point n + 1 (point 0 is the lower corner).
*/
static const double scipy_sobol6[16][6] = {
    { 0.5, 0.5, 0.5, 0.5, 0.5, 0.5 },
    { 0.75, 0.25, 0.25, 0.25, 0.75, 0.75 },
    { 0.25, 0.75, 0.75, 0.75, 0.25, 0.25 },
    { 0.375, 0.375, 0.625, 0.875, 0.375, 0.125 },
    { 0.875, 0.875, 0.125, 0.375, 0.875, 0.625 },
    { 0.625, 0.125, 0.875, 0.625, 0.625, 0.875 },
    { 0.125, 0.625, 0.375, 0.125, 0.125, 0.375 },
    { 0.1875, 0.3125, 0.9375, 0.4375, 0.5625, 0.3125 },
    { 0.6875, 0.8125, 0.4375, 0.9375, 0.0625, 0.8125 },
    { 0.9375, 0.0625, 0.6875, 0.1875, 0.3125, 0.5625 },
    { 0.4375, 0.5625, 0.1875, 0.6875, 0.8125, 0.0625 },
    { 0.3125, 0.1875, 0.3125, 0.5625, 0.9375, 0.4375 },
    { 0.8125, 0.6875, 0.8125, 0.0625, 0.4375, 0.9375 },
    { 0.5625, 0.4375, 0.0625, 0.8125, 0.1875, 0.6875 },
    { 0.0625, 0.9375, 0.5625, 0.3125, 0.6875, 0.1875 },
    { 0.09375, 0.46875, 0.46875, 0.65625, 0.28125, 0.96875 },
};

/*
** scipy: s = qmc.Sobol(d=100, scramble=False).random(33); rows 1, 2, 5, 17,
** 31, 32 of columns 50 and 99 (direction numbers deep in the table).
*/
static const size_t deep_rows[6] = { 1, 2, 5, 17, 31, 32 };
static const double scipy_sobol100[6][2] = {
    { 0.5, 0.5 },
    { 0.25, 0.75 },
    { 0.625, 0.375 },
    { 0.46875, 0.53125 },
    { 0.53125, 0.34375 },
    { 0.796875, 0.296875 },
};

static void test_sobol_matches_scipy(void **unused)
{
    struct hpo_space *space = float_space(6), *big = float_space(100);
    struct hpo_history h;
    double pts[16 * 6], *deep = malloc(33 * 100 * sizeof(double));
    void *state = make(space, "{\"scramble\": false}");

    assert_non_null(deep);
    hpo_history_init(&h, space, "s", false);
    run(state, space, &h, 1, 16, pts);
    for (size_t i = 0; i < 16; i++) {
        for (size_t j = 0; j < 6; j++) {
            assert_true(pts[i * 6 + j] == scipy_sobol6[i][j]);
        }
    }
    /* Unscrambled needs no state: nothing to save. */
    assert_false(hpo_sampler_qmc.needs_save(state));
    hpo_sampler_qmc.destroy(state);
    hpo_history_finish(&h);

    state = make(big, "{\"scramble\": false}");
    hpo_history_init(&h, big, "s", false);
    run(state, big, &h, 1, 32, deep);
    for (size_t r = 0; r < 6; r++) {
        const double *p = deep + (deep_rows[r] - 1) * 100;
        assert_true(p[50] == scipy_sobol100[r][0]);
        assert_true(p[99] == scipy_sobol100[r][1]);
    }
    hpo_sampler_qmc.destroy(state);
    hpo_history_finish(&h);
    free(deep);
    hpo_space_destroy(space);
    hpo_space_destroy(big);
}

/* An enqueued (waiting) trial is asked before new ones: it takes its own number's point. */
static void test_waiting_trial_takes_its_number(void **unused)
{
    struct hpo_space *space = float_space(6);
    struct hpo_history h;
    struct hpo_error err = { 0 };
    struct hpo_rng rng;
    double pt[6];
    void *state = make(space, "{\"scramble\": false}");

    hpo_history_init(&h, space, "w", false);
    for (int i = 0; i < 5; i++) {
        assert_non_null(hpo_history_append(&h, HPO_STATE_COMPLETE));
    }
    hpo_history_set_state(&h, h.trials[2], HPO_STATE_WAITING);
    hpo_rng_init(&rng, 1, 2);
    assert_int_equal(hpo_sampler_qmc.suggest(state, space, &h, &rng, pt, &err), 0);
    for (size_t j = 0; j < 6; j++) {
        assert_true(pt[j] == scipy_sobol6[2][j]); /* trial 2: point 3 */
    }
    hpo_sampler_qmc.destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
}

/* The radical inverse of n in base b, exactly, as num / den. */
static double radical_inverse(uint64_t n, uint64_t b)
{
    uint64_t num = 0, den = 1;

    while (n > 0) {
        num = num * b + n % b;
        den *= b;
        n /= b;
    }
    return (double)num / (double)den;
}

static void test_halton_definition(void **unused)
{
    static const uint64_t primes[5] = { 2, 3, 5, 7, 11 };
    struct hpo_space *space = float_space(5);
    struct hpo_history h;
    double pts[200 * 5];
    void *state = make(space, "{\"qmc_type\": \"halton\", \"scramble\": false}");

    hpo_history_init(&h, space, "h", false);
    run(state, space, &h, 1, 200, pts);
    /* Points 1..4 of the 2-D sequence as printed in §13 (E13.1). */
    assert_true(pts[0] == 0.5 && fabs(pts[1] - 1.0 / 3) < 1e-15);
    assert_true(pts[5] == 0.25 && fabs(pts[6] - 2.0 / 3) < 1e-15);
    assert_true(pts[10] == 0.75 && fabs(pts[11] - 1.0 / 9) < 1e-15);
    assert_true(pts[15] == 0.125 && fabs(pts[16] - 4.0 / 9) < 1e-15);
    for (size_t i = 0; i < 200; i++) {
        for (size_t j = 0; j < 5; j++) {
            assert_true(fabs(pts[i * 5 + j] - radical_inverse(i + 1, primes[j])) < 1e-14);
        }
    }
    hpo_sampler_qmc.destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
}

/* Whether the first `count` values of column j fall one per box of width 1/count (base b). */
static bool stratified(const double *pts, size_t dim, size_t j, size_t count)
{
    char *seen = calloc(count, 1);
    bool ok = true;

    assert_non_null(seen);
    for (size_t i = 0; i < count; i++) {
        double x = pts[i * dim + j];
        size_t box = (size_t)floor(x * (double)count);
        if (!(x >= 0.0 && x < 1.0) || box >= count || seen[box]) {
            ok = false;
            break;
        }
        seen[box] = 1;
    }
    free(seen);
    return ok;
}

static void test_sobol_scrambled_stratified(void **unused)
{
    enum { D = 8, N = 256 };
    struct hpo_space *space = float_space(D);
    struct hpo_history h;
    double *pts = malloc(N * D * sizeof(double));
    void *state = make(space, "{}");

    assert_non_null(pts);
    hpo_history_init(&h, space, "s", false);
    run(state, space, &h, 42, N, pts);
    for (size_t j = 0; j < D; j++) {
        for (size_t k = 1; k <= 8; k++) {
            assert_true(stratified(pts, D, j, (size_t)1 << k));
        }
    }
    /* Dims 0 and 1 form a (0,m,2)-net: every 2^a x 2^(6-a) box of the first 64 holds one. */
    for (int a = 0; a <= 6; a++) {
        int cnt[64] = { 0 };
        for (size_t i = 0; i < 64; i++) {
            int bx = (int)floor(pts[i * D] * (1 << a));
            int by = (int)floor(pts[i * D + 1] * (1 << (6 - a)));
            cnt[bx * (1 << (6 - a)) + by]++;
        }
        for (int b = 0; b < 64; b++) {
            assert_int_equal(cnt[b], 1);
        }
    }
    /* Scrambled: not the unscrambled points. */
    assert_false(pts[0] == 0.0 && pts[1] == 0.0);
    hpo_sampler_qmc.destroy(state);
    hpo_history_finish(&h);
    free(pts);
    hpo_space_destroy(space);
}

static void test_halton_scrambled_stratified(void **unused)
{
    enum { D = 3, N = 125 };
    struct hpo_space *space = float_space(D);
    struct hpo_history h;
    double pts[N * D];
    void *state = make(space, "{\"qmc_type\": \"halton\"}");

    hpo_history_init(&h, space, "h", false);
    run(state, space, &h, 42, N, pts);
    /* Digit permutations keep Halton's strata: b^k consecutive points, one per 1/b^k box. */
    assert_true(stratified(pts, D, 0, 64));
    assert_true(stratified(pts, D, 1, 81));
    assert_true(stratified(pts, D, 2, 125));
    /* Trial 0 takes point 0, which scrambling moves off 0. */
    assert_true(pts[0] > 0.0 && pts[1] > 0.0 && pts[2] > 0.0);
    hpo_sampler_qmc.destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
}

static void test_seed_and_restart(void **unused)
{
    enum { D = 4, N = 20 };
    static const char *const kinds[2] = { "{}", "{\"qmc_type\": \"halton\"}" };

    for (int kind = 0; kind < 2; kind++) {
        struct hpo_space *space = float_space(D);
        struct hpo_history h1, h2, h3;
        double a[N * D], b[N * D], c[N * D];
        void *s1 = make(space, kinds[kind]), *s2 = make(space, kinds[kind]);
        void *s3 = make(space, kinds[kind]);
        void *blob = NULL;
        size_t len = 0;

        hpo_history_init(&h1, space, "a", false);
        hpo_history_init(&h2, space, "b", false);
        hpo_history_init(&h3, space, "c", false);
        /* Same seed, same points; another seed, another scramble. */
        run(s1, space, &h1, 7, N, a);
        run(s2, space, &h2, 7, N / 2, b);
        run(s3, space, &h3, 8, N, c);
        assert_memory_equal(a, b, sizeof(double) * (N / 2) * D);
        assert_memory_not_equal(a, c, sizeof(double) * N * D);

        /* The key is state: saved once (needs_save), loaded by a restarted sampler. */
        assert_true(hpo_sampler_qmc.needs_save(s2));
        assert_int_equal(hpo_sampler_qmc.save(s2, &blob, &len), 0);
        assert_false(hpo_sampler_qmc.needs_save(s2));
        hpo_sampler_qmc.destroy(s2);
        s2 = make(space, kinds[kind]);
        assert_int_equal(hpo_sampler_qmc.load(s2, blob, len), 0);
        run(s2, space, &h2, 7, N / 2, b + (N / 2) * D);
        assert_false(hpo_sampler_qmc.needs_save(s2));
        assert_memory_equal(a, b, sizeof(double) * N * D);

        /* Without the saved key a restarted sampler would draw another scramble. */
        hpo_sampler_qmc.destroy(s3);
        s3 = make(space, kinds[kind]);
        hpo_history_finish(&h3);
        hpo_history_init(&h3, space, "c", false);
        for (size_t i = 0; i < N / 2; i++) {
            assert_non_null(hpo_history_append(&h3, HPO_STATE_COMPLETE));
        }
        run(s3, space, &h3, 7, N / 2, c);
        assert_memory_not_equal(a + (N / 2) * D, c, sizeof(double) * (N / 2) * D);

        /* Bad blobs are refused and change nothing. */
        ((unsigned char *)blob)[0] ^= 1;
        assert_int_equal(hpo_sampler_qmc.load(s2, blob, len), -EINVAL);
        assert_int_equal(hpo_sampler_qmc.load(s2, blob, len - 1), -EINVAL);

        free(blob);
        hpo_sampler_qmc.destroy(s1);
        hpo_sampler_qmc.destroy(s2);
        hpo_sampler_qmc.destroy(s3);
        hpo_history_finish(&h1);
        hpo_history_finish(&h2);
        hpo_history_finish(&h3);
        hpo_space_destroy(space);
    }
}

static void expect_error(const char *options, const char *field)
{
    struct hpo_space *space = float_space(2);
    json_t *opts = json_loads(options, 0, NULL);
    struct hpo_error err = { 0 };
    void *state = (void *)&err;

    assert_non_null(opts);
    assert_int_equal(hpo_sampler_qmc.configure(opts, space, &state, &err), -EINVAL);
    assert_int_equal(err.code, HPO_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
    assert_ptr_equal(state, (void *)&err);
    json_decref(opts);
    hpo_space_destroy(space);
}

static void test_options(void **unused)
{
    struct hpo_space *space = float_space(2);
    void *state;
    json_t *desc, *schema;

    assert_ptr_equal(hpo_sampler_find("qmc"), &hpo_sampler_qmc);
    schema = json_loads(hpo_sampler_qmc.options_schema, 0, NULL);
    assert_non_null(json_object_get(schema, "qmc_type"));
    assert_non_null(json_object_get(schema, "scramble"));
    json_decref(schema);
    state = make(space, "{}");
    desc = hpo_sampler_qmc.describe(state);
    assert_string_equal(json_string_value(json_object_get(desc, "qmc_type")), "sobol");
    assert_true(json_is_true(json_object_get(desc, "scramble")));
    json_decref(desc);
    hpo_sampler_qmc.destroy(state);
    expect_error("{\"qmc_type\": \"latin\"}", "sampler.qmc_type");
    expect_error("{\"qmc_type\": 1}", "sampler.qmc_type");
    expect_error("{\"scramble\": \"yes\"}", "sampler.scramble");
    expect_error("{\"skip\": 1}", "sampler.skip");
    hpo_space_destroy(space);
}

/* Categoricals and ints decode from the sequence's coordinate (floor / nearest bin). */
static void test_mixed_space(void **unused)
{
    json_t *params = json_loads("[{\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 10},"
                                "{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [\"a\", "
                                "\"b\", \"c\"]},"
                                "{\"name\": \"k\", \"type\": \"int\", \"low\": 1, \"high\": 5}]",
            0, NULL);
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };
    struct hpo_history h;
    double pts[4 * 3], values[3];
    void *state;
    /* Unscrambled points 1..4: x, c, k coordinates from dims 0, 1, 2. */
    static const double want[4][3] = { { 5.0, 1, 3 }, { 7.5, 0, 2 }, { 2.5, 2, 4 },
        { 3.75, 1, 4 } };
    /* k in [1,5] padded: unit 0.5, 0.25, 0.75, 0.625 -> 3.0, 1.75, 4.25, 3.625 -> 3, 2, 4, 4. */

    assert_int_equal(hpo_space_parse(params, &space, &err), 0);
    json_decref(params);
    state = make(space, "{\"scramble\": false}");
    hpo_history_init(&h, space, "m", false);
    run(state, space, &h, 1, 4, pts);
    for (size_t i = 0; i < 4; i++) {
        hpo_space_decode(space, pts + i * 3, values);
        for (size_t j = 0; j < 3; j++) {
            assert_true(values[j] == want[i][j]);
        }
    }
    hpo_sampler_qmc.destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sobol_matches_scipy),
        cmocka_unit_test(test_waiting_trial_takes_its_number),
        cmocka_unit_test(test_halton_definition),
        cmocka_unit_test(test_sobol_scrambled_stratified),
        cmocka_unit_test(test_halton_scrambled_stratified),
        cmocka_unit_test(test_seed_and_restart),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_mixed_space),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
