/*
** median.c: the median and percentile pruners (docs/ALGORITHMS.md §6.1; Optuna's
** MedianPruner and PercentilePruner), with `compare: "running_average"` for
** the Vizier median stopping rule.
**
** Per step, a sorted array of the complete trials' values at that step
** ("last") or of their running averages up to it ("running_average") is
** kept up to date through observe(), so a decision is a binary search for
** the step plus O(1) for the percentile.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/history.h"
#include "pruner-int.h"
#include "pruner.h"

enum compare {
    COMPARE_LAST = 0,
    COMPARE_RUNNING_AVERAGE = 1,
};

static const char *const compare_names[] = { "last", "running_average", NULL };

/* The complete trials' values for one step; n_nan counts NaNs left out of vals. */
struct bucket {
    int64_t step;
    struct hpo__dvec vals;
    size_t n_nan;
};

/* What the pruner has put in the buckets for one trial. */
struct rec {
    bool included;
    size_t n_reports; /* the trial's report count when included */
};

struct median {
    bool is_percentile;
    double percentile;
    int64_t n_startup_trials, n_warmup_steps, interval_steps, n_min_trials;
    enum compare compare;
    /*
    ** "last": one bucket per step reported by a complete trial.
    ** "running_average": one bucket per step decided at so far, built on first use.
    */
    struct bucket *buckets; /* sorted by step */
    size_t n_buckets, cap_buckets;
    struct rec *recs; /* by trial number */
    size_t n_recs;
    size_t n_included;
    bool dirty; /* rebuild everything at the next decision */
};

static int configure(const json_t *options, bool is_percentile, void **state,
        struct hpo_error *err)
{
    static const char *const median_keys[] = { "n_startup_trials", "n_warmup_steps",
        "interval_steps", "n_min_trials", "compare", NULL };
    static const char *const percentile_keys[] = { "percentile", "n_startup_trials",
        "n_warmup_steps", "interval_steps", "n_min_trials", "compare", NULL };
    long long startup, warmup, interval, min_trials;
    double percentile = 50.0;
    int compare;
    struct median *m;
    int r;

    r = hpo_options_check_keys(options, is_percentile ? percentile_keys : median_keys, "pruner",
            err);
    if (r < 0) {
        return r;
    }
    if (is_percentile) {
        if (options == NULL || json_object_get(options, "percentile") == NULL) {
            return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "pruner.percentile",
                    "pruner.percentile is required (a number between 0 and 100)");
        }
        r = hpo_option_double(options, "percentile", "pruner", 50.0, 0.0, 100.0, &percentile,
                err);
        if (r < 0) {
            return r;
        }
    }
    r = hpo_option_int(options, "n_startup_trials", "pruner", 5, 0, INT64_MAX, &startup, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "n_warmup_steps", "pruner", 0, 0, INT64_MAX, &warmup, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "interval_steps", "pruner", 1, 1, INT64_MAX, &interval, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "n_min_trials", "pruner", 1, 1, INT64_MAX, &min_trials, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_enum(options, "compare", "pruner", compare_names, COMPARE_LAST, &compare, err);
    if (r < 0) {
        return r;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    m->is_percentile = is_percentile;
    m->percentile = percentile;
    m->n_startup_trials = startup;
    m->n_warmup_steps = warmup;
    m->interval_steps = interval;
    m->n_min_trials = min_trials;
    m->compare = (enum compare)compare;
    *state = m;
    return 0;
}

static int median_configure(const json_t *options, void **state, struct hpo_error *err)
{
    return configure(options, false, state, err);
}

static int percentile_configure(const json_t *options, void **state, struct hpo_error *err)
{
    return configure(options, true, state, err);
}

static json_t *median_describe(const void *state)
{
    const struct median *m = state;
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:s}", "n_startup_trials",
            (json_int_t)m->n_startup_trials, "n_warmup_steps", (json_int_t)m->n_warmup_steps,
            "interval_steps", (json_int_t)m->interval_steps, "n_min_trials",
            (json_int_t)m->n_min_trials, "compare", compare_names[m->compare]);

    if (o != NULL && m->is_percentile) {
        json_object_set_new(o, "percentile", json_real(m->percentile));
    }
    return o;
}

/* The bucket index for `step`, or where to insert it (*ret_found false). */
static size_t bucket_find(const struct median *m, int64_t step, bool *ret_found)
{
    size_t lo = 0, hi = m->n_buckets;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->buckets[mid].step < step) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *ret_found = lo < m->n_buckets && m->buckets[lo].step == step;
    return lo;
}

/* The bucket for `step`, created empty if missing; NULL on OOM. */
static struct bucket *bucket_get(struct median *m, int64_t step, bool *ret_created)
{
    bool found;
    size_t at = bucket_find(m, step, &found);

    *ret_created = !found;
    if (found) {
        return &m->buckets[at];
    }
    if (m->n_buckets == m->cap_buckets) {
        size_t cap = m->cap_buckets ? m->cap_buckets * 2 : 64;
        struct bucket *nb = realloc(m->buckets, cap * sizeof(*nb));
        if (nb == NULL) {
            return NULL;
        }
        m->buckets = nb;
        m->cap_buckets = cap;
    }
    memmove(&m->buckets[at + 1], &m->buckets[at], (m->n_buckets - at) * sizeof(*m->buckets));
    memset(&m->buckets[at], 0, sizeof(*m->buckets));
    m->buckets[at].step = step;
    m->n_buckets++;
    return &m->buckets[at];
}

static int bucket_add(struct bucket *b, double x, bool add)
{
    if (isnan(x)) {
        if (add) {
            b->n_nan++;
        } else if (b->n_nan > 0) {
            b->n_nan--;
        }
        return 0;
    }
    if (add) {
        return hpo__dvec_insert(&b->vals, x);
    }
    hpo__dvec_remove(&b->vals, x);
    return 0;
}

/*
** The running average of t's values at steps <= reports[*pos...] up to
** `step`, continuing the sums in *sum / *cnt / *seen from the previous
** (smaller) step. NaN when t has no report at or below `step`, or only NaNs.
** *ret_any tells whether t has any report at or below `step`.
*/
static double running_average(const struct hpo_trial *t, int64_t step, size_t *pos, double *sum,
        size_t *cnt, bool *ret_any)
{
    while (*pos < t->n_reports && t->reports[*pos].step <= step) {
        double v = t->reports[*pos].value;
        if (!isnan(v)) {
            *sum += v;
            (*cnt)++;
        }
        (*pos)++;
    }
    *ret_any = *pos > 0;
    return *cnt ? *sum / (double)*cnt : NAN;
}

/* Add (or remove) trial t's contribution to every bucket. */
static int apply_trial(struct median *m, const struct hpo_trial *t, bool add)
{
    int r;

    if (m->compare == COMPARE_LAST) {
        for (size_t i = 0; i < t->n_reports; i++) {
            bool created;
            struct bucket *b = bucket_get(m, t->reports[i].step, &created);
            if (b == NULL) {
                return -ENOMEM;
            }
            r = bucket_add(b, t->reports[i].value, add);
            if (r < 0) {
                return r;
            }
        }
        return 0;
    }
    {
        size_t pos = 0, cnt = 0;
        double sum = 0.0;
        for (size_t k = 0; k < m->n_buckets; k++) {
            bool any;
            double avg = running_average(t, m->buckets[k].step, &pos, &sum, &cnt, &any);
            if (!any) {
                continue;
            }
            r = bucket_add(&m->buckets[k], avg, add);
            if (r < 0) {
                return r;
            }
        }
    }
    return 0;
}

static int rec_reserve(struct median *m, size_t num)
{
    size_t n = m->n_recs ? m->n_recs : 64;
    struct rec *nr;

    if (num < m->n_recs) {
        return 0;
    }
    while (n <= num) {
        n *= 2;
    }
    nr = realloc(m->recs, n * sizeof(*nr));
    if (nr == NULL) {
        return -ENOMEM;
    }
    memset(&nr[m->n_recs], 0, (n - m->n_recs) * sizeof(*nr));
    m->recs = nr;
    m->n_recs = n;
    return 0;
}

/* Bring one trial's inclusion in step with its state. */
static int sync_trial(struct median *m, const struct hpo_trial *t)
{
    bool want = t->state == HPO_STATE_COMPLETE;
    size_t num = (size_t)t->number;
    struct rec *rec;
    int r;

    r = rec_reserve(m, num);
    if (r < 0) {
        return r;
    }
    rec = &m->recs[num];
    if (rec->included && (!want || rec->n_reports != t->n_reports)) {
        if (rec->n_reports != t->n_reports) {
            /* Reports added after completion: the old set is not known, rebuild. */
            m->dirty = true;
            return 0;
        }
        r = apply_trial(m, t, false);
        rec->included = false;
        m->n_included--;
        if (r < 0) {
            return r;
        }
    }
    if (want && !rec->included) {
        /* Mark first: on OOM part is applied, so the next decision rebuilds. */
        rec->included = true;
        rec->n_reports = t->n_reports;
        m->n_included++;
        r = apply_trial(m, t, true);
        if (r < 0) {
            m->dirty = true;
            return r;
        }
    }
    return 0;
}

static void clear_all(struct median *m)
{
    for (size_t k = 0; k < m->n_buckets; k++) {
        hpo__dvec_finish(&m->buckets[k].vals);
    }
    m->n_buckets = 0;
    if (m->recs != NULL) {
        memset(m->recs, 0, m->n_recs * sizeof(*m->recs));
    }
    m->n_included = 0;
}

/*
** Make the buckets agree with the history: a full rebuild when dirty, else a
** scan when the count of complete trials shows that an observe() was missed.
*/
static int sync_all(struct median *m, const struct hpo_history *h)
{
    int r;

    if (m->dirty) {
        clear_all(m);
        m->dirty = false;
    } else if (m->n_included == h->count[HPO_STATE_COMPLETE]) {
        return 0;
    }
    for (size_t i = 0; i < h->n_trials; i++) {
        r = sync_trial(m, h->trials[i]);
        if (r < 0) {
            return r;
        }
    }
    if (m->dirty) {
        /* A complete trial gained reports: start over once, from scratch. */
        clear_all(m);
        m->dirty = false;
        for (size_t i = 0; i < h->n_trials; i++) {
            r = sync_trial(m, h->trials[i]);
            if (r < 0) {
                return r;
            }
        }
    }
    return 0;
}

/* Build the running-average bucket for `step` from every included trial. */
static struct bucket *running_bucket(struct median *m, const struct hpo_history *h, int64_t step)
{
    bool created;
    struct bucket *b = bucket_get(m, step, &created);

    if (b == NULL || !created) {
        return b;
    }
    for (size_t i = 0; i < h->n_trials && i < m->n_recs; i++) {
        const struct hpo_trial *t = h->trials[i];
        size_t pos = 0, cnt = 0;
        double sum = 0.0, avg;
        bool any;

        if (!m->recs[i].included) {
            continue;
        }
        avg = running_average(t, step, &pos, &sum, &cnt, &any);
        if (any && bucket_add(b, avg, true) < 0) {
            /* Partly built: drop everything and rebuild at the next decision. */
            m->dirty = true;
            return NULL;
        }
    }
    return b;
}

static int median_decide(void *state, const struct hpo_history *history, size_t trial,
        int64_t step, bool *ret_prune, struct hpo_error *err)
{
    struct median *m = state;
    const struct hpo_trial *t = history->trials[trial];
    const struct hpo_report *last = hpo_trial_last_report(t);
    size_t n_complete = history->count[HPO_STATE_COMPLETE];
    const struct bucket *b;
    double best = NAN, p, q;
    int64_t s, lower;
    bool found;
    int r;

    *ret_prune = false;
    if (n_complete == 0 || (int64_t)n_complete < m->n_startup_trials || last == NULL) {
        return 0;
    }
    s = last->step;
    if (s < m->n_warmup_steps) {
        return 0;
    }
    /* Judge only the first report in each interval (Optuna _is_first_in_interval_step). */
    lower = (s - m->n_warmup_steps) / m->interval_steps * m->interval_steps + m->n_warmup_steps;
    if (hpo__second_last_step(t) >= lower) {
        return 0;
    }
    /* The best of t's values over every step, NaNs ignored (np.nanmin / np.nanmax). */
    for (size_t i = 0; i < t->n_reports; i++) {
        double v = t->reports[i].value;
        if (isnan(v)) {
            continue;
        }
        if (isnan(best) || (history->maximize ? v > best : v < best)) {
            best = v;
        }
    }
    if (isnan(best)) {
        *ret_prune = true;
        return 0;
    }
    r = sync_all(m, history);
    if (r < 0) {
        return hpo_error_set(err, r, HPO_INTERNAL, NULL, "out of memory in the median pruner");
    }
    if (m->compare == COMPARE_LAST) {
        size_t at = bucket_find(m, s, &found);
        b = found ? &m->buckets[at] : NULL;
    } else {
        b = running_bucket(m, history, s);
        if (b == NULL) {
            return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL,
                    "out of memory in the median pruner");
        }
    }
    if (b == NULL || (int64_t)(b->vals.n + b->n_nan) < m->n_min_trials || b->vals.n == 0) {
        return 0;
    }
    p = m->percentile;
    if (history->maximize) {
        p = 100.0 - p;
    }
    q = hpo__percentile_sorted(b->vals.v, b->vals.n, p);
    *ret_prune = history->maximize ? best < q : best > q;
    return 0;
}

static void median_observe(void *state, const struct hpo_history *history, size_t trial,
        int64_t step)
{
    struct median *m = state;

    /* On OOM, dirty is set and the next decision rebuilds. */
    (void)sync_trial(m, history->trials[trial]);
}

static void median_destroy(void *state)
{
    struct median *m = state;

    if (m == NULL) {
        return;
    }
    clear_all(m);
    free(m->buckets);
    free(m->recs);
    free(m);
}

#define COMMON_SCHEMA                                                                             \
    "\"n_startup_trials\": {\"type\": \"integer\", \"default\": 5, \"min\": 0}, "                 \
    "\"n_warmup_steps\": {\"type\": \"integer\", \"default\": 0, \"min\": 0}, "                   \
    "\"interval_steps\": {\"type\": \"integer\", \"default\": 1, \"min\": 1}, "                   \
    "\"n_min_trials\": {\"type\": \"integer\", \"default\": 1, \"min\": 1}, "                     \
    "\"compare\": {\"type\": \"string\", \"default\": \"last\", "                                 \
    "\"enum\": [\"last\", \"running_average\"]}"

const struct hpo_pruner_type hpo_pruner_median = {
    .name = "median",
    .options_schema = "{" COMMON_SCHEMA "}",
    .configure = median_configure,
    .describe = median_describe,
    .decide = median_decide,
    .observe = median_observe,
    .destroy = median_destroy,
};

const struct hpo_pruner_type hpo_pruner_percentile = {
    .name = "percentile",
    .options_schema = "{\"percentile\": {\"type\": \"number\", \"default\": null, "
                      "\"required\": true, \"min\": 0, \"max\": 100}, " COMMON_SCHEMA "}",
    .configure = percentile_configure,
    .describe = median_describe,
    .decide = median_decide,
    .observe = median_observe,
    .destroy = median_destroy,
};
