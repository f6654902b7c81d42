/*
** api.h: the HTTP server (libmicrohttpd in external-epoll mode), routing,
** request decoding and reply encoding.
**
** Threading: every hpo_api_* call and every job's `done` runs on the event
** loop thread. A request that needs the service is suspended and handed to
** the embedder's `submit` as a job; `work` runs on a worker thread, `done`
** back on the loop thread, after which the embedder calls hpo_api_run().
*/
#ifndef HPO_API_H
#define HPO_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/error.h"

struct hpo_api;
struct hpo_service;
struct hpo_job;
struct hpo_tokens;
struct hpo_tls;

typedef void (*hpo_job_fn)(struct hpo_job *job);

struct hpo_job {
    hpo_job_fn work; /* on a worker thread */
    hpo_job_fn done; /* on the loop thread, after work */
    /*
    ** Jobs with the same key (a study's name, for requests that change the
    ** study) run one after another in submission order; NULL: no order.
    */
    const char *key;
    struct hpo_job *next; /* the embedder's, for queueing */
    uint64_t ticket;      /* the embedder's: its reply waits for this flush */
};

struct hpo_api_config {
    const char *host;      /* numeric address to bind: "127.0.0.1", "::1", "0.0.0.0" */
    unsigned port;         /* 0 = any free port */
    int listen_fd;         /* > 0: listen on this socket (socket activation), not host:port */
    size_t json_limit;     /* max JSON body bytes (1 MiB) */
    size_t binary_limit;   /* max binary body bytes (256 MiB) */
    unsigned connection_limit;     /* open connections (a few more for /healthz, /metrics) */
    unsigned connection_timeout_s; /* idle */
    unsigned per_client_limit;     /* open connections from one address */
    unsigned head_timeout_s;       /* from a request's first byte to the end of its head */
    struct hpo_service *service;
    const char *version;
    /* API tokens (tokens.h), borrowed until replaced; NULL: no tokens, no checks. */
    const struct hpo_tokens *tokens;
    /* HTTPS with these credentials (tls.h); NULL: plain HTTP. */
    struct hpo_tls *tls;
    unsigned slow_request_ms; /* log requests slower than this at notice; 0: never */
    /* Run a job: work() on a worker, then done() on the loop thread. */
    void (*submit)(void *ctx, struct hpo_job *job);
    /* Whether storage takes writes (for /healthz). */
    bool (*healthy)(void *ctx);
    /*
    ** GET /v1/admin/backup, on a worker thread: the archive as a file at
    ** offset 0 (the api closes it) and its size; or a negative errno and
    ** `err`. NULL: the route answers not_found.
    */
    int (*backup)(void *ctx, int *ret_fd, uint64_t *ret_size, struct hpo_error *err);
    /*
    ** Prometheus text for /metrics (malloc'd), or NULL. `scope`: the token's
    ** study-name prefix; series labelled with a study outside it are left out
    ** ("" = every study).
    */
    char *(*metrics)(void *ctx, const char *scope);
    void *ctx;
};

/* Start listening. Returns 0 and a new api, or a negative errno with `err` filled. */
int hpo_api_start(const struct hpo_api_config *cfg, struct hpo_api **ret_api,
        struct hpo_error *err);

/* The epoll fd to watch for readability. */
int hpo_api_fd(struct hpo_api *api);

/* Process whatever is ready (MHD_run). */
void hpo_api_run(struct hpo_api *api);

/* Milliseconds until hpo_api_run must run again, or -1 for no deadline. */
long hpo_api_timeout_ms(struct hpo_api *api);

/* The bound port. */
unsigned hpo_api_port(struct hpo_api *api);

/* Requests handed to workers and not yet done. */
size_t hpo_api_inflight(struct hpo_api *api);

/* Stop accepting new connections (in-flight ones continue). */
void hpo_api_quiesce(struct hpo_api *api);

/* Stop the server and free it; call with no job in flight. Accepts NULL. */
void hpo_api_stop(struct hpo_api *api);

/*
** Replace the token set (SIGHUP). Requests keep a copy of what they need,
** so the old set may be freed as soon as this returns.
*/
void hpo_api_set_tokens(struct hpo_api *api, const struct hpo_tokens *tokens);

/* Close connections whose request head is late (head_timeout_s); call about once a second. */
void hpo_api_sweep(struct hpo_api *api);

/*
** Write the server's metrics (requests and latency by route, method and
** status class; ask latency by sampler; tells, reports; open connections)
** in Prometheus text format. Loop thread (it asks MHD for its connection
** count). Returns 0 or -EIO.
*/
int hpo_api_metrics_write(struct hpo_api *api, FILE *f);

#endif
