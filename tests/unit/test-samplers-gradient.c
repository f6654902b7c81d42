/*
** test-samplers-gradient.c: the gradient sampler driven through its type
** table as the service drives it, reproducing docs/ALGORITHMS.md §7.7.
*/
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../core/history.h"
#include "../../core/rng.h"
#include "../../core/space.h"
#include "../../samplers/sampler.h"

#define SEED 12345

/* |a - b| <= tol, printing both on failure (cmocka 1.1.5 has no double asserts). */
#define assert_near(a, b, tol) near_((a), (b), (tol), #a, __FILE__, __LINE__)

static void near_(double a, double b, double tol, const char *what, const char *file, int line)
{
    if (!(fabs(a - b) <= tol) && !(a == b)) {
        print_error("%s = %.17g, expected %.17g (tolerance %g)\n", what, a, b, tol);
        _fail(file, line);
    }
}

/* One study as the service would hold it. */
struct study {
    const struct hpo_sampler_type *type;
    struct hpo_space *space;
    struct hpo_history h;
    void *state;
    json_t *options;
};

static void study_open(struct study *s, const char *space_json, const char *options_json,
        bool maximize)
{
    json_error_t jerr;
    json_t *sp = json_loads(space_json, 0, &jerr);
    struct hpo_error err;

    memset(s, 0, sizeof(*s));
    assert_non_null(sp);
    s->type = hpo_sampler_find("gradient");
    assert_non_null(s->type);
    assert_true(s->type->supports_vectors);
    assert_int_equal(hpo_space_parse(sp, &s->space, &err), 0);
    json_decref(sp);
    s->options = json_loads(options_json, 0, &jerr);
    assert_non_null(s->options);
    assert_int_equal(s->type->configure(s->options, s->space, &s->state, &err), 0);
    hpo_history_init(&s->h, s->space, "s", maximize);
}

static void study_close(struct study *s)
{
    s->type->destroy(s->state);
    hpo_history_finish(&s->h);
    hpo_space_destroy(s->space);
    json_decref(s->options);
}

/* The last ask's suggest_decoded: 1 if it decoded (checked against the split steps). */
static int last_decoded = -1;

/*
** Ask: suggest, decode as the service does, append a running trial. Each
** ask first calls suggest_decoded (what the daemon calls) on the same
** history and seed: the same unit point, and when it decodes, the values
** the two steps give, bit for bit.
*/
static struct hpo_trial *ask(struct study *s)
{
    size_t dim = s->space->dim;
    double *unit = malloc(dim * sizeof(double));
    double *unit1 = malloc(dim * sizeof(double));
    double *vals1 = malloc(dim * sizeof(double));
    struct hpo_rng rng;
    struct hpo_error err;
    struct hpo_trial *t;

    assert_non_null(unit);
    assert_non_null(unit1);
    assert_non_null(vals1);
    hpo_rng_init(&rng, SEED, s->h.n_trials);
    last_decoded = s->type->suggest_decoded(s->state, s->space, &s->h, &rng, unit1, vals1, &err);
    assert_true(last_decoded == 0 || last_decoded == 1);
    hpo_rng_init(&rng, SEED, s->h.n_trials);
    assert_int_equal(s->type->suggest(s->state, s->space, &s->h, &rng, unit, &err), 0);
    t = hpo_history_append(&s->h, HPO_STATE_RUNNING);
    assert_non_null(t);
    /*
    ** As service/trials.c hpo__merge_suggestion: which params are active (the
    ** canonical decode), then the values from the sampler's own unit point
    ** with its decode version; scalars keep canonical unit coordinates.
    */
    memcpy(t->unit, unit, dim * sizeof(double));
    hpo_space_decode(s->space, t->unit, t->values);
    for (size_t i = 0; i < s->space->n_params; i++) {
        const struct hpo_param *p = &s->space->params[i];
        if (!isnan(t->values[p->offset])) {
            hpo_param_decode_n(p, unit + p->offset, t->values + p->offset, p->width,
                    (enum hpo_decode)s->type->decode(s->state));
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                t->unit[j] = p->size == 0 ? hpo_param_to_unit(p, t->values[j]) : unit[j];
            }
        }
    }
    assert_memory_equal(unit1, unit, dim * sizeof(double));
    if (last_decoded == 1) {
        assert_memory_equal(vals1, t->values, dim * sizeof(double));
    }
    free(unit);
    free(unit1);
    free(vals1);
    return t;
}

/* Tell: complete with `value` (or another state), then the sampler's tell. */
static void tell_state(struct study *s, struct hpo_trial *t, enum hpo_state state, double value,
        const double *grad)
{
    hpo_history_set_state(&s->h, t, state);
    t->value = value;
    s->type->tell(s->state, s->space, &s->h, (size_t)t->number, grad);
}

static void tell(struct study *s, struct hpo_trial *t, double value, const double *grad)
{
    tell_state(s, t, HPO_STATE_COMPLETE, value, grad);
}

/* Restart: save, destroy, configure afresh from the same options, load. */
static void restart(struct study *s)
{
    void *blob = NULL;
    size_t len = 0;
    struct hpo_error err;

    assert_int_equal(s->type->save(s->state, &blob, &len), 0);
    /* The pieces save_parts() hands to storage join into exactly save()'s blob. */
    {
        struct hpo_part parts[HPO_SAVE_PARTS];
        int n = s->type->save_parts(s->state, parts);
        size_t at = 0;
        assert_true(n >= 3 && n <= HPO_SAVE_PARTS);
        for (int i = 0; i < n; i++) {
            assert_true(at + parts[i].len <= len);
            if (parts[i].len > 0) {
                assert_memory_equal((const unsigned char *)blob + at, parts[i].data, parts[i].len);
            }
            at += parts[i].len;
        }
        assert_int_equal(at, len);
    }
    s->type->destroy(s->state);
    s->state = NULL;
    assert_int_equal(s->type->configure(s->options, s->space, &s->state, &err), 0);
    assert_int_equal(s->type->load(s->state, blob, len), 0);
    free(blob);
    blob = NULL;
}

static json_t *status(struct study *s)
{
    json_t *st = s->type->status(s->state);

    assert_non_null(st);
    return st;
}

static long long status_version(struct study *s)
{
    json_t *st = status(s);
    long long k = json_integer_value(json_object_get(st, "version"));

    json_decref(st);
    return k;
}

/* The bilevel quadratic of section 7.7. */
static double wstar(double lam, double a)
{
    return a / (1.0 + lam);
}

static double qloss(double lam, double a, double b)
{
    double d = wstar(lam, a) - b;
    return 0.5 * d * d;
}

static double qgrad(double lam, double a, double b)
{
    return -(wstar(lam, a) - b) * a / ((1.0 + lam) * (1.0 + lam));
}

static const char *lam_space =
        "[{\"name\": \"lam\", \"type\": \"float\", \"low\": 1e-3, \"high\": 1e3, \"log\": true}]";

/* One client round: ask, tell value and closed-form G; returns the λ given. */
static double round_e(struct study *s, double a, double b)
{
    struct hpo_trial *t = ask(s);
    double lam = t->values[0];
    double g = qgrad(lam, a, b);

    tell(s, t, qloss(lam, a, b), &g);
    return lam;
}

/* ---- E1 ---------------------------------------------------------------- */

static void e1_sgd(void **unused)
{
    static const double lam[] = { 1.0, 1.454991414618, 1.708782514620, 1.842073901316,
        1.913451932998 };
    static const double loss[] = { 0.125, 2.464204443061e-02, 5.779052296516e-03,
        1.543857049418e-03, 4.412340655566e-04 };
    static const double G[] = { -0.375, -0.110503151817, -0.043955810265, -0.020638069094,
        -0.010499172115 };
    static const double g[] = { -0.375, -0.160781137182, -0.075110919996, -0.038016848451,
        -0.020089661178 };
    struct study s;
    int first = -1;

    study_open(&s, lam_space, "{\"optimizer\": \"sgd\", \"lr\": 1.0}", false);
    for (int k = 0; k < 60; k++) {
        struct hpo_trial *t = ask(&s);
        double l = t->values[0];
        double gr = qgrad(l, 3, 1);
        if (k < 5) {
            assert_near(l, lam[k], 1e-9);
            assert_near(qloss(l, 3, 1), loss[k], 1e-12);
            assert_near(gr, G[k], 1e-9);
            assert_near(l * gr, g[k], 1e-9);
        }
        if (first < 0 && fabs(l - 2.0) < 1e-9) {
            first = k;
        }
        assert_int_equal(status_version(&s), k);
        tell(&s, t, qloss(l, 3, 1), &gr);
    }
    /* "|λ-2| < 1e-9 first holds after 36 steps". */
    assert_int_equal(first, 36);
    study_close(&s);
}

/* A restart (save, new state, load) in the middle of E1 continues bit for bit. */
static void e1_restart_bitwise(void **unused)
{
    struct study a, b;
    double la[50], lb[50];

    study_open(&a, lam_space, "{\"optimizer\": \"sgd\", \"lr\": 1.0}", false);
    study_open(&b, lam_space, "{\"optimizer\": \"sgd\", \"lr\": 1.0}", false);
    for (int k = 0; k < 50; k++) {
        la[k] = round_e(&a, 3, 1);
    }
    for (int k = 0; k < 50; k++) {
        if (k == 0 || k == 7 || k == 20) {
            restart(&b);
        }
        lb[k] = round_e(&b, 3, 1);
    }
    assert_memory_equal(la, lb, sizeof(la));
    study_close(&a);
    study_close(&b);
}

/* Adam state (m, v, t) and a half-full batch survive a restart exactly. */
static void restart_adam_batch_bitwise(void **unused)
{
    const char *opts = "{\"lr\": 0.1, \"batch_size\": 3, \"hd_beta\": 1e-4}";
    struct study a, b;
    double la[40], lb[40];

    study_open(&a, lam_space, opts, false);
    study_open(&b, lam_space, opts, false);
    for (int k = 0; k < 40; k++) {
        la[k] = round_e(&a, 3, 1);
    }
    for (int k = 0; k < 40; k++) {
        if (k % 5 == 4) {
            restart(&b);
        }
        lb[k] = round_e(&b, 3, 1);
    }
    assert_memory_equal(la, lb, sizeof(la));
    /* 40 gradients in batches of 3: 13 steps. */
    assert_int_equal(status_version(&b), 13);
    study_close(&a);
    study_close(&b);
}

/* The first ask picks the initial point; needs_save says so until save. */
static void needs_save_after_first_ask(void **unused)
{
    struct study s;
    void *blob = NULL;
    size_t len;

    study_open(&s, lam_space, "{}", false);
    assert_false(s.type->needs_save(s.state));
    (void)ask(&s);
    assert_true(s.type->needs_save(s.state));
    assert_int_equal(s.type->save(s.state, &blob, &len), 0);
    free(blob);
    blob = NULL;
    assert_false(s.type->needs_save(s.state));
    (void)ask(&s);
    assert_false(s.type->needs_save(s.state));
    study_close(&s);
}

/* ---- E2-E4 ------------------------------------------------------------- */

static void e2_adam(void **unused)
{
    static const double lam[] = { 1.105170915129, 1.220470055188, 1.345735043033,
        1.480118560564, 1.621861466923, 1.768131211202 };
    struct study s;

    study_open(&s, lam_space, "{\"optimizer\": \"adam\", \"lr\": 0.1}", false);
    assert_near(round_e(&s, 3, 1), 1.0, 0.0);
    for (int k = 0; k < 6; k++) {
        double l = round_e(&s, 3, 1);
        assert_near(l, lam[k], 1e-9);
    }
    study_close(&s);
}

static void e3_momentum(void **unused)
{
    static const double lam[] = { 1.206230249421, 1.632301000476, 2.251490698929,
        2.933881528714 };
    struct study s;

    study_open(&s, lam_space, "{\"optimizer\": \"momentum\", \"lr\": 0.5, \"momentum\": 0.9}",
            false);
    (void)round_e(&s, 3, 1);
    for (int k = 0; k < 4; k++) {
        assert_near(round_e(&s, 3, 1), lam[k], 1e-9);
    }
    study_close(&s);
}

static void nesterov_differs(void **unused)
{
    struct study s;
    double l1, l2;

    /* Nesterov: u -= lr (g + mu m); step 1 from u0=0 with g=-0.375, m=-0.375:
       u1 = 0.5 * (0.375 + 0.9*0.375). */
    study_open(&s, lam_space,
            "{\"optimizer\": \"momentum\", \"lr\": 0.5, \"momentum\": 0.9, \"nesterov\": true}",
            false);
    l1 = round_e(&s, 3, 1);
    l2 = round_e(&s, 3, 1);
    assert_near(l1, 1.0, 0.0);
    assert_near(l2, exp(0.5 * (0.375 + 0.9 * 0.375)), 1e-12);
    study_close(&s);
}

static void e4_hypergradient(void **unused)
{
    static const double lr[] = { 1, 1.060292926443, 1.071580624997, 1.073920723520 };
    static const double lam[] = { 1.454991414618, 1.725427942733, 1.860240559168,
        1.928036139932 };
    struct study s;

    study_open(&s, lam_space, "{\"optimizer\": \"sgd\", \"lr\": 1.0, \"hd_beta\": 1.0}", false);
    (void)round_e(&s, 3, 1);
    for (int k = 0; k < 4; k++) {
        json_t *st = status(&s);
        assert_near(json_real_value(json_object_get(st, "lr")), lr[k], 1e-9);
        json_decref(st);
        assert_near(round_e(&s, 3, 1), lam[k], 1e-9);
    }
    study_close(&s);
}

/* ---- E5 SPSA ------------------------------------------------------------ */

static void e5_spsa(void **unused)
{
    static const double lam_after[] = { 1.454537254922, 1.617593644183, 1.706695761479 };
    static const double ghat[] = { -0.374687812184, -0.161271070092 };
    struct study s;
    double u = 0.0;

    study_open(&s, lam_space,
            "{\"estimator\": \"spsa\", \"spsa_a\": 1, \"spsa_c\": 0.1, \"spsa_A\": 0}", false);
    for (int k = 0; k < 4; k++) {
        struct hpo_trial *p = ask(&s);
        struct hpo_trial *m = ask(&s);
        double ck = 0.1 / pow(k + 1.0, 0.101);
        double lp = log(p->values[0]);
        double lm = log(m->values[0]);
        double yp = qloss(p->values[0], 3, 1);
        double ym = qloss(m->values[0], 3, 1);
        /* The pair straddles u_k by ±c_k (Δ = ±1 for P = 1); its mean is u_k. */
        if (k > 0) {
            u = (lp + lm) / 2.0;
            assert_near(exp(u), lam_after[k - 1], 1e-9);
        }
        assert_near(fabs(lp - u), ck, 1e-12);
        assert_near(lp + lm, 2.0 * u, 1e-12);
        if (k == 0) {
            double yplus = lp > u ? yp : ym;
            double yminus = lp > u ? ym : yp;
            assert_near(yplus, 0.090339037914, 1e-12);
            assert_near(yminus, 0.165276600350, 1e-12);
        }
        if (k == 1) {
            assert_near(ck, 0.093238648644, 1e-12);
        }
        if (k < 2) {
            assert_near((yp - ym) / (lp - lm), ghat[k], 1e-9);
        }
        tell(&s, p, yp, NULL);
        assert_int_equal(status_version(&s), k);
        tell(&s, m, ym, NULL);
        assert_int_equal(status_version(&s), k + 1);
    }
    {
        json_t *st = status(&s);
        assert_string_equal(json_string_value(json_object_get(st, "estimator")), "spsa");
        json_decref(st);
    }
    study_close(&s);
}

/* A failed member voids its pair; a restart keeps the pairing and the key. */
static void spsa_void_and_restart(void **unused)
{
    struct study s;
    struct hpo_trial *p, *m, *p2, *m2;
    double up, um;

    study_open(&s, lam_space, "{\"estimator\": \"spsa\", \"spsa_a\": 1}", false);
    p = ask(&s);
    m = ask(&s);
    tell_state(&s, p, HPO_STATE_FAILED, NAN, NULL);
    tell(&s, m, 1.0, NULL);
    assert_int_equal(status_version(&s), 0);
    /* Next pair: its + member is asked, then the daemon restarts. */
    p2 = ask(&s);
    restart(&s);
    m2 = ask(&s);
    up = log(p2->values[0]);
    um = log(m2->values[0]);
    assert_near(up + um, 0.0, 1e-12);
    assert_near(fabs(up - um), 0.2, 1e-12);
    tell(&s, m2, 1.0, NULL);
    tell(&s, p2, 2.0, NULL);
    assert_int_equal(status_version(&s), 1);
    study_close(&s);
}

/* SPSA over a vector: ± members mirror each other through u_k, signs ±1. */
static void spsa_vector_pairs(void **unused)
{
    const char *sp = "[{\"name\": \"x\", \"type\": \"float\", \"low\": -5, \"high\": 5, "
                     "\"size\": 100}]";
    struct study s;
    struct hpo_trial *p, *m;
    int plus = 0;

    study_open(&s, sp, "{\"estimator\": \"spsa\", \"transform\": \"clip\", \"spsa_c\": 0.5}",
            false);
    p = ask(&s);
    m = ask(&s);
    for (int j = 0; j < 100; j++) {
        assert_near(fabs(p->values[j]), 0.5, 1e-12);
        assert_near(p->values[j] + m->values[j], 0.0, 1e-12);
        plus += p->values[j] > 0;
    }
    /* Rademacher: not all one sign (probability 2^-99). */
    assert_true(plus > 20 && plus < 80);
    study_close(&s);
}

/* ---- E6 ------------------------------------------------------------------ */

#define E6_N 10000

static void e6_round(struct study *s)
{
    struct hpo_trial *t = ask(s);
    double *g = malloc(E6_N * sizeof(double));
    double loss = 0.0;

    assert_non_null(g);
    for (size_t i = 0; i < E6_N; i++) {
        double a = 2.0 + (double)(i % 5);
        g[i] = qgrad(t->values[i], a, 1.0);
        loss += qloss(t->values[i], a, 1.0);
    }
    tell(s, t, loss, g);
    free(g);
}

static const char *e6_space =
        "[{\"name\": \"lam\", \"type\": \"float\", \"low\": 1e-3, \"high\": 1e3, \"log\": true, "
        "\"size\": 10000}]";

static void e6_adam_one_step(void **unused)
{
    static const double want[] = { 1.0, 1.105170915129, 1.105170916970, 1.105170917486,
        1.105170917707 };
    struct study s;
    struct hpo_trial *t;

    study_open(&s, e6_space, "{\"lr\": 0.1}", false);
    e6_round(&s);
    t = ask(&s);
    for (size_t i = 0; i < E6_N; i++) {
        assert_near(t->values[i], want[i % 5], 1e-9);
    }
    study_close(&s);
}

static void e6_sgd_100(void **unused)
{
    struct study s;
    struct hpo_trial *t;

    study_open(&s, e6_space, "{\"optimizer\": \"sgd\", \"lr\": 1.0}", false);
    for (int k = 0; k < 100; k++) {
        e6_round(&s);
    }
    t = ask(&s);
    for (size_t i = 0; i < E6_N; i++) {
        assert_near(t->values[i], 1.0 + (double)(i % 5), 1e-9);
    }
    study_close(&s);
}

static double e6_cosine_error(int T)
{
    char opts[128];
    struct study s;
    struct hpo_trial *t;
    double worst = 0.0;

    snprintf(opts, sizeof(opts),
            "{\"lr\": 0.1, \"schedule\": \"cosine\", \"schedule_steps\": %d, \"lr_min\": 0}", T);
    study_open(&s, e6_space, opts, false);
    for (int k = 0; k < T; k++) {
        e6_round(&s);
    }
    t = ask(&s);
    for (size_t i = 0; i < E6_N; i++) {
        double star = 1.0 + (double)(i % 5);
        double e = fabs(t->values[i] - star) / star;
        worst = e > worst ? e : worst;
    }
    study_close(&s);
    return worst;
}

static void e6_adam_cosine(void **unused)
{
    /* Published (rounded): 9.5e-2, 4.6e-4, 3.3e-8; same order of magnitude, within 10%. */
    double e100 = e6_cosine_error(100);
    double e200 = e6_cosine_error(200);
    double e400 = e6_cosine_error(400);

    print_message("# E6 cosine max rel error: T=100 %.3g, T=200 %.3g, T=400 %.3g\n", e100, e200,
            e400);
    assert_true(fabs(e100 / 9.5e-2 - 1.0) < 0.1);
    assert_true(fabs(e200 / 4.6e-4 - 1.0) < 0.1);
    assert_true(fabs(e400 / 3.3e-8 - 1.0) < 0.1);
}

/* ---- E7: logit transform and staleness ----------------------------------- */

static double sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

static void e7_logit(void **unused)
{
    struct study s;
    struct hpo_trial *t;
    double g = 2.0;
    double u0 = log(0.2 / 0.8);

    study_open(&s,
            "[{\"name\": \"dropout\", \"type\": \"float\", \"low\": 0, \"high\": 0.5}]",
            "{\"optimizer\": \"sgd\", \"lr\": 1.0, \"init\": {\"dropout\": 0.1}}", false);
    t = ask(&s);
    assert_near(t->values[0], 0.1, 1e-15);
    tell(&s, t, 0.0, &g);
    /* dv/du = 0.1 * 0.4 / 0.5 = 0.08, g = 0.16, u1 = logit(0.2) - 0.16. */
    t = ask(&s);
    assert_near(t->values[0], 0.5 * sigmoid(u0 - 0.16), 1e-15);
    study_close(&s);
}

static void logit_bounds(void **unused)
{
    struct study s;
    struct hpo_trial *t;
    double g = -1e9;

    /* A huge push stops at p = 1 - 1e-6, not at the bound itself. */
    study_open(&s, "[{\"name\": \"p\", \"type\": \"float\", \"low\": 0, \"high\": 1}]",
            "{\"optimizer\": \"sgd\", \"lr\": 1.0}", false);
    tell(&s, ask(&s), 0.0, &g);
    t = ask(&s);
    assert_near(t->values[0], 1.0 - 1e-6, 1e-15);
    assert_true(t->values[0] < 1.0);
    study_close(&s);
}

static const char *x_space =
        "[{\"name\": \"x\", \"type\": \"float\", \"low\": -100, \"high\": 100}]";

/* A gradient of version 3 applied at k = 5 is scaled by 1/3. */
static void e7_staleness(void **unused)
{
    struct study s;
    struct hpo_trial *held;
    double one = 1.0, g = 0.3;
    double x;

    study_open(&s, x_space, "{\"optimizer\": \"sgd\", \"lr\": 1.0, \"transform\": \"clip\"}",
            false);
    for (int k = 0; k < 3; k++) {
        tell(&s, ask(&s), 0.0, &one);
    }
    held = ask(&s); /* version 3 */
    for (int k = 0; k < 2; k++) {
        tell(&s, ask(&s), 0.0, &one);
    }
    assert_int_equal(status_version(&s), 5);
    x = ask(&s)->values[0];
    assert_near(x, -5.0, 1e-12);
    tell(&s, held, 0.0, &g);
    assert_int_equal(status_version(&s), 6);
    assert_near(ask(&s)->values[0], -5.0 - 0.3 / 3.0, 1e-12);
    study_close(&s);
}

static void staleness_ignore_and_drop(void **unused)
{
    struct study s;
    struct hpo_trial *held, *held2;
    double one = 1.0;
    json_t *st;

    study_open(&s, x_space,
            "{\"optimizer\": \"sgd\", \"lr\": 1.0, \"transform\": \"clip\", "
            "\"staleness\": \"ignore\", \"max_staleness\": 2}",
            false);
    held = ask(&s);  /* version 0 */
    held2 = ask(&s); /* version 0 */
    tell(&s, ask(&s), 0.0, &one);
    tell(&s, ask(&s), 0.0, &one);
    /* tau = 2: applied unscaled. */
    tell(&s, held, 0.0, &one);
    assert_near(ask(&s)->values[0], -3.0, 1e-12);
    /* tau = 3 > 2: dropped, nothing moves. */
    tell(&s, held2, 0.0, &one);
    assert_near(ask(&s)->values[0], -3.0, 1e-12);
    st = status(&s);
    assert_int_equal(json_integer_value(json_object_get(st, "dropped_stale")), 1);
    assert_int_equal(json_integer_value(json_object_get(st, "version")), 3);
    json_decref(st);
    study_close(&s);
}

/* The saved state stays bounded: the step log keeps max_staleness + 1 entries. */
static void bounded_state(void **unused)
{
    struct study s;
    struct hpo_trial *ancient, *recent = NULL, *held = NULL;
    double one = 1.0, g = 0.3;
    size_t len20 = 0, len200 = 0;
    json_t *st;

    study_open(&s, x_space,
            "{\"optimizer\": \"sgd\", \"lr\": 0.01, \"transform\": \"clip\", "
            "\"max_staleness\": 2}",
            false);
    ancient = ask(&s); /* version 0 */
    for (int k = 0; k < 200; k++) {
        void *blob = NULL;
        size_t len;
        if (k == 197) {
            recent = ask(&s); /* version 197 */
        }
        if (k == 198) {
            held = ask(&s); /* version 198 */
        }
        tell(&s, ask(&s), 0.0, &one);
        if (k % 7 == 0) {
            restart(&s);
        }
        assert_int_equal(s.type->save(s.state, &blob, &len), 0);
        free(blob);
        blob = NULL;
        if (k == 20) {
            len20 = len;
        }
        len200 = len;
    }
    /* 200 more trials add at most their told bits, not a step log entry each. */
    assert_true(len200 <= len20 + 200 / 8 + 8);
    assert_int_equal(status_version(&s), 200);
    {
        double x0 = ask(&s)->values[0];
        /* Version 197 at k = 200: tau 3 > 2, dropped. */
        tell(&s, recent, 0.0, &g);
        /* Version 0: long forgotten, dropped too. */
        tell(&s, ancient, 0.0, &g);
        assert_near(ask(&s)->values[0], x0, 0.0);
    }
    st = status(&s);
    assert_int_equal(json_integer_value(json_object_get(st, "dropped_stale")), 2);
    json_decref(st);
    /* A gradient of version 198 at k = 200 is applied with weight 1/3. */
    {
        double x0 = ask(&s)->values[0];
        tell(&s, held, 0.0, &g);
        assert_near(ask(&s)->values[0], x0 - 0.01 * 0.3 / 3.0, 1e-12);
    }
    study_close(&s);
}

/*
** A client's gradient is any finite double. Near ±DBL_MAX, Adam's v (ĝ²),
** a momentum, a batch's sum or a hypergradient step overflow: each
** saturates (or the lr step is skipped), so the saved state still loads
** (restart() asserts it), and every value handed out stays finite. Before,
** v = inf was saved, load() refused it and the daemon silently started the
** study's optimizer over after a restart (with a cosine schedule ending at
** lr 0, 0 * inf also put a NaN in u).
*/
static void extreme_gradients_reload(void **unused)
{
    static const char *const opts[] = {
        "{}",
        "{\"optimizer\": \"momentum\", \"nesterov\": true, \"hd_beta\": 1e300}",
        "{\"optimizer\": \"momentum\", \"batch_size\": 3}",
        "{\"optimizer\": \"sgd\", \"lr\": 1e300, \"transform\": \"clip\"}",
        "{\"schedule\": \"cosine\", \"schedule_steps\": 3, \"hd_beta\": 1e-3}",
        "{\"optimizer\": \"adam\", \"max_grad_norm\": 1}",
    };
    static const double grads[] = { 1e308, DBL_MAX, -DBL_MAX, 1e300, -1e200, 0.5, DBL_MAX };

    for (size_t o = 0; o < sizeof(opts) / sizeof(opts[0]); o++) {
        struct study s;

        study_open(&s, x_space, opts[o], false);
        for (int k = 0; k < 12; k++) {
            struct hpo_trial *t = ask(&s);
            double g = grads[k % 7];
            assert_true(isfinite(t->values[0]) && t->values[0] >= -100.0 && t->values[0] <= 100.0);
            tell(&s, t, 1.0, &g);
            restart(&s);
        }
        /* Every gradient was used: the steps survived each restart. */
        assert_int_equal(status_version(&s), strstr(opts[o], "batch_size") != NULL ? 4 : 12);
        study_close(&s);
    }
}

/* ---- batches, clipping, direction ---------------------------------------- */

static void batch_interleaved(void **unused)
{
    struct study s;
    struct hpo_trial *t0, *t1, *t2, *t3, *t4, *t5;
    double g1 = 1.0, g2 = 2.0, g3 = 3.0, g4 = 4.0;

    study_open(&s, x_space,
            "{\"optimizer\": \"sgd\", \"lr\": 1.0, \"transform\": \"clip\", \"batch_size\": 3}",
            false);
    t0 = ask(&s);
    t1 = ask(&s);
    t2 = ask(&s);
    t3 = ask(&s);
    tell(&s, t1, 0.0, &g1);
    tell(&s, t0, 0.0, &g2);
    assert_int_equal(status_version(&s), 0);
    assert_near(ask(&s)->values[0], 0.0, 0.0);
    tell(&s, t2, 0.0, &g3);
    /* Mean of 1, 2, 3. */
    assert_int_equal(status_version(&s), 1);
    t4 = ask(&s);
    t5 = ask(&s);
    assert_near(t4->values[0], -2.0, 1e-12);
    /* t3 is of version 0 at k = 1: weight 1/2. */
    tell(&s, t3, 0.0, &g4);
    tell(&s, t4, 0.0, &g1);
    assert_int_equal(status_version(&s), 1);
    tell(&s, t5, 0.0, &g1);
    assert_int_equal(status_version(&s), 2);
    assert_near(ask(&s)->values[0], -2.0 - (2.0 + 1.0 + 1.0) / 3.0, 1e-12);
    study_close(&s);
}

static void grad_norm_clip(void **unused)
{
    struct study s;
    struct hpo_trial *t;
    double g[2] = { 3.0, 4.0 };

    study_open(&s,
            "[{\"name\": \"x\", \"type\": \"float\", \"low\": -10, \"high\": 10, \"size\": 2}]",
            "{\"optimizer\": \"sgd\", \"lr\": 1.0, \"transform\": \"clip\", "
            "\"max_grad_norm\": 1.0}",
            false);
    tell(&s, ask(&s), 0.0, g);
    t = ask(&s);
    assert_near(t->values[0], -0.6, 1e-12);
    assert_near(t->values[1], -0.8, 1e-12);
    study_close(&s);
}

static void maximize_ascends(void **unused)
{
    struct study s;
    double g = 1.0;

    study_open(&s, x_space, "{\"optimizer\": \"sgd\", \"lr\": 0.5, \"transform\": \"clip\"}",
            true);
    tell(&s, ask(&s), 0.0, &g);
    assert_near(ask(&s)->values[0], 0.5, 1e-12);
    study_close(&s);
}

static void retried_tell_counts_once(void **unused)
{
    struct study s;
    struct hpo_trial *t;
    double g = 1.0;

    study_open(&s, x_space, "{\"optimizer\": \"sgd\", \"lr\": 1.0, \"transform\": \"clip\"}",
            false);
    t = ask(&s);
    tell(&s, t, 0.0, &g);
    s.type->tell(s.state, s.space, &s.h, 0, &g);
    assert_int_equal(status_version(&s), 1);
    assert_near(ask(&s)->values[0], -1.0, 1e-12);
    study_close(&s);
}

/* Failed and pruned trials, and NaN entries, do not move u. */
static void failed_and_partial(void **unused)
{
    const char *sp = "[{\"name\": \"a\", \"type\": \"float\", \"low\": -10, \"high\": 10},"
                     " {\"name\": \"b\", \"type\": \"float\", \"low\": -10, \"high\": 10}]";
    struct study s;
    struct hpo_trial *t;
    double g[2] = { 1.0, NAN };

    study_open(&s, sp, "{\"optimizer\": \"sgd\", \"lr\": 1.0, \"transform\": \"clip\"}", false);
    tell_state(&s, ask(&s), HPO_STATE_FAILED, NAN, g);
    tell_state(&s, ask(&s), HPO_STATE_PRUNED, 1.0, g);
    assert_int_equal(status_version(&s), 0);
    tell(&s, ask(&s), 0.0, g);
    t = ask(&s);
    assert_near(t->values[0], -1.0, 1e-12);
    assert_near(t->values[1], 0.0, 0.0);
    study_close(&s);
}

/* ---- frozen params, initial point, when ----------------------------------- */

static void frozen_and_initial_point(void **unused)
{
    const char *sp =
            "[{\"name\": \"opt\", \"type\": \"categorical\", \"choices\": [\"adam\", \"sgd\"]},"
            " {\"name\": \"mom\", \"type\": \"float\", \"low\": 0, \"high\": 1,"
            "  \"when\": {\"opt\": [\"sgd\"]}},"
            " {\"name\": \"k\", \"type\": \"int\", \"low\": 1, \"high\": 9},"
            " {\"name\": \"lr\", \"type\": \"float\", \"low\": 1e-4, \"high\": 1, \"log\": true}]";
    struct study s;
    struct hpo_trial *w, *t;
    struct hpo_error err;
    double g[4] = { NAN, NAN, NAN, 1.0 };

    /* Centre: first choice, so `mom` is inactive; int at its midpoint; lr at 1e-2. */
    study_open(&s, sp, "{\"optimizer\": \"sgd\", \"lr\": 1.0}", false);
    t = ask(&s);
    assert_near(t->values[0], 0.0, 0.0);
    assert_true(isnan(t->values[1]));
    assert_near(t->values[2], 5.0, 0.0);
    assert_near(t->values[3], 1e-2, 1e-15);
    tell(&s, t, 1.0, g);
    t = ask(&s);
    assert_near(t->values[2], 5.0, 0.0);
    assert_near(t->values[3], 1e-2 * exp(-1e-2), 1e-15);
    study_close(&s);

    /* An enqueued (waiting) trial gives the initial point. */
    study_open(&s, sp, "{\"optimizer\": \"sgd\", \"lr\": 1.0}", false);
    w = hpo_history_append(&s.h, HPO_STATE_WAITING);
    {
        json_t *o = json_pack("{s:s, s:f, s:i, s:f}", "opt", "sgd", "mom", 0.25, "k", 7, "lr",
                0.5);
        assert_int_equal(hpo_space_values_from_json(s.space, o, true, w->values, &err), 0);
        json_decref(o);
    }
    t = ask(&s);
    assert_near(t->values[0], 1.0, 0.0);
    assert_near(t->values[1], 0.25, 1e-15);
    assert_near(t->values[2], 7.0, 0.0);
    assert_near(t->values[3], 0.5, 1e-15);
    study_close(&s);
}

static void init_option_broadcast(void **unused)
{
    struct study s;
    struct hpo_trial *t;

    study_open(&s,
            "[{\"name\": \"wd\", \"type\": \"float\", \"low\": 1e-6, \"high\": 1, \"log\": true,"
            "  \"size\": 4}]",
            "{\"init\": {\"wd\": 0.001}}", false);
    t = ask(&s);
    for (int j = 0; j < 4; j++) {
        assert_near(t->values[j], 0.001, 1e-15);
    }
    study_close(&s);
}

/* ---- estimator selection, finite differences -------------------------------- */

static void auto_estimator(void **unused)
{
    struct study s;
    json_t *st;
    double g = 1.0;

    study_open(&s, x_space, "{\"transform\": \"clip\"}", false);
    tell(&s, ask(&s), 1.0, &g);
    st = status(&s);
    assert_string_equal(json_string_value(json_object_get(st, "estimator")), "client");
    json_decref(st);
    /* Later value-only tells are recorded and change nothing. */
    tell(&s, ask(&s), 1.0, NULL);
    assert_int_equal(status_version(&s), 1);
    study_close(&s);

    study_open(&s, x_space, "{\"transform\": \"clip\"}", false);
    tell(&s, ask(&s), 1.0, NULL);
    st = status(&s);
    assert_string_equal(json_string_value(json_object_get(st, "estimator")), "spsa");
    json_decref(st);
    /* From now on asks come in ± pairs around u0 = 0. */
    {
        struct hpo_trial *p = ask(&s);
        struct hpo_trial *m = ask(&s);
        assert_near(fabs(p->values[0]), 0.1, 1e-12);
        assert_near(p->values[0] + m->values[0], 0.0, 1e-12);
        tell(&s, p, p->values[0] * p->values[0], NULL);
        tell(&s, m, m->values[0] * m->values[0], NULL);
        assert_int_equal(status_version(&s), 1);
    }
    study_close(&s);
}

static void finite_differences(void **unused)
{
    const char *sp = "[{\"name\": \"a\", \"type\": \"float\", \"low\": -10, \"high\": 10},"
                     " {\"name\": \"b\", \"type\": \"float\", \"low\": -10, \"high\": 10}]";
    struct study s;
    struct hpo_trial *t[4];
    struct hpo_trial *n;

    /* f = (a-1)^2 + 3 (b+2)^2; central differences are exact for quadratics:
       grad at 0 = (-2, 12). a = 0.5: step 0.5 * grad. */
    study_open(&s, sp, "{\"estimator\": \"fd\", \"transform\": \"clip\", \"spsa_a\": 0.5, "
                       "\"spsa_A\": 0}", false);
    for (int i = 0; i < 4; i++) {
        t[i] = ask(&s);
    }
    assert_near(t[0]->values[0], 0.1, 1e-12);
    assert_near(t[1]->values[0], -0.1, 1e-12);
    assert_near(t[2]->values[1], 0.1, 1e-12);
    assert_near(t[3]->values[1], -0.1, 1e-12);
    for (int i = 0; i < 4; i++) {
        double a = t[i]->values[0], b = t[i]->values[1];
        tell(&s, t[i], (a - 1) * (a - 1) + 3 * (b + 2) * (b + 2), NULL);
        assert_int_equal(status_version(&s), i == 3 ? 1 : 0);
    }
    /* u1 = (0, 0) - 0.5 * (-2, 12) = (1, -6): the next set straddles it. */
    n = ask(&s);
    {
        struct hpo_trial *m = ask(&s);
        assert_near(n->values[0] - m->values[0], 2.0 * 0.1 / pow(2.0, 0.101), 1e-12);
        assert_near((n->values[0] + m->values[0]) / 2.0, 1.0, 1e-12);
        assert_near(n->values[1], -6.0, 1e-12);
    }
    study_close(&s);
}

/* ---- options ---------------------------------------------------------------- */

static void expect_bad(const char *options_json, const char *field)
{
    const struct hpo_sampler_type *type = hpo_sampler_find("gradient");
    json_error_t jerr;
    json_t *sp = json_loads(lam_space, 0, &jerr);
    json_t *o = json_loads(options_json, 0, &jerr);
    struct hpo_space *space;
    struct hpo_error err;
    void *state = (void *)0x1;

    assert_non_null(o);
    assert_int_equal(hpo_space_parse(sp, &space, &err), 0);
    hpo_error_clear(&err);
    assert_int_equal(type->configure(o, space, &state, &err), -EINVAL);
    assert_int_equal(err.code, HPO_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
    assert_ptr_equal(state, (void *)0x1);
    json_decref(o);
    json_decref(sp);
    hpo_space_destroy(space);
}

static void option_validation(void **unused)
{
    expect_bad("{\"foo\": 1}", "sampler.foo");
    expect_bad("{\"optimizer\": \"rmsprop\"}", "sampler.optimizer");
    expect_bad("{\"lr\": 0}", "sampler.lr");
    expect_bad("{\"lr\": -1}", "sampler.lr");
    expect_bad("{\"lr\": \"big\"}", "sampler.lr");
    expect_bad("{\"beta1\": 1.0}", "sampler.beta1");
    expect_bad("{\"beta2\": -0.1}", "sampler.beta2");
    expect_bad("{\"eps\": 0}", "sampler.eps");
    expect_bad("{\"momentum\": 1}", "sampler.momentum");
    expect_bad("{\"nesterov\": 1}", "sampler.nesterov");
    expect_bad("{\"nesterov\": true}", "sampler.nesterov");
    expect_bad("{\"schedule\": \"step\"}", "sampler.schedule");
    expect_bad("{\"schedule\": \"cosine\"}", "sampler.schedule_steps");
    expect_bad("{\"schedule\": \"cosine\", \"schedule_steps\": 0}", "sampler.schedule_steps");
    expect_bad("{\"schedule\": \"cosine\", \"schedule_steps\": 10, \"lr_min\": 1}",
            "sampler.lr_min");
    expect_bad("{\"schedule_steps\": 10}", "sampler.schedule_steps");
    expect_bad("{\"hd_beta\": -1}", "sampler.hd_beta");
    expect_bad("{\"batch_size\": 0}", "sampler.batch_size");
    expect_bad("{\"batch_size\": 1.5}", "sampler.batch_size");
    expect_bad("{\"max_staleness\": -1}", "sampler.max_staleness");
    expect_bad("{\"staleness\": \"drop\"}", "sampler.staleness");
    expect_bad("{\"max_grad_norm\": -1}", "sampler.max_grad_norm");
    expect_bad("{\"transform\": \"tanh\"}", "sampler.transform");
    expect_bad("{\"estimator\": \"magic\"}", "sampler.estimator");
    expect_bad("{\"spsa_a\": \"manual\"}", "sampler.spsa_a");
    expect_bad("{\"spsa_a\": 0}", "sampler.spsa_a");
    expect_bad("{\"spsa_c\": 0}", "sampler.spsa_c");
    expect_bad("{\"spsa_A\": -1}", "sampler.spsa_A");
    expect_bad("{\"init\": 3}", "sampler.init");
    expect_bad("{\"init\": {\"lam\": 5000}}", "sampler.init.lam");
    expect_bad("{\"init\": {\"nope\": 1}}", "sampler.init.nope");
}

static void describe_defaults(void **unused)
{
    struct study s;
    json_t *d;

    study_open(&s, lam_space, "{}", false);
    d = s.type->describe(s.state);
    assert_string_equal(json_string_value(json_object_get(d, "optimizer")), "adam");
    assert_near(json_real_value(json_object_get(d, "lr")), 0.01, 0.0);
    assert_near(json_real_value(json_object_get(d, "beta2")), 0.999, 0.0);
    assert_int_equal(json_integer_value(json_object_get(d, "batch_size")), 1);
    assert_int_equal(json_integer_value(json_object_get(d, "max_staleness")), 16);
    assert_string_equal(json_string_value(json_object_get(d, "transform")), "logit");
    assert_string_equal(json_string_value(json_object_get(d, "estimator")), "auto");
    assert_string_equal(json_string_value(json_object_get(d, "spsa_a")), "auto");
    assert_null(json_object_get(d, "schedule_steps"));
    /* Describing and configuring again gives the same description. */
    {
        void *st2;
        struct hpo_error err;
        json_t *d2;
        assert_int_equal(s.type->configure(d, s.space, &st2, &err), 0);
        d2 = s.type->describe(st2);
        assert_true(json_equal(d, d2));
        json_decref(d2);
        s.type->destroy(st2);
    }
    json_decref(d);
    study_close(&s);

    study_open(&s, lam_space, "{\"estimator\": \"spsa\"}", false);
    d = s.type->describe(s.state);
    assert_string_equal(json_string_value(json_object_get(d, "optimizer")), "sgd");
    assert_near(json_real_value(json_object_get(d, "lr")), 0.1, 0.0);
    json_decref(d);
    study_close(&s);
    {
        json_error_t jerr;
        json_t *schema = json_loads(hpo_sampler_find("gradient")->options_schema, 0, &jerr);
        assert_non_null(schema);
        assert_non_null(json_object_get(schema, "hd_beta"));
        json_decref(schema);
    }
}

static void load_rejects_garbage(void **unused)
{
    struct study s;
    void *blob = NULL;
    size_t len;

    study_open(&s, lam_space, "{\"optimizer\": \"sgd\", \"lr\": 1.0}", false);
    (void)round_e(&s, 3, 1);
    assert_int_equal(s.type->save(s.state, &blob, &len), 0);
    assert_int_equal(s.type->load(s.state, blob, len - 1), -EINVAL);
    ((unsigned char *)blob)[0] ^= 1;
    assert_int_equal(s.type->load(s.state, blob, len), -EINVAL);
    ((unsigned char *)blob)[0] ^= 1;
    assert_int_equal(s.type->load(s.state, blob, len), 0);
    free(blob);
    blob = NULL;
    /* A blob of an adam study does not load into an sgd one. */
    {
        struct study a;
        study_open(&a, lam_space, "{}", false);
        (void)round_e(&a, 3, 1);
        assert_int_equal(a.type->save(a.state, &blob, &len), 0);
        assert_int_equal(s.type->load(s.state, blob, len), -EINVAL);
        free(blob);
        blob = NULL;
        study_close(&a);
    }
    study_close(&s);
}

/* ---- records (save_record, replayed by load) -------------------------- */

/* A growing byte buffer: a state file as storage extends it. */
struct file {
    unsigned char *data;
    size_t len;
};

static void file_put(struct file *f, const struct hpo_part *parts, int n)
{
    for (int i = 0; i < n; i++) {
        f->data = realloc(f->data, f->len + parts[i].len);
        assert_non_null(f->data);
        memcpy(f->data + f->len, parts[i].data, parts[i].len);
        f->len += parts[i].len;
    }
}

/* The state as storage writes it after a tell: a record when there is one, else whole. */
static bool store(struct study *s, struct file *f)
{
    struct hpo_part parts[HPO_SAVE_PARTS], rec[2];
    int n = s->type->save_parts(s->state, parts);
    int k;

    assert_true(n > 0);
    k = s->type->save_record(s->state, rec);
    assert_true(k == 0 || k == 2);
    if (k > 0) {
        file_put(f, rec, k);
        return true;
    }
    f->len = 0;
    file_put(f, parts, n);
    return false;
}

/* An E6 round whose state is stored while its gradient still lives (as the service's). */
static bool round_store(struct study *s, struct file *f)
{
    struct hpo_trial *t = ask(s);
    double *g = malloc(E6_N * sizeof(double));
    bool rec;

    assert_non_null(g);
    for (size_t i = 0; i < E6_N; i++) {
        g[i] = qgrad(t->values[i], 2.0 + (double)(i % 5), 1.0);
    }
    tell(s, t, 1.0, g);
    rec = store(s, f);
    free(g);
    return rec;
}

/* A fresh state loaded from `f`, saved whole: equal to `s` saved whole. */
static void same_after_load(struct study *s, const struct file *f)
{
    void *want = NULL, *got = NULL;
    size_t want_len = 0, got_len = 0;
    struct hpo_error err;
    void *fresh;

    assert_int_equal(s->type->configure(s->options, s->space, &fresh, &err), 0);
    assert_int_equal(s->type->load(fresh, f->data, f->len), 0);
    assert_int_equal(s->type->save(s->state, &want, &want_len), 0);
    assert_int_equal(s->type->save(fresh, &got, &got_len), 0);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
    s->type->destroy(fresh);
    free(want);
    free(got);
}

/*
** Tells stored as records after a whole state (what SQLite's side file
** holds between two whole states) load back bit for bit: Adam, momentum
** with hd_beta and clipping, a maximized study, batches. Trials whose values
** are not the iterate of now (a second one asked before the first's tell,
** an enqueued one) and the first tell that decides the mode make no record.
*/
static void records_replay_bitwise(void **unused)
{
    static const char *const opts[] = { "{\"lr\": 0.1}",
        "{\"optimizer\": \"momentum\", \"lr\": 0.01, \"hd_beta\": 1e-6, "
        "\"max_grad_norm\": 5.0}",
        "{\"lr\": 0.1, \"batch_size\": 2}" };

    for (size_t o = 0; o < sizeof(opts) / sizeof(opts[0]); o++) {
        struct file f = { NULL, 0 };
        struct study s;
        int records = 0;

        study_open(&s, e6_space, opts[o], o == 1);
        assert_false(round_store(&s, &f)); /* decides the mode: whole */
        for (int r = 0; r < 6; r++) {
            records += round_store(&s, &f);
            same_after_load(&s, &f);
        }
        assert_int_equal(records, 6);
        /* Two trials out at once: the second's tell is stale, the first's changed u. */
        {
            struct hpo_trial *t1 = ask(&s), *t2 = ask(&s);
            double *g = calloc(E6_N, sizeof(double));
            assert_non_null(g);
            for (size_t i = 0; i < E6_N; i++) {
                g[i] = qgrad(t1->values[i], 2.0 + (double)(i % 5), 1.0);
            }
            tell(&s, t1, 1.0, g);
            assert_false(store(&s, &f)); /* t2 was asked since: only the last ask counts */
            tell(&s, t2, 1.0, g);
            assert_false(store(&s, &f));
            same_after_load(&s, &f);
            free(g);
        }
        /* An enqueued trial served by an ask keeps its own values: no record. */
        {
            struct hpo_trial *w = hpo_history_append(&s.h, HPO_STATE_WAITING);
            double *g = calloc(E6_N, sizeof(double));
            struct hpo_rng rng;
            struct hpo_error err;
            double *unit = malloc(E6_N * sizeof(double));
            assert_non_null(w);
            assert_non_null(g);
            assert_non_null(unit);
            for (size_t i = 0; i < E6_N; i++) {
                w->values[i] = 2.0;
                g[i] = 0.5;
            }
            hpo_rng_init(&rng, SEED, w->number);
            assert_int_equal(s.type->suggest(s.state, s.space, &s.h, &rng, unit, &err), 0);
            hpo_history_set_state(&s.h, w, HPO_STATE_RUNNING);
            tell(&s, w, 1.0, g);
            assert_false(store(&s, &f));
            assert_true(round_store(&s, &f));
            same_after_load(&s, &f);
            free(g);
            free(unit);
        }
        /* A record cut short, or with a trial told twice, does not load. */
        {
            void *fresh;
            struct hpo_error err;
            size_t rec = 32 + E6_N * sizeof(double);
            assert_int_equal(s.type->configure(s.options, s.space, &fresh, &err), 0);
            assert_int_equal(s.type->load(fresh, f.data, f.len - 8), -EINVAL);
            f.data = realloc(f.data, f.len + rec);
            assert_non_null(f.data);
            memcpy(f.data + f.len, f.data + f.len - rec, rec);
            assert_int_equal(s.type->load(fresh, f.data, f.len + rec), -EINVAL);
            assert_int_equal(s.type->load(fresh, f.data, f.len), 0);
            s.type->destroy(fresh);
        }
        free(f.data);
        study_close(&s);
    }
}

/* The state in `f` with its decode flag (bit 7 of the flags word) set or cleared. */
static void *load_with_decode(struct study *s, const struct file *f, bool hexp)
{
    unsigned char *copy = malloc(f->len);
    uint64_t flags;
    struct hpo_error err;
    void *st;

    assert_non_null(copy);
    memcpy(copy, f->data, f->len);
    memcpy(&flags, copy + 8 + 2 * 8, 8);
    flags = hexp ? flags | (1u << 7) : flags & ~(uint64_t)(1u << 7);
    memcpy(copy + 8 + 2 * 8, &flags, 8);
    assert_int_equal(s->type->configure(s->options, s->space, &st, &err), 0);
    assert_int_equal(s->type->load(st, copy, f->len), 0);
    free(copy);
    return st;
}

/* Saved whole, `a` and `b` are the same bytes but for their decode flags. */
static bool same_state(const struct study *s, const void *a, const void *b)
{
    unsigned char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    bool same;

    assert_int_equal(s->type->save(a, (void **)&x, &lx), 0);
    assert_int_equal(s->type->save(b, (void **)&y, &ly), 0);
    assert_true(lx > 8 + 3 * 8 && ly > 8 + 3 * 8);
    x[8 + 2 * 8] &= (unsigned char)~(1u << 7); /* little-endian flags word */
    y[8 + 2 * 8] &= (unsigned char)~(1u << 7);
    same = lx == ly && memcmp(x, y, lx) == 0;
    free(x);
    free(y);
    return same;
}

/*
** The state saved now, loaded into a fresh sampler, regenerates the unit
** point of the ask `t` was (its last), under decode `how`, and decoding
** that point gives back t's values bit for bit. unit and vals: n doubles.
*/
static void check_regenerate(struct study *s, const struct hpo_trial *t, double *unit,
        double *vals, size_t n, enum hpo_decode how)
{
    void *fresh, *blob = NULL;
    size_t len = 0;
    struct hpo_error err;

    assert_int_equal(s->type->save(s->state, &blob, &len), 0);
    assert_int_equal(s->type->configure(s->options, s->space, &fresh, &err), 0);
    assert_int_equal(s->type->load(fresh, blob, len), 0);
    assert_int_equal(s->type->regenerate(fresh, s->space, unit), 0);
    assert_int_equal(s->type->decode(fresh), how);
    assert_memory_equal(unit, t->unit, n * sizeof(double));
    hpo_param_decode_n(&s->space->params[0], unit, vals, n, how);
    assert_memory_equal(vals, t->values, n * sizeof(double));
    s->type->destroy(fresh);
    free(blob);
}

/*
** suggest_decoded (the daemon's ask: the sampler decodes a log vector under
** HEXP in the same pass as its unit coordinates, the rest as the service
** would): the same unit point and values as suggest and the service's
** decode, bit for bit (ask() checks each), on a vector split over threads,
** coordinates held at either bound, beside a linear vector, an int, a
** categorical and scalars, under either decode; the service decodes
** itself (0) when the point is perturbed (SPSA) or params have `when`.
*/
static void suggest_decoded_bitwise(void **unused)
{
    const char *mixed = "[{\"name\": \"lam\", \"type\": \"float\", \"low\": 1e-3, "
                        "\"high\": 1e3, \"log\": true, \"size\": 300000},"
                        " {\"name\": \"w\", \"type\": \"float\", \"low\": -2, \"high\": 5, "
                        "\"size\": 300},"
                        " {\"name\": \"k\", \"type\": \"int\", \"low\": 1, \"high\": 64,"
                        " \"log\": true},"
                        " {\"name\": \"c\", \"type\": \"categorical\", \"choices\": [1, 2, 3]},"
                        " {\"name\": \"x\", \"type\": \"float\", \"low\": 0.5, \"high\": 8, "
                        "\"log\": true}]";
    const char *cond =
            "[{\"name\": \"opt\", \"type\": \"categorical\", \"choices\": [\"adam\", \"sgd\"]},"
            " {\"name\": \"mom\", \"type\": \"float\", \"low\": 1e-3, \"high\": 1, \"log\": true,"
            "  \"when\": {\"opt\": [\"sgd\"]}}]";
    (void)unused;
    for (int old = 0; old < 2; old++) {
        struct file f = { NULL, 0 };
        struct study s;
        const struct hpo_param *lam, *w;
        size_t dim, at_low = 0, at_high = 0;
        double *g;
        struct hpo_trial *t;

        /* From the lower bound: coordinates with a positive gradient stay on it. */
        study_open(&s, mixed, "{\"lr\": 0.5, \"init\": {\"lam\": 0.001}}", false);
        dim = s.space->dim;
        lam = &s.space->params[0];
        g = malloc(dim * sizeof(double));
        assert_non_null(g);
        for (size_t j = 0; j < dim; j++) {
            size_t i = j - lam->offset;
            g[j] = j >= lam->offset && i < lam->width ?
                    (i % 3 == 0 ? 1.0 : -1.0 - (double)(i % 7)) : 0.5;
        }
        for (int r = 0; r < 4; r++) {
            t = ask(&s);
            assert_int_equal(last_decoded, 1);
            tell(&s, t, 1.0, g);
            if (r == 0 && old) {
                /* What a build before decode versions saved: LIBM from here on. */
                assert_false(store(&s, &f));
                s.type->destroy(s.state);
                s.state = load_with_decode(&s, &f, false);
            }
        }
        t = ask(&s);
        assert_int_equal(last_decoded, 1);
        assert_int_equal(s.type->decode(s.state), old ? HPO_DECODE_LIBM : HPO_DECODE_HEXP);
        for (size_t i = 0; i < lam->width; i++) {
            double v = t->values[lam->offset + i];
            at_low += v == 1e-3;
            at_high += v == 1e3;
            assert_true(v >= 1e-3 && v <= 1e3);
        }
        assert_true(at_low == (lam->width + 2) / 3 && at_high == 0);
        w = &s.space->params[1];
        assert_true(t->values[w->offset] < 5.0 && t->values[w->offset] > -2.0);
        free(g);
        free(f.data);
        study_close(&s);
    }
    {
        struct study s;
        struct hpo_trial *t;

        study_open(&s, lam_space, "{\"estimator\": \"spsa\", \"spsa_a\": 1}", false);
        t = ask(&s); /* u + c_k delta: the service decodes the perturbed point */
        assert_int_equal(last_decoded, 0);
        tell(&s, t, 1.0, NULL);
        t = ask(&s); /* u - c_k delta */
        assert_int_equal(last_decoded, 0);
        study_close(&s);
        study_open(&s, cond, "{}", false);
        (void)ask(&s);
        assert_int_equal(last_decoded, 0);
        study_close(&s);
    }
}

/*
** Decode versions (docs/DESIGN.md "Storage and side files"): a new study decodes
** with hpo_exp (HEXP); a state saved before them (no flag) keeps the C
** library's exp (LIBM): its asks hand out libm's values, its records replay
** bit for bit, and regenerate (a lost vector's rebuild) gives back the
** values its ask handed out. Replayed with the other decode, the same
** records give another state: the flag is what keeps old studies exact.
*/
static void decode_versions_bitwise(void **unused)
{
    (void)unused;
    for (int old = 0; old < 2; old++) {
        struct file f = { NULL, 0 };
        struct study s;
        enum hpo_decode how = old ? HPO_DECODE_LIBM : HPO_DECODE_HEXP;
        double *unit = malloc(E6_N * sizeof(double));
        double *vals = malloc(E6_N * sizeof(double));
        struct hpo_trial *t;
        void *other;

        char *opts = malloc(64 + 32 * E6_N);
        size_t at;

        assert_non_null(unit);
        assert_non_null(vals);
        assert_non_null(opts);
        /* E6 from a spread initial point: 10^4 distinct values, some where the exps differ. */
        at = (size_t)sprintf(opts, "{\"lr\": 0.1, \"init\": {\"lam\": [");
        for (size_t i = 0; i < E6_N; i++) {
            at += (size_t)sprintf(opts + at, "%s%.17g", i ? ", " : "",
                    0.01 * pow(10.0, 4.0 * (double)i / E6_N));
        }
        strcpy(opts + at, "]}}");
        study_open(&s, e6_space, opts, false);
        free(opts);
        assert_non_null(s.type->decode);
        assert_int_equal(s.type->decode(s.state), HPO_DECODE_HEXP);
        assert_false(round_store(&s, &f)); /* whole: decides the mode */
        if (old) {
            /* What an older build saved: the same state without the flag. */
            s.type->destroy(s.state);
            s.state = load_with_decode(&s, &f, false);
            assert_int_equal(s.type->decode(s.state), HPO_DECODE_LIBM);
            f.len = 0;
            {
                struct hpo_part parts[HPO_SAVE_PARTS];
                int n = s.type->save_parts(s.state, parts);
                uint64_t flags;
                assert_true(n > 0);
                file_put(&f, parts, n); /* whole, saved without the flag */
                memcpy(&flags, f.data + 8 + 2 * 8, 8);
                assert_int_equal(flags & (1u << 7), 0);
            }
        }
        for (int r = 0; r < 4; r++) {
            assert_true(round_store(&s, &f));
            same_after_load(&s, &f);
        }
        /* The records replayed with the other decode: another state. */
        other = load_with_decode(&s, &f, old);
        assert_false(same_state(&s, s.state, other));
        s.type->destroy(other);
        /* An ask hands out `how`'s values, and regenerate gives them back. */
        t = ask(&s);
        assert_int_equal(s.type->decode(s.state), how);
        assert_true(s.type->reproducible(s.state));
        check_regenerate(&s, t, unit, vals, E6_N, how);
        free(unit);
        free(vals);
        free(f.data);
        study_close(&s);
    }
}

/*
** The same for a linear vector (the logit transform: the sampler's own
** 1 / (1 + e^-u) is the decode's exp too): records replay bit for bit
** under either decode, and differently under the other; regenerate gives
** back what the ask handed out.
*/
static void logit_decode_versions(void **unused)
{
    const char *space = "[{\"name\": \"w\", \"type\": \"float\", \"low\": -2, "
                        "\"high\": 5, \"size\": 3000}]";
    const size_t n = 3000;

    (void)unused;
    for (int old = 0; old < 2; old++) {
        enum hpo_decode how = old ? HPO_DECODE_LIBM : HPO_DECODE_HEXP;
        struct file f = { NULL, 0 };
        struct study s;
        double *g = malloc(n * sizeof(double));
        double *unit = malloc(n * sizeof(double));
        double *vals = malloc(n * sizeof(double));
        struct hpo_trial *t = NULL;
        void *other;

        assert_non_null(g);
        assert_non_null(unit);
        assert_non_null(vals);
        study_open(&s, space, "{\"optimizer\": \"sgd\", \"lr\": 0.5}", false);
        for (int r = 0; r < 6; r++) {
            bool rec;
            t = ask(&s);
            for (size_t i = 0; i < n; i++) {
                /* d/dw of (w - c_i)^2 / 2, c_i spread over the range */
                g[i] = t->values[i] - (-1.5 + (double)(i % 997) * 0.006);
            }
            tell(&s, t, 1.0, g);
            rec = store(&s, &f);
            assert_true(rec == (r > 0));
            if (r == 0 && old) {
                /* An older build's state (trial 0 was the midpoint: the same in both). */
                struct hpo_part parts[HPO_SAVE_PARTS];
                int k;
                s.type->destroy(s.state);
                s.state = load_with_decode(&s, &f, false);
                f.len = 0;
                k = s.type->save_parts(s.state, parts);
                assert_true(k > 0);
                file_put(&f, parts, k);
            }
            same_after_load(&s, &f);
        }
        assert_int_equal(s.type->decode(s.state), how);
        other = load_with_decode(&s, &f, old);
        assert_false(same_state(&s, s.state, other));
        s.type->destroy(other);
        t = ask(&s);
        check_regenerate(&s, t, unit, vals, n, how);
        free(g);
        free(unit);
        free(vals);
        free(f.data);
        study_close(&s);
    }
}

/*
** defer_next + settle (the service's record tells): the step left running
** during the "commit" gives the same state bit for bit as a step run inside
** tell(); the record and the state's header are ready before settle; a
** storage writing the whole state settles first; suggest settles by itself.
** start() (the storage copied the record out) at any moment, or never,
** changes no bit: the loops run alone chunk by chunk until then, split after.
*/
static void deferred_step_run(const char *space, size_t n)
{
    struct study a, b;

    study_open(&a, space, "{\"lr\": 0.1}", false);
    study_open(&b, space, "{\"lr\": 0.1}", false);
    assert_non_null(b.type->defer_next);
    assert_non_null(b.type->settle);
    assert_non_null(b.type->start);
    for (int r = 0; r < 6; r++) {
        struct hpo_trial *ta = ask(&a), *tb = ask(&b);
        struct hpo_part pa[HPO_SAVE_PARTS], pb[HPO_SAVE_PARTS], ra[2], rb[2];
        double *g = malloc(n * sizeof(double));
        void *wa = NULL, *wb = NULL;
        size_t la = 0, lb = 0;
        int na, nb;

        assert_non_null(g);
        assert_memory_equal(ta->values, tb->values, n * sizeof(double));
        for (size_t i = 0; i < n; i++) {
            g[i] = qgrad(ta->values[i], 2.0 + (double)(i % 5), 1.0);
        }
        tell(&a, ta, 1.0, g);
        b.type->defer_next(b.state);
        tell(&b, tb, 1.0, g);
        if (r == 1 || r == 5) {
            b.type->start(b.state); /* at once: split from (nearly) the first chunk */
        }
        na = a.type->save_parts(a.state, pa);
        nb = b.type->save_parts(b.state, pb);
        assert_int_equal(na, nb);
        assert_memory_equal(pa[0].data, pb[0].data, pa[0].len); /* the header: k, ... */
        assert_int_equal(a.type->save_record(a.state, ra), b.type->save_record(b.state, rb));
        if (r > 0) {
            assert_memory_equal(ra[0].data, rb[0].data, ra[0].len);
            assert_ptr_equal(rb[1].data, g);
        }
        if (r == 2) {
            b.type->start(b.state); /* somewhere in the loops, or after them */
        }
        if (r == 4) {
            /* No settle: the next suggest waits for the step itself. */
            ta = ask(&a);
            tb = ask(&b);
            assert_memory_equal(ta->values, tb->values, n * sizeof(double));
        } else {
            b.type->settle(b.state);
            b.type->settle(b.state); /* a second settle is a no-op */
        }
        for (int i = 0; i < na; i++) {
            assert_int_equal(pa[i].len, pb[i].len);
            if (pa[i].len > 0) {
                assert_memory_equal(pa[i].data, pb[i].data, pa[i].len);
            }
        }
        assert_int_equal(a.type->save(a.state, &wa, &la), 0);
        assert_int_equal(b.type->save(b.state, &wb, &lb), 0);
        assert_int_equal(la, lb);
        assert_memory_equal(wa, wb, la);
        free(wa);
        free(wb);
        free(g);
    }
    study_close(&a);
    study_close(&b);
}

static void deferred_step_bitwise(void **unused)
{
    (void)unused;
    deferred_step_run("[{\"name\": \"lam\", \"type\": \"float\", \"low\": 1e-3, "
                      "\"high\": 1e3, \"log\": true, \"size\": 200000}]", 200000);
    /* Two vectors: the second's chunks and split start past its offset. */
    deferred_step_run("[{\"name\": \"a\", \"type\": \"float\", \"low\": 0.5, \"high\": 5, "
                      "\"size\": 70001}, {\"name\": \"lam\", \"type\": \"float\", "
                      "\"low\": 1e-3, \"high\": 1e3, \"log\": true, \"size\": 150000}]", 220001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(e1_sgd),
        cmocka_unit_test(deferred_step_bitwise),
        cmocka_unit_test(e1_restart_bitwise),
        cmocka_unit_test(restart_adam_batch_bitwise),
        cmocka_unit_test(needs_save_after_first_ask),
        cmocka_unit_test(e2_adam),
        cmocka_unit_test(extreme_gradients_reload),
        cmocka_unit_test(e3_momentum),
        cmocka_unit_test(nesterov_differs),
        cmocka_unit_test(e4_hypergradient),
        cmocka_unit_test(e5_spsa),
        cmocka_unit_test(spsa_void_and_restart),
        cmocka_unit_test(spsa_vector_pairs),
        cmocka_unit_test(e6_adam_one_step),
        cmocka_unit_test(e6_sgd_100),
        cmocka_unit_test(e6_adam_cosine),
        cmocka_unit_test(e7_logit),
        cmocka_unit_test(logit_bounds),
        cmocka_unit_test(e7_staleness),
        cmocka_unit_test(staleness_ignore_and_drop),
        cmocka_unit_test(bounded_state),
        cmocka_unit_test(batch_interleaved),
        cmocka_unit_test(grad_norm_clip),
        cmocka_unit_test(maximize_ascends),
        cmocka_unit_test(retried_tell_counts_once),
        cmocka_unit_test(failed_and_partial),
        cmocka_unit_test(frozen_and_initial_point),
        cmocka_unit_test(init_option_broadcast),
        cmocka_unit_test(auto_estimator),
        cmocka_unit_test(finite_differences),
        cmocka_unit_test(option_validation),
        cmocka_unit_test(describe_defaults),
        cmocka_unit_test(load_rejects_garbage),
        cmocka_unit_test(records_replay_bitwise),
        cmocka_unit_test(decode_versions_bitwise),
        cmocka_unit_test(suggest_decoded_bitwise),
        cmocka_unit_test(logit_decode_versions),
    };

    return cmocka_run_group_tests_name("samplers-gradient", tests, NULL, NULL);
}
