/*
** test-samplers-gp-mo.c: the gp sampler with constraints and several
** objectives (samplers/gp-mo.c): log PoF and its gradient, exact log EHVI
** in 2-D and 3-D against docs/ALGORITHMS.md E9.7, against the exact HVI at a
** sure point and against Monte Carlo estimates, its gradient, and the
** sampler on constrained and 2-/3-objective histories.
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

#include "../../core/history.h"
#include "../../core/mo.h"
#include "../../core/rng.h"
#include "../../core/space.h"
#include "../../samplers/gp.h"
#include "../../samplers/sampler.h"

static void assert_close(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol)) {
        fail_msg("got %.17g, want %.17g (tol %g)", got, want, tol);
    }
}

/* ---- log PoF ---- */

static void test_log_pof_values(void **unused)
{
    (void)unused;
    /* docs/ALGORITHMS.md E9.6: Optuna's log PoF, P(Y >= t). */
    assert_close(hpo_gp_log_pof(0.2, 0.25, 0.408248290464, HUGE_VAL, NULL, NULL),
            -1.083162254357, 1e-11);
    /*
    ** Reference numbers from scipy 1.10.1 (log_ndtr; norm.cdf), made once:
    ** log Phi(z) at z = -40, -36, -20, -3, 0.5, 6, and
    ** log(Phi((1.3-0.2)/0.5) - Phi((-0.7-0.2)/0.5)).
    */
    static const double z[] = { -40, -36, -20, -3, 0.5, 6 };
    static const double want[] = { -804.6084420137539, -652.5032275937986, -203.9171553710973,
        -6.60772622151035, -0.3689464152886563, -9.865876455243719e-10 };
    for (size_t i = 0; i < sizeof(z) / sizeof(z[0]); i++) {
        double v = 1.0 - 1e-12; /* sd exactly 1 after the 1e-12 floor */
        double got = hpo_gp_log_pof(0.0, v, -HUGE_VAL, z[i], NULL, NULL);
        assert_close(got, want[i], 1e-9 * fabs(want[i]) + 1e-20);
        /* The same bound from the other side: P(Y >= -z). */
        assert_close(hpo_gp_log_pof(0.0, v, -z[i], HUGE_VAL, NULL, NULL), want[i],
                1e-9 * fabs(want[i]) + 1e-20);
    }
    assert_close(hpo_gp_log_pof(0.2, 0.25 - 1e-12, -0.7, 1.3, NULL, NULL),
            -0.051118327196701556, 1e-12);
    /* Two-sided far in a tail: Phi(-40) - Phi(-41) ~ Phi(-40). */
    assert_close(hpo_gp_log_pof(0.0, 1.0 - 1e-12, 40.0, 41.0, NULL, NULL), -804.6084420137539,
            1e-8);
    assert_close(hpo_gp_log_pof(0.0, 1.0 - 1e-12, -41.0, -40.0, NULL, NULL),
            -804.6084420137539, 1e-8);
    assert_close(hpo_gp_log_pof(3.0, 2.0, -HUGE_VAL, HUGE_VAL, NULL, NULL), 0.0, 0.0);
}

static void check_pof_gradient(double mu, double var, double lo, double hi)
{
    double dmu, dvar, h = 1e-6;
    double v = hpo_gp_log_pof(mu, var, lo, hi, &dmu, &dvar);
    double fm = (hpo_gp_log_pof(mu + h, var, lo, hi, NULL, NULL) -
                        hpo_gp_log_pof(mu - h, var, lo, hi, NULL, NULL)) / (2 * h);
    double fv = (hpo_gp_log_pof(mu, var + h, lo, hi, NULL, NULL) -
                        hpo_gp_log_pof(mu, var - h, lo, hi, NULL, NULL)) / (2 * h);

    assert_true(isfinite(v));
    assert_close(dmu, fm, 1e-5 * (1.0 + fabs(fm)));
    assert_close(dvar, fv, 1e-5 * (1.0 + fabs(fv)));
}

static void test_log_pof_gradient(void **unused)
{
    (void)unused;
    check_pof_gradient(0.2, 0.25, 0.408, HUGE_VAL);
    check_pof_gradient(0.2, 0.25, -HUGE_VAL, 0.408);
    check_pof_gradient(-3.0, 0.04, 0.5, HUGE_VAL);   /* z = 17.5: deep tail */
    check_pof_gradient(4.0, 0.01, -HUGE_VAL, -1.0);  /* z = -50 */
    check_pof_gradient(0.3, 0.5, -0.7, 1.3);
    check_pof_gradient(5.0, 0.3, -0.7, 1.3);         /* both bounds below */
    check_pof_gradient(-5.0, 0.3, -0.7, 1.3);        /* both bounds above */
}

/* ---- EHVI ---- */

static void test_log_h_fast(void **unused)
{
    (void)unused;
    for (double z = -80.0; z <= 12.0; z += 0.0625) {
        double dz, v = hpo_gp_log_h_fast(z, &dz), want = hpo_gp_log_h(z);
        double want_dz = hpo_gp_log_h_dz(z);
        assert_close(v, want, 1e-12 * (1.0 + fabs(want)));
        assert_close(dz, want_dz, 1e-11 * (1.0 + fabs(want_dz)));
    }
}

static void test_ehvi_e97(void **unused)
{
    static const double front[] = { 1, 3, 2, 2, 3, 1 }, ref[] = { 3.3, 3.3 };
    static const double mu[] = { 1.5, 1.5 }, var[] = { 0.25 - 1e-12, 0.25 - 1e-12 };
    struct hpo_gp_hvgrid g;

    (void)unused;
    assert_int_equal(hpo_gp_hvgrid_build(&g, front, 3, 2, ref), 0);
    /* docs/ALGORITHMS.md E9.6/E9.7: 4 boxes; exact EHVI 1.356767451289. */
    assert_int_equal(g.n_cells, 4);
    assert_close(hpo_gp_log_ehvi(&g, mu, var, NULL, NULL), 0.305104996446, 1e-11);
    hpo_gp_hvgrid_free(&g);
    assert_int_equal(hpo_gp_hvgrid_build(&g, front, 3, 4, ref), -EINVAL);
}

/* A random front-ish set: points near a sphere plus dominated and out-of-ref points. */
static void random_set(struct hpo_rng *rng, unsigned m, size_t n, double *pts)
{
    for (size_t i = 0; i < n; i++) {
        double norm = 0.0;
        for (unsigned j = 0; j < m; j++) {
            pts[i * m + j] = fabs(hpo_rng_normal(rng)) + 1e-3;
            norm += pts[i * m + j] * pts[i * m + j];
        }
        double scale = (i % 5 == 4 ? 1.5 : 1.0) / sqrt(norm);
        for (unsigned j = 0; j < m; j++) {
            pts[i * m + j] *= scale;
        }
        if (i % 7 == 6) {
            pts[i * m] = 1.3; /* beyond the reference point */
        }
        if (i % 9 == 8 && i > 0) {
            memcpy(&pts[i * m], &pts[(i - 1) * m], m * sizeof(double)); /* duplicate */
        }
    }
}

static double hvi(const double *pts, size_t n, unsigned m, const double *ref, const double *y,
        double hv0, double *buf)
{
    double hv;

    memcpy(buf, pts, n * m * sizeof(double));
    memcpy(&buf[n * m], y, m * sizeof(double));
    assert_int_equal(hpo_mo_hypervolume(buf, n + 1, m, ref, &hv), 0);
    return hv - hv0;
}

/* With (almost) no variance, EHVI is the exact HVI of the mean: checks the boxes. */
static void test_ehvi_sure_point(void **unused)
{
    struct hpo_rng rng;

    (void)unused;
    hpo_rng_seed(&rng, 7);
    for (unsigned m = 2; m <= 3; m++) {
        for (int rep = 0; rep < 20; rep++) {
            size_t n = 1 + (size_t)hpo_rng_below(&rng, 30);
            double pts[31 * 3], buf[32 * 3], ref[3] = { 1.2, 1.2, 1.2 }, hv0, y[3];
            double var[3] = { 0, 0, 0 };
            struct hpo_gp_hvgrid g;
            random_set(&rng, m, n, pts);
            assert_int_equal(hpo_mo_hypervolume(pts, n, m, ref, &hv0), 0);
            assert_int_equal(hpo_gp_hvgrid_build(&g, pts, n, m, ref), 0);
            for (int k = 0; k < 10; k++) {
                for (unsigned j = 0; j < m; j++) {
                    y[j] = 1.25 * hpo_rng_uniform(&rng);
                }
                double want = hvi(pts, n, m, ref, y, hv0, buf);
                double got = exp(hpo_gp_log_ehvi(&g, y, var, NULL, NULL));
                /* sd = 1e-6: the smoothing moves HVI by O(1e-6). */
                assert_close(got, want, 1e-5);
            }
            hpo_gp_hvgrid_free(&g);
        }
    }
}

/* Exact EHVI against a Monte Carlo mean of HVI (4 standard errors). */
static void test_ehvi_monte_carlo(void **unused)
{
    struct hpo_rng rng;

    (void)unused;
    hpo_rng_seed(&rng, 11);
    for (unsigned m = 2; m <= 3; m++) {
        for (int rep = 0; rep < 3; rep++) {
            size_t n = 8 + (size_t)hpo_rng_below(&rng, 8), ns = 40000;
            double pts[16 * 3], buf[17 * 3], ref[3] = { 1.2, 1.2, 1.2 }, hv0, mu[3], var[3];
            double sum = 0.0, sum2 = 0.0, y[3], mean, se, got;
            struct hpo_gp_hvgrid g;
            random_set(&rng, m, n, pts);
            assert_int_equal(hpo_mo_hypervolume(pts, n, m, ref, &hv0), 0);
            assert_int_equal(hpo_gp_hvgrid_build(&g, pts, n, m, ref), 0);
            for (unsigned j = 0; j < m; j++) {
                mu[j] = 0.3 + 0.5 * hpo_rng_uniform(&rng);
                var[j] = 0.01 + 0.05 * hpo_rng_uniform(&rng);
            }
            for (size_t s = 0; s < ns; s++) {
                for (unsigned j = 0; j < m; j++) {
                    y[j] = mu[j] + sqrt(var[j] + 1e-12) * hpo_rng_normal(&rng);
                }
                double v = hvi(pts, n, m, ref, y, hv0, buf);
                sum += v;
                sum2 += v * v;
            }
            mean = sum / (double)ns;
            se = sqrt((sum2 / (double)ns - mean * mean) / (double)ns);
            got = exp(hpo_gp_log_ehvi(&g, mu, var, NULL, NULL));
            if (!(fabs(got - mean) <= 4.0 * se + 1e-9)) {
                fail_msg("m=%u: EHVI %.9g, Monte Carlo %.9g +- %.2g", m, got, mean, se);
            }
            assert_true(mean > 10.0 * se); /* the test could fail: EHVI is not ~0 here */
            hpo_gp_hvgrid_free(&g);
        }
    }
}

static void test_ehvi_gradient(void **unused)
{
    struct hpo_rng rng;

    (void)unused;
    hpo_rng_seed(&rng, 3);
    for (unsigned m = 2; m <= 3; m++) {
        for (int rep = 0; rep < 6; rep++) {
            size_t n = 1 + (size_t)hpo_rng_below(&rng, 20);
            double pts[21 * 3], ref[3] = { 1.2, 1.2, 1.2 }, mu[3], var[3], dmu[3], dvar[3];
            struct hpo_gp_hvgrid g;
            random_set(&rng, m, n, pts);
            assert_int_equal(hpo_gp_hvgrid_build(&g, pts, n, m, ref), 0);
            for (unsigned j = 0; j < m; j++) {
                /* From inside the front to far behind it (tiny EHVI: the log-space path). */
                mu[j] = rep < 3 ? 0.2 + 0.8 * hpo_rng_uniform(&rng) : 3.0 + rep;
                var[j] = 0.001 + 0.1 * hpo_rng_uniform(&rng);
            }
            double v = hpo_gp_log_ehvi(&g, mu, var, dmu, dvar);
            assert_true(isfinite(v));
            for (unsigned j = 0; j < m; j++) {
                double h = 1e-6, save = mu[j], fp, fm;
                mu[j] = save + h;
                fp = hpo_gp_log_ehvi(&g, mu, var, NULL, NULL);
                mu[j] = save - h;
                fm = hpo_gp_log_ehvi(&g, mu, var, NULL, NULL);
                mu[j] = save;
                assert_close(dmu[j], (fp - fm) / (2 * h), 1e-4 * (1.0 + fabs(dmu[j])));
                save = var[j];
                h = 1e-3 * save;
                var[j] = save + h;
                fp = hpo_gp_log_ehvi(&g, mu, var, NULL, NULL);
                var[j] = save - h;
                fm = hpo_gp_log_ehvi(&g, mu, var, NULL, NULL);
                var[j] = save;
                assert_close(dvar[j], (fp - fm) / (2 * h), 1e-4 * (1.0 + fabs(dvar[j])));
            }
            hpo_gp_hvgrid_free(&g);
        }
    }
}

/* ---- the sampler ---- */

struct study {
    struct hpo_space *space;
    struct hpo_history h;
    void *state;
    bool maxi[3];
    double lo[2], hi[2];
};

static void study_open(struct study *st, size_t n_obj, size_t n_cons)
{
    static const char *space_json =
            "[{\"name\": \"a\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
            " {\"name\": \"b\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
            " {\"name\": \"k\", \"type\": \"int\", \"low\": 0, \"high\": 4}]";
    json_error_t jerr;
    json_t *sp = json_loads(space_json, 0, &jerr), *opts = json_object();
    struct hpo_error err;

    assert_non_null(sp);
    assert_int_equal(hpo_space_parse(sp, &st->space, &err), 0);
    json_decref(sp);
    assert_int_equal(hpo_sampler_gp.configure(opts, st->space, &st->state, &err), 0);
    json_decref(opts);
    hpo_history_init(&st->h, st->space, "s", false);
    memset(st->maxi, 0, sizeof(st->maxi));
    st->maxi[1] = true; /* the second objective is maximized */
    st->lo[0] = -HUGE_VAL;
    st->hi[0] = 0.5;  /* c0 = a <= 0.5 */
    st->lo[1] = 0.2;
    st->hi[1] = HUGE_VAL; /* c1 = b >= 0.2 */
    st->h.n_obj = n_obj;
    st->h.n_cons = n_cons;
    st->h.obj_maximize = st->maxi;
    st->h.cons_lo = st->lo;
    st->h.cons_hi = st->hi;
}

static void study_close(struct study *st)
{
    hpo_sampler_gp.destroy(st->state);
    hpo_history_finish(&st->h);
    hpo_space_destroy(st->space);
}

static struct hpo_trial *ask(struct study *st, uint64_t seed)
{
    struct hpo_rng rng;
    struct hpo_error err;
    double unit[3];
    struct hpo_trial *t;

    hpo_rng_init(&rng, seed, st->h.n_trials);
    assert_int_equal(hpo_sampler_gp.suggest(st->state, st->space, &st->h, &rng, unit, &err), 0);
    t = hpo_history_append(&st->h, HPO_STATE_RUNNING);
    assert_non_null(t);
    hpo_space_decode(st->space, unit, t->values);
    memcpy(t->unit, unit, sizeof(unit));
    return t;
}

/* Objectives (a, b, k): f0 = (a - 0.7)^2 + (b - 0.6)^2 + 0.01 k (min), f1 = 1 - a (max: -(a)). */
static void tell(struct study *st, struct hpo_trial *t, bool with_cons)
{
    double a = t->values[0], b = t->values[1], k = t->values[2];
    size_t m = st->h.n_obj, nc = st->h.n_cons;

    t->results = malloc((m + nc) * sizeof(double));
    assert_non_null(t->results);
    t->results[0] = (a - 0.7) * (a - 0.7) + (b - 0.6) * (b - 0.6) + 0.01 * k;
    if (m > 1) {
        t->results[1] = 1.0 - a * a; /* maximized: best at a = 0, the first objective wants 0.7 */
    }
    if (m > 2) {
        t->results[2] = (b - 0.2) * (b - 0.2) + 0.1 * a;
    }
    for (size_t j = 0; j < nc; j++) {
        t->results[m + j] = with_cons ? (j == 0 ? a : b) : NAN;
    }
    t->value = t->results[0];
    hpo_history_set_state(&st->h, t, HPO_STATE_COMPLETE);
}

static bool feasible(const struct study *st, const struct hpo_trial *t)
{
    for (size_t j = 0; j < st->h.n_cons; j++) {
        double v = t->results[st->h.n_obj + j];
        if (!(v >= st->lo[j] && v <= st->hi[j])) {
            return false;
        }
    }
    return true;
}

/*
** One objective whose optimum (a = 0.7) is infeasible (a <= 0.5): the
** suggestions after the startup stay at the feasible set's edge a = 0.5.
*/
static void test_constrained_one_objective(void **unused)
{
    struct study st;
    struct hpo_gp_stats stats;
    int n_feasible = 0;

    (void)unused;
    study_open(&st, 1, 2);
    for (int i = 0; i < 30; i++) {
        struct hpo_trial *t = ask(&st, 5);
        tell(&st, t, i % 6 != 5);
        if (i >= 20) {
            /* Within 0.01 of the feasible set: it converges onto the boundary a = 0.5. */
            n_feasible += t->values[0] <= 0.51 && t->values[1] >= 0.19;
        }
    }
    hpo_gp_get_stats(st.state, &stats);
    assert_int_equal(stats.fallbacks, 0);
    assert_int_equal(stats.random, 10);
    if (n_feasible < 9) {
        fail_msg("only %d of the last 10 suggestions (nearly) feasible", n_feasible);
    }
    /* The best feasible value is near the boundary optimum (0.5, 0.6, 0): f = 0.04. */
    double best = HUGE_VAL;
    for (size_t i = 0; i < st.h.n_trials; i++) {
        const struct hpo_trial *t = st.h.trials[i];
        if (feasible(&st, t) && t->value < best) {
            best = t->value;
        }
    }
    assert_true(best < 0.045);
    /* Two asks with the first still running (best constant liar at the best feasible value). */
    struct hpo_trial *p = ask(&st, 23), *q = ask(&st, 23);
    assert_true(fabs(p->unit[0] - q->unit[0]) + fabs(p->unit[1] - q->unit[1]) > 1e-6);
    hpo_gp_get_stats(st.state, &stats);
    assert_int_equal(stats.fallbacks, 0);
    study_close(&st);
}

/* With nothing feasible, the sampler looks for feasibility (PoF alone). */
static void test_no_feasible_yet(void **unused)
{
    struct study st;
    struct hpo_gp_stats stats;

    (void)unused;
    study_open(&st, 2, 2);
    st.hi[0] = 0.05; /* a <= 0.05: rare at random */
    for (int i = 0; i < 10; i++) {
        struct hpo_trial *t = ask(&st, 9);
        t->values[0] = 0.1 + 0.09 * i; /* every startup trial infeasible */
        tell(&st, t, true);
    }
    for (int i = 0; i < 3; i++) {
        struct hpo_trial *t = ask(&st, 9);
        if (!(t->values[0] < 0.1)) {
            fail_msg("suggestion %d at a = %g: PoF alone should go to a < 0.05", i, t->values[0]);
        }
        tell(&st, t, true);
    }
    hpo_gp_get_stats(st.state, &stats);
    assert_int_equal(stats.fallbacks, 0);
    study_close(&st);
}

/* 2 and 3 objectives with constraints: valid, model-based suggestions; hypervolume grows. */
static void test_several_objectives(void **unused)
{
    (void)unused;
    for (size_t m = 2; m <= 3; m++) {
        struct study st;
        struct hpo_gp_stats stats;
        double hv[2];
        study_open(&st, m, 1);
        for (int i = 0; i < 26; i++) {
            struct hpo_trial *t = ask(&st, 13);
            assert_true(t->values[0] >= 0.0 && t->values[0] <= 1.0);
            assert_true(t->values[2] == floor(t->values[2]));
            tell(&st, t, true);
            if (i == 9 || i == 25) {
                /* Feasible hypervolume against a fixed reference point. */
                double loss[26 * 3], ref[3] = { 1.0, 0.0, 1.0 };
                size_t n = 0;
                for (size_t q = 0; q < st.h.n_trials; q++) {
                    const struct hpo_trial *u = st.h.trials[q];
                    if (feasible(&st, u)) {
                        hpo_mo_loss(u->results, (const unsigned char[]){ 0, 1, 0 },
                                (unsigned)m, &loss[n * m]);
                        n++;
                    }
                }
                assert_int_equal(hpo_mo_hypervolume(loss, n, (unsigned)m, ref,
                                         &hv[i == 9 ? 0 : 1]), 0);
            }
        }
        hpo_gp_get_stats(st.state, &stats);
        assert_int_equal(stats.fallbacks, 0);
        assert_int_equal(stats.random, 10);
        assert_true(stats.fits > 0);
        if (!(hv[1] > hv[0] * 1.05)) {
            fail_msg("m=%zu: hypervolume %g after 10 trials, %g after 26", m, hv[0], hv[1]);
        }
        /* A running trial is not suggested again (its believed point joins the front). */
        struct hpo_trial *p = ask(&st, 21), *q = ask(&st, 21);
        double d2 = 0.0;
        for (int k = 0; k < 2; k++) {
            d2 += (p->unit[k] - q->unit[k]) * (p->unit[k] - q->unit[k]);
        }
        assert_true(d2 > 1e-6);
        study_close(&st);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_pof_values),
        cmocka_unit_test(test_log_pof_gradient),
        cmocka_unit_test(test_log_h_fast),
        cmocka_unit_test(test_ehvi_e97),
        cmocka_unit_test(test_ehvi_sure_point),
        cmocka_unit_test(test_ehvi_monte_carlo),
        cmocka_unit_test(test_ehvi_gradient),
        cmocka_unit_test(test_constrained_one_objective),
        cmocka_unit_test(test_no_feasible_yet),
        cmocka_unit_test(test_several_objectives),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
