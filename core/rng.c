/*
** rng.c: SplitMix64 and xoshiro256** (Blackman and Vigna, public domain
** reference algorithms), reimplemented.
*/
#include <math.h>

#include "rng.h"

uint64_t hpo_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void hpo_rng_seed(struct hpo_rng *rng, uint64_t seed)
{
    uint64_t sm = seed;

    for (int i = 0; i < 4; i++) {
        rng->s[i] = hpo_splitmix64(&sm);
    }
}

void hpo_rng_init(struct hpo_rng *rng, uint64_t seed, uint64_t number)
{
    uint64_t sm = seed;
    uint64_t a = hpo_splitmix64(&sm);
    uint64_t sn = number ^ 0x6a09e667f3bcc909ULL;
    uint64_t b = hpo_splitmix64(&sn);

    hpo_rng_seed(rng, a ^ (b * 0x9e3779b97f4a7c15ULL) ^ (b >> 17));
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t hpo_rng_next(struct hpo_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double hpo_rng_uniform(struct hpo_rng *rng)
{
    return (double)(hpo_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t hpo_rng_below(struct hpo_rng *rng, uint64_t n)
{
    /* Rejection sampling: discard the top partial block of 2^64 mod n values. */
    uint64_t limit = -n % n;

    for (;;) {
        uint64_t r = hpo_rng_next(rng);
        if (r >= limit) {
            return r % n;
        }
    }
}

double hpo_rng_normal(struct hpo_rng *rng)
{
    for (;;) {
        double u = 2.0 * hpo_rng_uniform(rng) - 1.0;
        double v = 2.0 * hpo_rng_uniform(rng) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0) {
            return u * sqrt(-2.0 * log(s) / s);
        }
    }
}
