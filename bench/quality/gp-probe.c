/*
** gp-probe.c: one gp ask on given data, with the fitted model printed, for
** the reference comparison of gp_reference.py (docs/ALGORITHMS.md §4.9).
**
** Reads one JSON object from stdin:
**   {"units": [[u_1..u_d], ...], "values": [loss, ...], "seed": 0,
**    "options": {sampler options}}
** (d float params on [0, 1], so unit = model coordinates), runs one suggest
** of the gp sampler and prints one JSON object: the fitted lengthscales,
** noise, constant mean and kernel, the model's targets y (standardized,
** maximized), f0, the suggestion x and its acquisition value.
**
** Build (release objects of the tree):
**   cc -O2 -I. -o /tmp/gp-probe bench/quality/gp-probe.c build-rel/samplers/libhpo-samplers.a \
**      build-rel/core/libhpo-core.a $(pkg-config --cflags --libs jansson) -llapacke -llapack \
**      -lopenblas -lnlopt -lm -lpthread
*/
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/history.h"
#include "core/rng.h"
#include "core/space.h"
#include "samplers/gp.h"
#include "samplers/sampler.h"

static json_t *vec(const double *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; i < n; i++) {
        json_array_append_new(a, json_real(v[i]));
    }
    return a;
}

int main(void)
{
    json_error_t jerr;
    json_t *in = json_loadf(stdin, 0, &jerr), *units, *values, *opts, *sp, *out;
    size_t d, n;
    struct hpo_space *space;
    struct hpo_error err;
    struct hpo_history h;
    struct hpo_rng rng;
    struct hpo_gp_stats st;
    const struct hpo_gp_model *m;
    void *state;
    double *unit, *ell;
    char name[32];

    if (in == NULL) {
        fprintf(stderr, "bad input: %s\n", jerr.text);
        return 1;
    }
    units = json_object_get(in, "units");
    values = json_object_get(in, "values");
    opts = json_object_get(in, "options");
    n = json_array_size(units);
    d = json_array_size(json_array_get(units, 0));
    sp = json_array();
    for (size_t k = 0; k < d; k++) {
        snprintf(name, sizeof(name), "x%zu", k);
        json_array_append_new(sp, json_pack("{s:s,s:s,s:f,s:f}", "name", name, "type", "float",
                "low", 0.0, "high", 1.0));
    }
    if (hpo_space_parse(sp, &space, &err) < 0 ||
            hpo_sampler_gp.configure(opts ? opts : json_object(), space, &state, &err) < 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    hpo_history_init(&h, space, "probe", false);
    for (size_t i = 0; i < n; i++) {
        struct hpo_trial *t = hpo_history_append(&h, HPO_STATE_COMPLETE);
        for (size_t k = 0; k < d; k++) {
            t->unit[k] = json_real_value(json_array_get(json_array_get(units, i), k));
        }
        hpo_space_decode(space, t->unit, t->values);
        t->value = json_real_value(json_array_get(values, i));
    }
    unit = calloc(d, sizeof(double));
    ell = calloc(d, sizeof(double));
    hpo_rng_init(&rng, (uint64_t)json_integer_value(json_object_get(in, "seed")), n);
    hpo_sampler_gp.suggest(state, space, &h, &rng, unit, &err);
    hpo_gp_get_stats(state, &st);
    m = hpo_gp_get_model(state);
    out = json_object();
    json_object_set_new(out, "x", vec(unit, d));
    json_object_set_new(out, "acq", json_real(hpo_gp_last_acq(state)));
    json_object_set_new(out, "fit_evals", json_integer(st.fit_evals));
    json_object_set_new(out, "acq_evals", json_integer(st.acq_evals));
    json_object_set_new(out, "fallbacks", json_integer((json_int_t)st.fallbacks));
    if (m != NULL) {
        double f0 = -HUGE_VAL;
        for (size_t k = 0; k < d; k++) {
            ell[k] = 1.0 / sqrt(m->theta[k]);
        }
        for (size_t i = 0; i < m->n; i++) {
            f0 = m->y[i] > f0 ? m->y[i] : f0;
        }
        json_object_set_new(out, "lengthscale", vec(ell, d));
        json_object_set_new(out, "noise", json_real(m->noise));
        json_object_set_new(out, "scale", json_real(m->scale));
#ifndef PROBE_OLD
        json_object_set_new(out, "mean", json_real(m->mean));
        json_object_set_new(out, "kernel", json_string(m->kernel == HPO_GP_RBF ? "rbf"
                                                                               : "matern52"));
#else
        json_object_set_new(out, "mean", json_real(0.0));
        json_object_set_new(out, "kernel", json_string("matern52"));
#endif
        json_object_set_new(out, "y", vec(m->y, m->n));
        json_object_set_new(out, "f0", json_real(f0));
    }
    json_dumpf(out, stdout, JSON_COMPACT);
    putchar('\n');
    hpo_sampler_gp.destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
    json_decref(sp);
    json_decref(out);
    json_decref(in);
    free(unit);
    free(ell);
    return 0;
}
