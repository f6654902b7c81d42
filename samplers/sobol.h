/*
** sobol.h: Sobol sequences shared by the gp and qmc samplers (private to
** samplers/; docs/ALGORITHMS.md §2 and §13): Joe-Kuo direction numbers
** (sobol-table.h), 32-bit points, Matousek's linear matrix scramble.
*/
#ifndef HPO_SAMPLERS_SOBOL_H
#define HPO_SAMPLERS_SOBOL_H

#include <stddef.h>
#include <stdint.h>

struct hpo_rng;

#define HPO_SOBOL_BITS 32

/* Dimensions with direction numbers (more are not supported). */
#define HPO_SOBOL_MAX_DIM 1024

/* The direction numbers V[b], b = 0..31 (top-aligned), of dimension j < HPO_SOBOL_MAX_DIM. */
void hpo_sobol_directions(size_t j, uint32_t *v);

/*
** Scramble one dimension's direction numbers in place with a random
** lower-triangular matrix (unit diagonal) over GF(2): 32 draws from rng.
*/
void hpo_sobol_scramble(uint32_t *v, struct hpo_rng *rng);

/*
** Point k (0-based, Gray-code order) of one dimension with direction numbers
** v: the XOR of v[b] over the set bits b of k ^ (k >> 1). Multiply by 2^-32
** for the coordinate; XOR a digital shift first when scrambling.
*/
uint32_t hpo_sobol_point(const uint32_t *v, uint64_t k);

#endif
