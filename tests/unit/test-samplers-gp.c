/*
** test-samplers-gp.c: the GP sampler (samplers/gp.c) and its numerics
** (samplers/gp-model.c, gp-sobol.c): posterior against numpy, the log
** marginal likelihood gradient against finite differences, logEI against
** mpmath, Sobol against scipy, and the sampler's suggestions.
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
#include "../../core/rng.h"
#include "../../core/space.h"
#include "../../samplers/gp.h"
#include "../../samplers/sampler.h"

/* Relative-or-absolute closeness. */
static void assert_close(double got, double want, double tol)
{
    double err = fabs(got - want) / (fabs(want) > 1.0 ? fabs(want) : 1.0);
    if (!(err <= tol)) {
        fail_msg("got %.17g, want %.17g (error %.3g > %.3g)", got, want, err, tol);
    }
}

/*
** The tiny case, computed independently with numpy 1.24 (float64):
**   X = [[0.1,0.7,0],[0.4,0.2,1],[0.9,0.5,2],[0.3,0.3,1],[0.65,0.95,0]]  (dim 3 categorical)
**   y = [0.5,-1.2,0.3,1.7,-0.4]; theta = [2.0,0.5,1.5]; s = 1.3; noise = 1e-3
**   r2 = sum theta_k (a_k-b_k)^2 over dims 0,1 + theta_2 [a_2 != b_2]
**   M(q) = (1 + sqrt5 r + 5q/3) exp(-sqrt5 r); K = s M + noise I
**   Xs = [[0.2,0.6,0],[0.5,0.5,2]]; mean = ks K^-1 y; var = s - diag(ks K^-1 ks^T)
**   mll = -y K^-1 y/2 - slogdet(K)/2 - 5/2 ln 2 pi
*/
static const double tiny_x[5][3] = {
    { 0.1, 0.7, 0 }, { 0.4, 0.2, 1 }, { 0.9, 0.5, 2 }, { 0.3, 0.3, 1 }, { 0.65, 0.95, 0 },
};
static const double tiny_y[5] = { 0.5, -1.2, 0.3, 1.7, -0.4 };
static const double tiny_xs[2][3] = { { 0.2, 0.6, 0 }, { 0.5, 0.5, 2 } };
static const double tiny_mean[2] = { 0.1587995717047511, 0.9460652153095941 };
static const double tiny_var[2] = { 0.03627375971607893, 0.43280086831998654 };
static const bool tiny_cat[3] = { false, false, true };

/*
** The log posterior at raw = (ln l_k = -ln(theta_k)/2, ln 1e-3, c = 0.2),
** s = 1 (numpy as above, residuals y - c), without and with the priors
** (LogNormal(sqrt2 + ln(3)/2, sqrt3) per lengthscale, LogNormal(-4, 1) noise),
** and the posterior of that model (mean c + ks K^-1 (y - c)):
*/
static const double tiny_mll[2] = { -105.1222474781991, -179.1515696282708 };  /* matern, rbf */
static const double tiny_post[2] = { -109.67023503245247, -183.69955718252416 };
static const double tiny_c_mean[2][2] = { { 0.15352861107790536, 0.9428159035060599 },
    { -0.07911927381331751, 1.7394071690393325 } };
static const double tiny_c_var[2][2] = { { 0.028090737331697646, 0.33307481602531475 },
    { 0.012914420854409636, 0.2148521708372051 } };

static void tiny_model(struct hpo_gp_model *m, size_t rows)
{
    assert_int_equal(hpo_gp_model_init(m, 3, tiny_cat), 0);
    m->kernel = HPO_GP_MATERN52;
    m->theta[0] = 2.0;
    m->theta[1] = 0.5;
    m->theta[2] = 1.5;
    m->scale = 1.3;
    m->noise = 1e-3;
    for (size_t i = 0; i < rows; i++) {
        assert_int_equal(hpo_gp_model_add(m, tiny_x[i], tiny_y[i]), 0);
    }
}

static void check_tiny_posterior(struct hpo_gp_model *m)
{
    double mean[2], var[2], work[5 * 2], gw[10], dm[3], dv[3], m1, v1;

    assert_int_equal(hpo_gp_solve(m), 0);
    hpo_gp_predict(m, 2, &tiny_xs[0][0], mean, var, work);
    for (int i = 0; i < 2; i++) {
        assert_close(mean[i], tiny_mean[i], 1e-9);
        assert_close(var[i], tiny_var[i], 1e-9);
        hpo_gp_predict_grad(m, tiny_xs[i], &m1, &v1, dm, dv, gw);
        assert_close(m1, tiny_mean[i], 1e-9);
        assert_close(v1, tiny_var[i], 1e-9);
        /* No gradient along the categorical dim. */
        assert_true(dm[2] == 0.0 && dv[2] == 0.0);
    }
}

static void test_posterior_matches_numpy(void **unused)
{
    struct hpo_gp_model m;

    tiny_model(&m, 5);
    assert_int_equal(hpo_gp_factor(&m), 0);
    assert_true(m.jitter == 0.0);
    check_tiny_posterior(&m);
    hpo_gp_model_free(&m);
}

static void test_extended_factor_matches_numpy(void **unused)
{
    struct hpo_gp_model m;

    /* Factor 2 rows, then extend by 3 (one dtrsm + syrk + potrf block). */
    tiny_model(&m, 2);
    assert_int_equal(hpo_gp_factor(&m), 0);
    for (size_t i = 2; i < 5; i++) {
        assert_int_equal(hpo_gp_model_add(&m, tiny_x[i], tiny_y[i]), 0);
    }
    assert_int_equal(m.n_factored, 2);
    assert_int_equal(hpo_gp_extend(&m), 0);
    assert_int_equal(m.n_factored, 5);
    check_tiny_posterior(&m);
    /* Growing the storage keeps the factor. */
    assert_int_equal(hpo_gp_model_reserve(&m, m.cap * 4 + 3), 0);
    check_tiny_posterior(&m);
    /* Truncating to 2 rows and extending again gives the same factor. */
    hpo_gp_truncate(&m, 2);
    for (size_t i = 2; i < 5; i++) {
        assert_int_equal(hpo_gp_model_add(&m, tiny_x[i], tiny_y[i]), 0);
    }
    assert_int_equal(hpo_gp_extend(&m), 0);
    check_tiny_posterior(&m);
    hpo_gp_model_free(&m);
}

static void tiny_raw(double *raw)
{
    raw[0] = -0.5 * log(2.0);
    raw[1] = -0.5 * log(0.5);
    raw[2] = -0.5 * log(1.5);
    raw[3] = log(1e-3);
    raw[4] = 0.2;
}

static void test_mll_matches_numpy(void **unused)
{
    struct hpo_gp_model m;
    double raw[5], v, mean[2], var[2], work[10];

    tiny_raw(raw);
    for (int kern = 0; kern < 2; kern++) {
        tiny_model(&m, 5);
        m.kernel = kern == 0 ? HPO_GP_MATERN52 : HPO_GP_RBF;
        assert_int_equal(hpo_gp_log_posterior(&m, raw, false, false, &v, NULL), 0);
        assert_close(v, tiny_mll[kern], 1e-9);
        assert_int_equal(hpo_gp_log_posterior(&m, raw, false, true, &v, NULL), 0);
        assert_close(v, tiny_post[kern], 1e-9);
        /* The same hyperparameters set on the model give its posterior. */
        hpo_gp_set_raw(&m, raw, false);
        assert_close(m.scale, 1.0, 0.0);
        assert_close(m.noise, 1e-3, 1e-15);
        assert_close(m.mean, 0.2, 0.0);
        assert_close(m.theta[0], 2.0, 1e-14);
        assert_int_equal(hpo_gp_factor(&m), 0);
        assert_int_equal(hpo_gp_solve(&m), 0);
        hpo_gp_predict(&m, 2, &tiny_xs[0][0], mean, var, work);
        for (int i = 0; i < 2; i++) {
            assert_close(mean[i], tiny_c_mean[kern][i], 1e-9);
            assert_close(var[i], tiny_c_var[kern][i], 1e-9);
        }
        hpo_gp_model_free(&m);
    }
}

/*
** The priors (docs/ALGORITHMS.md §4.3) against reference values of BoTorch's
** formulas computed independently (numpy/math, 12 digits).
*/
static void test_priors(void **unused)
{
    double raw[5];

    assert_close(hpo_gp_lengthscale_log_prior(1.0, 10), -2.565214943314, 1e-12);
    assert_close(hpo_gp_lengthscale_log_prior(0.5, 10), -2.544901040431, 1e-12);
    assert_close(hpo_gp_noise_log_prior(1e-3), 1.761296364553, 1e-12);
    assert_close(hpo_gp_lengthscale_mode(10), 0.6475923363785324, 1e-14);
    assert_close(hpo_gp_lengthscale_mode(1), exp(M_SQRT2 - 3.0), 1e-14);
    /* The first fit starts at the modes: l = sqrt(d) e^{sqrt2 - 3}, sigma^2 = e^-5, c = 0. */
    hpo_gp_prior_mode(3, false, raw);
    assert_close(raw[0], log(hpo_gp_lengthscale_mode(3)), 1e-14);
    assert_close(raw[2], raw[0], 0.0);
    assert_close(raw[3], -5.0, 0.0);
    assert_close(raw[4], 0.0, 0.0);
    hpo_gp_prior_mode(3, true, raw);
    assert_close(raw[3], 0.0, 0.0);
}

/*
** Standardize (docs/ALGORITHMS.md §4.2) and the Boltzmann start weights
** (§4.6) against reference values computed independently with numpy.
*/
static void test_standardize_and_boltzmann(void **unused)
{
    double y[3] = { 1.0, 2.0, 4.0 }, one[1] = { 5.0 }, flat[2] = { 3.0, 3.0 };
    double inf[3] = { 1.0, HUGE_VAL, -HUGE_VAL };
    static const double acq[6] = { 0.1, 0.5, 0.2, 0.9, 0.3, 0.0 };
    static const double p[6] = { 0.050188, 0.170805, 0.068167, 0.581301, 0.092587, 0.036951 };
    double w[7], total = 0.0, acq7[7];

    hpo_gp_standardize(y, 3);
    assert_close(y[0], -0.872871560944, 1e-12);
    assert_close(y[1], -0.218217890236, 1e-12);
    assert_close(y[2], 1.091089451180, 1e-12);
    /* n = 1 and zero spread: std replaced by 1. */
    hpo_gp_standardize(one, 1);
    assert_close(one[0], 0.0, 0.0);
    hpo_gp_standardize(flat, 2);
    assert_close(flat[0], 0.0, 0.0);
    /* +inf -> the finite max (1), -inf -> the finite min (1): all equal. */
    hpo_gp_standardize(inf, 3);
    assert_close(inf[1], 0.0, 0.0);
    hpo_gp_boltzmann_weights(acq, 6, w);
    for (int i = 0; i < 6; i++) {
        total += w[i];
    }
    for (int i = 0; i < 6; i++) {
        assert_close(w[i] / total, p[i], 1e-6);
    }
    /* A non-finite value gets weight 0 and leaves the others as they were. */
    memcpy(acq7, acq, sizeof(acq));
    acq7[6] = -HUGE_VAL;
    hpo_gp_boltzmann_weights(acq7, 7, w);
    assert_true(w[6] == 0.0);
    total = 0.0;
    for (int i = 0; i < 6; i++) {
        total += w[i];
    }
    assert_close(w[3] / total, p[3], 1e-6);
}

/* Central differences of the log posterior against the analytic gradient. */
static void check_gradient(struct hpo_gp_model *m, const double *raw0, bool det, bool prior)
{
    size_t n_raw = hpo_gp_n_raw(m->d, det);
    double raw[8], grad[8], g2[8], v, vp, vm, h = 1e-6;

    memcpy(raw, raw0, n_raw * sizeof(double));
    assert_int_equal(hpo_gp_log_posterior(m, raw, det, prior, &v, grad), 0);
    for (size_t k = 0; k < n_raw; k++) {
        double fd;
        raw[k] = raw0[k] + h;
        assert_int_equal(hpo_gp_log_posterior(m, raw, det, prior, &vp, g2), 0);
        raw[k] = raw0[k] - h;
        assert_int_equal(hpo_gp_log_posterior(m, raw, det, prior, &vm, g2), 0);
        raw[k] = raw0[k];
        fd = (vp - vm) / (2.0 * h);
        if (fabs(fd - grad[k]) > 1e-5 * (1.0 + fabs(fd))) {
            fail_msg("d/draw[%zu]: analytic %.12g, finite differences %.12g", k, grad[k], fd);
        }
    }
}

static void test_mll_gradient_finite_differences(void **unused)
{
    struct hpo_gp_model m;
    const double a[5] = { log(0.7), log(1.4), log(0.8), log(0.05), 0.3 };
    const double b[5] = { -1.2, 0.7, -0.3, -4.0, -0.6 };

    for (int kern = 0; kern < 2; kern++) {
        tiny_model(&m, 5);
        m.kernel = kern == 0 ? HPO_GP_MATERN52 : HPO_GP_RBF;
        check_gradient(&m, a, false, false);
        check_gradient(&m, a, false, true);
        check_gradient(&m, b, false, false);
        check_gradient(&m, b, false, true);
        check_gradient(&m, b, true, false); /* raw = (ln l_1..3, c = -4.0) */
        check_gradient(&m, b, true, true);
        hpo_gp_model_free(&m);
    }
}

static void test_predict_gradient_finite_differences(void **unused)
{
    struct hpo_gp_model m;
    double x[3] = { 0.37, 0.41, 1 }, gw[10], dm[3], dv[3], t3[3], mean, var, mp, vp, mm, vm;
    double h = 1e-6;

    tiny_model(&m, 5);
    assert_int_equal(hpo_gp_factor(&m), 0);
    assert_int_equal(hpo_gp_solve(&m), 0);
    hpo_gp_predict_grad(&m, x, &mean, &var, dm, dv, gw);
    for (int k = 0; k < 2; k++) {
        x[k] += h;
        hpo_gp_predict_grad(&m, x, &mp, &vp, t3, t3, gw);
        x[k] -= 2 * h;
        hpo_gp_predict_grad(&m, x, &mm, &vm, t3, t3, gw);
        x[k] += h;
        assert_close(dm[k], (mp - mm) / (2 * h), 1e-6);
        assert_close(dv[k], (vp - vm) / (2 * h), 1e-6);
    }
    hpo_gp_model_free(&m);
}

/* ln h(z) and Phi(z)/h(z) from mpmath at 60 digits. */
static const double logh_ref[][3] = {
    { 3.0, 1.0987396653277077727, 0.33284096845179523558 },
    { 0.5, -0.35982768374506381859, 0.99092271800410996015 },
    { 0.0, -0.91893853320467274178, 1.2533141373155002512 },
    { -1.0, -2.4851210257126413368, 1.9042712333296918229 },
    { -2.9, -7.5208464928878732151, 3.4445327294133315261 },
    { -3.1, -8.227329393572749236, 3.6206042621431929948 },
    { -5.0, -16.744301162660990143, 5.3618162412880885298 },
    { -10.0, -55.553122036122355927, 10.194383033412553306 },
    { -25.0, -319.86146358149595433, 25.079620234266532815 },
    { -40.0, -808.29856835661996024, 40.049906657648518193 },
};

static void test_logei(void **unused)
{
    double prev = -HUGE_VAL;

    for (size_t i = 0; i < sizeof(logh_ref) / sizeof(logh_ref[0]); i++) {
        double z = logh_ref[i][0];
        assert_close(hpo_gp_log_h(z), logh_ref[i][1], 1e-12);
        assert_close(hpo_gp_log_h_dz(z), logh_ref[i][2], 1e-10);
    }
    /* Where EI is not tiny, log EI = log(sigma h(z)) computed directly. */
    for (double z = -3.0; z <= 6.0; z += 0.25) {
        double sigma = 0.7;
        double ei = sigma * (exp(-0.5 * z * z) / sqrt(2 * M_PI) + z * 0.5 * erfc(-z / M_SQRT2));
        assert_close(log(sigma) + hpo_gp_log_h(z), log(ei), 1e-12);
    }
    /* Finite and strictly increasing all the way down to z = -40. */
    for (int i = 0; i <= 5000; i++) {
        double z = -40.0 + i * 0.01, v = hpo_gp_log_h(z);
        assert_true(isfinite(v));
        assert_true(v > prev);
        assert_true(hpo_gp_log_h_dz(z) > 0.0);
        prev = v;
    }
}

static void test_sobol(void **unused)
{
    /* scipy.stats.qmc.Sobol(3, scramble=False).random(8) */
    static const double want[8][3] = {
        { 0, 0, 0 }, { 0.5, 0.5, 0.5 }, { 0.75, 0.25, 0.25 }, { 0.25, 0.75, 0.75 },
        { 0.375, 0.375, 0.625 }, { 0.875, 0.875, 0.125 }, { 0.625, 0.125, 0.875 },
        { 0.125, 0.625, 0.375 },
    };
    /* scipy Sobol(1024, scramble=False).random(64)[[5,17,33,63]][:, [50, 99, 1023]] */
    static const double want_hi[4][3] = {
        { 0.625, 0.375, 0.375 }, { 0.46875, 0.53125, 0.40625 },
        { 0.296875, 0.796875, 0.359375 }, { 0.265625, 0.078125, 0.515625 },
    };
    static const size_t rows[4] = { 5, 17, 33, 63 }, cols[3] = { 50, 99, 1023 };
    double pts[8 * 3], *big = malloc(64 * 1024 * sizeof(double)), *sc;
    struct hpo_rng rng;
    int *bins;

    assert_non_null(big);
    assert_int_equal(hpo_gp_sobol(3, 8, false, NULL, pts), 0);
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 3; j++) {
            assert_true(pts[i * 3 + j] == want[i][j]);
        }
    }
    assert_int_equal(hpo_gp_sobol(1024, 64, false, NULL, big), 0);
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 3; j++) {
            assert_true(big[rows[i] * 1024 + cols[j]] == want_hi[i][j]);
        }
    }
    free(big);
    /* Scrambled: every 1-D projection of 2048 points is still one point per bin of 1/2048. */
    sc = malloc(2048 * 12 * sizeof(double));
    bins = calloc(2048, sizeof(int));
    assert_non_null(sc);
    assert_non_null(bins);
    hpo_rng_seed(&rng, 7);
    assert_int_equal(hpo_gp_sobol(12, 2048, true, &rng, sc), 0);
    for (int j = 0; j < 12; j++) {
        memset(bins, 0, 2048 * sizeof(int));
        for (int i = 0; i < 2048; i++) {
            double u = sc[i * 12 + j];
            assert_true(u >= 0.0 && u < 1.0);
            bins[(int)(u * 2048)]++;
        }
        for (int b = 0; b < 2048; b++) {
            assert_int_equal(bins[b], 1);
        }
    }
    /* Not the unscrambled sequence: point 0 is not at the origin. */
    assert_true(sc[0] != 0.0 || sc[1] != 0.0);
    free(sc);
    free(bins);
}

/* ---- The sampler ---- */

struct study {
    struct hpo_space *space;
    struct hpo_history h;
    void *state;
};

static const char *mixed_space =
        "[{\"name\": \"x\", \"type\": \"float\", \"low\": -5, \"high\": 10},"
        " {\"name\": \"lr\", \"type\": \"float\", \"low\": 1e-5, \"high\": 1, \"log\": true},"
        " {\"name\": \"k\", \"type\": \"int\", \"low\": 0, \"high\": 10},"
        " {\"name\": \"big\", \"type\": \"int\", \"low\": 0, \"high\": 1000, \"step\": 5},"
        " {\"name\": \"units\", \"type\": \"int\", \"low\": 1, \"high\": 4096, \"log\": true},"
        " {\"name\": \"frac\", \"type\": \"float\", \"low\": 0, \"high\": 1, \"step\": 0.1},"
        " {\"name\": \"opt\", \"type\": \"categorical\","
        "  \"choices\": [\"adam\", \"sgd\", \"rmsprop\", \"adagrad\"]},"
        " {\"name\": \"mom\", \"type\": \"float\", \"low\": 0, \"high\": 1,"
        "  \"when\": {\"opt\": [\"sgd\", \"rmsprop\"]}}]";

static const char *square_space =
        "[{\"name\": \"a\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
        " {\"name\": \"b\", \"type\": \"float\", \"low\": 0, \"high\": 1}]";

static void study_open(struct study *st, const char *space_json, const char *options)
{
    json_error_t jerr;
    json_t *sp = json_loads(space_json, 0, &jerr), *opts;
    struct hpo_error err;

    assert_non_null(sp);
    assert_int_equal(hpo_space_parse(sp, &st->space, &err), 0);
    json_decref(sp);
    opts = json_loads(options ? options : "{}", 0, &jerr);
    assert_non_null(opts);
    assert_int_equal(hpo_sampler_gp.configure(opts, st->space, &st->state, &err), 0);
    json_decref(opts);
    hpo_history_init(&st->h, st->space, "s", false);
}

static void study_close(struct study *st)
{
    hpo_sampler_gp.destroy(st->state);
    hpo_history_finish(&st->h);
    hpo_space_destroy(st->space);
}

/* Objective for the mixed space (values form), docs/ALGORITHMS.md §8-like. */
static double mixed_objective(const struct hpo_space *sp, const double *v)
{
    double f = (v[0] - 2.0) * (v[0] - 2.0) + pow(log10(v[1]) + 3.0, 2) + 0.1 * (v[2] - 7) * (v[2] - 7);
    f += fabs(v[3] - 500.0) / 100.0 + fabs(log2(v[4]) - 6.0) + (v[5] - 0.3) * (v[5] - 0.3);
    f += v[6] == 1.0 ? 0.0 : 1.0;
    if (!isnan(v[7])) {
        f += (v[7] - 0.9) * (v[7] - 0.9);
    }
    return f;
}

static double square_objective(const struct hpo_space *sp, const double *v)
{
    return (v[0] - 0.3) * (v[0] - 0.3) + (v[1] - 0.6) * (v[1] - 0.6);
}

/* Ask one suggestion and decode it; returns the new (running) trial. */
static struct hpo_trial *ask(struct study *st, uint64_t seed)
{
    struct hpo_rng rng;
    struct hpo_error err;
    double *unit = malloc(st->space->dim * sizeof(double));
    struct hpo_trial *t;

    assert_non_null(unit);
    hpo_rng_init(&rng, seed, st->h.n_trials);
    assert_int_equal(hpo_sampler_gp.suggest(st->state, st->space, &st->h, &rng, unit, &err), 0);
    t = hpo_history_append(&st->h, HPO_STATE_RUNNING);
    assert_non_null(t);
    hpo_space_decode(st->space, unit, t->values);
    memcpy(t->unit, unit, st->space->dim * sizeof(double));
    free(unit);
    return t;
}

static void tell(struct study *st, struct hpo_trial *t,
        double (*f)(const struct hpo_space *, const double *))
{
    t->value = f(st->space, t->values);
    hpo_history_set_state(&st->h, t, HPO_STATE_COMPLETE);
}

static void assert_valid(const struct hpo_space *sp, const double *values)
{
    for (size_t i = 0; i < sp->n_params; i++) {
        const struct hpo_param *p = &sp->params[i];
        bool active = hpo_space_active(sp, i, values);
        if (active) {
            if (!hpo_param_valid(p, values[p->offset])) {
                fail_msg("param %s: invalid value %.17g", p->name, values[p->offset]);
            }
        } else {
            assert_true(isnan(values[p->offset]));
        }
    }
}

static void test_options(void **unused)
{
    json_error_t jerr;
    struct hpo_error err;
    void *state = NULL;
    json_t *o, *d;

    o = json_loads("{\"n_startup_trials\": 3, \"foo\": 1}", 0, &jerr);
    assert_int_equal(hpo_sampler_gp.configure(o, NULL, &state, &err), -EINVAL);
    assert_int_equal(err.code, HPO_INVALID_ARGUMENT);
    assert_string_equal(err.field, "sampler.foo");
    assert_null(state);
    json_decref(o);
    o = json_loads("{\"acquisition\": \"pi\"}", 0, &jerr);
    assert_int_equal(hpo_sampler_gp.configure(o, NULL, &state, &err), -EINVAL);
    assert_string_equal(err.field, "sampler.acquisition");
    json_decref(o);
    o = json_loads("{\"kernel\": \"rq\"}", 0, &jerr);
    assert_int_equal(hpo_sampler_gp.configure(o, NULL, &state, &err), -EINVAL);
    assert_string_equal(err.field, "sampler.kernel");
    json_decref(o);
    o = json_loads("{\"output_warping\": 1}", 0, &jerr);
    assert_int_equal(hpo_sampler_gp.configure(o, NULL, &state, &err), -EINVAL);
    assert_string_equal(err.field, "sampler.output_warping");
    json_decref(o);
    o = json_loads("{\"n_candidates\": 0}", 0, &jerr);
    assert_int_equal(hpo_sampler_gp.configure(o, NULL, &state, &err), -EINVAL);
    assert_string_equal(err.field, "sampler.n_candidates");
    json_decref(o);
    o = json_loads("{\"acquisition\": \"ucb\", \"beta\": 3.5}", 0, &jerr);
    assert_int_equal(hpo_sampler_gp.configure(o, NULL, &state, &err), 0);
    json_decref(o);
    d = hpo_sampler_gp.describe(state);
    o = json_loads("{\"n_startup_trials\": 10, \"acquisition\": \"ucb\", \"beta\": 3.5,"
                   " \"deterministic_objective\": false, \"n_candidates\": 512,"
                   " \"n_local_searches\": 20, \"kernel\": \"matern52\","
                   " \"output_warping\": true}",
            0, &jerr);
    assert_true(json_equal(d, o));
    json_decref(o);
    json_decref(d);
    hpo_sampler_gp.destroy(state);
    /* The schema is valid JSON naming every option. */
    o = json_loads(hpo_sampler_gp.options_schema, 0, &jerr);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 8);
    json_decref(o);
    assert_false(hpo_sampler_gp.supports_vectors);
    assert_ptr_equal(hpo_sampler_find("gp"), &hpo_sampler_gp);
}

/* Run n ask/tell rounds; check validity; return the stats. */
static void run_study(struct study *st, int n, uint64_t seed,
        double (*f)(const struct hpo_space *, const double *))
{
    for (int i = 0; i < n; i++) {
        struct hpo_trial *t = ask(st, seed);
        assert_valid(st->space, t->values);
        tell(st, t, f);
    }
}

static void test_mixed_space_valid(void **unused)
{
    struct study st;
    struct hpo_gp_stats stats;
    double best = HUGE_VAL, best_startup = HUGE_VAL;

    study_open(&st, mixed_space, NULL);
    run_study(&st, 40, 11, mixed_objective);
    hpo_gp_get_stats(st.state, &stats);
    assert_int_equal(stats.suggests, 40);
    assert_int_equal(stats.random, 10);
    assert_int_equal(stats.fallbacks, 0);
    assert_true(stats.fits >= 30);
    for (size_t i = 0; i < st.h.n_trials; i++) {
        double v = st.h.trials[i]->value;
        best = v < best ? v : best;
        if (i < 10) {
            best_startup = v < best_startup ? v : best_startup;
        }
    }
    /* The model makes progress over the random start. */
    assert_true(best < best_startup);
    study_close(&st);
}

static void test_reproducible(void **unused)
{
    struct study a, b;

    study_open(&a, mixed_space, "{\"n_startup_trials\": 5}");
    study_open(&b, mixed_space, "{\"n_startup_trials\": 5}");
    run_study(&a, 14, 42, mixed_objective);
    run_study(&b, 14, 42, mixed_objective);
    for (size_t i = 0; i < a.h.n_trials; i++) {
        assert_memory_equal(a.h.trials[i]->unit, b.h.trials[i]->unit,
                a.space->dim * sizeof(double));
    }
    study_close(&b);
    /* Another seed gives other suggestions. */
    study_open(&b, mixed_space, "{\"n_startup_trials\": 5}");
    run_study(&b, 14, 43, mixed_objective);
    assert_true(memcmp(a.h.trials[13]->unit, b.h.trials[13]->unit,
                        a.space->dim * sizeof(double)) != 0);
    study_close(&a);
    study_close(&b);
}

static double dist2(const double *a, const double *b)
{
    return sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]));
}

/* A suggestion for trial 12 from a fresh sampler state (cold fit, no cache), stream 99. */
static void fresh_suggest(struct study *st, double *unit)
{
    struct hpo_rng rng;
    struct hpo_error err;
    json_t *opts = json_object();
    void *state;

    assert_int_equal(hpo_sampler_gp.configure(opts, st->space, &state, &err), 0);
    hpo_rng_init(&rng, 99, 12);
    assert_int_equal(hpo_sampler_gp.suggest(state, st->space, &st->h, &rng, unit, &err), 0);
    hpo_sampler_gp.destroy(state);
    json_decref(opts);
}

static void test_pending_pushes_away(void **unused)
{
    struct study st;
    struct hpo_trial *p[4];
    double unit[2];

    study_open(&st, square_space, NULL);
    run_study(&st, 12, 5, square_objective);
    /*
    ** Same data, same rng stream, fresh state each time: only the running
    ** trials (best constant liars) differ between the four suggestions.
    */
    for (int k = 0; k < 4; k++) {
        fresh_suggest(&st, unit);
        p[k] = hpo_history_append(&st.h, HPO_STATE_RUNNING);
        assert_non_null(p[k]);
        hpo_space_decode(st.space, unit, p[k]->values);
        memcpy(p[k]->unit, unit, sizeof(unit));
        for (int j = 0; j < k; j++) {
            if (dist2(p[k]->unit, p[j]->unit) < 0.03) {
                fail_msg("suggestion %d at (%g, %g) is %g from running trial %d", k,
                        p[k]->unit[0], p[k]->unit[1], dist2(p[k]->unit, p[j]->unit), j);
            }
        }
    }
    /* Without the running trials the same stream gives p0 again. */
    for (int k = 0; k < 4; k++) {
        hpo_history_set_state(&st.h, p[k], HPO_STATE_FAILED);
    }
    fresh_suggest(&st, unit);
    assert_true(dist2(unit, p[0]->unit) < 1e-12);
    study_close(&st);
}

static double flat_objective(const struct hpo_space *sp, const double *v)
{
    return 3.0;
}

static void test_degenerate_histories(void **unused)
{
    struct study st;
    struct hpo_gp_stats stats;
    struct hpo_trial *t;

    /* All values equal. */
    study_open(&st, mixed_space, "{\"n_startup_trials\": 3}");
    run_study(&st, 8, 1, flat_objective);
    hpo_gp_get_stats(st.state, &stats);
    assert_int_equal(stats.fallbacks, 0);
    assert_int_equal(stats.random, 3);
    study_close(&st);
    /* One observation, then duplicates of the same point. */
    study_open(&st, square_space, "{\"n_startup_trials\": 1}");
    for (int i = 0; i < 6; i++) {
        t = hpo_history_append(&st.h, HPO_STATE_COMPLETE);
        t->values[0] = 0.25;
        t->values[1] = 0.75;
        hpo_space_encode(st.space, t->values, t->unit);
        t->value = i == 0 ? 1.0 : 1.0 + 1e-9 * i;
        hpo_history_set_state(&st.h, t, HPO_STATE_COMPLETE);
        t = ask(&st, 3);
        assert_valid(st.space, t->values);
        hpo_history_set_state(&st.h, t, HPO_STATE_FAILED);
    }
    /* Infinite values are replaced by the finite extremes. */
    t = hpo_history_append(&st.h, HPO_STATE_COMPLETE);
    t->values[0] = 0.9;
    t->values[1] = 0.1;
    t->value = HUGE_VAL;
    t = ask(&st, 3);
    assert_valid(st.space, t->values);
    hpo_gp_get_stats(st.state, &stats);
    assert_int_equal(stats.fallbacks, 0);
    assert_int_equal(stats.random, 0);
    study_close(&st);
}

static void test_variants(void **unused)
{
    static const char *const opts[] = {
        "{\"acquisition\": \"ucb\", \"n_startup_trials\": 4}",
        "{\"deterministic_objective\": true, \"n_startup_trials\": 4}",
        "{\"n_local_searches\": 0, \"n_candidates\": 64, \"n_startup_trials\": 4}",
        "{\"n_local_searches\": 1, \"n_startup_trials\": 4}",
        "{\"kernel\": \"rbf\", \"output_warping\": false, \"n_startup_trials\": 4}",
    };

    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        struct study st;
        struct hpo_gp_stats stats;
        study_open(&st, mixed_space, opts[i]);
        run_study(&st, 10, 8, mixed_objective);
        hpo_gp_get_stats(st.state, &stats);
        assert_int_equal(stats.fallbacks, 0);
        assert_int_equal(stats.random, 4);
        study_close(&st);
    }
}

/* Above 512 complete trials the model keeps 512 rows and extends them between refits. */
static void test_refit_policy_large(void **unused)
{
    struct study st;
    struct hpo_gp_stats stats;
    struct hpo_rng rng;

    study_open(&st, square_space, NULL);
    hpo_rng_seed(&rng, 3);
    for (int i = 0; i < 1100; i++) {
        struct hpo_trial *t = hpo_history_append(&st.h, HPO_STATE_COMPLETE);
        t->unit[0] = hpo_rng_uniform(&rng);
        t->unit[1] = hpo_rng_uniform(&rng);
        hpo_space_decode(st.space, t->unit, t->values);
        t->value = square_objective(st.space, t->values);
    }
    run_study(&st, 3, 4, square_objective);
    hpo_gp_get_stats(st.state, &stats);
    /* One fit (from the priors' modes: no previous fit), then two extensions. */
    assert_int_equal(stats.fits, 1);
    assert_int_equal(stats.refactors, 1);
    assert_int_equal(stats.extends, 2);
    /* 512 chosen at the refit plus the two trials told since. */
    assert_int_equal(stats.model_rows, 514);
    assert_int_equal(stats.fallbacks, 0);
    /*
    ** 5% more complete trials trigger the next refit, with a fresh choice of
    ** 512 rows, warm-started only (above 300 trials the priors' modes are not
    ** tried again).
    */
    for (int i = 0; i < 52; i++) {
        struct hpo_trial *t = hpo_history_append(&st.h, HPO_STATE_COMPLETE);
        t->unit[0] = hpo_rng_uniform(&rng);
        t->unit[1] = hpo_rng_uniform(&rng);
        hpo_space_decode(st.space, t->unit, t->values);
        t->value = square_objective(st.space, t->values);
    }
    run_study(&st, 1, 4, square_objective);
    hpo_gp_get_stats(st.state, &stats);
    assert_int_equal(stats.fits, 2);
    assert_int_equal(stats.model_rows, 512);
    study_close(&st);
}

/*
** One study for test_parallel_same_bits: 60 random complete trials, then 6
** asks (every other one left running, so liars join the model), with the
** acquisition's tasks on the worker pool or on the caller only.
*/
static void parallel_run(struct study *st, const char *space, bool parallel,
        double (*f)(const struct hpo_space *, const double *), struct hpo_gp_stats *stats)
{
    struct hpo_rng rng;

    study_open(st, space, NULL);
    hpo_rng_seed(&rng, 21);
    for (int i = 0; i < 60; i++) {
        struct hpo_trial *t = hpo_history_append(&st->h, HPO_STATE_RUNNING);
        for (size_t k = 0; k < st->space->dim; k++) {
            t->unit[k] = hpo_rng_uniform(&rng);
        }
        hpo_space_decode(st->space, t->unit, t->values);
        tell(st, t, f);
    }
    hpo_gp_set_parallel(parallel);
    for (int i = 0; i < 6; i++) {
        struct hpo_trial *t = ask(st, 5);
        assert_valid(st->space, t->values);
        if (i % 2 == 0) {
            tell(st, t, f);
        }
    }
    hpo_gp_set_parallel(true);
    hpo_gp_get_stats(st->state, stats);
}

static const char *float6_space =
        "[{\"name\": \"a\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
        " {\"name\": \"b\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
        " {\"name\": \"c\", \"type\": \"float\", \"low\": -3, \"high\": 3},"
        " {\"name\": \"d\", \"type\": \"float\", \"low\": 1e-4, \"high\": 1, \"log\": true},"
        " {\"name\": \"e\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
        " {\"name\": \"f\", \"type\": \"float\", \"low\": 0, \"high\": 1}]";

static double float6_objective(const struct hpo_space *sp, const double *v)
{
    double f = 0.0;

    (void)sp;
    for (int k = 0; k < 6; k++) {
        f += sin(3.0 * v[k] + k) + (v[k] - 0.2 * k) * (v[k] - 0.2 * k);
    }
    return f;
}

/*
** The raw candidates and local searches spread over the worker pool
** (core/parallel.h) give the caller-only suggestions bit for bit, and the
** evaluations every thread made are counted.
*/
static void test_parallel_same_bits(void **unused)
{
    const char *spaces[2] = { float6_space, mixed_space };
    double (*fs[2])(const struct hpo_space *, const double *) = { float6_objective,
        mixed_objective };

    for (int k = 0; k < 2; k++) {
        struct study a, b;
        struct hpo_gp_stats sa, sb;
        parallel_run(&a, spaces[k], false, fs[k], &sa);
        parallel_run(&b, spaces[k], true, fs[k], &sb);
        assert_int_equal(a.h.n_trials, 66);
        assert_int_equal(b.h.n_trials, 66);
        for (size_t i = 60; i < a.h.n_trials; i++) {
            assert_memory_equal(a.h.trials[i]->unit, b.h.trials[i]->unit,
                    a.space->dim * sizeof(double));
        }
        assert_int_equal(sa.fallbacks, 0);
        assert_int_equal(sb.fallbacks, 0);
        assert_int_equal(sa.acq_evals, sb.acq_evals);
        /* 512 raw candidates, the starts' values, and the local searches. */
        assert_true(sb.acq_evals > 512 + 20);
        assert_true(hpo_gp_last_acq(a.state) == hpo_gp_last_acq(b.state));
        study_close(&a);
        study_close(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_posterior_matches_numpy),
        cmocka_unit_test(test_extended_factor_matches_numpy),
        cmocka_unit_test(test_mll_matches_numpy),
        cmocka_unit_test(test_priors),
        cmocka_unit_test(test_standardize_and_boltzmann),
        cmocka_unit_test(test_mll_gradient_finite_differences),
        cmocka_unit_test(test_predict_gradient_finite_differences),
        cmocka_unit_test(test_logei),
        cmocka_unit_test(test_sobol),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_mixed_space_valid),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_pending_pushes_away),
        cmocka_unit_test(test_degenerate_histories),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_refit_policy_large),
        cmocka_unit_test(test_parallel_same_bits),
    };

    return cmocka_run_group_tests_name("samplers-gp", tests, NULL, NULL);
}
