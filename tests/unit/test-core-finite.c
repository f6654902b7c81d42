/*
** test-core-finite.c: hpo_first_nonfinite gives the index a loop of
** isfinite() gives: every kind of non-finite value (+inf, -inf, quiet and
** signalling NaNs, either sign, any payload) at the start, the end, either
** side of a block's edge and in the tail, the first of several, and n for
** finite values up to the largest and the smallest subnormal.
*/
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "finite.h"

static double from_bits(uint64_t b)
{
    double x;

    memcpy(&x, &b, sizeof(x));
    return x;
}

static size_t scalar(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            return i;
        }
    }
    return n;
}

/* Finite values of every exponent, signs and edge cases, none inf or NaN. */
static void fill_finite(double *x, size_t n)
{
    static const double edge[] = { 0.0, -0.0, DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN,
        4.9406564584124654e-324, -4.9406564584124654e-324, 1.0, -1.0 };

    for (size_t i = 0; i < n; i++) {
        if (i % 7 == 0) {
            x[i] = edge[(i / 7) % (sizeof(edge) / sizeof(edge[0]))];
        } else {
            /* Exponents 0..0x7fe, any mantissa and sign. */
            uint64_t e = (uint64_t)((i * 2654435761u) % 0x7ff);
            uint64_t m = ((uint64_t)i * 0x9e3779b97f4a7c15ull) >> 12;
            x[i] = from_bits(((uint64_t)(i & 1) << 63) | (e << 52) | m);
        }
    }
}

static void test_all_finite(void **unused)
{
    size_t n = 5000;
    double *x = malloc(n * sizeof(double));

    (void)unused;
    assert_non_null(x);
    fill_finite(x, n);
    for (size_t len = 0; len <= n; len += len < 1100 ? 1 : 97) {
        assert_int_equal(hpo_first_nonfinite(x, len), len);
    }
    free(x);
}

static void test_each_kind_at_each_place(void **unused)
{
    const uint64_t bad[] = {
        0x7ff0000000000000ull, /* +inf */
        0xfff0000000000000ull, /* -inf */
        0x7ff8000000000000ull, /* quiet NaN */
        0xfff8000000000000ull, /* -NaN */
        0x7ff0000000000001ull, /* signalling NaN */
        0x7fffffffffffffffull, /* NaN, every mantissa bit */
    };
    const size_t places[] = { 0, 1, 7, 510, 511, 512, 513, 1023, 1024, 2047, 2500, 3071, 3072,
        3073, 3199 };
    size_t n = 3200;
    double *x = malloc(n * sizeof(double));

    (void)unused;
    assert_non_null(x);
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        for (size_t p = 0; p < sizeof(places) / sizeof(places[0]); p++) {
            fill_finite(x, n);
            x[places[p]] = from_bits(bad[k]);
            assert_int_equal(hpo_first_nonfinite(x, n), places[p]);
            /* A length that stops before it: none. */
            assert_int_equal(hpo_first_nonfinite(x, places[p]), places[p]);
            /* Starting anywhere (any alignment of the blocks to the array). */
            for (size_t from = 0; from <= places[p] && from < 40; from += 3) {
                assert_int_equal(hpo_first_nonfinite(x + from, n - from), places[p] - from);
            }
        }
    }
    free(x);
}

static void test_first_of_several(void **unused)
{
    size_t n = 4096;
    double *x = malloc(n * sizeof(double));

    (void)unused;
    assert_non_null(x);
    fill_finite(x, n);
    x[3000] = NAN;
    x[700] = -INFINITY;
    x[1500] = INFINITY;
    assert_int_equal(hpo_first_nonfinite(x, n), 700);
    assert_int_equal(hpo_first_nonfinite(x, n), scalar(x, n));
    x[700] = 1.0;
    assert_int_equal(hpo_first_nonfinite(x, n), 1500);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_finite),
        cmocka_unit_test(test_each_kind_at_each_place),
        cmocka_unit_test(test_first_of_several),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
