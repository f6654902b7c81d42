/*
** loadgen.c: HTTP load generator for hpod's ask+tell loop (bench/throughput).
**
** N client threads, each with one libcurl easy handle (so one keep-alive
** connection), loop: POST /v1/studies/{study}/ask, read the trial number,
** POST .../trials/{number}/tell {"value": v}. Runs for a fixed time after a
** warm-up and prints one line of results plus the generator's own CPU use, so
** the reader can see it is not the bottleneck.
**
** Built by bench/throughput/run.py (or `ninja -C build bench/loadgen`) with: cc -O2 loadgen.c $(pkg-config --cflags --libs libcurl) -pthread
** Usage: loadgen --url http://127.0.0.1:PORT --study NAME [--clients N] [--seconds S] [--warmup S]
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../common/curlconn.h"

#define MAX_CLIENTS   256
#define MAX_LATENCIES (1u << 22)

struct client {
    pthread_t thread;
    int id;
    uint64_t pairs;      /* pairs completed inside the measured window */
    uint64_t errors;
    double *lat;         /* pair latencies (s) inside the window */
    size_t n_lat, cap_lat;
    char err[256];
};

static const char *g_url;
static const char *g_study;
static atomic_int g_phase; /* 0 warm-up, 1 measuring, 2 stop */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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

static void *client_main(void *arg)
{
    struct client *c = arg;
    char ask_url[1024], tell_url[1100], body[64];
    struct conn conn;
    struct buf *out = &conn.out;
    uint64_t k = 0;

    if (conn_init(&conn, 30L) < 0) {
        snprintf(c->err, sizeof(c->err), "curl_easy_init failed");
        return NULL;
    }
    snprintf(ask_url, sizeof(ask_url), "%s/v1/studies/%s/ask", g_url, g_study);

    while (atomic_load(&g_phase) < 2) {
        double t0 = now_s();
        int phase = atomic_load(&g_phase);
        long st = conn_post(&conn, ask_url, "{}");
        long number = st == 201 ? parse_number(out->data) : -1;

        if (number < 0) {
            c->errors++;
            snprintf(c->err, sizeof(c->err), "ask: status %ld body %.150s", st, out->data);
            if (c->errors > 10) {
                break;
            }
            continue;
        }
        snprintf(tell_url, sizeof(tell_url), "%s/v1/studies/%s/trials/%ld/tell", g_url, g_study,
                number);
        /* A value that is different per trial and exercises all 17 digits. */
        snprintf(body, sizeof(body), "{\"value\": %.17g}", sin((double)(k++) + c->id * 0.5));
        st = conn_post(&conn, tell_url, body);
        if (st != 200) {
            c->errors++;
            snprintf(c->err, sizeof(c->err), "tell %ld: status %ld body %.150s", number, st,
                    out->data);
            if (c->errors > 10) {
                break;
            }
            continue;
        }
        if (phase == 1 && atomic_load(&g_phase) == 1) {
            c->pairs++;
            if (c->n_lat < c->cap_lat) {
                c->lat[c->n_lat++] = now_s() - t0;
            }
        }
    }
    conn_finish(&conn);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void sleep_s(double s)
{
    struct timespec ts;

    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int parse_double(const char *s, double *ret)
{
    char *end;

    errno = 0;
    *ret = strtod(s, &end);
    return (errno != 0 || end == s || *end != '\0') ? -EINVAL : 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --url http://127.0.0.1:PORT --study NAME [--clients N] "
            "[--seconds S] [--warmup S]\n");
}

int main(int argc, char **argv)
{
    static struct client clients[MAX_CLIENTS];
    double seconds = 5.0, warmup = 0.5, n_clients_d = 1.0, t0, t1, cpu0, cpu1;
    size_t n_clients, n_all = 0, cap;
    uint64_t pairs = 0, errors = 0;
    double *all;
    int r = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
            return 2;
        }
        if (strcmp(a, "--url") == 0) {
            g_url = v;
        } else if (strcmp(a, "--study") == 0) {
            g_study = v;
        } else if (strcmp(a, "--clients") == 0) {
            r = parse_double(v, &n_clients_d);
        } else if (strcmp(a, "--seconds") == 0) {
            r = parse_double(v, &seconds);
        } else if (strcmp(a, "--warmup") == 0) {
            r = parse_double(v, &warmup);
        } else {
            usage();
            return 2;
        }
        if (r < 0) {
            usage();
            return 2;
        }
        i++;
    }
    if (g_url == NULL || g_study == NULL || n_clients_d < 1 || n_clients_d > MAX_CLIENTS ||
            seconds <= 0 || warmup < 0) {
        usage();
        return 2;
    }
    n_clients = (size_t)n_clients_d;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl_global_init failed\n");
        return 1;
    }
    cap = MAX_LATENCIES / n_clients;
    for (size_t i = 0; i < n_clients; i++) {
        clients[i].id = (int)i;
        clients[i].cap_lat = cap;
        clients[i].lat = malloc(cap * sizeof(double));
        if (clients[i].lat == NULL) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
    }
    atomic_store(&g_phase, 0);
    for (size_t i = 0; i < n_clients; i++) {
        if (pthread_create(&clients[i].thread, NULL, client_main, &clients[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    sleep_s(warmup);
    cpu0 = cpu_seconds();
    t0 = now_s();
    atomic_store(&g_phase, 1);
    sleep_s(seconds);
    atomic_store(&g_phase, 2);
    t1 = now_s();
    cpu1 = cpu_seconds();
    for (size_t i = 0; i < n_clients; i++) {
        pthread_join(clients[i].thread, NULL);
        pairs += clients[i].pairs;
        errors += clients[i].errors;
        n_all += clients[i].n_lat;
        if (clients[i].err[0] != '\0') {
            fprintf(stderr, "client %zu: %" PRIu64 " errors, last: %s\n", i, clients[i].errors,
                    clients[i].err);
        }
    }
    all = malloc((n_all ? n_all : 1) * sizeof(double));
    if (all == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    n_all = 0;
    for (size_t i = 0; i < n_clients; i++) {
        memcpy(all + n_all, clients[i].lat, clients[i].n_lat * sizeof(double));
        n_all += clients[i].n_lat;
        free(clients[i].lat);
    }
    qsort(all, n_all, sizeof(double), cmp_double);
    printf("clients=%zu pairs=%" PRIu64 " seconds=%.3f pairs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f "
           "errors=%" PRIu64 " loadgen_cpu_s=%.3f loadgen_cpu_pct=%.1f\n",
            n_clients, pairs, t1 - t0, (double)pairs / (t1 - t0),
            n_all ? all[n_all / 2] * 1e3 : 0.0, n_all ? all[(n_all * 99) / 100] * 1e3 : 0.0,
            errors, cpu1 - cpu0, 100.0 * (cpu1 - cpu0) / (t1 - t0));
    free(all);
    curl_global_cleanup();
    return errors > 0 ? 1 : 0;
}
