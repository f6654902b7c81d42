/*
** cluster.h: the daemon's side of several daemons on one PostgreSQL
** (docs/CLUSTER.md): routing requests (api.h's route and gather), /metrics
** and /healthz parts.
*/
#ifndef HPOD_CLUSTER_H
#define HPOD_CLUSTER_H

#include <stdio.h>

#include "../api/api.h"

struct hpo_storage;
struct hpo_service;
struct hpo_cluster;

struct hpo_daemon_cluster {
    struct hpo_cluster *cluster; /* NULL: one daemon (SQLite) */
    struct hpo_service *service;
    char mark[256]; /* the forwarded mark: the cluster token, or "1" without one */
};

/*
** Join the daemons on a PostgreSQL store as `url`: 0; -ENOTSUP for a store
** that is not shared (SQLite); or a negative errno with `msg`.
*/
int hpo_daemon_cluster_start(struct hpo_daemon_cluster *dc, struct hpo_storage *st,
        struct hpo_service *svc, const char *url, unsigned lease_ms, const char *token_file,
        char *msg, size_t msg_len);

/* Release every study and leave (after the last request). Accepts a cluster never started. */
void hpo_daemon_cluster_stop(struct hpo_daemon_cluster *dc);

/*
** Load every study this daemon owns and is not in memory yet, and drop from
** memory those another daemon owns now. Worker thread (the reaper's tick, a
** study list).
*/
void hpo_daemon_cluster_sync(struct hpo_daemon_cluster *dc);

/* api.h's route and gather (worker threads). */
int hpo_daemon_cluster_route(struct hpo_daemon_cluster *dc, struct hpo_api_call *call);
/* Whether `mark` (an X-Hpod-Forwarded value) is the cluster token. */
bool hpo_daemon_cluster_marked(const struct hpo_daemon_cluster *dc, const char *mark);
void hpo_daemon_cluster_gather(struct hpo_daemon_cluster *dc, struct hpo_api_call *call,
        void *reply);

/* The cluster's /metrics series; 0 or -EIO. */
int hpo_daemon_cluster_metrics(struct hpo_daemon_cluster *dc, FILE *f);

/* The cluster's /healthz object (a new json_t reference). */
void *hpo_daemon_cluster_health(struct hpo_daemon_cluster *dc);

#endif
