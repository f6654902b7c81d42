/*
** storage.h: the durable record of studies and trials in SQLite (or PostgreSQL:
** the same interface, see hpo_storage_open).
**
** One connection, used by one thread at a time once hpo_storage_start() ran.
** Callers on any thread submit a write (a list of ops for one request) and
** block until the group transaction holding it committed or failed: a
** request is acknowledged only after its write is durable. Whoever finds the
** writer role free (a caller, so an idle store costs no thread hop, or the
** writer thread) takes every queued write, runs them in one BEGIN IMMEDIATE
** ... COMMIT with a SAVEPOINT per write (a failing write rolls back alone),
** then wakes their callers; writes queued meanwhile form the next batch.
** Pipelined writes (hpo_storage_pipeline below) are copied and
** queued without waiting: the writer thread commits them, in order, and
** the caller holds what depends on them (its reply) until they resolved;
** a write of a study whose earlier pipelined write failed fails too. On a
** SQLite database file they commit by an append to its redo log and reach
** the database afterwards, on a thread of their own (redo.h); every other
** write, a load and hpo_storage_settle see them first.
**
** The storage knows nothing of search spaces: params are (index, double)
** or (index, float64 vector) rows, specs are JSON text.
**
** Values of 1 MiB or more (vector params, sampler states) live in files of
** the directory `<db path>.blobs/`, their rows hold references: a backup or
** a move must take the database, its -wal file and that directory together.
*/
#ifndef HPO_STORAGE_H
#define HPO_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "../core/error.h"

struct hpo_storage;

struct hpo_storage_options {
    bool synchronous_full; /* PRAGMA synchronous=FULL (power-loss safe) instead of NORMAL */
    int busy_timeout_ms;   /* 0 = 5000 */
    /*
    ** PostgreSQL: this process alone uses the database (hpod migrate): the
    ** exclusive advisory lock, every study loaded, no fencing. Otherwise a
    ** daemon is one of several (docs/CLUSTER.md): storage/cluster.h.
    */
    bool exclusive;
    /*
    ** SQLite: no redo log (storage/redo.h); every write commits to the
    ** database before it is acknowledged. For tests of that path.
    */
    bool no_redo;
};

enum hpo_op_kind {
    HPO_OP_STUDY_PUT,     /* insert a study: study_id, name, text (spec JSON), created_at */
    HPO_OP_STUDY_DELETE,  /* delete a study and everything of it: study_id */
    HPO_OP_TRIAL_PUT,     /* insert or update a trial row: study_id, number, trial */
    HPO_OP_PARAM_PUT,     /* a scalar param value: study_id, number, index, value */
    HPO_OP_PARAM_VECTOR,  /* a vector param value: study_id, number, index, vector, len */
    HPO_OP_REPORT_PUT,    /* an intermediate value, ignored if the step exists: study_id,
                             number, step, value */
    HPO_OP_ATTR_PUT,      /* a trial's user attr: study_id, number, name = key, text = JSON */
    HPO_OP_SAMPLER_STATE, /* the sampler's saved state: study_id, blob, len (or parts) */
    HPO_OP_PARAM_DELETE,  /* drop a stored param value (retain_vectors): study_id, number,
                             index; a missing row is not an error */
    HPO_OP_ATTR_DELETE,   /* drop a trial's user attr: study_id, number, name = key; a
                             missing row is not an error */
    HPO_OP_STUDY_SPEC,    /* replace a study's spec (its user_attrs changed): study_id, text */
};

/* The columns of a trial row. NaN value = NULL. Times are ms since the epoch, 0 = none. */
struct hpo_trial_row {
    int state;
    double value;
    const char *worker; /* NULL = none */
    int64_t retry_of;   /* -1 = none */
    int64_t retries;
    int64_t created_at, started_at, completed_at, heartbeat_at;
    const char *results; /* several objectives or constraints: a JSON array of the objective
                            values then the constraint values (null: not told); NULL = none */
};

/* A value may be written as the concatenation of pieces: struct hpo_part (core/buf.h). */

struct hpo_op {
    enum hpo_op_kind kind;
    int64_t study_id;
    int64_t number;
    int64_t index;
    double value;
    union {
        int64_t created_at; /* STUDY_PUT */
        int64_t step;       /* REPORT_PUT */
    };
    const char *name;
    const char *text;
    const double *vector; /* borrowed until the write returns */
    size_t len;
    const void *blob;
    /*
    ** SAMPLER_STATE only, instead of blob/len: the state as pieces (n_parts),
    ** written to its side file one after another, without first copying
    ** them into one buffer.
    */
    const struct hpo_part *parts;
    size_t n_parts;
    /*
    ** SAMPLER_STATE with parts, optional: pieces that, appended to the state
    ** stored now, make the same state as `parts` (the sampler's load()
    ** replays them). Storage that keeps the state in a side file may append
    ** these instead of writing `parts`; other storage ignores them.
    */
    const struct hpo_part *append;
    size_t n_append;
    /*
    ** SAMPLER_STATE with parts, optional: called with settle_arg before the
    ** pieces of `parts` are read (work the sampler left running on them,
    ** sampler.h defer_next); appending only `append` needs no call.
    */
    void (*settle)(void *arg);
    void *settle_arg;
    /*
    ** With settle, optional: called with settle_arg once `append`'s pieces
    ** are copied out (to the file's cache), before the write waits for the
    ** disk: the sampler's deferred work may start then, no longer competing
    ** with the copy for the CPU. Without the call, settle starts it.
    */
    void (*start)(void *arg);
    /*
    ** PARAM_VECTOR: the value can be rebuilt should a power cut lose it
    ** (hpo_load_callbacks.lost): storage may make it durable only before the
    ** next write's commit rather than this one's (SQLite's side files).
    */
    bool lazy;
    /*
    ** PARAM_VECTOR with lazy, optional: a hold on the memory `vector` points
    ** into (hold(arg, true) takes one, hold(arg, false) lets it go; any
    ** thread). Storage may then write the value's side file after the
    ** commit, from that memory, held until then; `vector` must not change
    ** meanwhile. Without it, `vector` is borrowed as always.
    */
    void (*hold)(void *arg, bool take);
    void *hold_arg;
    /*
    ** PARAM_PUT: the cell never holds a vector (its param is a scalar of the
    ** study's space, which never changes), so storage need not look for a
    ** side file the write replaces. False: it may (a shared vector's number).
    */
    bool scalar;
    struct hpo_trial_row trial;
};

/*
** The order of one study copy's writes, for pipelined writes (see
** hpo_storage_pipeline): refcounted, any thread.
*/
struct hpo_write_chain;

/* One request's writes. All pointers are borrowed until hpo_storage_write returns. */
struct hpo_write {
    struct hpo_op *ops;
    size_t n_ops;
    /*
    ** The study copy's chain (NULL: none): the write may be pipelined, and
    ** once a pipelined write of the chain failed, every later write of it
    ** fails too (unavailable) without being run.
    */
    struct hpo_write_chain *chain;
    /*
    ** Several daemons (PostgreSQL): the fencing epoch of the study copy the
    ** write comes from (hpo_storage_fence_set); 0 takes the epoch the storage
    ** holds for the study. Ignored by SQLite.
    */
    int64_t epoch;
    /* Private to storage. */
    int result;
    bool done;
    struct hpo_error err;
    struct hpo_write *next;
    uint64_t seq; /* the group commit that holds it, awaiting its flush (0: none) */
    uint64_t aseq; /* a pipelined write's number (0: the caller waits for it) */
};

/* Whether `db` names a PostgreSQL database (a postgresql:// or postgres:// URI). */
bool hpo_storage_is_postgresql(const char *db);

/*
** With a postgresql:// (or postgres://) URI, open PostgreSQL instead (pg.c,
** docs/POSTGRESQL.md): connect, take the database's advisory lock (-EBUSY,
** unavailable, when another daemon holds it), run the same numbered
** migrations; no side files (values are bytea). Otherwise:
** Open (creating if needed) the database at `path`, set WAL, synchronous,
** foreign keys and busy_timeout, and run the migrations. Creates the blob
** directory `<path>.blobs/` (mode 0700) and removes the files in it that no
** row references (a crash between a file and its commit). Returns 0 and a new
** storage, or a negative errno with `err` filled (unavailable for I/O
** problems, internal otherwise). Call from one thread; no writer runs yet.
*/
int hpo_storage_open(const char *path, const struct hpo_storage_options *opt,
        struct hpo_storage **ret_storage, struct hpo_error *err);

/*
** Several daemons on PostgreSQL (see storage/cluster.h for membership and
** ownership). hpo_storage_fence_set records that this process holds a
** loaded copy of study `study_id` at fencing `epoch` (0: forget it): every
** later write of the study carries that epoch and is refused (-ESTALE,
** unavailable) once the database's epoch differs. A write of a study with
** no epoch recorded is refused without being sent. Thread-safe; no-ops on
** SQLite and on an exclusive PostgreSQL store.
*/
void hpo_storage_fence_set(struct hpo_storage *st, int64_t study_id, int64_t epoch);

/*
** A new study id, unique across daemons (PostgreSQL's sequence): 0, or
** -ENOTSUP when the caller numbers studies itself (SQLite, exclusive), or
** -EIO with `err` (unavailable). Any thread but the writer's.
*/
int hpo_storage_new_study_id(struct hpo_storage *st, int64_t *ret_id, struct hpo_error *err);

/* Callbacks for hpo_storage_load; each returns 0 or a negative errno to stop. */
struct hpo_load_callbacks {
    /* Studies in order of id. */
    int (*study)(void *ctx, int64_t id, const char *name, const char *spec, int64_t created_at,
            const void *state, size_t state_len);
    /* Trials ordered by (study_id, number). */
    int (*trial)(void *ctx, int64_t study_id, int64_t number, const struct hpo_trial_row *row);
    /* Params ordered by (study_id, number, index); vector != NULL for a vector param. */
    int (*param)(void *ctx, int64_t study_id, int64_t number, int64_t index, double value,
            const double *vector, size_t len);
    /* Intermediate values ordered by (study_id, number, step). */
    int (*report)(void *ctx, int64_t study_id, int64_t number, int64_t step, double value);
    /* User attrs ordered by (study_id, number, key); `json` is the value's JSON text. */
    int (*attr)(void *ctx, int64_t study_id, int64_t number, const char *key, const char *json);
    /*
    ** Optional, called in the params' order instead of `param`: a vector
    ** whose side file is missing, short or does not match its checksum (a
    ** lazy write a power cut lost, hpo_op.lazy). `len` elements were stored,
    ** with `checksum` (hpo_storage_checksum of their little-endian bytes).
    ** Return 0 when the caller rebuilds it; NULL or an error fails the load.
    */
    int (*lost)(void *ctx, int64_t study_id, int64_t number, int64_t index, size_t len,
            uint64_t checksum);
};

/* The checksum storage keeps of a side file's bytes (XXH64, seed 0). */
uint64_t hpo_storage_checksum(const void *data, size_t len);

/*
** Read everything back, table by table, in the orders above. Call before
** hpo_storage_start, from the thread that opened the storage.
*/
int hpo_storage_load(struct hpo_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err);

/*
** Load one study (by name) with the same callbacks and orders: any thread,
** after start. PostgreSQL: on a connection of its own; SQLite: on the
** writer's connection between two batches, reading every row (only the
** reload of a study whose pipelined write failed needs it). 0 (nothing
** called when no such study), -ENOTSUP on an exclusive PostgreSQL store
** (all studies were loaded at start), or a negative errno with `err`
** (unavailable).
*/
int hpo_storage_load_study(struct hpo_storage *st, const char *name,
        const struct hpo_load_callbacks *cb, void *ctx, struct hpo_error *err);

/*
** Wait until the database holds every write acknowledged so far (SQLite's
** redo log applied, storage/redo.h), for a reader on a connection of its
** own (reader.h) or a backup. Any thread; not inside a load's callbacks.
** Returns at once where there is nothing to wait for.
*/
void hpo_storage_settle(struct hpo_storage *st);

/* Start the writer thread. Returns 0 or a negative errno. */
int hpo_storage_start(struct hpo_storage *st);

/*
** Submit a write and wait until it is committed (0) or failed (negative
** errno, `w->err` and `err` filled: unavailable for BUSY/FULL/IOERR, conflict
** for a UNIQUE violation, internal otherwise; nothing of it was stored).
** Thread-safe; call from any thread but the writer's.
*/
int hpo_storage_write(struct hpo_storage *st, struct hpo_write *w, struct hpo_error *err);

/*
** Whether the last commit succeeded and the last side-file write did too
** (for /healthz). After a write that found no space, the file system having
** room for it again counts as success. Thread-safe.
*/
bool hpo_storage_healthy(struct hpo_storage *st);

/*
** Whether writes in flight are stuck until the database comes back: the
** outcome of a group transaction whose COMMIT answer was lost is unknown,
** and the database is unreachable (PostgreSQL; never for SQLite). Their
** callers wait for the outcome, however long (pg.c bounds it); a request
** that would queue behind them is better refused at once (daemon/dispatch.c).
** Thread-safe.
*/
bool hpo_storage_stalled(struct hpo_storage *st);

/* A counter the writer bumps each time it wakes or idles (for the watchdog). Thread-safe. */
uint64_t hpo_storage_ticks(struct hpo_storage *st);

/* Commits and writes so far (for metrics). Thread-safe. */
void hpo_storage_stats(struct hpo_storage *st, uint64_t *ret_commits, uint64_t *ret_writes);

/*
** For /metrics: the histograms of group transactions that committed (their
** duration from BEGIN to COMMIT in microseconds, and their number of
** writes), borrowed for the storage's lifetime and safe to read from any
** thread, and the number of group transactions that failed.
*/
struct hpo_hist;
void hpo_storage_metrics(struct hpo_storage *st, const struct hpo_hist **ret_commit_us,
        const struct hpo_hist **ret_batch_writes, uint64_t *ret_failed);

/*
** Replies held until the flush instead of the study (synchronous full:
** SQLite, storage/sqlite.c; PostgreSQL, storage/pg-flush.c): while on for
** the calling thread, hpo_storage_write returns as soon as its batch
** committed to the WAL, before the fdatasync
** that makes it durable, so the study's next mutation can join the next
** batch. The caller then must let nothing out that depends on what it did
** (its reply) before hpo_storage_flushed(st, t) is true for a ticket
** t = hpo_storage_flush_ticket(st) taken after the work: a batch's commit
** holds its predecessors' (the WAL is replayed as a prefix), so a reply
** waits for every commit that preceded it. A failed fdatasync ends the
** process (nothing more is acknowledged). Other modes (and hpod migrate)
** return from hpo_storage_write durable: ticket 0, always flushed.
*/
void hpo_storage_defer_flush(bool on);
uint64_t hpo_storage_flush_ticket(struct hpo_storage *st);
bool hpo_storage_flushed(struct hpo_storage *st, uint64_t ticket);

/*
** Pipelined writes (both backends; not hpod migrate's exclusive PostgreSQL
** store, nor while PostgreSQL is unreachable). While on for the calling thread
** (daemon/dispatch.c's workers), hpo_storage_write of a write with a chain
** and no pieces (parts), whose values fit 64 KiB (HPO__PIPELINE_MAX), copies it,
** queues it with the next number ("accepted") and returns 0 at once,
** before its commit; the writer thread commits it in a later group
** transaction. The caller goes on as if it committed, and must let nothing
** out that depends on it before hpo_storage_resolved(st) reaches the number
** hpo_storage_accepted(st) gave after the work, then check
** hpo_storage_chain_failed: numbers resolve in order, and a failed one
** fails its chain for good (the study copy is then reloaded from storage,
** service/loader.c). Under synchronous full, a reply also waits for the
** flush of a ticket taken once its writes resolved.
*/
void hpo_storage_pipeline(bool on);
bool hpo_storage_pipelines(struct hpo_storage *st);
uint64_t hpo_storage_accepted(struct hpo_storage *st);
uint64_t hpo_storage_resolved(struct hpo_storage *st);
/* The number of the last pipelined write that failed (0: none), any chain. */
uint64_t hpo_storage_last_failed(struct hpo_storage *st);

/*
** Round commits (an HTTP thread, docs/STYLE.md rule 33): while on, this
** thread's pipelined writes are queued without waking the writer thread,
** and the thread promises to call hpo_storage_lead soon (at the end of its
** round), which commits every queued write in one group transaction on
** the calling thread when no other thread holds the writer role, and
** returns false once every write accepted so far resolved. When another
** thread holds the role and `wake` is given, it does not wait: the writes
** stay queued, it returns true (handed off), and the thread goes on
** serving; wake(arg) (from another thread) means they need a leader, and
** the thread's next call leads what nobody has taken by then (the release
** of the replies they held may also come from another thread's commit).
** Without `wake` it waits for the leader. No-ops (false) where the backend
** has no such path (PostgreSQL: its writer thread commits).
*/
void hpo_storage_lead_later(bool on);
bool hpo_storage_lead(struct hpo_storage *st, void (*wake)(void *arg), void *arg);
/*
** Under synchronous full (SQLite), a round's end that committed flushes the
** WAL on the calling thread before hpo_storage_lead returns, and the
** replies the flush releases are released there, unless busy(), asked
** after the commit, says the thread has other work waiting: then a flusher
** thread flushes and releases them while the thread serves. busy() is
** asked on the thread that leads the round (it tells that thread's own
** work); set once, before the threads that lead rounds start (NULL, the
** default: never busy).
*/
void hpo_storage_lead_busy(bool (*busy)(void));
/* The number of the last write this thread queued for its hpo_storage_lead, or handed off (0: none). */
uint64_t hpo_storage_lead_pending(void);

/* A new chain (one reference), or NULL without memory. */
struct hpo_write_chain *hpo_storage_chain_new(void);
void hpo_storage_chain_ref(struct hpo_write_chain *c);
void hpo_storage_chain_unref(struct hpo_write_chain *c); /* accepts NULL */
/*
** Whether a pipelined write of the chain numbered in (after, upto] failed
** (upto 0: any after `after`); then `err` (may be NULL) gets its error.
*/
bool hpo_storage_chain_failed(struct hpo_write_chain *c, uint64_t after, uint64_t upto,
        struct hpo_error *err);
/* Wait until no pipelined write of the chain is queued or running. */
void hpo_storage_chain_wait(struct hpo_write_chain *c);
/* Whether no pipelined write of the chain is queued or running now (every one resolved). */
bool hpo_storage_chain_idle(struct hpo_write_chain *c);

/*
** fn(arg) on the flusher thread after each flush, and on the writer after
** each group transaction that held pipelined writes (NULL: none). Once it
** returned, no call of the previous fn runs or starts. Thread-safe.
*/
void hpo_storage_on_flush(struct hpo_storage *st, void (*fn)(void *arg), void *arg);

/*
** Drain the queue, stop and join the writer, finalize every statement and
** close the database. Accepts NULL. Call with no writer waiting.
*/
void hpo_storage_close(struct hpo_storage *st);

#endif
