/*
** access.c: access settings and per-request decisions (access.h).
**
** A routed request needs the role of its row in api/routes.def (http.c
** passes it in): GET and HEAD need read, DELETE of a study and every
** /v1/admin/ row need admin, the other writes (POST, PUT, PATCH) need write.
** An unrouted path under /v1/admin/ needs admin as well, whatever the method.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access.h"

static int fail(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

void hpo_access_config_init(struct hpo_access_config *a)
{
    memset(a, 0, sizeof(*a));
    a->max_connections = 1024;
    a->max_per_client = 0;
    a->head_timeout_s = 10;
    a->idle_timeout_s = 30;
}

static int set_path(char *dst, size_t cap, const char *key, const char *value, char *msg,
        size_t len)
{
    if (strlen(value) >= cap) {
        return fail(msg, len, "%s: path longer than %zu characters", key, cap - 1);
    }
    snprintf(dst, cap, "%s", value);
    return 0;
}

static int set_uint(unsigned *dst, const char *key, const char *value, unsigned long lo,
        unsigned long hi, char *msg, size_t len)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || n < lo || n > hi) {
        return fail(msg, len, "%s: '%s' must be an integer from %lu to %lu", key, value, lo, hi);
    }
    *dst = (unsigned)n;
    return 0;
}

int hpo_access_config_set(struct hpo_access_config *a, const char *key, const char *value,
        char *msg, size_t len)
{
    if (strcmp(key, "tokens") == 0) {
        return set_path(a->tokens, sizeof(a->tokens), key, value, msg, len);
    }
    if (strcmp(key, "tls-cert") == 0) {
        return set_path(a->tls_cert, sizeof(a->tls_cert), key, value, msg, len);
    }
    if (strcmp(key, "tls-key") == 0) {
        return set_path(a->tls_key, sizeof(a->tls_key), key, value, msg, len);
    }
    if (strcmp(key, "allow-unauthenticated") == 0) {
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0) {
            a->allow_unauthenticated = true;
            return 0;
        }
        if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0) {
            a->allow_unauthenticated = false;
            return 0;
        }
        return fail(msg, len, "allow-unauthenticated: '%s' must be true or false", value);
    }
    if (strcmp(key, "max-connections") == 0) {
        return set_uint(&a->max_connections, key, value, 1, 1000000, msg, len);
    }
    if (strcmp(key, "max-connections-per-client") == 0) {
        return set_uint(&a->max_per_client, key, value, 0, 1000000, msg, len);
    }
    if (strcmp(key, "request-head-timeout") == 0) {
        return set_uint(&a->head_timeout_s, key, value, 1, 3600, msg, len);
    }
    if (strcmp(key, "connection-timeout") == 0) {
        return set_uint(&a->idle_timeout_s, key, value, 1, 86400, msg, len);
    }
    return 1;
}

unsigned hpo_access_per_client(const struct hpo_access_config *a)
{
    unsigned n = a->max_per_client != 0 ? a->max_per_client : a->max_connections / 4;

    return n > 0 ? n : 1;
}

bool hpo_access_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&a6);
    }
    return false;
}

/* Whether `path` is `base` or under it ("/v1" matches "/v1", "/v1/..."). */
static bool under(const char *path, const char *base)
{
    size_t n = strlen(base);

    return strncmp(path, base, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The role a request needs: its row's; unrouted, admin under /v1/admin, else none. */
static enum hpo_role required_role(const struct hpo_access_request *rq)
{
    if (rq->routed) {
        return rq->need;
    }
    return under(rq->path, "/v1/admin") ? HPO_ROLE_ADMIN : HPO_ROLE_NONE;
}

bool hpo_access_decide(const struct hpo_tokens *tokens, const struct hpo_access_request *rq,
        struct hpo_principal *ret, struct hpo_error *err)
{
    const struct hpo_token *tok;
    const char *secret;
    size_t n = 0;
    enum hpo_role need;

    snprintf(ret->name, sizeof(ret->name), "-");
    ret->role = HPO_ROLE_ADMIN;
    ret->prefix[0] = '\0';
    if (tokens == NULL) {
        return true;
    }
    ret->role = HPO_ROLE_NONE;
    /* /healthz never needs a token; neither do paths outside /v1 and /metrics (404s). */
    if (rq->healthz || !(under(rq->path, "/v1") || under(rq->path, "/metrics"))) {
        return true;
    }
    secret = hpo_tokens_bearer(rq->authorization, &n);
    if (secret == NULL) {
        hpo_error_set(err, -EACCES, HPO_UNAUTHENTICATED, NULL,
                "this server needs a token: send Authorization: Bearer <token>");
        return false;
    }
    tok = hpo_tokens_lookup(tokens, secret, n);
    if (tok == NULL) {
        hpo_error_set(err, -EACCES, HPO_UNAUTHENTICATED, NULL, "the token is not known");
        return false;
    }
    snprintf(ret->name, sizeof(ret->name), "%s", tok->name);
    ret->role = tok->role;
    snprintf(ret->prefix, sizeof(ret->prefix), "%s", tok->prefix);
    need = required_role(rq);
    /* Unknown routes and methods get their 404 and 405 (admin paths are known to need admin). */
    if (!rq->routed && need != HPO_ROLE_ADMIN) {
        return true;
    }
    if (tok->role < need) {
        hpo_error_set(err, -EPERM, HPO_PERMISSION_DENIED, NULL,
                "token '%s' has role %s; %s %.200s needs %s", tok->name,
                hpo_role_name(tok->role), rq->method, rq->path, hpo_role_name(need));
        return false;
    }
    if (rq->study != NULL && !hpo_tokens_sees(tok->prefix, rq->study)) {
        /* As the service words a study that does not exist: out of scope is invisible. */
        hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL, "no study named '%.128s'", rq->study);
        return false;
    }
    return true;
}

bool hpo_access_may_create(const struct hpo_principal *who, const json_t *body,
        struct hpo_error *err)
{
    const json_t *name = body != NULL ? json_object_get(body, "name") : NULL;

    if (who->prefix[0] == '\0' || !json_is_string(name)) {
        return true;
    }
    if (hpo_tokens_sees(who->prefix, json_string_value(name))) {
        return true;
    }
    hpo_error_set(err, -EPERM, HPO_PERMISSION_DENIED, "name",
            "token '%s' may only create studies whose names start with '%s'", who->name,
            who->prefix);
    return false;
}

void hpo_access_filter_studies(const struct hpo_principal *who, json_t *reply)
{
    json_t *arr = reply != NULL ? json_object_get(reply, "studies") : NULL;
    json_t *kept;

    if (who->prefix[0] == '\0' || !json_is_array(arr)) {
        return;
    }
    kept = json_array();
    if (kept == NULL) {
        json_array_clear(arr); /* out of memory: show nothing rather than too much */
        return;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *st = json_array_get(arr, i);
        const json_t *name = json_object_get(st, "name");
        if (json_is_string(name) && hpo_tokens_sees(who->prefix, json_string_value(name))) {
            json_array_append(kept, st);
        }
    }
    json_object_set_new(reply, "studies", kept);
}
