/*
** conns.c: per-connection records for the head deadline and the reserve
** (conns.h).
*/
#include <netinet/in.h>
#include <linux/tcp.h> /* tcp_info with tcpi_bytes_received (glibc's lacks it) */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conns.h"

void hpo__conns_init(struct hpo__conns *cs, unsigned max, unsigned head_timeout_s)
{
    memset(cs, 0, sizeof(*cs));
    pthread_mutex_init(&cs->lock, NULL);
    cs->list.prev = cs->list.next = &cs->list;
    cs->max = max;
    cs->head_timeout_s = head_timeout_s;
}

void hpo__conns_finish(struct hpo__conns *cs)
{
    pthread_mutex_destroy(&cs->lock);
}

/* Bytes the kernel received on the socket so far (0 when unknown). */
static uint64_t bytes_received(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
        return 0;
    }
    return ti.tcpi_bytes_received;
}

void hpo__conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
        enum MHD_ConnectionNotificationCode toe)
{
    struct hpo__conns *cs = cls;
    struct hpo__conn *c = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            return; /* untracked: no deadline, never reserve-only */
        }
        c->fd = info != NULL ? info->connect_fd : -1;
        pthread_mutex_lock(&cs->lock);
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
        pthread_mutex_unlock(&cs->lock);
        free(c);
        *socket_context = NULL;
    }
}

enum MHD_Result hpo__conns_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct hpo__conns *cs = cls;
    bool full;

    pthread_mutex_lock(&cs->lock);
    full = cs->max > 0 && cs->n >= (size_t)cs->max + HPO_CONNS_RESERVE;
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

void hpo__conns_request_end(struct hpo__conns *cs, struct hpo__conn *c)
{
    uint64_t mark;

    if (c != NULL) {
        mark = c->fd >= 0 ? bytes_received(c->fd) : 0;
        pthread_mutex_lock(&cs->lock);
        c->in_request = false;
        c->head_seen_ms = 0;
        c->rx_mark = mark;
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
            if (bytes_received(c->fd) > c->rx_mark) {
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
