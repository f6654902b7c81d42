/*
** test-storage-walbuf.c: the writer connection's VFS (storage/walbuf.c),
** which gathers a commit's WAL frames into one write: what a COMMIT made is
** in the WAL file when it returns (another connection reads it, a process
** that dies right after it left it there), a transaction that spilled
** frames and rolled back leaves nothing, and the WAL restarting after a
** checkpoint keeps every commit.
*/
#include <setjmp.h> /* cmocka needs setjmp.h, stdarg.h and stddef.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "walbuf.h"

#define ROW_BYTES 3000 /* a row of this size: a commit of several rows spans several pages */

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test-storage-walbuf-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/w.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[160];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        fail_msg("%s: %s", sql, msg != NULL ? msg : "?");
    }
}

/* The writer as hpod opens it: the walbuf VFS, WAL, synchronous NORMAL. */
static sqlite3 *open_writer(const char *path)
{
    sqlite3 *db = NULL;
    const char *vfs = hpo__walbuf_vfs();

    assert_non_null(vfs);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
            SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                "PRAGMA wal_autocheckpoint = 0;"
                "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
    return db;
}

/* A plain connection (SQLite's default VFS), as the reader and the checkpointer. */
static sqlite3 *open_plain(const char *path)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    return db;
}

static int64_t query_i64(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    int64_t v;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
}

static void assert_intact(sqlite3 *db)
{
    sqlite3_stmt *stmt = NULL;

    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL),
            SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "ok");
    sqlite3_finalize(stmt);
}

/* Rows [from, to) in one transaction: row k holds ROW_BYTES bytes of value k % 251. */
static void insert_rows(sqlite3 *db, int from, int to)
{
    sqlite3_stmt *stmt = NULL;
    unsigned char buf[ROW_BYTES];

    exec_ok(db, "BEGIN IMMEDIATE");
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t (k, v) VALUES (?1, ?2)", -1, &stmt,
                             NULL),
            SQLITE_OK);
    for (int k = from; k < to; k++) {
        memset(buf, k % 251, sizeof(buf));
        sqlite3_bind_int(stmt, 1, k);
        sqlite3_bind_blob(stmt, 2, buf, sizeof(buf), SQLITE_STATIC);
        assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    exec_ok(db, "COMMIT");
}

/* Rows [0, n) are there, each with its own bytes. */
static void assert_rows(sqlite3 *db, int n)
{
    assert_int_equal(query_i64(db, "SELECT count(*) FROM t"), n);
    assert_int_equal(query_i64(db, "SELECT coalesce(sum(k), 0) FROM t"), (int64_t)n * (n - 1) / 2);
    assert_int_equal(query_i64(db, "SELECT count(*) FROM t WHERE hex(v) = "
                                   "replace(hex(zeroblob(3000)), '00', printf('%02X', k % 251))"),
            n);
}

/* Each commit, of one row or of several pages, is read at once by another connection. */
static void test_commit_seen_by_another_connection(void **state)
{
    struct fixture *f = *state;
    sqlite3 *w = open_writer(f->path);
    sqlite3 *r = open_plain(f->path);
    int n = 0;

    for (int i = 0; i < 40; i++) {
        int rows = 1 + i % 5;
        insert_rows(w, n, n + rows);
        n += rows;
        assert_rows(r, n);
    }
    assert_intact(r);
    sqlite3_close(r);
    sqlite3_close(w);
}

/* A process that dies right after its COMMIT returned left the commit in the WAL file. */
static void test_commit_survives_process_death(void **state)
{
    struct fixture *f = *state;
    pid_t pid = fork();
    int status = 0;
    sqlite3 *r;

    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3 *w = open_writer(f->path);
        for (int i = 0; i < 30; i++) {
            insert_rows(w, i * 3, i * 3 + 3);
        }
        _exit(0); /* no close: nothing written after the last COMMIT */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    r = open_plain(f->path);
    assert_rows(r, 90);
    assert_intact(r);
    sqlite3_close(r);
}

/* A transaction too big for the page cache spills frames, then rolls back: none of it stays. */
static void test_spilled_rollback_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    sqlite3 *w = open_writer(f->path);
    sqlite3 *r = open_plain(f->path);
    sqlite3_stmt *stmt = NULL;
    unsigned char buf[ROW_BYTES];

    insert_rows(w, 0, 4);
    exec_ok(w, "PRAGMA cache_size = 10");
    exec_ok(w, "BEGIN IMMEDIATE");
    assert_int_equal(sqlite3_prepare_v2(w, "INSERT INTO t (k, v) VALUES (?1, ?2)", -1, &stmt,
                             NULL),
            SQLITE_OK);
    memset(buf, 0xee, sizeof(buf));
    for (int k = 1000; k < 1300; k++) {
        sqlite3_bind_int(stmt, 1, k);
        sqlite3_bind_blob(stmt, 2, buf, sizeof(buf), SQLITE_STATIC);
        assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    exec_ok(w, "ROLLBACK");
    assert_rows(r, 4);
    insert_rows(w, 4, 9);
    assert_rows(r, 9);
    assert_int_equal(query_i64(r, "SELECT count(*) FROM t WHERE k >= 1000"), 0);
    assert_intact(r);
    sqlite3_close(r);
    sqlite3_close(w);
    /* Recovery from the files alone agrees. */
    r = open_plain(f->path);
    assert_rows(r, 9);
    assert_intact(r);
    sqlite3_close(r);
}

/* Another connection checkpoints and truncates the WAL: the writer starts it over, nothing lost. */
static void test_wal_restart_keeps_commits(void **state)
{
    struct fixture *f = *state;
    sqlite3 *w = open_writer(f->path);
    sqlite3 *r = open_plain(f->path);
    int n = 0;

    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 6; i++) {
            insert_rows(w, n, n + 2);
            n += 2;
        }
        assert_rows(r, n);
        exec_ok(r, round % 2 == 0 ? "PRAGMA wal_checkpoint(TRUNCATE)"
                                  : "PRAGMA wal_checkpoint(RESTART)");
    }
    insert_rows(w, n, n + 3);
    n += 3;
    assert_rows(r, n);
    sqlite3_close(r);
    sqlite3_close(w);
    r = open_plain(f->path);
    assert_rows(r, n);
    assert_intact(r);
    sqlite3_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_seen_by_another_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_survives_process_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spilled_rollback_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_restart_keeps_commits, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
