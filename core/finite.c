/* SPDX-License-Identifier: MIT */
/*
** finite.c: hpo_first_nonfinite (see finite.h).
**
** A double is not finite when its 11 exponent bits are all ones. Adding
** 2^52 to the exponent field alone carries into bit 63 exactly then, so OR
** of those sums over a block has bit 63 set iff the block holds such an
** element: 64-bit and/add/or, which every x86-64 vector unit has (unlike a
** 64-bit compare in SSE2, or a floating-point compare the compiler keeps
** scalar for its exceptions). A block with one is scanned again with
** isfinite() for the exact index.
*/
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "finite.h"

#define EXP_BITS ((uint64_t)0x7ff << 52)
#define EXP_ONE ((uint64_t)1 << 52)
#define BLOCK 512

size_t hpo_first_nonfinite(const double *x, size_t n)
{
    size_t i = 0;

    for (; n - i >= BLOCK; i += BLOCK) {
        uint64_t acc = 0;
        for (size_t j = 0; j < BLOCK; j++) {
            uint64_t b;
            memcpy(&b, &x[i + j], sizeof(b));
            acc |= (b & EXP_BITS) + EXP_ONE;
        }
        if (acc >> 63) {
            break;
        }
    }
    for (; i < n; i++) {
        if (!isfinite(x[i])) {
            return i;
        }
    }
    return n;
}
