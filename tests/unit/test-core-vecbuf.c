/*
** test-core-vecbuf.c: the kept upload buffer (hpo_vector_buf_new/_free in
** core/history.c): a freed big buffer comes back for the next request of
** its size, counts in the vector memory while kept, is never kept over the
** cap, and goes back to the system after idle ticks or a cache clear.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "history.h"

#define BIG ((size_t)8000000)

static int reset(void **unused)
{
    (void)unused;
    hpo_point_cache_clear();
    hpo_vector_memory_set_cap(UINT64_MAX);
    return 0;
}

static void test_freed_buffer_is_reused(void **unused)
{
    uint64_t base = hpo_vector_memory_used();
    unsigned char *a = hpo_vector_buf_new(BIG);
    unsigned char *b;

    (void)unused;
    assert_non_null(a);
    memset(a, 0x5a, BIG);
    /* In use it is the caller's to count (an upload takes its own bytes). */
    assert_int_equal(hpo_vector_memory_used(), base);
    hpo_vector_buf_free(a, BIG);
    assert_int_equal(hpo_vector_memory_used(), base + BIG);
    b = hpo_vector_buf_new(BIG);
    assert_ptr_equal(b, a);
    assert_int_equal(b[BIG - 1], 0x5a); /* the same pages, not fresh ones */
    assert_int_equal(hpo_vector_memory_used(), base);
    hpo_vector_buf_free(b, BIG);
}

static void test_other_size_gets_a_new_buffer(void **unused)
{
    unsigned char *a = hpo_vector_buf_new(BIG);
    unsigned char *b;

    (void)unused;
    assert_non_null(a);
    hpo_vector_buf_free(a, BIG);
    b = hpo_vector_buf_new(BIG / 2);
    assert_non_null(b);
    assert_ptr_not_equal(b, a);
    /* The kept one is still there for its own size. */
    assert_ptr_equal(hpo_vector_buf_new(BIG), a);
    free(a);
    free(b);
}

static void test_small_buffers_are_not_kept(void **unused)
{
    uint64_t base = hpo_vector_memory_used();
    void *a = hpo_vector_buf_new(4096);

    (void)unused;
    assert_non_null(a);
    hpo_vector_buf_free(a, 4096);
    assert_int_equal(hpo_vector_memory_used(), base);
}

static void test_not_kept_over_the_cap(void **unused)
{
    uint64_t base = hpo_vector_memory_used();
    void *a = hpo_vector_buf_new(BIG);
    void *b;

    (void)unused;
    assert_non_null(a);
    hpo_vector_memory_set_cap(base + BIG - 1);
    hpo_vector_buf_free(a, BIG);
    assert_int_equal(hpo_vector_memory_used(), base);
    hpo_vector_memory_set_cap(UINT64_MAX);
    b = hpo_vector_buf_new(BIG);
    assert_non_null(b);
    free(b);
}

static void test_taking_memory_drops_the_kept_buffer(void **unused)
{
    uint64_t base = hpo_vector_memory_used();
    void *a = hpo_vector_buf_new(BIG);

    (void)unused;
    assert_non_null(a);
    hpo_vector_buf_free(a, BIG);
    assert_int_equal(hpo_vector_memory_used(), base + BIG);
    /* New demand that only fits without the kept buffer gets its room. */
    hpo_vector_memory_set_cap(base + BIG);
    assert_true(hpo_vector_memory_take(BIG));
    assert_int_equal(hpo_vector_memory_used(), base + BIG);
    hpo_vector_memory_give(BIG);
    assert_int_equal(hpo_vector_memory_used(), base);
}

static void test_idle_ticks_free_it(void **unused)
{
    uint64_t base = hpo_vector_memory_used();
    void *a = hpo_vector_buf_new(BIG);
    int ticks = 0;

    (void)unused;
    assert_non_null(a);
    hpo_vector_buf_free(a, BIG);
    while (hpo_vector_memory_used() != base && ticks < 100) {
        (void)hpo_point_cache_tick();
        ticks++;
    }
    assert_int_equal(hpo_vector_memory_used(), base);
    assert_true(ticks > 1); /* kept for a few ticks, not dropped at the first */
}

static void test_clear_frees_it(void **unused)
{
    uint64_t base = hpo_vector_memory_used();
    void *a = hpo_vector_buf_new(BIG);

    (void)unused;
    assert_non_null(a);
    hpo_vector_buf_free(a, BIG);
    hpo_point_cache_clear();
    assert_int_equal(hpo_vector_memory_used(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_freed_buffer_is_reused, reset),
        cmocka_unit_test_setup(test_other_size_gets_a_new_buffer, reset),
        cmocka_unit_test_setup(test_small_buffers_are_not_kept, reset),
        cmocka_unit_test_setup(test_not_kept_over_the_cap, reset),
        cmocka_unit_test_setup(test_taking_memory_drops_the_kept_buffer, reset),
        cmocka_unit_test_setup(test_idle_ticks_free_it, reset),
        cmocka_unit_test_setup(test_clear_frees_it, reset),
    };

    return cmocka_run_group_tests_name("core-vecbuf", tests, NULL, NULL);
}
