/*
** loader.c: load a study with finished trials, then time report + decision
** (bench/pruning).
**
**   loader load --url URL --study NAME --trials N --steps S [--threads T] [--seed K]
**       T threads, each one libcurl easy handle (one keep-alive connection),
**       run ask, S reports (steps 0..S-1 of a random learning curve) and a
**       tell with the last value, until N trials are complete. Prints one
**       line: trials, reports, seconds, requests per second, errors.
**   loader measure --url URL --study NAME --reports R --steps S [--seed K]
**       One connection, sequentially: ask, report steps 0.. until the pruner
**       says prune (then tell pruned) or S steps (then tell complete); repeat
**       until R reports were timed. Each report is timed from request to
**       parsed answer. Prints count, pruned answers and the median, p90, p99
**       and mean latency in microseconds.
**
** Built by bench/pruning/run.py: cc -O2 loader.c $(pkg-config --cflags --libs libcurl) -pthread -lm
*/
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/curlconn.h"

#define MAX_THREADS 64

static const char *g_url = "http://127.0.0.1:8080";
static const char *g_study = "bench";
static long g_trials = 10000, g_steps = 100, g_threads = 2, g_reports = 20000;
static uint64_t g_seed = 1;
static atomic_long g_next;   /* trials started */
static atomic_long g_errors;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: a small seeded generator for the curves (no rand()). */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15u);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s)
{
    return (double)(next_u64(s) >> 11) * 0x1.0p-53;
}

/* A learning curve: final + (start - final) * exp(-rate * step) + noise. */
struct curve {
    double final, start, rate, noise;
};

static void curve_new(struct curve *c, uint64_t *s)
{
    c->final = 0.05 + 0.55 * uniform(s);
    c->start = 0.8 + 0.4 * uniform(s);
    c->rate = 0.02 + 0.3 * uniform(s);
    c->noise = 0.02 * uniform(s);
}

static double curve_at(const struct curve *c, long step, uint64_t *s)
{
    return c->final + (c->start - c->final) * exp(-c->rate * (double)step) +
            c->noise * (uniform(s) - 0.5);
}

/* POST body to path; returns the HTTP status (0 on a transport error). */
static long post(struct conn *c, const char *path, const char *body)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", g_url, path);
    return conn_post(c, url, body);
}

/* The trial number in an ask answer, or -1. */
static long parse_number(const char *json)
{
    const char *p = strstr(json, "\"number\"");
    char *end;
    long n;

    if (p == NULL) {
        return -1;
    }
    p += strlen("\"number\"");
    while (*p == ' ' || *p == ':') {
        p++;
    }
    errno = 0;
    n = strtol(p, &end, 10);
    if (errno != 0 || end == p) {
        return -1;
    }
    return n;
}

static void error(const char *what, long status, const struct conn *c)
{
    if (atomic_fetch_add(&g_errors, 1) < 5) {
        fprintf(stderr, "loader: %s: status %ld: %.200s\n", what, status, c->out.data);
    }
}

/* ask; returns the trial number or -1. */
static long ask(struct conn *c)
{
    char path[512];
    long st, n;

    snprintf(path, sizeof(path), "/v1/studies/%s/ask", g_study);
    st = post(c, path, "{}");
    n = st == 201 ? parse_number(c->out.data) : -1;
    if (n < 0) {
        error("ask", st, c);
    }
    return n;
}

/* report; returns 1 prune, 0 continue, -1 error. */
static int report(struct conn *c, long number, long step, double value)
{
    char path[512], body[128];
    long st;

    snprintf(path, sizeof(path), "/v1/studies/%s/trials/%ld/report", g_study, number);
    snprintf(body, sizeof(body), "{\"step\": %ld, \"value\": %.17g}", step, value);
    st = post(c, path, body);
    if (st != 200) {
        error("report", st, c);
        return -1;
    }
    return strstr(c->out.data, "true") != NULL;
}

static int tell(struct conn *c, long number, const char *body)
{
    char path[512];
    long st;

    snprintf(path, sizeof(path), "/v1/studies/%s/trials/%ld/tell", g_study, number);
    st = post(c, path, body);
    if (st != 200) {
        error("tell", st, c);
        return -1;
    }
    return 0;
}

static void *load_main(void *arg)
{
    uint64_t seed = g_seed * 1000003u + (uint64_t)(uintptr_t)arg;
    struct conn c;

    if (conn_init(&c, 60L) < 0) {
        atomic_fetch_add(&g_errors, 1);
        return NULL;
    }
    while (atomic_fetch_add(&g_next, 1) < g_trials && atomic_load(&g_errors) < 10) {
        struct curve cv;
        double v = 0.0;
        char body[64];
        long n = ask(&c);

        if (n < 0) {
            continue;
        }
        curve_new(&cv, &seed);
        for (long s = 0; s < g_steps; s++) {
            v = curve_at(&cv, s, &seed);
            if (report(&c, n, s, v) < 0) {
                break;
            }
        }
        snprintf(body, sizeof(body), "{\"value\": %.17g}", v);
        tell(&c, n, body);
    }
    conn_finish(&c);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static int run_load(void)
{
    pthread_t th[MAX_THREADS];
    double t0 = now_s(), dt;

    for (long i = 0; i < g_threads; i++) {
        if (pthread_create(&th[i], NULL, load_main, (void *)(uintptr_t)i) != 0) {
            fprintf(stderr, "loader: pthread_create failed\n");
            return 1;
        }
    }
    for (long i = 0; i < g_threads; i++) {
        pthread_join(th[i], NULL);
    }
    dt = now_s() - t0;
    printf("load: %ld trials x %ld steps, %ld requests in %.1f s: %.0f requests/s, %ld errors\n",
            g_trials, g_steps, g_trials * (g_steps + 2), dt,
            (double)(g_trials * (g_steps + 2)) / dt, atomic_load(&g_errors));
    return atomic_load(&g_errors) ? 1 : 0;
}

static int run_measure(void)
{
    double *lat = malloc((size_t)g_reports * sizeof(*lat));
    uint64_t seed = g_seed * 7919u + 17u;
    long n_lat = 0, pruned = 0, trials = 0;
    double sum = 0.0;
    struct conn c;

    if (lat == NULL || conn_init(&c, 60L) < 0) {
        return 1;
    }
    while (n_lat < g_reports && atomic_load(&g_errors) == 0) {
        struct curve cv;
        double v = 0.0;
        char body[64];
        long n = ask(&c);
        int p = 0;

        if (n < 0) {
            break;
        }
        trials++;
        curve_new(&cv, &seed);
        for (long s = 0; s < g_steps && n_lat < g_reports; s++) {
            double t0;
            v = curve_at(&cv, s, &seed);
            t0 = now_s();
            p = report(&c, n, s, v);
            lat[n_lat++] = now_s() - t0;
            if (p != 0) {
                break;
            }
        }
        if (p > 0) {
            pruned++;
            tell(&c, n, "{\"state\": \"pruned\"}");
        } else {
            snprintf(body, sizeof(body), "{\"value\": %.17g}", v);
            tell(&c, n, body);
        }
    }
    conn_finish(&c);
    for (long i = 0; i < n_lat; i++) {
        sum += lat[i];
    }
    qsort(lat, (size_t)n_lat, sizeof(*lat), cmp_double);
    if (n_lat > 0) {
        printf("measure: %ld reports over %ld trials (%ld pruned): median %.1f us, p90 %.1f us, "
               "p99 %.1f us, mean %.1f us\n",
                n_lat, trials, pruned, lat[n_lat / 2] * 1e6, lat[n_lat * 9 / 10] * 1e6,
                lat[n_lat * 99 / 100] * 1e6, sum / (double)n_lat * 1e6);
    }
    free(lat);
    return atomic_load(&g_errors) || n_lat == 0 ? 1 : 0;
}

static long arg_long(const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0) {
        fprintf(stderr, "loader: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    int rc;

    if (argc < 2 || (strcmp(argv[1], "load") != 0 && strcmp(argv[1], "measure") != 0)) {
        fprintf(stderr, "usage: loader load|measure --url URL --study NAME [options]\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--url") == 0) {
            g_url = argv[i + 1];
        } else if (strcmp(argv[i], "--study") == 0) {
            g_study = argv[i + 1];
        } else if (strcmp(argv[i], "--trials") == 0) {
            g_trials = arg_long(argv[i + 1]);
        } else if (strcmp(argv[i], "--steps") == 0) {
            g_steps = arg_long(argv[i + 1]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            g_threads = arg_long(argv[i + 1]);
            if (g_threads < 1 || g_threads > MAX_THREADS) {
                fprintf(stderr, "loader: --threads must be 1..%d\n", MAX_THREADS);
                return 2;
            }
        } else if (strcmp(argv[i], "--reports") == 0) {
            g_reports = arg_long(argv[i + 1]);
        } else if (strcmp(argv[i], "--seed") == 0) {
            g_seed = (uint64_t)arg_long(argv[i + 1]);
        } else {
            fprintf(stderr, "loader: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = strcmp(argv[1], "load") == 0 ? run_load() : run_measure();
    curl_global_cleanup();
    return rc;
}
