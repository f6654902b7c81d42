/*
** fuzz-space.c: libFuzzer target for the search space (core/space.c).
** Arbitrary bytes are parsed as JSON; a document {"params": [...],
** "values": {...}} (or a bare params array) goes through hpo_space_parse,
** the unit-cube transforms and hpo_space_values_from_json, and every
** invariant below aborts when it breaks.
*/
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rng.h"
#include "space.h"
#include "fuzz.h"

/* Points are checked only for spaces up to this many coordinates (memory and time). */
#define FUZZ_MAX_DIM 4096

/* Same double, or both NaN. */
static int same(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

/*
** decode(encode(v)) for param p: exact on grids and choices; for continuous
** floats within a few ulps of max(|ulow|, |uhigh|) (relative for log).
*/
static int round_trips(const struct hpo_param *p, double a, double b)
{
    double scale;

    if (same(a, b)) {
        return 1;
    }
    if (p->type != HPO_PARAM_FLOAT || p->step > 0.0 || isnan(a) || isnan(b)) {
        return 0;
    }
    scale = 8.0 * 2.220446049250313e-16 * fmax(fabs(p->ulow), fabs(p->uhigh));
    return fabs(a - b) <= (p->log ? scale * fmax(fabs(a), fabs(b)) : scale);
}

/* A rejected input: invalid_argument (or internal on OOM) naming a field under `prefix`. */
static void check_error(int r, const struct hpo_error *err, const char *prefix)
{
    if (r == -ENOMEM) {
        CHECK(err->code == HPO_INTERNAL);
        return;
    }
    CHECK(r == -EINVAL);
    CHECK(err->code == HPO_INVALID_ARGUMENT);
    CHECK(strncmp(err->field, prefix, strlen(prefix)) == 0);
    CHECK(err->message[0] != '\0');
}

/* Values (as from a decode or a user) must be valid, NaN exactly where inactive. */
static void check_values(const struct hpo_space *space, const double *values, int partial)
{
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        int active = hpo_space_active(space, i, values);
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            if (!active) {
                CHECK(isnan(values[j]));
            } else if (!isnan(values[j])) {
                CHECK(hpo_param_valid(p, values[j]));
                /* A valid value round-trips through the unit cube exactly on grids. */
                if (p->type != HPO_PARAM_FLOAT || p->step > 0.0) {
                    CHECK(hpo_param_from_unit(p, hpo_param_to_unit(p, values[j])) == values[j]);
                }
            } else {
                CHECK(partial);
            }
        }
    }
}

/* values -> JSON -> values gives the same doubles. */
static void check_json_round_trip(const struct hpo_space *space, const double *values,
        int partial, double *scratch)
{
    json_t *obj = hpo_space_values_to_json(space, values, NULL, 0);
    struct hpo_error err = { 0 };
    int r;

    CHECK(obj != NULL);
    r = hpo_space_values_from_json(space, obj, partial != 0, scratch, &err);
    if (r != 0) {
        fprintf(stderr, "fuzz-space: own values rejected: %s: %s\n", err.field, err.message);
    }
    CHECK(r == 0);
    for (size_t j = 0; j < space->dim; j++) {
        CHECK(same(values[j], scratch[j]));
    }
    json_decref(obj);
}

/* Decode a unit point and check the decoded values and the canonical encoding. */
static void check_point(const struct hpo_space *space, double *unit, double *values,
        double *scratch)
{
    hpo_space_decode(space, unit, values);
    check_values(space, values, 0);
    /* The rewritten unit point is the encoding of the values, and decodes to them. */
    hpo_space_encode(space, values, scratch);
    for (size_t j = 0; j < space->dim; j++) {
        CHECK(same(scratch[j], unit[j]));
        CHECK(isnan(unit[j]) || (unit[j] >= 0.0 && unit[j] <= 1.0));
    }
    hpo_space_decode(space, scratch, scratch + space->dim);
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            CHECK(round_trips(p, scratch[space->dim + j], values[j]));
        }
    }
    check_json_round_trip(space, values, 0, scratch);
}

static uint64_t hash_bytes(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * 0x100000001b3ULL;
    }
    return h;
}

static void check_space(const struct hpo_space *space, const json_t *user_values,
        const uint8_t *data, size_t size)
{
    json_t *echo = hpo_space_to_json(space), *echo2;
    struct hpo_space *again = NULL;
    struct hpo_error err = { 0 };
    double *unit, *values, *scratch;
    struct hpo_rng rng;

    /* The echo with defaults filled is itself a valid, stable definition. */
    CHECK(echo != NULL);
    if (hpo_space_parse(echo, &again, &err) != 0) {
        fprintf(stderr, "fuzz-space: echo rejected: %s: %s\n", err.field, err.message);
        check_failed("echo parses");
    }
    echo2 = hpo_space_to_json(again);
    CHECK(json_equal(echo, echo2));
    CHECK(again->dim == space->dim && again->n_params == space->n_params);
    json_decref(echo2);
    json_decref(echo);
    hpo_space_destroy(again);

    if (space->dim > FUZZ_MAX_DIM) {
        return;
    }
    unit = malloc(space->dim * sizeof(double));
    values = malloc(space->dim * sizeof(double));
    scratch = malloc(2 * space->dim * sizeof(double));
    CHECK(unit != NULL && values != NULL && scratch != NULL);

    /* The corners and the centre, then random points seeded by the input. */
    for (int corner = 0; corner < 3; corner++) {
        for (size_t j = 0; j < space->dim; j++) {
            unit[j] = corner == 0 ? 0.0 : (corner == 1 ? 1.0 : 0.5);
        }
        check_point(space, unit, values, scratch);
    }
    hpo_rng_seed(&rng, hash_bytes(data, size));
    for (int k = 0; k < 8; k++) {
        for (size_t j = 0; j < space->dim; j++) {
            unit[j] = hpo_rng_uniform(&rng);
        }
        check_point(space, unit, values, scratch);
    }

    /* User values: accepted ones are valid and round-trip; rejected ones name a field. */
    if (user_values != NULL) {
        for (int partial = 0; partial < 2; partial++) {
            int r = hpo_space_values_from_json(space, user_values, partial != 0, values, &err);
            if (r != 0) {
                check_error(r, &err, "params");
                continue;
            }
            check_values(space, values, partial);
            check_json_round_trip(space, values, partial, scratch);
        }
    }
    free(scratch);
    free(values);
    free(unit);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc, *params, *user_values = NULL;
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };
    int r;

    doc = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL) {
        return 0;
    }
    params = doc;
    if (json_is_object(doc) && json_object_get(doc, "params") != NULL) {
        params = json_object_get(doc, "params");
        user_values = json_object_get(doc, "values");
    }
    r = hpo_space_parse(params, &space, &err);
    if (r != 0) {
        check_error(r, &err, "params");
        CHECK(space == NULL);
    } else {
        check_space(space, user_values, data, size);
        hpo_space_destroy(space);
    }
    json_decref(doc);
    return 0;
}
