/*
** prior.h: the trials of earlier studies a warm-started study learns from
** (docs/ALGORITHMS.md §12, docs/API.md "Warm start").
**
** The service reads the prior studies once (at the study's first ask),
** keeps the trials whose params fit this study's space, maps them into it
** and hands them to the sampler's warm() (sampler.h). Everything here is
** in the *current* study's space: values form and unit coordinates of
** space->dim coordinates, NaN where the prior study has no compatible
** param of that name (or it was inactive), and losses already oriented so
** that smaller is better in this study's direction.
*/
#ifndef HPO_SAMPLERS_PRIOR_H
#define HPO_SAMPLERS_PRIOR_H

#include <stddef.h>

/* One prior study's usable complete trials, in order of trial number. */
struct hpo_prior_study {
    size_t n;
    double *values; /* n x dim (values form) */
    double *unit;   /* n x dim (unit coordinates) */
    double *loss;   /* n losses (minimized), finite */
};

/* The prior studies in the order the study named them (oldest first); only those with trials. */
struct hpo_prior {
    size_t dim;
    size_t n_studies;
    struct hpo_prior_study *studies;
    size_t n_total; /* trials over every study */
};

/* Free a prior and its studies; accepts NULL. */
void hpo_prior_free(struct hpo_prior *p);

#endif
