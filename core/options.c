/*
** options.c: typed option readers for sampler and pruner configuration.
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "options.h"

static void field_name(char *buf, size_t len, const char *prefix, const char *key)
{
    snprintf(buf, len, "%s%s%s", prefix ? prefix : "", prefix && *prefix ? "." : "", key);
}

int hpo_options_check_keys(const json_t *options, const char *const *allowed, const char *prefix,
        struct hpo_error *err)
{
    const char *key;
    json_t *value;
    char field[128];

    if (options == NULL) {
        return 0;
    }
    json_object_foreach((json_t *)options, key, value) {
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL; i++) {
            if (strcmp(allowed[i], key) == 0) {
                ok = true;
                break;
            }
        }
        if (!ok) {
            field_name(field, sizeof(field), prefix, key);
            return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, "unknown option '%s'",
                    field);
        }
    }
    return 0;
}

int hpo_option_int(const json_t *options, const char *key, const char *prefix, long long def,
        long long min, long long max, long long *ret, struct hpo_error *err)
{
    json_t *v = options ? json_object_get(options, key) : NULL;
    char field[128];
    long long x;

    if (v == NULL) {
        *ret = def;
        return 0;
    }
    field_name(field, sizeof(field), prefix, key);
    if (!json_is_integer(v)) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, "%s must be an integer",
                field);
    }
    x = json_integer_value(v);
    if (x < min || x > max) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field,
                "%s must be between %lld and %lld", field, min, max);
    }
    *ret = x;
    return 0;
}

int hpo_option_double(const json_t *options, const char *key, const char *prefix, double def,
        double min, double max, double *ret, struct hpo_error *err)
{
    json_t *v = options ? json_object_get(options, key) : NULL;
    char field[128];
    double x;

    if (v == NULL) {
        *ret = def;
        return 0;
    }
    field_name(field, sizeof(field), prefix, key);
    if (!json_is_number(v)) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, "%s must be a number",
                field);
    }
    x = json_number_value(v);
    if (!isfinite(x) || x < min || x > max) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field,
                "%s must be between %g and %g", field, min, max);
    }
    *ret = x;
    return 0;
}

int hpo_option_bool(const json_t *options, const char *key, const char *prefix, bool def,
        bool *ret, struct hpo_error *err)
{
    json_t *v = options ? json_object_get(options, key) : NULL;
    char field[128];

    if (v == NULL) {
        *ret = def;
        return 0;
    }
    field_name(field, sizeof(field), prefix, key);
    if (!json_is_boolean(v)) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, "%s must be a boolean",
                field);
    }
    *ret = json_is_true(v);
    return 0;
}

int hpo_option_enum(const json_t *options, const char *key, const char *prefix,
        const char *const *choices, int def, int *ret, struct hpo_error *err)
{
    json_t *v = options ? json_object_get(options, key) : NULL;
    char field[128];
    char list[160] = "";
    size_t used = 0;

    if (v == NULL) {
        *ret = def;
        return 0;
    }
    field_name(field, sizeof(field), prefix, key);
    if (json_is_string(v)) {
        for (int i = 0; choices[i] != NULL; i++) {
            if (strcmp(choices[i], json_string_value(v)) == 0) {
                *ret = i;
                return 0;
            }
        }
    }
    for (int i = 0; choices[i] != NULL && used < sizeof(list); i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s\"%s\"", i ? ", " : "", choices[i]);
        if (n < 0) {
            break;
        }
        used += (size_t)n;
    }
    return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, "%s must be one of %s", field,
            list);
}

bool hpo_parse_count(const char *s, int64_t *ret)
{
    int64_t v = 0;

    if (*s == '\0' || strlen(s) > 18) {
        return false;
    }
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9') {
            return false;
        }
        v = v * 10 + (*c - '0');
    }
    *ret = v;
    return true;
}
