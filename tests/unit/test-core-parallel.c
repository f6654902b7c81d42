/*
** test-core-parallel.c: hpo_parallel_for covers [0, n) exactly once in the
** documented ranges (k parts of n / k, the last one longer, each at least the
** grain), small loops stay on the caller, the parts really run on kept
** worker threads (the same ones call after call, no thread per call), kept
** off the CPU their caller runs on when the call starts, and callers on several threads at once, or nested inside a part, each get
** their whole range done without a deadlock.
*/
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "parallel.h"

#define MAX_CALLS 8

struct visit {
    unsigned char *seen;
    pthread_mutex_t lock;
    size_t calls, min_len;
    size_t lo[MAX_CALLS], hi[MAX_CALLS];
    pthread_t threads[MAX_CALLS];
    size_t n_threads;
};

/* The CPUs this process may use, as parallel.c counts them (at most 4 parts). */
static size_t cpus(void)
{
    cpu_set_t set;
    size_t n;

    CPU_ZERO(&set);
    n = sched_getaffinity(0, sizeof(set), &set) == 0 ? (size_t)CPU_COUNT(&set) : 1;
    return n < 1 ? 1 : (n > 4 ? 4 : n);
}

static void mark(void *ctx, size_t lo, size_t hi)
{
    struct visit *v = ctx;
    pthread_t self = pthread_self();
    bool known = false;

    for (size_t i = lo; i < hi; i++) {
        v->seen[i]++;
    }
    pthread_mutex_lock(&v->lock);
    if (v->calls < MAX_CALLS) {
        v->lo[v->calls] = lo;
        v->hi[v->calls] = hi;
    }
    v->calls++;
    if (hi - lo < v->min_len) {
        v->min_len = hi - lo;
    }
    for (size_t i = 0; i < v->n_threads; i++) {
        known = known || pthread_equal(v->threads[i], self);
    }
    if (!known && v->n_threads < MAX_CALLS) {
        v->threads[v->n_threads++] = self;
    }
    pthread_mutex_unlock(&v->lock);
}

static void visit_start(struct visit *v, size_t n)
{
    v->seen = calloc(n ? n : 1, 1);
    assert_non_null(v->seen);
    pthread_mutex_init(&v->lock, NULL);
    v->calls = 0;
    v->min_len = SIZE_MAX;
    v->n_threads = 0;
}

/* Every index seen once (no cmocka assert: also called on other threads). */
static bool visit_end(struct visit *v, size_t n)
{
    bool ok = true;

    for (size_t i = 0; i < n; i++) {
        ok = ok && v->seen[i] == 1;
    }
    pthread_mutex_destroy(&v->lock);
    free(v->seen);
    return ok;
}

/* The ranges the split must give: what the thread-per-call version gave. */
static bool expect_ranges(const struct visit *v, size_t n, size_t grain)
{
    size_t k = grain > 0 ? n / grain : n;
    bool used[MAX_CALLS] = { false };

    if (k > cpus()) {
        k = cpus();
    }
    if (k <= 1) {
        return v->calls == 1 && v->lo[0] == 0 && v->hi[0] == n;
    }
    if (v->calls != k) {
        return false;
    }
    for (size_t i = 0; i < k; i++) {
        size_t lo = n / k * i, hi = i + 1 == k ? n : n / k * (i + 1);
        bool found = false;
        for (size_t c = 0; c < k && !found; c++) {
            if (!used[c] && v->lo[c] == lo && v->hi[c] == hi) {
                used[c] = found = true;
            }
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

static bool run_ok(size_t n, size_t grain, struct visit *v)
{
    bool covered;

    visit_start(v, n);
    hpo_parallel_for(n, grain, mark, v);
    covered = visit_end(v, n);
    return covered && expect_ranges(v, n, grain);
}

static void run(size_t n, size_t grain, struct visit *v)
{
    assert_true(run_ok(n, grain, v));
}

static void test_covers_every_index_once(void **unused)
{
    struct visit v;

    (void)unused;
    /* Sizes that do not divide evenly, around and far above the grain. */
    static const size_t sizes[] = { 1000003, 4097, 4096, 8191, 8192, 12289, 65537 };
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        run(sizes[k], 4096, &v);
        assert_true(v.calls >= 1 && v.calls <= 4);
        assert_true(v.calls == 1 || v.min_len >= 4096);
        assert_true(v.n_threads >= 1 && v.n_threads <= v.calls);
    }
}

static void test_small_loop_stays_on_caller(void **unused)
{
    struct visit v;

    (void)unused;
    run(4095, 4096, &v);
    assert_int_equal(v.calls, 1);
    assert_true(pthread_equal(v.threads[0], pthread_self()));
    run(0, 4096, &v);
    assert_int_equal(v.calls, 1);
    assert_int_equal(v.min_len, 0);
}

/* Grain 0 (split as far as the CPUs go), 1, and n at and around grain multiples. */
static void test_grain_edges(void **unused)
{
    struct visit v;

    (void)unused;
    for (size_t n = 0; n < 12; n++) {
        run(n, 0, &v);
        run(n, 1, &v);
        run(n, 5, &v);
    }
    run(99, 100, &v);
    run(100, 100, &v);
    run(199, 100, &v);
    run(200, 100, &v);
    run(201, 100, &v);
    run(1000, 1, &v);
    run((size_t)1 << 20, HPO_PARALLEL_GRAIN, &v);
}

/*
** Part 0 runs on the caller first, and waits (at most 10 s) until another
** thread has finished another part: only a worker running beside the caller
** lets it go. Records which thread (its kernel id) ran the other parts.
*/
struct rendezvous {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t others_done;
    bool timed_out;
    pid_t worker_tid;
    int owner_cpu;      /* the CPU part 0 started on */
    int worker_cpu;     /* the CPU the other part ran on */
    cpu_set_t worker_set; /* the CPUs its thread may use then */
};

static void wait_for_other(void *ctx, size_t lo, size_t hi)
{
    struct rendezvous *r = ctx;
    struct timespec until;

    (void)hi;
    pthread_mutex_lock(&r->lock);
    if (lo != 0) {
        r->others_done++;
        r->worker_tid = gettid();
        r->worker_cpu = sched_getcpu();
        CPU_ZERO(&r->worker_set);
        (void)sched_getaffinity(0, sizeof(r->worker_set), &r->worker_set);
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return;
    }
    r->owner_cpu = sched_getcpu();
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (r->others_done == 0 && !r->timed_out) {
        r->timed_out = pthread_cond_timedwait(&r->cond, &r->lock, &until) == ETIMEDOUT;
    }
    pthread_mutex_unlock(&r->lock);
}

static pid_t worker_of_call(struct rendezvous *r)
{
    *r = (struct rendezvous){ .lock = PTHREAD_MUTEX_INITIALIZER,
        .cond = PTHREAD_COND_INITIALIZER };

    hpo_parallel_for(2000, 1000, wait_for_other, r);
    assert_false(r->timed_out);
    assert_int_equal(r->others_done, 1);
    assert_int_not_equal(r->worker_tid, gettid());
    return r->worker_tid;
}

static pid_t worker_of_one_call(void)
{
    struct rendezvous r;

    return worker_of_call(&r);
}

static size_t threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static void test_parts_run_on_kept_workers(void **unused)
{
    pid_t first;
    size_t before;

    (void)unused;
    if (cpus() < 2) {
        skip();
    }
    first = worker_of_one_call();
    before = threads_now();
    for (int i = 0; i < 20; i++) {
        /* The same worker, not a new thread each call. */
        assert_int_equal(worker_of_one_call(), first);
    }
    for (int i = 0; i < 200; i++) {
        struct visit v;
        run(1 << 14, 1 << 10, &v);
    }
    assert_int_equal(threads_now(), before);
    assert_true(before <= 4);
}

/*
** A woken worker is kept off the CPU its caller is on when the call starts:
** it runs on another CPU the process may use, and a call from another CPU
** lets it back on the first. The caller is moved by pinning it for a moment
** (a pinned caller would count one CPU and not split); a call whose caller
** was not on the same CPU before the call and in part 0 is retried.
*/
static void test_workers_kept_off_callers_cpu(void **unused)
{
    cpu_set_t all, one;
    int c[2], n = 0;

    (void)unused;
    CPU_ZERO(&all);
    assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
    for (int i = 0; i < CPU_SETSIZE && n < 2; i++) {
        if (CPU_ISSET(i, &all)) {
            c[n++] = i;
        }
    }
    if (n < 2) {
        skip();
    }
    for (int round = 0; round < 4; round++) {
        struct rendezvous r = { .owner_cpu = -1 };
        int mine = c[round % 2], other = c[1 - round % 2];
        int tries = 0;

        do {
            assert_true(++tries <= 50);
            CPU_ZERO(&one);
            CPU_SET(mine, &one);
            assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
            assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
            if (sched_getcpu() != mine) {
                continue;
            }
            worker_of_call(&r);
        } while (r.owner_cpu != mine);
        assert_int_not_equal(r.worker_cpu, mine);
        assert_false(CPU_ISSET(mine, &r.worker_set));
        assert_true(CPU_ISSET(other, &r.worker_set));
        assert_int_equal(CPU_COUNT(&r.worker_set), CPU_COUNT(&all) - 1);
    }
}

/*
** Several threads calling at once (the pool is one caller's at a time; the
** others run their own parts), and a call nested inside a part.
*/
static bool failed; /* a check on a caller thread failed (cmocka asserts only on the main one) */

static void nested(void *ctx, size_t lo, size_t hi)
{
    struct visit *v = ctx;

    mark(v, lo, hi);
    if (lo == 0) {
        struct visit inner;
        if (!run_ok(50000, 1000, &inner)) {
            __atomic_store_n(&failed, true, __ATOMIC_SEQ_CST);
        }
    }
}

static void *caller_main(void *arg)
{
    size_t id = (size_t)(uintptr_t)arg;

    for (size_t round = 0; round < 60; round++) {
        struct visit v;
        size_t n = 20000 + 1237 * id + round;
        bool ok;

        if (round % 3 == 0) {
            visit_start(&v, n);
            hpo_parallel_for(n, 1000, nested, &v);
            ok = visit_end(&v, n);
            ok = ok && expect_ranges(&v, n, 1000);
        } else {
            ok = run_ok(n, round % 2 ? 1000 : 0, &v);
        }
        if (!ok) {
            __atomic_store_n(&failed, true, __ATOMIC_SEQ_CST);
        }
    }
    return NULL;
}

static void test_concurrent_callers(void **unused)
{
    pthread_t t[4];

    (void)unused;
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, caller_main, (void *)(uintptr_t)i), 0);
    }
    caller_main((void *)(uintptr_t)4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
    }
    assert_false(__atomic_load_n(&failed, __ATOMIC_SEQ_CST));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_covers_every_index_once),
        cmocka_unit_test(test_small_loop_stays_on_caller),
        cmocka_unit_test(test_grain_edges),
        cmocka_unit_test(test_parts_run_on_kept_workers),
        cmocka_unit_test(test_workers_kept_off_callers_cpu),
        cmocka_unit_test(test_concurrent_callers),
    };

    return cmocka_run_group_tests_name("core-parallel", tests, NULL, NULL);
}
