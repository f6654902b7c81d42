/*
** mo.h: the numerical core of multi-objective optimization (docs/ALGORITHMS.md
** §9): losses and constraint violations, constrained domination,
** non-dominated ranks, crowding distance, elite selection, hypervolume and
** hypervolume contributions, and NSGA-II child generation as a pure function
** of the finished trials.
**
** Conventions. A loss vector has `m` objectives, all minimized (a maximized
** objective's value is negated, hpo_mo_loss). Sets of loss vectors are
** row-major arrays `loss[i * m + k]`; losses are never NaN (hpo_mo_loss
** maps a missing value to +inf). A violation is >= 0, 0 meaning feasible;
** +inf for a trial that lacks a declared constraint. Nothing here
** allocates except where a function says so (then it returns -ENOMEM on
** failure and leaves its outputs untouched); everything is thread-safe on
** distinct data and deterministic.
*/
#ifndef HPO_CORE_MO_H
#define HPO_CORE_MO_H

#include <stddef.h>
#include <stdint.h>

/* The most objectives a study may have (the REST contract: 1-8). */
#define HPO_MO_MAX_OBJECTIVES 8

/* ---- losses and constraints (mo.c) ---- */

/*
** The loss vector of told values: `loss[k] = values[k]`, negated where
** `maximize[k]` is nonzero; a NaN value (missing) becomes +inf, as Optuna's
** _normalize_value does for None.
*/
void hpo_mo_loss(const double *values, const unsigned char *maximize, unsigned m,
        double *ret_loss);

/*
** Optuna's constraint value of one declared constraint `{"min": lo, "max": hi}`
** (pass -inf / +inf for a missing bound) told as `c`: max(c - hi, lo - c),
** feasible iff <= 0. A NaN `c` (not told) gives +inf.
*/
double hpo_mo_constraint_value(double c, double lo, double hi);

/*
** The total violation of `n` constraint values (Optuna's convention: value
** <= 0 is satisfied): sum of max(value, 0); +inf if any value is NaN or +inf.
** 0 means feasible.
*/
double hpo_mo_violation(const double *cvalues, size_t n);

/* Nonzero iff a dominates b: a <= b in every objective and a != b (docs/ALGORITHMS.md §9.1). */
int hpo_mo_dominates(const double *a, const double *b, unsigned m);

/*
** Constrained domination (docs/ALGORITHMS.md §9.1): a feasible beats an infeasible; of two
** infeasible the smaller violation wins; of two feasible, hpo_mo_dominates.
*/
int hpo_mo_constrained_dominates(const double *a, double va, const double *b, double vb,
        unsigned m);

/* ---- ranks, crowding, selection (mo.c) ---- */

/*
** Non-dominated rank of each of the `n` loss vectors (0 = Pareto front).
** With `violation` (may be NULL: all feasible), feasible points are ranked
** among themselves 0..K and infeasible ones get K+1 + the dense rank of
** their violation (equal violations share a rank), which is the ranking
** Deb's sort gives under constrained domination. Identical vectors share
** a rank. When `n_stop` > 0, ranking stops once at least n_stop points are
** ranked and the rest get one rank more than the last one assigned (TPE).
** Cost O(n log n) for m <= 2, O(m n^2) worst case otherwise.
** Returns 0 or -ENOMEM.
*/
int hpo_mo_rank(const double *loss, size_t n, unsigned m, const double *violation,
        size_t n_stop, size_t *ret_rank);

/*
** Optuna's crowding distance (_calc_crowding_distance, docs/ALGORITHMS.md §9.3) of the `k`
** points idx[0..k-1] of `loss`, written to ret_dist[0..k-1]. `order` (k
** entries) is in: the initial order of the points (positions 0..k-1 in any
** permutation); out: the order after the last objective's stable sort,
** which breaks ties when sorting by distance. Returns 0 or -ENOMEM.
*/
int hpo_mo_crowding(const double *loss, unsigned m, const size_t *idx, size_t k,
        double *ret_dist, size_t *order);

/*
** Elite selection (NSGA-II, docs/ALGORITHMS.md §9.3): choose min(p, n) of the `n` points: whole
** ranks (hpo_mo_rank with `violation`, may be NULL) while they fit, then the
** straddling rank by crowding distance, largest first (ties: reverse of the
** order after the last objective's sort, starting from index order).
** ret_idx gets the chosen indices, by rank, and within the last rank in
** selection order. Returns the number chosen, or -ENOMEM.
*/
long hpo_mo_select(const double *loss, size_t n, unsigned m, const double *violation, size_t p,
        size_t *ret_idx);

/*
** The feasible Pareto front (what GET .../best and .../pareto return): the
** indices of the points with violation <= 0 (all when `violation` is NULL)
** that no other feasible point dominates, ascending (duplicates all
** included). With no feasible point the front is empty. Writes up to n
** indices to ret_idx and returns their count, or -ENOMEM.
*/
long hpo_mo_front(const double *loss, size_t n, unsigned m, const double *violation,
        size_t *ret_idx);

/* ---- hypervolume (mo-hv.c) ---- */

/*
** Hypervolume of the `n` loss vectors w.r.t. the reference point `ref`
** (docs/ALGORITHMS.md §9.4): the measure of {z : some point p <= z <= ref}. Points that are
** not strictly below ref in every objective (or have a NaN) add nothing and
** are ignored. If a point remains and ref or the point has an infinite
** coordinate, the result is +inf. Exact: m = 1 trivially, m = 2 by sort and
** sweep (O(n log n)), m = 3 by a sweep over the third objective keeping the
** 2-D staircase in a sorted array (O(n^2) worst case, O(n log n) when the
** front stays small), m >= 4 by WFG reducing one objective per level
** down to the 3-D sweep. Returns 0 or -ENOMEM.
*/
int hpo_mo_hypervolume(const double *loss, size_t n, unsigned m, const double *ref,
        double *ret_hv);

/*
** Exclusive hypervolume contribution of every point: HV(S) - HV(S \ {p}),
** 0 for points dominated by or equal to another point, or not below ref.
** Computed as prod(ref - p) - HV({max(p, q) : q != p}). Returns 0 or -ENOMEM.
*/
int hpo_mo_hv_contributions(const double *loss, size_t n, unsigned m, const double *ref,
        double *ret_contrib);

/*
** Optuna's reference point for a set (TPE and HSSP, docs/ALGORITHMS.md §9.4): per objective
** w = the worst (largest) finite loss, ref = max(1.1 w, 0.9 w), 0 -> 1e-12.
*/
void hpo_mo_reference_point(const double *loss, size_t n, unsigned m, double *ret_ref);

/*
** The study's default reference point (REST contract, GET .../pareto): per
** objective the worst feasible loss plus `frac` (0.1) of the feasible
** range, `max + frac (max - min)`. Returns 0, or -ENOENT when no point is
** feasible (ret_ref untouched), -EINVAL for m > HPO_MO_MAX_OBJECTIVES.
*/
int hpo_mo_nadir_reference(const double *loss, size_t n, unsigned m, const double *violation,
        double frac, double *ret_ref);

/*
** Greedy hypervolume subset selection (Optuna _solve_hssp, docs/ALGORITHMS.md §9.4): pick `k`
** of the `n` points (k <= n), each time the one with the largest
** HV(S + p) - HV(S) (lowest index on ties, so a duplicate of a chosen point
** comes last); with an infinite ref, the first k. Writes the chosen
** indices, in order of choice, to ret_idx. Returns 0 or -ENOMEM.
*/
int hpo_mo_hssp(const double *loss, size_t n, unsigned m, const double *ref, size_t k,
        size_t *ret_idx);

/* ---- NSGA-II (mo-nsga2.c) ---- */

struct hpo_nsga2_options {
    size_t population_size; /* P >= 2; Optuna default 50 */
    double crossover_prob;  /* 0.9 */
    double swapping_prob;   /* 0.5 (uniform crossover) */
    double mutation_prob;   /* < 0: 1 / max(1, d) */
    int constrained;        /* use constrained domination on `violation` */
};

/* Optuna's NSGAIISampler defaults. */
void hpo_nsga2_defaults(struct hpo_nsga2_options *opt);

/*
** One finished (complete) trial, as the service knows it. All pointers are
** borrowed for the duration of a call.
*/
struct hpo_mo_trial {
    uint64_t number;   /* trial number */
    uint64_t told_at;  /* trials asked (the next trial number) when it was told; 0 = unknown */
    const double *loss; /* m losses (hpo_mo_loss) */
    double violation;  /* hpo_mo_violation; ignored unless opt->constrained */
    const double *u;   /* d unit-cube coordinates; NaN = not set (inactive) */
};

/* What hpo_nsga2_child did. */
struct hpo_nsga2_child {
    uint64_t generation; /* number / population_size */
    int kind;            /* 0 random (no parents), 1 crossover, 2 copy of one parent */
    uint64_t parent[2];  /* trial numbers (kind 1: both; kind 2: parent[0]) */
    unsigned n_mutated;  /* coordinates resampled (mutation or parent coordinate unset) */
};

/*
** The parent population of generation `generation` (docs/ALGORITHMS.md
** §9.5 states the rule): the trial numbers of the elite after selections
** 0..generation-1, where selection s takes the elite of s-1 plus every
** trial of a generation <= s told before trial (s+1)*P was asked and not
** yet seen by an earlier selection. `trials` may be in any order (duplicate
** numbers are an error: -EINVAL). Writes up to P numbers to ret_numbers
** (room for P) in selection order and their count to *ret_count.
** Returns 0, -EINVAL or -ENOMEM.
*/
int hpo_nsga2_parents(const struct hpo_nsga2_options *opt, const struct hpo_mo_trial *trials,
        size_t n, unsigned m, uint64_t generation, uint64_t *ret_numbers, size_t *ret_count);

/*
** The unit-cube point (d coordinates) NSGA-II proposes for trial `number`,
** drawn from hpo_rng_init(seed, number): generation g = number / P; with no
** parents (g = 0, or nothing told yet) every coordinate is uniform;
** otherwise crossover (binary tournaments by (constrained) domination,
** uniform crossover) with probability crossover_prob, else a copy of a
** random parent; then each coordinate is resampled with mutation_prob. The
** result depends only on (opt, seed, number) and the trials told before
** trial g*P was asked, so workers finishing in any order and a rebuild
** after a restart give the same point. ret_info may be NULL.
** Returns 0, -EINVAL or -ENOMEM.
*/
int hpo_nsga2_child(const struct hpo_nsga2_options *opt, const struct hpo_mo_trial *trials,
        size_t n, unsigned m, unsigned d, uint64_t seed, uint64_t number, double *ret_u,
        struct hpo_nsga2_child *ret_info);

#endif
