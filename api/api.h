/*
** api.h: the HTTP server (libmicrohttpd with its own epoll threads on one
** listening socket), routing, request decoding and reply encoding.
**
** Threading (docs/STYLE.md rule 33): MHD's threads run every request
** callback; the hpo_api_* calls below come from the embedder's loop thread.
** A request that changes a study first goes to `run_inline`, which may run
** the job on the calling MHD thread at once; otherwise it is suspended and
** handed to the embedder's `submit` as a job, whose `work` runs on a worker
** thread and `done` right after it on the same thread, or later, on another
** thread, when the embedder holds replies until the writes they saw
** resolved (`done` resumes the connection, which MHD allows from any
** thread). An inline job whose writes are still in flight comes back with
** `held`: its connection is suspended and the job handed to `release`.
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
    hpo_job_fn work; /* on a worker thread (or inline on an MHD thread) */
    hpo_job_fn done; /* on the thread that ran work, right after it (not after an inline run) */
    /*
    ** Jobs with the same key (a study's name, for requests that change the
    ** study) run one after another in submission order; NULL: no order.
    */
    const char *key;
    /*
    ** What the job does (the HTTP layer's route): jobs of one key and kind
    ** take about the same time, which decides whether they may run inline.
    */
    unsigned kind;
    struct hpo_job *next; /* the embedder's, for queueing */
    uint64_t ticket;      /* the embedder's: its reply waits for this flush */
    /*
    ** The embedder's, with pipelined writes (daemon/dispatch.h): the last
    ** pipelined write resolved when work() started and the last accepted
    ** when it ended; done() checks that none it could see failed.
    */
    uint64_t seen_from, seen_upto;
    void *lane;
    /*
    ** Set by run_inline: the job's writes are still in flight, so its reply
    ** waits: the caller suspends the connection, then calls `release`,
    ** after which done() runs (at once or on another thread).
    */
    bool held;
    /*
    ** Set by work(): the reply acknowledges nothing of this daemon's (503
    ** unavailable: nothing was done; or another daemon's reply to a
    ** forwarded request), so it need not wait for this daemon's flush.
    */
    bool unheld;
    /*
    ** Set by the dispatcher instead of queueing the job behind a write that
    ** waits for an unreachable database (hpo_storage_stalled): work() must
    ** only answer 503 unavailable (and set `unheld`), doing nothing.
    */
    bool refused;
    /*
    ** Set by the submitter: work() may wait for another daemon (it may
    ** forward the request to its study's owner). The dispatcher runs it on
    ** its forward threads, apart from the workers (hpo_dispatch_forwarders).
    */
    bool remote;
    /*
    ** Set by work(), with pipelined writes: the chain of the one study copy
    ** the reply depends on (borrowed until done(); NULL: it may depend on
    ** any write). When none of its writes is in flight as the job ends, the
    ** reply need not wait for other studies' writes (daemon/dispatch.h).
    */
    struct hpo_write_chain *chain;
};

/*
** Several daemons (docs/CLUSTER.md): a request on its way to the service,
** for the embedder's `route` (on a worker, before the request runs).
*/
struct hpo_api_call {
    int op;             /* enum hpo_service_op */
    const char *study;  /* NULL: the studies collection (list, create) */
    bool peek;          /* a gradient upload's size check: only whether it is served here */
    /*
    ** In the study's lane, routed here before it waited there: only whether
    ** another daemon serves the study now (1; no wait, no forward, no reply).
    */
    bool recheck;
    const char *method;
    const char *target; /* the request target as received, query included */
    const char *authorization, *content_type, *accept, *forwarded; /* headers, or NULL */
    const char *body;
    size_t len;
    /* Out: X-Hpod-Owner ("" none); when route answered 1, the reply. */
    char owner[256];
    int status;
    char *reply; /* malloc'd; the api takes it */
    size_t reply_len;
    char reply_type[96];
    char total[24]; /* X-Total-Count, "" none */
    char *link;     /* malloc'd or NULL; the api takes it */
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
    unsigned http_threads;         /* HTTP threads, a daemon each (api/loops.h) */
    struct hpo_service *service;
    const char *version;
    /* API tokens (tokens.h), borrowed until replaced; NULL: no tokens, no checks. */
    const struct hpo_tokens *tokens;
    /* HTTPS with these credentials (tls.h); NULL: plain HTTP. */
    struct hpo_tls *tls;
    unsigned slow_request_ms; /* log requests slower than this at notice; 0: never */
    /* Run a job: work() then done() on a worker. Called from any MHD thread. */
    void (*submit)(void *ctx, struct hpo_job *job);
    /*
    ** Run a keyed job's work() here and now, on the calling MHD thread,
    ** without done() unless it sets job->held (then see `release`); false
    ** (nothing done) when it must be submitted instead. NULL: always submit.
    */
    bool (*run_inline)(void *ctx, struct hpo_job *job);
    void (*release)(void *ctx, struct hpo_job *job);
    /*
    ** On an HTTP thread after each round of its daemon (every ready
    ** connection served): the embedder commits the round's pipelined
    ** writes there (hpo_storage_lead). True: they were handed to another
    ** thread's commit; meanwhile this thread serves on, its waiting replies
    ** unsuspended, and the release of those replies (done()), or
    ** wake(loop) when the writes need a leader, wakes it (from any
    ** thread). NULL: nothing.
    */
    bool (*round_end)(void *ctx, void (*wake)(void *loop), void *loop);
    /*
    ** On an HTTP thread before round_end: a token that changes whenever the
    ** round gets more work for its end (the embedder: the last write queued
    ** for it; 0: none). While it changes, the thread first serves the
    ** connections that became ready meanwhile (without waiting), so that
    ** more writes share the round's commit. NULL: never.
    */
    uint64_t (*round_pending)(void *ctx);
    /*
    ** round_end resolves every pipelined write of the round and releases
    ** the replies they held (SQLite; under synchronous full see round_flush):
    ** an inline run whose write is in flight then waits for its reply
    ** without suspending its connection. False: it suspends (PostgreSQL).
    */
    bool round_replies;
    /*
    ** With round_replies, round_end only commits: a flush on another thread
    ** releases the replies later (synchronous full on SQLite). They still
    ** wait unsuspended; their HTTP thread then sleeps on its daemon's
    ** epoll set, not in MHD's wait (which would spin on them), until the
    ** release kicks it (loops.h, hpo__loops_hold).
    */
    bool round_flush;
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
    /*
    ** Several daemons; NULL: one. route(ctx, call) on a worker before a
    ** request of the service runs: 0 serve it here, 1 answered (forwarded
    ** to the study's owner, or an error) in `call`. gather(ctx, call, reply)
    ** adds the other daemons' studies to a study list's reply (a json_t).
    */
    int (*route)(void *ctx, struct hpo_api_call *call);
    void (*gather)(void *ctx, struct hpo_api_call *call, void *reply);
    /*
    ** With route: whether `mark` (an X-Hpod-Forwarded value) is this
    ** cluster's. Such a request is never forwarded again, so it runs on the
    ** workers; any other routed request may wait for another daemon and is
    ** submitted as remote (hpo_job.remote).
    */
    bool (*forwarded)(void *ctx, const char *mark);
    /* /healthz?cluster's "cluster" object (a new json_t reference), loop thread; NULL: none. */
    void *(*health)(void *ctx);
    void *ctx;
};

/* Start listening. Returns 0 and a new api, or a negative errno with `err` filled. */
int hpo_api_start(const struct hpo_api_config *cfg, struct hpo_api **ret_api,
        struct hpo_error *err);

/* The bound port. */
unsigned hpo_api_port(struct hpo_api *api);

/* Requests handed to workers or with a reply not yet sent (any thread). */
size_t hpo_api_inflight(struct hpo_api *api);

/* Stop accepting new connections (in-flight ones continue). */
void hpo_api_quiesce(struct hpo_api *api);

/*
** Refuse new work: from now on a request that would need a worker (or an
** inline run) is answered 503 and its connection closed, so that once
** hpo_api_inflight() is 0 after this call it stays 0. For the stop.
*/
void hpo_api_close_work(struct hpo_api *api);

/* Stop the server and free it; call with no job in flight. Accepts NULL. */
void hpo_api_stop(struct hpo_api *api);

/*
** Replace the token set (SIGHUP). Requests keep a copy of what they need,
** so the old set may be freed as soon as this returns. Open event streams
** end (they were authorized with the old set); MHD's threads close them.
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

/*
** On an HTTP thread (round_end): whether it has work waiting (a request,
** a connection, a release's kick ready on its daemon). False elsewhere.
*/
bool hpo_api_ready_here(void);

#endif
