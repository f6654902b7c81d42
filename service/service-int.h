/*
** service-int.h: what the files of service/ share, and nothing outside
** service/ includes (its own unit tests may). The files, by job:
**
**   registry.c  the study registry (lookup, lock, snapshot) and the study
**               operations (create, get, delete, patch)
**   loader.c    loading every study from storage at start; create/destroy
**   write.c     building a write (ops), the commit, the sampler state kept
**               for rollback, and what follows a committed trial change
**   trials.c    ask, trial create, tell, report, heartbeat, trial patch,
**               the reaper
**   vectors.c   binary vectors: downloads, gradient uploads, eviction and
**               retention of stored vectors
**   views.c     the read-only answers: lists, one trial, best, CSV stream
**   decode.c    the decoders: every check on a request's body and query
**               that needs no study
**   service.c   the op table and hpo_service_execute
**   study.c     one study in memory (study.h)
**
** Every mutating operation follows one shape: decoded arguments in, the
** study locked, the in-memory change made with each touched trial saved in
** a struct hpo_trial_undo first, the write committed, and on a failed commit
** the undos restored (and the sampler rolled back), so a failed request
** changes nothing.
*/
#ifndef HPO_SERVICE_INT_H
#define HPO_SERVICE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../core/buf.h"
#include "../core/history.h"
#include "../storage/storage.h"
#include "service.h"
#include "study.h"

struct hpo_storage_reader;

struct hpo_service {
    struct hpo_storage *storage;
    struct hpo_storage_reader *reader; /* NULL: vectors always stay in memory */
    struct hpo_service_options opt;
    pthread_rwlock_t registry_lock; /* guards studies */
    pthread_mutex_t create_lock;    /* serializes study create and delete */
    struct hpo_buf studies;         /* struct study *, sorted by name */
    int64_t next_study_id;
};

/*
** A decoder: every check of the body (a JSON object or NULL, borrowed) and of
** the query (NULL: none) that needs no study, into `a` (borrowing from body).
** Returns 0, or -EINVAL with `err` naming the field. Pure: no study, no
** storage, any thread.
*/
typedef int (*hpo__decode_fn)(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err);

int hpo__decode_none(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err);
int hpo__decode_empty(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err);
int hpo__decode_study_create(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err);
int hpo__decode_ask(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err);
int hpo__decode_trial_create(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err);
int hpo__decode_tell(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err);
int hpo__decode_report(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err);
int hpo__decode_patch(const json_t *body, const struct hpo_service_query *q, union hpo_service_args *a,
        struct hpo_error *err);
int hpo__decode_trials_list(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err);

int hpo__decode_columns(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err);
int hpo__decode_curves(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err);
int hpo__decode_importances(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err);

/* An operation: decoded arguments in, req's outputs filled. */
typedef void (*hpo__op_fn)(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);

void hpo__op_study_create(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_study_list(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_study_get(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_study_delete(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_study_patch(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_ask(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_trial_create(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_tell(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_report(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_heartbeat(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_trial_patch(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_trials_list(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_trial_get(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_pareto(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_best(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_param_get(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_gradient_put(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_columns(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_curves(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);
void hpo__op_importances(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a);

/* ---- registry.c -------------------------------------------------------------- */

/* Add a study (registry's write lock). 0 or -ENOMEM. */
int hpo__registry_insert(struct hpo_service *svc, struct study *s);
int hpo__registry_swap(struct hpo_service *svc, struct study *old, struct study *s);
/* Whether a pipelined write of the copy failed (it must be reloaded before use). */
bool hpo__study_broken(const struct study *s);
/*
** Replace the registered copy `s`, one of whose pipelined writes failed, by
** a fresh load from storage, once its writes in flight all resolved (they
** fail too: storage.h's chains); its memory then holds exactly what was
** committed. `s` is marked moved (requests holding it answer unavailable).
** When another thread replaced `s` first, the copy registered now is
** reloaded instead (one of its writes may have failed since), so a caller
** gets a fresh copy from one call however often others reload. 0 (also
** when the study was deleted meanwhile), or a negative errno with `err`
** (unavailable). With `ret_locked`, the fresh copy is also returned locked
** with a reference (as hpo__study_acquire's), taken before any other
** request can reach it; NULL when this call replaced nothing (deleted).
*/
int hpo__study_reload(struct hpo_service *svc, struct study *s, struct study **ret_locked,
        struct hpo_error *err);

/*
** Take `s` out of the registry (if it is the one registered under its name)
** and drop the registry's reference: the caller's own reference keeps it.
*/
void hpo__registry_remove(struct hpo_service *svc, struct study *s);

/* A new reference to the study named `name`, or NULL. */
struct study *hpo__study_get(struct hpo_service *svc, const char *name);

/* Drop a reference (the last frees the study). Accepts NULL. */
void hpo__study_unref(struct study *s);

/* Look up and lock req->study; on failure NULL with req->err not_found. */
struct study *hpo__study_acquire(struct hpo_service *svc, struct hpo_service_request *req);

/* Unlock and unref a study from hpo__study_acquire. */
void hpo__study_release(struct study *s);

/*
** A new reference to every study (malloc'd array, *ret_n entries), taken
** under the registry's read lock; hpo__registry_snapshot_free drops them.
** NULL (and *ret_n 0) on OOM.
*/
struct study **hpo__registry_snapshot(struct hpo_service *svc, size_t *ret_n);
void hpo__registry_snapshot_free(struct study **snap, size_t n);

/* ---- write.c ----------------------------------------------------------------- */

/*
** One write being built: its ops, and the texts they point to (freed with
** it). Growth never fails (core/buf.h's policy: abort on OOM).
*/
struct hpo__write {
    struct hpo_buf ops;   /* struct hpo_op */
    struct hpo_buf texts; /* char * */
};

struct hpo_op *hpo__write_op(struct hpo__write *w, enum hpo_op_kind kind, int64_t study_id);
/* Keep `text` (malloc'd; NULL aborts: out of memory) until the write is freed. */
const char *hpo__write_keep(struct hpo__write *w, char *text);
void hpo__write_free(struct hpo__write *w);

/*
** The ops that store a trial's row, its params, its attrs (the keys of
** `attrs`; with `null_deletes` a null value deletes its key, else it is
** stored as null).
*/
void hpo__write_trial(struct hpo__write *w, const struct study *s, const struct hpo_trial *t);
void hpo__write_params(struct hpo__write *w, const struct study *s, const struct hpo_trial *t);
void hpo__write_attrs(struct hpo__write *w, const struct study *s, const struct hpo_trial *t,
        const json_t *attrs, bool null_deletes);

/*
** The sampler's state, when it has any, saved into the write (*blob: a
** malloc'd copy, or NULL with *len > 0 for a big state written from the
** sampler's own memory). Pass both to hpo__sampler_committed after a commit.
*/
void hpo__write_sampler_state(struct hpo_service *svc, struct hpo__write *w, struct study *s,
        void **blob, size_t *len);

/*
** Make the write durable (blocks until the group commit), 0 or <0 with
** err; or, pipelined (storage.h: on a dispatcher's worker, SQLite), accept
** it (0) and return before the commit: the reply is held until it resolved,
** and if it fails the study copy is reloaded (hpo__study_reload). `s`: the
** study whose write it is, whose chain orders it (NULL: a study create or
** delete, never pipelined).
*/
int hpo__commit(struct hpo_service *svc, struct study *s, struct hpo__write *w,
        struct hpo_error *err);

/* Load the last committed sampler state again (after a failed write or sampler call). */
void hpo__sampler_rollback(struct hpo_service *svc, struct study *s);

/* Before a call that changes the sampler: 0, or -EIO (unavailable) while it is stale. */
int hpo__sampler_ready(struct hpo_service *svc, struct study *s, struct hpo_error *err);

/* After a commit that carried a sampler state: keep it as the rollback point. */
void hpo__sampler_committed(struct hpo_service *svc, struct study *s, void **blob, size_t len);

/* A failed commit: restore the n undos (in reverse order) and roll the sampler back. */
void hpo__undo_all(struct hpo_service *svc, struct study *s, struct hpo_trial_undo *undo,
        size_t n, bool sampler);

/* A trial was created or changed state: derived indexes, sampler and pruner caches. */
void hpo__trial_changed(struct study *s, struct hpo_trial *t);

/* Sampler states of this many bytes or more are not kept in memory (storage has them). */
#define HPO__STATE_KEEP_MAX ((size_t)1 << 20)

/* ---- vectors.c --------------------------------------------------------------- */

/* Whether finished trial k's vectors may leave memory now. */
bool hpo__vectors_evictable(struct hpo_service *svc, struct study *s, size_t k);
/* Drop the vectors of finished trials near `around` from memory. */
void hpo__vectors_evict(struct hpo_service *svc, struct study *s, size_t around);
/*
** A sampler's unit point made into values as an ask does (trials.c): from
** `unit` where `fixed` (NULL: none) has no value, honouring `when`, decoded
** as `how` (hpo__decode_of the study). `decoded`: `out` already holds the
** decode of every coordinate of `unit` (the sampler's suggest_decoded).
*/
void hpo__merge_suggestion(const struct hpo_space *space, const double *fixed, double *unit,
        double *out, enum hpo_decode how, bool decoded);
/* How the study's sampler's suggestions are decoded (sampler.h `decode`). */
enum hpo_decode hpo__decode_of(const struct study *s);
/* Delete stored vectors beyond the study's retain_vectors. */
void hpo__vectors_retain(struct hpo_service *svc, struct study *s);
/* The pending binary gradient of trial `number` for param index `param`, or NULL. */
const double *hpo__gradient_pending(const struct study *s, int64_t number, size_t param);
/*
** Copy trial `number`'s pending binary gradients into `grad` (dim doubles;
** NULL to only test); with `consume`, free them. Returns whether there was any.
*/
bool hpo__gradient_take(struct study *s, int64_t number, double *grad, bool consume);
/* The error of a request refused by the vector memory's cap. */
void hpo__vector_memory_full(struct hpo_error *err);

/* ---- trials.c ---------------------------------------------------------------- */

/* Trial req->number of s, or NULL with req->err not_found. */
struct hpo_trial *hpo__trial_lookup(struct study *s, struct hpo_service_request *req);
/* The same, and it must be running (else conflict). */
struct hpo_trial *hpo__trial_running(struct study *s, struct hpo_service_request *req);

/* The registry's studies (read under registry_lock), and how many. */
static inline struct study **hpo__studies(const struct hpo_service *svc)
{
    return (struct study **)(void *)svc->studies.data;
}

static inline size_t hpo__n_studies(const struct hpo_service *svc)
{
    return HPO_BUF_N(&svc->studies, struct study *);
}

/* ---- warm.c ------------------------------------------------------------------- */

/*
** Read the prior studies of study `name` and hand them to its sampler, if
** still pending (call with no study locked).
*/
void hpo__warm_load(struct hpo_service *svc, const char *name);

/* ---- helpers ----------------------------------------------------------------- */

/* Set a JSON reply. */
static inline void hpo__reply(struct hpo_service_request *req, int status, json_t *body)
{
    req->status = status;
    req->reply = body;
}

/* Merge `patch` into `into` (an object): null removes the key. */
void hpo__merge_attrs(json_t *into, const json_t *patch);

#endif
