/*
** metrics.h: the HTTP server's counters for /metrics (inside api/ only):
** requests and their latency by route template, method and status class,
** ask latency by sampler, tells by state and reports. Recording is a few
** relaxed atomic adds on fixed buckets; formatting reads a snapshot.
*/
#ifndef HPO_API_METRICS_H
#define HPO_API_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "api-int.h"

struct hpo__metrics;

/* A new, zeroed set of counters, or NULL on OOM. Free with hpo__metrics_free (NULL ok). */
struct hpo__metrics *hpo__metrics_new(void);
void hpo__metrics_free(struct hpo__metrics *m);

/* The route's template for labels ("/v1/studies/{study}/ask"); "unmatched" for R_NONE. */
const char *hpo__metrics_route_template(enum hpo__route_id route);

/*
** Count one finished request: its route, method, HTTP status and latency in
** microseconds. Any thread.
*/
void hpo__metrics_request(struct hpo__metrics *m, enum hpo__route_id route, const char *method,
        int status, uint64_t us);

/* An ask answered 2xx by a study with sampler `sampler` (its type name), in us. Any thread. */
void hpo__metrics_ask(struct hpo__metrics *m, const char *sampler, uint64_t us);

/* A tell answered 2xx; `state` is what it reported ("complete", "pruned", "failed"). */
void hpo__metrics_tell(struct hpo__metrics *m, const char *state);

/* A report answered 2xx, and whether the answer said to prune. */
void hpo__metrics_report(struct hpo__metrics *m, bool prune);

/*
** Write every counter above in Prometheus text format 0.0.4, plus the
** `open_connections` gauge. Series that never counted anything are left out
** (labelled series appear at their first observation). Returns 0 or -EIO.
*/
int hpo__metrics_write(const struct hpo__metrics *m, FILE *f, unsigned open_connections);

#endif
