/*
** test-samplers-gradient-step.c: the vectorized optimizer step
** (samplers/gradient-step.c) against the scalar formula gradient.c used
** before it (src_at, dvdu, step_range's three loops, feed's accumulator,
** src_dot, src_abs_mean), written out here, bit for bit: every optimizer,
** kind and source, with and without dprev, ĝ alone (the accumulator and the
** in-order sums), over NaN, infinities, signed zeros, subnormals and values at and beyond
** the bounds, on ranges whose ends are not multiples of any vector width or
** of the step's chunk, and only inside the range.
*/
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
/* The reference is the formula with every operation rounded (no FMA). */
#pragma GCC optimize("fp-contract=off")
#endif

#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../samplers/gradient-step.h"

/* ---- the reference: gradient.c's scalar loops before gradient-step.c ---- */

static double ref_clampd(double x, double lo, double hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* gradient-step.c's saturation of an overflow (a NaN becomes -DBL_MAX). */
static double ref_sat(double x)
{
    double y = x > -DBL_MAX ? x : -DBL_MAX;

    return y < DBL_MAX ? y : DBL_MAX;
}

static double ref_dvdu(const struct hpo__gstep *s, double v)
{
    switch (s->kind) {
    case HPO_GSTEP_LOG:
        return v;
    case HPO_GSTEP_LOGIT:
        return (v - s->lo) * (s->hi - v) / (s->hi - s->lo);
    default:
        return 1.0;
    }
}

static double ref_src_at(const struct hpo__gstep *s, size_t j)
{
    double x;

    if (s->dense != NULL) {
        x = ref_sat(s->dense[j]);
    } else {
        double gr = s->grad[j];
        double v = s->vals[j];
        if (isnan(gr) || isnan(v)) {
            return 0.0;
        }
        x = ref_sat(s->sgn * gr * ref_dvdu(s, v));
    }
    x *= s->mul;
    return s->div == 1.0 ? x : x / s->div;
}

static void ref_step(const struct hpo__gstep *s, size_t lo, size_t hi)
{
    double *u = s->u, *m = s->m, *v = s->v, *dprev = s->dprev;
    const double b1 = s->b1, b2 = s->b2, eps = s->eps, mom = s->mom;

    for (size_t j = lo; j < hi; j++) {
        double gh = ref_src_at(s, j);
        double d;
        switch (s->opt) {
        case HPO_GSTEP_ADAM:
            m[j] = ref_sat(b1 * m[j] + (1.0 - b1) * gh);
            v[j] = b2 * v[j] + (1.0 - b2) * gh * gh;
            v[j] = v[j] < DBL_MAX ? v[j] : DBL_MAX;
            d = ref_sat(m[j] * s->inv_b1t / (sqrt(v[j]) * s->inv_sqrt_b2t + eps));
            break;
        case HPO_GSTEP_MOMENTUM:
            m[j] = ref_sat(mom * m[j] + gh);
            d = ref_sat(s->nesterov ? gh + mom * m[j] : m[j]);
            break;
        default:
            d = gh;
            break;
        }
        u[j] = ref_clampd(u[j] - s->lr_t * d, s->ulo, s->uhi);
        if (dprev != NULL) {
            dprev[j] = d;
        }
    }
}

static void ref_accumulate(const struct hpo__gstep *s, size_t lo, size_t hi, double *acc)
{
    for (size_t j = lo; j < hi; j++) {
        acc[j] = ref_sat(acc[j] + ref_src_at(s, j));
    }
}

static double ref_dot(const struct hpo__gstep *s, size_t lo, size_t hi, const double *other,
        double sum)
{
    for (size_t j = lo; j < hi; j++) {
        double x = ref_src_at(s, j);
        sum += x * (other != NULL ? other[j] : x);
    }
    return sum;
}

static double ref_abs_sum(const struct hpo__gstep *s, size_t lo, size_t hi, double sum)
{
    for (size_t j = lo; j < hi; j++) {
        sum += fabs(ref_src_at(s, j));
    }
    return sum;
}

/* ---- inputs ---------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t next_u64(void)
{
    uint64_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static double uniform(double lo, double hi)
{
    return lo + (hi - lo) * ((double)(next_u64() >> 11) * 0x1p-53);
}

static double from_bits(uint64_t bits)
{
    double d;

    memcpy(&d, &bits, sizeof(d));
    return d;
}

/*
** Infinities, signed zeros, subnormals, huge values and NaN. NaN comes in
** several kinds (signs, a payload) where the formula tests for it before any
** arithmetic (the client's gradient and values); elsewhere (dense, u, m, v)
** it is the NaN x86's arithmetic produces (sign set, no payload), the only
** one a study's state or a dense ĝ can hold: when two different NaNs meet in
** one operation, IEEE 754 leaves open which one comes out, and the compiler's
** choice of operand order decides (in the scalar code as in the vector code).
*/
static double special(bool any_nan)
{
    static const double values[] = { INFINITY, -INFINITY, 0.0, -0.0, 0x1p-1074, -0x1p-1060,
        1e308, -1e308 };
    const size_t n = sizeof(values) / sizeof(values[0]);
    uint64_t r = next_u64() % (n + 3);

    if (r < n) {
        return values[r];
    }
    if (!any_nan) {
        return from_bits(UINT64_C(0xfff8000000000000));
    }
    return r == n ? NAN : (r == n + 1 ? -NAN : from_bits(UINT64_C(0x7ff8000000000123)));
}

/* Mostly ordinary numbers near `centre`, one in 6 a special value, one in 8 at or past a bound. */
static double entry(double centre, double spread, double lo, double hi, bool any_nan)
{
    uint64_t r = next_u64() % 48;

    if (r < 8) {
        return special(any_nan);
    }
    if (r < 14) {
        static const double past[] = { 0.0, 1.0, -1e-9, 1e-9, 10.0, -10.0 };
        double b = (r % 2 == 0) ? lo : hi;
        return b + past[r - 8] * (hi - lo);
    }
    return centre + uniform(-spread, spread);
}

struct arrays {
    size_t n;
    double *grad, *vals, *dense, *u, *m, *v, *dprev;
};

static double *fresh(size_t n)
{
    double *p = malloc((n ? n : 1) * sizeof(double));

    assert_non_null(p);
    return p;
}

static void arrays_fill(struct arrays *a, size_t n, const struct hpo__gstep *s)
{
    a->n = n;
    a->grad = fresh(n);
    a->vals = fresh(n);
    a->dense = fresh(n);
    a->u = fresh(n);
    a->m = fresh(n);
    a->v = fresh(n);
    a->dprev = fresh(n);
    for (size_t i = 0; i < n; i++) {
        a->grad[i] = entry(0.0, 3.0, -1.0, 1.0, true);
        a->vals[i] = entry(0.5 * (s->lo + s->hi), 0.5 * (s->hi - s->lo), s->lo, s->hi, true);
        a->dense[i] = entry(0.0, 2.0, -1.0, 1.0, false);
        a->u[i] = entry(0.5 * (s->ulo + s->uhi), 0.5 * (s->uhi - s->ulo), s->ulo, s->uhi,
                false);
        a->m[i] = entry(0.0, 1.0, -1.0, 1.0, false);
        /* v >= 0 in a real state; a few negative ones (sqrt's NaN) cost nothing. */
        a->v[i] = next_u64() % 16 == 0 ? entry(0.0, 1.0, -1.0, 1.0, false) : uniform(0.0, 4.0);
        a->dprev[i] = uniform(-1.0, 1.0);
    }
}

static void arrays_copy(struct arrays *to, const struct arrays *from)
{
    size_t bytes = (from->n ? from->n : 1) * sizeof(double);

    to->n = from->n;
    to->grad = from->grad; /* read only: shared */
    to->vals = from->vals;
    to->dense = from->dense;
    to->u = fresh(from->n);
    to->m = fresh(from->n);
    to->v = fresh(from->n);
    to->dprev = fresh(from->n);
    memcpy(to->u, from->u, bytes);
    memcpy(to->m, from->m, bytes);
    memcpy(to->v, from->v, bytes);
    memcpy(to->dprev, from->dprev, bytes);
}

static void arrays_free(struct arrays *a, bool inputs)
{
    if (inputs) {
        free(a->grad);
        free(a->vals);
        free(a->dense);
    }
    free(a->u);
    free(a->m);
    free(a->v);
    free(a->dprev);
}

static void bind(struct hpo__gstep *s, const struct arrays *a, bool dense, bool keep)
{
    s->dense = dense ? a->dense : NULL;
    s->grad = a->grad;
    s->vals = a->vals;
    s->u = a->u;
    s->m = a->m;
    s->v = a->v;
    s->dprev = keep ? a->dprev : NULL;
}

static void same_bits(const double *a, const double *b, size_t n, const char *what,
        const struct hpo__gstep *s, size_t lo, size_t hi)
{
    if (n > 0 && memcmp(a, b, n * sizeof(double)) != 0) {
        for (size_t i = 0; i < n; i++) {
            if (memcmp(&a[i], &b[i], sizeof(double)) != 0) {
                print_error("%s[%zu] = %a, reference %a (opt %d kind %d dense %d nesterov %d "
                            "dprev %d mul %g div %g range [%zu, %zu))\n",
                        what, i, a[i], b[i], (int)s->opt, (int)s->kind, s->dense != NULL,
                        (int)s->nesterov, s->dprev != NULL, s->mul, s->div, lo, hi);
                break;
            }
        }
        fail();
    }
}

/*
** One configuration: three steps in a row (the later ones start from what
** the earlier produced: infinite and NaN moments included) on [lo, hi) of
** n coordinates; everything outside the range must stay as it was.
*/
static void check(struct hpo__gstep cfg, size_t n, size_t lo, size_t hi, bool dense, bool keep)
{
    struct arrays base, got, want;
    struct hpo__gstep s = cfg, r = cfg;

    arrays_fill(&base, n, &cfg);
    arrays_copy(&got, &base);
    arrays_copy(&want, &base);
    bind(&s, &got, dense, keep);
    bind(&r, &want, dense, keep);
    for (int step = 0; step < 3; step++) {
        hpo__gstep_range(&s, lo, hi);
        ref_step(&r, lo, hi);
        same_bits(got.u, want.u, n, "u", &s, lo, hi);
        same_bits(got.m, want.m, n, "m", &s, lo, hi);
        same_bits(got.v, want.v, n, "v", &s, lo, hi);
        same_bits(got.dprev, want.dprev, n, "dprev", &s, lo, hi);
    }
    /* ĝ alone: the batch accumulator (m as acc) and the in-order sums. */
    {
        double d1 = hpo__gstep_dot(&s, lo, hi, got.dprev, 0.25);
        double d2 = ref_dot(&r, lo, hi, want.dprev, 0.25);
        double n1 = hpo__gstep_dot(&s, lo, hi, NULL, 0.0);
        double n2 = ref_dot(&r, lo, hi, NULL, 0.0);
        double a1 = hpo__gstep_abs_sum(&s, lo, hi, -1.0);
        double a2 = ref_abs_sum(&r, lo, hi, -1.0);
        same_bits(&d1, &d2, 1, "dot", &s, lo, hi);
        same_bits(&n1, &n2, 1, "norm", &s, lo, hi);
        same_bits(&a1, &a2, 1, "abs sum", &s, lo, hi);
        hpo__gstep_accumulate(&s, lo, hi, got.m);
        ref_accumulate(&r, lo, hi, want.m);
        same_bits(got.m, want.m, n, "acc", &s, lo, hi);
    }
    /* Outside the range: untouched. */
    for (size_t i = 0; i < n; i++) {
        if (i < lo || i >= hi) {
            assert_memory_equal(&got.u[i], &base.u[i], sizeof(double));
            assert_memory_equal(&got.m[i], &base.m[i], sizeof(double));
            assert_memory_equal(&got.v[i], &base.v[i], sizeof(double));
            assert_memory_equal(&got.dprev[i], &base.dprev[i], sizeof(double));
        }
    }
    arrays_free(&got, false);
    arrays_free(&want, false);
    arrays_free(&base, true);
}

/* Lengths around every vector width and the 256-element chunk. */
static const size_t lengths[] = { 0, 1, 2, 3, 5, 7, 8, 9, 15, 17, 31, 255, 256, 257, 511, 513,
    1000, 4099 };

static void every_path(enum hpo__gstep_opt opt, bool nesterov)
{
    static const enum hpo__gstep_kind kinds[] = { HPO_GSTEP_LOG, HPO_GSTEP_LOGIT,
        HPO_GSTEP_CLIP };
    /* (mul, div): div 1 is skipped by the formula; div 0 gives infinities and NaN. */
    static const double muldiv[][2] = { { 1.0, 1.0 }, { 0.37, 3.0 }, { -2.5, 1.0 },
        { 1.0, 0.0 }, { 1e300, 1e-300 } };

    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        for (size_t md = 0; md < sizeof(muldiv) / sizeof(muldiv[0]); md++) {
            for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
                for (int variant = 0; variant < 4; variant++) {
                    bool dense = variant & 1, keep = variant & 2;
                    size_t n = lengths[l];
                    struct hpo__gstep cfg = {
                        .sgn = (l % 2 == 0) ? 1.0 : -1.0,
                        .mul = muldiv[md][0],
                        .div = muldiv[md][1],
                        .kind = kinds[k],
                        .lo = kinds[k] == HPO_GSTEP_LOG ? 1e-3 : -2.0,
                        .hi = kinds[k] == HPO_GSTEP_LOG ? 1e3 : 5.0,
                        .opt = opt,
                        .nesterov = nesterov,
                        .b1 = 0.9,
                        .b2 = 0.999,
                        .eps = 1e-8,
                        .mom = 0.9,
                        .lr_t = 0.05 + 0.01 * (double)md,
                        .inv_b1t = 1.0 / (1.0 - pow(0.9, 3.0)),
                        .inv_sqrt_b2t = 1.0 / sqrt(1.0 - pow(0.999, 3.0)),
                        .ulo = kinds[k] == HPO_GSTEP_LOG ? log(1e-3) : -2.0,
                        .uhi = kinds[k] == HPO_GSTEP_LOG ? log(1e3) : 5.0,
                    };
                    /* The whole array, and a range that starts and ends off any width. */
                    check(cfg, n, 0, n, dense, keep);
                    if (n >= 6) {
                        check(cfg, n, 3, n - 2, dense, keep);
                    }
                }
            }
        }
    }
}

static void adam_bitwise(void **unused)
{
    (void)unused;
    every_path(HPO_GSTEP_ADAM, false);
}

static void momentum_bitwise(void **unused)
{
    (void)unused;
    every_path(HPO_GSTEP_MOMENTUM, false);
}

static void nesterov_bitwise(void **unused)
{
    (void)unused;
    every_path(HPO_GSTEP_MOMENTUM, true);
}

static void plain_bitwise(void **unused)
{
    (void)unused;
    every_path(HPO_GSTEP_PLAIN, false);
}

/*
** The cases the formula singles out, by hand: a NaN gradient or value gives
** ĝ = 0 even when mul or div would make 0 a NaN; NaN u stays NaN through the
** clamp; u past a bound lands on it.
*/
static void singled_out_cases(void **unused)
{
    double grad[4] = { NAN, 1.0, 2.0, 0.5 };
    double vals[4] = { 1.0, NAN, 3.0, 2.0 };
    double u[4] = { 0.5, 0.5, NAN, 10.0 };
    double m[4] = { 0 }, v[4] = { 0 }, dprev[4] = { 9, 9, 9, 9 };
    struct hpo__gstep s = {
        .grad = grad, .vals = vals, .sgn = 1.0, .mul = INFINITY, .div = 1.0,
        .kind = HPO_GSTEP_CLIP, .lo = 0.0, .hi = 4.0, .opt = HPO_GSTEP_PLAIN,
        .lr_t = 0.0, .ulo = 0.0, .uhi = 4.0, .u = u, .m = m, .v = v, .dprev = dprev,
    };

    (void)unused;
    hpo__gstep_range(&s, 0, 4);
    assert_true(dprev[0] == 0.0 && !signbit(dprev[0]));
    assert_true(dprev[1] == 0.0 && !signbit(dprev[1]));
    assert_true(isinf(dprev[2]) && dprev[3] == INFINITY);
    assert_true(u[0] == 0.5 && u[1] == 0.5);
    assert_true(isnan(u[2]));
    /* 10 - 0 * inf is NaN: kept as NaN by the clamp, as the formula does. */
    assert_true(isnan(u[3]));
    s.mul = 1.0;
    s.lr_t = 1.0;
    u[3] = 10.0;
    hpo__gstep_range(&s, 3, 4);
    assert_true(u[3] == 4.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(adam_bitwise),
        cmocka_unit_test(momentum_bitwise),
        cmocka_unit_test(nesterov_bitwise),
        cmocka_unit_test(plain_bitwise),
        cmocka_unit_test(singled_out_cases),
    };

    return cmocka_run_group_tests_name("samplers-gradient-step", tests, NULL, NULL);
}
