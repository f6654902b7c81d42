/*
** test-pruners.c: the median, percentile, asha and hyperband pruners on
** histories built by hand: options and their errors, warm-up, interval
** steps, n_startup_trials and n_min_trials, maximize, NaN, reports after a
** prune, numpy-exact percentiles, rungs, brackets, and decide() without
** observe().
*/
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../core/history.h"
#include "../core/space.h"
#include "pruner-int.h"
#include "pruner.h"

/* One study: a history without params and a configured pruner. */
struct fx {
    struct hpo_space space;
    struct hpo_history h;
    const struct hpo_pruner_type *type;
    void *pruner;
    bool observe; /* call the observe hook like the service does */
};

static struct fx *fx_new(const char *type, const char *options, bool maximize, bool observe)
{
    struct fx *f = calloc(1, sizeof(*f));
    json_error_t jerr;
    json_t *o = json_loads(options, 0, &jerr);
    struct hpo_error err;

    assert_non_null(f);
    assert_non_null(o);
    f->type = hpo_pruner_find(type);
    assert_non_null(f->type);
    assert_int_equal(f->type->configure(o, &f->pruner, &err), 0);
    json_decref(o);
    hpo_history_init(&f->h, &f->space, "s", maximize);
    f->observe = observe;
    return f;
}

static void fx_free(struct fx *f)
{
    f->type->destroy(f->pruner);
    hpo_history_finish(&f->h);
    free(f);
}

static void obs(struct fx *f, size_t trial, int64_t step)
{
    if (f->observe) {
        f->type->observe(f->pruner, &f->h, trial, step);
    }
}

static size_t new_trial(struct fx *f)
{
    struct hpo_trial *t = hpo_history_append(&f->h, HPO_STATE_RUNNING);

    assert_non_null(t);
    obs(f, (size_t)t->number, -1);
    return (size_t)t->number;
}

/* Store a report (first value kept), observe it, and return the decision. */
static bool report(struct fx *f, size_t trial, int64_t step, double value)
{
    struct hpo_error err;
    bool added = false, prune = false;

    assert_int_equal(hpo_trial_add_report(f->h.trials[trial], step, value, &added), 0);
    if (added) {
        obs(f, trial, step);
    }
    assert_int_equal(f->type->decide(f->pruner, &f->h, trial, step, &prune, &err), 0);
    return prune;
}

/* Store a report without deciding (a trial whose decisions the test ignores). */
static void store(struct fx *f, size_t trial, int64_t step, double value)
{
    bool added = false;

    assert_int_equal(hpo_trial_add_report(f->h.trials[trial], step, value, &added), 0);
    if (added) {
        obs(f, trial, step);
    }
}

static void finish(struct fx *f, size_t trial, enum hpo_state state)
{
    hpo_history_set_state(&f->h, f->h.trials[trial], state);
    obs(f, trial, -1);
}

/* A complete trial with the given values at steps 0, 1, ... */
static size_t complete_curve(struct fx *f, const double *v, size_t n)
{
    size_t t = new_trial(f);

    for (size_t i = 0; i < n; i++) {
        store(f, t, (int64_t)i, v[i]);
    }
    finish(f, t, HPO_STATE_COMPLETE);
    return t;
}

/* A complete trial with one value at `step`. */
static size_t complete_at(struct fx *f, int64_t step, double v)
{
    size_t t = new_trial(f);

    store(f, t, step, v);
    finish(f, t, HPO_STATE_COMPLETE);
    return t;
}

static void expect_error(const char *type, const char *options, const char *field)
{
    const struct hpo_pruner_type *pt = hpo_pruner_find(type);
    json_error_t jerr;
    json_t *o = json_loads(options, 0, &jerr);
    struct hpo_error err;
    void *state = NULL;

    assert_non_null(pt);
    assert_non_null(o);
    hpo_error_clear(&err);
    assert_int_equal(pt->configure(o, &state, &err), -EINVAL);
    assert_int_equal(err.code, HPO_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
    assert_non_null(strstr(err.message, field));
    json_decref(o);
}

static void test_registry_and_schema(void **unused)
{
    static const char *const names[] = { "none", "median", "percentile", "asha", "hyperband" };
    static const char *const keys[][7] = {
        { NULL },
        { "n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials", "compare",
                NULL },
        { "percentile", "n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials",
                "compare", NULL },
        { "min_resource", "reduction_factor", "min_early_stopping_rate", "bootstrap_count",
                NULL },
        { "min_resource", "max_resource", "reduction_factor", "bootstrap_count", NULL },
    };

    for (size_t i = 0; i < 5; i++) {
        const struct hpo_pruner_type *t = hpo_pruner_find(names[i]);
        json_error_t jerr;
        json_t *schema;
        size_t n = 0;

        assert_non_null(t);
        assert_string_equal(t->name, names[i]);
        schema = json_loads(t->options_schema, 0, &jerr);
        assert_non_null(schema);
        while (keys[i][n] != NULL) {
            json_t *opt = json_object_get(schema, keys[i][n]);
            assert_non_null(opt);
            assert_non_null(json_object_get(opt, "type"));
            assert_non_null(json_object_get(opt, "default"));
            n++;
        }
        assert_int_equal(json_object_size(schema), n);
        json_decref(schema);
    }
    assert_null(hpo_pruner_find("Median"));
}

static void test_describe_defaults(void **unused)
{
    static const struct {
        const char *type, *options, *expect;
    } cases[] = {
        { "median", "{}",
                "{\"n_startup_trials\": 5, \"n_warmup_steps\": 0, \"interval_steps\": 1, "
                "\"n_min_trials\": 1, \"compare\": \"last\"}" },
        { "percentile", "{\"percentile\": 25}",
                "{\"percentile\": 25.0, \"n_startup_trials\": 5, \"n_warmup_steps\": 0, "
                "\"interval_steps\": 1, \"n_min_trials\": 1, \"compare\": \"last\"}" },
        { "median", "{\"compare\": \"running_average\", \"n_warmup_steps\": 3}",
                "{\"n_startup_trials\": 5, \"n_warmup_steps\": 3, \"interval_steps\": 1, "
                "\"n_min_trials\": 1, \"compare\": \"running_average\"}" },
        { "asha", "{}",
                "{\"min_resource\": \"auto\", \"reduction_factor\": 4, "
                "\"min_early_stopping_rate\": 0, \"bootstrap_count\": 0}" },
        { "asha", "{\"min_resource\": 3, \"bootstrap_count\": 2}",
                "{\"min_resource\": 3, \"reduction_factor\": 4, "
                "\"min_early_stopping_rate\": 0, \"bootstrap_count\": 2}" },
        { "hyperband", "{}",
                "{\"min_resource\": 1, \"max_resource\": \"auto\", \"reduction_factor\": 3, "
                "\"bootstrap_count\": 0}" },
        { "hyperband", "{\"max_resource\": \"auto\", \"min_resource\": 2}",
                "{\"min_resource\": 2, \"max_resource\": \"auto\", \"reduction_factor\": 3, "
                "\"bootstrap_count\": 0}" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fx *f = fx_new(cases[i].type, cases[i].options, false, true);
        json_t *got = f->type->describe(f->pruner);
        json_error_t jerr;
        json_t *want = json_loads(cases[i].expect, 0, &jerr);

        assert_non_null(want);
        if (!json_equal(got, want)) {
            char *s = json_dumps(got, JSON_COMPACT);
            print_error("case %zu: got %s\n", i, s);
            free(s);
            fail();
        }
        json_decref(got);
        json_decref(want);
        fx_free(f);
    }
}

static void test_option_errors(void **unused)
{
    expect_error("median", "{\"n_startup_trials\": -1}", "pruner.n_startup_trials");
    expect_error("median", "{\"n_startup_trials\": 1.5}", "pruner.n_startup_trials");
    expect_error("median", "{\"n_warmup_steps\": -2}", "pruner.n_warmup_steps");
    expect_error("median", "{\"interval_steps\": 0}", "pruner.interval_steps");
    expect_error("median", "{\"n_min_trials\": 0}", "pruner.n_min_trials");
    expect_error("median", "{\"compare\": \"mean\"}", "pruner.compare");
    expect_error("median", "{\"percentile\": 50}", "pruner.percentile");
    expect_error("median", "{\"warmup\": 3}", "pruner.warmup");
    expect_error("percentile", "{}", "pruner.percentile");
    expect_error("percentile", "{\"percentile\": -0.1}", "pruner.percentile");
    expect_error("percentile", "{\"percentile\": 100.5}", "pruner.percentile");
    expect_error("percentile", "{\"percentile\": \"50\"}", "pruner.percentile");
    expect_error("asha", "{\"min_resource\": \"big\"}", "pruner.min_resource");
    expect_error("asha", "{\"min_resource\": 0}", "pruner.min_resource");
    expect_error("asha", "{\"min_resource\": 2.5}", "pruner.min_resource");
    expect_error("asha", "{\"reduction_factor\": 1}", "pruner.reduction_factor");
    expect_error("asha", "{\"min_early_stopping_rate\": -1}", "pruner.min_early_stopping_rate");
    expect_error("asha", "{\"bootstrap_count\": -1}", "pruner.bootstrap_count");
    expect_error("asha", "{\"bootstrap_count\": 1}", "pruner.bootstrap_count");
    expect_error("asha", "{\"max_resource\": 10}", "pruner.max_resource");
    expect_error("hyperband", "{\"min_resource\": 0}", "pruner.min_resource");
    expect_error("hyperband", "{\"min_resource\": \"auto\"}", "pruner.min_resource");
    expect_error("hyperband", "{\"max_resource\": \"x\"}", "pruner.max_resource");
    expect_error("hyperband", "{\"min_resource\": 5, \"max_resource\": 4}", "pruner.max_resource");
    expect_error("hyperband", "{\"reduction_factor\": 1}", "pruner.reduction_factor");
    expect_error("hyperband", "{\"bootstrap_count\": 2}", "pruner.bootstrap_count");
    expect_error("hyperband", "{\"min_early_stopping_rate\": 1}",
            "pruner.min_early_stopping_rate");

    /* The boundaries themselves are accepted. */
    fx_free(fx_new("percentile", "{\"percentile\": 0}", false, true));
    fx_free(fx_new("percentile", "{\"percentile\": 100}", false, true));
    fx_free(fx_new("asha", "{\"min_resource\": 1, \"bootstrap_count\": 3}", false, true));
    fx_free(fx_new("hyperband", "{\"min_resource\": 4, \"max_resource\": 4}", false, true));
}

static void test_percentile_numpy_exact(void **unused)
{
    const double a[] = { 0.06, 0.57, 0.8 };
    const double b[] = { 1, 2, 3, 4, 5 };
    const double c[] = { 0.1, 0.2, 0.7 };
    const double d[] = { 0.1, 0.3 };
    const double one[] = { 7.5 };

    /* numpy 1.24 gives 0.31499999999999995; a + (b - a) * g would give 0.315. */
    assert_true(hpo__percentile_sorted(a, 3, 25) == 0.31499999999999995);
    assert_true(hpo__percentile_sorted(b, 5, 25) == 2.0);
    assert_true(hpo__percentile_sorted(c, 3, 33.3) == 0.1666);
    assert_true(hpo__percentile_sorted(d, 2, 70) == 0.24);
    assert_true(hpo__percentile_sorted(b, 5, 0) == 1.0);
    assert_true(hpo__percentile_sorted(b, 5, 100) == 5.0);
    assert_true(hpo__percentile_sorted(one, 1, 30) == 7.5);
}

static void test_median_startup_trials(void **unused)
{
    struct fx *f = fx_new("median", "{}", false, true);
    size_t t;

    /* No complete trial: never prune, even a NaN. */
    t = new_trial(f);
    assert_false(report(f, t, 0, NAN));
    for (int i = 0; i < 4; i++) {
        complete_at(f, 0, 1.0);
    }
    /* Four complete trials, n_startup_trials 5: still continue. */
    assert_false(report(f, t, 1, 100.0));
    complete_at(f, 2, 1.0);
    /* Five: step 2 is judged (one complete trial reported it). */
    assert_true(report(f, t, 2, 100.0));
    fx_free(f);

    /* Failed and pruned trials do not count as complete. */

    f = fx_new("median", "{\"n_startup_trials\": 2}", false, true);
    complete_at(f, 0, 1.0);
    t = new_trial(f);
    finish(f, t, HPO_STATE_FAILED);
    t = new_trial(f);
    store(f, t, 0, 0.5);
    finish(f, t, HPO_STATE_PRUNED);
    t = new_trial(f);
    assert_false(report(f, t, 0, 9.0));
    complete_at(f, 0, 2.0);
    assert_false(report(f, t, 1, 9.0)); /* no complete trial reported step 1 */
    t = new_trial(f);
    assert_true(report(f, t, 0, 9.0));
    fx_free(f);
}

static void test_median_zero_startup(void **unused)
{
    struct fx *f = fx_new("median", "{\"n_startup_trials\": 0}", false, true);
    size_t t = new_trial(f);

    /* n_startup_trials 0 still needs one complete trial (Optuna). */
    assert_false(report(f, t, 0, 5.0));
    complete_at(f, 0, 1.0);
    assert_true(report(f, new_trial(f), 0, 5.0));
    fx_free(f);
}

static void test_median_warmup(void **unused)
{
    struct fx *f = fx_new("median", "{\"n_startup_trials\": 1, \"n_warmup_steps\": 3}", false,
            true);
    const double good[] = { 1, 1, 1, 1, 1, 1 };
    size_t t;

    complete_curve(f, good, 6);
    t = new_trial(f);
    for (int64_t s = 0; s < 3; s++) {
        assert_false(report(f, t, s, 10.0));
    }
    assert_true(report(f, t, 3, 10.0));
    fx_free(f);
}

static void test_median_interval(void **unused)
{
    struct fx *f = fx_new("median",
            "{\"n_startup_trials\": 1, \"n_warmup_steps\": 2, \"interval_steps\": 3}", false, true);
    const double good[] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    size_t t;

    complete_curve(f, good, 12);
    /* Checks at steps 2, 5, 8, 11: the first report in each interval. */
    t = new_trial(f);
    assert_false(report(f, t, 0, 9.0));
    assert_false(report(f, t, 1, 9.0));
    assert_true(report(f, t, 2, 9.0));
    assert_false(report(f, t, 3, 9.0));
    assert_false(report(f, t, 4, 9.0));
    assert_true(report(f, t, 5, 9.0));
    /* A skipped check step is made up at the next report in its interval. */
    t = new_trial(f);
    assert_false(report(f, t, 1, 9.0));
    assert_true(report(f, t, 7, 9.0));
    assert_true(report(f, t, 8, 9.0)); /* 8 starts the next interval */
    assert_false(report(f, t, 9, 9.0));
    assert_false(report(f, t, 10, 9.0));
    fx_free(f);
}

static void test_median_interval_boundary(void **unused)
{
    struct fx *f = fx_new("median",
            "{\"n_startup_trials\": 1, \"n_warmup_steps\": 2, \"interval_steps\": 3}", false, true);
    const double good[] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    size_t t;

    complete_curve(f, good, 12);
    t = new_trial(f);
    assert_false(report(f, t, 1, 9.0));
    assert_true(report(f, t, 7, 9.0)); /* interval [5, 8): first report in it */
    assert_true(report(f, t, 9, 9.0)); /* interval [8, 11): 7 < 8, so judged */
    assert_false(report(f, t, 10, 9.0));
    fx_free(f);
}

static void test_median_n_min_trials(void **unused)
{
    struct fx *f = fx_new("median", "{\"n_startup_trials\": 0, \"n_min_trials\": 3}", false,
            true);
    size_t t;

    complete_at(f, 4, 1.0);
    complete_at(f, 4, 1.0);
    complete_at(f, 3, 1.0);
    t = new_trial(f);
    assert_false(report(f, t, 4, 9.0)); /* two values at step 4 */
    complete_at(f, 4, 1.0);
    t = new_trial(f);
    assert_true(report(f, t, 4, 9.0));
    fx_free(f);
}

static void test_percentile_ties_and_maximize(void **unused)
{
    struct fx *f = fx_new("percentile", "{\"percentile\": 25, \"n_startup_trials\": 0}", false,
            true);
    size_t t;

    complete_at(f, 0, 0.06);
    complete_at(f, 0, 0.57);
    complete_at(f, 0, 0.8);
    /* q = 0.31499999999999995 (numpy): 0.315 is strictly worse, 0.31 is not. */
    assert_true(report(f, new_trial(f), 0, 0.315));
    assert_false(report(f, new_trial(f), 0, 0.31));
    /* Equal to q is not worse. */
    t = new_trial(f);
    assert_false(report(f, t, 0, 0.31499999999999995));
    fx_free(f);

    /* Maximize: keep the top 25%, i.e. compare with the 75th percentile of [0, 10]. */
    f = fx_new("percentile", "{\"percentile\": 25, \"n_startup_trials\": 0}", true, true);
    complete_at(f, 0, 0.0);
    complete_at(f, 0, 10.0);
    assert_false(report(f, new_trial(f), 0, 7.5));
    assert_true(report(f, new_trial(f), 0, 7.4));
    /* The best over all steps counts, the maximum when maximizing. */
    t = new_trial(f);
    store(f, t, 0, 10.0);
    complete_at(f, 1, 10.0);
    assert_false(report(f, t, 1, 1.0));
    t = new_trial(f);
    store(f, t, 0, 1.0);
    assert_true(report(f, t, 1, 1.0));
    fx_free(f);
}

static void test_median_best_over_steps(void **unused)
{
    struct fx *f = fx_new("median", "{\"n_startup_trials\": 1}", false, true);
    const double ref[] = { 0.5, 0.5, 0.5 };
    size_t t;

    complete_curve(f, ref, 3);
    t = new_trial(f);
    assert_false(report(f, t, 0, 0.4));
    /* Worse than the median at step 1, but its best (0.4 at step 0) is not. */
    assert_false(report(f, t, 1, 0.9));
    t = new_trial(f);
    assert_true(report(f, t, 0, 0.6));
    fx_free(f);
}

static void test_median_nan(void **unused)
{
    struct fx *f = fx_new("median", "{\"n_startup_trials\": 0, \"n_min_trials\": 2}", false,
            true);
    size_t t;

    const double c1[] = { 1.0, 0.6 };
    const double c2[] = { 1.0, 0.4 };

    complete_at(f, 0, 1.0);
    complete_at(f, 0, NAN);
    complete_curve(f, c1, 2);
    complete_curve(f, c2, 2);
    /* n_min_trials counts the NaN; the median ignores it (numpy nanpercentile). */
    assert_true(report(f, new_trial(f), 0, 1.5));
    assert_false(report(f, new_trial(f), 0, 1.0));
    /* A trial whose values are all NaN prunes; a NaN among numbers is ignored. */
    assert_true(report(f, new_trial(f), 0, NAN));
    /* Step 1: median of {0.6, 0.4} is 0.5, and t's best is 0.5, not NaN. */
    t = new_trial(f);
    store(f, t, 0, 0.5);
    assert_false(report(f, t, 1, NAN));
    fx_free(f);

    /* Only NaNs at the step: no percentile, continue. */
    f = fx_new("median", "{\"n_startup_trials\": 0}", false, true);
    complete_at(f, 0, NAN);
    assert_false(report(f, new_trial(f), 0, 5.0));
    fx_free(f);
}

static void test_median_reports_after_prune(void **unused)
{
    struct fx *f = fx_new("median", "{\"n_startup_trials\": 1}", false, true);
    const double ref[] = { 1, 1, 1, 1, 1, 1 };
    size_t t;

    complete_curve(f, ref, 6);
    t = new_trial(f);
    assert_true(report(f, t, 0, 5.0));
    /* Still running: later reports are decided on the same rule, no NaN appears. */
    assert_true(report(f, t, 1, 4.0));
    assert_false(report(f, t, 2, 0.5));
    assert_false(report(f, t, 3, 7.0)); /* best so far 0.5 */
    /* A repeated step keeps its first value and gets the same answer. */
    assert_false(report(f, t, 3, 100.0));
    assert_true(hpo_trial_report_at(f->h.trials[t], 3)->value == 7.0);
    finish(f, t, HPO_STATE_PRUNED);
    /* A pruned trial is no competitor: the median at step 2 stays 1 (not 0.75). */
    t = new_trial(f);
    store(f, t, 0, 0.9);
    store(f, t, 1, 0.9);
    assert_false(report(f, t, 2, 0.9));
    fx_free(f);
}

/* The same decisions with and without observe(), and observe() repeated. */
static void test_median_observe_optional(void **unused)
{
    for (int mode = 0; mode < 3; mode++) {
        struct fx *f = fx_new("median", "{\"n_startup_trials\": 0}", false, mode != 0);
        size_t a, b;

        a = complete_at(f, 0, 1.0);
        b = complete_at(f, 0, 10.0);
        if (mode == 2) {
            /* Repeated calls for the same trial must not count it twice. */
            for (int i = 0; i < 3; i++) {
                f->type->observe(f->pruner, &f->h, a, -1);
                f->type->observe(f->pruner, &f->h, a, 0);
                f->type->observe(f->pruner, &f->h, b, -1);
            }
        }
        /* Median of {1, 10} is 5.5 (of {1, 1, 1, 10} it would be 1). */
        assert_false(report(f, new_trial(f), 0, 3.0));
        assert_true(report(f, new_trial(f), 0, 6.0));
        /* A trial completed without observe is picked up by the next decision. */
        f->observe = false;
        {
            size_t c = new_trial(f);
            store(f, c, 0, 0.0);
            store(f, c, 0, 0.0);
            hpo_history_set_state(&f->h, f->h.trials[c], HPO_STATE_COMPLETE);
        }
        /* {0, 1, 10}: median 1. */
        assert_true(report(f, new_trial(f), 0, 3.0));
        fx_free(f);
    }
}

static void test_running_average(void **unused)
{
    struct fx *f = fx_new("median", "{\"n_startup_trials\": 0, \"compare\": \"running_average\"}",
            false, true);
    const double a[] = { 4.0, 2.0, 0.0 }; /* running averages 4, 3, 2 */
    const double b[] = { 1.0, 1.0 };      /* 1, 1, 1 (stops at step 1) */
    const double c[] = { 9.0, 9.0, 0.0 }; /* 9, 9, 6 */
    size_t t;

    complete_curve(f, a, 3);
    complete_curve(f, b, 2);
    /* Step 2 median of {2, 1} = 1.5; with "last" it would be 0 (only a reports it). */
    t = new_trial(f);
    store(f, t, 0, 1.6);
    store(f, t, 1, 1.6);
    assert_true(report(f, t, 2, 1.6));
    t = new_trial(f);
    store(f, t, 0, 1.4);
    store(f, t, 1, 1.4);
    assert_false(report(f, t, 2, 1.4));
    /* A bucket made before a trial completes gets that trial afterwards: {2, 1, 6}. */
    complete_curve(f, c, 3);
    t = new_trial(f);
    store(f, t, 0, 2.1);
    store(f, t, 1, 2.1);
    assert_true(report(f, t, 2, 2.1));
    t = new_trial(f);
    store(f, t, 0, 1.9);
    store(f, t, 1, 1.9);
    assert_false(report(f, t, 2, 1.9));
    /* Step 0: {4, 1, 9} -> 4. */
    assert_true(report(f, new_trial(f), 0, 4.5));
    assert_false(report(f, new_trial(f), 0, 4.0));
    fx_free(f);
}

static void test_asha_rungs(void **unused)
{
    /* min_resource 1, eta 2: rungs at steps 1, 2, 4, 8. */
    struct fx *f = fx_new("asha", "{\"min_resource\": 1, \"reduction_factor\": 2}", false, true);
    size_t t0, t1, t2, t3;

    t0 = new_trial(f);
    assert_false(report(f, t0, 0, 0.9)); /* below rung 0 */
    assert_false(report(f, t0, 1, 0.5)); /* alone in rung 0: best so far */
    assert_false(report(f, t0, 2, 0.4));
    t1 = new_trial(f);
    assert_true(report(f, t1, 1, 0.6)); /* rung 0 {0.5, 0.6}: i = 0, 0.6 > 0.5 */
    t2 = new_trial(f);
    assert_false(report(f, t2, 1, 0.5)); /* ties are kept: 0.5 <= 0.5 */
    /* Rung 0 {0.5, 0.5, 0.6, 0.55}: i = 4 / 2 - 1 = 1, W[1] = 0.5. */
    t3 = new_trial(f);
    assert_true(report(f, t3, 1, 0.55));
    /* Rung 1 (step 2) {0.4, 0.45}: i = 0 -> prune. */
    assert_true(report(f, t2, 2, 0.45));
    /* A report jumping over several rungs is judged at each in turn. */
    t3 = new_trial(f);
    assert_true(report(f, t3, 5, 0.45)); /* rung 0: {0.45, 0.5, 0.5, 0.55, 0.6}: i=1 -> ok;
                                            rung 1: {0.4, 0.45, 0.45}: i=0, 0.45 > 0.4 */
    fx_free(f);
}

static void test_asha_reports_after_prune(void **unused)
{
    struct fx *f = fx_new("asha", "{\"min_resource\": 1, \"reduction_factor\": 4}", false, true);
    size_t a, b;

    /* Rungs at 1, 4, 16. */
    a = new_trial(f);
    for (int64_t s = 0; s <= 16; s++) {
        store(f, a, s, 0.5);
    }
    finish(f, a, HPO_STATE_COMPLETE);
    b = new_trial(f);
    assert_false(report(f, b, 0, 0.7));
    assert_true(report(f, b, 1, 0.7));
    /* Still running after the prune: rung 0 was judged; nothing until rung 1. */
    assert_false(report(f, b, 2, 0.7));
    assert_false(report(f, b, 3, 0.7));
    /* A repeated step is decided on its stored value. */
    assert_false(report(f, b, 3, 0.1));
    assert_true(report(f, b, 4, 0.7));  /* rung 1 {0.5, 0.7} */
    assert_false(report(f, b, 5, 0.1)); /* between rungs */
    finish(f, b, HPO_STATE_PRUNED);
    fx_free(f);

    /* Pruned and failed trials stay competitors in their rungs (as Optuna). */
    for (int st = HPO_STATE_PRUNED; st <= HPO_STATE_FAILED; st++) {
        f = fx_new("asha", "{\"min_resource\": 1, \"reduction_factor\": 2}", false, true);
        a = new_trial(f);
        assert_false(report(f, a, 1, 0.5));
        finish(f, a, (enum hpo_state)st);
        assert_true(report(f, new_trial(f), 1, 0.6));
        fx_free(f);
    }
}

static void test_asha_bootstrap_and_maximize(void **unused)
{
    struct fx *f = fx_new("asha",
            "{\"min_resource\": 2, \"reduction_factor\": 3, \"bootstrap_count\": 2}", true, true);
    size_t t;

    /* Rungs at 2, 6, 18; while a rung holds <= 2 values, prune. */
    t = new_trial(f);
    assert_false(report(f, t, 1, 0.1));
    assert_true(report(f, t, 2, 0.9));
    assert_true(report(f, new_trial(f), 2, 0.8));
    t = new_trial(f);
    assert_false(report(f, t, 2, 0.95)); /* {0.8, 0.9, 0.95}: best is kept */
    assert_true(report(f, new_trial(f), 2, 0.85));
    fx_free(f);

    f = fx_new("asha", "{\"min_resource\": 1, \"reduction_factor\": 2}", true, true);
    assert_false(report(f, new_trial(f), 1, 0.5));
    assert_true(report(f, new_trial(f), 1, 0.4)); /* maximize: 0.4 < 0.5 */
    assert_false(report(f, new_trial(f), 1, 0.6));
    /* {0.4, 0.5, 0.6, 0.45}: i = 1, W[4 - 1 - 1] = 0.5 */
    assert_true(report(f, new_trial(f), 1, 0.45));
    assert_false(report(f, new_trial(f), 1, 0.5));
    fx_free(f);
}

static void test_asha_min_early_stopping_rate(void **unused)
{
    /* min_resource 1, eta 3, rate 2: rungs at 9, 27. */
    struct fx *f = fx_new("asha",
            "{\"min_resource\": 1, \"reduction_factor\": 3, \"min_early_stopping_rate\": 2}", false,
            true);
    size_t t;

    assert_false(report(f, new_trial(f), 9, 0.5));
    t = new_trial(f);
    assert_false(report(f, t, 8, 0.9));
    assert_true(report(f, t, 9, 0.9));
    fx_free(f);
}

static void test_asha_auto(void **unused)
{
    struct fx *f = fx_new("asha", "{}", false, true);
    size_t a, b, c;

    /* Before any trial completes, never prune (min_resource unknown). */
    a = new_trial(f);
    b = new_trial(f);
    for (int64_t s = 0; s <= 10; s++) {
        assert_false(report(f, a, s, 0.5));
        assert_false(report(f, b, s, 0.9));
    }
    /* A complete trial without reports does not fix it either. */
    finish(f, new_trial(f), HPO_STATE_COMPLETE);
    assert_false(report(f, b, 11, 0.9));
    /* A complete trial that reached step 250: min_resource = 2, rungs 2, 8, 32. */
    c = new_trial(f);
    for (int64_t s = 0; s <= 250; s++) {
        store(f, c, s, 0.3);
    }
    finish(f, c, HPO_STATE_COMPLETE);
    /* Rung values come from the reports made before the fix too. */
    c = new_trial(f);
    assert_false(report(f, c, 1, 0.6));
    assert_true(report(f, c, 2, 0.6)); /* rung 0 {0.3, 0.5, 0.9, 0.6}: i = 0 */
    /* Fixed once: a longer complete trial does not change the rungs. */
    c = new_trial(f);
    for (int64_t s = 0; s <= 1000; s++) {
        store(f, c, s, 0.3);
    }
    finish(f, c, HPO_STATE_COMPLETE);
    c = new_trial(f);
    assert_true(report(f, c, 2, 0.6));
    fx_free(f);
}

static void test_asha_nan(void **unused)
{
    struct fx *f = fx_new("asha", "{\"min_resource\": 1, \"reduction_factor\": 2}", false, true);
    size_t t;

    t = new_trial(f);
    assert_false(report(f, t, 0, NAN)); /* below the first rung */
    assert_true(report(f, t, 1, NAN));
    /* The NaN is not a rung value: the next trial is alone in rung 0. */
    assert_false(report(f, new_trial(f), 1, 0.9));
    fx_free(f);
}

static void test_asha_observe_optional(void **unused)
{
    for (int mode = 0; mode < 3; mode++) {
        struct fx *f = fx_new("asha", "{\"min_resource\": 1, \"reduction_factor\": 2}", false,
                mode != 0);
        size_t a, b;

        a = new_trial(f);
        store(f, a, 1, 0.5);
        b = new_trial(f);
        store(f, b, 1, 0.6);
        if (mode == 2) {
            for (int i = 0; i < 3; i++) {
                f->type->observe(f->pruner, &f->h, a, 1);
                f->type->observe(f->pruner, &f->h, a, -1);
                f->type->observe(f->pruner, &f->h, b, -1);
            }
        }
        /*
        ** Rung 0 {0.5, 0.55, 0.6}: i = 0, prune. Had b been counted four times,
        ** {0.5, 0.55, 0.6 x4} gives i = 2 and 0.55 <= 0.6 would continue.
        */
        assert_true(report(f, new_trial(f), 1, 0.55));
        assert_false(report(f, new_trial(f), 1, 0.5));
        fx_free(f);
    }
}

static void test_crc32_and_brackets(void **unused)
{
    /* binascii.crc32(b"s_0") ... b"s_4". */
    static const uint32_t crc[] = { 2987163180u, 3305852602u, 1543642880u, 721760150u,
        3043080757u };
    /* Optuna 3.1 HyperbandPruner(1, 243, 3)._get_bracket_id on study "s": trials 0..19. */
    static const size_t bracket[] = { 0, 0, 0, 1, 0, 1, 0, 0, 0, 2, 0, 0, 1, 2, 0, 1, 1, 1, 2,
        0 };
    int64_t budgets[HPO_SHA_MAX_RUNGS];
    struct fx *f;

    for (int i = 0; i < 5; i++) {
        assert_int_equal(hpo__crc32_trial("s", i), crc[i]);
    }
    assert_int_equal(hpo__crc32_trial("", 12), 0x962be6adu); /* crc32(b"_12") */
    /* math.log(243, 3) is 4.999999999999999: Optuna has 5 brackets, not 6. */
    assert_int_equal(hpo__hyperband_layout(1, 243, 3, budgets), 5);
    assert_int_equal(budgets[0], 81);
    assert_int_equal(budgets[1], 34);
    assert_int_equal(budgets[2], 15);
    assert_int_equal(budgets[3], 8);
    assert_int_equal(budgets[4], 5);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(hpo__hyperband_bracket(budgets, 5, hpo__crc32_trial("s", i)),
                bracket[i]);
    }
    assert_int_equal(hpo__hyperband_layout(1, 9, 3, budgets), 3);
    assert_int_equal(hpo__hyperband_layout(4, 4, 3, budgets), 1);
    assert_int_equal(budgets[0], 1);
    assert_int_equal(hpo__hyperband_layout(5, 1, 3, budgets), 0);

    /*
    ** Trials in different brackets never compete. Bracket b's rungs are at
    ** 3^b, 3^(b+1), ...: trials 0 and 1 are in bracket 0, 3 and 5 in bracket 1.
    */
    f = fx_new("hyperband", "{\"max_resource\": 243}", false, true);
    for (int i = 0; i < 6; i++) {
        new_trial(f);
    }
    assert_false(report(f, 0, 1, 0.5));  /* bracket 0, rung 0: alone */
    assert_false(report(f, 3, 3, 0.9));  /* bracket 1, rung 0: alone, 0.5 is not there */
    assert_true(report(f, 1, 1, 0.6));   /* bracket 0 {0.5, 0.6} */
    assert_false(report(f, 5, 2, 0.1));  /* bracket 1: below its first rung */
    assert_true(report(f, 5, 3, 0.95));  /* bracket 1 {0.9, 0.95} */
    fx_free(f);
}

static void test_hyperband_auto(void **unused)
{
    struct fx *f = fx_new("hyperband", "{}", false, true);
    size_t a, c;

    /* Before a trial completes, never prune. Trials 0 and 2 of "s" share bracket 0. */
    a = new_trial(f);
    assert_false(report(f, a, 1, 0.9));
    finish(f, new_trial(f), HPO_STATE_FAILED);
    c = new_trial(f);
    for (int64_t s = 0; s <= 8; s++) {
        store(f, c, s, 0.1);
    }
    finish(f, c, HPO_STATE_COMPLETE);
    /* max_resource 9: 3 brackets; bracket 0 has rungs at 1, 3, 9. */
    assert_false(report(f, a, 2, 0.9)); /* rung 0 was passed at step 1 */
    assert_true(report(f, a, 3, 0.9));  /* rung 1 {0.1, 0.9} */
    fx_free(f);

    /* max_resource below min_resource: no bracket at all, never prune (as Optuna). */
    f = fx_new("hyperband", "{\"min_resource\": 5}", false, true);
    complete_at(f, 0, 0.1);
    a = new_trial(f);
    for (int64_t s = 0; s < 30; s++) {
        assert_false(report(f, a, s, 100.0));
    }
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_and_schema),
        cmocka_unit_test(test_describe_defaults),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_percentile_numpy_exact),
        cmocka_unit_test(test_median_startup_trials),
        cmocka_unit_test(test_median_zero_startup),
        cmocka_unit_test(test_median_warmup),
        cmocka_unit_test(test_median_interval),
        cmocka_unit_test(test_median_interval_boundary),
        cmocka_unit_test(test_median_n_min_trials),
        cmocka_unit_test(test_percentile_ties_and_maximize),
        cmocka_unit_test(test_median_best_over_steps),
        cmocka_unit_test(test_median_nan),
        cmocka_unit_test(test_median_reports_after_prune),
        cmocka_unit_test(test_median_observe_optional),
        cmocka_unit_test(test_running_average),
        cmocka_unit_test(test_asha_rungs),
        cmocka_unit_test(test_asha_reports_after_prune),
        cmocka_unit_test(test_asha_bootstrap_and_maximize),
        cmocka_unit_test(test_asha_min_early_stopping_rate),
        cmocka_unit_test(test_asha_auto),
        cmocka_unit_test(test_asha_nan),
        cmocka_unit_test(test_asha_observe_optional),
        cmocka_unit_test(test_crc32_and_brackets),
        cmocka_unit_test(test_hyperband_auto),
    };

    return cmocka_run_group_tests_name("pruners", tests, NULL, NULL);
}
