/*
** history.c: the in-memory trial record of a study.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "space.h"

static const char *const state_names[HPO_STATE_COUNT] = {
    "waiting", "running", "complete", "pruned", "failed",
};

const char *hpo_state_name(enum hpo_state state)
{
    if ((unsigned)state >= HPO_STATE_COUNT) {
        return NULL;
    }
    return state_names[state];
}

int hpo_state_parse(const char *name)
{
    for (int i = 0; i < HPO_STATE_COUNT; i++) {
        if (strcmp(state_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

void hpo_history_init(struct hpo_history *h, const struct hpo_space *space,
        const char *study_name, bool maximize)
{
    memset(h, 0, sizeof(*h));
    h->space = space;
    h->study_name = study_name;
    h->maximize = maximize;
}

void hpo_trial_free(struct hpo_trial *t)
{
    if (t == NULL) {
        return;
    }
    free(t->values);
    free(t->unit);
    free(t->reports);
    json_decref(t->user_attrs);
    free(t->worker);
    free(t);
}

void hpo_history_finish(struct hpo_history *h)
{
    for (size_t i = 0; i < h->n_trials; i++) {
        hpo_trial_free(h->trials[i]);
    }
    free(h->trials);
    h->trials = NULL;
    h->n_trials = 0;
    h->cap_trials = 0;
}

struct hpo_trial *hpo_history_append(struct hpo_history *h, enum hpo_state state)
{
    size_t dim = h->space->dim;
    struct hpo_trial *t;

    if (h->n_trials == h->cap_trials) {
        size_t cap = h->cap_trials ? h->cap_trials * 2 : 64;
        struct hpo_trial **n = realloc(h->trials, cap * sizeof(*n));
        if (n == NULL) {
            return NULL;
        }
        h->trials = n;
        h->cap_trials = cap;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->values = malloc((dim ? dim : 1) * sizeof(double));
    t->unit = malloc((dim ? dim : 1) * sizeof(double));
    t->user_attrs = json_object();
    if (t->values == NULL || t->unit == NULL || t->user_attrs == NULL) {
        hpo_trial_free(t);
        return NULL;
    }
    for (size_t j = 0; j < dim; j++) {
        t->values[j] = NAN;
        t->unit[j] = NAN;
    }
    t->number = (int64_t)h->n_trials;
    t->state = state;
    t->value = NAN;
    t->retry_of = -1;
    h->trials[h->n_trials++] = t;
    h->count[state]++;
    return t;
}

void hpo_history_pop(struct hpo_history *h)
{
    struct hpo_trial *t;

    if (h->n_trials == 0) {
        return;
    }
    t = h->trials[--h->n_trials];
    h->count[t->state]--;
    hpo_trial_free(t);
}

void hpo_history_set_state(struct hpo_history *h, struct hpo_trial *t, enum hpo_state state)
{
    h->count[t->state]--;
    t->state = state;
    h->count[state]++;
}

int hpo_trial_add_report(struct hpo_trial *t, int64_t step, double value, bool *ret_added)
{
    size_t lo = 0, hi = t->n_reports;

    /* Binary search for the insertion point; reports usually arrive in order. */
    if (t->n_reports > 0 && t->reports[t->n_reports - 1].step < step) {
        lo = t->n_reports;
    } else {
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (t->reports[mid].step < step) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < t->n_reports && t->reports[lo].step == step) {
            if (ret_added) {
                *ret_added = false;
            }
            return 0;
        }
    }
    if (t->n_reports == t->cap_reports) {
        size_t cap = t->cap_reports ? t->cap_reports * 2 : 8;
        struct hpo_report *n = realloc(t->reports, cap * sizeof(*n));
        if (n == NULL) {
            return -ENOMEM;
        }
        t->reports = n;
        t->cap_reports = cap;
    }
    memmove(&t->reports[lo + 1], &t->reports[lo], (t->n_reports - lo) * sizeof(*t->reports));
    t->reports[lo].step = step;
    t->reports[lo].value = value;
    t->n_reports++;
    if (ret_added) {
        *ret_added = true;
    }
    return 0;
}

const struct hpo_report *hpo_trial_report_at(const struct hpo_trial *t, int64_t step)
{
    size_t lo = 0, hi = t->n_reports;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->reports[mid].step < step) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < t->n_reports && t->reports[lo].step == step) {
        return &t->reports[lo];
    }
    return NULL;
}

const struct hpo_report *hpo_trial_last_report(const struct hpo_trial *t)
{
    return t->n_reports ? &t->reports[t->n_reports - 1] : NULL;
}
