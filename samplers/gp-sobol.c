/*
** gp-sobol.c: scrambled Sobol points for the gp sampler's candidate pool
** (docs/ALGORITHMS.md §2): Joe-Kuo direction numbers (gp-sobol-table.h),
** Gray-code order, Matousek's random linear matrix scramble plus a digital
** shift (the same randomization as scipy.stats.qmc.Sobol(scramble=True)).
*/
#include <errno.h>
#include <stdlib.h>

#include "../core/rng.h"
#include "gp-sobol-table.h"
#include "gp.h"

#define SOBOL_BITS 32

static int bit_length(unsigned v)
{
    int n = 0;

    while (v != 0) {
        v >>= 1;
        n++;
    }
    return n;
}

/* Direction numbers V[b] (already shifted to the top bits) of dimension j. */
static void direction_numbers(size_t j, uint32_t *v)
{
    uint32_t mv[SOBOL_BITS];
    unsigned p = gp_sobol_poly[j];
    int deg = bit_length(p) - 1;

    if (j == 0) {
        for (int b = 0; b < SOBOL_BITS; b++) {
            v[b] = (uint32_t)1 << (SOBOL_BITS - 1 - b);
        }
        return;
    }
    for (int b = 0; b < deg; b++) {
        mv[b] = gp_sobol_minit[j][b];
    }
    /* Bratley & Fox (1988), as scipy's _initialize_direction_numbers. */
    for (int b = deg; b < SOBOL_BITS; b++) {
        uint32_t nv = mv[b - deg];
        uint32_t pow2 = 1;
        for (int k = 0; k < deg; k++) {
            pow2 <<= 1;
            if ((p >> (deg - 1 - k)) & 1u) {
                nv ^= pow2 * mv[b - k - 1];
            }
        }
        mv[b] = nv;
    }
    for (int b = 0; b < SOBOL_BITS; b++) {
        v[b] = mv[b] << (SOBOL_BITS - 1 - b);
    }
}

/* Parity of a 32-bit word. */
static uint32_t parity32(uint32_t v)
{
    return (uint32_t)__builtin_parity(v);
}

/*
** Linear matrix scramble: output bit r (counted from the top) is the parity
** of row r of a random lower-triangular matrix with unit diagonal times the
** input bits 0..r. It keeps the digital net property.
*/
static void scramble_directions(uint32_t *v, struct hpo_rng *rng)
{
    uint32_t rows[SOBOL_BITS];

    for (int r = 0; r < SOBOL_BITS; r++) {
        uint32_t below = (uint32_t)hpo_rng_next(rng);
        /* Columns 0..r-1 random (top bits), column r set, the rest zero. */
        uint32_t mask = r == 0 ? 0 : ~(uint32_t)0 << (SOBOL_BITS - r);
        rows[r] = (below & mask) | ((uint32_t)1 << (SOBOL_BITS - 1 - r));
    }
    for (int b = 0; b < SOBOL_BITS; b++) {
        uint32_t out = 0;
        for (int r = 0; r < SOBOL_BITS; r++) {
            out |= parity32(rows[r] & v[b]) << (SOBOL_BITS - 1 - r);
        }
        v[b] = out;
    }
}

int hpo_gp_sobol(size_t dim, size_t count, bool scramble, struct hpo_rng *rng, double *out)
{
    uint32_t v[SOBOL_BITS];

    for (size_t j = 0; j < dim; j++) {
        uint32_t x = 0, shift = 0;
        if (j >= GP_SOBOL_MAX_DIM) {
            for (size_t i = 0; i < count; i++) {
                out[i * dim + j] = hpo_rng_uniform(rng);
            }
            continue;
        }
        direction_numbers(j, v);
        if (scramble) {
            scramble_directions(v, rng);
            shift = (uint32_t)hpo_rng_next(rng);
        }
        for (size_t i = 0; i < count; i++) {
            out[i * dim + j] = (double)(x ^ shift) * (1.0 / 4294967296.0);
            /* Gray code: the next point flips direction number ctz(~i). */
            x ^= v[__builtin_ctzll(~(unsigned long long)i) % SOBOL_BITS];
        }
    }
    return 0;
}
