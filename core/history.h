/*
** history.h: the in-memory record of a study's trials, which samplers and
** pruners read (never SQL). Owned by the service; one writer at a time
** (the study's lock), so readers called under that lock see a stable view.
*/
#ifndef HPO_CORE_HISTORY_H
#define HPO_CORE_HISTORY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct hpo_space;

enum hpo_state {
    HPO_STATE_WAITING = 0,
    HPO_STATE_RUNNING = 1,
    HPO_STATE_COMPLETE = 2,
    HPO_STATE_PRUNED = 3,
    HPO_STATE_FAILED = 4,
};
#define HPO_STATE_COUNT 5

/* "waiting", "running", ...; NULL for an invalid state. */
const char *hpo_state_name(enum hpo_state state);

/* Parse a state name; returns -1 when unknown. */
int hpo_state_parse(const char *name);

struct hpo_report {
    int64_t step;
    double value;
};

/*
** A trial's point: values then unit coordinates, 2 * dim doubles. Trials whose
** params are identical (vector studies: trials of one optimizer version)
** share one point, so a 10^6-element vector is held once, not once per trial.
** A shared point is never written; replace it (hpo_trial_own_point) first.
*/
struct hpo_point {
    atomic_size_t refs; /* atomic: a reply being sent may hold one (released on the HTTP thread) */
    size_t dim; /* data holds 2 * dim doubles */
    double data[];
};

/*
** A new point of 2 * dim doubles (contents undefined), refs 1; NULL on OOM.
** Big points come from a one-slot cache of the last released one when the
** size matches, so a vector study's asks reuse memory already mapped.
*/
struct hpo_point *hpo_point_new(size_t dim);

/* Take one more reference (any thread); returns p. Accepts NULL. */
struct hpo_point *hpo_point_ref(struct hpo_point *p);

/* Drop one reference; the last frees the point (or keeps it in the cache). */
void hpo_point_release(struct hpo_point *p);

/*
** hpo_point_new, refusing (NULL with errno ENOBUFS) a big point that would
** take the vector memory over its cap: for new demand (an ask), not for
** what the database already holds (a load).
*/
struct hpo_point *hpo_point_new_bounded(size_t dim);

/* Free the cached point and buffer (at shutdown, or once a study went). */
void hpo_point_cache_clear(void);

/*
** Call about once a second: a cached point (or upload buffer) no ask
** (upload) took for a few calls is freed. Returns whether one was.
*/
bool hpo_point_cache_tick(void);

/*
** A buffer of `bytes` for a big upload (malloc's, freed with free() or
** hpo_vector_buf_free): the one hpo_vector_buf_free kept when it has that
** size, whose pages are already mapped. NULL when out of memory.
*/
void *hpo_vector_buf_new(size_t bytes);

/*
** Free `b` of `bytes`, keeping it (when 1 MiB or more, and within the
** vector memory's cap) for the next hpo_vector_buf_new of that size; the
** one kept before is freed. hpo_point_cache_tick and _clear free it too.
*/
void hpo_vector_buf_free(void *b, size_t bytes);

/*
** The vector memory: big points (1 MiB or more, the cached one included)
** and what callers count in with hpo_vector_memory_take (kept uploads). The
** cap (default: none) bounds new demand; the daemon answers 503 beyond it.
*/
void hpo_vector_memory_set_cap(uint64_t bytes);
uint64_t hpo_vector_memory_used(void);
uint64_t hpo_vector_memory_cap(void);

/* Count `bytes` in if the total stays within the cap (dropping the cached point if need be). */
bool hpo_vector_memory_take(uint64_t bytes);

/* Count `bytes` out again. */
void hpo_vector_memory_give(uint64_t bytes);

struct hpo_trial {
    int64_t number;
    enum hpo_state state;
    double value;  /* the told value as the user sees it; NaN when none */
    double *values; /* space->dim param values (values form); NaN inactive/unset */
    double *unit;   /* space->dim unit coordinates; NaN inactive/unset */
    struct hpo_point *point; /* owns values and unit */
    int64_t shares;          /* number of the earlier trial whose point this one shares, or -1 */
    bool thin; /* vector values not in memory: values/unit hold only scalar_dim coordinates */
    bool dropped; /* its stored vectors were deleted (retain_vectors) */
    struct hpo_report *reports; /* sorted by step, unique steps */
    size_t n_reports, cap_reports;
    json_t *user_attrs; /* object, or NULL until the trial has any (most never do) */
    char *worker;       /* NULL when none */
    double *results;    /* several objectives or constraints: the history's n_obj objective
                           values then n_cons constraint values (NaN: not told); NULL until
                           told, and always for one objective without constraints */
    int64_t retry_of;   /* -1 when none */
    int64_t retries;    /* for an original trial: re-queues made so far */
    int64_t created_at, started_at, completed_at, heartbeat_at; /* ms since epoch, 0 none */
};

struct hpo_history {
    const struct hpo_space *space;
    const char *study_name;
    bool maximize;
    /*
    ** Objectives and constraints (docs/API.md "Objectives and constraints"):
    ** n_obj >= 1; obj_maximize[i] per objective; a trial is feasible when
    ** each constraint value v was told and cons_lo[j] <= v <= cons_hi[j].
    ** Set by the owner after hpo_history_init (arrays borrowed).
    */
    size_t n_obj, n_cons;
    const bool *obj_maximize;
    const double *cons_lo, *cons_hi;
    const double *reference; /* the study's reference_point (n_obj values as told), or NULL */
    struct hpo_trial **trials; /* trials[i]->number == i */
    size_t n_trials, cap_trials;
    size_t count[HPO_STATE_COUNT];
};

/* The loss a sampler minimizes for trial t: value, or -value when maximizing. */
static inline double hpo_history_loss(const struct hpo_history *h, const struct hpo_trial *t)
{
    return h->maximize ? -t->value : t->value;
}

/* Initialise an empty history over `space` (borrowed; must outlive it). */
void hpo_history_init(struct hpo_history *h, const struct hpo_space *space,
        const char *study_name, bool maximize);

/* Free every trial; accepts a zeroed history. */
void hpo_history_finish(struct hpo_history *h);

/*
** Create trial number h->n_trials with all params unset (NaN), state
** `state`, and append it. Returns the trial (borrowed) or NULL on OOM.
*/
struct hpo_trial *hpo_history_append(struct hpo_history *h, enum hpo_state state);

/*
** The same with a point the caller filled (values then unit); the trial
** takes the caller's reference. On OOM returns NULL and the caller keeps it.
*/
struct hpo_trial *hpo_history_append_point(struct hpo_history *h, enum hpo_state state,
        struct hpo_point *point);

/* Remove the last trial (undo an append whose write failed). */
void hpo_history_pop(struct hpo_history *h);

/* Change a trial's state, keeping the per-state counts in step. */
void hpo_history_set_state(struct hpo_history *h, struct hpo_trial *t, enum hpo_state state);

/*
** Add a report; a step already present keeps its first value and returns 0
** without change (*ret_added false). Returns -ENOMEM on OOM.
*/
int hpo_trial_add_report(struct hpo_trial *t, int64_t step, double value, bool *ret_added);

/* Remove the report at `step` (undo of an add); no-op when there is none. */
void hpo_trial_remove_report(struct hpo_trial *t, int64_t step);

/* The report at `step`, or NULL. */
const struct hpo_report *hpo_trial_report_at(const struct hpo_trial *t, int64_t step);

/* The report with the largest step, or NULL. */
const struct hpo_report *hpo_trial_last_report(const struct hpo_trial *t);

/*
** Give trial t a private copy of its point (copy-on-write before changing its
** params). Returns 0 or -ENOMEM.
*/
int hpo_trial_own_point(struct hpo_trial *t, size_t dim);

/* Make t share src's point (t's own is released); sets t->shares = src->number. */
void hpo_trial_share_point(struct hpo_trial *t, struct hpo_trial *src);

/*
** If one of the `window` trials before t has exactly t's param values, share
** its point and return true. Cost: one memcmp of dim doubles per candidate.
*/
bool hpo_history_dedupe(struct hpo_history *h, struct hpo_trial *t, size_t window);

/*
** Drop a finished trial's vector values from memory: its point is replaced
** by one holding only the scalar_dim scalar coordinates (values, then unit)
** and t->thin is set. Readers must then get vectors from storage. Returns 0
** or -ENOMEM (the trial is unchanged).
*/
int hpo_trial_make_thin(struct hpo_trial *t, const struct hpo_space *space);

/* The trial's user_attrs object (borrowed), created on first use; NULL on OOM. */
json_t *hpo_trial_attrs(struct hpo_trial *t);

/*
** Undo by snapshot: everything an operation may change on a trial, saved
** before the change (hpo_trial_undo_save) and put back by one routine when
** the change cannot be kept (hpo_trial_undo_restore), or let go once it is
** (hpo_trial_undo_drop). A new trial field that operations change is saved
** here, nowhere else.
**
** Between save and restore/drop the operation may replace t->worker with a
** new string and t->user_attrs with a new object without freeing the old
** ones (the undo owns them), likewise t->results, and its point by hpo_trial_own_point (the undo
** holds a reference to the old one). `added_step` names a report the
** operation added (-1: none); `appended` marks a trial the operation
** appended, which restore pops (restore the undos of one operation in
** reverse order).
*/
struct hpo_trial_undo {
    struct hpo_trial *t;
    enum hpo_state state;
    double value;
    int64_t created_at, started_at, completed_at, heartbeat_at;
    int64_t retries;
    char *worker;
    double *results;
    json_t *user_attrs;
    struct hpo_point *point;
    double *values, *unit;
    int64_t shares;
    bool thin;
    int64_t added_step;
    bool appended;
};

/* Save trial t's state into u (takes references to its point and attrs). */
void hpo_trial_undo_save(struct hpo_trial_undo *u, struct hpo_trial *t);

/* Mark u as the undo of appending t (the last trial of its history): restore pops it. */
void hpo_trial_undo_appended(struct hpo_trial_undo *u, struct hpo_trial *t);

/* Put the saved state back (per-state counts of h kept in step); u is then empty. */
void hpo_trial_undo_restore(struct hpo_trial_undo *u, struct hpo_history *h);

/* Keep the change: release what u holds of the old state. Accepts an empty u. */
void hpo_trial_undo_drop(struct hpo_trial_undo *u);

/* Free one trial (not in a history); accepts NULL. */
void hpo_trial_free(struct hpo_trial *t);

#endif
