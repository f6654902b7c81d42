/*
** api-int.h: definitions shared inside api/ and with its fuzz target
** (tests/fuzz/fuzz-router.c), never included by another module: the pure
** parts of http.c's routing, which need no MHD connection.
*/
#ifndef HPO_API_INT_H
#define HPO_API_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../service/service.h"
#include "tokens.h"

/* The paths of api/routes.def (several rows, one per method, may share one). */
enum hpo__route_id {
    HPO__R_NONE,
    HPO__R_HEALTHZ,
    HPO__R_METRICS,
    HPO__R_SAMPLERS,
    HPO__R_STUDIES,
    HPO__R_STUDY,
    HPO__R_ASK,
    HPO__R_BEST,
    HPO__R_TRIALS,
    HPO__R_TRIAL,
    HPO__R_TELL,
    HPO__R_REPORT,
    HPO__R_HEARTBEAT,
    HPO__R_PARAM,
    HPO__R_GRADIENT,
    HPO__R_PARETO,
    HPO__R_ADMIN_BACKUP,
    HPO__R_COLUMNS,
    HPO__R_CURVES,
    HPO__R_IMPORTANCES,
    HPO__R_PAGE,         /* the dashboard (api/static.c): / */
    HPO__R_PAGE_STUDIES, /* /studies */
    HPO__R_PAGE_STUDY,   /* /studies/{study} */
    HPO__R_PAGE_TRIAL,   /* /studies/{study}/trials/{number} */
    HPO__R_ASSET,        /* /assets/<tag>/<file> */
    HPO__R_EVENTS,       /* the dashboard's event stream (api/events.c) */
};
#define HPO__R_COUNT (HPO__R_EVENTS + 1)

/* The answers the HTTP layer gives itself (a row's op beyond the service's). */
enum {
    HPO__OP_HEALTHZ = HPO_SERVICE_OP_COUNT,
    HPO__OP_METRICS,
    HPO__OP_SAMPLERS,
    HPO__OP_BACKUP,
    HPO__OP_STATIC, /* a dashboard file (api/static.c) */
    HPO__OP_EVENTS, /* a study's server-sent events (api/events.c) */
};

/* A row's flags. */
#define HPO__F_LANE 1u   /* changes its study: runs in the study's lane (dispatch) */
#define HPO__F_BINARY 2u /* takes an application/octet-stream body */

/* One row of api/routes.def. */
struct hpo__route_row {
    enum hpo__route_id id;
    const char *method;
    const char *template; /* "/v1/studies/{study}/trials/{number}/tell" */
    int op;               /* enum hpo_service_op, or HPO__OP_* */
    unsigned flags;       /* HPO__F_* */
    enum hpo_role role;     /* what the caller's token needs (tokens.h; access.c) */
    const char *reply_type; /* Content-Type of a reply that is not JSON; NULL: JSON only */
};

/* The table, in routes.def's order, and its length. */
extern const struct hpo__route_row hpo__routes[];
extern const size_t hpo__n_routes;

/*
** The row of route `id` for `method` (HEAD finds the GET row), or NULL when
** the path has no such method (405).
*/
const struct hpo__route_row *hpo__route_row(enum hpo__route_id id, const char *method);

/* A route's path template ("/v1/studies/{study}/ask"); "unmatched" for HPO__R_NONE. */
const char *hpo__route_template(enum hpo__route_id id);

/* What a path names. `study` and `name` are malloc'd (or NULL): free them. */
struct hpo__route {
    enum hpo__route_id route;
    char *study;    /* the {study} segment of a /v1/studies/... path */
    char *name;     /* the {name} segment of a params/gradient path */
    int64_t number; /* the {number} segment, valid when number_ok */
    bool number_ok;
};

/*
** Match a raw request path (as the client sent it, before any percent-
** decoding, without the query string) into `ret`, which must start zeroed.
** Each segment is decoded on its own, so "%2F" never splits a segment;
** {study} and {name} must then be names docs/REFERENCE.md allows, or no route matches.
** Returns the allowed methods ("GET, HEAD, POST"), or NULL when no route
** matches (ret->route is then HPO__R_NONE, study and name NULL). NULL on OOM
** as well.
*/
const char *hpo__api_route(const char *path, struct hpo__route *ret);

/*
** Percent-decode one path segment in place. False (segment left partly
** decoded) for a '%' without two hex digits after it and for "%00".
*/
bool hpo__api_decode_segment(char *seg);

/* Parse a non-negative decimal of 1 to 18 digits (a trial number, limit, offset). */
bool hpo__api_parse_number(const char *s, int64_t *ret);

/* Whether `method` is one of the comma-separated `allow` list (NULL: none). */
bool hpo__api_method_allowed(const char *allow, const char *method);

/* Whether a Content-Type is application/octet-stream (parameters allowed). */
bool hpo__api_is_binary_type(const char *type);

#endif
