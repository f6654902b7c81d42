/*
** test-samplers-random.c: the random sampler (samplers/random.c): options,
** valid decoded values over a mixed space with conditions and vectors, and
** uniformity by chi-square tests at a fixed seed.
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

#include "history.h"
#include "rng.h"
#include "sampler.h"
#include "space.h"

/*
** Chi-square critical values at p = 0.001 (upper tail) by degrees of
** freedom, from the standard table (scipy.stats.chi2.ppf(0.999, df)). A
** uniform sampler fails each test with probability 0.001, but the seed is
** fixed, so the outcome is deterministic.
*/
#define CHI2_999_DF1  10.828
#define CHI2_999_DF2  13.816
#define CHI2_999_DF4  18.467
#define CHI2_999_DF6  22.458
#define CHI2_999_DF7  24.322
#define CHI2_999_DF10 29.588
#define CHI2_999_DF19 43.820

#define SEED     2024
#define N_TRIALS 20000

static struct hpo_space *parse_space(const char *text)
{
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    json_t *j;
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };

    assert_non_null(buf);
    for (size_t i = 0; i <= n; i++) {
        buf[i] = text[i] == '\'' ? '"' : text[i];
    }
    j = json_loads(buf, 0, NULL);
    free(buf);
    assert_non_null(j);
    if (hpo_space_parse(j, &space, &err) != 0) {
        print_error("space rejected: %s: %s\n", err.field, err.message);
    }
    assert_non_null(space);
    json_decref(j);
    return space;
}

/* Chi-square statistic of observed counts against expected probabilities. */
static double chi_square(const long *count, const double *prob, size_t k, long n)
{
    double chi2 = 0.0;

    for (size_t i = 0; i < k; i++) {
        double e = prob[i] * (double)n;
        chi2 += ((double)count[i] - e) * ((double)count[i] - e) / e;
    }
    return chi2;
}

static double chi_square_uniform(const long *count, size_t k, long n)
{
    double *prob = malloc(k * sizeof(*prob));
    double chi2;

    assert_non_null(prob);
    for (size_t i = 0; i < k; i++) {
        prob[i] = 1.0 / (double)k;
    }
    chi2 = chi_square(count, prob, k, n);
    free(prob);
    return chi2;
}

static void test_registry_and_options(void **unused)
{
    const struct hpo_sampler_type *t = hpo_sampler_find("random");
    struct hpo_space *space = parse_space("[{'name':'x','type':'float','low':0,'high':1}]");
    struct hpo_error err = { 0 };
    void *state = (void *)&err;
    json_t *opts, *desc, *schema;

    assert_ptr_equal(t, &hpo_sampler_random);
    assert_string_equal(t->name, "random");
    assert_true(t->supports_vectors);
    schema = json_loads(t->options_schema, 0, NULL);
    assert_true(json_is_object(schema));
    assert_int_equal(json_object_size(schema), 0);
    json_decref(schema);

    /* No options, given as {} or absent. */
    opts = json_object();
    assert_int_equal(t->configure(opts, space, &state, &err), 0);
    desc = t->describe(state);
    assert_true(json_is_object(desc));
    assert_int_equal(json_object_size(desc), 0);
    json_decref(desc);
    t->destroy(state);
    assert_int_equal(t->configure(NULL, space, &state, &err), 0);
    t->destroy(state);

    /* Any key is unknown, named "sampler.<key>"; the state is untouched. */
    json_object_set_new(opts, "n_startup_trials", json_integer(10));
    state = (void *)&err;
    assert_int_equal(t->configure(opts, space, &state, &err), -EINVAL);
    assert_int_equal(err.code, HPO_INVALID_ARGUMENT);
    assert_string_equal(err.field, "sampler.n_startup_trials");
    assert_ptr_equal(state, (void *)&err);
    json_object_clear(opts);
    json_object_set_new(opts, "foo", json_null());
    assert_int_equal(t->configure(opts, space, &state, &err), -EINVAL);
    assert_string_equal(err.field, "sampler.foo");
    json_decref(opts);
    hpo_space_destroy(space);
}

/* The mixed space: every kind, two conditions, a log vector. */
#define MIXED_SPACE                                                                       \
    "[{'name':'lr','type':'float','low':1e-5,'high':0.1,'log':true},"                     \
    "{'name':'dropout','type':'float','low':0,'high':0.5,'step':0.05},"                   \
    "{'name':'layers','type':'int','low':1,'high':8},"                                    \
    "{'name':'units','type':'int','low':16,'high':512,'log':true},"                       \
    "{'name':'optimizer','type':'categorical','choices':['adam','sgd','rmsprop']},"       \
    "{'name':'momentum','type':'float','low':0.5,'high':0.99,"                            \
    "'when':{'optimizer':['sgd','rmsprop']}},"                                            \
    "{'name':'k','type':'int','low':-10,'high':10,'step':3,'when':{'layers':[1,2]}},"     \
    "{'name':'x','type':'float','low':-1,'high':1},"                                      \
    "{'name':'wd','type':'float','low':1e-8,'high':1,'log':true,'size':5}]"

enum { LR, DROPOUT, LAYERS, UNITS, OPT, MOMENTUM, K, X, WD, DIM = WD + 5 };

struct tallies {
    long lr[20], x[20], wd[20];
    long dropout[11], layers[8], units_octave[5], opt[3], k[7];
    long momentum_active, k_active;
    char units_seen[512 + 1];
};

/* Draw N_TRIALS points as the service would (one stream per trial) and tally them. */
static void draw_mixed(struct hpo_space *space, struct tallies *t)
{
    const struct hpo_sampler_type *s = &hpo_sampler_random;
    struct hpo_history h;
    struct hpo_error err = { 0 };
    void *state;
    double unit[DIM], values[DIM];

    assert_int_equal(space->dim, DIM);
    assert_int_equal(s->configure(NULL, space, &state, &err), 0);
    hpo_history_init(&h, space, "mixed", false);
    memset(t, 0, sizeof(*t));
    for (long n = 0; n < N_TRIALS; n++) {
        struct hpo_rng rng;
        bool momentum_on, k_on;

        hpo_rng_init(&rng, SEED, (uint64_t)n);
        assert_int_equal(s->suggest(state, space, &h, &rng, unit, &err), 0);
        for (size_t j = 0; j < DIM; j++) {
            assert_true(unit[j] >= 0.0 && unit[j] < 1.0);
        }
        hpo_space_decode(space, unit, values);

        /* Every active value is a valid value of its param. */
        for (size_t i = 0; i < space->n_params; i++) {
            const struct hpo_param *p = &space->params[i];
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                if (!isnan(values[j])) {
                    assert_true(hpo_param_valid(p, values[j]));
                    assert_true(values[j] == hpo_param_from_unit(p, unit[j]));
                }
            }
        }
        /* Unconditional params are always set, in bounds. */
        assert_true(values[LR] >= 1e-5 && values[LR] <= 0.1);
        assert_true(values[X] >= -1.0 && values[X] <= 1.0);
        assert_true(values[LAYERS] >= 1 && values[LAYERS] <= 8);
        assert_true(values[UNITS] >= 16 && values[UNITS] <= 512);
        assert_true(values[OPT] == 0.0 || values[OPT] == 1.0 || values[OPT] == 2.0);
        /* The dropout grid: k * 0.05 as the decimal, never above 0.5. */
        {
            static const double grid[11] = { 0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4,
                0.45, 0.5 };
            double d = values[DROPOUT];
            long kd = lround(d / 0.05);
            assert_true(kd >= 0 && kd <= 10);
            assert_true(d == grid[kd]);
            t->dropout[kd]++;
        }
        /* Conditions, checked against the decoded parents. */
        momentum_on = values[OPT] != 0.0;
        k_on = values[LAYERS] <= 2.0;
        assert_true(isnan(values[MOMENTUM]) == !momentum_on);
        assert_true(isnan(unit[MOMENTUM]) == !momentum_on);
        assert_true(isnan(values[K]) == !k_on);
        if (momentum_on) {
            assert_true(values[MOMENTUM] >= 0.5 && values[MOMENTUM] <= 0.99);
            t->momentum_active++;
        }
        if (k_on) {
            /* -10, -7, ..., 8: the grid of step 3 below high = 10. */
            assert_true(values[K] >= -10 && values[K] <= 8);
            assert_true(fmod(values[K] + 10.0, 3.0) == 0.0);
            t->k[(long)(values[K] + 10.0) / 3]++;
            t->k_active++;
        }
        for (size_t j = WD; j < DIM; j++) {
            double b = 20.0 * (log(values[j]) - log(1e-8)) / (log(1.0) - log(1e-8));
            assert_true(values[j] >= 1e-8 && values[j] <= 1.0);
            t->wd[b >= 20.0 ? 19 : (long)b]++;
        }
        {
            double b = 20.0 * (log(values[LR]) - log(1e-5)) / (log(0.1) - log(1e-5));
            t->lr[b >= 20.0 ? 19 : (long)b]++;
            b = 20.0 * (values[X] + 1.0) / 2.0;
            t->x[b >= 20.0 ? 19 : (long)b]++;
        }
        t->layers[(long)values[LAYERS] - 1]++;
        t->opt[(long)values[OPT]]++;
        t->units_seen[(long)values[UNITS]] = 1;
        t->units_octave[values[UNITS] < 32 ? 0 : values[UNITS] < 64 ? 1 : values[UNITS] < 128 ? 2
                : values[UNITS] < 256 ? 3 : 4]++;
    }
    hpo_history_finish(&h);
    s->destroy(state);
}

static void test_mixed_space_valid(void **unused)
{
    struct hpo_space *space = parse_space(MIXED_SPACE);
    struct tallies *t = malloc(sizeof(*t));

    assert_non_null(t);
    draw_mixed(space, t);
    /* Every grid value and choice is reached. */
    for (int i = 0; i < 11; i++) {
        assert_true(t->dropout[i] > 0);
    }
    for (int i = 0; i < 8; i++) {
        assert_true(t->layers[i] > 0);
    }
    for (int v = 16; v <= 512; v++) {
        assert_true(t->units_seen[v]);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(t->opt[i] > 0);
    }
    for (int i = 0; i < 7; i++) {
        assert_true(t->k[i] > 0);
    }
    free(t);
    hpo_space_destroy(space);
}

static void test_mixed_space_chi_square(void **unused)
{
    struct hpo_space *space = parse_space(MIXED_SPACE);
    struct tallies *t = malloc(sizeof(*t));
    double units_prob[5], chi2;
    static const int edges[6] = { 16, 32, 64, 128, 256, 513 };
    double total = log(512.5) - log(15.5);

    assert_non_null(t);
    draw_mixed(space, t);

    /* Continuous: 20 equal bins in the param's own scale, 19 degrees of freedom. */
    chi2 = chi_square_uniform(t->x, 20, N_TRIALS);
    print_message("# chi2 x (linear float, 20 bins): %.2f < %.2f\n", chi2, CHI2_999_DF19);
    assert_true(chi2 < CHI2_999_DF19);
    chi2 = chi_square_uniform(t->lr, 20, N_TRIALS);
    print_message("# chi2 lr (log float, 20 log bins): %.2f < %.2f\n", chi2, CHI2_999_DF19);
    assert_true(chi2 < CHI2_999_DF19);
    chi2 = chi_square_uniform(t->wd, 20, 5L * N_TRIALS);
    print_message("# chi2 wd (log vector, 5 x %d draws): %.2f < %.2f\n", N_TRIALS, chi2,
            CHI2_999_DF19);
    assert_true(chi2 < CHI2_999_DF19);

    /* Grids: equal probability per grid value (half-step padding). */
    chi2 = chi_square_uniform(t->dropout, 11, N_TRIALS);
    print_message("# chi2 dropout (11 grid values): %.2f < %.2f\n", chi2, CHI2_999_DF10);
    assert_true(chi2 < CHI2_999_DF10);
    chi2 = chi_square_uniform(t->layers, 8, N_TRIALS);
    print_message("# chi2 layers (8 ints): %.2f < %.2f\n", chi2, CHI2_999_DF7);
    assert_true(chi2 < CHI2_999_DF7);
    chi2 = chi_square_uniform(t->opt, 3, N_TRIALS);
    print_message("# chi2 optimizer (3 choices): %.2f < %.2f\n", chi2, CHI2_999_DF2);
    assert_true(chi2 < CHI2_999_DF2);
    chi2 = chi_square_uniform(t->k, 7, t->k_active);
    print_message("# chi2 k (7 grid values, %ld active): %.2f < %.2f\n", t->k_active, chi2,
            CHI2_999_DF6);
    assert_true(chi2 < CHI2_999_DF6);

    /* Log int: P(v) = ln((v + 1/2) / (v - 1/2)) / ln(512.5 / 15.5), summed by octave. */
    for (int o = 0; o < 5; o++) {
        units_prob[o] = (log(edges[o + 1] - 0.5) - log(edges[o] - 0.5)) / total;
    }
    chi2 = chi_square(t->units_octave, units_prob, 5, N_TRIALS);
    print_message("# chi2 units (log int by octave): %.2f < %.2f\n", chi2, CHI2_999_DF4);
    assert_true(chi2 < CHI2_999_DF4);

    /* Conditions: momentum active for 2 of 3 choices, k for 2 of 8 layers. */
    {
        long c[2] = { t->momentum_active, N_TRIALS - t->momentum_active };
        double p[2] = { 2.0 / 3.0, 1.0 / 3.0 };
        chi2 = chi_square(c, p, 2, N_TRIALS);
        print_message("# chi2 momentum active (%ld): %.2f < %.2f\n", c[0], chi2, CHI2_999_DF1);
        assert_true(chi2 < CHI2_999_DF1);
        c[0] = t->k_active;
        c[1] = N_TRIALS - t->k_active;
        p[0] = 0.25;
        p[1] = 0.75;
        chi2 = chi_square(c, p, 2, N_TRIALS);
        assert_true(chi2 < CHI2_999_DF1);
    }
    free(t);
    hpo_space_destroy(space);
}

static void test_chi_square_detects_bias(void **unused)
{
    /*
    ** The test above can fail: a sampler that squares its draw (a bias
    ** towards low values) is rejected by the same statistic and threshold.
    */
    struct hpo_rng rng;
    long count[20] = { 0 };
    double chi2;

    hpo_rng_seed(&rng, SEED);
    for (int n = 0; n < N_TRIALS; n++) {
        double u = hpo_rng_uniform(&rng);
        u = 0.9 * u + 0.1 * u * u;
        count[(int)(20.0 * u)]++;
    }
    chi2 = chi_square_uniform(count, 20, N_TRIALS);
    print_message("# chi2 of a biased sampler: %.2f > %.2f\n", chi2, CHI2_999_DF19);
    assert_true(chi2 > CHI2_999_DF19);
}

static void test_deterministic_and_history_free(void **unused)
{
    struct hpo_space *space = parse_space(MIXED_SPACE);
    const struct hpo_sampler_type *s = &hpo_sampler_random;
    struct hpo_history empty, full;
    struct hpo_error err = { 0 };
    struct hpo_rng a, b;
    double ua[DIM], ub[DIM];
    void *state;

    assert_int_equal(s->configure(NULL, space, &state, &err), 0);
    hpo_history_init(&empty, space, "e", false);
    hpo_history_init(&full, space, "f", true);
    for (int i = 0; i < 10; i++) {
        struct hpo_trial *tr = hpo_history_append(&full, HPO_STATE_COMPLETE);
        assert_non_null(tr);
        tr->value = i;
    }
    for (uint64_t n = 0; n < 100; n++) {
        hpo_rng_init(&a, 7, n);
        hpo_rng_init(&b, 7, n);
        assert_int_equal(s->suggest(state, space, &empty, &a, ua, &err), 0);
        assert_int_equal(s->suggest(state, space, &full, &b, ub, &err), 0);
        assert_memory_equal(ua, ub, sizeof(ua));
        /* Coordinate j is the j-th uniform of the trial's stream. */
        hpo_rng_init(&b, 7, n);
        for (size_t j = 0; j < DIM; j++) {
            assert_true(ua[j] == hpo_rng_uniform(&b));
        }
    }
    /* Another trial number gives another point. */
    hpo_rng_init(&a, 7, 0);
    hpo_rng_init(&b, 7, 1);
    assert_int_equal(s->suggest(state, space, &empty, &a, ua, &err), 0);
    assert_int_equal(s->suggest(state, space, &empty, &b, ub, &err), 0);
    assert_true(memcmp(ua, ub, sizeof(ua)) != 0);
    hpo_history_finish(&empty);
    hpo_history_finish(&full);
    s->destroy(state);
    hpo_space_destroy(space);
}

static void test_large_vector(void **unused)
{
    struct hpo_space *space = parse_space("[{'name':'s','type':'float','low':0,'high':1,"
                                          "'step':0.25,'size':1000},"
                                          "{'name':'w','type':'float','low':-3,'high':3,"
                                          "'size':100000}]");
    const struct hpo_sampler_type *s = &hpo_sampler_random;
    struct hpo_history h;
    struct hpo_error err = { 0 };
    struct hpo_rng rng;
    double *unit = malloc(space->dim * sizeof(double));
    double *values = malloc(space->dim * sizeof(double));
    long grid[5] = { 0 }, bins[20] = { 0 };
    void *state;
    double chi2;

    assert_non_null(unit);
    assert_non_null(values);
    assert_int_equal(space->dim, 101000);
    assert_int_equal(s->configure(NULL, space, &state, &err), 0);
    hpo_history_init(&h, space, "v", false);
    hpo_rng_init(&rng, SEED, 0);
    assert_int_equal(s->suggest(state, space, &h, &rng, unit, &err), 0);
    hpo_space_decode(space, unit, values);
    for (size_t j = 0; j < 1000; j++) {
        assert_true(hpo_param_valid(&space->params[0], values[j]));
        grid[(int)(values[j] * 4.0)]++;
    }
    for (size_t j = 1000; j < space->dim; j++) {
        assert_true(values[j] >= -3.0 && values[j] <= 3.0);
        bins[(int)fmin(19.0, 20.0 * (values[j] + 3.0) / 6.0)]++;
    }
    chi2 = chi_square_uniform(grid, 5, 1000);
    assert_true(chi2 < CHI2_999_DF4);
    chi2 = chi_square_uniform(bins, 20, 100000);
    print_message("# chi2 of one 100000-vector (20 bins): %.2f < %.2f\n", chi2, CHI2_999_DF19);
    assert_true(chi2 < CHI2_999_DF19);
    hpo_history_finish(&h);
    s->destroy(state);
    free(unit);
    free(values);
    hpo_space_destroy(space);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_and_options),
        cmocka_unit_test(test_mixed_space_valid),
        cmocka_unit_test(test_mixed_space_chi_square),
        cmocka_unit_test(test_chi_square_detects_bias),
        cmocka_unit_test(test_deterministic_and_history_free),
        cmocka_unit_test(test_large_vector),
    };
    return cmocka_run_group_tests_name("samplers-random", tests, NULL, NULL);
}
