/*
** study.c: building a study from its definition, its JSON views, and the
** derived indexes (best trial, running set, waiting cursor).
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/mo.h"
#include "service.h"
#include "study.h"

#define FAIL(field, ...) hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, __VA_ARGS__)

static const char *const study_keys[] = {
    "name", "direction", "params", "sampler", "pruner", "heartbeat_timeout", "max_retries",
    "max_trials", "user_attrs", "retain_vectors", "objectives", "constraints", "reference_point",
    "warm_start", NULL,
};

static uint64_t random_seed(void)
{
    uint32_t x = 0;

    if (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x)) {
        x = (uint32_t)hpo_now_ms() ^ 0x5bd1e995u;
    }
    return x;
}

/* Parse {"type": T, ...options} into a type name and the options without type (new ref). */
static int split_plugin(const json_t *spec, const char *field, const char *def_type,
        const char **ret_type, json_t **ret_options, struct hpo_error *err)
{
    json_t *type;
    char f[128];

    if (spec == NULL || json_is_null(spec)) {
        *ret_type = def_type;
        *ret_options = json_object();
        return 0;
    }
    if (!json_is_object(spec)) {
        return FAIL(field, "%s must be an object", field);
    }
    type = json_object_get(spec, "type");
    snprintf(f, sizeof(f), "%s.type", field);
    if (type == NULL) {
        *ret_type = def_type;
    } else if (!json_is_string(type)) {
        return FAIL(f, "%s must be a string", f);
    } else {
        *ret_type = json_string_value(type);
    }
    *ret_options = json_deep_copy(spec);
    json_object_del(*ret_options, "type");
    return 0;
}

static int build_sampler(struct study *s, const json_t *spec, const uint64_t *seed_fallback,
        json_t *def, struct hpo_error *err)
{
    const char *type = NULL;
    json_t *options = NULL, *seed, *desc, *out;
    int r;

    r = split_plugin(spec, "sampler", s->n_obj > 1 ? "nsga2" : "tpe", &type, &options, err);
    if (r < 0) {
        return r;
    }
    s->sampler_type = hpo_sampler_find(type);
    if (s->sampler_type == NULL) {
        json_decref(options);
        return FAIL("sampler.type", "unknown sampler '%.64s'", type);
    }
    seed = json_object_get(options, "seed");
    if (seed != NULL) {
        if (!json_is_integer(seed) || json_integer_value(seed) < 0) {
            json_decref(options);
            return FAIL("sampler.seed", "sampler.seed must be an integer >= 0");
        }
        s->seed = (uint64_t)json_integer_value(seed);
        json_object_del(options, "seed");
    } else {
        s->seed = seed_fallback ? *seed_fallback : random_seed();
    }
    if (s->n_obj > 3 && strcmp(type, "gp") == 0) {
        json_decref(options);
        return FAIL("sampler.type", "sampler 'gp' takes 1 to 3 objectives; nsga2 takes any number");
    }
    if (s->n_obj > 1 && strcmp(type, "random") != 0 && strcmp(type, "qmc") != 0 &&
            strcmp(type, "nsga2") != 0 && strcmp(type, "tpe") != 0 && strcmp(type, "gp") != 0) {
        json_decref(options);
        return FAIL("sampler.type", "sampler '%s' takes one objective only",
                s->sampler_type->name);
    }
    if (s->space->has_vectors && !s->sampler_type->supports_vectors) {
        json_decref(options);
        return FAIL("sampler.type", "sampler '%s' does not support vector params (size)",
                s->sampler_type->name);
    }
    r = s->sampler_type->configure(options, s->space, &s->sampler, err);
    json_decref(options);
    if (r < 0) {
        return r;
    }
    desc = s->sampler_type->describe(s->sampler);
    out = json_object();
    json_object_set_new(out, "type", json_string(s->sampler_type->name));
    json_object_set_new(out, "seed", json_integer((json_int_t)s->seed));
    json_object_update(out, desc);
    json_decref(desc);
    json_object_set_new(def, "sampler", out);
    return 0;
}

static int build_pruner(struct study *s, const json_t *spec, json_t *def, struct hpo_error *err)
{
    const char *type = NULL;
    json_t *options = NULL, *desc, *out;
    int r;

    r = split_plugin(spec, "pruner", "none", &type, &options, err);
    if (r < 0) {
        return r;
    }
    s->pruner_type = hpo_pruner_find(type);
    if (s->pruner_type == NULL) {
        json_decref(options);
        return FAIL("pruner.type", "unknown pruner '%.64s'", type);
    }
    if (s->n_obj > 1 && strcmp(s->pruner_type->name, "none") != 0) {
        json_decref(options);
        return FAIL("pruner.type", "a study with several objectives takes no pruner but none");
    }
    r = s->pruner_type->configure(options, &s->pruner, err);
    json_decref(options);
    if (r < 0) {
        return r;
    }
    desc = s->pruner_type->describe(s->pruner);
    out = json_object();
    json_object_set_new(out, "type", json_string(s->pruner_type->name));
    json_object_update(out, desc);
    json_decref(desc);
    json_object_set_new(def, "pruner", out);
    return 0;
}

static int read_limits(struct study *s, const json_t *body, json_t *def, struct hpo_error *err)
{
    json_t *v;

    v = json_object_get(body, "heartbeat_timeout");
    s->heartbeat_timeout = 0;
    if (v != NULL) {
        if (!json_is_number(v) || !(json_number_value(v) >= 0) ||
                json_number_value(v) > 1e9) {
            return FAIL("heartbeat_timeout", "heartbeat_timeout must be a number of seconds >= 0");
        }
        s->heartbeat_timeout = json_number_value(v);
    }
    json_object_set_new(def, "heartbeat_timeout",
            s->heartbeat_timeout == floor(s->heartbeat_timeout)
                    ? json_integer((json_int_t)s->heartbeat_timeout)
                    : json_real(s->heartbeat_timeout));
    v = json_object_get(body, "max_retries");
    s->max_retries = 0;
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            return FAIL("max_retries", "max_retries must be an integer >= 0");
        }
        s->max_retries = json_integer_value(v);
    }
    json_object_set_new(def, "max_retries", json_integer(s->max_retries));
    v = json_object_get(body, "max_trials");
    s->max_trials = -1;
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            return FAIL("max_trials", "max_trials must be an integer >= 1");
        }
        s->max_trials = json_integer_value(v);
    }
    json_object_set_new(def, "max_trials",
            s->max_trials < 0 ? json_null() : json_integer(s->max_trials));
    v = json_object_get(body, "user_attrs");
    if (v != NULL && !json_is_object(v)) {
        return FAIL("user_attrs", "user_attrs must be an object");
    }
    json_object_set_new(def, "user_attrs", v ? json_deep_copy(v) : json_object());
    v = json_object_get(body, "retain_vectors");
    s->retain_vectors = 0;
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            return FAIL("retain_vectors", "retain_vectors must be an integer >= 0");
        }
        s->retain_vectors = json_integer_value(v);
    }
    json_object_set_new(def, "retain_vectors", json_integer(s->retain_vectors));
    return 0;
}

static bool direction_parse(const json_t *v, bool *maximize)
{
    if (!json_is_string(v)) {
        return false;
    }
    *maximize = strcmp(json_string_value(v), "maximize") == 0;
    return *maximize || strcmp(json_string_value(v), "minimize") == 0;
}

/* Is `name` already an objective's or a constraint's name? */
static bool objective_name_taken(const struct study *s, const char *name)
{
    for (size_t i = 0; i < s->n_obj; i++) {
        if (strcmp(s->obj[i].name, name) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < s->n_cons; i++) {
        if (strcmp(s->cons[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

static json_t *bound_json(double v)
{
    return v == floor(v) && fabs(v) < 1e15 ? json_integer((json_int_t)v) : json_real(v);
}

/*
** direction, objectives, constraints and reference_point (docs/API.md
** "Objectives and constraints"). The normalized definition always has
** "objectives"; "direction" for one objective; "constraints" and
** "reference_point" when given.
*/
static int read_objectives(struct study *s, const json_t *body, json_t *def,
        struct hpo_error *err)
{
    const json_t *dir = json_object_get(body, "direction");
    const json_t *objs = json_object_get(body, "objectives");
    const json_t *cons = json_object_get(body, "constraints");
    const json_t *ref = json_object_get(body, "reference_point");
    json_t *out, *v;
    bool dmax = false;
    char f[128];

    if (dir != NULL && !direction_parse(dir, &dmax)) {
        return FAIL("direction", "direction must be \"minimize\" or \"maximize\"");
    }
    if (objs == NULL) {
        s->n_obj = 1;
        snprintf(s->obj[0].name, sizeof(s->obj[0].name), "value");
        s->obj[0].maximize = dmax;
    } else {
        if (!json_is_array(objs) || json_array_size(objs) < 1 ||
                json_array_size(objs) > HPO_OBJECTIVES_MAX) {
            return FAIL("objectives", "objectives must be an array of 1-%d objectives",
                    HPO_OBJECTIVES_MAX);
        }
        for (size_t i = 0; i < json_array_size(objs); i++) {
            const json_t *o = json_array_get(objs, i);
            const char *key;
            bool max = false;
            snprintf(f, sizeof(f), "objectives[%zu]", i);
            if (!json_is_object(o)) {
                return FAIL(f, "%s must be an object", f);
            }
            json_object_foreach((json_t *)o, key, v) {
                if (strcmp(key, "name") != 0 && strcmp(key, "direction") != 0) {
                    snprintf(f, sizeof(f), "objectives[%zu].%.32s", i, key);
                    return FAIL(f, "unknown field '%s'", f);
                }
            }
            v = json_object_get(o, "name");
            snprintf(f, sizeof(f), "objectives[%zu].name", i);
            if (!json_is_string(v) || !hpo_name_valid(json_string_value(v))) {
                return FAIL(f, "%s must be 1-128 characters of A-Z a-z 0-9 _ . -", f);
            }
            if (objective_name_taken(s, json_string_value(v))) {
                return FAIL(f, "objective name '%s' is used twice", json_string_value(v));
            }
            snprintf(s->obj[i].name, sizeof(s->obj[i].name), "%s", json_string_value(v));
            v = json_object_get(o, "direction");
            snprintf(f, sizeof(f), "objectives[%zu].direction", i);
            if (v != NULL && !direction_parse(v, &max)) {
                return FAIL(f, "%s must be \"minimize\" or \"maximize\"", f);
            }
            s->obj[i].maximize = max;
            s->n_obj = i + 1;
        }
        if (dir != NULL && (s->n_obj != 1 || s->obj[0].maximize != dmax)) {
            return FAIL("direction", "direction and objectives disagree");
        }
    }
    s->maximize = s->obj[0].maximize;
    if (cons != NULL && !json_is_null(cons)) {
        if (!json_is_array(cons) || json_array_size(cons) > HPO_CONSTRAINTS_MAX) {
            return FAIL("constraints", "constraints must be an array of at most %d constraints",
                    HPO_CONSTRAINTS_MAX);
        }
        for (size_t i = 0; i < json_array_size(cons); i++) {
            const json_t *c = json_array_get(cons, i);
            struct study_constraint *sc = &s->cons[i];
            const char *key;
            snprintf(f, sizeof(f), "constraints[%zu]", i);
            if (!json_is_object(c)) {
                return FAIL(f, "%s must be an object", f);
            }
            json_object_foreach((json_t *)c, key, v) {
                if (strcmp(key, "name") != 0 && strcmp(key, "min") != 0 &&
                        strcmp(key, "max") != 0) {
                    snprintf(f, sizeof(f), "constraints[%zu].%.32s", i, key);
                    return FAIL(f, "unknown field '%s'", f);
                }
            }
            v = json_object_get(c, "name");
            snprintf(f, sizeof(f), "constraints[%zu].name", i);
            if (!json_is_string(v) || !hpo_name_valid(json_string_value(v))) {
                return FAIL(f, "%s must be 1-128 characters of A-Z a-z 0-9 _ . -", f);
            }
            if (objective_name_taken(s, json_string_value(v))) {
                return FAIL(f, "name '%s' is used twice in objectives and constraints",
                        json_string_value(v));
            }
            snprintf(sc->name, sizeof(sc->name), "%s", json_string_value(v));
            sc->lo = -INFINITY;
            sc->hi = INFINITY;
            v = json_object_get(c, "min");
            snprintf(f, sizeof(f), "constraints[%zu].min", i);
            if (v != NULL) {
                if (!json_is_number(v) || !isfinite(json_number_value(v))) {
                    return FAIL(f, "%s must be a finite number", f);
                }
                sc->lo = json_number_value(v);
            }
            v = json_object_get(c, "max");
            snprintf(f, sizeof(f), "constraints[%zu].max", i);
            if (v != NULL) {
                if (!json_is_number(v) || !isfinite(json_number_value(v))) {
                    return FAIL(f, "%s must be a finite number", f);
                }
                sc->hi = json_number_value(v);
            }
            snprintf(f, sizeof(f), "constraints[%zu]", i);
            if (isinf(sc->lo) && isinf(sc->hi)) {
                return FAIL(f, "%s needs min, max or both", f);
            }
            if (sc->lo > sc->hi) {
                return FAIL(f, "%s has min > max", f);
            }
            s->n_cons = i + 1;
        }
    }
    if (ref != NULL && !json_is_null(ref)) {
        if (!json_is_object(ref) || json_object_size(ref) != s->n_obj) {
            return FAIL("reference_point", "reference_point must give every objective a number");
        }
        for (size_t i = 0; i < s->n_obj; i++) {
            v = json_object_get(ref, s->obj[i].name);
            if (v == NULL || !json_is_number(v) || !isfinite(json_number_value(v))) {
                return FAIL("reference_point",
                        "reference_point must give every objective a finite number");
            }
            s->ref[i] = json_number_value(v);
        }
        s->has_ref = true;
    }
    if (s->n_obj == 1) {
        json_object_set_new(def, "direction",
                json_string(s->maximize ? "maximize" : "minimize"));
    }
    out = json_array();
    for (size_t i = 0; i < s->n_obj; i++) {
        json_array_append_new(out, json_pack("{s:s,s:s}", "name", s->obj[i].name, "direction",
                                           s->obj[i].maximize ? "maximize" : "minimize"));
    }
    json_object_set_new(def, "objectives", out);
    if (s->n_cons > 0) {
        out = json_array();
        for (size_t i = 0; i < s->n_cons; i++) {
            json_t *c = json_pack("{s:s}", "name", s->cons[i].name);
            if (!isinf(s->cons[i].lo)) {
                json_object_set_new(c, "min", bound_json(s->cons[i].lo));
            }
            if (!isinf(s->cons[i].hi)) {
                json_object_set_new(c, "max", bound_json(s->cons[i].hi));
            }
            json_array_append_new(out, c);
        }
        json_object_set_new(def, "constraints", out);
    }
    if (s->has_ref) {
        out = json_object();
        for (size_t i = 0; i < s->n_obj; i++) {
            json_object_set_new(out, s->obj[i].name, json_real(s->ref[i]));
        }
        json_object_set_new(def, "reference_point", out);
    }
    return 0;
}

int hpo__study_build(const json_t *body, const uint64_t *seed_fallback, struct study **ret,
        struct hpo_error *err)
{
    struct study *s;
    const char *key;
    json_t *v, *def;
    char field[160];
    int r;

    if (!json_is_object(body)) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_JSON, NULL, "body must be a JSON object");
    }
    json_object_foreach((json_t *)body, key, v) {
        bool known = false;
        for (size_t k = 0; study_keys[k]; k++) {
            known = known || strcmp(study_keys[k], key) == 0;
        }
        if (!known) {
            snprintf(field, sizeof(field), "%.128s", key);
            return FAIL(field, "unknown field '%s'", field);
        }
    }
    v = json_object_get(body, "name");
    if (v == NULL) {
        return FAIL("name", "name is required");
    }
    if (!json_is_string(v) || !hpo_name_valid(json_string_value(v))) {
        return FAIL("name", "name must be 1-128 characters of A-Z a-z 0-9 _ . -");
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->cache_lock, NULL);
    atomic_init(&s->refs, 1);
    s->chain = hpo_storage_chain_new();
    if (s->chain == NULL) {
        hpo_oom();
    }
    s->best = -1;
    s->max_trials = -1;
    snprintf(s->name, sizeof(s->name), "%s", json_string_value(v));
    def = json_object();
    s->definition = def;
    json_object_set_new(def, "name", json_string(s->name));
    r = read_objectives(s, body, def, err);
    if (r < 0) {
        goto fail;
    }
    v = json_object_get(body, "params");
    if (v == NULL) {
        r = FAIL("params", "params is required");
        goto fail;
    }
    r = hpo_space_parse(v, &s->space, err);
    if (r < 0) {
        goto fail;
    }
    json_object_set_new(def, "params", hpo_space_to_json(s->space));
    s->evictable = s->space->has_vectors;
    for (size_t i = 0; i < s->space->n_params; i++) {
        if (s->space->params[i].size > 0 && s->space->params[i].size <= 1000) {
            s->evictable = false;
        }
    }
    r = build_sampler(s, json_object_get(body, "sampler"), seed_fallback, def, err);
    if (r < 0) {
        goto fail;
    }
    r = build_pruner(s, json_object_get(body, "pruner"), def, err);
    if (r < 0) {
        goto fail;
    }
    r = read_limits(s, body, def, err);
    if (r < 0) {
        goto fail;
    }
    r = hpo__warm_parse(s, body, def, err);
    if (r < 0) {
        goto fail;
    }
    hpo_history_init(&s->history, s->space, s->name, s->maximize);
    for (size_t i = 0; i < s->n_obj; i++) {
        s->obj_max[i] = s->obj[i].maximize;
    }
    for (size_t i = 0; i < s->n_cons; i++) {
        s->cons_lo[i] = s->cons[i].lo;
        s->cons_hi[i] = s->cons[i].hi;
    }
    s->history.n_obj = s->n_obj;
    s->history.n_cons = s->n_cons;
    s->history.obj_maximize = s->obj_max;
    s->history.cons_lo = s->cons_lo;
    s->history.cons_hi = s->cons_hi;
    s->history.reference = s->has_ref ? s->ref : NULL;
    if (s->sampler_type->save != NULL &&
            s->sampler_type->save(s->sampler, &s->state_blob, &s->state_len) < 0) {
        free(s->state_blob);
        s->state_blob = NULL;
        s->state_len = 0;
    }
    *ret = s;
    return 0;
fail:
    hpo__study_free(s);
    return r;
}

void hpo__study_free(struct study *s)
{
    if (s == NULL) {
        return;
    }
    hpo_history_finish(&s->history);
    hpo_storage_chain_unref(s->chain);
    if (s->sampler_type && s->sampler_type->destroy && s->sampler) {
        s->sampler_type->destroy(s->sampler);
    }
    if (s->pruner_type && s->pruner_type->destroy && s->pruner) {
        s->pruner_type->destroy(s->pruner);
    }
    hpo__warm_free(s); /* after the sampler: it borrowed the prior */
    for (size_t i = 0; i < HPO_BUF_N(&s->grads, struct pending_gradient); i++) {
        free(HPO_BUF_AT(&s->grads, struct pending_gradient, i).data);
        hpo_vector_memory_give(HPO_BUF_AT(&s->grads, struct pending_gradient, i).held);
    }
    hpo_buf_free(&s->grads);
    hpo_buf_free(&s->running);
    hpo_buf_free(&s->front);
    free(s->state_blob);
    free(s->spare_blob);
    hpo_space_destroy(s->space);
    json_decref(s->definition);
    json_decref(s->summary);
    pthread_mutex_destroy(&s->cache_lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static json_t *time_json(int64_t ms)
{
    char buf[40];

    if (ms <= 0) {
        return json_null();
    }
    hpo_format_time(ms, buf, sizeof(buf));
    return json_string(buf);
}

static json_t *number_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

double hpo__trial_objective(const struct study *s, const struct hpo_trial *t, size_t i)
{
    if (t->results == NULL) {
        return i == 0 ? t->value : NAN;
    }
    return i < s->n_obj ? t->results[i] : NAN;
}

bool hpo__trial_feasible(const struct study *s, const struct hpo_trial *t)
{
    if (s->n_cons == 0) {
        return true;
    }
    if (t->results == NULL) {
        return false;
    }
    for (size_t j = 0; j < s->n_cons; j++) {
        double v = t->results[s->n_obj + j];
        if (!(v >= s->cons[j].lo && v <= s->cons[j].hi)) {
            return false;
        }
    }
    return true;
}

/* "values", "constraints" and "feasible" of a trial (docs/API.md "Objectives and constraints"). */
static void results_to_json(const struct study *s, const struct hpo_trial *t, json_t *o)
{
    json_t *vals = json_object(), *cons;

    if (t->state == HPO_STATE_COMPLETE || t->results != NULL) {
        for (size_t i = 0; i < s->n_obj; i++) {
            double v = hpo__trial_objective(s, t, i);
            if (!isnan(v)) {
                json_object_set_new(vals, s->obj[i].name, json_real(v));
            }
        }
    }
    json_object_set_new(o, "values", vals);
    if (s->n_cons == 0) {
        return;
    }
    cons = json_object();
    for (size_t j = 0; t->results != NULL && j < s->n_cons; j++) {
        double v = t->results[s->n_obj + j];
        if (!isnan(v)) {
            json_object_set_new(cons, s->cons[j].name, json_real(v));
        }
    }
    json_object_set_new(o, "constraints", cons);
    json_object_set_new(o, "feasible",
            json_boolean(t->state == HPO_STATE_COMPLETE && hpo__trial_feasible(s, t)));
}

json_t *hpo__trial_to_json(struct study *s, const struct hpo_trial *t)
{
    json_t *o = json_object();
    json_t *inter = json_array();
    char href[512];

    snprintf(href, sizeof(href), "/v1/studies/%s/trials/%lld/params", s->name,
            (long long)t->number);
    json_object_set_new(o, "study", json_string(s->name));
    json_object_set_new(o, "number", json_integer(t->number));
    json_object_set_new(o, "state", json_string(hpo_state_name(t->state)));
    json_object_set_new(o, "params",
            hpo_space_values_to_json_thin(s->space, t->values, href, 1000, t->thin));
    if (s->n_obj == 1) {
        json_object_set_new(o, "value", number_or_null(t->value));
    }
    if (hpo__study_has_results(s)) {
        results_to_json(s, t, o);
    }
    for (size_t i = 0; i < t->n_reports; i++) {
        json_array_append_new(inter, json_pack("{s:I,s:o}", "step", (json_int_t)t->reports[i].step,
                                             "value", number_or_null(t->reports[i].value)));
    }
    json_object_set_new(o, "intermediate", inter);
    json_object_set_new(o, "user_attrs", t->user_attrs ? json_incref(t->user_attrs) : json_object());
    json_object_set_new(o, "worker", t->worker ? json_string(t->worker) : json_null());
    json_object_set_new(o, "retry_of", t->retry_of >= 0 ? json_integer(t->retry_of) : json_null());
    json_object_set_new(o, "created_at", time_json(t->created_at));
    json_object_set_new(o, "started_at", time_json(t->started_at));
    json_object_set_new(o, "completed_at", time_json(t->completed_at));
    json_object_set_new(o, "heartbeat_at", time_json(t->heartbeat_at));
    return o;
}

/* Mean value of the last 20 told (complete) trials, or null. */
static json_t *recent_value(const struct study *s)
{
    const struct hpo_history *h = &s->history;
    double sum = 0.0;
    size_t n = 0;

    for (size_t i = h->n_trials; i > 0 && n < 20; i--) {
        const struct hpo_trial *t = h->trials[i - 1];
        if (t->state == HPO_STATE_COMPLETE && isfinite(t->value)) {
            sum += t->value;
            n++;
        }
    }
    return n ? json_real(sum / (double)n) : json_null();
}

json_t *hpo__study_to_json(struct study *s, bool with_params)
{
    json_t *o = json_deep_copy(s->definition);
    const struct hpo_history *h = &s->history;
    json_t *counts;

    if (!with_params) {
        json_object_del(o, "params");
    }
    json_object_set_new(o, "created_at", time_json(s->created_at));
    counts = json_object();
    for (int i = 0; i < HPO_STATE_COUNT; i++) {
        json_object_set_new(counts, hpo_state_name((enum hpo_state)i),
                json_integer((json_int_t)h->count[i]));
    }
    json_object_set_new(counts, "total", json_integer((json_int_t)h->n_trials));
    json_object_set_new(o, "trials", counts);
    if (s->n_obj > 1) {
        const int64_t *front;
        size_t n_front;
        json_t *bt = json_array();
        if (hpo__study_front_numbers(s, &front, &n_front) == 0) {
            for (size_t i = 0; i < n_front; i++) {
                const struct hpo_trial *t = h->trials[front[i]];
                json_t *tj = hpo__trial_to_json(s, t);
                json_array_append_new(bt,
                        json_pack("{s:I,s:O,s:O}", "number", (json_int_t)t->number, "values",
                                json_object_get(tj, "values"), "params",
                                json_object_get(tj, "params")));
                json_decref(tj);
            }
        }
        json_object_set_new(o, "best_trials", bt);
    } else if (s->best >= 0) {
        const struct hpo_trial *t = h->trials[s->best];
        char href[512];
        snprintf(href, sizeof(href), "/v1/studies/%s/trials/%lld/params", s->name,
                (long long)t->number);
        json_object_set_new(o, "best_trial",
                json_pack("{s:I,s:o,s:o}", "number", (json_int_t)t->number, "value",
                        number_or_null(t->value), "params",
                        hpo_space_values_to_json_thin(s->space, t->values, href, 1000,
                                t->thin)));
    } else {
        json_object_set_new(o, "best_trial", json_null());
    }
    if (s->warm_names != NULL) {
        json_object_set_new(o, "warm_start", hpo__warm_summary(s));
    }
    if (s->sampler_type->status != NULL) {
        json_t *st = s->sampler_type->status(s->sampler);
        if (st != NULL) {
            json_object_set_new(st, "recent_value", recent_value(s));
            json_object_set_new(o,
                    strcmp(s->sampler_type->name, "gradient") == 0 ? "gradient" : "sampler_status",
                    st);
        }
    }
    return o;
}

int hpo__study_front(const struct study *s, struct hpo__front *f)
{
    const struct hpo_history *h = &s->history;
    size_t m = s->n_obj, n = h->count[HPO_STATE_COMPLETE], k = 0;
    unsigned char maxi[HPO_OBJECTIVES_MAX];
    double v[HPO_OBJECTIVES_MAX], c[HPO_CONSTRAINTS_MAX];

    memset(f, 0, sizeof(*f));
    f->loss = malloc((n ? n : 1) * m * sizeof(double));
    f->violation = malloc((n ? n : 1) * sizeof(double));
    f->trial = malloc((n ? n : 1) * sizeof(size_t));
    f->front = malloc((n ? n : 1) * sizeof(size_t));
    if (f->loss == NULL || f->violation == NULL || f->trial == NULL || f->front == NULL) {
        hpo__front_free(f);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m; i++) {
        maxi[i] = s->obj[i].maximize;
    }
    for (size_t i = 0; i < h->n_trials && k < n; i++) {
        const struct hpo_trial *t = h->trials[i];
        if (t->state != HPO_STATE_COMPLETE) {
            continue;
        }
        for (size_t j = 0; j < m; j++) {
            v[j] = hpo__trial_objective(s, t, j);
        }
        hpo_mo_loss(v, maxi, (unsigned)m, f->loss + k * m);
        for (size_t j = 0; j < s->n_cons; j++) {
            c[j] = hpo_mo_constraint_value(t->results ? t->results[m + j] : NAN, s->cons[j].lo,
                    s->cons[j].hi);
        }
        f->violation[k] = hpo_mo_violation(c, s->n_cons);
        f->trial[k] = i;
        k++;
    }
    f->n = k;
    f->n_front = hpo_mo_front(f->loss, k, (unsigned)m, f->violation, f->front);
    if (f->n_front < 0) {
        hpo__front_free(f);
        return -ENOMEM;
    }
    return 0;
}

int hpo__study_front_numbers(struct study *s, const int64_t **ret_numbers, size_t *ret_n)
{
    struct hpo__front f;

    if (!s->front_valid) {
        if (hpo__study_front(s, &f) < 0) {
            return -ENOMEM;
        }
        s->front.len = 0;
        for (long i = 0; i < f.n_front; i++) {
            *(int64_t *)hpo_buf_add_or_die(&s->front, sizeof(int64_t)) =
                    s->history.trials[f.trial[f.front[i]]]->number;
        }
        hpo__front_free(&f);
        s->front_valid = true;
    }
    *ret_numbers = (const int64_t *)(void *)s->front.data;
    *ret_n = HPO_BUF_N(&s->front, int64_t);
    return 0;
}

/* A trial's objectives as losses (every one minimized). */
static void trial_loss(const struct study *s, const struct hpo_trial *t, double *loss)
{
    unsigned char maxi[HPO_OBJECTIVES_MAX];
    double v[HPO_OBJECTIVES_MAX];

    for (size_t j = 0; j < s->n_obj; j++) {
        maxi[j] = s->obj[j].maximize;
        v[j] = hpo__trial_objective(s, t, j);
    }
    hpo_mo_loss(v, maxi, (unsigned)s->n_obj, loss);
}

/*
** Keep the front as committed trial t changed: a feasible complete trial no
** member dominates joins it (in number order) and drops those it dominates;
** any other change to a member makes the front be rebuilt when next asked.
*/
static void front_note(struct study *s, const struct hpo_trial *t)
{
    int64_t *num = (int64_t *)(void *)s->front.data;
    size_t n = HPO_BUF_N(&s->front, int64_t), k = 0, at;
    double a[HPO_OBJECTIVES_MAX], b[HPO_OBJECTIVES_MAX];
    unsigned m = (unsigned)s->n_obj;

    if (!s->front_valid || s->n_obj < 2) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (num[i] == t->number) {
            s->front_valid = t->state == HPO_STATE_COMPLETE && hpo__trial_feasible(s, t);
            return; /* already a member: unchanged, or rebuilt */
        }
    }
    if (t->state != HPO_STATE_COMPLETE || !hpo__trial_feasible(s, t)) {
        return;
    }
    trial_loss(s, t, a);
    for (size_t i = 0; i < n; i++) {
        trial_loss(s, s->history.trials[num[i]], b);
        if (hpo_mo_dominates(b, a, m)) {
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        trial_loss(s, s->history.trials[num[i]], b);
        if (!hpo_mo_dominates(a, b, m)) {
            num[k++] = num[i];
        }
    }
    s->front.len = k * sizeof(int64_t);
    hpo_buf_add_or_die(&s->front, sizeof(int64_t));
    num = (int64_t *)(void *)s->front.data;
    for (at = k; at > 0 && num[at - 1] > t->number; at--) {
        num[at] = num[at - 1];
    }
    num[at] = t->number;
}

void hpo__front_free(struct hpo__front *f)
{
    free(f->loss);
    free(f->violation);
    free(f->trial);
    free(f->front);
    memset(f, 0, sizeof(*f));
}

static bool better(const struct study *s, const struct hpo_trial *a, const struct hpo_trial *b)
{
    return s->maximize ? a->value > b->value : a->value < b->value;
}

static void running_remove(struct study *s, int64_t number)
{
    int64_t *r = (int64_t *)(void *)s->running.data;
    size_t n = HPO_BUF_N(&s->running, int64_t);

    for (size_t i = 0; i < n; i++) {
        if (r[i] == number) {
            r[i] = r[n - 1];
            s->running.len -= sizeof(int64_t);
            return;
        }
    }
}

static void running_add(struct study *s, int64_t number)
{
    const int64_t *r = (const int64_t *)(void *)s->running.data;

    for (size_t i = 0; i < HPO_BUF_N(&s->running, int64_t); i++) {
        if (r[i] == number) {
            return;
        }
    }
    /* Tiny, and in the middle of a change. */
    *(int64_t *)hpo_buf_add_or_die(&s->running, sizeof(number)) = number;
}

void hpo__study_cache_summary(struct study *s)
{
    json_t *sum = hpo__study_to_json(s, true);

    pthread_mutex_lock(&s->cache_lock);
    json_decref(s->summary);
    s->summary = sum;
    s->summary_valid = true;
    pthread_mutex_unlock(&s->cache_lock);
}

json_t *hpo__study_read_summary(struct study *s, bool with_params)
{
    json_t *out = NULL;

    if (pthread_mutex_trylock(&s->lock) != 0) {
        pthread_mutex_lock(&s->cache_lock);
        if (s->summary_valid && s->summary != NULL) {
            out = json_deep_copy(s->summary);
        }
        pthread_mutex_unlock(&s->cache_lock);
        if (out != NULL) {
            if (!with_params) {
                json_object_del(out, "params");
            }
            return out;
        }
        pthread_mutex_lock(&s->lock);
    }
    if (!s->deleted) {
        out = hpo__study_to_json(s, with_params);
    }
    pthread_mutex_unlock(&s->lock);
    return out;
}

void hpo__study_note_state(struct study *s, struct hpo_trial *t)
{
    pthread_mutex_lock(&s->cache_lock);
    s->summary_valid = false;
    pthread_mutex_unlock(&s->cache_lock);
    if (t->state == HPO_STATE_RUNNING) {
        running_add(s, t->number);
    } else {
        running_remove(s, t->number);
    }
    if (t->state == HPO_STATE_COMPLETE && isfinite(t->value) && s->n_obj == 1 &&
            hpo__trial_feasible(s, t) && (s->best < 0 || better(s, t, s->history.trials[s->best]))) {
        s->best = (long)t->number;
    }
    front_note(s, t);
}

void hpo__study_reindex(struct study *s)
{
    s->best = -1;
    s->front_valid = false;
    s->running.len = 0;
    s->waiting_cursor = 0;
    for (size_t i = 0; i < s->history.n_trials; i++) {
        hpo__study_note_state(s, s->history.trials[i]);
    }
}
