/*
** test-core-rng.c: the seeded generator (core/rng.c): SplitMix64 and
** xoshiro256** against reference vectors, per-trial stream derivation,
** and the ranges and balance of uniform, below and normal.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rng.h"

/*
** Expected values below come from an independent Python implementation of
** SplitMix64 and xoshiro256** (arbitrary-precision ints masked to 64 bits,
** written from Vigna's reference C, not from core/rng.c):
**
**   M = 2**64 - 1
**   def splitmix(st):
**       st = (st + 0x9e3779b97f4a7c15) & M; z = st
**       z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
**       z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
**       return st, z ^ (z >> 31)
**   def next(s):
**       r = (rotl((s[1] * 5) & M, 7) * 9) & M; t = (s[1] << 17) & M
**       s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t
**       s[3] = rotl(s[3], 45); return r
**
** The SplitMix64 vector for state 1234567 and the xoshiro256** vector for
** state {1, 2, 3, 4} are also the widely published reference outputs, which
** checks the Python itself.
*/

static void test_splitmix64_reference(void **unused)
{
    static const uint64_t expect[5] = {
        6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL,
        4593380528125082431ULL, 16408922859458223821ULL,
    };
    uint64_t state = 1234567;

    for (size_t i = 0; i < 5; i++) {
        assert_true(hpo_splitmix64(&state) == expect[i]);
    }
    /* The state advances by the golden-ratio increment per call. */
    assert_true(state == 1234567ULL + 5ULL * 0x9e3779b97f4a7c15ULL);
}

static void test_xoshiro_reference_state(void **unused)
{
    static const uint64_t expect[6] = {
        11520ULL, 0ULL, 1509978240ULL, 1215971899390074240ULL, 1216172134540287360ULL,
        607988272756665600ULL,
    };
    struct hpo_rng rng = { .s = { 1, 2, 3, 4 } };

    for (size_t i = 0; i < 6; i++) {
        assert_true(hpo_rng_next(&rng) == expect[i]);
    }
}

static void test_seed_zero(void **unused)
{
    /* Python: Xo(0).s, then six next() outputs. */
    static const uint64_t state[4] = {
        0xe220a8397b1dcdafULL, 0x6e789e6aa1b965f4ULL, 0x06c45d188009454fULL,
        0xf88bb8a8724c81ecULL,
    };
    static const uint64_t expect[6] = {
        0x99ec5f36cb75f2b4ULL, 0xbf6e1f784956452aULL, 0x1a5f849d4933e6e0ULL,
        0x6aa594f1262d2d2cULL, 0xbba5ad4a1f842e59ULL, 0xffef8375d9ebcacaULL,
    };
    struct hpo_rng rng;

    hpo_rng_seed(&rng, 0);
    for (size_t i = 0; i < 4; i++) {
        assert_true(rng.s[i] == state[i]);
    }
    for (size_t i = 0; i < 6; i++) {
        assert_true(hpo_rng_next(&rng) == expect[i]);
    }
}

static void test_seed_1234567(void **unused)
{
    /* Python: Xo(1234567); its state is the SplitMix64 vector above, in hex. */
    static const uint64_t state[4] = {
        0x599ed017fb08fc85ULL, 0x2c73f08458540fa5ULL, 0x883ebce5a3f27c77ULL,
        0x3fbef740e9177b3fULL,
    };
    static const uint64_t expect[6] = {
        0x30a3a1c363600467ULL, 0x19405f0f579929caULL, 0x115beaac046ddbd9ULL,
        0xeb17caf48f27d7f6ULL, 0xa0c94fe1cce9d136ULL, 0x70e3326578802da2ULL,
    };
    struct hpo_rng rng;

    hpo_rng_seed(&rng, 1234567);
    for (size_t i = 0; i < 4; i++) {
        assert_true(rng.s[i] == state[i]);
    }
    for (size_t i = 0; i < 6; i++) {
        assert_true(hpo_rng_next(&rng) == expect[i]);
    }
}

static void test_init_reference(void **unused)
{
    /*
    ** Python, following the derivation documented in rng.c:
    **   a = splitmix(42)[1]; b = splitmix(7 ^ 0x6a09e667f3bcc909)[1]
    **   Xo(a ^ ((b * 0x9e3779b97f4a7c15) & M) ^ (b >> 17)), four next().
    ** This pins the per-trial streams: a change here changes every study's
    ** suggestions for a given seed.
    */
    static const uint64_t expect[4] = {
        0x17a0e39de71c7613ULL, 0xe3615c1546f1384cULL, 0x62d6e4795c3fbe86ULL,
        0xa9ce71d6f4ffe755ULL,
    };
    struct hpo_rng rng;

    hpo_rng_init(&rng, 42, 7);
    for (size_t i = 0; i < 4; i++) {
        assert_true(hpo_rng_next(&rng) == expect[i]);
    }
}

static void test_init_reproducible(void **unused)
{
    struct hpo_rng a, b;

    for (uint64_t number = 0; number < 50; number++) {
        hpo_rng_init(&a, 12345, number);
        hpo_rng_init(&b, 12345, number);
        for (int i = 0; i < 1000; i++) {
            assert_true(hpo_rng_next(&a) == hpo_rng_next(&b));
        }
    }
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

    return a < b ? -1 : (a > b ? 1 : 0);
}

/* Whether n 64-bit values are pairwise distinct (sorts them). */
static int all_distinct(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    for (size_t i = 1; i < n; i++) {
        if (v[i] == v[i - 1]) {
            return 0;
        }
    }
    return 1;
}

static void test_init_streams_distinct(void **unused)
{
    enum { N = 4096 };
    uint64_t *first = malloc(2 * N * sizeof(*first));
    struct hpo_rng rng;

    assert_non_null(first);
    /* Different trial numbers under one seed: distinct first two outputs. */
    for (uint64_t number = 0; number < N; number++) {
        hpo_rng_init(&rng, 7, number);
        first[2 * number] = hpo_rng_next(&rng);
        first[2 * number + 1] = hpo_rng_next(&rng);
    }
    assert_true(all_distinct(first, 2 * N));
    /* Different seeds, same number; and the (seed, number) grid near zero. */
    for (uint64_t seed = 0; seed < N; seed++) {
        hpo_rng_init(&rng, seed, 0);
        first[seed] = hpo_rng_next(&rng);
    }
    for (uint64_t k = 0; k < N; k++) {
        hpo_rng_init(&rng, k % 64, k / 64);
        first[N + k] = hpo_rng_next(&rng);
    }
    assert_true(all_distinct(first, N));
    assert_true(all_distinct(first + N, N));
    /* (seed, number) is not symmetric: swapping the pair gives another stream. */
    {
        struct hpo_rng x, y;
        hpo_rng_init(&x, 3, 5);
        hpo_rng_init(&y, 5, 3);
        assert_true(hpo_rng_next(&x) != hpo_rng_next(&y));
    }
    /* A trial stream is not the plain stream of the study seed. */
    {
        struct hpo_rng x, y;
        hpo_rng_init(&x, 99, 0);
        hpo_rng_seed(&y, 99);
        assert_true(hpo_rng_next(&x) != hpo_rng_next(&y));
    }
    free(first);
}

static void test_uniform_reference_and_range(void **unused)
{
    /* Python: (next() >> 11) * 2**-53 for Xo(2024), repr() of each. */
    static const double expect[3] = { 0.055792889110163335, 0.782103772866755,
        0.07205494006296331 };
    struct hpo_rng rng;
    double sum = 0.0, min = 1.0, max = 0.0;
    enum { N = 1000000 };

    hpo_rng_seed(&rng, 2024);
    for (size_t i = 0; i < 3; i++) {
        assert_true(hpo_rng_uniform(&rng) == expect[i]);
    }
    for (int i = 0; i < N; i++) {
        double u = hpo_rng_uniform(&rng);
        /* 53 bits: u * 2^53 is an integer in [0, 2^53). */
        assert_true(u >= 0.0 && u < 1.0);
        assert_true(ldexp(u, 53) == floor(ldexp(u, 53)));
        sum += u;
        min = u < min ? u : min;
        max = u > max ? u : max;
    }
    /* Mean of 1e6 uniforms: sd 0.289/1000, so 0.002 is about 7 sigma. */
    assert_true(fabs(sum / N - 0.5) < 0.002);
    assert_true(min < 1e-5);
    assert_true(max > 1.0 - 1e-5);
}

/* The inverse of odd `a` modulo 2^64 (Newton's iteration doubles the good bits). */
static uint64_t inverse_u64(uint64_t a)
{
    uint64_t x = a;

    for (int i = 0; i < 6; i++) {
        x *= 2 - a * x;
    }
    return x;
}

static void test_uniform_extremes(void **unused)
{
    /* An output of 0 maps to 0.0 and an all-ones output to 1 - 2^-53, never 1. */
    struct hpo_rng zero = { .s = { 0, 0, 0, 0 } };
    struct hpo_rng ones = { .s = { 1, 0, 0, 0 } };
    uint64_t y;

    assert_true(inverse_u64(9) * 9 == 1);
    assert_true(hpo_rng_uniform(&zero) == 0.0);
    /* Solve rotl(s1 * 5, 7) * 9 == 2^64 - 1 for s1. */
    y = UINT64_MAX * inverse_u64(9);
    y = (y >> 7) | (y << 57);
    ones.s[1] = y * inverse_u64(5);
    assert_true(hpo_rng_uniform(&ones) == 1.0 - 0x1.0p-53);
}

static void test_below_small(void **unused)
{
    struct hpo_rng rng;
    enum { K = 7, N = 70000 };
    long count[K] = { 0 };
    double chi2 = 0.0;

    hpo_rng_seed(&rng, 5);
    for (int i = 0; i < 1000; i++) {
        assert_true(hpo_rng_below(&rng, 1) == 0);
    }
    for (int i = 0; i < N; i++) {
        uint64_t r = hpo_rng_below(&rng, K);
        assert_true(r < K);
        count[r]++;
    }
    for (int k = 0; k < K; k++) {
        double e = (double)N / K;
        chi2 += (count[k] - e) * (count[k] - e) / e;
    }
    /* Chi-square, 6 degrees of freedom: 22.46 is the critical value at p = 0.001. */
    assert_true(chi2 < 22.46);
}

static void test_below_unbiased_large_n(void **unused)
{
    /*
    ** n = 3 * 2^62: plain `next % n` would put [0, 2^62) at probability
    ** 1/2 (it is hit from both [0, 2^62) and [n, 2^64)); without bias it
    ** is 1/3. 30000 draws: sd of the fraction 0.0027, so +-0.02 separates
    ** the two by > 6 sigma each way.
    */
    const uint64_t n = 3ULL << 62;
    struct hpo_rng rng;
    long low = 0;
    enum { N = 30000 };

    hpo_rng_seed(&rng, 77);
    for (int i = 0; i < N; i++) {
        uint64_t r = hpo_rng_below(&rng, n);
        assert_true(r < n);
        low += r < (1ULL << 62);
    }
    assert_true(fabs((double)low / N - 1.0 / 3.0) < 0.02);
}

static void test_below_max_and_power_of_two(void **unused)
{
    struct hpo_rng a, b;

    /* n = 2^63: no rejection ever, so it equals next() mod 2^63. */
    hpo_rng_seed(&a, 11);
    hpo_rng_seed(&b, 11);
    for (int i = 0; i < 1000; i++) {
        assert_true(hpo_rng_below(&a, 1ULL << 63) == (hpo_rng_next(&b) & ((1ULL << 63) - 1)));
    }
    /* n = 2^64 - 1: only the single output 2^64 - 1 would be rejected. */
    hpo_rng_seed(&a, 11);
    hpo_rng_seed(&b, 11);
    for (int i = 0; i < 1000; i++) {
        assert_true(hpo_rng_below(&a, UINT64_MAX) == hpo_rng_next(&b));
    }
}

static void test_normal_moments(void **unused)
{
    struct hpo_rng rng;
    double sum = 0.0, sum2 = 0.0, sum4 = 0.0;
    long beyond2 = 0;
    enum { N = 200000 };

    hpo_rng_seed(&rng, 31337);
    for (int i = 0; i < N; i++) {
        double z = hpo_rng_normal(&rng);
        assert_true(isfinite(z));
        sum += z;
        sum2 += z * z;
        sum4 += z * z * z * z;
        beyond2 += fabs(z) > 2.0;
    }
    /* Standard errors: mean 0.0022, variance 0.0032, kurtosis ~0.011. */
    assert_true(fabs(sum / N) < 0.015);
    assert_true(fabs(sum2 / N - 1.0) < 0.02);
    assert_true(fabs(sum4 / N - 3.0) < 0.1);
    /* P(|z| > 2) = 0.0455; sd of the fraction 0.00047. */
    assert_true(fabs((double)beyond2 / N - 0.0455) < 0.003);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splitmix64_reference),
        cmocka_unit_test(test_xoshiro_reference_state),
        cmocka_unit_test(test_seed_zero),
        cmocka_unit_test(test_seed_1234567),
        cmocka_unit_test(test_init_reference),
        cmocka_unit_test(test_init_reproducible),
        cmocka_unit_test(test_init_streams_distinct),
        cmocka_unit_test(test_uniform_reference_and_range),
        cmocka_unit_test(test_uniform_extremes),
        cmocka_unit_test(test_below_small),
        cmocka_unit_test(test_below_unbiased_large_n),
        cmocka_unit_test(test_below_max_and_power_of_two),
        cmocka_unit_test(test_normal_moments),
    };
    return cmocka_run_group_tests_name("core-rng", tests, NULL, NULL);
}
