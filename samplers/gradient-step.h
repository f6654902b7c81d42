/*
** gradient-step.h: the gradient sampler's optimizer step over a range of
** coordinates (gradient.c's vector loops), written so the compiler
** vectorizes it and every path gives the bits of the scalar formula.
** Not a public interface: gradient.c and its unit test use it.
*/
#ifndef HPO_SAMPLERS_GRADIENT_STEP_H
#define HPO_SAMPLERS_GRADIENT_STEP_H

#include <stdbool.h>
#include <stddef.h>

/* How a param's value v follows from u: dv/du = v (log), (v-lo)(hi-v)/(hi-lo), or 1. */
enum hpo__gstep_kind { HPO_GSTEP_LOG, HPO_GSTEP_LOGIT, HPO_GSTEP_CLIP };

enum hpo__gstep_opt { HPO_GSTEP_ADAM, HPO_GSTEP_MOMENTUM, HPO_GSTEP_PLAIN };

/*
** One step's inputs; arrays are indexed by coordinate. The gradient ĝ_j is
** dense[j] * mul (then / div unless div is 1), or, without dense, 0 if
** grad[j] or vals[j] is NaN and else sgn * grad[j] * dv/du(vals[j]) * mul
** (then / div unless div is 1). Then, with d the step direction:
**   adam:     m = b1 m + (1 - b1) ĝ; v = b2 v + (1 - b2) ĝ ĝ;
**             d = m inv_b1t / (sqrt(v) inv_sqrt_b2t + eps)
**   momentum: m = mom m + ĝ; d = nesterov ? ĝ + mom m : m
**   plain:    d = ĝ
** and u = clamp(u - lr_t d, ulo, uhi) (x < ulo ? ulo : (x > uhi ? uhi : x)),
** dprev = d when dprev is not NULL. Left to right, no fused multiply-add.
*/
struct hpo__gstep {
    const double *dense;       /* ĝ before mul and div, or NULL: from grad and vals */
    const double *grad, *vals; /* the client's gradient and the values it was taken at */
    double sgn, mul, div;
    enum hpo__gstep_kind kind;
    double lo, hi; /* the value bounds (logit's dv/du) */
    enum hpo__gstep_opt opt;
    bool nesterov;
    double b1, b2, eps, mom;
    double lr_t, inv_b1t, inv_sqrt_b2t;
    double ulo, uhi;
    double *u;     /* updated */
    double *m;     /* adam and momentum: updated */
    double *v;     /* adam: updated */
    double *dprev; /* written, or NULL */
};

/*
** Apply the step to coordinates [lo, hi): reads and writes only those
** elements of the arrays (borrowed), so disjoint ranges may run on
** several threads at once. Any thread.
*/
void hpo__gstep_range(const struct hpo__gstep *s, size_t lo, size_t hi);

/*
** ĝ alone (the source fields and kind of s; the optimizer's are unused),
** over [lo, hi): acc[j] += ĝ_j; sum + ĝ_j other[j] (ĝ_j ĝ_j if other is
** NULL), and sum + |ĝ_j|, added one term at a time in coordinate order.
*/
void hpo__gstep_accumulate(const struct hpo__gstep *s, size_t lo, size_t hi, double *acc);
double hpo__gstep_dot(const struct hpo__gstep *s, size_t lo, size_t hi, const double *other,
        double sum);
double hpo__gstep_abs_sum(const struct hpo__gstep *s, size_t lo, size_t hi, double sum);

#endif
