/*
** gp-sobol.c: scrambled Sobol points for the gp sampler's candidate pool
** (docs/ALGORITHMS.md §2): the shared generator of sobol.c in Gray-code
** order, Matousek's random linear matrix scramble plus a digital shift (the
** same randomization as scipy.stats.qmc.Sobol(scramble=True)).
*/
#include <errno.h>
#include <stdlib.h>

#include "../core/rng.h"
#include "gp.h"
#include "sobol.h"

int hpo_gp_sobol(size_t dim, size_t count, bool scramble, struct hpo_rng *rng, double *out)
{
    uint32_t v[HPO_SOBOL_BITS];

    for (size_t j = 0; j < dim; j++) {
        uint32_t x = 0, shift = 0;
        if (j >= HPO_SOBOL_MAX_DIM) {
            for (size_t i = 0; i < count; i++) {
                out[i * dim + j] = hpo_rng_uniform(rng);
            }
            continue;
        }
        hpo_sobol_directions(j, v);
        if (scramble) {
            hpo_sobol_scramble(v, rng);
            shift = (uint32_t)hpo_rng_next(rng);
        }
        for (size_t i = 0; i < count; i++) {
            out[i * dim + j] = (double)(x ^ shift) * (1.0 / 4294967296.0);
            /* Gray code: the next point flips direction number ctz(~i). */
            x ^= v[__builtin_ctzll(~(unsigned long long)i) % HPO_SOBOL_BITS];
        }
    }
    return 0;
}
