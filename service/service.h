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

#include "../core/clock.h" /* hpo_now_ms, for hpo_service_reap's callers */
#include "../core/error.h"

struct hpo_service;
struct hpo_storage;

enum hpo_service_op {
    HPO_SERVICE_STUDY_CREATE,
    HPO_SERVICE_STUDY_LIST,
    HPO_SERVICE_STUDY_GET,
    HPO_SERVICE_STUDY_DELETE,
    HPO_SERVICE_ASK,
    HPO_SERVICE_TRIAL_CREATE,
    HPO_SERVICE_TELL,
    HPO_SERVICE_REPORT,
    HPO_SERVICE_HEARTBEAT,
    HPO_SERVICE_TRIALS_LIST,
    HPO_SERVICE_TRIAL_GET,
    HPO_SERVICE_BEST,
    HPO_SERVICE_PARAM_GET,    /* binary vector download */
    HPO_SERVICE_GRADIENT_PUT, /* binary gradient upload */
    HPO_SERVICE_TRIAL_PATCH,  /* merge user_attrs into a trial */
    HPO_SERVICE_STUDY_PATCH,  /* merge user_attrs into a study */
    HPO_SERVICE_COLUMNS,      /* the dashboard: trials as binary columns */
    HPO_SERVICE_CURVES,       /* the dashboard: intermediate values, downsampled */
    HPO_SERVICE_IMPORTANCES,  /* the dashboard: parameter importances (PED-ANOVA) */
    HPO_SERVICE_PARETO,       /* the feasible Pareto front and its hypervolume */
    HPO_SERVICE_OP_COUNT
};

/* A query string's pairs, as received (values NULL for a key without '='). */
struct hpo_service_query_pair {
    const char *key;
    const char *value;
};

struct hpo_service_query {
    const struct hpo_service_query_pair *pairs; /* borrowed */
    size_t n;
    const char *accept; /* the Accept header (a list's default format), or NULL */
};

/* A trials list's arguments (query: state, feasible, limit, offset, format, intermediate). */
struct hpo_service_list_args {
    int state_filter;      /* -1 = all */
    int feasible_filter;   /* 0 = all, 1 = feasible (complete) only, 2 = the others only */
    int64_t limit, offset; /* limit -1: every row (CSV only) */
    bool csv;
    bool intermediate;     /* CSV: add the intermediate values column */
};

/*
** A request's arguments, once decoded (service/decode.c): what each
** operation starts from. Pointers borrow from the request's body.
*/

struct hpo_service_study_create_args {
    const json_t *body; /* the definition (study_build checks the rest) */
};

struct hpo_service_ask_args {
    const char *worker; /* NULL: none */
};

struct hpo_service_trial_create_args {
    const json_t *params;
    bool has_value;       /* value or values given */
    double value;         /* NaN when absent */
    const json_t *values; /* an object (checked against the study by the op), or NULL */
    const json_t *constraints; /* likewise */
    const json_t *attrs; /* an object, or NULL */
};

struct hpo_service_tell_args {
    int state;            /* enum hpo_state: complete, pruned or failed */
    double value;         /* NaN unless complete and given */
    const json_t *values; /* an object (checked against the study by the op), or NULL */
    const json_t *constraints; /* likewise */
    const json_t *attrs;  /* an object, or NULL */
    const json_t *gradient; /* as given (checked against the space by the op), or NULL */
};

struct hpo_service_report_args {
    int64_t step;
    double value;
};

struct hpo_service_patch_args {
    const json_t *attrs; /* an object, or NULL: nothing changes */
};

/* The dashboard's reads (service/dashboard.c): columns from `from`; curves' sizes. */
struct hpo_service_dash_args {
    int64_t from;
    int64_t trials, points;
};

union hpo_service_args {
    struct hpo_service_study_create_args create;
    struct hpo_service_ask_args ask;
    struct hpo_service_trial_create_args trial;
    struct hpo_service_tell_args tell;
    struct hpo_service_report_args report;
    struct hpo_service_patch_args patch;
    struct hpo_service_list_args list;
    struct hpo_service_dash_args dash;
};


/* One request. Inputs are set by the caller; outputs by hpo_service_execute. */
struct hpo_service_request {
    enum hpo_service_op op;
    const char *study;   /* borrowed */
    int64_t number;      /* trial number, for trial ops */
    const char *name;    /* param name, for binary ops (borrowed) */
    const json_t *body;  /* parsed JSON object (borrowed); NULL = {} */
    const void *data;    /* binary body (borrowed) */
    size_t data_len;
    void *data_owned;    /* the malloc'd buffer `data` is, if any: the service may take it (NULL) */
    bool data_finite;    /* the caller found every float64 of `data` finite */
    /* Trials list: the list arguments (hpo_service_decode sets them from the query). */
    int state_filter;    /* -1 = all */
    int feasible_filter; /* 0 = all, 1 = feasible only, 2 = not feasible only */
    int64_t limit, offset; /* limit -1: every row (CSV only) */
    bool csv;
    bool intermediate;   /* CSV: add the intermediate values column */
    /* Set by hpo_service_decode: the body parsed (owned), and the arguments decoded from it. */
    json_t *doc;
    union hpo_service_args args;
    bool decoded;
    /*
    ** The caller takes a trial's JSON reply as text (`text`, JSON) where the
    ** service writes it straight from memory (the HTTP layer); else `reply`.
    */
    bool text_ok;
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
    /* A CSV list: the reply's text comes from hpo_service_stream_next (the request owns it). */
    struct hpo_service_stream *stream;
    /* The chain of the study copy the request read or changed (a reference; NULL: none). */
    struct hpo_write_chain *chain;
    /*
    ** A read run again because a write it saw failed: it waits until no
    ** pipelined write of its studies is in flight (their lanes wait for it)
    ** and reads what is committed only, so its reply holds whatever fails.
    */
    bool settled;
};

/*
** A reply produced piece by piece (a CSV export). hpo_service_stream_next runs
** on a worker thread (it takes the study's lock briefly); it sets *ret to
** the next piece (borrowed until the next call), *ret_len 0 at the end.
** hpo_service_stream_free accepts NULL; any thread.
*/
struct hpo_service_stream;
int hpo_service_stream_next(struct hpo_service_stream *st, const char **ret, size_t *ret_len);
void hpo_service_stream_free(struct hpo_service_stream *st);

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

/*
** Several daemons (storage/cluster.h): before serving study `name`, owned
** by this daemon at fencing `epoch`, make sure the copy in memory is the
** one loaded at that epoch, loading it from the database when not (a
** study that does not exist is no error: the request answers not_found).
** 0, or a negative errno with `err` (unavailable: retry). Worker thread.
*/
int hpo_service_ensure(struct hpo_service *svc, const char *name, int64_t epoch,
        struct hpo_error *err);

/*
** Several daemons: drop from memory every study keep(ctx, name) refuses
** (another daemon owns it now); its copy is marked moved. Worker thread.
*/
void hpo_service_retain(struct hpo_service *svc, bool (*keep)(void *ctx, const char *name),
        void *ctx);

/* Several daemons: whether study `name` is in memory here (created or loaded). Any thread. */
bool hpo_service_holds(struct hpo_service *svc, const char *name);

/* Free the service and its memory (not the storage). Accepts NULL. */
void hpo_service_destroy(struct hpo_service *svc);

/*
** Decode a request before it runs: parse `body` (`len` bytes, JSON unless
** the op takes a binary body) and check it and the query (NULL: none) with
** the op's decoder, keeping the result in `req` (freed by
** hpo_service_request_finish). Returns 0, or -EINVAL with req->err and
** req->status set (the request must not then be executed). Pure: no
** service, any thread.
*/
int hpo_service_decode(struct hpo_service_request *req, const struct hpo_service_query *q, const char *body,
        size_t len);

/*
** Run one request to completion (blocking). Fills the outputs of `req`. A
** request not passed through hpo_service_decode (an in-process caller) has its
** `body` (a JSON object or NULL) decoded here, and its list arguments taken
** as set.
*/
void hpo_service_execute(struct hpo_service *svc, struct hpo_service_request *req);

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

/*
** A study's pulse for the dashboard's events (api/events.c): trials by state
** (enum hpo_state), total, the best trial's number (-1 none) and the columns
** cursor (the lowest number still waiting or running; total when none).
** Blocks on the study's lock (worker thread). Returns 0 or -ENOENT.
*/
struct hpo_service_pulse {
    int64_t total, cursor, best;
    int64_t counts[5];
};
int hpo_service_pulse(struct hpo_service *svc, const char *study,
        struct hpo_service_pulse *ret_pulse);

/* Release the outputs of a request. */
void hpo_service_request_finish(struct hpo_service_request *req);

/*
** Pipelined writes (storage.h, daemon/dispatch.h): whether the reply of
** `req`, held until the pipelined writes numbered up to `upto` resolved,
** may go out: false when a write it could see (numbered in (from, upto])
** failed. Then its reply must be replaced by `err` (unavailable): a write
** of its study depended on the failed one and was not stored, or what it
** read was never stored. A request that read no study copy but the list of
** studies is refused on any failure in the range; others always pass.
*/
bool hpo_service_reply_valid(struct hpo_service *svc, const struct hpo_service_request *req,
        uint64_t from, uint64_t upto, struct hpo_error *err);

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

#endif
