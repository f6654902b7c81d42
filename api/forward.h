/*
** forward.h: proxying a request to the daemon that owns its study (several
** daemons on one PostgreSQL, docs/CLUSTER.md), over HTTP(S) with libcurl.
**
** hpo_forward blocks the calling worker thread for the owner's answer, on an
** easy handle taken from a pool whose handles keep their connections open
** between calls (keep-alive), so a forwarded request costs one extra hop,
** not a TCP (or TLS) handshake.
*/
#ifndef HPO_FORWARD_H
#define HPO_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/error.h"

/* The header that marks a forwarded request; its value is the cluster token. */
#define HPO_FORWARD_HEADER "X-Hpod-Forwarded"

struct hpo_forward_request {
    const char *base_url;      /* the owner's advertised URL: "http://node2:8080" */
    const char *method;
    const char *target;        /* path and query, as the client sent them */
    const char *authorization; /* passed on unchanged, or NULL */
    const char *content_type;  /* or NULL */
    const char *accept;        /* or NULL */
    const char *mark;          /* the forwarded mark's value (the cluster token) */
    const void *body;
    size_t len;
    /* Asked about once a second while the owner is silent: false gives up (503). Or NULL. */
    bool (*alive)(void *ctx, const char *base_url);
    void *alive_ctx;
};

struct hpo_forward_reply {
    long status;
    char *body; /* malloc'd (NUL-terminated), len bytes */
    size_t len;
    char content_type[96];
    char total[24];   /* X-Total-Count, "" none */
    char *link;       /* Link (malloc'd), NULL none */
    char owner[256];  /* X-Hpod-Owner, "" none */
    bool unsent;      /* failed before the request left (no connection): safe to send again */
};

/* Call once before any thread forwards, and at the end (after the last forward). */
int hpo_forward_init(void);
void hpo_forward_cleanup(void);

/*
** Send the request to the owner and wait for its whole reply. Returns 0 with
** `ret` filled (any status: the owner's reply, passed on unchanged), or -EIO
** with `err` (unavailable: the owner could not be reached or broke off).
** Free `ret` with hpo_forward_reply_free either way. Any thread.
*/
int hpo_forward(const struct hpo_forward_request *rq, struct hpo_forward_reply *ret,
        struct hpo_error *err);
void hpo_forward_reply_free(struct hpo_forward_reply *r);

/* /metrics: forwarded requests, failures, and their latency (seconds). */
int hpo_forward_metrics_write(FILE *f);

#endif
