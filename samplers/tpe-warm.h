/*
** tpe-warm.h: TPE with the trials of prior studies as down-weighted
** observations (docs/ALGORITHMS.md §12.2; tpe-warm.c). Called by tpe.c's
** suggest when the study was warm-started with at least one usable trial.
*/
#ifndef HPO_SAMPLERS_TPE_WARM_H
#define HPO_SAMPLERS_TPE_WARM_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/error.h"

struct hpo_history;
struct hpo_prior;
struct hpo_rng;
struct hpo_space;

/* The TPE options the warm path follows (tpe.c's, copied). */
struct hpo_tpe_warm_opts {
    long long n_startup_trials;
    long long n_ei_candidates;
    bool multivariate;
    bool constant_liar;
    double prior_weight;
    bool consider_magic_clip;
    bool consider_endpoints;
};

/* The weight factor of a prior study's kernels after n_cur finished trials of this one. */
double hpo_tpe_warm_omega(size_t n_cur);

/*
** Suggest with the prior studies' trials joined to l and g. `unit_point`
** holds a uniform random point on entry (kept while below n_startup_trials,
** counting prior trials). Returns 0 or -ENOMEM (err filled).
*/
int hpo_tpe_warm_suggest(const struct hpo_prior *prior, const struct hpo_tpe_warm_opts *o,
        const struct hpo_space *space, const struct hpo_history *h, struct hpo_rng *rng,
        double *unit_point, struct hpo_error *err);

#endif
