/*
** loadgen.c: HTTP load generator for hpod's ask+tell loop (bench/throughput).
**
** N client threads, each with one keep-alive connection, loop: POST
** /v1/studies/{study}/ask, read the trial number, POST
** .../trials/{number}/tell {"value": v}. Runs for a fixed time after a
** warm-up and prints one line of results (pairs per second, pair and ask
** latencies) plus the generator's own CPU use, so the reader can see it is
** not the bottleneck.
**
** Over http:// each client speaks HTTP/1.1 itself on a blocking socket (one
** send and, for these small replies, one recv per request), which costs a
** fraction of libcurl's CPU per request: on 2 cores shared with the server
** the generator's CPU is the server's loss. Over https:// (or with
** --client curl) each client is one libcurl easy handle
** (bench/common/curlconn.h).
**
** Built by bench/throughput/run.py (or `ninja -C build bench/loadgen`) with: cc -O2 loadgen.c $(pkg-config --cflags --libs libcurl) -pthread
** Usage: loadgen --url http://127.0.0.1:PORT --study NAME [--clients N] [--seconds S] [--warmup S]
**                [--client raw|curl]
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
    double *ask_lat;     /* the ask's share of each */
    size_t n_lat, cap_lat;
    char err[256];
};

static const char *g_url;
static const char *g_study;
static atomic_int g_phase; /* 0 warm-up, 1 measuring, 2 stop */
static bool g_raw;         /* our own HTTP/1.1 over http:// (else libcurl) */
static struct sockaddr_in g_addr;
static char g_host[300];   /* the Host header: "127.0.0.1:PORT" */

/* ---- a minimal HTTP/1.1 client (http:// only) ---------------------------- */

struct raw {
    int fd;
    char in[16384];
    size_t in_len;
};

static int raw_connect(struct raw *r)
{
    int one = 1;

    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (r->fd < 0) {
        return -1;
    }
    setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(r->fd, (struct sockaddr *)&g_addr, sizeof(g_addr)) != 0) {
        close(r->fd);
        r->fd = -1;
        return -1;
    }
    r->in_len = 0;
    return 0;
}

/*
** POST `body` to `path` on the connection (opened again if the server closed
** it); the status (0 on a transport error), the reply body NUL-terminated in
** `out` (cut at its size).
*/
static long raw_post(struct raw *r, const char *path, const char *body, struct buf *out)
{
    char req[2048];
    size_t blen = strlen(body), need = 0, head = 0;
    int n = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", path, g_host,
            blen, body);
    long status;
    char *p, *cl;

    out->len = 0;
    out->data[0] = '\0';
    if (n < 0 || (size_t)n >= sizeof(req)) {
        return 0;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (r->fd < 0 && raw_connect(r) < 0) {
            return 0;
        }
        if (send(r->fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
            break;
        }
        close(r->fd);
        r->fd = -1;
        if (attempt == 1) {
            return 0;
        }
    }
    r->in_len = 0;
    for (;;) {
        ssize_t got;
        if (head == 0) {
            r->in[r->in_len] = '\0';
            p = strstr(r->in, "\r\n\r\n");
            if (p != NULL) {
                head = (size_t)(p - r->in) + 4;
                cl = strcasestr(r->in, "\r\ncontent-length:");
                if (cl == NULL || cl > p) {
                    goto broken; /* every reply here has a Content-Length */
                }
                need = head + strtoul(cl + 17, NULL, 10);
                if (need >= sizeof(r->in)) {
                    goto broken;
                }
            }
        }
        if (head != 0 && r->in_len >= need) {
            break;
        }
        got = recv(r->fd, r->in + r->in_len, sizeof(r->in) - 1 - r->in_len, 0);
        if (got <= 0) {
            goto broken;
        }
        r->in_len += (size_t)got;
    }
    if (strncmp(r->in, "HTTP/1.", 7) != 0) {
        goto broken;
    }
    status = strtol(r->in + 9, NULL, 10);
    out->len = need - head < sizeof(out->data) - 1 ? need - head : sizeof(out->data) - 1;
    memcpy(out->data, r->in + head, out->len);
    out->data[out->len] = '\0';
    if (strcasestr(r->in, "\r\nconnection: close") != NULL) {
        close(r->fd);
        r->fd = -1;
    }
    return status;
broken:
    close(r->fd);
    r->fd = -1;
    return 0;
}

/* Parse http://A.B.C.D:PORT into g_addr and g_host; false if it is not that form. */
static bool raw_target(const char *url)
{
    const char *h = url + strlen("http://"), *colon;
    char ip[64];
    unsigned long port;
    char *end;

    if (strncmp(url, "http://", 7) != 0) {
        return false;
    }
    colon = strchr(h, ':');
    if (colon == NULL || (size_t)(colon - h) >= sizeof(ip)) {
        return false;
    }
    memcpy(ip, h, (size_t)(colon - h));
    ip[colon - h] = '\0';
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || (*end != '\0' && *end != '/') || port == 0 || port > 65535) {
        return false;
    }
    memset(&g_addr, 0, sizeof(g_addr));
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &g_addr.sin_addr) != 1) {
        return false;
    }
    snprintf(g_host, sizeof(g_host), "%s:%lu", ip, port);
    return true;
}

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
    struct raw raw = { .fd = -1 };
    struct buf *out = &conn.out;
    uint64_t k = 0;
    /* The raw client sends the path alone (the Host header carries the rest). */
    size_t skip = g_raw ? strlen(g_url) : 0;

    if (g_raw) {
        memset(&conn, 0, sizeof(conn));
    } else if (conn_init(&conn, 30L) < 0) {
        snprintf(c->err, sizeof(c->err), "curl_easy_init failed");
        return NULL;
    }
    snprintf(ask_url, sizeof(ask_url), "%s/v1/studies/%s/ask", g_url, g_study);

    while (atomic_load(&g_phase) < 2) {
        double t0 = now_s(), t_ask;
        int phase = atomic_load(&g_phase);
        long st = g_raw ? raw_post(&raw, ask_url + skip, "{}", out)
                        : conn_post(&conn, ask_url, "{}");
        long number = st == 201 ? parse_number(out->data) : -1;

        if (number < 0) {
            c->errors++;
            snprintf(c->err, sizeof(c->err), "ask: status %ld body %.150s", st, out->data);
            if (c->errors > 10) {
                break;
            }
            continue;
        }
        t_ask = now_s() - t0;
        snprintf(tell_url, sizeof(tell_url), "%s/v1/studies/%s/trials/%ld/tell", g_url, g_study,
                number);
        /* A value that is different per trial and exercises all 17 digits. */
        snprintf(body, sizeof(body), "{\"value\": %.17g}", sin((double)(k++) + c->id * 0.5));
        st = g_raw ? raw_post(&raw, tell_url + skip, body, out) : conn_post(&conn, tell_url, body);
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
                c->ask_lat[c->n_lat] = t_ask;
                c->lat[c->n_lat++] = now_s() - t0;
            }
        }
    }
    if (g_raw) {
        if (raw.fd >= 0) {
            close(raw.fd);
        }
    } else {
        conn_finish(&conn);
    }
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
            "[--seconds S] [--warmup S] [--client raw|curl]\n");
}

int main(int argc, char **argv)
{
    static struct client clients[MAX_CLIENTS];
    double seconds = 5.0, warmup = 0.5, n_clients_d = 1.0, t0, t1, cpu0, cpu1;
    size_t n_clients, n_all = 0, cap;
    uint64_t pairs = 0, errors = 0;
    double *all, *all_ask;
    const char *client = "raw";
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
        } else if (strcmp(a, "--client") == 0) {
            client = v;
            r = strcmp(v, "raw") == 0 || strcmp(v, "curl") == 0 ? 0 : -EINVAL;
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
    /* https:// (or an address that is not numeric IPv4) goes through libcurl. */
    g_raw = strcmp(client, "raw") == 0 && raw_target(g_url);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl_global_init failed\n");
        return 1;
    }
    cap = MAX_LATENCIES / n_clients;
    for (size_t i = 0; i < n_clients; i++) {
        clients[i].id = (int)i;
        clients[i].cap_lat = cap;
        clients[i].lat = malloc(cap * sizeof(double));
        clients[i].ask_lat = malloc(cap * sizeof(double));
        if (clients[i].lat == NULL || clients[i].ask_lat == NULL) {
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
    all_ask = malloc((n_all ? n_all : 1) * sizeof(double));
    if (all == NULL || all_ask == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    n_all = 0;
    for (size_t i = 0; i < n_clients; i++) {
        memcpy(all + n_all, clients[i].lat, clients[i].n_lat * sizeof(double));
        memcpy(all_ask + n_all, clients[i].ask_lat, clients[i].n_lat * sizeof(double));
        n_all += clients[i].n_lat;
        free(clients[i].lat);
        free(clients[i].ask_lat);
    }
    qsort(all, n_all, sizeof(double), cmp_double);
    qsort(all_ask, n_all, sizeof(double), cmp_double);
    printf("clients=%zu pairs=%" PRIu64 " seconds=%.3f pairs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f "
           "ask_p50_ms=%.3f ask_p99_ms=%.3f errors=%" PRIu64
           " loadgen_cpu_s=%.3f loadgen_cpu_pct=%.1f\n",
            n_clients, pairs, t1 - t0, (double)pairs / (t1 - t0),
            n_all ? all[n_all / 2] * 1e3 : 0.0, n_all ? all[(n_all * 99) / 100] * 1e3 : 0.0,
            n_all ? all_ask[n_all / 2] * 1e3 : 0.0,
            n_all ? all_ask[(n_all * 99) / 100] * 1e3 : 0.0, errors, cpu1 - cpu0,
            100.0 * (cpu1 - cpu0) / (t1 - t0));
    free(all);
    free(all_ask);
    curl_global_cleanup();
    return errors > 0 ? 1 : 0;
}
