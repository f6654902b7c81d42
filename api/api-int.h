/*
** api-int.h: definitions shared inside api/ and with its fuzz target
** (tests/fuzz/fuzz-router.c), never included by another module: the pure
** parts of http.c's routing, which need no MHD connection.
*/
#ifndef HPO_API_INT_H
#define HPO_API_INT_H

#include <stdbool.h>
#include <stdint.h>

/* The routes (http.c switches on them). */
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
    HPO__R_ADMIN_BACKUP,
};

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
