/*
** trial.c: a trial as the daemon returns it, with typed access to its params.
*/
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client-int.h"

struct hpo_trial {
    json_t *root;       /* the whole trial object, owned */
    json_t *params;     /* borrowed from root; an object */
    char *text;         /* compact JSON of root, owned */
    const char *study;  /* borrowed from root */
    const char *state;  /* borrowed from root */
    int64_t number;
    size_t n_names;
    const char **names; /* borrowed keys of params, in the server's order */
};

int hpo__trial_from_json(json_t *root, struct hpo_trial **ret_trial)
{
    struct hpo_trial *t;
    json_t *number = json_object_get(root, "number");
    json_t *params = json_object_get(root, "params");
    const char *key;
    json_t *value;
    size_t i = 0;

    if (!json_is_object(root) || !json_is_integer(number) || !json_is_object(params) ||
            !json_is_string(json_object_get(root, "study")) ||
            !json_is_string(json_object_get(root, "state"))) {
        json_decref(root);
        return -EINVAL;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        json_decref(root);
        return -ENOMEM;
    }
    t->root = root;
    t->params = params;
    t->number = json_integer_value(number);
    t->study = json_string_value(json_object_get(root, "study"));
    t->state = json_string_value(json_object_get(root, "state"));
    t->text = json_dumps(root, JSON_COMPACT);
    t->n_names = json_object_size(params);
    t->names = calloc(t->n_names + 1, sizeof(*t->names));
    if (t->text == NULL || t->names == NULL) {
        hpo_trial_free(t);
        return -ENOMEM;
    }
    /* jansson keeps insertion order, so this is the order the server wrote. */
    json_object_foreach(params, key, value) {
        t->names[i++] = key;
    }
    *ret_trial = t;
    return 0;
}

int hpo_trial_parse(const char *json, size_t len, struct hpo_trial **ret_trial)
{
    json_t *root;

    if (json == NULL || ret_trial == NULL) {
        return -EINVAL;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    if (root == NULL) {
        return -EINVAL;
    }
    return hpo__trial_from_json(root, ret_trial);
}

void hpo_trial_free(struct hpo_trial *t)
{
    if (t == NULL) {
        return;
    }
    free(t->names);
    free(t->text);
    json_decref(t->root);
    free(t);
}

const char *hpo_trial_study(const struct hpo_trial *t)
{
    return t->study;
}

int64_t hpo_trial_number(const struct hpo_trial *t)
{
    return t->number;
}

const char *hpo_trial_state(const struct hpo_trial *t)
{
    return t->state;
}

int hpo_trial_value(const struct hpo_trial *t, double *ret_value)
{
    json_t *v = json_object_get(t->root, "value");

    if (!json_is_number(v)) {
        return -ENOENT;
    }
    *ret_value = json_number_value(v);
    return 0;
}

int hpo_trial_objective(const struct hpo_trial *t, const char *name, double *ret_value)
{
    json_t *vals, *v;

    if (t == NULL || name == NULL || ret_value == NULL) {
        return -EINVAL;
    }
    vals = json_object_get(t->root, "values");
    v = json_is_object(vals) ? json_object_get(vals, name) : json_object_get(t->root, "value");
    if (!json_is_number(v)) {
        return -ENOENT;
    }
    *ret_value = json_number_value(v);
    return 0;
}

int hpo_trial_constraint(const struct hpo_trial *t, const char *name, double *ret_value)
{
    json_t *v;

    if (t == NULL || name == NULL || ret_value == NULL) {
        return -EINVAL;
    }
    v = json_object_get(json_object_get(t->root, "constraints"), name);
    if (!json_is_number(v)) {
        return -ENOENT;
    }
    *ret_value = json_number_value(v);
    return 0;
}

int hpo_trial_feasible(const struct hpo_trial *t)
{
    json_t *f = json_object_get(t->root, "feasible");

    if (json_is_boolean(f)) {
        return json_is_true(f) ? 1 : 0;
    }
    return strcmp(t->state, "complete") == 0 ? 1 : 0;
}

const char *hpo_trial_json(const struct hpo_trial *t)
{
    return t->text;
}

size_t hpo_trial_param_count(const struct hpo_trial *t)
{
    return t->n_names;
}

const char *hpo_trial_param_name(const struct hpo_trial *t, size_t i)
{
    return i < t->n_names ? t->names[i] : NULL;
}

json_t *hpo__trial_param(const struct hpo_trial *t, const char *name)
{
    return json_object_get(t->params, name);
}

/* The named param's value (borrowed): -EINVAL for bad arguments, -ENOENT when absent. */
static int param_lookup(const struct hpo_trial *t, const char *name, const void *ret_value,
        json_t **ret)
{
    if (t == NULL || name == NULL || ret_value == NULL) {
        return -EINVAL;
    }
    *ret = json_object_get(t->params, name);
    return *ret == NULL ? -ENOENT : 0;
}

int hpo_trial_param_double(const struct hpo_trial *t, const char *name, double *ret_value)
{
    json_t *v;
    int r = param_lookup(t, name, ret_value, &v);

    if (r < 0) {
        return r;
    }
    if (!json_is_number(v)) {
        return -EINVAL;
    }
    *ret_value = json_number_value(v);
    return 0;
}

int hpo_trial_param_int(const struct hpo_trial *t, const char *name, int64_t *ret_value)
{
    json_t *v;
    int r = param_lookup(t, name, ret_value, &v);

    if (r < 0) {
        return r;
    }
    if (!json_is_integer(v)) {
        return -EINVAL;
    }
    *ret_value = (int64_t)json_integer_value(v);
    return 0;
}

int hpo_trial_param_string(const struct hpo_trial *t, const char *name, const char **ret_value)
{
    json_t *v;
    int r = param_lookup(t, name, ret_value, &v);

    if (r < 0) {
        return r;
    }
    if (!json_is_string(v)) {
        return -EINVAL;
    }
    *ret_value = json_string_value(v);
    return 0;
}

int hpo_trial_param_bool(const struct hpo_trial *t, const char *name, bool *ret_value)
{
    json_t *v;
    int r = param_lookup(t, name, ret_value, &v);

    if (r < 0) {
        return r;
    }
    if (!json_is_boolean(v)) {
        return -EINVAL;
    }
    *ret_value = json_is_true(v);
    return 0;
}

/* Shortest "%.Ng" text that reads back as the same double. */
static void format_double(char *buf, size_t size, double x)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) {
            return;
        }
    }
}

int hpo_trial_param_format(const struct hpo_trial *t, const char *name, char **ret_text)
{
    char num[64];
    json_t *v;
    char *out = NULL;

    if (t == NULL || name == NULL || ret_text == NULL) {
        return -EINVAL;
    }
    v = json_object_get(t->params, name);
    if (v == NULL) {
        return -ENOENT;
    }
    switch (json_typeof(v)) {
    case JSON_STRING:
        out = strdup(json_string_value(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        out = strdup(num);
        break;
    case JSON_REAL:
        format_double(num, sizeof(num), json_real_value(v));
        out = strdup(num);
        break;
    case JSON_TRUE:
        out = strdup("true");
        break;
    case JSON_FALSE:
        out = strdup("false");
        break;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        size_t cap = n * 26 + 1;
        size_t len = 0;

        out = malloc(cap);
        if (out == NULL) {
            return -ENOMEM;
        }
        out[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(v, i);
            if (!json_is_number(x)) {
                free(out);
                return -EINVAL;
            }
            format_double(num, sizeof(num), json_number_value(x));
            len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", num);
        }
        break;
    }
    default:
        return -EINVAL;
    }
    if (out == NULL) {
        return -ENOMEM;
    }
    *ret_text = out;
    return 0;
}
