/*
** options.h: reading sampler and pruner options from JSON with errors that
** name the field.
*/
#ifndef HPO_CORE_OPTIONS_H
#define HPO_CORE_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "error.h"

/*
** Helpers for configure(): check that every key of `options` is one of the
** NULL-terminated `allowed` names; on failure fill err naming "<prefix>.<key>".
*/
int hpo_options_check_keys(const json_t *options, const char *const *allowed, const char *prefix,
        struct hpo_error *err);

/*
** Read an option of a given kind, falling back to `def` when absent. Each
** returns -EINVAL with err filled ("<prefix>.<key>") on a wrong type or a
** value outside [min, max].
*/
int hpo_option_int(const json_t *options, const char *key, const char *prefix, long long def,
        long long min, long long max, long long *ret, struct hpo_error *err);
int hpo_option_double(const json_t *options, const char *key, const char *prefix, double def,
        double min, double max, double *ret, struct hpo_error *err);
int hpo_option_bool(const json_t *options, const char *key, const char *prefix, bool def,
        bool *ret, struct hpo_error *err);
/* `choices` is NULL-terminated; *ret is the index of the chosen string. */
int hpo_option_enum(const json_t *options, const char *key, const char *prefix,
        const char *const *choices, int def, int *ret, struct hpo_error *err);

/* A non-negative decimal of 1 to 18 ASCII digits (a trial number, a limit, an offset). */
bool hpo_parse_count(const char *s, int64_t *ret);

#endif
