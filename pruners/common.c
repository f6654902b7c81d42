/*
** common.c: helpers shared by the pruners: sorted value arrays, numpy's
** linear percentile, "auto"-or-integer options and the trial CRC-32.
*/
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/history.h"
#include "pruner-int.h"

/* The first index i with a->v[i] >= x (a->n when none). */
static size_t dvec_lower(const struct hpo__dvec *a, double x)
{
    size_t lo = 0, hi = a->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->v[mid] < x) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int hpo__dvec_insert(struct hpo__dvec *a, double x)
{
    size_t at;

    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        double *n = realloc(a->v, cap * sizeof(*n));
        if (n == NULL) {
            return -ENOMEM;
        }
        a->v = n;
        a->cap = cap;
    }
    /* Values mostly arrive in no order, but appending is the common cheap case. */
    if (a->n == 0 || a->v[a->n - 1] <= x) {
        at = a->n;
    } else {
        at = dvec_lower(a, x);
    }
    memmove(&a->v[at + 1], &a->v[at], (a->n - at) * sizeof(*a->v));
    a->v[at] = x;
    a->n++;
    return 0;
}

void hpo__dvec_remove(struct hpo__dvec *a, double x)
{
    size_t at = dvec_lower(a, x);

    if (at < a->n && a->v[at] == x) {
        memmove(&a->v[at], &a->v[at + 1], (a->n - at - 1) * sizeof(*a->v));
        a->n--;
    }
}

void hpo__dvec_finish(struct hpo__dvec *a)
{
    free(a->v);
    a->v = NULL;
    a->n = 0;
    a->cap = 0;
}

double hpo__percentile_sorted(const double *v, size_t n, double p)
{
    /*
    ** numpy 1.24 function_base._quantile with method "linear": q = p / 100,
    ** virtual index (n - 1) * q, then _lerp, which interpolates from the
    ** nearer end (b - diff * (1 - gamma) once gamma >= 0.5).
    */
    double q = p / 100.0;
    double virt = (double)(n - 1) * q;
    double prev, gamma, a, b, diff;
    size_t i;

    if (!(virt < (double)(n - 1))) {
        return v[n - 1];
    }
    prev = floor(virt);
    i = (size_t)prev;
    gamma = virt - prev;
    a = v[i];
    b = v[i + 1];
    diff = b - a;
    if (gamma >= 0.5) {
        return b - diff * (1.0 - gamma);
    }
    return a + diff * gamma;
}

int64_t hpo__second_last_step(const struct hpo_trial *t)
{
    return t->n_reports >= 2 ? t->reports[t->n_reports - 2].step : -1;
}

int hpo__option_int_or_auto(const json_t *options, const char *key, bool def_auto,
        long long def, long long min, long long max, long long *ret, struct hpo_error *err)
{
    json_t *v = options ? json_object_get(options, key) : NULL;
    char field[128];
    long long x;

    if (v == NULL) {
        *ret = def_auto ? 0 : def;
        return 0;
    }
    snprintf(field, sizeof(field), "pruner.%s", key);
    if (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0) {
        *ret = 0;
        return 0;
    }
    if (!json_is_integer(v)) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field,
                "%s must be \"auto\" or an integer", field);
    }
    x = json_integer_value(v);
    if (x < min || x > max) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field,
                "%s must be \"auto\" or an integer between %lld and %lld", field, min, max);
    }
    *ret = x;
    return 0;
}

static uint32_t crc32_update(uint32_t crc, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint8_t)s[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return crc;
}

uint32_t hpo__crc32_trial(const char *name, int64_t number)
{
    char num[32];
    int len = snprintf(num, sizeof(num), "_%" PRId64, number);
    uint32_t crc = 0xFFFFFFFFu;

    if (name != NULL) {
        crc = crc32_update(crc, name, strlen(name));
    }
    crc = crc32_update(crc, num, (size_t)len);
    return crc ^ 0xFFFFFFFFu;
}
