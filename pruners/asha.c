/*
** asha.c: successive halving (docs/ALGORITHMS.md §6.2; Optuna's
** SuccessiveHalvingPruner), API name `asha`, and the engine hyperband.c
** runs once per bracket.
**
** Rung values are derived from the stored reports (a trial's rung-k value is
** its value at its first report at or beyond r_k), kept per rung in a sorted
** array updated through observe(), so a decision costs O(log n). Being
** derived, they are the same after a restart, and a repeated report is
** decided again on the same history (Optuna answers "continue" then). Trials
** of every state compete; a NaN rung value prunes and is never a competitor.
**
** min_resource "auto" is fixed at the first decision that sees a complete
** trial with reports (Optuna's moment): max(last step) // 100, at least 1.
** Reports made before that count as rung values too (Optuna drops them). The
** fixed value is not stored: after a restart it is computed again, from the
** complete trials at the first decision.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/history.h"
#include "pruner-int.h"
#include "pruner.h"

/* a * b, or INT64_MAX when it would overflow (both >= 1). */
static int64_t mul_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_mul_overflow(a, b, &r)) {
        return INT64_MAX;
    }
    return r;
}

void hpo__sha_init(struct hpo__sha *sha, int64_t min_resource, int64_t eta, int64_t rate,
        int64_t bootstrap_count)
{
    int64_t r = min_resource;

    memset(sha, 0, sizeof(*sha));
    sha->eta = eta;
    sha->bootstrap_count = bootstrap_count;
    for (int64_t i = 0; i < rate && r != INT64_MAX; i++) {
        r = mul_sat(r, eta);
    }
    /* A rung whose step does not fit in int64 can never be reached. */
    while (r != INT64_MAX && sha->n_rungs < HPO_SHA_MAX_RUNGS) {
        sha->rung_step[sha->n_rungs++] = r;
        r = mul_sat(r, eta);
    }
}

void hpo__sha_finish(struct hpo__sha *sha)
{
    for (size_t k = 0; k < HPO_SHA_MAX_RUNGS; k++) {
        hpo__dvec_finish(&sha->rung[k]);
    }
    for (size_t i = 0; i < sha->n_recs; i++) {
        free(sha->recs[i].val);
    }
    free(sha->recs);
    sha->recs = NULL;
    sha->n_recs = 0;
}

/* The value of t's first report at or beyond `step`, which exists. */
static double value_from(const struct hpo_trial *t, int64_t step)
{
    size_t lo = 0, hi = t->n_reports;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->reports[mid].step < step) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return t->reports[lo].value;
}

static bool same_value(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

int hpo__sha_sync(struct hpo__sha *sha, const struct hpo_trial *t)
{
    const struct hpo_report *last = hpo_trial_last_report(t);
    size_t num = (size_t)t->number;
    struct hpo__sha_rec *rec;
    size_t k;
    int r;

    if (last == NULL) {
        return 0;
    }
    if (num >= sha->n_recs) {
        size_t n = sha->n_recs ? sha->n_recs : 64;
        struct hpo__sha_rec *nr;
        while (n <= num) {
            n *= 2;
        }
        nr = realloc(sha->recs, n * sizeof(*nr));
        if (nr == NULL) {
            return -ENOMEM;
        }
        memset(&nr[sha->n_recs], 0, (n - sha->n_recs) * sizeof(*nr));
        sha->recs = nr;
        sha->n_recs = n;
    }
    rec = &sha->recs[num];
    for (k = 0; k < sha->n_rungs && sha->rung_step[k] <= last->step; k++) {
        double v = value_from(t, sha->rung_step[k]);
        if (k < rec->n) {
            /* Only an out-of-order report can change a recorded rung value. */
            if (!same_value(v, rec->val[k])) {
                if (!isnan(rec->val[k])) {
                    hpo__dvec_remove(&sha->rung[k], rec->val[k]);
                }
                rec->val[k] = NAN;
                if (!isnan(v)) {
                    r = hpo__dvec_insert(&sha->rung[k], v);
                    if (r < 0) {
                        return r;
                    }
                }
                rec->val[k] = v;
            }
            continue;
        }
        if (rec->n == rec->cap) {
            uint32_t cap = rec->cap ? rec->cap * 2 : 4;
            double *nv = realloc(rec->val, cap * sizeof(*nv));
            if (nv == NULL) {
                return -ENOMEM;
            }
            rec->val = nv;
            rec->cap = cap;
        }
        /* A NaN rung value prunes its trial and is never a competitor (as Optuna). */
        if (!isnan(v)) {
            r = hpo__dvec_insert(&sha->rung[k], v);
            if (r < 0) {
                return r;
            }
        }
        rec->val[rec->n++] = v;
    }
    return 0;
}

bool hpo__sha_decide(const struct hpo__sha *sha, const struct hpo_trial *t, bool maximize)
{
    const struct hpo_report *last = hpo_trial_last_report(t);
    int64_t prev;
    size_t k = 0;
    double v;

    if (last == NULL) {
        return false;
    }
    /* Rungs at or below an earlier report were judged then; start above them. */
    prev = hpo__second_last_step(t);
    while (k < sha->n_rungs && sha->rung_step[k] <= prev) {
        k++;
    }
    v = last->value;
    for (; k < sha->n_rungs && sha->rung_step[k] <= last->step; k++) {
        const struct hpo__dvec *w = &sha->rung[k];
        size_t i;

        if (isnan(v)) {
            return true;
        }
        /* w already holds t's own value for this rung (synced), so n >= 1. */
        if ((int64_t)w->n <= sha->bootstrap_count) {
            return true;
        }
        if (w->n == 0) {
            continue;
        }
        i = w->n / (size_t)sha->eta;
        i = i >= 1 ? i - 1 : 0;
        if (maximize ? v < w->v[w->n - 1 - i] : v > w->v[i]) {
            return true;
        }
    }
    return false;
}

/* The `asha` pruner: one engine, created once min_resource is known. */
struct asha {
    int64_t min_resource; /* 0: "auto" */
    int64_t eta, rate, bootstrap_count;
    bool ready; /* engine built (min_resource fixed) */
    int64_t fixed_min_resource;
    struct hpo__sha sha;
    size_t n_seen; /* trials [0, n_seen) were synced at least once */
};

static int asha_configure(const json_t *options, void **state, struct hpo_error *err)
{
    static const char *const allowed[] = { "min_resource", "reduction_factor",
        "min_early_stopping_rate", "bootstrap_count", NULL };
    long long min_resource, eta, rate, boot;
    struct asha *a;
    int r;

    r = hpo_options_check_keys(options, allowed, "pruner", err);
    if (r < 0) {
        return r;
    }
    r = hpo__option_int_or_auto(options, "min_resource", true, 0, 1, INT64_MAX, &min_resource,
            err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "reduction_factor", "pruner", 4, 2, INT32_MAX, &eta, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "min_early_stopping_rate", "pruner", 0, 0, 62, &rate, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "bootstrap_count", "pruner", 0, 0, INT32_MAX, &boot, err);
    if (r < 0) {
        return r;
    }
    if (boot > 0 && min_resource == 0) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "pruner.bootstrap_count",
                "pruner.bootstrap_count must be 0 when pruner.min_resource is \"auto\"");
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    a->min_resource = min_resource;
    a->eta = eta;
    a->rate = rate;
    a->bootstrap_count = boot;
    *state = a;
    return 0;
}

static json_t *asha_describe(const void *state)
{
    const struct asha *a = state;

    return json_pack("{s:o, s:I, s:I, s:I}", "min_resource",
            a->min_resource ? json_integer(a->min_resource) : json_string("auto"),
            "reduction_factor", (json_int_t)a->eta, "min_early_stopping_rate",
            (json_int_t)a->rate, "bootstrap_count", (json_int_t)a->bootstrap_count);
}

/*
** Fix min_resource: the given one, or for "auto" max(last step of complete
** trials) // 100, at least 1, computed at the first decision that sees a
** complete trial with reports (when Optuna computes it). Returns false while
** it is still unknown.
*/
static bool asha_ready(struct asha *a, const struct hpo_history *h)
{
    int64_t m = a->min_resource;

    if (a->ready) {
        return true;
    }
    if (m == 0) {
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
        m = max_step / 100 > 1 ? max_step / 100 : 1;
    }
    hpo__sha_init(&a->sha, m, a->eta, a->rate, a->bootstrap_count);
    a->fixed_min_resource = m;
    a->ready = true;
    a->n_seen = 0;
    return true;
}

/* Sync every trial not seen yet (new ones, or all after the engine was built). */
static int asha_catch_up(struct asha *a, const struct hpo_history *h)
{
    for (; a->n_seen < h->n_trials; a->n_seen++) {
        int r = hpo__sha_sync(&a->sha, h->trials[a->n_seen]);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static int asha_decide(void *state, const struct hpo_history *history, size_t trial, int64_t step,
        bool *ret_prune, struct hpo_error *err)
{
    struct asha *a = state;
    const struct hpo_trial *t = history->trials[trial];
    int r;

    if (!asha_ready(a, history)) {
        *ret_prune = false;
        return 0;
    }
    r = asha_catch_up(a, history);
    if (r == 0) {
        r = hpo__sha_sync(&a->sha, t);
    }
    if (r < 0) {
        return hpo_error_set(err, r, HPO_INTERNAL, NULL, "out of memory in the asha pruner");
    }
    *ret_prune = hpo__sha_decide(&a->sha, t, history->maximize);
    return 0;
}

static void asha_observe(void *state, const struct hpo_history *history, size_t trial,
        int64_t step)
{
    struct asha *a = state;

    /* With min_resource "auto" nothing is kept before a decision fixes it. */
    if (!a->ready && (a->min_resource == 0 || !asha_ready(a, history))) {
        return;
    }
    /* On OOM the trial is synced again at its next decision. */
    (void)hpo__sha_sync(&a->sha, history->trials[trial]);
}

static void asha_destroy(void *state)
{
    struct asha *a = state;

    if (a == NULL) {
        return;
    }
    hpo__sha_finish(&a->sha);
    free(a);
}

const struct hpo_pruner_type hpo_pruner_asha = {
    .name = "asha",
    .options_schema = "{\"min_resource\": {\"type\": \"integer|auto\", \"default\": \"auto\", "
                      "\"min\": 1}, "
                      "\"reduction_factor\": {\"type\": \"integer\", \"default\": 4, \"min\": 2}, "
                      "\"min_early_stopping_rate\": {\"type\": \"integer\", \"default\": 0, "
                      "\"min\": 0, \"max\": 62}, "
                      "\"bootstrap_count\": {\"type\": \"integer\", \"default\": 0, \"min\": 0}}",
    .configure = asha_configure,
    .describe = asha_describe,
    .decide = asha_decide,
    .observe = asha_observe,
    .destroy = asha_destroy,
};
