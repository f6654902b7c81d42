/*
** nsga2.c: NSGA-II (docs/ALGORITHMS.md §9.5) over core/mo-nsga2.c, with
** Optuna's NSGAIISampler defaults and constrained domination when the
** study declares constraints.
**
** Each child is a pure function of (options, seed, trial number) and the
** complete trials told before its generation began, so asynchronous
** workers, any finishing order and a restart give the same points. The one
** fact the trials do not carry is when each was told (`told_at`, the number
** of trials asked at that moment): the state is that per-trial number,
** written with each tell and read back at start. Trials recorded by
** POST .../trials have none (0): they join the selection of their own
** generation.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/history.h"
#include "../core/mo.h"
#include "../core/options.h"
#include "../core/rng.h"
#include "../core/space.h"
#include "sampler.h"

struct nsga2 {
    struct hpo_nsga2_options opt;
    uint64_t *told_at; /* by trial number; 0 = unknown */
    size_t n_told, cap_told;
};

static int nsga2_configure(const json_t *options, const struct hpo_space *space, void **state,
        struct hpo_error *err)
{
    static const char *const allowed[] = { "population_size", "crossover_prob", "swapping_prob",
        "mutation_prob", NULL };
    struct hpo_nsga2_options opt;
    const json_t *mp;
    long long p;
    struct nsga2 *s;
    int r;

    hpo_nsga2_defaults(&opt);
    r = hpo_options_check_keys(options, allowed, "sampler", err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "population_size", "sampler", (long long)opt.population_size, 2,
            100000, &p, err);
    if (r < 0) {
        return r;
    }
    opt.population_size = (size_t)p;
    r = hpo_option_double(options, "crossover_prob", "sampler", opt.crossover_prob, 0, 1,
            &opt.crossover_prob, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_double(options, "swapping_prob", "sampler", opt.swapping_prob, 0, 1,
            &opt.swapping_prob, err);
    if (r < 0) {
        return r;
    }
    mp = json_object_get(options, "mutation_prob");
    if (mp != NULL && !json_is_null(mp)) {
        r = hpo_option_double(options, "mutation_prob", "sampler", 0, 0, 1, &opt.mutation_prob,
                err);
        if (r < 0) {
            return r;
        }
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    s->opt = opt;
    *state = s;
    return 0;
}

static json_t *nsga2_describe(const void *state)
{
    const struct nsga2 *s = state;

    return json_pack("{s:I,s:f,s:f,s:o}", "population_size", (json_int_t)s->opt.population_size,
            "crossover_prob", s->opt.crossover_prob, "swapping_prob", s->opt.swapping_prob,
            "mutation_prob", s->opt.mutation_prob < 0 ? json_null()
                                                      : json_real(s->opt.mutation_prob));
}

/* Objective k of a trial as told (results, else the one value). */
static double objective(const struct hpo_history *h, const struct hpo_trial *t, size_t k)
{
    if (t->results != NULL) {
        return t->results[k];
    }
    return k == 0 ? t->value : NAN;
}

static int nsga2_suggest(void *state, const struct hpo_space *space,
        const struct hpo_history *h, struct hpo_rng *rng, double *unit_point,
        struct hpo_error *err)
{
    struct nsga2 *s = state;
    struct hpo_nsga2_options opt = s->opt;
    unsigned m = (unsigned)h->n_obj;
    unsigned char maxi[HPO_MO_MAX_OBJECTIVES];
    double v[HPO_MO_MAX_OBJECTIVES], *loss, *cv = NULL;
    size_t n = h->count[HPO_STATE_COMPLETE], k = 0;
    struct hpo_mo_trial *trials;
    uint64_t seed = hpo_rng_next(rng);
    int r;

    opt.constrained = h->n_cons > 0;
    for (unsigned i = 0; i < m; i++) {
        maxi[i] = h->obj_maximize[i];
    }
    loss = malloc((n ? n : 1) * m * sizeof(double));
    trials = malloc((n ? n : 1) * sizeof(*trials));
    if (h->n_cons > 0) {
        cv = malloc(h->n_cons * sizeof(double));
    }
    if (loss == NULL || trials == NULL || (h->n_cons > 0 && cv == NULL)) {
        r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < h->n_trials && k < n; i++) {
        const struct hpo_trial *t = h->trials[i];
        if (t->state != HPO_STATE_COMPLETE) {
            continue;
        }
        for (unsigned j = 0; j < m; j++) {
            v[j] = objective(h, t, j);
        }
        hpo_mo_loss(v, maxi, m, loss + k * m);
        for (size_t j = 0; j < h->n_cons; j++) {
            cv[j] = hpo_mo_constraint_value(t->results ? t->results[m + j] : NAN, h->cons_lo[j],
                    h->cons_hi[j]);
        }
        trials[k] = (struct hpo_mo_trial){
            .number = (uint64_t)t->number,
            .told_at = (size_t)t->number < s->n_told ? s->told_at[t->number] : 0,
            .loss = loss + k * m,
            .violation = h->n_cons > 0 ? hpo_mo_violation(cv, h->n_cons) : 0.0,
            .u = t->unit,
        };
        k++;
    }
    /* The trial's own number: an enqueued (waiting) trial keeps its generation. */
    r = hpo_nsga2_child(&opt, trials, k, m, (unsigned)space->dim, seed,
            (uint64_t)hpo_sampler_asked_number(h), unit_point, NULL);
    if (r < 0) {
        hpo_error_set(err, r, HPO_INTERNAL, NULL, "nsga2: cannot build a child (%d)", r);
    }
out:
    free(loss);
    free(trials);
    free(cv);
    return r;
}

static void nsga2_tell(void *state, const struct hpo_space *space,
        const struct hpo_history *h, size_t trial, const double *gradient)
{
    struct nsga2 *s = state;

    if (trial >= s->cap_told) {
        size_t cap = s->cap_told ? s->cap_told : 64;
        uint64_t *p;
        while (cap <= trial) {
            cap *= 2;
        }
        p = realloc(s->told_at, cap * sizeof(uint64_t));
        if (p == NULL) {
            return; /* told_at stays unknown: the trial joins its own generation's selection */
        }
        memset(p + s->cap_told, 0, (cap - s->cap_told) * sizeof(uint64_t));
        s->told_at = p;
        s->cap_told = cap;
    }
    s->told_at[trial] = (uint64_t)h->n_trials;
    if (trial >= s->n_told) {
        s->n_told = trial + 1;
    }
}

/* The state: n_told little-endian uint64 told_at values. */
static int nsga2_save(const void *state, void **blob, size_t *len)
{
    const struct nsga2 *s = state;
    size_t bytes = s->n_told * 8;
    unsigned char *out = realloc(*blob, bytes ? bytes : 1);

    if (out == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->n_told; i++) {
        for (int b = 0; b < 8; b++) {
            out[i * 8 + (size_t)b] = (unsigned char)(s->told_at[i] >> (8 * b));
        }
    }
    *blob = out;
    *len = bytes;
    return 0;
}

static int nsga2_load(void *state, const void *blob, size_t len)
{
    struct nsga2 *s = state;
    const unsigned char *in = blob;
    size_t n = len / 8;
    uint64_t *p;

    if (len % 8 != 0) {
        return -EINVAL;
    }
    p = malloc((n ? n : 1) * sizeof(uint64_t));
    if (p == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t x = 0;
        for (int b = 0; b < 8; b++) {
            x |= (uint64_t)in[i * 8 + (size_t)b] << (8 * b);
        }
        p[i] = x;
    }
    free(s->told_at);
    s->told_at = p;
    s->n_told = n;
    s->cap_told = n ? n : 1;
    return 0;
}

static void nsga2_destroy(void *state)
{
    struct nsga2 *s = state;

    if (s != NULL) {
        free(s->told_at);
        free(s);
    }
}

const struct hpo_sampler_type hpo_sampler_nsga2 = {
    .name = "nsga2",
    .supports_vectors = false,
    .options_schema = "{\"population_size\": {\"type\": \"integer\", \"default\": 50}, "
                      "\"crossover_prob\": {\"type\": \"number\", \"default\": 0.9}, "
                      "\"swapping_prob\": {\"type\": \"number\", \"default\": 0.5}, "
                      "\"mutation_prob\": {\"type\": \"number\", \"default\": null}}",
    .configure = nsga2_configure,
    .describe = nsga2_describe,
    .suggest = nsga2_suggest,
    .tell = nsga2_tell,
    .save = nsga2_save,
    .load = nsga2_load,
    .destroy = nsga2_destroy,
};
