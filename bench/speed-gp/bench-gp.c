/*
** bench-gp.c: latency of one gp ask at n finished trials, d = 10, calling
** the sampler directly (no HTTP). For each n: load n complete trials
** (random points, Styblinski-Tang values), time the first ask (cold: fit +
** full Cholesky), then `rounds` ask+tell rounds (the refit policy decides
** between a refit and a cached-factor extension), and print the median.
**
** Usage: bench-gp [n ...]   (default 200 1000 10000)
** Environment: BENCH_OPTS='{"n_candidates": 2048}' (sampler options, JSON),
** BENCH_VERBOSE=1 (model and acquisition time of every ask), BENCH_SERIAL=1 (the
** ask's tasks on the calling thread only: hpo_gp_set_parallel(false); the same
** suggestions).
**
** Build (release objects of the tree):
**   cc -O2 -o /tmp/bench-gp bench/speed-gp/bench-gp.c build-rel/samplers/libhpo-samplers.a \
**      build-rel/core/libhpo-core.a $(pkg-config --cflags --libs jansson) -llapacke -llapack \
**      -lopenblas -lnlopt -lm -lpthread
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/history.h"
#include "../../core/rng.h"
#include "../../core/space.h"
#include "../../samplers/gp.h"
#include "../../samplers/sampler.h"

#define D 10

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
** CPU time of the process (every thread: the ask spreads its tasks over
** core/parallel.h's workers): robust to other processes sharing the cores.
*/
static double cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
** CPU time of the calling thread: it runs the ask's serial parts and claims
** tasks like the workers, so on idle cores the ask's wall time is close to
** it (the critical path); on a loaded machine it is the figure to compare.
*/
static double thread_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double objective(const double *v)
{
    double f = 0.0;

    for (int k = 0; k < D; k++) {
        f += 0.5 * (pow(v[k], 4) - 16 * v[k] * v[k] + 5 * v[k]);
    }
    return f;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static void run(size_t n, int rounds)
{
    char js[2048];
    size_t len = 0;
    json_error_t jerr;
    json_t *sp, *opts = getenv("BENCH_OPTS") ? json_loads(getenv("BENCH_OPTS"), 0, NULL) : json_object();
    struct hpo_space *space;
    struct hpo_error err;
    struct hpo_history h;
    struct hpo_rng rng;
    void *state;
    double unit[D], t0, c0, tc0, cold = 0, cold_cpu = 0, times[64], cpus[64], tcpus[64];
    struct hpo_gp_stats st;

    len += (size_t)snprintf(js + len, sizeof(js) - len, "[");
    for (int k = 0; k < D; k++) {
        len += (size_t)snprintf(js + len, sizeof(js) - len,
                "%s{\"name\": \"x%d\", \"type\": \"float\", \"low\": -5, \"high\": 5}",
                k ? "," : "", k);
    }
    snprintf(js + len, sizeof(js) - len, "]");
    sp = json_loads(js, 0, &jerr);
    if (sp == NULL || hpo_space_parse(sp, &space, &err) < 0 ||
            hpo_sampler_gp.configure(opts, space, &state, &err) < 0) {
        fprintf(stderr, "setup failed\n");
        exit(1);
    }
    hpo_history_init(&h, space, "bench", false);
    hpo_rng_seed(&rng, 1);
    for (size_t i = 0; i < n; i++) {
        struct hpo_trial *t = hpo_history_append(&h, HPO_STATE_COMPLETE);
        for (int k = 0; k < D; k++) {
            t->unit[k] = hpo_rng_uniform(&rng);
        }
        hpo_space_decode(space, t->unit, t->values);
        t->value = objective(t->values);
    }
    for (int r = -1; r < rounds; r++) {
        struct hpo_trial *t;
        hpo_rng_init(&rng, 7, h.n_trials);
        t0 = now_ms();
        c0 = cpu_ms();
        tc0 = thread_cpu_ms();
        hpo_sampler_gp.suggest(state, space, &h, &rng, unit, &err);
        if (r < 0) {
            cold = now_ms() - t0;
            cold_cpu = cpu_ms() - c0;
        } else {
            times[r] = now_ms() - t0;
            cpus[r] = cpu_ms() - c0;
            tcpus[r] = thread_cpu_ms() - tc0;
        }
        hpo_gp_get_stats(state, &st);
        if (getenv("BENCH_VERBOSE")) {
            printf("  ask %d: %.1f ms = model %.1f ms (%d fit evals) + acq %.1f ms (%d acq evals)\n",
                    r, now_ms() - t0, st.fit_ms, st.fit_evals, st.acq_ms, st.acq_evals);
        }
        t = hpo_history_append(&h, HPO_STATE_RUNNING);
        hpo_space_decode(space, unit, t->values);
        memcpy(t->unit, unit, sizeof(unit));
        t->value = objective(t->values);
        hpo_history_set_state(&h, t, HPO_STATE_COMPLETE);
    }
    qsort(times, (size_t)rounds, sizeof(double), cmp);
    qsort(cpus, (size_t)rounds, sizeof(double), cmp);
    qsort(tcpus, (size_t)rounds, sizeof(double), cmp);
    hpo_gp_get_stats(state, &st);
    printf("n=%zu d=%d: first ask (cold fit) %.1f ms wall, %.1f ms CPU; next %d asks median "
           "%.1f ms wall (min %.1f, max %.1f), %.1f ms CPU (asking thread %.1f ms); fits %llu, "
           "refactors %llu, extends %llu, fallbacks %llu, model rows %zu\n",
            n, D, cold, cold_cpu, rounds, times[rounds / 2], times[0], times[rounds - 1],
            cpus[rounds / 2], tcpus[rounds / 2],
            (unsigned long long)st.fits, (unsigned long long)st.refactors,
            (unsigned long long)st.extends, (unsigned long long)st.fallbacks, st.model_rows);
    fflush(stdout);
    hpo_sampler_gp.destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
    json_decref(sp);
    json_decref(opts);
}

int main(int argc, char **argv)
{
    size_t ns[8] = { 200, 1000, 10000 };
    int count = 3;

    if (getenv("BENCH_SERIAL") != NULL) {
        hpo_gp_set_parallel(false);
    }
    if (argc > 1) {
        count = 0;
        for (int i = 1; i < argc && count < 8; i++) {
            ns[count++] = strtoul(argv[i], NULL, 10);
        }
    }
    for (int i = 0; i < count; i++) {
        run(ns[i], 9);
    }
    return 0;
}
