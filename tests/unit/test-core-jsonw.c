/*
** test-core-jsonw.c: shortest round-trip doubles and the JSON writer
** (core/jsonw.c): exact texts for tricky doubles, bit-exact read-back and
** minimal length over many random doubles, and JSON text as clients see it.
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

#include "jsonw.h"

static uint64_t bits_of(double x)
{
    uint64_t b;

    memcpy(&b, &x, sizeof(b));
    return b;
}

static void check_text(double x, const char *want)
{
    char buf[HPO_DOUBLE_BUF];
    size_t n = hpo_format_double(buf, x);
    double back = strtod(buf, NULL);

    if (strcmp(buf, want) != 0 || n != strlen(want) || bits_of(back) != bits_of(x)) {
        fail_msg("format(%.17g) = '%s' (len %zu), want '%s'; reads back as %.17g", x, buf, n,
                want, back);
    }
}

static void test_tricky_doubles(void **state)
{
    (void)state;
    check_text(0.1, "0.1");
    check_text(1e-5, "1e-05");
    check_text(5e-324, "5e-324");
    check_text(DBL_MAX, "1.7976931348623157e+308");
    check_text(0.30000000000000004, "0.30000000000000004");
    check_text(0.1 + 0.2, "0.30000000000000004");
    check_text(-0.0, "-0");
    check_text(0.0, "0");
    check_text(1e21, "1e+21");
    check_text(1e22, "1e+22");
    check_text(123456789012345680.0, "1.2345678901234568e+17");
    check_text(DBL_MIN, "2.2250738585072014e-308");
    check_text(1.0 / 3.0, "0.3333333333333333");
    check_text(0.35, "0.35");
    check_text(0.05, "0.05");
    check_text(100.0, "100");
    check_text(-2.5, "-2.5");
    check_text(9007199254740992.0, "9007199254740992");
    check_text(1e-7, "1e-07");
    check_text(4.9406564584124654e-323, "5e-323");
}

/* A random finite double from every exponent (xorshift, fixed seed). */
static double random_double(uint64_t *s)
{
    double x;

    do {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        memcpy(&x, s, sizeof(x));
    } while (!isfinite(x));
    return x;
}

static void test_random_round_trip_and_shortest(void **state)
{
    uint64_t s = 0x9e3779b97f4a7c15u;

    (void)state;
    for (int i = 0; i < 200000; i++) {
        double x = i % 2 ? random_double(&s) : (double)(s % 1000003) / 1000.0;
        char buf[HPO_DOUBLE_BUF], shorter[320];
        int digits = 0;
        hpo_format_double(buf, x);
        if (bits_of(strtod(buf, NULL)) != bits_of(x)) {
            fail_msg("'%s' does not read back as %a", buf, x);
        }
        if (i % 2 == 0) {
            random_double(&s);
        }
        /* One significant digit fewer must not read back (the text is the shortest). */
        {
            char mant[HPO_DOUBLE_BUF];
            size_t m = 0, lo = 0;
            for (const char *c = buf; *c && *c != 'e'; c++) {
                if (*c >= '0' && *c <= '9') {
                    mant[m++] = *c;
                }
            }
            while (lo < m && mant[lo] == '0') {
                lo++;
            }
            while (m > lo && mant[m - 1] == '0') {
                m--;
            }
            digits = (int)(m - lo);
        }
        if (digits > 1) {
            snprintf(shorter, sizeof(shorter), "%.*g", digits - 1, x);
            if (strtod(shorter, NULL) == x) {
                fail_msg("'%s' reads back as %a too: '%s' is not the shortest", shorter, x, buf);
            }
        }
    }
}

/* The fast path gives exactly the text of the printf reference, on every kind of double. */
static void test_fast_path_matches_reference(void **state)
{
    uint64_t s = 0x2545f4914f6cdd1du;
    static const double pow10[] = { 1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

    (void)state;
    for (int i = 0; i < 600000; i++) {
        char fast[HPO_DOUBLE_BUF], ref[HPO_DOUBLE_BUF];
        double x;
        size_t nf, nr;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        switch (i % 6) {
        case 0:
            x = random_double(&s);
            break;
        case 1: /* a short decimal, scaled up or down */
            x = (double)(s % 100000) / pow10[(s >> 20) % 23];
            break;
        case 2:
            x = (double)(s % 100000) * pow10[(s >> 20) % 23];
            break;
        case 3: /* near a power of ten: carries (9.999... -> 10) */
            x = pow10[(s >> 8) % 23] * (1.0 - (double)(s % 64) * DBL_EPSILON);
            break;
        case 4: /* uniform in [0, 1): what samplers hand out */
            x = (double)(s >> 11) * 0x1.0p-53;
            break;
        default: /* a 16/17-digit decimal that sits near a rounding tie */
            x = ((double)(s % 1000000000000000u) + 0.5) / pow10[(s >> 50) % 17];
            break;
        }
        if ((s >> 3) & 1) {
            x = -x;
        }
        nf = hpo_format_double(fast, x);
        nr = hpo__format_double_reference(ref, x);
        if (strcmp(fast, ref) != 0 || nf != nr || nf != strlen(fast)) {
            fail_msg("%a: fast '%s' (%zu), reference '%s' (%zu)", x, fast, nf, ref, nr);
        }
    }
}

static void check_same_as_reference(double x)
{
    char fast[HPO_DOUBLE_BUF], ref[HPO_DOUBLE_BUF];
    size_t nf = hpo_format_double(fast, x), nr = hpo__format_double_reference(ref, x);

    if (strcmp(fast, ref) != 0 || nf != nr || nf != strlen(fast)) {
        fail_msg("%a: fast '%s' (%zu), reference '%s' (%zu)", x, fast, nf, ref, nr);
    }
}

/*
** The exact integer path (1e-5 <= |x| < 1e15, jsonw.c format_exact) gives
** the reference's text: every binade of its range with its edges (powers
** of two, whose gap below is half as wide, and their neighbours), the
** decades' edges and their neighbours, integers, halves, short decimals,
** 15- to 17-digit decimals and the doubles next to them.
*/
static void test_exact_path_matches_reference(void **state)
{
    static const double pow10[] = { 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1e3, 1e4,
        1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16 };
    uint64_t s = 0x6a09e667f3bcc909u;

    (void)state;
    check_text(1e-5, "1e-05");
    check_text(0.0001, "0.0001");
    check_text(123456.789, "123456.789");
    check_text(0.1 + 0.7, "0.7999999999999999");
    check_text(999999999999999.9, "999999999999999.9");
    check_text(1e15 - 1, "999999999999999");
    check_text(0.5, "0.5");
    check_text(4.35, "4.35");
    check_text(-3.0000000000000004, "-3.0000000000000004");
    check_text(nextafter(1.0, 0.0), "0.9999999999999999");
    check_text(nextafter(1.0, 2.0), "1.0000000000000002");
    for (int e = -18; e <= 50; e++) {
        double p = ldexp(1.0, e);
        for (int d = -3; d <= 3; d++) {
            double x = p;
            for (int i = 0; i < (d < 0 ? -d : d); i++) {
                x = nextafter(x, d < 0 ? 0.0 : INFINITY);
            }
            check_same_as_reference(x);
            check_same_as_reference(-x);
            check_same_as_reference(x * 3);
            check_same_as_reference(x * 5);
        }
    }
    for (size_t i = 0; i < sizeof(pow10) / sizeof(pow10[0]); i++) {
        double x = pow10[i];
        for (int d = 0; d < 6; d++) {
            check_same_as_reference(x);
            check_same_as_reference(x * 9.999999999999998);
            check_same_as_reference(x * 0.9999999999999999);
            x = nextafter(x, INFINITY);
        }
        x = pow10[i];
        for (int d = 0; d < 6; d++) {
            x = nextafter(x, 0.0);
            check_same_as_reference(x);
        }
    }
    for (int i = 0; i < 400000; i++) {
        double x;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        switch (i % 8) {
        case 0: /* any mantissa in a binade from 2^-17 to 2^50 */
            x = ldexp((double)((s >> 11) | ((uint64_t)1 << 52)), (int)(s % 68) - 17 - 52);
            break;
        case 1: /* an integer or a half */
            x = (double)(s % 1000000000000000u) / (1 + (s >> 62) % 2);
            break;
        case 2: /* a short decimal */
            x = (double)(s % 1000000u) / pow10[6 + (s >> 40) % 12];
            break;
        case 3: /* a 15-digit decimal */
            x = (double)(100000000000000u + s % 900000000000000u) / pow10[(s >> 50) % 23];
            break;
        case 4: /* a 16-digit decimal, then its neighbour */
            x = (double)(1000000000000000u + s % 9000000000000000u) / pow10[(s >> 50) % 23];
            x = (s >> 9) & 1 ? nextafter(x, INFINITY) : x;
            break;
        case 5: /* near a 16-digit rounding tie */
            x = ((double)(s % 10000000000000000u) + 0.5) / pow10[(s >> 50) % 23];
            break;
        case 6: /* uniform in [-5, 5): the benchmark's float */
            x = -5.0 + 10.0 * ((double)(s >> 11) * 0x1.0p-53);
            break;
        default: /* uniform in [0, 1), as a unit coordinate */
            x = (double)(s >> 11) * 0x1.0p-53;
            break;
        }
        check_same_as_reference((s >> 3) & 1 ? -x : x);
    }
}

static void check_json(json_t *v, const char *want)
{
    size_t len = 0;
    char *text = hpo_json_dumps(v, &len);
    json_error_t jerr;
    json_t *back;

    assert_non_null(text);
    if (strcmp(text, want) != 0 || len != strlen(want)) {
        fail_msg("json '%s', want '%s'", text, want);
    }
    back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    assert_non_null(back);
    assert_true(json_equal(back, v));
    json_decref(back);
    free(text);
    json_decref(v);
}

static void test_json_text(void **state)
{
    (void)state;
    check_json(json_real(0.1), "0.1");
    check_json(json_real(1.0), "1.0");
    check_json(json_real(-0.0), "-0.0");
    check_json(json_real(1e21), "1e+21");
    check_json(json_real(5e-324), "5e-324");
    check_json(json_integer(-9007199254740993), "-9007199254740993");
    check_json(json_pack("{s:f,s:i,s:s,s:b,s:n,s:[f,f]}", "value", 0.1, "n", 3, "s", "a\"b\\c",
                       "t", 1, "z", "a", 0.35, 2.0),
            "{\"value\":0.1,\"n\":3,\"s\":\"a\\\"b\\\\c\",\"t\":true,\"z\":null,\"a\":[0.35,2.0]}");
    check_json(json_stringn("\n\t\x01\x1f/\xc3\xa9\0x", 9), "\"\\n\\t\\u0001\\u001f/\xc3\xa9\\u0000x\"");
    check_json(json_pack("{s:{},s:[]}", "o", "a"), "{\"o\":{},\"a\":[]}");
}

static void test_json_matches_jansson_structure(void **state)
{
    uint64_t s = 12345;
    json_t *arr = json_array();
    char *text;
    json_t *back;

    (void)state;
    for (int i = 0; i < 2000; i++) {
        json_array_append_new(arr, json_pack("{s:f,s:I}", "x", random_double(&s), "k",
                                           (json_int_t)(s >> 12)));
    }
    text = hpo_json_dumps(arr, NULL);
    assert_non_null(text);
    back = json_loads(text, 0, NULL);
    assert_non_null(back);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        double a = json_real_value(json_object_get(json_array_get(arr, i), "x"));
        double b = json_real_value(json_object_get(json_array_get(back, i), "x"));
        assert_true(bits_of(a) == bits_of(b));
    }
    assert_true(json_equal(arr, back));
    json_decref(back);
    json_decref(arr);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tricky_doubles),
        cmocka_unit_test(test_random_round_trip_and_shortest),
        cmocka_unit_test(test_fast_path_matches_reference),
        cmocka_unit_test(test_exact_path_matches_reference),
        cmocka_unit_test(test_json_text),
        cmocka_unit_test(test_json_matches_jansson_structure),
    };
    return cmocka_run_group_tests_name("core-jsonw", tests, NULL, NULL);
}
