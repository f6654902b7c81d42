/*
** tpe-mo.h: the split of TPE for studies with several objectives or with
** constraints (docs/ALGORITHMS.md §9.4, as Optuna 3.1's TPESampler:
** _split_observation_pairs, _calculate_weights_below_for_multi_objective).
** Used by tpe.c; exposed so unit tests can check it against reference values.
*/
#ifndef HPO_SAMPLER_TPE_MO_H
#define HPO_SAMPLER_TPE_MO_H

#include <stddef.h>
#include <stdint.h>

struct hpo_history;

/* The weight of a below trial that has no hypervolume contribution (infeasible or pruned). */
#define HPO_TPE_MO_EPS 1e-12

/*
** Choose k of the n loss vectors loss[i * m + k] (m >= 2 objectives, all
** minimized): whole non-dominated ranks while they fit, then the rank that
** straddles k cut by greedy hypervolume subset selection, the reference
** point taken from that rank alone (hpo_mo_reference_point). Writes the k
** chosen indices ascending to ret_idx (all n when k >= n).
** Returns 0 or -ENOMEM.
*/
int hpo_tpe_mo_select(const double *loss, size_t n, unsigned m, size_t k, size_t *ret_idx);

/*
** The below weights of n feasible loss vectors (Optuna 3.1): the exclusive
** hypervolume contribution of each point plus 1e-12, divided by the
** largest, clipped to [0, 1], the reference point from these points
** (hpo_mo_reference_point); one point gets 1; dominated and duplicated
** points get about 1e-12 / max. When a contribution is not finite (losses
** near the double range) every weight is 1. Returns 0 or -ENOMEM.
*/
int hpo_tpe_mo_weights(const double *loss, size_t n, unsigned m, double *ret_w);

/*
** The below group of a study with several objectives or constraints
** (history->n_obj > 1 or history->n_cons > 0), chosen among its finished
** (complete or pruned) trials fin[0..n), ascending numbers:
**  1. feasible complete trials (every declared constraint told and within
**     bounds): one objective by loss (value, trial number); several by
**     hpo_tpe_mo_select;
**  2. if fewer than k: then pruned trials without constraints (several
**     objectives, no constraints declared) by (-last step, last value),
**     trials without reports last;
**  3. then the infeasible trials by total violation (a constraint not told
**     counts +inf; pruned trials of a constrained study never have their
**     constraints told), ties by trial number.
** Writes the k (k <= n, k <= 25) below trial numbers ascending to ret_below
** and, with several objectives, their weights to ret_w: hpo_tpe_mo_weights
** over the feasible complete ones, HPO_TPE_MO_EPS for the others. Returns 1
** when ret_w was written, 0 when the below group keeps TPE's default
** weights (one objective), or -ENOMEM.
*/
int hpo_tpe_mo_split(const struct hpo_history *h, const uint32_t *fin, size_t n, size_t k,
        uint32_t *ret_below, double *ret_w);

#endif
