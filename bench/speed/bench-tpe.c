/*
** bench-tpe.c: latency of one tpe suggest at n finished trials in d float
** dims, calling the sampler directly (no HTTP, no storage), to separate the
** sampler's cost from the service's. For each n x d: load n complete trials
** (random points, value = squared distance to 0.3), time (thread CPU time) the first suggest
** (cold cache: sorts every coordinate), then `rounds` rounds of suggest +
** complete (the steady state: one new trial merged per suggest; observe is
** called for each new trial, as the service does) and print
** the median and 90th percentile, and a digest of every suggestion's bits
** (equal digests: the same suggestions).
**
** Build (after `ninja -C build-tpe`):
**   cc -O2 -I core -I samplers bench/speed/bench-tpe.c build-tpe/samplers/libhpo-samplers.a \
**      build-tpe/core/libhpo-core.a $(pkg-config --libs jansson lapacke lapack openblas nlopt) \
**      -lm -lpthread -o /tmp/bench-tpe
** Usage: /tmp/bench-tpe [rounds [options-json [NxD]]]
** (default sizes 1000x5 1000x20 10000x5 10000x20)
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/history.h"
#include "../../core/rng.h"
#include "../../core/space.h"
#include "../../samplers/sampler.h"

/* CPU time of this thread: robust to a loaded machine (wall time is printed too). */
static double cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : (x > y ? 1 : 0);
}

static double value_of(const double *x, size_t d)
{
    double v = 0.0;

    for (size_t i = 0; i < d; i++) {
        v += (x[i] - 0.3) * (x[i] - 0.3);
    }
    return v;
}

static void run(size_t n, size_t d, int rounds, const char *opts)
{
    json_t *params = json_array(), *o = json_loads(opts, 0, NULL);
    struct hpo_space *space = NULL;
    struct hpo_history h;
    struct hpo_error err;
    struct hpo_rng gen;
    void *state = NULL;
    double *times = calloc((size_t)rounds, sizeof(double));
    double *wall = calloc((size_t)rounds, sizeof(double));
    double unit[64], values[64], cold = 0.0, t0, w0;
    uint64_t digest = 1469598103934665603ULL; /* FNV-1a over every suggestion's bits */

    for (size_t i = 0; i < d; i++) {
        json_array_append_new(params, json_pack("{s:s,s:s,s:f,s:f}", "name", "", "type", "float",
                "low", 0.0, "high", 1.0));
        json_object_set_new(json_array_get(params, i), "name",
                json_sprintf("x%zu", i));
    }
    if (o == NULL || hpo_space_parse(params, &space, &err) < 0 ||
            hpo_sampler_tpe.configure(o, space, &state, &err) < 0) {
        fprintf(stderr, "setup failed: %s\n", err.message);
        exit(1);
    }
    hpo_history_init(&h, space, "bench", false);
    hpo_rng_seed(&gen, 1);
    for (size_t t = 0; t < n; t++) {
        struct hpo_trial *tr = hpo_history_append(&h, HPO_STATE_COMPLETE);
        for (size_t j = 0; j < d; j++) {
            unit[j] = hpo_rng_uniform(&gen);
        }
        hpo_space_decode(space, unit, values);
        memcpy(tr->unit, unit, d * sizeof(double));
        memcpy(tr->values, values, d * sizeof(double));
        tr->value = value_of(values, d);
        hpo_sampler_tpe.observe(state, &h, t); /* as the service does at load */
    }
    for (int r = -1; r < rounds; r++) {
        struct hpo_rng rng;
        struct hpo_trial *tr;
        hpo_rng_init(&rng, 7, h.n_trials);
        t0 = cpu_ms();
        w0 = now_ms();
        if (hpo_sampler_tpe.suggest(state, space, &h, &rng, unit, &err) < 0) {
            fprintf(stderr, "suggest failed: %s\n", err.message);
            exit(1);
        }
        if (r < 0) {
            cold = cpu_ms() - t0;
        } else {
            times[r] = cpu_ms() - t0;
            wall[r] = now_ms() - w0;
        }
        for (size_t j = 0; j < d * sizeof(double); j++) {
            digest = (digest ^ ((const unsigned char *)unit)[j]) * 1099511628211ULL;
        }
        hpo_space_decode(space, unit, values);
        tr = hpo_history_append(&h, HPO_STATE_COMPLETE);
        memcpy(tr->unit, unit, d * sizeof(double));
        memcpy(tr->values, values, d * sizeof(double));
        tr->value = value_of(values, d);
        hpo_sampler_tpe.observe(state, &h, (size_t)tr->number);
    }
    qsort(times, (size_t)rounds, sizeof(double), cmp_double);
    qsort(wall, (size_t)rounds, sizeof(double), cmp_double);
    printf("n=%-6zu d=%-3zu CPU: cold %7.2f ms, steady median %6.2f ms, p90 %6.2f ms;"
            " wall median %6.2f ms; suggestions %016llx\n", n, d, cold, times[rounds / 2],
            times[(rounds * 9) / 10], wall[rounds / 2], (unsigned long long)digest);
    hpo_sampler_tpe.destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
    json_decref(params);
    json_decref(o);
    free(times);
    free(wall);
}

int main(int argc, char **argv)
{
    static const size_t sizes[][2] = { { 1000, 5 }, { 1000, 20 }, { 10000, 5 }, { 10000, 20 } };
    int rounds = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 50;
    const char *opts = argc > 2 ? argv[2] : "{}";

    if (rounds < 1) {
        rounds = 1;
    }
    if (argc > 3) {
        /* One size, "NxD". */
        char *end;
        size_t n = (size_t)strtoul(argv[3], &end, 10);
        size_t d = *end == 'x' ? (size_t)strtoul(end + 1, NULL, 10) : 0;
        if (n == 0 || d == 0 || d > 64) {
            fprintf(stderr, "size must be NxD with D <= 64\n");
            return 2;
        }
        run(n, d, rounds, opts);
        return 0;
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        run(sizes[i][0], sizes[i][1], rounds, opts);
    }
    return 0;
}
