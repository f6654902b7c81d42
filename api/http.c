/*
** http.c: libmicrohttpd glue: request contexts, body accumulation with
** early 413, routing, JSON decoding, replies and the per-request log line.
**
** Every MHD call happens on the loop thread. Requests that touch studies are
** suspended, run on a worker through the embedder's submit(), and resumed
** in the job's done callback (STYLE.md rules 33-38).
*/
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
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

#include "../core/history.h"
#include "../pruners/pruner.h"
#include "../samplers/sampler.h"
#include "../service/service.h"
#include "access.h"
#include "api-int.h"
#include "api.h"
#include "conns.h"
#include "log.h"
#include "tls.h"

/* Short names for the routes of api-int.h. */
#define R_NONE HPO__R_NONE
#define R_HEALTHZ HPO__R_HEALTHZ
#define R_METRICS HPO__R_METRICS
#define R_SAMPLERS HPO__R_SAMPLERS
#define R_STUDIES HPO__R_STUDIES
#define R_STUDY HPO__R_STUDY
#define R_ASK HPO__R_ASK
#define R_BEST HPO__R_BEST
#define R_TRIALS HPO__R_TRIALS
#define R_TRIAL HPO__R_TRIAL
#define R_TELL HPO__R_TELL
#define R_REPORT HPO__R_REPORT
#define R_HEARTBEAT HPO__R_HEARTBEAT
#define R_PARAM HPO__R_PARAM
#define R_GRADIENT HPO__R_GRADIENT
#define R_ADMIN_BACKUP HPO__R_ADMIN_BACKUP

struct hpo_api {
    struct hpo_api_config cfg;
    struct MHD_Daemon *mhd;
    unsigned port;
    size_t inflight;
    uint32_t id_prefix;
    uint64_t id_counter;
    int quiesced_fd;
    struct hpo_api_stats stats;
    const struct hpo_tokens *tokens; /* borrowed; NULL = no tokens (access.h) */
    struct hpo__conns conns;         /* head deadline and reserve (conns.h) */
};

struct req {
    struct hpo_api *api;
    struct MHD_Connection *conn;
    struct hpo_job job; /* first member use is not required: we map back by offset */
    char id[24];
    char method[16];
    char *path;
    uint64_t start_us;
    enum hpo__route_id route;
    char *study;
    char *name;
    int64_t number;
    bool number_ok;
    char *body;
    size_t len, cap, limit;
    bool too_large;
    bool suspended;
    bool ready; /* a reply is waiting to be queued */
    struct hpo_svc_request sreq;
    json_t *json;
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

    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(body);
    }
    if (text == NULL && body != NULL) {
        status = 500;
        text = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode reply\"}}");
    }
    set_reply(rq, status, text, text ? strlen(text) : 0, "application/json");
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
}

static enum MHD_Result queue_reply(struct req *rq)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (rq->out_fd > 0) {
        /* A file (the backup archive): MHD closes it with the response. */
        resp = MHD_create_response_from_fd64(rq->out_len, rq->out_fd);
        if (resp == NULL) {
            return MHD_NO;
        }
        rq->out_fd = 0;
        MHD_add_response_header(resp, "Content-Disposition",
                "attachment; filename=\"hpod-backup.tar\"");
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
    ret = MHD_queue_response(rq->conn, (unsigned)rq->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- routing ----------------------------------------------------------- */

#define MAX_SEGS 8

static size_t split_path(char *path, char **segs)
{
    size_t n = 0;
    char *p = path;

    if (*p == '/') {
        p++;
    }
    while (*p != '\0' && n < MAX_SEGS) {
        char *slash = strchr(p, '/');
        segs[n++] = p;
        if (slash == NULL) {
            break;
        }
        *slash = '\0';
        p = slash + 1;
        if (*p == '\0') {
            break; /* one trailing slash is tolerated */
        }
    }
    if (*p != '\0' && n == MAX_SEGS && strchr(p, '/') != NULL) {
        return MAX_SEGS + 1;
    }
    return n;
}

bool hpo__api_parse_number(const char *s, int64_t *ret)
{
    int64_t v = 0;

    if (*s == '\0' || strlen(s) > 18) {
        return false;
    }
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9') {
            return false;
        }
        v = v * 10 + (*c - '0');
    }
    *ret = v;
    return true;
}

/* Match the path (api-int.h); the caller frees ret->study and ret->name. */
const char *hpo__api_route(const char *url, struct hpo__route *ret)
{
    char *copy = strdup(url);
    char *segs[MAX_SEGS + 1];
    size_t n;
    const char *allow = NULL;

    if (copy == NULL) {
        return NULL;
    }
    n = split_path(copy, segs);
    ret->route = R_NONE;
    if (n == 1 && strcmp(segs[0], "healthz") == 0) {
        ret->route = R_HEALTHZ;
        allow = "GET";
    } else if (n == 1 && strcmp(segs[0], "metrics") == 0) {
        ret->route = R_METRICS;
        allow = "GET";
    } else if (n >= 2 && n <= MAX_SEGS && strcmp(segs[0], "v1") == 0) {
        if (n == 2 && strcmp(segs[1], "samplers") == 0) {
            ret->route = R_SAMPLERS;
            allow = "GET";
        } else if (n == 3 && strcmp(segs[1], "admin") == 0 && strcmp(segs[2], "backup") == 0) {
            ret->route = R_ADMIN_BACKUP;
            allow = "GET";
        } else if (strcmp(segs[1], "studies") == 0) {
            if (n >= 3) {
                ret->study = strdup(segs[2]);
            }
            if (n >= 5) {
                ret->number_ok = hpo__api_parse_number(segs[4], &ret->number);
            }
            if (n == 2) {
                ret->route = R_STUDIES;
                allow = "GET, POST";
            } else if (n == 3) {
                ret->route = R_STUDY;
                allow = "GET, DELETE";
            } else if (n == 4 && strcmp(segs[3], "ask") == 0) {
                ret->route = R_ASK;
                allow = "POST";
            } else if (n == 4 && strcmp(segs[3], "best") == 0) {
                ret->route = R_BEST;
                allow = "GET";
            } else if (n == 4 && strcmp(segs[3], "trials") == 0) {
                ret->route = R_TRIALS;
                allow = "GET, POST";
            } else if (n == 5 && strcmp(segs[3], "trials") == 0) {
                ret->route = R_TRIAL;
                allow = "GET";
            } else if (n == 6 && strcmp(segs[3], "trials") == 0) {
                if (strcmp(segs[5], "tell") == 0) {
                    ret->route = R_TELL;
                } else if (strcmp(segs[5], "report") == 0) {
                    ret->route = R_REPORT;
                } else if (strcmp(segs[5], "heartbeat") == 0) {
                    ret->route = R_HEARTBEAT;
                }
                allow = ret->route != R_NONE ? "POST" : NULL;
            } else if (n == 7 && strcmp(segs[3], "trials") == 0) {
                ret->name = strdup(segs[6]);
                if (strcmp(segs[5], "params") == 0) {
                    ret->route = R_PARAM;
                    allow = "GET";
                } else if (strcmp(segs[5], "gradient") == 0) {
                    ret->route = R_GRADIENT;
                    allow = "PUT";
                }
            }
        }
    }
    free(copy);
    return allow;
}

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

bool hpo__api_method_allowed(const char *allow, const char *method)
{
    size_t n = strlen(method);

    for (const char *p = allow; p && *p;) {
        if (strncmp(p, method, n) == 0 && (p[n] == '\0' || p[n] == ',')) {
            return true;
        }
        p = strchr(p, ',');
        if (p != NULL) {
            p += 2;
        }
    }
    return false;
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
        set_json(rq, 200, json_pack("{s:s,s:s}", "status", "ok", "version", api->cfg.version));
    } else {
        set_error(rq, HPO_UNAVAILABLE, NULL, "storage is not writable");
    }
}

static void answer_metrics(struct req *rq)
{
    char *text = rq->api->cfg.metrics ? rq->api->cfg.metrics(rq->api->cfg.ctx) : NULL;

    if (text == NULL) {
        set_error(rq, HPO_INTERNAL, NULL, "metrics are not available");
        return;
    }
    set_reply(rq, 200, text, strlen(text), "text/plain; version=0.0.4");
}

/* ---- work on the service (worker thread) ------------------------------- */

bool hpo__api_is_binary_type(const char *type)
{
    size_t n = strlen("application/octet-stream");

    return type != NULL && strncasecmp(type, "application/octet-stream", n) == 0 &&
            (type[n] == '\0' || type[n] == ';' || type[n] == ' ');
}

/* Encode the service's answer into the reply (worker thread: the request is suspended). */
static void build_reply(struct req *rq)
{
    struct hpo_svc_request *sr = &rq->sreq;

    if (sr->err.code != HPO_OK) {
        set_json(rq, sr->status, error_body(&sr->err));
    } else if (sr->text != NULL) {
        bool csv = sr->op == HPO_SVC_TRIALS_LIST;
        set_reply(rq, sr->status, sr->text, sr->text_len,
                csv ? "text/csv; charset=utf-8" : "application/octet-stream");
        rq->out_free = sr->text_free;
        rq->out_cls = sr->text_cls;
        sr->text = NULL;
        sr->text_free = NULL;
        sr->text_cls = NULL;
    } else if (sr->reply != NULL) {
        set_json(rq, sr->status, sr->reply);
        sr->reply = NULL;
    } else {
        set_reply(rq, sr->status, NULL, 0, NULL);
    }
}

static void job_work(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);
    struct hpo_svc_request *sr = &rq->sreq;
    json_error_t jerr;

    if (sr->op != HPO_SVC_GRADIENT_PUT && rq->len > 0) {
        rq->json = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &jerr);
        if (rq->json == NULL) {
            hpo_error_set(&sr->err, -EINVAL, HPO_INVALID_JSON, NULL, "body is not JSON: %s",
                    jerr.text);
            sr->status = 400;
            build_reply(rq);
            return;
        }
        if (!json_is_object(rq->json)) {
            hpo_error_set(&sr->err, -EINVAL, HPO_INVALID_JSON, NULL,
                    "body must be a JSON object");
            sr->status = 400;
            build_reply(rq);
            return;
        }
    }
    if (sr->op == HPO_SVC_STUDY_CREATE && !hpo_access_may_create(&rq->who, rq->json, &sr->err)) {
        sr->status = hpo_code_status(sr->err.code);
        build_reply(rq);
        return;
    }
    sr->body = rq->json;
    sr->data = rq->body;
    sr->data_len = rq->len;
    sr->data_owned = rq->body;
    hpo_service_execute(rq->api->cfg.service, sr);
    if (sr->data_owned == NULL && rq->body != NULL) {
        /* The service kept the body (a gradient upload): no copy was made. */
        rq->body = NULL;
        rq->len = 0;
        rq->cap = 0;
    }
    sr->data = NULL;
    if (sr->op == HPO_SVC_STUDY_LIST && sr->err.code == HPO_OK) {
        hpo_access_filter_studies(&rq->who, sr->reply);
    }
    /* Encoding the reply here keeps JSON work off the event-loop thread. */
    build_reply(rq);
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

static void job_done(struct hpo_job *job)
{
    struct req *rq = req_of_job(job);

    rq->api->inflight--;
    rq->suspended = false;
    MHD_resume_connection(rq->conn);
}

/* ---- query parameters -------------------------------------------------- */

struct query_check {
    struct req *rq;
    const char *const *allowed;
    char bad[130];
};

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key,
        const char *value)
{
    struct query_check *qc = cls;

    for (size_t i = 0; qc->allowed[i]; i++) {
        if (strcmp(qc->allowed[i], key) == 0) {
            return MHD_YES;
        }
    }
    snprintf(qc->bad, sizeof(qc->bad), "%.128s", key);
    return MHD_NO;
}

static bool query_int(struct req *rq, const char *key, int64_t def, int64_t min, int64_t *ret)
{
    const char *v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
    int64_t x;

    if (v == NULL) {
        *ret = def;
        return true;
    }
    if (!hpo__api_parse_number(v, &x) || x < min) {
        set_error(rq, HPO_INVALID_ARGUMENT, key, "%s must be an integer >= %lld", key,
                (long long)min);
        return false;
    }
    *ret = x;
    return true;
}

/*
** Requests that change one study run in order through its lane (dispatch):
** they would queue on the study's lock anyway. Reads are not held up behind
** a slow ask: they use the study's cached summary or wait on its lock.
*/
static bool changes_study(enum hpo_svc_op op)
{
    switch (op) {
    case HPO_SVC_ASK:
    case HPO_SVC_TRIAL_CREATE:
    case HPO_SVC_TELL:
    case HPO_SVC_REPORT:
    case HPO_SVC_HEARTBEAT:
    case HPO_SVC_GRADIENT_PUT:
        return true;
    default:
        return false;
    }
}

/* Set up sreq for a service route; false when an error reply was set. */
static bool prepare_service(struct req *rq, const char *method)
{
    struct hpo_svc_request *sr = &rq->sreq;
    bool get = strcmp(method, "GET") == 0;

    memset(sr, 0, sizeof(*sr));
    sr->study = rq->study;
    sr->number = rq->number;
    sr->name = rq->name;
    sr->state_filter = -1;
    if (rq->route >= R_TRIAL && rq->route <= R_GRADIENT && !rq->number_ok) {
        set_error(rq, HPO_NOT_FOUND, NULL, "no trial '%s'", rq->path);
        return false;
    }
    switch (rq->route) {
    case R_STUDIES:
        sr->op = get ? HPO_SVC_STUDY_LIST : HPO_SVC_STUDY_CREATE;
        break;
    case R_STUDY:
        sr->op = get ? HPO_SVC_STUDY_GET : HPO_SVC_STUDY_DELETE;
        break;
    case R_ASK:
        sr->op = HPO_SVC_ASK;
        break;
    case R_BEST:
        sr->op = HPO_SVC_BEST;
        break;
    case R_TRIALS:
        sr->op = get ? HPO_SVC_TRIALS_LIST : HPO_SVC_TRIAL_CREATE;
        if (get) {
            static const char *const allowed[] = { "state", "limit", "offset", "format", NULL };
            struct query_check qc = { .rq = rq, .allowed = allowed };
            const char *state, *format, *accept;
            MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, query_iter, &qc);
            if (qc.bad[0] != '\0') {
                set_error(rq, HPO_INVALID_ARGUMENT, qc.bad, "unknown query parameter '%s'",
                        qc.bad);
                return false;
            }
            state = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "state");
            if (state != NULL) {
                sr->state_filter = hpo_state_parse(state);
                if (sr->state_filter < 0) {
                    set_error(rq, HPO_INVALID_ARGUMENT, "state",
                            "state must be waiting, running, complete, pruned or failed");
                    return false;
                }
            }
            if (!query_int(rq, "limit", 1000, 1, &sr->limit) ||
                    !query_int(rq, "offset", 0, 0, &sr->offset)) {
                return false;
            }
            format = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "format");
            if (format != NULL && strcmp(format, "csv") != 0 && strcmp(format, "json") != 0) {
                set_error(rq, HPO_INVALID_ARGUMENT, "format", "format must be json or csv");
                return false;
            }
            accept = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                    MHD_HTTP_HEADER_ACCEPT);
            sr->csv = (format != NULL && strcmp(format, "csv") == 0) ||
                    (format == NULL && accept != NULL && strstr(accept, "text/csv") != NULL);
        }
        break;
    case R_TRIAL:
        sr->op = HPO_SVC_TRIAL_GET;
        break;
    case R_TELL:
        sr->op = HPO_SVC_TELL;
        break;
    case R_REPORT:
        sr->op = HPO_SVC_REPORT;
        break;
    case R_HEARTBEAT:
        sr->op = HPO_SVC_HEARTBEAT;
        break;
    case R_PARAM:
        sr->op = HPO_SVC_PARAM_GET;
        break;
    case R_GRADIENT: {
        const char *type = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!hpo__api_is_binary_type(type)) {
            set_error(rq, HPO_UNSUPPORTED_MEDIA_TYPE, NULL,
                    "the body must be application/octet-stream (little-endian float64)");
            return false;
        }
        sr->op = HPO_SVC_GRADIENT_PUT;
        break;
    }
    default:
        set_error(rq, HPO_NOT_FOUND, NULL, "no route for '%s'", rq->path);
        return false;
    }
    return true;
}

/* ---- the MHD callbacks ------------------------------------------------- */

static struct req *req_new(struct hpo_api *api, struct MHD_Connection *conn, const char *url,
        const char *method)
{
    struct req *rq = calloc(1, sizeof(*rq));

    if (rq == NULL) {
        return NULL;
    }
    rq->api = api;
    rq->conn = conn;
    rq->start_us = now_us();
    rq->path = strdup(url);
    snprintf(rq->method, sizeof(rq->method), "%s", method);
    snprintf(rq->id, sizeof(rq->id), "%08" PRIx32 "%08" PRIx64, api->id_prefix,
            ++api->id_counter & 0xffffffffu);
    rq->job.work = job_work;
    rq->job.done = job_done;
    return rq;
}

/* Authenticate and authorize (access.h) before any body is read; false: an error is set. */
static bool authorize(struct hpo_api *api, struct req *rq)
{
    struct hpo_access_request ar = {
        .path = rq->path,
        .method = rq->method,
        .authorization = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                MHD_HTTP_HEADER_AUTHORIZATION),
        .study = rq->study,
        .routed = rq->route != R_NONE && hpo__api_method_allowed(rq->allow, rq->method),
        .healthz = rq->route == R_HEALTHZ,
    };
    struct hpo_error err = { .code = HPO_OK };

    if (hpo_access_decide(api->tokens, &ar, &rq->who, &err)) {
        return true;
    }
    rq->www_auth = err.code == HPO_UNAUTHENTICATED;
    set_json(rq, hpo_code_status(err.code), error_body(&err));
    return false;
}

static enum MHD_Result on_first_call(struct hpo_api *api, struct req *rq)
{
    const char *cl = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
            MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *allow = route_path(rq, rq->path);
    unsigned long long n = 0;

    rq->allow = allow;
    rq->tcp = hpo__conns_of(rq->conn);
    hpo__conns_request_begin(rq->tcp);
    if (rq->tcp != NULL && rq->tcp->reserve && rq->route != R_HEALTHZ && rq->route != R_METRICS) {
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
    rq->limit = rq->route == R_GRADIENT ? api->cfg.binary_limit : api->cfg.json_limit;
    if (cl != NULL) {
        char *end;
        errno = 0;
        n = strtoull(cl, &end, 10);
        if (errno != 0 || *end != '\0' || n > rq->limit) {
            /* Early 413: answer before reading the body; MHD closes the connection. */
            set_error(rq, HPO_PAYLOAD_TOO_LARGE, NULL, "body over the %zu byte limit", rq->limit);
            return queue_reply(rq);
        }
        if (n > 0) {
            rq->body = malloc(n + 1);
            if (rq->body == NULL) {
                return MHD_NO;
            }
            rq->cap = n + 1;
        }
    }
    return MHD_YES;
}

static enum MHD_Result append_body(struct req *rq, const char *data, size_t size)
{
    if (rq->too_large || rq->len + size > rq->limit) {
        rq->too_large = true;
        return MHD_YES;
    }
    if (rq->len + size + 1 > rq->cap) {
        size_t cap = rq->cap ? rq->cap * 2 : 4096;
        char *n;
        while (cap < rq->len + size + 1) {
            cap *= 2;
        }
        n = realloc(rq->body, cap);
        if (n == NULL) {
            return MHD_NO;
        }
        rq->body = n;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, data, size);
    rq->len += size;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
        const char *method, const char *version, const char *upload_data,
        size_t *upload_data_size, void **req_cls)
{
    struct hpo_api *api = cls;
    struct req *rq = *req_cls;

    if (rq == NULL) {
        rq = req_new(api, conn, url, method);
        if (rq == NULL) {
            return MHD_NO;
        }
        *req_cls = rq;
        return on_first_call(api, rq);
    }
    if (*upload_data_size > 0) {
        enum MHD_Result r = append_body(rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return r;
    }
    if (rq->ready) {
        return queue_reply(rq);
    }
    if (rq->suspended) {
        return MHD_YES;
    }
    if (rq->too_large) {
        set_error(rq, HPO_PAYLOAD_TOO_LARGE, NULL, "body over the %zu byte limit", rq->limit);
        return queue_reply(rq);
    }
    if (rq->route == R_NONE) {
        set_error(rq, HPO_NOT_FOUND, NULL, "no route for '%s'", rq->path);
        return queue_reply(rq);
    }
    if (!hpo__api_method_allowed(rq->allow, method)) {
        set_error(rq, HPO_METHOD_NOT_ALLOWED, NULL, "%s is not allowed on '%s' (allowed: %s)",
                method, rq->path, rq->allow);
        return queue_reply(rq);
    }
    switch (rq->route) {
    case R_HEALTHZ:
        answer_healthz(rq);
        return queue_reply(rq);
    case R_METRICS:
        answer_metrics(rq);
        return queue_reply(rq);
    case R_SAMPLERS:
        answer_samplers(rq);
        return queue_reply(rq);
    case R_ADMIN_BACKUP:
        if (api->cfg.backup == NULL) {
            set_error(rq, HPO_NOT_FOUND, NULL, "this server takes no backups");
            return queue_reply(rq);
        }
        rq->job.work = backup_work;
        rq->job.key = NULL;
        rq->suspended = true;
        api->inflight++;
        MHD_suspend_connection(conn);
        api->cfg.submit(api->cfg.ctx, &rq->job);
        return MHD_YES;
    default:
        break;
    }
    if (!prepare_service(rq, method)) {
        return queue_reply(rq);
    }
    rq->suspended = true;
    api->inflight++;
    MHD_suspend_connection(conn);
    rq->job.key = changes_study(rq->sreq.op) ? rq->study : NULL;
    api->cfg.submit(api->cfg.ctx, &rq->job);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
        enum MHD_RequestTerminationCode toe)
{
    struct hpo_api *api = cls;
    struct req *rq = *req_cls;
    uint64_t us;
    int cls_idx;

    if (rq == NULL) {
        return;
    }
    hpo__conns_request_end(rq->tcp);
    us = now_us() - rq->start_us;
    api->stats.requests++;
    cls_idx = rq->status / 100;
    if (cls_idx >= 0 && cls_idx < 6) {
        api->stats.by_class[cls_idx]++;
    }
    api->stats.latency_us_sum += us;
    {
        static const uint64_t edges[11] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
            50000, 100000, 250000 };
        size_t b = 0;
        while (b < 11 && us > edges[b]) {
            b++;
        }
        api->stats.latency_buckets[b]++;
    }
    hpo_log(HPO_LOG_INFO, "req=%s %s %s %d %" PRIu64 "us token=%s%s", rq->id, rq->method,
            rq->path, rq->status, us, rq->who.name[0] ? rq->who.name : "-",
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
    json_decref(rq->json);
    hpo_svc_request_finish(&rq->sreq);
    release_out(rq);
    if (rq->out_fd > 0) {
        close(rq->out_fd); /* never handed to MHD */
    }
    free(rq->body);
    free(rq->path);
    free(rq->study);
    free(rq->name);
    free(rq);
    *req_cls = NULL;
}

int hpo_api_start(const struct hpo_api_config *cfg, struct hpo_api **ret_api,
        struct hpo_error *err)
{
    struct hpo_api *api = calloc(1, sizeof(*api));
    struct sockaddr_storage ss;
    socklen_t sslen;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;

    if (api == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    api->cfg = *cfg;
    api->quiesced_fd = -1;
    api->tokens = cfg->tokens;
    hpo__conns_init(&api->conns, cfg->connection_limit, cfg->head_timeout_s);
    if (getrandom(&api->id_prefix, sizeof(api->id_prefix), 0) != sizeof(api->id_prefix)) {
        api->id_prefix = (uint32_t)now_us();
    }
    memset(&ss, 0, sizeof(ss));
    if (strchr(cfg->host, ':') != NULL) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET6, cfg->host, &a6->sin6_addr) != 1) {
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
            free(api);
            return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "listen",
                    "'%s' is not a numeric IPv4 address", cfg->host);
        }
        sslen = sizeof(*a4);
    }
    (void)sslen;
    /* HTTPS: credentials per handshake from tls.c, so SIGHUP can swap them (tls.h). */
#define COMMON_OPTIONS                                                                        \
    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_LISTEN_SOCKET,                   \
            cfg->listen_fd > 0 ? (MHD_socket)cfg->listen_fd : MHD_INVALID_SOCKET,             \
            MHD_OPTION_NOTIFY_COMPLETED, on_completed,                                        \
            api, MHD_OPTION_CONNECTION_LIMIT, cfg->connection_limit + HPO_CONNS_MARGIN,       \
            MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->per_client_limit,                        \
            MHD_OPTION_NOTIFY_CONNECTION, hpo__conns_notify, &api->conns,                     \
            MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout_s,                         \
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),                          \
            MHD_OPTION_CONNECTION_MEMORY_INCREMENT, (size_t)(16 * 1024)
    if (cfg->tls != NULL) {
        api->mhd = MHD_start_daemon(flags | MHD_USE_TLS, (uint16_t)cfg->port, hpo__conns_accept,
                &api->conns, on_request, api, MHD_OPTION_HTTPS_CERT_CALLBACK, hpo_tls_retrieve,
                MHD_OPTION_HTTPS_PRIORITIES, HPO_TLS_PRIORITIES, COMMON_OPTIONS, MHD_OPTION_END);
    } else {
        api->mhd = MHD_start_daemon(flags, (uint16_t)cfg->port, hpo__conns_accept, &api->conns,
                on_request, api, COMMON_OPTIONS, MHD_OPTION_END);
    }
#undef COMMON_OPTIONS
    if (api->mhd == NULL) {
        free(api);
        return hpo_error_set(err, -EADDRINUSE, HPO_UNAVAILABLE, "listen",
                "cannot listen on %s:%u", cfg->host, cfg->port);
    }
    info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT);
    api->port = info ? info->port : cfg->port;
    *ret_api = api;
    return 0;
}

int hpo_api_fd(struct hpo_api *api)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_EPOLL_FD);

    return info ? info->epoll_fd : -1;
}

void hpo_api_run(struct hpo_api *api)
{
    MHD_run(api->mhd);
}

long hpo_api_timeout_ms(struct hpo_api *api)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;

    if (MHD_get_timeout(api->mhd, &ms) != MHD_YES) {
        return -1;
    }
    return ms > 60000 ? 60000 : (long)ms;
}

unsigned hpo_api_port(struct hpo_api *api)
{
    return api->port;
}

size_t hpo_api_inflight(struct hpo_api *api)
{
    return api->inflight;
}

void hpo_api_quiesce(struct hpo_api *api)
{
    if (api->quiesced_fd < 0) {
        api->quiesced_fd = MHD_quiesce_daemon(api->mhd);
    }
}

void hpo_api_stop(struct hpo_api *api)
{
    if (api == NULL) {
        return;
    }
    MHD_stop_daemon(api->mhd);
    if (api->quiesced_fd >= 0) {
        close(api->quiesced_fd);
    }
    free(api);
}

void hpo_api_stats(struct hpo_api *api, struct hpo_api_stats *ret)
{
    *ret = api->stats;
}

void hpo_api_set_tokens(struct hpo_api *api, const struct hpo_tokens *tokens)
{
    api->tokens = tokens;
}

void hpo_api_sweep(struct hpo_api *api)
{
    size_t n = hpo__conns_sweep(&api->conns, now_us() / 1000);

    if (n > 0) {
        hpo_log(HPO_LOG_NOTICE, "closed %zu connection(s) whose request head took over %u s",
                n, api->conns.head_timeout_s);
    }
}
