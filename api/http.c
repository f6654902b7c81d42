/*
** http.c: libmicrohttpd glue: request contexts, body accumulation with
** early 413, routing, JSON decoding, replies and the per-request log line.
**
** The HTTP threads (loops.c, http_threads of them) each run a
** libmicrohttpd daemon of their own on the one listening socket; every
** callback here runs on one of them. A request that changes a quick study
** whose lane is idle runs right there (run_inline): under round commits
** (SQLite) its write is committed with the rest of its thread's round at
** the round's end and its reply queued in the next round (under
** synchronous full, the pass after the flusher's release kicked the
** thread: cfg.round_flush), without a suspension; else it is answered at
** once, or, when its
** pipelined write is still in flight, suspended until it resolved; other
** requests that touch studies are suspended, run
** on a worker through the embedder's submit(), and resumed in the job's
** done callback (docs/STYLE.md rules 33-38). done checks first that no
** write the reply saw failed (check_held): a write then answers 503, a read
** runs again on committed state.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <stdarg.h>

#include <jansson.h>
#include <microhttpd.h>

#include "../core/buf.h"
#include "../core/finite.h"
#include "../core/history.h"
#include "../core/space.h"
#include "../core/util.h"
#include "../core/jsonw.h"
#include "../pruners/pruner.h"
#include "../samplers/sampler.h"
#include "../service/service.h"
#include "access.h"
#include "api-int.h"
#include "api.h"
#include "conns.h"
#include "events.h"
#include "log.h"
#include "loops.h"
#include "metrics.h"
#include "static.h"
#include "tls.h"

/* Lane requests with a JSON body up to this size may be decoded and run on their HTTP thread. */
#define INLINE_BODY_MAX (64 * 1024)

/*
** Finished requests' records kept for the next ones, at most this many: a
** record (about 2 KiB) is past glibc's per-thread cache, and allocating one
** per request took malloc's slow path (and its consolidation of the fast
** bins) on every request.
*/
#if defined(__SANITIZE_ADDRESS__)
#define REQ_POOL_MAX 0 /* under ASan every record is freed: a use after the end is caught */
#else
#define REQ_POOL_MAX 64
#endif
static const unsigned req_pool_max = REQ_POOL_MAX; /* (a variable: no "always false" at 0) */

enum { ROUND_WAITING, ROUND_DONE, ROUND_SUSPENDED };
/*
** This HTTP thread's last round end handed its writes to another thread's
** commit (cfg.round_end): its waiting replies stay unsuspended meanwhile.
*/
static _Thread_local bool round_handed;
/*
** Replies this thread queued (queue_reply), and their count at its last
** round end: a reply queued on a handler's call without new data (a held
** one released) goes out only in MHD's next round.
*/
static _Thread_local unsigned round_queued, round_queued_seen;

struct hpo_api {
    struct hpo_api_config cfg;
    struct hpo__loops *loops; /* the HTTP threads, a daemon each (loops.h) */
    unsigned port;
    /* For start_one: the daemons' flags and listening address. */
    unsigned mhd_flags;
    struct sockaddr_storage ss;
    atomic_size_t inflight; /* requests suspended for a job or with a reply not yet sent */
    atomic_bool closed;     /* hpo_api_close_work: no new work */
    uint32_t id_prefix;
    atomic_uint_fast64_t id_counter;
    pthread_rwlock_t tokens_lock;    /* readers: requests being authorized; writer: SIGHUP */
    const struct hpo_tokens *tokens; /* borrowed; NULL = no tokens (access.h) */
    struct hpo__conns conns;         /* head deadline and reserve (conns.h) */
    struct hpo__metrics *metrics;
    struct hpo__events *events;      /* the dashboard's event streams (events.h) */
    pthread_mutex_t pool_lock;       /* guards pool and pool_n */
    struct req *pool;                /* finished requests' records, linked by pool_next */
    unsigned pool_n;
};

struct req {
    struct hpo_api *api;
    struct req *pool_next; /* the next finished record, while in api->pool */
    struct MHD_Connection *conn;
    struct hpo_job job; /* first member use is not required: we map back by offset */
    char id[24];
    char method[16];
    char *path;     /* the raw path for messages and logs, bytes outside ASCII 0x21-0x7e as %XX */
    char *raw;      /* the raw path as received (no query), until routed */
    uint64_t start_us;
    enum hpo__route_id route;
    char *study;
    char *name;
    int64_t number;
    bool number_ok;
    char *body;
    size_t len, cap, limit;
    size_t expect;     /* the Content-Length (0: none) */
    bool started;      /* the handler has seen the headers */
    bool headers_done; /* the headers passed every check: the body may come */
    bool exact;        /* `limit` is the exact size a gradient upload must have */
    /* A gradient upload: its first `finite` bytes hold finite float64s only (append_body). */
    size_t finite;
    bool nonfinite; /* an element that is not finite arrived (the service names it) */
    bool too_large;
    bool suspended;
    /*
    ** An inline run held to the end of its HTTP thread's round
    ** (cfg.round_replies): its reply waits unsuspended; round_state says
    ** whether done() ran (it may run on another thread).
    */
    bool round_wait;
    atomic_int round_state; /* ROUND_WAITING, ROUND_DONE, ROUND_SUSPENDED */
    void *round_loop;  /* its HTTP thread's loop (loops.h), for a done() from another thread */
    bool round_held;   /* cfg.round_flush: counted in its loop's holds (hpo__loops_hold) */
    uint64_t round_no; /* its thread's hpo__loops_rounds_here when held */
    bool counted; /* counted in api->inflight until on_completed */
    int log_level; /* the log level when its reply was queued (-1: none queued) */
    bool metered;  /* counted for /metrics when its reply was queued */
    bool ready; /* a reply is waiting to be queued */
    bool pruned; /* a report answered {"prune": true} (for metrics) */
    const struct hpo__route_row *row; /* the route's row for the method, once allowed */
    struct hpo_service_request sreq;
    /* A read: sreq as prepared, to run it again when a write it saw failed (check_held). */
    struct hpo_service_request *sreq_init;
    unsigned reruns;
    struct hpo_buf query; /* struct hpo_service_query_pair: a list's query string */
    const char *accept;   /* its Accept header */
    /* The reply. */
    int status;
    char *out;
    size_t out_len;
    void (*out_free)(void *cls); /* set: `out` is borrowed, released by out_free(out_cls) */
    void *out_cls;
    const char *content_type;
    const char *allow;
    struct hpo_principal who; /* the token that sent it (access.h) */
    bool www_auth;            /* a 401: add WWW-Authenticate */
    bool close_after;         /* close the connection after the reply */
    int out_fd;               /* > 0: the reply is this file's out_len bytes (a backup) */
    struct hpo__conn *tcp;    /* its connection's record (conns.h), or NULL */
    /* A streamed reply (CSV): pieces come from a worker, one job at a time. */
    struct hpo_service_stream *stream;
    const char *piece;
    size_t piece_len, piece_off;
    bool stream_end;
    char total[24]; /* X-Total-Count, "" when none */
    char *link;     /* Link, NULL when none */
    bool is_static; /* a dashboard file (api/static.c): its headers in `st` */
    struct hpo__static_reply st;
    bool events; /* an event stream to open (events.h) from ev_start with ev_first */
    struct hpo__events_start ev_start;
    struct hpo_service_pulse ev_first;
    char *target;              /* the request target as received (several daemons: forwarding) */
    struct hpo_api_call call;  /* several daemons: routing (cfg.route), X-Hpod-Owner */
    bool routed_here; /* several daemons: route_work found it served here (lane requests) */
    unsigned reroutes; /* several daemons: times it left its lane to be routed again */
};

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct req *req_of_job(struct hpo_job *job)
{
    return (struct req *)((char *)job - offsetof(struct req, job));
}

/* ---- replies ----------------------------------------------------------- */

static void release_out(struct req *rq)
{
    if (rq->out_free != NULL) {
        rq->out_free(rq->out_cls);
    } else {
        free(rq->out);
    }
    rq->out = NULL;
    rq->out_free = NULL;
    rq->out_cls = NULL;
}

static void set_reply(struct req *rq, int status, char *out, size_t len, const char *type)
{
    release_out(rq);
    rq->status = status;
    rq->out = out;
    rq->out_len = len;
    rq->content_type = type;
    rq->ready = true;
}

static void set_json(struct req *rq, int status, json_t *body)
{
    char *text = NULL;
    size_t len = 0;

    if (body != NULL) {
        /* Numbers in their shortest round-trip form (core/jsonw.h). */
        text = hpo_json_dumps(body, &len);
        json_decref(body);
    }
    if (text == NULL && body != NULL) {
        status = 500;
        text = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode reply\"}}");
        len = text ? strlen(text) : 0;
    }
    set_reply(rq, status, text, len, "application/json");
}

static json_t *error_body(const struct hpo_error *err)
{
    json_t *e = json_pack("{s:s,s:s}", "code", hpo_code_name(err->code), "message", err->message);

    if (err->field[0] != '\0') {
        json_object_set_new(e, "field", json_string(err->field));
    }
    return json_pack("{s:o}", "error", e);
}

static void set_error(struct req *rq, enum hpo_code code, const char *field, const char *fmt,
        ...) __attribute__((format(printf, 4, 5)));

static void set_error(struct req *rq, enum hpo_code code, const char *field, const char *fmt,
        ...)
{
    struct hpo_error err = { .code = code };
    va_list ap;

    snprintf(err.field, sizeof(err.field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof(err.message), fmt, ap);
    va_end(ap);
    set_json(rq, hpo_code_status(code), error_body(&err));
    rq->sreq.err = err; /* for the request's log line */
}

static void stream_work(struct hpo_job *job);
static void job_done(struct hpo_job *job);
static void count_request(struct req *rq, uint64_t us);

/* The request is busy (a job or a reply on its way) until on_completed: a stop waits for it. */
static void count_busy(struct req *rq)
{
    if (!rq->counted) {
        rq->counted = true;
        atomic_fetch_add(&rq->api->inflight, 1);
    }
}

/*
** May the request be given work (a job, an inline run)? Counted first, then
** the door checked: with hpo_api_close_work's store and load in the other
** order, the stop sees either this count or this request sees the door shut.
** False: a 503 reply is set (the server is stopping).
*/
static bool admit(struct req *rq)
{
    count_busy(rq);
    if (!atomic_load(&rq->api->closed)) {
        return true;
    }
    set_error(rq, HPO_UNAVAILABLE, NULL, "the server is stopping");
    rq->close_after = true;
    return false;
}

static const char *header(struct req *rq, const char *name);
static void route_work(struct hpo_job *job);
static void job_work(struct hpo_job *job);

/*
** Several daemons: whether routing `rq` may forward it to another daemon
** (and so wait for it): not when another daemon forwarded it here, marked
** with the cluster token (a forwarded request is never forwarded again).
*/
static bool may_forward(struct req *rq)
{
    const struct hpo_api_config *cfg = &rq->api->cfg;

    return rq->target != NULL &&
            !(cfg->forwarded != NULL && cfg->forwarded(cfg->ctx, header(rq, "X-Hpod-Forwarded")));
}

/*
** Suspend the connection and hand the job to the embedder; job_done (on the
** worker) resumes it. Suspended first: the job may finish before submit returns.
*/
static void suspend_and_submit(struct req *rq)
{
    /*
    ** Several daemons: a job that routes the request (route_work; job_work,
    ** for a request of no lane) may forward it, and runs on the forward
    ** threads. Other jobs (a CSV's pieces, an event stream's opening, which
    ** only looks at the owner) stay on the workers.
    */
    rq->job.remote = rq->job.key == NULL && (rq->job.work == route_work ||
            rq->job.work == job_work) && may_forward(rq);
    rq->suspended = true;
    count_busy(rq);
    MHD_suspend_connection(rq->conn);
    rq->api->cfg.submit(rq->api->cfg.ctx, &rq->job);
}

/*
** MHD asks for the next bytes of a streamed reply (its MHD thread). A piece
** produced by a worker is copied out; when it is used up, the connection is
** suspended and a job fetches the next piece (job_done resumes it).
*/
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct req *rq = cls;
    size_t n;

    (void)pos;
    if (rq->piece_off < rq->piece_len) {
        n = rq->piece_len - rq->piece_off < max ? rq->piece_len - rq->piece_off : max;
        memcpy(buf, rq->piece + rq->piece_off, n);
        rq->piece_off += n;
        return (ssize_t)n;
    }
    if (rq->stream_end) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (atomic_load(&rq->api->closed)) {
        return MHD_CONTENT_READER_END_WITH_ERROR; /* a stop cut it short */
    }
    rq->job.work = stream_work;
    rq->job.done = job_done;
    rq->job.key = NULL;
    suspend_and_submit(rq);
    return 0;
}

static enum MHD_Result queue_reply(struct req *rq)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    round_queued++;
    if (rq->out_fd > 0) {
        /* A file (the backup archive): MHD closes it with the response. */
        resp = MHD_create_response_from_fd64(rq->out_len, rq->out_fd);
        if (resp == NULL) {
            return MHD_NO;
        }
        rq->out_fd = 0;
        MHD_add_response_header(resp, "Content-Disposition",
                "attachment; filename=\"hpod-backup.tar\"");
    } else if (rq->events) {
        resp = hpo__events_open(rq->api->events, rq->conn, rq->study, &rq->ev_start,
                &rq->ev_first);
    } else if (rq->stream != NULL) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read, rq,
                NULL);
    } else if (rq->out_free != NULL) {
        /* Sent straight from the owner's memory, released when MHD is done with it. */
        resp = MHD_create_response_from_buffer_with_free_callback_cls(rq->out_len, rq->out,
                rq->out_free, rq->out_cls);
    } else {
        resp = MHD_create_response_from_buffer(rq->out_len, rq->out ? rq->out : (void *)"",
                rq->out ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL) {
        return MHD_NO;
    }
    count_busy(rq);
    /*
    ** The request's log line follows the level in force now: on_completed may
    ** run after the client has the reply (and sent a SIGHUP, say).
    */
    rq->log_level = (int)hpo_log_get_level();
    if (rq->stream == NULL) {
        /*
        ** Counted for /metrics now, not in on_completed, which may run after
        ** the client has the reply and has asked /metrics on another
        ** connection (another thread). A stream is counted when it ends.
        */
        count_request(rq, now_us() - rq->start_us);
        rq->metered = true;
    }
    rq->out = NULL;
    rq->out_free = NULL;
    rq->out_cls = NULL;
    if (rq->content_type != NULL && rq->status != 204) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rq->content_type);
    }
    MHD_add_response_header(resp, "X-Request-Id", rq->id);
    if (rq->allow != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rq->allow);
    }
    if (rq->www_auth) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    }
    if (rq->close_after) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    if (rq->total[0] != '\0') {
        MHD_add_response_header(resp, "X-Total-Count", rq->total);
    }
    if (rq->link != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LINK, rq->link);
    }
    if (rq->is_static) {
        hpo__static_headers(resp, &rq->st);
    }
    if (rq->call.owner[0] != '\0') {
        MHD_add_response_header(resp, "X-Hpod-Owner", rq->call.owner);
    }
    ret = MHD_queue_response(rq->conn, (unsigned)rq->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- routing (the table and the matching: routes.def, routes.c) ---- */

/* Match the path; fill route, study, number, name. Returns the allowed methods. */
static const char *route_path(struct req *rq, const char *url)
{
    struct hpo__route r = { 0 };
    const char *allow = hpo__api_route(url, &r);

    rq->route = r.route;
    rq->study = r.study;
    rq->name = r.name;
    rq->number = r.number;
    rq->number_ok = r.number_ok;
    return allow;
}

/* ---- inline answers (loop thread; cheap) ------------------------------- */

static json_t *schema_json(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text ? text : "{}", 0, &jerr);

    return v ? v : json_object();
}

static void answer_samplers(struct req *rq)
{
    json_t *samplers = json_array(), *pruners = json_array();

    for (size_t i = 0; hpo_sampler_types[i] != NULL; i++) {
        const struct hpo_sampler_type *t = hpo_sampler_types[i];
        json_t *opts = json_pack("{s:{s:s,s:n,s:s}}", "seed", "type", "integer", "default",
                "description", "drawn at creation and stored when left out");
        json_t *schema = schema_json(t->options_schema);
        json_object_update(opts, schema);
        json_decref(schema);
        json_array_append_new(samplers, json_pack("{s:s,s:o,s:b}", "type", t->name, "options",
                                                opts, "vectors", t->supports_vectors));
    }
    for (size_t i = 0; hpo_pruner_types[i] != NULL; i++) {
        const struct hpo_pruner_type *t = hpo_pruner_types[i];
        json_array_append_new(pruners, json_pack("{s:s,s:o}", "type", t->name, "options",
                                               schema_json(t->options_schema)));
    }
    set_json(rq, 200, json_pack("{s:o,s:o}", "samplers", samplers, "pruners", pruners));
}

static void answer_healthz(struct req *rq)
{
    struct hpo_api *api = rq->api;
    bool ok = api->cfg.healthy == NULL || api->cfg.healthy(api->cfg.ctx);

    if (ok) {
        json_t *body = json_pack("{s:s,s:s}", "status", "ok", "version", api->cfg.version);

        /* Several daemons: this one's part, on request (the plain body is the contract's). */
        if (api->cfg.health != NULL && body != NULL &&
                MHD_lookup_connection_value_n(rq->conn, MHD_GET_ARGUMENT_KIND, "cluster",
                        strlen("cluster"), NULL, NULL) == MHD_YES) {
            json_object_set_new(body, "cluster", api->cfg.health(api->cfg.ctx));
        }
        set_json(rq, 200, body);
    } else {
        set_error(rq, HPO_UNAVAILABLE, NULL, "storage is not writable");
    }
}

static void answer_metrics(struct req *rq)
{
    char *text = rq->api->cfg.metrics ? rq->api->cfg.metrics(rq->api->cfg.ctx, rq->who.prefix)
                                      : NULL;

    if (text == NULL) {
        set_error(rq, HPO_INTERNAL, NULL, "metrics are not available");
        return;
    }
    set_reply(rq, 200, text, strlen(text), "text/plain; version=0.0.4");
}

/* ---- work on the service (worker thread) ------------------------------- */

/*
** X-Total-Count, and Link (RFC 8288) to the next page with the same filters
** while more remain: a path-absolute reference, resolved against the request.
*/
static void list_headers(struct req *rq)
{
    const struct hpo_service_request *sr = &rq->sreq;
    const char *state = sr->state_filter >= 0 ? hpo_state_name(sr->state_filter) : NULL;

    snprintf(rq->total, sizeof(rq->total), "%lld", (long long)sr->total);
    if (sr->next_offset >= 0 &&
            asprintf(&rq->link,
                    "</v1/studies/%s/trials?offset=%lld&limit=%lld%s%s%s%s%s>; rel=\"next\"",
                    sr->study, (long long)sr->next_offset, (long long)sr->limit,
                    state ? "&state=" : "", state ? state : "",
                    sr->feasible_filter == 0 ? ""
                            : sr->feasible_filter == 1 ? "&feasible=true" : "&feasible=false",
                    sr->csv ? "&format=csv" : "",
                    sr->intermediate ? "&intermediate=true" : "") < 0) {
        rq->link = NULL;
    }
}

/* Encode the service's answer into the reply (worker thread: the request is suspended). */
static void build_reply(struct req *rq)
{
    struct hpo_service_request *sr = &rq->sreq;

    if (sr->err.code == HPO_OK && sr->total >= 0) {
        list_headers(rq);
    }
    if (sr->err.code != HPO_OK) {
        set_json(rq, sr->status, error_body(&sr->err));
    } else if (sr->stream != NULL) {
        set_reply(rq, sr->status, NULL, 0, rq->row->reply_type);
        rq->stream = sr->stream;
        sr->stream = NULL;
    } else if (sr->text != NULL) {
        /* A row without a reply type of its own answers JSON, here as text (trial-text.c). */
        set_reply(rq, sr->status, sr->text, sr->text_len,
                rq->row->reply_type != NULL ? rq->row->reply_type : "application/json");
        rq->out_free = sr->text_free;
        rq->out_cls = sr->text_cls;
        sr->text = NULL;
        sr->text_free = NULL;
        sr->text_cls = NULL;
    } else if (sr->reply != NULL) {
        if (sr->op == HPO_SERVICE_REPORT) {
            rq->pruned = json_is_true(json_object_get(sr->reply, "prune"));
        }
        set_json(rq, sr->status, sr->reply);
        sr->reply = NULL;
    } else {
        set_reply(rq, sr->status, NULL, 0, NULL);
    }
}

static const char *header(struct req *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

/*
** Several daemons: ask the embedder where the request is served (worker
** thread; the connection is suspended, so its headers may be read). 0:
** here; 1: answered (the owner's reply, or an error), the reply set.
*/
static int route_call(struct req *rq, bool peek)
{
    struct hpo_api_call *c = &rq->call;

    memset(c, 0, sizeof(*c));
    c->op = peek ? HPO_SERVICE_GRADIENT_PUT : (int)rq->sreq.op;
    c->study = rq->study;
    c->peek = peek;
    c->method = rq->method;
    c->target = rq->target;
    c->authorization = header(rq, MHD_HTTP_HEADER_AUTHORIZATION);
    c->content_type = header(rq, MHD_HTTP_HEADER_CONTENT_TYPE);
    c->accept = header(rq, MHD_HTTP_HEADER_ACCEPT);
    c->forwarded = header(rq, "X-Hpod-Forwarded");
    c->body = rq->body;
    c->len = rq->len;
    if (rq->api->cfg.route(rq->api->cfg.ctx, c) == 0) {
        return 0;
    }
    if (!peek) {
        set_reply(rq, c->status, c->reply, c->reply_len,
                c->reply_type[0] != '\0' ? c->reply_type : NULL);
        snprintf(rq->total, sizeof(rq->total), "%s", c->total);
        free(rq->link);
        rq->link = c->link;
        rq->sreq.err.code = c->status >= 400 ? HPO_UNAVAILABLE : HPO_OK; /* for the log line */
    } else {
        free(c->reply);
        free(c->link);
    }
    c->reply = NULL;
    c->link = NULL;
    return 1;
}

/* Decode the body and query; false: an error is in sreq (the reply still to build). */
static bool job_decode(struct req *rq)
{
    struct hpo_service_request *sr = &rq->sreq;
    struct hpo_service_query q = { .pairs = (const struct hpo_service_query_pair *)(void *)rq->query.data,
        .n = HPO_BUF_N(&rq->query, struct hpo_service_query_pair), .accept = rq->accept };

    if (hpo_service_decode(sr, &q, rq->body, rq->len) < 0) {
        return false;
    }
    if (sr->op == HPO_SERVICE_STUDY_CREATE &&
            !hpo_access_may_create(&rq->who, sr->args.create.body, &sr->err)) {
        sr->status = hpo_code_status(sr->err.code);
        return false;
    }
    return true;
}

/* Run the decoded request on the service (its study's lane, when it has one). */
static void job_execute(struct req *rq)
{
    struct hpo_service_request *sr = &rq->sreq;

    sr->data = rq->body;
    sr->data_len = rq->len;
    sr->data_owned = rq->body;
    hpo_service_execute(rq->api->cfg.service, sr);
    /* One study copy (a list has none): its reply depends on that copy's writes alone. */
    rq->job.chain = sr->chain;
    if (sr->data_owned == NULL && rq->body != NULL) {
        /* The service kept the body (a gradient upload): no copy was made. */
        rq->body = NULL;
        rq->len = 0;
        rq->cap = 0;
    }
    sr->data = NULL;
    if (sr->op == HPO_SERVICE_STUDY_LIST && sr->err.code == HPO_OK) {
        if (rq->target != NULL && rq->api->cfg.gather != NULL) {
            rq->api->cfg.gather(rq->api->cfg.ctx, &rq->call, sr->reply);
        }
        hpo_access_filter_studies(&rq->who, sr->reply);
    }
}

/*
** Several daemons: a study create refused as a conflict, because another
** daemon created the name at the same instant (the database refused the
** second), is routed again. The study's owner, now found, answers it as
** an idempotent create (200 when the definition is the same, 409 when
** not); when this daemon owns the name, its own 409 stands.
*/
static bool create_lost(struct req *rq)
{
    struct hpo_service_request *sr = &rq->sreq;

    if (rq->target == NULL || rq->api->cfg.route == NULL ||
            sr->op != HPO_SERVICE_STUDY_CREATE || sr->err.code != HPO_CONFLICT ||
            sr->reply != NULL) {
        return false;
    }
    return true;
}

/*
** The dispatcher refused the job (job->refused): an earlier write of its
** study waits for the database to come back, and this request would wait
** behind it. Nothing was done: 503, sent at once.
*/
static bool refused(struct req *rq)
{
    struct hpo_error err = { .code = HPO_OK };

    if (!rq->job.refused) {
        return false;
    }
    hpo_error_set(&err, -EAGAIN, HPO_UNAVAILABLE, NULL,
            "the database is unreachable and an earlier write of this study waits for it;"
            " retry");
    set_json(rq, hpo_code_status(err.code), error_body(&err));
    rq->job.unheld = true;
    return true;
}

static void route_done(struct hpo_job *job);

/*
** Several daemons: a lane request routed here (route_work) waited in its
** lane; does another daemon serve its study now (handed over, taken over,
** fenced meanwhile)? Its copy here is dropped then, and would answer 404.
*/
static bool moved_away(struct req *rq)
{
    struct hpo_api_call c = { .op = (int)rq->sreq.op, .study = rq->study, .recheck = true,
        .method = rq->method, .target = rq->target };

    return rq->api->cfg.route(rq->api->cfg.ctx, &c) != 0;
}

static void reroute_done(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    job->done = route_done;
    rq->api->cfg.submit(rq->api->cfg.ctx, job);
}

/* A worker's whole job: decode (off the HTTP threads), execute, encode the reply. */
static void job_work(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    if (refused(rq)) {
        return;
    }
    /* Answered by a route: the owner's reply (held there for its flush) or a refusal. */
    job->unheld = true;
    if (rq->target != NULL && !rq->routed_here && route_call(rq, false) != 0) {
        return; /* several daemons: forwarded to the study's owner, or refused */
    }
    if (rq->routed_here && rq->reroutes < 2 && moved_away(rq)) {
        /* Handed over while it waited in the lane: routed again, out of the lane. */
        rq->routed_here = false;
        rq->reroutes++;
        job->key = NULL;
        job->work = route_work;
        job->done = reroute_done;
        job->remote = may_forward(rq); /* (reroute_done submits it again) */
        return;
    }
    if (job_decode(rq)) {
        job_execute(rq);
        if (create_lost(rq) && route_call(rq, false) != 0) {
            return; /* answered by the daemon that created it */
        }
    }
    build_reply(rq);
    job->unheld = rq->sreq.err.code == HPO_UNAVAILABLE;
}

/*
** Several daemons: a request that changes a study is routed on a worker
** before it takes the study's lane (route_work, a job of no lane), and only
** one served here waits in the lane (route_done submits it again, keyed).
** Routed in the lane, a forward held the lane until the owner answered, and
** two daemons whose views of the owner disagree for a moment (a study just
** handed over, which the receiver's tick has not seen yet) forwarded into
** each other's lane, each held by the other's forward: neither answered the
** study's requests until the forwards timed out (300 s).
*/
static void route_work(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    job->unheld = true; /* nothing written here: done() at once */
    rq->routed_here = route_call(rq, false) == 0;
}

static void route_done(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    job->done = job_done;
    if (!rq->routed_here) {
        job_done(job); /* the owner's reply, or a refusal */
        return;
    }
    job->key = rq->study;
    job->work = job_work;
    job->remote = false; /* served here: its lane, on the workers */
    rq->api->cfg.submit(rq->api->cfg.ctx, job);
}

/*
** The part of a lane request that holds its lane, run inline or by a worker:
** the decoding before it and the reply's encoding after it stay outside, so
** the study's next request waits for as little as possible.
*/
static void lane_work(struct hpo_job *job)
{
    job_execute(req_of_job(job));
}

/*
** A lane request decoded on its HTTP thread, run by a worker: execute, encode.
** (Never with several daemons: the embedder gives no run_inline there, so every
** lane request goes through job_work and its routing.)
*/
static void decoded_work(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    if (refused(rq)) {
        return;
    }
    job_execute(rq);
    build_reply(rq);
    job->unheld = rq->sreq.err.code == HPO_UNAVAILABLE;
}

/* GET /v1/admin/backup on a worker: the embedder writes the archive to a file. */
static void backup_work(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);
    struct hpo_error err = { .code = HPO_OK };
    uint64_t size = 0;
    int fd = -1;

    if (rq->api->cfg.backup(rq->api->cfg.ctx, &fd, &size, &err) < 0) {
        set_json(rq, hpo_code_status(err.code), error_body(&err));
        return;
    }
    set_reply(rq, 200, NULL, (size_t)size, "application/x-tar");
    rq->out_fd = fd;
}

/* The next piece of a streamed reply (worker thread; the connection is suspended). */
static void stream_work(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    hpo_service_stream_next(rq->stream, &rq->piece, &rq->piece_len);
    rq->piece_off = 0;
    rq->stream_end = rq->piece_len == 0;
}

/* Several daemons: is `study` served here? (events.h's `served`; a worker.) */
static bool events_served(void *ctx, const char *study)
{
    struct hpo_api *api = ctx;
    struct hpo_api_call c;
    int r;

    memset(&c, 0, sizeof(c));
    c.op = HPO_SERVICE_GRADIENT_PUT; /* as route_call's peek: only where it is served */
    c.study = study;
    c.peek = true;
    c.method = "GET";
    r = api->cfg.route(api->cfg.ctx, &c);
    free(c.reply);
    free(c.link);
    return r == 0;
}

/* GET .../events: the study's first pulse before the stream opens (worker thread). */
static void events_open_work(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    if (rq->target != NULL && route_call(rq, true) != 0) {
        /*
        ** Several daemons: a stream is never forwarded (it does not end); the
        ** client opens it on the study's owner (X-Hpod-Owner, when known).
        */
        set_error(rq, HPO_UNAVAILABLE, NULL,
                "another daemon serves study '%.128s': open its event stream there",
                rq->study);
        return;
    }
    if (hpo_service_pulse(rq->api->cfg.service, rq->study, &rq->ev_first) < 0) {
        set_error(rq, HPO_NOT_FOUND, NULL, "no study named '%.128s'", rq->study);
        return;
    }
    set_reply(rq, 200, NULL, 0, "text/event-stream");
    rq->events = true;
}

/* A write on a study succeeded (worker or, inline, HTTP thread): its event streams read it now. */
static void poke_streams(struct req *rq)
{
    if (rq->row != NULL && (rq->row->flags & HPO__F_LANE) != 0 && rq->study != NULL &&
            rq->sreq.status >= 200 && rq->sreq.status < 300) {
        hpo__events_poke(rq->api->events, rq->study);
    }
}

/*
** Pipelined writes: a service request's reply, held until the writes it
** could see resolved (daemon/dispatch.h), must not show one that failed
** (hpo_service_reply_valid). A read then runs again (twice at most), on a
** copy of its study reloaded from storage; a write answers unavailable.
** True when the reply may go out, false when the read was submitted again.
*/
static bool check_held(struct req *rq)
{
    struct hpo_error err;

    if ((rq->job.work != job_work && rq->job.work != decoded_work && rq->job.work != lane_work) ||
            rq->job.seen_upto == 0 ||
            rq->row == NULL || rq->row->op >= HPO_SERVICE_OP_COUNT ||
            hpo_service_reply_valid(rq->api->cfg.service, &rq->sreq, rq->job.seen_from,
                    rq->job.seen_upto, &err)) {
        return true;
    }
    if (rq->sreq_init != NULL && rq->reruns < 2 && rq->stream == NULL) {
        rq->reruns++;
        rq->job.chain = NULL; /* released below; the run again sets it */
        hpo_service_request_finish(&rq->sreq);
        free(rq->link);
        rq->link = NULL;
        rq->sreq = *rq->sreq_init;
        rq->sreq.settled = true;
        rq->job.work = job_work;
        rq->api->cfg.submit(rq->api->cfg.ctx, &rq->job);
        return false;
    }
    hpo_service_stream_free(rq->stream);
    rq->stream = NULL;
    rq->sreq.status = hpo_code_status(err.code);
    rq->sreq.err = err;
    set_json(rq, rq->sreq.status, error_body(&err));
    return true;
}

static void job_done(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    if (!check_held(rq)) {
        return; /* a read running again: the connection stays suspended */
    }
    poke_streams(rq); /* before the resume: after it rq may be gone */
    if (rq->round_wait) {
        /* Read before DONE: then rq may be gone as soon as its thread looks. */
        void *loop = rq->round_loop;
        bool held = rq->round_held;
        int was = atomic_exchange(&rq->round_state, ROUND_DONE);

        if (held) {
            hpo__loops_unhold(loop); /* (and a wake of its thread: held for a flush elsewhere) */
        }
        if (was != ROUND_SUSPENDED) {
            /* Not suspended: its HTTP thread's next round queues the reply (a handed-off one waits for this kick). */
            if (!held) {
                hpo__loops_wake(loop);
            }
            return;
        }
    }
    /* From any thread: the resume kicks the connection's HTTP thread (loops.h). */
    rq->suspended = false;
    hpo__loops_resume(rq->conn);
}

/* ---- a service request ------------------------------------------------ */

static enum MHD_Result query_collect(void *cls, enum MHD_ValueKind kind, const char *key,
        const char *value)
{
    struct hpo_service_query_pair *p = hpo_buf_add(cls, sizeof(*p));

    if (p == NULL) {
        return MHD_NO;
    }
    p->key = key;
    p->value = value;
    return MHD_YES;
}

/*
** Set up sreq from the route's row; false when an error reply was set. The
** decoding (body and query) happens on the worker (job_work); here only what
** needs the connection: the query's pairs (MHD's strings live as long as the
** request) and the Accept header.
*/
static bool prepare_service(struct req *rq)
{
    struct hpo_service_request *sr = &rq->sreq;

    memset(sr, 0, sizeof(*sr));
    sr->op = (enum hpo_service_op)rq->row->op;
    sr->study = rq->study;
    sr->number = rq->number;
    sr->name = rq->name;
    sr->state_filter = -1;
    sr->text_ok = true; /* a trial's reply may come as JSON text (service/trial-text.c) */
    if (strstr(rq->row->template, "{number}") != NULL && !rq->number_ok) {
        set_error(rq, HPO_NOT_FOUND, NULL, "no trial '%s'", rq->path);
        return false;
    }
    if ((rq->row->flags & HPO__F_BINARY) != 0 &&
            !hpo__api_is_binary_type(MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                    MHD_HTTP_HEADER_CONTENT_TYPE))) {
        set_error(rq, HPO_UNSUPPORTED_MEDIA_TYPE, NULL,
                "the body must be application/octet-stream (little-endian float64)");
        return false;
    }
    /* Every element checked on arrival (append_body): the service need not look again. */
    sr->data_finite = rq->exact && !rq->nonfinite && rq->finite == rq->len;
    if (sr->op == HPO_SERVICE_TRIALS_LIST || sr->op == HPO_SERVICE_COLUMNS ||
            sr->op == HPO_SERVICE_CURVES || sr->op == HPO_SERVICE_IMPORTANCES) {
        int n = MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, query_collect,
                &rq->query);
        if (n < 0 || (size_t)n != HPO_BUF_N(&rq->query, struct hpo_service_query_pair)) {
            set_error(rq, HPO_INTERNAL, NULL, "out of memory");
            return false;
        }
        rq->accept = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                MHD_HTTP_HEADER_ACCEPT);
    }
    if ((rq->row->flags & HPO__F_LANE) == 0 && strcmp(rq->row->method, "GET") == 0) {
        /* A read may run again (check_held): as prepared, before decoding. */
        rq->sreq_init = malloc(sizeof(*sr));
        if (rq->sreq_init != NULL) {
            *rq->sreq_init = *sr;
        }
    }
    return true;
}

/* ---- the MHD callbacks ------------------------------------------------- */

/* The raw path for messages and logs: bytes outside ASCII 0x21-0x7e as %XX. */
static char *display_path(const char *raw, size_t n)
{
    char *out = malloc(3 * n + 1), *o = out;

    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c > 0x20 && c < 0x7f) {
            *o++ = (char)c;
        } else {
            snprintf(o, 4, "%%%02X", c);
            o += 3;
        }
    }
    *o = '\0';
    return out;
}

/* A zeroed request record: a finished one from the pool, else a new one. */
static struct req *req_alloc(struct hpo_api *api)
{
    struct req *rq;

    pthread_mutex_lock(&api->pool_lock);
    rq = api->pool;
    if (rq != NULL) {
        api->pool = rq->pool_next;
        api->pool_n--;
    }
    pthread_mutex_unlock(&api->pool_lock);
    if (rq == NULL) {
        return calloc(1, sizeof(*rq));
    }
    memset(rq, 0, sizeof(*rq));
    return rq;
}

/* Give a finished request's record (its members freed) back to the pool, or free it. */
static void req_release(struct hpo_api *api, struct req *rq)
{
    pthread_mutex_lock(&api->pool_lock);
    if (api->pool_n < req_pool_max) {
        rq->pool_next = api->pool;
        api->pool = rq;
        api->pool_n++;
        rq = NULL;
    }
    pthread_mutex_unlock(&api->pool_lock);
    free(rq);
}

/* The request id: the daemon's random prefix and a counter, 16 hex digits. */
static void format_id(char out[17], uint32_t prefix, uint32_t n)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = (uint64_t)prefix << 32 | n;

    for (int i = 15; i >= 0; i--) {
        out[i] = hex[v & 15u];
        v >>= 4;
    }
    out[16] = '\0';
}

static struct req *req_new(struct hpo_api *api, struct MHD_Connection *conn, const char *raw,
        size_t n)
{
    struct req *rq = req_alloc(api);

    if (rq == NULL) {
        return NULL;
    }
    rq->api = api;
    rq->conn = conn;
    rq->log_level = -1;
    rq->start_us = now_us();
    rq->raw = strndup(raw, n);
    rq->path = display_path(raw, n);
    if (rq->raw == NULL || rq->path == NULL) {
        free(rq->raw);
        free(rq->path);
        req_release(api, rq);
        return NULL;
    }
    format_id(rq->id, api->id_prefix,
            (uint32_t)((atomic_fetch_add(&api->id_counter, 1) + 1) & 0xffffffffu));
    rq->job.work = job_work;
    rq->job.done = job_done;
    return rq;
}

/*
** Authenticate and authorize (access.h) before any body is read; false: an
** error is set. A routed request is judged by its row of routes.def (its
** role column, its template), not by the raw path: "/%761/%61dmin/backup"
** routes to the backup, and must need what "/v1/admin/backup" needs.
*/
static bool authorize(struct hpo_api *api, struct req *rq)
{
    const struct hpo__route_row *row = hpo__route_row(rq->route, rq->method);
    struct hpo_access_request ar = {
        .path = rq->route != HPO__R_NONE ? hpo__route_template(rq->route) : rq->path,
        .method = rq->method,
        .authorization = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                MHD_HTTP_HEADER_AUTHORIZATION),
        .study = rq->study,
        .routed = row != NULL,
        .need = row != NULL ? row->role : HPO_ROLE_NONE,
        .healthz = rq->route == HPO__R_HEALTHZ,
    };
    struct hpo_error err = { .code = HPO_OK };
    bool ok;

    pthread_rwlock_rdlock(&api->tokens_lock);
    ok = hpo_access_decide(api->tokens, &ar, &rq->who, &err);
    pthread_rwlock_unlock(&api->tokens_lock);
    if (ok) {
        return true;
    }
    rq->www_auth = err.code == HPO_UNAUTHENTICATED;
    set_json(rq, hpo_code_status(err.code), error_body(&err));
    rq->sreq.err = err; /* for the request's log line */
    return false;
}

/*
** MHD_OPTION_URI_LOG_CALLBACK: the request target exactly as received, before
** MHD splits off the query and percent-decodes the rest. The request is
** created here, so the router sees the raw path (MHD's decoding would turn
** "%00" into an end of string and "%2F" into a separator).
*/
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    const char *u = uri != NULL ? uri : "";
    struct req *rq = req_new(cls, conn, u, strcspn(u, "?"));

    if (rq != NULL && rq->api->cfg.route != NULL) {
        rq->target = strdup(u); /* NULL (out of memory): served here, never forwarded */
    }
    return rq;
}

/*
** MHD_OPTION_UNESCAPE_CALLBACK, used by MHD for query keys and values (the
** path is routed from its raw form): "%XX" decoded, except "%00", which stays
** as it is so that no value is cut short. Never lengthens `s`.
*/
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    char *out = s;

    (void)cls;
    (void)conn;
    for (const char *in = s; *in != '\0'; in++) {
        int hi = *in == '%' ? hpo_hex_digit(in[1]) : -1;
        int lo = hi >= 0 ? hpo_hex_digit(in[2]) : -1;
        if (lo >= 0 && (hi != 0 || lo != 0)) {
            *out++ = (char)(hi * 16 + lo);
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}

/* An RFC 9110 token character (what a header field name is made of). */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

struct framing {
    unsigned content_length, transfer_encoding, host;
    const char *te_value;
    bool bad_name;
};

static enum MHD_Result framing_iter(void *cls, enum MHD_ValueKind kind, const char *key,
        const char *value)
{
    struct framing *f = cls;
    const char *c = key;

    (void)kind;
    while (*c != '\0' && is_tchar(*c)) {
        c++;
    }
    if (c == key || *c != '\0') {
        /* "Content-Length :" would not be seen as Content-Length (RFC 9112 5.1). */
        f->bad_name = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->content_length++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->transfer_encoding++;
        f->te_value = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        f->host++;
    }
    return MHD_YES;
}

/*
** Refuse what could frame the body two ways (request smuggling behind a
** proxy): duplicate Content-Length (even equal ones), Content-Length with
** Transfer-Encoding, a transfer coding other than chunked, a header name
** that is not a token; and HTTP/1.1 without exactly one Host (RFC 9112
** 3.2). False with an error reply set.
*/
static bool check_framing(struct req *rq, const char *version)
{
    struct framing f = { 0 };
    bool http10 = strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
    const char *why = NULL;

    MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, framing_iter, &f);
    if (f.bad_name) {
        why = "a header name is not a token (no space before ':')";
    } else if (f.content_length > 1) {
        why = "more than one Content-Length header";
    } else if (f.transfer_encoding > 1) {
        why = "more than one Transfer-Encoding header";
    } else if (f.transfer_encoding > 0 && f.content_length > 0) {
        why = "Content-Length together with Transfer-Encoding";
    } else if (f.transfer_encoding > 0 && strcasecmp(f.te_value, "chunked") != 0) {
        why = "the only Transfer-Encoding taken is chunked";
    } else if (f.transfer_encoding > 0 && http10) {
        why = "Transfer-Encoding in an HTTP/1.0 request";
    } else if (!http10 && f.host != 1) {
        why = f.host == 0 ? "an HTTP/1.1 request needs a Host header"
                          : "more than one Host header";
    }
    if (why == NULL) {
        return true;
    }
    set_error(rq, HPO_INVALID_ARGUMENT, NULL, "bad request framing: %s", why);
    return false;
}

/* Worker thread: may the announced gradient upload come, and of what size? */
static void upload_check_work(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);
    struct hpo_error err;
    size_t bytes = 0;

    if (rq->target != NULL && route_call(rq, true) != 0) {
        return; /* several daemons: the owner checks the upload */
    }
    if (hpo_service_gradient_size(rq->api->cfg.service, rq->study, rq->number, rq->name, &bytes,
                &err) < 0) {
        set_json(rq, hpo_code_status(err.code), error_body(&err));
        return;
    }
    if (rq->expect > 0 && rq->expect != bytes) {
        set_error(rq, HPO_INVALID_ARGUMENT, "gradient",
                "body must be %zu bytes (%zu little-endian float64), Content-Length is %zu",
                bytes, bytes / sizeof(double), rq->expect);
        return;
    }
    rq->limit = bytes;
    rq->exact = true;
}

static void upload_check_done(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    rq->job.work = job_work;
    rq->job.done = job_done;
    job_done(job);
}

/*
** A gradient upload (up to 256 MiB): check the study, trial and param on a
** worker before any of the body is read (or "100 Continue" sent), so that a
** refused upload is answered at once and an accepted one never reserves more
** than its exact size.
*/
static enum MHD_Result start_upload_check(struct hpo_api *api, struct req *rq)
{
    const char *type = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
            MHD_HTTP_HEADER_CONTENT_TYPE);

    if (!hpo__api_is_binary_type(type)) {
        set_error(rq, HPO_UNSUPPORTED_MEDIA_TYPE, NULL,
                "the body must be application/octet-stream (little-endian float64)");
        return queue_reply(rq);
    }
    if (!rq->number_ok) {
        set_error(rq, HPO_NOT_FOUND, NULL, "no trial '%s'", rq->path);
        return queue_reply(rq);
    }
    if (!admit(rq)) {
        return queue_reply(rq);
    }
    rq->job.work = upload_check_work;
    rq->job.done = upload_check_done;
    rq->job.key = NULL; /* read-only */
    suspend_and_submit(rq);
    return MHD_YES;
}

/*
** The first call, once the headers are in: route, then refuse at once (before
** any body is read; MHD then closes the connection) what is bad whatever the
** body: broken framing, a connection of the reserve asking for more than
** /healthz or /metrics, a missing or insufficient token, a Content-Length
** over the limit (404 or 405 when that is the fault), a gradient upload that
** cannot be taken.
*/
static enum MHD_Result check_headers(struct hpo_api *api, struct req *rq, const char *method,
        const char *version)
{
    const char *cl = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
            MHD_HTTP_HEADER_CONTENT_LENGTH);
    const struct hpo__route_row *row;
    bool binary, big;
    unsigned long long n = 0;

    {
        size_t m = strnlen(method, sizeof(rq->method) - 1);
        memcpy(rq->method, method, m);
        rq->method[m] = '\0';
    }
    rq->allow = route_path(rq, rq->raw);
    free(rq->raw);
    rq->raw = NULL;
    rq->tcp = hpo__conns_of(rq->conn);
    hpo__conns_request_begin(&api->conns, rq->tcp);
    if (!check_framing(rq, version)) {
        return queue_reply(rq);
    }
    if (rq->tcp != NULL && rq->tcp->reserve && rq->route != HPO__R_HEALTHZ && rq->route != HPO__R_METRICS) {
        /* Over max-connections: the reserve is for health checks and scrapes. */
        set_error(rq, HPO_UNAVAILABLE, NULL, "the server is at its connection limit; try later");
        rq->close_after = true;
        return queue_reply(rq);
    }
    if (!authorize(api, rq)) {
        /* With a body to come, answer now and let MHD close; else keep the connection. */
        bool body = (cl != NULL && strcmp(cl, "0") != 0) ||
                MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                        MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
        return body ? queue_reply(rq) : MHD_YES;
    }
    if (cl != NULL) {
        char *end;
        errno = 0;
        n = strtoull(cl, &end, 10);
        if (errno != 0 || *end != '\0') {
            n = ULLONG_MAX; /* MHD parsed it: only an overflow gets here */
        }
    }
    /*
    ** A body too big to read anyway gets the code that names the real fault
    ** (404, 405) rather than 413; smaller ones are read, so the connection
    ** stays open for the next request.
    */
    big = n > api->cfg.json_limit;
    if (big && rq->route == HPO__R_NONE) {
        set_error(rq, HPO_NOT_FOUND, NULL, "no route for '%s'", rq->path);
        return queue_reply(rq);
    }
    if (big && !hpo__api_method_allowed(rq->allow, method)) {
        set_error(rq, HPO_METHOD_NOT_ALLOWED, NULL, "%s is not allowed on '%s' (allowed: %s)",
                method, rq->path, rq->allow);
        return queue_reply(rq);
    }
    row = hpo__route_row(rq->route, method);
    binary = row != NULL && (row->flags & HPO__F_BINARY) != 0;
    rq->limit = binary ? api->cfg.binary_limit : api->cfg.json_limit;
    if (n > rq->limit) {
        set_error(rq, HPO_PAYLOAD_TOO_LARGE, NULL, "body over the %zu byte limit", rq->limit);
        return queue_reply(rq);
    }
    rq->expect = (size_t)n;
    if (binary) {
        return start_upload_check(api, rq);
    }
    rq->headers_done = true;
    return MHD_YES;
}

static enum MHD_Result append_body(struct req *rq, const char *data, size_t size)
{
    if (rq->too_large || size > rq->limit - rq->len) {
        rq->too_large = true;
        return MHD_YES;
    }
    if (rq->len + size > rq->cap) {
        /* Reserved when the body comes, not before: its Content-Length, else doubling. */
        size_t cap = rq->cap ? rq->cap * 2 : rq->expect ? rq->expect : 4096;
        char *n;
        while (cap < rq->len + size) {
            cap *= 2;
        }
        if (cap > rq->limit) {
            cap = rq->limit;
        }
        /* A gradient upload's exact size: a kept buffer's mapped pages if there is one. */
        n = rq->body == NULL && rq->exact && cap == rq->limit ? hpo_vector_buf_new(cap)
                                                              : realloc(rq->body, cap);
        if (n == NULL) {
            return MHD_NO;
        }
        rq->body = n;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, data, size);
    rq->len += size;
    if (rq->exact && !rq->nonfinite) {
        /*
        ** A gradient: the elements now whole are checked while their bytes
        ** are in this core's cache, not all 8 MB again on the lane later.
        */
        const double *x = (const double *)(void *)rq->body;
        size_t from = rq->finite / sizeof(double), to = rq->len / sizeof(double);
        if (hpo_first_nonfinite(x + from, to - from) < to - from) {
            rq->nonfinite = true;
        } else {
            rq->finite = to * sizeof(double);
        }
    }
    return MHD_YES;
}

static void keep_static(void *cls)
{
    (void)cls; /* the embedded files are never freed */
}

/* A dashboard page or asset (api/static.c); an unknown asset is not_found. */
static void answer_static(struct req *rq)
{
    if (!hpo__static_find(rq->path,
                MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                        MHD_HTTP_HEADER_ACCEPT_ENCODING),
                MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                        MHD_HTTP_HEADER_IF_NONE_MATCH),
                &rq->st)) {
        set_error(rq, HPO_NOT_FOUND, NULL, "no such file '%s'", rq->path);
        return;
    }
    rq->is_static = true;
    set_reply(rq, rq->st.status, (char *)rq->st.body, rq->st.len,
            rq->st.body != NULL ? rq->st.type : NULL);
    if (rq->st.body != NULL) {
        rq->out_free = keep_static;
    }
}

/*
** The handler's call after an inline run held to the round's end: the reply
** once job_done ran; else (its writes not resolved by the round's end: a
** paused storage) the connection is suspended and job_done resumes it.
*/
static enum MHD_Result round_reply(struct req *rq)
{
    int waiting = ROUND_WAITING;

    if (atomic_load(&rq->round_state) == ROUND_DONE) {
        return queue_reply(rq);
    }
    if (rq->suspended || round_handed || rq->round_held ||
        hpo__loops_rounds_here() == rq->round_no) {
        /*
        ** Handed off (the commit's release on another thread kicks this
        ** one: job_done), held for a flush (its loop sleeps meanwhile), or
        ** a second pass of its round (the round's end, which releases it,
        ** comes next).
        */
        return MHD_YES;
    }
    rq->suspended = true;
    MHD_suspend_connection(rq->conn);
    if (!atomic_compare_exchange_strong(&rq->round_state, &waiting, ROUND_SUSPENDED)) {
        /* job_done ran meanwhile and left it to this thread. */
        rq->suspended = false;
        hpo__loops_resume(rq->conn);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
        const char *method, const char *version, const char *upload_data,
        size_t *upload_data_size, void **req_cls)
{
    struct hpo_api *api = cls;
    struct req *rq = *req_cls;

    (void)url; /* MHD's decoding of the path: routing uses the raw one (on_uri) */
    if (rq == NULL) {
        return MHD_NO; /* on_uri ran out of memory */
    }
    if (!rq->started) {
        rq->started = true;
        return check_headers(api, rq, method, version);
    }
    if (!rq->headers_done) {
        /* Back from the gradient upload check (start_upload_check). */
        if (rq->suspended) {
            return MHD_YES;
        }
        if (rq->ready) {
            return queue_reply(rq);
        }
        rq->headers_done = true;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        enum MHD_Result r = append_body(rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return r;
    }
    if (rq->round_wait) {
        return round_reply(rq);
    }
    if (rq->ready) {
        return queue_reply(rq);
    }
    if (rq->suspended) {
        return MHD_YES;
    }
    if (rq->too_large && rq->exact) {
        set_error(rq, HPO_INVALID_ARGUMENT, "gradient",
                "body must be %zu bytes (%zu little-endian float64), got more", rq->limit,
                rq->limit / sizeof(double));
        return queue_reply(rq);
    }
    if (rq->too_large) {
        set_error(rq, HPO_PAYLOAD_TOO_LARGE, NULL, "body over the %zu byte limit", rq->limit);
        return queue_reply(rq);
    }
    if (rq->route == HPO__R_NONE) {
        set_error(rq, HPO_NOT_FOUND, NULL, "no route for '%s'", rq->path);
        return queue_reply(rq);
    }
    if (!hpo__api_method_allowed(rq->allow, method)) {
        set_error(rq, HPO_METHOD_NOT_ALLOWED, NULL, "%s is not allowed on '%s' (allowed: %s)",
                method, rq->path, rq->allow);
        return queue_reply(rq);
    }
    rq->row = hpo__route_row(rq->route, method);
    switch (rq->row->op) {
    case HPO__OP_HEALTHZ:
        answer_healthz(rq);
        return queue_reply(rq);
    case HPO__OP_METRICS:
        answer_metrics(rq);
        return queue_reply(rq);
    case HPO__OP_SAMPLERS:
        answer_samplers(rq);
        return queue_reply(rq);
    case HPO__OP_STATIC:
        answer_static(rq);
        return queue_reply(rq);
    case HPO__OP_EVENTS:
        if (!hpo__events_check(conn, &rq->ev_start, &rq->sreq.err)) {
            set_json(rq, hpo_code_status(rq->sreq.err.code), error_body(&rq->sreq.err));
            return queue_reply(rq);
        }
        if (!hpo__events_room(api->events)) {
            set_error(rq, HPO_UNAVAILABLE, NULL, "too many event streams (at most %d)",
                    HPO_EVENTS_MAX);
            return queue_reply(rq);
        }
        if (strcmp(method, "HEAD") == 0) {
            set_reply(rq, 200, NULL, 0, "text/event-stream");
            return queue_reply(rq);
        }
        if (!admit(rq)) {
            return queue_reply(rq);
        }
        rq->job.work = events_open_work;
        rq->job.key = NULL;
        suspend_and_submit(rq);
        return MHD_YES;
    case HPO__OP_BACKUP:
        if (api->cfg.backup == NULL) {
            set_error(rq, HPO_NOT_FOUND, NULL, "this server takes no backups");
            return queue_reply(rq);
        }
        if (!admit(rq)) {
            return queue_reply(rq);
        }
        rq->job.work = backup_work;
        rq->job.key = NULL;
        suspend_and_submit(rq);
        return MHD_YES;
    default:
        break;
    }
    if (!prepare_service(rq) || !admit(rq)) {
        return queue_reply(rq);
    }
    /* Requests that change one study run in order through its lane (dispatch). */
    rq->job.key = (rq->row->flags & HPO__F_LANE) != 0 ? rq->study : NULL;
    rq->job.kind = (unsigned)rq->route;
    if (rq->job.key != NULL && api->cfg.run_inline != NULL &&
            ((rq->row->flags & HPO__F_BINARY) == 0 ? rq->len <= INLINE_BODY_MAX
                                                   : rq->sreq.data_finite)) {
        /*
        ** A small body is decoded here; a big JSON one on a worker, never
        ** inline. A gradient upload checked on arrival is only handed over.
        */
        if (!job_decode(rq)) {
            build_reply(rq);
            return queue_reply(rq);
        }
        rq->job.work = lane_work;
        rq->job.held = false;
        if (api->cfg.run_inline(api->cfg.ctx, &rq->job)) {
            build_reply(rq); /* ran here, its lane free again */
            if (rq->job.held && api->cfg.round_replies) {
                /*
                ** Its write is in flight: this thread commits it at the end of
                ** its round, which releases the reply (job_done); MHD calls
                ** the handler again in the next round (no reply queued yet).
                */
                rq->round_wait = true;
                rq->round_no = hpo__loops_rounds_here();
                rq->round_held = api->cfg.round_flush;
                rq->round_loop = rq->round_held ? hpo__loops_hold() : hpo__loops_here();
                atomic_store(&rq->round_state, ROUND_WAITING);
                count_busy(rq);
                api->cfg.release(api->cfg.ctx, &rq->job);
                return MHD_YES;
            }
            if (rq->job.held) {
                /* Its write is in flight: the reply waits for it (job_done resumes). */
                rq->suspended = true;
                count_busy(rq);
                MHD_suspend_connection(rq->conn);
                api->cfg.release(api->cfg.ctx, &rq->job);
                return MHD_YES;
            }
            (void)check_held(rq); /* a write: never run again */
            poke_streams(rq);
            return queue_reply(rq);
        }
        rq->job.work = decoded_work;
    }
    if (rq->job.key != NULL && rq->target != NULL && rq->job.work == job_work) {
        /* Several daemons: routed first, without its lane (route_work). */
        rq->job.key = NULL;
        rq->job.work = route_work;
        rq->job.done = route_done;
    }
    suspend_and_submit(rq);
    return MHD_YES;
}

/*
** Copy `in` for a log line: bytes outside printable ASCII become \xHH, so a
** decoded path cannot start a forged line; cut at `len` with "...".
*/
static void log_safe(char *out, size_t len, const char *in)
{
    size_t n = 0;

    for (; *in != '\0' && n + 8 < len; in++) {
        unsigned char c = (unsigned char)*in;
        if (c < 0x20 || c >= 0x7f || c == '\\') {
            n += (size_t)snprintf(out + n, len - n, "\\x%02x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    if (*in != '\0') {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/*
** The level of a finished request's log line: every request at debug; at
** the default level (info) only what an operator acts on: server errors,
** refused credentials and slow requests (docs/API.md, Operations).
*/
static enum hpo_log_level request_level(const struct req *rq, uint64_t us, bool *ret_slow)
{
    uint64_t slow_us = (uint64_t)rq->api->cfg.slow_request_ms * 1000u;

    /* An event stream lasts as long as its page is open: never "slow". */
    *ret_slow = slow_us > 0 && us > slow_us && rq->route != HPO__R_EVENTS;
    if (rq->status >= 500) {
        return HPO_LOG_ERR;
    }
    if (rq->status == 401 || rq->status == 403) {
        return HPO_LOG_WARNING;
    }
    return *ret_slow ? HPO_LOG_NOTICE : HPO_LOG_DEBUG;
}

/* Count a finished request for /metrics (any thread: atomic adds). */
static void count_request(struct req *rq, uint64_t us)
{
    struct hpo__metrics *m = rq->api->metrics;

    if (rq->status == 0) {
        return; /* the client left before any reply: only the debug log line shows it */
    }
    hpo__metrics_request(m, rq->route, rq->method, rq->status, us);
    if (rq->status < 200 || rq->status >= 300) {
        return;
    }
    if (rq->route == HPO__R_ASK && rq->sreq.sampler != NULL) {
        hpo__metrics_ask(m, rq->sreq.sampler, us);
    } else if (rq->route == HPO__R_TELL && rq->sreq.decoded) {
        hpo__metrics_tell(m, hpo_state_name((enum hpo_state)rq->sreq.args.tell.state));
    } else if (rq->route == HPO__R_REPORT) {
        hpo__metrics_report(m, rq->pruned);
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
        enum MHD_RequestTerminationCode toe)
{
    struct req *rq = *req_cls;
    enum hpo_log_level level;
    uint64_t us;
    bool slow;

    if (rq == NULL) {
        return;
    }
    /*
    ** Closed while its reply waited for the round's end (the client went):
    ** its job is still held on the dispatcher, whose done() uses rq. The
    ** round's end comes now (its write may be this thread's to commit).
    */
    while (rq->round_wait && atomic_load(&rq->round_state) != ROUND_DONE) {
        if (rq->api->cfg.round_end != NULL) {
            /* (No wake-up: it waits for a batch another thread leads, as it must for rq.) */
            (void)rq->api->cfg.round_end(rq->api->cfg.ctx, NULL, NULL);
        }
        if (atomic_load(&rq->round_state) != ROUND_DONE) {
            sched_yield();
        }
    }
    if (rq->counted) {
        atomic_fetch_sub(&rq->api->inflight, 1);
    }
    if (!rq->started) {
        /* MHD refused it before the handler saw it (431, malformed header...). */
        goto release;
    }
    us = now_us();
    /* (The same clock as the sweep's: hpo__conns_sweep gets now_us() / 1000.) */
    hpo__conns_request_end(&rq->api->conns, rq->tcp, us / 1000);
    us -= rq->start_us;
    if (!rq->metered) {
        count_request(rq, us);
    }
    level = request_level(rq, us, &slow);
    if ((int)level <= (rq->log_level >= 0 ? rq->log_level : (int)hpo_log_get_level())) {
        const struct hpo_error *e = &rq->sreq.err;
        const char *aborted = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)";
        /* The token's name (never its secret); "-" without tokens or before authorization. */
        const char *token = rq->who.name[0] != '\0' ? rq->who.name : "-";
        char method[40], path[600], msg[600];
        log_safe(method, sizeof(method), rq->method);
        log_safe(path, sizeof(path), rq->path);
        if (e->code != HPO_OK) {
            log_safe(msg, sizeof(msg), e->message);
            hpo_log(level, "req=%s %s %s %d %" PRIu64 "us token=%s%s%s %s: %s", rq->id, method,
                    path, rq->status, us, token, slow ? " slow" : "", aborted,
                    hpo_code_name(e->code), msg);
        } else {
            hpo_log(level, "req=%s %s %s %d %" PRIu64 "us token=%s%s%s", rq->id, method, path,
                    rq->status, us, token, slow ? " slow" : "", aborted);
        }
    }
release:
    hpo_buf_free(&rq->query);
    hpo_service_request_finish(&rq->sreq);
    free(rq->sreq_init);
    hpo_service_stream_free(rq->stream);
    free(rq->link);
    free(rq->target);
    release_out(rq);
    if (rq->out_fd > 0) {
        close(rq->out_fd); /* never handed to MHD */
    }
    free(rq->body);
    free(rq->path);
    free(rq->raw);
    free(rq->study);
    free(rq->name);
    req_release(rq->api, rq);
    *req_cls = NULL;
}

/*
** libmicrohttpd's own messages go through the log. Those about one client's
** request ("Error processing request (HTTP response code is 431 ...).
** Closing connection.", "Connection was closed by remote side with
** incomplete request.") are that client's doing, like a 4xx: debug, so a
** hostile client cannot flood the journal. The rest (accept failures, the
** connection limit, out of memory) at warning.
*/
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    bool one_connection = strstr(fmt, "Closing connection.") != NULL ||
            strstr(fmt, "request") != NULL;

    hpo_log_va(one_connection ? HPO_LOG_DEBUG : HPO_LOG_WARNING, "libmicrohttpd", -1, fmt, ap);
}

/*
** One HTTP thread's daemon (loops.h): MHD's external epoll mode, on
** `listen_fd` when given (socket activation, or the first daemon's socket
** for the others), else bound to the configured address.
*/
static struct MHD_Daemon *start_one(void *cls, int listen_fd)
{
    struct hpo_api *api = cls;
    const struct hpo_api_config *cfg = &api->cfg;

    /*
    ** HTTPS: credentials per handshake from tls.c, so SIGHUP can swap them (tls.h).
    ** The memory increment at the pool's size: before each read MHD grows the read
    ** buffer when its free part is under the increment, so a body's reads take up to
    ** ~56 KiB of the 64 KiB pool instead of stopping at half (8 MB: 130 reads, not
    ** 216). The pool, and with it the request line and header limits, is the same.
    */
#define COMMON_OPTIONS                                                                        \
    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, api, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&api->ss, \
            MHD_OPTION_LISTEN_SOCKET, listen_fd > 0 ? (MHD_socket)listen_fd : MHD_INVALID_SOCKET, \
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, api, MHD_OPTION_URI_LOG_CALLBACK,      \
            on_uri, api, MHD_OPTION_UNESCAPE_CALLBACK, unescape, api,                         \
            MHD_OPTION_CONNECTION_LIMIT, cfg->connection_limit + HPO_CONNS_MARGIN,            \
            MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->per_client_limit,                        \
            MHD_OPTION_NOTIFY_CONNECTION, hpo__conns_notify, &api->conns,                     \
            MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout_s,                         \
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),                          \
            MHD_OPTION_CONNECTION_MEMORY_INCREMENT, (size_t)(64 * 1024)
    if (cfg->tls != NULL) {
        return MHD_start_daemon(api->mhd_flags | MHD_USE_TLS, (uint16_t)cfg->port,
                hpo__conns_accept, &api->conns, on_request, api, COMMON_OPTIONS,
                MHD_OPTION_HTTPS_CERT_CALLBACK, hpo_tls_retrieve, MHD_OPTION_HTTPS_PRIORITIES,
                HPO_TLS_PRIORITIES, MHD_OPTION_END);
    }
    return MHD_start_daemon(api->mhd_flags, (uint16_t)cfg->port, hpo__conns_accept, &api->conns,
            on_request, api, COMMON_OPTIONS, MHD_OPTION_END);
#undef COMMON_OPTIONS
}

/*
** After each round of an HTTP thread: the embedder's (its pipelined writes
** committed, or handed off), and whether the round queued a reply (one MHD
** has still to send): HPO_ROUND_* flags (loops.h).
*/
static unsigned round_end(void *cls)
{
    struct hpo_api *api = cls;
    bool queued = round_queued != round_queued_seen;

    round_queued_seen = round_queued;
    round_handed = api->cfg.round_end != NULL &&
            api->cfg.round_end(api->cfg.ctx, hpo__loops_wake, hpo__loops_here());
    return (round_handed ? HPO_ROUND_HANDED : 0) | (queued ? HPO_ROUND_QUEUED : 0);
}

bool hpo_api_ready_here(void)
{
    return hpo__loops_ready_here();
}

/* Before it: whether the round got work for its end (loops.h). */
static uint64_t round_pending(void *cls)
{
    struct hpo_api *api = cls;

    return api->cfg.round_pending != NULL ? api->cfg.round_pending(api->cfg.ctx) : 0;
}

int hpo_api_start(const struct hpo_api_config *cfg, struct hpo_api **ret_api,
        struct hpo_error *err)
{
    struct hpo_api *api = calloc(1, sizeof(*api));
    struct sockaddr_storage ss;
    socklen_t sslen;
    /*
    ** MHD's external epoll mode, one daemon per HTTP thread (loops.c): each
    ** thread runs MHD_run_wait and then the round's commit. (MHD's external
    ** mode has no poll(); its epoll with MHD's own threads raced with the
    ** quiesce and aborted, which loops.c avoids by quiescing each daemon on
    ** its own thread.)
    */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    /* Each daemon has its own connection limit: ours (conns.c) is the global one. */
    unsigned threads = cfg->http_threads > 1 ? cfg->http_threads : 1;
    const union MHD_DaemonInfo *info;
    int r;

    if (api == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    api->cfg = *cfg;
    api->metrics = hpo__metrics_new();
    if (api->metrics == NULL) {
        free(api);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    api->tokens = cfg->tokens;
    {
        struct hpo__events_config ec = { .service = cfg->service, .submit = cfg->submit,
            .ctx = cfg->ctx, .inflight = &api->inflight,
            .served = cfg->route != NULL ? events_served : NULL, .served_ctx = api };
        api->events = hpo__events_new(&ec);
    }
    if (api->events == NULL) {
        hpo__metrics_free(api->metrics);
        free(api);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    hpo__conns_init(&api->conns, cfg->connection_limit, cfg->head_timeout_s);
    hpo__conns_per_client(&api->conns, cfg->per_client_limit);
    if (getrandom(&api->id_prefix, sizeof(api->id_prefix), 0) != sizeof(api->id_prefix)) {
        api->id_prefix = (uint32_t)now_us();
    }
    memset(&ss, 0, sizeof(ss));
    if (strchr(cfg->host, ':') != NULL) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET6, cfg->host, &a6->sin6_addr) != 1) {
            hpo__metrics_free(api->metrics);
            hpo__events_free(api->events);
            free(api);
            return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "listen",
                    "'%s' is not a numeric IPv6 address", cfg->host);
        }
        sslen = sizeof(*a6);
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET, cfg->host, &a4->sin_addr) != 1) {
            hpo__metrics_free(api->metrics);
            hpo__events_free(api->events);
            free(api);
            return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "listen",
                    "'%s' is not a numeric IPv4 address", cfg->host);
        }
        sslen = sizeof(*a4);
    }
    (void)sslen;
    pthread_rwlock_init(&api->tokens_lock, NULL);
    pthread_mutex_init(&api->pool_lock, NULL);
    api->mhd_flags = flags;
    api->ss = ss;
    r = hpo__loops_start(threads, cfg->listen_fd, start_one, api, round_pending, round_end, api,
            &api->loops);
    if (r < 0) {
        hpo__conns_finish(&api->conns);
        pthread_rwlock_destroy(&api->tokens_lock);
        pthread_mutex_destroy(&api->pool_lock);
        hpo__metrics_free(api->metrics);
        hpo__events_free(api->events);
        free(api);
        return hpo_error_set(err, -EADDRINUSE, HPO_UNAVAILABLE, "listen",
                "cannot listen on %s:%u", cfg->host, cfg->port);
    }
    info = MHD_get_daemon_info(hpo__loops_first(api->loops), MHD_DAEMON_INFO_BIND_PORT);
    api->port = info ? info->port : cfg->port;
    *ret_api = api;
    return 0;
}

unsigned hpo_api_port(struct hpo_api *api)
{
    return api->port;
}

size_t hpo_api_inflight(struct hpo_api *api)
{
    return atomic_load(&api->inflight);
}

void hpo_api_quiesce(struct hpo_api *api)
{
    hpo__loops_quiesce(api->loops);
    hpo__events_close(api->events); /* open streams end now: the stop need not wait */
}

void hpo_api_close_work(struct hpo_api *api)
{
    atomic_store(&api->closed, true);
}

void hpo_api_stop(struct hpo_api *api)
{
    if (api == NULL) {
        return;
    }
    hpo__loops_stop(api->loops);
    hpo__conns_finish(&api->conns);
    pthread_rwlock_destroy(&api->tokens_lock);
    while (api->pool != NULL) {
        struct req *rq = api->pool;
        api->pool = rq->pool_next;
        free(rq);
    }
    pthread_mutex_destroy(&api->pool_lock);
    hpo__metrics_free(api->metrics);
    hpo__events_free(api->events);
    free(api);
}

int hpo_api_metrics_write(struct hpo_api *api, FILE *f)
{
    return hpo__metrics_write(api->metrics, f, hpo__loops_connections(api->loops));
}

void hpo_api_set_tokens(struct hpo_api *api, const struct hpo_tokens *tokens)
{
    /* Once this returns no request reads the old set: the caller may free it. */
    pthread_rwlock_wrlock(&api->tokens_lock);
    api->tokens = tokens;
    pthread_rwlock_unlock(&api->tokens_lock);
    /*
    ** Streams were authorized with the old tokens: end them (clients
    ** reconnect). Their connections are resumed here; MHD's threads send
    ** what is left and close them on their own.
    */
    hpo__events_end_all(api->events);
}

void hpo_api_sweep(struct hpo_api *api)
{
    size_t n = hpo__conns_sweep(&api->conns, now_us() / 1000);

    hpo__events_tick(api->events);
    if (n > 0) {
        hpo_log(HPO_LOG_NOTICE, "closed %zu connection(s) whose request head took over %u s",
                n, api->conns.head_timeout_s);
    }
}
