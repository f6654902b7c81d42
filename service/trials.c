/*
** trials.c: the operations that change trials: ask, trial create, tell,
** report, heartbeat, trial patch, and the reaper (service-int.h). Each saves
** the trials it changes in a struct hpo_trial_undo before the change and
** restores them all with hpo__undo_all when the commit fails.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/clock.h"
#include "../core/rng.h"
#include "service-int.h"

#define FAIL(field, ...) hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, __VA_ARGS__)

struct hpo_trial *hpo__trial_lookup(struct study *s, struct hpo_service_request *req)
{
    if (req->number < 0 || (size_t)req->number >= s->history.n_trials) {
        hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL, "study '%s' has no trial %lld",
                s->name, (long long)req->number);
        return NULL;
    }
    return s->history.trials[req->number];
}

struct hpo_trial *hpo__trial_running(struct study *s, struct hpo_service_request *req)
{
    struct hpo_trial *t = hpo__trial_lookup(s, req);

    if (t != NULL && t->state != HPO_STATE_RUNNING) {
        hpo_error_set(&req->err, -EBUSY, HPO_CONFLICT, NULL, "trial %lld is %s, not running",
                (long long)t->number, hpo_state_name(t->state));
        return NULL;
    }
    return t;
}

enum hpo_decode hpo__decode_of(const struct study *s)
{
    return s->sampler_type->decode != NULL ? (enum hpo_decode)s->sampler_type->decode(s->sampler)
                                           : HPO_DECODE_LIBM;
}

/*
** Fill the params of `out` (values form, NaN = missing) from a sampler
** suggestion where `fixed` has no value, honouring `when` in order. The
** gradient sampler's replay of stored tells (samplers/gradient.c, replay)
** recomputes a new trial's values this same way: keep the two in step.
*/
void hpo__merge_suggestion(const struct hpo_space *space, const double *fixed, double *unit,
        double *out, enum hpo_decode how, bool decoded)
{
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        bool active = hpo_space_active(space, i, out);
        if (!active) {
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                out[j] = NAN;
            }
        } else if (fixed != NULL && !isnan(fixed[p->offset])) {
            memcpy(&out[p->offset], &fixed[p->offset], p->width * sizeof(double));
        } else if (!decoded) {
            hpo_param_decode_n(p, &unit[p->offset], &out[p->offset], p->width, how);
        }
        /*
        ** Canonical unit coordinates for scalars; a vector keeps the sampler's
        ** own (no sampler models vectors' unit history, and 10^6 logs cost).
        */
        if (p->size == 0 || !active || (fixed != NULL && !isnan(fixed[p->offset]))) {
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                unit[j] = hpo_param_to_unit(p, out[j]);
            }
        }
    }
}

/* A suggest under this (µs) is quick: readers may wait for the study's lock. */
#define SLOW_SUGGEST_US 1000

static bool needs_sampler(const struct hpo_space *space, const double *values)
{
    for (size_t i = 0; i < space->n_params; i++) {
        if (hpo_space_active(space, i, values) && isnan(values[space->params[i].offset])) {
            return true;
        }
    }
    return false;
}

/*
** The sampler's suggestion into `unit`; *decoded tells whether `values`
** holds its decode too (suggest_decoded), which merge_suggestion then keeps.
*/
static int run_sampler(struct hpo_service *svc, struct study *s, int64_t number, double *unit,
        double *values, bool *decoded, struct hpo_error *err)
{
    struct hpo_rng rng;
    struct timespec t0, t1;
    int r;

    /*
    ** Readers of the summary use the cache instead of waiting for a slow
    ** sampler. Building it costs more than a quick sampler's suggest: only
    ** when the last one was not quick (or this is the first).
    */
    if (s->suggest_us == 0 || s->suggest_us >= SLOW_SUGGEST_US) {
        pthread_mutex_lock(&s->cache_lock);
        r = s->summary_valid;
        pthread_mutex_unlock(&s->cache_lock);
        if (!r) {
            hpo__study_cache_summary(s);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);

    if (svc->opt.suggest_delay_ms > 0) {
        usleep(svc->opt.suggest_delay_ms * 1000u);
    }
    hpo_rng_init(&rng, s->seed, (uint64_t)number);
    if (s->sampler_type->suggest_decoded != NULL) {
        r = s->sampler_type->suggest_decoded(s->sampler, s->space, &s->history, &rng, unit,
                values, err);
        *decoded = r > 0;
    } else {
        r = s->sampler_type->suggest(s->sampler, s->space, &s->history, &rng, unit, err);
        *decoded = false;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    {
        int64_t us = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
        s->suggest_us = us < 1 ? 1 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    }
    if (r < 0 && err->code == HPO_OK) {
        hpo_error_set(err, r, HPO_INTERNAL, NULL, "sampler '%s' failed", s->sampler_type->name);
    }
    return r;
}

static struct hpo_trial *oldest_waiting(struct study *s)
{
    if (s->history.count[HPO_STATE_WAITING] == 0) {
        return NULL;
    }
    while (s->waiting_cursor < s->history.n_trials &&
            s->history.trials[s->waiting_cursor]->state != HPO_STATE_WAITING) {
        s->waiting_cursor++;
    }
    return s->waiting_cursor < s->history.n_trials ? s->history.trials[s->waiting_cursor] : NULL;
}


/* hpo_op.hold of a vector written from a trial's point (any thread). */
static void hold_point(void *point, bool take)
{
    if (take) {
        (void)hpo_point_ref(point);
    } else {
        hpo_point_release(point);
    }
}

void hpo__op_ask(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct hpo_error *err = &req->err;
    struct hpo__write w = { 0 };
    struct hpo_trial_undo undo = { .added_step = -1 };
    struct hpo_trial *t;
    struct hpo_point *point = NULL; /* a new trial's, until the trial owns it */
    double *unit = NULL, *merged = NULL;
    void *blob = NULL;
    size_t blob_len = 0;
    bool sample, fresh;
    int64_t now = hpo_now_ms();
    struct study *s = hpo__study_acquire(svc, req);

    if (s != NULL && s->warm_pending) {
        /* The first ask of a warm-started study: read the prior studies unlocked. */
        hpo__study_release(s);
        hpo__warm_load(svc, req->study);
        s = hpo__study_acquire(svc, req);
    }
    if (s == NULL) {
        return;
    }
    req->sampler = s->sampler_type->name;
    if (hpo__sampler_ready(svc, s, err) < 0) {
        goto out;
    }
    t = oldest_waiting(s);
    fresh = t == NULL;
    if (t == NULL && s->max_trials >= 0 &&
            (int64_t)(s->history.n_trials - s->history.count[HPO_STATE_FAILED]) >= s->max_trials) {
        hpo_error_set(err, -ENOSPC, HPO_EXHAUSTED, NULL, "study '%s' reached max_trials %lld",
                s->name, (long long)s->max_trials);
        goto out;
    }
    if (t == NULL) {
        /* A new trial: the sampler writes straight into the point the trial will own. */
        point = hpo_point_new_bounded(s->space->dim);
        if (point == NULL && errno == ENOBUFS) {
            hpo__vector_memory_full(err);
            goto out;
        }
        unit = point ? point->data + s->space->dim : NULL;
        merged = point ? point->data : NULL;
    } else {
        unit = malloc((s->space->dim ? s->space->dim : 1) * sizeof(double));
        merged = malloc((s->space->dim ? s->space->dim : 1) * sizeof(double));
    }
    if (unit == NULL || merged == NULL) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    sample = t == NULL || needs_sampler(s->space, t->values);
    if (sample) {
        int64_t number = t ? t->number : (int64_t)s->history.n_trials;
        bool decoded;
        if (run_sampler(svc, s, number, unit, merged, &decoded, err) < 0) {
            hpo__sampler_rollback(svc, s);
            goto out;
        }
        hpo__merge_suggestion(s->space, t ? t->values : NULL, unit, merged, hpo__decode_of(s),
                decoded);
    }
    if (t == NULL) {
        t = hpo_history_append_point(&s->history, HPO_STATE_RUNNING, point);
        if (t == NULL) {
            hpo__sampler_rollback(svc, s);
            hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        hpo_trial_undo_appended(&undo, t);
        point = NULL;
        unit = NULL;
        merged = NULL;
        t->created_at = now;
        if (s->space->has_vectors) {
            /* Trials of one optimizer version share one copy of their vectors. */
            (void)hpo_history_dedupe(&s->history, t, 8);
        }
    } else {
        hpo_trial_undo_save(&undo, t);
        if (sample) {
            /* The merged point replaces the partial one (the undo keeps the old). */
            if (hpo_trial_own_point(t, s->space->dim) < 0) {
                hpo__undo_all(svc, s, &undo, 1, true);
                hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
                goto out;
            }
            memcpy(t->values, merged, s->space->dim * sizeof(double));
            hpo_space_encode(s->space, t->values, t->unit);
        }
        hpo_history_set_state(&s->history, t, HPO_STATE_RUNNING);
    }
    t->started_at = now;
    t->heartbeat_at = now;
    t->worker = a->ask.worker ? strdup(a->ask.worker) : NULL;
    hpo__write_trial(&w, s, t);
    hpo__write_params(&w, s, t);
    if (fresh && s->sampler_type->reproducible != NULL &&
            s->sampler_type->reproducible(s->sampler)) {
        /* The sampler rebuilds these vectors should a power cut lose them (loader.c). */
        for (size_t i = 0; i < HPO_BUF_N(&w.ops, struct hpo_op); i++) {
            struct hpo_op *op = &HPO_BUF_AT(&w.ops, struct hpo_op, i);
            op->lazy = true;
            /* Its file may be written after the commit, from the trial's point (held). */
            if (op->kind == HPO_OP_PARAM_VECTOR && t->point != NULL &&
                    op->vector >= t->point->data && op->vector < t->point->data + s->space->dim) {
                op->hold = hold_point;
                op->hold_arg = t->point;
            }
        }
    }
    if (s->sampler_type->needs_save == NULL || s->sampler_type->needs_save(s->sampler)) {
        hpo__write_sampler_state(svc, &w, s, &blob, &blob_len);
    }
    if (hpo__commit(svc, s, &w, err) < 0) {
        hpo__undo_all(svc, s, &undo, 1, true);
        goto out;
    }
    hpo__sampler_committed(svc, s, &blob, blob_len);
    hpo_trial_undo_drop(&undo);
    hpo__trial_changed(s, t);
    hpo__reply_trial(req, 201, s, t);
out:
    free(blob);
    if (point != NULL) {
        hpo_point_release(point);
    } else {
        free(unit);
        free(merged);
    }
    hpo__write_free(&w);
    hpo__study_release(s);
}

/*
** A complete trial's objectives and constraints from a tell or a record
** (docs/API.md "Objectives and constraints"): *ret_results is a new array
** (n_obj + n_cons, NaN for an untold constraint) for a study that keeps
** results, else NULL; *ret_value is the first objective. Checks every name
** against the study and that every objective is told.
*/
static int read_results(const struct study *s, double value, const json_t *values,
        const json_t *cons, double **ret_results, double *ret_value, struct hpo_error *err)
{
    double *res = NULL;
    const char *key;
    json_t *v;
    char f[160];

    *ret_results = NULL;
    *ret_value = value;
    if (values == NULL && s->n_obj > 1) {
        return FAIL("values", "this study has %zu objectives: tell values", s->n_obj);
    }
    if (cons != NULL && s->n_cons == 0) {
        return FAIL("constraints", "this study declares no constraints");
    }
    if (values != NULL) {
        json_object_foreach((json_t *)values, key, v) {
            bool known = false;
            for (size_t i = 0; i < s->n_obj; i++) {
                known = known || strcmp(s->obj[i].name, key) == 0;
            }
            if (!known) {
                snprintf(f, sizeof(f), "values.%.128s", key);
                return FAIL(f, "'%.128s' is not an objective of this study", key);
            }
        }
        for (size_t i = 0; i < s->n_obj; i++) {
            if (json_object_get(values, s->obj[i].name) == NULL) {
                snprintf(f, sizeof(f), "values.%s", s->obj[i].name);
                return FAIL(f, "objective '%s' must be told", s->obj[i].name);
            }
        }
        *ret_value = json_number_value(json_object_get(values, s->obj[0].name));
    }
    if (cons != NULL) {
        json_object_foreach((json_t *)cons, key, v) {
            bool known = false;
            for (size_t j = 0; j < s->n_cons; j++) {
                known = known || strcmp(s->cons[j].name, key) == 0;
            }
            if (!known) {
                snprintf(f, sizeof(f), "constraints.%.128s", key);
                return FAIL(f, "'%.128s' is not a constraint of this study", key);
            }
        }
    }
    if (!hpo__study_has_results(s)) {
        return 0;
    }
    res = malloc((s->n_obj + s->n_cons) * sizeof(double));
    if (res == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    for (size_t i = 0; i < s->n_obj; i++) {
        res[i] = values != NULL ? json_number_value(json_object_get(values, s->obj[i].name))
                                : *ret_value;
    }
    for (size_t j = 0; j < s->n_cons; j++) {
        v = cons != NULL ? json_object_get(cons, s->cons[j].name) : NULL;
        res[s->n_obj + j] = v != NULL ? json_number_value(v) : NAN;
    }
    *ret_results = res;
    return 0;
}

void hpo__op_trial_create(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    const struct hpo_service_trial_create_args *in = &a->trial;
    struct hpo_error *err = &req->err;
    struct hpo__write w = { 0 };
    struct hpo_trial_undo undo;
    struct hpo_trial *t;
    double *values = NULL, *results = NULL, value = in->value;
    int64_t now = hpo_now_ms();
    struct study *s = hpo__study_acquire(svc, req);

    if (s == NULL) {
        return;
    }
    if (in->has_value &&
            read_results(s, in->value, in->values, in->constraints, &results, &value, err) < 0) {
        goto out;
    }
    values = malloc((s->space->dim ? s->space->dim : 1) * sizeof(double));
    if (values == NULL) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    if (hpo_space_values_from_json(s->space, in->params, !in->has_value, values, err) < 0) {
        goto out;
    }
    t = hpo_history_append(&s->history, in->has_value ? HPO_STATE_COMPLETE : HPO_STATE_WAITING);
    if (t == NULL) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    hpo_trial_undo_appended(&undo, t);
    memcpy(t->values, values, s->space->dim * sizeof(double));
    hpo_space_encode(s->space, t->values, t->unit);
    t->created_at = now;
    if (s->space->has_vectors && !needs_sampler(s->space, t->values)) {
        (void)hpo_history_dedupe(&s->history, t, 8);
    }
    if (in->has_value) {
        t->value = value;
        t->results = results;
        results = NULL;
        t->completed_at = now;
    }
    if (in->attrs != NULL) {
        json_object_update(hpo_trial_attrs(t), (json_t *)in->attrs);
    }
    hpo__write_trial(&w, s, t);
    hpo__write_params(&w, s, t);
    if (in->attrs != NULL) {
        hpo__write_attrs(&w, s, t, in->attrs, false);
    }
    if (hpo__commit(svc, s, &w, err) < 0) {
        hpo__undo_all(svc, s, &undo, 1, false);
        goto out;
    }
    hpo__trial_changed(s, t);
    hpo__reply_trial(req, 201, s, t);
out:
    free(values);
    free(results);
    hpo__write_free(&w);
    hpo__study_release(s);
}

/* Parse a JSON gradient object into `grad` (dim doubles, NaN where absent). */
static int parse_gradient(struct study *s, const json_t *obj, double *grad, struct hpo_error *err)
{
    const char *key;
    json_t *v;
    char field[160];

    if (!json_is_object(obj)) {
        return FAIL("gradient", "gradient must be an object of param name to derivative");
    }
    json_object_foreach((json_t *)obj, key, v) {
        long i = hpo_space_find(s->space, key);
        const struct hpo_param *p;
        snprintf(field, sizeof(field), "gradient.%.128s", key);
        if (i < 0) {
            return FAIL(field, "unknown parameter '%.128s'", key);
        }
        p = &s->space->params[i];
        if (p->type != HPO_PARAM_FLOAT) {
            return FAIL(field, "%s: only float params have gradients", field);
        }
        if (p->size == 0) {
            if (!json_is_number(v) || !isfinite(json_number_value(v))) {
                return FAIL(field, "%s must be a finite number", field);
            }
            grad[p->offset] = json_number_value(v);
            continue;
        }
        if (!json_is_array(v) || json_array_size(v) != p->size) {
            return FAIL(field, "%s must be an array of %zu finite numbers", field, p->size);
        }
        for (size_t k = 0; k < p->size; k++) {
            json_t *e = json_array_get(v, k);
            if (!json_is_number(e) || !isfinite(json_number_value(e))) {
                return FAIL(field, "%s[%zu] must be a finite number", field, k);
            }
            grad[p->offset + k] = json_number_value(e);
        }
    }
    return 0;
}

static bool same_result(const struct study *s, const struct hpo_trial *t, enum hpo_state state,
        double value, const double *results)
{
    if (t->state != state) {
        return false;
    }
    if (state != HPO_STATE_COMPLETE) {
        return true;
    }
    if (t->value != value) {
        return false;
    }
    for (size_t i = 0; results != NULL && i < s->n_obj + s->n_cons; i++) {
        double a = t->results ? t->results[i] : NAN, b = results[i];
        if (!(a == b || (isnan(a) && isnan(b)))) {
            return false;
        }
    }
    return true;
}

void hpo__op_tell(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    const struct hpo_service_tell_args *in = &a->tell;
    struct hpo_error *err = &req->err;
    struct hpo__write w = { 0 };
    struct hpo_trial_undo undo;
    double value = in->value, *grad = NULL, *results = NULL;
    const double *borrowed = NULL; /* a pending upload used as the gradient */
    struct hpo_trial *t;
    void *blob = NULL;
    size_t blob_len = 0;
    bool has_grad = false;
    int r;
    struct study *s = hpo__study_acquire(svc, req);

    if (s == NULL) {
        return;
    }
    t = hpo__sampler_ready(svc, s, err) < 0 ? NULL : hpo__trial_lookup(s, req);
    if (t == NULL) {
        goto out;
    }
    if (in->state == HPO_STATE_COMPLETE &&
            read_results(s, in->value, in->values, in->constraints, &results, &value, err) < 0) {
        goto out;
    }
    if (t->state == HPO_STATE_WAITING) {
        hpo_error_set(err, -EBUSY, HPO_CONFLICT, NULL, "trial %lld is waiting, not running",
                (long long)t->number);
        goto out;
    }
    if (t->state != HPO_STATE_RUNNING) {
        if (same_result(s, t, in->state, value, results)) {
            hpo__reply_trial(req, 200, s, t);
        } else {
            hpo_error_set(err, -EBUSY, HPO_CONFLICT, NULL,
                    "trial %lld already finished as %s with another result", (long long)t->number,
                    hpo_state_name(t->state));
        }
        goto out;
    }
    if (in->gradient == NULL && s->space->n_params == 1 &&
            s->space->params[0].width == s->space->dim &&
            (borrowed = hpo__gradient_pending(s, t->number, 0)) != NULL) {
        /* The study's only param, uploaded whole: the upload is the gradient (no copy). */
        has_grad = true;
    } else if (in->gradient != NULL || HPO_BUF_N(&s->grads, struct pending_gradient) > 0) {
        grad = malloc((s->space->dim ? s->space->dim : 1) * sizeof(double));
        if (grad == NULL) {
            hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        for (size_t j = 0; j < s->space->dim; j++) {
            grad[j] = NAN;
        }
        has_grad = hpo__gradient_take(s, t->number, grad, false);
        if (in->gradient != NULL) {
            if (s->sampler_type->tell == NULL) {
                hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "gradient",
                        "sampler '%s' does not take gradients", s->sampler_type->name);
                goto out;
            }
            if (parse_gradient(s, in->gradient, grad, err) < 0) {
                goto out;
            }
            has_grad = true;
        }
    }
    if (in->state == HPO_STATE_PRUNED) {
        const struct hpo_report *last = hpo_trial_last_report(t);
        value = last ? last->value : NAN;
    }
    hpo_trial_undo_save(&undo, t);
    hpo_history_set_state(&s->history, t, in->state);
    t->value = value;
    if (results != NULL) {
        t->results = results; /* the undo keeps the old array (NULL) */
        results = NULL;
    }
    t->completed_at = hpo_now_ms();
    if (in->attrs != NULL) {
        /* Merged into a new object: a reply encoded off the lock may hold the old one. */
        json_t *next = t->user_attrs ? json_deep_copy(t->user_attrs) : json_object();
        if (next == NULL) {
            hpo_oom();
        }
        json_object_update(next, (json_t *)in->attrs);
        json_decref(t->user_attrs);
        t->user_attrs = next;
    }
    if (s->sampler_type->tell != NULL) {
        if (has_grad && s->sampler_type->defer_next != NULL) {
            /* The step may run during the commit; the gradient lives until settle below. */
            s->sampler_type->defer_next(s->sampler);
        }
        s->sampler_type->tell(s->sampler, s->space, &s->history, (size_t)t->number,
                has_grad ? (borrowed != NULL ? borrowed : grad) : NULL);
    }
    hpo__write_trial(&w, s, t);
    if (in->attrs != NULL) {
        hpo__write_attrs(&w, s, t, in->attrs, false);
    }
    hpo__write_sampler_state(svc, &w, s, &blob, &blob_len);
    r = hpo__commit(svc, s, &w, err);
    if (s->sampler_type->settle != NULL) {
        s->sampler_type->settle(s->sampler);
    }
    if (r < 0) {
        hpo__undo_all(svc, s, &undo, 1, true);
        goto out;
    }
    hpo_trial_undo_drop(&undo);
    hpo__sampler_committed(svc, s, &blob, blob_len);
    hpo__gradient_take(s, t->number, NULL, true);
    hpo__trial_changed(s, t);
    hpo__reply_trial(req, 200, s, t);
    hpo__vectors_evict(svc, s, (size_t)t->number);
    hpo__vectors_retain(svc, s);
out:
    free(blob);
    free(grad);
    free(results);
    hpo__write_free(&w);
    hpo__study_release(s);
}

void hpo__op_report(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    const struct hpo_service_report_args *in = &a->report;
    struct hpo_error *err = &req->err;
    struct hpo__write w = { 0 };
    struct hpo_trial_undo undo;
    struct hpo_trial *t;
    bool added = false, prune = false;
    struct study *s = hpo__study_acquire(svc, req);

    if (s == NULL) {
        return;
    }
    t = hpo__trial_running(s, req);
    if (t == NULL) {
        goto out;
    }
    hpo_trial_undo_save(&undo, t);
    if (hpo_trial_add_report(t, in->step, in->value, &added) < 0) {
        hpo_trial_undo_drop(&undo);
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    undo.added_step = added ? in->step : -1;
    t->heartbeat_at = hpo_now_ms();
    hpo__write_trial(&w, s, t);
    if (added) {
        struct hpo_op *op = hpo__write_op(&w, HPO_OP_REPORT_PUT, s->id);
        op->number = t->number;
        op->step = in->step;
        op->value = in->value;
    }
    if (hpo__commit(svc, s, &w, err) < 0) {
        hpo__undo_all(svc, s, &undo, 1, false);
        goto out;
    }
    hpo_trial_undo_drop(&undo);
    if (added && s->pruner_type->observe) {
        s->pruner_type->observe(s->pruner, &s->history, (size_t)t->number, in->step);
    }
    if (s->pruner_type->decide(s->pruner, &s->history, (size_t)t->number, in->step, &prune,
                err) < 0) {
        /* The report is stored; a pruner failure must not fail it. Answer continue. */
        hpo_error_clear(err);
        prune = false;
    }
    hpo__reply(req, 200, json_pack("{s:b}", "prune", prune));
out:
    hpo__write_free(&w);
    hpo__study_release(s);
}

void hpo__op_heartbeat(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct hpo__write w = { 0 };
    struct hpo_trial_undo undo;
    struct hpo_trial *t;
    struct study *s = hpo__study_acquire(svc, req);

    (void)a;
    if (s == NULL) {
        return;
    }
    t = hpo__trial_running(s, req);
    if (t != NULL) {
        hpo_trial_undo_save(&undo, t);
        t->heartbeat_at = hpo_now_ms();
        hpo__write_trial(&w, s, t);
        if (hpo__commit(svc, s, &w, &req->err) < 0) {
            hpo__undo_all(svc, s, &undo, 1, false);
        } else {
            hpo_trial_undo_drop(&undo);
            req->status = 204;
        }
    }
    hpo__write_free(&w);
    hpo__study_release(s);
}

void hpo__op_trial_patch(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    const json_t *attrs = a->patch.attrs;
    struct hpo__write w = { 0 };
    struct hpo_trial_undo undo;
    struct hpo_trial *t;
    struct study *s = hpo__study_acquire(svc, req);

    if (s == NULL) {
        return;
    }
    t = hpo__trial_lookup(s, req);
    if (t == NULL) {
        goto out;
    }
    if (attrs != NULL && json_object_size(attrs) > 0) {
        /* A new object: replies being encoded off the lock may hold the old one. */
        json_t *next = t->user_attrs ? json_deep_copy(t->user_attrs) : json_object();
        if (next == NULL) {
            hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        hpo__merge_attrs(next, attrs);
        hpo_trial_undo_save(&undo, t);
        json_decref(t->user_attrs);
        t->user_attrs = next;
        hpo__write_attrs(&w, s, t, attrs, true);
        if (hpo__commit(svc, s, &w, &req->err) < 0) {
            hpo__undo_all(svc, s, &undo, 1, false);
            goto out;
        }
        hpo_trial_undo_drop(&undo);
    }
    hpo__reply_trial(req, 200, s, t);
out:
    hpo__write_free(&w);
    hpo__study_release(s);
}

/* ---- the reaper ---------------------------------------------------------------- */

/* Fail expired trials of one study (locked); re-queue per max_retries. */
static size_t reap_study(struct hpo_service *svc, struct study *s, int64_t now)
{
    struct hpo__write w = { 0 };
    struct hpo_buf undo = { 0 }; /* struct hpo_trial_undo, in the order of the changes */
    struct hpo_error err;
    int64_t *expired;
    size_t n_expired = 0;
    int64_t limit = (int64_t)(s->heartbeat_timeout * 1000.0);

    if (HPO_BUF_N(&s->running, int64_t) == 0) {
        return 0;
    }
    expired = malloc(HPO_BUF_N(&s->running, int64_t) * sizeof(*expired));
    if (expired == NULL) {
        return 0;
    }
    for (size_t i = 0; i < HPO_BUF_N(&s->running, int64_t); i++) {
        struct hpo_trial *t = s->history.trials[HPO_BUF_AT(&s->running, int64_t, i)];
        if (t->heartbeat_at + limit < now) {
            expired[n_expired++] = t->number;
        }
    }
    /* At most three undos per expired trial: it, its original, its re-queue. */
    if (hpo_buf_reserve(&undo, 3 * n_expired * sizeof(struct hpo_trial_undo)) < 0) {
        free(expired);
        return 0;
    }
    for (size_t i = 0; i < n_expired; i++) {
        struct hpo_trial *t = s->history.trials[expired[i]];
        int64_t orig_n = t->retry_of >= 0 ? t->retry_of : t->number;
        struct hpo_trial *orig = s->history.trials[orig_n];
        struct hpo_trial *n;
        hpo_trial_undo_save(hpo_buf_add(&undo, sizeof(struct hpo_trial_undo)), t);
        hpo_history_set_state(&s->history, t, HPO_STATE_FAILED);
        t->completed_at = now;
        hpo__write_trial(&w, s, t);
        if (orig->retries >= s->max_retries) {
            continue;
        }
        n = hpo_history_append(&s->history, HPO_STATE_WAITING);
        if (n == NULL) {
            continue;
        }
        hpo_trial_undo_appended(hpo_buf_add(&undo, sizeof(struct hpo_trial_undo)), n);
        hpo_trial_undo_save(hpo_buf_add(&undo, sizeof(struct hpo_trial_undo)), orig);
        orig->retries++;
        hpo__write_trial(&w, s, orig);
        hpo_trial_share_point(n, t);
        n->retry_of = orig_n;
        n->created_at = now;
        if (t->user_attrs != NULL) {
            n->user_attrs = json_deep_copy(t->user_attrs);
        }
        hpo__write_trial(&w, s, n);
        hpo__write_params(&w, s, n);
        if (n->user_attrs != NULL) {
            hpo__write_attrs(&w, s, n, n->user_attrs, false);
        }
    }
    if (hpo__commit(svc, s, &w, &err) < 0) {
        hpo__undo_all(svc, s, (struct hpo_trial_undo *)(void *)undo.data,
                HPO_BUF_N(&undo, struct hpo_trial_undo), false);
        n_expired = 0;
    } else {
        for (size_t i = 0; i < HPO_BUF_N(&undo, struct hpo_trial_undo); i++) {
            hpo_trial_undo_drop(&HPO_BUF_AT(&undo, struct hpo_trial_undo, i));
        }
        for (size_t i = 0; i < n_expired; i++) {
            struct hpo_trial *t = s->history.trials[expired[i]];
            hpo__trial_changed(s, t);
            hpo__vectors_evict(svc, s, (size_t)t->number);
        }
    }
    hpo_buf_free(&undo);
    free(expired);
    hpo__write_free(&w);
    return n_expired;
}

size_t hpo_service_reap(struct hpo_service *svc, int64_t now_ms)
{
    size_t n, failed = 0;
    struct study **snap = hpo__registry_snapshot(svc, &n);

    for (size_t i = 0; i < n; i++) {
        struct study *s = snap[i];
        if (s->heartbeat_timeout > 0) {
            pthread_mutex_lock(&s->lock);
            if (!s->deleted && !s->moved) {
                failed += reap_study(svc, s, now_ms);
            }
            pthread_mutex_unlock(&s->lock);
        }
    }
    hpo__registry_snapshot_free(snap, n);
    return failed;
}
