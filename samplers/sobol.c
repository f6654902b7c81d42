/*
** sobol.c: Sobol direction numbers and the linear matrix scramble, shared by
** gp-sobol.c (gp's candidate pool) and qmc.c (docs/ALGORITHMS.md §2).
*/
#include <stdint.h>

#include "../core/rng.h"
#include "sobol-table.h"
#include "sobol.h"

_Static_assert(SOBOL_MAX_DIM == HPO_SOBOL_MAX_DIM, "sobol-table.h and sobol.h disagree");

static int bit_length(unsigned v)
{
    int n = 0;

    while (v != 0) {
        v >>= 1;
        n++;
    }
    return n;
}

void hpo_sobol_directions(size_t j, uint32_t *v)
{
    uint32_t mv[HPO_SOBOL_BITS];
    unsigned p = sobol_poly[j];
    int deg = bit_length(p) - 1;

    if (j == 0) {
        for (int b = 0; b < HPO_SOBOL_BITS; b++) {
            v[b] = (uint32_t)1 << (HPO_SOBOL_BITS - 1 - b);
        }
        return;
    }
    for (int b = 0; b < deg; b++) {
        mv[b] = sobol_minit[j][b];
    }
    /* Bratley & Fox (1988), as scipy's _initialize_direction_numbers. */
    for (int b = deg; b < HPO_SOBOL_BITS; b++) {
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
    for (int b = 0; b < HPO_SOBOL_BITS; b++) {
        v[b] = mv[b] << (HPO_SOBOL_BITS - 1 - b);
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
void hpo_sobol_scramble(uint32_t *v, struct hpo_rng *rng)
{
    uint32_t rows[HPO_SOBOL_BITS];

    for (int r = 0; r < HPO_SOBOL_BITS; r++) {
        uint32_t below = (uint32_t)hpo_rng_next(rng);
        /* Columns 0..r-1 random (top bits), column r set, the rest zero. */
        uint32_t mask = r == 0 ? 0 : ~(uint32_t)0 << (HPO_SOBOL_BITS - r);
        rows[r] = (below & mask) | ((uint32_t)1 << (HPO_SOBOL_BITS - 1 - r));
    }
    for (int b = 0; b < HPO_SOBOL_BITS; b++) {
        uint32_t out = 0;
        for (int r = 0; r < HPO_SOBOL_BITS; r++) {
            out |= parity32(rows[r] & v[b]) << (HPO_SOBOL_BITS - 1 - r);
        }
        v[b] = out;
    }
}

uint32_t hpo_sobol_point(const uint32_t *v, uint64_t k)
{
    uint64_t g = k ^ (k >> 1);
    uint32_t x = 0;

    for (int b = 0; g != 0 && b < HPO_SOBOL_BITS; b++, g >>= 1) {
        if (g & 1u) {
            x ^= v[b];
        }
    }
    return x;
}
