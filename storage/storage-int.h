/*
** storage-int.h: definitions shared inside storage/ (and with its unit test),
** never included by another module.
*/
#ifndef HPO_STORAGE_INT_H
#define HPO_STORAGE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "storage.h"

/* The schema version this build writes: the number of the last migration. */
#define HPO_STORAGE_SCHEMA_VERSION 3
/* PostgreSQL's: versions 1-2 as SQLite's, then the tables of several daemons (its version 3). */
#define HPO_STORAGE_PG_SCHEMA_VERSION 3

/*
** The backends (storage.c dispatches): every backend's storage struct starts
** with a struct hpo_storage whose `ops` are its functions, with the meaning
** storage.h gives the public function of the same name. pause and queued
** may be NULL (test hooks of the SQLite backend only).
*/
struct hpo_storage_ops {
    int (*load)(struct hpo_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
            struct hpo_error *err);
    int (*start)(struct hpo_storage *st);
    int (*write)(struct hpo_storage *st, struct hpo_write *w, struct hpo_error *err);
    bool (*healthy)(struct hpo_storage *st);
    uint64_t (*ticks)(struct hpo_storage *st);
    void (*stats)(struct hpo_storage *st, uint64_t *ret_commits, uint64_t *ret_writes);
    void (*metrics)(struct hpo_storage *st, const struct hpo_hist **ret_commit_us,
            const struct hpo_hist **ret_batch_writes, uint64_t *ret_failed);
    void (*close)(struct hpo_storage *st);
    void (*pause)(struct hpo_storage *st, bool pause);
    size_t (*queued)(struct hpo_storage *st);
    /* Optional (NULL: writes return durable): see hpo_storage_flush_ticket. */
    uint64_t (*flush_ticket)(struct hpo_storage *st);
    bool (*flushed)(struct hpo_storage *st, uint64_t ticket);
    void (*on_flush)(struct hpo_storage *st, void (*fn)(void *arg), void *arg);
    /* Optional (NULL: never pipelined): see hpo_storage_accepted. */
    uint64_t (*accepted)(struct hpo_storage *st);
    uint64_t (*resolved)(struct hpo_storage *st);
    uint64_t (*last_failed)(struct hpo_storage *st);
    /* Optional (NULL: the writer thread commits every pipelined write): hpo_storage_lead. */
    bool (*lead)(struct hpo_storage *st, void (*wake)(void *arg), void *arg);
    /* Optional (NULL: never): see hpo_storage_stalled. */
    bool (*stalled)(struct hpo_storage *st);
    /* Several daemons (pg.c); NULL for SQLite. */
    void (*fence_set)(struct hpo_storage *st, int64_t study_id, int64_t epoch);
    int (*new_study_id)(struct hpo_storage *st, int64_t *ret_id, struct hpo_error *err);
    int (*load_study)(struct hpo_storage *st, const char *name,
            const struct hpo_load_callbacks *cb, void *ctx, struct hpo_error *err);
    /* Optional (NULL: nothing to wait for): hpo_storage_settle. */
    void (*settle)(struct hpo_storage *st);
};

/* hpo_storage_defer_flush's setting for this thread. */
extern _Thread_local bool hpo__defer_flush;
/* hpo_storage_pipeline's setting for this thread. */
extern _Thread_local bool hpo__pipeline;
/* hpo_storage_lead_later: pipelined writes wait for this thread's hpo_storage_lead. */
extern _Thread_local bool hpo__lead_later;
/*
** The number of the last pipelined write this thread queued while lead_later,
** or, once its hpo_storage_lead handed them off, of the last write accepted
** then (0: none left to lead).
*/
extern _Thread_local uint64_t hpo__lead_upto;
/* hpo_storage_lead_busy's check, asked on the leading thread (NULL: never busy). */
extern bool (*hpo__lead_busy)(void);

/* Values of a write up to this many bytes may be copied and pipelined. */
#define HPO__PIPELINE_MAX (64 * 1024)

/*
** A chain (storage.h). `in_flight` counts its pipelined writes queued or
** running (under `lock`); `failed` is the number of the first of them that
** failed (0: none), written once by the writer, `err` before it.
*/
struct hpo_write_chain {
    atomic_uint refs;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    unsigned in_flight;
    atomic_uint_fast64_t failed;
    struct hpo_error err;
};
/*
** The writer's side: one more write queued (a reference); the first failed
** one (`aseq`, with its error: later calls change nothing); one resolved.
*/
void hpo__chain_accept(struct hpo_write_chain *c);
void hpo__chain_fail(struct hpo_write_chain *c, uint64_t aseq, const struct hpo_error *err);
void hpo__chain_resolve(struct hpo_write_chain *c);

/*
** Both backends' pipelined writes (storage.c). hpo__write_copy: a copy of
** `w` in one block (hpo__write_copy_free it) holding its ops and every value
** they point to, or NULL when it may not be pipelined (a sampler state in
** pieces, values over HPO__PIPELINE_MAX) or without memory.
** The copy is ready for the queue (hpo__write_reset).
** hpo__write_accept: under the backend's lock, number the copy `c` of `w`
** (after *accepted, which it advances), count it on its chain and append it
** at *tail; `w` is then done and succeeded (its caller goes on, storage.h).
** hpo__write_dependent_failure: fail `w`, whose chain already failed, with
** that failure's message (unavailable); returns w->result's value.
*/
struct hpo_write *hpo__write_copy(const struct hpo_write *w);
void hpo__write_copy_free(struct hpo_write *c); /* NULL: nothing */
void hpo__write_accept(struct hpo_write *w, struct hpo_write *c, atomic_uint_fast64_t *accepted,
        struct hpo_write ***tail);
int hpo__write_dependent_failure(struct hpo_write *w);

struct hpo_storage {
    const struct hpo_storage_ops *ops;
};

/* Open the SQLite backend (sqlite.c) or the PostgreSQL one (pg.c); see hpo_storage_open. */
int hpo__sqlite_open(const char *path, const struct hpo_storage_options *opt,
        struct hpo_storage **ret_storage, struct hpo_error *err);
int hpo__pg_open(const char *uri, const struct hpo_storage_options *opt,
        struct hpo_storage **ret_storage, struct hpo_error *err);

/*
** A backend's start (writer.c): under `lock`, -EALREADY if `*started`; else
** start its writer thread `fn(arg)` in `*thread`, with every signal blocked and
** named "hpod-storage", and set `*started`: 0, or -errno if it could not be created.
*/
int hpo__writer_start(pthread_mutex_t *lock, bool *started, pthread_t *thread,
        void *(*fn)(void *), void *arg);

/*
** WAL checkpoints off the commit path (checkpoint.c; sqlite.c starts it under
** synchronous NORMAL only): a thread with its own
** connection to `path` checkpoints (PASSIVE) when the write connection
** `writer`'s WAL hook finds it over 1000 pages; replaces SQLite's automatic
** checkpoint there. 0, or a negative errno (then nothing changed: SQLite
** keeps checkpointing in the commits). Stop before closing `writer`, with
** no other thread using it; accepts NULL.
*/
struct hpo__ckpt;
int hpo__ckpt_start(sqlite3 *writer, const char *path, bool synchronous_full,
        struct hpo__ckpt **ret);
void hpo__ckpt_stop(struct hpo__ckpt *ck, sqlite3 *writer);

/*
** The SQL of migration `n` (1-based) for one backend: SQLite's or
** PostgreSQL's, kept side by side in migrations.c. NULL past the last.
*/
const char *hpo__storage_migration_sql(int n, bool postgresql);

/* The PostgreSQL reader behind reader.h (pg.c). */
struct hpo_pg_reader;
struct hpo_pg_reader *hpo__pg_reader_create(const char *uri);
void hpo__pg_reader_destroy(struct hpo_pg_reader *rd);
int hpo__pg_read_vector(struct hpo_pg_reader *rd, int64_t study_id, int64_t number,
        int64_t index, double *ret, size_t len, struct hpo_error *err);
int hpo__pg_read_state(struct hpo_pg_reader *rd, int64_t study_id, void **ret, size_t *ret_len,
        struct hpo_error *err);

/*
** Several daemons on PostgreSQL: what pg-cluster.c needs of pg.c. A daemon's
** writer session holds the advisory lock (HPO_PG_DAEMON_LOCK, its id):
** that is how the others see it alive.
*/
#define HPO_PG_DAEMON_LOCK 0x68706464 /* "hpdd" */

struct pg_conn;
struct pg_result;
struct hpo__pg_info {
    const char *uri;
    const char *passfile; /* NULL: libpq's own lookup */
    int64_t daemon_id;
    int lock_timeout_ms;
};

/* False for SQLite and an exclusive store (hpod migrate). Borrowed for the store's life. */
bool hpo__pg_cluster_info(struct hpo_storage *st, struct hpo__pg_info *ret);

/* fn(ctx, study) runs on the writing thread after a write of the study was fenced. */
void hpo__pg_on_fenced(struct hpo_storage *st, void (*fn)(void *ctx, int64_t study_id),
        void *ctx);

/* Writes refused by fencing so far. */
uint64_t hpo__pg_fenced_writes(struct hpo_storage *st);

/* A connection with our settings (NULL and `err` on failure), and libpq's errors as ours. */
struct pg_conn *hpo__pg_connect(const char *uri, const char *passfile, struct hpo_error *err);
int hpo__pg_error(const struct pg_conn *conn, const struct pg_result *res, const char *what,
        struct hpo_error *err);

/* Convert n doubles between little-endian storage order and the host's, in place. */
void hpo__storage_le_doubles(double *v, size_t n);

/*
** Fill `err` from a failed SQLite call and return the negative errno for it.
** `rc` is the (extended) result code of the call; `db` may be NULL when there
** is no connection. Call on the connection's own thread, right after the
** failing call, because sqlite3_errmsg() is overwritten by the next call.
** BUSY/LOCKED -> unavailable, -EAGAIN; FULL, IOERR_*, READONLY, CANTOPEN ->
** unavailable, -EIO; CONSTRAINT_UNIQUE/PRIMARYKEY -> conflict, -EEXIST;
** NOMEM -> internal, -ENOMEM; anything else -> internal, -EIO.
*/
int hpo__storage_error(sqlite3 *db, int rc, const char *what, struct hpo_error *err);

/*
** Bring the database from its PRAGMA user_version up to
** HPO_STORAGE_SCHEMA_VERSION, one BEGIN IMMEDIATE transaction per migration.
** Returns 0, or a negative errno with `err` filled; a database newer than
** this build is refused (-EPROTONOSUPPORT, internal) and left untouched.
*/
int hpo__storage_migrate(sqlite3 *db, struct hpo_error *err);

/*
** Test hooks. While paused, the writer takes no write off the queue, so a
** test can queue several writes and release them as one batch.
** hpo__storage_queued() is the number of writes waiting. Thread-safe.
*/
void hpo__storage_pause(struct hpo_storage *st, bool pause);
size_t hpo__storage_queued(struct hpo_storage *st);

/*
** The side-file blob store (blobs.c). A value of HPO_BLOB_MIN bytes or more
** (a vector param's little-endian float64 bytes, a sampler state) is written
** to a file of `<db path>.blobs/` and its cell holds a reference instead:
** "HPOBLOB1:<name>:<byte length>:<XXH64, 16 hex digits>", a BLOB shorter than
** HPO_BLOB_REF_MAX. A value that starts with HPO_BLOB_MAGIC goes to a file
** whatever its size, so an inline value never reads as a reference.
**
** Order of a write: the cell is updated, the file written in full (and with
** synchronous FULL, fdatasync'd; the directory is fsync'd once per batch),
** and only then the batch commits. A failed write unlinks the files it
** created; a committed batch unlinks the files its writes replaced or
** deleted. Used by the writer thread only (the opening thread before it).
*/
#define HPO_BLOB_MIN      ((size_t)1 << 20)
#define HPO_BLOB_MAGIC    "HPOBLOB1:"
#define HPO_BLOB_REF_MAX  128
#define HPO_BLOB_NAME_MAX 40
/*
** A file's write of this size or more has its XXH64 computed on a thread of
** its own meanwhile (blobs.c, struct hasher): 0.68 ms per 8 MB (four serial
** chains of multiplies), the copy to the page cache several times that, and
** while it runs the client waits for the reply, so the second core is idle.
** Below it, a thread's start costs more than it saves.
*/
#define HPO_BLOB_PAR_MIN ((size_t)1 << 20)
#define HPO_BLOB_SPARES   2
#define HPO_BLOB_WRITTEN  10 /* written files kept open until their pages are dropped */
#define HPO_BLOB_LAZY     8 /* files written lazily, waiting for the next batch's sync */

/* XXH64's running state (hpo__xxh64_init/update/digest below). */
struct hpo_xxh64 {
    uint64_t v[4];
    uint64_t total;
    unsigned char mem[32];
    size_t n_mem;
};

/*
** A sampler state's file that a later state may extend (hpo__blob_append):
** its name, its length as referenced, the length of the whole state at its
** start, and the checksum's running state over those bytes.
*/
struct hpo_blob_tail {
    char name[HPO_BLOB_NAME_MAX];
    size_t len, base;
    struct hpo_xxh64 x;
    uint64_t used; /* when it was last written (LRU) */
};

#define HPO_BLOB_TAILS 4

struct hpo_blob_ref {
    char name[HPO_BLOB_NAME_MAX]; /* "s<study id>-<counter, 16 hex digits>" */
    uint64_t counter;
    size_t len;    /* bytes of the value */
    uint64_t hash; /* XXH64 of the value */
    char text[96]; /* the reference as stored in the cell */
    size_t text_len;
};

struct hpo_blob_names {
    char (*v)[HPO_BLOB_NAME_MAX];
    size_t n, cap;
};

struct hpo_blob_hasher;
struct hpo_blob_syncer;

/*
** A lazy file not yet synced. A deferred one (hpo__blob_prepare_deferred)
** is written after its batch committed, from `data` (the caller's memory,
** held until then): `off` is how many of its `len` bytes are written (len:
** done; a file written before its commit has data NULL and off == len).
** A reused spare longer than the value is cut to `len` once written
** (`old_len`, 0 once cut). `synced`: its fdatasync returned.
*/
struct hpo_blob_lazy_file {
    int fd;
    const unsigned char *data;
    size_t len, off, old_len;
    bool synced;
    /* A deferred write's hold on the memory `data` points into (hpo_op.hold). */
    void (*hold)(void *arg, bool take);
    void *hold_arg;
};

struct hpo_blobs {
    int dirfd; /* -1: no side files (an in-memory database); every value stays inline */
    char *dir; /* the directory's path, for messages */
    bool sync; /* synchronous FULL: fdatasync each file, fsync the directory */
    uint64_t next; /* the counter of the next file; names are never reused */
    struct hpo_blob_names created;  /* files the current batch wrote */
    struct hpo_blob_names obsolete; /* files the current batch's writes replaced */
    struct hpo_blob_names reusable; /* replaced files no reader opens (sampler states) */
    /*
    ** Unreferenced files kept for the next big write, which renames one to
    ** its fresh name and overwrites it: cached pages and allocated blocks
    ** make that several times cheaper than a new file. Oldest first.
    */
    struct {
        char name[HPO_BLOB_NAME_MAX];
        size_t len;
    } spare[HPO_BLOB_SPARES];
    size_t n_spare;
    /*
    ** New files still open: their writeback was started, and their pages
    ** are dropped from the page cache (so write-once vectors do not grow it
    ** and the next file reuses the same memory): with sync, synced files
    ** and synced lazy ones, once their batch ended (hpo__blobs_finish,
    ** undo, forget), off the write's path; without, at the next write.
    */
    int written[HPO_BLOB_WRITTEN];
    size_t n_written;
    /*
    ** The errno of the last file write if it failed (0 if it did not; out of
    ** memory does not count) and its length: /healthz reports it.
    */
    int fail_errno;
    size_t fail_len;
    /* State files that may be extended, and the checksum state of the last prepared file. */
    struct hpo_blob_tail tails[HPO_BLOB_TAILS];
    uint64_t tick;
    struct hpo_xxh64 last_x;
    uint64_t last_counter;
    /* The thread that hashes a big file while it is written (blobs.c); NULL until then. */
    struct hpo_blob_hasher *hasher;
    bool hasher_failed; /* it could not start: the writer hashes */
    /* The batch's appends, to undo (cut the file back) or forget. */
    struct {
        size_t slot;
        struct hpo_blob_tail old;
    } appended[HPO_BLOB_TAILS];
    size_t n_appended;
    /*
    ** Files written lazily (hpo__blob_prepare_write), still open: not yet
    ** fdatasync'd. `batch`: written by the current batch; the others belong
    ** to committed batches and are synced before the next COMMIT.
    */
    struct {
        char name[HPO_BLOB_NAME_MAX];
        bool batch;
        struct hpo_blob_lazy_file f;
    } lazy[HPO_BLOB_LAZY];
    size_t n_lazy;
    /*
    ** The thread that syncs committed lazy files before the next batch needs
    ** them (blob-syncer.c; NULL until then), and how many of lazy[] (the
    ** first ones) its job holds: 0 when none is out.
    */
    struct hpo_blob_syncer *syncer;
    bool syncer_failed; /* it could not start: the next batch syncs */
    size_t n_bg;
};

/*
** The lazy files' sync thread (blob-syncer.c). Start: NULL if it cannot be.
** Queue: on the thread, write what each of the n files still lacks
** (hpo__blob_lazy_write), fdatasync it, then fsync dirfd; the job works on
** its own duplicates of the fds and takes its own hold on each file's data
** (let go on the thread when the job ends), so the caller's may go once
** the join returned. False (nothing queued) while an abandoned job still
** runs. Join: take a job not begun back; one that runs is told to stop and
** abandoned, each file's progress as of now (the pieces written in full)
** copied back into files[0..n) (off, old_len, synced): the caller writes
** and syncs the rest itself, never waiting for the thread. Returns 0 with
** *dir_synced whether the job ended with the directory's fsync, or the
** negative errno of a job that failed, *failed the failing file's index
** (n: the directory).
*/
struct hpo_blob_syncer *hpo__blob_syncer_start(void);
void hpo__blob_syncer_stop(struct hpo_blob_syncer *s);
bool hpo__blob_syncer_queue(struct hpo_blob_syncer *s, const struct hpo_blob_lazy_file *files,
        size_t n, int dirfd);
int hpo__blob_syncer_join(struct hpo_blob_syncer *s, struct hpo_blob_lazy_file *files, size_t n,
        bool *dir_synced, size_t *failed);

/*
** Write the bytes of `f` from f->off on, a piece at a time with each
** piece's writeback started, then cut a longer spare back; before each
** piece, stop (returning 1) if `stop` is set; after each, call
** progress(arg, f) if given. 0 once written, or -errno (f->off: what was
** written).
*/
int hpo__blob_lazy_write(struct hpo_blob_lazy_file *f, const atomic_bool *stop,
        void (*progress)(void *arg, const struct hpo_blob_lazy_file *f), void *arg);

/* Where a write started in the batch's lists, to undo just that write. */
struct hpo_blob_mark {
    size_t created, obsolete, reusable, appended, lazy;
};

/*
** Create (mode 0700) or open `<db_path>.blobs/`. For ":memory:", "" and
** "file:" URIs the store stays disabled. Returns 0, or -EIO (unavailable) or
** -ENOMEM with `err` filled; call hpo__blobs_close() either way.
*/
int hpo__blobs_open(struct hpo_blobs *b, const char *db_path, bool sync, struct hpo_error *err);

/*
** Open the store of `db_path` for hpo__blob_read() only (a reader on another
** connection and thread): nothing is created. A missing directory is no
** error; reading a reference then fails. Returns 0 or -ENOMEM.
*/
int hpo__blobs_open_read(struct hpo_blobs *b, const char *db_path);
void hpo__blobs_close(struct hpo_blobs *b);

/*
** At open: remove every file of ours (by its name's pattern) that no cell
** references, a leftover of a crash, and start the counter past every name
** on disk or in the database. Other files in the directory are left alone.
*/
int hpo__blobs_sweep(struct hpo_blobs *b, sqlite3 *db, struct hpo_error *err);

/* Whether a value of `len` bytes goes to a side file. */
bool hpo__blob_wanted(const struct hpo_blobs *b, const void *data, size_t len);

/* Parse a cell as a reference; false if it is not one (an ordinary value). */
bool hpo__blob_parse(const void *value, size_t len, struct hpo_blob_ref *ref);

/* Name a new file for `data` (a fresh counter) and fill the reference to store. */
void hpo__blob_prepare(struct hpo_blobs *b, int64_t study_id, const void *data, size_t len,
        struct hpo_blob_ref *ref);

/* The same for the concatenation of n parts. */
void hpo__blob_prepare_parts(struct hpo_blobs *b, int64_t study_id, const struct hpo_part *parts,
        size_t n, struct hpo_blob_ref *ref);

/*
** Name a new file for the concatenation of n parts (as
** hpo__blob_prepare_parts), write it and add it to the batch's created
** files; its cell is written after. The file is fdatasync'd if sync,
** unless `lazy`: a value that can be rebuilt if a power cut loses it
** (hpo_op.lazy), whose writeback is only started, and which
** hpo__blobs_sync_dir of the next batch syncs (with its directory entry)
** before that batch commits, or finds synced by the sync thread. `state`: a sampler state, whose file keeps
** the length of a longer spare it reuses (for appends). From
** HPO_BLOB_PAR_MIN bytes on, the checksum is computed on a thread of its
** own while the writer thread writes the file. `ref` is filled either
** way; 0, or a negative errno with `err` filled and nothing left on disk:
** -EIO (unavailable) or -ENOMEM, `err` names the file.
*/
int hpo__blob_prepare_write(struct hpo_blobs *b, int64_t study_id,
        const struct hpo_part *parts, size_t n, bool lazy, bool state, struct hpo_blob_ref *ref,
        struct hpo_error *err);

/*
** A lazy value of `len` bytes (hpo_op.lazy with a hold) whose file is named
** (created, empty) and checksummed now but written only after the batch
** committed: by the sync thread while the disk and a core are idle, or by
** the next batch's hpo__blobs_sync_dir, which writes what the thread has
** not and syncs it before that batch commits (so the file's bytes and name
** are on disk before any later commit, as for a lazy file). hold(arg,
** true) is called once the write is queued, hold(arg, false) once the file
** is synced or the write undone; `data` must not change meanwhile. Without
** sync, or with HPO_BLOB_LAZY files pending: hpo__blob_prepare_write
** (lazy). Returns as hpo__blob_prepare_write.
*/
int hpo__blob_prepare_deferred(struct hpo_blobs *b, int64_t study_id, const void *data,
        size_t len, void (*hold)(void *arg, bool take), void *arg, struct hpo_blob_ref *ref,
        struct hpo_error *err);

/*
** Read the file `ref` names into `buf` (ref->len bytes) and check its length
** and checksum. Returns 0, or a negative errno with `err` (internal) naming
** the file: missing, short, unreadable, or not matching its checksum. A longer
** file is read up to ref->len (a state file's bytes past it are an unfinished
** or undone append, or a reused spare's).
*/
int hpo__blob_read(const struct hpo_blobs *b, const struct hpo_blob_ref *ref, void *buf,
        struct hpo_error *err);

/*
** If the old cell `value` is a reference, its file is unlinked once the batch
** commits, or, when `reusable` (no reader ever opens it: a sampler state),
** kept as a spare for a later write to overwrite.
*/
int hpo__blob_obsolete(struct hpo_blobs *b, const void *value, size_t len, bool reusable);

/*
** After `ref` (a sampler state's new file) was written: later states may be
** appended to it (hpo__blob_append).
*/
void hpo__blob_keep_tail(struct hpo_blobs *b, const struct hpo_blob_ref *ref);

/*
** Append n parts to the state file `cur` references, if it is one
** hpo__blob_keep_tail kept at that length and the appended bytes stay
** within the whole state's length (a longer replay is not worth it): the
** parts are written after its last byte (fdatasync'd if sync) and `ref` is
** the reference to the longer file. Returns 1, 0 when the file cannot be
** extended (write the whole state), or -EIO/-ENOMEM with `err` filled (the
** file cut back). Undo cuts the file back; a committed reference may leave
** bytes past its length after a crash, which readers ignore. `copied`
** (optional) is called with `arg` once the parts are in the page cache,
** before the wait for the disk (hpo_op.start), when the append goes ahead.
*/
int hpo__blob_append(struct hpo_blobs *b, const struct hpo_blob_ref *cur,
        const struct hpo_part *parts, size_t n, void (*copied)(void *), void *arg,
        struct hpo_blob_ref *ref, struct hpo_error *err);

/* Mark where a write starts; undo unlinks the files it created and forgets its obsoletes. */
void hpo__blobs_mark(const struct hpo_blobs *b, struct hpo_blob_mark *mark);
void hpo__blobs_undo(struct hpo_blobs *b, const struct hpo_blob_mark *mark);

/* Forget the batch's lists without unlinking anything (the sweep decides later). */
void hpo__blobs_forget(struct hpo_blobs *b);

/*
** Before COMMIT with synchronous FULL: fdatasync the lazy files of earlier
** batches, then fsync the directory if the batch created files (its own
** lazy ones aside) or lazy files were synced.
*/
int hpo__blobs_sync_dir(struct hpo_blobs *b, struct hpo_error *err);

/* Whether the batch has files to forget or unlink. */
bool hpo__blobs_pending(const struct hpo_blobs *b);

/* After a commit: unlink (or keep as spares) the files the batch made obsolete; clear the lists. */
void hpo__blobs_finish(struct hpo_blobs *b);

/* XXH64 with seed 0 (exposed for the unit test's known vectors). */
uint64_t hpo__xxh64(const void *data, size_t len);

/* The same over pieces: init, update with each, digest (equal to the one-shot hash). */
void hpo__xxh64_init(struct hpo_xxh64 *x);
void hpo__xxh64_update(struct hpo_xxh64 *x, const void *data, size_t len);
uint64_t hpo__xxh64_digest(const struct hpo_xxh64 *x);

/* A write about to be queued: not done, no result, no error, in no batch yet. */
static inline void hpo__write_reset(struct hpo_write *w)
{
    w->result = 0;
    w->done = false;
    w->next = NULL;
    w->seq = 0;
    hpo_error_clear(&w->err);
}

#endif
