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

/*
** The kept point (the same slot mechanism): a released big point comes
** back for the next point of its dim, counted in the vector memory while
** in use and kept, not for another dim, and goes after idle ticks.
*/
static void test_released_point_is_reused(void **unused)
{
    const size_t dim = 500000; /* 8 MB of doubles */
    uint64_t base = hpo_vector_memory_used();
    struct hpo_point *a = hpo_point_new(dim);
    struct hpo_point *b;
    int ticks = 0;

    (void)unused;
    assert_non_null(a);
    assert_true(hpo_vector_memory_used() > base + 2 * dim * sizeof(double));
    hpo_point_release(a);
    assert_true(hpo_vector_memory_used() > base); /* kept: still counted */
    b = hpo_point_new(dim - 1);
    assert_ptr_not_equal(b, a);
    hpo_point_release(b); /* replaces the kept one, which is freed */
    b = hpo_point_new(dim - 1);
    hpo_point_release(b);
    b = hpo_point_new(dim - 1);
    a = hpo_point_new(dim);
    assert_ptr_not_equal(a, b);
    hpo_point_release(a);
    b->data[2 * (dim - 1) - 1] = 4.25;
    hpo_point_release(b); /* kept: dim - 1 */
    a = hpo_point_new(dim - 1);
    assert_ptr_equal(a, b);
    assert_int_equal(a->refs, 1);
    assert_int_equal(a->dim, dim - 1);
    assert_true(a->data[2 * (dim - 1) - 1] == 4.25); /* the same pages */
    hpo_point_release(a);
    while (hpo_vector_memory_used() != base && ticks < 100) {
        (void)hpo_point_cache_tick();
        ticks++;
    }
    assert_int_equal(hpo_vector_memory_used(), base);
    assert_true(ticks > 1);
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
        cmocka_unit_test_setup(test_released_point_is_reused, reset),
    };

    return cmocka_run_group_tests_name("core-vecbuf", tests, NULL, NULL);
}
