/*
** bench-sampler.c: the gradient sampler's own cost per round at N
** coordinates, calling it directly (no HTTP, no storage): suggest, decode
** (as the service does), tell with a gradient (one optimizer step), save()
** into one buffer (the daemon writes the state from save_parts() instead).
** Workload: docs/ALGORITHMS.md §7.7 E6 (a_i = 2 + i mod 5, b = 1, λ log in [1e-3, 1e3]).
**
** Built and run by bench/gradient/run.py:
**   cc -O2 -D_GNU_SOURCE bench-sampler.c ../../samplers/gradient{,-step}.c \
**      ../../core/{error,rng,options,space,history,parallel}.c -ljansson -lm -lpthread
** Usage: bench-sampler N rounds optimizer   (e.g. 1000000 30 adam)
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/history.h"
#include "../../core/rng.h"
#include "../../core/space.h"
#include "../../samplers/sampler.h"

static double now_ms(void)
{
    struct timespec ts;

    /* CPU time of this thread: the machine is shared, wall time is noisy. */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof(double), cmp);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    int rounds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 30;
    const char *opt = argc > 3 ? argv[3] : "adam";
    const struct hpo_sampler_type *type = &hpo_sampler_gradient;
    char buf[256];
    json_t *sp, *o;
    struct hpo_space *space;
    struct hpo_history h;
    struct hpo_error err;
    void *state;
    double *unit, *grad;
    double *t_sug = calloc((size_t)rounds, sizeof(double));
    double *t_dec = calloc((size_t)rounds, sizeof(double));
    double *t_libm = calloc((size_t)rounds, sizeof(double));
    double *t_warm = calloc((size_t)rounds, sizeof(double));
    double *t_fused = calloc((size_t)rounds, sizeof(double));
    long differ = 0;
    double *t_tell = calloc((size_t)rounds, sizeof(double));
    double *t_save = calloc((size_t)rounds, sizeof(double));
    size_t blob_len = 0;
    double worst = 0.0;

    snprintf(buf, sizeof(buf),
            "[{\"name\": \"lam\", \"type\": \"float\", \"low\": 1e-3, \"high\": 1e3, "
            "\"log\": true, \"size\": %ld}]",
            n);
    sp = json_loads(buf, 0, NULL);
    snprintf(buf, sizeof(buf), "{\"optimizer\": \"%s\", \"lr\": %s}", opt,
            strcmp(opt, "sgd") == 0 ? "1.0" : (strcmp(opt, "adam") == 0 ? "0.1" : "0.02"));
    o = json_loads(buf, 0, NULL);
    if (sp == NULL || o == NULL || hpo_space_parse(sp, &space, &err) < 0 ||
            type->configure(o, space, &state, &err) < 0) {
        fprintf(stderr, "setup failed: %s\n", err.message);
        return 1;
    }
    hpo_history_init(&h, space, "bench", false);
    unit = malloc((size_t)n * sizeof(double));
    grad = malloc((size_t)n * sizeof(double));
    for (int r = 0; r < rounds; r++) {
        struct hpo_rng rng;
        struct hpo_trial *t;
        void *blob = NULL;
        double t0, t1, t2, t3, t4;

        /*
        ** suggest and decode in one call (the daemon's ask, suggest_decoded)
        ** into warm buffers first: the same point, which the split calls
        ** below then compute again (checked bit for bit).
        */
        hpo_rng_init(&rng, 1, h.n_trials);
        t0 = now_ms();
        if (type->suggest_decoded(state, space, &h, &rng, unit, grad, &err) != 1) {
            fprintf(stderr, "suggest_decoded did not decode\n");
            return 1;
        }
        t_fused[r] = now_ms() - t0;
        hpo_rng_init(&rng, 1, h.n_trials);
        t0 = now_ms();
        type->suggest(state, space, &h, &rng, unit, &err);
        t1 = now_ms();
        t = hpo_history_append(&h, HPO_STATE_RUNNING);
        /* The service's vector decode (merge_suggestion); unit stays the sampler's own. */
        hpo_param_decode_n(&space->params[0], unit, t->values, (size_t)n,
                type->decode ? (enum hpo_decode)type->decode(state) : HPO_DECODE_LIBM);
        memcpy(t->unit, unit, (size_t)n * sizeof(double));
        t2 = now_ms();
        t_dec[r] = t2 - t1;
        differ += memcmp(grad, t->values, (size_t)n * sizeof(double)) != 0;
        /*
        ** The decode alone, into a warm buffer (the gradient's; the trial's point
        ** above may be new memory): the sampler's decode and libm's exp (studies
        ** stored by older builds), in turn.
        */
        hpo_param_decode_n(&space->params[0], unit, grad, (size_t)n,
                type->decode ? (enum hpo_decode)type->decode(state) : HPO_DECODE_LIBM);
        t_warm[r] = now_ms() - t2;
        t2 = now_ms();
        hpo_param_decode_n(&space->params[0], unit, grad, (size_t)n, HPO_DECODE_LIBM);
        t_libm[r] = now_ms() - t2;
        for (long i = 0; i < n; i++) {
            double a = 2.0 + (double)(i % 5);
            double lam = t->values[i];
            double w = a / (1.0 + lam);
            grad[i] = -(w - 1.0) * a / ((1.0 + lam) * (1.0 + lam));
        }
        hpo_history_set_state(&h, t, HPO_STATE_COMPLETE);
        t->value = 0.0;
        t3 = now_ms();
        type->tell(state, space, &h, (size_t)t->number, grad);
        t4 = now_ms();
        blob_len = 0;
        type->save(state, &blob, &blob_len);
        t_save[r] = now_ms() - t4;
        free(blob);
        t_sug[r] = t1 - t0;
        t_tell[r] = t4 - t3;
        /* Keep the history to one vector: the bench measures the sampler. */
        if (t->number > 0) {
            hpo_trial_share_point(t, h.trials[0]);
        }
    }
    {
        struct hpo_rng rng;
        hpo_rng_init(&rng, 1, h.n_trials);
        type->suggest(state, space, &h, &rng, unit, &err);
        for (long i = 0; i < n; i++) {
            double lam = hpo_param_from_unit(&space->params[0], unit[i]);
            double star = 1.0 + (double)(i % 5);
            double e = fabs(lam - star);
            worst = e > worst ? e : worst;
        }
    }
    printf("N=%ld optimizer=%s rounds=%d: median CPU ms suggest %.2f, decode %.2f (into a warm "
           "buffer %.2f, with libm's exp %.2f; both in one pass %.2f, %s), tell(step) %.2f, "
           "save %.2f (blob %.1f MB); max |lam - lam*| after %d steps %.3g\n",
            n, opt, rounds, median(t_sug, rounds), median(t_dec, rounds),
            median(t_warm, rounds), median(t_libm, rounds), median(t_fused, rounds),
            differ ? "BITS DIFFER" : "same bits", median(t_tell, rounds),
            median(t_save, rounds), (double)blob_len / 1e6, rounds, worst);
    type->destroy(state);
    hpo_history_finish(&h);
    hpo_space_destroy(space);
    json_decref(sp);
    json_decref(o);
    free(unit);
    free(grad);
    free(t_sug);
    free(t_dec);
    free(t_libm);
    free(t_warm);
    free(t_fused);
    free(t_tell);
    free(t_save);
    return 0;
}
