/*
** routes.c: the route table (routes.def) and the pure parts of routing:
** raw-path matching segment by segment, the Allow header, method and
** content-type checks (api-int.h). No MHD: the router's fuzz target links it.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/options.h"
#include "../core/space.h"
#include "../core/util.h"
#include "api-int.h"

const struct hpo__route_row hpo__routes[] = {
#define ROUTE(id, method, template, op, flags, role, reply) \
    { id, method, template, op, flags, role, reply },
#include "routes.def"
#undef ROUTE
};
const size_t hpo__n_routes = sizeof(hpo__routes) / sizeof(hpo__routes[0]);

#define MAX_SEGS 8

static size_t split_path(char *path, char **segs)
{
    size_t n = 0;
    char *p = path;

    if (*p == '/') {
        p++;
    }
    while (*p != '\0' && n < MAX_SEGS) {
        char *slash = strchr(p, '/');
        segs[n++] = p;
        if (slash == NULL) {
            break;
        }
        *slash = '\0';
        p = slash + 1;
        if (*p == '\0') {
            break; /* one trailing slash is tolerated */
        }
    }
    if (*p != '\0' && n == MAX_SEGS && strchr(p, '/') != NULL) {
        return MAX_SEGS + 1;
    }
    return n;
}

bool hpo__api_parse_number(const char *s, int64_t *ret)
{
    return hpo_parse_count(s, ret);
}

bool hpo__api_decode_segment(char *seg)
{
    char *out = seg;

    for (const char *in = seg; *in != '\0'; in++) {
        if (*in != '%') {
            *out++ = *in;
            continue;
        }
        int hi = hpo_hex_digit(in[1]), lo = hi < 0 ? -1 : hpo_hex_digit(in[2]);
        if (lo < 0) {
            return false; /* "%" not followed by two hex digits */
        }
        if (hi == 0 && lo == 0) {
            return false; /* %00 would cut the segment short */
        }
        *out++ = (char)(hi * 16 + lo);
        in += 2;
    }
    *out = '\0';
    return true;
}

/* A path's segments, each percent-decoded once (ok false: a bad escape or %00). */
struct segs {
    char *copy;
    char *seg[MAX_SEGS + 1];
    bool ok[MAX_SEGS + 1];
    size_t n;
};

/* Whether decoded segment k may be a {study}, {number} or {name}: a name docs/REFERENCE.md allows. */
static bool name_ok(const struct segs *p, size_t k)
{
    return p->ok[k] && hpo_name_valid(p->seg[k]);
}

/*
** Match one template against the segments: literals equal to the decoded
** segment, {study}, {number} and {name} any name docs/REFERENCE.md allows
** (so that no decoded byte, NUL or '/', can name something else). Sets the
** index of each capture in cap[] (study, number, name; -1 none).
*/
static bool match(const char *template, const struct segs *p, long cap[3])
{
    static const char *const names[3] = { "{study}", "{number}", "{name}" };
    const char *t = template + 1;
    size_t k = 0;

    cap[0] = cap[1] = cap[2] = -1;
    for (; *t != '\0'; k++) {
        size_t n = strcspn(t, "/");
        bool literal = true;
        if (k >= p->n) {
            return false;
        }
        for (size_t c = 0; c < 3; c++) {
            if (n == strlen(names[c]) && strncmp(t, names[c], n) == 0) {
                if (!name_ok(p, k)) {
                    return false;
                }
                cap[c] = (long)k;
                literal = false;
            }
        }
        if (literal && (!p->ok[k] || strlen(p->seg[k]) != n || strncmp(p->seg[k], t, n) != 0)) {
            return false;
        }
        t += n + (t[n] == '/');
    }
    return k == p->n;
}

/*
** Built once from the table: "GET, HEAD, POST", the methods of route id's
** rows in one fixed order; and each row's segment count, so a path is
** matched only against the templates as long as it is.
*/
static char allow_text[HPO__R_COUNT][48];
static size_t row_segs[sizeof(hpo__routes) / sizeof(hpo__routes[0])];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
    for (size_t i = 0; i < hpo__n_routes; i++) {
        for (const char *c = hpo__routes[i].template; *c != '\0'; c++) {
            row_segs[i] += *c == '/';
        }
        if (strcmp(hpo__routes[i].template, "/") == 0) {
            row_segs[i] = 0; /* the root: no segment (the dashboard's page) */
        }
    }
    static const char *const order[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE" };

    for (size_t id = 1; id < HPO__R_COUNT; id++) {
        size_t len = 0;
        for (size_t m = 0; m < sizeof(order) / sizeof(order[0]); m++) {
            if (hpo__route_row((enum hpo__route_id)id, order[m]) != NULL) {
                len += (size_t)snprintf(allow_text[id] + len, sizeof(allow_text[id]) - len, "%s%s",
                        len > 0 ? ", " : "", order[m]);
            }
        }
    }
}

const struct hpo__route_row *hpo__route_row(enum hpo__route_id id, const char *method)
{
    bool head = strcmp(method, "HEAD") == 0;

    for (size_t i = 0; i < hpo__n_routes; i++) {
        const struct hpo__route_row *r = &hpo__routes[i];
        if (r->id == id && (strcmp(r->method, method) == 0 || (head && strcmp(r->method, "GET") == 0))) {
            return r;
        }
    }
    return NULL;
}

const char *hpo__route_template(enum hpo__route_id id)
{
    for (size_t i = 0; i < hpo__n_routes; i++) {
        if (hpo__routes[i].id == id) {
            return hpo__routes[i].template;
        }
    }
    return "unmatched";
}

/* Match the path (api-int.h); the caller frees ret->study and ret->name. */
const char *hpo__api_route(const char *url, struct hpo__route *ret)
{
    struct segs p = { .copy = strdup(url) };
    enum hpo__route_id last = HPO__R_NONE;

    ret->route = HPO__R_NONE;
    if (p.copy == NULL) {
        return NULL;
    }
    pthread_once(&table_once, build_table);
    p.n = split_path(p.copy, p.seg);
    for (size_t k = 0; k < p.n && k < MAX_SEGS; k++) {
        p.ok[k] = hpo__api_decode_segment(p.seg[k]);
    }
    for (size_t i = 0; i < hpo__n_routes && ret->route == HPO__R_NONE; i++) {
        long cap[3];
        if (hpo__routes[i].id == last || row_segs[i] != p.n) {
            continue; /* the same path as the row before, or another length */
        }
        last = hpo__routes[i].id;
        if (!match(hpo__routes[i].template, &p, cap)) {
            continue;
        }
        ret->route = hpo__routes[i].id;
        ret->study = cap[0] >= 0 ? strdup(p.seg[cap[0]]) : NULL;
        ret->number_ok = cap[1] >= 0 && hpo__api_parse_number(p.seg[cap[1]], &ret->number);
        ret->name = cap[2] >= 0 ? strdup(p.seg[cap[2]]) : NULL;
        if ((cap[0] >= 0 && ret->study == NULL) || (cap[2] >= 0 && ret->name == NULL)) {
            ret->route = HPO__R_NONE; /* out of memory */
        }
    }
    if (ret->route == HPO__R_NONE) {
        free(ret->study);
        free(ret->name);
        ret->study = NULL;
        ret->name = NULL;
        ret->number_ok = false;
    }
    free(p.copy);
    return ret->route != HPO__R_NONE ? allow_text[ret->route] : NULL;
}

bool hpo__api_method_allowed(const char *allow, const char *method)
{
    size_t n = strlen(method);

    for (const char *p = allow; p && *p;) {
        if (strncmp(p, method, n) == 0 && (p[n] == '\0' || p[n] == ',')) {
            return true;
        }
        p = strchr(p, ',');
        if (p != NULL) {
            p += 2;
        }
    }
    return false;
}

bool hpo__api_is_binary_type(const char *type)
{
    size_t n = strlen("application/octet-stream");

    return type != NULL && strncasecmp(type, "application/octet-stream", n) == 0 &&
            (type[n] == '\0' || type[n] == ';' || type[n] == ' ');
}

