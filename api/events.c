/*
** events.c: the dashboard's server-sent events (events.h; docs/API.md
** "Dashboard endpoints").
**
** A stream's event is the study's pulse (counts by state, total, best,
** columns cursor) whenever it differs from the last one sent, with the id
** "<cursor>.<hash>" (the hash is over the pulse, so it means the same
** across restarts): a client that reconnects with Last-Event-ID gets an
** event at once only if the study changed meanwhile, and `from` (the data's
** field) says where to ask /columns again.
*/
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "../core/options.h"
#include "../core/util.h"
#include "events.h"

struct stream {
    struct hpo__events *ev;
    struct stream *prev, *next;
    struct MHD_Connection *conn;
    struct hpo_job job;
    char *study;
    int64_t from;        /* where the client's columns start to be stale */
    uint64_t hash;       /* the pulse last sent (or named by Last-Event-ID) */
    bool have_hash;
    uint64_t sent_ms;    /* when anything was last written */
    char buf[1024];      /* what is to be written */
    size_t len, off;
    bool parked;         /* suspended, nothing to write */
    bool busy;           /* a job reads the pulse */
    bool due;            /* a write on the study finished while busy or writing */
    bool ending;         /* write what is left, then end */
};

struct hpo__events {
    struct hpo__events_config cfg;
    struct stream *head;
    size_t n;
    bool closed; /* the server stops: a stream opened now ends after its first event */
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct stream *stream_of_job(struct hpo_job *job)
{
    return (struct stream *)((char *)job - offsetof(struct stream, job));
}

/* FNV-1a over the pulse's numbers. */
static uint64_t pulse_hash(const struct hpo_service_pulse *p)
{
    int64_t v[8] = { p->total, p->cursor, p->best, p->counts[0], p->counts[1], p->counts[2],
        p->counts[3], p->counts[4] };
    const unsigned char *b = (const unsigned char *)v;
    uint64_t h = 14695981039346656037u;

    for (size_t i = 0; i < sizeof(v); i++) {
        h = (h ^ b[i]) * 1099511628211u;
    }
    return h;
}

/* Write the pulse as an event into st->buf when it is new; true when written. */
static bool put_pulse(struct stream *st, const struct hpo_service_pulse *p)
{
    uint64_t h = pulse_hash(p);
    int n;

    if (st->have_hash && h == st->hash) {
        return false;
    }
    n = snprintf(st->buf + st->len, sizeof(st->buf) - st->len,
            "id: %" PRId64 ".%016" PRIx64 "\nevent: study\ndata: {\"from\":%" PRId64
            ",\"total\":%" PRId64 ",\"cursor\":%" PRId64 ",\"best\":%" PRId64
            ",\"trials\":{\"waiting\":%" PRId64 ",\"running\":%" PRId64 ",\"complete\":%" PRId64
            ",\"pruned\":%" PRId64 ",\"failed\":%" PRId64 "}}\n\n",
            p->cursor, h, st->from < p->total ? st->from : p->total, p->total, p->cursor,
            p->best, p->counts[0], p->counts[1], p->counts[2], p->counts[3], p->counts[4]);
    if (n < 0 || (size_t)n >= sizeof(st->buf) - st->len) {
        return false; /* cannot happen: the longest event is some 300 bytes */
    }
    st->len += (size_t)n;
    st->hash = h;
    st->have_hash = true;
    st->from = p->cursor;
    return true;
}

static void put_text(struct stream *st, const char *text)
{
    size_t n = strlen(text);

    if (n <= sizeof(st->buf) - st->len) {
        memcpy(st->buf + st->len, text, n);
        st->len += n;
    }
}

/* The job: read the study's pulse (worker thread; the connection is suspended). */
static void pulse_work(struct hpo_job *job)
{
    struct stream *st = stream_of_job(job);
    struct hpo_service_pulse p;
    uint64_t now = now_ms();

    if (st->ending) {
        return;
    }
    if (hpo_service_pulse(st->ev->cfg.service, st->study, &p) < 0) {
        put_text(st, "event: gone\ndata: {}\n\n");
        st->ending = true;
    } else if (put_pulse(st, &p)) {
        st->sent_ms = now;
    } else if (now - st->sent_ms >= HPO_EVENTS_HEARTBEAT_MS) {
        put_text(st, ": heartbeat\n\n");
        st->sent_ms = now;
    }
}

static void submit(struct stream *st)
{
    st->busy = true;
    st->due = false;
    st->job.work = pulse_work;
    st->job.key = NULL;
    (*st->ev->cfg.inflight)++;
    st->ev->cfg.submit(st->ev->cfg.ctx, &st->job);
}

static void wake(struct stream *st)
{
    st->parked = false;
    MHD_resume_connection(st->conn);
}

static void pulse_done(struct hpo_job *job)
{
    struct stream *st = stream_of_job(job);

    (*st->ev->cfg.inflight)--;
    st->busy = false;
    if (st->len > st->off || st->ending) {
        wake(st);
    } else if (st->due) {
        submit(st);
    }
}

/*
** MHD asks for the next bytes (loop thread). With nothing to write the
** connection is suspended (parked) until a job finds something.
*/
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *st = cls;
    size_t n;

    (void)pos;
    if (st->off < st->len) {
        n = st->len - st->off < max ? st->len - st->off : max;
        memcpy(buf, st->buf + st->off, n);
        st->off += n;
        if (st->off == st->len) {
            st->off = st->len = 0;
        }
        return (ssize_t)n;
    }
    if (st->ending) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    st->parked = true;
    MHD_suspend_connection(st->conn);
    if (st->due && !st->busy) {
        submit(st);
    }
    return 0;
}

/* MHD destroyed the response: the connection is gone (loop thread). */
static void stream_free(void *cls)
{
    struct stream *st = cls;
    struct hpo__events *ev = st->ev;

    if (st->prev != NULL) {
        st->prev->next = st->next;
    } else {
        ev->head = st->next;
    }
    if (st->next != NULL) {
        st->next->prev = st->prev;
    }
    ev->n--;
    free(st->study);
    free(st);
}

struct hpo__events *hpo__events_new(const struct hpo__events_config *cfg)
{
    struct hpo__events *ev = calloc(1, sizeof(*ev));

    if (ev != NULL) {
        ev->cfg = *cfg;
    }
    return ev;
}

void hpo__events_free(struct hpo__events *ev)
{
    free(ev);
}

static enum MHD_Result query_check(void *cls, enum MHD_ValueKind kind, const char *key,
        const char *value)
{
    struct hpo_error *err = cls;

    (void)kind;
    (void)value;
    if (strcmp(key, "from") != 0 && err->code == HPO_OK) {
        char bad[130];
        snprintf(bad, sizeof(bad), "%.128s", key);
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, bad, "unknown query parameter '%s'",
                bad);
    }
    return MHD_YES;
}

bool hpo__events_check(struct MHD_Connection *conn, struct hpo__events_start *ret,
        struct hpo_error *err)
{
    const char *from = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "from");
    const char *last = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");

    memset(ret, 0, sizeof(*ret));
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_check, err);
    if (err->code != HPO_OK) {
        return false;
    }
    if (from != NULL && (!hpo_parse_count(from, &ret->from) || ret->from < 0)) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "from",
                "from must be a non-negative integer");
        return false;
    }
    if (last != NULL) {
        /* "<cursor>.<16 hex digits>" as sent; anything else is ignored (a fresh start). */
        const char *dot = strchr(last, '.');
        char num[24];
        int64_t cursor;
        uint64_t h = 0;
        size_t k = dot != NULL ? (size_t)(dot - last) : 0;
        bool ok = dot != NULL && k > 0 && k < sizeof(num) && strlen(dot + 1) == 16;
        if (ok) {
            memcpy(num, last, k);
            num[k] = '\0';
            ok = hpo_parse_count(num, &cursor) && cursor >= 0;
        }
        for (size_t i = 1; ok && i <= 16; i++) {
            int d = hpo_hex_digit(dot[i]);
            ok = d >= 0;
            h = h << 4 | (uint64_t)(d < 0 ? 0 : d);
        }
        if (ok) {
            ret->from = cursor;
            ret->hash = h;
            ret->have_hash = true;
        }
    }
    return true;
}

bool hpo__events_room(const struct hpo__events *ev)
{
    return ev->n < HPO_EVENTS_MAX;
}

struct MHD_Response *hpo__events_open(struct hpo__events *ev, struct MHD_Connection *conn,
        const char *study, const struct hpo__events_start *start,
        const struct hpo_service_pulse *first)
{
    struct stream *st;
    struct MHD_Response *resp;
    char retry[32];

    if (!hpo__events_room(ev)) {
        return NULL;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL || (st->study = strdup(study)) == NULL) {
        free(st);
        return NULL;
    }
    st->ev = ev;
    st->conn = conn;
    st->from = start->from;
    st->hash = start->hash;
    st->have_hash = start->have_hash;
    st->job.done = pulse_done;
    st->ending = ev->closed; /* never parked: MHD must not stop with a suspended connection */
    snprintf(retry, sizeof(retry), "retry: %d\n\n", HPO_EVENTS_RETRY_MS);
    put_text(st, retry);
    put_pulse(st, first);
    st->sent_ms = now_ms();
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st,
            stream_free);
    if (resp == NULL) {
        free(st->study);
        free(st);
        return NULL;
    }
    st->next = ev->head;
    if (ev->head != NULL) {
        ev->head->prev = st;
    }
    ev->head = st;
    ev->n++;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return resp;
}

void hpo__events_tick(struct hpo__events *ev)
{
    for (struct stream *st = ev->head; st != NULL; st = st->next) {
        if (st->parked && !st->busy && !st->ending) {
            submit(st);
        }
    }
}

void hpo__events_poke(struct hpo__events *ev, const char *study)
{
    for (struct stream *st = ev->head; st != NULL; st = st->next) {
        if (strcmp(st->study, study) != 0 || st->ending) {
            continue;
        }
        if (st->parked && !st->busy) {
            submit(st);
        } else {
            st->due = true;
        }
    }
}

void hpo__events_close(struct hpo__events *ev)
{
    ev->closed = true;
    hpo__events_end_all(ev);
}

void hpo__events_end_all(struct hpo__events *ev)
{
    for (struct stream *st = ev->head; st != NULL; st = st->next) {
        st->ending = true;
        if (st->parked && !st->busy) {
            wake(st);
        }
    }
}

size_t hpo__events_count(const struct hpo__events *ev)
{
    return ev->n;
}
