/*
** events.h: the dashboard's server-sent events (GET /v1/studies/{study}/events,
** docs/API.md "Dashboard endpoints"), api-internal: http.c opens a stream and
** feeds the clock and the writes; this file keeps the streams.
**
** No thread per stream: a stream's connection stays suspended in MHD while
** it has nothing to send. About once a second (hpo__events_tick), and right
** after a write request on its study finishes (hpo__events_poke), a parked
** stream gets one job on a worker that reads the study's pulse
** (hpo_service_pulse); the job's done callback resumes the connection only
** when there is an event or a heartbeat to write. Every call here is safe
** from any thread (MHD's, the workers', the loop's): events.c says who owns
** what.
*/
#ifndef HPO_API_EVENTS_H
#define HPO_API_EVENTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../service/service.h"
#include "api.h"

struct MHD_Connection;
struct MHD_Response;
struct hpo__events;

/* At most this many open streams; one more is 503 unavailable. */
#define HPO_EVENTS_MAX 64
/* A comment line after this long without an event (keeps proxies and MHD's idle timeout off). */
#define HPO_EVENTS_HEARTBEAT_MS 15000
/* The reconnection delay the stream asks of EventSource clients (`retry:`). */
#define HPO_EVENTS_RETRY_MS 2000

struct hpo__events_config {
    struct hpo_service *service;
    void (*submit)(void *ctx, struct hpo_job *job);
    void *ctx;
    atomic_size_t *inflight; /* the api's count of jobs in flight (a stream's job is one) */
    /*
    ** Several daemons: whether the study is served here (a worker asks before
    ** each read; false ends the stream); NULL: always.
    */
    bool (*served)(void *ctx, const char *study);
    void *served_ctx;
};

struct hpo__events *hpo__events_new(const struct hpo__events_config *cfg);
/* Free the list; call once MHD has destroyed every stream's response. Accepts NULL. */
void hpo__events_free(struct hpo__events *ev);

/*
** Check a request's query (`from`, nothing else) and Last-Event-ID before
** anything is read; false with `err` filled (invalid_argument). `ret_from`
** and `ret_hash` / `ret_have_hash` get where the stream starts.
*/
struct hpo__events_start {
    int64_t from;
    uint64_t hash;
    bool have_hash;
};
bool hpo__events_check(struct MHD_Connection *conn, struct hpo__events_start *ret,
        struct hpo_error *err);

/* True when another stream may open. */
bool hpo__events_room(struct hpo__events *ev);

/*
** The response of a new stream on `study` whose pulse is `first` (read by a
** job just before): its first event is written at once unless Last-Event-ID
** named this very state. NULL on out of memory or no room.
*/
struct MHD_Response *hpo__events_open(struct hpo__events *ev, struct MHD_Connection *conn,
        const char *study, const struct hpo__events_start *start,
        const struct hpo_service_pulse *first);

/* About once a second: every parked stream reads its study again. */
void hpo__events_tick(struct hpo__events *ev);
/* A write request on `study` finished: its streams read it now. */
void hpo__events_poke(struct hpo__events *ev, const char *study);
/* End every stream (new tokens): each ends after what it holds is sent. */
void hpo__events_end_all(struct hpo__events *ev);
/* The server stops: end every stream, and any opened from now on after its first event. */
void hpo__events_close(struct hpo__events *ev);
/* Open streams (for tests and /metrics). */
size_t hpo__events_count(struct hpo__events *ev);

#endif
