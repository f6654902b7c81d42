/*
** checkpoint.c: WAL checkpoints off the commit path (storage-int.h).
**
** SQLite's automatic checkpoint runs inside the COMMIT that took the WAL past
** 1000 pages, on the committing thread: with synchronous NORMAL that is the
** copy of those pages and two fsyncs (milliseconds each here) while the
** writer role, and the study whose write it was, wait; at load that happened
** several times a second, the biggest stall of an ask or a tell. Instead the
** write connection's WAL hook, called after each commit with the WAL's size,
** wakes a thread of ours, which runs a PASSIVE checkpoint on a connection of
** its own: PASSIVE neither waits for nor blocks a writer, and the next write
** transaction after a complete one starts the WAL over. Once the WAL is past
** INLINE_PAGES, the committing thread checkpoints as SQLite would have.
**
** The thread is woken once per WAKE_PAGES pages the WAL grew, not after
** every commit past WAKE_PAGES: under a steady load the WAL is rarely
** restarted (a restart needs every frame backfilled when a write begins,
** and commits keep coming while a checkpoint copies), so it stays past
** WAKE_PAGES and a wake per commit ran a checkpoint, with its fsyncs, per
** commit (thousands a second, a fifth of the daemon's CPU at 8 clients).
** The price: under a steady load the thread's checkpoints never catch up
** with the commits made while they copy, so the WAL only starts over
** after the committing thread's own checkpoint at INLINE_PAGES (it copies
** just the frames the thread has not, and no commit lands meanwhile). That
** bounds the WAL file: 8000 pages (about 32 MB) rather than 64,000 (256 MB,
** measured under bench/throughput/durable.py at 64 clients, with a
** checkpoint stall of its size each time).
*/
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "thread.h"
#include "storage-int.h"

#define WAKE_PAGES   1000     /* SQLite's default wal_autocheckpoint */
#define INLINE_PAGES (8 * WAKE_PAGES)

struct hpo__ckpt {
    sqlite3 *db; /* our own connection, used by `thread` alone */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_bool want; /* a checkpoint is due */
    int wake_at;      /* the WAL's size at which to wake the thread next (the hook's own) */
    int last_pages;   /* the WAL's size at the last commit (a smaller one: it restarted) */
    bool stopping;    /* under `lock` */
};

/* The write connection's WAL hook (its committing thread, after each commit). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct hpo__ckpt *ck = arg;

    if (pages >= INLINE_PAGES) {
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (pages < ck->last_pages) {
        ck->wake_at = WAKE_PAGES; /* the WAL started over */
    }
    ck->last_pages = pages;
    if (pages < ck->wake_at) {
        return SQLITE_OK;
    }
    ck->wake_at = pages + WAKE_PAGES;
    if (!atomic_exchange(&ck->want, true)) {
        pthread_mutex_lock(&ck->lock);
        pthread_cond_signal(&ck->wake);
        pthread_mutex_unlock(&ck->lock);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    struct hpo__ckpt *ck = arg;

    pthread_mutex_lock(&ck->lock);
    for (;;) {
        while (!ck->stopping && !atomic_load(&ck->want)) {
            pthread_cond_wait(&ck->wake, &ck->lock);
        }
        if (ck->stopping) {
            break;
        }
        atomic_store(&ck->want, false);
        pthread_mutex_unlock(&ck->lock);
        /* A failure (disk full, I/O) leaves the WAL as it is: the next wake retries. */
        (void)sqlite3_wal_checkpoint_v2(ck->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&ck->lock);
    }
    pthread_mutex_unlock(&ck->lock);
    return NULL;
}

int hpo__ckpt_start(sqlite3 *writer, const char *path, bool synchronous_full,
        struct hpo__ckpt **ret)
{
    struct hpo__ckpt *ck = calloc(1, sizeof(*ck));
    int rc, r;

    if (ck == NULL) {
        return -ENOMEM;
    }
    rc = sqlite3_open_v2(path, &ck->db,
            SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL);
    if (rc == SQLITE_OK) {
        /* The checkpoint's fsyncs follow the same setting as the commits'. */
        rc = sqlite3_exec(ck->db,
                synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        sqlite3_close(ck->db);
        free(ck);
        return -EIO;
    }
    pthread_mutex_init(&ck->lock, NULL);
    pthread_cond_init(&ck->wake, NULL);
    atomic_init(&ck->want, false);
    ck->wake_at = WAKE_PAGES;
    r = hpo_thread_start(&ck->thread, NULL, ckpt_main, ck, "hpod-checkpoint");
    if (r != 0) {
        pthread_cond_destroy(&ck->wake);
        pthread_mutex_destroy(&ck->lock);
        sqlite3_close(ck->db);
        free(ck);
        return r;
    }
    /* Replaces SQLite's own automatic checkpoint on this connection. */
    sqlite3_wal_hook(writer, wal_hook, ck);
    *ret = ck;
    return 0;
}

void hpo__ckpt_stop(struct hpo__ckpt *ck, sqlite3 *writer)
{
    if (ck == NULL) {
        return;
    }
    /* Back to SQLite's own checkpoints for whatever the connection still commits. */
    sqlite3_wal_autocheckpoint(writer, WAKE_PAGES);
    pthread_mutex_lock(&ck->lock);
    ck->stopping = true;
    pthread_cond_signal(&ck->wake);
    pthread_mutex_unlock(&ck->lock);
    pthread_join(ck->thread, NULL);
    /* Closed before the write connection, whose close then checkpoints and removes the WAL. */
    sqlite3_close(ck->db);
    pthread_cond_destroy(&ck->wake);
    pthread_mutex_destroy(&ck->lock);
    free(ck);
}
