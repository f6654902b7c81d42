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
**
** Balanced accept (more than one loop): MHD never accepts. Each daemon's
** accept on the shared socket would hand a burst of connections to
** whichever thread woke first (MHD accepts up to 10 in a series), and the
** kernel often gave all of a benchmark's 8 clients to one thread: one core
** served while the other idled (the clients it woke ran on its core). So
** the daemons are quiesced before their threads start, and an acceptor
** thread (`hpod-accept`) accepts, checks hpod's connection limits
** (accept_check, as MHD's accept policy did, counting the connections it
** handed that have not started yet) and gives each connection to the loop
** with the fewest (open ones plus those handed and not yet started),
** through the loop's inbox and a kick; the loop adds it to its own daemon
** with MHD_add_connection on its own thread (every MHD call on a daemon
** stays on its thread).
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
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
/* How long the acceptor waits before it tries again when out of descriptors (ms). */
#define ACCEPT_PAUSE_MS 50
/* Connections the acceptor hands a loop at most before they start (accept_pending). */
#define PENDING_PER_LOOP 4

/* An accepted connection handed to a loop (balanced accept), not yet added to its daemon. */
struct handed {
    struct handed *next;
    int fd;
    socklen_t addrlen;
    struct sockaddr_storage addr;
};

struct loop {
    struct hpo__loops *ls;
    struct MHD_Daemon *mhd;
    pthread_t thread;
    bool running;  /* its thread was started (and not joined) */
    bool quiesced; /* its daemon no longer accepts (its own thread's, then the stop's) */
    bool acked;    /* its thread saw the quiesce (its daemon quiesced, its inbox added) */
    int kick_fd;   /* eventfd in the daemon's epoll set: wakes the thread for a flag */
    int epoll_fd;  /* the daemon's (MHD's) */
    atomic_bool woken; /* hpo__loops_wake kicked it since the start of its round */
    atomic_uint held;  /* replies held unsuspended for a release elsewhere (hpo__loops_hold) */
    uint64_t rounds;   /* round ends run (its thread's only) */
    atomic_uint conns; /* its daemon's open connections (hpo__loops_counted) */
    /* Balanced accept: connections handed to it by the acceptor, under `inbox_lock`. */
    pthread_mutex_t inbox_lock;
    struct handed *inbox;
    struct handed *adding; /* given to its daemon, not yet started (add_handed) */
    atomic_uint inbox_n;   /* both */
};

struct hpo__loops {
    struct hpo__loops *all_next; /* under all_lock */
    unsigned n;
    struct loop *loop;
    uint64_t (*round_pending)(void *ctx);
    unsigned (*round_end)(void *ctx);
    void *ctx;
    int listen_fd; /* the shared listening socket (closed here at the stop) */
    /* Balanced accept (n > 1): the acceptor thread and its kick. */
    enum MHD_Result (*accept_check)(void *arg, const struct sockaddr *addr, socklen_t len,
            unsigned pending, unsigned pending_peer);
    void *accept_arg;
    pthread_t acceptor;
    bool accepting;   /* the acceptor was started (and not joined) */
    int accept_kick;  /* eventfd: the acceptor looks at `quiesce` and the loops' room */
    atomic_bool accept_waiting; /* the acceptor waits for a loop to start what it handed */
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

/*
** Add the connections the acceptor handed to this loop to its daemon (on
** its own thread); true if there were any. One MHD takes stays pending
** (`adding`, counted in inbox_n, so the acceptor's limit check counts it)
** until its NOTIFY_STARTED (hpo__loops_counted), which MHD may run only in
** its next pass (a connection added from outside waits in its list of new
** ones); what is left after that pass never started (drop_unstarted). MHD
** closes a socket it refuses (over the daemon's limit, out of memory).
*/
static bool add_handed(struct loop *l)
{
    struct handed *h, *next;

    if (atomic_load(&l->inbox_n) == 0) {
        return false;
    }
    pthread_mutex_lock(&l->inbox_lock);
    h = l->inbox;
    l->inbox = NULL;
    pthread_mutex_unlock(&l->inbox_lock);
    for (; h != NULL; h = next) {
        next = h->next;
        if (MHD_add_connection(l->mhd, h->fd, (const struct sockaddr *)&h->addr, h->addrlen) !=
                MHD_YES) {
            atomic_fetch_sub(&l->inbox_n, 1);
            free(h);
            continue;
        }
        pthread_mutex_lock(&l->inbox_lock);
        h->next = l->adding;
        l->adding = h;
        pthread_mutex_unlock(&l->inbox_lock);
    }
    return true;
}

/* After the pass that followed add_handed: connections added and never started are not pending. */
static void drop_unstarted(struct loop *l)
{
    struct handed *h;

    pthread_mutex_lock(&l->inbox_lock);
    h = l->adding;
    l->adding = NULL;
    pthread_mutex_unlock(&l->inbox_lock);
    while (h != NULL) {
        struct handed *next = h->next;
        atomic_fetch_sub(&l->inbox_n, 1);
        free(h);
        h = next;
    }
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    struct hpo__loops *ls = l->ls;
    bool handed = false, added;
    uint64_t pending;
    unsigned end;

    self = l;
    for (;;) {
        /* (Before the quiesce: a connection accepted before it is served.) */
        added = add_handed(l);
        if (atomic_load(&ls->quiesce) && !l->acked) {
            if (!l->quiesced) {
                (void)MHD_quiesce_daemon(l->mhd);
                l->quiesced = true;
            }
            l->acked = true;
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
        /* (A connection just added may wait in MHD's list of new ones: no sleep first.) */
        (void)MHD_run_wait(l->mhd, added || handed || atomic_load(&l->held) > 0 ? 0 : -1);
        if (added) {
            drop_unstarted(l);
            if (atomic_load(&ls->accept_waiting)) {
                kick_fd(ls->accept_kick); /* room for more */
            }
        }
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

/* The loop with the fewest connections, counting those handed and not yet added. */
static struct loop *least_loaded(struct hpo__loops *ls)
{
    struct loop *best = &ls->loop[0];
    unsigned best_n = UINT32_MAX;

    for (unsigned i = 0; i < ls->n; i++) {
        struct loop *l = &ls->loop[i];
        unsigned n = atomic_load(&l->conns) + atomic_load(&l->inbox_n);
        if (n < best_n) {
            best = l;
            best_n = n;
        }
    }
    return best;
}

/*
** hpod's connection limits for a connection just accepted (accept_check),
** counting as open the connections handed to loops and not yet started.
*/
static bool admit(struct hpo__loops *ls, const struct handed *h)
{
    unsigned pending = 0, pending_peer = 0;

    for (unsigned i = 0; i < ls->n; i++) {
        struct loop *l = &ls->loop[i];
        pthread_mutex_lock(&l->inbox_lock);
        for (int k = 0; k < 2; k++) {
            for (const struct handed *o = k == 0 ? l->inbox : l->adding; o != NULL; o = o->next) {
                pending++;
                pending_peer += hpo__conns_same_peer((const struct sockaddr *)&o->addr,
                        (const struct sockaddr *)&h->addr);
            }
        }
        pthread_mutex_unlock(&l->inbox_lock);
    }
    return ls->accept_check(ls->accept_arg, (const struct sockaddr *)&h->addr, h->addrlen,
                   pending, pending_peer) == MHD_YES;
}

/* Connections handed to the loops and not started yet. */
static unsigned pending_all(struct hpo__loops *ls)
{
    unsigned n = 0;

    for (unsigned i = 0; i < ls->n; i++) {
        n += atomic_load(&ls->loop[i].inbox_n);
    }
    return n;
}

enum { ACCEPT_DRAINED, ACCEPT_PAUSE, ACCEPT_FULL };

/*
** Accept what is pending on the listening socket: ACCEPT_DRAINED when all
** is taken, ACCEPT_PAUSE when out of descriptors (or memory), ACCEPT_FULL
** when the loops have PENDING_PER_LOOP each not started yet: the rest wait
** in the kernel's backlog, as they did while MHD's threads were busy (an
** acceptor that took them all would count them against the limits at once
** and refuse connections MHD would have served a moment later).
*/
static int accept_pending(struct hpo__loops *ls)
{
    for (;;) {
        struct handed *h;
        struct loop *l;

        if (pending_all(ls) >= PENDING_PER_LOOP * ls->n) {
            return ACCEPT_FULL;
        }
        if ((h = malloc(sizeof(*h))) == NULL) {
            return ACCEPT_PAUSE;
        }
        h->addrlen = sizeof(h->addr);
        h->fd = accept4(ls->listen_fd, (struct sockaddr *)&h->addr, &h->addrlen,
                SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (h->fd < 0) {
            int e = errno;
            free(h);
            if (e == EINTR || e == ECONNABORTED || e == EPROTO) {
                continue;
            }
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM: wait, then again. */
            return e == EAGAIN || e == EWOULDBLOCK ? ACCEPT_DRAINED : ACCEPT_PAUSE;
        }
        if (ls->accept_check != NULL && !admit(ls, h)) {
            close(h->fd); /* over hpod's limits: closed at once, as MHD's accept policy did */
            free(h);
            continue;
        }
        l = least_loaded(ls);
        atomic_fetch_add(&l->inbox_n, 1);
        pthread_mutex_lock(&l->inbox_lock);
        h->next = l->inbox;
        l->inbox = h;
        pthread_mutex_unlock(&l->inbox_lock);
        kick(l);
    }
}

static void *accept_main(void *arg)
{
    struct hpo__loops *ls = arg;
    struct pollfd p[2] = { { .fd = ls->listen_fd, .events = POLLIN },
        { .fd = ls->accept_kick, .events = POLLIN } };
    int state = ACCEPT_DRAINED, r;
    uint64_t count;

    while (!atomic_load(&ls->quiesce)) {
        if (state == ACCEPT_DRAINED) {
            r = poll(p, 2, -1);
        } else {
            /*
            ** Out of descriptors (the socket stays readable) or the loops
            ** full: only the kick (a loop that started what it was handed,
            ** the quiesce), for a pause at most.
            */
            atomic_store(&ls->accept_waiting, state == ACCEPT_FULL);
            r = state == ACCEPT_FULL && pending_all(ls) < PENDING_PER_LOOP * ls->n
                    ? 0
                    : poll(&p[1], 1, ACCEPT_PAUSE_MS);
            atomic_store(&ls->accept_waiting, false);
        }
        if (r < 0) {
            state = errno == EINTR ? state : ACCEPT_PAUSE; /* (ENOMEM: a pause, then again) */
            continue;
        }
        if (atomic_load(&ls->quiesce)) {
            break;
        }
        (void)!read(ls->accept_kick, &count, sizeof(count)); /* (nonblocking: 0 or the kicks) */
        state = accept_pending(ls);
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
        while (l->inbox != NULL) {
            struct handed *h = l->inbox;
            l->inbox = h->next;
            close(h->fd);
            free(h);
        }
        while (l->adding != NULL) {
            struct handed *h = l->adding;
            l->adding = h->next;
            free(h); /* (its socket is its daemon's) */
        }
        pthread_mutex_destroy(&l->inbox_lock);
    }
    if (ls->accept_kick >= 0) {
        close(ls->accept_kick);
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
        enum MHD_Result (*accept_check)(void *arg, const struct sockaddr *addr, socklen_t len,
                unsigned pending, unsigned pending_peer),
        void *accept_arg,
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
    ls->accept_check = accept_check;
    ls->accept_arg = accept_arg;
    ls->accept_kick = -1;
    pthread_mutex_init(&ls->lock, NULL);
    pthread_cond_init(&ls->acked, NULL);
    for (unsigned i = 0; i < ls->n; i++) {
        ls->loop[i].kick_fd = -1;
        pthread_mutex_init(&ls->loop[i].inbox_lock, NULL);
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
    if (r == 0 && ls->n > 1) {
        /*
        ** Balanced accept (top of this file): no daemon accepts (quiesced
        ** here, before their threads run, so nothing races with MHD's
        ** removal of the socket from their epoll sets); the acceptor does.
        */
        for (unsigned i = 0; i < ls->n; i++) {
            (void)MHD_quiesce_daemon(ls->loop[i].mhd);
            ls->loop[i].quiesced = true;
        }
        ls->accept_kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ls->accept_kick < 0 ||
                fcntl(ls->listen_fd, F_SETFL, fcntl(ls->listen_fd, F_GETFL) | O_NONBLOCK) != 0) {
            r = -errno;
            r = r < 0 ? r : -EINVAL;
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
    if (r == 0 && ls->n > 1) {
        r = hpo_thread_start(&ls->acceptor, NULL, accept_main, ls, "hpod-accept");
        ls->accepting = r == 0;
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

unsigned hpo__loops_count(struct hpo__loops *ls)
{
    return ls->n;
}

unsigned hpo__loops_thread_connections(struct hpo__loops *ls, unsigned i)
{
    return i < ls->n ? atomic_load(&ls->loop[i].conns) : 0;
}

void hpo__loops_quiesce(struct hpo__loops *ls)
{
    unsigned running = 0;

    if (atomic_exchange(&ls->quiesce, true)) {
        return;
    }
    if (ls->accepting) {
        /* No connection is accepted after this: the loops add what it handed them. */
        kick_fd(ls->accept_kick);
        pthread_join(ls->acceptor, NULL);
        ls->accepting = false;
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

void hpo__loops_counted(int delta, int fd)
{
    struct handed *h = NULL;

    if (self == NULL) {
        return;
    }
    if (fd >= 0 && self->adding != NULL) {
        /* No longer pending (add_handed): its thread's own list. */
        pthread_mutex_lock(&self->inbox_lock);
        for (struct handed **p = &self->adding; *p != NULL; p = &(*p)->next) {
            if ((*p)->fd == fd) {
                h = *p;
                *p = h->next;
                break;
            }
        }
        pthread_mutex_unlock(&self->inbox_lock);
    }
    atomic_fetch_add(&self->conns, (unsigned)delta);
    if (h != NULL) {
        atomic_fetch_sub(&self->inbox_n, 1);
        free(h);
    }
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
