/*
** cluster.c: the daemon's side of several daemons on one PostgreSQL
** (docs/CLUSTER.md): where each request is served (here, after making sure
** the study's copy is the one loaded at its current epoch, or forwarded to
** the owner), the gathering of study lists, and the cluster's /metrics and
** /healthz parts.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../api/forward.h"
#include "../core/log.h"
#include "../service/service.h"
#include "../storage/cluster.h"
#include "cluster.h"

/* Whether the forwarded mark is ours: the cluster token, compared in constant time. */
static bool mark_ok(const struct hpo_daemon_cluster *dc, const char *mark)
{
    size_t n = strlen(dc->mark);
    unsigned char diff = 0;

    if (mark == NULL || strlen(mark) != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        diff |= (unsigned char)(mark[i] ^ dc->mark[i]);
    }
    return diff == 0;
}

/* Answer the call with an error (JSON, the API's error body). */
static int refuse(struct hpo_api_call *call, enum hpo_code code, const char *message)
{
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", hpo_code_name(code), "message",
            message);

    call->status = hpo_code_status(code);
    call->reply = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    call->reply_len = call->reply != NULL ? strlen(call->reply) : 0;
    snprintf(call->reply_type, sizeof(call->reply_type), "application/json");
    json_decref(body);
    return 1;
}

static bool owner_alive(void *ctx, const char *url)
{
    return hpo_cluster_live(ctx, url);
}

/*
** Proxy the call to `url` (the owner) and answer with its reply. *unsent
** (may be NULL): the owner could not be reached, nothing was sent.
*/
static int forward(struct hpo_daemon_cluster *dc, struct hpo_api_call *call, const char *url,
        bool *unsent)
{
    struct hpo_forward_request rq = {
        .base_url = url,
        .method = call->method,
        .target = call->target,
        .authorization = call->authorization,
        .content_type = call->content_type,
        .accept = call->accept,
        .mark = dc->mark,
        .body = call->body,
        .len = call->len,
        .alive = owner_alive,
        .alive_ctx = dc->cluster,
    };
    struct hpo_forward_reply rep;
    struct hpo_error err = { 0 };

    if (unsent != NULL) {
        *unsent = false;
    }
    if (hpo_forward(&rq, &rep, &err) < 0) {
        if (unsent != NULL) {
            *unsent = rep.unsent;
        }
        hpo_forward_reply_free(&rep);
        hpo_cluster_poke(dc->cluster); /* the owner may be gone: look again */
        return refuse(call, err.code, err.message);
    }
    call->status = (int)rep.status;
    call->reply = rep.body;
    call->reply_len = rep.len;
    call->link = rep.link;
    snprintf(call->reply_type, sizeof(call->reply_type), "%s", rep.content_type);
    snprintf(call->total, sizeof(call->total), "%s", rep.total);
    snprintf(call->owner, sizeof(call->owner), "%s", rep.owner[0] != '\0' ? rep.owner : url);
    if (call->reply == NULL) {
        call->reply = strdup("");
    }
    return 1;
}

/* A study create's name, from its body ("" when there is none to read). */
static void create_name(const struct hpo_api_call *call, char *name, size_t len)
{
    json_t *body = call->body != NULL ? json_loadb(call->body, call->len, 0, NULL) : NULL;
    const char *n = json_string_value(json_object_get(body, "name"));

    snprintf(name, len, "%s", n != NULL ? n : "");
    json_decref(body);
}

static void ensure_one(void *ctx, const char *name, int64_t epoch)
{
    struct hpo_daemon_cluster *dc = ctx;
    struct hpo_error err = { 0 };

    if (hpo_service_ensure(dc->service, name, epoch, &err) < 0) {
        hpo_log(HPO_LOG_WARNING, "cannot load study '%s' this daemon owns: %s", name,
                err.message);
    }
}

/* Keep a study in memory unless another daemon owns it (a new one is not in the view yet). */
static bool keep(void *ctx, const char *name)
{
    struct hpo_daemon_cluster *dc = ctx;
    char url[8];
    int64_t epoch;

    return hpo_cluster_locate(dc->cluster, name, &epoch, url, sizeof(url)) !=
            HPO_CLUSTER_THERE;
}

void hpo_daemon_cluster_sync(struct hpo_daemon_cluster *dc)
{
    hpo_cluster_each_owned(dc->cluster, ensure_one, dc);
    hpo_service_retain(dc->service, keep, dc);
}

static bool lease_ok(struct hpo_daemon_cluster *dc)
{
    struct hpo_cluster_stats st;

    hpo_cluster_stats(dc->cluster, &st);
    return st.lease_ok;
}

bool hpo_daemon_cluster_marked(const struct hpo_daemon_cluster *dc, const char *mark)
{
    return mark_ok(dc, mark);
}

int hpo_daemon_cluster_route(struct hpo_daemon_cluster *dc, struct hpo_api_call *call)
{
    bool forwarded = mark_ok(dc, call->forwarded);
    bool create = call->op == HPO_SERVICE_STUDY_CREATE;
    char name[512];
    char url[256];
    int64_t epoch = 0;
    bool unsent = false;
    enum hpo_cluster_where where;

    if (call->op == HPO_SERVICE_STUDY_LIST) {
        /*
        ** A study just handed to this daemon is in no daemon's list until
        ** this one's view has it: look at the owners now (unless the
        ** database is unreachable: then the view stays as it is).
        */
        if (lease_ok(dc)) {
            hpo_cluster_refresh(dc->cluster);
        }
        hpo_daemon_cluster_sync(dc);
        return 0; /* this daemon's studies; gather adds the others' */
    }
    if (create) {
        create_name(call, name, sizeof(name));
    } else {
        snprintf(name, sizeof(name), "%s", call->study != NULL ? call->study : "");
    }
    if (name[0] == '\0') {
        return 0; /* answered here: a create without a usable name is refused here */
    }
    if (call->recheck) {
        return hpo_cluster_moved(dc->cluster, name) ? 1 : 0;
    }
    where = hpo_cluster_locate(dc->cluster, name, &epoch, url, sizeof(url));
    for (int attempt = 0;; attempt++) {
        if (where == HPO_CLUSTER_UNKNOWN ||
                (where == HPO_CLUSTER_THERE && (forwarded || !url[0] || attempt > 0))) {
            /* New to this daemon's view, or its owner moved: look in the database. */
            where = hpo_cluster_lookup(dc->cluster, name, &epoch, url, sizeof(url));
        }
        if (where == HPO_CLUSTER_HERE) {
            struct hpo_error err = { 0 };

            snprintf(call->owner, sizeof(call->owner), "%s", hpo_cluster_url(dc->cluster));
            if (hpo_service_ensure(dc->service, name, epoch, &err) < 0 && !call->peek) {
                return refuse(call, err.code, err.message);
            }
            return 0;
        }
        if (where == HPO_CLUSTER_UNSURE && !create &&
                !hpo_service_holds(dc->service, name)) {
            /* Maybe created by another daemon since this one's view was read: not 404. */
            return refuse(call, HPO_UNAVAILABLE,
                    "the studies' owners cannot be read now, so the study's owner is unknown;"
                    " retry");
        }
        if (where == HPO_CLUSTER_UNSURE) {
            /*
            ** Created here since the view was read (served here, as by one
            ** daemon), or a create (the database settles a name taken twice).
            */
            where = HPO_CLUSTER_UNKNOWN;
        }
        if (where == HPO_CLUSTER_UNKNOWN && !lease_ok(dc)) {
            /*
            ** No heartbeat within the lease (the database is unreachable): the
            ** view is no guide, and the study may well exist (owned here or
            ** elsewhere). Not "not found": retry.
            */
            return refuse(call, HPO_UNAVAILABLE,
                    "the database is unreachable, so the study's owner is unknown; retry");
        }
        if (where == HPO_CLUSTER_UNKNOWN) {
            if (create && !forwarded &&
                    !hpo_cluster_preferred(dc->cluster, name, url, sizeof(url))) {
                if (url[0] == '\0') {
                    return refuse(call, HPO_UNAVAILABLE, "no live daemon to create the study on");
                }
                return call->peek ? 1 : forward(dc, call, url, NULL);
            }
            if (create) {
                snprintf(call->owner, sizeof(call->owner), "%s", hpo_cluster_url(dc->cluster));
            }
            return 0; /* created here, or not_found */
        }
        if (call->peek) {
            snprintf(call->owner, sizeof(call->owner), "%s", url); /* "" when gone */
            return 1;
        }
        if (forwarded) {
            /*
            ** A forwarded request is never forwarded again: the sender looks
            ** again (X-Hpod-Owner: whom this daemon sees as the owner) or the
            ** client retries.
            */
            refuse(call, HPO_UNAVAILABLE,
                    "this daemon does not own the study (its owner just changed); retry");
            snprintf(call->owner, sizeof(call->owner), "%s", url[0] ? url : "unknown");
            return 1;
        }
        if (url[0] == '\0') {
            return refuse(call, HPO_UNAVAILABLE,
                    "the study's owner is gone; another daemon takes it over within seconds;"
                    " retry");
        }
        forward(dc, call, url, &unsent);
        if (attempt > 0 || call->status != 503 ||
                (!unsent && (call->owner[0] == '\0' || strcmp(call->owner, url) == 0))) {
            return 1;
        }
        /*
        ** The owner moved while the request was on its way, or is gone (its
        ** port closed: nothing was sent): look again, once.
        */
        free(call->reply);
        free(call->link);
        call->reply = NULL;
        call->link = NULL;
        call->owner[0] = '\0';
        call->total[0] = '\0';
    }
}

/* ---- study lists ---------------------------------------------------------- */

struct gather {
    struct hpo_daemon_cluster *dc;
    struct hpo_api_call *call;
    char (*urls)[256];
    size_t n, cap;
};

static void add_peer(void *ctx, const char *url)
{
    struct gather *g = ctx;

    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        char(*u)[256] = realloc(g->urls, cap * sizeof(*u));

        if (u == NULL) {
            return;
        }
        g->urls = u;
        g->cap = cap;
    }
    snprintf(g->urls[g->n++], 256, "%s", url);
}

static int by_name(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));

    return strcmp(x != NULL ? x : "", y != NULL ? y : "");
}

/*
** Add each of the g->n daemons' studies (asked as forwarded: their own) to
** `studies`. Returns whether every daemon answered.
*/
static bool ask_daemons(struct gather *g, json_t *studies)
{
    bool all = true;

    for (size_t i = 0; i < g->n; i++) {
        struct hpo_forward_request rq = { .base_url = g->urls[i], .method = "GET",
            .target = g->call->target, .authorization = g->call->authorization,
            .accept = "application/json", .mark = g->dc->mark, .alive = owner_alive,
            .alive_ctx = g->dc->cluster };
        struct hpo_forward_reply rep;
        struct hpo_error err = { 0 };
        json_t *doc = NULL;

        if (hpo_forward(&rq, &rep, &err) == 0 && rep.status == 200) {
            doc = json_loadb(rep.body, rep.len, 0, NULL);
        }
        if (doc == NULL) {
            hpo_log(HPO_LOG_WARNING, "study list: no answer from %s, its studies are left out",
                    g->urls[i]);
            all = false;
        }
        json_array_extend(studies, json_object_get(doc, "studies"));
        json_decref(doc);
        hpo_forward_reply_free(&rep);
    }
    return all;
}

/* In name order, as one daemon lists them, each once (one that moved meanwhile). */
static void sort_unique(json_t *studies)
{
    size_t n = json_array_size(studies), kept = 0;
    json_t **all = malloc((n ? n : 1) * sizeof(*all));

    if (all == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        all[i] = json_incref(json_array_get(studies, i));
    }
    qsort(all, n, sizeof(*all), by_name);
    json_array_clear(studies);
    for (size_t i = 0; i < n; i++) {
        if (kept > 0 && by_name(&all[i], &all[i - 1]) == 0) {
            json_decref(all[i]);
            continue;
        }
        json_array_append_new(studies, all[i]);
        kept++;
    }
    free(all);
}

struct missing {
    const char **names; /* the list's, sorted */
    size_t n;
    size_t missing;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void count_missing(void *ctx, const char *name)
{
    struct missing *m = ctx;

    if (bsearch(&name, m->names, m->n, sizeof(*m->names), cmp_str) == NULL) {
        m->missing++;
    }
}

/* How many studies a live daemon owns in the view are not in `studies` (sorted). */
static size_t missing_studies(struct hpo_daemon_cluster *dc, json_t *studies)
{
    struct missing m = { .n = json_array_size(studies) };

    m.names = malloc((m.n ? m.n : 1) * sizeof(*m.names));
    if (m.names == NULL) {
        return 0;
    }
    for (size_t i = 0; i < m.n; i++) {
        const char *s = json_string_value(json_object_get(json_array_get(studies, i), "name"));

        m.names[i] = s != NULL ? s : "";
    }
    hpo_cluster_each_served(dc->cluster, count_missing, &m);
    free(m.names);
    return m.missing;
}

void hpo_daemon_cluster_gather(struct hpo_daemon_cluster *dc, struct hpo_api_call *call,
        void *reply)
{
    json_t *studies = json_object_get(reply, "studies");
    struct gather g = { .dc = dc, .call = call };
    bool answered;

    if (mark_ok(dc, call->forwarded) || !json_is_array(studies)) {
        return; /* asked by another daemon: this one's studies only */
    }
    for (int attempt = 0;; attempt++) {
        g.n = 0;
        hpo_cluster_each_peer(dc->cluster, add_peer, &g);
        if (attempt > 0) {
            /* This daemon's part again too, as the others see it (forwarded). */
            add_peer(&g, hpo_cluster_url(dc->cluster));
            json_array_clear(studies);
        }
        answered = ask_daemons(&g, studies);
        sort_unique(studies);
        /*
        ** A study that moved between the daemons' answers is in neither:
        ** ask again (at most twice), once every view has it where it is now.
        ** Not when a daemon did not answer (its studies are left out, as are
        ** those of a daemon that just died until they are claimed), nor
        ** while the database is unreachable (the view stays as it is).
        */
        if (attempt == 2 || !answered || !lease_ok(dc) || missing_studies(dc, studies) == 0) {
            break;
        }
        hpo_cluster_refresh(dc->cluster);
    }
    free(g.urls);
}

/* ---- start, stop, observe ------------------------------------------------- */

/* The secret of --cluster-token-file: its first line. */
static int read_token(const char *path, char *out, size_t len, char *msg, size_t msg_len)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL) {
        int e = errno;
        char eb[128] = "";

        snprintf(msg, msg_len, "cannot read the cluster token file '%s': %s", path,
                strerror_r(e, eb, sizeof(eb)));
        return -e;
    }
    if (fgets(out, (int)len, f) == NULL) {
        out[0] = '\0';
    }
    fclose(f);
    n = strcspn(out, "\r\n");
    out[n] = '\0';
    if (n < 16) {
        snprintf(msg, msg_len, "the cluster token in '%s' must be at least 16 characters", path);
        return -EINVAL;
    }
    return 0;
}

int hpo_daemon_cluster_start(struct hpo_daemon_cluster *dc, struct hpo_storage *st,
        struct hpo_service *svc, const char *url, unsigned lease_ms, const char *token_file,
        char *msg, size_t msg_len)
{
    struct hpo_cluster_options opt = { .url = url, .lease_ms = lease_ms };
    struct hpo_error err = { 0 };
    int r;

    memset(dc, 0, sizeof(*dc));
    dc->service = svc;
    snprintf(dc->mark, sizeof(dc->mark), "1");
    if (token_file != NULL && token_file[0] != '\0') {
        r = read_token(token_file, dc->mark, sizeof(dc->mark), msg, msg_len);
        if (r < 0) {
            return r;
        }
    }
    r = hpo_forward_init();
    if (r < 0) {
        snprintf(msg, msg_len, "cannot set up libcurl for forwarding");
        return r;
    }
    r = hpo_cluster_start(st, &opt, &dc->cluster, &err);
    if (r < 0) {
        hpo_forward_cleanup();
        if (r == -ENOTSUP) {
            return r;
        }
        snprintf(msg, msg_len, "cannot join the daemons on the database: %s", err.message);
        return r;
    }
    return 0;
}

void hpo_daemon_cluster_stop(struct hpo_daemon_cluster *dc)
{
    if (dc->cluster == NULL) {
        return;
    }
    hpo_cluster_stop(dc->cluster);
    dc->cluster = NULL;
    hpo_forward_cleanup();
}

int hpo_daemon_cluster_metrics(struct hpo_daemon_cluster *dc, FILE *f)
{
    struct hpo_cluster_stats s;

    hpo_cluster_stats(dc->cluster, &s);
    fprintf(f,
            "# HELP hpod_cluster_owned_studies Studies this daemon owns.\n"
            "# TYPE hpod_cluster_owned_studies gauge\n"
            "hpod_cluster_owned_studies %zu\n"
            "# HELP hpod_cluster_live_daemons Live daemons on the database, this one included.\n"
            "# TYPE hpod_cluster_live_daemons gauge\n"
            "hpod_cluster_live_daemons %zu\n"
            "# HELP hpod_cluster_lease_ok Whether this daemon's heartbeat is within its lease.\n"
            "# TYPE hpod_cluster_lease_ok gauge\n"
            "hpod_cluster_lease_ok %d\n"
            "# HELP hpod_cluster_heartbeat_age_seconds Since the last heartbeat that went through.\n"
            "# TYPE hpod_cluster_heartbeat_age_seconds gauge\n"
            "hpod_cluster_heartbeat_age_seconds %.3f\n"
            "# HELP hpod_cluster_claims_total Studies this daemon took over.\n"
            "# TYPE hpod_cluster_claims_total counter\n"
            "hpod_cluster_claims_total %llu\n"
            "# HELP hpod_cluster_releases_total Studies this daemon handed over.\n"
            "# TYPE hpod_cluster_releases_total counter\n"
            "hpod_cluster_releases_total %llu\n"
            "# HELP hpod_cluster_lost_total Studies another daemon took from this one.\n"
            "# TYPE hpod_cluster_lost_total counter\n"
            "hpod_cluster_lost_total %llu\n"
            "# HELP hpod_cluster_fenced_writes_total Writes the database refused: the study had"
            " changed owner.\n"
            "# TYPE hpod_cluster_fenced_writes_total counter\n"
            "hpod_cluster_fenced_writes_total %llu\n"
            "# HELP hpod_cluster_db_round_trip_seconds The heartbeat's round trip to the"
            " database.\n"
            "# TYPE hpod_cluster_db_round_trip_seconds histogram\n",
            s.owned, s.live, s.lease_ok ? 1 : 0, (double)s.heartbeat_age_ms / 1000.0,
            (unsigned long long)s.claims, (unsigned long long)s.releases,
            (unsigned long long)s.lost, (unsigned long long)s.fenced);
    if (hpo_hist_write(f, "hpod_cluster_db_round_trip_seconds", "", s.db_rtt_us, 1e6) < 0) {
        return -EIO;
    }
    return hpo_forward_metrics_write(f);
}

void *hpo_daemon_cluster_health(struct hpo_daemon_cluster *dc)
{
    struct hpo_cluster_stats s;

    hpo_cluster_stats(dc->cluster, &s);
    return json_pack("{s:s,s:I,s:I,s:I,s:b,s:I,s:b,s:I}", "url", hpo_cluster_url(dc->cluster),
            "daemon_id", (json_int_t)s.daemon_id, "owned_studies", (json_int_t)s.owned,
            "live_daemons", (json_int_t)s.live, "lease_ok", s.lease_ok,
            "heartbeat_age_ms", (json_int_t)s.heartbeat_age_ms, "leaving", s.leaving,
            "fenced_writes", (json_int_t)s.fenced);
}
