/*
** conns.c: per-connection records for the head deadline and the reserve
** (conns.h).
*/
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conns.h"
#include "loops.h"

void hpo__conns_init(struct hpo__conns *cs, unsigned max, unsigned head_timeout_s)
{
    memset(cs, 0, sizeof(*cs));
    pthread_mutex_init(&cs->lock, NULL);
    cs->list.prev = cs->list.next = &cs->list;
    cs->max = max;
    cs->head_timeout_s = head_timeout_s;
}

void hpo__conns_per_client(struct hpo__conns *cs, unsigned n)
{
    cs->per_client = n;
}

void hpo__conns_finish(struct hpo__conns *cs)
{
    for (size_t i = 0; i < HPO_CONNS_PEER_BUCKETS; i++) {
        while (cs->peers[i] != NULL) {
            struct hpo__peer *p = cs->peers[i];
            cs->peers[i] = p->next;
            free(p);
        }
    }
    pthread_mutex_destroy(&cs->lock);
}

/* The address of `sa` as bytes (IPv4 or IPv6): false for another family. */
static bool peer_key(const struct sockaddr *sa, unsigned char key[16], unsigned *len)
{
    if (sa == NULL) {
        return false;
    }
    if (sa->sa_family == AF_INET) {
        memcpy(key, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        *len = 4;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        *len = 16;
        return true;
    }
    return false;
}

/* Under `lock`: the count of an address (created with `make`), or NULL. */
static struct hpo__peer *peer_find(struct hpo__conns *cs, const unsigned char *key, unsigned len,
        bool make)
{
    unsigned h = 2166136261u;
    struct hpo__peer **p;

    for (unsigned i = 0; i < len; i++) {
        h = (h ^ key[i]) * 16777619u;
    }
    p = &cs->peers[h % HPO_CONNS_PEER_BUCKETS];
    for (; *p != NULL; p = &(*p)->next) {
        if ((*p)->len == len && memcmp((*p)->addr, key, len) == 0) {
            return *p;
        }
    }
    if (!make || (*p = calloc(1, sizeof(**p))) == NULL) {
        return NULL;
    }
    memcpy((*p)->addr, key, len);
    (*p)->len = len;
    return *p;
}

/* Under `lock`: one connection of the address less; its count goes at 0. */
static void peer_drop(struct hpo__conns *cs, struct hpo__peer *peer)
{
    struct hpo__peer **p;
    unsigned h = 2166136261u;

    if (--peer->n > 0) {
        return;
    }
    for (unsigned i = 0; i < peer->len; i++) {
        h = (h ^ peer->addr[i]) * 16777619u;
    }
    for (p = &cs->peers[h % HPO_CONNS_PEER_BUCKETS]; *p != peer; p = &(*p)->next) {
    }
    *p = peer->next;
    free(peer);
}

/*
** Data may take this long, in the kernel's clock (jiffies, 4-10 ms), to
** seem later than our record of the request's end: only data more than
** this after it counts as a new head.
*/
#define AFTER_END_MARGIN_MS 20

/*
** Whether the next head of idle connection `c` has begun by `now` (false
** when unknown): on a connection that never served a request, any byte
** received (TLS: the handshake's too); after a request, data received more
** than the margin after its end (TCP_INFO's time since the last data). One
** system call, made by the sweep for idle connections only; a request's
** end just notes the time (a TCP_INFO there, for the byte count, was ~3%
** of an HTTP thread's time under load).
*/
static bool head_started(const struct hpo__conn *c, uint64_t now)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
        return false;
    }
    if (!c->served) {
        return ti.tcpi_bytes_received > 0;
    }
    return now > c->end_ms &&
            now - c->end_ms > (uint64_t)ti.tcpi_last_data_recv + AFTER_END_MARGIN_MS;
}

void hpo__conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
        enum MHD_ConnectionNotificationCode toe)
{
    struct hpo__conns *cs = cls;
    struct hpo__conn *c = *socket_context;
    unsigned char key[16];
    unsigned len;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            return; /* untracked: no deadline, never reserve-only */
        }
        c->fd = info != NULL ? info->connect_fd : -1;
        c->kick_fd = hpo__loops_kick_fd_here();
        c->loop = hpo__loops_here();
        info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        pthread_mutex_lock(&cs->lock);
        if (cs->per_client > 0 && info != NULL && peer_key(info->client_addr, key, &len)) {
            c->peer = peer_find(cs, key, len, true);
            if (c->peer != NULL) {
                c->peer->n++;
            }
        }
        c->reserve = cs->max > 0 && cs->n >= cs->max; /* max 0: no limit of ours */
        c->next = &cs->list;
        c->prev = cs->list.prev;
        cs->list.prev->next = c;
        cs->list.prev = c;
        cs->n++;
        pthread_mutex_unlock(&cs->lock);
        *socket_context = c;
        return;
    }
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED && c != NULL) {
        pthread_mutex_lock(&cs->lock);
        c->prev->next = c->next;
        c->next->prev = c->prev;
        cs->n--;
        if (c->peer != NULL) {
            peer_drop(cs, c->peer);
        }
        pthread_mutex_unlock(&cs->lock);
        free(c);
        *socket_context = NULL;
    }
}

enum MHD_Result hpo__conns_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct hpo__conns *cs = cls;
    unsigned char key[16];
    unsigned len;
    bool full;

    (void)addrlen;
    pthread_mutex_lock(&cs->lock);
    full = cs->max > 0 && cs->n >= (size_t)cs->max + HPO_CONNS_RESERVE;
    if (!full && cs->per_client > 0 && peer_key(addr, key, &len)) {
        const struct hpo__peer *p = peer_find(cs, key, len, false);
        full = p != NULL && p->n >= cs->per_client;
    }
    pthread_mutex_unlock(&cs->lock);
    return full ? MHD_NO : MHD_YES;
}

struct hpo__conn *hpo__conns_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info != NULL ? info->socket_context : NULL;
}

void hpo__conns_request_begin(struct hpo__conns *cs, struct hpo__conn *c)
{
    if (c != NULL) {
        pthread_mutex_lock(&cs->lock);
        c->in_request = true;
        pthread_mutex_unlock(&cs->lock);
    }
}

void hpo__conns_request_end(struct hpo__conns *cs, struct hpo__conn *c, uint64_t now_ms)
{
    if (c != NULL) {
        pthread_mutex_lock(&cs->lock);
        c->in_request = false;
        c->head_seen_ms = 0;
        c->end_ms = now_ms;
        c->served = true;
        pthread_mutex_unlock(&cs->lock);
    }
}

size_t hpo__conns_sweep(struct hpo__conns *cs, uint64_t now_ms)
{
    size_t shut = 0;
    uint64_t limit = (uint64_t)cs->head_timeout_s * 1000;

    if (limit == 0) {
        return 0; /* no deadline configured */
    }
    pthread_mutex_lock(&cs->lock);
    for (struct hpo__conn *c = cs->list.next; c != &cs->list; c = c->next) {
        if (c->in_request || c->shut || c->fd < 0) {
            continue;
        }
        if (c->head_seen_ms == 0) {
            if (head_started(c, now_ms)) {
                c->head_seen_ms = now_ms;
            }
            continue;
        }
        if (now_ms - c->head_seen_ms >= limit) {
            /* MHD sees the end of the stream and closes the connection itself. */
            shutdown(c->fd, SHUT_RDWR);
            c->shut = true;
            cs->closed_slow++;
            shut++;
        }
    }
    pthread_mutex_unlock(&cs->lock);
    return shut;
}
