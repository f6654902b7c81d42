/*
** space.c: search-space parsing, validation and the unit-cube transforms.
*/
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hexp.h"
#include "jsonw.h"
#include "parallel.h"
#include "space.h"

/*
** Int bounds: within +-1e15 (a double holds every int to 2^53, but the
** half-step padding low - 0.5 and the decode ulow + u * range need spare
** bits below 1 for every value to round-trip through the unit cube).
*/
#define MAX_INT_BOUND 1000000000000000LL

bool hpo_name_valid(const char *name)
{
    size_t n = 0;

    if (name == NULL) {
        return false;
    }
    for (const char *c = name; *c; c++, n++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-';
        if (!ok || n >= HPO_NAME_MAX) {
            return false;
        }
    }
    return n >= 1;
}

static void param_clear(struct hpo_param *p)
{
    json_decref(p->choices);
    for (size_t c = 0; c < p->n_conditions; c++) {
        free(p->conditions[c].values);
    }
    free(p->conditions);
}

void hpo_space_destroy(struct hpo_space *space)
{
    if (space == NULL) {
        return;
    }
    for (size_t i = 0; i < space->n_params; i++) {
        param_clear(&space->params[i]);
    }
    free(space->params);
    free(space);
}

long hpo_space_find(const struct hpo_space *space, const char *name)
{
    for (size_t i = 0; i < space->n_params; i++) {
        if (strcmp(space->params[i].name, name) == 0) {
            return (long)i;
        }
    }
    return -1;
}

#define FAIL(field, ...) hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, __VA_ARGS__)

static int read_number(const json_t *obj, const char *key, const char *pfx, bool integer,
        double *ret, struct hpo_error *err)
{
    json_t *v = json_object_get(obj, key);
    char field[128];
    double x;

    snprintf(field, sizeof(field), "%s.%s", pfx, key);
    if (v == NULL) {
        return FAIL(field, "%s is required", field);
    }
    if (integer) {
        if (!json_is_integer(v)) {
            return FAIL(field, "%s must be an integer", field);
        }
        /* Compare the integer itself, not its rounded double. */
        if (json_integer_value(v) > MAX_INT_BOUND || json_integer_value(v) < -MAX_INT_BOUND) {
            return FAIL(field, "%s must be within +-1e15", field);
        }
        x = (double)json_integer_value(v);
    } else {
        if (!json_is_number(v)) {
            return FAIL(field, "%s must be a number", field);
        }
        x = json_number_value(v);
        if (!isfinite(x)) {
            return FAIL(field, "%s must be finite", field);
        }
    }
    *ret = x;
    return 0;
}

/*
** low + k*step carries binary rounding noise (0.15000000000000002); use the
** shortest decimal of at most 15 digits that is within a few ulps instead,
** so grid values read as users wrote them. Deterministic, so the grid is the
** same on every call.
*/
static double tidy_grid_value(double v, double step)
{
    char buf[40];
    double t;

    snprintf(buf, sizeof(buf), "%.15g", v);
    t = strtod(buf, NULL);
    /* Never move a value by more than the tolerance that values_from_json allows. */
    return fabs(t - v) <= 4.0 * DBL_EPSILON * fabs(v) && fabs(t - v) <= 1e-9 * step ? t : v;
}

/*
** Grid value k of an int or stepped float param. For floats past low:
** tidied, and a value that cancels to a rounding residue of zero (-0.3 +
** 3 * 0.1 is 5.6e-17) is 0, the value the user meant.
*/
static double grid_value(const struct hpo_param *p, double k)
{
    double v = p->low + k * p->step;

    /* The first grid value is low as the user wrote it, never tidied below it. */
    if (p->type != HPO_PARAM_FLOAT || k == 0.0) {
        return v;
    }
    if (fabs(v) < 1e-9 * p->step) {
        return 0.0;
    }
    return tidy_grid_value(v, p->step);
}

/* Set up ulow/uhigh/n_grid once bounds, step and log are known. */
static void param_finish_transform(struct hpo_param *p)
{
    if (p->type == HPO_PARAM_CATEGORICAL) {
        p->ulow = 0.0;
        p->uhigh = 1.0;
        p->n_grid = (double)p->n_choices;
        return;
    }
    if (p->type == HPO_PARAM_INT && p->log) {
        p->ulow = log(p->low - 0.5);
        p->uhigh = log(p->high + 0.5);
        p->n_grid = p->high - p->low + 1.0;
        return;
    }
    if (p->step > 0.0) {
        double n = floor((p->high - p->low) / p->step + 1e-9);
        /*
        ** Compare the grid value as decoded (0 + 3 * 0.1 is
        ** 0.30000000000000004 but decodes as 0.3, which high = 0.3 admits).
        */
        double top = grid_value(p, n);
        if (top > p->high) {
            /* Rounding pushed the last grid value over high: drop it. */
            n -= 1.0;
            top = grid_value(p, n);
        }
        p->n_grid = n + 1.0;
        p->ulow = p->low - p->step / 2.0;
        p->uhigh = top + p->step / 2.0;
        return;
    }
    p->n_grid = 0.0;
    if (p->log) {
        p->ulow = log(p->low);
        p->uhigh = log(p->high);
    } else {
        p->ulow = p->low;
        p->uhigh = p->high;
    }
}

static int parse_numeric(const json_t *def, struct hpo_param *p, const char *pfx,
        struct hpo_error *err)
{
    bool is_int = p->type == HPO_PARAM_INT;
    json_t *v;
    char field[128];
    int r;

    r = read_number(def, "low", pfx, is_int, &p->low, err);
    if (r < 0) {
        return r;
    }
    r = read_number(def, "high", pfx, is_int, &p->high, err);
    if (r < 0) {
        return r;
    }
    snprintf(field, sizeof(field), "%s.low", pfx);
    if (is_int ? p->low > p->high : !(p->low < p->high)) {
        return FAIL(field, "%s must be %s high", field, is_int ? "<=" : "<");
    }
    v = json_object_get(def, "log");
    if (v != NULL) {
        snprintf(field, sizeof(field), "%s.log", pfx);
        if (!json_is_boolean(v)) {
            return FAIL(field, "%s must be a boolean", field);
        }
        p->log = json_is_true(v);
    }
    v = json_object_get(def, "step");
    snprintf(field, sizeof(field), "%s.step", pfx);
    if (is_int) {
        p->step = 1.0;
        if (v != NULL) {
            if (!json_is_integer(v) || json_integer_value(v) < 1) {
                return FAIL(field, "%s must be an integer >= 1", field);
            }
            p->step = (double)json_integer_value(v);
        }
        if (p->log && p->step != 1.0) {
            return FAIL(field, "%s must be 1 when log is true", field);
        }
        if (p->log && p->low < 1.0) {
            snprintf(field, sizeof(field), "%s.low", pfx);
            return FAIL(field, "%s must be >= 1 when log is true", field);
        }
        /*
        ** Log-int bins narrow as 1/v: beyond about 2e14 a double unit
        ** coordinate can no longer tell v from v + 1, so values would not
        ** round-trip. 1e12 leaves a margin of 100.
        */
        if (p->log && p->high > 1e12) {
            snprintf(field, sizeof(field), "%s.high", pfx);
            return FAIL(field, "%s must be <= 1e12 when log is true", field);
        }
        if (p->high - p->low > 1e15) {
            snprintf(field, sizeof(field), "%s.high", pfx);
            return FAIL(field, "%s - low must be at most 1e15", field);
        }
    } else {
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_number(v) || !(json_number_value(v) > 0.0) ||
                    !isfinite(json_number_value(v))) {
                return FAIL(field, "%s must be a number > 0", field);
            }
            if (p->log) {
                return FAIL(field, "%s and log exclude each other", field);
            }
            p->step = json_number_value(v);
            if ((p->high - p->low) / p->step > 1e15) {
                return FAIL(field, "%s is too small for the range (more than 1e15 values)",
                        field);
            }
        }
        if (p->log && !(p->low > 0.0)) {
            snprintf(field, sizeof(field), "%s.low", pfx);
            return FAIL(field, "%s must be > 0 when log is true", field);
        }
        if (!isfinite(p->high - p->low)) {
            snprintf(field, sizeof(field), "%s.high", pfx);
            return FAIL(field, "%s - low must be finite", field);
        }
    }
    return 0;
}

/* A choice and its position, sorted to find repeats in O(n log n). */
struct choice_ref {
    const json_t *v;
    size_t i;
};

/*
** Order choices by kind (string, number, boolean), then value. Numbers
** compare as doubles, so 1 and 1.0 are the same choice, as choice_index
** treats them.
*/
static int choice_cmp_value(const json_t *a, const json_t *b)
{
    int ka = json_is_string(a) ? 0 : (json_is_number(a) ? 1 : 2);
    int kb = json_is_string(b) ? 0 : (json_is_number(b) ? 1 : 2);

    if (ka != kb) {
        return ka < kb ? -1 : 1;
    }
    if (ka == 0) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        return c != 0 ? c : (la < lb ? -1 : (la > lb ? 1 : 0));
    }
    if (ka == 1) {
        double x = json_number_value(a), y = json_number_value(b);
        return x < y ? -1 : (x > y ? 1 : 0);
    }
    return (int)json_is_true(a) - (int)json_is_true(b);
}

static int choice_cmp(const void *x, const void *y)
{
    const struct choice_ref *a = x, *b = y;
    int c = choice_cmp_value(a->v, b->v);

    if (c != 0) {
        return c;
    }
    return a->i < b->i ? -1 : (a->i > b->i ? 1 : 0);
}

static int parse_choices(const json_t *def, struct hpo_param *p, const char *pfx,
        struct hpo_error *err)
{
    json_t *choices = json_object_get(def, "choices");
    struct choice_ref *refs;
    size_t n, dup = SIZE_MAX, first = 0;
    char field[128];

    snprintf(field, sizeof(field), "%s.choices", pfx);
    if (choices == NULL) {
        return FAIL(field, "%s is required", field);
    }
    if (!json_is_array(choices) || json_array_size(choices) == 0) {
        return FAIL(field, "%s must be a non-empty array", field);
    }
    n = json_array_size(choices);
    if (n > HPO_MAX_CHOICES) {
        return FAIL(field, "%s may hold at most %d choices", field, HPO_MAX_CHOICES);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(choices, i);
        snprintf(field, sizeof(field), "%s.choices[%zu]", pfx, i);
        if (!json_is_string(c) && !json_is_number(c) && !json_is_boolean(c)) {
            return FAIL(field, "%s must be a string, number or boolean", field);
        }
        if (json_is_real(c) && !isfinite(json_real_value(c))) {
            return FAIL(field, "%s must be finite", field);
        }
    }
    /*
    ** Repeats: sort by (value, position); in each run of equal values the
    ** second entry is that value's first repeat. Report the earliest repeat
    ** in the array, naming its first occurrence.
    */
    refs = malloc(n * sizeof(*refs));
    if (refs == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        refs[i].v = json_array_get(choices, i);
        refs[i].i = i;
    }
    qsort(refs, n, sizeof(*refs), choice_cmp);
    for (size_t k = 1; k < n; k++) {
        bool run_start = k == 1 || choice_cmp_value(refs[k - 1].v, refs[k - 2].v) != 0;
        if (run_start && choice_cmp_value(refs[k].v, refs[k - 1].v) == 0 && refs[k].i < dup) {
            dup = refs[k].i;
            first = refs[k - 1].i;
        }
    }
    free(refs);
    if (dup != SIZE_MAX) {
        snprintf(field, sizeof(field), "%s.choices[%zu]", pfx, dup);
        return FAIL(field, "%s repeats choices[%zu]", field, first);
    }
    p->choices = json_incref(choices);
    p->n_choices = n;
    return 0;
}

/* Index of a JSON value among a categorical's choices, or -1. */
static long choice_index(const struct hpo_param *p, const json_t *v)
{
    for (size_t i = 0; i < p->n_choices; i++) {
        json_t *c = json_array_get(p->choices, i);
        if (json_equal(c, v)) {
            return (long)i;
        }
        if (json_is_number(c) && json_is_number(v) && !json_is_boolean(v) &&
                json_number_value(c) == json_number_value(v)) {
            return (long)i;
        }
    }
    return -1;
}

static int parse_when(const json_t *def, struct hpo_space *space, size_t idx, const char *pfx,
        struct hpo_error *err)
{
    struct hpo_param *p = &space->params[idx];
    json_t *when = json_object_get(def, "when");
    const char *key;
    json_t *list;
    char field[256];

    if (when == NULL) {
        return 0;
    }
    snprintf(field, sizeof(field), "%s.when", pfx);
    if (!json_is_object(when) || json_object_size(when) == 0) {
        return FAIL(field, "%s must be a non-empty object", field);
    }
    p->conditions = calloc(json_object_size(when), sizeof(*p->conditions));
    if (p->conditions == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    json_object_foreach(when, key, list) {
        struct hpo_condition *c = &p->conditions[p->n_conditions];
        long parent = -1;
        struct hpo_param *pp;

        snprintf(field, sizeof(field), "%s.when.%s", pfx, key);
        for (size_t i = 0; i < idx; i++) {
            if (strcmp(space->params[i].name, key) == 0) {
                parent = (long)i;
            }
        }
        if (parent < 0) {
            return FAIL(field, "%s must name an earlier parameter", field);
        }
        pp = &space->params[parent];
        if (pp->type == HPO_PARAM_FLOAT || pp->size > 0) {
            return FAIL(field, "%s must name a categorical or int parameter", field);
        }
        if (!json_is_array(list) || json_array_size(list) == 0) {
            return FAIL(field, "%s must be a non-empty array of values", field);
        }
        c->parent = (size_t)parent;
        c->values = malloc(json_array_size(list) * sizeof(double));
        if (c->values == NULL) {
            return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        }
        p->n_conditions++;
        for (size_t i = 0; i < json_array_size(list); i++) {
            json_t *v = json_array_get(list, i);
            double x;
            if (pp->type == HPO_PARAM_CATEGORICAL) {
                long ci = choice_index(pp, v);
                if (ci < 0) {
                    return FAIL(field, "%s[%zu] is not a choice of '%s'", field, i, key);
                }
                x = (double)ci;
            } else {
                if (!json_is_integer(v) ||
                        !hpo_param_valid(pp, (double)json_integer_value(v))) {
                    return FAIL(field, "%s[%zu] is not a value of '%s'", field, i, key);
                }
                x = (double)json_integer_value(v);
            }
            c->values[c->n_values++] = x;
        }
    }
    space->conditional = true;
    return 0;
}

static const char *const param_keys[] = {
    "name", "type", "low", "high", "log", "step", "choices", "when", "size", NULL,
};

static int parse_param(const json_t *def, struct hpo_space *space, size_t idx,
        struct hpo_error *err)
{
    struct hpo_param *p = &space->params[idx];
    char pfx[64], field[192];
    const char *key;
    json_t *v;
    int r;

    snprintf(pfx, sizeof(pfx), "params[%zu]", idx);
    if (!json_is_object(def)) {
        return FAIL(pfx, "%s must be an object", pfx);
    }
    json_object_foreach((json_t *)def, key, v) {
        bool known = false;
        for (size_t k = 0; param_keys[k]; k++) {
            known = known || strcmp(param_keys[k], key) == 0;
        }
        if (!known) {
            snprintf(field, sizeof(field), "%s.%s", pfx, key);
            return FAIL(field, "unknown field '%s'", field);
        }
    }
    v = json_object_get(def, "name");
    snprintf(field, sizeof(field), "%s.name", pfx);
    if (!json_is_string(v) || !hpo_name_valid(json_string_value(v))) {
        return FAIL(field, "%s must be 1-128 characters of A-Z a-z 0-9 _ . -", field);
    }
    snprintf(p->name, sizeof(p->name), "%s", json_string_value(v));
    for (size_t i = 0; i < idx; i++) {
        if (strcmp(space->params[i].name, p->name) == 0) {
            return FAIL(field, "%s '%s' is already used by params[%zu]", field, p->name, i);
        }
    }
    v = json_object_get(def, "type");
    snprintf(field, sizeof(field), "%s.type", pfx);
    if (!json_is_string(v)) {
        return FAIL(field, "%s must be \"float\", \"int\" or \"categorical\"", field);
    }
    if (strcmp(json_string_value(v), "float") == 0) {
        p->type = HPO_PARAM_FLOAT;
    } else if (strcmp(json_string_value(v), "int") == 0) {
        p->type = HPO_PARAM_INT;
    } else if (strcmp(json_string_value(v), "categorical") == 0) {
        p->type = HPO_PARAM_CATEGORICAL;
    } else {
        return FAIL(field, "%s must be \"float\", \"int\" or \"categorical\"", field);
    }
    if (p->type == HPO_PARAM_CATEGORICAL) {
        static const char *const not_cat[] = { "low", "high", "log", "step", "size", NULL };
        for (size_t k = 0; not_cat[k]; k++) {
            if (json_object_get(def, not_cat[k]) != NULL) {
                snprintf(field, sizeof(field), "%s.%s", pfx, not_cat[k]);
                return FAIL(field, "%s does not apply to a categorical parameter", field);
            }
        }
        r = parse_choices(def, p, pfx, err);
    } else {
        if (json_object_get(def, "choices") != NULL) {
            snprintf(field, sizeof(field), "%s.choices", pfx);
            return FAIL(field, "%s applies only to a categorical parameter", field);
        }
        r = parse_numeric(def, p, pfx, err);
    }
    if (r < 0) {
        return r;
    }
    v = json_object_get(def, "size");
    if (v != NULL) {
        snprintf(field, sizeof(field), "%s.size", pfx);
        if (p->type != HPO_PARAM_FLOAT) {
            return FAIL(field, "%s applies only to a float parameter", field);
        }
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > HPO_MAX_VECTOR) {
            return FAIL(field, "%s must be an integer from 1 to %d", field, HPO_MAX_VECTOR);
        }
        p->size = (size_t)json_integer_value(v);
        space->has_vectors = true;
    }
    param_finish_transform(p);
    p->width = p->size ? p->size : 1;
    if (space->dim + p->width > HPO_MAX_SPACE_DIM) {
        snprintf(field, sizeof(field), "%s.size", pfx);
        return FAIL(field, "the space may hold at most %d coordinates", HPO_MAX_SPACE_DIM);
    }
    space->dim += p->width;
    return parse_when(def, space, idx, pfx, err);
}

int hpo_space_parse(const json_t *params, struct hpo_space **ret_space, struct hpo_error *err)
{
    struct hpo_space *space;
    size_t n;
    int r;

    if (!json_is_array(params) || json_array_size(params) == 0) {
        return FAIL("params", "params must be a non-empty array");
    }
    n = json_array_size(params);
    if (n > HPO_MAX_PARAMS) {
        return FAIL("params", "params may hold at most %d parameters", HPO_MAX_PARAMS);
    }
    space = calloc(1, sizeof(*space));
    if (space == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    space->params = calloc(n, sizeof(*space->params));
    if (space->params == NULL) {
        free(space);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        space->n_params = i + 1;
        r = parse_param(json_array_get(params, i), space, i, err);
        if (r < 0) {
            hpo_space_destroy(space);
            return r;
        }
    }
    /*
    ** Scalars take the first coordinates, in param order, and vectors follow,
    ** so a trial whose vectors are not in memory keeps its scalars in a
    ** prefix of scalar_dim coordinates.
    */
    space->scalar_dim = 0;
    for (size_t i = 0; i < n; i++) {
        if (space->params[i].size == 0) {
            space->params[i].offset = space->scalar_dim++;
        }
    }
    {
        size_t at = space->scalar_dim;
        for (size_t i = 0; i < n; i++) {
            if (space->params[i].size > 0) {
                space->params[i].offset = at;
                at += space->params[i].size;
            }
        }
    }
    *ret_space = space;
    return 0;
}

json_t *hpo_param_value_json(const struct hpo_param *p, double value)
{
    if (isnan(value)) {
        return json_null();
    }
    switch (p->type) {
    case HPO_PARAM_INT:
        return json_integer((json_int_t)value);
    case HPO_PARAM_CATEGORICAL:
        return json_incref(json_array_get(p->choices, (size_t)value));
    case HPO_PARAM_FLOAT:
    default:
        return json_real(value);
    }
}

json_t *hpo_space_to_json(const struct hpo_space *space)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(p->name));
        if (p->type == HPO_PARAM_CATEGORICAL) {
            json_object_set_new(o, "type", json_string("categorical"));
            json_object_set(o, "choices", p->choices);
        } else if (p->type == HPO_PARAM_INT) {
            json_object_set_new(o, "type", json_string("int"));
            json_object_set_new(o, "low", json_integer((json_int_t)p->low));
            json_object_set_new(o, "high", json_integer((json_int_t)p->high));
            json_object_set_new(o, "step", json_integer((json_int_t)p->step));
            json_object_set_new(o, "log", json_boolean(p->log));
        } else {
            json_object_set_new(o, "type", json_string("float"));
            json_object_set_new(o, "low", json_real(p->low));
            json_object_set_new(o, "high", json_real(p->high));
            json_object_set_new(o, "log", json_boolean(p->log));
            if (p->step > 0.0) {
                json_object_set_new(o, "step", json_real(p->step));
            }
            if (p->size > 0) {
                json_object_set_new(o, "size", json_integer((json_int_t)p->size));
            }
        }
        if (p->n_conditions > 0) {
            json_t *when = json_object();
            for (size_t c = 0; c < p->n_conditions; c++) {
                const struct hpo_condition *cd = &p->conditions[c];
                const struct hpo_param *pp = &space->params[cd->parent];
                json_t *list = json_array();
                for (size_t k = 0; k < cd->n_values; k++) {
                    json_array_append_new(list, hpo_param_value_json(pp, cd->values[k]));
                }
                json_object_set_new(when, pp->name, list);
            }
            json_object_set_new(o, "when", when);
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

double hpo_param_to_unit(const struct hpo_param *p, double value)
{
    double t;

    if (isnan(value)) {
        return NAN;
    }
    if (p->type == HPO_PARAM_CATEGORICAL) {
        return (value + 0.5) / (double)p->n_choices;
    }
    t = p->log ? log(value) : value;
    return (t - p->ulow) / (p->uhigh - p->ulow);
}

double hpo_param_snap(const struct hpo_param *p, double value)
{
    if (p->type == HPO_PARAM_CATEGORICAL) {
        double k = floor(value);
        return k < 0 ? 0 : (k > (double)p->n_choices - 1 ? (double)p->n_choices - 1 : k);
    }
    if (p->type == HPO_PARAM_INT && p->log) {
        double v = nearbyint(value);
        return v < p->low ? p->low : (v > p->high ? p->high : v);
    }
    if (p->step > 0.0) {
        double k = nearbyint((value - p->low) / p->step);
        if (k < 0.0) {
            k = 0.0;
        }
        if (k > p->n_grid - 1.0) {
            k = p->n_grid - 1.0;
        }
        return grid_value(p, k);
    }
    return value < p->low ? p->low : (value > p->high ? p->high : value);
}

double hpo_param_from_unit(const struct hpo_param *p, double u)
{
    double w;

    if (isnan(u)) {
        return NAN;
    }
    if (u < 0.0) {
        u = 0.0;
    }
    if (u > 1.0) {
        u = 1.0;
    }
    if (p->type == HPO_PARAM_CATEGORICAL) {
        return hpo_param_snap(p, u * (double)p->n_choices);
    }
    /* exp(log(high)) and ulow + 1 * (uhigh - ulow) may miss the bound by an ulp. */
    if (p->type == HPO_PARAM_FLOAT && p->step == 0.0 && (u == 0.0 || u == 1.0)) {
        return u == 0.0 ? p->low : p->high;
    }
    w = p->ulow + u * (p->uhigh - p->ulow);
    if (p->log) {
        w = exp(w);
    }
    return hpo_param_snap(p, w);
}

struct decode_job {
    const struct hpo_param *p;
    const double *unit;
    double *out;
    enum hpo_decode how;
};

static void decode_range(void *ctx, size_t lo, size_t hi)
{
    const struct decode_job *job = ctx;
    const struct hpo_param *p = job->p;
    const double ulow = p->ulow, range = p->uhigh - p->ulow, low = p->low, high = p->high;
    const bool log_scale = p->log;
    const double *unit = job->unit;
    double *out = job->out;

    if (p->type != HPO_PARAM_FLOAT || p->step != 0.0) {
        for (size_t i = lo; i < hi; i++) {
            out[i] = hpo_param_from_unit(p, unit[i]);
        }
        return;
    }
    /* The same arithmetic as hpo_param_from_unit(), with the branches on p hoisted. */
    for (size_t i = lo; i < hi; i++) {
        double u = unit[i];
        double w;
        if (!(u > 0.0 && u < 1.0)) {
            out[i] = isnan(u) ? NAN : (u <= 0.0 ? low : high);
            continue;
        }
        w = ulow + u * range;
        if (log_scale) {
            w = exp(w);
        }
        out[i] = w < low ? low : (w > high ? high : w);
    }
}

/* decode_range() with hpo_exp: the same arithmetic around it. */
static void decode_hexp_range(void *ctx, size_t lo, size_t hi)
{
    const struct decode_job *job = ctx;
    const struct hpo_param *p = job->p;

    hpo_exp_decode(job->unit + lo, job->out + lo, hi - lo, p->ulow, p->uhigh - p->ulow, p->low,
            p->high);
}

void hpo_param_from_unit_n(const struct hpo_param *p, const double *unit, double *out, size_t n)
{
    hpo_param_decode_n(p, unit, out, n, HPO_DECODE_LIBM);
}

void hpo_param_decode_n(const struct hpo_param *p, const double *unit, double *out, size_t n,
        enum hpo_decode how)
{
    struct decode_job job = { p, unit, out, how };
    bool hexp = how == HPO_DECODE_HEXP && p->type == HPO_PARAM_FLOAT && p->step == 0.0 && p->log;

    hpo_parallel_for(n, HPO_PARALLEL_GRAIN, hexp ? decode_hexp_range : decode_range, &job);
}

bool hpo_param_valid(const struct hpo_param *p, double value)
{
    if (!isfinite(value)) {
        return false;
    }
    if (p->type == HPO_PARAM_CATEGORICAL) {
        return value >= 0 && value < (double)p->n_choices && value == floor(value);
    }
    if (value < p->low || value > p->high) {
        return false;
    }
    if (p->type == HPO_PARAM_INT) {
        return value == floor(value) && fmod(value - p->low, p->step) == 0.0;
    }
    if (p->step > 0.0) {
        return hpo_param_snap(p, value) == value;
    }
    return true;
}

void hpo_param_bin(const struct hpo_param *p, double value, double *ret_lo, double *ret_hi)
{
    double range = p->uhigh - p->ulow;

    if (p->type == HPO_PARAM_CATEGORICAL) {
        *ret_lo = value / (double)p->n_choices;
        *ret_hi = (value + 1.0) / (double)p->n_choices;
    } else if (p->type == HPO_PARAM_INT && p->log) {
        *ret_lo = (log(value - 0.5) - p->ulow) / range;
        *ret_hi = (log(value + 0.5) - p->ulow) / range;
    } else {
        *ret_lo = (value - p->step / 2.0 - p->ulow) / range;
        *ret_hi = (value + p->step / 2.0 - p->ulow) / range;
    }
    if (*ret_lo < 0.0) {
        *ret_lo = 0.0;
    }
    if (*ret_hi > 1.0) {
        *ret_hi = 1.0;
    }
}

bool hpo_space_active(const struct hpo_space *space, size_t i, const double *values)
{
    const struct hpo_param *p = &space->params[i];

    for (size_t c = 0; c < p->n_conditions; c++) {
        const struct hpo_condition *cd = &p->conditions[c];
        double v = values[space->params[cd->parent].offset];
        bool hit = false;
        if (isnan(v)) {
            return false;
        }
        for (size_t k = 0; k < cd->n_values && !hit; k++) {
            hit = cd->values[k] == v;
        }
        if (!hit) {
            return false;
        }
    }
    return true;
}

void hpo_space_decode(const struct hpo_space *space, double *unit, double *ret_values)
{
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        bool active = hpo_space_active(space, i, ret_values);
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            if (active) {
                ret_values[j] = hpo_param_from_unit(p, unit[j]);
                unit[j] = hpo_param_to_unit(p, ret_values[j]);
            } else {
                ret_values[j] = NAN;
                unit[j] = NAN;
            }
        }
    }
}

void hpo_space_encode(const struct hpo_space *space, const double *values, double *ret_unit)
{
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            ret_unit[j] = hpo_param_to_unit(p, values[j]);
        }
    }
}

/* Parse one scalar JSON value of param p into its values form. */
static int scalar_from_json(const struct hpo_param *p, const json_t *v, const char *field,
        double *ret, struct hpo_error *err)
{
    double x;

    if (p->type == HPO_PARAM_CATEGORICAL) {
        long ci = choice_index(p, v);
        if (ci < 0) {
            return FAIL(field, "%s is not one of the choices", field);
        }
        *ret = (double)ci;
        return 0;
    }
    if (!json_is_number(v)) {
        return FAIL(field, "%s must be a number", field);
    }
    x = json_number_value(v);
    if (!isfinite(x)) {
        return FAIL(field, "%s must be finite", field);
    }
    if (p->type == HPO_PARAM_FLOAT && p->step > 0.0) {
        double s = hpo_param_snap(p, x);
        /*
        ** Accept values a rounding error off the grid and store the grid
        ** value, also at the edges (0 + 3 * 0.1 for a grid ending at 0.3).
        */
        if (fabs(s - x) <= 1e-9 * p->step) {
            *ret = s;
            return 0;
        }
    }
    if (x < p->low || x > p->high) {
        char lo[HPO_DOUBLE_BUF], hi[HPO_DOUBLE_BUF];
        hpo_format_double(lo, p->low);
        hpo_format_double(hi, p->high);
        return FAIL(field, "%s must be within [%s, %s]", field, lo, hi);
    }
    if (p->type == HPO_PARAM_INT) {
        if (x != floor(x) || fmod(x - p->low, p->step) != 0.0) {
            return FAIL(field, "%s must be an integer on the step grid", field);
        }
    } else if (p->step > 0.0) {
        return FAIL(field, "%s must be low + k*step", field);
    }
    *ret = x;
    return 0;
}

int hpo_space_values_from_json(const struct hpo_space *space, const json_t *obj, bool partial,
        double *ret_values, struct hpo_error *err)
{
    const char *key;
    json_t *v;
    char field[192];
    int r;

    if (!json_is_object(obj)) {
        return FAIL("params", "params must be an object");
    }
    json_object_foreach((json_t *)obj, key, v) {
        if (hpo_space_find(space, key) < 0) {
            snprintf(field, sizeof(field), "params.%.150s", key);
            return FAIL(field, "unknown parameter '%.150s'", key);
        }
    }
    for (size_t j = 0; j < space->dim; j++) {
        ret_values[j] = NAN;
    }
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        bool active = hpo_space_active(space, i, ret_values);
        v = json_object_get(obj, p->name);
        snprintf(field, sizeof(field), "params.%s", p->name);
        if (v == NULL) {
            if (active && !partial) {
                return FAIL(field, "%s is required", field);
            }
            continue;
        }
        if (!active) {
            return FAIL(field, "%s is inactive under its 'when' condition", field);
        }
        if (p->size > 0) {
            if (!json_is_array(v) || json_array_size(v) != p->size) {
                return FAIL(field, "%s must be an array of %zu numbers", field, p->size);
            }
            for (size_t k = 0; k < p->size; k++) {
                char ef[224];
                snprintf(ef, sizeof(ef), "%s[%zu]", field, k);
                r = scalar_from_json(p, json_array_get(v, k), ef, &ret_values[p->offset + k], err);
                if (r < 0) {
                    return r;
                }
            }
        } else {
            r = scalar_from_json(p, v, field, &ret_values[p->offset], err);
            if (r < 0) {
                return r;
            }
        }
    }
    return 0;
}

json_t *hpo_space_values_to_json(const struct hpo_space *space, const double *values,
        const char *href_base, size_t href_over)
{
    return hpo_space_values_to_json_thin(space, values, href_base, href_over, false);
}

json_t *hpo_space_values_to_json_thin(const struct hpo_space *space, const double *values,
        const char *href_base, size_t href_over, bool thin)
{
    json_t *o = json_object();

    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (thin && p->size > 0) {
            /* Vector values are not in memory: only their activity can be known. */
            if (!hpo_space_active(space, i, values)) {
                continue;
            }
        } else if (isnan(values[p->offset])) {
            continue;
        }
        if (p->size == 0) {
            json_object_set_new(o, p->name, hpo_param_value_json(p, values[p->offset]));
        } else if (href_base != NULL && p->size > href_over) {
            char href[1024];
            snprintf(href, sizeof(href), "%s/%s", href_base, p->name);
            json_object_set_new(o, p->name,
                    json_pack("{s:I,s:s}", "size", (json_int_t)p->size, "href", href));
        } else {
            json_t *arr = json_array();
            for (size_t k = 0; k < p->size; k++) {
                json_array_append_new(arr, json_real(values[p->offset + k]));
            }
            json_object_set_new(o, p->name, arr);
        }
    }
    return o;
}
