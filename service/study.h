/*
** study.h: private to service/: one study in memory.
*/
#ifndef HPO_SERVICE_STUDY_H
#define HPO_SERVICE_STUDY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "../core/buf.h"
#include "../core/history.h"
#include "../core/space.h"
#include "../pruners/pruner.h"
#include "../samplers/sampler.h"
#include "../samplers/prior.h"
#include "../storage/storage.h"

/* A binary gradient uploaded for the next tell of a trial. */
struct pending_gradient {
    int64_t number;
    size_t param;
    double *data; /* param->size doubles */
    size_t held;  /* bytes counted in the vector memory (0 for small ones) */
};

#define HPO_OBJECTIVES_MAX 8
#define HPO_CONSTRAINTS_MAX 64

/* One objective of a study (docs/API.md "Objectives and constraints"). */
struct study_objective {
    char name[HPO_NAME_MAX + 1];
    bool maximize;
};

/* One constraint: feasible when told and lo <= v <= hi (-inf/+inf when a bound is absent). */
struct study_constraint {
    char name[HPO_NAME_MAX + 1];
    double lo, hi;
};

struct study {
    int64_t id;
    char name[HPO_NAME_MAX + 1];
    int64_t created_at;
    json_t *definition; /* normalized definition, every default filled in */
    struct hpo_space *space;
    bool maximize; /* the first objective's direction */
    size_t n_obj;  /* 1..HPO_OBJECTIVES_MAX */
    struct study_objective obj[HPO_OBJECTIVES_MAX];
    size_t n_cons;
    struct study_constraint cons[HPO_CONSTRAINTS_MAX];
    bool obj_max[HPO_OBJECTIVES_MAX];
    double cons_lo[HPO_CONSTRAINTS_MAX], cons_hi[HPO_CONSTRAINTS_MAX];
    bool has_ref;  /* reference_point fixed at creation */
    double ref[HPO_OBJECTIVES_MAX];
    bool evictable; /* every vector param is over 1000 elements: finished trials' vectors
                       may leave memory (JSON shows them as href) */
    const struct hpo_sampler_type *sampler_type;
    void *sampler;
    uint64_t seed;
    const struct hpo_pruner_type *pruner_type;
    void *pruner;
    double heartbeat_timeout; /* seconds; 0 = off */
    int64_t max_retries;
    int64_t max_trials; /* -1 = none */
    int64_t retain_vectors;
    struct hpo_history history;
    size_t waiting_cursor; /* every trial below it is not waiting */
    long best;             /* index of the best complete trial, -1 none */
    struct hpo_buf running; /* int64_t: numbers of running trials */
    void *state_blob; /* the sampler state last committed (or initial), for rollback */
    size_t state_len, state_cap;
    bool state_on_disk;  /* the committed state is too big to keep: rollback reads it back */
    bool sampler_stale;  /* a rollback could not read it: the sampler's memory is not trusted */
    void *spare_blob; /* a buffer save() may reuse (capacity spare_cap) */
    struct hpo_part state_parts[HPO_SAVE_PARTS]; /* a big state's pieces, until its write returns */
    struct hpo_part state_record[2]; /* the last tell as a record to append (save_record) */
    size_t spare_cap;
    struct hpo_buf grads; /* struct pending_gradient */
    pthread_mutex_t lock;
    /*
    ** The study's summary as of its last change (with params), for readers
    ** that find the study busy in a long operation (a slow sampler): guarded
    ** by cache_lock; `summary_valid` is cleared by every change.
    */
    pthread_mutex_t cache_lock;
    json_t *summary;
    bool summary_valid;
    /* How long the last suggest took (µs; 0: none yet): a quick sampler needs no cache. */
    uint32_t suggest_us;
    /*
    ** Several objectives: the feasible non-dominated complete trials' numbers
    ** in order, kept up to date as committed trials complete
    ** (hpo__study_note_state); rebuilt from the history when !front_valid.
    */
    struct hpo_buf front; /* int64_t */
    bool front_valid;
    atomic_int refs;
    bool deleted;
    /*
    ** Several daemons: the fencing epoch this copy was loaded (or created)
    ** at, and `moved`, set under `lock` once a newer copy replaced it (its
    ** operations answer unavailable; the client retries on the new one).
    */
    int64_t epoch;
    bool moved;
    /*
    ** The order of this copy's writes (storage.h). Once a pipelined write of
    ** it failed, the copy is replaced by a fresh load (hpo__study_reload).
    */
    struct hpo_write_chain *chain;
    /* Warm start (service/warm.c): the named studies, NULL when none. */
    json_t *warm_names;
    bool warm_pending;      /* the sampler uses them and they were not read yet */
    json_t *warm_info;      /* what the read found (trials, ignored_params, sources) */
    struct hpo_prior *prior; /* the snapshot handed to the sampler; freed after it */
};

/*
** Build a study from a definition (a create body or a stored spec). When the
** body has no sampler seed, `seed_fallback` is used if non-NULL, else a
** random seed is drawn. Returns 0 and a new study (refs = 1), or -EINVAL
** with `err` naming the field.
*/
int hpo__study_build(const json_t *body, const uint64_t *seed_fallback, struct study **ret,
        struct hpo_error *err);

/* Does the study keep per-trial results (several objectives or constraints)? */
static inline bool hpo__study_has_results(const struct study *s)
{
    return s->n_obj > 1 || s->n_cons > 0;
}

/* Objective i of trial t (NaN when not told). */
double hpo__trial_objective(const struct study *s, const struct hpo_trial *t, size_t i);

/* Trial t is complete and every constraint was told and holds (true without constraints). */
bool hpo__trial_feasible(const struct study *s, const struct hpo_trial *t);

/*
** The complete trials' losses (every objective minimized, n x n_obj),
** violations, and the feasible non-dominated ones (indices into them,
** ascending; trial[i] is the history index of point i).
*/
struct hpo__front {
    size_t n;
    double *loss, *violation;
    size_t *trial;
    size_t *front;
    long n_front;
};

/*
** The feasible front's trial numbers in order (several objectives; study
** locked): *ret_n of them at *ret_numbers, valid until the study changes.
** Returns 0 or -ENOMEM.
*/
int hpo__study_front_numbers(struct study *s, const int64_t **ret_numbers, size_t *ret_n);

/* Fill f (call with the study locked). Returns 0 or -ENOMEM (f empty). */
int hpo__study_front(const struct study *s, struct hpo__front *f);
void hpo__front_free(struct hpo__front *f);

/*
** Warm start (warm.c): read `warm_start` of a create body into the study and
** the normalized definition; free what it holds; its summary entry.
*/
int hpo__warm_parse(struct study *s, const json_t *body, json_t *def, struct hpo_error *err);
void hpo__warm_free(struct study *s);
json_t *hpo__warm_summary(const struct study *s);

/* Free a study (refcount reached zero). */
void hpo__study_free(struct study *s);

/* The study as docs/REFERENCE.md returns it (new reference); `with_params` for GET, not lists. */
json_t *hpo__study_to_json(struct study *s, bool with_params);

/* A trial as docs/REFERENCE.md returns it (new reference). */
json_t *hpo__trial_to_json(struct study *s, const struct hpo_trial *t);

/*
** The same as JSON text (trial-text.c), malloc'd, its length in *ret_len;
** NULL for the trials it leaves to hpo__trial_to_json, or without memory.
*/
char *hpo__trial_to_text(struct study *s, const struct hpo_trial *t, size_t *ret_len);

/* Reply with trial t: as text when req->text_ok and trial-text.c writes it, else as JSON. */
void hpo__reply_trial(struct hpo_service_request *req, int status, struct study *s,
        const struct hpo_trial *t);

/* Keep derived indexes (best, running list, waiting cursor) in step after a change. */
void hpo__study_note_state(struct study *s, struct hpo_trial *t);

/* Rebuild the cached summary (call with the study locked). */
void hpo__study_cache_summary(struct study *s);

/*
** The study's summary for a reader (new reference): fresh when the study
** lock is free or the cache is current, else after waiting for the lock.
** Returns NULL when the study was deleted meanwhile.
*/
json_t *hpo__study_read_summary(struct study *s, bool with_params);

/* Recompute every derived index from scratch (after load). */
void hpo__study_reindex(struct study *s);

#endif
