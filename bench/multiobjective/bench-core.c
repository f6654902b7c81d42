/*
** bench-core.c: CPU time of the multi-objective core (core/mo.h) at the
** sizes the samplers and /pareto meet: ranks and elite selection of n
** points, hypervolume of a front (points on the unit sphere, the hard case:
** every point non-dominated), exclusive contributions, HSSP, and one
** NSGA-II child at n finished trials (population 50). Median of `rounds`.
**
** Build (after `ninja -C build`):
**   cc -O2 -I core bench/multiobjective/bench-core.c build/core/libhpo-core.a \
**      $(pkg-config --libs jansson) -lm -lpthread -o /tmp/bench-mo
** Usage: /tmp/bench-mo [rounds]
*/
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/mo.h"
#include "../../core/rng.h"

static double cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), dcmp);
    return v[n / 2];
}

/* One output line: the operation (printf format) and the median of t[0..rounds-1]. */
static double *t_;
static int rounds_;

__attribute__((format(printf, 1, 2))) static void row(const char *fmt, ...)
{
    char name[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    printf("%-48s %10.3f\n", name, median(t_, rounds_));
}

/* n points: on the unit sphere's positive orthant (front) or uniform in the cube. */
static double *points(struct hpo_rng *rng, size_t n, unsigned m, int sphere)
{
    double *p = malloc(n * m * sizeof(*p));

    for (size_t i = 0; i < n; i++) {
        double s = 0;

        for (unsigned k = 0; k < m; k++) {
            p[i * m + k] = sphere ? fabs(hpo_rng_normal(rng)) : hpo_rng_uniform(rng);
            s += p[i * m + k] * p[i * m + k];
        }
        for (unsigned k = 0; sphere && k < m; k++) {
            p[i * m + k] /= sqrt(s);
        }
    }
    return p;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    double *t = malloc((size_t)rounds * sizeof(*t));
    struct hpo_rng rng;
    const double ref[8] = { 1.1, 1.1, 1.1, 1.1, 1.1, 1.1, 1.1, 1.1 };

    hpo_rng_seed(&rng, 1);
    printf("%-48s %10s\n", "operation", "median ms");
    t_ = t;
    rounds_ = rounds;
    {
        static const struct { size_t n; unsigned m; } c[] = { { 1000, 2 }, { 1000, 3 }, { 1000, 5 },
            { 10000, 2 } };

        for (size_t q = 0; q < sizeof(c) / sizeof(c[0]); q++) {
            double *p = points(&rng, c[q].n, c[q].m, 0);
            size_t *r = malloc(c[q].n * sizeof(*r));

            for (int i = 0; i < rounds; i++) {
                double t0 = cpu_ms();

                hpo_mo_rank(p, c[q].n, c[q].m, NULL, 0, r);
                t[i] = cpu_ms() - t0;
            }
            row("rank n=%zu m=%u (uniform)", c[q].n, c[q].m);
            for (int i = 0; i < rounds; i++) {
                double t0 = cpu_ms();

                hpo_mo_select(p, c[q].n > 100 ? 100 : c[q].n, c[q].m, NULL, 50, r);
                t[i] = cpu_ms() - t0;
            }
            row("select 50 of 100, m=%u", c[q].m);
            free(p);
            free(r);
        }
    }
    {
        static const struct { size_t n; unsigned m; } c[] = { { 1000, 2 }, { 10000, 2 },
            { 200, 3 }, { 1000, 3 }, { 50, 4 }, { 100, 4 }, { 30, 5 }, { 50, 5 } };

        for (size_t q = 0; q < sizeof(c) / sizeof(c[0]); q++) {
            double *p = points(&rng, c[q].n, c[q].m, 1), hv = 0;

            for (int i = 0; i < rounds; i++) {
                double t0 = cpu_ms();

                hpo_mo_hypervolume(p, c[q].n, c[q].m, ref, &hv);
                t[i] = cpu_ms() - t0;
            }
            row("hypervolume front n=%zu m=%u (hv %.4f)", c[q].n, c[q].m, hv);
            free(p);
        }
    }
    {
        static const struct { size_t n; unsigned m; } c[] = { { 25, 2 }, { 100, 2 }, { 25, 3 },
            { 100, 3 }, { 25, 4 } };

        for (size_t q = 0; q < sizeof(c) / sizeof(c[0]); q++) {
            double *p = points(&rng, c[q].n, c[q].m, 1), *ctr = malloc(c[q].n * sizeof(double));
            size_t *idx = malloc(c[q].n * sizeof(size_t));

            for (int i = 0; i < rounds; i++) {
                double t0 = cpu_ms();

                hpo_mo_hv_contributions(p, c[q].n, c[q].m, ref, ctr);
                t[i] = cpu_ms() - t0;
            }
            row("contributions front n=%zu m=%u", c[q].n, c[q].m);
            for (int i = 0; i < rounds; i++) {
                double t0 = cpu_ms();

                hpo_mo_hssp(p, c[q].n, c[q].m, ref, c[q].n / 2, idx);
                t[i] = cpu_ms() - t0;
            }
            row("hssp n/2 of front n=%zu m=%u", c[q].n, c[q].m);
            free(p);
            free(ctr);
            free(idx);
        }
    }
    {
        enum { N = 1000, D = 10 };
        static const unsigned ms[] = { 2, 3 };

        for (size_t q = 0; q < 2; q++) {
            unsigned m = ms[q];
            struct hpo_mo_trial *tr = malloc(N * sizeof(*tr));
            double *loss = points(&rng, N, m, 0), *u = points(&rng, N, D, 0), child[D];
            struct hpo_nsga2_options opt;

            hpo_nsga2_defaults(&opt);
            for (size_t i = 0; i < N; i++) {
                tr[i].number = i;
                tr[i].told_at = i + 1 + hpo_rng_below(&rng, 8);
                tr[i].loss = loss + i * m;
                tr[i].u = u + i * D;
                tr[i].violation = 0;
            }
            for (int i = 0; i < rounds; i++) {
                double t0 = cpu_ms();

                hpo_nsga2_child(&opt, tr, N, m, D, 3, N + (uint64_t)i, child, NULL);
                t[i] = cpu_ms() - t0;
            }
            row("nsga2 child at %d trials, m=%u, d=%d", N, m, D);
            free(tr);
            free(loss);
            free(u);
        }
    }
    free(t);
    return 0;
}
