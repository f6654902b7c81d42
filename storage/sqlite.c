/*
** sqlite.c: the storage on SQLite: open and configure the connection, load
** everything back at start, and the group commit of writes.
**
** The connection is opened NOMUTEX: until hpo_storage_start() it belongs to
** the opening thread, afterwards to whichever thread holds the writer role
** (`busy`, under `lock`): a submitter leading a batch, or the writer thread.
** Large values go
** to side files (blobs.c); the writer writes them before the COMMIT that
** references them and unlinks replaced ones after it.
**
** The pipelined flush (synchronous full on a database file). SQLite runs
** with synchronous NORMAL: a COMMIT appends the batch's frames to the WAL
** and returns without fsync. Flusher threads (flush_main) fdatasync() the
** WAL through an fd of its own on `<db>-wal` (an fsync is per inode, so it
** flushes SQLite's writes too) in a loop, and a batch's callers are woken
** only once an fdatasync that STARTED after the batch's COMMIT returned has
** succeeded: a reply still follows the write's arrival on disk, but the
** leader forms and commits batch N+1 while batch N is being flushed, so the
** disk's flush no longer serializes the batches. Right after its COMMIT the
** leader starts the writeback of the new frames (start_writeback), so the
** disk writes them while a flusher wakes up, and the flusher's fdatasync is
** left mostly with the disk's cache flush. An HTTP thread's round end
** (sq_lead_round) instead runs the fdatasync itself once it let go of
** `lock` (flush_round, the inline flush), when its thread has no other
** work waiting (hpo_storage_lead_busy; with work waiting, at the next
** round's end), and releases the replies there: no flusher wake-up and no
** kick back; the same rule holds (the fdatasync starts after the commits
** it covers), and a round end whose commit a started fdatasync already
** covers waits for that one's release. The flushers serve every other
** committer (the writer thread, a worker's write, a round end busy twice
** in a row) and the batches with side files (below).
**
** Why no acknowledged batch can be lost to a checkpoint or a WAL restart:
** in WAL mode SQLite writes the database file only in a checkpoint, and
** with synchronous NORMAL a checkpoint fdatasyncs the WAL before it copies
** frames into the database file and fsyncs the database file after a
** complete copy, before it records the frames as backfilled (nBackfill).
** A WAL restart (the next writer writing from offset 0 of the same inode,
** with a new salt) happens only when every frame is backfilled, that is
** after that fsync of the database file. So a frame a restart overwrites is
** already durable in the database file, whether or not our flusher had
** reached it; a frame not yet backfilled is never overwritten. After a power
** cut, recovery replays the WAL up to the last commit frame whose checksum
** chain is intact: an unflushed batch may be missing (it was never
** acknowledged), a flushed one is there. The WAL file stays the same inode
** while the daemon holds its connection (SQLite deletes it only when the
** last connection closes, and journal_size_limit is not set, so it is never
** truncated); its directory entry is fsync'd once at open.
**
** Side files keep their order: they are written and fdatasync'd, and their
** directory fsync'd, before the COMMIT that references them (as before); a
** batch that created or replaced side files waits for its own flush before
** the files it replaced are unlinked or reused, so a power cut cannot leave
** a durable reference to a file already gone. A failed fdatasync (EIO: the
** kernel may have dropped the dirty pages) ends the process: the daemon
** cannot know what reached the disk, so it stops (abort, as PostgreSQL's
** PANIC on a failed fsync) and the restart reads what the disk holds.
**
** Replies held, not the study (hpo_storage_defer_flush, used by
** daemon/dispatch.c): a deferring caller returns once its batch committed,
** so one study's mutations (serialized by its lane and lock) still form
** batches of several writes per flush; the dispatcher holds every reply
** until the flush covering all commits made before the reply was built.
** A flusher (or a round end's inline flush) calls the on_flush callback,
** which releases the held replies, without `lock` (call_on_flush).
**
** Pipelined writes (hpo_storage_pipeline, storage.h): a pipelining caller's
** write with a chain is copied whole (hpo__write_copy: ops and every value, up
** to HPO__PIPELINE_MAX bytes; pieces of a big sampler state are never
** pipelined), numbered (`accepted`) and queued, and the caller returns at
** once; the writer thread leads the batches (a pipelined write has no
** caller to lead). In a batch, a write whose chain already failed is
** failed without running (hpo__write_dependent_failure), and a pipelined write that
** fails fails its chain (hpo__chain_fail) before the next write runs, so
** write k+1 of a study never commits without write k. After the batch the
** leader publishes `resolved` (numbers resolve in queue order) and
** `last_failed`, releases the chains' counts and calls the on_flush
** callback: the dispatcher's held replies check what they saw.
*/
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "thread.h"
#include "../core/histogram.h"
#include "../core/log.h"
#include "storage-int.h"
#include "redo.h"
#include "walbuf.h"

/*
** Flusher threads: a commit made while one fdatasync runs starts the next on
** an idle flusher at once, instead of waiting for the running one to end
** (a reply waits about one flush, not one and a half).
*/
#define N_FLUSHERS 2
/*
** Set while an HTTP thread's round end leads batches (sq_lead_round): the
** round's flush runs once the round's end let go of `lock` (flush_round: on
** the thread itself, or a flusher woken then: a flusher woken under the
** lock would wake only to sleep on it), and the round's end starts no
** writeback of the WAL (start_writeback, which may wait for the disk's
** queue while the thread's connections wait): the fdatasync writes the
** frames.
*/
static _Thread_local bool round_leader;
static _Thread_local bool flush_due; /* a batch it led committed since */
static _Thread_local bool flush_deferred; /* its last round end left its flush to the next */
/* The idle writer wakes this often to bump its tick counter for the watchdog. */
#define IDLE_TICK_MS 500
/* HTTP threads a round's leader remembers to wake when it leaves their writes queued. */
#define HANDERS 16
/* Between two applies the writer lets the acknowledged writes gather this long. */
#define APPLY_NAP_US 1000
/*
** While the database cannot take the log's writes (locked by another
** process, full), the log keeps acknowledging them while fewer than
** APPLY_MAX wait (each holds its copy, up to 4 KiB, in memory) and the log
** is under REDO_MAX; past that, writes go to the database directly (and
** fail like it).
*/
#define APPLY_MAX 16384
#define REDO_MAX (64u << 20)
/* The redo log restarts at its start once it holds this much, all of it applied. */
#define REDO_RESTART_AT (4u << 20)
/* Free space that makes a database out of space look healthy again (/healthz). */
#define DB_ROOM (1u << 20)

/* Every statement, prepared once at open with SQLITE_PREPARE_PERSISTENT. */
struct stmts {
    sqlite3_stmt *begin;       /* the writer's transaction */
    sqlite3_stmt *begin_read;  /* load's read transaction */
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
    sqlite3_stmt *savepoint;   /* one per write */
    sqlite3_stmt *rollback_to; /* undo a failed write ... */
    sqlite3_stmt *release;     /* ... and end its savepoint */
    sqlite3_stmt *study_put;
    sqlite3_stmt *study_delete;
    sqlite3_stmt *trial_put;
    sqlite3_stmt *param_put;
    sqlite3_stmt *param_delete;
    sqlite3_stmt *report_put;
    sqlite3_stmt *attr_put;
    sqlite3_stmt *attr_delete;
    sqlite3_stmt *study_spec;
    sqlite3_stmt *sampler_state;
    sqlite3_stmt *old_state;  /* the references a write replaces or deletes */
    sqlite3_stmt *old_param;
    sqlite3_stmt *study_refs;
    sqlite3_stmt *load_studies;
    sqlite3_stmt *load_trials;
    sqlite3_stmt *load_params;
    sqlite3_stmt *load_reports;
    sqlite3_stmt *load_attrs;
    sqlite3_stmt *redo_get; /* the last redo record the database holds */
    sqlite3_stmt *redo_set;
};

static const struct {
    size_t offset;
    const char *sql;
} stmt_sql[] = {
    { offsetof(struct stmts, begin), "BEGIN IMMEDIATE" },
    { offsetof(struct stmts, begin_read), "BEGIN" },
    { offsetof(struct stmts, commit), "COMMIT" },
    { offsetof(struct stmts, rollback), "ROLLBACK" },
    { offsetof(struct stmts, savepoint), "SAVEPOINT w" },
    { offsetof(struct stmts, rollback_to), "ROLLBACK TO w" },
    { offsetof(struct stmts, release), "RELEASE w" },
    { offsetof(struct stmts, study_put),
            "INSERT INTO studies (id, name, spec, created_at) VALUES (?1, ?2, ?3, ?4)" },
    { offsetof(struct stmts, study_delete), "DELETE FROM studies WHERE id = ?1" },
    /* An upsert, not INSERT OR REPLACE: REPLACE deletes the old row first,
       which would cascade to the trial's params, reports and attrs. */
    { offsetof(struct stmts, trial_put),
            "INSERT INTO trials (study_id, number, state, value, worker, retry_of, retries,"
            " created_at, started_at, completed_at, heartbeat_at, results)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            " ON CONFLICT (study_id, number) DO UPDATE SET state = excluded.state,"
            " value = excluded.value, worker = excluded.worker, retry_of = excluded.retry_of,"
            " retries = excluded.retries, created_at = excluded.created_at,"
            " started_at = excluded.started_at, completed_at = excluded.completed_at,"
            " heartbeat_at = excluded.heartbeat_at, results = excluded.results" },
    { offsetof(struct stmts, param_put),
            "INSERT INTO params (study_id, number, idx, value) VALUES (?1, ?2, ?3, ?4)"
            " ON CONFLICT (study_id, number, idx) DO UPDATE SET value = excluded.value" },
    { offsetof(struct stmts, param_delete),
            "DELETE FROM params WHERE study_id = ?1 AND number = ?2 AND idx = ?3" },
    /* A step keeps its first value. */
    { offsetof(struct stmts, report_put),
            "INSERT INTO intermediate (study_id, number, step, value) VALUES (?1, ?2, ?3, ?4)"
            " ON CONFLICT (study_id, number, step) DO NOTHING" },
    { offsetof(struct stmts, attr_put),
            "INSERT INTO trial_attrs (study_id, number, key, value) VALUES (?1, ?2, ?3, ?4)"
            " ON CONFLICT (study_id, number, key) DO UPDATE SET value = excluded.value" },
    { offsetof(struct stmts, attr_delete),
            "DELETE FROM trial_attrs WHERE study_id = ?1 AND number = ?2 AND key = ?3" },
    { offsetof(struct stmts, study_spec), "UPDATE studies SET spec = ?2 WHERE id = ?1" },
    { offsetof(struct stmts, sampler_state),
            "UPDATE studies SET sampler_state = ?2 WHERE id = ?1" },
    /* A reference is a short BLOB; length() reads no overflow page, so a
       large inline value of an older database is not loaded to be skipped. */
    { offsetof(struct stmts, old_state),
            "SELECT sampler_state FROM studies WHERE id = ?1 AND length(sampler_state) < 128" },
    { offsetof(struct stmts, old_param),
            "SELECT value FROM params WHERE study_id = ?1 AND number = ?2 AND idx = ?3"
            " AND typeof(value) = 'blob' AND length(value) < 128" },
    { offsetof(struct stmts, study_refs),
            "SELECT sampler_state FROM studies WHERE id = ?1 AND length(sampler_state) < 128"
            " UNION ALL SELECT value FROM params WHERE study_id = ?1"
            " AND typeof(value) = 'blob' AND length(value) < 128" },
    { offsetof(struct stmts, load_studies),
            "SELECT id, name, spec, created_at, sampler_state FROM studies ORDER BY id" },
    { offsetof(struct stmts, load_trials),
            "SELECT study_id, number, state, value, worker, retry_of, retries, created_at,"
            " started_at, completed_at, heartbeat_at, results FROM trials"
            " ORDER BY study_id, number" },
    { offsetof(struct stmts, load_params),
            "SELECT study_id, number, idx, value FROM params ORDER BY study_id, number, idx" },
    { offsetof(struct stmts, load_reports),
            "SELECT study_id, number, step, value FROM intermediate"
            " ORDER BY study_id, number, step" },
    { offsetof(struct stmts, load_attrs),
            "SELECT study_id, number, key, value FROM trial_attrs"
            " ORDER BY study_id, number, key" },
    { offsetof(struct stmts, redo_get), "SELECT lsn, epoch FROM hpod_redo" },
    { offsetof(struct stmts, redo_set), "UPDATE hpod_redo SET lsn = ?1" },
};

#define N_STMTS (sizeof(stmt_sql) / sizeof(stmt_sql[0]))
_Static_assert(N_STMTS * sizeof(sqlite3_stmt *) == sizeof(struct stmts),
        "every statement of struct stmts needs its SQL");
_Static_assert(HPO_BLOB_REF_MAX == 128, "the SQL above filters references on their length");

static const struct hpo_storage_ops sq_ops;
struct sq_storage;
static int open_redo(struct sq_storage *st, struct hpo_error *err);
static int load_tables(struct sq_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err, bool commit);

/* A run of scalar params goes in one INSERT of up to this many rows (param_rows). */
#define PARAM_ROWS 8

struct sq_storage {
    struct hpo_storage base; /* first: the public handle */
    sqlite3 *db;
    struct stmts s;
    sqlite3_stmt *param_rows[PARAM_ROWS + 1]; /* [k]: param_put with k rows, k >= 2 */
    /* Scratch for vectors: decoded rows on load; on big-endian hosts, encoded
       rows in the writer. Load and the writer never run at the same time. */
    double *vec;
    size_t vec_cap;
    /* Scratch for a sampler state read from its side file during load. */
    void *buf;
    size_t buf_cap;
    /* Large values live in side files; the writer (before it, load) owns this. */
    struct hpo_blobs blobs;
    struct hpo__ckpt *ckpt; /* WAL checkpoints on a thread of their own (checkpoint.c) */

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the writer waits here for writes or stop */
    pthread_cond_t done; /* submitters wait here for their write */
    /* Under `lock`: */
    struct hpo_write *head;
    struct hpo_write **tail;
    size_t queued;
    size_t waiters; /* callers inside hpo_storage_write, for close */
    bool busy;      /* a thread is running a batch (it alone uses db and blobs) */
    bool started;
    bool stopping;
    bool paused;

    atomic_bool healthy;    /* the last commit succeeded */
    atomic_int db_errno;    /* why it failed: ENOSPC, EROFS, or 0 (another cause) */
    int db_dirfd;           /* the database's directory (O_PATH), for fstatvfs; or -1 */
    atomic_int blob_errno;  /* the last side-file write failed with it (0: did not) */
    atomic_uint_fast64_t blob_need; /* that write's length */
    int blob_dirfd;         /* the side files' directory (fixed once open), or -1 */
    atomic_uint_fast64_t ticks;
    atomic_uint_fast64_t commits;
    atomic_uint_fast64_t writes;
    /* For /metrics: each group transaction's duration (us) and size, failed ones. */
    struct hpo_hist commit_us;
    struct hpo_hist batch_writes;
    atomic_uint_fast64_t failed_batches;

    /* The pipelined flush (see the top of this file). */
    bool pipelined;          /* fixed at open */
    int wal_fd;              /* <db>-wal, for the flusher's fdatasync; or -1 */
    pthread_t flusher[N_FLUSHERS];
    int n_flushers;            /* started */
    pthread_cond_t flush_wake; /* idle flushers wait here for commits or stop */
    /* Written under `lock`, read anywhere: */
    atomic_uint_fast64_t commit_seq; /* group commits appended to the WAL so far */
    atomic_uint_fast64_t synced_seq; /* those covered by an fdatasync started after them */
    /* Under `lock`: */
    uint64_t flush_target; /* the newest commit a started fdatasync covers */
    bool flusher_stop;
    void (*on_flush)(void *arg); /* hpo_storage_on_flush */
    void *on_flush_arg;
    unsigned callbacks;          /* flushers' on_flush calls running (without `lock`) */

    /* Pipelined writes (see the top of this file). */
    atomic_uint_fast64_t accepted;   /* the last number given (written under `lock`) */
    atomic_uint_fast64_t resolved;   /* every write up to this number committed or failed */
    atomic_uint_fast64_t last_failed; /* the last that failed (0: none) */
    /* Round commits (sq_lead), under `lock`: */
    bool round_leading; /* an HTTP thread's round end holds the writer role */
    unsigned n_handers; /* threads that handed writes off to it since, and their wake-ups */
    bool unled; /* the queue holds a pipelined write no round end leads (a worker's) */
    struct {
        void (*wake)(void *arg);
        void *arg;
    } handers[HANDERS];

    /* The redo log (see the top of this file; NULL: none, a database in memory). */
    struct hpo__redo *redo;
    uint64_t redo_lsn; /* the last record appended (by the writer role's holder) */
    /* Under `lock`: */
    struct hpo_write *apply_head; /* acknowledged from the log, not yet in the database, */
    struct hpo_write **apply_tail; /* each copy's `seq` its record's number */
    size_t apply_n;      /* how many */
    bool applying;       /* a thread applies them or runs a batch: it alone uses db and blobs */
    bool apply_idle;     /* the applier waits for work (not between two applies) */
    bool writer_done;    /* the writer thread stopped: the applier stops once all is applied */
    pthread_t applier;   /* apply_main, started with the writer when there is a log */
    bool applier_started;
    pthread_cond_t apply_wake;
    uint64_t applied_lsn; /* the last record the database holds */
    unsigned apply_retry_ms; /* after a failed apply, the writer waits this long (0: none) */
    uint64_t apply_kicked_us; /* when a new record last cut that wait short */
    /* Under full with the log: a commit made WAL frames no started fdatasync covers. */
    atomic_bool wal_dirty;
};

static const uint64_t commit_us_le[] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
    100000, 250000, 500000, 1000000, 2500000 };
static const uint64_t batch_writes_le[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };

static sqlite3_stmt **stmt_at(struct stmts *s, size_t i)
{
    return (sqlite3_stmt **)((char *)s + stmt_sql[i].offset);
}

int hpo__storage_error(sqlite3 *db, int rc, const char *what, struct hpo_error *err)
{
    const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);

    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return hpo_error_set(err, -EAGAIN, HPO_UNAVAILABLE, NULL, "%s: %s", what, msg);
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
        return hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL, "%s: %s", what, msg);
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
            return hpo_error_set(err, -EEXIST, HPO_CONFLICT, NULL, "%s: %s", what, msg);
        }
        break;
    case SQLITE_NOMEM:
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "%s: %s", what, msg);
    default:
        break;
    }
    return hpo_error_set(err, -EIO, HPO_INTERNAL, NULL, "%s: %s (sqlite error %d)", what, msg,
            rc);
}

/*
** Step a statement that returns no rows, then reset it and clear its
** bindings. `rc` is the result of the binds before it (the first failure),
** so a failed bind is reported like a failed step.
*/
static int run(struct sq_storage *st, sqlite3_stmt *stmt, int rc, const char *what,
        struct hpo_error *err)
{
    int r = 0;

    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
    }
    if (rc != SQLITE_DONE) {
        r = hpo__storage_error(st->db, rc, what, err);
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return r;
}

/* Bind helpers that do nothing once a bind failed, keeping the first failure. */
static void bind_i64(int *rc, sqlite3_stmt *stmt, int i, int64_t v)
{
    if (*rc == SQLITE_OK) {
        *rc = sqlite3_bind_int64(stmt, i, v);
    }
}

/* NaN is never bound as a REAL: it is stored as NULL. */
static void bind_real(int *rc, sqlite3_stmt *stmt, int i, double v)
{
    if (*rc == SQLITE_OK) {
        *rc = isnan(v) ? sqlite3_bind_null(stmt, i) : sqlite3_bind_double(stmt, i, v);
    }
}

/* The text is borrowed until the write returns, which is after the step. */
static void bind_text(int *rc, sqlite3_stmt *stmt, int i, const char *v)
{
    if (*rc == SQLITE_OK) {
        *rc = sqlite3_bind_text(stmt, i, v, -1, SQLITE_STATIC);
    }
}

static void bind_blob(int *rc, sqlite3_stmt *stmt, int i, const void *v, size_t len)
{
    if (*rc == SQLITE_OK) {
        *rc = sqlite3_bind_blob64(stmt, i, v, len, SQLITE_STATIC);
    }
}

/* Make room for `n` doubles (at least one) in the vector scratch buffer. */
static int vec_reserve(struct sq_storage *st, size_t n)
{
    double *v;

    if (n == 0) {
        n = 1;
    }
    if (n <= st->vec_cap) {
        return 0;
    }
    if (n > SIZE_MAX / sizeof(double)) {
        return -ENOMEM;
    }
    v = realloc(st->vec, n * sizeof(double));
    if (v == NULL) {
        return -ENOMEM;
    }
    st->vec = v;
    st->vec_cap = n;
    return 0;
}

void hpo__storage_le_doubles(double *v, size_t n)
{
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint64_t u;

        memcpy(&u, &v[i], sizeof(u));
        u = __builtin_bswap64(u);
        memcpy(&v[i], &u, sizeof(u));
    }
#else
    (void)v;
    (void)n;
#endif
}

/*
** The stored bytes of a vector: little-endian float64, bound in place on a
** little-endian host (no copy of a large vector), else swapped into the
** scratch buffer. Sets *ret_bytes to NULL for an empty vector.
*/
static int vector_bytes(struct sq_storage *st, const double *v, size_t len,
        const void **ret_bytes, struct hpo_error *err)
{
    if (len > SIZE_MAX / sizeof(double) || (v == NULL && len > 0)) {
        return hpo_error_set(err, -EINVAL, HPO_INTERNAL, NULL, "bad vector param (length %zu)",
                len);
    }
    if (len == 0) {
        *ret_bytes = NULL;
        return 0;
    }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    (void)st;
    *ret_bytes = v;
#else
    if (vec_reserve(st, len) < 0) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    memcpy(st->vec, v, len * sizeof(double));
    hpo__storage_le_doubles(st->vec, len);
    *ret_bytes = st->vec;
#endif
    return 0;
}

/*
** Bind a large value given as n parts (one, or a sampler state's pieces):
** when it goes to a side file, the file is written first (lazily for
** `lazy`, as a state for `state`: hpo__blob_prepare_write, its checksum
** computed while it is written) and its reference bound (then
** ref->text_len > 0); a failed statement's file is undone with the rest
** of its write (run_write). Else the bytes themselves (several parts
** joined in st->buf first). The parts stay valid until the statement ran.
** Returns 0 or a negative errno with `err` set.
*/
static int bind_parts(struct sq_storage *st, int *rc, sqlite3_stmt *stmt, int i,
        int64_t study_id, const struct hpo_part *parts, size_t n, bool lazy, bool state,
        struct hpo_blob_ref *ref, struct hpo_error *err)
{
    const void *data = n == 1 ? parts[0].data : NULL;
    size_t len = 0;
    bool to_file;

    ref->text_len = 0;
    for (size_t k = 0; k < n; k++) {
        len += parts[k].len;
    }
    to_file = st->blobs.dirfd >= 0 && len >= HPO_BLOB_MIN;
    if (!to_file && n > 1) {
        unsigned char *p;
        if (len + 1 > st->buf_cap) {
            void *nb = realloc(st->buf, len + 1);
            if (nb == NULL) {
                return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            }
            st->buf = nb;
            st->buf_cap = len + 1;
        }
        p = st->buf;
        for (size_t k = 0; k < n; k++) {
            if (parts[k].len > 0) {
                memcpy(p, parts[k].data, parts[k].len);
                p += parts[k].len;
            }
        }
        data = st->buf;
    }
    /* A small value that starts like a reference goes to a file too (hpo__blob_wanted). */
    if (to_file || hpo__blob_wanted(&st->blobs, data, len)) {
        int r = hpo__blob_prepare_write(&st->blobs, study_id, parts, n, lazy, state, ref, err);
        if (r < 0) {
            return r;
        }
        bind_blob(rc, stmt, i, ref->text, ref->text_len);
    } else {
        bind_blob(rc, stmt, i, data, len);
    }
    return 0;
}

/*
** Run a SELECT of old cells (bound by the caller; `rc` is the binds' result)
** and queue the side files they reference for unlinking after the commit.
*/
static int collect_obsolete(struct sq_storage *st, sqlite3_stmt *stmt, int rc, bool reusable,
        struct hpo_error *err)
{
    int r = 0;

    if (st->blobs.dirfd < 0) {
        sqlite3_clear_bindings(stmt);
        return 0;
    }
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            if (hpo__blob_obsolete(&st->blobs, sqlite3_column_blob(stmt, 0),
                        (size_t)sqlite3_column_bytes(stmt, 0), reusable) < 0) {
                r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
                break;
            }
        }
    }
    if (r == 0 && rc != SQLITE_DONE) {
        r = hpo__storage_error(st->db, rc, "reading the values a write replaces", err);
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return r;
}

/* Fail with not_found when the last statement touched no row. */
static int check_changed(struct sq_storage *st, const struct hpo_op *op, struct hpo_error *err)
{
    if (sqlite3_changes(st->db) == 0) {
        return hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL, "study %lld not found",
                (long long)op->study_id);
    }
    return 0;
}

/* Note the side file of the param cell `op` names, if it holds one, to go once the batch commits. */
static int collect_old_param(struct sq_storage *st, const struct hpo_op *op, struct hpo_error *err)
{
    sqlite3_stmt *stmt = st->s.old_param;
    int rc = SQLITE_OK;

    bind_i64(&rc, stmt, 1, op->study_id);
    bind_i64(&rc, stmt, 2, op->number);
    bind_i64(&rc, stmt, 3, op->index);
    return collect_obsolete(st, stmt, rc, false, err);
}

static int run_param(struct sq_storage *st, const struct hpo_op *op, struct hpo_error *err)
{
    sqlite3_stmt *stmt = st->s.param_put;
    struct hpo_blob_ref ref;
    const void *bytes = NULL;
    int rc = SQLITE_OK;
    int r;

    /* An upsert may replace a vector that lives in a side file (never a scalar's cell). */
    if (!(op->kind == HPO_OP_PARAM_PUT && op->scalar)) {
        r = collect_old_param(st, op, err);
        if (r < 0) {
            return r;
        }
    }
    if (op->kind == HPO_OP_PARAM_VECTOR) {
        r = vector_bytes(st, op->vector, op->len, &bytes, err);
        if (r < 0) {
            return r;
        }
    }
    bind_i64(&rc, stmt, 1, op->study_id);
    bind_i64(&rc, stmt, 2, op->number);
    bind_i64(&rc, stmt, 3, op->index);
    if (op->kind == HPO_OP_PARAM_PUT) {
        bind_real(&rc, stmt, 4, op->value);
    } else if (bytes == NULL) {
        if (rc == SQLITE_OK) {
            rc = sqlite3_bind_zeroblob(stmt, 4, 0);
        }
    } else if (op->lazy && op->hold != NULL && bytes == (const void *)op->vector &&
            st->blobs.dirfd >= 0 && op->len * sizeof(double) >= HPO_BLOB_MIN) {
        /* Its file written after the commit, from the caller's held memory. */
        r = hpo__blob_prepare_deferred(&st->blobs, op->study_id, bytes, op->len * sizeof(double),
                op->hold, op->hold_arg, &ref, err);
        if (r < 0) {
            sqlite3_clear_bindings(stmt);
            return r;
        }
        bind_blob(&rc, stmt, 4, ref.text, ref.text_len);
    } else {
        struct hpo_part part = { bytes, op->len * sizeof(double) };

        r = bind_parts(st, &rc, stmt, 4, op->study_id, &part, 1, op->lazy, false, &ref, err);
        if (r < 0) {
            sqlite3_clear_bindings(stmt);
            return r;
        }
    }
    return run(st, stmt, rc, "writing a param", err);
}

/*
** A state given with pieces to append (op->append): extend the side file
** the cell references when blobs.c can, and point the cell at the longer
** file. Returns 1 when done, 0 to write the whole state, or a negative errno.
*/
static int append_state(struct sq_storage *st, const struct hpo_op *op, struct hpo_error *err)
{
    sqlite3_stmt *stmt = st->s.old_state;
    struct hpo_blob_ref cur, next;
    bool found = false;
    int rc = SQLITE_OK;
    int r;

    bind_i64(&rc, stmt, 1, op->study_id);
    if (rc == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW) {
        found = hpo__blob_parse(sqlite3_column_blob(stmt, 0),
                (size_t)sqlite3_column_bytes(stmt, 0), &cur);
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (!found) {
        return 0;
    }
    r = hpo__blob_append(&st->blobs, &cur, op->append, op->n_append, op->start,
            op->settle_arg, &next, err);
    if (r <= 0) {
        return r;
    }
    /* The same file, longer: nothing becomes obsolete. */
    stmt = st->s.sampler_state;
    rc = SQLITE_OK;
    bind_i64(&rc, stmt, 1, op->study_id);
    bind_blob(&rc, stmt, 2, next.text, next.text_len);
    r = run(st, stmt, rc, "writing the sampler state", err);
    if (r == 0) {
        r = check_changed(st, op, err);
    }
    return r < 0 ? r : 1;
}

static int run_sampler_state(struct sq_storage *st, const struct hpo_op *op,
        struct hpo_error *err)
{
    struct hpo_part one = { op->blob, op->len };
    const struct hpo_part *parts = op->parts != NULL ? op->parts : &one;
    size_t n = op->parts != NULL ? op->n_parts : (op->blob != NULL ? 1 : 0);
    sqlite3_stmt *stmt = st->s.old_state;
    struct hpo_blob_ref ref = { .text_len = 0 };
    int rc = SQLITE_OK;
    int r;

    if (op->n_append > 0 && st->blobs.dirfd >= 0) {
        r = append_state(st, op, err);
        if (r != 0) {
            return r < 0 ? r : 0;
        }
    }
    if (op->settle != NULL) {
        op->settle(op->settle_arg); /* the whole state is read below */
    }
    bind_i64(&rc, stmt, 1, op->study_id);
    r = collect_obsolete(st, stmt, rc, true, err);
    if (r < 0) {
        return r;
    }
    stmt = st->s.sampler_state;
    rc = SQLITE_OK;
    bind_i64(&rc, stmt, 1, op->study_id);
    if (n > 0) {
        r = bind_parts(st, &rc, stmt, 2, op->study_id, parts, n, false, true, &ref, err);
        if (r < 0) {
            sqlite3_clear_bindings(stmt);
            return r;
        }
    } else {
        /* No state: a NULL blob clears it. */
        bind_blob(&rc, stmt, 2, NULL, 0);
    }
    r = run(st, stmt, rc, "writing the sampler state", err);
    if (r == 0) {
        /* A missing study: a file written first is undone with the write. */
        r = check_changed(st, op, err);
    }
    if (r == 0 && ref.text_len > 0) {
        /* Later tells may append to this file (op->append). */
        hpo__blob_keep_tail(&st->blobs, &ref);
    }
    return r;
}

static int run_op(struct sq_storage *st, const struct hpo_op *op, struct hpo_error *err)
{
    const struct hpo_trial_row *t = &op->trial;
    sqlite3_stmt *stmt;
    int rc = SQLITE_OK;
    int r;

    switch (op->kind) {
    case HPO_OP_STUDY_PUT:
        stmt = st->s.study_put;
        bind_i64(&rc, stmt, 1, op->study_id);
        bind_text(&rc, stmt, 2, op->name);
        bind_text(&rc, stmt, 3, op->text);
        bind_i64(&rc, stmt, 4, op->created_at);
        return run(st, stmt, rc, "inserting a study", err);
    case HPO_OP_STUDY_DELETE:
        /* Its state and vectors in side files go once the delete commits. */
        stmt = st->s.study_refs;
        bind_i64(&rc, stmt, 1, op->study_id);
        r = collect_obsolete(st, stmt, rc, false, err);
        if (r < 0) {
            return r;
        }
        stmt = st->s.study_delete;
        rc = SQLITE_OK;
        bind_i64(&rc, stmt, 1, op->study_id);
        r = run(st, stmt, rc, "deleting a study", err);
        return r < 0 ? r : check_changed(st, op, err);
    case HPO_OP_TRIAL_PUT:
        stmt = st->s.trial_put;
        bind_i64(&rc, stmt, 1, op->study_id);
        bind_i64(&rc, stmt, 2, op->number);
        bind_i64(&rc, stmt, 3, t->state);
        bind_real(&rc, stmt, 4, t->value);
        bind_text(&rc, stmt, 5, t->worker);
        bind_i64(&rc, stmt, 6, t->retry_of);
        bind_i64(&rc, stmt, 7, t->retries);
        bind_i64(&rc, stmt, 8, t->created_at);
        bind_i64(&rc, stmt, 9, t->started_at);
        bind_i64(&rc, stmt, 10, t->completed_at);
        bind_i64(&rc, stmt, 11, t->heartbeat_at);
        bind_text(&rc, stmt, 12, t->results);
        return run(st, stmt, rc, "writing a trial", err);
    case HPO_OP_PARAM_PUT:
    case HPO_OP_PARAM_VECTOR:
        return run_param(st, op, err);
    case HPO_OP_REPORT_PUT:
        stmt = st->s.report_put;
        bind_i64(&rc, stmt, 1, op->study_id);
        bind_i64(&rc, stmt, 2, op->number);
        bind_i64(&rc, stmt, 3, op->step);
        bind_real(&rc, stmt, 4, op->value);
        return run(st, stmt, rc, "writing an intermediate value", err);
    case HPO_OP_ATTR_PUT:
        stmt = st->s.attr_put;
        bind_i64(&rc, stmt, 1, op->study_id);
        bind_i64(&rc, stmt, 2, op->number);
        bind_text(&rc, stmt, 3, op->name);
        bind_text(&rc, stmt, 4, op->text);
        return run(st, stmt, rc, "writing a user attr", err);
    case HPO_OP_ATTR_DELETE:
        stmt = st->s.attr_delete;
        bind_i64(&rc, stmt, 1, op->study_id);
        bind_i64(&rc, stmt, 2, op->number);
        bind_text(&rc, stmt, 3, op->name);
        return run(st, stmt, rc, "deleting a user attr", err);
    case HPO_OP_STUDY_SPEC:
        stmt = st->s.study_spec;
        bind_i64(&rc, stmt, 1, op->study_id);
        bind_text(&rc, stmt, 2, op->text);
        return run(st, stmt, rc, "updating a study", err);
    case HPO_OP_SAMPLER_STATE:
        return run_sampler_state(st, op, err);
    case HPO_OP_PARAM_DELETE:
        /* Its side file goes once the delete commits. */
        r = collect_old_param(st, op, err);
        if (r < 0) {
            return r;
        }
        stmt = st->s.param_delete;
        rc = SQLITE_OK;
        bind_i64(&rc, stmt, 1, op->study_id);
        bind_i64(&rc, stmt, 2, op->number);
        bind_i64(&rc, stmt, 3, op->index);
        return run(st, stmt, rc, "deleting a param", err);
    }
    return hpo_error_set(err, -EINVAL, HPO_INTERNAL, NULL, "unknown storage op %d",
            (int)op->kind);
}

/*
** How many ops from ops[0] on (at most n, and PARAM_ROWS) are scalar
** params: a trial's, as hpo__write_params makes them, one op each.
*/
static size_t param_run(const struct hpo_op *ops, size_t n)
{
    size_t k = 0;

    while (k < n && k < PARAM_ROWS && ops[k].kind == HPO_OP_PARAM_PUT && ops[k].scalar) {
        k++;
    }
    return k;
}

/*
** Those k >= 2 ops in one statement (param_put's upsert with k rows): the
** same rows as k statements, in their order, for about a third less CPU
** (an ask's three params: 1.2 us less of the writer's).
*/
static int run_params(struct sq_storage *st, const struct hpo_op *ops, size_t k,
        struct hpo_error *err)
{
    sqlite3_stmt *stmt = st->param_rows[k];
    int rc = SQLITE_OK;

    for (size_t j = 0; j < k; j++) {
        int at = (int)(4 * j);
        bind_i64(&rc, stmt, at + 1, ops[j].study_id);
        bind_i64(&rc, stmt, at + 2, ops[j].number);
        bind_i64(&rc, stmt, at + 3, ops[j].index);
        bind_real(&rc, stmt, at + 4, ops[j].value);
    }
    return run(st, stmt, rc, "writing a param", err);
}

/* The op at ops[0] or a run of scalar params from it; *ret_n: how many ops it took. */
static int run_next(struct sq_storage *st, const struct hpo_op *ops, size_t n, size_t *ret_n,
        struct hpo_error *err)
{
    size_t k = param_run(ops, n);

    if (k >= 2) {
        *ret_n = k;
        return run_params(st, ops, k, err);
    }
    *ret_n = 1;
    return run_op(st, ops, err);
}

/*
** Run one write inside its own savepoint. On failure the savepoint is rolled
** back, so the write leaves nothing behind and the batch goes on. Returns
** false if the transaction can no longer be trusted (SQLite rolled it back,
** or rolling back the savepoint failed): then the whole batch must fail.
**
** `solo`: the write is the batch's only one to run, so the transaction is
** its savepoint: no SAVEPOINT and RELEASE (two statements of the dozen an
** ask costs), and a failure rolls the whole transaction back, which leaves
** it closed (run_batch then has nothing to commit).
*/
static bool run_write(struct sq_storage *st, struct hpo_write *w, bool solo)
{
    struct hpo_blob_mark mark;
    struct hpo_error ignored;
    int r = 0;

    hpo__blobs_mark(&st->blobs, &mark);
    if (!solo) {
        r = run(st, st->s.savepoint, SQLITE_OK, "starting a savepoint", &w->err);
    }
    for (size_t i = 0, n = 0; r == 0 && i < w->n_ops; i += n) {
        r = run_next(st, &w->ops[i], w->n_ops - i, &n, &w->err);
    }
    if (r == 0 && !solo) {
        r = run(st, st->s.release, SQLITE_OK, "releasing a savepoint", &w->err);
    }
    w->result = r;
    if (r == 0) {
        return true;
    }
    /* No cell will reference the files this write made. */
    hpo__blobs_undo(&st->blobs, &mark);
    /* FULL, IOERR, NOMEM and some BUSY errors roll the whole transaction back. */
    if (sqlite3_get_autocommit(st->db)) {
        return false;
    }
    if (solo) {
        return run(st, st->s.rollback, SQLITE_OK, "rolling back", &ignored) == 0;
    }
    if (run(st, st->s.rollback_to, SQLITE_OK, "rolling back a savepoint", &ignored) < 0 ||
            run(st, st->s.release, SQLITE_OK, "releasing a savepoint", &ignored) < 0) {
        return false;
    }
    return true;
}

/* Whether an earlier pipelined write of `w`'s study failed (then `w` must not run). */
static bool after_failure(const struct hpo_write *w)
{
    return w->chain != NULL && atomic_load(&w->chain->failed) != 0;
}

/*
** Run a write acknowledged from the redo log (apply_writes, load_overlaid)
** inside their transaction: 0 when it ran or the database refused it alone
** (a constraint: given up, w->result tells), or a negative errno, with
** w->err, when it failed for want of space, an I/O error or a lock
** (unavailable), which fails the whole transaction even when SQLite kept it
** open: it is tried again later.
*/
static int replay_write(struct sq_storage *st, struct hpo_write *w)
{
    if (!run_write(st, w, false) || (w->result < 0 && w->err.code == HPO_UNAVAILABLE)) {
        return w->result < 0 ? w->result : -EIO;
    }
    return 0;
}

/* Every write of `batch` failed with `err`; a pipelined one fails its chain with it. */
static void fail_batch(struct hpo_write *batch, int r, const struct hpo_error *err)
{
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        w->result = r;
        w->err = *err;
        if (w->aseq != 0) {
            hpo__chain_fail(w->chain, w->aseq, &w->err);
        }
    }
}

/* Close a transaction a failure left open, so the next BEGIN can run. */
static void end_transaction(struct sq_storage *st)
{
    struct hpo_error ignored;

    if (!sqlite3_get_autocommit(st->db)) {
        (void)run(st, st->s.rollback, SQLITE_OK, "rolling back", &ignored);
    }
}

/*
** Whether a failed COMMIT surely wrote no complete commit record: then the
** batch's side files can go at once. After other errors (a failed fsync of
** the WAL, say) recovery might still find the commit, so the files stay and
** the sweep at the next open removes them if no cell references them.
*/
static bool commit_surely_failed(int xrc)
{
    switch (xrc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
        return true;
    default:
        return xrc == SQLITE_IOERR_WRITE || xrc == SQLITE_IOERR_NOMEM;
    }
}

static uint64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Let /healthz see whether the last side-file write failed (the writer's state). */
static void publish_blob_health(struct sq_storage *st)
{
    atomic_store(&st->blob_need, st->blobs.fail_len);
    atomic_store(&st->blob_errno, st->blobs.fail_errno);
}

/*
** The cause of a failed batch that /healthz can watch the file system cure:
** ENOSPC (SQLITE_FULL or an I/O error with that errno, while the file
** system has less than DB_ROOM free: not a file-size limit or a quota) or
** EROFS; 0 for anything else. Read before the rollback resets the codes.
*/
static int failure_errno(struct sq_storage *st)
{
    int xrc = sqlite3_extended_errcode(st->db);
    struct statvfs sv;
    int e = 0;

    if ((xrc & 0xff) == SQLITE_FULL) {
        e = ENOSPC;
    } else if ((xrc & 0xff) == SQLITE_IOERR || (xrc & 0xff) == SQLITE_READONLY) {
        e = sqlite3_system_errno(st->db);
    }
    if (e == EROFS) {
        return e;
    }
    if (e != ENOSPC || st->db_dirfd < 0 || fstatvfs(st->db_dirfd, &sv) != 0) {
        return 0;
    }
    return (uint64_t)sv.f_bavail * sv.f_frsize < DB_ROOM ? ENOSPC : 0;
}

/* One group transaction: every write of `batch`, each in its savepoint. True if it committed. */
static bool run_batch(struct sq_storage *st, struct hpo_write *batch)
{
    static const struct hpo_blob_mark all = { 0, 0, 0, 0, 0 };
    struct hpo_error err;
    bool unlink_files = true;
    uint64_t ok = 0, n = 0, runnable = 0, t0 = mono_us();
    int r;

    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        runnable += !after_failure(w);
    }
    if (runnable == 0) {
        /* Every write depends on a failed one: no transaction (it proves nothing healthy). */
        for (struct hpo_write *w = batch; w != NULL; w = w->next) {
            w->result = hpo__write_dependent_failure(w);
        }
        return true;
    }
    end_transaction(st);
    r = run(st, st->s.begin, SQLITE_OK, "starting a transaction", &err);
    if (r < 0) {
        goto fail;
    }
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        if (after_failure(w)) {
            w->result = hpo__write_dependent_failure(w);
            continue;
        }
        if (!run_write(st, w, runnable == 1)) {
            /* The writes before this one are gone with the transaction. */
            r = w->result;
            err = w->err;
            goto fail;
        }
        if (w->result < 0 && w->aseq != 0) {
            hpo__chain_fail(w->chain, w->aseq, &w->err);
        }
    }
    /* With synchronous FULL, the new files' names are durable before their references. */
    r = hpo__blobs_sync_dir(&st->blobs, &err);
    if (r < 0) {
        goto fail;
    }
    /* A solo write that failed closed the transaction (run_write): nothing to commit. */
    r = sqlite3_get_autocommit(st->db) ? 0 : run(st, st->s.commit, SQLITE_OK, "committing", &err);
    if (r < 0) {
        unlink_files = commit_surely_failed(sqlite3_extended_errcode(st->db));
        /* Whatever the cause, nothing of the batch is stored. */
        err.code = HPO_UNAVAILABLE;
        if (r != -EAGAIN) {
            r = -EIO;
        }
        goto fail;
    }
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        ok += w->result == 0;
        n++;
    }
    hpo_hist_observe(&st->commit_us, mono_us() - t0);
    hpo_hist_observe(&st->batch_writes, n);
    atomic_fetch_add(&st->commits, 1);
    atomic_fetch_add(&st->writes, ok);
    atomic_store(&st->healthy, true);
    publish_blob_health(st);
    return true;

fail:
    atomic_store(&st->db_errno, failure_errno(st));
    end_transaction(st);
    if (unlink_files) {
        hpo__blobs_undo(&st->blobs, &all);
    } else {
        hpo__blobs_forget(&st->blobs);
    }
    fail_batch(batch, r, &err);
    atomic_fetch_add(&st->failed_batches, 1);
    atomic_store(&st->healthy, false);
    publish_blob_health(st);
    return false;
}

static void idle_wait(struct sq_storage *st, pthread_cond_t *cond, unsigned us)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)us * 1000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    (void)pthread_cond_timedwait(cond, &st->lock, &ts);
}

/*
** Pipelined flush: start writing the frames the COMMIT just appended to the
** WAL (SYNC_FILE_RANGE_WRITE: it queues the dirty pages' writeback and does
** not wait for it), so that the disk writes them while a flusher wakes up;
** its fdatasync then waits for writes already under way and flushes the
** disk's cache, instead of starting them (measured on this machine's ext4
** on virtio, a 40 KB pwrite then fdatasync 50 us later: the fdatasync
** 100-130 us instead of 250-270). Durability still comes from the
** flusher's fdatasync alone; a failure here changes nothing.
*/
static void start_writeback(int fd)
{
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

static void sync_file(int fd, const char *what);

/*
** Apply writes acknowledged from the redo log (`list`, in their order, the
** last of record `lsn`) in one transaction that also notes `lsn` in
** hpod_redo. With `applying` held, without `lock`. True if it committed;
** false leaves the database as it was (the caller tries again later).
** A write that fails alone (its savepoint rolled back) cannot be refused
** any more, its reply went out: it is logged as lost.
*/
static bool apply_writes(struct sq_storage *st, struct hpo_write *list, uint64_t lsn,
        uint64_t *ret_n)
{
    static const struct hpo_blob_mark all = { 0, 0, 0, 0, 0 };
    struct hpo_error err;
    uint64_t n = 0, t0 = mono_us();
    int r;

    end_transaction(st);
    r = run(st, st->s.begin, SQLITE_OK, "starting a transaction", &err);
    for (struct hpo_write *w = list; r == 0 && w != NULL; w = w->next) {
        r = replay_write(st, w);
        if (r < 0) {
            err = w->err;
            break;
        }
        if (w->result < 0) {
            hpo_log(HPO_LOG_ERR, "a write of study %lld acknowledged from the redo log "
                    "(record %llu) could not be applied and is lost: %s",
                    (long long)w->ops[0].study_id, (unsigned long long)w->seq, w->err.message);
        }
        n++;
    }
    if (r == 0) {
        r = run(st, st->s.redo_set, sqlite3_bind_int64(st->s.redo_set, 1, (sqlite3_int64)lsn),
                "noting the redo record applied", &err);
    }
    if (r == 0) {
        r = run(st, st->s.commit, SQLITE_OK, "committing", &err);
    }
    if (r < 0) {
        atomic_store(&st->db_errno, failure_errno(st));
        end_transaction(st);
        hpo__blobs_undo(&st->blobs, &all);
        atomic_fetch_add(&st->failed_batches, 1);
        atomic_store(&st->healthy, false);
        hpo_log(HPO_LOG_WARNING, "applying redo records up to %llu failed (they stay in the "
                "log and are tried again): %s", (unsigned long long)lsn, err.message);
        return false;
    }
    hpo_hist_observe(&st->commit_us, mono_us() - t0);
    hpo_hist_observe(&st->batch_writes, n);
    atomic_fetch_add(&st->commits, 1);
    atomic_fetch_add(&st->writes, n);
    atomic_store(&st->healthy, true);
    *ret_n = n;
    if (hpo__blobs_pending(&st->blobs)) {
        /* Files the writes replaced go once the commit is on disk (a power cut, lead_batch). */
        if (st->pipelined) {
            sync_file(st->wal_fd, "the WAL of the database");
        }
        hpo__blobs_finish(&st->blobs);
    }
    publish_blob_health(st);
    return true;
}

/*
** With `lock` held, record `lsn` just applied: the log may start again at
** its start (every record appended is applied, none is being appended, and
** it holds REDO_RESTART_AT).
*/
static bool restart_due(const struct sq_storage *st, uint64_t lsn)
{
    return st->apply_head == NULL && !st->busy && st->redo_lsn == lsn &&
            hpo__redo_size(st->redo) >= REDO_RESTART_AT;
}

/*
** With `lock` held, `applying` free and writes to apply (returns with the
** lock held, `applying` free again): apply every write acknowledged from the
** log so far. Once the database holds every record appended and no batch is
** being appended, the log restarts at its start. True if they applied.
*/
static bool apply_pending(struct sq_storage *st)
{
    struct hpo_write *list = st->apply_head;
    struct hpo_write *last = list, *next;
    uint64_t lsn, n = 0;
    bool ok;

    while (last->next != NULL) {
        last = last->next;
    }
    lsn = last->seq;
    st->apply_head = NULL;
    st->apply_tail = &st->apply_head;
    st->applying = true;
    pthread_mutex_unlock(&st->lock);

    ok = apply_writes(st, list, lsn, &n);

    pthread_mutex_lock(&st->lock);
    if (!ok) {
        /* Back in front of what came meanwhile. */
        last->next = st->apply_head;
        if (st->apply_head == NULL) {
            st->apply_tail = &last->next;
        }
        st->apply_head = list;
    } else {
        st->applied_lsn = lsn;
        st->apply_n -= n;
        if (restart_due(st, lsn) && st->pipelined) {
            /*
            ** Under full the log restarts over records only once the
            ** database holds them on disk: the WAL is flushed first (once
            ** per REDO_RESTART_AT of log), the applier keeping `applying`;
            ** then asked again (a round may have appended meanwhile).
            */
            pthread_mutex_unlock(&st->lock);
            sync_file(st->wal_fd, "the WAL of the database");
            pthread_mutex_lock(&st->lock);
        }
        if (restart_due(st, lsn)) {
            struct hpo_error e;

            if (hpo__redo_restart(st->redo, false, &e) < 0) {
                hpo_log(HPO_LOG_WARNING, "%s", e.message);
            }
        }
    }
    st->applying = false;
    pthread_cond_broadcast(&st->done);
    if (ok) {
        pthread_mutex_unlock(&st->lock);
        for (struct hpo_write *w = list; w != NULL; w = next) {
            next = w->next;
            hpo__write_copy_free(w);
        }
        pthread_mutex_lock(&st->lock);
    }
    return ok;
}

/*
** With `lock` held: take the database for a batch or a load (`applying`),
** once every write acknowledged from the log before is in it. False when
** applying them failed (nothing taken: what came after them must wait).
*/
static bool take_db(struct sq_storage *st)
{
    for (;;) {
        if (st->applying) {
            pthread_cond_wait(&st->done, &st->lock);
        } else if (st->apply_head == NULL) {
            st->applying = true;
            return true;
        } else if (st->apply_retry_ms != 0 || !apply_pending(st)) {
            /* (The applier's last try failed: its retry, not this caller, tries again.) */
            return false;
        }
    }
}

static void give_db(struct sq_storage *st)
{
    st->applying = false;
    pthread_cond_broadcast(&st->done);
    if (st->apply_head != NULL) {
        pthread_cond_signal(&st->apply_wake);
    }
}

/* Whether every write of `batch` is a pipelined copy (the redo log takes those). */
static bool all_pipelined(const struct hpo_write *batch)
{
    for (const struct hpo_write *w = batch; w != NULL; w = w->next) {
        if (w->aseq == 0) {
            return false;
        }
    }
    return true;
}

/*
** The batch's commit with the redo log: append its writes as record `lsn`
** (the writer role's holder, without `lock`). True if they are in the log;
** otherwise every write of it failed, with the error.
*/
static bool log_batch(struct sq_storage *st, struct hpo_write *batch, uint64_t lsn,
        bool *ret_appended)
{
    struct hpo_error err;
    size_t runnable = 0;
    int r;

    *ret_appended = false;
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        if (after_failure(w)) {
            /* An earlier write of its study failed: it must not reach the database. */
            w->result = hpo__write_dependent_failure(w);
        } else {
            w->result = 0;
            runnable++;
        }
    }
    if (runnable == 0) {
        return true; /* (no record: its number stays free for the next) */
    }
    r = hpo__redo_append(st->redo, lsn, batch, &err);
    *ret_appended = r == 0;
    if (r == 0) {
        return true;
    }
    if (r == -EIO) {
        /* (/healthz recovers by itself from these once space is back, db_curable.) */
        int e = errno;

        atomic_store(&st->db_errno, e == ENOSPC || e == EROFS ? e : 0);
    }
    fail_batch(batch, r, &err);
    atomic_fetch_add(&st->failed_batches, 1);
    atomic_store(&st->healthy, false);
    return false;
}

/*
** Run the queued writes as one batch (called with `lock` held, !busy, a
** non-empty queue; returns with it held). Whoever finds the writer role free
** takes it: a caller of hpo_storage_write with its own write queued (no
** thread hop when the database is idle), or the writer thread after a pause.
** Writes queued meanwhile wait for the next leader, one of their callers.
*/
static void lead_batch(struct sq_storage *st)
{
    struct hpo_write *batch = st->head;
    struct hpo_write *next, *copies = NULL, *logged = NULL, **logged_tail = &logged;
    uint64_t seq = 0, resolved = 0, lsn = 0;
    bool committed, db = false, pending = false, appended = false;

    st->busy = true;
    st->head = NULL;
    st->tail = &st->head;
    st->queued = 0;
    st->unled = false;
    if (st->redo != NULL && st->apply_n < APPLY_MAX && hpo__redo_size(st->redo) < REDO_MAX &&
            all_pipelined(batch)) {
        lsn = st->redo_lsn + 1;
    } else {
        db = take_db(st);
    }
    pthread_mutex_unlock(&st->lock);

    if (lsn != 0) {
        committed = log_batch(st, batch, lsn, &appended);
        if (!appended) {
            lsn = 0; /* (nothing in the log: every write failed, before or in the append) */
        }
    } else if (db) {
        committed = run_batch(st, batch);
    } else {
        struct hpo_error err;

        hpo_error_set(&err, -EIO, HPO_UNAVAILABLE, NULL,
                "the writes acknowledged before this one are not yet in the database");
        fail_batch(batch, -EIO, &err);
        committed = false;
    }
    if (committed && st->pipelined && !round_leader) {
        /* (The log's new record, or the WAL's frames of a batch committed directly.) */
        start_writeback(lsn != 0 ? hpo__redo_fd(st->redo) : st->wal_fd);
    }

    pthread_mutex_lock(&st->lock);
    if (db) {
        /* With files to remove after the commit, the database stays taken until then. */
        pending = hpo__blobs_pending(&st->blobs);
        if (!pending) {
            give_db(st);
        }
    }
    if (committed && lsn != 0) {
        st->redo_lsn = lsn;
    } else if (committed && st->redo != NULL && st->pipelined) {
        atomic_store(&st->wal_dirty, true);
    }
    if (committed && st->pipelined) {
        /* Its callers wait for the flusher (sq_write); this thread may lead the next batch. */
        seq = atomic_load(&st->commit_seq) + 1;
        atomic_store(&st->commit_seq, seq);
        if (round_leader && st->head == NULL && !pending) {
            /* (Nothing queued meanwhile: the round's end returns right after.) */
            flush_due = true;
        } else {
            pthread_cond_signal(&st->flush_wake);
        }
    }
    /* A waiter may free its write as soon as it sees `done`. */
    for (struct hpo_write *w = batch; w != NULL; w = next) {
        next = w->next;
        w->next = NULL;
        if (w->aseq != 0) {
            /* Pipelined: nobody waits; numbers resolve in order, as the queue. */
            resolved = w->aseq;
            if (w->result < 0) {
                atomic_store(&st->last_failed, w->aseq);
            }
            if (committed && lsn != 0 && w->result == 0) {
                /* In the log: the database takes it later (apply_pending). */
                w->seq = lsn;
                *logged_tail = w;
                logged_tail = &w->next;
                st->apply_n++;
            } else {
                w->next = copies;
                copies = w;
            }
        } else if (seq != 0) {
            w->seq = seq;
        } else {
            w->done = true;
        }
    }
    pthread_cond_broadcast(&st->done);
    if (logged != NULL) {
        atomic_store(&st->resolved, resolved);
        for (struct hpo_write *w = logged; w != NULL; w = w->next) {
            hpo__chain_resolve(w->chain);
            w->chain = NULL;
        }
        if (st->apply_idle) {
            st->apply_idle = false;
            pthread_cond_signal(&st->apply_wake);
        } else if (st->apply_retry_ms != 0 && mono_us() - st->apply_kicked_us >= 10000) {
            /* The database failed the last apply: try again now rather than after the backoff
               (at most every 10 ms), so that /healthz sees a cure soon. */
            st->apply_kicked_us = mono_us();
            pthread_cond_signal(&st->apply_wake);
        }
        *st->apply_tail = logged;
        st->apply_tail = logged_tail;
        if (st->on_flush != NULL) {
            st->on_flush(st->on_flush_arg);
        }
    }
    if (copies != NULL) {
        atomic_store(&st->resolved, resolved);
        for (struct hpo_write *w = copies; w != NULL; w = next) {
            next = w->next;
            hpo__chain_resolve(w->chain);
            hpo__write_copy_free(w);
        }
        /* The dispatcher's held replies (storage.h). */
        if (st->on_flush != NULL) {
            st->on_flush(st->on_flush_arg);
        }
    }
    if (pending) {
        /*
        ** Files the commit replaced go after the waiters woke, before the
        ** next batch; with the pipelined flush only once the commit is on
        ** disk (a power cut must not leave a reference to a removed file).
        */
        while (seq != 0 && atomic_load(&st->synced_seq) < seq) {
            pthread_cond_wait(&st->done, &st->lock);
        }
        pthread_mutex_unlock(&st->lock);
        hpo__blobs_finish(&st->blobs);
        pthread_mutex_lock(&st->lock);
        give_db(st);
    }
    st->busy = false;
    atomic_fetch_add(&st->ticks, 1);
    if (st->head != NULL) {
        /*
        ** Writes came in meanwhile: their callers sleep on `done`, one of
        ** them leads; pipelined ones have no caller waiting: the writer does
        ** (or, after a round's batch, the threads that handed them, sq_lead).
        */
        pthread_cond_broadcast(&st->done);
        if (!st->round_leading) {
            pthread_cond_signal(&st->wake);
        }
    }
}

/* Whether a thread may take the writer role now (with `lock` held). */
static bool may_lead(const struct sq_storage *st)
{
    return !st->busy && !st->paused && st->head != NULL;
}

/*
** The writer thread: leads batches nobody else picked up (after a pause,
** at stop), and ticks while the store is not stuck in a batch, for the
** watchdog: a batch that never ends stops the ticks.
*/
static void *writer_main(void *arg)
{
    struct sq_storage *st = arg;

    pthread_mutex_lock(&st->lock);
    for (;;) {
        if (!st->busy) {
            atomic_fetch_add(&st->ticks, 1);
        }
        if (may_lead(st)) {
            lead_batch(st);
            continue;
        }
        /* Stop only once the queue is drained and no batch runs. */
        if (st->stopping && st->head == NULL && !st->busy) {
            break;
        }
        idle_wait(st, &st->wake, IDLE_TICK_MS * 1000u);
    }
    /* The applier goes on until the writes this thread logged are in the database. */
    st->writer_done = true;
    pthread_cond_signal(&st->apply_wake);
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/*
** The applier thread (with the redo log): applies the writes acknowledged
** from the log to the database, in the order of the log, in transactions of
** what gathered since the last; after a failure (the database locked by
** another process, full) it tries again after 10 ms doubling to 1 s, or
** sooner when a new record comes (lead_batch). It stops once the writer
** stopped and everything is applied, or the first try after that failed:
** the log then keeps the records for the next start.
*/
static void *apply_main(void *arg)
{
    struct sq_storage *st = arg;
    bool stuck = false;

    pthread_mutex_lock(&st->lock);
    for (;;) {
        if (st->apply_head != NULL && !st->applying && !stuck) {
            if (apply_pending(st)) {
                st->apply_retry_ms = 0;
                /*
                ** Let the next writes gather (nobody wakes it meanwhile,
                ** apply_idle): fewer, larger transactions, and no wake-up
                ** per round for the HTTP threads to pay.
                */
                if (!st->writer_done) {
                    idle_wait(st, &st->apply_wake, APPLY_NAP_US);
                }
                continue;
            }
            st->apply_retry_ms = st->apply_retry_ms == 0 ? 10 : st->apply_retry_ms * 2;
            if (st->apply_retry_ms > 1000) {
                st->apply_retry_ms = 1000;
            }
            stuck = st->writer_done;
            idle_wait(st, &st->apply_wake, st->apply_retry_ms * 1000u);
            continue;
        }
        if (st->writer_done && !st->applying && (st->apply_head == NULL || stuck)) {
            break;
        }
        st->apply_idle = true;
        idle_wait(st, &st->apply_wake, IDLE_TICK_MS * 1000u);
        st->apply_idle = false;
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/*
** With `lock` held (returns with it held): the on_flush callback after a
** flush, called without the lock. It releases the held replies, resuming
** their connections (tens of microseconds for a few); meanwhile the HTTP
** threads queue their writes and the writer leads the next batch instead of
** waiting for `lock`. `callbacks` counts the calls running:
** hpo_storage_on_flush waits for them before it returns.
*/
static void call_on_flush(struct sq_storage *st)
{
    void (*fn)(void *arg) = st->on_flush;
    void *arg = st->on_flush_arg;

    if (fn == NULL) {
        return;
    }
    st->callbacks++;
    pthread_mutex_unlock(&st->lock);
    fn(arg);
    pthread_mutex_lock(&st->lock);
    if (--st->callbacks == 0) {
        pthread_cond_broadcast(&st->done);
    }
}

/* fdatasync `fd` (`what` names it), ending the process when it fails (sync_wal). */
static void sync_file(int fd, const char *what)
{
    int rc;
    int e;

    do {
        rc = fdatasync(fd);
    } while (rc != 0 && errno == EINTR);
    e = errno;
    if (rc != 0) {
        char buf[128];

        hpo_log(HPO_LOG_ERR, "fdatasync of %s failed: %s; stopping without acknowledging the "
                "writes it covered", what, strerror_r(e, buf, sizeof(buf)));
        abort();
    }
}

/*
** fdatasync the WAL (pipelined flush), without `lock`; with the redo log,
** the log, and the WAL too when a batch committed to it since (wal_dirty). A failure ends the
** process: the kernel may have dropped the dirty pages it could not write
** and a later fdatasync would then succeed: no reply waiting for this flush
** can be sent (as PostgreSQL's PANIC on a failed fsync); the restart reads
** what the disk holds.
*/
static void sync_wal(struct sq_storage *st)
{
    if (st->redo != NULL) {
        sync_file(hpo__redo_fd(st->redo), "the redo log");
        if (!atomic_exchange(&st->wal_dirty, false)) {
            return;
        }
    }
    sync_file(st->wal_fd, "the WAL of the database");
}

/*
** With `lock` held (returns with it held): an fdatasync that started once
** commit `target` was made succeeded: the callers of every commit up to it
** are woken, and the on_flush callback releases their held replies.
** `synced_seq` only grows (a flush that started earlier may end later).
*/
static void synced(struct sq_storage *st, uint64_t target)
{
    if (atomic_load(&st->synced_seq) < target) {
        atomic_store(&st->synced_seq, target);
        pthread_cond_broadcast(&st->done);
        call_on_flush(st);
    }
}

/*
** With `lock` held (returns with it held): flush every commit up to
** `target` (a flusher's or a round end's): no other flush starts for them
** meanwhile (`flush_target`), the fdatasync runs without the lock, and its
** success wakes their callers (synced).
*/
static void flush_upto(struct sq_storage *st, uint64_t target)
{
    st->flush_target = target;
    pthread_mutex_unlock(&st->lock);
    sync_wal(st);
    pthread_mutex_lock(&st->lock);
    synced(st, target);
}

/*
** A flusher thread (pipelined flush, see the top of this file): when commits
** were made that no started fdatasync covers, note the last one, fdatasync
** the WAL, then wake the callers of every commit up to the noted one. Two
** run, so a flush starts as soon as a commit needs one. At stop each exits
** once every commit is covered by a flush that started, and close joins
** them, so the last flushes end before the storage goes.
*/
static void *flush_main(void *arg)
{
    struct sq_storage *st = arg;

    pthread_mutex_lock(&st->lock);
    for (;;) {
        uint64_t target = atomic_load(&st->commit_seq);

        if (target <= st->flush_target) {
            if (st->flusher_stop) {
                break;
            }
            pthread_cond_wait(&st->flush_wake, &st->lock);
            continue;
        }
        flush_upto(st, target);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/*
** The inline flush of a round's end (sq_lead_round, pipelined flush): the
** HTTP thread that led the round's batches fdatasyncs the WAL itself, then
** releases the held replies (its own, and any other the flush covers) on
** its own thread: no flusher to wake and no kick back (two context
** switches and a thread hop less per flush), and while it waits for the
** disk its core goes to the other HTTP thread and the clients. The
** fdatasync starts after every commit up to `target` was made, so it
** covers them (as a flusher's). When the thread has work waiting
** (hpo_storage_lead_busy: a request, a connection, a kick ready on its
** daemon), the flush waits for the next round's end instead, once
** (`flush_deferred`): that round serves the waiting requests and its
** flush covers both rounds' writes, on this thread. Busy again then, a
** flusher flushes while the thread serves (a thread that holds all the
** connections would otherwise serve and flush in turn). Handing the
** flush to a flusher at once split the clients into groups that each
** waited for a flusher's wake-up on a loaded machine: deferring it once
** made `full` at 8 clients 1.12x faster (docs/DESIGN.md, "The redo
** log"). A commit that a started fdatasync already covers (a flusher's,
** or another round end's) starts none: that flush's end releases the
** replies and kicks this thread.
*/
static void flush_round(struct sq_storage *st)
{
    /* (A system call: asked before taking `lock`.) */
    bool busy = hpo__lead_busy != NULL && hpo__lead_busy();
    uint64_t target;

    if (busy && !flush_deferred) {
        /* The next round end flushes (every round ends with sq_lead_round). */
        flush_deferred = true;
        flush_due = true;
        return;
    }
    flush_deferred = false;
    pthread_mutex_lock(&st->lock);
    target = atomic_load(&st->commit_seq);
    if (target > st->flush_target && busy) {
        pthread_cond_signal(&st->flush_wake);
    } else if (target > st->flush_target) {
        flush_upto(st, target);
    }
    pthread_mutex_unlock(&st->lock);
}

/*
** With synchronous full on a database file: open the WAL for the flusher,
** make its directory entry durable, and let SQLite commit without fsync.
** When the WAL cannot be opened, the connection keeps synchronous FULL
** (every COMMIT fsyncs itself): slower, as durable.
*/
static int setup_pipelined(struct sq_storage *st, struct hpo_error *err)
{
    const char *db_file = sqlite3_db_filename(st->db, "main");
    const char *wal;
    char *dir;
    char *slash;
    int dfd;
    int rc;

    if (db_file == NULL || db_file[0] == '\0') {
        return 0;
    }
    wal = sqlite3_filename_wal(db_file);
    st->wal_fd = open(wal, O_RDWR | O_CLOEXEC);
    if (st->wal_fd < 0) {
        return 0;
    }
    dir = strdup(wal);
    if (dir == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    slash = strrchr(dir, '/');
    if (slash != NULL) {
        slash[slash == dir ? 1 : 0] = '\0';
    }
    dfd = open(slash != NULL ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        int e = errno;
        char buf[128];

        if (dfd >= 0) {
            close(dfd);
        }
        hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL, "syncing the directory of '%s': %s",
                wal, strerror_r(e, buf, sizeof(buf)));
        free(dir);
        return -EIO;
    }
    close(dfd);
    free(dir);
    rc = sqlite3_exec(st->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return hpo__storage_error(st->db, rc, "PRAGMA synchronous = NORMAL", err);
    }
    st->pipelined = true;
    return 0;
}

/* Run a one-row PRAGMA and copy its text result. */
static int pragma_text(sqlite3 *db, const char *sql, char *buf, size_t size,
        struct hpo_error *err)
{
    sqlite3_stmt *stmt = NULL;
    const unsigned char *text;
    int rc;
    int r = 0;

    rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        return hpo__storage_error(db, rc, sql, err);
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        text = sqlite3_column_text(stmt, 0);
        snprintf(buf, size, "%s", text != NULL ? (const char *)text : "");
    } else if (rc == SQLITE_DONE) {
        buf[0] = '\0';
    } else {
        r = hpo__storage_error(db, rc, sql, err);
    }
    sqlite3_finalize(stmt);
    return r;
}

static int configure(sqlite3 *db, const struct hpo_storage_options *opt, struct hpo_error *err)
{
    const char *sync = opt->synchronous_full ? "PRAGMA synchronous = FULL"
                                             : "PRAGMA synchronous = NORMAL";
    char value[32];
    int rc;
    int r;

    (void)sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    (void)sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, NULL);
    (void)sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, NULL);
    rc = sqlite3_busy_timeout(db, opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000);
    if (rc != SQLITE_OK) {
        return hpo__storage_error(db, rc, "setting busy_timeout", err);
    }
    r = pragma_text(db, "PRAGMA journal_mode = WAL", value, sizeof(value), err);
    if (r < 0) {
        return r;
    }
    if (strcasecmp(value, "wal") != 0) {
        return hpo_error_set(err, -EINVAL, HPO_INTERNAL, NULL,
                "journal_mode is '%s', not 'wal'", value);
    }
    rc = sqlite3_exec(db, sync, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return hpo__storage_error(db, rc, sync, err);
    }
    rc = sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return hpo__storage_error(db, rc, "PRAGMA foreign_keys = ON", err);
    }
    /* Cascading deletes depend on it; a build without FK support says nothing. */
    r = pragma_text(db, "PRAGMA foreign_keys", value, sizeof(value), err);
    if (r < 0) {
        return r;
    }
    if (strcmp(value, "1") != 0) {
        return hpo_error_set(err, -ENOTSUP, HPO_INTERNAL, NULL,
                "SQLite does not enforce foreign keys");
    }
    return 0;
}

static int prepare_all(struct sq_storage *st, struct hpo_error *err)
{
    for (size_t i = 0; i < N_STMTS; i++) {
        int rc = sqlite3_prepare_v3(st->db, stmt_sql[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
                stmt_at(&st->s, i), NULL);

        if (rc != SQLITE_OK) {
            return hpo__storage_error(st->db, rc, "preparing a statement", err);
        }
    }
    for (size_t k = 2; k <= PARAM_ROWS; k++) {
        char sql[512];
        size_t len = (size_t)snprintf(sql, sizeof(sql),
                "INSERT INTO params (study_id, number, idx, value) VALUES");
        int rc;
        for (size_t j = 0; j < k; j++) {
            len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s (?%zu, ?%zu, ?%zu, ?%zu)",
                    j > 0 ? "," : "", 4 * j + 1, 4 * j + 2, 4 * j + 3, 4 * j + 4);
        }
        snprintf(sql + len, sizeof(sql) - len,
                " ON CONFLICT (study_id, number, idx) DO UPDATE SET value = excluded.value");
        rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->param_rows[k],
                NULL);
        if (rc != SQLITE_OK) {
            return hpo__storage_error(st->db, rc, "preparing a statement", err);
        }
    }
    return 0;
}

/* Free a storage whose writer is not running (or was joined). Accepts a half-built one. */
static void destroy(struct sq_storage *st)
{
    int rc;

    hpo__ckpt_stop(st->ckpt, st->db);
    st->ckpt = NULL;
    for (size_t i = 0; i < N_STMTS; i++) {
        sqlite3_finalize(*stmt_at(&st->s, i));
        *stmt_at(&st->s, i) = NULL;
    }
    for (size_t k = 0; k <= PARAM_ROWS; k++) {
        sqlite3_finalize(st->param_rows[k]);
        st->param_rows[k] = NULL;
    }
    /* With every statement finalized, close cannot be busy. */
    rc = sqlite3_close(st->db);
    assert(rc == SQLITE_OK);
    (void)rc;
    for (struct hpo_write *w = st->apply_head, *next; w != NULL; w = next) {
        next = w->next;
        hpo__write_copy_free(w);
    }
    hpo__redo_close(st->redo);
    pthread_cond_destroy(&st->done);
    pthread_cond_destroy(&st->wake);
    pthread_cond_destroy(&st->flush_wake);
    pthread_cond_destroy(&st->apply_wake);
    if (st->wal_fd >= 0) {
        close(st->wal_fd);
    }
    pthread_mutex_destroy(&st->lock);
    hpo__blobs_close(&st->blobs);
    if (st->db_dirfd >= 0) {
        close(st->db_dirfd);
    }
    free(st->vec);
    free(st->buf);
    free(st);
}

/* The directory holding `path`, opened O_PATH for fstatvfs; -1 when it cannot be. */
static int open_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd;

    if (slash == NULL) {
        return open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (dir == NULL) {
        return -1;
    }
    fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    return fd;
}

/*
** SQLite's memory statistics take a global mutex around every allocation
** (about 7% of a write's instructions); nothing here reads them. Only
** possible before SQLite initializes: the first open in the process,
** before any other thread uses SQLite; later it fails and changes nothing.
*/
static void no_memstatus(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int hpo__sqlite_open(const char *path, const struct hpo_storage_options *opt,
        struct hpo_storage **ret_storage, struct hpo_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    static const struct hpo_storage_options defaults = { 0 };
    struct sq_storage *st;
    pthread_condattr_t attr;
    char what[160];
    int rc;
    int r;

    if (opt == NULL) {
        opt = &defaults;
    }
    (void)pthread_once(&once, no_memstatus);
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    pthread_mutex_init(&st->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&st->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&st->done, NULL);
    pthread_cond_init(&st->flush_wake, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&st->apply_wake, &attr);
    pthread_condattr_destroy(&attr);
    st->wal_fd = -1;
    atomic_init(&st->commit_seq, 0);
    atomic_init(&st->synced_seq, 0);
    st->tail = &st->head;
    st->apply_tail = &st->apply_head;
    atomic_init(&st->wal_dirty, false);
    st->blobs.dirfd = -1;
    atomic_init(&st->healthy, true);
    atomic_init(&st->blob_errno, 0);
    atomic_init(&st->blob_need, 0);
    st->blob_dirfd = -1;
    st->db_dirfd = -1;
    atomic_init(&st->db_errno, 0);
    atomic_init(&st->ticks, 0);
    atomic_init(&st->commits, 0);
    atomic_init(&st->writes, 0);
    atomic_init(&st->failed_batches, 0);
    hpo_hist_init(&st->commit_us, commit_us_le, sizeof(commit_us_le) / sizeof(commit_us_le[0]));
    hpo_hist_init(&st->batch_writes, batch_writes_le,
            sizeof(batch_writes_le) / sizeof(batch_writes_le[0]));

    /* Its WAL writes a commit's frames in one pwrite (walbuf.c). */
    rc = sqlite3_open_v2(path, &st->db,
            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                    SQLITE_OPEN_EXRESCODE,
            hpo__walbuf_vfs());
    if (rc != SQLITE_OK) {
        snprintf(what, sizeof(what), "opening '%s'", path);
        r = hpo__storage_error(st->db, rc, what, err);
        goto fail;
    }
    r = configure(st->db, opt, err);
    if (r < 0) {
        goto fail;
    }
    r = hpo__storage_migrate(st->db, err);
    if (r < 0) {
        goto fail;
    }
    r = prepare_all(st, err);
    if (r < 0) {
        goto fail;
    }
    r = hpo__blobs_open(&st->blobs, path, opt->synchronous_full, err);
    if (r < 0) {
        goto fail;
    }
    st->blob_dirfd = st->blobs.dirfd;
    st->db_dirfd = open_parent(path);
    /* Writes acknowledged from the redo log that the database did not take yet. */
    r = opt->no_redo ? 0 : open_redo(st, err);
    if (r < 0) {
        goto fail;
    }
    /* Files a crash left between their write and their commit. */
    r = hpo__blobs_sweep(&st->blobs, st->db, err);
    if (r < 0) {
        goto fail;
    }
    if (opt->synchronous_full) {
        r = setup_pipelined(st, err);
        if (r < 0) {
            goto fail;
        }
        if (!st->pipelined && st->redo != NULL) {
            /* No flusher (the WAL could not be opened): every commit syncs itself, no log. */
            hpo__redo_close(st->redo);
            st->redo = NULL;
        }
    }
    /*
    ** With synchronous normal only: under full every commit's flush covers
    ** the WAL anyway, and a checkpoint's fsyncs beside them made those slower
    ** (measured: p50 of an 8-client ask 2-4 ms against 2 ms). Without it (no
    ** thread, no second connection) SQLite checkpoints in the commits.
    */
    if (!opt->synchronous_full) {
        (void)hpo__ckpt_start(st->db, path, false, &st->ckpt);
    }
    st->base.ops = &sq_ops;
    *ret_storage = &st->base;
    return 0;

fail:
    destroy(st);
    return r;
}

static int replay_record(void *ctx, uint64_t lsn, struct hpo_write *batch, struct hpo_error *err)
{
    struct sq_storage *st = ctx;
    uint64_t n;

    if (lsn <= st->applied_lsn) {
        return 0;
    }
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        w->seq = lsn;
    }
    if (!apply_writes(st, batch, lsn, &n)) {
        return hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL,
                "applying record %llu of the redo log failed (see the log above)",
                (unsigned long long)lsn);
    }
    st->applied_lsn = lsn;
    return 0;
}

/* Draw hpod_redo.epoch (nonzero, 63 bits) and store it. */
static int new_epoch(struct sq_storage *st, uint64_t *ret, struct hpo_error *err)
{
    sqlite3_stmt *stmt = NULL;
    uint64_t e = 0;
    int rc;

    while (e == 0) {
        if (getrandom(&e, sizeof(e), 0) != (ssize_t)sizeof(e)) {
            e = mono_us() ^ ((uint64_t)getpid() << 40);
        }
        e &= INT64_MAX;
    }
    rc = sqlite3_prepare_v2(st->db, "UPDATE hpod_redo SET epoch = ?1", -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_bind_int64(stmt, 1, (sqlite3_int64)e);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        return hpo__storage_error(st->db, rc, "drawing the redo log's epoch", err);
    }
    *ret = e;
    return 0;
}

/*
** At open, on a database file: open its redo log, apply the records the
** database does not hold yet (a crash or a power cut came before the
** writer applied them), then empty it.
*/
static int open_redo(struct sq_storage *st, struct hpo_error *err)
{
    const char *db_file = sqlite3_db_filename(st->db, "main");
    uint64_t last = 0, before, epoch;
    int rc;
    int r;

    if (db_file == NULL || db_file[0] == '\0') {
        return 0;
    }
    rc = sqlite3_step(st->s.redo_get);
    if (rc != SQLITE_ROW) {
        r = hpo__storage_error(st->db, rc, "reading hpod_redo", err);
        sqlite3_reset(st->s.redo_get);
        return r < 0 ? r : -EIO;
    }
    st->applied_lsn = (uint64_t)sqlite3_column_int64(st->s.redo_get, 0);
    epoch = (uint64_t)sqlite3_column_int64(st->s.redo_get, 1);
    sqlite3_reset(st->s.redo_get);
    if (epoch == 0) {
        /* The first open (or a backup's copy): an epoch of its own for its log's records. */
        r = new_epoch(st, &epoch, err);
        if (r < 0) {
            return r;
        }
    }
    before = st->applied_lsn;
    r = hpo__redo_open(db_file, epoch, &st->redo, err);
    if (r < 0) {
        return r;
    }
    r = hpo__redo_replay(st->redo, replay_record, st, &last, err);
    if (r < 0) {
        return r;
    }
    if (st->applied_lsn > before) {
        hpo_log(HPO_LOG_NOTICE, "applied %llu records of the redo log (writes acknowledged "
                "before the last stop), up to number %llu",
                (unsigned long long)(st->applied_lsn - before),
                (unsigned long long)st->applied_lsn);
    }
    st->redo_lsn = st->applied_lsn > last ? st->applied_lsn : last;
    st->applied_lsn = st->redo_lsn;
    return hpo__redo_restart(st->redo, true, err);
}

/* Whether the callback stopped the load; then `err` tells which table. */
static int callback_failed(int r, const char *table, struct hpo_error *err)
{
    return hpo_error_set(err, r, HPO_INTERNAL, NULL, "loading %s: callback failed (%d)", table,
            r);
}

/* Finish a load SELECT: report a step error, reset the statement. */
static int load_end(struct sq_storage *st, sqlite3_stmt *stmt, int rc, int r, const char *table,
        struct hpo_error *err)
{
    if (r == 0 && rc != SQLITE_DONE) {
        char what[64];

        snprintf(what, sizeof(what), "loading %s", table);
        r = hpo__storage_error(st->db, rc, what, err);
    }
    sqlite3_reset(stmt);
    return r;
}

static double column_real(sqlite3_stmt *stmt, int i)
{
    return sqlite3_column_type(stmt, i) == SQLITE_NULL ? NAN : sqlite3_column_double(stmt, i);
}

/*
** Read the side file a cell references into `buf` (ref->len bytes). On
** failure `err` says which value of which study and trial it was.
*/
static int load_file(struct sq_storage *st, const struct hpo_blob_ref *ref, void *buf,
        const char *what, int64_t study_id, int64_t number, struct hpo_error *err)
{
    struct hpo_error e;
    int r;

    hpo_error_clear(&e);
    r = hpo__blob_read(&st->blobs, ref, buf, &e);
    if (r < 0) {
        if (number < 0) {
            return hpo_error_set(err, r, e.code, NULL, "loading %s of study %lld: %s", what,
                    (long long)study_id, e.message);
        }
        return hpo_error_set(err, r, e.code, NULL, "loading %s of trial %lld of study %lld: %s",
                what, (long long)number, (long long)study_id, e.message);
    }
    return 0;
}

static int load_studies(struct sq_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    sqlite3_stmt *stmt = st->s.load_studies;
    int rc;
    int r = 0;

    for (;;) {
        struct hpo_blob_ref ref;
        const void *state;
        size_t state_len;
        int64_t id;

        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW) {
            break;
        }
        id = sqlite3_column_int64(stmt, 0);
        state = sqlite3_column_blob(stmt, 4);
        state_len = (size_t)sqlite3_column_bytes(stmt, 4);
        if (hpo__blob_parse(state, state_len, &ref)) {
            if (ref.len > st->buf_cap) {
                void *b = realloc(st->buf, ref.len);

                if (b == NULL) {
                    r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
                    break;
                }
                st->buf = b;
                st->buf_cap = ref.len;
            }
            r = load_file(st, &ref, st->buf, "the sampler state", id, -1, err);
            if (r < 0) {
                break;
            }
            state = st->buf;
            state_len = ref.len;
        }
        r = cb->study(ctx, id,
                (const char *)sqlite3_column_text(stmt, 1),
                (const char *)sqlite3_column_text(stmt, 2), sqlite3_column_int64(stmt, 3),
                state_len > 0 ? state : NULL, state_len);
        if (r < 0) {
            r = callback_failed(r, "studies", err);
            break;
        }
    }
    return load_end(st, stmt, rc, r, "studies", err);
}

static int load_trials(struct sq_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    sqlite3_stmt *stmt = st->s.load_trials;
    int rc;
    int r = 0;

    for (;;) {
        struct hpo_trial_row row;

        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW) {
            break;
        }
        row.state = sqlite3_column_int(stmt, 2);
        row.value = column_real(stmt, 3);
        row.worker = (const char *)sqlite3_column_text(stmt, 4);
        row.retry_of = sqlite3_column_int64(stmt, 5);
        row.retries = sqlite3_column_int64(stmt, 6);
        row.created_at = sqlite3_column_int64(stmt, 7);
        row.started_at = sqlite3_column_int64(stmt, 8);
        row.completed_at = sqlite3_column_int64(stmt, 9);
        row.heartbeat_at = sqlite3_column_int64(stmt, 10);
        row.results = (const char *)sqlite3_column_text(stmt, 11);
        r = cb->trial(ctx, sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1), &row);
        if (r < 0) {
            r = callback_failed(r, "trials", err);
            break;
        }
    }
    return load_end(st, stmt, rc, r, "trials", err);
}

static int load_params(struct sq_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    sqlite3_stmt *stmt = st->s.load_params;
    int rc;
    int r = 0;

    for (;;) {
        int64_t study_id;
        int64_t number;
        int64_t index;

        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW) {
            break;
        }
        study_id = sqlite3_column_int64(stmt, 0);
        number = sqlite3_column_int64(stmt, 1);
        index = sqlite3_column_int64(stmt, 2);
        if (sqlite3_column_type(stmt, 3) == SQLITE_BLOB) {
            const void *blob = sqlite3_column_blob(stmt, 3);
            size_t bytes = (size_t)sqlite3_column_bytes(stmt, 3);
            struct hpo_blob_ref ref;
            bool in_file = hpo__blob_parse(blob, bytes, &ref);
            size_t len;

            if (in_file) {
                bytes = ref.len;
            }
            len = bytes / sizeof(double);
            if (bytes % sizeof(double) != 0) {
                r = hpo_error_set(err, -EBADMSG, HPO_INTERNAL, NULL,
                        "loading params: vector of %zu bytes in trial %lld of study %lld",
                        bytes, (long long)number, (long long)study_id);
                break;
            }
            if (vec_reserve(st, len) < 0) {
                r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
                break;
            }
            if (in_file) {
                /* Straight into the scratch buffer, no copy. */
                r = load_file(st, &ref, st->vec, "a vector param", study_id, number, err);
                if (r == -EBADMSG || r == -ENOENT || r == -ENODATA) {
                    /* Missing, short or damaged: the service may rebuild it (a lazy write). */
                    int lost = cb->lost != NULL
                            ? cb->lost(ctx, study_id, number, index, len, ref.hash)
                            : -1;
                    if (lost == 0) {
                        hpo_error_clear(err);
                        r = 0;
                        continue;
                    }
                }
                if (r < 0) {
                    break;
                }
            } else if (bytes > 0) {
                /* Copied, because the BLOB need not be aligned for doubles. */
                memcpy(st->vec, blob, bytes);
            }
            hpo__storage_le_doubles(st->vec, len);
            r = cb->param(ctx, study_id, number, index, NAN, st->vec, len);
        } else {
            r = cb->param(ctx, study_id, number, index, column_real(stmt, 3), NULL, 0);
        }
        if (r < 0) {
            r = callback_failed(r, "params", err);
            break;
        }
    }
    return load_end(st, stmt, rc, r, "params", err);
}

static int load_reports(struct sq_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    sqlite3_stmt *stmt = st->s.load_reports;
    int rc;
    int r = 0;

    for (;;) {
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW) {
            break;
        }
        r = cb->report(ctx, sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1),
                sqlite3_column_int64(stmt, 2), column_real(stmt, 3));
        if (r < 0) {
            r = callback_failed(r, "intermediate values", err);
            break;
        }
    }
    return load_end(st, stmt, rc, r, "intermediate values", err);
}

static int load_attrs(struct sq_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    sqlite3_stmt *stmt = st->s.load_attrs;
    int rc;
    int r = 0;

    for (;;) {
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW) {
            break;
        }
        r = cb->attr(ctx, sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1),
                (const char *)sqlite3_column_text(stmt, 2),
                (const char *)sqlite3_column_text(stmt, 3));
        if (r < 0) {
            r = callback_failed(r, "user attrs", err);
            break;
        }
    }
    return load_end(st, stmt, rc, r, "user attrs", err);
}

/* Every table in one read transaction, on the writer's connection (its owner's thread). */
static int load_all(struct sq_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    /* One read transaction: a consistent snapshot, and one lock for all tables. */
    int r = run(st, st->s.begin_read, SQLITE_OK, "starting a read transaction", err);

    if (r < 0) {
        return r;
    }
    return load_tables(st, cb, ctx, err, true);
}

/*
** Load every table in the transaction open on db (load_all's, or
** sq_load_study's with the redo log's writes in it); `commit`: end it.
*/
static int load_tables(struct sq_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err, bool commit)
{
    int r = 0;

    if (cb->study != NULL) {
        r = load_studies(st, cb, ctx, err);
    }
    if (r == 0 && cb->trial != NULL) {
        r = load_trials(st, cb, ctx, err);
    }
    if (r == 0 && cb->param != NULL) {
        r = load_params(st, cb, ctx, err);
    }
    if (r == 0 && cb->report != NULL) {
        r = load_reports(st, cb, ctx, err);
    }
    if (r == 0 && cb->attr != NULL) {
        r = load_attrs(st, cb, ctx, err);
    }
    if (r == 0 && commit) {
        r = run(st, st->s.commit, SQLITE_OK, "ending a read transaction", err);
    }
    if (r < 0) {
        end_transaction(st);
    }
    /* The scratch buffers may hold a state and a vector of many MB: not kept. */
    free(st->buf);
    st->buf = NULL;
    st->buf_cap = 0;
    free(st->vec);
    st->vec = NULL;
    st->vec_cap = 0;
    return r;
}

static int sq_load(struct hpo_storage *base, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    struct sq_storage *st = (struct sq_storage *)base;

    if (st->started) {
        return hpo_error_set(err, -EBUSY, HPO_INTERNAL, NULL,
                "storage load after the writer started");
    }
    return load_all(st, cb, ctx, err);
}

/* sq_load_study's filter: the rows of the study named `name` (its id once seen). */
struct one_study {
    const struct hpo_load_callbacks *cb;
    void *ctx;
    const char *name;
    int64_t id;
};

static int one_study(void *ctx, int64_t id, const char *name, const char *spec,
        int64_t created_at, const void *state, size_t state_len)
{
    struct one_study *f = ctx;

    if (strcmp(name, f->name) != 0) {
        return 0;
    }
    f->id = id;
    return f->cb->study(f->ctx, id, name, spec, created_at, state, state_len);
}

static int one_trial(void *ctx, int64_t study_id, int64_t number, const struct hpo_trial_row *row)
{
    struct one_study *f = ctx;
    return study_id != f->id ? 0 : f->cb->trial(f->ctx, study_id, number, row);
}

static int one_param(void *ctx, int64_t study_id, int64_t number, int64_t index, double value,
        const double *vector, size_t len)
{
    struct one_study *f = ctx;
    return study_id != f->id ? 0 : f->cb->param(f->ctx, study_id, number, index, value, vector,
                                           len);
}

static int one_report(void *ctx, int64_t study_id, int64_t number, int64_t step, double value)
{
    struct one_study *f = ctx;
    return study_id != f->id ? 0 : f->cb->report(f->ctx, study_id, number, step, value);
}

static int one_attr(void *ctx, int64_t study_id, int64_t number, const char *key,
        const char *json)
{
    struct one_study *f = ctx;
    return study_id != f->id ? 0 : f->cb->attr(f->ctx, study_id, number, key, json);
}

/*
** One study after start (a copy whose pipelined write failed is reloaded,
** service/loader.c): on the writer's connection, holding the writer role
** between batches. Every row is read and the study's kept: slow on a big
** database, but only a failed write calls it.
*/
/* sq_load_study with the writes not yet applied run first in a transaction rolled back after. */
static int load_overlaid(struct sq_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    static const struct hpo_blob_mark all = { 0, 0, 0, 0, 0 };
    int r;

    end_transaction(st);
    r = run(st, st->s.begin_read, SQLITE_OK, "starting a transaction", err);
    for (struct hpo_write *w = st->apply_head; r == 0 && w != NULL; w = w->next) {
        r = replay_write(st, w);
        if (r < 0) {
            r = hpo_error_set(err, r, w->err.code, NULL,
                    "reading the database with the redo log's writes: %s", w->err.message);
        }
    }
    if (r == 0) {
        r = load_tables(st, cb, ctx, err, false);
    }
    end_transaction(st);
    hpo__blobs_undo(&st->blobs, &all);
    return r;
}

static int sq_load_study(struct hpo_storage *base, const char *name,
        const struct hpo_load_callbacks *cb, void *ctx, struct hpo_error *err)
{
    static const struct hpo_load_callbacks filter = {
        .study = one_study,
        .trial = one_trial,
        .param = one_param,
        .report = one_report,
        .attr = one_attr,
    };
    struct sq_storage *st = (struct sq_storage *)base;
    struct one_study f = { .cb = cb, .ctx = ctx, .name = name, .id = -1 };
    bool overlay;
    int r;

    pthread_mutex_lock(&st->lock);
    while (st->busy) {
        pthread_cond_wait(&st->done, &st->lock);
    }
    st->busy = true;
    overlay = !take_db(st);
    if (overlay) {
        while (st->applying) {
            pthread_cond_wait(&st->done, &st->lock);
        }
        st->applying = true;
    }
    pthread_mutex_unlock(&st->lock);
    {
        /* Committed files still to write (deferred) are read below: write them first. */
        struct hpo_error ignored;
        (void)hpo__blobs_sync_dir(&st->blobs, &ignored);
    }
    /*
    ** The database cannot take the writes acknowledged from the redo log
    ** yet (locked elsewhere, full): they are run in a transaction that the
    ** load reads in and then rolls back, so the study comes back as its
    ** replies showed it. The list is stable meanwhile: appending to it
    ** takes the writer role (`busy`), applying it the database (held).
    */
    r = overlay ? load_overlaid(st, &filter, &f, err) : load_all(st, &filter, &f, err);
    pthread_mutex_lock(&st->lock);
    give_db(st);
    st->busy = false;
    pthread_cond_broadcast(&st->done);
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    return r;
}

static int sq_start(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;
    int r;

    while (st->pipelined && st->n_flushers < N_FLUSHERS) {
        r = hpo_thread_start(&st->flusher[st->n_flushers], NULL, flush_main, st, "hpod-flush");
        if (r != 0) {
            return r;
        }
        st->n_flushers++;
    }
    if (st->redo != NULL && !st->applier_started) {
        r = hpo_thread_start(&st->applier, NULL, apply_main, st, "hpod-apply");
        if (r != 0) {
            return r;
        }
        st->applier_started = true;
    }
    return hpo__writer_start(&st->lock, &st->started, &st->thread, writer_main, st);
}

/* Queue a copy of `w` for the writer thread (storage.h): true, or false to write it as usual. */
static bool pipeline_write(struct sq_storage *st, struct hpo_write *w)
{
    struct hpo_write *c = hpo__write_copy(w);

    if (c == NULL) {
        return false;
    }
    pthread_mutex_lock(&st->lock);
    if (!st->started || st->stopping) {
        pthread_mutex_unlock(&st->lock);
        hpo__write_copy_free(c);
        return false;
    }
    hpo__write_accept(w, c, &st->accepted, &st->tail);
    st->queued++;
    if (hpo__lead_later) {
        hpo__lead_upto = c->aseq;
    } else {
        st->unled = true;
    }
    /* An HTTP thread commits its round's writes itself (sq_lead) unless a leader takes them. */
    if (!st->busy && !hpo__lead_later) {
        pthread_cond_signal(&st->wake);
    }
    pthread_mutex_unlock(&st->lock);
    return true;
}

/*
** Under `lock`, by a round's leader leaving sq_lead: writes queued while it
** led (handed off by other HTTP threads, or a worker's) get a leader: the
** threads that handed theirs off are woken, and their next round end leads
** them on their own thread (its replies then need no kick back), while
** this one goes back to serving its own; without such a thread (or a
** wake-up to call), the writer thread leads them, unless every one of them
** is a round's (an HTTP thread queued it during a round that has not ended
** yet: that round's end leads it, without a wake-up of the writer and a
** kick back).
*/
static void hand_on(struct sq_storage *st)
{
    bool woke = false;

    if (st->head != NULL && !st->paused) {
        for (unsigned i = 0; i < st->n_handers && i < HANDERS; i++) {
            st->handers[i].wake(st->handers[i].arg);
            woke = true;
        }
        if ((!woke && st->unled) || st->n_handers > HANDERS) {
            pthread_cond_signal(&st->wake);
        }
    }
    st->n_handers = 0;
}

/* Under `lock`: remember to wake the calling thread when its handed-off writes need a leader. */
static void note_hander(struct sq_storage *st, void (*wake)(void *arg), void *arg)
{
    for (unsigned i = 0; i < st->n_handers && i < HANDERS; i++) {
        if (st->handers[i].wake == wake && st->handers[i].arg == arg) {
            return;
        }
    }
    if (st->n_handers < HANDERS) {
        st->handers[st->n_handers].wake = wake;
        st->handers[st->n_handers].arg = arg;
    }
    st->n_handers++; /* over HANDERS: the writer thread leads (hand_on) */
}

/*
** The end of an HTTP thread's round (hpo_storage_lead): its pipelined writes,
** queued without waking the writer, are committed here with whatever else
** is queued, in one group transaction, and the on_flush callback (the
** dispatcher's release of held replies) runs for them. When another thread
** holds the writer role, this one does not wait for it (hand-off): its
** writes stay queued, and it returns true and goes back to serving. A
** leader that is a round's end, as it returns, wakes the threads that
** handed writes off meanwhile (hand_on), whose next round end leads them;
** another leader (a worker's write, the writer thread) leads what is
** queued after its batch itself, and its release of their replies wakes
** them (http.c). Each call of a thread whose writes were handed off leads
** what nobody took meanwhile. It returns false once every write accepted
** so far (the round's replies may have seen writes of other threads)
** resolved. A pause (tests) leaves them to the writer thread.
*/
static bool sq_lead(struct hpo_storage *base, void (*wake)(void *arg), void *arg)
{
    struct sq_storage *st = (struct sq_storage *)base;
    uint64_t upto;
    bool handed = false;

    if (hpo__lead_upto == 0) {
        return false; /* nothing queued by this thread since its last round */
    }
    upto = atomic_load(&st->accepted);
    if (atomic_load(&st->resolved) >= upto) {
        hpo__lead_upto = 0;
        return false;
    }
    pthread_mutex_lock(&st->lock);
    while (atomic_load(&st->resolved) < upto && !st->paused) {
        if (may_lead(st)) {
            st->round_leading = true;
            lead_batch(st);
            st->round_leading = false;
            hand_on(st);
        } else if (st->busy && wake != NULL) {
            /* Its leader, or the writer thread after it, takes them (or wakes this one). */
            note_hander(st, wake, arg);
            handed = true;
            break;
        } else {
            pthread_cond_wait(&st->done, &st->lock);
        }
    }
    if (st->paused) {
        pthread_cond_signal(&st->wake);
    }
    pthread_mutex_unlock(&st->lock);
    hpo__lead_upto = handed ? upto : 0;
    return handed;
}

/*
** hpo_storage_lead: sq_lead as a round leader (round_leader above); the
** round's flush after, without `lock` (flush_round: inline, or a flusher
** woken then; commit_seq was raised under the lock, so a flusher either
** sees it before it waits or gets that signal).
*/
static bool sq_lead_round(struct hpo_storage *base, void (*wake)(void *arg), void *arg)
{
    struct sq_storage *st = (struct sq_storage *)base;
    bool handed;

    round_leader = true;
    handed = sq_lead(base, wake, arg);
    round_leader = false;
    if (flush_due) {
        flush_due = false;
        flush_round(st);
    }
    return handed;
}

static int sq_write(struct hpo_storage *base, struct hpo_write *w, struct hpo_error *err)
{
    struct sq_storage *st = (struct sq_storage *)base;

    w->aseq = 0;
    if (hpo__pipeline && w->chain != NULL && pipeline_write(st, w)) {
        return 0;
    }
    hpo__write_reset(w);

    pthread_mutex_lock(&st->lock);
    if (!st->started || st->stopping) {
        pthread_mutex_unlock(&st->lock);
        w->result = hpo_error_set(&w->err, -ESHUTDOWN, HPO_UNAVAILABLE, NULL,
                "the storage writer is not running");
        w->done = true;
        if (err != NULL) {
            *err = w->err;
        }
        return w->result;
    }
    *st->tail = w;
    st->tail = &w->next;
    st->queued++;
    st->waiters++;
    while (!w->done) {
        /*
        ** Committed, and an fdatasync that started after the commit
        ** succeeded; or committed, and the caller holds its reply until then.
        */
        if (w->seq != 0 && (hpo__defer_flush || w->seq <= atomic_load(&st->synced_seq))) {
            w->done = true;
            break;
        }
        if (may_lead(st)) {
            lead_batch(st);
        } else {
            pthread_cond_wait(&st->done, &st->lock);
        }
    }
    /* Close waits for the last waiter to leave before it frees the lock. */
    st->waiters--;
    if (st->waiters == 0 && st->stopping) {
        pthread_cond_broadcast(&st->done);
    }
    pthread_mutex_unlock(&st->lock);
    if (w->result < 0 && err != NULL) {
        *err = w->err;
    }
    return w->result;
}

/*
** After a commit failed for want of space or on a read-only file system:
** whether the database's file system has room again (DB_ROOM bytes) and is
** writable, so /healthz recovers before a write tries (the next commit
** decides for good). Other causes wait for a commit that succeeds.
*/
static bool db_curable(struct sq_storage *st)
{
    int e = atomic_load(&st->db_errno);
    struct statvfs sv;

    if (e == 0 || st->db_dirfd < 0 || fstatvfs(st->db_dirfd, &sv) != 0) {
        return false;
    }
    if (sv.f_flag & ST_RDONLY) {
        return false;
    }
    return e == EROFS || (uint64_t)sv.f_bavail * sv.f_frsize >= DB_ROOM;
}

static bool sq_healthy(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;
    int e = atomic_load(&st->blob_errno);
    uint64_t need = atomic_load(&st->blob_need);
    struct statvfs sv;

    if (!atomic_load(&st->healthy) && !db_curable(st)) {
        return false;
    }
    if (e == 0) {
        return true;
    }
    /*
    ** Out of space: healthy again once the file system has room for that
    ** write (with an eighth to spare), even before a request tries one.
    ** Other errors (EIO, EFBIG) wait for a side-file write that succeeds.
    */
    return (e == ENOSPC || e == EDQUOT) && st->blob_dirfd >= 0 &&
            fstatvfs(st->blob_dirfd, &sv) == 0 &&
            (uint64_t)sv.f_bavail * sv.f_frsize > need + need / 8;
}

static uint64_t sq_ticks(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;
    return atomic_load(&st->ticks);
}

static void sq_stats(struct hpo_storage *base, uint64_t *ret_commits, uint64_t *ret_writes)
{
    struct sq_storage *st = (struct sq_storage *)base;
    if (ret_commits != NULL) {
        *ret_commits = atomic_load(&st->commits);
    }
    if (ret_writes != NULL) {
        *ret_writes = atomic_load(&st->writes);
    }
}

static void sq_pause(struct hpo_storage *base, bool pause)
{
    struct sq_storage *st = (struct sq_storage *)base;
    pthread_mutex_lock(&st->lock);
    st->paused = pause;
    pthread_cond_signal(&st->wake);
    pthread_cond_broadcast(&st->done);
    pthread_mutex_unlock(&st->lock);
}

static size_t sq_queued(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;
    size_t n;

    pthread_mutex_lock(&st->lock);
    n = st->queued;
    pthread_mutex_unlock(&st->lock);
    return n;
}

static void sq_close(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;
    bool started;

    if (st == NULL) {
        return;
    }
    pthread_mutex_lock(&st->lock);
    started = st->started;
    st->stopping = true;
    st->paused = false;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    if (started) {
        pthread_join(st->thread, NULL);
    } else {
        pthread_mutex_lock(&st->lock);
        st->writer_done = true;
        pthread_cond_signal(&st->apply_wake);
        pthread_mutex_unlock(&st->lock);
    }
    if (st->applier_started) {
        pthread_join(st->applier, NULL);
    }
    if (st->n_flushers > 0) {
        /* The writer is gone: the flushers flush the last commits, then stop. */
        pthread_mutex_lock(&st->lock);
        st->flusher_stop = true;
        pthread_cond_broadcast(&st->flush_wake);
        pthread_mutex_unlock(&st->lock);
        for (int i = 0; i < st->n_flushers; i++) {
            pthread_join(st->flusher[i], NULL);
        }
    }
    /* Every write is done now, but its caller may not have woken up yet. */
    pthread_mutex_lock(&st->lock);
    while (st->waiters > 0) {
        pthread_cond_wait(&st->done, &st->lock);
    }
    if (st->redo != NULL && st->apply_head == NULL && st->applied_lsn == st->redo_lsn) {
        /*
        ** A clean stop leaves an empty log (writes that could not be applied
        ** stay); under full once the database's WAL holding them is on disk.
        */
        struct hpo_error e;

        if (st->pipelined) {
            sync_file(st->wal_fd, "the WAL of the database");
        }
        if (hpo__redo_restart(st->redo, true, &e) < 0) {
            hpo_log(HPO_LOG_WARNING, "%s", e.message);
        }
    }
    pthread_mutex_unlock(&st->lock);
    destroy(st);
}

static void sq_settle(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;

    if (st->redo == NULL) {
        return;
    }
    pthread_mutex_lock(&st->lock);
    while (st->apply_head != NULL) {
        if (st->applying) {
            pthread_cond_wait(&st->done, &st->lock);
        } else if (!apply_pending(st)) {
            break; /* the reader sees the database as it is; /healthz says why */
        }
    }
    pthread_mutex_unlock(&st->lock);
}

static uint64_t sq_flush_ticket(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;
    return atomic_load(&st->commit_seq);
}

static bool sq_flushed(struct hpo_storage *base, uint64_t ticket)
{
    struct sq_storage *st = (struct sq_storage *)base;
    return atomic_load(&st->synced_seq) >= ticket;
}

static void sq_on_flush(struct hpo_storage *base, void (*fn)(void *arg), void *arg)
{
    struct sq_storage *st = (struct sq_storage *)base;
    pthread_mutex_lock(&st->lock);
    st->on_flush = fn;
    st->on_flush_arg = arg;
    /* A flusher may be calling the previous one without the lock (call_on_flush). */
    while (st->callbacks > 0) {
        pthread_cond_wait(&st->done, &st->lock);
    }
    pthread_mutex_unlock(&st->lock);
}

static void sq_metrics(struct hpo_storage *base, const struct hpo_hist **ret_commit_us,
        const struct hpo_hist **ret_batch_writes, uint64_t *ret_failed)
{
    struct sq_storage *st = (struct sq_storage *)base;
    *ret_commit_us = &st->commit_us;
    *ret_batch_writes = &st->batch_writes;
    *ret_failed = atomic_load(&st->failed_batches);
}

static uint64_t sq_accepted(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;
    /* Read without `lock`: the dispatcher asks under its own, which a batch's leader takes. */
    return atomic_load(&st->accepted);
}

static uint64_t sq_resolved(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;
    return atomic_load(&st->resolved);
}

static uint64_t sq_last_failed(struct hpo_storage *base)
{
    struct sq_storage *st = (struct sq_storage *)base;
    return atomic_load(&st->last_failed);
}

static const struct hpo_storage_ops sq_ops = {
    .load = sq_load,
    .start = sq_start,
    .write = sq_write,
    .healthy = sq_healthy,
    .ticks = sq_ticks,
    .stats = sq_stats,
    .metrics = sq_metrics,
    .close = sq_close,
    .pause = sq_pause,
    .queued = sq_queued,
    .flush_ticket = sq_flush_ticket,
    .flushed = sq_flushed,
    .on_flush = sq_on_flush,
    .accepted = sq_accepted,
    .resolved = sq_resolved,
    .last_failed = sq_last_failed,
    .lead = sq_lead_round,
    .load_study = sq_load_study,
    .settle = sq_settle,
};
