/*
** service.h: the study registry and the trial lifecycle: every operation
** of docs/REFERENCE.md on studies and trials, over the in-memory history, with writes
** made durable through storage/ before they are acknowledged.
**
** Threading: hpo_service_execute and hpo_service_reap run on worker
** threads (never the event-loop thread): they may block on a study's lock,
** a sampler and a storage commit. Operations on one study run one at a
** time; different studies run in parallel.
*/
#ifndef HPO_SERVICE_H
#define HPO_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../core/error.h"

struct hpo_service;
struct hpo_storage;

enum hpo_svc_op {
    HPO_SVC_STUDY_CREATE,
    HPO_SVC_STUDY_LIST,
    HPO_SVC_STUDY_GET,
    HPO_SVC_STUDY_DELETE,
    HPO_SVC_ASK,
    HPO_SVC_TRIAL_CREATE,
    HPO_SVC_TELL,
    HPO_SVC_REPORT,
    HPO_SVC_HEARTBEAT,
    HPO_SVC_TRIALS_LIST,
    HPO_SVC_TRIAL_GET,
    HPO_SVC_BEST,
    HPO_SVC_PARAM_GET,    /* binary vector download */
    HPO_SVC_GRADIENT_PUT, /* binary gradient upload */
    HPO_SVC_TRIAL_PATCH,  /* merge user_attrs into a trial */
    HPO_SVC_STUDY_PATCH,  /* merge user_attrs into a study */
};

/* One request. Inputs are set by the caller; outputs by hpo_service_execute. */
struct hpo_svc_request {
    enum hpo_svc_op op;
    const char *study;   /* borrowed */
    int64_t number;      /* trial number, for trial ops */
    const char *name;    /* param name, for binary ops (borrowed) */
    const json_t *body;  /* parsed JSON object (borrowed); NULL = {} */
    const void *data;    /* binary body (borrowed) */
    size_t data_len;
    void *data_owned;    /* the malloc'd buffer `data` is, if any: the service may take it (NULL) */
    int state_filter;    /* trials list: -1 = all */
    int64_t limit, offset; /* limit -1: every row (CSV only) */
    bool csv;
    bool intermediate;   /* CSV: add the intermediate values column */
    /* Outputs. */
    int status;          /* HTTP status: 200, 201, 204, or the error's */
    json_t *reply;       /* new reference, NULL for 204 or errors */
    char *text;          /* CSV or binary reply (malloc'd), with text_len */
    size_t text_len;
    /*
    ** When set, `text` is borrowed, not malloc'd: call text_free(text_cls)
    ** (from any thread) once it has been sent. Binary vector replies use it
    ** to send a trial's values without copying them.
    */
    void (*text_free)(void *cls);
    void *text_cls;
    struct hpo_error err; /* on error */
    const char *sampler;  /* ask: the study's sampler type name (static), for metrics */
    /* Trials list: how many match (X-Total-Count) and the next page's offset (-1: none). */
    int64_t total, next_offset;
    /* A CSV list: the reply's text comes from hpo_svc_stream_next (the request owns it). */
    struct hpo_svc_stream *stream;
};

/*
** A reply produced piece by piece (a CSV export). hpo_svc_stream_next runs
** on a worker thread (it takes the study's lock briefly); it sets *ret to
** the next piece (borrowed until the next call), *ret_len 0 at the end.
** hpo_svc_stream_free accepts NULL; any thread.
*/
struct hpo_svc_stream;
int hpo_svc_stream_next(struct hpo_svc_stream *st, const char **ret, size_t *ret_len);
void hpo_svc_stream_free(struct hpo_svc_stream *st);

struct hpo_service_options {
    unsigned suggest_delay_ms; /* a test hook: sleep this long in every suggestion */
    const char *db_path;       /* for reading back vectors not kept in memory; NULL: keep all */
};

/*
** Create the service over an opened (not yet started) storage: load every
** study and trial into memory, then start the storage writer. Returns 0 and
** a new service, or a negative errno with `err` filled.
*/
int hpo_service_create(struct hpo_storage *storage, const struct hpo_service_options *opt,
        struct hpo_service **ret_service, struct hpo_error *err);

/* Free the service and its memory (not the storage). Accepts NULL. */
void hpo_service_destroy(struct hpo_service *svc);

/* Run one request to completion (blocking). Fills the outputs of `req`. */
void hpo_service_execute(struct hpo_service *svc, struct hpo_svc_request *req);

/*
** The exact byte size a PUT .../trials/{number}/gradient/{name} body must
** have (8 per float64), checked as that upload will be (study, running
** trial, param, sampler, type), so the HTTP layer can refuse an upload
** before reading it. Read-only; blocks on the study's lock (worker thread).
** Returns 0, or a negative errno with `err` filled (not_found, conflict,
** invalid_argument).
*/
int hpo_service_gradient_size(struct hpo_service *svc, const char *study, int64_t number,
        const char *name, size_t *ret_bytes, struct hpo_error *err);

/* Release the outputs of a request. */
void hpo_svc_request_finish(struct hpo_svc_request *req);

/*
** Fail running trials whose heartbeat expired at time `now_ms`, re-queueing
** them up to max_retries. Returns the number of trials failed.
*/
size_t hpo_service_reap(struct hpo_service *svc, int64_t now_ms);

/* Counts for /metrics and logs. */
void hpo_service_counts(struct hpo_service *svc, size_t *ret_studies, size_t ret_states[5]);

/*
** For /metrics: call fn(ctx, name, counts) for each study in name order,
** with its trials by state (indexed by enum hpo_state; `name` and `counts`
** borrowed for the call). Runs under the registry's read lock: fn must not
** call the service. Counts are read without the study's lock (a snapshot
** that may be one operation old). Any thread.
*/
void hpo_service_each_study(struct hpo_service *svc,
        void (*fn)(void *ctx, const char *name, const size_t counts[5]), void *ctx);

/* The wall clock in ms since the epoch. */
int64_t hpo_now_ms(void);

/* Format a ms timestamp as RFC 3339 UTC with milliseconds into buf (>= 32 bytes). */
void hpo_format_time(int64_t ms, char *buf, size_t len);

#endif
