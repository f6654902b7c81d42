/*
** pruner-int.h: private to pruners/: sorted value arrays, numpy's linear
** percentile, option and CRC helpers (common.c) and the successive-halving
** engine that asha.c and hyperband.c share (docs/ALGORITHMS.md §6.2-6.4).
*/
#ifndef HPO_PRUNER_INT_H
#define HPO_PRUNER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../core/error.h"

struct hpo_history;
struct hpo_trial;

/* A growable array of doubles kept sorted ascending; never holds a NaN. */
struct hpo__dvec {
    double *v;
    size_t n, cap;
};

/* Insert x (not NaN) at its sorted place. Returns 0 or -ENOMEM. */
int hpo__dvec_insert(struct hpo__dvec *a, double x);

/* Remove one element equal to x, if there is one. */
void hpo__dvec_remove(struct hpo__dvec *a, double x);

/* Free the array; accepts a zeroed one. */
void hpo__dvec_finish(struct hpo__dvec *a);

/*
** The p-th percentile (0-100) of the n sorted values v (n >= 1), computed
** exactly as numpy 1.24's percentile(method="linear") does, operation for
** operation, so that comparisons with Optuna agree to the last bit.
*/
double hpo__percentile_sorted(const double *v, size_t n, double p);

/* The largest reported step of t below its last one, or -1 when none. */
int64_t hpo__second_last_step(const struct hpo_trial *t);

/*
** Read an option that is "auto" or an integer in [min, max]. Sets *ret to
** the integer, or to 0 for "auto" (or when absent and def_auto). Returns
** -EINVAL with err naming "pruner.<key>".
*/
int hpo__option_int_or_auto(const json_t *options, const char *key, bool def_auto,
        long long def, long long min, long long max, long long *ret, struct hpo_error *err);

/* The CRC-32 (zlib, ISO-HDLC) of "<name>_<number>", as Python's binascii.crc32. */
uint32_t hpo__crc32_trial(const char *name, int64_t number);

/* Per trial: the rung values recorded so far (rung k at index k; NaN = none). */
struct hpo__sha_rec {
    double *val;
    uint32_t n, cap;
};

/* Rungs are capped so that min_resource * eta^(rate + k) stays in int64. */
#define HPO_SHA_MAX_RUNGS 64

/*
** One successive-halving pruner (docs/ALGORITHMS.md §6.2) with a fixed
** min_resource. It keeps, per rung, a sorted array of the rung values of
** every trial it was given (any state), derived from the trials' stored
** reports: a trial's rung-k value is its value at its first report at or
** beyond step r_k = min_resource * eta^(rate + k).
*/
struct hpo__sha {
    int64_t rung_step[HPO_SHA_MAX_RUNGS]; /* r_k, ascending */
    size_t n_rungs;                       /* rungs whose step fits in int64 */
    int64_t eta;
    int64_t bootstrap_count;
    struct hpo__dvec rung[HPO_SHA_MAX_RUNGS];
    struct hpo__sha_rec *recs; /* by trial number */
    size_t n_recs;
};

/* Set up an empty engine (it allocates nothing yet). */
void hpo__sha_init(struct hpo__sha *sha, int64_t min_resource, int64_t eta, int64_t rate,
        int64_t bootstrap_count);

/* Free the engine's memory; accepts a zeroed engine. */
void hpo__sha_finish(struct hpo__sha *sha);

/*
** Bring trial t's rung values in the rung arrays in step with its reports
** (idempotent). Returns 0 or -ENOMEM.
*/
int hpo__sha_sync(struct hpo__sha *sha, const struct hpo_trial *t);

/*
** The decision for trial t at its last report, t already synced. Returns
** true for prune.
*/
bool hpo__sha_decide(const struct hpo__sha *sha, const struct hpo_trial *t, bool maximize);

/*
** Optuna's Hyperband layout for [min_resource, max_resource] and eta: fills
** budgets[b] = ceil(n * eta^s / (s + 1)), s = n - 1 - b, and returns the
** number of brackets n = floor(log(max / min) / log(eta)) + 1, computed with
** the same double operations as Python's math.log(x, base) (so 243 with eta
** 3 gives 5 brackets, as in Optuna). Returns 0 when max < min.
*/
size_t hpo__hyperband_layout(int64_t min_resource, int64_t max_resource, int64_t eta,
        int64_t budgets[HPO_SHA_MAX_RUNGS]);

/* The bracket that `crc` falls in: crc mod the sum of budgets, walked in order. */
size_t hpo__hyperband_bracket(const int64_t *budgets, size_t n_brackets, uint32_t crc);

#endif
