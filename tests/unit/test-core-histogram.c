/*
** test-core-histogram.c: fixed-bucket histograms (core/histogram.c): an
** observation equal to a bound lands in that bound's bucket (Prometheus
** `le`), the text is cumulative with +Inf equal to _count, labels and
** units come out as documented, and concurrent observers lose nothing.
*/
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "histogram.h"

static const uint64_t le_us[] = { 100, 1000, 10000 };

/* The text hpo_hist_write makes (malloc'd). */
static char *render(const char *name, const char *labels, const struct hpo_hist *h, double unit)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    assert_int_equal(hpo_hist_write(f, name, labels, h, unit), 0);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void test_bounds_are_inclusive(void **state)
{
    struct hpo_hist h;
    char *text;

    hpo_hist_init(&h, le_us, 3);
    hpo_hist_observe(&h, 0);
    hpo_hist_observe(&h, 100);   /* le 0.0001 */
    hpo_hist_observe(&h, 101);   /* le 0.001 */
    hpo_hist_observe(&h, 10000); /* le 0.01 */
    hpo_hist_observe(&h, 10001); /* +Inf */
    hpo_hist_observe(&h, 5000000);
    assert_int_equal(hpo_hist_count(&h), 6);
    text = render("x_seconds", "", &h, 1e6);
    assert_string_equal(text, "x_seconds_bucket{le=\"0.0001\"} 2\n"
                              "x_seconds_bucket{le=\"0.001\"} 3\n"
                              "x_seconds_bucket{le=\"0.01\"} 4\n"
                              "x_seconds_bucket{le=\"+Inf\"} 6\n"
                              "x_seconds_sum 5.020202\n"
                              "x_seconds_count 6\n");
    free(text);
}

static void test_labels_and_unit_one(void **state)
{
    static const uint64_t sizes[] = { 1, 2, 4 };
    struct hpo_hist h;
    char *text;

    hpo_hist_init(&h, sizes, 3);
    text = render("w", "a=\"b\"", &h, 1.0);
    assert_string_equal(text, "w_bucket{a=\"b\",le=\"1\"} 0\n"
                              "w_bucket{a=\"b\",le=\"2\"} 0\n"
                              "w_bucket{a=\"b\",le=\"4\"} 0\n"
                              "w_bucket{a=\"b\",le=\"+Inf\"} 0\n"
                              "w_sum{a=\"b\"} 0\n"
                              "w_count{a=\"b\"} 0\n");
    free(text);
    hpo_hist_observe(&h, 3);
    hpo_hist_observe(&h, 3);
    text = render("w", "a=\"b\"", &h, 1.0);
    assert_non_null(strstr(text, "w_bucket{a=\"b\",le=\"2\"} 0\nw_bucket{a=\"b\",le=\"4\"} 2\n"));
    assert_non_null(strstr(text, "w_sum{a=\"b\"} 6\nw_count{a=\"b\"} 2\n"));
    free(text);
}

static void test_too_many_bounds_are_cut(void **state)
{
    static uint64_t many[HPO_HIST_MAX_BOUNDS + 4];
    struct hpo_hist h;

    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++) {
        many[i] = i + 1;
    }
    hpo_hist_init(&h, many, HPO_HIST_MAX_BOUNDS + 4);
    assert_int_equal(h.n_le, HPO_HIST_MAX_BOUNDS);
    hpo_hist_observe(&h, 1000);
    assert_int_equal(atomic_load(&h.bucket[HPO_HIST_MAX_BOUNDS]), 1);
}

#define THREADS 4
#define PER_THREAD 100000

static void *observer(void *arg)
{
    struct hpo_hist *h = arg;

    for (uint64_t i = 0; i < PER_THREAD; i++) {
        hpo_hist_observe(h, i % 20000);
    }
    return NULL;
}

static void test_concurrent_observers(void **state)
{
    struct hpo_hist h;
    pthread_t t[THREADS];
    uint64_t per_round = 0;

    hpo_hist_init(&h, le_us, 3);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, observer, &h), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
    }
    assert_int_equal(hpo_hist_count(&h), THREADS * PER_THREAD);
    for (uint64_t i = 0; i < 20000; i++) {
        per_round += i;
    }
    /* 100000 = 5 rounds of 0..19999 per thread. */
    assert_int_equal(atomic_load(&h.sum), per_round * 5 * THREADS);
    /* 0..100 is 101 values per round, 101..1000 900, 1001..10000 9000, the rest 9999. */
    assert_int_equal(atomic_load(&h.bucket[0]), 101 * 5 * THREADS);
    assert_int_equal(atomic_load(&h.bucket[1]), 900 * 5 * THREADS);
    assert_int_equal(atomic_load(&h.bucket[2]), 9000 * 5 * THREADS);
    assert_int_equal(atomic_load(&h.bucket[3]), 9999 * 5 * THREADS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_are_inclusive),
        cmocka_unit_test(test_labels_and_unit_one),
        cmocka_unit_test(test_too_many_bounds_are_cut),
        cmocka_unit_test(test_concurrent_observers),
    };
    return cmocka_run_group_tests_name("core-histogram", tests, NULL, NULL);
}
