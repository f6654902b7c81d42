/*
** fill.c: writes many trials into one hpod study over HTTP (bench/restart).
**
** N client threads, each with one libcurl easy handle (one keep-alive
** connection), share a counter of trials still to write. Two modes:
**   put:    POST /v1/studies/{study}/trials {"params": {...}, "value": v},
**           one request per trial (a finished trial recorded from elsewhere);
**   report: POST .../ask, then `--reports` x POST .../trials/{n}/report
**           {"step": k, "value": v}, then POST .../tell {"value": v}
**           (or {"state": "pruned"} when the pruner said so).
** Params are drawn from a small deterministic generator per client, for the
** space given by --params, a comma-separated list of name:kind[:low:high]
** where kind is f (float), lf (log float), i (int) or c (categorical
** "a"/"b"/"c"). Prints one line: trials, seconds, trials_per_s, errors.
**
** Built by bench/restart/run.py with: cc -O2 fill.c $(pkg-config --cflags --libs libcurl) -pthread -lm
** Usage: fill --url http://127.0.0.1:PORT --study NAME --params SPEC --n N
**             [--clients C] [--mode put|report] [--reports R]
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

#define MAX_CLIENTS 64
#define MAX_PARAMS  32

struct param {
    char name[32];
    char kind[4];
    double low, high;
};

struct client {
    pthread_t thread;
    int id;
    uint64_t done;
    uint64_t errors;
    uint64_t state;  /* splitmix64 */
    char err[256];
};

static const char *g_url;
static const char *g_study;
static struct param g_params[MAX_PARAMS];
static size_t g_n_params;
static bool g_report_mode;
static long g_reports = 10;
static atomic_long g_left;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double next_unit(uint64_t *s)
{
    return (double)(next_u64(s) >> 11) * 0x1.0p-53;
}


/* The integer after "key": in a JSON answer, or -1. */
static long parse_long(const char *json, const char *key)
{
    const char *p = strstr(json, key);
    char *end;
    long n;

    if (p == NULL) {
        return -1;
    }
    p += strlen(key);
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

/* {"x": 1.5, ...} for one random point of the space, into buf. */
static void make_params(struct client *c, char *buf, size_t len)
{
    size_t at = 0;

    at += (size_t)snprintf(buf + at, len - at, "{");
    for (size_t i = 0; i < g_n_params && at < len; i++) {
        const struct param *p = &g_params[i];
        double u = next_unit(&c->state);
        const char *sep = i ? ", " : "";
        if (strcmp(p->kind, "f") == 0) {
            at += (size_t)snprintf(buf + at, len - at, "%s\"%s\": %.17g", sep, p->name,
                    p->low + u * (p->high - p->low));
        } else if (strcmp(p->kind, "lf") == 0) {
            at += (size_t)snprintf(buf + at, len - at, "%s\"%s\": %.17g", sep, p->name,
                    exp(log(p->low) + u * (log(p->high) - log(p->low))));
        } else if (strcmp(p->kind, "i") == 0) {
            long v = (long)p->low + (long)(u * (p->high - p->low + 1));
            if (v > (long)p->high) {
                v = (long)p->high;
            }
            at += (size_t)snprintf(buf + at, len - at, "%s\"%s\": %ld", sep, p->name, v);
        } else {
            static const char *const choices[] = { "a", "b", "c" };
            at += (size_t)snprintf(buf + at, len - at, "%s\"%s\": \"%s\"", sep, p->name,
                    choices[(int)(u * 3) % 3]);
        }
    }
    if (at < len) {
        snprintf(buf + at, len - at, "}");
    }
}

static bool fail(struct client *c, const char *what, long st, const struct buf *out)
{
    c->errors++;
    snprintf(c->err, sizeof(c->err), "%s: status %ld body %.150s", what, st, out->data);
    return c->errors > 10;
}

/* One trial in report mode: ask, reports, tell. Returns false on an error. */
static bool one_report_trial(struct client *c, struct conn *h, struct buf *out)
{
    char url[1200], base[1024], body[128];
    double target = next_unit(&c->state);
    bool pruned = false;
    long st, number;

    snprintf(url, sizeof(url), "%s/v1/studies/%s/ask", g_url, g_study);
    st = conn_post(h, url, "{}");
    number = st == 201 ? parse_long(out->data, "\"number\"") : -1;
    if (number < 0) {
        return !fail(c, "ask", st, out);
    }
    snprintf(base, sizeof(base), "%s/v1/studies/%s/trials/%ld", g_url, g_study, number);
    for (long k = 0; k < g_reports && !pruned; k++) {
        /* A learning curve falling towards this trial's target. */
        snprintf(body, sizeof(body), "{\"step\": %ld, \"value\": %.17g}", k,
                target + 1.0 / (double)(k + 1));
        snprintf(url, sizeof(url), "%s/report", base);
        st = conn_post(h, url, body);
        if (st != 200) {
            return !fail(c, "report", st, out);
        }
        pruned = strstr(out->data, "\"prune\": true") != NULL ||
                strstr(out->data, "\"prune\":true") != NULL;
    }
    snprintf(url, sizeof(url), "%s/tell", base);
    if (pruned) {
        snprintf(body, sizeof(body), "{\"state\": \"pruned\"}");
    } else {
        snprintf(body, sizeof(body), "{\"value\": %.17g}", target);
    }
    st = conn_post(h, url, body);
    if (st != 200) {
        return !fail(c, "tell", st, out);
    }
    c->done++;
    return true;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    char url[1100], params[4096], body[4200];
    struct conn conn, *h = &conn;
    struct buf *out = &conn.out;

    if (conn_init(&conn, 60L) < 0) {
        snprintf(c->err, sizeof(c->err), "curl_easy_init failed");
        c->errors++;
        return NULL;
    }
    snprintf(url, sizeof(url), "%s/v1/studies/%s/trials", g_url, g_study);

    while (atomic_fetch_sub(&g_left, 1) > 0) {
        if (g_report_mode) {
            if (!one_report_trial(c, h, out)) {
                break;
            }
            continue;
        }
        make_params(c, params, sizeof(params));
        snprintf(body, sizeof(body), "{\"params\": %s, \"value\": %.17g}", params,
                next_unit(&c->state) * 10.0);
        long st = conn_post(h, url, body);
        if (st != 201) {
            if (fail(c, "put", st, out)) {
                break;
            }
            continue;
        }
        c->done++;
    }
    conn_finish(&conn);
    return NULL;
}

static int parse_spec(char *spec)
{
    char *save = NULL;

    for (char *tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        struct param *p;
        char *f[4] = { 0 };
        char *s2 = NULL;
        int n = 0;
        if (g_n_params == MAX_PARAMS) {
            return -EINVAL;
        }
        p = &g_params[g_n_params++];
        for (char *x = strtok_r(tok, ":", &s2); x && n < 4; x = strtok_r(NULL, ":", &s2)) {
            f[n++] = x;
        }
        if (n < 2 || strlen(f[0]) >= sizeof(p->name) || strlen(f[1]) >= sizeof(p->kind)) {
            return -EINVAL;
        }
        memcpy(p->name, f[0], strlen(f[0]) + 1);
        memcpy(p->kind, f[1], strlen(f[1]) + 1);
        if (strcmp(p->kind, "c") != 0) {
            if (n != 4) {
                return -EINVAL;
            }
            p->low = strtod(f[2], NULL);
            p->high = strtod(f[3], NULL);
        }
    }
    return g_n_params ? 0 : -EINVAL;
}

static void usage(void)
{
    fprintf(stderr, "usage: fill --url http://127.0.0.1:PORT --study NAME --params SPEC --n N "
            "[--clients C] [--mode put|report] [--reports R]\n");
}

int main(int argc, char **argv)
{
    static struct client clients[MAX_CLIENTS];
    long n = 0, n_clients = 8;
    uint64_t done = 0, errors = 0;
    char *spec = NULL;
    double t0, t1;

    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--url") == 0) {
            g_url = v;
        } else if (strcmp(a, "--study") == 0) {
            g_study = v;
        } else if (strcmp(a, "--params") == 0) {
            spec = argv[i + 1];
        } else if (strcmp(a, "--n") == 0) {
            n = strtol(v, NULL, 10);
        } else if (strcmp(a, "--clients") == 0) {
            n_clients = strtol(v, NULL, 10);
        } else if (strcmp(a, "--reports") == 0) {
            g_reports = strtol(v, NULL, 10);
        } else if (strcmp(a, "--mode") == 0) {
            g_report_mode = strcmp(v, "report") == 0;
        } else {
            usage();
            return 2;
        }
    }
    if (argc % 2 != 1 || g_url == NULL || g_study == NULL || n < 0 || n_clients < 1 ||
            n_clients > MAX_CLIENTS || (!g_report_mode && (spec == NULL || parse_spec(spec) < 0))) {
        usage();
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl_global_init failed\n");
        return 1;
    }
    atomic_store(&g_left, n);
    t0 = now_s();
    for (long i = 0; i < n_clients; i++) {
        clients[i].id = (int)i;
        clients[i].state = 0x1234567ull + (uint64_t)i * 0x9e3779b97f4a7c15ull;
        if (pthread_create(&clients[i].thread, NULL, client_main, &clients[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    for (long i = 0; i < n_clients; i++) {
        pthread_join(clients[i].thread, NULL);
        done += clients[i].done;
        errors += clients[i].errors;
        if (clients[i].err[0] != '\0') {
            fprintf(stderr, "client %ld: %" PRIu64 " errors, last: %s\n", i, clients[i].errors,
                    clients[i].err);
        }
    }
    t1 = now_s();
    printf("trials=%" PRIu64 " seconds=%.3f trials_per_s=%.1f errors=%" PRIu64 "\n", done,
            t1 - t0, (double)done / (t1 - t0), errors);
    curl_global_cleanup();
    return errors > 0 ? 1 : 0;
}
