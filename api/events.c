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
**
** Threads (docs/STYLE.md rules 33-35): stream_read and stream_free run on
** the connection's MHD thread, the jobs' work and done on dispatcher
** workers, hpo__events_poke on a worker or an HTTP thread (the write's),
** tick, end_all and close on the libuv loop thread. `ev->lock` guards the
** list, the count, `closed` and every stream's flags. A stream's buffer and
** pulse fields belong to whoever the flags say: its job while `busy`
** (always with `parked`: the connection is suspended), else the MHD thread
** in stream_read. No lock is held while calling into MHD or submitting a
** job (submit may run the job at once on another thread, whose done takes
** the lock). A parked stream is resumed by exactly one party, the one that
** clears `parked` under the lock; until MHD runs the resume the connection
** stays suspended, so MHD cannot free the stream in between.
*/
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "../core/options.h"
#include "../core/util.h"
#include "events.h"
#include "loops.h"

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
    /* Under ev->lock: */
    bool parked;         /* suspended (or about to be), nothing to write */
    bool busy;           /* a job reads the pulse (only while parked) */
    bool due;            /* a write on the study finished while busy or writing */
    bool ending;         /* write what is left, then end */
};

struct hpo__events {
    struct hpo__events_config cfg;
    pthread_mutex_t lock; /* the list, n, closed, every stream's flags */
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
    struct hpo__events *ev = st->ev;
    struct hpo_service_pulse p;
    uint64_t now = now_ms();
    bool ending;

    pthread_mutex_lock(&ev->lock);
    ending = st->ending;
    pthread_mutex_unlock(&ev->lock);
    if (ending) {
        return;
    }
    if (ev->cfg.served != NULL && !ev->cfg.served(ev->cfg.served_ctx, st->study)) {
        /* Several daemons: another one owns the study now; the client reconnects. */
        pthread_mutex_lock(&ev->lock);
        st->ending = true;
        pthread_mutex_unlock(&ev->lock);
    } else if (hpo_service_pulse(ev->cfg.service, st->study, &p) < 0) {
        put_text(st, "event: gone\ndata: {}\n\n");
        pthread_mutex_lock(&ev->lock);
        st->ending = true;
        pthread_mutex_unlock(&ev->lock);
    } else if (put_pulse(st, &p)) {
        st->sent_ms = now;
    } else if (now - st->sent_ms >= HPO_EVENTS_HEARTBEAT_MS) {
        put_text(st, ": heartbeat\n\n");
        st->sent_ms = now;
    }
}

/* Claim a parked, idle stream for a job (ev->lock held); submit() it after unlocking. */
static void claim(struct stream *st)
{
    st->busy = true;
    st->due = false;
}

/* Hand a claimed stream's job to a worker (no lock held: its done may run at once). */
static void submit(struct stream *st)
{
    st->job.work = pulse_work;
    st->job.key = NULL;
    atomic_fetch_add(st->ev->cfg.inflight, 1);
    st->ev->cfg.submit(st->ev->cfg.ctx, &st->job);
}

/*
** Unpark a parked stream (ev->lock held); the caller resumes the returned
** connection after unlocking, and touches the stream no more.
*/
static struct MHD_Connection *unpark(struct stream *st)
{
    st->parked = false;
    return st->conn;
}

/* The job is done (worker thread): resume the connection, or read again, or stay parked. */
static void pulse_done(struct hpo_job *job)
{
    struct stream *st = stream_of_job(job);
    struct hpo__events *ev = st->ev;
    struct MHD_Connection *resume = NULL;
    bool again = false;

    pthread_mutex_lock(&ev->lock);
    st->busy = false;
    if (st->len > st->off || st->ending) {
        resume = unpark(st);
    } else if (st->due) {
        claim(st);
        again = true;
    }
    pthread_mutex_unlock(&ev->lock);
    if (resume != NULL) {
        hpo__loops_resume(resume); /* from now on the stream is MHD's thread's */
    } else if (again) {
        submit(st);
    }
    /* Last: a stop waits for this count before it stops MHD (no connection left suspended). */
    atomic_fetch_sub(ev->cfg.inflight, 1);
}

/*
** MHD asks for the next bytes (the connection's MHD thread). With nothing
** to write the connection is suspended (parked) until a job finds
** something. Suspended before `parked` is set: whoever sees `parked` may
** resume it at once.
*/
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *st = cls;
    struct hpo__events *ev = st->ev;
    size_t n;
    bool ending, job = false;

    (void)pos;
    /* Not parked, so no job runs: the buffer is this thread's. */
    if (st->off < st->len) {
        n = st->len - st->off < max ? st->len - st->off : max;
        memcpy(buf, st->buf + st->off, n);
        st->off += n;
        if (st->off == st->len) {
            st->off = st->len = 0;
        }
        return (ssize_t)n;
    }
    pthread_mutex_lock(&ev->lock);
    ending = st->ending;
    pthread_mutex_unlock(&ev->lock);
    if (ending) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    MHD_suspend_connection(st->conn);
    pthread_mutex_lock(&ev->lock);
    if (st->ending) {
        /* Ended between the two looks: not parked; resumed below, then asked again. */
        ending = true;
    } else {
        st->parked = true;
        if (st->due && !st->busy) {
            claim(st);
            job = true;
        }
    }
    pthread_mutex_unlock(&ev->lock);
    if (ending) {
        hpo__loops_resume(st->conn);
    } else if (job) {
        submit(st);
    }
    return 0;
}

/* MHD destroyed the response: the connection is gone (its MHD thread; never parked). */
static void stream_free(void *cls)
{
    struct stream *st = cls;
    struct hpo__events *ev = st->ev;

    pthread_mutex_lock(&ev->lock);
    if (st->prev != NULL) {
        st->prev->next = st->next;
    } else {
        ev->head = st->next;
    }
    if (st->next != NULL) {
        st->next->prev = st->prev;
    }
    ev->n--;
    pthread_mutex_unlock(&ev->lock);
    free(st->study);
    free(st);
}

struct hpo__events *hpo__events_new(const struct hpo__events_config *cfg)
{
    struct hpo__events *ev = calloc(1, sizeof(*ev));

    if (ev != NULL) {
        ev->cfg = *cfg;
        pthread_mutex_init(&ev->lock, NULL);
    }
    return ev;
}

void hpo__events_free(struct hpo__events *ev)
{
    if (ev != NULL) {
        pthread_mutex_destroy(&ev->lock);
        free(ev);
    }
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

bool hpo__events_room(struct hpo__events *ev)
{
    return hpo__events_count(ev) < HPO_EVENTS_MAX;
}

struct MHD_Response *hpo__events_open(struct hpo__events *ev, struct MHD_Connection *conn,
        const char *study, const struct hpo__events_start *start,
        const struct hpo_service_pulse *first)
{
    struct stream *st;
    struct MHD_Response *resp;
    char retry[32];

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
    snprintf(retry, sizeof(retry), "retry: %d\n\n", HPO_EVENTS_RETRY_MS);
    put_text(st, retry);
    put_pulse(st, first);
    st->sent_ms = now_ms();
    /* Listed (and counted against the room) before MHD may call stream_read or stream_free. */
    pthread_mutex_lock(&ev->lock);
    if (ev->n >= HPO_EVENTS_MAX) {
        pthread_mutex_unlock(&ev->lock);
        free(st->study);
        free(st);
        return NULL;
    }
    st->ending = ev->closed; /* never parked: MHD must not stop with a suspended connection */
    st->next = ev->head;
    if (ev->head != NULL) {
        ev->head->prev = st;
    }
    ev->head = st;
    ev->n++;
    pthread_mutex_unlock(&ev->lock);
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st,
            stream_free);
    if (resp == NULL) {
        stream_free(st);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return resp;
}

/*
** The streams (of `study`; NULL: every one) that are parked and idle get a
** job; with `mark`, the others of `study` read again when they can (due).
** Claimed under the lock, submitted after it (at most HPO_EVENTS_MAX).
*/
static void read_again(struct hpo__events *ev, const char *study, bool mark)
{
    struct stream *go[HPO_EVENTS_MAX];
    size_t n = 0;

    pthread_mutex_lock(&ev->lock);
    for (struct stream *st = ev->head; st != NULL; st = st->next) {
        if (st->ending || (study != NULL && strcmp(st->study, study) != 0)) {
            continue;
        }
        if (st->parked && !st->busy && n < HPO_EVENTS_MAX) {
            claim(st);
            go[n++] = st;
        } else if (mark) {
            st->due = true;
        }
    }
    pthread_mutex_unlock(&ev->lock);
    for (size_t i = 0; i < n; i++) {
        submit(go[i]); /* claimed and parked: MHD cannot free it meanwhile */
    }
}

void hpo__events_tick(struct hpo__events *ev)
{
    read_again(ev, NULL, false);
}

void hpo__events_poke(struct hpo__events *ev, const char *study)
{
    read_again(ev, study, true);
}

/* End every stream; with `close`, also those opened from now on. */
static void end_streams(struct hpo__events *ev, bool close)
{
    struct MHD_Connection *resume[HPO_EVENTS_MAX];
    size_t n = 0;

    pthread_mutex_lock(&ev->lock);
    if (close) {
        ev->closed = true;
    }
    for (struct stream *st = ev->head; st != NULL; st = st->next) {
        st->ending = true;
        if (st->parked && !st->busy && n < HPO_EVENTS_MAX) {
            resume[n++] = unpark(st);
        }
        /* A busy one is resumed by its job's done; an unparked one ends at its next read. */
    }
    pthread_mutex_unlock(&ev->lock);
    for (size_t i = 0; i < n; i++) {
        hpo__loops_resume(resume[i]);
    }
}

void hpo__events_close(struct hpo__events *ev)
{
    end_streams(ev, true);
}

void hpo__events_end_all(struct hpo__events *ev)
{
    end_streams(ev, false);
}

size_t hpo__events_count(struct hpo__events *ev)
{
    size_t n;

    pthread_mutex_lock(&ev->lock);
    n = ev->n;
    pthread_mutex_unlock(&ev->lock);
    return n;
}
