/*
** decode.c: the decoders (service-int.h): each request kind's body and
** query checked and turned into arguments before any study is touched, so
** every check that needs no study is here, testable without a database
** (tests/unit/test-service-decode.c, tests/fuzz/fuzz-decode.c).
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/options.h"
#include "service-int.h"

#define FAIL(field, ...) hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, __VA_ARGS__)

/* Every key of `body` (NULL: none) must be one of `allowed` (NULL-terminated). */
static int check_keys(const json_t *body, const char *const *allowed, struct hpo_error *err)
{
    const char *key;
    json_t *v;

    if (body == NULL) {
        return 0;
    }
    json_object_foreach((json_t *)body, key, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++) {
            ok = ok || strcmp(allowed[i], key) == 0;
        }
        if (!ok) {
            char field[130];
            snprintf(field, sizeof(field), "%.128s", key);
            return FAIL(field, "unknown field '%s'", field);
        }
    }
    return 0;
}

static const json_t *field(const json_t *body, const char *key)
{
    return body != NULL ? json_object_get(body, key) : NULL;
}

static bool is_finite_number(const json_t *v)
{
    return json_is_number(v) && isfinite(json_number_value(v));
}

static int user_attrs(const json_t *body, const json_t **ret, struct hpo_error *err)
{
    const json_t *attrs = field(body, "user_attrs");

    if (attrs != NULL && !json_is_object(attrs)) {
        return FAIL("user_attrs", "user_attrs must be an object");
    }
    *ret = attrs;
    return 0;
}

int hpo__decode_none(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err)
{
    memset(a, 0, sizeof(*a));
    return 0;
}

int hpo__decode_empty(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err)
{
    static const char *const allowed[] = { NULL };

    memset(a, 0, sizeof(*a));
    return check_keys(body, allowed, err);
}

int hpo__decode_study_create(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err)
{
    const json_t *name = field(body, "name");

    if (body == NULL) {
        return FAIL("name", "name is required");
    }
    if (json_is_string(name) && (strcmp(json_string_value(name), ".") == 0 ||
                                        strcmp(json_string_value(name), "..") == 0)) {
        /* Valid characters, but a path segment "." or ".." is resolved away by clients. */
        return FAIL("name", "name must not be '.' or '..' (clients cannot address them in a URL)");
    }
    a->create.body = body;
    return 0;
}

int hpo__decode_ask(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err)
{
    static const char *const allowed[] = { "worker", NULL };
    const json_t *w = field(body, "worker");

    a->ask.worker = NULL;
    if (check_keys(body, allowed, err) < 0) {
        return -EINVAL;
    }
    if (w == NULL || json_is_null(w)) {
        return 0;
    }
    if (!json_is_string(w) || strlen(json_string_value(w)) > 256) {
        return FAIL("worker", "worker must be a string of at most 256 bytes");
    }
    a->ask.worker = json_string_value(w);
    return 0;
}

/*
** "values" and "constraints": objects of finite numbers (names are checked
** against the study by the op). "values" with "value" is invalid_argument.
*/
static int decode_results(const json_t *body, bool has_value, const json_t **ret_values,
        const json_t **ret_constraints, struct hpo_error *err)
{
    const json_t *values = field(body, "values"), *cons = field(body, "constraints");
    const char *key;
    json_t *v;
    char f[160];

    if (values != NULL) {
        if (has_value) {
            return FAIL("values", "give value or values, not both");
        }
        if (!json_is_object(values) || json_object_size(values) == 0) {
            return FAIL("values", "values must be an object of objective name to number");
        }
        json_object_foreach((json_t *)values, key, v) {
            if (!is_finite_number(v)) {
                snprintf(f, sizeof(f), "values.%.128s", key);
                return FAIL(f, "%s must be a finite number", f);
            }
        }
    }
    if (cons != NULL) {
        if (!json_is_object(cons)) {
            return FAIL("constraints", "constraints must be an object of constraint name to number");
        }
        json_object_foreach((json_t *)cons, key, v) {
            if (!is_finite_number(v)) {
                snprintf(f, sizeof(f), "constraints.%.128s", key);
                return FAIL(f, "%s must be a finite number", f);
            }
        }
    }
    *ret_values = values;
    *ret_constraints = cons;
    return 0;
}

int hpo__decode_trial_create(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err)
{
    static const char *const allowed[] = { "params", "value", "values", "constraints",
        "user_attrs", NULL };
    const json_t *value = field(body, "value");
    struct hpo_service_trial_create_args *out = &a->trial;
    int r;

    if (check_keys(body, allowed, err) < 0) {
        return -EINVAL;
    }
    out->params = field(body, "params");
    if (out->params == NULL) {
        return FAIL("params", "params is required");
    }
    if (value != NULL && !is_finite_number(value)) {
        return FAIL("value", "value must be a finite number");
    }
    r = decode_results(body, value != NULL, &out->values, &out->constraints, err);
    if (r < 0) {
        return r;
    }
    out->has_value = value != NULL || out->values != NULL;
    if (!out->has_value && out->constraints != NULL) {
        return FAIL("constraints", "constraints go only with values (a complete trial)");
    }
    out->value = value != NULL ? json_number_value(value) : NAN;
    return user_attrs(body, &out->attrs, err);
}

int hpo__decode_tell(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err)
{
    static const char *const allowed[] = { "value", "values", "constraints", "state",
        "user_attrs", "gradient", NULL };
    const json_t *value = field(body, "value"), *state = field(body, "state");
    struct hpo_service_tell_args *out = &a->tell;
    int r;

    if (check_keys(body, allowed, err) < 0) {
        return -EINVAL;
    }
    out->state = HPO_STATE_COMPLETE;
    if (state != NULL) {
        int st = json_is_string(state) ? hpo_state_parse(json_string_value(state)) : -1;
        if (st != HPO_STATE_COMPLETE && st != HPO_STATE_FAILED && st != HPO_STATE_PRUNED) {
            return FAIL("state", "state must be \"complete\", \"failed\" or \"pruned\"");
        }
        out->state = (enum hpo_state)st;
    }
    if (value != NULL && !is_finite_number(value)) {
        return FAIL("value", "value must be a finite number");
    }
    r = decode_results(body, value != NULL, &out->values, &out->constraints, err);
    if (r < 0) {
        return r;
    }
    if (out->state == HPO_STATE_COMPLETE && value == NULL && out->values == NULL) {
        return FAIL("value", "value is required to complete a trial (or give state failed/pruned)");
    }
    if (out->state != HPO_STATE_COMPLETE && value != NULL) {
        return FAIL("value", "value goes only with a complete trial");
    }
    if (out->state != HPO_STATE_COMPLETE && out->values != NULL) {
        return FAIL("values", "values go only with a complete trial");
    }
    if (out->state != HPO_STATE_COMPLETE && out->constraints != NULL) {
        return FAIL("constraints", "constraints go only with a complete trial");
    }
    out->value = value != NULL ? json_number_value(value) : NAN;
    out->gradient = field(body, "gradient");
    return user_attrs(body, &out->attrs, err);
}

int hpo__decode_report(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err)
{
    static const char *const allowed[] = { "step", "value", NULL };
    const json_t *step = field(body, "step"), *value = field(body, "value");

    if (check_keys(body, allowed, err) < 0) {
        return -EINVAL;
    }
    if (step == NULL || !json_is_integer(step) || json_integer_value(step) < 0) {
        return FAIL("step", "step must be an integer >= 0");
    }
    if (value == NULL || !is_finite_number(value)) {
        return FAIL("value", "value must be a finite number");
    }
    a->report.step = json_integer_value(step);
    a->report.value = json_number_value(value);
    return 0;
}

int hpo__decode_patch(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err)
{
    static const char *const allowed[] = { "user_attrs", NULL };

    if (check_keys(body, allowed, err) < 0) {
        return -EINVAL;
    }
    return user_attrs(body, &a->patch.attrs, err);
}

/* ---- query strings ------------------------------------------------------------- */

/* The value of the first `key` in the query (NULL: absent, or given without '='). */
static const char *query_get(const struct hpo_service_query *q, const char *key)
{
    for (size_t i = 0; q != NULL && i < q->n; i++) {
        if (strcmp(q->pairs[i].key, key) == 0) {
            return q->pairs[i].value;
        }
    }
    return NULL;
}

static int query_int(const struct hpo_service_query *q, const char *key, int64_t def, int64_t min,
        int64_t *ret, struct hpo_error *err)
{
    const char *v = query_get(q, key);

    *ret = def;
    if (v != NULL && (!hpo_parse_count(v, ret) || *ret < min)) {
        return FAIL(key, "%s must be an integer >= %lld", key, (long long)min);
    }
    return 0;
}

/*
** GET .../trials: state, feasible (true, false), limit (1000; CSV: every row), offset, format
** (json, csv; else the Accept header), intermediate (true, false). The body
** is not read.
*/
int hpo__decode_trials_list(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err)
{
    static const char *const allowed[] = { "state", "feasible", "limit", "offset", "format",
        "intermediate", NULL };
    struct hpo_service_list_args *out = &a->list;
    const char *state = query_get(q, "state"), *format = query_get(q, "format");
    const char *inter = query_get(q, "intermediate"), *feasible = query_get(q, "feasible");
    const char *accept = q != NULL ? q->accept : NULL;

    for (size_t i = 0; q != NULL && i < q->n; i++) {
        bool known = false;
        for (size_t k = 0; allowed[k] != NULL; k++) {
            known = known || strcmp(allowed[k], q->pairs[i].key) == 0;
        }
        if (!known) {
            char bad[130];
            snprintf(bad, sizeof(bad), "%.128s", q->pairs[i].key);
            return FAIL(bad, "unknown query parameter '%s'", bad);
        }
    }
    out->state_filter = -1;
    if (state != NULL) {
        out->state_filter = hpo_state_parse(state);
        if (out->state_filter < 0) {
            return FAIL("state", "state must be waiting, running, complete, pruned or failed");
        }
    }
    out->feasible_filter = 0;
    if (feasible != NULL) {
        if (strcmp(feasible, "true") != 0 && strcmp(feasible, "false") != 0) {
            return FAIL("feasible", "feasible must be true or false");
        }
        out->feasible_filter = strcmp(feasible, "true") == 0 ? 1 : 2;
    }
    if (query_int(q, "limit", 1000, 1, &out->limit, err) < 0 ||
            query_int(q, "offset", 0, 0, &out->offset, err) < 0) {
        return -EINVAL;
    }
    if (format != NULL && strcmp(format, "csv") != 0 && strcmp(format, "json") != 0) {
        return FAIL("format", "format must be json or csv");
    }
    out->csv = (format != NULL && strcmp(format, "csv") == 0) ||
            (format == NULL && accept != NULL && strstr(accept, "text/csv") != NULL);
    /* CSV without a limit is every matching row (streamed). */
    if (out->csv && query_get(q, "limit") == NULL) {
        out->limit = -1;
    }
    if (inter != NULL && strcmp(inter, "true") != 0 && strcmp(inter, "false") != 0) {
        return FAIL("intermediate", "intermediate must be true or false");
    }
    out->intermediate = inter != NULL && strcmp(inter, "true") == 0;
    return 0;
}
