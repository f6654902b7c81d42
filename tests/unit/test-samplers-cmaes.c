/*
** test-samplers-cmaes.c: the cmaes sampler (samplers/cmaes.c): strategy
** constants, the first generation and first update against the `cmaes`
** library (0.9.1, the one Optuna 3.1 uses) on the points the sampler drew at
** a fixed seed, generations fixed by trial numbers whatever the tell order,
** failed members replaced, restart identity through save/load, IPOP's
** doubling on stagnation, the integer margin, options errors.
*/
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmaes.h"
#include "history.h"
#include "rng.h"
#include "sampler.h"
#include "space.h"

#include "sampler-test.h"

#define T (&hpo_sampler_cmaes)

static struct hpo_space *parse(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };

    assert_non_null(j);
    assert_int_equal(hpo_space_parse(j, &space, &err), 0);
    json_decref(j);
    return space;
}

/* Ask one trial as the service does: suggest, then append it running with decoded values. */
static struct hpo_trial *ask(void *state, const struct hpo_space *space, struct hpo_history *h,
        uint64_t seed)
{
    struct hpo_error err = { 0 };
    struct hpo_rng rng;
    struct hpo_trial *t;
    double *unit = malloc(space->dim * sizeof(double));

    assert_non_null(unit);
    hpo_rng_init(&rng, seed, (uint64_t)h->n_trials);
    assert_int_equal(T->suggest(state, space, h, &rng, unit, &err), 0);
    t = hpo_history_append(h, HPO_STATE_RUNNING);
    assert_non_null(t);
    hpo_space_decode(space, unit, t->values);
    hpo_space_encode(space, t->values, t->unit);
    free(unit);
    return t;
}

/* Finish trial t with `state` and value v, then tell the sampler. */
static void finish(void *state, const struct hpo_space *space, struct hpo_history *h,
        struct hpo_trial *t, enum hpo_state st, double v)
{
    t->value = v;
    hpo_history_set_state(h, t, st);
    T->tell(state, space, h, (size_t)t->number, NULL);
}

/* A weighted sphere with its minimum at 0.3. */
static double sphere(const struct hpo_trial *t, size_t n)
{
    double s = 0;

    for (size_t i = 0; i < n; i++) {
        s += (double)(i + 1) * (t->values[i] - 0.3) * (t->values[i] - 0.3);
    }
    return s;
}

static void test_constants(void **unused)
{
    /* The default: min(4 + floor(3 ln n), 5 + floor(ln n)) (docs/ALGORITHMS.md §10.2). */
    static const size_t dims[4] = { 2, 5, 10, 3 };
    static const int lambdas[4] = { 5, 6, 7, 6 };

    for (int k = 0; k < 4; k++) {
        struct hpo_space *space = sampler_float_space(dims[k]);
        struct hpo_cmaes_view v;
        void *state = sampler_make(T, space, "{}");
        hpo_cmaes_inspect(state, &v);
        assert_int_equal(v.n, dims[k]);
        assert_int_equal(v.lambda, lambdas[k]);
        assert_false(v.separable);
        assert_true(v.sigma == 1.0 / 6.0);
        for (size_t i = 0; i < v.n; i++) {
            assert_true(v.mean[i] == 0.5);
        }
        T->destroy(state);
        hpo_space_destroy(space);
    }
    /* A varying param drawn at random (categorical, conditional): the library's 4 + floor(3 ln n). */
    static const char *const noisy[2] = {
        "[{\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
        "{\"name\": \"y\", \"type\": \"int\", \"low\": 0, \"high\": 9},"
        "{\"name\": \"z\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
        "{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [1, 2]}]",
        "[{\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
        "{\"name\": \"y\", \"type\": \"int\", \"low\": 0, \"high\": 9},"
        "{\"name\": \"z\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
        "{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [1]}]",
    };
    for (int k = 0; k < 2; k++) {
        struct hpo_space *space = parse(noisy[k]);
        struct hpo_cmaes_view v;
        void *state = sampler_make(T, space, "{}");
        hpo_cmaes_inspect(state, &v);
        assert_int_equal(v.n, 3);
        assert_int_equal(v.lambda, k == 0 ? 7 : 6); /* a one-choice categorical does not vary */
        T->destroy(state);
        hpo_space_destroy(space);
    }
}

/*
** The first generation (n = 3, lambda 7, seed 11) and the first update.
** Expected values: the `cmaes` library 0.9.1, fed the 7 points below (the
** sampler's draws at seed 11, checked first) and their sphere() values:
**   from cmaes import CMA, SepCMA
**   o = CMA(mean=np.full(3, .5), sigma=1/6, bounds=np.array([[0, 1]] * 3))
**   o.tell([(x, f) for x, f in zip(X, F)])
**   print(o._mean, o._sigma, o._C, o._p_sigma, o._pc)
** and the same with SepCMA (o._C is then the diagonal).
*/
static const double first_x[7][3] = {
    { 0.31710193726226427, 0.38625331084091313, 0.49625089832144303 },
    { 0.73867626589393254, 0.72710362184590083, 0.53008479057179825 },
    { 0.52053691427134141, 0.42725566141802712, 0.64319430612855433 },
    { 0.31464347398776787, 0.2612534669650497, 0.3558744578383789 },
    { 0.50677411058725774, 0.46412497326435936, 0.52591457619391535 },
    { 0.23286358924775596, 0.85639753760773996, 0.74484031264044848 },
    { 0.40284944517616161, 0.2019706997974472, 0.26277445028109592 },
};
static const double full_ref[1 + 1 + 9 + 3 + 3 + 3] = {
    /* sigma, generation, mean, C, p_sigma, p_c */
    0.19288142202318961, 1, 0.34077095447861216, 0.25908565927430505, 0.34567295324322189,
    1.0697037700536141, 0.31518741655538629, 0.22265340323765948, 0.31518741655538629,
    1.2969467154345979, 0.27306233679624436, 0.22265340323765948, 0.27306233679624436,
    1.0811110784341087, -1.1634093128441629, -1.7602440979295924, -1.1275927883173513,
    -1.287418210484365, -1.9478701790964015, -1.2477839687750987,
};
static const double sep_ref[1 + 1 + 3 + 3 + 3 + 3] = {
    /* sigma, generation, mean, C, p_sigma, p_c */
    0.20551314748384245, 1, 0.34077095447861211, 0.25908565927430499, 0.34567295324322189,
    1.0597447627535073, 1.5077007226525039, 1.0618461657512577, -1.2549181048088365,
    -1.8986973569727914, -1.2162844059173044, -1.2961670092967832, -1.961107155372519,
    -1.2562634285305008,
};

static void check_first_update(const char *options, const double *ref, bool sep)
{
    struct hpo_space *space = sampler_float_space(3);
    struct hpo_history h;
    struct hpo_trial *t[7];
    struct hpo_cmaes_view v;
    void *state = sampler_make(T, space, options);
    size_t nc = sep ? 3 : 9;

    hpo_history_init(&h, space, "first", false);
    for (int k = 0; k < 7; k++) {
        t[k] = ask(state, space, &h, 11);
        for (int i = 0; i < 3; i++) {
            assert_true(fabs(t[k]->values[i] - first_x[k][i]) < 1e-15);
        }
    }
    hpo_cmaes_inspect(state, &v);
    assert_int_equal(v.n_members, 7);
    assert_int_equal(v.generation, 0);
    /* Told out of order: nothing moves until all 7 are in. */
    for (int k = 6; k >= 0; k--) {
        hpo_cmaes_inspect(state, &v);
        assert_int_equal(v.generation, 0);
        finish(state, space, &h, t[k], HPO_STATE_COMPLETE, sphere(t[k], 3));
    }
    hpo_cmaes_inspect(state, &v);
    assert_int_equal(v.generation, 1);
    assert_int_equal(v.n_members, 0);
    assert_true(fabs(v.sigma - ref[0]) < 1e-12);
    for (size_t i = 0; i < 3; i++) {
        assert_true(fabs(v.mean[i] - ref[2 + i]) < 1e-12);
        assert_true(fabs(v.p_sigma[i] - ref[2 + 3 + nc + i]) < 1e-12);
        assert_true(fabs(v.p_c[i] - ref[2 + 3 + nc + 3 + i]) < 1e-12);
    }
    for (size_t i = 0; i < nc; i++) {
        /* The library's C after tell (before its next eigen decomposition). */
        assert_true(fabs(v.cov[i] - ref[2 + 3 + i]) < 1e-12);
    }
    T->destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
}

static void test_first_update_full(void **unused)
{
    check_first_update("{\"popsize\": 7}", full_ref, false);
}

static void test_first_update_separable(void **unused)
{
    check_first_update("{\"use_separable_cma\": true, \"popsize\": 7}", sep_ref, true);
}

/* Run `count` asks and tells on sphere, in batches of `batch` asks told in reverse. */
static void drive(void *state, const struct hpo_space *space, struct hpo_history *h,
        uint64_t seed, int count, int batch)
{
    struct hpo_trial *pend[16];

    for (int done = 0; done < count;) {
        int k = 0;
        for (; k < batch && done + k < count; k++) {
            pend[k] = ask(state, space, h, seed);
        }
        for (int j = k - 1; j >= 0; j--) {
            finish(state, space, h, pend[j], HPO_STATE_COMPLETE, sphere(pend[j], 4));
        }
        done += k;
    }
}

static void test_restart_identity(void **unused)
{
    struct hpo_space *space = sampler_float_space(4);
    struct hpo_history h1, h2;
    struct hpo_cmaes_view v1, v2;
    void *a = sampler_make(T, space, "{}"), *b = sampler_make(T, space, "{}");
    void *blob = NULL;
    size_t len = 0;

    hpo_history_init(&h1, space, "a", false);
    hpo_history_init(&h2, space, "b", false);
    drive(a, space, &h1, 5, 60, 3);
    /*
    ** b: the same schedule with a "restart" (saved state, fresh sampler) after
    ** 30 trials, in the middle of generation 4 (lambda 8) with overflow asks.
    */
    drive(b, space, &h2, 5, 30, 3);
    assert_true(T->needs_save(b));
    assert_int_equal(T->save(b, &blob, &len), 0);
    assert_false(T->needs_save(b));
    T->destroy(b);
    b = sampler_make(T, space, "{}");
    assert_int_equal(T->load(b, blob, len), 0);
    drive(b, space, &h2, 5, 30, 3);
    for (size_t i = 0; i < 60; i++) {
        assert_memory_equal(h1.trials[i]->values, h2.trials[i]->values, 4 * sizeof(double));
    }
    hpo_cmaes_inspect(a, &v1);
    hpo_cmaes_inspect(b, &v2);
    assert_true(v1.generation >= 5);
    assert_int_equal(v1.generation, v2.generation);
    assert_memory_equal(v1.cov, v2.cov, 16 * sizeof(double));
    assert_true(v1.sigma == v2.sigma);

    /* Loading a blob of another shape is refused and changes nothing. */
    assert_int_equal(T->load(b, blob, len - 8), -EINVAL);
    ((unsigned char *)blob)[0] ^= 1;
    assert_int_equal(T->load(b, blob, len), -EINVAL);
    hpo_cmaes_inspect(b, &v2);
    assert_true(v1.sigma == v2.sigma);

    free(blob);
    T->destroy(a);
    T->destroy(b);
    hpo_history_finish(&h1);
    hpo_history_finish(&h2);
    hpo_space_destroy(space);
}

/* A failed member is replaced by the next overflow ask; later finishers are not used. */
static void test_failed_member_replaced(void **unused)
{
    struct hpo_space *space = sampler_float_space(2);
    struct hpo_history h1, h2;
    struct hpo_trial *t[8], *u[8];
    struct hpo_cmaes_view v1, v2;
    void *a = sampler_make(T, space, "{\"popsize\": 6}"), *b = sampler_make(T, space, "{\"popsize\": 6}");

    hpo_history_init(&h1, space, "a", false);
    hpo_history_init(&h2, space, "b", false);
    /* a: 7 asks (lambda 6 + 1 overflow); member 2 fails; the rest complete. */
    for (int k = 0; k < 7; k++) {
        t[k] = ask(a, space, &h1, 9);
        u[k] = ask(b, space, &h2, 9);
        assert_memory_equal(t[k]->values, u[k]->values, 2 * sizeof(double));
    }
    finish(a, space, &h1, t[2], HPO_STATE_FAILED, NAN);
    for (int k = 0; k < 7; k++) {
        if (k != 2) {
            finish(a, space, &h1, t[k], HPO_STATE_COMPLETE, sphere(t[k], 2));
        }
    }
    /* b: the same, but member 2 is still running when the overflow completes. */
    for (int k = 0; k < 7; k++) {
        if (k != 2) {
            finish(b, space, &h2, u[k], HPO_STATE_COMPLETE, sphere(u[k], 2));
        }
    }
    hpo_cmaes_inspect(b, &v2);
    assert_int_equal(v2.generation, 0); /* waits for trial 2 */
    finish(b, space, &h2, u[2], HPO_STATE_FAILED, NAN);
    hpo_cmaes_inspect(a, &v1);
    hpo_cmaes_inspect(b, &v2);
    assert_int_equal(v1.generation, 1);
    assert_int_equal(v2.generation, 1);
    assert_memory_equal(v1.mean, v2.mean, 2 * sizeof(double));
    assert_true(v1.sigma == v2.sigma);
    T->destroy(a);
    T->destroy(b);
    hpo_history_finish(&h1);
    hpo_history_finish(&h2);
    hpo_space_destroy(space);
}

/*
** An enqueued trial with only its categorical fixed is sampled under its own
** number and counts as a member; one whose modelled param was fixed does not.
*/
static void test_enqueued_member(void **unused)
{
    struct hpo_space *space = parse("[{\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
                                    "{\"name\": \"y\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
                                    "{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [1, 2]}]");
    struct hpo_history h;
    struct hpo_error err = { 0 };
    struct hpo_cmaes_view v;
    void *state = sampler_make(T, space, "{\"popsize\": 6}");
    double unit[3];

    hpo_history_init(&h, space, "enq", false);
    for (int fixed = 0; fixed < 2; fixed++) {
        /* Trial w waits with c (fixed == 0) or x (fixed == 1) given; it is asked first. */
        struct hpo_trial *w = hpo_history_append(&h, HPO_STATE_WAITING);
        struct hpo_rng rng;
        assert_non_null(w);
        for (int j = 0; j < 3; j++) {
            w->values[j] = NAN;
        }
        w->values[fixed ? 0 : 2] = fixed ? 0.123 : 1;
        hpo_rng_init(&rng, 4, (uint64_t)w->number);
        assert_int_equal(T->suggest(state, space, &h, &rng, unit, &err), 0);
        /* The service merges: given params stay. */
        for (int j = 0; j < 3; j++) {
            double val = hpo_param_from_unit(&space->params[j], unit[j]);
            if (isnan(w->values[j])) {
                w->values[j] = val;
            }
        }
        hpo_space_encode(space, w->values, w->unit);
        hpo_history_set_state(&h, w, HPO_STATE_RUNNING);
        finish(state, space, &h, w, HPO_STATE_COMPLETE, sphere(w, 2));
        /* lambda 6: 5 new trials complete the generation only if w counted. */
        for (int k = 0; k < 5; k++) {
            struct hpo_trial *t = ask(state, space, &h, 4);
            finish(state, space, &h, t, HPO_STATE_COMPLETE, sphere(t, 2));
        }
        /*
        ** First round: w and 5 new trials make generation 1. Second round: w's x
        ** was overridden, so w does not count and 5 completes wait for a sixth.
        */
        hpo_cmaes_inspect(state, &v);
        assert_int_equal(v.generation, 1);
        assert_int_equal(v.n_members, fixed ? 6 : 0);
    }
    T->destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
}

/* Mostly failing trials do not stall the generation: dead members make room. */
static void test_mostly_failing(void **unused)
{
    struct hpo_space *space = sampler_float_space(2);
    struct hpo_history h;
    struct hpo_cmaes_view v;
    void *state = sampler_make(T, space, "{\"popsize\": 6}");

    hpo_history_init(&h, space, "failing", false);
    /* Two of three fail: the first 12 members (2 lambda) hold only 4 completes. */
    for (int k = 0; k < 60; k++) {
        struct hpo_trial *t = ask(state, space, &h, 21);
        if (k % 3 == 2) {
            finish(state, space, &h, t, HPO_STATE_COMPLETE, sphere(t, 2));
        } else {
            finish(state, space, &h, t, HPO_STATE_FAILED, NAN);
        }
    }
    hpo_cmaes_inspect(state, &v);
    assert_int_equal(v.generation, 3); /* 20 completes, 6 per generation */
    T->destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
}

/* A flat objective: the function-value history range hits 0 and IPOP doubles lambda. */
static void test_ipop(void **unused)
{
    struct hpo_space *space = sampler_float_space(2);
    struct hpo_history h;
    struct hpo_cmaes_view v;
    void *state = sampler_make(T, space, "{\"popsize\": 6}");
    void *none = sampler_make(T, space, "{\"restart_strategy\": \"none\", \"popsize\": 6}");
    int asked = 0;

    hpo_history_init(&h, space, "flat", false);
    /* lambda 6, term 10 + ceil(30 * 2 / 6) = 20: the stop test fires at generation 21. */
    for (; asked < 6 * 21; asked++) {
        finish(state, space, &h, ask(state, space, &h, 3), HPO_STATE_COMPLETE, 1.0);
    }
    hpo_cmaes_inspect(state, &v);
    assert_int_equal(v.restarts, 1);
    assert_int_equal(v.lambda, 12);
    assert_int_equal(v.generation, 0);
    assert_true(v.sigma == 1.0 / 6.0);
    /* The new run's mean is random, not the centre. */
    assert_false(v.mean[0] == 0.5 && v.mean[1] == 0.5);
    hpo_history_finish(&h);

    hpo_history_init(&h, space, "flat", false);
    for (int k = 0; k < 6 * 25; k++) {
        finish(none, space, &h, ask(none, space, &h, 3), HPO_STATE_COMPLETE, 1.0);
    }
    hpo_cmaes_inspect(none, &v);
    assert_int_equal(v.restarts, 0);
    assert_int_equal(v.lambda, 6);
    assert_int_equal(v.generation, 25);
    T->destroy(state);
    T->destroy(none);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
}

/*
** The margin: after convergence on an int param, the encoded coordinate
** still leaves the mean's grid cell on each side with probability >=
** margin / 2 = 1 / (2 n lambda); without margin A stays 1.
*/
static void test_margin(void **unused)
{
    struct hpo_space *space = parse("[{\"name\": \"k\", \"type\": \"int\", \"low\": 0, \"high\": 8},"
                                    "{\"name\": \"x\", \"type\": \"float\", \"low\": -1, \"high\": 1},"
                                    "{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [1, 2, 3]}]");
    static const char *const opts[2] = { "{}", "{\"with_margin\": false}" };

    for (int o = 0; o < 2; o++) {
        struct hpo_history h;
        struct hpo_cmaes_view v;
        void *state = sampler_make(T, space, opts[o]);
        long cats[3] = { 0 };
        bool widened = false;

        hpo_history_init(&h, space, "margin", false);
        for (int k = 0; k < 300; k++) {
            struct hpo_trial *t = ask(state, space, &h, 17);
            double f = (t->values[0] - 4) * (t->values[0] - 4) + t->values[1] * t->values[1];
            cats[(int)t->values[2]]++;
            finish(state, space, &h, t, HPO_STATE_COMPLETE, f);
            hpo_cmaes_inspect(state, &v);
            assert_int_equal(v.n, 2); /* the categorical is not modelled */
            assert_true(v.margin_scale[1] == 1.0);
            if (o == 1) {
                assert_true(v.margin_scale[0] == 1.0);
                continue;
            }
            assert_true(v.margin_scale[0] >= 1.0);
            widened = widened || v.margin_scale[0] > 1.0;
            /* Cell of the mean: value round(0.5 + 9 m - 0.5) in 9 bins of width 1/9. */
            double m = v.mean[0], s = v.sigma * sqrt(v.cov[0]) * v.margin_scale[0];
            double cell = floor(m * 9.0), lo = cell / 9.0, hi = (cell + 1) / 9.0;
            double margin = 1.0 / (2.0 * v.lambda);
            if (cell > 0) {
                assert_true(0.5 * erfc((m - lo) / s / sqrt(2.0)) >= margin / 2 * (1 - 1e-9));
            }
            if (cell < 8) {
                assert_true(0.5 * erfc((hi - m) / s / sqrt(2.0)) >= margin / 2 * (1 - 1e-9));
            }
        }
        if (o == 0) {
            assert_true(widened);
        }
        /* Categoricals drawn uniformly: each choice about 100 of 300. */
        for (int c = 0; c < 3; c++) {
            assert_true(cats[c] > 60 && cats[c] < 140);
        }
        T->destroy(state);
        hpo_history_finish(&h);
    }
    hpo_space_destroy(space);
}

static void test_options(void **unused)
{
    struct hpo_space *space = sampler_float_space(120);
    struct hpo_cmaes_view v;
    json_t *desc, *schema = json_loads(T->options_schema, 0, NULL);
    void *state;
    const char *key;
    json_t *val;

    assert_ptr_equal(hpo_sampler_find("cmaes"), T);
    /* describe() shows every option of the schema with its default. */
    state = sampler_make(T, space, "{}");
    desc = T->describe(state);
    json_object_foreach(schema, key, val) {
        json_t *d = json_object_get(desc, key);
        assert_non_null(d);
        assert_true(json_equal(d, json_object_get(val, "default")));
    }
    assert_int_equal(json_object_size(desc), json_object_size(schema));
    json_decref(desc);
    /* 120 > separable_above 100: separable by default. */
    hpo_cmaes_inspect(state, &v);
    assert_true(v.separable);
    T->destroy(state);
    state = sampler_make(T, space, "{\"separable_above\": 200}");
    hpo_cmaes_inspect(state, &v);
    assert_false(v.separable);
    T->destroy(state);
    json_decref(schema);
    hpo_space_destroy(space);

    sampler_expect_error(T, "{\"sigma0\": 0}", "sampler.sigma0");
    sampler_expect_error(T, "{\"sigma0\": 2}", "sampler.sigma0");
    sampler_expect_error(T, "{\"popsize\": 3}", "sampler.popsize");
    sampler_expect_error(T, "{\"popsize\": \"8\"}", "sampler.popsize");
    sampler_expect_error(T, "{\"restart_strategy\": \"bipop\"}", "sampler.restart_strategy");
    sampler_expect_error(T, "{\"inc_popsize\": 0}", "sampler.inc_popsize");
    sampler_expect_error(T, "{\"separable_above\": 0}", "sampler.separable_above");
    sampler_expect_error(T, "{\"use_separable_cma\": 1}", "sampler.use_separable_cma");
    sampler_expect_error(T, "{\"with_margin\": \"yes\"}", "sampler.with_margin");
    sampler_expect_error(T, "{\"consider_pruned_trials\": null}", "sampler.consider_pruned_trials");
    sampler_expect_error(T, "{\"x0\": [0.5]}", "sampler.x0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constants),
        cmocka_unit_test(test_first_update_full),
        cmocka_unit_test(test_first_update_separable),
        cmocka_unit_test(test_restart_identity),
        cmocka_unit_test(test_failed_member_replaced),
        cmocka_unit_test(test_enqueued_member),
        cmocka_unit_test(test_mostly_failing),
        cmocka_unit_test(test_ipop),
        cmocka_unit_test(test_margin),
        cmocka_unit_test(test_options),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
