/*
** loops.h: the HTTP threads. Each runs a libmicrohttpd daemon of its own
** in MHD's external epoll mode (MHD_run_wait) on the one listening socket,
** and after each round of MHD (every connection that was ready served)
** calls round_end: the embedder commits the round's pipelined writes there
** in one group transaction, on this thread, and resumes the connections
** whose replies that released (docs/STYLE.md rule 33).
**
** Internal to api/.
*/
#ifndef HPO_LOOPS_H
#define HPO_LOOPS_H

#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

struct hpo__loops;

/*
** Start `n` daemons (start_one(cls, listen_fd): the first with listen_fd as
** given, the others with the first's listening socket) and a thread for
** each. round_end(ctx) runs on a loop thread after each round (NULL: none)
** and returns HPO_ROUND_* flags: HANDED, the round's writes were handed to
** another thread's commit; QUEUED, the round queued a reply (which MHD
** sends in its next round). While replies wait for another thread (HANDED,
** or replies held: hpo__loops_hold) they keep MHD from sleeping, so after
** a round that queued none the loop waits for an event in poll() on the
** daemon's epoll set (a connection, or hpo__loops_wake / hpo__loops_resume)
** before its next round, which then does not wait;
** before it, while round_pending(ctx) changed over the last pass (the round
** got work for its end), the thread serves what became ready meanwhile
** without waiting (at most LINGER_PASSES more passes), so that more of the
** clients' requests share the round's end. Returns 0 or a negative errno
** (nothing left running).
*/
#define HPO_ROUND_HANDED 1u
#define HPO_ROUND_QUEUED 2u

int hpo__loops_start(unsigned n, int listen_fd,
        struct MHD_Daemon *(*start_one)(void *cls, int listen_fd), void *cls,
        uint64_t (*round_pending)(void *ctx), unsigned (*round_end)(void *ctx), void *ctx,
        struct hpo__loops **ret);

/* The first daemon (the bound port). */
struct MHD_Daemon *hpo__loops_first(struct hpo__loops *ls);

/* Open connections over every daemon (any thread; a snapshot). */
unsigned hpo__loops_connections(struct hpo__loops *ls);

/* Stop accepting: every loop quiesces its daemon; returns when all have. */
void hpo__loops_quiesce(struct hpo__loops *ls);

/*
** Resume a suspended connection from any thread (instead of
** MHD_resume_connection: in external mode MHD has no channel to wake the
** daemon's thread, so this kicks the connection's loop unless it is the
** calling thread, which resumes it at its next round anyway).
*/
void hpo__loops_resume(struct MHD_Connection *conn);

/* The calling HTTP thread's kick eventfd (conns.c records it per connection), or -1. */
int hpo__loops_kick_fd_here(void);
/*
** The calling HTTP thread's loop (NULL: not one), and its wake-up from any
** thread for a reply that became ready without a resume (a no-op for NULL
** or the caller's own loop; one kick per round of the loop).
*/
void *hpo__loops_here(void);
void hpo__loops_wake(void *loop);

/*
** How many round ends the calling HTTP thread has run (0 on other threads):
** a request held for its round's end (round commits) compares it to tell
** whether that end came yet (a pass of the same round calls its handler
** again before it, http.c:round_reply).
*/
uint64_t hpo__loops_rounds_here(void);

/*
** Whether the calling HTTP thread's daemon has an event ready (a request,
** a new connection, a kick): work waiting for the thread. False on other
** threads. A poll of its epoll set without waiting (the event stays for MHD).
*/
bool hpo__loops_ready_here(void);

/*
** A reply waiting unsuspended (its connection in MHD's ready list, its
** handler answering "not yet") for a release from another thread: while
** its loop holds any, the loop sleeps on its daemon's epoll set instead of
** MHD_run_wait (which would not sleep with such a connection ready) until
** a socket or a kick wakes it. hpo__loops_hold (on an HTTP thread) counts
** one for the calling thread's loop and returns it (NULL elsewhere);
** hpo__loops_unhold (any thread, once the reply may go) uncounts it and
** wakes the loop (hpo__loops_wake).
*/
void *hpo__loops_hold(void);
void hpo__loops_unhold(void *loop);

/* Quiesce, end and join the threads, stop the daemons, close the listening socket. */
void hpo__loops_stop(struct hpo__loops *ls);

#endif
