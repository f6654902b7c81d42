/*
** test-samplers-gp-transfer.c: the gp sampler's warm start
** (samplers/gp-transfer.c, docs/ALGORITHMS.md §12.3): alpha and the
** geometric sd interpolation against the worked example E12.1, the stacked
** residual GP's posterior against numpy, its gradient against finite
** differences, and the gp sampler with a prior against the same seed without.
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
#include "../../samplers/gp-transfer.h"
#include "../../samplers/gp.h"
#include "../../samplers/prior.h"
#include "../../samplers/sampler.h"

static void assert_close(double got, double want, double tol)
{
    double err = fabs(got - want) / (fabs(want) > 1.0 ? fabs(want) : 1.0);
    if (!(err <= tol)) {
        fail_msg("got %.17g, want %.17g (error %.3g > %.3g)", got, want, err, tol);
    }
}

/* E12.1: d = 4, base N = 100; top N = 10, 50, 2; sigma_top 0.8, sigma_base 0.3. */
static void test_alpha_e12_1(void **unused)
{
    static const size_t n_top[3] = { 10, 50, 2 };
    static const double alpha[3] = { 0.803347, 0.978231, 0.225882 };
    static const double sigma[3] = { 0.659663, 0.783099, 0.374404 };

    (void)unused;
    for (int i = 0; i < 3; i++) {
        double a = hpo_gp_transfer_alpha(n_top[i], 100, 4), mean, var;
        assert_close(a, alpha[i], 1e-6);
        hpo_gp_transfer_combine(a, 1.5, 0.64, -0.25, 0.09, &mean, &var);
        assert_close(mean, 1.25, 1e-15);
        assert_close(sqrt(var), sigma[i], 1e-6);
    }
    /* No current trial: the base's uncertainty alone. */
    assert_true(hpo_gp_transfer_alpha(0, 100, 4) == 0.0);
}

/*
** Two levels, d = 3 (dim 2 categorical), Matern-5/2, fixed hyperparameters;
** the numbers come from tests/data/gp-transfer/reference.py (numpy 1.24),
** which documents the model.
*/
static const double X1[6][3] = { { 0.1, 0.2, 0 }, { 0.4, 0.9, 1 }, { 0.8, 0.3, 2 },
    { 0.5, 0.5, 0 }, { 0.95, 0.85, 1 }, { 0.25, 0.65, 2 } };
static const double Y1[6] = { 0.3, -1.1, 0.8, 1.5, -0.6, 0.2 };
static const double X2[5][3] = { { 0.15, 0.3, 0 }, { 0.6, 0.4, 2 }, { 0.45, 0.55, 0 },
    { 0.9, 0.9, 1 }, { 0.3, 0.1, 1 } };
static const double Y2[5] = { 0.9, 0.4, 1.8, -0.9, -0.2 };
static const double XS[3][3] = { { 0.2, 0.25, 0 }, { 0.55, 0.6, 2 }, { 0.7, 0.8, 1 } };
static const double REF_MEAN[3] = { 1.0069218757531422, 0.2945575560466344, -0.722362005784674 };
static const double REF_VAR[3] = { 0.02223593138952001, 0.13609206038879548,
    0.09442086848650565 };
static const double REF_SD1 = 0.9368386556214825, REF_SD2 = 0.5123193037859947;
static const bool CAT[3] = { false, false, true };

static void build_stack(struct hpo_gp_stack *st)
{
    double raw1[5] = { log(0.4), log(0.7), log(1.5), log(1e-3), 0.1 };
    double raw2[5] = { log(0.6), log(0.3), log(0.8), log(1e-2), -0.2 };

    hpo_gp_stack_init(st, 3);
    assert_int_equal(hpo_gp_stack_add(st, 6, &X1[0][0], Y1, CAT, HPO_GP_MATERN52, false, raw1), 0);
    assert_int_equal(hpo_gp_stack_add(st, 5, &X2[0][0], Y2, CAT, HPO_GP_MATERN52, false, raw2), 0);
    assert_int_equal(st->n_levels, 2);
}

static void test_stack_against_numpy(void **unused)
{
    struct hpo_gp_stack st;
    double mean[3], var[3];

    (void)unused;
    build_stack(&st);
    assert_close(st.levels[0].scale, REF_SD1, 1e-12);
    assert_close(st.levels[1].scale, REF_SD2, 1e-10);
    assert_int_equal(hpo_gp_stack_predict(&st, 3, &XS[0][0], mean, var), 0);
    for (int i = 0; i < 3; i++) {
        assert_close(mean[i], REF_MEAN[i], 1e-9);
        assert_close(var[i], REF_VAR[i], 1e-9);
    }
    /* One point with gradient: the same posterior. */
    for (int i = 0; i < 3; i++) {
        double m, v, dm[3], dv[3];
        assert_int_equal(hpo_gp_stack_predict_grad(&st, XS[i], &m, &v, dm, dv), 0);
        assert_close(m, REF_MEAN[i], 1e-9);
        assert_close(v, REF_VAR[i], 1e-9);
    }
    hpo_gp_stack_free(&st);
}

static void test_stack_gradient(void **unused)
{
    struct hpo_gp_stack st;
    const double h = 1e-6;

    (void)unused;
    build_stack(&st);
    for (int i = 0; i < 3; i++) {
        double m, v, dm[3], dv[3];
        assert_int_equal(hpo_gp_stack_predict_grad(&st, XS[i], &m, &v, dm, dv), 0);
        assert_true(dm[2] == 0.0 && dv[2] == 0.0); /* categorical */
        for (int k = 0; k < 2; k++) {
            double xp[3], xm[3], mp, vp, mm, vm;
            memcpy(xp, XS[i], sizeof(xp));
            memcpy(xm, XS[i], sizeof(xm));
            xp[k] += h;
            xm[k] -= h;
            assert_int_equal(hpo_gp_stack_predict(&st, 1, xp, &mp, &vp), 0);
            assert_int_equal(hpo_gp_stack_predict(&st, 1, xm, &mm, &vm), 0);
            assert_close(dm[k], (mp - mm) / (2 * h), 1e-5);
            assert_close(dv[k], (vp - vm) / (2 * h), 1e-5);
        }
    }
    hpo_gp_stack_free(&st);
}

/* A level whose rows lack a dim models the others only; one with none is refused. */
static void test_level_without_dim(void **unused)
{
    struct hpo_gp_stack st;
    double x[4][3], y[4] = { 0.1, 0.9, -0.4, 0.3 }, mean, var;
    double raw[4] = { log(0.5), log(0.5), log(1e-3), 0.0 };

    (void)unused;
    for (int i = 0; i < 4; i++) {
        x[i][0] = 0.2 * i;
        x[i][1] = NAN;
        x[i][2] = (double)(i % 2);
    }
    hpo_gp_stack_init(&st, 3);
    assert_int_equal(hpo_gp_stack_add(&st, 4, &x[0][0], y, CAT, HPO_GP_RBF, false, raw), 0);
    assert_int_equal(st.levels[0].model.d, 2);
    assert_true(st.levels[0].sel[0] == 0 && st.levels[0].sel[1] == 2);
    /* The lacking dim does not move the prediction. */
    {
        double a[3] = { 0.3, 0.1, 1 }, b[3] = { 0.3, 0.9, 1 }, mb, vb;
        assert_int_equal(hpo_gp_stack_predict(&st, 1, a, &mean, &var), 0);
        assert_int_equal(hpo_gp_stack_predict(&st, 1, b, &mb, &vb), 0);
        assert_true(mean == mb && var == vb);
    }
    for (int i = 0; i < 4; i++) {
        x[i][0] = NAN;
        x[i][2] = NAN;
    }
    assert_int_equal(hpo_gp_stack_add(&st, 4, &x[0][0], y, CAT, HPO_GP_RBF, false, raw), -EDOM);
    assert_int_equal(st.n_levels, 1);
    hpo_gp_stack_free(&st);
}

/* ---- the sampler ---------------------------------------------------------------------- */

static struct hpo_space *space_2d(void)
{
    struct hpo_space *sp = NULL;
    struct hpo_error err = { 0 };
    json_t *j = json_loads("[{\"name\": \"a\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
                           " {\"name\": \"b\", \"type\": \"float\", \"low\": 0, \"high\": 1}]",
            0, NULL);
    assert_int_equal(hpo_space_parse(j, &sp, &err), 0);
    json_decref(j);
    return sp;
}

static double bowl(const double *v, double ca, double cb)
{
    return (v[0] - ca) * (v[0] - ca) + (v[1] - cb) * (v[1] - cb);
}

/* Run n suggest/tell rounds of the gp sampler on a bowl centred at (0.3, 0.7). */
static void run_gp(const struct hpo_space *sp, const struct hpo_prior *prior, size_t n,
        double *out)
{
    const struct hpo_sampler_type *gp = hpo_sampler_find("gp");
    struct hpo_history h;
    struct hpo_error err = { 0 };
    void *state = NULL;
    json_t *opt = json_object();

    assert_int_equal(gp->configure(opt, sp, &state, &err), 0);
    json_decref(opt);
    if (prior != NULL) {
        gp->warm(state, prior);
    }
    hpo_history_init(&h, sp, "t", false);
    for (size_t i = 0; i < n; i++) {
        struct hpo_rng rng;
        struct hpo_trial *t;
        double unit[2];
        hpo_rng_init(&rng, 7, i);
        assert_int_equal(gp->suggest(state, sp, &h, &rng, unit, &err), 0);
        t = hpo_history_append(&h, HPO_STATE_RUNNING);
        assert_non_null(t);
        hpo_space_decode(sp, unit, t->values);
        memcpy(t->unit, unit, sizeof(unit));
        t->value = bowl(t->values, 0.3, 0.7);
        hpo_history_set_state(&h, t, HPO_STATE_COMPLETE);
        out[2 * i] = t->values[0];
        out[2 * i + 1] = t->values[1];
    }
    hpo_history_finish(&h);
    gp->destroy(state);
}

static void test_sampler_with_prior(void **unused)
{
    struct hpo_space *sp = space_2d();
    struct hpo_prior pr = { 0 };
    struct hpo_prior_study ps = { 0 };
    double cold[2 * 12], cold2[2 * 12], warm[2 * 12];
    struct hpo_rng rng;

    (void)unused;
    /* Without a prior: the same suggestions at the same seed, twice. */
    run_gp(sp, NULL, 12, cold);
    run_gp(sp, NULL, 12, cold2);
    assert_memory_equal(cold, cold2, sizeof(cold));
    /* A prior study of 40 trials on a bowl centred nearby, (0.32, 0.68). */
    ps.n = 40;
    ps.values = malloc(40 * 2 * sizeof(double));
    ps.unit = malloc(40 * 2 * sizeof(double));
    ps.loss = malloc(40 * sizeof(double));
    hpo_rng_seed(&rng, 3);
    for (size_t i = 0; i < 40; i++) {
        ps.values[2 * i] = ps.unit[2 * i] = hpo_rng_uniform(&rng);
        ps.values[2 * i + 1] = ps.unit[2 * i + 1] = hpo_rng_uniform(&rng);
        ps.loss[i] = bowl(&ps.values[2 * i], 0.32, 0.68);
    }
    pr.dim = 2;
    pr.n_studies = 1;
    pr.studies = &ps;
    pr.n_total = 40;
    run_gp(sp, &pr, 12, warm);
    /* The first suggestion replays the prior study's best trial. */
    {
        size_t best = 0;
        for (size_t i = 0; i < 40; i++) {
            if (ps.loss[i] < ps.loss[best]) {
                best = i;
            }
        }
        assert_close(warm[0], ps.values[2 * best], 1e-12);
        assert_close(warm[1], ps.values[2 * best + 1], 1e-12);
    }
    /* Warm: the best of 6 trials is closer to the optimum than cold's best of 6. */
    {
        double bw = HUGE_VAL, bc = HUGE_VAL;
        for (size_t i = 0; i < 6; i++) {
            double w = bowl(&warm[2 * i], 0.3, 0.7), c = bowl(&cold[2 * i], 0.3, 0.7);
            bw = w < bw ? w : bw;
            bc = c < bc ? c : bc;
        }
        assert_true(bw < bc);
        assert_true(bw < 1e-3);
    }
    free(ps.values);
    free(ps.unit);
    free(ps.loss);
    hpo_space_destroy(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alpha_e12_1),
        cmocka_unit_test(test_stack_against_numpy),
        cmocka_unit_test(test_stack_gradient),
        cmocka_unit_test(test_level_without_dim),
        cmocka_unit_test(test_sampler_with_prior),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
