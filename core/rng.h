/*
** rng.h: the seeded generator (SplitMix64 seeding xoshiro256**).
**
** Each trial gets its own stream derived from (study seed, trial number), so
** a suggestion never depends on thread timing or on other studies.
*/
#ifndef HPO_CORE_RNG_H
#define HPO_CORE_RNG_H

#include <stdint.h>

struct hpo_rng {
    uint64_t s[4];
};

/* Seed `rng` from a 64-bit seed with SplitMix64. */
void hpo_rng_seed(struct hpo_rng *rng, uint64_t seed);

/* Seed `rng` for trial `number` of a study with seed `seed` (a distinct stream per pair). */
void hpo_rng_init(struct hpo_rng *rng, uint64_t seed, uint64_t number);

/* The next 64 random bits. */
uint64_t hpo_rng_next(struct hpo_rng *rng);

/* A double uniform in [0, 1), 53 random bits. */
double hpo_rng_uniform(struct hpo_rng *rng);

/* An integer uniform in [0, n), without modulo bias; n must be >= 1. */
uint64_t hpo_rng_below(struct hpo_rng *rng, uint64_t n);

/* A standard normal variate (Box-Muller, polar form). */
double hpo_rng_normal(struct hpo_rng *rng);

/* SplitMix64's mixing step on its own, for hashing seeds. */
uint64_t hpo_splitmix64(uint64_t *state);

#endif
