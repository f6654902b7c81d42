/*
** test-core-hexp.c: hpo_exp is within 1 ulp of e^x (against expl) on dense
** sweeps of the decode's range and of the whole finite range, subnormal
** results included; its bounds (overflow, underflow, NaN, infinities);
** hpo_exp_decode (the vector path) gives the same bits as hpo_exp one
** coordinate at a time, in place too; the bits are those of the builds it
** was written on (a fingerprint: an FMA or a changed constant shows); and
** hpo_param_decode_n uses it only for HEXP continuous log params.
*/
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hexp.h"
#include "space.h"

#define FINGERPRINT UINT64_C(0x29a8c9e9084d821c)

/* |got - e^x| in ulps of e^x (long double's expl as the reference). */
static double ulp_error(double x, double got)
{
    long double want = expl((long double)x);
    long double ulp;

    if (want < (long double)DBL_MIN) {
        ulp = ldexpl(1.0L, -1074);
    } else {
        ulp = ldexpl(1.0L, ilogbl(want) - 52);
    }
    return (double)(fabsl((long double)got - want) / ulp);
}

struct sweep {
    double max_err, at;
    size_t n, rounded; /* rounded: equal to expl's value rounded to double */
};

static void sweep(double lo, double hi, size_t n, struct sweep *s)
{
    uint64_t r = 0x9e3779b97f4a7c15u;

    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < n; i++) {
        double x, got, err;
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        /* A grid with a random offset inside each cell: every binade of r is hit. */
        x = lo + (hi - lo) * (((double)i + (double)(r >> 11) * 0x1.0p-53) / (double)n);
        got = hpo_exp(x);
        err = ulp_error(x, got);
        if (err > s->max_err) {
            s->max_err = err;
            s->at = x;
        }
        s->rounded += got == (double)expl((long double)x);
        s->n++;
    }
}

static void test_within_one_ulp(void **unused)
{
    struct sweep s;

    (void)unused;
    /* The decode of a log param in [1e-3, 1e3] (bench/gradient's λ). */
    sweep(log(1e-3), log(1e3), 2000000, &s);
    printf("# [ln 1e-3, ln 1e3]: max %.4f ulp at %a, %.4f%% correctly rounded\n", s.max_err,
            s.at, 100.0 * (double)s.rounded / (double)s.n);
    assert_true(s.max_err < 0.75);
    assert_true(s.rounded >= s.n / 100 * 98);
    /* Near 0, where e^x - 1 is small: r is x itself. */
    sweep(-1e-3, 1e-3, 200000, &s);
    assert_true(s.max_err < 0.75);
    /* The whole range with normal results. */
    sweep(-708.39, 709.78, 1000000, &s);
    printf("# [-708.39, 709.78]: max %.4f ulp at %a\n", s.max_err, s.at);
    assert_true(s.max_err < 0.75);
    /* Subnormal results: 2^k built in two steps, rounded once more: within 1 ulp. */
    sweep(-745.13, -708.4, 200000, &s);
    printf("# subnormal results: max %.4f ulp at %a\n", s.max_err, s.at);
    assert_true(s.max_err <= 1.0);
}

static void test_bounds(void **unused)
{
    (void)unused;
    assert_true(hpo_exp(0.0) == 1.0);
    assert_true(hpo_exp(-0.0) == 1.0);
    assert_true(hpo_exp(1.0) == 0x1.5bf0a8b145769p+1);  /* e, correctly rounded */
    assert_true(hpo_exp(-1.0) == 0x1.78b56362cef38p-2); /* 1/e */
    assert_true(hpo_exp(log(2.0)) == 2.0);
    assert_true(hpo_exp(0x1.62e42fefa39efp+9) == (double)expl(0x1.62e42fefa39efp+9L)); /* ln DBL_MAX */
    assert_true(isfinite(hpo_exp(709.78)));
    assert_true(hpo_exp(709.79) == INFINITY);
    assert_true(hpo_exp(1e300) == INFINITY);
    assert_true(hpo_exp(INFINITY) == INFINITY);
    assert_true(hpo_exp(-708.3) >= DBL_MIN);
    assert_true(hpo_exp(-745.13) == 0x1.0p-1074); /* just over half the least subnormal */
    assert_true(hpo_exp(-745.2) == 0.0);
    assert_true(hpo_exp(-746.0) == 0.0);
    assert_true(hpo_exp(-1e300) == 0.0);
    assert_true(hpo_exp(-INFINITY) == 0.0);
    assert_true(isnan(hpo_exp(NAN)));
    for (int k = -1074; k <= 1023; k++) {
        /* e^(k ln 2) = 2^k to within 1 ulp across every exponent. */
        double x = (double)k * 0x1.62e42fefa39efp-1;
        assert_true(ulp_error(x, hpo_exp(x)) <= 1.0);
    }
}

/* The decode's formula one coordinate at a time with the scalar hpo_exp. */
static double decode_one(double u, double ulow, double range, double low, double high)
{
    double e;

    if (isnan(u)) {
        return NAN;
    }
    if (!(u > 0.0 && u < 1.0)) {
        return u <= 0.0 ? low : high;
    }
    e = hpo_exp(ulow + u * range);
    return e < low ? low : (e > high ? high : e);
}

static void test_vector_equals_scalar(void **unused)
{
    static const double bounds[][2] = { { 1e-3, 1e3 }, { 1e-300, 1e300 }, { 1e-320, 1.0 },
        { 0.5, 0.5000001 } };
    const size_t n = 5 * 256 + 37; /* whole chunks and a tail */
    double *unit = malloc(n * sizeof(double));
    double *want = malloc(n * sizeof(double));
    double *got = malloc(n * sizeof(double));
    uint64_t r = 12345;

    (void)unused;
    assert_non_null(unit);
    assert_non_null(want);
    assert_non_null(got);
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        double low = bounds[b][0], high = bounds[b][1];
        double ulow = log(low), range = log(high) - log(low);
        for (size_t i = 0; i < n; i++) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            unit[i] = (double)(r >> 11) * 0x1.0p-53;
        }
        /* Edges in a whole chunk and in the tail. */
        unit[3] = 0.0;
        unit[4] = 1.0;
        unit[5] = -0.0;
        unit[6] = -0.25;
        unit[7] = 1.5;
        unit[8] = NAN;
        unit[9] = 0x1.0p-60;
        unit[10] = 1.0 - 0x1.0p-53;
        unit[n - 1] = NAN;
        unit[n - 2] = 1.0;
        unit[n - 3] = 0.0;
        for (size_t i = 0; i < n; i++) {
            want[i] = decode_one(unit[i], ulow, range, low, high);
        }
        hpo_exp_decode(unit, got, n, ulow, range, low, high);
        assert_memory_equal(got, want, n * sizeof(double));
        assert_true(got[3] == low && got[4] == high && got[6] == low && got[7] == high);
        assert_true(isnan(got[8]) && isnan(got[n - 1]));
        /* In place (a replay decodes its scratch in place), and every length. */
        memcpy(got, unit, n * sizeof(double));
        hpo_exp_decode(got, got, n, ulow, range, low, high);
        assert_memory_equal(got, want, n * sizeof(double));
        for (size_t len = 0; len < 600; len += 61) {
            memset(got, 0, n * sizeof(double));
            hpo_exp_decode(unit + 1, got, len, ulow, range, low, high);
            assert_memory_equal(got, want + 1, len * sizeof(double));
            assert_true(got[len] == 0.0);
        }
    }
    free(unit);
    free(want);
    free(got);
}

/*
** hpo_exp_decode_u: the unit coordinates (u - ulow) / range clamped, as the
** gradient sampler's unit_of computes them, and hpo_exp_decode of those:
** the same bits as the two steps apart, u on, past and between the bounds.
*/
static void test_decode_from_u(void **unused)
{
    static const double bounds[][2] = { { 1e-3, 1e3 }, { 1e-300, 1e300 }, { 0.5, 0.5000001 } };
    const size_t n = 4 * 256 + 77; /* whole chunks and a tail */
    double *u = malloc(n * sizeof(double));
    double *unit = malloc(n * sizeof(double));
    double *want = malloc(n * sizeof(double));
    double *got_unit = malloc(n * sizeof(double));
    double *got = malloc(n * sizeof(double));
    uint64_t r = 4242;

    (void)unused;
    assert_non_null(u);
    assert_non_null(unit);
    assert_non_null(want);
    assert_non_null(got_unit);
    assert_non_null(got);
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        double low = bounds[b][0], high = bounds[b][1];
        double ulow = log(low), uhigh = log(high), range = uhigh - ulow;
        for (size_t i = 0; i < n; i++) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            u[i] = ulow + (double)(r >> 11) * 0x1.0p-53 * range;
        }
        u[2] = ulow;
        u[3] = uhigh;
        u[4] = ulow - 1.0;
        u[5] = uhigh + 1.0;
        u[6] = NAN;
        u[7] = nextafter(ulow, INFINITY);
        u[8] = nextafter(uhigh, -INFINITY);
        u[n - 1] = NAN;
        u[n - 2] = uhigh;
        u[n - 3] = ulow - 0.5;
        for (size_t i = 0; i < n; i++) {
            double x = (u[i] - ulow) / range;
            unit[i] = x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x);
        }
        hpo_exp_decode(unit, want, n, ulow, range, low, high);
        hpo_exp_decode_u(u, got_unit, got, n, ulow, range, low, high);
        assert_memory_equal(got_unit, unit, n * sizeof(double));
        assert_memory_equal(got, want, n * sizeof(double));
        assert_true(got_unit[2] == 0.0 && got_unit[3] == 1.0 && got_unit[4] == 0.0 &&
                got_unit[5] == 1.0 && isnan(got_unit[6]) && isnan(got_unit[n - 1]));
        assert_true(got[2] == low && got[3] == high && got[4] == low && got[5] == high &&
                isnan(got[6]) && got[n - 2] == high && got[n - 3] == low);
        /* Every length, nothing written past it. */
        for (size_t len = 0; len < 600; len += 61) {
            memset(got, 0, n * sizeof(double));
            memset(got_unit, 0, n * sizeof(double));
            hpo_exp_decode_u(u + 1, got_unit, got, len, ulow, range, low, high);
            assert_memory_equal(got_unit, unit + 1, len * sizeof(double));
            assert_memory_equal(got, want + 1, len * sizeof(double));
            assert_true(got[len] == 0.0 && got_unit[len] == 0.0);
        }
    }
    free(u);
    free(unit);
    free(want);
    free(got_unit);
    free(got);
}

/* hpo_logistic_n: the formula's bits one coordinate at a time with hpo_exp. */
static void test_logistic(void **unused)
{
    const size_t n = 3 * 256 + 101;
    double *x = malloc(n * sizeof(double));
    double *got = malloc(n * sizeof(double));
    uint64_t r = 777;

    (void)unused;
    assert_non_null(x);
    assert_non_null(got);
    for (size_t i = 0; i < n; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        x[i] = ((double)(r >> 11) * 0x1.0p-53 - 0.5) * 60.0;
    }
    x[0] = 0.0;
    x[1] = NAN;
    x[2] = INFINITY;
    x[3] = -INFINITY;
    x[4] = 800.0;
    x[5] = -800.0;
    x[n - 1] = NAN;
    hpo_logistic_n(x, got, n);
    for (size_t i = 0; i < n; i++) {
        double y = 1.0 / (1.0 + hpo_exp(-x[i]));
        y = y < 0.0 ? 0.0 : (y > 1.0 ? 1.0 : y);
        assert_memory_equal(&got[i], &y, sizeof(y));
    }
    assert_true(got[0] == 0.5 && isnan(got[1]) && got[2] == 1.0 && got[3] == 0.0);
    assert_true(got[4] == 1.0 && got[5] == 0.0);
    hpo_logistic_n(x, x, n); /* in place */
    assert_memory_equal(x, got, n * sizeof(double));
    free(x);
    free(got);
}

/*
** The bits themselves: FNV-1a of hpo_exp over a grid of the decode's range
** and of the whole range, as every build gave them when this was written
** (gcc 12 -O0, -O2, -O3, -march=native with AVX-512, -mfma, sanitizers;
** clang 14 -march=native; scalar and vector paths). A
** compiler that contracts a * b + c into an FMA, or a changed constant,
** fails here, before a stored study would replay differently.
*/
static void test_fingerprint(void **unused)
{
    uint64_t h = 0xcbf29ce484222325u;
    double *x = malloc(4096 * sizeof(double));
    double *y = malloc(4096 * sizeof(double));

    (void)unused;
    assert_non_null(x);
    assert_non_null(y);
    for (size_t i = 0; i < 4096; i++) {
        x[i] = (double)i / 4095.0; /* decoded as [ln 1e-3, ln 1e3] */
    }
    hpo_exp_decode(x, y, 4096, -0x1.ba18a998fffa0p+2, 0x1.ba18a998fffa0p+3, 1e-3, 1e3);
    for (size_t i = 0; i < 4096; i++) {
        uint64_t b;
        /* Integers and one division: no a * b + c for the test itself to contract. */
        double v = hpo_exp((double)((int64_t)i * 1455 - 745 * 4095) / 4095.0);
        memcpy(&b, &y[i], 8);
        h = (h ^ b) * 0x100000001b3u;
        memcpy(&b, &v, 8);
        h = (h ^ b) * 0x100000001b3u;
    }
    printf("# fingerprint %016llx\n", (unsigned long long)h);
    assert_true(h == FINGERPRINT);
    free(x);
    free(y);
}

static void test_param_decode(void **unused)
{
    const char *def = "[{\"name\": \"lam\", \"type\": \"float\", \"low\": 1e-3, \"high\": 1e3, "
                      "\"log\": true, \"size\": 3000}, "
                      "{\"name\": \"lin\", \"type\": \"float\", \"low\": -2, \"high\": 5, "
                      "\"size\": 300}, "
                      "{\"name\": \"k\", \"type\": \"int\", \"low\": 1, \"high\": 4096, "
                      "\"log\": true}]";
    json_error_t jerr;
    json_t *j = json_loads(def, 0, &jerr);
    struct hpo_space *space = NULL;
    struct hpo_error err;
    double unit[3000], libm[3000], hexp[3000], want[3000];
    size_t differ = 0;

    (void)unused;
    assert_non_null(j);
    assert_int_equal(hpo_space_parse(j, &space, &err), 0);
    json_decref(j);
    for (size_t i = 0; i < 3000; i++) {
        unit[i] = ((double)i + 0.5) / 3000.0;
    }
    for (size_t k = 0; k < space->n_params; k++) {
        const struct hpo_param *p = &space->params[k];
        size_t n = p->width;
        hpo_param_decode_n(p, unit, libm, n, HPO_DECODE_LIBM);
        hpo_param_decode_n(p, unit, hexp, n, HPO_DECODE_HEXP);
        for (size_t i = 0; i < n; i++) {
            assert_true(libm[i] == hpo_param_from_unit(p, unit[i]));
        }
        if (k == 0) {
            /* The log vector: hpo_exp's bits, most of them libm's too. */
            hpo_exp_decode(unit, want, n, p->ulow, p->uhigh - p->ulow, p->low, p->high);
            assert_memory_equal(hexp, want, n * sizeof(double));
            for (size_t i = 0; i < n; i++) {
                differ += hexp[i] != libm[i];
                assert_true(fabs(hexp[i] - libm[i]) <= 2.0 * fabs(nextafter(libm[i], 0.0) -
                        libm[i]));
            }
            assert_true(differ > 0 && differ < n / 10);
        } else {
            /* Linear params, and log ints (rounded): unchanged. */
            assert_memory_equal(hexp, libm, n * sizeof(double));
        }
    }
    hpo_space_destroy(space);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_within_one_ulp),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_vector_equals_scalar),
        cmocka_unit_test(test_decode_from_u),
        cmocka_unit_test(test_logistic),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_param_decode),
    };

    return cmocka_run_group_tests_name("core-hexp", tests, NULL, NULL);
}
