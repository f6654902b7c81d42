/*
** cmaes.h: a read-only view of the cmaes sampler's state, for its unit tests
** (private to samplers/ and tests/; the service uses only sampler.h).
*/
#ifndef HPO_SAMPLERS_CMAES_H
#define HPO_SAMPLERS_CMAES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hpo_cmaes_view {
    size_t n;        /* dimensions CMA-ES models */
    bool separable;  /* C is diagonal: cov holds n numbers, else n x n row-major */
    int lambda;      /* population size of the current run */
    int64_t restarts;   /* IPOP restarts so far */
    int64_t generation; /* updates in the current run */
    double sigma;
    const double *mean, *cov, *p_sigma, *p_c;
    const double *margin_scale; /* per-dimension A of the integer margin (1 when none) */
    size_t n_members;           /* trials asked in the current generation */
};

/* Fill *ret with pointers into the state (valid until the sampler is next called). */
void hpo_cmaes_inspect(const void *state, struct hpo_cmaes_view *ret);

#endif
