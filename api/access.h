/*
** access.h: who may do what (docs/API.md "Access and TLS"): the settings of
** access, TLS and connection limits, and the decisions http.c asks for on
** each request: authenticate the bearer token, check its role against the
** method and path, keep a scoped token to the studies of its prefix.
**
** No MHD here: http.c passes the header values in, so the rules can be
** tested and fuzzed alone.
*/
#ifndef HPO_ACCESS_H
#define HPO_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "../core/error.h"
#include "tokens.h"

/* The settings (config keys and flags of the same names, daemon/config.c). */
struct hpo_access_config {
    char tokens[4096];          /* tokens: the tokens file; "" = no tokens */
    char tls_cert[4096];        /* tls-cert: PEM certificate chain; "" = plain HTTP */
    char tls_key[4096];         /* tls-key: PEM private key */
    bool allow_unauthenticated; /* allow-unauthenticated: no tokens on a non-loopback address */
    unsigned max_connections;   /* max-connections (1024) */
    unsigned max_per_client;    /* max-connections-per-client (0 = a quarter of the above) */
    unsigned head_timeout_s;    /* request-head-timeout (10 s, from the head's first byte) */
    unsigned idle_timeout_s;    /* connection-timeout (30 s of no traffic) */
};

/* Fill the defaults. */
void hpo_access_config_init(struct hpo_access_config *a);

/*
** Apply one `key value` setting if it is one of the above: 0 when applied,
** -EINVAL with msg filled when the value is bad, 1 when `key` is not ours.
*/
int hpo_access_config_set(struct hpo_access_config *a, const char *key, const char *value,
        char *msg, size_t msg_len);

/* The per-client cap in effect: max_per_client, or a quarter of max_connections (>= 1). */
unsigned hpo_access_per_client(const struct hpo_access_config *a);

/* Whether a numeric listen address is loopback (127.0.0.0/8, ::1). */
bool hpo_access_is_loopback(const char *host);

/* Who sent a request, once authenticated. */
struct hpo_principal {
    char name[HPO_TOKEN_NAME_MAX + 1];     /* the token's name; "-" without tokens */
    enum hpo_role role;                    /* HPO_ROLE_ADMIN without tokens */
    char prefix[HPO_TOKEN_PREFIX_MAX + 1]; /* "" = every study */
};

/* What http.c knows of a request when its head is complete. */
struct hpo_access_request {
    const char *path;          /* decoded path */
    const char *method;        /* "GET", ... */
    const char *authorization; /* the Authorization header, or NULL */
    const char *study;         /* the {study} path segment, or NULL */
    bool routed;               /* the path is a route and allows the method */
    enum hpo_role need;        /* routed: the role its row of api/routes.def needs */
    bool healthz;              /* the path is /healthz */
};

/*
** Decide a request. `tokens` NULL: no tokens configured, everything is
** allowed as it always was. Returns true with *ret filled, or false with
** `err` filled: unauthenticated (401; the reply needs WWW-Authenticate:
** Bearer), permission_denied (403) or not_found (404, a study outside the
** token's prefix, worded as for a study that does not exist).
*/
bool hpo_access_decide(const struct hpo_tokens *tokens, const struct hpo_access_request *rq,
        struct hpo_principal *ret, struct hpo_error *err);

/*
** Creating a study: a scoped token may only create names inside its prefix.
** `body` is the parsed request (NULL = {}); a missing or non-string name is
** left for the service to reject. Returns false with a 403 in `err`.
*/
bool hpo_access_may_create(const struct hpo_principal *who, const json_t *body,
        struct hpo_error *err);

/* Remove from a `{"studies": [...]}` reply the studies a scoped token does not see. */
void hpo_access_filter_studies(const struct hpo_principal *who, json_t *reply);

#endif
