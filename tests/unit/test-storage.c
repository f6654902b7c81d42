/*
** test-storage.c: unit tests of storage/: schema and migrations, every op
** written and loaded back exactly, cascades, group commit and its failures.
** Each test works in its own temporary directory.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h> /* cmocka needs setjmp.h, stdarg.h and stddef.h */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "histogram.h"
#include "reader.h"
#include "redo.h"
#include "storage-int.h"
#include "storage.h"

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/hpo-test-storage-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/hpod.db", f->dir);
    *state = f;
    return 0;
}

/* Remove a directory and what it holds (the blob directories are one level down). */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);

    if (d != NULL) {
        struct dirent *e;

        for (;;) {
            char p[512];

            e = readdir(d);
            if (e == NULL) {
                break;
            }
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            if (unlink(p) < 0 && errno == EISDIR) {
                remove_tree(p);
            }
        }
        closedir(d);
    }
    rmdir(dir);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    remove_tree(f->dir);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static struct hpo_storage *open_ok(const char *path)
{
    struct hpo_storage *st = NULL;
    struct hpo_error err;
    int r;

    hpo_error_clear(&err);
    r = hpo_storage_open(path, NULL, &st, &err);
    if (r != 0) {
        print_error("open: %d %s\n", r, err.message);
    }
    assert_int_equal(r, 0);
    assert_non_null(st);
    return st;
}

static struct hpo_storage *open_started(const char *path)
{
    struct hpo_storage *st = open_ok(path);

    assert_int_equal(hpo_storage_start(st), 0);
    return st;
}

/* Started without the redo log: pipelined writes commit to the database before they resolve. */
static struct hpo_storage *open_direct(const char *path)
{
    struct hpo_storage_options opt = { .no_redo = true };
    struct hpo_storage *st = NULL;
    struct hpo_error err;

    assert_int_equal(hpo_storage_open(path, &opt, &st, &err), 0);
    assert_int_equal(hpo_storage_start(st), 0);
    return st;
}

static int write_ops(struct hpo_storage *st, struct hpo_op *ops, size_t n, struct hpo_error *err)
{
    struct hpo_write w = { .ops = ops, .n_ops = n };

    return hpo_storage_write(st, &w, err);
}

static void write_ok(struct hpo_storage *st, struct hpo_op *ops, size_t n)
{
    struct hpo_error err;
    int r;

    hpo_error_clear(&err);
    r = write_ops(st, ops, n, &err);
    if (r != 0) {
        print_error("write: %d %s\n", r, err.message);
    }
    assert_int_equal(r, 0);
}

static struct hpo_op op_study(int64_t id, const char *name, const char *spec, int64_t created)
{
    struct hpo_op op = { .kind = HPO_OP_STUDY_PUT, .study_id = id, .name = name, .text = spec };

    op.created_at = created;
    return op;
}

static struct hpo_op op_trial(int64_t study, int64_t number, int state, double value,
        const char *worker)
{
    struct hpo_op op = { .kind = HPO_OP_TRIAL_PUT, .study_id = study, .number = number };

    op.trial.state = state;
    op.trial.value = value;
    op.trial.worker = worker;
    op.trial.retry_of = -1;
    op.trial.retries = 0;
    op.trial.created_at = 1700000000000 + number;
    op.trial.started_at = 1700000000001 + number;
    op.trial.completed_at = 0;
    op.trial.heartbeat_at = 0;
    return op;
}

static struct hpo_op op_param(int64_t study, int64_t number, int64_t index, double value)
{
    struct hpo_op op = { .kind = HPO_OP_PARAM_PUT, .study_id = study, .number = number,
        .index = index, .value = value };

    return op;
}

static struct hpo_op op_report(int64_t study, int64_t number, int64_t step, double value)
{
    struct hpo_op op = { .kind = HPO_OP_REPORT_PUT, .study_id = study, .number = number,
        .value = value };

    op.step = step;
    return op;
}

static struct hpo_op op_attr(int64_t study, int64_t number, const char *key, const char *json)
{
    struct hpo_op op = { .kind = HPO_OP_ATTR_PUT, .study_id = study, .number = number,
        .name = key, .text = json };

    return op;
}

/* Everything a load delivered, in order. */
struct rec {
    char kind; /* 'S'tudy, 'T'rial, 'P'aram, 'R'eport, 'A'ttr */
    int64_t a, b, c, d;
    double v;
    char *s1, *s2;
    void *bytes; /* sampler state or vector, copied */
    size_t len;  /* bytes for a state, elements for a vector */
    bool has_bytes;
    struct hpo_trial_row row;
};

struct dump {
    struct rec *v;
    size_t n, cap;
    int stop_at; /* >0: fail the stop_at-th callback with -ECANCELED */
    int calls;
};

static struct rec *add(struct dump *d, char kind)
{
    struct rec *r;

    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->v = realloc(d->v, d->cap * sizeof(*d->v));
        assert_non_null(d->v);
    }
    r = &d->v[d->n++];
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    return r;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static int stopper(struct dump *d)
{
    d->calls++;
    return d->stop_at > 0 && d->calls == d->stop_at ? -ECANCELED : 0;
}

static int cb_study(void *ctx, int64_t id, const char *name, const char *spec, int64_t created,
        const void *state, size_t len)
{
    struct dump *d = ctx;
    struct rec *r;

    if (stopper(d) < 0) {
        return -ECANCELED;
    }
    r = add(d, 'S');
    r->a = id;
    r->d = created;
    r->s1 = dup_or_null(name);
    r->s2 = dup_or_null(spec);
    r->has_bytes = state != NULL;
    r->len = len;
    if (state != NULL) {
        r->bytes = malloc(len);
        memcpy(r->bytes, state, len);
    }
    return 0;
}

static int cb_trial(void *ctx, int64_t study, int64_t number, const struct hpo_trial_row *row)
{
    struct dump *d = ctx;
    struct rec *r;

    if (stopper(d) < 0) {
        return -ECANCELED;
    }
    r = add(d, 'T');
    r->a = study;
    r->b = number;
    r->row = *row;
    r->s1 = dup_or_null(row->worker);
    r->row.worker = r->s1;
    r->s2 = dup_or_null(row->results);
    r->row.results = r->s2;
    return 0;
}

static int cb_param(void *ctx, int64_t study, int64_t number, int64_t index, double value,
        const double *vector, size_t len)
{
    struct dump *d = ctx;
    struct rec *r;

    if (stopper(d) < 0) {
        return -ECANCELED;
    }
    r = add(d, 'P');
    r->a = study;
    r->b = number;
    r->c = index;
    r->v = value;
    r->has_bytes = vector != NULL;
    r->len = len;
    if (vector != NULL) {
        r->bytes = malloc(len * sizeof(double) + 1);
        memcpy(r->bytes, vector, len * sizeof(double));
    }
    return 0;
}

static int cb_report(void *ctx, int64_t study, int64_t number, int64_t step, double value)
{
    struct dump *d = ctx;
    struct rec *r;

    if (stopper(d) < 0) {
        return -ECANCELED;
    }
    r = add(d, 'R');
    r->a = study;
    r->b = number;
    r->c = step;
    r->v = value;
    return 0;
}

static int cb_attr(void *ctx, int64_t study, int64_t number, const char *key, const char *json)
{
    struct dump *d = ctx;
    struct rec *r;

    if (stopper(d) < 0) {
        return -ECANCELED;
    }
    r = add(d, 'A');
    r->a = study;
    r->b = number;
    r->s1 = dup_or_null(key);
    r->s2 = dup_or_null(json);
    return 0;
}

static const struct hpo_load_callbacks all_cbs = {
    .study = cb_study,
    .trial = cb_trial,
    .param = cb_param,
    .report = cb_report,
    .attr = cb_attr,
};

static void dump_free(struct dump *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].s1);
        free(d->v[i].s2);
        free(d->v[i].bytes);
    }
    free(d->v);
    memset(d, 0, sizeof(*d));
}

/* Open, load everything, close. */
static void load_all(const char *path, struct dump *d)
{
    struct hpo_storage *st = open_ok(path);
    struct hpo_error err;
    int r;

    memset(d, 0, sizeof(*d));
    hpo_error_clear(&err);
    r = hpo_storage_load(st, &all_cbs, d, &err);
    if (r != 0) {
        print_error("load: %d %s\n", r, err.message);
    }
    assert_int_equal(r, 0);
    hpo_storage_close(st);
}

static size_t count_kind(const struct dump *d, char kind)
{
    size_t n = 0;

    for (size_t i = 0; i < d->n; i++) {
        n += d->v[i].kind == kind;
    }
    return n;
}

static void assert_bits(double a, double b)
{
    assert_memory_equal(&a, &b, sizeof(double));
}

/* One integer from a raw SQLite query on its own connection. */
static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t v;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return v;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    int rc;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
            SQLITE_OK);
    rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        print_error("raw exec: %s\n", msg);
    }
    sqlite3_free(msg);
    assert_int_equal(rc, SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* ---- schema and migrations ---------------------------------------------- */

static void test_schema(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_ok(f->path);

    hpo_storage_close(st);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), HPO_STORAGE_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_journal_mode()"
                                      " WHERE journal_mode = 'wal'"),
            1);
    /* Five STRICT tables; all but studies WITHOUT ROWID. */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_table_list WHERE schema = 'main'"
                                      " AND strict = 1 AND name IN ('studies', 'trials', 'params',"
                                      " 'intermediate', 'trial_attrs')"),
            5);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_table_list WHERE schema = 'main'"
                                      " AND wr = 1 AND name IN ('trials', 'params',"
                                      " 'intermediate', 'trial_attrs')"),
            4);
    /* Children cascade from trials, trials from studies. */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_foreign_key_list('trials')"
                                      " WHERE \"table\" = 'studies' AND on_delete = 'CASCADE'"),
            1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_foreign_key_list('params')"
                                      " WHERE \"table\" = 'trials' AND on_delete = 'CASCADE'"),
            2);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_foreign_key_list('intermediate')"
                                      " WHERE \"table\" = 'trials' AND on_delete = 'CASCADE'"),
            2);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_foreign_key_list('trial_attrs')"
                                      " WHERE \"table\" = 'trials' AND on_delete = 'CASCADE'"),
            2);
}

/* A zero-byte file and a real SQLite file at user_version 0 both migrate. */
static void test_migrate_from_version_0(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st;
    struct dump d;
    char other[160];
    int fd;

    fd = open(f->path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    close(fd);
    st = open_ok(f->path);
    hpo_storage_close(st);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), HPO_STORAGE_SCHEMA_VERSION);

    snprintf(other, sizeof(other), "%s/v0.db", f->dir);
    raw_exec(other, "CREATE TABLE t (x); DROP TABLE t;");
    assert_int_equal(raw_int(other, "PRAGMA user_version"), 0);
    st = open_started(other);
    {
        struct hpo_op ops[] = { op_study(1, "a", "{}", 5) };

        write_ok(st, ops, 1);
    }
    hpo_storage_close(st);
    assert_int_equal(raw_int(other, "PRAGMA user_version"), HPO_STORAGE_SCHEMA_VERSION);
    load_all(other, &d);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.v[0].s1, "a");
    dump_free(&d);
}

/*
** A database as version 1 wrote it (schema frozen here, rollback journal,
** not WAL), made with raw SQLite: opening keeps its data.
*/
static const char v1_fixture[] =
        "CREATE TABLE studies (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
        "  spec TEXT NOT NULL, created_at INTEGER NOT NULL, sampler_state BLOB) STRICT;"
        "CREATE TABLE trials (study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,"
        "  number INTEGER NOT NULL, state INTEGER NOT NULL, value REAL, worker TEXT,"
        "  retry_of INTEGER NOT NULL, retries INTEGER NOT NULL, created_at INTEGER NOT NULL,"
        "  started_at INTEGER NOT NULL, completed_at INTEGER NOT NULL,"
        "  heartbeat_at INTEGER NOT NULL, PRIMARY KEY (study_id, number)) STRICT, WITHOUT ROWID;"
        "CREATE TABLE params (study_id INTEGER NOT NULL, number INTEGER NOT NULL,"
        "  idx INTEGER NOT NULL, value ANY, PRIMARY KEY (study_id, number, idx),"
        "  FOREIGN KEY (study_id, number) REFERENCES trials(study_id, number) ON DELETE CASCADE"
        ") STRICT, WITHOUT ROWID;"
        "CREATE TABLE intermediate (study_id INTEGER NOT NULL, number INTEGER NOT NULL,"
        "  step INTEGER NOT NULL, value REAL, PRIMARY KEY (study_id, number, step),"
        "  FOREIGN KEY (study_id, number) REFERENCES trials(study_id, number) ON DELETE CASCADE"
        ") STRICT, WITHOUT ROWID;"
        "CREATE TABLE trial_attrs (study_id INTEGER NOT NULL, number INTEGER NOT NULL,"
        "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (study_id, number, key),"
        "  FOREIGN KEY (study_id, number) REFERENCES trials(study_id, number) ON DELETE CASCADE"
        ") STRICT, WITHOUT ROWID;"
        "INSERT INTO studies VALUES (7, 'old', '{\"x\":1}', 123, x'0102');"
        "INSERT INTO trials VALUES (7, 0, 2, 0.5, 'w1', -1, 0, 10, 11, 12, 13);"
        "INSERT INTO params VALUES (7, 0, 0, 0.25);"
        "INSERT INTO params VALUES (7, 0, 1, x'000000000000f03f');"
        "INSERT INTO intermediate VALUES (7, 0, 3, 0.75);"
        "INSERT INTO trial_attrs VALUES (7, 0, 'k', '\"v\"');"
        "PRAGMA user_version = 1;";

static void test_open_version_1_fixture(void **state)
{
    struct fixture *f = *state;
    struct dump d;
    double one = 1.0;

    raw_exec(f->path, v1_fixture);
    load_all(f->path, &d);
    assert_int_equal(d.n, 6);
    assert_int_equal(d.v[0].kind, 'S');
    assert_int_equal(d.v[0].a, 7);
    assert_string_equal(d.v[0].s1, "old");
    assert_string_equal(d.v[0].s2, "{\"x\":1}");
    assert_int_equal(d.v[0].d, 123);
    assert_int_equal(d.v[0].len, 2);
    assert_memory_equal(d.v[0].bytes, "\x01\x02", 2);
    assert_int_equal(d.v[1].kind, 'T');
    assert_int_equal(d.v[1].row.state, 2);
    assert_bits(d.v[1].row.value, 0.5);
    assert_string_equal(d.v[1].row.worker, "w1");
    assert_int_equal(d.v[1].row.heartbeat_at, 13);
    assert_null(d.v[1].row.results); /* a version-1 row: one objective, nothing rewritten */
    assert_int_equal(d.v[2].kind, 'P');
    assert_false(d.v[2].has_bytes);
    assert_bits(d.v[2].v, 0.25);
    assert_int_equal(d.v[3].kind, 'P');
    assert_true(d.v[3].has_bytes);
    assert_int_equal(d.v[3].len, 1);
    assert_memory_equal(d.v[3].bytes, &one, sizeof(one));
    assert_int_equal(d.v[4].kind, 'R');
    assert_int_equal(d.v[4].c, 3);
    assert_int_equal(d.v[5].kind, 'A');
    assert_string_equal(d.v[5].s2, "\"v\"");
    dump_free(&d);
    /* Opening switched it to WAL and migrated it in place (version 2: trials.results). */
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), HPO_STORAGE_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM trials WHERE results IS NULL"), 1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_journal_mode()"
                                      " WHERE journal_mode = 'wal'"),
            1);
}

static void test_newer_version_refused(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = NULL;
    struct hpo_error err;

    raw_exec(f->path, "CREATE TABLE t (x); PRAGMA user_version = 99;");
    hpo_error_clear(&err);
    assert_int_equal(hpo_storage_open(f->path, NULL, &st, &err), -EPROTONOSUPPORT);
    assert_null(st);
    assert_int_equal(err.code, HPO_INTERNAL);
    assert_non_null(strstr(err.message, "99"));
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 99);
}

static void test_open_failure(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = NULL;
    struct hpo_error err;
    char path[200];

    snprintf(path, sizeof(path), "%s/no/such/dir/hpod.db", f->dir);
    hpo_error_clear(&err);
    assert_int_equal(hpo_storage_open(path, NULL, &st, &err), -EIO);
    assert_null(st);
    assert_int_equal(err.code, HPO_UNAVAILABLE);
}

/* ---- writes read back --------------------------------------------------- */

static const double odd_values[] = {
    0.1, 1.0 / 3.0, 0.30000000000000004, -0.0, 5e-324, 2.2250738585072014e-308,
    1.7976931348623157e308, -123456789.12345679, INFINITY, -INFINITY,
};
#define N_ODD (sizeof(odd_values) / sizeof(odd_values[0]))

static void test_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    static const unsigned char blob[] = { 0, 1, 2, 0xff, 0 };
    double vec[5] = { 0.1, -0.0, NAN, 1e-310, 3.0 };
    double empty_vec[1] = { 42.0 };
    uint64_t nan_payload = 0x7ff8000000000123ull;
    struct hpo_op ops[64];
    size_t n = 0;
    struct dump d;
    size_t k;

    memcpy(&vec[2], &nan_payload, sizeof(double));
    ops[n++] = op_study(3, "study three", "{\"params\":[]}", 1700000000123);
    ops[n++] = (struct hpo_op){ .kind = HPO_OP_SAMPLER_STATE, .study_id = 3, .blob = blob,
        .len = sizeof(blob) };
    ops[n++] = op_study(1, "study one \xc3\xa9", "{}", -5);
    for (size_t i = 0; i < N_ODD; i++) {
        ops[n++] = op_trial(3, (int64_t)i, 2, odd_values[i], i % 2 ? "worker-a" : NULL);
        ops[n++] = op_param(3, (int64_t)i, 0, odd_values[i]);
    }
    ops[n] = op_trial(3, 100, 1, NAN, "w");
    ops[n].trial.retry_of = 7;
    ops[n].trial.retries = 3;
    ops[n].trial.completed_at = INT64_MAX;
    ops[n].trial.heartbeat_at = INT64_MIN;
    n++;
    ops[n++] = op_param(3, 100, 2, NAN);
    ops[n++] = (struct hpo_op){ .kind = HPO_OP_PARAM_VECTOR, .study_id = 3, .number = 100,
        .index = 0, .vector = vec, .len = 5 };
    ops[n++] = (struct hpo_op){ .kind = HPO_OP_PARAM_VECTOR, .study_id = 3, .number = 100,
        .index = 1, .vector = empty_vec, .len = 0 };
    ops[n++] = op_report(3, 100, 5, 0.30000000000000004);
    ops[n++] = op_report(3, 100, 1, NAN);
    ops[n++] = op_attr(3, 100, "zeta", "{\"a\":[1,2]}");
    ops[n++] = op_attr(3, 100, "alpha", "\"\xe2\x82\xac\"");
    assert_true(n <= sizeof(ops) / sizeof(ops[0]));
    write_ok(st, ops, n);
    {
        /* A second write: the duplicate step keeps its first value; attrs update. */
        struct hpo_op more[] = {
            op_report(3, 100, 5, 99.0),
            op_report(3, 100, 2, -1.5),
            op_attr(3, 100, "zeta", "null"),
        };

        write_ok(st, more, 3);
    }
    hpo_storage_close(st);

    /* NaN is stored as NULL, scalars as REAL, vectors as BLOB. */
    assert_int_equal(raw_int(f->path, "SELECT value IS NULL FROM trials WHERE number = 100"), 1);
    assert_int_equal(raw_int(f->path, "SELECT value IS NULL FROM params WHERE number = 100"
                                      " AND idx = 2"),
            1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM params WHERE typeof(value) = 'real'"),
            N_ODD);
    assert_int_equal(raw_int(f->path, "SELECT length(value) FROM params WHERE number = 100"
                                      " AND idx = 0 AND typeof(value) = 'blob'"),
            40);
    assert_int_equal(raw_int(f->path, "SELECT value IS NULL FROM intermediate WHERE step = 1"), 1);

    load_all(f->path, &d);
    k = 0;
    /* Studies by id. */
    assert_int_equal(d.v[k].kind, 'S');
    assert_int_equal(d.v[k].a, 1);
    assert_string_equal(d.v[k].s1, "study one \xc3\xa9");
    assert_string_equal(d.v[k].s2, "{}");
    assert_int_equal(d.v[k].d, -5);
    assert_false(d.v[k].has_bytes);
    k++;
    assert_int_equal(d.v[k].a, 3);
    assert_string_equal(d.v[k].s1, "study three");
    assert_string_equal(d.v[k].s2, "{\"params\":[]}");
    assert_int_equal(d.v[k].d, 1700000000123);
    assert_true(d.v[k].has_bytes);
    assert_int_equal(d.v[k].len, sizeof(blob));
    assert_memory_equal(d.v[k].bytes, blob, sizeof(blob));
    k++;
    /* Trials by number, values bit-exact. */
    for (size_t i = 0; i < N_ODD; i++, k++) {
        assert_int_equal(d.v[k].kind, 'T');
        assert_int_equal(d.v[k].a, 3);
        assert_int_equal(d.v[k].b, i);
        assert_int_equal(d.v[k].row.state, 2);
        /* A REAL column stores whole numbers as integers, so -0.0 reads back as 0.0. */
        assert_bits(d.v[k].row.value, odd_values[i] == 0 ? 0.0 : odd_values[i]);
        if (i % 2) {
            assert_string_equal(d.v[k].row.worker, "worker-a");
        } else {
            assert_null(d.v[k].row.worker);
        }
        assert_int_equal(d.v[k].row.retry_of, -1);
        assert_int_equal(d.v[k].row.retries, 0);
        assert_int_equal(d.v[k].row.created_at, 1700000000000 + (int64_t)i);
        assert_int_equal(d.v[k].row.started_at, 1700000000001 + (int64_t)i);
        assert_int_equal(d.v[k].row.completed_at, 0);
        assert_int_equal(d.v[k].row.heartbeat_at, 0);
    }
    assert_int_equal(d.v[k].kind, 'T');
    assert_int_equal(d.v[k].b, 100);
    assert_int_equal(d.v[k].row.state, 1);
    assert_true(isnan(d.v[k].row.value));
    assert_string_equal(d.v[k].row.worker, "w");
    assert_int_equal(d.v[k].row.retry_of, 7);
    assert_int_equal(d.v[k].row.retries, 3);
    assert_int_equal(d.v[k].row.completed_at, INT64_MAX);
    assert_int_equal(d.v[k].row.heartbeat_at, INT64_MIN);
    k++;
    /* Params by (number, index). */
    for (size_t i = 0; i < N_ODD; i++, k++) {
        assert_int_equal(d.v[k].kind, 'P');
        assert_int_equal(d.v[k].b, i);
        assert_int_equal(d.v[k].c, 0);
        assert_false(d.v[k].has_bytes);
        assert_bits(d.v[k].v, odd_values[i]);
    }
    assert_int_equal(d.v[k].kind, 'P');
    assert_int_equal(d.v[k].c, 0);
    assert_true(d.v[k].has_bytes);
    assert_int_equal(d.v[k].len, 5);
    assert_memory_equal(d.v[k].bytes, vec, sizeof(vec));
    k++;
    assert_int_equal(d.v[k].c, 1);
    assert_true(d.v[k].has_bytes);
    assert_int_equal(d.v[k].len, 0);
    k++;
    assert_int_equal(d.v[k].c, 2);
    assert_false(d.v[k].has_bytes);
    assert_true(isnan(d.v[k].v));
    k++;
    /* Reports by step; step 5 kept its first value. */
    assert_int_equal(d.v[k].kind, 'R');
    assert_int_equal(d.v[k].c, 1);
    assert_true(isnan(d.v[k].v));
    k++;
    assert_int_equal(d.v[k].c, 2);
    assert_bits(d.v[k].v, -1.5);
    k++;
    assert_int_equal(d.v[k].c, 5);
    assert_bits(d.v[k].v, 0.30000000000000004);
    k++;
    /* Attrs by key; zeta was updated. */
    assert_int_equal(d.v[k].kind, 'A');
    assert_string_equal(d.v[k].s1, "alpha");
    assert_string_equal(d.v[k].s2, "\"\xe2\x82\xac\"");
    k++;
    assert_string_equal(d.v[k].s1, "zeta");
    assert_string_equal(d.v[k].s2, "null");
    k++;
    assert_int_equal(d.n, k);
    dump_free(&d);
}

/* Re-putting a trial updates it in place and keeps its params, reports and attrs. */
static void test_trial_upsert_keeps_children(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op first[] = {
        op_study(1, "s", "{}", 0),
        op_trial(1, 0, 1, NAN, "w"),
        op_param(1, 0, 0, 0.5),
        op_report(1, 0, 0, 1.25),
        op_attr(1, 0, "k", "1"),
    };
    struct hpo_op second[] = { op_trial(1, 0, 2, 0.125, NULL) };
    struct dump d;

    write_ok(st, first, 5);
    second[0].trial.completed_at = 99;
    write_ok(st, second, 1);
    hpo_storage_close(st);

    load_all(f->path, &d);
    assert_int_equal(d.n, 5);
    assert_int_equal(d.v[1].kind, 'T');
    assert_int_equal(d.v[1].row.state, 2);
    assert_bits(d.v[1].row.value, 0.125);
    assert_null(d.v[1].row.worker);
    assert_int_equal(d.v[1].row.completed_at, 99);
    assert_int_equal(d.v[2].kind, 'P');
    assert_bits(d.v[2].v, 0.5);
    assert_int_equal(d.v[3].kind, 'R');
    assert_bits(d.v[3].v, 1.25);
    assert_int_equal(d.v[4].kind, 'A');
    assert_string_equal(d.v[4].s2, "1");
    dump_free(&d);
}

static void test_study_delete_cascades(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    double v[2] = { 1, 2 };
    struct hpo_op ops[16];
    size_t n = 0;
    struct dump d;

    for (int64_t s = 1; s <= 2; s++) {
        ops[n++] = op_study(s, s == 1 ? "one" : "two", "{}", 0);
        ops[n++] = op_trial(s, 0, 2, 1.0, NULL);
        ops[n++] = op_param(s, 0, 0, 0.5);
        ops[n++] = (struct hpo_op){ .kind = HPO_OP_PARAM_VECTOR, .study_id = s, .number = 0,
            .index = 1, .vector = v, .len = 2 };
        ops[n++] = op_report(s, 0, 0, 1.0);
        ops[n++] = op_attr(s, 0, "k", "1");
    }
    write_ok(st, ops, n);
    {
        struct hpo_op del = { .kind = HPO_OP_STUDY_DELETE, .study_id = 1 };

        write_ok(st, &del, 1);
    }
    hpo_storage_close(st);

    assert_int_equal(raw_int(f->path, "SELECT (SELECT count(*) FROM trials WHERE study_id = 1)"
                                      " + (SELECT count(*) FROM params WHERE study_id = 1)"
                                      " + (SELECT count(*) FROM intermediate WHERE study_id = 1)"
                                      " + (SELECT count(*) FROM trial_attrs WHERE study_id = 1)"),
            0);
    load_all(f->path, &d);
    assert_int_equal(d.n, 6);
    for (size_t i = 0; i < d.n; i++) {
        assert_int_equal(d.v[i].a, 2);
    }
    assert_int_equal(count_kind(&d, 'P'), 2);
    dump_free(&d);
    /* The name of the deleted study is free again. */
    st = open_started(f->path);
    {
        struct hpo_op again = op_study(3, "one", "{}", 0);

        write_ok(st, &again, 1);
    }
    hpo_storage_close(st);
}

/* ---- failures ------------------------------------------------------------ */

static void test_write_errors(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_ok(f->path);
    struct hpo_op study = op_study(1, "s", "{}", 0);
    struct hpo_error err;
    struct dump d;

    /* Not started yet. */
    hpo_error_clear(&err);
    assert_int_equal(write_ops(st, &study, 1, &err), -ESHUTDOWN);
    assert_int_equal(err.code, HPO_UNAVAILABLE);
    assert_int_equal(hpo_storage_start(st), 0);
    assert_int_equal(hpo_storage_start(st), -EALREADY);
    write_ok(st, &study, 1);
    {
        /* Duplicate id and duplicate name are conflicts. */
        struct hpo_op dup_id = op_study(1, "other", "{}", 0);
        struct hpo_op dup_name = op_study(2, "s", "{}", 0);

        hpo_error_clear(&err);
        assert_int_equal(write_ops(st, &dup_id, 1, &err), -EEXIST);
        assert_int_equal(err.code, HPO_CONFLICT);
        hpo_error_clear(&err);
        assert_int_equal(write_ops(st, &dup_name, 1, &err), -EEXIST);
        assert_int_equal(err.code, HPO_CONFLICT);
        assert_non_null(strstr(err.message, "UNIQUE"));
    }
    {
        /* A param of a trial that does not exist breaks a foreign key. */
        struct hpo_op orphan = op_param(1, 5, 0, 1.0);

        hpo_error_clear(&err);
        assert_int_equal(write_ops(st, &orphan, 1, &err), -EIO);
        assert_int_equal(err.code, HPO_INTERNAL);
        assert_non_null(strstr(err.message, "FOREIGN KEY"));
    }
    {
        /* Missing study for the sampler state or a delete. */
        struct hpo_op state_op = { .kind = HPO_OP_SAMPLER_STATE, .study_id = 9, .blob = "x",
            .len = 1 };
        struct hpo_op del = { .kind = HPO_OP_STUDY_DELETE, .study_id = 9 };
        struct hpo_op bad = { .kind = (enum hpo_op_kind)42, .study_id = 1 };

        hpo_error_clear(&err);
        assert_int_equal(write_ops(st, &state_op, 1, &err), -ENOENT);
        assert_int_equal(err.code, HPO_NOT_FOUND);
        hpo_error_clear(&err);
        assert_int_equal(write_ops(st, &del, 1, &err), -ENOENT);
        assert_int_equal(err.code, HPO_NOT_FOUND);
        hpo_error_clear(&err);
        assert_int_equal(write_ops(st, &bad, 1, &err), -EINVAL);
        assert_int_equal(err.code, HPO_INTERNAL);
    }
    /* Failed writes do not make the storage unhealthy. */
    assert_true(hpo_storage_healthy(st));
    hpo_storage_close(st);
    load_all(f->path, &d);
    assert_int_equal(d.n, 1);
    dump_free(&d);
}

/* A write holding the lock elsewhere: BUSY is `unavailable`, then health comes back. */
static void test_busy_is_unavailable(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage_options opt = { .busy_timeout_ms = 50 };
    struct hpo_storage *st = NULL;
    struct hpo_op study = op_study(1, "s", "{}", 0);
    struct hpo_error err;
    sqlite3 *other = NULL;
    uint64_t commits;
    uint64_t writes;

    assert_int_equal(hpo_storage_open(f->path, &opt, &st, &err), 0);
    assert_int_equal(hpo_storage_start(st), 0);
    assert_int_equal(sqlite3_open_v2(f->path, &other, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    assert_true(hpo_storage_healthy(st));
    hpo_error_clear(&err);
    assert_int_equal(write_ops(st, &study, 1, &err), -EAGAIN);
    assert_int_equal(err.code, HPO_UNAVAILABLE);
    assert_false(hpo_storage_healthy(st));
    hpo_storage_stats(st, &commits, &writes);
    assert_int_equal(commits, 0);
    assert_int_equal(writes, 0);
    {
        /* /metrics: the failed batch counts as a failure, not as a commit. */
        const struct hpo_hist *commit_us, *batch;
        uint64_t failed;
        hpo_storage_metrics(st, &commit_us, &batch, &failed);
        assert_int_equal(failed, 1);
        assert_int_equal(hpo_hist_count(commit_us), 0);
        assert_int_equal(hpo_hist_count(batch), 0);
    }

    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(other), SQLITE_OK);
    write_ok(st, &study, 1);
    assert_true(hpo_storage_healthy(st));
    hpo_storage_stats(st, &commits, &writes);
    assert_int_equal(commits, 1);
    assert_int_equal(writes, 1);
    hpo_storage_close(st);
}

static void test_load_callback_stops(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op ops[] = {
        op_study(1, "s", "{}", 0),
        op_trial(1, 0, 1, NAN, NULL),
        op_trial(1, 1, 1, NAN, NULL),
    };
    struct hpo_error err;
    struct dump d = { .stop_at = 2 };

    write_ok(st, ops, 3);
    hpo_storage_close(st);
    st = open_ok(f->path);
    hpo_error_clear(&err);
    assert_int_equal(hpo_storage_load(st, &all_cbs, &d, &err), -ECANCELED);
    assert_int_equal(err.code, HPO_INTERNAL);
    assert_int_equal(d.n, 1);
    dump_free(&d);
    /* The storage is still usable after a stopped load. */
    memset(&d, 0, sizeof(d));
    assert_int_equal(hpo_storage_load(st, &all_cbs, &d, &err), 0);
    assert_int_equal(d.n, 3);
    dump_free(&d);
    assert_int_equal(hpo_storage_start(st), 0);
    /* And load is refused once the writer runs. */
    assert_int_equal(hpo_storage_load(st, &all_cbs, &d, &err), -EBUSY);
    hpo_storage_close(st);
}

/* ---- group commit ------------------------------------------------------- */

#define N_THREADS 8
#define PER_THREAD 200

struct writer_arg {
    struct hpo_storage *st;
    int id;
    int failures;
    int last_error;
};

static void *writer_thread(void *p)
{
    struct writer_arg *a = p;

    for (int i = 0; i < PER_THREAD; i++) {
        int64_t number = (int64_t)a->id * PER_THREAD + i;
        struct hpo_op ops[] = {
            op_trial(1, number, 2, (double)number / 7.0, "w"),
            op_param(1, number, 0, (double)number * 0.001),
            op_report(1, number, 0, (double)number + 0.5),
        };
        struct hpo_write w = { .ops = ops, .n_ops = 3 };
        struct hpo_error err;
        int r = hpo_storage_write(a->st, &w, &err);

        if (r != 0) {
            a->failures++;
            a->last_error = r;
        }
    }
    return NULL;
}

static void test_group_commit_concurrent(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op study = op_study(1, "s", "{}", 0);
    pthread_t threads[N_THREADS];
    struct writer_arg args[N_THREADS];
    uint64_t commits;
    uint64_t writes;
    struct dump d;

    write_ok(st, &study, 1);
    for (int t = 0; t < N_THREADS; t++) {
        args[t] = (struct writer_arg){ .st = st, .id = t };
        assert_int_equal(pthread_create(&threads[t], NULL, writer_thread, &args[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(args[t].failures, 0);
    }
    hpo_storage_stats(st, &commits, &writes);
    assert_int_equal(writes, 1 + N_THREADS * PER_THREAD);
    assert_true(commits < writes);
    assert_true(commits >= 1);
    print_message("# group commit: %llu writes in %llu commits\n", (unsigned long long)writes,
            (unsigned long long)commits);
    hpo_storage_close(st);

    load_all(f->path, &d);
    assert_int_equal(count_kind(&d, 'T'), N_THREADS * PER_THREAD);
    assert_int_equal(count_kind(&d, 'P'), N_THREADS * PER_THREAD);
    assert_int_equal(count_kind(&d, 'R'), N_THREADS * PER_THREAD);
    /* Ordered by number, each with its own values. */
    for (size_t i = 0; i < N_THREADS * PER_THREAD; i++) {
        const struct rec *t = &d.v[1 + i];
        const struct rec *p = &d.v[1 + N_THREADS * PER_THREAD + i];
        const struct rec *r = &d.v[1 + 2 * N_THREADS * PER_THREAD + i];

        assert_int_equal(t->b, i);
        assert_bits(t->row.value, (double)i / 7.0);
        assert_int_equal(p->b, i);
        assert_bits(p->v, (double)i * 0.001);
        assert_int_equal(r->b, i);
        assert_bits(r->v, (double)i + 0.5);
    }
    dump_free(&d);
}

struct one_write {
    struct hpo_storage *st;
    struct hpo_op ops[3];
    size_t n;
    int result;
    struct hpo_error err;
};

static void *one_write_thread(void *p)
{
    struct one_write *o = p;
    struct hpo_write w = { .ops = o->ops, .n_ops = o->n };

    hpo_error_clear(&o->err);
    o->result = hpo_storage_write(o->st, &w, &o->err);
    return NULL;
}

static void wait_queued(struct hpo_storage *st, size_t n)
{
    struct timespec ms = { 0, 1000000 };

    /* Bounded: 10 s at most. */
    for (int i = 0; i < 10000 && hpo__storage_queued(st) < n; i++) {
        nanosleep(&ms, NULL);
    }
    assert_int_equal(hpo__storage_queued(st), n);
}

/* One batch of five writes; the one that conflicts fails alone and leaves nothing. */
static void test_failing_write_in_batch(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op base[] = { op_study(1, "taken", "{}", 0) };
    struct one_write w[5];
    pthread_t threads[5];
    uint64_t commits0;
    uint64_t commits;
    uint64_t writes;
    struct dump d;

    write_ok(st, base, 1);
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 5; i++) {
        w[i].st = st;
        if (i == 2) {
            /* A trial and a param, then a study whose name is taken. */
            w[i].ops[0] = op_trial(1, 99, 1, NAN, NULL);
            w[i].ops[1] = op_param(1, 99, 0, 0.5);
            w[i].ops[2] = op_study(50, "taken", "{}", 0);
            w[i].n = 3;
        } else {
            w[i].ops[0] = op_trial(1, i, 2, (double)i, NULL);
            w[i].ops[1] = op_param(1, i, 0, (double)i / 2);
            w[i].n = 2;
        }
    }
    hpo_storage_stats(st, &commits0, NULL);
    hpo__storage_pause(st, true);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, one_write_thread, &w[i]), 0);
        /* Queue them in order, so the failing write sits mid-batch. */
        wait_queued(st, (size_t)i + 1);
    }
    hpo__storage_pause(st, false);
    for (int i = 0; i < 5; i++) {
        pthread_join(threads[i], NULL);
    }
    for (int i = 0; i < 5; i++) {
        if (i == 2) {
            assert_int_equal(w[i].result, -EEXIST);
            assert_int_equal(w[i].err.code, HPO_CONFLICT);
        } else {
            assert_int_equal(w[i].result, 0);
        }
    }
    hpo_storage_stats(st, &commits, &writes);
    assert_int_equal(commits, commits0 + 1);
    assert_int_equal(writes, 1 + 4);
    {
        /* /metrics: one observation per commit; the batch of 5 is in the le="8" bucket. */
        const struct hpo_hist *commit_us, *batch;
        uint64_t failed;
        hpo_storage_metrics(st, &commit_us, &batch, &failed);
        assert_int_equal(failed, 0);
        assert_int_equal(hpo_hist_count(commit_us), commits);
        assert_int_equal(hpo_hist_count(batch), commits);
        assert_int_equal(atomic_load(&batch->bucket[3]), 1);
        assert_int_equal(atomic_load(&batch->sum), (commits - 1) + 5);
    }
    assert_true(hpo_storage_healthy(st));
    hpo_storage_close(st);

    load_all(f->path, &d);
    assert_int_equal(count_kind(&d, 'S'), 1);
    assert_int_equal(count_kind(&d, 'T'), 4);
    assert_int_equal(count_kind(&d, 'P'), 4);
    for (size_t i = 0; i < d.n; i++) {
        if (d.v[i].kind == 'T' || d.v[i].kind == 'P') {
            assert_true(d.v[i].b != 99);
        }
    }
    dump_free(&d);
}

/*
** A batch of one write runs without a savepoint (the transaction is its
** savepoint): when it fails, everything it did is rolled back, it counts as
** a commit that stored nothing (as a batch whose only write failed), the
** storage stays healthy and the next write commits. A scalar param's
** PARAM_PUT (op.scalar: no look for a side file it replaces) stores its value.
*/
static void test_solo_write_failure(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op base[] = { op_study(1, "s", "{}", 0) };
    struct hpo_error err;
    uint64_t commits0, writes0, commits, writes;
    struct dump d;

    write_ok(st, base, 1);
    hpo_storage_stats(st, &commits0, &writes0);
    {
        /* A trial and its param, then a param of a trial that does not exist. */
        struct hpo_op ops[] = { op_trial(1, 0, 1, NAN, NULL), op_param(1, 0, 0, 0.25),
            op_param(1, 7, 0, 1.0) };

        ops[1].scalar = true;
        hpo_error_clear(&err);
        assert_int_equal(write_ops(st, ops, 3, &err), -EIO);
        assert_non_null(strstr(err.message, "FOREIGN KEY"));
    }
    hpo_storage_stats(st, &commits, &writes);
    assert_int_equal(commits, commits0 + 1);
    assert_int_equal(writes, writes0);
    assert_true(hpo_storage_healthy(st));
    {
        struct hpo_op ops[] = { op_trial(1, 1, 2, 3.5, NULL), op_param(1, 1, 0, 0.75) };

        ops[1].scalar = true;
        write_ok(st, ops, 2);
    }
    hpo_storage_stats(st, &commits, &writes);
    assert_int_equal(commits, commits0 + 2);
    assert_int_equal(writes, writes0 + 1);
    hpo_storage_close(st);

    load_all(f->path, &d);
    assert_int_equal(count_kind(&d, 'S'), 1);
    assert_int_equal(count_kind(&d, 'T'), 1);
    assert_int_equal(count_kind(&d, 'P'), 1);
    for (size_t i = 0; i < d.n; i++) {
        if (d.v[i].kind == 'T') {
            assert_int_equal(d.v[i].b, 1);
            assert_bits(d.v[i].row.value, 3.5);
        } else if (d.v[i].kind == 'P') {
            assert_int_equal(d.v[i].b, 1);
            assert_bits(d.v[i].v, 0.75);
        }
    }
    dump_free(&d);
}

/*
** Pipelined writes (storage.h): hpo_storage_write returns 0 at once with
** the write queued. A pipelined write that fails fails every later write
** of its chain without running it (nothing of them is stored), even one
** waited for; another chain's writes commit. The numbers resolve in order
** and the chain reports its first failure.
*/
/*
** Round commits (hpo_storage_lead_later, hpo_storage_lead): pipelined writes
** queued by a thread in its round stay queued (the writer is not woken)
** until the thread's hpo_storage_lead, which commits them all in one group
** transaction on the calling thread and returns once they resolved; a
** thread with nothing queued since its last lead does nothing.
*/
static void test_round_lead(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_direct(f->path);
    struct hpo_op base = op_study(1, "s", "{}", 0);
    struct hpo_write_chain *a = hpo_storage_chain_new();
    struct hpo_op ops[3];
    struct hpo_write w[3];
    struct hpo_error err;
    uint64_t first, commits0, writes0, commits1, writes1;
    struct dump d;

    assert_non_null(a);
    write_ok(st, &base, 1);
    hpo_storage_stats(st, &commits0, &writes0);
    first = hpo_storage_accepted(st) + 1;
    hpo_storage_lead_later(true);
    hpo_storage_pipeline(true);
    for (int i = 0; i < 3; i++) {
        ops[i] = op_trial(1, i, 2, 0.25 + i, NULL);
        memset(&w[i], 0, sizeof(w[i]));
        w[i].ops = &ops[i];
        w[i].n_ops = 1;
        w[i].chain = a;
        hpo_error_clear(&err);
        assert_int_equal(hpo_storage_write(st, &w[i], &err), 0);
    }
    hpo_storage_pipeline(false);
    hpo_storage_lead_later(false);
    assert_int_equal(hpo_storage_accepted(st), first + 2);
    assert_int_equal(hpo_storage_lead_pending(), first + 2);
    assert_false(hpo_storage_lead(st, NULL, NULL));
    /* Resolved when it returns: committed here (or by a batch it waited for). */
    assert_int_equal(hpo_storage_resolved(st), first + 2);
    assert_int_equal(hpo_storage_lead_pending(), 0);
    assert_true(hpo_storage_chain_idle(a));
    assert_false(hpo_storage_chain_failed(a, 0, 0, NULL));
    hpo_storage_stats(st, &commits1, &writes1);
    assert_int_equal(writes1 - writes0, 3);
    assert_true(commits1 > commits0);
    /* Nothing queued since: a no-op. */
    assert_false(hpo_storage_lead(st, NULL, NULL));
    hpo_storage_close(st);
    hpo_storage_chain_unref(a);

    load_all(f->path, &d);
    assert_int_equal(count_kind(&d, 'T'), 3);
    for (size_t i = 0; i < d.n; i++) {
        if (d.v[i].kind == 'T') {
            assert_bits(d.v[i].row.value, 0.25 + (double)d.v[i].b);
        }
    }
    dump_free(&d);
}

/* Round hand-off: one HTTP thread's round end, leading while another's ends. */
struct round_thread {
    struct hpo_storage *st;
    struct hpo_write_chain *chain;
    struct hpo_op ops[2];
    struct hpo_write w[2];
    atomic_int wakes; /* its wake-up's calls */
    bool handed;      /* what its hpo_storage_lead returned */
};

static void note_wake(void *arg)
{
    atomic_fetch_add(&((struct round_thread *)arg)->wakes, 1);
}

/* Queue `rt`'s two writes as an HTTP thread's round would (lead_later, pipelined). */
static void round_queue(struct round_thread *rt)
{
    struct hpo_error err;

    hpo_storage_lead_later(true);
    hpo_storage_pipeline(true);
    for (int i = 0; i < 2; i++) {
        memset(&rt->w[i], 0, sizeof(rt->w[i]));
        rt->w[i].ops = &rt->ops[i];
        rt->w[i].n_ops = 1;
        rt->w[i].chain = rt->chain;
        hpo_error_clear(&err);
        assert_int_equal(hpo_storage_write(rt->st, &rt->w[i], &err), 0);
    }
    hpo_storage_pipeline(false);
    hpo_storage_lead_later(false);
}

static void *round_thread_main(void *arg)
{
    struct round_thread *rt = arg;

    round_queue(rt);
    rt->handed = hpo_storage_lead(rt->st, note_wake, rt);
    return NULL;
}

/*
** Round hand-off (hpo_storage_lead with a wake-up): thread X's round end
** takes the writer role and its batch waits for a lock held elsewhere; Y's
** round end meanwhile does not wait: it returns true at once with its
** writes still queued. Once the lock goes, X's batch commits; X, as a
** round's leader, leaves Y's writes to Y and wakes it (Y's wake-up called
** once) without committing them; Y's next round end commits them on Y and
** returns false. The study's order holds (X's trials 0 and 1 before Y's 2
** and 3, one chain), and every value is stored exactly. (If the writer
** thread's idle tick took X's writes first, it is the one blocked, X hands
** off as Y does, and the writer leads Y's writes after its batch.)
*/
static void test_round_handoff(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage_options opt = { .busy_timeout_ms = 60000, .no_redo = true };
    struct hpo_storage *st = NULL;
    struct hpo_op base = op_study(1, "s", "{}", 0);
    struct round_thread *x = calloc(1, sizeof(*x)), *y = calloc(1, sizeof(*y));
    struct hpo_error err;
    sqlite3 *other = NULL;
    pthread_t tx;
    uint64_t first;
    struct dump d;
    int i;

    assert_non_null(x);
    assert_non_null(y);
    hpo_error_clear(&err);
    assert_int_equal(hpo_storage_open(f->path, &opt, &st, &err), 0);
    assert_int_equal(hpo_storage_start(st), 0);
    write_ok(st, &base, 1);
    x->st = y->st = st;
    x->chain = hpo_storage_chain_new();
    assert_non_null(x->chain);
    y->chain = x->chain;
    for (i = 0; i < 2; i++) {
        x->ops[i] = op_trial(1, i, 2, 0.125 + i, NULL);
        y->ops[i] = op_trial(1, 2 + i, 2, 10.375 + i, NULL);
    }
    first = hpo_storage_accepted(st) + 1;
    assert_int_equal(sqlite3_open_v2(f->path, &other, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    assert_int_equal(pthread_create(&tx, NULL, round_thread_main, x), 0);
    /* X's writes accepted and taken by a batch (blocked on the lock): up to 30 s. */
    for (i = 0; i < 30000 && (hpo_storage_accepted(st) < first + 1 || hpo__storage_queued(st) > 0);
            i++) {
        usleep(1000);
    }
    assert_true(i < 30000);
    /* Y's round end while the batch runs: handed off at once, nothing resolved. */
    round_queue(y);
    assert_int_equal(hpo_storage_lead_pending(), first + 3);
    assert_true(hpo_storage_lead(st, note_wake, y));
    assert_true(hpo_storage_resolved(st) < first);
    assert_int_equal(hpo__storage_queued(st), 2);
    assert_int_equal(hpo_storage_lead_pending(), first + 3);

    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(other), SQLITE_OK);
    assert_int_equal(pthread_join(tx, NULL), 0);
    if (!x->handed) {
        /* X led: it resolved its own writes only and woke Y for the rest. */
        assert_int_equal(hpo_storage_resolved(st), first + 1);
        assert_int_equal(atomic_load(&y->wakes), 1);
        assert_int_equal(hpo__storage_queued(st), 2);
    }
    assert_int_equal(atomic_load(&x->wakes), 0);
    /* Y's next round end: leads what is left (or finds it resolved), up to 30 s. */
    for (i = 0; i < 30000 && hpo_storage_lead(st, note_wake, y); i++) {
        usleep(1000);
    }
    assert_true(i < 30000);
    assert_int_equal(hpo_storage_resolved(st), first + 3);
    assert_int_equal(hpo_storage_lead_pending(), 0);
    assert_true(hpo_storage_chain_idle(x->chain));
    assert_false(hpo_storage_chain_failed(x->chain, 0, 0, NULL));
    hpo_storage_close(st);
    hpo_storage_chain_unref(x->chain);

    load_all(f->path, &d);
    assert_int_equal(count_kind(&d, 'T'), 4);
    for (size_t k = 0; k < d.n; k++) {
        if (d.v[k].kind == 'T') {
            double want = d.v[k].b < 2 ? 0.125 + (double)d.v[k].b : 10.375 + (double)(d.v[k].b - 2);
            assert_bits(d.v[k].row.value, want);
        }
    }
    dump_free(&d);
    free(x);
    free(y);
}

/*
** The database at `path` holds two trials: study 1's trial 0 (written
** before a failure) valued v1, and study 2's trial 0 valued v2.
*/
static void assert_trial_zeros(const char *path, double v1, double v2)
{
    struct dump d;

    load_all(path, &d);
    assert_int_equal(count_kind(&d, 'T'), 2);
    for (size_t i = 0; i < d.n; i++) {
        if (d.v[i].kind == 'T') {
            assert_int_equal(d.v[i].b, 0);
            assert_bits(d.v[i].row.value, d.v[i].a == 1 ? v1 : v2);
        }
    }
    dump_free(&d);
}

/* Queue n pipelined writes, w[i] of ops[i] on chain[i] (each accepted, none waited for). */
static void pipeline_writes(struct hpo_storage *st, struct hpo_op *ops, struct hpo_write *w,
        struct hpo_write_chain *const *chain, int n)
{
    struct hpo_error err;

    hpo_storage_pipeline(true);
    for (int i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].ops = &ops[i];
        w[i].n_ops = 1;
        w[i].chain = chain[i];
        hpo_error_clear(&err);
        assert_int_equal(hpo_storage_write(st, &w[i], &err), 0);
    }
    hpo_storage_pipeline(false);
}

static void test_pipelined_dependent_failure(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_direct(f->path);
    struct hpo_op base[] = { op_study(1, "taken", "{}", 0), op_study(2, "other", "{}", 0) };
    struct hpo_write_chain *a = hpo_storage_chain_new(), *b = hpo_storage_chain_new();
    struct hpo_op ops[5];
    struct hpo_write w[5];
    struct hpo_write_chain *chain[5] = { a, a, b, a, a };
    struct hpo_error err, cause;
    struct hpo_op late = op_trial(1, 3, 2, 3.0, NULL);
    struct hpo_write lw = { .ops = &late, .n_ops = 1 };
    uint64_t first;
    struct dump d;
    int r;

    assert_non_null(a);
    assert_non_null(b);
    write_ok(st, base, 2);
    assert_true(hpo_storage_pipelines(st));
    /* a: trial 0, a study whose name is taken (fails), trials 1 and 2; b: trial 0. */
    ops[0] = op_trial(1, 0, 2, 0.5, NULL);
    ops[1] = op_study(50, "taken", "{}", 0);
    ops[2] = op_trial(2, 0, 2, 1.5, NULL);
    ops[3] = op_trial(1, 1, 2, 2.5, NULL);
    ops[4] = op_trial(1, 2, 2, 3.5, NULL);
    first = hpo_storage_accepted(st) + 1;
    hpo__storage_pause(st, true);
    pipeline_writes(st, ops, w, chain, 5);
    assert_int_equal(hpo_storage_accepted(st), first + 4);
    assert_true(hpo_storage_resolved(st) < first);
    /* Queued, not run: the batch starts once the writer may lead again. */
    hpo__storage_pause(st, false);
    hpo_storage_chain_wait(a);
    hpo_storage_chain_wait(b);
    assert_int_equal(hpo_storage_resolved(st), first + 4);
    assert_true(hpo_storage_chain_failed(a, 0, 0, &cause));
    assert_int_equal(cause.code, HPO_CONFLICT);
    /* Its first failure is the second write: seen by a window holding it, not by one after. */
    assert_true(hpo_storage_chain_failed(a, first, first + 1, NULL));
    assert_false(hpo_storage_chain_failed(a, first + 1, 0, NULL));
    assert_false(hpo_storage_chain_failed(a, 0, first, NULL));
    assert_false(hpo_storage_chain_failed(b, 0, 0, NULL));
    assert_int_equal(hpo_storage_last_failed(st), first + 4);
    /* A later write of the chain, waited for, fails too without running. */
    lw.chain = a;
    hpo_error_clear(&err);
    r = hpo_storage_write(st, &lw, &err);
    assert_int_equal(r, -EIO);
    assert_int_equal(err.code, HPO_UNAVAILABLE);
    hpo_storage_close(st);
    hpo_storage_chain_unref(a);
    hpo_storage_chain_unref(b);

    load_all(f->path, &d);
    assert_int_equal(count_kind(&d, 'S'), 2);
    dump_free(&d);
    assert_trial_zeros(f->path, 0.5, 1.5);
}

/*
** With the redo log: once a study's pipelined write failed (its append to
** the log could not be written: the file size limit), a later write of
** the same chain fails without reaching the log, so the database never
** holds it; another study's write in the same batch goes on. (Before, the
** later write was appended and applied: a trial the client was refused,
** behind a number never stored.)
*/
static void test_redo_dependent_failure(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op base[] = { op_study(1, "s", "{}", 0), op_study(2, "t", "{}", 0) };
    struct hpo_write_chain *a = hpo_storage_chain_new(), *b = hpo_storage_chain_new();
    struct hpo_op ops[4] = { op_trial(1, 0, 2, 0.5, NULL), op_trial(1, 1, 2, 1.5, NULL),
                             op_trial(1, 2, 2, 2.5, NULL), op_trial(2, 0, 2, 3.5, NULL) };
    struct hpo_write w[4];
    struct rlimit old, small;

    assert_non_null(a);
    assert_non_null(b);
    write_ok(st, base, 2);
    pipeline_writes(st, &ops[0], &w[0], &a, 1);
    hpo_storage_chain_wait(a);
    assert_false(hpo_storage_chain_failed(a, 0, 0, NULL));
    /* Every write of a file fails meanwhile: trial 1's append fails, its chain with it. */
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 1;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    pipeline_writes(st, &ops[1], &w[1], &a, 1);
    hpo_storage_chain_wait(a);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_true(hpo_storage_chain_failed(a, 0, 0, NULL));
    /* Trial 2 of the failed chain and study 2's trial 0, in one batch. */
    hpo__storage_pause(st, true);
    pipeline_writes(st, &ops[2], &w[2], (struct hpo_write_chain *[]){ a, b }, 2);
    hpo__storage_pause(st, false);
    hpo_storage_chain_wait(a);
    hpo_storage_chain_wait(b);
    assert_false(hpo_storage_chain_failed(b, 0, 0, NULL));
    assert_int_equal(hpo_storage_last_failed(st), hpo_storage_resolved(st) - 1);
    hpo_storage_close(st);
    hpo_storage_chain_unref(a);
    hpo_storage_chain_unref(b);
    assert_trial_zeros(f->path, 0.5, 3.5);
}

/*
** A COMMIT that cannot write the WAL (the file size limit stands in for a
** full disk) fails every write of the batch with `unavailable`, leaves
** nothing behind and marks the storage unhealthy until the next commit.
*/
static void test_commit_failure(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op base[] = { op_study(1, "s", "{}", 0) };
    /* Below HPO_BLOB_MIN, so it goes into the WAL (test_commit_failure_unlinks_files
       covers side files). */
    size_t big_len = 512 * 1024;
    unsigned char *big = calloc(1, big_len);
    struct one_write w[2];
    pthread_t threads[2];
    struct rlimit old;
    struct rlimit small;
    uint64_t commits0;
    uint64_t commits;
    struct dump d;

    assert_non_null(big);
    write_ok(st, base, 1);
    memset(w, 0, sizeof(w));
    /* A small trial and a 512 KiB sampler state in one batch. */
    w[0].st = st;
    w[0].ops[0] = op_trial(1, 0, 1, NAN, NULL);
    w[0].n = 1;
    w[1].st = st;
    w[1].ops[0] = (struct hpo_op){ .kind = HPO_OP_SAMPLER_STATE, .study_id = 1, .blob = big,
        .len = big_len };
    w[1].n = 1;

    hpo_storage_stats(st, &commits0, NULL);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 256 * 1024;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    hpo__storage_pause(st, true);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, one_write_thread, &w[i]), 0);
        wait_queued(st, (size_t)i + 1);
    }
    hpo__storage_pause(st, false);
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);

    for (int i = 0; i < 2; i++) {
        assert_int_equal(w[i].result, -EIO);
        assert_int_equal(w[i].err.code, HPO_UNAVAILABLE);
    }
    assert_false(hpo_storage_healthy(st));
    hpo_storage_stats(st, &commits, NULL);
    assert_int_equal(commits, commits0);

    /* The next commit works and health comes back. */
    {
        struct hpo_op ok[] = { op_trial(1, 1, 1, NAN, NULL) };

        write_ok(st, ok, 1);
    }
    assert_true(hpo_storage_healthy(st));
    hpo_storage_close(st);
    free(big);

    load_all(f->path, &d);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.v[0].kind, 'S');
    assert_false(d.v[0].has_bytes);
    assert_int_equal(d.v[1].kind, 'T');
    assert_int_equal(d.v[1].b, 1);
    dump_free(&d);
}

/* Close drains writes still queued: each is committed before the writer stops. */
static void test_close_drains(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op base[] = { op_study(1, "s", "{}", 0) };
    struct one_write w[3];
    pthread_t threads[3];
    struct dump d;

    write_ok(st, base, 1);
    memset(w, 0, sizeof(w));
    hpo__storage_pause(st, true);
    for (int i = 0; i < 3; i++) {
        w[i].st = st;
        w[i].ops[0] = op_trial(1, i, 1, NAN, NULL);
        w[i].n = 1;
        assert_int_equal(pthread_create(&threads[i], NULL, one_write_thread, &w[i]), 0);
    }
    wait_queued(st, 3);
    /* Close unpauses, drains and joins; the waiters wake with their results. */
    hpo_storage_close(st);
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(w[i].result, 0);
    }
    load_all(f->path, &d);
    assert_int_equal(count_kind(&d, 'T'), 3);
    dump_free(&d);
}

static void test_ticks_move_when_idle(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct timespec ms = { 0, 10000000 };
    uint64_t t0 = hpo_storage_ticks(st);
    int i;

    /* The idle writer ticks every 500 ms; wait at most 5 s for two ticks. */
    for (i = 0; i < 500 && hpo_storage_ticks(st) < t0 + 2; i++) {
        nanosleep(&ms, NULL);
    }
    assert_true(hpo_storage_ticks(st) >= t0 + 2);
    hpo_storage_close(st);
}

/* ---- side files for large values ----------------------------------------- */

/* The blob directory of the fixture's database. */
static void blob_dir(const struct fixture *f, char *buf, size_t size)
{
    snprintf(buf, size, "%s.blobs", f->path);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The names in the blob directory, sorted; returns how many (at most `max`). */
static size_t list_files(const struct fixture *f, char names[][64], size_t max)
{
    char dir[200];
    DIR *d;
    size_t n = 0;

    blob_dir(f, dir, sizeof(dir));
    d = opendir(dir);
    assert_non_null(d);
    for (;;) {
        struct dirent *e = readdir(d);

        if (e == NULL) {
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        assert_true(n < max);
        snprintf(names[n++], 64, "%.63s", e->d_name);
    }
    closedir(d);
    qsort(names, n, 64, cmp_str);
    return n;
}

static size_t count_files(const struct fixture *f)
{
    char names[16][64];

    return list_files(f, names, 16);
}

static bool file_exists(const struct fixture *f, const char *name)
{
    char p[300];
    struct stat sb;

    snprintf(p, sizeof(p), "%s.blobs/%s", f->path, name);
    return stat(p, &sb) == 0;
}

/* The text of one BLOB cell from a raw query ("" for NULL), for references. */
static void raw_text(const char *path, const char *sql, char *buf, size_t size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int n;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    n = sqlite3_column_bytes(stmt, 0);
    assert_true((size_t)n < size);
    if (n > 0) {
        memcpy(buf, sqlite3_column_blob(stmt, 0), (size_t)n);
    }
    buf[n] = '\0';
    sqlite3_finalize(stmt);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The file name inside a reference "HPOBLOB1:<name>:<len>:<hash>". */
static void ref_name(const char *ref, char *name, size_t size)
{
    const char *p = ref + strlen(HPO_BLOB_MAGIC);
    const char *colon = strchr(p, ':');

    assert_memory_equal(ref, HPO_BLOB_MAGIC, strlen(HPO_BLOB_MAGIC));
    assert_non_null(colon);
    assert_true((size_t)(colon - p) < size);
    memcpy(name, p, (size_t)(colon - p));
    name[colon - p] = '\0';
}

/* Deterministic bytes that differ with `seed`. */
static unsigned char *make_bytes(size_t len, uint64_t seed)
{
    unsigned char *b = malloc(len);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

    assert_non_null(b);
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)x;
    }
    return b;
}

static struct hpo_op op_state(int64_t study, const void *blob, size_t len)
{
    struct hpo_op op = { .kind = HPO_OP_SAMPLER_STATE, .study_id = study, .blob = blob,
        .len = len };

    return op;
}

static struct hpo_op op_vector(int64_t study, int64_t number, int64_t index, const double *v,
        size_t len)
{
    struct hpo_op op = { .kind = HPO_OP_PARAM_VECTOR, .study_id = study, .number = number,
        .index = index, .vector = v, .len = len };

    return op;
}

/*
** Runs of scalar params (op.scalar) go in one INSERT of up to 8 rows
** (sqlite.c run_params): 11 params, a vector, 2 more, stored as each
** would be alone (NaN as NULL); a later run upserts three of them and adds
** one; a run whose trial does not exist fails its write alone (the FOREIGN
** KEY), nothing of it stored, while the batch's other write commits.
*/
static void test_param_rows(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    static const double vec[3] = { 1.5, -2.5, 3.25 };
    struct hpo_op first[16], second[4], bad[3];
    struct hpo_error err;
    size_t n = 0;
    struct dump d;

    first[n++] = op_study(1, "s", "{}", 0);
    first[n++] = op_trial(1, 0, 1, NAN, NULL);
    for (int i = 0; i < 11; i++) {
        first[n] = op_param(1, 0, i, i == 4 ? NAN : 0.5 * i - 1.0);
        first[n++].scalar = true;
    }
    first[n++] = op_vector(1, 0, 11, vec, 3);
    for (int i = 12; i < 14; i++) {
        first[n] = op_param(1, 0, i, 100.0 + i);
        first[n++].scalar = true;
    }
    write_ok(st, first, n);
    for (int i = 0; i < 4; i++) {
        second[i] = op_param(1, 0, i < 3 ? i : 14, -7.0 - i);
        second[i].scalar = true;
    }
    for (int i = 0; i < 3; i++) {
        bad[i] = op_param(1, 5, i, 1.0);
        bad[i].scalar = true;
    }
    write_ok(st, second, 4);
    hpo_error_clear(&err);
    assert_int_equal(write_ops(st, bad, 3, &err), -EIO);
    assert_non_null(strstr(err.message, "FOREIGN KEY"));
    hpo_storage_close(st);

    load_all(f->path, &d);
    assert_int_equal(count_kind(&d, 'P'), 15);
    for (size_t i = 0; i < d.n; i++) {
        int64_t idx = d.v[i].c;
        if (d.v[i].kind != 'P') {
            continue;
        }
        assert_int_equal(d.v[i].b, 0);
        assert_int_equal(d.v[i].has_bytes, idx == 11);
        if (idx < 3) {
            assert_bits(d.v[i].v, -7.0 - (double)idx);
        } else if (idx == 4) {
            assert_true(isnan(d.v[i].v));
        } else if (idx < 11) {
            assert_bits(d.v[i].v, 0.5 * (double)idx - 1.0);
        } else if (idx == 11) {
            assert_int_equal(d.v[i].len, 3);
            assert_memory_equal(d.v[i].bytes, vec, sizeof(vec));
        } else if (idx < 14) {
            assert_bits(d.v[i].v, 100.0 + (double)idx);
        } else {
            assert_int_equal(idx, 14);
            assert_bits(d.v[i].v, -10.0);
        }
    }
    dump_free(&d);
}

/* A write with no op: when it returns, the writer finished every earlier batch. */
static void settle(struct hpo_storage *st)
{
    write_ok(st, NULL, 0);
}

/* XXH64 agrees with the reference implementation (libxxhash 0.8.1). */
static void test_xxh64_known_values(void **state)
{
    unsigned char buf[1027];

    (void)state;
    for (size_t i = 0; i < 1024; i++) {
        buf[i] = (unsigned char)i;
    }
    memcpy(buf + 1024, "xyz", 3);
    assert_int_equal(hpo__xxh64("", 0), 0xef46db3751d8e999ull);
    assert_int_equal(hpo__xxh64("a", 1), 0xd24ec4f1a98c6e5bull);
    assert_int_equal(hpo__xxh64("abc", 3), 0x44bc2cf5ad770999ull);
    assert_int_equal(hpo__xxh64(buf, sizeof(buf)), 0xe146cb31b65bc21aull);
    /* Fed in pieces of every length from 1 to 67 bytes: the same hash. */
    for (size_t step = 1; step <= 67; step++) {
        struct hpo_xxh64 x;
        hpo__xxh64_init(&x);
        for (size_t at = 0; at < sizeof(buf); at += step) {
            hpo__xxh64_update(&x, buf + at, at + step <= sizeof(buf) ? step : sizeof(buf) - at);
        }
        assert_int_equal(hpo__xxh64_digest(&x), 0xe146cb31b65bc21aull);
    }
    {
        struct hpo_xxh64 x;
        hpo__xxh64_init(&x);
        hpo__xxh64_update(&x, "ab", 2);
        hpo__xxh64_update(&x, "", 0);
        /* An empty part without memory (a sampler's empty step log) after a partial stripe. */
        hpo__xxh64_update(&x, NULL, 0);
        hpo__xxh64_update(&x, "c", 1);
        assert_int_equal(hpo__xxh64_digest(&x), 0x44bc2cf5ad770999ull);
    }
}

/*
** A 24 MB-class state and a vector of 2^17 doubles (exactly HPO_BLOB_MIN
** bytes) go to files, their cells hold references, and they come back bit
** for bit after close and open. One byte less stays inline.
*/
static void test_big_values_in_files(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    size_t n = HPO_BLOB_MIN / sizeof(double);
    size_t state_len = 3 * HPO_BLOB_MIN + 5;
    unsigned char *blob = make_bytes(state_len, 1);
    double *vec = (double *)make_bytes(n * sizeof(double), 2);
    double *small = (double *)make_bytes((n - 1) * sizeof(double), 3);
    unsigned char *inline_state = make_bytes(HPO_BLOB_MIN - 1, 4);
    uint64_t nan_payload = 0x7ff8000000000123ull;
    char names[16][64];
    char ref[200];
    char dir[200];
    struct stat sb;
    struct dump d;

    /* Odd doubles survive: a NaN payload, -0.0, a subnormal. */
    memcpy(&vec[0], &nan_payload, sizeof(double));
    vec[1] = -0.0;
    vec[n - 1] = 5e-324;
    {
        struct hpo_op ops[] = {
            op_study(1, "big", "{}", 1),
            op_study(2, "inline", "{}", 2),
            op_state(1, blob, state_len),
            op_state(2, inline_state, HPO_BLOB_MIN - 1),
            op_trial(1, 0, 1, NAN, NULL),
            op_vector(1, 0, 0, vec, n),
            op_vector(1, 0, 1, small, n - 1),
        };

        write_ok(st, ops, sizeof(ops) / sizeof(ops[0]));
    }
    hpo_storage_close(st);

    /* Two files, mode 0600, in a 0700 directory; the cells are references. */
    blob_dir(f, dir, sizeof(dir));
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(list_files(f, names, 16), 2);
    raw_text(f->path, "SELECT sampler_state FROM studies WHERE id = 1", ref, sizeof(ref));
    assert_true(strlen(ref) < HPO_BLOB_REF_MAX);
    {
        char name[64];
        char p[300];

        ref_name(ref, name, sizeof(name));
        assert_true(file_exists(f, name));
        snprintf(p, sizeof(p), "%s/%s", dir, name);
        assert_int_equal(stat(p, &sb), 0);
        assert_int_equal(sb.st_size, state_len);
        assert_int_equal(sb.st_mode & 0777, 0600);
        assert_int_equal(strncmp(name, "s1-", 3), 0);
    }
    raw_text(f->path, "SELECT value FROM params WHERE idx = 0", ref, sizeof(ref));
    {
        char name[64];

        ref_name(ref, name, sizeof(name));
        assert_true(file_exists(f, name));
    }
    /* The values below the threshold are the bytes themselves. */
    assert_int_equal(raw_int(f->path, "SELECT length(sampler_state) FROM studies WHERE id = 2"),
            HPO_BLOB_MIN - 1);
    assert_int_equal(raw_int(f->path, "SELECT length(value) FROM params WHERE idx = 1"),
            (n - 1) * sizeof(double));

    load_all(f->path, &d);
    assert_int_equal(d.n, 5);
    assert_int_equal(d.v[0].kind, 'S');
    assert_int_equal(d.v[0].len, state_len);
    assert_memory_equal(d.v[0].bytes, blob, state_len);
    assert_int_equal(d.v[1].kind, 'S');
    assert_int_equal(d.v[1].len, HPO_BLOB_MIN - 1);
    assert_memory_equal(d.v[1].bytes, inline_state, HPO_BLOB_MIN - 1);
    assert_int_equal(d.v[3].kind, 'P');
    assert_true(d.v[3].has_bytes);
    assert_int_equal(d.v[3].len, n);
    assert_memory_equal(d.v[3].bytes, vec, n * sizeof(double));
    assert_int_equal(d.v[4].kind, 'P');
    assert_int_equal(d.v[4].len, n - 1);
    assert_memory_equal(d.v[4].bytes, small, (n - 1) * sizeof(double));
    dump_free(&d);
    free(blob);
    free(vec);
    free(small);
    free(inline_state);
}

/*
** Small values stay inline and make no file, except one that starts like a
** reference: it goes to a file, so no inline value is ever read as one.
*/
static void test_small_values_inline(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    static const char tricky[] = "HPOBLOB1:s1-0000000000000001:8:0000000000000000";
    static const unsigned char plain[] = { 1, 2, 3 };
    double v[3] = { 1.0, 2.0, 3.0 };
    char ref[200];
    struct dump d;

    {
        struct hpo_op ops[] = {
            op_study(1, "a", "{}", 1),
            op_study(2, "b", "{}", 2),
            op_state(1, plain, sizeof(plain)),
            op_trial(1, 0, 1, NAN, NULL),
            op_vector(1, 0, 0, v, 3),
        };

        write_ok(st, ops, sizeof(ops) / sizeof(ops[0]));
    }
    settle(st);
    assert_int_equal(count_files(f), 0);
    {
        struct hpo_op ops[] = { op_state(2, tricky, sizeof(tricky) - 1) };

        write_ok(st, ops, 1);
    }
    hpo_storage_close(st);
    assert_int_equal(count_files(f), 1);
    raw_text(f->path, "SELECT sampler_state FROM studies WHERE id = 2", ref, sizeof(ref));
    assert_string_not_equal(ref, tricky);
    assert_int_equal(raw_int(f->path, "SELECT length(sampler_state) FROM studies WHERE id = 1"),
            3);

    load_all(f->path, &d);
    assert_int_equal(count_kind(&d, 'S'), 2);
    assert_int_equal(d.v[0].len, 3);
    assert_memory_equal(d.v[0].bytes, plain, 3);
    assert_int_equal(d.v[1].len, sizeof(tricky) - 1);
    assert_memory_equal(d.v[1].bytes, tricky, sizeof(tricky) - 1);
    assert_int_equal(d.v[3].len, 3);
    assert_memory_equal(d.v[3].bytes, v, sizeof(v));
    dump_free(&d);
}

/*
** A committed write that replaces a state or a param held in a file unlinks
** the old file; a replacing write that fails leaves it (it is still the
** stored value).
*/
static void test_replace_unlinks_old_file(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    size_t len = HPO_BLOB_MIN + 100;
    unsigned char *a = make_bytes(len, 10);
    unsigned char *b = make_bytes(len, 11);
    size_t n = HPO_BLOB_MIN / sizeof(double) + 1;
    double *v = (double *)make_bytes(n * sizeof(double), 12);
    char first[16][64];
    char names[16][64];
    char old_state[64];
    char new_state[64];
    char vec_file[64];
    char ref[200];
    struct hpo_error err;
    struct dump d;

    {
        struct hpo_op ops[] = {
            op_study(1, "s", "{}", 1),
            op_state(1, a, len),
            op_trial(1, 0, 1, NAN, NULL),
            op_vector(1, 0, 0, v, n),
        };

        write_ok(st, ops, 4);
    }
    settle(st);
    assert_int_equal(list_files(f, first, 16), 2);
    raw_text(f->path, "SELECT sampler_state FROM studies", ref, sizeof(ref));
    ref_name(ref, old_state, sizeof(old_state));
    raw_text(f->path, "SELECT value FROM params", ref, sizeof(ref));
    ref_name(ref, vec_file, sizeof(vec_file));

    /* A failing write replaces the state, then conflicts: nothing changes. */
    {
        struct hpo_op ops[] = { op_state(1, b, len), op_study(9, "s", "{}", 0) };

        hpo_error_clear(&err);
        assert_int_equal(write_ops(st, ops, 2, &err), -EEXIST);
    }
    settle(st);
    assert_int_equal(list_files(f, names, 16), 2);
    assert_string_equal(names[0], first[0]);
    assert_string_equal(names[1], first[1]);

    /*
    ** The state replaced by another big one: one new file; the old one, which
    ** nothing references now, is kept as a spare for the next state.
    */
    {
        struct hpo_op ops[] = { op_state(1, b, len) };

        write_ok(st, ops, 1);
    }
    settle(st);
    assert_int_equal(count_files(f), 3);
    raw_text(f->path, "SELECT sampler_state FROM studies", ref, sizeof(ref));
    ref_name(ref, new_state, sizeof(new_state));
    assert_string_not_equal(new_state, old_state);
    assert_true(file_exists(f, new_state));
    assert_true(file_exists(f, old_state));
    assert_true(file_exists(f, vec_file));

    /* The next state overwrites the spare under a fresh name: still three files. */
    {
        struct hpo_op ops[] = { op_state(1, a, len) };

        write_ok(st, ops, 1);
    }
    settle(st);
    assert_int_equal(count_files(f), 3);
    raw_text(f->path, "SELECT sampler_state FROM studies", ref, sizeof(ref));
    ref_name(ref, names[0], sizeof(names[0]));
    assert_string_not_equal(names[0], old_state);
    assert_string_not_equal(names[0], new_state);
    assert_true(file_exists(f, names[0]));
    assert_false(file_exists(f, old_state));
    assert_true(file_exists(f, new_state));
    /* Closing removes the spares; the rewritten file reads back as `a`. */
    hpo_storage_close(st);
    assert_int_equal(count_files(f), 2);
    load_all(f->path, &d);
    assert_int_equal(d.v[0].len, len);
    assert_memory_equal(d.v[0].bytes, a, len);
    dump_free(&d);
    st = open_started(f->path);

    /* The vector replaced by a scalar (a shared vector's reference), the state by a small one. */
    {
        struct hpo_op ops[] = { op_param(1, 0, 0, 0.0), op_state(1, "x", 1) };

        write_ok(st, ops, 2);
    }
    settle(st);
    assert_int_equal(count_files(f), 1); /* the replaced state, a spare */
    hpo_storage_close(st);
    assert_int_equal(count_files(f), 0);

    load_all(f->path, &d);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.v[0].len, 1);
    assert_memory_equal(d.v[0].bytes, "x", 1);
    assert_false(d.v[2].has_bytes);
    assert_bits(d.v[2].v, 0.0);
    dump_free(&d);
    free(a);
    free(b);
    free(v);
}

/* A param delete (retain_vectors) drops the row and its side file; a missing row is fine. */
static void test_param_delete_unlinks_file(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    size_t n = HPO_BLOB_MIN / sizeof(double) + 1;
    double *v = (double *)make_bytes(n * sizeof(double), 13);
    struct dump d;

    {
        struct hpo_op ops[] = {
            op_study(1, "s", "{}", 1),
            op_trial(1, 0, 2, 1.0, NULL),
            op_vector(1, 0, 0, v, n),
            op_param(1, 0, 1, 0.5),
        };

        write_ok(st, ops, 4);
    }
    settle(st);
    assert_int_equal(count_files(f), 1);
    {
        struct hpo_op del = { .kind = HPO_OP_PARAM_DELETE, .study_id = 1, .number = 0,
            .index = 0 };
        struct hpo_op again = del;
        struct hpo_op ops[] = { del, again };

        write_ok(st, ops, 2);
    }
    settle(st);
    assert_int_equal(count_files(f), 0);
    hpo_storage_close(st);
    load_all(f->path, &d);
    /* The study, the trial and the scalar param remain; the vector is gone. */
    assert_int_equal(d.n, 3);
    assert_false(d.v[2].has_bytes);
    assert_bits(d.v[2].v, 0.5);
    dump_free(&d);
    free(v);
}

/* A state cleared to NULL and a study deleted take their files along; other studies' stay. */
static void test_study_delete_unlinks_files(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    size_t n = HPO_BLOB_MIN / sizeof(double) * 2;
    double *v = (double *)make_bytes(n * sizeof(double), 20);
    unsigned char *blob = make_bytes(2 * HPO_BLOB_MIN, 21);
    char names[16][64];
    struct dump d;

    {
        struct hpo_op ops[] = {
            op_study(1, "gone", "{}", 1),
            op_study(2, "kept", "{}", 2),
            op_state(1, blob, 2 * HPO_BLOB_MIN),
            op_state(2, blob, 2 * HPO_BLOB_MIN),
            op_trial(1, 0, 1, NAN, NULL),
            op_trial(1, 1, 1, NAN, NULL),
            op_trial(2, 0, 1, NAN, NULL),
            op_vector(1, 0, 0, v, n),
            op_vector(1, 1, 0, v, n),
            op_vector(2, 0, 0, v, n),
        };

        write_ok(st, ops, sizeof(ops) / sizeof(ops[0]));
    }
    settle(st);
    assert_int_equal(count_files(f), 5);
    {
        struct hpo_op del = { .kind = HPO_OP_STUDY_DELETE, .study_id = 1 };

        write_ok(st, &del, 1);
    }
    settle(st);
    /* Study 2's two files remain, named after it. */
    assert_int_equal(list_files(f, names, 16), 2);
    assert_int_equal(strncmp(names[0], "s2-", 3), 0);
    assert_int_equal(strncmp(names[1], "s2-", 3), 0);
    {
        struct hpo_op clear = op_state(2, NULL, 0);

        write_ok(st, &clear, 1);
    }
    settle(st);
    assert_int_equal(count_files(f), 2); /* the vector, and the cleared state as a spare */
    hpo_storage_close(st);
    assert_int_equal(count_files(f), 1);

    load_all(f->path, &d);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.v[0].a, 2);
    assert_false(d.v[0].has_bytes);
    assert_int_equal(d.v[2].len, n);
    assert_memory_equal(d.v[2].bytes, v, n * sizeof(double));
    dump_free(&d);
    free(v);
    free(blob);
}

/*
** One batch of three writes with big values; the middle one fails after
** writing its file (a conflict), and a sampler state for a missing study
** fails before writing one. Only the successful writes' files remain.
*/
static void test_failing_write_leaves_no_file(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    size_t len = HPO_BLOB_MIN;
    unsigned char *b0 = make_bytes(len, 30);
    unsigned char *b1 = make_bytes(len, 31);
    unsigned char *b2 = make_bytes(len, 32);
    struct hpo_op base[] = { op_study(1, "s", "{}", 0), op_study(2, "t", "{}", 0) };
    struct one_write w[3];
    pthread_t threads[3];
    struct hpo_error err;
    struct dump d;

    write_ok(st, base, 2);
    memset(w, 0, sizeof(w));
    w[0].ops[0] = op_state(1, b0, len);
    w[0].n = 1;
    w[1].ops[0] = op_state(2, b1, len);
    w[1].ops[1] = op_study(3, "s", "{}", 0);
    w[1].n = 2;
    w[2].ops[0] = op_state(2, b2, len);
    w[2].n = 1;
    hpo__storage_pause(st, true);
    for (int i = 0; i < 3; i++) {
        w[i].st = st;
        assert_int_equal(pthread_create(&threads[i], NULL, one_write_thread, &w[i]), 0);
        wait_queued(st, (size_t)i + 1);
    }
    hpo__storage_pause(st, false);
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_int_equal(w[0].result, 0);
    assert_int_equal(w[1].result, -EEXIST);
    assert_int_equal(w[2].result, 0);
    {
        struct hpo_op missing = op_state(9, b0, len);

        hpo_error_clear(&err);
        assert_int_equal(write_ops(st, &missing, 1, &err), -ENOENT);
        assert_int_equal(err.code, HPO_NOT_FOUND);
    }
    hpo_storage_close(st);
    assert_int_equal(count_files(f), 2);

    load_all(f->path, &d);
    assert_int_equal(d.n, 2);
    assert_memory_equal(d.v[0].bytes, b0, len);
    assert_memory_equal(d.v[1].bytes, b2, len);
    dump_free(&d);
    free(b0);
    free(b1);
    free(b2);
}

/*
** A file that cannot be written (the file size limit stands in for a full
** disk) fails its write alone with `unavailable`, naming the file, and
** leaves nothing; the rest of the batch commits.
*/
static void test_file_write_failure(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op base[] = { op_study(1, "s", "{}", 0) };
    unsigned char *big = make_bytes(HPO_BLOB_MIN, 40);
    struct one_write w[2];
    pthread_t threads[2];
    struct rlimit old;
    struct rlimit small;
    struct dump d;

    write_ok(st, base, 1);
    memset(w, 0, sizeof(w));
    w[0].st = st;
    w[0].ops[0] = op_trial(1, 0, 1, NAN, NULL);
    w[0].n = 1;
    w[1].st = st;
    w[1].ops[0] = op_state(1, big, HPO_BLOB_MIN);
    w[1].n = 1;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 256 * 1024;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    hpo__storage_pause(st, true);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, one_write_thread, &w[i]), 0);
        wait_queued(st, (size_t)i + 1);
    }
    hpo__storage_pause(st, false);
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);

    assert_int_equal(w[0].result, 0);
    assert_int_equal(w[1].result, -EIO);
    assert_int_equal(w[1].err.code, HPO_UNAVAILABLE);
    assert_non_null(strstr(w[1].err.message, "hpod.db.blobs/s1-"));
    hpo_storage_close(st);
    assert_int_equal(count_files(f), 0);
    load_all(f->path, &d);
    assert_int_equal(d.n, 2);
    assert_false(d.v[0].has_bytes);
    dump_free(&d);
    free(big);
}

/*
** A batch whose COMMIT cannot write the WAL fails as a whole, and the file
** its first write wrote (below the size limit) is unlinked.
*/
static void test_commit_failure_unlinks_files(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    struct hpo_op base[] = { op_study(1, "s", "{}", 0), op_study(2, "t", "{}", 0) };
    size_t inline_len = HPO_BLOB_MIN - 4096;
    unsigned char *file_blob = make_bytes(HPO_BLOB_MIN, 50);
    unsigned char *inline_blob = make_bytes(inline_len, 51);
    double *inline_vec = (double *)make_bytes(inline_len, 52);
    struct one_write w[3];
    pthread_t threads[3];
    struct rlimit old;
    struct rlimit small;
    struct dump d;

    write_ok(st, base, 2);
    memset(w, 0, sizeof(w));
    w[0].ops[0] = op_state(1, file_blob, HPO_BLOB_MIN);
    w[0].n = 1;
    w[1].ops[0] = op_state(2, inline_blob, inline_len);
    w[1].n = 1;
    w[2].ops[0] = op_trial(1, 0, 1, NAN, NULL);
    w[2].ops[1] = op_vector(1, 0, 0, inline_vec, inline_len / sizeof(double));
    w[2].n = 2;
    /* The file fits under the limit; the WAL with two inline values does not. */
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = HPO_BLOB_MIN + HPO_BLOB_MIN / 2;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    hpo__storage_pause(st, true);
    for (int i = 0; i < 3; i++) {
        w[i].st = st;
        assert_int_equal(pthread_create(&threads[i], NULL, one_write_thread, &w[i]), 0);
        wait_queued(st, (size_t)i + 1);
    }
    hpo__storage_pause(st, false);
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);

    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i].result, -EIO);
        assert_int_equal(w[i].err.code, HPO_UNAVAILABLE);
    }
    assert_false(hpo_storage_healthy(st));
    assert_int_equal(count_files(f), 0);
    /* The next commit works, with a new file. */
    {
        struct hpo_op ok[] = { op_state(1, file_blob, HPO_BLOB_MIN) };

        write_ok(st, ok, 1);
    }
    assert_true(hpo_storage_healthy(st));
    hpo_storage_close(st);
    assert_int_equal(count_files(f), 1);
    load_all(f->path, &d);
    assert_int_equal(d.n, 2);
    assert_memory_equal(d.v[0].bytes, file_blob, HPO_BLOB_MIN);
    assert_false(d.v[1].has_bytes);
    dump_free(&d);
    free(file_blob);
    free(inline_blob);
    free(inline_vec);
}

/*
** A file of ours that no cell references (a crash between the file and its
** commit) is removed at open; referenced files and foreign names stay, and
** new names continue past every name seen.
*/
static void test_leftover_removed_at_open(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    unsigned char *blob = make_bytes(HPO_BLOB_MIN, 60);
    char names[16][64];
    char kept[64];
    char p[300];
    int fd;

    {
        struct hpo_op ops[] = { op_study(1, "s", "{}", 0), op_state(1, blob, HPO_BLOB_MIN) };

        write_ok(st, ops, 2);
    }
    hpo_storage_close(st);
    assert_int_equal(list_files(f, names, 16), 1);
    snprintf(kept, sizeof(kept), "%s", names[0]);
    snprintf(p, sizeof(p), "%s.blobs/s1-00000000000000ff", f->path);
    fd = open(p, O_CREAT | O_WRONLY | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, blob, 100), 100);
    close(fd);
    snprintf(p, sizeof(p), "%s.blobs/notes.txt", f->path);
    fd = open(p, O_CREAT | O_WRONLY | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(count_files(f), 3);

    st = open_started(f->path);
    assert_int_equal(list_files(f, names, 16), 2);
    assert_string_equal(names[0], "notes.txt");
    assert_string_equal(names[1], kept);
    {
        struct hpo_op ops[] = { op_state(1, blob, HPO_BLOB_MIN) };

        write_ok(st, ops, 1);
    }
    hpo_storage_close(st);
    assert_int_equal(list_files(f, names, 16), 2);
    /* The new name's counter comes after the removed leftover's 0xff. */
    assert_true(strcmp(names[1], "s1-0000000000000100") >= 0);
    free(blob);
}

/* Open a storage, load, and expect a failure whose message holds `needle`. */
static void load_fails(const struct fixture *f, const char *needle)
{
    struct hpo_storage *st = open_ok(f->path);
    struct hpo_error err;
    struct dump d;
    int r;

    memset(&d, 0, sizeof(d));
    hpo_error_clear(&err);
    r = hpo_storage_load(st, &all_cbs, &d, &err);
    assert_true(r < 0);
    assert_int_equal(err.code, HPO_INTERNAL);
    if (strstr(err.message, needle) == NULL) {
        print_error("message: %s\n", err.message);
    }
    assert_non_null(strstr(err.message, needle));
    dump_free(&d);
    hpo_storage_close(st);
}

/* A missing, short or altered file fails the load with a message naming it. */
static void test_damaged_file_fails_load(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    size_t n = HPO_BLOB_MIN / sizeof(double);
    double *v = (double *)make_bytes(n * sizeof(double), 70);
    char ref[200];
    char name[64];
    char p[300];
    int fd;

    {
        struct hpo_op ops[] = {
            op_study(1, "s", "{}", 0),
            op_trial(1, 4, 1, NAN, NULL),
            op_vector(1, 4, 0, v, n),
        };

        write_ok(st, ops, 3);
    }
    hpo_storage_close(st);
    raw_text(f->path, "SELECT value FROM params", ref, sizeof(ref));
    ref_name(ref, name, sizeof(name));
    snprintf(p, sizeof(p), "%s.blobs/%s", f->path, name);

    /* One flipped byte: the checksum. */
    fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\x55", 1, 1000), 1);
    close(fd);
    load_fails(f, "checksum");
    load_fails(f, name);
    load_fails(f, "trial 4 of study 1");

    /* Short. */
    assert_int_equal(truncate(p, 1000), 0);
    load_fails(f, "has 1000 bytes");

    /* Missing: the reference stays (the open's sweep removes files, never cells). */
    assert_int_equal(unlink(p), 0);
    load_fails(f, name);
    load_fails(f, "No such file");
    free(v);
}

/* synchronous FULL takes the fdatasync and directory fsync path; values round-trip. */
static void test_big_values_synchronous_full(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage_options opt = { .synchronous_full = true };
    struct hpo_storage *st = NULL;
    unsigned char *blob = make_bytes(HPO_BLOB_MIN + 1, 80);
    struct hpo_error err;
    struct dump d;

    assert_int_equal(hpo_storage_open(f->path, &opt, &st, &err), 0);
    assert_int_equal(hpo_storage_start(st), 0);
    {
        struct hpo_op ops[] = { op_study(1, "s", "{}", 0), op_state(1, blob, HPO_BLOB_MIN + 1) };

        write_ok(st, ops, 2);
    }
    hpo_storage_close(st);
    assert_int_equal(count_files(f), 1);
    load_all(f->path, &d);
    assert_int_equal(d.v[0].len, HPO_BLOB_MIN + 1);
    assert_memory_equal(d.v[0].bytes, blob, HPO_BLOB_MIN + 1);
    dump_free(&d);
    free(blob);
}

/* The length a study's state reference names, and its file's name. */
static size_t state_ref(const struct fixture *f, int64_t study, char *name, size_t size)
{
    char sql[100];
    char ref[200];
    const char *len;

    snprintf(sql, sizeof(sql), "SELECT sampler_state FROM studies WHERE id = %lld",
            (long long)study);
    raw_text(f->path, sql, ref, sizeof(ref));
    ref_name(ref, name, size);
    len = strchr(ref + strlen(HPO_BLOB_MAGIC), ':');
    assert_non_null(len);
    return (size_t)strtoull(len + 1, NULL, 10);
}

static off_t file_size(const struct fixture *f, const char *name)
{
    char p[300];
    struct stat sb;

    snprintf(p, sizeof(p), "%s.blobs/%s", f->path, name);
    assert_int_equal(stat(p, &sb), 0);
    return sb.st_size;
}

/*
** A state written with pieces to append (op.append, the gradient sampler's
** records): the state's file is extended and its cell names the longer
** length, the whole state (op.parts) is not written. A write that fails
** after its append cuts the file back. Once the appended bytes would pass
** the whole state's size, the whole state goes to a new file. Whatever was
** stored reads back bit for bit after a restart, and synchronous FULL's
** lazily flushed vector files too.
*/
static void test_state_appends(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage_options opt = { .synchronous_full = true };
    struct hpo_storage *st = NULL;
    size_t whole = HPO_BLOB_MIN + 100, rec = HPO_BLOB_MIN / 3;
    unsigned char *a = make_bytes(whole, 90), *b = make_bytes(whole, 91);
    unsigned char *r1 = make_bytes(rec, 92), *r2 = make_bytes(rec, 93), *r3 = make_bytes(rec, 94);
    unsigned char *want = malloc(whole + 3 * rec);
    double *vec = (double *)make_bytes(HPO_BLOB_MIN, 95);
    struct hpo_part whole_a = { a, whole }, whole_b = { b, whole };
    struct hpo_part recs[3][2] = { { { r1, 10 }, { r1 + 10, rec - 10 } }, { { r2, rec } },
        { { r3, rec } } };
    char name[64], name2[64];
    struct hpo_error err;
    struct dump d;

    assert_non_null(want);
    assert_int_equal(hpo_storage_open(f->path, &opt, &st, &err), 0);
    assert_int_equal(hpo_storage_start(st), 0);
    {
        struct hpo_op ops[] = { op_study(1, "s", "{}", 0), op_trial(1, 0, 1, NAN, NULL),
            op_vector(1, 0, 0, vec, HPO_BLOB_MIN / sizeof(double)),
            { .kind = HPO_OP_SAMPLER_STATE, .study_id = 1, .parts = &whole_a, .n_parts = 1 } };
        ops[2].lazy = true;
        write_ok(st, ops, 4);
    }
    assert_int_equal(state_ref(f, 1, name, sizeof(name)), whole);
    /* Two records appended: the file grows, b (the whole state) is never written. */
    for (int i = 0; i < 2; i++) {
        struct hpo_op op = { .kind = HPO_OP_SAMPLER_STATE, .study_id = 1, .parts = &whole_b,
            .n_parts = 1, .append = recs[i], .n_append = i == 0 ? 2 : 1 };
        write_ok(st, &op, 1);
        assert_int_equal(state_ref(f, 1, name2, sizeof(name2)), whole + (size_t)(i + 1) * rec);
        assert_string_equal(name2, name);
    }
    /* An append in a write that then fails is cut back. */
    {
        struct hpo_op ops[] = { { .kind = HPO_OP_SAMPLER_STATE, .study_id = 1, .parts = &whole_b,
                                        .n_parts = 1, .append = recs[2], .n_append = 1 },
            op_state(77, "x", 1) };
        assert_true(write_ops(st, ops, 2, &err) < 0);
        settle(st);
        assert_int_equal(state_ref(f, 1, name2, sizeof(name2)), whole + 2 * rec);
        assert_int_equal(file_size(f, name), (off_t)(whole + 2 * rec));
    }
    hpo_storage_close(st);
    memcpy(want, a, whole);
    memcpy(want + whole, r1, rec);
    memcpy(want + whole + rec, r2, rec);
    load_all(f->path, &d);
    assert_int_equal(d.v[0].kind, 'S');
    assert_int_equal(d.v[0].len, whole + 2 * rec);
    assert_memory_equal(d.v[0].bytes, want, whole + 2 * rec);
    assert_int_equal(d.v[2].kind, 'P');
    assert_memory_equal(d.v[2].bytes, vec, HPO_BLOB_MIN);
    dump_free(&d);
    /* After a restart nothing is known to extend: the whole state, in a new file. */
    assert_int_equal(hpo_storage_open(f->path, &opt, &st, &err), 0);
    assert_int_equal(hpo_storage_start(st), 0);
    {
        struct hpo_op op = { .kind = HPO_OP_SAMPLER_STATE, .study_id = 1, .parts = &whole_b,
            .n_parts = 1, .append = recs[2], .n_append = 1 };
        write_ok(st, &op, 1);
        assert_int_equal(state_ref(f, 1, name2, sizeof(name2)), whole);
        assert_string_not_equal(name2, name);
        /* The next three fit in its size, a fourth does not: whole again, elsewhere. */
        write_ok(st, &op, 1);
        write_ok(st, &op, 1);
        write_ok(st, &op, 1);
        assert_int_equal(state_ref(f, 1, name, sizeof(name)), whole + 3 * rec);
        assert_string_equal(name, name2);
        write_ok(st, &op, 1);
        assert_int_equal(state_ref(f, 1, name, sizeof(name)), whole);
        assert_string_not_equal(name, name2);
    }
    hpo_storage_close(st);
    load_all(f->path, &d);
    assert_memory_equal(d.v[0].bytes, b, whole);
    dump_free(&d);
    free(a);
    free(b);
    free(r1);
    free(r2);
    free(r3);
    free(want);
    free(vec);
}

/*
** Side files are written a MiB at a time, each piece's writeback started
** (synchronous FULL) and, for an append, hashed as it goes: a state in parts
** whose edges fall anywhere against those pieces, and records appended to
** it likewise, read back bit for bit with their checksums, and the file
** holds exactly the referenced bytes. In both modes.
*/
static void test_pieces_across_chunks(void **state)
{
    struct fixture *f = *state;
    const size_t mib = (size_t)1 << 20;
    size_t lens[4] = { 7, 2 * mib + 3, mib - 1, 5 };
    size_t rec_lens[2] = { 32, mib + 9 }; /* two fit in the whole state's size */
    size_t whole = lens[0] + lens[1] + lens[2] + lens[3], rec = rec_lens[0] + rec_lens[1];

    for (int full = 0; full < 2; full++) {
        struct hpo_storage_options opt = { .synchronous_full = full == 1 };
        struct hpo_storage *st = NULL;
        unsigned char *a = make_bytes(whole, 200 + (uint64_t)full);
        unsigned char *r = make_bytes(2 * rec, 210 + (uint64_t)full);
        struct hpo_part parts[4], recs[2][2];
        size_t at = 0;
        char name[64];
        struct hpo_error err;
        struct dump d;

        for (int i = 0; i < 4; i++) {
            parts[i] = (struct hpo_part){ a + at, lens[i] };
            at += lens[i];
        }
        for (int k = 0; k < 2; k++) {
            recs[k][0] = (struct hpo_part){ r + (size_t)k * rec, rec_lens[0] };
            recs[k][1] = (struct hpo_part){ r + (size_t)k * rec + rec_lens[0], rec_lens[1] };
        }
        unlink(f->path);
        assert_int_equal(hpo_storage_open(f->path, &opt, &st, &err), 0);
        assert_int_equal(hpo_storage_start(st), 0);
        {
            struct hpo_op ops[] = { op_study(1, "s", "{}", 0),
                { .kind = HPO_OP_SAMPLER_STATE, .study_id = 1, .parts = parts, .n_parts = 4 } };
            write_ok(st, ops, 2);
        }
        assert_int_equal(state_ref(f, 1, name, sizeof(name)), whole);
        assert_int_equal(file_size(f, name), (off_t)whole);
        for (int k = 0; k < 2; k++) {
            struct hpo_op op = { .kind = HPO_OP_SAMPLER_STATE, .study_id = 1, .parts = parts,
                .n_parts = 4, .append = recs[k], .n_append = 2 };
            write_ok(st, &op, 1);
        }
        assert_int_equal(state_ref(f, 1, name, sizeof(name)), whole + 2 * rec);
        assert_int_equal(file_size(f, name), (off_t)(whole + 2 * rec));
        hpo_storage_close(st);
        load_all(f->path, &d);
        assert_int_equal(d.v[0].kind, 'S');
        assert_int_equal(d.v[0].len, whole + 2 * rec);
        assert_memory_equal(d.v[0].bytes, a, whole);
        assert_memory_equal((unsigned char *)d.v[0].bytes + whole, r, 2 * rec);
        dump_free(&d);
        free(a);
        free(r);
        {
            char p2[300];
            snprintf(p2, sizeof(p2), "%s-wal", f->path);
            unlink(p2);
            snprintf(p2, sizeof(p2), "%s-shm", f->path);
            unlink(p2);
            snprintf(p2, sizeof(p2), "%s.blobs/%s", f->path, name);
            unlink(p2);
        }
    }
}

/*
** synchronous FULL on a file: a write returns only once a flush covers it
** (its ticket is flushed at return); with hpo_storage_defer_flush it may
** return before, and its ticket is flushed by the flusher within a bound.
** Replacing a side file waits for the flush before the old file goes.
*/
static void test_pipelined_flush_tickets(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage_options opt = { .synchronous_full = true };
    struct hpo_storage *st = NULL;
    unsigned char *blob = make_bytes(HPO_BLOB_MIN + 1, 81);
    struct hpo_error err;
    uint64_t t;
    struct dump d;

    assert_int_equal(hpo_storage_open(f->path, &opt, &st, &err), 0);
    assert_int_equal(hpo_storage_start(st), 0);
    assert_int_equal(hpo_storage_flush_ticket(st), 0);
    {
        struct hpo_op ops[] = { op_study(1, "s", "{}", 0) };

        write_ok(st, ops, 1);
    }
    t = hpo_storage_flush_ticket(st);
    assert_true(t >= 1);
    assert_true(hpo_storage_flushed(st, t));
    hpo_storage_defer_flush(true);
    for (int i = 0; i < 20; i++) {
        struct hpo_op ops[] = { op_state(1, blob, i % 2 == 0 ? HPO_BLOB_MIN + 1 : 10) };

        write_ok(st, ops, 1);
    }
    hpo_storage_defer_flush(false);
    t = hpo_storage_flush_ticket(st);
    assert_true(t >= 21);
    for (int i = 0; i < 5000 && !hpo_storage_flushed(st, t); i++) {
        usleep(1000);
    }
    assert_true(hpo_storage_flushed(st, t));
    hpo_storage_close(st);
    /* The last state is the short one: no side file is left. */
    assert_int_equal(count_files(f), 0);
    load_all(f->path, &d);
    assert_int_equal(d.v[0].len, 10);
    dump_free(&d);
    free(blob);
}

/* The reader connection follows shared-vector references to a vector held in a file. */
static void test_reader_reads_file_vectors(void **state)
{
    struct fixture *f = *state;
    struct hpo_storage *st = open_started(f->path);
    size_t n = HPO_BLOB_MIN / sizeof(double) + 3;
    double *v = (double *)make_bytes(n * sizeof(double), 90);
    double *got = calloc(n, sizeof(double));
    struct hpo_storage_reader *rd = hpo_storage_reader_create(f->path);
    struct hpo_error err;
    char ref[200];
    char name[64];
    char p[300];

    assert_non_null(got);
    assert_non_null(rd);
    {
        struct hpo_op ops[] = {
            op_study(1, "s", "{}", 0),
            op_trial(1, 0, 2, 1.0, NULL),
            op_trial(1, 1, 2, 2.0, NULL),
            op_vector(1, 0, 0, v, n),
            op_param(1, 1, 0, 0.0), /* trial 1 shares trial 0's vector */
        };

        write_ok(st, ops, 5);
    }
    hpo_error_clear(&err);
    assert_int_equal(hpo_storage_read_vector(rd, 1, 1, 0, got, n, &err), 0);
    assert_memory_equal(got, v, n * sizeof(double));
    /* A wrong length is not_found, as for an inline vector. */
    assert_int_equal(hpo_storage_read_vector(rd, 1, 0, 0, got, n - 1, &err), -ENOENT);
    assert_int_equal(err.code, HPO_NOT_FOUND);
    hpo_storage_close(st);

    /* A missing file is an error that names it. */
    raw_text(f->path, "SELECT value FROM params WHERE number = 0", ref, sizeof(ref));
    ref_name(ref, name, sizeof(name));
    snprintf(p, sizeof(p), "%s.blobs/%s", f->path, name);
    assert_int_equal(unlink(p), 0);
    hpo_error_clear(&err);
    assert_true(hpo_storage_read_vector(rd, 1, 1, 0, got, n, &err) < 0);
    assert_non_null(strstr(err.message, name));
    hpo_storage_reader_destroy(rd);
    free(v);
    free(got);
}

/* ---- the redo log (redo.h) ---------------------------------------------- */

/* What a replay delivered: each record's number and its writes' ops, deep-compared after. */
struct replayed {
    uint64_t lsn[8];
    size_t n;
    size_t n_writes[8];
    size_t n_ops[8];
    bool same[8]; /* the record's ops equal the ones appended (set by the callback) */
    const struct hpo_write *want[8];
};

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool op_eq(const struct hpo_op *a, const struct hpo_op *b)
{
    bool same = a->kind == b->kind && a->study_id == b->study_id && a->number == b->number &&
            a->index == b->index && a->step == b->step && a->len == b->len &&
            a->scalar == b->scalar && str_eq(a->name, b->name) && str_eq(a->text, b->text) &&
            (isnan(a->value) ? isnan(b->value) : a->value == b->value) &&
            a->trial.state == b->trial.state && a->trial.retry_of == b->trial.retry_of &&
            a->trial.retries == b->trial.retries && a->trial.created_at == b->trial.created_at &&
            a->trial.started_at == b->trial.started_at &&
            a->trial.completed_at == b->trial.completed_at &&
            a->trial.heartbeat_at == b->trial.heartbeat_at &&
            str_eq(a->trial.worker, b->trial.worker) &&
            str_eq(a->trial.results, b->trial.results) &&
            (isnan(a->trial.value) ? isnan(b->trial.value) : a->trial.value == b->trial.value) &&
            (a->vector == NULL) == (b->vector == NULL) && (a->blob == NULL) == (b->blob == NULL);

    if (same && a->vector != NULL) {
        same = memcmp(a->vector, b->vector, a->len * sizeof(double)) == 0 &&
                (uintptr_t)b->vector % sizeof(double) == 0;
    }
    if (same && a->blob != NULL) {
        same = memcmp(a->blob, b->blob, a->len) == 0;
    }
    return same;
}

static int collect_record(void *ctx, uint64_t lsn, struct hpo_write *batch, struct hpo_error *err)
{
    struct replayed *r = ctx;
    const struct hpo_write *want = r->n < 8 ? r->want[r->n] : NULL;
    bool same = true;

    (void)err;
    if (r->n >= 8) {
        return -E2BIG;
    }
    r->lsn[r->n] = lsn;
    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        r->n_writes[r->n]++;
        r->n_ops[r->n] += w->n_ops;
        if (want == NULL || w->n_ops != want->n_ops) {
            same = false;
        } else {
            for (size_t i = 0; i < w->n_ops; i++) {
                same = same && op_eq(&want->ops[i], &w->ops[i]);
            }
        }
        want = want != NULL ? want->next : NULL;
    }
    r->same[r->n] = same && want == NULL;
    r->n++;
    return 0;
}

static struct hpo__redo *redo_open_ok(const char *db)
{
    struct hpo__redo *r = NULL;
    struct hpo_error err;

    assert_int_equal(hpo__redo_open(db, 7, &r, &err), 0);
    return r;
}

static uint64_t replay_into(const char *db, struct replayed *got, const struct hpo_write **want,
        size_t n_want)
{
    struct hpo__redo *r = redo_open_ok(db);
    struct hpo_error err;
    uint64_t last = 99;

    memset(got, 0, sizeof(*got));
    for (size_t i = 0; i < n_want && i < 8; i++) {
        got->want[i] = want[i];
    }
    assert_int_equal(hpo__redo_replay(r, collect_record, got, &last, &err), 0);
    hpo__redo_close(r);
    return last;
}

static off_t size_of(const char *path)
{
    struct stat sb;

    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

/*
** Records come back as appended: every kind of value (strings, NULLs, a NaN,
** a vector read back aligned, a blob), in order, numbered; a cut-short last
** record is dropped and the file cut back; a damaged one ends the log; a
** restart at the start writes over older records, which a replay then
** leaves out (their numbers do not follow).
*/
static void test_redo_records(void **state)
{
    struct fixture *f = *state;
    static const double vec[3] = { 0.25, -1e300, 3.0 };
    static const unsigned char blob[5] = { 1, 2, 0, 4, 5 };
    struct hpo_op a_ops[4], b_ops[2], c_ops[1];
    struct hpo_write a = { .ops = a_ops, .n_ops = 4 }, b = { .ops = b_ops, .n_ops = 2 };
    struct hpo_write c = { .ops = c_ops, .n_ops = 1 };
    const struct hpo_write *want[3] = { &a, &c, NULL };
    struct replayed got;
    struct hpo__redo *r;
    struct hpo_error err;
    char redo[160];
    off_t one, two;
    int fd;

    snprintf(redo, sizeof(redo), "%s.redo", f->path);
    a_ops[0] = op_trial(3, 7, 2, NAN, "w-1");
    a_ops[0].trial.results = "[0.5,null]";
    a_ops[1] = op_vector(3, 7, 1, vec, 3);
    a_ops[2] = op_report(3, 7, 12, 0.125);
    a_ops[3] = op_param(3, 7, 0, 2.5);
    a_ops[3].scalar = true;
    b_ops[0] = op_attr(3, 7, "k\"ey", "{\"x\": [1, 2]}");
    b_ops[1] = op_state(3, blob, sizeof(blob));
    c_ops[0] = op_trial(4, 0, 1, 1.0, NULL);
    a.next = &b;

    r = redo_open_ok(f->path);
    assert_int_equal(hpo__redo_append(r, 41, &a, &err), 0);
    one = (off_t)hpo__redo_size(r);
    assert_int_equal(hpo__redo_append(r, 42, &c, &err), 0);
    two = (off_t)hpo__redo_size(r);
    hpo__redo_close(r);
    assert_int_equal(size_of(redo), two);

    assert_int_equal(replay_into(f->path, &got, want, 2), 42);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.lsn[0], 41);
    assert_int_equal(got.n_writes[0], 2);
    assert_int_equal(got.n_ops[0], 6);
    assert_true(got.same[0]);
    assert_int_equal(got.lsn[1], 42);
    assert_int_equal(got.n_ops[1], 1);
    assert_true(got.same[1]);

    /* The last record cut short: record 41 alone, the file cut back to its end. */
    assert_int_equal(truncate(redo, two - 3), 0);
    assert_int_equal(replay_into(f->path, &got, want, 2), 41);
    assert_int_equal(got.n, 1);
    assert_int_equal(size_of(redo), one);

    /* A damaged byte in record 42's payload ends the log before it. */
    r = redo_open_ok(f->path);
    assert_int_equal(hpo__redo_append(r, 42, &c, &err), 0);
    hpo__redo_close(r);
    fd = open(redo, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\xff", 1, one + 48), 1);
    close(fd);
    assert_int_equal(replay_into(f->path, &got, want, 2), 41);
    assert_int_equal(got.n, 1);

    /* A restart: record 43 at the start, over 41; the rest of 41 is left out. */
    r = redo_open_ok(f->path);
    assert_int_equal(hpo__redo_restart(r, false, &err), 0);
    assert_int_equal(hpo__redo_append(r, 43, &c, &err), 0);
    hpo__redo_close(r);
    want[0] = &c;
    assert_int_equal(replay_into(f->path, &got, want, 1), 43);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.lsn[0], 43);
    assert_true(got.same[0]);

    /* Emptied. */
    r = redo_open_ok(f->path);
    assert_int_equal(hpo__redo_restart(r, true, &err), 0);
    hpo__redo_close(r);
    assert_int_equal(size_of(redo), 0);
    assert_int_equal(replay_into(f->path, &got, want, 0), 0);
    assert_int_equal(got.n, 0);
}

/*
** Two records in a row with numbers that do not follow (the tail of older
** records behind a restart whose record ends exactly at an old head): the
** replay stops at the gap.
*/
static void test_redo_numbers_follow(void **state)
{
    struct fixture *f = *state;
    struct hpo_op op = op_trial(4, 0, 1, 1.0, NULL);
    struct hpo_write w = { .ops = &op, .n_ops = 1 };
    const struct hpo_write *want[3] = { &w, &w, &w };
    struct replayed got;
    struct hpo__redo *r = redo_open_ok(f->path);
    struct hpo_error err;

    assert_int_equal(hpo__redo_append(r, 5, &w, &err), 0);
    assert_int_equal(hpo__redo_append(r, 6, &w, &err), 0);
    assert_int_equal(hpo__redo_append(r, 3, &w, &err), 0);
    hpo__redo_close(r);
    assert_int_equal(replay_into(f->path, &got, want, 3), 6);
    assert_int_equal(got.n, 2);
}

/* A log written for another epoch (another copy of the database) is not replayed, and is cut. */
static void test_redo_other_epoch(void **state)
{
    struct fixture *f = *state;
    struct hpo_op op = op_trial(4, 0, 1, 1.0, NULL);
    struct hpo_write w = { .ops = &op, .n_ops = 1 };
    struct replayed got;
    struct hpo__redo *r = redo_open_ok(f->path);
    struct hpo_error err;
    char redo[160];
    uint64_t last = 99;

    snprintf(redo, sizeof(redo), "%s.redo", f->path);
    assert_int_equal(hpo__redo_append(r, 1, &w, &err), 0);
    assert_int_equal(hpo__redo_append(r, 2, &w, &err), 0);
    hpo__redo_close(r);
    assert_int_equal(hpo__redo_open(f->path, 8, &r, &err), 0);
    memset(&got, 0, sizeof(got));
    assert_int_equal(hpo__redo_replay(r, collect_record, &got, &last, &err), 0);
    hpo__redo_close(r);
    assert_int_equal(got.n, 0);
    assert_int_equal(last, 0);
    assert_int_equal(size_of(redo), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_version_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_version_1_fixture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_version_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trial_upsert_keeps_children, setup, teardown),
        cmocka_unit_test_setup_teardown(test_param_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_study_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_callback_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_write_in_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_solo_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_dependent_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_lead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_handoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ticks_move_when_idle, setup, teardown),
        cmocka_unit_test(test_xxh64_known_values),
        cmocka_unit_test_setup_teardown(test_big_values_in_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_values_inline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_unlinks_old_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_study_delete_unlinks_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_param_delete_unlinks_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_write_leaves_no_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_failure_unlinks_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftover_removed_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_file_fails_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_values_synchronous_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pieces_across_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_flush_tickets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_reads_file_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redo_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redo_dependent_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redo_numbers_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redo_other_epoch, setup, teardown),
    };

    return cmocka_run_group_tests_name("storage", tests, NULL, NULL);
}
