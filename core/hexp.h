/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/*
** hpo_exp: e^x to within 1 ulp (0.71 measured for normal results; 98.4% of
** them correctly rounded), the same bits in every build and on every path
** (scalar, SSE2, AVX2, AVX-512; no FMA, no table), so that values decoded
** with it can be recomputed bit for bit (docs/DESIGN.md "Storage and side
** files", decode versions). x above 709.78 gives +inf, below -745.14 gives
** 0 (subnormal results in between are rounded once more: still within 1
** ulp); NaN is returned for NaN.
*/
double hpo_exp(double x);

/*
** The decode of a continuous log param with hpo_exp, n coordinates:
** out[i] = low (unit <= 0), high (unit >= 1), NaN (NaN), else
** hpo_exp(ulow + unit[i] * range) clamped to [low, high]. The same bits as
** that formula one coordinate at a time (vectorized; unit and out may be
** the same array).
*/
void hpo_exp_decode(const double *unit, double *out, size_t n, double ulow, double range,
        double low, double high);

/*
** hpo_exp_decode of the unit coordinates of a log param's u = log(value):
** unit[i] = (u[i] - ulow) / range clamped to [0, 1] (NaN stays NaN), and
** out[i] its decode as hpo_exp_decode(unit, out, n, ulow, range, low,
** high) gives it: the same bits as those two passes, in one (the gradient
** sampler's ask: u read once, both written from cache-resident blocks,
** the division vectorized). u, unit and out must not overlap.
*/
void hpo_exp_decode_u(const double *u, double *unit, double *out, size_t n, double ulow,
        double range, double low, double high);

/*
** The logistic 1 / (1 + hpo_exp(-x)) clamped to [0, 1], n coordinates: the
** same bits as that formula one at a time (vectorized; x and out may be the
** same array). NaN gives NaN.
*/
void hpo_logistic_n(const double *x, double *out, size_t n);
