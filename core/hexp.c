/* SPDX-License-Identifier: MIT */
/*
** e^x with only IEEE additions and multiplications in round-to-nearest
** (no FMA, no table, no library call), so that the scalar path, the
** compiler's vector paths and every build give the same bits.
**
** x = k ln2 + r, k = round(x / ln2) by the 0x1.8p52 trick, |r| <= ln2/2;
** ln2 is split in a 42-bit head (k ln2_hi exact for |k| < 2^11) and a tail,
** and the rounding error of r is carried as rlo. e^r = 1 + r + r^2 q(r), q
** the Taylor series to r^13/13! (truncation < 5e-18 relative, Estrin), summed as
** hi = 1 + r with its exact error (Fast2Sum) plus the small terms, so that
** the final addition's half ulp and ~0.2 ulp from r^2 q (at e^r < 1, where
** the ulp is halved) are all: within 0.71 ulp. 2^k is built
** in the exponent bits as 2^k1 * 2^k2 (k1 = floor(k'/2) on a biased k'), so
** that results near overflow and subnormal ones need no branch.
*/
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
/*
** a * b + c must stay two roundings (an FMA would change the bits); no
** trapping math only lets the selects below be vectorized (no value changes).
*/
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

#include "hexp.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define SHIFT      0x1.8p52
#define SHIFT_BITS UINT64_C(0x4338000000000000)
#define INV_LN2    0x1.71547652b82fep+0
#define LN2_HI     0x1.62e42fefa38p-1     /* 42 significant bits */
#define LN2_LO     0x1.ef35793c76730p-45  /* ln 2 - LN2_HI */
#define X_MIN      -746.0 /* below: 0 (e^-745.14 is half the least subnormal) */
#define X_MAX      710.0  /* above: +inf (e^709.79 overflows) */
#define CHUNK      256

static inline double bits_double(uint64_t b)
{
    double d;

    memcpy(&d, &b, sizeof(d));
    return d;
}

static inline double exp_core(double x)
{
    double kd, t, kl, r, rlo, r2, r4, r8, q0, q1, q2, q, hi, err, p;
    uint64_t kb, m, m1;

    /* NaN passes through both (comparisons are false) and gives NaN. */
    x = x < X_MIN ? X_MIN : x;
    x = x > X_MAX ? X_MAX : x;
    kd = x * INV_LN2 + SHIFT;
    memcpy(&kb, &kd, sizeof(kb));
    kd -= SHIFT;
    t = x - kd * LN2_HI; /* exact */
    kl = kd * LN2_LO;
    r = t - kl;
    rlo = (t - r) - kl;
    /* q by Estrin's scheme: a short chain of dependent operations. */
    r2 = r * r;
    r4 = r2 * r2;
    r8 = r4 * r4;
    q0 = (0.5 + r * 0x1.5555555555555p-3) +                         /* 1/2!, 1/3! */
            r2 * (0x1.5555555555555p-5 + r * 0x1.1111111111111p-7);   /* 1/4!, 1/5! */
    q1 = (0x1.6c16c16c16c17p-10 + r * 0x1.a01a01a01a01ap-13) +       /* 1/6!, 1/7! */
            r2 * (0x1.a01a01a01a01ap-16 + r * 0x1.71de3a556c734p-19); /* 1/8!, 1/9! */
    q2 = (0x1.27e4fb7789f5cp-22 + r * 0x1.ae64567f544e4p-26) +       /* 1/10!, 1/11! */
            r2 * (0x1.1eed8eff8d898p-29 + r * 0x1.6124613a86d09p-33); /* 1/12!, 1/13! */
    q = (q0 + r4 * q1) + r8 * q2;
    hi = 1.0 + r;
    err = (1.0 - hi) + r; /* exact: |r| < 1 */
    /* e^(r + rlo) = e^r (1 + rlo) to far below an ulp. */
    p = hi + (err + (rlo + r * (rlo + r * q)));
    /* k' = k + 2048 >= 0; 2^k = 2^(k1) 2^(k - k1), k1 = floor(k'/2) - 1024. */
    m = kb - SHIFT_BITS + 2048;
    m1 = m >> 1;
    return p * bits_double((m1 - 1) << 52) * bits_double((m - m1 - 1) << 52);
}

double hpo_exp(double x)
{
    return exp_core(x);
}

/* A coordinate of hpo_exp_decode() in (0, 1) (others are fixed up after). */
static inline double decode_in(double u, double ulow, double range, double low, double high)
{
    double e = exp_core(ulow + u * range);

    return e < low ? low : (e > high ? high : e);
}

/*
** One chunk: buf[j] = the decode of unit[j], j < len; 1 when every unit is
** strictly inside (0, 1). Inlined with len == CHUNK for whole chunks: a
** constant count, no aliasing (buf is ours), no remainder, so the compiler
** vectorizes it even at -O2's cheap model; and with the tail's len.
*/
static inline __attribute__((always_inline)) int decode_block(const double *unit, double *buf,
        size_t len, double ulow, double range, double low, double high)
{
    int inside = 1;

    for (size_t j = 0; j < len; j++) {
        double u = unit[j];
        buf[j] = decode_in(u, ulow, range, low, high);
        inside &= (u > 0.0) & (u < 1.0);
    }
    return inside;
}

/* The bounds exactly, NaN as NaN (rare: a sampler's u on or past a bound). */
static void bound_block(const double *unit, double *buf, size_t len, double low, double high)
{
    for (size_t j = 0; j < len; j++) {
        double u = unit[j];
        if (!(u > 0.0 && u < 1.0)) {
            buf[j] = u <= 0.0 ? low : (u >= 1.0 ? high : NAN);
        }
    }
}

/*
** Chunks of CHUNK into a buffer of our own, then copied out.
** Clones for AVX-512F and AVX2 (glibc's ifunc picks one at load): with
** contraction off none has an FMA, so all give the scalar path's bits
** (test-core-hexp); none under ASan, whose ifunc handling is fragile.
*/
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
        !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void hpo_exp_decode(const double *unit, double *out, size_t n, double ulow, double range,
        double low, double high)
{
    double buf[CHUNK];

    for (size_t i = 0; i < n; i += CHUNK) {
        size_t len = n - i < CHUNK ? n - i : CHUNK;
        int inside = len == CHUNK ? decode_block(unit + i, buf, CHUNK, ulow, range, low, high)
                                  : decode_block(unit + i, buf, len, ulow, range, low, high);
        if (!inside) {
            bound_block(unit + i, buf, len, low, high);
        }
        memcpy(out + i, buf, len * sizeof(double));
    }
}

/* The unit coordinate (u - ulow) / range clamped to [0, 1], as the gradient sampler's unit_of. */
static inline double unit_in(double u, double ulow, double range)
{
    double x = (u - ulow) / range;

    x = x < 0.0 ? 0.0 : x;
    return x > 1.0 ? 1.0 : x;
}

/* ubuf[j] = unit_in(u[j]), j < len; inlined as decode_block is. */
static inline __attribute__((always_inline)) void unit_block(const double *u, double *ubuf,
        size_t len, double ulow, double range)
{
    for (size_t j = 0; j < len; j++) {
        ubuf[j] = unit_in(u[j], ulow, range);
    }
}

/*
** Chunks as hpo_exp_decode's, each computing its unit coordinates into a
** buffer of its own and decoding them from there (L1), then both copied
** out: one read of u instead of u and then unit.
*/
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
        !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void hpo_exp_decode_u(const double *u, double *unit, double *out, size_t n, double ulow,
        double range, double low, double high)
{
    double ubuf[CHUNK];
    double buf[CHUNK];

    for (size_t i = 0; i < n; i += CHUNK) {
        size_t len = n - i < CHUNK ? n - i : CHUNK;
        int inside;
        if (len == CHUNK) {
            unit_block(u + i, ubuf, CHUNK, ulow, range);
            inside = decode_block(ubuf, buf, CHUNK, ulow, range, low, high);
        } else {
            unit_block(u + i, ubuf, len, ulow, range);
            inside = decode_block(ubuf, buf, len, ulow, range, low, high);
        }
        if (!inside) {
            bound_block(ubuf, buf, len, low, high);
        }
        memcpy(unit + i, ubuf, len * sizeof(double));
        memcpy(out + i, buf, len * sizeof(double));
    }
}

static inline double logistic_one(double x)
{
    double y = 1.0 / (1.0 + exp_core(-x));

    y = y < 0.0 ? 0.0 : y;
    return y > 1.0 ? 1.0 : y;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
        !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void hpo_logistic_n(const double *x, double *out, size_t n)
{
    double buf[CHUNK];

    for (size_t i = 0; i < n; i += CHUNK) {
        size_t len = n - i < CHUNK ? n - i : CHUNK;
        if (len == CHUNK) {
            for (size_t j = 0; j < CHUNK; j++) {
                buf[j] = logistic_one(x[i + j]);
            }
        } else {
            for (size_t j = 0; j < len; j++) {
                buf[j] = logistic_one(x[i + j]);
            }
        }
        memcpy(out + i, buf, len * sizeof(double));
    }
}
