/*
** loops.c: the HTTP threads, each with a libmicrohttpd daemon of its own
** (loops.h).
**
** A daemon runs in MHD's external epoll mode: its thread calls
** MHD_run_wait(-1), which waits on the daemon's epoll set (its connections,
** the shared listening socket, its inter-thread channel, so a resume from
** any thread wakes it) and serves every ready connection, then round_end;
** after a round end that handed its writes off, the thread waits in poll()
** on the daemon's epoll set instead (hpo__loops_start in loops.h).
** The thread also owns the daemon's quiesce: MHD_quiesce_daemon takes the
** listening socket out of the epoll set, and libmicrohttpd 0.9.75 aborts
** when that races with its own removal on the daemon's thread; so another
** thread only sets a flag and kicks the loop (an eventfd in the daemon's
** epoll set with a NULL pointer, which MHD_run_wait skips), and the loop
** quiesces its daemon itself between two rounds.
*/
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "thread.h"
#include "conns.h"
#include "loops.h"

/* Passes without waiting a round makes while it gets more work for its end. */
#define LINGER_PASSES 1
/*
** The longest a loop whose replies wait for another thread (writes handed
** off, replies held for a flush) waits for an event before it looks again:
** a bound only, the release kicks it; MHD's timeouts run at least this often.
*/
#define WAIT_MS 10

struct loop {
    struct hpo__loops *ls;
    struct MHD_Daemon *mhd;
    pthread_t thread;
    bool running;  /* its thread was started (and not joined) */
    bool quiesced; /* its daemon no longer accepts (its own thread's, then the stop's) */
    int kick_fd;   /* eventfd in the daemon's epoll set: wakes the thread for a flag */
    int epoll_fd;  /* the daemon's (MHD's) */
    atomic_bool woken; /* hpo__loops_wake kicked it since the start of its round */
    atomic_uint held;  /* replies held unsuspended for a release elsewhere (hpo__loops_hold) */
    uint64_t rounds;   /* round ends run (its thread's only) */
};

struct hpo__loops {
    struct hpo__loops *all_next; /* under all_lock */
    unsigned n;
    struct loop *loop;
    uint64_t (*round_pending)(void *ctx);
    unsigned (*round_end)(void *ctx);
    void *ctx;
    int listen_fd; /* the shared listening socket (closed here at the stop) */
    atomic_bool quiesce;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t acked;
    unsigned acks; /* under `lock`: loops that quiesced their daemon */
};

/* The loop of the calling thread (NULL: not an HTTP thread). */
static _Thread_local struct loop *self;

/* Every running set of loops, for resuming a connection without a record (conns.c). */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hpo__loops *all_head;

static void kick_fd(int fd)
{
    uint64_t one = 1;

    (void)!write(fd, &one, sizeof(one));
}

static void kick(struct loop *l)
{
    uint64_t one = 1;

    if (l->kick_fd >= 0) {
        (void)!write(l->kick_fd, &one, sizeof(one));
    }
}

static unsigned connections(struct MHD_Daemon *mhd)
{
    const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

    return info != NULL ? info->num_connections : 0;
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    struct hpo__loops *ls = l->ls;
    bool handed = false;
    uint64_t pending;
    unsigned end;

    self = l;
    for (;;) {
        if (atomic_load(&ls->quiesce) && !l->quiesced) {
            (void)MHD_quiesce_daemon(l->mhd);
            l->quiesced = true;
            pthread_mutex_lock(&ls->lock);
            ls->acks++;
            pthread_cond_broadcast(&ls->acked);
            pthread_mutex_unlock(&ls->lock);
        }
        if (atomic_load(&ls->stop)) {
            break;
        }
        /* Cleared before the round looks at its replies: a release after this kicks. */
        atomic_store(&l->woken, false);
        /* (Writes handed off: still pending, and MHD would not sleep, see below.) */
        pending = handed && ls->round_pending != NULL ? ls->round_pending(ls->ctx) : 0;
        (void)MHD_run_wait(l->mhd, handed || atomic_load(&l->held) > 0 ? 0 : -1);
        if (ls->round_pending != NULL && connections(l->mhd) > 1) {
            /* (With one connection nothing else can become ready.) */
            uint64_t before = pending, now = ls->round_pending(ls->ctx);
            for (int i = 0; i < LINGER_PASSES && now != before; i++) {
                /* Requests that came while this round ran join its end. */
                before = now;
                (void)MHD_run_wait(l->mhd, 0);
                now = ls->round_pending(ls->ctx);
            }
        }
        end = ls->round_end != NULL ? ls->round_end(ls->ctx) : 0;
        l->rounds++;
        handed = (end & HPO_ROUND_HANDED) != 0;
        if ((handed || atomic_load(&l->held) > 0) && !(end & HPO_ROUND_QUEUED) &&
            !atomic_load(&l->woken)) {
            /*
            ** Its replies wait for another thread (its writes handed to
            ** another thread's commit, or held for a flush) and the round
            ** queued none that MHD has still to send: those waiting stay in
            ** MHD's ready list unsuspended (http.c), so MHD_run_wait would
            ** not sleep. Wait here for an event on the daemon's epoll set
            ** (poll leaves it to MHD): a connection, or the kick of the
            ** release (hpo__loops_wake; a release since the round began,
            ** whose kick the round may have taken, skips the wait: the next
            ** round looks at it).
            */
            struct pollfd p = { .fd = l->epoll_fd, .events = POLLIN };

            (void)poll(&p, 1, WAIT_MS);
        }
    }
    return NULL;
}

/* Stop what was started (no thread running): daemons quiesced first, so none closes the socket. */
static void teardown(struct hpo__loops *ls, bool close_listen)
{
    for (unsigned i = 0; i < ls->n; i++) {
        struct loop *l = &ls->loop[i];
        if (l->mhd != NULL) {
            if (!l->quiesced) {
                (void)MHD_quiesce_daemon(l->mhd);
                l->quiesced = true;
            }
            MHD_stop_daemon(l->mhd);
        }
        if (l->kick_fd >= 0) {
            close(l->kick_fd);
        }
    }
    if (close_listen && ls->listen_fd >= 0) {
        close(ls->listen_fd);
    }
    pthread_cond_destroy(&ls->acked);
    pthread_mutex_destroy(&ls->lock);
    free(ls->loop);
    free(ls);
}

int hpo__loops_start(unsigned n, int listen_fd,
        struct MHD_Daemon *(*start_one)(void *cls, int listen_fd), void *cls,
        uint64_t (*round_pending)(void *ctx), unsigned (*round_end)(void *ctx), void *ctx,
        struct hpo__loops **ret)
{
    struct hpo__loops *ls = calloc(1, sizeof(*ls));
    int r = 0;

    if (ls == NULL || (ls->loop = calloc(n > 0 ? n : 1, sizeof(*ls->loop))) == NULL) {
        free(ls);
        return -ENOMEM;
    }
    ls->n = n > 0 ? n : 1;
    ls->round_pending = round_pending;
    ls->round_end = round_end;
    ls->ctx = ctx;
    ls->listen_fd = -1;
    pthread_mutex_init(&ls->lock, NULL);
    pthread_cond_init(&ls->acked, NULL);
    for (unsigned i = 0; i < ls->n; i++) {
        ls->loop[i].kick_fd = -1;
    }
    for (unsigned i = 0; i < ls->n; i++) {
        struct loop *l = &ls->loop[i];
        const union MHD_DaemonInfo *info;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL };

        l->ls = ls;
        l->mhd = start_one(cls, i == 0 ? listen_fd : ls->listen_fd);
        if (l->mhd == NULL) {
            r = -EADDRINUSE;
            break;
        }
        if (i == 0) {
            info = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_LISTEN_FD);
            ls->listen_fd = info != NULL ? (int)info->listen_fd : -1;
            if (ls->listen_fd < 0) {
                r = -EINVAL;
                break;
            }
        }
        info = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        l->epoll_fd = info != NULL ? info->epoll_fd : -1;
        l->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (info == NULL || l->kick_fd < 0 ||
                epoll_ctl(info->epoll_fd, EPOLL_CTL_ADD, l->kick_fd, &ev) != 0) {
            r = -errno;
            r = r < 0 ? r : -EINVAL;
            break;
        }
    }
    if (r < 0) {
        /* A socket handed in (socket activation) is the caller's; one MHD opened is not. */
        teardown(ls, listen_fd <= 0);
        return r;
    }
    for (unsigned i = 0; i < ls->n && r == 0; i++) {
        r = hpo_thread_start(&ls->loop[i].thread, NULL, loop_main, &ls->loop[i], "hpod-http");
        if (r == 0) {
            ls->loop[i].running = true;
        }
    }
    pthread_mutex_lock(&all_lock);
    ls->all_next = all_head;
    all_head = ls;
    pthread_mutex_unlock(&all_lock);
    if (r < 0) {
        hpo__loops_stop(ls);
        return r;
    }
    *ret = ls;
    return 0;
}

struct MHD_Daemon *hpo__loops_first(struct hpo__loops *ls)
{
    return ls->loop[0].mhd;
}

unsigned hpo__loops_connections(struct hpo__loops *ls)
{
    unsigned n = 0;

    for (unsigned i = 0; i < ls->n; i++) {
        const union MHD_DaemonInfo *info =
                MHD_get_daemon_info(ls->loop[i].mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        n += info != NULL ? info->num_connections : 0;
    }
    return n;
}

void hpo__loops_quiesce(struct hpo__loops *ls)
{
    unsigned running = 0;

    if (atomic_exchange(&ls->quiesce, true)) {
        return;
    }
    for (unsigned i = 0; i < ls->n; i++) {
        if (ls->loop[i].running) {
            running++;
            kick(&ls->loop[i]);
        }
    }
    pthread_mutex_lock(&ls->lock);
    while (ls->acks < running) {
        pthread_cond_wait(&ls->acked, &ls->lock);
    }
    pthread_mutex_unlock(&ls->lock);
}

void hpo__loops_stop(struct hpo__loops *ls)
{
    if (ls == NULL) {
        return;
    }
    hpo__loops_quiesce(ls);
    atomic_store(&ls->stop, true);
    pthread_mutex_lock(&all_lock);
    for (struct hpo__loops **p = &all_head; *p != NULL; p = &(*p)->all_next) {
        if (*p == ls) {
            *p = ls->all_next;
            break;
        }
    }
    pthread_mutex_unlock(&all_lock);
    for (unsigned i = 0; i < ls->n; i++) {
        if (ls->loop[i].running) {
            kick(&ls->loop[i]);
            pthread_join(ls->loop[i].thread, NULL);
            ls->loop[i].running = false;
        }
    }
    teardown(ls, true);
}

int hpo__loops_kick_fd_here(void)
{
    return self != NULL ? self->kick_fd : -1;
}

void *hpo__loops_here(void)
{
    return self;
}

void hpo__loops_wake(void *loop)
{
    struct loop *l = loop;

    /* Once per round: the round that follows looks at every reply. */
    if (l != NULL && l != self && !atomic_exchange(&l->woken, true)) {
        kick(l);
    }
}

void *hpo__loops_hold(void)
{
    if (self != NULL) {
        atomic_fetch_add(&self->held, 1);
    }
    return self;
}

void hpo__loops_unhold(void *loop)
{
    struct loop *l = loop;

    if (l != NULL) {
        atomic_fetch_sub(&l->held, 1);
        hpo__loops_wake(l);
    }
}

uint64_t hpo__loops_rounds_here(void)
{
    return self != NULL ? self->rounds : 0;
}

bool hpo__loops_ready_here(void)
{
    struct pollfd p;

    if (self == NULL || self->epoll_fd < 0) {
        return false;
    }
    p.fd = self->epoll_fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) > 0;
}

void hpo__loops_resume(struct MHD_Connection *conn)
{
    struct hpo__conn *c = hpo__conns_of(conn);
    /* Read before the resume: the connection may be gone as soon as it ran. */
    int fd = c != NULL ? c->kick_fd : -1;
    struct loop *l = c != NULL ? c->loop : NULL;

    MHD_resume_connection(conn);
    if (l != NULL) {
        /* MHD resumes it in the loop's next round: the loop must not wait for an event first. */
        atomic_store(&l->woken, true);
    }
    if (self != NULL && self->kick_fd == fd) {
        return; /* this thread's own: its next round resumes it */
    }
    if (fd >= 0) {
        kick_fd(fd);
        return;
    }
    /* A connection without a record (conns.c had no memory): every loop looks. */
    pthread_mutex_lock(&all_lock);
    for (struct hpo__loops *ls = all_head; ls != NULL; ls = ls->all_next) {
        for (unsigned i = 0; i < ls->n; i++) {
            atomic_store(&ls->loop[i].woken, true);
            kick(&ls->loop[i]);
        }
    }
    pthread_mutex_unlock(&all_lock);
}
