/*
** pg-flush.c: the pipelined WAL flush of the PostgreSQL backend, for
** `--synchronous full` (the default): the same pattern as SQLite's
** (sqlite.c), so that a study's writes no longer wait one after another
** for their own WAL flush.
**
** The writer (pg.c) commits its batches with synchronous_commit = off: a
** COMMIT returns once its commit record is in PostgreSQL's WAL buffers,
** before the WAL is flushed, and the batch is visible to every session at
** once. Flusher threads, each on a session of its own with
** synchronous_commit = on, then run a tiny transaction that writes WAL:
** `SELECT pg_logical_emit_message(true, 'hpod', '')` (a transactional
** message assigns a transaction id and writes one WAL record; nothing is
** stored in any table, and logical decoding ignores the prefix unless asked
** for messages). Its COMMIT returns only once the WAL is flushed (and, with
** synchronous_standby_names, replicated) up to the end of its own commit
** record, as for any synchronous commit that wrote WAL. The WAL is one
** stream: its commit record was inserted after every record inserted
** before the flush was sent, so every batch whose COMMIT had returned by
** then is flushed too (PostgreSQL's recovery replays the WAL as a prefix).
** A batch therefore counts as flushed only once a flush that STARTED AFTER
** its COMMIT returned has succeeded: its callers (hpo_storage_write, or the
** dispatcher holding their replies, storage.h) wait for that, while the
** writer already commits the next batch. Why a transaction that writes:
** one that only takes a transaction id, or writes nothing, commits
** asynchronously whatever synchronous_commit says (RecordTransactionCommit
** flushes only when the transaction wrote WAL).
**
** Two flushers: a commit made while one flush runs starts the next at
** once on the other (PostgreSQL's own group commit then lets one fsync
** cover both when they meet), so a reply waits about one flush, not one and
** a half.
**
** When a flush fails (the session broke: a server crash, a restart, a
** network fault), no reply waiting for it is sent. The flusher connects
** again and reads this daemon's batch marker (hpod_batches, set by every
** batch): if it is at least the id of the newest batch the flush was to
** cover, every batch up to that one survived (a server that crashed
** replayed its WAL as a prefix, and recovery fsyncs what it replays), and
** the flush is run again on the new session; if it is older, the server
** lost commits it had answered (never acknowledged to a client, but memory
** is ahead of the database), and the process exits with 75 (EX_TEMPFAIL)
** so the restart loads what the database holds, as pg.c does when the
** writer finds the same at a reconnect. A flush that cannot be had within
** RESOLVE_MAX_S ends the process the same way. A daemon that lost its
** studies to another (fencing, docs/CLUSTER.md) changes nothing here: a
** write refused by fencing failed in the writer's transaction and is never
** acknowledged; a batch that committed before the takeover is in the WAL
** before anything the new owner read, so the new owner's flushes cover it
** as well as ours.
*/
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "thread.h"
#include "../core/log.h"
#include "pg-flush.h"
#include "storage-int.h"

#define N_FLUSHERS    2
#define RESOLVE_MAX_S 60
#define RETRY_MIN_MS  100
#define RETRY_MAX_MS  1000

/* The flush: a transactional WAL record (see the top of this file). */
static const char flush_sql[] = "SELECT pg_logical_emit_message(true, 'hpod', '')";

struct flusher {
    struct hpo__pg_flush *f;
    PGconn *conn; /* its session, NULL after a failure until the next attempt */
    pthread_t thread;
};

struct hpo__pg_flush {
    char *uri;
    char *passfile;
    int64_t daemon_id;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* idle flushers wait here for commits or the stop */
    pthread_cond_t done; /* hpo__pg_flush_wait waits here */
    /* Under `lock`: */
    uint64_t commit_seq;   /* commits noted (atomic too, for tickets) */
    int64_t last_batch;    /* the batch id of the newest commit */
    uint64_t flush_target; /* the newest commit a started flush covers */
    bool stop;
    struct flusher fl[N_FLUSHERS];
    int n_started;
    atomic_uint_fast64_t ticket;     /* commit_seq */
    atomic_uint_fast64_t synced_seq; /* every commit up to it is flushed; only grows */
    atomic_uint_fast64_t last_cover; /* commits the last advance of synced_seq covered */
    atomic_bool healthy;
    pthread_mutex_t cb_lock; /* held while on_flush is set or called */
    void (*on_flush)(void *arg);
    void *on_flush_arg;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
** A failed statement's error in `err`: -EPERM when the server refuses the
** flush statement itself (no privilege, no such function), else a negative
** errno.
*/
static int flush_error(PGconn *conn, PGresult *res, const char *what, struct hpo_error *err)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    int r = hpo__pg_error(conn, res, what, err);

    if (state != NULL && PQstatus(conn) == CONNECTION_OK &&
            (strcmp(state, "42501") == 0 || strcmp(state, "42883") == 0)) {
        r = -EPERM;
    }
    return r < 0 ? r : -EIO;
}

/*
** A flush session: our connection settings, then synchronous_commit = on
** whatever the default, " flush" after the application_name (for
** pg_stat_activity), and the flush statement prepared. NULL with `err`
** (-EPERM in *ret_r when the statement is refused).
*/
static PGconn *open_session(struct hpo__pg_flush *f, int *ret_r, struct hpo_error *err)
{
    PGconn *conn = (PGconn *)hpo__pg_connect(f->uri, f->passfile, err);
    PGresult *res;
    int r = 0;

    if (conn == NULL) {
        *ret_r = err->code == HPO_UNAVAILABLE ? -EIO : -ENOMEM;
        return NULL;
    }
    res = PQexec(conn, "SET synchronous_commit = on; SELECT set_config('application_name',"
                       " current_setting('application_name') || ' flush', false)");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        r = flush_error(conn, res, "setting synchronous_commit", err);
    }
    PQclear(res);
    if (r == 0) {
        res = PQprepare(conn, "hf", flush_sql, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            r = flush_error(conn, res, "preparing the flush", err);
        }
        PQclear(res);
    }
    if (r < 0) {
        PQfinish(conn);
        *ret_r = r;
        return NULL;
    }
    return conn;
}

/* One flush on `conn`: 0, or a negative errno (-EPERM: see flush_error) with `err`. */
static int flush_once(PGconn *conn, struct hpo_error *err)
{
    PGresult *res = PQexecPrepared(conn, "hf", 0, NULL, NULL, NULL, 0);
    int r = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        r = flush_error(conn, res, "flushing the WAL", err);
    }
    PQclear(res);
    return r;
}

/*
** After a reconnect: whether the batch marker shows batch `batch` (and so
** every earlier one) still committed. Exits the process when the server
** lost it; a negative errno when the marker cannot be read.
*/
static int check_marker(struct hpo__pg_flush *f, PGconn *conn, int64_t batch,
        struct hpo_error *err)
{
    char sql[96];
    PGresult *res;
    int64_t marker;

    snprintf(sql, sizeof(sql), "SELECT id FROM hpod_batches WHERE daemon = %lld",
            (long long)f->daemon_id);
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        int r = hpo__pg_error(conn, res, "reading the batch marker", err);

        PQclear(res);
        return r < 0 ? r : -EIO;
    }
    marker = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (marker < batch) {
        /* Batch ids of a run only grow, and the marker row is this run's alone. */
        hpo_log(HPO_LOG_ERR, "PostgreSQL lost group transactions it had committed and not yet "
                "flushed (batch marker %lld, expected at least %lld: a server crash); none of "
                "them was acknowledged; exiting so the next start loads what the database holds",
                (long long)marker, (long long)batch);
        _exit(75);
    }
    return 0;
}

/*
** Flush on this flusher's session until it succeeds, connecting again (and
** checking the marker against `batch`) after a failure; ends the process
** when that takes longer than RESOLVE_MAX_S.
*/
static void flush_until_done(struct flusher *fl, int64_t batch)
{
    struct hpo__pg_flush *f = fl->f;
    uint64_t deadline = 0;
    unsigned sleep_ms = RETRY_MIN_MS;

    for (;;) {
        struct hpo_error e = { 0 };
        int r = 0;

        if (fl->conn == NULL) {
            fl->conn = open_session(f, &r, &e);
            if (fl->conn != NULL && check_marker(f, fl->conn, batch, &e) < 0) {
                PQfinish(fl->conn);
                fl->conn = NULL;
            }
        }
        if (fl->conn != NULL) {
            if (flush_once(fl->conn, &e) == 0) {
                if (deadline != 0) {
                    atomic_store(&f->healthy, true);
                }
                return;
            }
            /* Whatever failed, the next attempt starts on a new session and checks the marker. */
            PQfinish(fl->conn);
            fl->conn = NULL;
        }
        atomic_store(&f->healthy, false);
        if (deadline == 0) {
            /* The first failure: a session ended by the server is made again at once. */
            deadline = mono_ms() + RESOLVE_MAX_S * 1000u;
            continue;
        }
        if (mono_ms() > deadline) {
            hpo_log(HPO_LOG_ERR, "cannot flush PostgreSQL's WAL for %d s (%s); exiting without "
                    "acknowledging the writes it covers, so the next start loads what the "
                    "database holds", RESOLVE_MAX_S, e.message);
            _exit(75);
        }
        usleep(sleep_ms * 1000u);
        sleep_ms = sleep_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : sleep_ms * 2;
    }
}

/* Tell the dispatcher (hpo__pg_flush_on_flush) that more commits are flushed. */
static void notify(struct hpo__pg_flush *f)
{
    pthread_mutex_lock(&f->cb_lock);
    if (f->on_flush != NULL) {
        f->on_flush(f->on_flush_arg);
    }
    pthread_mutex_unlock(&f->cb_lock);
}

/*
** A flusher thread: when commits were noted that no started flush covers,
** note the newest, flush, then release every commit up to it. `synced_seq`
** only grows (a flush that started earlier may end later). At the stop each
** exits once every noted commit is covered by a flush that started.
*/
static void *flush_main(void *arg)
{
    struct flusher *fl = arg;
    struct hpo__pg_flush *f = fl->f;

    pthread_mutex_lock(&f->lock);
    for (;;) {
        uint64_t target = f->commit_seq;
        int64_t batch = f->last_batch;
        bool advanced = false;

        if (target <= f->flush_target) {
            if (f->stop) {
                break;
            }
            pthread_cond_wait(&f->wake, &f->lock);
            continue;
        }
        f->flush_target = target;
        pthread_mutex_unlock(&f->lock);
        flush_until_done(fl, batch);
        pthread_mutex_lock(&f->lock);
        if (atomic_load(&f->synced_seq) < target) {
            atomic_store(&f->last_cover, target - atomic_load(&f->synced_seq));
            atomic_store(&f->synced_seq, target);
            pthread_cond_broadcast(&f->done);
            advanced = true;
        }
        if (advanced) {
            pthread_mutex_unlock(&f->lock);
            notify(f);
            pthread_mutex_lock(&f->lock);
        }
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

int hpo__pg_flush_create(const char *uri, const char *passfile, int64_t daemon_id,
        struct hpo__pg_flush **ret, struct hpo_error *err)
{
    struct hpo__pg_flush *f = calloc(1, sizeof(*f));
    int r = 0;

    if (f == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    pthread_mutex_init(&f->lock, NULL);
    pthread_mutex_init(&f->cb_lock, NULL);
    pthread_cond_init(&f->wake, NULL);
    pthread_cond_init(&f->done, NULL);
    atomic_init(&f->ticket, 0);
    atomic_init(&f->synced_seq, 0);
    atomic_init(&f->last_cover, 0);
    atomic_init(&f->healthy, true);
    f->daemon_id = daemon_id;
    f->uri = strdup(uri);
    f->passfile = passfile != NULL ? strdup(passfile) : NULL;
    if (f->uri == NULL || (passfile != NULL && f->passfile == NULL)) {
        hpo__pg_flush_destroy(f);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    for (int i = 0; r == 0 && i < N_FLUSHERS; i++) {
        f->fl[i].f = f;
        f->fl[i].conn = open_session(f, &r, err);
        if (f->fl[i].conn != NULL && i == 0) {
            /* Whether this role may write the flush's record at all. */
            r = flush_once(f->fl[i].conn, err);
        }
    }
    if (r < 0) {
        hpo__pg_flush_destroy(f);
        return r;
    }
    *ret = f;
    return 0;
}

int hpo__pg_flush_start(struct hpo__pg_flush *f)
{

    while (f->n_started < N_FLUSHERS) {
        struct flusher *fl = &f->fl[f->n_started];
        int r;

        r = hpo_thread_start(&fl->thread, NULL, flush_main, fl, "hpod-pgflush");
        if (r != 0) {
            return r;
        }
        f->n_started++;
    }
    return 0;
}

uint64_t hpo__pg_flush_committed(struct hpo__pg_flush *f, int64_t batch_id, bool flushed)
{
    uint64_t seq;

    pthread_mutex_lock(&f->lock);
    seq = ++f->commit_seq;
    f->last_batch = batch_id;
    atomic_store(&f->ticket, seq);
    if (!flushed) {
        pthread_cond_signal(&f->wake);
        pthread_mutex_unlock(&f->lock);
        return seq;
    }
    /* No flusher needs to start for it; one that started earlier may still end later. */
    if (f->flush_target < seq) {
        f->flush_target = seq;
    }
    if (atomic_load(&f->synced_seq) < seq) {
        atomic_store(&f->last_cover, seq - atomic_load(&f->synced_seq));
        atomic_store(&f->synced_seq, seq);
        pthread_cond_broadcast(&f->done);
    }
    pthread_mutex_unlock(&f->lock);
    notify(f);
    return seq;
}

bool hpo__pg_flush_idle(struct hpo__pg_flush *f)
{
    return atomic_load(&f->synced_seq) == atomic_load(&f->ticket) &&
            atomic_load(&f->last_cover) <= 1;
}

uint64_t hpo__pg_flush_ticket(struct hpo__pg_flush *f)
{
    return atomic_load(&f->ticket);
}

bool hpo__pg_flushed(struct hpo__pg_flush *f, uint64_t ticket)
{
    return atomic_load(&f->synced_seq) >= ticket;
}

void hpo__pg_flush_wait(struct hpo__pg_flush *f, uint64_t ticket)
{
    pthread_mutex_lock(&f->lock);
    while (atomic_load(&f->synced_seq) < ticket) {
        pthread_cond_wait(&f->done, &f->lock);
    }
    pthread_mutex_unlock(&f->lock);
}

void hpo__pg_flush_on_flush(struct hpo__pg_flush *f, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&f->cb_lock);
    f->on_flush = fn;
    f->on_flush_arg = arg;
    pthread_mutex_unlock(&f->cb_lock);
}

bool hpo__pg_flush_healthy(struct hpo__pg_flush *f)
{
    return atomic_load(&f->healthy);
}

void hpo__pg_flush_stop(struct hpo__pg_flush *f)
{
    if (f == NULL) {
        return;
    }
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    pthread_cond_broadcast(&f->wake);
    pthread_mutex_unlock(&f->lock);
    for (int i = 0; i < f->n_started; i++) {
        pthread_join(f->fl[i].thread, NULL);
    }
    f->n_started = 0;
}

void hpo__pg_flush_destroy(struct hpo__pg_flush *f)
{
    if (f == NULL) {
        return;
    }
    hpo__pg_flush_stop(f);
    for (int i = 0; i < N_FLUSHERS; i++) {
        PQfinish(f->fl[i].conn);
    }
    pthread_cond_destroy(&f->done);
    pthread_cond_destroy(&f->wake);
    pthread_mutex_destroy(&f->cb_lock);
    pthread_mutex_destroy(&f->lock);
    free(f->passfile);
    free(f->uri);
    free(f);
}
