/*
** pg.c: the storage on PostgreSQL (libpq), behind the same interface as
** SQLite (storage.h), for `--db postgresql://...`.
**
** One connection for writes, used by whoever holds the writer role (`busy`):
** as in sqlite.c, a caller whose write is queued takes it when it is free,
** else the writer thread. The leader takes every queued write and sends the
** whole batch in pipeline mode, one round trip: BEGIN, the batch marker, each write's
** statements, COMMIT, Sync. A write that fails (a UNIQUE violation, a
** missing study) aborts the transaction: its error is recorded, and the
** batch is sent again without it, until it commits or no write is left.
** That is what a savepoint per write gives, without subtransactions (more
** than 64 in one transaction overflow PostgreSQL's subxid cache and slow
** every snapshot).
**
** The marker (UPDATE hpod_batch SET id = <this batch's id>) tells the
** outcome of a batch whose COMMIT answer was lost with the connection: the
** writer reconnects, takes the advisory lock again (so the old session is
** gone and its transaction ended one way or the other) and reads the id. If
** it is this batch's, the batch committed and its writes succeed; else
** nothing of it is stored and they fail (unavailable). If the outcome cannot
** be learned within RESOLVE_MAX_S, the process exits (EX_TEMPFAIL): memory
** and database may differ and only a fresh load from the database is right.
**
** While the database is unreachable (the connection lost and not yet made
** again), writes fail at once with unavailable, and the writer thread tries
** to reconnect with a backoff from 100 ms doubling to 5 s.
**
** Pipelined writes (hpo_storage_pipeline, storage.h; the rules are
** sqlite.c's, the copy and the dependent failure storage.c's): a
** pipelining caller's write with a chain is copied (hpo__write_copy),
** with the study's fencing epoch of that moment, numbered (`accepted`)
** and queued, and the caller returns at once; the writer thread leads the
** batches of copies. None is accepted while the database is down (the
** usual path refuses the write at once) nor on an exclusive store. Before
** each send of a batch (fail_dependents), in queue order, a pipelined
** write that failed fails its chain and a write of a chain that failed
** before it is left out with the dependent failure, so no send, the
** resends included, commits write k+1 of a study copy without write k.
** After the batch the leader publishes `resolved` (after noting the
** commit for the flush, so a ticket taken then covers it) and
** `last_failed`, releases the chains' counts and calls on_flush.
**
** Several daemons per database (docs/CLUSTER.md): each writer session holds
** the shared advisory lock LOCK_KEY (hpod migrate takes it exclusively, so
** it runs alone) and the lock (HPO_PG_DAEMON_LOCK, its daemon id), taken at
** open and again on every reconnect: that lock tells the other daemons this
** one is alive, and waits out an old session of its own. Each daemon has its
** own batch marker (hpod_batches), and every write of a study starts with
** hpod_fence(study, daemon, epoch): a daemon that lost the study (frozen past
** its lease, the study claimed by another) has its writes refused
** (storage/pg-cluster.c keeps the membership and the owners).
*/
#include <endian.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "../core/histogram.h"
#include "../core/log.h"
#include "pg-flush.h"
#include "storage-int.h"

#define IDLE_TICK_MS     500
#define LONELY_US        200 /* choose_sync */
#define BACKOFF_MIN_MS   100
#define BACKOFF_MAX_MS   5000
#define RESOLVE_MAX_S    60
#define CONNECT_TIMEOUT  "5"
#define LOCK_KEY         INT64_C(0x68706f64) /* "hpod" */
#define MIGRATE_LOCK_KEY INT64_C(0x68706f6d) /* "hpom" */

/* Type oids of the parameters (pg_type.h is server-side only). */
#define OID_BOOL   16
#define OID_BYTEA  17
#define OID_INT8   20
#define OID_INT4   23
#define OID_TEXT   25
#define OID_FLOAT8 701

enum {
    S_MARKER,
    S_MARKER_D,
    S_FENCE,
    S_OWNER_NEW,
    S_STUDY_PUT,
    S_STUDY_DELETE,
    S_TRIAL_PUT,
    S_PARAM_PUT,
    S_PARAM_DELETE,
    S_REPORT_PUT,
    S_ATTR_PUT,
    S_ATTR_DELETE,
    S_STUDY_SPEC,
    S_SAMPLER_STATE,
    N_STMTS,
};

/*
** Every statement, prepared on each connection as "h<index>". A study
** delete or state update that touches no row fails with division_by_zero,
** mapped to not_found: the check runs in the server, so a pipeline needs
** no answer before it goes on.
*/
static const struct {
    const char *sql;
    int n;
    Oid types[12];
} stmt_sql[N_STMTS] = {
    [S_MARKER] = { "UPDATE hpod_batch SET id = $1", 1, { OID_INT8 } },
    [S_MARKER_D] = { "UPDATE hpod_batches SET id = $1 WHERE daemon = $2", 2,
        { OID_INT8, OID_INT8 } },
    [S_FENCE] = { "SELECT hpod_fence($1, $2, $3)", 3, { OID_INT8, OID_INT8, OID_INT8 } },
    [S_OWNER_NEW] = { "INSERT INTO study_owners (study_id, owner, epoch) VALUES ($1, $2, 1)", 2,
        { OID_INT8, OID_INT8 } },
    [S_STUDY_PUT] = { "INSERT INTO studies (id, name, spec, created_at) VALUES ($1, $2, $3, $4)",
        4, { OID_INT8, OID_TEXT, OID_TEXT, OID_INT8 } },
    [S_STUDY_DELETE] = { "WITH d AS (DELETE FROM studies WHERE id = $1 RETURNING 1)"
                         " SELECT 1 / (SELECT count(*)::integer FROM d)",
        1, { OID_INT8 } },
    [S_TRIAL_PUT] = { "INSERT INTO trials (study_id, number, state, value, worker, retry_of,"
                      " retries, created_at, started_at, completed_at, heartbeat_at, results)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                      " ON CONFLICT (study_id, number) DO UPDATE SET state = excluded.state,"
                      " value = excluded.value, worker = excluded.worker,"
                      " retry_of = excluded.retry_of, retries = excluded.retries,"
                      " created_at = excluded.created_at, started_at = excluded.started_at,"
                      " completed_at = excluded.completed_at,"
                      " heartbeat_at = excluded.heartbeat_at, results = excluded.results",
        12, { OID_INT8, OID_INT8, OID_INT4, OID_FLOAT8, OID_TEXT, OID_INT8, OID_INT8, OID_INT8,
                    OID_INT8, OID_INT8, OID_INT8, OID_TEXT } },
    [S_PARAM_PUT] = { "INSERT INTO params (study_id, number, idx, value, vec)"
                      " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (study_id, number, idx)"
                      " DO UPDATE SET value = excluded.value, vec = excluded.vec",
        5, { OID_INT8, OID_INT8, OID_INT8, OID_FLOAT8, OID_BYTEA } },
    [S_PARAM_DELETE] = { "DELETE FROM params WHERE study_id = $1 AND number = $2 AND idx = $3",
        3, { OID_INT8, OID_INT8, OID_INT8 } },
    [S_REPORT_PUT] = { "INSERT INTO intermediate (study_id, number, step, value)"
                       " VALUES ($1, $2, $3, $4) ON CONFLICT (study_id, number, step) DO NOTHING",
        4, { OID_INT8, OID_INT8, OID_INT8, OID_FLOAT8 } },
    [S_ATTR_PUT] = { "INSERT INTO trial_attrs (study_id, number, key, value)"
                     " VALUES ($1, $2, $3, $4) ON CONFLICT (study_id, number, key)"
                     " DO UPDATE SET value = excluded.value",
        4, { OID_INT8, OID_INT8, OID_TEXT, OID_TEXT } },
    [S_ATTR_DELETE] = { "DELETE FROM trial_attrs WHERE study_id = $1 AND number = $2 AND key = $3",
        3, { OID_INT8, OID_INT8, OID_TEXT } },
    [S_STUDY_SPEC] = { "UPDATE studies SET spec = $2 WHERE id = $1", 2, { OID_INT8, OID_TEXT } },
    [S_SAMPLER_STATE] = { "WITH u AS (UPDATE studies SET sampler_state = $2 WHERE id = $1"
                          " RETURNING 1) SELECT 1 / (SELECT count(*)::integer FROM u)",
        2, { OID_INT8, OID_BYTEA } },
};

/* One statement's parameters in binary (text for text), encoded before sending. */
struct params {
    const char *values[12];
    int lengths[12];
    int formats[12];
    unsigned char num[12][8];
    int n;
};

/* Which write and op each statement of a pipeline came from (-1: BEGIN, marker, COMMIT). */
struct sent {
    struct hpo_write *w;
    size_t op;
};

/* A study this process holds a loaded copy of, at its fencing epoch. */
struct fence {
    int64_t study_id;
    int64_t epoch;
};

struct pg_storage {
    struct hpo_storage base; /* first: the public handle */
    bool exclusive;     /* hpod migrate: alone on the database, no fencing */
    int64_t daemon_id;  /* several daemons: this process's row in `daemons` */
    uint64_t next_check_us; /* several daemons: when the idle writer next checks its session */
    char *uri;
    char *passfile; /* the systemd credential "pgpass", NULL: libpq's own lookup */
    PGconn *conn;   /* the writer's (before start, load's) */
    int lock_timeout_ms; /* a write waits this long for a row or table lock, then fails */
    bool synchronous_full; /* --synchronous full: synchronous_commit on whatever the default */
    /*
    ** --synchronous full on a daemon: the writer commits with synchronous_commit
    ** off and the flusher (pg-flush.c) makes the commits durable before their
    ** callers go on or their replies go out (NULL: each COMMIT waits itself).
    */
    struct hpo__pg_flush *flush;
    bool pipelined; /* flush is or is to be made: the writer's sessions commit asynchronously */
    bool batch_sync;        /* pipelined: this batch commits synchronously (choose_sync) */
    uint64_t last_batch_us; /* pipelined: when the last batch ended */
    int64_t batch_id;
    int64_t committed_id; /* the last batch that committed in this run (0: none yet) */
    bool resolving;       /* in resolve(): it reads the marker itself */
    atomic_bool stalled;  /* in resolve(), and the database unreachable (hpo_storage_stalled) */
    /* Scratch: a joined sampler state, byte-swapped vectors, the pipeline's statements. */
    void *buf;
    size_t buf_cap;
    struct sent *sent;
    size_t sent_cap;
    struct fence *sent_fences; /* the (study, epoch) pairs a send fenced already */
    size_t sent_fences_cap;
    unsigned backoff_ms;
    uint64_t next_try_us;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    struct hpo_write *head; /* under lock */
    struct hpo_write **tail;
    size_t waiters;
    bool busy; /* a thread runs a batch or a reconnect: it alone uses conn */
    bool started;
    bool stopping;

    atomic_bool down; /* no connection: writes fail at once */
    atomic_bool healthy;
    atomic_uint_fast64_t ticks;
    atomic_uint_fast64_t commits;
    atomic_uint_fast64_t writes;
    atomic_uint_fast64_t failed_batches;
    atomic_uint_fast64_t fenced; /* writes refused because the study changed owner */
    /* Several daemons: the studies held, by id (under fence_lock), and who hears of a loss. */
    pthread_mutex_t fence_lock;
    struct fence *fences;
    size_t n_fences, fences_cap;
    void (*on_fenced)(void *ctx, int64_t study_id);
    void *fenced_ctx;
    /* A connection for loading one study and numbering new ones (any thread, under aux_lock). */
    pthread_mutex_t aux_lock;
    PGconn *aux;
    struct hpo_hist commit_us;
    struct hpo_hist batch_writes;
    /* Pipelined writes (see the top of this file). */
    atomic_uint_fast64_t accepted;    /* the last number given (written under `lock`) */
    atomic_uint_fast64_t resolved;    /* every write up to this number committed or failed */
    atomic_uint_fast64_t last_failed; /* the last that failed (0: none) */
    pthread_mutex_t cb_lock;          /* held while on_flush is set or called */
    void (*on_flush)(void *arg);      /* hpo_storage_on_flush */
    void *on_flush_arg;
};

static const uint64_t commit_us_le[] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
    100000, 250000, 500000, 1000000, 2500000 };
static const uint64_t batch_writes_le[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };

static uint64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The first line of libpq's message, without its trailing newline. */
static const char *pq_message(const PGconn *conn, const PGresult *res, char *buf, size_t size)
{
    const char *m = res != NULL ? PQresultErrorMessage(res) : "";
    size_t n;

    if ((m == NULL || m[0] == '\0') && conn != NULL) {
        m = PQerrorMessage(conn);
    }
    if (m == NULL || m[0] == '\0') {
        m = "connection lost";
    }
    n = strcspn(m, "\n");
    snprintf(buf, size, "%.*s", (int)n, m);
    return buf;
}

/*
** Fill `err` for a failed statement: by SQLSTATE, conflict for a unique
** violation, not_found for our "no row" check, unavailable when the
** database cannot serve now (connection, shutdown, resources, a standby),
** internal otherwise.
*/
static int pq_error(const PGconn *conn, const PGresult *res, const char *what,
        struct hpo_error *err)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char msg[256];

    pq_message(conn, res, msg, sizeof(msg));
    if (state == NULL || (conn != NULL && PQstatus(conn) != CONNECTION_OK)) {
        return hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL, "%s: %s", what, msg);
    }
    if (strcmp(state, "23505") == 0) {
        return hpo_error_set(err, -EEXIST, HPO_CONFLICT, NULL, "%s: %s", what, msg);
    }
    if (strcmp(state, "HP001") == 0) {
        return hpo_error_set(err, -ESTALE, HPO_UNAVAILABLE, NULL,
                "this daemon no longer owns the study (fenced); retry");
    }
    if (strcmp(state, "22012") == 0) {
        return hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL, "%s: no such study", what);
    }
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
            strncmp(state, "53", 2) == 0 || strcmp(state, "40001") == 0 ||
            strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 ||
            strcmp(state, "25006") == 0) {
        return hpo_error_set(err, -EAGAIN, HPO_UNAVAILABLE, NULL, "%s: %s", what, msg);
    }
    return hpo_error_set(err, -EIO, HPO_INTERNAL, NULL, "%s: %s (SQLSTATE %s)", what, msg,
            state);
}

/* Run one statement outside a pipeline; 0 or a negative errno with `err`. */
static int exec_ok(PGconn *conn, const char *sql, const char *what, struct hpo_error *err)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType s = PQresultStatus(res);
    int r = 0;

    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        r = pq_error(conn, res, what, err);
    }
    PQclear(res);
    return r;
}

/* Parameters in network order. */
static void put_i64(struct params *p, int64_t v)
{
    uint64_t be = htobe64((uint64_t)v);
    int i = p->n++;

    memcpy(p->num[i], &be, 8);
    p->values[i] = (const char *)p->num[i];
    p->lengths[i] = 8;
    p->formats[i] = 1;
}

static void put_i32(struct params *p, int32_t v)
{
    uint32_t be = htobe32((uint32_t)v);
    int i = p->n++;

    memcpy(p->num[i], &be, 4);
    p->values[i] = (const char *)p->num[i];
    p->lengths[i] = 4;
    p->formats[i] = 1;
}

/* NaN is stored as NULL, as in SQLite. */
static void put_f64(struct params *p, double v)
{
    uint64_t u;
    int i = p->n++;

    if (isnan(v)) {
        p->values[i] = NULL;
        p->lengths[i] = 0;
        p->formats[i] = 1;
        return;
    }
    memcpy(&u, &v, 8);
    u = htobe64(u);
    memcpy(p->num[i], &u, 8);
    p->values[i] = (const char *)p->num[i];
    p->lengths[i] = 8;
    p->formats[i] = 1;
}

static void put_text(struct params *p, const char *v)
{
    int i = p->n++;

    p->values[i] = v;
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

static void put_bytes(struct params *p, const void *v, size_t len)
{
    int i = p->n++;

    /* A non-NULL pointer for an empty value: NULL would mean SQL NULL. */
    p->values[i] = v != NULL ? v : "";
    p->lengths[i] = (int)len;
    p->formats[i] = 1;
}

static void put_null(struct params *p)
{
    int i = p->n++;

    p->values[i] = NULL;
    p->lengths[i] = 0;
    p->formats[i] = 1;
}

static int reserve_buf(struct pg_storage *st, size_t n)
{
    void *b;

    if (n <= st->buf_cap) {
        return 0;
    }
    b = realloc(st->buf, n);
    if (b == NULL) {
        return -ENOMEM;
    }
    st->buf = b;
    st->buf_cap = n;
    return 0;
}

/*
** Encode one op's parameters into `p` and name its statement. Vectors are
** little-endian float64 bytes as in SQLite (passed in place on a
** little-endian host); a state in parts is joined in the scratch buffer,
** which libpq copies when the statement is sent.
*/
static int encode_op(struct pg_storage *st, const struct hpo_op *op, int *ret_stmt,
        struct params *p, struct hpo_error *err)
{
    const struct hpo_trial_row *t = &op->trial;

    p->n = 0;
    switch (op->kind) {
    case HPO_OP_STUDY_PUT:
        *ret_stmt = S_STUDY_PUT;
        put_i64(p, op->study_id);
        put_text(p, op->name);
        put_text(p, op->text);
        put_i64(p, op->created_at);
        return 0;
    case HPO_OP_STUDY_DELETE:
        *ret_stmt = S_STUDY_DELETE;
        put_i64(p, op->study_id);
        return 0;
    case HPO_OP_TRIAL_PUT:
        *ret_stmt = S_TRIAL_PUT;
        put_i64(p, op->study_id);
        put_i64(p, op->number);
        put_i32(p, t->state);
        put_f64(p, t->value);
        if (t->worker != NULL) {
            put_text(p, t->worker);
        } else {
            put_null(p);
        }
        put_i64(p, t->retry_of);
        put_i64(p, t->retries);
        put_i64(p, t->created_at);
        put_i64(p, t->started_at);
        put_i64(p, t->completed_at);
        put_i64(p, t->heartbeat_at);
        if (t->results != NULL) {
            put_text(p, t->results);
        } else {
            put_null(p);
        }
        return 0;
    case HPO_OP_PARAM_PUT:
        *ret_stmt = S_PARAM_PUT;
        put_i64(p, op->study_id);
        put_i64(p, op->number);
        put_i64(p, op->index);
        put_f64(p, op->value);
        put_null(p);
        return 0;
    case HPO_OP_PARAM_VECTOR: {
        const void *bytes = op->vector;

        if (op->len > (size_t)INT32_MAX / sizeof(double) || (op->vector == NULL && op->len > 0)) {
            return hpo_error_set(err, -EINVAL, HPO_INTERNAL, NULL,
                    "bad vector param (length %zu)", op->len);
        }
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
        if (op->len > 0) {
            if (reserve_buf(st, op->len * sizeof(double)) < 0) {
                return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            }
            memcpy(st->buf, op->vector, op->len * sizeof(double));
            hpo__storage_le_doubles(st->buf, op->len);
            bytes = st->buf;
        }
#endif
        *ret_stmt = S_PARAM_PUT;
        put_i64(p, op->study_id);
        put_i64(p, op->number);
        put_i64(p, op->index);
        put_null(p);
        put_bytes(p, bytes, op->len * sizeof(double));
        return 0;
    }
    case HPO_OP_REPORT_PUT:
        *ret_stmt = S_REPORT_PUT;
        put_i64(p, op->study_id);
        put_i64(p, op->number);
        put_i64(p, op->step);
        put_f64(p, op->value);
        return 0;
    case HPO_OP_ATTR_PUT:
        *ret_stmt = S_ATTR_PUT;
        put_i64(p, op->study_id);
        put_i64(p, op->number);
        put_text(p, op->name);
        put_text(p, op->text);
        return 0;
    case HPO_OP_ATTR_DELETE:
        *ret_stmt = S_ATTR_DELETE;
        put_i64(p, op->study_id);
        put_i64(p, op->number);
        put_text(p, op->name);
        return 0;
    case HPO_OP_STUDY_SPEC:
        *ret_stmt = S_STUDY_SPEC;
        put_i64(p, op->study_id);
        put_text(p, op->text);
        return 0;
    case HPO_OP_SAMPLER_STATE: {
        size_t len = 0;

        *ret_stmt = S_SAMPLER_STATE;
        put_i64(p, op->study_id);
        if (op->parts != NULL) {
            unsigned char *q;

            if (op->settle != NULL) {
                op->settle(op->settle_arg); /* the pieces are read below */
            }
            for (size_t k = 0; k < op->n_parts; k++) {
                len += op->parts[k].len;
            }
            if (len > (size_t)INT32_MAX) {
                return hpo_error_set(err, -EFBIG, HPO_INTERNAL, NULL,
                        "sampler state of %zu bytes is too large", len);
            }
            if (reserve_buf(st, len + 1) < 0) {
                return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            }
            q = st->buf;
            for (size_t k = 0; k < op->n_parts; k++) {
                if (op->parts[k].len > 0) {
                    memcpy(q, op->parts[k].data, op->parts[k].len);
                    q += op->parts[k].len;
                }
            }
            put_bytes(p, st->buf, len);
        } else if (op->blob != NULL) {
            if (op->len > (size_t)INT32_MAX) {
                return hpo_error_set(err, -EFBIG, HPO_INTERNAL, NULL,
                        "sampler state of %zu bytes is too large", op->len);
            }
            put_bytes(p, op->blob, op->len);
        } else {
            put_null(p);
        }
        return 0;
    }
    case HPO_OP_PARAM_DELETE:
        *ret_stmt = S_PARAM_DELETE;
        put_i64(p, op->study_id);
        put_i64(p, op->number);
        put_i64(p, op->index);
        return 0;
    }
    return hpo_error_set(err, -EINVAL, HPO_INTERNAL, NULL, "unknown storage op %d",
            (int)op->kind);
}

/* ---- connecting --------------------------------------------------------- */

static void disconnect(struct pg_storage *st)
{
    PQfinish(st->conn);
    st->conn = NULL;
}

/* The server's notices ("already exists, skipping") are not for the daemon's log. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Open a connection to the URI with our settings; NULL and `err` on failure. */
static PGconn *connect_uri(const char *uri, const char *passfile, struct hpo_error *err)
{
    char app[96];
    char host[64];
    const char *keys[8];
    const char *vals[8];
    char msg[256];
    PGconn *conn;
    int n = 0;

    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "?");
    }
    host[sizeof(host) - 1] = '\0';
    snprintf(app, sizeof(app), "hpod %s pid %ld", host, (long)getpid());
    keys[n] = "dbname";
    vals[n++] = uri;
    keys[n] = "application_name";
    vals[n++] = app;
    keys[n] = "connect_timeout";
    vals[n++] = CONNECT_TIMEOUT;
    /* A pulled cable shows within about 20 s instead of the kernel's hours. */
    keys[n] = "keepalives_idle";
    vals[n++] = "10";
    keys[n] = "keepalives_interval";
    vals[n++] = "3";
    keys[n] = "keepalives_count";
    vals[n++] = "3";
    if (passfile != NULL) {
        keys[n] = "passfile";
        vals[n++] = passfile;
    }
    keys[n] = NULL;
    vals[n] = NULL;
    /* expand_dbname: the URI's own settings win over the keywords before it. */
    conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL, "connecting to PostgreSQL: %s",
                pq_message(conn, NULL, msg, sizeof(msg)));
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

/*
** Take the database's lock on this session: exclusive (hpod migrate) or
** shared (a daemon, one of several); -EBUSY names the holder.
*/
static int take_lock(PGconn *conn, bool exclusive, struct hpo_error *err)
{
    char holder_sql[512];
    char sql[96];
    PGresult *res;
    bool got;
    int r;

    snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock%s(%lld)", exclusive ? "" : "_shared",
            (long long)LOCK_KEY);
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        r = pq_error(conn, res, "taking the database's lock", err);
        PQclear(res);
        return r;
    }
    got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (got) {
        return 0;
    }
    /* A bigint key shows in pg_locks as classid (high half), objid (low half), objsubid 1. */
    snprintf(holder_sql, sizeof(holder_sql),
            "SELECT a.application_name, coalesce(host(a.client_addr), 'local') FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
            " AND l.granted AND l.database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) AND l.classid = %lld AND l.objid = %lld"
            " AND l.objsubid = 1",
            (long long)(LOCK_KEY >> 32), (long long)(LOCK_KEY & 0xffffffff));
    res = PQexec(conn, holder_sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) {
        r = hpo_error_set(err, -EBUSY, HPO_UNAVAILABLE, NULL,
                "the database is in use by another hpod ('%s' from %s): hpod migrate needs"
                " it alone, and daemons cannot start while it runs (its session holds"
                " pg_advisory_lock(%lld))",
                PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), (long long)LOCK_KEY);
    } else {
        r = hpo_error_set(err, -EBUSY, HPO_UNAVAILABLE, NULL,
                "the database is in use by another hpod: hpod migrate needs it alone (a session"
                " holds pg_advisory_lock(%lld))", (long long)LOCK_KEY);
    }
    PQclear(res);
    return r;
}

/* Bring the schema up to HPO_STORAGE_SCHEMA_VERSION, all in one transaction. */
static int migrate(PGconn *conn, struct hpo_error *err)
{
    char sql[96];
    PGresult *res;
    int version;
    int r;

    r = exec_ok(conn, "BEGIN", "starting a migration", err);
    if (r < 0) {
        return r;
    }
    /* Two processes opening a fresh database at once: one creates, the other waits. */
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%lld)",
            (long long)MIGRATE_LOCK_KEY);
    r = exec_ok(conn, sql, "locking for a migration", err);
    if (r == 0) {
        r = exec_ok(conn, "CREATE TABLE IF NOT EXISTS hpod_schema (version integer NOT NULL)",
                "creating hpod_schema", err);
    }
    if (r < 0) {
        goto fail;
    }
    res = PQexec(conn, "SELECT max(version) FROM hpod_schema");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        r = pq_error(conn, res, "reading the schema version", err);
        PQclear(res);
        goto fail;
    }
    version = PQgetisnull(res, 0, 0) ? 0 : (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (version < 0 || version > HPO_STORAGE_PG_SCHEMA_VERSION) {
        r = hpo_error_set(err, -EPROTONOSUPPORT, HPO_INTERNAL, NULL,
                "database schema version %d is not supported by this hpod (%d)", version,
                HPO_STORAGE_PG_SCHEMA_VERSION);
        goto fail;
    }
    for (int to = version + 1; to <= HPO_STORAGE_PG_SCHEMA_VERSION; to++) {
        r = exec_ok(conn, hpo__storage_migration_sql(to, true), "running a migration", err);
        if (r < 0) {
            goto fail;
        }
        snprintf(sql, sizeof(sql), "DELETE FROM hpod_schema; INSERT INTO hpod_schema VALUES (%d)",
                to);
        r = exec_ok(conn, sql, "setting the schema version", err);
        if (r < 0) {
            goto fail;
        }
    }
    return exec_ok(conn, "COMMIT", "committing a migration", err);

fail:
    (void)exec_ok(conn, "ROLLBACK", "rolling back", &(struct hpo_error){ 0 });
    return r;
}

static int prepare_all(PGconn *conn, struct hpo_error *err)
{
    for (int i = 0; i < N_STMTS; i++) {
        char name[8];
        PGresult *res;
        int r = 0;

        snprintf(name, sizeof(name), "h%d", i);
        res = PQprepare(conn, name, stmt_sql[i].sql, stmt_sql[i].n, stmt_sql[i].types);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            r = pq_error(conn, res, "preparing a statement", err);
        }
        PQclear(res);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

/*
** A daemon's row: a fresh id at each start (in `daemons`, with its batch
** marker), whose lock its writer session holds from then on.
*/
static int register_daemon(struct pg_storage *st, struct hpo_error *err)
{
    char sql[160];
    PGresult *res = PQexec(st->conn, "INSERT INTO daemons DEFAULT VALUES RETURNING id");
    int r = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        r = pq_error(st->conn, res, "registering this daemon", err);
        PQclear(res);
        return r;
    }
    st->daemon_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (st->daemon_id <= 0 || st->daemon_id > INT32_MAX) {
        return hpo_error_set(err, -ERANGE, HPO_INTERNAL, NULL, "daemon id %lld out of range",
                (long long)st->daemon_id);
    }
    snprintf(sql, sizeof(sql), "INSERT INTO hpod_batches VALUES (%lld, 0)",
            (long long)st->daemon_id);
    return exec_ok(st->conn, sql, "registering this daemon", err);
}

/* Take this daemon's own lock: alive for the others, and no old session of ours left. */
static int take_daemon_lock(struct pg_storage *st, struct hpo_error *err)
{
    char sql[96];
    PGresult *res;
    bool got;
    int r = 0;

    snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock(%d, %d)", HPO_PG_DAEMON_LOCK,
            (int)st->daemon_id);
    res = PQexec(st->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        r = pq_error(st->conn, res, "taking this daemon's lock", err);
        PQclear(res);
        return r;
    }
    got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!got) {
        r = hpo_error_set(err, -EBUSY, HPO_UNAVAILABLE, NULL,
                "an earlier session of this daemon is still open");
    }
    return r;
}

/* Connect the writer: lock, schema, statements. On failure no connection is kept. */
static int writer_connect(struct pg_storage *st, struct hpo_error *err)
{
    int r;

    disconnect(st);
    st->conn = connect_uri(st->uri, st->passfile, err);
    if (st->conn == NULL) {
        return err->code == HPO_UNAVAILABLE ? -EIO : -ENOMEM;
    }
    r = take_lock(st->conn, st->exclusive, err);
    if (r == 0) {
        char sql[64];

        /* Like SQLite's busy_timeout: a lock held elsewhere fails the batch (unavailable). */
        snprintf(sql, sizeof(sql), "SET lock_timeout = %d", st->lock_timeout_ms);
        r = exec_ok(st->conn, sql, "setting lock_timeout", err);
    }
    if (r == 0) {
        /*
        ** As SQLite's synchronous: normal survives a crash of the daemon
        ** (the commit is in the server) but not of the server or the machine
        ** (the last ~0.6 s; lost_commits() then notices); full waits for the
        ** WAL flush: in the COMMIT itself, or, pipelined, in the flusher
        ** before anything that depends on the commit goes out (pg-flush.c).
        */
        bool sync_on = st->synchronous_full && !st->pipelined;

        r = exec_ok(st->conn, sync_on ? "SET synchronous_commit = on"
                                      : "SET synchronous_commit = off",
                "setting synchronous_commit", err);
    }
    if (r == 0 && !st->exclusive) {
        /*
        ** A daemon frozen in the middle of sending a batch must not hold its
        ** studies' rows (FOR SHARE) and so block their takeover for ever.
        */
        r = exec_ok(st->conn, "SET idle_in_transaction_session_timeout = 10000",
                "setting idle_in_transaction_session_timeout", err);
    }
    if (r == 0) {
        r = migrate(st->conn, err);
    }
    if (r == 0 && !st->exclusive && st->daemon_id == 0) {
        r = register_daemon(st, err);
    }
    if (r == 0 && !st->exclusive) {
        r = take_daemon_lock(st, err);
    }
    if (r == 0) {
        r = prepare_all(st->conn, err);
    }
    if (r < 0) {
        disconnect(st);
    }
    return r;
}

/* Whether the connection is still there: reads what the server sent while idle. */
static bool conn_alive(PGconn *conn)
{
    if (conn == NULL) {
        return false;
    }
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE) {
        (void)PQconsumeInput(conn);
    }
    return PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE;
}

/*
** The database is unreachable: new writes fail at once, and writes queued
** behind a batch that is still settling (resolve) are woken to fail too.
*/
static void set_down(struct pg_storage *st)
{
    atomic_store(&st->down, true);
    pthread_mutex_lock(&st->lock);
    pthread_cond_broadcast(&st->done);
    pthread_mutex_unlock(&st->lock);
}

/* The batch marker: the id of the last group transaction that committed. */
static int read_marker(struct pg_storage *st, int64_t *ret, struct hpo_error *err)
{
    char sql[96];
    PGresult *res;
    int r = 0;

    if (st->exclusive) {
        snprintf(sql, sizeof(sql), "SELECT id FROM hpod_batch");
    } else {
        snprintf(sql, sizeof(sql), "SELECT id FROM hpod_batches WHERE daemon = %lld",
                (long long)st->daemon_id);
    }
    res = PQexec(st->conn, sql);

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        *ret = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    } else {
        r = pq_error(st->conn, res, "reading the batch marker", err);
    }
    PQclear(res);
    return r;
}

/*
** The database no longer holds a commit it acknowledged (with
** synchronous_commit off, a server crash loses the last few hundred ms):
** memory is ahead of the database, and only a fresh load is right.
*/
static _Noreturn void lost_commits(int64_t marker, int64_t want)
{
    fprintf(stderr,
            "<2>hpod: PostgreSQL lost group transactions it had committed (batch marker %lld,"
            " expected %lld: a server crash with synchronous_commit off?); exiting so the next"
            " start loads what the database holds\n",
            (long long)marker, (long long)want);
    _exit(75);
}

/* Reconnect now if the backoff allows; on failure the backoff doubles. */
static int try_reconnect(struct pg_storage *st, struct hpo_error *err)
{
    uint64_t now = mono_us();
    int r;

    if (now < st->next_try_us) {
        return hpo_error_set(err, -EAGAIN, HPO_UNAVAILABLE, NULL,
                "the database is unreachable (retrying)");
    }
    r = writer_connect(st, err);
    if (r == 0 && !st->resolving && st->committed_id != 0) {
        int64_t marker = 0;

        r = read_marker(st, &marker, err);
        if (r == 0 && marker != st->committed_id) {
            lost_commits(marker, st->committed_id);
        }
        if (r < 0) {
            disconnect(st);
        }
    }
    if (r < 0) {
        st->backoff_ms = st->backoff_ms == 0 ? BACKOFF_MIN_MS : st->backoff_ms * 2;
        if (st->backoff_ms > BACKOFF_MAX_MS) {
            st->backoff_ms = BACKOFF_MAX_MS;
        }
        st->next_try_us = mono_us() + (uint64_t)st->backoff_ms * 1000u;
        set_down(st);
        atomic_store(&st->healthy, false);
        if (err->code != HPO_UNAVAILABLE) {
            /* Another daemon took the lock, or the schema is wrong: still no writes. */
            err->code = HPO_UNAVAILABLE;
        }
        return r;
    }
    st->backoff_ms = 0;
    st->next_try_us = 0;
    atomic_store(&st->down, false);
    atomic_store(&st->healthy, true);
    return 0;
}

/* ---- fencing ------------------------------------------------------------ */

/* The epoch of the copy of `study_id` this process holds, 0 for none. */
static int64_t fence_epoch(struct pg_storage *st, int64_t study_id)
{
    int64_t e = 0;

    pthread_mutex_lock(&st->fence_lock);
    for (size_t i = 0; i < st->n_fences; i++) {
        if (st->fences[i].study_id == study_id) {
            e = st->fences[i].epoch;
            break;
        }
    }
    pthread_mutex_unlock(&st->fence_lock);
    return e;
}

static void pg_fence_set(struct hpo_storage *base, int64_t study_id, int64_t epoch)
{
    struct pg_storage *st = (struct pg_storage *)base;
    size_t i;

    if (st->exclusive) {
        return;
    }
    pthread_mutex_lock(&st->fence_lock);
    for (i = 0; i < st->n_fences && st->fences[i].study_id != study_id; i++) {
    }
    if (epoch == 0) {
        if (i < st->n_fences) {
            st->fences[i] = st->fences[--st->n_fences];
        }
    } else if (i < st->n_fences) {
        st->fences[i].epoch = epoch;
    } else {
        if (st->n_fences == st->fences_cap) {
            size_t cap = st->fences_cap ? st->fences_cap * 2 : 64;
            struct fence *f = realloc(st->fences, cap * sizeof(*f));

            if (f == NULL) {
                /* Not recorded: its writes are refused (503) until memory allows. */
                pthread_mutex_unlock(&st->fence_lock);
                return;
            }
            st->fences = f;
            st->fences_cap = cap;
        }
        st->fences[st->n_fences++] = (struct fence){ study_id, epoch };
    }
    pthread_mutex_unlock(&st->fence_lock);
}

/* ---- the group commit ---------------------------------------------------- */

static int reserve_sent(struct pg_storage *st, size_t n)
{
    struct sent *s;

    if (n > st->sent_fences_cap) {
        struct fence *f = realloc(st->sent_fences, n * sizeof(*f));

        if (f == NULL) {
            return -ENOMEM;
        }
        st->sent_fences = f;
        st->sent_fences_cap = n;
    }
    if (n <= st->sent_cap) {
        return 0;
    }
    s = realloc(st->sent, n * sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    st->sent = s;
    st->sent_cap = n;
    return 0;
}

static bool send_prepared(PGconn *conn, int stmt, const struct params *p)
{
    char name[8];

    snprintf(name, sizeof(name), "h%d", stmt);
    return PQsendQueryPrepared(conn, name, p->n, p->values, p->lengths, p->formats, 1) == 1;
}

enum outcome {
    COMMITTED,   /* every write not marked failed is stored */
    WRITE_FAILED, /* a write failed (marked); nothing is stored; send again without it */
    NOT_STORED,  /* nothing is stored; `err` says why (the connection, mostly) */
    UNKNOWN,     /* the connection broke after COMMIT may have reached the server */
};

/*
** Send the batch's writes not yet failed (w->result == 0) as one pipeline
** and read every answer.
*/
static enum outcome send_batch(struct pg_storage *st, struct hpo_write *batch, size_t n_ops,
        struct hpo_error *err)
{
    PGconn *conn = st->conn;
    struct params p;
    size_t n = 0;
    bool all_sent = false;
    bool write_failed = false;
    bool other_error = false;
    bool lost = false;
    bool aborted = false;
    size_t n_fenced = 0;
    enum outcome out;

    if (reserve_sent(st, 3 * n_ops + 4) < 0) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        return NOT_STORED;
    }
    if (PQenterPipelineMode(conn) != 1) {
        pq_error(conn, NULL, "entering pipeline mode", err);
        return NOT_STORED;
    }
    p.n = 0;
    if (PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 1) != 1) {
        goto send_failed;
    }
    st->sent[n++] = (struct sent){ NULL, 0 };
    if (st->batch_sync) {
        /* A lonely batch flushes itself: see choose_sync(). */
        if (PQsendQueryParams(conn, "SET LOCAL synchronous_commit = on", 0, NULL, NULL, NULL,
                    NULL, 1) != 1) {
            goto send_failed;
        }
        st->sent[n++] = (struct sent){ NULL, 0 };
    }
    put_i64(&p, st->batch_id);
    if (!st->exclusive) {
        put_i64(&p, st->daemon_id);
    }
    if (!send_prepared(conn, st->exclusive ? S_MARKER : S_MARKER_D, &p)) {
        goto send_failed;
    }
    st->sent[n++] = (struct sent){ NULL, 0 };
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        if (w->result < 0) {
            continue;
        }
        if (!st->exclusive && w->n_ops > 0 && w->ops[0].kind != HPO_OP_STUDY_PUT) {
            /* The fence first: the study must still be ours at the epoch we loaded it. */
            int64_t epoch = w->epoch != 0 ? w->epoch : fence_epoch(st, w->ops[0].study_id);
            size_t f = 0;

            if (epoch == 0) {
                w->result = hpo_error_set(&w->err, -ESTALE, HPO_UNAVAILABLE, NULL,
                        "this daemon no longer owns the study; retry");
                write_failed = true;
                goto abort_pipeline;
            }
            /*
            ** Once per study and epoch in a transaction: the row stays locked
            ** to its end, so the check holds for the study's later writes.
            */
            while (f < n_fenced && (st->sent_fences[f].study_id != w->ops[0].study_id ||
                                           st->sent_fences[f].epoch != epoch)) {
                f++;
            }
            if (f == n_fenced) {
                st->sent_fences[n_fenced++] = (struct fence){ w->ops[0].study_id, epoch };
                p.n = 0;
                put_i64(&p, w->ops[0].study_id);
                put_i64(&p, st->daemon_id);
                put_i64(&p, epoch);
                if (!send_prepared(conn, S_FENCE, &p)) {
                    goto send_failed;
                }
                st->sent[n++] = (struct sent){ w, 0 };
            }
        }
        for (size_t i = 0; i < w->n_ops; i++) {
            int stmt = 0;
            int r = encode_op(st, &w->ops[i], &stmt, &p, &w->err);

            if (r < 0) {
                /* Fails before anything of it is sent: this write alone. */
                w->result = r;
                write_failed = true;
                goto abort_pipeline;
            }
            if (!send_prepared(conn, stmt, &p)) {
                goto send_failed;
            }
            st->sent[n++] = (struct sent){ w, i };
            if (!st->exclusive && w->ops[i].kind == HPO_OP_STUDY_PUT) {
                /* A new study is its creator's, at epoch 1. */
                p.n = 0;
                put_i64(&p, w->ops[i].study_id);
                put_i64(&p, st->daemon_id);
                if (!send_prepared(conn, S_OWNER_NEW, &p)) {
                    goto send_failed;
                }
                st->sent[n++] = (struct sent){ w, i };
            }
        }
    }
    if (PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 1) != 1) {
        goto send_failed;
    }
    st->sent[n++] = (struct sent){ NULL, 0 };
    all_sent = true;
abort_pipeline:
    if (PQpipelineSync(conn) != 1) {
        goto send_failed;
    }
    /* Every statement's answer: a result, then NULL; then the Sync's. */
    for (size_t k = 0; k < n && !lost; k++) {
        PGresult *res = PQgetResult(conn);
        ExecStatusType s;

        if (res == NULL) {
            lost = true;
            break;
        }
        s = PQresultStatus(res);
        if (s == PGRES_FATAL_ERROR) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            bool is_commit = all_sent && k == n - 1;
            struct hpo_write *w = st->sent[k].w;

            /*
            ** The server failed a statement before COMMIT: the transaction
            ** is aborted and cannot commit, even if the session dies now.
            */
            if (!is_commit && state != NULL) {
                aborted = true;
            }
            if (PQstatus(conn) != CONNECTION_OK || state == NULL) {
                lost = true;
                if (!other_error) {
                    other_error = true;
                    pq_error(conn, res, "writing", err);
                }
            } else if (w != NULL && w->result == 0) {
                char what[48];
                struct hpo_error e;
                int r;

                snprintf(what, sizeof(what), "writing (op %zu)", st->sent[k].op);
                hpo_error_clear(&e);
                r = pq_error(conn, res, what, &e);
                if (r == -ESTALE) {
                    /* Fenced: this write alone (its study changed owner). */
                    w->result = r;
                    w->err = e;
                    write_failed = true;
                } else if (e.code == HPO_UNAVAILABLE) {
                    /* Not this write's fault (a lock timeout, a shutdown): the batch fails. */
                    if (!other_error) {
                        other_error = true;
                        *err = e;
                    }
                } else {
                    w->result = r;
                    w->err = e;
                    write_failed = true;
                }
            } else if (!other_error) {
                other_error = true;
                pq_error(conn, res, is_commit ? "committing" : "starting a batch", err);
            }
        } else if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK &&
                s != PGRES_PIPELINE_ABORTED) {
            if (!other_error) {
                other_error = true;
                pq_error(conn, res, "writing", err);
            }
        }
        PQclear(res);
        res = PQgetResult(conn);
        if (res != NULL) {
            /* More than one result for a statement: not what we sent. */
            PQclear(res);
            lost = true;
        }
    }
    if (!lost) {
        PGresult *res = PQgetResult(conn);

        if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
            lost = true;
        }
        PQclear(res);
    }
    if (lost || PQstatus(conn) != CONNECTION_OK) {
        goto broken;
    }
    (void)PQexitPipelineMode(conn);
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
        /* An aborted transaction (a failed write): end it. */
        (void)exec_ok(conn, "ROLLBACK", "rolling back", &(struct hpo_error){ 0 });
    }
    if (write_failed && !other_error) {
        return WRITE_FAILED;
    }
    if (other_error || !all_sent) {
        if (!other_error) {
            hpo_error_set(err, -EIO, HPO_INTERNAL, NULL, "batch not committed");
        }
        return NOT_STORED;
    }
    return COMMITTED;

send_failed:
    pq_error(conn, NULL, "sending a batch", err);
broken:
    /*
    ** Once COMMIT was handed to libpq it may have reached the server and
    ** committed, answer lost; before that, the server rolls the transaction
    ** back when the session ends.
    */
    out = all_sent && !aborted ? UNKNOWN : NOT_STORED;
    if (err->code == HPO_OK) {
        hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL, "the connection to PostgreSQL broke");
    }
    disconnect(st);
    set_down(st);
    return out;
}

/*
** After a lost COMMIT answer: reconnect (taking the lock again, which waits
** out the old session) and read the batch marker. Returns true if the batch
** committed. Exits the process when the answer cannot be had in time.
*/
static bool resolve(struct pg_storage *st)
{
    uint64_t deadline = mono_us() + (uint64_t)RESOLVE_MAX_S * 1000000u;
    unsigned sleep_ms = BACKOFF_MIN_MS;

    for (;;) {
        struct hpo_error e = { 0 };
        int64_t marker = 0;

        st->next_try_us = 0;
        st->resolving = true;
        if (try_reconnect(st, &e) == 0 && read_marker(st, &marker, &e) == 0) {
            st->resolving = false;
            atomic_store(&st->stalled, false);
            if (marker == st->batch_id) {
                return true;
            }
            if (st->committed_id != 0 && marker != st->committed_id) {
                lost_commits(marker, st->committed_id);
            }
            return false;
        }
        st->resolving = false;
        atomic_store(&st->stalled, true);
        disconnect(st);
        if (mono_us() > deadline) {
            fprintf(stderr,
                    "<2>hpod: the outcome of a group transaction is unknown: PostgreSQL"
                    " unreachable for %d s after its COMMIT was sent; exiting so the next"
                    " start loads what the database holds (%s)\n",
                    RESOLVE_MAX_S, e.message);
            _exit(75);
        }
        atomic_fetch_add(&st->ticks, 1);
        usleep(sleep_ms * 1000u);
        sleep_ms = sleep_ms * 2 > 1000 ? 1000 : sleep_ms * 2;
    }
}

static void fail_all(struct hpo_write *batch, int r, const struct hpo_error *err)
{
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        if (w->result == 0) {
            w->result = r;
            w->err = *err;
        }
    }
}

/* Writes refused by fencing: forget their studies, and tell the cluster. */
static void note_fenced(struct pg_storage *st, struct hpo_write *batch)
{
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        if (w->result == -ESTALE && w->n_ops > 0) {
            int64_t id = w->ops[0].study_id;

            atomic_fetch_add(&st->fenced, 1);
            pg_fence_set(&st->base, id, 0);
            if (st->on_fenced != NULL) {
                st->on_fenced(st->fenced_ctx, id);
            }
        }
    }
}

static bool run_batch_inner(struct pg_storage *st, struct hpo_write *batch);

/*
** Pipelined: whether the next batch should commit synchronously instead.
** When every commit so far is flushed, the last flush covered one commit
** alone, and no batch ended within LONELY_US, the writes are sparse (one
** client, say): nothing would commit while this batch's flush ran, so
** pipelining it would only add the flush session's round trip and thread
** hops to its reply. (Several clients waiting for one flush come back
** together after it: their first batch finds everything flushed and a
** gap, but that flush covered several commits.) A synchronous commit of a batch
** that wrote flushes the WAL up to its own commit record, so it counts as
** a flush of every earlier commit too. Under load batches follow each
** other within microseconds and stay asynchronous; a wrong guess costs one
** flush of waiting for the writes queued behind that batch.
*/
static bool choose_sync(struct pg_storage *st)
{
    return st->flush != NULL && hpo__pg_flush_idle(st->flush) &&
            mono_us() - st->last_batch_us > LONELY_US;
}

/*
** Before each send of the batch, in queue order: a pipelined write that
** failed fails its chain, and a write whose chain failed before it (in an
** earlier batch, or earlier in this one) fails without being sent, so
** write k+1 of a study copy never commits without write k. Returns whether
** a write is left to send. Writes before a failed one stay: they are sent
** again without it.
*/
static bool fail_dependents(struct hpo_write *batch)
{
    bool any = false;

    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        if (w->result < 0) {
            if (w->aseq != 0) {
                hpo__chain_fail(w->chain, w->aseq, &w->err);
            }
        } else if (w->chain != NULL && atomic_load(&w->chain->failed) != 0) {
            w->result = hpo__write_dependent_failure(w);
        } else {
            any = true;
        }
    }
    return any;
}

/* Run a batch; true if it committed (some of its writes succeeded). */
static bool run_batch(struct pg_storage *st, struct hpo_write *batch)
{
    bool committed = run_batch_inner(st, batch);

    /* A batch that failed whole fails the chains of its pipelined writes. */
    (void)fail_dependents(batch);
    if (!st->exclusive) {
        note_fenced(st, batch);
    }
    return committed;
}

static bool run_batch_inner(struct pg_storage *st, struct hpo_write *batch)
{
    struct hpo_error err = { 0 };
    uint64_t t0 = mono_us();
    size_t n_ops = 0;
    uint64_t n = 0, ok = 0;

    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        w->result = 0;
        n_ops += w->n_ops;
        n++;
    }
    if (!conn_alive(st->conn) && try_reconnect(st, &err) < 0) {
        fail_all(batch, -EAGAIN, &err);
        goto failed;
    }
    for (;;) {
        enum outcome out;

        if (!fail_dependents(batch)) {
            /*
            ** Every write failed on its own or depends on one that did:
            ** nothing was committed, nothing is wrong.
            */
            atomic_store(&st->healthy, true);
            return false;
        }
        st->batch_id++;
        hpo_error_clear(&err);
        out = send_batch(st, batch, n_ops, &err);
        if (out == WRITE_FAILED) {
            continue;
        }
        if (out == UNKNOWN) {
            /* Committed or not, whether it was flushed is unknown: the flushers see to it. */
            st->batch_sync = false;
        }
        if (out == UNKNOWN && resolve(st)) {
            out = COMMITTED;
        }
        if (out == COMMITTED) {
            st->committed_id = st->batch_id;
            break;
        }
        if (out == UNKNOWN) {
            hpo_error_set(&err, -EIO, HPO_UNAVAILABLE, NULL,
                    "the connection to PostgreSQL broke; the batch was not committed");
        }
        if (err.code != HPO_UNAVAILABLE && err.code != HPO_INTERNAL) {
            err.code = HPO_UNAVAILABLE;
        }
        fail_all(batch, err.code == HPO_UNAVAILABLE ? -EAGAIN : -EIO, &err);
        atomic_fetch_add(&st->failed_batches, 1);
        /*
        ** Unhealthy until a commit, except a batch whose lost COMMIT answer
        ** resolve() settled as not committed: the marker was read on a new
        ** session, so the database serves again and the writer has nothing
        ** to reconnect; /healthz must not wait for a write that may not come.
        */
        atomic_store(&st->healthy, out == UNKNOWN);
        return false;
    }
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        ok += w->result == 0;
    }
    hpo_hist_observe(&st->commit_us, mono_us() - t0);
    hpo_hist_observe(&st->batch_writes, n);
    atomic_fetch_add(&st->commits, 1);
    atomic_fetch_add(&st->writes, ok);
    atomic_store(&st->healthy, true);
    return true;

failed:
    atomic_fetch_add(&st->failed_batches, 1);
    atomic_store(&st->healthy, false);
    return false;
}

/*
** Run the queued writes as one batch (called with `lock` held, !busy, a
** non-empty queue; returns with it held). Whoever finds the writer role free
** takes it: a caller of pg_write with its write queued (no thread hop on
** the way to the database and back, as in sqlite.c), or the writer thread.
*/
static void lead_batch(struct pg_storage *st)
{
    struct hpo_write *batch = st->head;
    struct hpo_write *next, *copies = NULL;
    uint64_t seq = 0, resolved = 0;

    st->busy = true;
    st->head = NULL;
    st->tail = &st->head;
    pthread_mutex_unlock(&st->lock);
    st->batch_sync = choose_sync(st);
    if (run_batch(st, batch) && st->flush != NULL) {
        /* Noted before its callers wake: a ticket any of them takes covers it. */
        seq = hpo__pg_flush_committed(st->flush, st->committed_id, st->batch_sync);
    }
    st->last_batch_us = mono_us();
    pthread_mutex_lock(&st->lock);
    for (struct hpo_write *w = batch; w != NULL; w = next) {
        next = w->next;
        w->next = NULL;
        if (w->aseq != 0) {
            /* Pipelined: nobody waits; numbers resolve in order, as the queue. */
            resolved = w->aseq;
            if (w->result < 0) {
                atomic_store(&st->last_failed, w->aseq);
            }
            w->next = copies;
            copies = w;
            continue;
        }
        w->seq = w->result == 0 ? seq : 0;
        w->done = true;
    }
    st->busy = false;
    /* A batch that ended is progress for the watchdog, whoever led it (as in sqlite.c). */
    atomic_fetch_add(&st->ticks, 1);
    /* Wakes this batch's callers, and those of writes queued meanwhile: one of them leads. */
    pthread_cond_broadcast(&st->done);
    if (st->head != NULL) {
        /* Pipelined writes queued meanwhile have no caller to lead them: the writer does. */
        pthread_cond_signal(&st->wake);
    }
    if (copies == NULL) {
        return;
    }
    /* Published after the batch's commit was noted for the flush: a ticket taken now covers it. */
    atomic_store(&st->resolved, resolved);
    pthread_mutex_unlock(&st->lock);
    for (struct hpo_write *w = copies; w != NULL; w = next) {
        next = w->next;
        hpo__chain_resolve(w->chain);
        hpo__write_copy_free(w);
    }
    /* The dispatcher's held replies (storage.h). */
    pthread_mutex_lock(&st->cb_lock);
    if (st->on_flush != NULL) {
        st->on_flush(st->on_flush_arg);
    }
    pthread_mutex_unlock(&st->cb_lock);
    pthread_mutex_lock(&st->lock);
}

/*
** The writer thread: reconnects while the database is down, leads a batch
** nobody else took, and ticks while no batch is stuck (for the watchdog).
*/
static void *writer_main(void *arg)
{
    struct pg_storage *st = arg;

    pthread_mutex_lock(&st->lock);
    for (;;) {
        if (!st->busy) {
            atomic_fetch_add(&st->ticks, 1);
        }
        if (!st->busy && st->head != NULL) {
            lead_batch(st);
            continue;
        }
        if (st->stopping && st->head == NULL && !st->busy) {
            break;
        }
        if (!st->busy && atomic_load(&st->down) && mono_us() >= st->next_try_us) {
            struct hpo_error e = { 0 };

            st->busy = true;
            pthread_mutex_unlock(&st->lock);
            (void)try_reconnect(st, &e);
            pthread_mutex_lock(&st->lock);
            st->busy = false;
            pthread_cond_broadcast(&st->done);
            continue;
        }
        if (!st->busy && !st->exclusive && !atomic_load(&st->down) && st->conn != NULL &&
                mono_us() >= st->next_check_us) {
            /*
            ** Several daemons: a session the server ended while idle (it
            ** restarted) is noticed here, not at the next write: without it
            ** this daemon's lock is gone and the others take its studies.
            */
            struct hpo_error e = { 0 };

            st->next_check_us = mono_us() + (uint64_t)IDLE_TICK_MS * 1000u;
            st->busy = true;
            pthread_mutex_unlock(&st->lock);
            if (!conn_alive(st->conn)) {
                (void)try_reconnect(st, &e);
            }
            pthread_mutex_lock(&st->lock);
            st->busy = false;
            pthread_cond_broadcast(&st->done);
            continue;
        }
        {
            struct timespec ts;
            long ms = IDLE_TICK_MS;

            if (atomic_load(&st->down)) {
                uint64_t now = mono_us();
                uint64_t wait = st->next_try_us > now ? (st->next_try_us - now) / 1000 : 0;
                ms = wait < (uint64_t)ms ? (long)wait + 1 : ms;
            }
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += ms * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            (void)pthread_cond_timedwait(&st->wake, &st->lock, &ts);
        }
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* ---- the public functions ------------------------------------------------ */

static int pg_start(struct hpo_storage *base)
{
    struct pg_storage *st = (struct pg_storage *)base;

    if (st->flush != NULL) {
        int r = hpo__pg_flush_start(st->flush);

        if (r < 0) {
            return r;
        }
    }
    return hpo__writer_start(&st->lock, &st->started, &st->thread, writer_main, st);
}

/* Take a write off the queue if no leader took it yet (with `lock` held). */
static bool unqueue(struct pg_storage *st, struct hpo_write *w)
{
    for (struct hpo_write **p = &st->head; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            if (st->tail == &w->next) {
                st->tail = p;
            }
            w->next = NULL;
            return true;
        }
    }
    return false;
}

/*
** Queue a copy of `w` for the writer thread (storage.h): true, or false to
** write it as usual (it may not be pipelined, or the database is down and
** the usual path refuses it at once). The copy carries the fencing epoch
** its study holds now, as `w` would have when sent.
*/
static bool pipeline_write(struct pg_storage *st, struct hpo_write *w)
{
    struct hpo_write *c;

    if (st->exclusive || atomic_load(&st->down)) {
        return false;
    }
    c = hpo__write_copy(w);
    if (c == NULL) {
        return false;
    }
    if (c->epoch == 0 && c->n_ops > 0 && c->ops[0].kind != HPO_OP_STUDY_PUT) {
        c->epoch = fence_epoch(st, c->ops[0].study_id);
        if (c->epoch == 0) {
            /* Not ours: the usual path refuses it. */
            hpo__write_copy_free(c);
            return false;
        }
    }
    pthread_mutex_lock(&st->lock);
    if (!st->started || st->stopping || atomic_load(&st->down)) {
        pthread_mutex_unlock(&st->lock);
        hpo__write_copy_free(c);
        return false;
    }
    hpo__write_accept(w, c, &st->accepted, &st->tail);
    if (!st->busy) {
        pthread_cond_signal(&st->wake);
    }
    pthread_mutex_unlock(&st->lock);
    return true;
}

static int pg_write(struct hpo_storage *base, struct hpo_write *w, struct hpo_error *err)
{
    struct pg_storage *st = (struct pg_storage *)base;

    w->aseq = 0;
    if (hpo__pipeline && w->chain != NULL && pipeline_write(st, w)) {
        return 0;
    }
    hpo__write_reset(w);
    pthread_mutex_lock(&st->lock);
    if (!st->started || st->stopping || atomic_load(&st->down)) {
        pthread_mutex_unlock(&st->lock);
        if (atomic_load(&st->down)) {
            w->result = hpo_error_set(&w->err, -EAGAIN, HPO_UNAVAILABLE, NULL,
                    "the database is unreachable");
        } else {
            w->result = hpo_error_set(&w->err, -ESHUTDOWN, HPO_UNAVAILABLE, NULL,
                    "the storage writer is not running");
        }
        w->done = true;
        if (err != NULL) {
            *err = w->err;
        }
        return w->result;
    }
    *st->tail = w;
    st->tail = &w->next;
    st->waiters++;
    while (!w->done) {
        if (atomic_load(&st->down) && unqueue(st, w)) {
            w->result = hpo_error_set(&w->err, -EAGAIN, HPO_UNAVAILABLE, NULL,
                    "the database is unreachable");
            w->done = true;
        } else if (!st->busy && st->head != NULL) {
            lead_batch(st);
        } else {
            pthread_cond_wait(&st->done, &st->lock);
        }
    }
    if (w->seq != 0 && !hpo__defer_flush) {
        /* Committed; durable once a flush that started after the commit succeeded. */
        pthread_mutex_unlock(&st->lock);
        hpo__pg_flush_wait(st->flush, w->seq);
        pthread_mutex_lock(&st->lock);
    }
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

static bool pg_healthy(struct hpo_storage *base)
{
    struct pg_storage *st = (struct pg_storage *)base;

    return atomic_load(&st->healthy) && !atomic_load(&st->down) &&
            (st->flush == NULL || hpo__pg_flush_healthy(st->flush));
}

static bool pg_stalled(struct hpo_storage *base)
{
    return atomic_load(&((struct pg_storage *)base)->stalled);
}

static uint64_t pg_ticks(struct hpo_storage *base)
{
    return atomic_load(&((struct pg_storage *)base)->ticks);
}

static void pg_stats(struct hpo_storage *base, uint64_t *ret_commits, uint64_t *ret_writes)
{
    struct pg_storage *st = (struct pg_storage *)base;

    if (ret_commits != NULL) {
        *ret_commits = atomic_load(&st->commits);
    }
    if (ret_writes != NULL) {
        *ret_writes = atomic_load(&st->writes);
    }
}

static void pg_metrics(struct hpo_storage *base, const struct hpo_hist **ret_commit_us,
        const struct hpo_hist **ret_batch_writes, uint64_t *ret_failed)
{
    struct pg_storage *st = (struct pg_storage *)base;

    *ret_commit_us = &st->commit_us;
    *ret_batch_writes = &st->batch_writes;
    *ret_failed = atomic_load(&st->failed_batches);
}

static void destroy(struct pg_storage *st)
{
    hpo__pg_flush_destroy(st->flush);
    disconnect(st);
    PQfinish(st->aux);
    pthread_mutex_destroy(&st->aux_lock);
    pthread_mutex_destroy(&st->cb_lock);
    pthread_mutex_destroy(&st->fence_lock);
    free(st->fences);
    pthread_cond_destroy(&st->done);
    pthread_cond_destroy(&st->wake);
    pthread_mutex_destroy(&st->lock);
    free(st->sent);
    free(st->sent_fences);
    free(st->buf);
    free(st->passfile);
    free(st->uri);
    free(st);
}

static void pg_close(struct hpo_storage *base)
{
    struct pg_storage *st = (struct pg_storage *)base;
    bool started;

    pthread_mutex_lock(&st->lock);
    started = st->started;
    st->stopping = true;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    if (started) {
        pthread_join(st->thread, NULL);
    }
    /* No commit comes any more: the flushers flush the last ones and stop. */
    hpo__pg_flush_stop(st->flush);
    pthread_mutex_lock(&st->lock);
    while (st->waiters > 0) {
        pthread_cond_wait(&st->done, &st->lock);
    }
    pthread_mutex_unlock(&st->lock);
    destroy(st);
}

/* ---- load ---------------------------------------------------------------- */

static int64_t col_i64(const PGresult *res, int c)
{
    uint64_t v;

    memcpy(&v, PQgetvalue(res, 0, c), 8);
    return (int64_t)be64toh(v);
}

static int32_t col_i32(const PGresult *res, int c)
{
    uint32_t v;

    memcpy(&v, PQgetvalue(res, 0, c), 4);
    return (int32_t)be32toh(v);
}

static double col_f64(const PGresult *res, int c)
{
    uint64_t v;
    double d;

    if (PQgetisnull(res, 0, c)) {
        return NAN;
    }
    memcpy(&v, PQgetvalue(res, 0, c), 8);
    v = be64toh(v);
    memcpy(&d, &v, 8);
    return d;
}

static const char *col_text(const PGresult *res, int c)
{
    return PQgetisnull(res, 0, c) ? NULL : PQgetvalue(res, 0, c);
}

struct load_ctx {
    struct pg_storage *st;
    PGconn *conn;
    const struct hpo_load_callbacks *cb;
    void *ctx;
    double *vec;
    size_t vec_cap;
};

static int load_row(struct load_ctx *L, int table, const PGresult *res, struct hpo_error *err)
{
    const struct hpo_load_callbacks *cb = L->cb;

    switch (table) {
    case 0: {
        int len = PQgetisnull(res, 0, 4) ? 0 : PQgetlength(res, 0, 4);

        return cb->study(L->ctx, col_i64(res, 0), col_text(res, 1), col_text(res, 2),
                col_i64(res, 3), len > 0 ? PQgetvalue(res, 0, 4) : NULL, (size_t)len);
    }
    case 1: {
        struct hpo_trial_row row = {
            .state = col_i32(res, 2),
            .value = col_f64(res, 3),
            .worker = col_text(res, 4),
            .retry_of = col_i64(res, 5),
            .retries = col_i64(res, 6),
            .created_at = col_i64(res, 7),
            .started_at = col_i64(res, 8),
            .completed_at = col_i64(res, 9),
            .heartbeat_at = col_i64(res, 10),
            .results = col_text(res, 11),
        };
        return cb->trial(L->ctx, col_i64(res, 0), col_i64(res, 1), &row);
    }
    case 2:
        if (!PQgetisnull(res, 0, 4)) {
            size_t bytes = (size_t)PQgetlength(res, 0, 4);
            size_t len = bytes / sizeof(double);

            if (bytes % sizeof(double) != 0) {
                return hpo_error_set(err, -EBADMSG, HPO_INTERNAL, NULL,
                        "loading params: vector of %zu bytes", bytes);
            }
            if (len + 1 > L->vec_cap) {
                double *v = realloc(L->vec, (len + 1) * sizeof(double));
                if (v == NULL) {
                    return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
                }
                L->vec = v;
                L->vec_cap = len + 1;
            }
            if (bytes > 0) {
                memcpy(L->vec, PQgetvalue(res, 0, 4), bytes);
            }
            hpo__storage_le_doubles(L->vec, len);
            return cb->param(L->ctx, col_i64(res, 0), col_i64(res, 1), col_i64(res, 2), NAN,
                    L->vec, len);
        }
        return cb->param(L->ctx, col_i64(res, 0), col_i64(res, 1), col_i64(res, 2),
                col_f64(res, 3), NULL, 0);
    case 3:
        return cb->report(L->ctx, col_i64(res, 0), col_i64(res, 1), col_i64(res, 2),
                col_f64(res, 3));
    default:
        return cb->attr(L->ctx, col_i64(res, 0), col_i64(res, 1), col_text(res, 2),
                col_text(res, 3));
    }
}

/* One table, row by row (single-row mode: a big table is never held whole). */
static int load_table(struct load_ctx *L, int table, const char *sql, const char *name,
        struct hpo_error *err)
{
    PGconn *conn = L->conn;
    PGresult *res;
    int r = 0;

    if (PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1) != 1 ||
            PQsetSingleRowMode(conn) != 1) {
        return pq_error(conn, NULL, "loading", err);
    }
    while ((res = PQgetResult(conn)) != NULL) {
        ExecStatusType s = PQresultStatus(res);

        if (r == 0 && s == PGRES_SINGLE_TUPLE) {
            int rc = load_row(L, table, res, err);

            if (rc < 0) {
                r = err->code != HPO_OK ? rc
                                        : hpo_error_set(err, rc, HPO_INTERNAL, NULL,
                                                  "loading %s: callback failed (%d)", name, rc);
            }
        } else if (r == 0 && s != PGRES_TUPLES_OK && s != PGRES_SINGLE_TUPLE) {
            char what[64];

            snprintf(what, sizeof(what), "loading %s", name);
            r = pq_error(conn, res, what, err);
        }
        PQclear(res);
    }
    return r;
}

/*
** Every table in the callbacks' orders on `conn`, in one read transaction:
** every study, or (name != NULL) only the one of that name.
*/
static int load_on(PGconn *conn, struct pg_storage *st, const char *name,
        const struct hpo_load_callbacks *cb, void *ctx, struct hpo_error *err)
{
    static const struct {
        const char *sql;
        const char *name;
    } tables[] = {
        { "SELECT id, name, spec, created_at, sampler_state FROM studies ORDER BY id",
            "studies" },
        { "SELECT study_id, number, state, value, worker, retry_of, retries, created_at,"
          " started_at, completed_at, heartbeat_at, results FROM trials"
          " ORDER BY study_id, number",
            "trials" },
        { "SELECT study_id, number, idx, value, vec FROM params ORDER BY study_id, number, idx",
            "params" },
        { "SELECT study_id, number, step, value FROM intermediate"
          " ORDER BY study_id, number, step",
            "intermediate values" },
        { "SELECT study_id, number, key, value FROM trial_attrs"
          " ORDER BY study_id, number, key COLLATE \"C\"",
            "user attrs" },
    };
    struct load_ctx L = { .st = st, .cb = cb, .ctx = ctx, .conn = conn };
    char *quoted = NULL;
    int r;

    if (name != NULL) {
        quoted = PQescapeLiteral(conn, name, strlen(name));
        if (quoted == NULL) {
            return pq_error(conn, NULL, "loading a study", err);
        }
    }
    r = exec_ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            "starting a read transaction", err);
    for (int i = 0; r == 0 && i < 5; i++) {
        const bool want[] = { cb->study != NULL, cb->trial != NULL, cb->param != NULL,
            cb->report != NULL, cb->attr != NULL };
        char *sql = (char *)tables[i].sql;

        if (!want[i]) {
            continue;
        }
        if (quoted != NULL) {
            /* The same query, narrowed to the study: "... FROM t ORDER BY" gets a WHERE. */
            const char *order = strstr(tables[i].sql, " ORDER BY");
            size_t len = strlen(tables[i].sql) + strlen(quoted) + 96;

            sql = malloc(len);
            if (sql == NULL) {
                r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
                break;
            }
            snprintf(sql, len, "%.*s WHERE %s = (SELECT id FROM studies WHERE name = %s)%s",
                    (int)(order - tables[i].sql), tables[i].sql, i == 0 ? "id" : "study_id",
                    quoted, order);
        }
        r = load_table(&L, i, sql, tables[i].name, err);
        if (sql != tables[i].sql) {
            free(sql);
        }
    }
    if (r == 0) {
        r = exec_ok(conn, "COMMIT", "ending a read transaction", err);
    } else {
        (void)exec_ok(conn, "ROLLBACK", "rolling back", &(struct hpo_error){ 0 });
    }
    PQfreemem(quoted);
    free(L.vec);
    return r;
}

static int pg_load(struct hpo_storage *base, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    struct pg_storage *st = (struct pg_storage *)base;

    if (st->started) {
        return hpo_error_set(err, -EBUSY, HPO_INTERNAL, NULL,
                "storage load after the writer started");
    }
    if (!st->exclusive) {
        /* One of several daemons: studies are loaded when this one comes to own them. */
        return 0;
    }
    return load_on(st->conn, st, NULL, cb, ctx, err);
}

/* The aux connection (under aux_lock), made again when broken. */
static PGconn *aux_conn(struct pg_storage *st, struct hpo_error *err)
{
    /*
    ** A session the server ended meanwhile (a restart) is found by an empty
    ** query (one round trip; loads and new studies are rare), not by the
    ** load, which could not simply start again once its callbacks ran.
    */
    if (st->aux != NULL) {
        PGresult *res = PQexec(st->aux, "");

        if (PQresultStatus(res) != PGRES_EMPTY_QUERY || !conn_alive(st->aux)) {
            PQfinish(st->aux);
            st->aux = NULL;
        }
        PQclear(res);
    }
    if (st->aux == NULL) {
        char sql[64];

        st->aux = connect_uri(st->uri, st->passfile, err);
        /*
        ** As the writer's: a study reloaded after its pipelined write failed
        ** (a lock held elsewhere) must not wait for ever on the same lock.
        */
        snprintf(sql, sizeof(sql), "SET lock_timeout = %d", st->lock_timeout_ms);
        if (st->aux != NULL && exec_ok(st->aux, sql, "setting lock_timeout", err) < 0) {
            PQfinish(st->aux);
            st->aux = NULL;
        }
    }
    return st->aux;
}

static int pg_load_study(struct hpo_storage *base, const char *name,
        const struct hpo_load_callbacks *cb, void *ctx, struct hpo_error *err)
{
    struct pg_storage *st = (struct pg_storage *)base;
    PGconn *conn;
    int r;

    if (st->exclusive) {
        return -ENOTSUP;
    }
    if (atomic_load(&st->down)) {
        /* 503 at once, as a write: no connection attempt to wait for. */
        return hpo_error_set(err, -EAGAIN, HPO_UNAVAILABLE, NULL, "the database is unreachable");
    }
    pthread_mutex_lock(&st->aux_lock);
    conn = aux_conn(st, err);
    r = conn != NULL ? load_on(conn, st, name, cb, ctx, err) : -EIO;
    pthread_mutex_unlock(&st->aux_lock);
    return r;
}

static int pg_new_study_id(struct hpo_storage *base, int64_t *ret_id, struct hpo_error *err)
{
    struct pg_storage *st = (struct pg_storage *)base;
    PGconn *conn;
    PGresult *res;
    int r = 0;

    if (st->exclusive) {
        return -ENOTSUP;
    }
    pthread_mutex_lock(&st->aux_lock);
    conn = aux_conn(st, err);
    if (conn == NULL) {
        pthread_mutex_unlock(&st->aux_lock);
        return -EIO;
    }
    /* Past any id `hpod migrate` copied in without the sequence. */
    res = PQexec(conn, "SELECT setval('hpod_study_ids', greatest(nextval('hpod_study_ids'),"
                       " (SELECT coalesce(max(id), 0) + 1 FROM studies)))");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        *ret_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    } else {
        r = pq_error(conn, res, "numbering a study", err);
    }
    PQclear(res);
    pthread_mutex_unlock(&st->aux_lock);
    return r;
}

static uint64_t pg_flush_ticket(struct hpo_storage *base)
{
    struct pg_storage *st = (struct pg_storage *)base;

    return st->flush != NULL ? hpo__pg_flush_ticket(st->flush) : 0;
}

static bool pg_flushed(struct hpo_storage *base, uint64_t ticket)
{
    struct pg_storage *st = (struct pg_storage *)base;

    return st->flush == NULL || hpo__pg_flushed(st->flush, ticket);
}

static void pg_on_flush(struct hpo_storage *base, void (*fn)(void *arg), void *arg)
{
    struct pg_storage *st = (struct pg_storage *)base;

    if (st->flush != NULL) {
        hpo__pg_flush_on_flush(st->flush, fn, arg);
    }
    /* After each group transaction that held pipelined writes (lead_batch). */
    pthread_mutex_lock(&st->cb_lock);
    st->on_flush = fn;
    st->on_flush_arg = arg;
    pthread_mutex_unlock(&st->cb_lock);
}

static uint64_t pg_accepted(struct hpo_storage *base)
{
    return atomic_load(&((struct pg_storage *)base)->accepted);
}

static uint64_t pg_resolved(struct hpo_storage *base)
{
    return atomic_load(&((struct pg_storage *)base)->resolved);
}

static uint64_t pg_last_failed(struct hpo_storage *base)
{
    return atomic_load(&((struct pg_storage *)base)->last_failed);
}

static const struct hpo_storage_ops pg_ops = {
    .load = pg_load,
    .start = pg_start,
    .write = pg_write,
    .healthy = pg_healthy,
    .stalled = pg_stalled,
    .ticks = pg_ticks,
    .stats = pg_stats,
    .metrics = pg_metrics,
    .close = pg_close,
    .fence_set = pg_fence_set,
    .new_study_id = pg_new_study_id,
    .load_study = pg_load_study,
    .flush_ticket = pg_flush_ticket,
    .flushed = pg_flushed,
    .on_flush = pg_on_flush,
    .accepted = pg_accepted,
    .resolved = pg_resolved,
    .last_failed = pg_last_failed,
};

/*
** The password never comes from the command line: a URI holding one is
** refused. libpq reads it from PGPASSFILE, passfile= in the URI, or
** ~/.pgpass; under systemd, the credential "pgpass" (LoadCredential=) is
** used as the passfile when neither of the first two is set.
*/
static int check_uri(const char *uri, char **ret_passfile, struct hpo_error *err)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(uri, &msg);
    bool has_passfile = false;
    const char *creds;
    int r = 0;

    *ret_passfile = NULL;
    if (opts == NULL) {
        r = hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, NULL, "bad PostgreSQL URI: %.*s",
                msg != NULL ? (int)strcspn(msg, "\n") : 13, msg != NULL ? msg : "out of memory");
        PQfreemem(msg);
        return r;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0') {
            r = hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, NULL,
                    "the PostgreSQL URI holds a password: put it in a passfile instead"
                    " (PGPASSFILE, passfile= in the URI, or the systemd credential 'pgpass')");
        }
        if (strcmp(o->keyword, "passfile") == 0 && o->val != NULL && o->val[0] != '\0') {
            has_passfile = true;
        }
    }
    PQconninfoFree(opts);
    creds = getenv("CREDENTIALS_DIRECTORY");
    if (r == 0 && !has_passfile && getenv("PGPASSFILE") == NULL && creds != NULL) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/pgpass", creds);
        if (access(path, R_OK) == 0) {
            *ret_passfile = strdup(path);
            if (*ret_passfile == NULL) {
                r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            }
        }
    }
    return r;
}

/*
** Make the flusher. A server that refuses its statement (the role may not
** call pg_logical_emit_message) leaves the writer committing with
** synchronous_commit = on: as durable, slower, and said in the log.
*/
static int start_flush(struct pg_storage *st, struct hpo_error *err)
{
    struct hpo_error e = { 0 };
    int r = hpo__pg_flush_create(st->uri, st->passfile, st->daemon_id, &st->flush, &e);

    if (r == -EPERM) {
        hpo_log(HPO_LOG_WARNING, "PostgreSQL refuses the pipelined flush (%s); every commit "
                "waits for its own WAL flush instead (slower)", e.message);
        st->pipelined = false;
        return exec_ok(st->conn, "SET synchronous_commit = on", "setting synchronous_commit",
                err);
    }
    if (r < 0) {
        *err = e;
    }
    return r;
}

int hpo__pg_open(const char *uri, const struct hpo_storage_options *opt,
        struct hpo_storage **ret_storage, struct hpo_error *err)
{
    struct pg_storage *st = calloc(1, sizeof(*st));
    pthread_condattr_t attr;
    uint32_t rnd = 0;
    int r;

    if (st == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    st->lock_timeout_ms = opt != NULL && opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000;
    st->exclusive = opt != NULL && opt->exclusive;
    pthread_mutex_init(&st->fence_lock, NULL);
    pthread_mutex_init(&st->aux_lock, NULL);
    pthread_mutex_init(&st->cb_lock, NULL);
    atomic_init(&st->fenced, 0);
    atomic_init(&st->accepted, 0);
    atomic_init(&st->resolved, 0);
    atomic_init(&st->last_failed, 0);
    st->synchronous_full = opt != NULL && opt->synchronous_full;
    pthread_mutex_init(&st->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&st->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&st->done, NULL);
    st->tail = &st->head;
    atomic_init(&st->down, false);
    atomic_init(&st->stalled, false);
    atomic_init(&st->healthy, true);
    atomic_init(&st->ticks, 0);
    atomic_init(&st->commits, 0);
    atomic_init(&st->writes, 0);
    atomic_init(&st->failed_batches, 0);
    hpo_hist_init(&st->commit_us, commit_us_le, sizeof(commit_us_le) / sizeof(commit_us_le[0]));
    hpo_hist_init(&st->batch_writes, batch_writes_le,
            sizeof(batch_writes_le) / sizeof(batch_writes_le[0]));
    /* Batch ids: random high bits per open, a counter below; never 0 (the initial row). */
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        rnd = (uint32_t)getpid() ^ (uint32_t)mono_us();
    }
    st->batch_id = (int64_t)((uint64_t)(rnd | 1u) << 31);
    st->uri = strdup(uri);
    if (st->uri == NULL) {
        destroy(st);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    /* A daemon under full pipelines its flushes (pg-flush.c); hpod migrate commits plainly. */
    st->pipelined = st->synchronous_full && !st->exclusive;
    r = check_uri(uri, &st->passfile, err);
    if (r == 0) {
        r = writer_connect(st, err);
    }
    if (r == 0 && st->pipelined) {
        r = start_flush(st, err);
    }
    if (r < 0) {
        destroy(st);
        return r;
    }
    st->base.ops = &pg_ops;
    *ret_storage = &st->base;
    return 0;
}

/* ---- the reader ----------------------------------------------------------- */

struct hpo_pg_reader {
    char *uri;
    char *passfile;
    PGconn *conn;
    pthread_mutex_t lock;
};

struct hpo_pg_reader *hpo__pg_reader_create(const char *uri)
{
    struct hpo_pg_reader *rd = calloc(1, sizeof(*rd));
    struct hpo_error e = { 0 };

    if (rd == NULL) {
        return NULL;
    }
    rd->uri = strdup(uri);
    if (rd->uri == NULL || check_uri(uri, &rd->passfile, &e) == -ENOMEM) {
        free(rd->uri);
        free(rd);
        return NULL;
    }
    pthread_mutex_init(&rd->lock, NULL);
    return rd;
}

void hpo__pg_reader_destroy(struct hpo_pg_reader *rd)
{
    if (rd == NULL) {
        return;
    }
    PQfinish(rd->conn);
    pthread_mutex_destroy(&rd->lock);
    free(rd->passfile);
    free(rd->uri);
    free(rd);
}

/*
** Run a one-row query with binary results, connecting (again) as needed: a
** broken connection is made anew once. *ret is NULL when no row matched.
*/
static int reader_query(struct hpo_pg_reader *rd, const char *sql, int n, const int64_t *args,
        PGresult **ret, struct hpo_error *err)
{
    struct params p = { .n = 0 };

    *ret = NULL;
    for (int i = 0; i < n; i++) {
        put_i64(&p, args[i]);
    }
    for (int attempt = 0;; attempt++) {
        PGresult *res;

        if (rd->conn == NULL || PQstatus(rd->conn) != CONNECTION_OK) {
            PQfinish(rd->conn);
            rd->conn = connect_uri(rd->uri, rd->passfile, err);
            if (rd->conn == NULL) {
                return -EIO;
            }
        }
        res = PQexecParams(rd->conn, sql, n, NULL, p.values, p.lengths, p.formats, 1);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            if (PQntuples(res) > 0) {
                *ret = res;
            } else {
                PQclear(res);
            }
            return 0;
        }
        if (PQstatus(rd->conn) != CONNECTION_OK && attempt == 0) {
            PQclear(res);
            continue;
        }
        {
            int r = pq_error(rd->conn, res, "reading", err);
            PQclear(res);
            return r;
        }
    }
}

int hpo__pg_read_vector(struct hpo_pg_reader *rd, int64_t study_id, int64_t number,
        int64_t index, double *ret, size_t len, struct hpo_error *err)
{
    int r = 0;

    pthread_mutex_lock(&rd->lock);
    for (int hop = 0; r == 0; hop++) {
        int64_t args[3] = { study_id, number, index };
        PGresult *res;

        if (hop > 64) {
            r = hpo_error_set(err, -ELOOP, HPO_INTERNAL, NULL, "vector reference loop");
            break;
        }
        r = reader_query(rd, "SELECT value, vec FROM params WHERE study_id = $1 AND number = $2"
                " AND idx = $3", 3, args, &res, err);
        if (r < 0) {
            break;
        }
        if (res == NULL) {
            r = hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL,
                    "trial %lld has no stored vector", (long long)number);
            break;
        }
        if (!PQgetisnull(res, 0, 1)) {
            size_t bytes = (size_t)PQgetlength(res, 0, 1);

            if (bytes != len * sizeof(double)) {
                r = hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL,
                        "stored vector has %zu bytes, expected %zu", bytes, len * sizeof(double));
            } else {
                if (bytes > 0) {
                    memcpy(ret, PQgetvalue(res, 0, 1), bytes);
                }
                hpo__storage_le_doubles(ret, len);
            }
            PQclear(res);
            break;
        }
        if (PQgetisnull(res, 0, 0)) {
            r = hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL, "trial %lld has no vector",
                    (long long)number);
            PQclear(res);
            break;
        }
        {
            /* A shared vector: the number of the earlier trial that holds it. */
            int64_t ref = (int64_t)col_f64(res, 0);

            PQclear(res);
            if (ref < 0 || ref >= number) {
                r = hpo_error_set(err, -EINVAL, HPO_INTERNAL, NULL, "bad vector reference");
                break;
            }
            number = ref;
        }
    }
    pthread_mutex_unlock(&rd->lock);
    return r;
}

int hpo__pg_read_state(struct hpo_pg_reader *rd, int64_t study_id, void **ret, size_t *ret_len,
        struct hpo_error *err)
{
    int64_t args[1] = { study_id };
    PGresult *res;
    int r;

    *ret = NULL;
    *ret_len = 0;
    pthread_mutex_lock(&rd->lock);
    r = reader_query(rd, "SELECT sampler_state FROM studies WHERE id = $1", 1, args, &res, err);
    if (r == 0 && res == NULL) {
        r = hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL, "study %lld is not stored",
                (long long)study_id);
    } else if (r == 0) {
        if (!PQgetisnull(res, 0, 0)) {
            size_t len = (size_t)PQgetlength(res, 0, 0);

            *ret = malloc(len ? len : 1);
            if (*ret == NULL) {
                r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            } else {
                memcpy(*ret, PQgetvalue(res, 0, 0), len);
                *ret_len = len;
            }
        }
        PQclear(res);
    }
    pthread_mutex_unlock(&rd->lock);
    return r;
}

/* ---- for pg-cluster.c ------------------------------------------------------ */

bool hpo__pg_cluster_info(struct hpo_storage *base, struct hpo__pg_info *ret)
{
    struct pg_storage *st = (struct pg_storage *)base;

    if (base->ops != &pg_ops || st->exclusive) {
        return false;
    }
    ret->uri = st->uri;
    ret->passfile = st->passfile;
    ret->daemon_id = st->daemon_id;
    ret->lock_timeout_ms = st->lock_timeout_ms;
    return true;
}

void hpo__pg_on_fenced(struct hpo_storage *base, void (*fn)(void *ctx, int64_t study_id),
        void *ctx)
{
    struct pg_storage *st = (struct pg_storage *)base;

    st->on_fenced = fn;
    st->fenced_ctx = ctx;
}

uint64_t hpo__pg_fenced_writes(struct hpo_storage *base)
{
    return atomic_load(&((struct pg_storage *)base)->fenced);
}

struct pg_conn *hpo__pg_connect(const char *uri, const char *passfile, struct hpo_error *err)
{
    return connect_uri(uri, passfile, err);
}

int hpo__pg_error(const struct pg_conn *conn, const struct pg_result *res, const char *what,
        struct hpo_error *err)
{
    return pq_error(conn, res, what, err);
}
