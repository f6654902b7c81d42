/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/*
** The index of the first of x[0..n) that is not finite (an infinity or a
** NaN), or n when every one is: what a loop of isfinite() gives, a few
** times faster (the exponent bits of a block of elements tested at once).
*/
size_t hpo_first_nonfinite(const double *x, size_t n);
