/*
** sampler.h: the sampler interface and registry (docs/DESIGN.md "Interfaces").
**
** A sampler is a table of functions registered by name in registry.c. It
** works in the unit cube (core/space.h), owns its `state`, does no I/O,
** does not log, and is deterministic given the rng it is handed.
**
** Threading: the service calls every function of one study's sampler under
** that study's lock, from thread-pool threads; never two at once for one
** state. Different studies' states may be used in parallel.
*/
#ifndef HPO_SAMPLER_H
#define HPO_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../core/buf.h"
#include "../core/error.h"
#include "../core/options.h"

struct hpo_history;
struct hpo_prior;
struct hpo_rng;
struct hpo_space;

/* The most pieces a saved state has (see save_parts; struct hpo_part in core/buf.h). */
#define HPO_SAVE_PARTS 8

struct hpo_sampler_type {
    const char *name;      /* "tpe" */
    bool supports_vectors; /* may the space have `size` params */
    /*
    ** JSON text describing each option except `seed` (which the service
    ** handles for every sampler): {"opt": {"type": "integer", "default": 10}, ...}.
    ** Shown by GET /v1/samplers.
    */
    const char *options_schema;
    /*
    ** Validate `options` (borrowed object without "type" and "seed"; unknown
    ** keys are an error naming "sampler.<key>") and build the state. On
    ** failure returns -EINVAL with `err` filled and *state untouched.
    */
    int (*configure)(const json_t *options, const struct hpo_space *space, void **state,
            struct hpo_error *err);
    /* Options with every default filled in, without type/seed (new reference). */
    json_t *(*describe)(const void *state);
    /*
    ** Suggest a point: write space->dim unit coordinates into unit_point
    ** (inactive coordinates may hold anything). The history holds every
    ** trial so far, running ones being pending; the trial being suggested is
    ** not in it; it will get number history->n_trials. Returns 0, or a negative errno with `err` filled.
    */
    int (*suggest)(void *state, const struct hpo_space *space, const struct hpo_history *history,
            struct hpo_rng *rng, double *unit_point, struct hpo_error *err);
    /*
    ** Optional: suggest() and the service's decode of its point in one call
    ** (a big vector in one pass): unit_point as suggest() writes it and
    ** values[0..dim) what hpo_param_decode_n(p, unit_point + p->offset,
    ** values + p->offset, p->width, decode) gives for every param, the same
    ** bits. Returns 1, or 0 when it wrote unit_point alone (the service
    ** decodes), or a negative errno with `err` filled.
    */
    int (*suggest_decoded)(void *state, const struct hpo_space *space,
            const struct hpo_history *history, struct hpo_rng *rng, double *unit_point,
            double *values, struct hpo_error *err);
    /*
    ** Optional. Trial `trial` of the history changed (created, finished,
    ** state changed), or was loaded at start. Lets stateful samplers keep
    ** caches in step; a sampler must stay correct if it ignores these.
    */
    void (*observe)(void *state, const struct hpo_history *history, size_t trial);
    /*
    ** Optional. Trial `trial` was just told (complete, pruned or failed; the
    ** history already shows it). `gradient` holds space->dim derivatives of
    ** the value in each param's own units (NaN where none was sent), or is
    ** NULL when the tell carried no gradient. The service has already checked
    ** sizes, finiteness and that only float params have gradients. It calls
    ** this before the tell's write commits and saves the state (save or
    ** save_parts) into that same write; should the commit fail, it restores
    ** the last committed state with load(). So tell() cannot fail.
    */
    void (*tell)(void *state, const struct hpo_space *space, const struct hpo_history *history,
            size_t trial, const double *gradient);
    /*
    ** Optional: state that must persist across restarts. On entry *blob is
    ** NULL or a malloc'd buffer of *len bytes that save() may reuse (write in
    ** place when big enough) or must free/realloc; on success *blob is the
    ** malloc'd state and *len its length.
    */
    int (*save)(const void *state, void **blob, size_t *len);
    /*
    ** Optional, for samplers with big states: what save() would write, as up
    ** to HPO_SAVE_PARTS pieces pointing into the sampler's own memory (valid
    ** until the sampler is next called), so the state is written without
    ** being copied. Clears needs_save like save(). Returns the number of
    ** pieces, or a negative errno.
    */
    int (*save_parts)(const void *state, struct hpo_part *parts);
    /*
    ** Optional, with save_parts: the last tell as a record to append to the
    ** last committed state instead of writing the whole state again (up to
    ** 2 pieces into the sampler's and the tell's memory, valid until the
    ** tell's write returns), or 0 when this tell cannot be told that way.
    ** load() takes a state followed by any number of such records. Storage
    ** that cannot append writes save_parts' whole state instead.
    */
    int (*save_record)(const void *state, struct hpo_part *parts);
    /*
    ** Optional, together: whether the point the last suggest() returned can
    ** be rebuilt from the state saved with that ask alone (reproducible),
    ** and rebuilding it (regenerate: the same unit point into `unit_point`,
    ** 0, or -ENOENT when the state cannot). The service then lets storage
    ** make the ask's big vectors durable lazily, and rebuilds a vector a
    ** power cut lost at the next start, checked against its checksum.
    */
    bool (*reproducible)(const void *state);
    int (*regenerate)(void *state, const struct hpo_space *space, double *unit_point);
    /*
    ** Optional: how the service decodes this sampler's suggestions, an enum
    ** hpo_decode (core/space.h) fixed for the life of the state (a sampler
    ** that recomputes values bit for bit, replays or regenerate, uses the
    ** same one itself). NULL means HPO_DECODE_LIBM.
    */
    int (*decode)(const void *state);
    /*
    ** Optional, together: defer_next() lets the next tell() leave work
    ** running on a thread of its own that only its gradient and the
    ** sampler's memory take part in (the gradient sampler's optimizer step
    ** when the tell is a record, so that it overlaps the tell's commit).
    ** The caller then keeps the gradient valid until settle(), which waits
    ** for that work, and calls settle() before it uses the sampler, frees
    ** the gradient or lets another thread at the study; a storage that
    ** writes save_parts' pieces calls it first (hpo_op.settle). Every other
    ** op but save_parts and save_record settles by itself.
    */
    void (*defer_next)(void *state);
    void (*settle)(void *state);
    /*
    ** Optional, with defer_next: the deferred work may start now (the storage
    ** copied the record out, hpo_op.start); settle() starts it otherwise.
    */
    void (*start)(void *state);
    /*
    ** Optional (required when save or save_parts is set): replace the state
    ** built by configure() with one save() wrote, `blob` being borrowed.
    ** Called at start for each study with a stored state, and to roll back
    ** to the last committed state after a failed write. Returns 0, or
    ** -EINVAL for a blob that is not a valid state of this configuration
    ** (-ENOMEM on OOM); on failure the state is left as it was.
    */
    int (*load)(void *state, const void *blob, size_t len);
    /* Free the state from configure() (which may be NULL for a stateless sampler). */
    void (*destroy)(void *state);
    /*
    ** Optional. Whether suggest() changed state that save() must persist
    ** (the gradient sampler: its initial point, chosen at the first ask).
    ** When true after a suggest, the service should call save() before it
    ** answers the ask; save() clears it. NULL means never.
    */
    bool (*needs_save)(const void *state);
    /*
    ** Optional. Whether the sampler will still read finished trial `trial`'s
    ** param values (an SPSA pair not yet complete). The service drops the
    ** vector values of finished trials from memory unless this says true.
    ** NULL means: finished trials' values are read only during their own tell.
    */
    bool (*retains)(const void *state, const struct hpo_history *history, size_t trial);
    /*
    ** Optional. A JSON object (new reference) for the study summary, e.g.
    ** the gradient sampler's {"version": k, "estimator": "client", "lr": ...,
    ** "dropped_stale": n}; NULL on OOM or when there is nothing to show.
    */
    json_t *(*status)(const void *state);
    /*
    ** Optional. Warm start (docs/ALGORITHMS.md §12, samplers/prior.h): the
    ** prior studies' trials mapped into this space, borrowed (the service
    ** keeps them until after destroy). Called at most once per state, under
    ** the study's lock, before a suggest. Samplers without it ignore warm_start.
    */
    void (*warm)(void *state, const struct hpo_prior *prior);
};

/* The sampler type named `name`, or NULL. */
const struct hpo_sampler_type *hpo_sampler_find(const char *name);

/* The registered types, NULL-terminated. */
extern const struct hpo_sampler_type *const hpo_sampler_types[];

extern const struct hpo_sampler_type hpo_sampler_random;
extern const struct hpo_sampler_type hpo_sampler_tpe;
extern const struct hpo_sampler_type hpo_sampler_gradient;
extern const struct hpo_sampler_type hpo_sampler_gp;
extern const struct hpo_sampler_type hpo_sampler_qmc;
extern const struct hpo_sampler_type hpo_sampler_cmaes;
extern const struct hpo_sampler_type hpo_sampler_nsga2;

/*
** The number of the trial being suggested: the service samples the oldest
** waiting trial first (an enqueued trial with params left to fill), else a
** new trial, numbered history->n_trials.
*/
int64_t hpo_sampler_asked_number(const struct hpo_history *h);

/*
** OpenBLAS/LAPACK single-threaded, once per process: the sampler runs on one
** worker already, and a threaded eigendecomposition or factorization would
** sum in an order that varies from run to run (same seed, other suggestions).
*/
void hpo_sampler_blas_single_thread(void);

#endif
