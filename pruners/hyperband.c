/*
** hyperband.c: Hyperband (docs/ALGORITHMS.md §6.3; Optuna's HyperbandPruner):
** brackets of successive halving with min_early_stopping_rate = bracket,
** each trial sent to a bracket by crc32("<study name>_<trial number>") so
** the assignment is Optuna's.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/history.h"
#include "pruner-int.h"
#include "pruner.h"

struct hyperband {
    int64_t min_resource;
    int64_t max_resource; /* 0: "auto" */
    int64_t eta, bootstrap_count;
    bool ready;
    bool never; /* fewer than one bracket: never prune (as Optuna) */
    size_t n_brackets;
    int64_t budget[HPO_SHA_MAX_RUNGS];
    struct hpo__sha *sha; /* n_brackets engines */
    uint8_t *bracket;     /* by trial number; 0xFF: not computed */
    size_t n_bracket;
    size_t n_seen;
};

static int hyperband_configure(const json_t *options, void **state, struct hpo_error *err)
{
    static const char *const allowed[] = { "min_resource", "max_resource", "reduction_factor",
        "bootstrap_count", NULL };
    long long min_resource, max_resource, eta, boot;
    struct hyperband *hb;
    int r;

    r = hpo_options_check_keys(options, allowed, "pruner", err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "min_resource", "pruner", 1, 1, INT64_MAX, &min_resource, err);
    if (r < 0) {
        return r;
    }
    r = hpo__option_int_or_auto(options, "max_resource", true, 0, 1, INT64_MAX, &max_resource,
            err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "reduction_factor", "pruner", 3, 2, INT32_MAX, &eta, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "bootstrap_count", "pruner", 0, 0, INT32_MAX, &boot, err);
    if (r < 0) {
        return r;
    }
    if (max_resource != 0 && max_resource < min_resource) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "pruner.max_resource",
                "pruner.max_resource must be at least pruner.min_resource (%lld)",
                min_resource);
    }
    if (boot > 0 && max_resource == 0) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "pruner.bootstrap_count",
                "pruner.bootstrap_count must be 0 when pruner.max_resource is \"auto\"");
    }
    hb = calloc(1, sizeof(*hb));
    if (hb == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    hb->min_resource = min_resource;
    hb->max_resource = max_resource;
    hb->eta = eta;
    hb->bootstrap_count = boot;
    *state = hb;
    return 0;
}

static json_t *hyperband_describe(const void *state)
{
    const struct hyperband *hb = state;

    return json_pack("{s:I, s:o, s:I, s:I}", "min_resource", (json_int_t)hb->min_resource,
            "max_resource",
            hb->max_resource ? json_integer(hb->max_resource) : json_string("auto"),
            "reduction_factor", (json_int_t)hb->eta, "bootstrap_count",
            (json_int_t)hb->bootstrap_count);
}

/* ceil(n_brackets * eta^s / (s + 1)), saturated far below INT64_MAX. */
static int64_t bracket_budget(int64_t n_brackets, int64_t eta, int64_t s)
{
    const int64_t cap = INT64_C(1) << 56;
    int64_t a = n_brackets;

    for (int64_t i = 0; i < s && a < cap; i++) {
        if (__builtin_mul_overflow(a, eta, &a) || a > cap) {
            a = cap;
        }
    }
    return (a + s) / (s + 1);
}

size_t hpo__hyperband_layout(int64_t min_resource, int64_t max_resource, int64_t eta,
        int64_t budgets[HPO_SHA_MAX_RUNGS])
{
    /* Optuna: math.floor(math.log(max / min, eta)) + 1, the same double operations. */
    double nb = floor(log((double)max_resource / (double)min_resource) / log((double)eta)) + 1;
    size_t n;

    if (nb < 1) {
        return 0;
    }
    n = nb > HPO_SHA_MAX_RUNGS ? HPO_SHA_MAX_RUNGS : (size_t)nb;
    for (size_t b = 0; b < n; b++) {
        budgets[b] = bracket_budget((int64_t)n, eta, (int64_t)(n - 1 - b));
    }
    return n;
}

size_t hpo__hyperband_bracket(const int64_t *budgets, size_t n_brackets, uint32_t crc)
{
    uint64_t total = 0, n;
    size_t b;

    for (b = 0; b < n_brackets; b++) {
        total += (uint64_t)budgets[b];
    }
    n = crc % total;
    for (b = 0; b + 1 < n_brackets; b++) {
        if (n < (uint64_t)budgets[b]) {
            break;
        }
        n -= (uint64_t)budgets[b];
    }
    return b;
}

/*
** Fix max_resource ("auto": max last step of complete trials + 1, at the
** first decision that sees one, as Optuna) and build the brackets. Returns
** false while unknown, and false with *ret_r = -ENOMEM on OOM.
*/
static bool hyperband_ready(struct hyperband *hb, const struct hpo_history *h, int *ret_r)
{
    int64_t max_resource = hb->max_resource;

    *ret_r = 0;
    if (hb->ready) {
        return true;
    }
    if (max_resource == 0) {
        int64_t max_step = -1;
        if (h->count[HPO_STATE_COMPLETE] == 0) {
            return false;
        }
        for (size_t i = 0; i < h->n_trials; i++) {
            const struct hpo_trial *t = h->trials[i];
            if (t->state == HPO_STATE_COMPLETE && t->n_reports > 0 &&
                    t->reports[t->n_reports - 1].step > max_step) {
                max_step = t->reports[t->n_reports - 1].step;
            }
        }
        if (max_step < 0) {
            return false;
        }
        max_resource = max_step == INT64_MAX ? INT64_MAX : max_step + 1;
    }
    hb->n_brackets = hpo__hyperband_layout(hb->min_resource, max_resource, hb->eta, hb->budget);
    if (hb->n_brackets == 0) {
        /* max_resource < min_resource (only with "auto"): Optuna builds no bracket. */
        hb->ready = true;
        hb->never = true;
        return true;
    }
    hb->sha = calloc(hb->n_brackets, sizeof(*hb->sha));
    if (hb->sha == NULL) {
        hb->n_brackets = 0;
        *ret_r = -ENOMEM;
        return false;
    }
    for (size_t b = 0; b < hb->n_brackets; b++) {
        hpo__sha_init(&hb->sha[b], hb->min_resource, hb->eta, (int64_t)b, hb->bootstrap_count);
    }
    hb->ready = true;
    hb->n_seen = 0;
    return true;
}

/* The bracket of trial number `num` (cached). Returns -ENOMEM or the bracket. */
static int bracket_of(struct hyperband *hb, const struct hpo_history *h, size_t num)
{
    size_t b;

    if (num >= hb->n_bracket) {
        size_t cap = hb->n_bracket ? hb->n_bracket : 64;
        uint8_t *nb;
        while (cap <= num) {
            cap *= 2;
        }
        nb = realloc(hb->bracket, cap);
        if (nb == NULL) {
            return -ENOMEM;
        }
        memset(nb + hb->n_bracket, 0xFF, cap - hb->n_bracket);
        hb->bracket = nb;
        hb->n_bracket = cap;
    }
    if (hb->bracket[num] != 0xFF) {
        return hb->bracket[num];
    }
    b = hpo__hyperband_bracket(hb->budget, hb->n_brackets,
            hpo__crc32_trial(h->study_name, (int64_t)num));
    hb->bracket[num] = (uint8_t)b;
    return (int)b;
}

static int hyperband_sync(struct hyperband *hb, const struct hpo_history *h, size_t num)
{
    int b = bracket_of(hb, h, num);

    if (b < 0) {
        return b;
    }
    return hpo__sha_sync(&hb->sha[b], h->trials[num]);
}

static int hyperband_decide(void *state, const struct hpo_history *history, size_t trial,
        int64_t step, bool *ret_prune, struct hpo_error *err)
{
    struct hyperband *hb = state;
    int b, r;

    *ret_prune = false;
    if (!hyperband_ready(hb, history, &r)) {
        goto out;
    }
    if (hb->never) {
        return 0;
    }
    for (; hb->n_seen < history->n_trials; hb->n_seen++) {
        r = hyperband_sync(hb, history, hb->n_seen);
        if (r < 0) {
            goto out;
        }
    }
    r = hyperband_sync(hb, history, trial);
    if (r < 0) {
        goto out;
    }
    b = bracket_of(hb, history, trial);
    *ret_prune = hpo__sha_decide(&hb->sha[b], history->trials[trial], history->maximize);
    return 0;
out:
    if (r < 0) {
        return hpo_error_set(err, r, HPO_INTERNAL, NULL, "out of memory in the hyperband pruner");
    }
    return 0;
}

static void hyperband_observe(void *state, const struct hpo_history *history, size_t trial,
        int64_t step)
{
    struct hyperband *hb = state;
    int r;

    /* With max_resource "auto" nothing is kept before a decision fixes it. */
    if (!hb->ready && (hb->max_resource == 0 || !hyperband_ready(hb, history, &r))) {
        return;
    }
    if (hb->never) {
        return;
    }
    /* On OOM the trial is synced again at its next decision. */
    (void)hyperband_sync(hb, history, trial);
}

static void hyperband_destroy(void *state)
{
    struct hyperband *hb = state;

    if (hb == NULL) {
        return;
    }
    for (size_t b = 0; b < hb->n_brackets && hb->sha != NULL; b++) {
        hpo__sha_finish(&hb->sha[b]);
    }
    free(hb->sha);
    free(hb->bracket);
    free(hb);
}

const struct hpo_pruner_type hpo_pruner_hyperband = {
    .name = "hyperband",
    .options_schema = "{\"min_resource\": {\"type\": \"integer\", \"default\": 1, \"min\": 1}, "
                      "\"max_resource\": {\"type\": \"integer|auto\", \"default\": \"auto\", "
                      "\"min\": 1}, "
                      "\"reduction_factor\": {\"type\": \"integer\", \"default\": 3, \"min\": 2}, "
                      "\"bootstrap_count\": {\"type\": \"integer\", \"default\": 0, \"min\": 0}}",
    .configure = hyperband_configure,
    .describe = hyperband_describe,
    .decide = hyperband_decide,
    .observe = hyperband_observe,
    .destroy = hyperband_destroy,
};
