/*
** metrics.c: the HTTP server's counters for /metrics (metrics.h).
**
** Every series is a fixed slot of a fixed array, chosen from the route id,
** the method, the status class or the sampler's place in the sampler table:
** the label sets are bounded whatever the clients send, and recording never
** allocates or locks.
*/
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../core/histogram.h"
#include "../samplers/sampler.h"
#include "metrics.h"

#define N_ROUTES HPO__R_COUNT /* route ids at or above this count as "unmatched" */
#define N_METHODS 7  /* GET HEAD POST PUT PATCH DELETE, and any other */
#define N_CLASSES 5  /* 1xx .. 5xx */
#define N_SAMPLERS 16

static const char *const method_names[N_METHODS] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
    "other" };
static const char *const tell_states[3] = { "complete", "pruned", "failed" };

/* Request latency bounds, in microseconds: 100 us to 10 s. */
static const uint64_t latency_le[] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000 };

struct hpo__metrics {
    struct hpo_hist requests[N_ROUTES][N_METHODS][N_CLASSES];
    struct hpo_hist ask[N_SAMPLERS];
    atomic_uint_fast64_t tells[3];
    atomic_uint_fast64_t reports;
    atomic_uint_fast64_t reports_pruned;
};

struct hpo__metrics *hpo__metrics_new(void)
{
    struct hpo__metrics *m = calloc(1, sizeof(*m));
    unsigned n = sizeof(latency_le) / sizeof(latency_le[0]);

    if (m == NULL) {
        return NULL;
    }
    for (size_t r = 0; r < N_ROUTES; r++) {
        for (size_t k = 0; k < N_METHODS; k++) {
            for (size_t c = 0; c < N_CLASSES; c++) {
                hpo_hist_init(&m->requests[r][k][c], latency_le, n);
            }
        }
    }
    for (size_t s = 0; s < N_SAMPLERS; s++) {
        hpo_hist_init(&m->ask[s], latency_le, n);
    }
    for (size_t s = 0; s < 3; s++) {
        atomic_init(&m->tells[s], 0);
    }
    atomic_init(&m->reports, 0);
    atomic_init(&m->reports_pruned, 0);
    return m;
}

void hpo__metrics_free(struct hpo__metrics *m)
{
    free(m);
}

/* The route's template for labels: its row's in api/routes.def. */
const char *hpo__metrics_route_template(enum hpo__route_id route)
{
    return hpo__route_template(route);
}

static size_t method_index(const char *method)
{
    for (size_t k = 0; k + 1 < N_METHODS; k++) {
        if (strcmp(method, method_names[k]) == 0) {
            return k;
        }
    }
    return N_METHODS - 1;
}

void hpo__metrics_request(struct hpo__metrics *m, enum hpo__route_id route, const char *method,
        int status, uint64_t us)
{
    size_t r = (unsigned)route < N_ROUTES ? (size_t)route : (size_t)HPO__R_NONE;
    int c = status / 100;

    if (c < 1 || c > N_CLASSES) {
        c = 5; /* not a status MHD sends; count it with the server errors */
    }
    hpo_hist_observe(&m->requests[r][method_index(method)][c - 1], us);
}

void hpo__metrics_ask(struct hpo__metrics *m, const char *sampler, uint64_t us)
{
    for (size_t i = 0; i < N_SAMPLERS && hpo_sampler_types[i] != NULL; i++) {
        if (strcmp(hpo_sampler_types[i]->name, sampler) == 0) {
            hpo_hist_observe(&m->ask[i], us);
            return;
        }
    }
}

void hpo__metrics_tell(struct hpo__metrics *m, const char *state)
{
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(state, tell_states[i]) == 0) {
            atomic_fetch_add_explicit(&m->tells[i], 1, memory_order_relaxed);
            return;
        }
    }
}

void hpo__metrics_report(struct hpo__metrics *m, bool prune)
{
    atomic_fetch_add_explicit(&m->reports, 1, memory_order_relaxed);
    if (prune) {
        atomic_fetch_add_explicit(&m->reports_pruned, 1, memory_order_relaxed);
    }
}

static void write_requests(const struct hpo__metrics *m, FILE *f, bool histogram)
{
    char labels[160];

    for (size_t r = 0; r < N_ROUTES; r++) {
        const char *route = hpo__metrics_route_template((enum hpo__route_id)r);
        if (r != HPO__R_NONE && strcmp(route, "unmatched") == 0) {
            continue; /* no such route id */
        }
        for (size_t k = 0; k < N_METHODS; k++) {
            for (size_t c = 0; c < N_CLASSES; c++) {
                const struct hpo_hist *h = &m->requests[r][k][c];
                uint64_t n = hpo_hist_count(h);
                if (n == 0) {
                    continue;
                }
                snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",class=\"%zuxx\"",
                        route, method_names[k], c + 1);
                if (histogram) {
                    hpo_hist_write(f, "hpod_request_duration_seconds", labels, h, 1e6);
                } else {
                    fprintf(f, "hpod_requests_total{%s} %" PRIu64 "\n", labels, n);
                }
            }
        }
    }
}

int hpo__metrics_write(const struct hpo__metrics *m, FILE *f, unsigned open_connections)
{
    char labels[64];

    fputs("# HELP hpod_requests_total HTTP requests answered, by route template, method and "
          "status class.\n# TYPE hpod_requests_total counter\n",
            f);
    write_requests(m, f, false);
    fputs("# HELP hpod_request_duration_seconds Time from a request's headers to its "
          "completion.\n# TYPE hpod_request_duration_seconds histogram\n",
            f);
    write_requests(m, f, true);
    fputs("# HELP hpod_ask_duration_seconds Latency of asks answered 2xx, by the study's "
          "sampler.\n# TYPE hpod_ask_duration_seconds histogram\n",
            f);
    for (size_t i = 0; i < N_SAMPLERS && hpo_sampler_types[i] != NULL; i++) {
        if (hpo_hist_count(&m->ask[i]) == 0) {
            continue;
        }
        snprintf(labels, sizeof(labels), "sampler=\"%s\"", hpo_sampler_types[i]->name);
        hpo_hist_write(f, "hpod_ask_duration_seconds", labels, &m->ask[i], 1e6);
    }
    fputs("# HELP hpod_tells_total Tells answered 2xx, by the state they reported.\n"
          "# TYPE hpod_tells_total counter\n",
            f);
    for (size_t i = 0; i < 3; i++) {
        fprintf(f, "hpod_tells_total{state=\"%s\"} %" PRIu64 "\n", tell_states[i],
                (uint64_t)atomic_load_explicit(&m->tells[i], memory_order_relaxed));
    }
    fprintf(f,
            "# HELP hpod_reports_total Intermediate reports answered 2xx.\n"
            "# TYPE hpod_reports_total counter\nhpod_reports_total %" PRIu64 "\n"
            "# HELP hpod_reports_pruned_total Reports answered with prune: true.\n"
            "# TYPE hpod_reports_pruned_total counter\nhpod_reports_pruned_total %" PRIu64 "\n"
            "# HELP hpod_open_connections HTTP connections open now.\n"
            "# TYPE hpod_open_connections gauge\nhpod_open_connections %u\n",
            (uint64_t)atomic_load_explicit(&m->reports, memory_order_relaxed),
            (uint64_t)atomic_load_explicit(&m->reports_pruned, memory_order_relaxed),
            open_connections);
    return ferror(f) ? -EIO : 0;
}
