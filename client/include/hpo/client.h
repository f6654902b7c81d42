/*
** hpo/client.h: libhpoclient, the C client of the hpod REST API (docs/REFERENCE.md, v1).
**
** One client is one connection to one daemon, over libcurl. Studies are named
** by their name and trials by (study, number), exactly as in the REST paths,
** so every call maps to one request. JSON that the caller may want whole
** (studies, lists) is handed out as text; trials are parsed into an opaque
** struct hpo_trial with typed access to their params.
**
** Conventions, for every function below unless it says otherwise:
** - Functions that can fail return 0 or a negative errno: -EINVAL for a bad
**   argument, -ENOMEM, -EIO when the server answered an API error (the error
**   record then holds the API's code, HTTP status, message and field),
**   -ECONNREFUSED / -ETIMEDOUT / -EPROTO for transport failures.
** - The last argument `err` may be NULL; when given, it is filled on failure
**   and cleared on success.
** - Out-parameters are named ret_* and are set only on success.
** - Strings returned as `char **` are new: free them with hpo_client_free().
** - Threads: a struct hpo_client may be used by one thread at a time (it
**   owns one curl handle); use one client per thread. A struct hpo_trial is
**   plain data: any number of threads may read one at once.
** - Sockets are close-on-exec: programs the caller starts do not inherit
**   the connection.
** - Retries: a failure to connect and a 503 `unavailable` (nothing changed on
**   the server) are retried with exponential backoff. Timeouts and broken
**   connections after the request was sent are retried only for idempotent
**   calls (everything except ask, enqueue and delete).
*/
#ifndef HPO_CLIENT_H
#define HPO_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HPO_EXPORT __attribute__((visibility("default")))
#else
#define HPO_EXPORT
#endif

/*
** The API's error codes, numbered as the server's table (append-only: these
** numbers never change), followed by the codes of failures on the client's
** side, which have no wire name of their own.
*/
enum hpo_client_code {
    HPO_CLIENT_OK = 0,
    HPO_CLIENT_INVALID_JSON = 1,           /* 400 */
    HPO_CLIENT_INVALID_ARGUMENT = 2,       /* 400 */
    HPO_CLIENT_UNAUTHENTICATED = 3,        /* 401 */
    HPO_CLIENT_PERMISSION_DENIED = 4,      /* 403 */
    HPO_CLIENT_NOT_FOUND = 5,              /* 404 */
    HPO_CLIENT_METHOD_NOT_ALLOWED = 6,     /* 405 */
    HPO_CLIENT_CONFLICT = 7,               /* 409 */
    HPO_CLIENT_EXHAUSTED = 8,              /* 409 */
    HPO_CLIENT_PAYLOAD_TOO_LARGE = 9,      /* 413 */
    HPO_CLIENT_UNSUPPORTED_MEDIA_TYPE = 10, /* 415 */
    HPO_CLIENT_UNAVAILABLE = 11,           /* 503 */
    HPO_CLIENT_INTERNAL = 12,              /* 500 */
    /* Client-side failures: no response, or one the client cannot read. */
    HPO_CLIENT_TRANSPORT = 100,   /* could not connect, timed out, connection broken */
    HPO_CLIENT_BAD_RESPONSE = 101, /* the server's answer is not what docs/REFERENCE.md promises */
    HPO_CLIENT_USAGE = 102,       /* a bad argument to a library call (-EINVAL) */
    HPO_CLIENT_NO_MEMORY = 103,   /* -ENOMEM */
};

/*
** A failure, filled by every call that takes one. `status` is the HTTP status
** (0 when there was no response); `field` is empty unless the server named
** the one field at fault ("params[1].low"); `message` is the server's message
** or a description of the client-side failure.
*/
struct hpo_client_error {
    enum hpo_client_code code;
    int status;
    char field[128];
    char message[256];
};

struct hpo_client;
struct hpo_trial;

/*
** The wire name of a code ("not_found"), or "transport", "bad_response",
** "usage", "no_memory" for client-side codes; "unknown" otherwise.
** Returns a static string. Any thread.
*/
HPO_EXPORT const char *hpo_client_code_name(enum hpo_client_code code);

/* The library's version, "MAJOR.MINOR.PATCH". Static string. Any thread. */
HPO_EXPORT const char *hpo_client_version(void);

/* Free a string or buffer the library returned (NULL is fine). Any thread. */
HPO_EXPORT void hpo_client_free(void *p);

/*
** Create a client for the daemon at `url` ("http://127.0.0.1:8080"; a
** trailing slash and a trailing "/v1" are dropped; NULL means that default).
** `token` is sent as "Authorization: Bearer <token>" ("" for none; NULL
** takes $HPOD_TOKEN, none when unset). An https URL is verified against the
** CA file in $HPOD_CACERT when set (see hpo_client_set_cacert), else the
** system's CAs. Both strings are copied. Defaults: connect timeout 5 s, request timeout
** 60 s, 5 retries from 100 ms doubling up to 5 s, no worker name.
** No request is made. Call libcurl's curl_global_init() first if other
** threads already run (the library calls it on first use otherwise).
** Returns 0 and sets *ret_client, or -EINVAL (bad URL), -ENOMEM.
*/
HPO_EXPORT int hpo_client_create(const char *url, const char *token,
        struct hpo_client **ret_client, struct hpo_client_error *err);

/*
** Verify https servers against the PEM CA file at `path` (copied; NULL or
** "" for the system's CAs). Returns 0, or -EINVAL, -ENOMEM.
*/
HPO_EXPORT int hpo_client_set_cacert(struct hpo_client *c, const char *path);

/* Destroy a client (NULL is fine). Trials it returned stay valid. */
HPO_EXPORT void hpo_client_destroy(struct hpo_client *c);

/*
** Set the connect timeout and the whole-request timeout, in milliseconds
** (0 keeps the current value). Returns 0, or -EINVAL for negative values.
*/
HPO_EXPORT int hpo_client_set_timeouts(struct hpo_client *c, long connect_ms, long request_ms);

/*
** Set the retry policy: at most `max_retries` further attempts (0 disables
** retries), waiting `base_ms` before the first and doubling up to `max_ms`,
** each wait scaled by a random factor in [0.5, 1] so that workers spread out.
** Returns 0, or -EINVAL for negative values or base_ms > max_ms.
*/
HPO_EXPORT int hpo_client_set_retries(struct hpo_client *c, int max_retries, long base_ms,
        long max_ms);

/*
** Set the worker name sent with every ask (copied; NULL for none).
** Returns 0, or -ENOMEM.
*/
HPO_EXPORT int hpo_client_set_worker(struct hpo_client *c, const char *worker);

/*
** Send one request: `method` ("GET", "POST", "PUT", "PATCH", "DELETE"), `path`
** relative to the base URL ("/v1/studies", "/healthz"), `body` JSON text or
** NULL. On a 2xx answer sets *ret_status (may be NULL) and *ret_body (may be
** NULL: the body is dropped; new, NUL-terminated, "" for 204). On an API
** error returns -EIO with `err` filled from the error body. `path` is sent
** as given: escape names yourself (study names never need it).
** Retried as described above when `idempotent` is true.
*/
HPO_EXPORT int hpo_client_request(struct hpo_client *c, const char *method, const char *path,
        const char *body, bool idempotent, long *ret_status, char **ret_body,
        struct hpo_client_error *err);

/*
** GET `path` and write a 2xx body to `fd` as it arrives, never holding it in
** memory (for `/v1/admin/backup`, say). `accept` is the Accept header (NULL:
** application/json). No overall time limit: the transfer is abandoned when
** less than 1 byte/s arrives for the request timeout. Retried (503, refused
** connection) only before any byte was written. Returns 0 and sets
** *ret_bytes (may be NULL); -EIO with `err` filled on an API error (its
** body is not written to `fd`); a transport errno; or the negative errno of
** a failed write to `fd`. On failure `fd` may hold part of the body.
*/
HPO_EXPORT int hpo_client_get_to_fd(struct hpo_client *c, const char *path, const char *accept,
        int fd, uint64_t *ret_bytes, struct hpo_client_error *err);

/*
** Create the study described by `spec_json` (a study definition as in
** docs/REFERENCE.md), or get it when an identical one exists. Sets *ret_created (may be
** NULL) to true on 201, false on 200, and *ret_json (may be NULL) to the
** study as returned (new). A different study of the same name is
** HPO_CLIENT_CONFLICT; a bad definition is HPO_CLIENT_INVALID_ARGUMENT with
** `field` set. Returns 0, -EIO, or a transport error.
*/
HPO_EXPORT int hpo_client_study_create(struct hpo_client *c, const char *spec_json,
        bool *ret_created, char **ret_json, struct hpo_client_error *err);

/* GET a study: *ret_json (new) is the study with its summary. Unknown: NOT_FOUND. */
HPO_EXPORT int hpo_client_study_get(struct hpo_client *c, const char *study, char **ret_json,
        struct hpo_client_error *err);

/* List studies: *ret_json (new) is {"studies": [...]}, ordered by name. */
HPO_EXPORT int hpo_client_study_list(struct hpo_client *c, char **ret_json,
        struct hpo_client_error *err);

/* Delete a study and its trials. Unknown: NOT_FOUND. Not retried once sent. */
HPO_EXPORT int hpo_client_study_delete(struct hpo_client *c, const char *study,
        struct hpo_client_error *err);

/*
** Ask for a trial to run: *ret_trial (new; free with hpo_trial_free) is a
** `running` trial. A study at max_trials gives HPO_CLIENT_EXHAUSTED.
** Not retried once sent (a lost answer would leave an orphan trial, which
** the study's heartbeat_timeout reclaims).
*/
HPO_EXPORT int hpo_client_ask(struct hpo_client *c, const char *study,
        struct hpo_trial **ret_trial, struct hpo_client_error *err);

/*
** Enqueue a configuration to try next: POST .../trials with `params_json`
** (a JSON object from param names to values; it may be partial: the
** sampler fills the missing active params when the trial is handed out)
** and `user_attrs_json` (a JSON object, or NULL for none). *ret_trial (may
** be NULL; new) is the `waiting` trial. Text that is not a JSON object is
** -EINVAL with HPO_CLIENT_USAGE and nothing is sent; params outside the
** space are HPO_CLIENT_INVALID_ARGUMENT with `field` set. Not retried once
** sent (a lost answer could enqueue the trial twice).
*/
HPO_EXPORT int hpo_client_enqueue(struct hpo_client *c, const char *study,
        const char *params_json, const char *user_attrs_json, struct hpo_trial **ret_trial,
        struct hpo_client_error *err);

/*
** Merge user attrs into a study's: PATCH /v1/studies/{study} with
** {"user_attrs": ...}. `user_attrs_json` is a JSON object; a key set to
** null is removed, other keys are set, keys not named are kept.
** *ret_json (may be NULL; new) is the study as returned. Text that is not a
** JSON object is -EINVAL with HPO_CLIENT_USAGE. Retried (the same merge
** twice gives the same attrs). A daemon without this call answers
** HPO_CLIENT_METHOD_NOT_ALLOWED.
*/
HPO_EXPORT int hpo_client_study_set_user_attrs(struct hpo_client *c, const char *study,
        const char *user_attrs_json, char **ret_json, struct hpo_client_error *err);

/*
** The same for one trial, in any state: PATCH .../trials/{number}.
** *ret_trial (may be NULL; new) is the trial as returned.
*/
HPO_EXPORT int hpo_client_trial_set_user_attrs(struct hpo_client *c, const char *study,
        int64_t number, const char *user_attrs_json, struct hpo_trial **ret_trial,
        struct hpo_client_error *err);

/* GET one trial: *ret_trial is new. */
HPO_EXPORT int hpo_client_trial_get(struct hpo_client *c, const char *study, int64_t number,
        struct hpo_trial **ret_trial, struct hpo_client_error *err);

/* GET the best complete trial: *ret_trial is new; none yet is NOT_FOUND. */
HPO_EXPORT int hpo_client_best(struct hpo_client *c, const char *study,
        struct hpo_trial **ret_trial, struct hpo_client_error *err);

/*
** GET .../best as a list, for any study: with several objectives the feasible
** Pareto front (complete, feasible, non-dominated trials in order of number;
** none yet is 0 trials, not an error); with one objective the best feasible
** trial (one trial; none yet is NOT_FOUND, as hpo_client_best).
** *ret_trials (new; free with hpo_trials_free) holds *ret_count trials.
*/
HPO_EXPORT int hpo_client_best_trials(struct hpo_client *c, const char *study,
        struct hpo_trial ***ret_trials, size_t *ret_count, struct hpo_client_error *err);

/*
** GET .../pareto: the front as hpo_client_best_trials (one objective: every
** best feasible trial, ties included; none yet: 0 trials) and its
** hypervolume against the reference point. *ret_trials and *ret_count as
** above; *ret_hypervolume (may be NULL); *ret_json (may be NULL; new) the
** whole answer, for its "reference_point" (null when no trial is feasible).
*/
HPO_EXPORT int hpo_client_pareto(struct hpo_client *c, const char *study,
        struct hpo_trial ***ret_trials, size_t *ret_count, double *ret_hypervolume,
        char **ret_json, struct hpo_client_error *err);

/* Free `n` trials and their array, as hpo_client_best_trials returns them (NULL is fine). */
HPO_EXPORT void hpo_trials_free(struct hpo_trial **trials, size_t n);

/*
** Report an intermediate value (`step` >= 0, `value` finite) and set
** *ret_prune to the pruner's decision. A report is also a heartbeat. The
** trial stays running: after a true decision, stop and tell it pruned.
** A trial that is not running is HPO_CLIENT_CONFLICT.
*/
HPO_EXPORT int hpo_client_report(struct hpo_client *c, const char *study, int64_t number,
        int64_t step, double value, bool *ret_prune, struct hpo_client_error *err);

/* Tell the daemon the trial is still alive. Not running: HPO_CLIENT_CONFLICT. */
HPO_EXPORT int hpo_client_heartbeat(struct hpo_client *c, const char *study, int64_t number,
        struct hpo_client_error *err);

/*
** Complete a trial with a finite `value`. Telling the same result twice is
** fine (so it is retried safely); another result is HPO_CLIENT_CONFLICT.
*/
HPO_EXPORT int hpo_client_tell(struct hpo_client *c, const char *study, int64_t number,
        double value, struct hpo_client_error *err);

/*
** Complete a trial of a study with objectives and constraints (API 1.1):
** {"values": {names[i]: values[i]}, "constraints": {cnames[j]: cvals[j]}}.
** `n` >= 1 objective values (every objective the study declares); `m` >= 0
** constraint values (`cnames`/`cvals` may be NULL when m is 0; constraints not
** given make the trial infeasible). A NULL or empty name, a name given twice
** or a non-finite number is -EINVAL with HPO_CLIENT_USAGE and nothing is
** sent; unknown or missing names are the server's HPO_CLIENT_INVALID_ARGUMENT
** with `field` set ("values.latency_ms"). `names` may be NULL when n is 1: the
** one-objective spelling {"value": v} (with constraints, if any).
** Retry and conflict rules as hpo_client_tell (the same values and
** constraints again are fine).
*/
HPO_EXPORT int hpo_client_tell_values(struct hpo_client *c, const char *study, int64_t number,
        const char *const *names, const double *values, size_t n, const char *const *cnames,
        const double *cvals, size_t m, struct hpo_client_error *err);

/* Mark a trial failed. Same retry and conflict rules as hpo_client_tell. */
HPO_EXPORT int hpo_client_tell_failed(struct hpo_client *c, const char *study, int64_t number,
        struct hpo_client_error *err);

/* Mark a trial pruned (its value becomes its last intermediate value). */
HPO_EXPORT int hpo_client_tell_pruned(struct hpo_client *c, const char *study,
        int64_t number, struct hpo_client_error *err);

/*
** Complete a trial with a value and a gradient: `gradient_json` is a JSON
** object from float parameter names to numbers (scalars) or arrays (vectors),
** in the parameters' own units. It is parsed here: text that is not a JSON
** object is -EINVAL with HPO_CLIENT_USAGE and nothing is sent.
*/
HPO_EXPORT int hpo_client_tell_gradient(struct hpo_client *c, const char *study, int64_t number,
        double value, const char *gradient_json, struct hpo_client_error *err);

/*
** Upload the gradient of one vector (or scalar) parameter as binary, for the
** tell that follows: `n` little-endian float64 values (converted here on
** big-endian hosts), PUT with Content-Type application/octet-stream. `n`
** must be the parameter's size (else HPO_CLIENT_INVALID_ARGUMENT).
*/
HPO_EXPORT int hpo_client_put_gradient(struct hpo_client *c, const char *study, int64_t number,
        const char *name, const double *values, size_t n, struct hpo_client_error *err);

/*
** Get a vector parameter's values: from the trial when it holds the array,
** else (vectors over 1000 elements, which trials give as an href) with one
** binary GET. *ret_values is new (free with hpo_client_free) and holds
** *ret_size doubles. Absent (inactive) parameter: -ENOENT; not a vector:
** -EINVAL; both with HPO_CLIENT_USAGE.
*/
HPO_EXPORT int hpo_client_param_vector(struct hpo_client *c, const struct hpo_trial *t,
        const char *name, double **ret_values, size_t *ret_size, struct hpo_client_error *err);

/*
** Parse a trial from its JSON text (as GET .../trials/{n} answers), for
** callers that fetched it themselves. Returns 0 and sets *ret_trial (new),
** -EINVAL when the text is not a trial, -ENOMEM.
*/
HPO_EXPORT int hpo_trial_parse(const char *json, size_t len, struct hpo_trial **ret_trial);

/* Free a trial (NULL is fine). */
HPO_EXPORT void hpo_trial_free(struct hpo_trial *t);

/* The trial's study name (borrowed, lives as long as the trial). */
HPO_EXPORT const char *hpo_trial_study(const struct hpo_trial *t);

/* The trial's number within its study. */
HPO_EXPORT int64_t hpo_trial_number(const struct hpo_trial *t);

/* The trial's state: "waiting", "running", "complete", "pruned" or "failed" (borrowed). */
HPO_EXPORT const char *hpo_trial_state(const struct hpo_trial *t);

/* The trial's value into *ret_value: 0, or -ENOENT when it has none (yet). */
HPO_EXPORT int hpo_trial_value(const struct hpo_trial *t, double *ret_value);

/*
** Objective and constraint values of a trial (API 1.1). hpo_trial_objective:
** the told value of the objective `name` into *ret_value, from "values"; a
** one-objective trial without "values" (a study without constraints) answers
** its "value" for any name. hpo_trial_constraint: a told constraint value.
** Both: 0, -ENOENT when not told (yet), -EINVAL for NULL arguments.
*/
HPO_EXPORT int hpo_trial_objective(const struct hpo_trial *t, const char *name,
        double *ret_value);
HPO_EXPORT int hpo_trial_constraint(const struct hpo_trial *t, const char *name,
        double *ret_value);

/*
** Whether the trial is feasible: 1 or 0 as the trial's "feasible" says (false
** until complete). A study without constraints shows no "feasible": then a
** complete trial is 1, any other 0.
*/
HPO_EXPORT int hpo_trial_feasible(const struct hpo_trial *t);

/* The whole trial as compact JSON text (borrowed, lives as long as the trial). */
HPO_EXPORT const char *hpo_trial_json(const struct hpo_trial *t);

/* How many params the trial holds (inactive conditional params are absent). */
HPO_EXPORT size_t hpo_trial_param_count(const struct hpo_trial *t);

/* The name of the i-th param, in the study's order (borrowed); NULL when i is out of range. */
HPO_EXPORT const char *hpo_trial_param_name(const struct hpo_trial *t, size_t i);

/*
** Typed access to a param. Each returns 0 and sets *ret_value, -ENOENT when
** the trial has no such param (unknown, or inactive through `when`), or
** -EINVAL when the value has another type:
** - _double: a float, an int, or a numeric categorical choice;
** - _int: an int, or an integral numeric choice (a float param is -EINVAL
**   even if it happens to be integral);
** - _string: a string categorical choice (borrowed, lives as long as t);
** - _bool: a boolean categorical choice.
*/
HPO_EXPORT int hpo_trial_param_double(const struct hpo_trial *t, const char *name,
        double *ret_value);
HPO_EXPORT int hpo_trial_param_int(const struct hpo_trial *t, const char *name,
        int64_t *ret_value);
HPO_EXPORT int hpo_trial_param_string(const struct hpo_trial *t, const char *name,
        const char **ret_value);
HPO_EXPORT int hpo_trial_param_bool(const struct hpo_trial *t, const char *name,
        bool *ret_value);

/*
** A param's value as text, for command lines and environment variables:
** numbers in the shortest form that reads back to the same double (0.1, not
** 0.10000000000000001), integers as integers, strings as they are, booleans
** as "true"/"false", vectors as comma-separated numbers (a vector given only
** as an href is -EINVAL: fetch it with hpo_client_param_vector).
** *ret_text is new. Returns 0, -ENOENT, -EINVAL, -ENOMEM.
*/
HPO_EXPORT int hpo_trial_param_format(const struct hpo_trial *t, const char *name,
        char **ret_text);

#ifdef __cplusplus
}
#endif

#endif
