/*
** test-storage-flush.c: the pipelined flush's callback (storage/sqlite.c,
** synchronous full on a database file): a flusher calls on_flush without
** the storage's lock, so writes go on while it runs; hpo_storage_on_flush
** returns only once the callback it replaces has ended; an HTTP thread's
** round lead (hpo_storage_lead) gets its commits flushed, on its own thread
** (the inline flush of a round's end), or at the next round's end when it
** has work waiting, or on a flusher when it has work waiting again.
*/
#include <pthread.h>
#include <setjmp.h> /* cmocka needs setjmp.h, stdarg.h and stddef.h */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage.h"

/* Bounded waits: 10,000 polls of 1 ms. */
#define POLLS 10000

struct fixture {
    char dir[64];
    char path[128];
    struct hpo_storage *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct hpo_storage_options opt = { .synchronous_full = true };
    struct hpo_error err;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test-storage-flush-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/f.db", f->dir);
    hpo_error_clear(&err);
    assert_int_equal(hpo_storage_open(f->path, &opt, &f->st, &err), 0);
    assert_int_equal(hpo_storage_start(f->st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[160];

    hpo_storage_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A write of study `id` that returns once committed (its flush may still run). */
static void write_deferred(struct hpo_storage *st, int64_t id)
{
    char name[32];
    struct hpo_op op = { .kind = HPO_OP_STUDY_PUT, .study_id = id, .name = name, .text = "{}" };
    struct hpo_write w = { .ops = &op, .n_ops = 1 };
    struct hpo_error err;

    snprintf(name, sizeof(name), "s%lld", (long long)id);
    hpo_error_clear(&err);
    hpo_storage_defer_flush(true);
    assert_int_equal(hpo_storage_write(st, &w, &err), 0);
    hpo_storage_defer_flush(false);
}

/* Wait (bounded) until ticket `t` is flushed; it must be. */
static void wait_flushed(struct hpo_storage *st, uint64_t t)
{
    for (int i = 0; i < POLLS && !hpo_storage_flushed(st, t); i++) {
        usleep(1000);
    }
    assert_true(hpo_storage_flushed(st, t));
}

/* A first write, flushed: the flushers have nothing left to do. Returns its ticket. */
static uint64_t first_write_flushed(struct hpo_storage *st)
{
    uint64_t t;

    write_deferred(st, 1);
    t = hpo_storage_flush_ticket(st);
    wait_flushed(st, t);
    return t;
}

/*
** A round's writes, queued for its end (hpo_storage_lead): n pipelined study
** puts on `chain`, named prefix0.., ids id0.., in the caller's arrays.
*/
static void queue_round(struct hpo_storage *st, struct hpo_write_chain *chain, int n,
        const char *prefix, int64_t id0, const char *text, struct hpo_op *ops,
        struct hpo_write *w, char (*name)[16])
{
    struct hpo_error err;

    hpo_storage_lead_later(true);
    hpo_storage_pipeline(true);
    for (int i = 0; i < n; i++) {
        snprintf(name[i], sizeof(name[i]), "%s%d", prefix, i);
        ops[i] = (struct hpo_op){ .kind = HPO_OP_STUDY_PUT, .study_id = id0 + i, .name = name[i],
                                  .text = text };
        memset(&w[i], 0, sizeof(w[i]));
        w[i].ops = &ops[i];
        w[i].n_ops = 1;
        w[i].chain = chain;
        hpo_error_clear(&err);
        assert_int_equal(hpo_storage_write(st, &w[i], &err), 0);
    }
    hpo_storage_pipeline(false);
    hpo_storage_lead_later(false);
}

/* The first call blocks until `go` (bounded); later ones return at once. */
struct cb {
    atomic_int calls;
    atomic_int entered; /* the first call is running */
    atomic_bool go;
    atomic_bool left;   /* the first call returned */
};

static void on_flush(void *arg)
{
    struct cb *c = arg;

    if (atomic_fetch_add(&c->calls, 1) != 0) {
        return;
    }
    atomic_store(&c->entered, 1);
    for (int i = 0; i < POLLS && !atomic_load(&c->go); i++) {
        usleep(1000);
    }
    atomic_store(&c->left, true);
}

struct writer_arg {
    struct hpo_storage *st;
    atomic_bool done;
};

static void *writer_thread(void *arg)
{
    struct writer_arg *w = arg;

    write_deferred(w->st, 2);
    atomic_store(&w->done, true);
    return NULL;
}

/*
** While a flusher's callback runs (held here until `go`), another write is
** queued, committed and flushed: the flusher does not hold the storage's
** lock across the callback (it resumes connections: the HTTP threads must
** not wait behind it to queue their writes).
*/
static void test_writes_go_on_during_callback(void **state)
{
    struct fixture *f = *state;
    struct cb c = { 0 };
    struct writer_arg w = { .st = f->st };
    pthread_t th;
    uint64_t t;

    hpo_storage_on_flush(f->st, on_flush, &c);
    write_deferred(f->st, 1);
    for (int i = 0; i < POLLS && !atomic_load(&c.entered); i++) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(&c.entered), 1);
    assert_int_equal(pthread_create(&th, NULL, writer_thread, &w), 0);
    for (int i = 0; i < POLLS && !atomic_load(&w.done); i++) {
        usleep(1000);
    }
    /* Committed while the first callback still runs. */
    assert_true(atomic_load(&w.done));
    assert_false(atomic_load(&c.left));
    /* And flushed by the other flusher meanwhile. */
    t = hpo_storage_flush_ticket(f->st);
    for (int i = 0; i < POLLS && !hpo_storage_flushed(f->st, t); i++) {
        usleep(1000);
    }
    assert_true(hpo_storage_flushed(f->st, t));
    assert_false(atomic_load(&c.left));
    atomic_store(&c.go, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    hpo_storage_on_flush(f->st, NULL, NULL);
    assert_true(atomic_load(&c.left));
}

struct replace_arg {
    struct hpo_storage *st;
    struct cb *c;
    atomic_bool returned;
    atomic_bool left_at_return; /* the callback had ended when on_flush returned */
};

static void *replace_thread(void *arg)
{
    struct replace_arg *r = arg;

    hpo_storage_on_flush(r->st, NULL, NULL);
    atomic_store(&r->left_at_return, atomic_load(&r->c->left));
    atomic_store(&r->returned, true);
    return NULL;
}

/*
** hpo_storage_on_flush(NULL) returns only once a callback running on a
** flusher has ended (storage.h): after it the dispatcher may go, and no
** call of its callback may still be inside it.
*/
static void test_replace_waits_for_callback(void **state)
{
    struct fixture *f = *state;
    struct cb c = { 0 };
    struct replace_arg r = { .st = f->st, .c = &c };
    pthread_t th;
    int calls;

    hpo_storage_on_flush(f->st, on_flush, &c);
    write_deferred(f->st, 1);
    for (int i = 0; i < POLLS && !atomic_load(&c.entered); i++) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(&c.entered), 1);
    assert_int_equal(pthread_create(&th, NULL, replace_thread, &r), 0);
    /* The callback is held until `go`: the replacement cannot have returned. */
    usleep(20000);
    assert_false(atomic_load(&r.returned));
    atomic_store(&c.go, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(atomic_load(&r.returned));
    assert_true(atomic_load(&r.left_at_return));
    /* Replaced: later flushes call nothing. */
    calls = atomic_load(&c.calls);
    write_deferred(f->st, 3);
    wait_flushed(f->st, hpo_storage_flush_ticket(f->st));
    assert_int_equal(atomic_load(&c.calls), calls);
}

/*
** Round commits under the pipelined flush (an HTTP thread's round end,
** hpo_storage_lead): the round's pipelined writes are committed on the
** calling thread, and the flusher, woken only once the round's end let go
** of the storage's lock, flushes them: their ticket becomes flushed (no
** other write comes to wake a flusher) and the on_flush callback runs.
*/
static void test_round_lead_is_flushed(void **state)
{
    struct fixture *f = *state;
    struct hpo_write_chain *chain = hpo_storage_chain_new();
    struct hpo_op ops[3];
    struct hpo_write w[3];
    struct cb c = { .go = true };
    char name[3][16];
    uint64_t first, t;

    assert_non_null(chain);
    /* A first write flushed, and a pause: the flushers wait for a wake-up by now. */
    t = first_write_flushed(f->st);
    usleep(50000);
    hpo_storage_on_flush(f->st, on_flush, &c);
    first = hpo_storage_accepted(f->st) + 1;
    queue_round(f->st, chain, 3, "r", 10, "{\"v\":1}", ops, w, name);
    assert_int_equal(hpo_storage_lead_pending(), first + 2);
    assert_false(hpo_storage_lead(f->st, NULL, NULL)); /* (nothing led elsewhere: none handed off) */
    assert_int_equal(hpo_storage_resolved(f->st), first + 2);
    assert_false(hpo_storage_chain_failed(chain, 0, 0, NULL));
    assert_true(hpo_storage_flush_ticket(f->st) > t);
    wait_flushed(f->st, hpo_storage_flush_ticket(f->st));
    for (int i = 0; i < POLLS && atomic_load(&c.calls) == 0; i++) {
        usleep(1000);
    }
    assert_true(atomic_load(&c.calls) > 0);
    hpo_storage_on_flush(f->st, NULL, NULL);
    hpo_storage_chain_unref(chain);
}

/* The leading thread and what the callback saw there (test_round_lead_flushes_inline). */
struct inline_cb {
    struct hpo_storage *st;
    pthread_t leader;
    uint64_t ticket;        /* the round's commit */
    atomic_int calls;
    atomic_int here_flushed; /* calls on the leader with the round's commit flushed */
};

static void on_flush_inline(void *arg)
{
    struct inline_cb *c = arg;

    atomic_fetch_add(&c->calls, 1);
    if (pthread_equal(pthread_self(), c->leader) && c->ticket != 0 &&
            hpo_storage_flushed(c->st, c->ticket)) {
        atomic_fetch_add(&c->here_flushed, 1);
    }
}

/*
** The inline flush of a round's end (sqlite.c, flush_round): the thread that
** led a round's batch fdatasyncs the WAL itself before hpo_storage_lead
** returns, and calls the on_flush callback there, with the round's commit
** flushed: its held replies go without a flusher's wake-up and a kick back.
** With the flushers alone, the commit is not yet flushed when the leader's
** own callback runs (lead_batch), and the flush's callback runs on a
** flusher thread.
*/
static void test_round_lead_flushes_inline(void **state)
{
    struct fixture *f = *state;
    struct hpo_write_chain *chain = hpo_storage_chain_new();
    struct hpo_op ops[2];
    struct hpo_write w[2];
    struct inline_cb c = { .st = f->st, .leader = pthread_self() };
    char name[2][16];
    uint64_t t;

    assert_non_null(chain);
    t = first_write_flushed(f->st);
    c.ticket = t + 1; /* the round's batch: the next commit */
    hpo_storage_on_flush(f->st, on_flush_inline, &c);
    queue_round(f->st, chain, 2, "i", 20, "{}", ops, w, name);
    assert_false(hpo_storage_lead(f->st, NULL, NULL));
    /* Committed in one batch, flushed before the lead returned, released here. */
    assert_int_equal(hpo_storage_flush_ticket(f->st), t + 1);
    assert_true(hpo_storage_flushed(f->st, t + 1));
    assert_int_equal(atomic_load(&c.here_flushed), 1);
    hpo_storage_on_flush(f->st, NULL, NULL);
    assert_false(hpo_storage_chain_failed(chain, 0, 0, NULL));
    hpo_storage_chain_unref(chain);
}

static bool always_busy(void)
{
    return true;
}

/*
** A round's end with work waiting on its thread (hpo_storage_lead_busy)
** commits the round's batch but leaves its flush to the next round's end
** (sqlite.c, flush_round). Not busy there (`busy_again` false), that end
** flushes on this thread before it returns. Busy again, it leaves the
** flush to a flusher and returns at once: the commit is flushed later, and
** the callback that releases its replies runs on the flusher, not on the
** leading thread.
*/
static void busy_round(struct fixture *f, bool busy_again)
{
    struct hpo_write_chain *chain = hpo_storage_chain_new();
    struct hpo_op op;
    struct hpo_write w;
    struct inline_cb c = { .st = f->st, .leader = pthread_self() };
    char name[1][16];
    uint64_t t;

    assert_non_null(chain);
    t = first_write_flushed(f->st);
    c.ticket = t + 1;
    hpo_storage_on_flush(f->st, on_flush_inline, &c);
    queue_round(f->st, chain, 1, busy_again ? "b" : "d", busy_again ? 30 : 40, "{}", &op, &w,
            name);
    hpo_storage_lead_busy(always_busy);
    assert_false(hpo_storage_lead(f->st, NULL, NULL));
    /* Committed, not released on this thread: no flush ran here. */
    assert_int_equal(hpo_storage_flush_ticket(f->st), t + 1);
    assert_int_equal(atomic_load(&c.here_flushed), 0);
    if (!busy_again) {
        /* The next round's end (nothing new to lead, no work waiting) flushes here. */
        hpo_storage_lead_busy(NULL);
        assert_false(hpo_storage_lead(f->st, NULL, NULL));
        assert_true(hpo_storage_flushed(f->st, t + 1));
        assert_int_equal(atomic_load(&c.here_flushed), 1);
    } else {
        assert_false(hpo_storage_lead(f->st, NULL, NULL));
        hpo_storage_lead_busy(NULL);
        wait_flushed(f->st, t + 1);
        /* The flusher's callback: after the flush, on its own thread. */
        for (int i = 0; i < POLLS && atomic_load(&c.calls) < 2; i++) {
            usleep(1000);
        }
        assert_true(atomic_load(&c.calls) >= 2);
        assert_int_equal(atomic_load(&c.here_flushed), 0);
    }
    hpo_storage_on_flush(f->st, NULL, NULL);
    assert_false(hpo_storage_chain_failed(chain, 0, 0, NULL));
    hpo_storage_chain_unref(chain);
}

static void test_busy_round_defers_flush_to_next(void **state)
{
    busy_round(*state, false);
}

static void test_busy_rounds_leave_flush_to_flusher(void **state)
{
    busy_round(*state, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_go_on_during_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_waits_for_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_lead_is_flushed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_lead_flushes_inline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_round_defers_flush_to_next, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_rounds_leave_flush_to_flusher, setup, teardown),
    };

    return cmocka_run_group_tests_name("storage-flush", tests, NULL, NULL);
}
