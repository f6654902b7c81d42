/*
** conns.h: what http.c keeps per TCP connection to enforce the connection
** limits of docs/API.md "Access and TLS" that MHD has no option for:
**
**  - the request-head deadline: from the first byte of a request (data
**    received after the last request ended, while no request is being
**    served: the sweep asks the kernel, TCP_INFO's time since the last
**    data) to the end of its head, not reset by trickling bytes; a
**    connection over it is shut down (MHD then closes it);
**  - the reserve: MHD admits a few connections over max-connections; those
**    may only ask /healthz and /metrics, anything else gets 503;
**  - the per-client cap over every HTTP thread: each thread runs a daemon
**    of its own (loops.h), whose MHD_OPTION_PER_IP_CONNECTION_LIMIT counts
**    only its own connections.
**
** Internal to api/. MHD's threads add, remove and mark connections, the
** loop thread sweeps them: every record is read and written under `lock`.
*/
#ifndef HPO_CONNS_H
#define HPO_CONNS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

/* Connections admitted over max-connections, for /healthz and /metrics only. */
#define HPO_CONNS_RESERVE 8

/*
** MHD's own limit is set this far above max-connections: at its limit MHD
** stops accepting, which leaves clients hanging in the backlog, while
** hpo__conns_accept refuses (accepts and closes) past the reserve.
*/
#define HPO_CONNS_MARGIN (HPO_CONNS_RESERVE + 64)

/* Open connections from one address (the per-client cap). */
struct hpo__peer {
    struct hpo__peer *next;
    unsigned char addr[16]; /* IPv4 in the first 4 bytes (len 4), or IPv6 */
    unsigned len;
    unsigned n;
};

#define HPO_CONNS_PEER_BUCKETS 64

struct hpo__conn {
    struct hpo__conn *prev, *next;
    struct hpo__peer *peer; /* its address's count, or NULL (not counted) */
    int fd;
    int kick_fd;           /* its HTTP thread's kick (loops.h), for a resume from elsewhere */
    void *loop;            /* its HTTP thread's loop (hpo__loops_here) */
    uint64_t end_ms;       /* when the last request ended (served) */
    uint64_t head_seen_ms; /* when bytes of the next head were first seen; 0 = none yet */
    bool in_request;       /* between a head's end and its reply's end */
    bool served;           /* a request ended on it */
    bool reserve;          /* admitted over the limit */
    bool shut;             /* shut down by the sweep */
};

struct hpo__conns {
    /* MHD's threads add and remove connections, the loop thread sweeps: all under `lock`. */
    pthread_mutex_t lock;
    struct hpo__conn list; /* sentinel of a circular list */
    size_t n;
    unsigned max;            /* max-connections */
    unsigned head_timeout_s; /* request-head-timeout */
    unsigned per_client;     /* open connections from one address (0: no cap of ours) */
    struct hpo__peer *peers[HPO_CONNS_PEER_BUCKETS];
    uint64_t closed_slow;    /* connections shut for a late head, for logs */
};

void hpo__conns_init(struct hpo__conns *cs, unsigned max, unsigned head_timeout_s);
/* The per-client cap (counted here across the HTTP threads); before the first connection. */
void hpo__conns_per_client(struct hpo__conns *cs, unsigned n);
void hpo__conns_finish(struct hpo__conns *cs);

/* MHD_OPTION_NOTIFY_CONNECTION's callback; cls is the hpo__conns. */
void hpo__conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
        enum MHD_ConnectionNotificationCode toe);

/* MHD's accept policy callback (cls: the hpo__conns): refuse past max + reserve. */
enum MHD_Result hpo__conns_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);

/* The record of a connection (NULL if it has none). */
struct hpo__conn *hpo__conns_of(struct MHD_Connection *conn);

/*
** A request's head is complete / its reply is done, at `now_ms` on the
** sweep's clock (CLOCK_MONOTONIC). Accept NULL.
*/
void hpo__conns_request_begin(struct hpo__conns *cs, struct hpo__conn *c);
void hpo__conns_request_end(struct hpo__conns *cs, struct hpo__conn *c, uint64_t now_ms);

/* Shut down connections whose head is late; returns how many (call about once a second). */
size_t hpo__conns_sweep(struct hpo__conns *cs, uint64_t now_ms);

#endif
