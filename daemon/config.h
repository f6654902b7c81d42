/*
** config.h: the daemon's configuration: defaults < --config file < HPOD_*
** environment < command-line flags, all with the same names.
*/
#ifndef HPO_CONFIG_H
#define HPO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../api/access.h"

struct hpo_config {
    char host[64];      /* from listen */
    unsigned port;      /* from listen */
    char db[4096];
    bool synchronous_full;
    int threads;        /* worker threads (daemon/dispatch.c) */
    int http_threads;   /* MHD's event-loop threads; 0: one per CPU core, at most 8 */
    int log_level;      /* syslog priority */
    unsigned slow_request_ms;     /* requests slower than this are logged (0: none) */
    unsigned metrics_max_studies; /* studies with their own /metrics series; the rest "(other)" */
    uint64_t max_vector_memory; /* bytes; 0 = the default (main.c), UINT64_MAX = unlimited */
    /* HTTP body limits (defaults only, no key yet; 413 beyond). Connections: access below. */
    size_t json_limit;     /* 1 MiB */
    size_t binary_limit;   /* 256 MiB */
    /* Several daemons on PostgreSQL (docs/CLUSTER.md). */
    char advertise[256];          /* how the others reach this one; "": from listen */
    char cluster_token_file[4096]; /* the forwarded mark's secret; "": none */
    unsigned lease_ms;            /* a daemon silent this long is gone (3000) */
    char config_file[4096];
    bool check_only;    /* --check-config */
    bool show_help;
    bool show_version;
    struct hpo_access_config access; /* tokens, TLS, connection limits (api/access.h) */
};

/*
** Fill `cfg` from every source. Returns 0, or -EINVAL after writing a
** message naming the faulty key into `msg`.
*/
int hpo_config_load(struct hpo_config *cfg, int argc, char **argv, char *msg, size_t msg_len);

/* Apply one `key value` setting (for SIGHUP reload of reloadable keys too). */
int hpo_config_set(struct hpo_config *cfg, const char *key, const char *value, char *msg,
        size_t msg_len);

/* Print the usage text to stdout. */
void hpo_config_usage(const char *prog);

#endif
