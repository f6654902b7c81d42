/*
** test-core-parallel.c: hpo_parallel_for covers [0, n) exactly once in
** disjoint ranges of at least the grain, and small loops stay on the caller.
*/
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "parallel.h"

struct visit {
    unsigned char *seen;
    pthread_mutex_t lock;
    size_t calls, min_len;
    pthread_t threads[8];
    size_t n_threads;
};

static void mark(void *ctx, size_t lo, size_t hi)
{
    struct visit *v = ctx;
    pthread_t self = pthread_self();
    bool known = false;

    for (size_t i = lo; i < hi; i++) {
        v->seen[i]++;
    }
    pthread_mutex_lock(&v->lock);
    v->calls++;
    if (hi - lo < v->min_len) {
        v->min_len = hi - lo;
    }
    for (size_t i = 0; i < v->n_threads; i++) {
        known = known || pthread_equal(v->threads[i], self);
    }
    if (!known && v->n_threads < 8) {
        v->threads[v->n_threads++] = self;
    }
    pthread_mutex_unlock(&v->lock);
}

static void run(size_t n, size_t grain, struct visit *v)
{
    v->seen = calloc(n ? n : 1, 1);
    assert_non_null(v->seen);
    pthread_mutex_init(&v->lock, NULL);
    v->calls = 0;
    v->min_len = SIZE_MAX;
    v->n_threads = 0;
    hpo_parallel_for(n, grain, mark, v);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v->seen[i], 1);
    }
    pthread_mutex_destroy(&v->lock);
    free(v->seen);
}

static void test_covers_every_index_once(void **unused)
{
    struct visit v;

    (void)unused;
    /* Sizes that do not divide evenly, around and far above the grain. */
    static const size_t sizes[] = { 1000003, 4097, 4096, 8191, 12289, 65537 };
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        run(sizes[k], 4096, &v);
        assert_true(v.calls >= 1 && v.calls <= 4);
        assert_true(v.calls == 1 || v.min_len >= 4096);
        assert_int_equal(v.n_threads, v.calls);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_covers_every_index_once),
        cmocka_unit_test(test_small_loop_stays_on_caller),
    };

    return cmocka_run_group_tests_name("core-parallel", tests, NULL, NULL);
}
