/*
** pruner.h: the pruner interface and registry (same shape as sampler.h).
**
** A pruner decides at each report whether a running trial should stop. It
** reads the study's in-memory history (core/history.h), owns its state, does
** no I/O and does not log. The service calls it under the study's lock.
*/
#ifndef HPO_PRUNER_H
#define HPO_PRUNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../core/error.h"
#include "../core/options.h"

struct hpo_history;

struct hpo_pruner_type {
    const char *name;
    /* JSON text describing each option: {"opt": {"type": ..., "default": ...}}. */
    const char *options_schema;
    /*
    ** Validate `options` (borrowed object without "type"; unknown keys are an
    ** error naming "pruner.<key>") and build the state.
    */
    int (*configure)(const json_t *options, void **state, struct hpo_error *err);
    /* Options with every default filled in, without type (new reference). */
    json_t *(*describe)(const void *state);
    /*
    ** Decide for trial `trial` (running) right after its report at `step`
    ** was stored in the history (a repeated step is not re-stored, but is
    ** still decided). Sets *ret_prune.
    */
    int (*decide)(void *state, const struct hpo_history *history, size_t trial, int64_t step,
            bool *ret_prune, struct hpo_error *err);
    /*
    ** Optional: keep incremental structures in step. `step` >= 0: the report
    ** at that step was just added to trial `trial`. `step` == -1: the trial's
    ** state changed, or it was loaded at start with all its reports (read the
    ** whole trial; calls for the same trial may repeat).
    */
    void (*observe)(void *state, const struct hpo_history *history, size_t trial, int64_t step);
    void (*destroy)(void *state);
};

/* The pruner type named `name`, or NULL. */
const struct hpo_pruner_type *hpo_pruner_find(const char *name);

/* The registered types, NULL-terminated. */
extern const struct hpo_pruner_type *const hpo_pruner_types[];

extern const struct hpo_pruner_type hpo_pruner_none;
extern const struct hpo_pruner_type hpo_pruner_median;
extern const struct hpo_pruner_type hpo_pruner_percentile;
extern const struct hpo_pruner_type hpo_pruner_asha;
extern const struct hpo_pruner_type hpo_pruner_hyperband;

#endif
