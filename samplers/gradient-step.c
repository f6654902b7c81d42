/*
** gradient-step.c: the gradient sampler's optimizer step over a range of
** coordinates (gradient-step.h), in loops the compiler vectorizes.
**
** The scalar formula had branches inside its loop (dense or client source,
** NaN entries, dv/du by kind, div == 1, dprev) and a libm sqrt that may set
** errno: the compiler kept it scalar. Here every choice is made once per
** chunk of CHUNK coordinates, and each loop is straight arithmetic: first ĝ
** into a buffer of our own, then the optimizer's update in place. Bits are
** those of the scalar formula: IEEE +, -, *, / and sqrt are correctly
** rounded in every width, the operations keep their order, contraction is
** off (an FMA would round once instead of twice: without the pragma GCC
** fuses 24 of them in the AVX-512 clone), and the file is built with
** -fno-math-errno (samplers/meson.build; GCC ignores it in a pragma for
** builtins), which only lets sqrt be the instruction (v >= 0 or NaN here:
** errno is never set). A NaN entry's 0 is a select after the arithmetic,
** which no trapping math allows (no value changes).
** tests/unit/test-samplers-gradient-step.c checks every path against the
** scalar formula, bit for bit.
*/
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

#include "gradient-step.h"

#include <float.h>
#include <math.h>

/* A multiple of every vector width; the buffer stays in L1 (2 KB). */
#define CHUNK 256

#define INLINE static inline __attribute__((always_inline))

INLINE double clamp(double x, double lo, double hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/*
** An overflow saturates at ±DBL_MAX. A client's gradient is any finite
** double, so ĝ, Adam's v (ĝ²), a momentum or an accumulated sum can
** overflow; an infinity kept in m, v, acc or dprev made the saved state one
** that load() refuses (its vectors must be finite), and 0 * inf (a cosine
** schedule's last lr) put a NaN in u. Finite results keep their bits. Max
** then min, each taking the second operand when its comparison is false, so
** a NaN (which finite operands never give here) becomes -DBL_MAX; GCC 12
** vectorizes them as compares and blends: 1.7 times the instructions of
** Adam's loop (callgrind), ~0.5 ms more CPU for a 10^6 step.
*/
INLINE double sat(double x)
{
    double y = x > -DBL_MAX ? x : -DBL_MAX;

    return y < DBL_MAX ? y : DBL_MAX;
}

/*
** ĝ from a client's gradient. kind and divide are constants where this is
** inlined, so each combination is a loop of its own without a branch.
*/
INLINE void from_client(const double *restrict gr, const double *restrict val,
        double *restrict g, size_t len, const struct hpo__gstep *s, enum hpo__gstep_kind kind,
        int divide)
{
    const double sgn = s->sgn, mul = s->mul, div = s->div, lo = s->lo, hi = s->hi;
    const double span = hi - lo;

    for (size_t i = 0; i < len; i++) {
        double gi = gr[i], v = val[i];
        double dvdu = kind == HPO_GSTEP_LOG ? v
                : (kind == HPO_GSTEP_LOGIT ? (v - lo) * (hi - v) / span : 1.0);
        double x = sat(sgn * gi * dvdu);
        x *= mul;
        if (divide) {
            x = x / div;
        }
        g[i] = isnan(gi) || isnan(v) ? 0.0 : x;
    }
}

INLINE void from_dense(const double *restrict dense, double *restrict g, size_t len,
        const struct hpo__gstep *s, int divide)
{
    const double mul = s->mul, div = s->div;

    for (size_t i = 0; i < len; i++) {
        double x = sat(dense[i]) * mul;
        g[i] = divide ? x / div : x;
    }
}

/* ĝ of coordinates [j, j + len) into g. */
INLINE void ghat(const struct hpo__gstep *s, size_t j, size_t len, double *restrict g)
{
    int divide = s->div != 1.0;

    if (s->dense != NULL) {
        if (divide) {
            from_dense(s->dense + j, g, len, s, 1);
        } else {
            from_dense(s->dense + j, g, len, s, 0);
        }
        return;
    }
    switch (s->kind) {
    case HPO_GSTEP_LOG:
        if (divide) {
            from_client(s->grad + j, s->vals + j, g, len, s, HPO_GSTEP_LOG, 1);
        } else {
            from_client(s->grad + j, s->vals + j, g, len, s, HPO_GSTEP_LOG, 0);
        }
        break;
    case HPO_GSTEP_LOGIT:
        if (divide) {
            from_client(s->grad + j, s->vals + j, g, len, s, HPO_GSTEP_LOGIT, 1);
        } else {
            from_client(s->grad + j, s->vals + j, g, len, s, HPO_GSTEP_LOGIT, 0);
        }
        break;
    default:
        if (divide) {
            from_client(s->grad + j, s->vals + j, g, len, s, HPO_GSTEP_CLIP, 1);
        } else {
            from_client(s->grad + j, s->vals + j, g, len, s, HPO_GSTEP_CLIP, 0);
        }
        break;
    }
}

INLINE void adam(double *restrict u, double *restrict m, double *restrict v,
        double *restrict dprev, const double *restrict g, size_t len,
        const struct hpo__gstep *s, int keep)
{
    const double b1 = s->b1, b2 = s->b2, eps = s->eps;
    const double lr_t = s->lr_t, inv_b1t = s->inv_b1t, inv_sqrt_b2t = s->inv_sqrt_b2t;
    const double ulo = s->ulo, uhi = s->uhi;

    for (size_t i = 0; i < len; i++) {
        double gh = g[i];
        double mi = sat(b1 * m[i] + (1.0 - b1) * gh);
        double vi = b2 * v[i] + (1.0 - b2) * gh * gh;
        vi = vi < DBL_MAX ? vi : DBL_MAX; /* >= 0: one side is enough */
        double d = sat(mi * inv_b1t / (sqrt(vi) * inv_sqrt_b2t + eps));
        m[i] = mi;
        v[i] = vi;
        u[i] = clamp(u[i] - lr_t * d, ulo, uhi);
        if (keep) {
            dprev[i] = d;
        }
    }
}

INLINE void momentum(double *restrict u, double *restrict m, double *restrict dprev,
        const double *restrict g, size_t len, const struct hpo__gstep *s, int nesterov,
        int keep)
{
    const double mom = s->mom, lr_t = s->lr_t, ulo = s->ulo, uhi = s->uhi;

    for (size_t i = 0; i < len; i++) {
        double gh = g[i];
        double mi = sat(mom * m[i] + gh);
        double d = sat(nesterov ? gh + mom * mi : mi);
        m[i] = mi;
        u[i] = clamp(u[i] - lr_t * d, ulo, uhi);
        if (keep) {
            dprev[i] = d;
        }
    }
}

INLINE void plain(double *restrict u, double *restrict dprev, const double *restrict g,
        size_t len, const struct hpo__gstep *s, int keep)
{
    const double lr_t = s->lr_t, ulo = s->ulo, uhi = s->uhi;

    for (size_t i = 0; i < len; i++) {
        double d = g[i];
        u[i] = clamp(u[i] - lr_t * d, ulo, uhi);
        if (keep) {
            dprev[i] = d;
        }
    }
}

/* The update of coordinates [j, j + len) from their ĝ in g. */
INLINE void update(const struct hpo__gstep *s, size_t j, size_t len, const double *restrict g)
{
    double *u = s->u + j;
    double *dp = s->dprev != NULL ? s->dprev + j : NULL;

    switch (s->opt) {
    case HPO_GSTEP_ADAM:
        if (dp != NULL) {
            adam(u, s->m + j, s->v + j, dp, g, len, s, 1);
        } else {
            adam(u, s->m + j, s->v + j, dp, g, len, s, 0);
        }
        break;
    case HPO_GSTEP_MOMENTUM:
        if (s->nesterov && dp != NULL) {
            momentum(u, s->m + j, dp, g, len, s, 1, 1);
        } else if (s->nesterov) {
            momentum(u, s->m + j, dp, g, len, s, 1, 0);
        } else if (dp != NULL) {
            momentum(u, s->m + j, dp, g, len, s, 0, 1);
        } else {
            momentum(u, s->m + j, dp, g, len, s, 0, 0);
        }
        break;
    default:
        if (dp != NULL) {
            plain(u, dp, g, len, s, 1);
        } else {
            plain(u, dp, g, len, s, 0);
        }
        break;
    }
}

INLINE void chunk(const struct hpo__gstep *s, size_t j, size_t len, double *restrict g)
{
    ghat(s, j, len, g);
    update(s, j, len, g);
}

/*
** Clones for AVX-512F and AVX2 as core/hexp.c (glibc's ifunc picks one at
** load); none under ASan, whose ifunc handling is fragile.
*/
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
        !defined(__SANITIZE_ADDRESS__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

CLONES
void hpo__gstep_range(const struct hpo__gstep *s, size_t lo, size_t hi)
{
    double g[CHUNK];

    for (size_t j = lo; j < hi; j += CHUNK) {
        size_t len = hi - j < CHUNK ? hi - j : CHUNK;
        /* A constant count: vectorized without a remainder, even at -O2's cheap model. */
        if (len == CHUNK) {
            chunk(s, j, CHUNK, g);
        } else {
            chunk(s, j, len, g);
        }
    }
}

/* ghat with a constant count for whole chunks (vectorized at -O2 too). */
INLINE void ghat_chunk(const struct hpo__gstep *s, size_t j, size_t len, double *restrict g)
{
    if (len == CHUNK) {
        ghat(s, j, CHUNK, g);
    } else {
        ghat(s, j, len, g);
    }
}

INLINE void add(double *restrict acc, const double *restrict g, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        acc[i] = sat(acc[i] + g[i]);
    }
}

CLONES
void hpo__gstep_accumulate(const struct hpo__gstep *s, size_t lo, size_t hi, double *acc)
{
    double g[CHUNK];

    for (size_t j = lo; j < hi; j += CHUNK) {
        size_t len = hi - j < CHUNK ? hi - j : CHUNK;
        if (len == CHUNK) {
            ghat(s, j, CHUNK, g);
            add(acc + j, g, CHUNK);
        } else {
            ghat(s, j, len, g);
            add(acc + j, g, len);
        }
    }
}

/*
** The sums add one term at a time in coordinate order, as the scalar loops
** did (a vector sum would add in another order: other bits); only ĝ is
** computed in vector loops.
*/
CLONES
double hpo__gstep_dot(const struct hpo__gstep *s, size_t lo, size_t hi, const double *other,
        double sum)
{
    double g[CHUNK];

    for (size_t j = lo; j < hi; j += CHUNK) {
        size_t len = hi - j < CHUNK ? hi - j : CHUNK;
        ghat_chunk(s, j, len, g);
        if (other != NULL) {
            for (size_t i = 0; i < len; i++) {
                sum += g[i] * other[j + i];
            }
        } else {
            for (size_t i = 0; i < len; i++) {
                sum += g[i] * g[i];
            }
        }
    }
    return sum;
}

CLONES
double hpo__gstep_abs_sum(const struct hpo__gstep *s, size_t lo, size_t hi, double sum)
{
    double g[CHUNK];

    for (size_t j = lo; j < hi; j += CHUNK) {
        size_t len = hi - j < CHUNK ? hi - j : CHUNK;
        ghat_chunk(s, j, len, g);
        for (size_t i = 0; i < len; i++) {
            sum += fabs(g[i]);
        }
    }
    return sum;
}
