/*
** fuzz-router.c: libFuzzer target for the HTTP router of api/http.c, through
** the pure functions api/api-int.h exposes (no MHD connection needed).
**
** The input is up to four lines: a raw path (as the client sent it, before
** any percent-decoding, so it may hold any byte but NUL), a method, a
** Content-Type and a query string "k=v&k=v". The path is routed and the
** result checked against the routes of docs/REFERENCE.md: {study} and {name} are always
** valid names (no NUL, '/' or other byte outside A-Z a-z 0-9 _ . -, whatever
** the escapes); a matched path rebuilt from its parts, plain or with {study}
** fully percent-encoded, routes the same way; the method, content-type and
** query values go through the helpers and are compared with simple reference
** implementations.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../api/api-int.h"
#include "../../core/history.h"
#include "fuzz.h"

/* Reference: 1 to 18 ASCII digits. */
static int ref_number(const char *s, int64_t *ret)
{
    size_t n = strlen(s);
    int64_t v = 0;

    if (n == 0 || n > 18) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return 1;
}

static void check_number(const char *s)
{
    int64_t a = -1, b = -2;
    int ok = hpo__api_parse_number(s, &a);

    CHECK(ok == ref_number(s, &b));
    if (ok) {
        CHECK(a == b && a >= 0 && a < 1000000000000000000LL);
    }
}

/* Reference: `method` equals one item of the ", "-separated list. */
static int ref_allowed(const char *allow, const char *method)
{
    const char *p = allow;

    if (allow == NULL) {
        return 0;
    }
    for (;;) {
        const char *end = strstr(p, ", ");
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (strlen(method) == n && strncmp(p, method, n) == 0) {
            return 1;
        }
        if (end == NULL) {
            return 0;
        }
        p = end + 2;
    }
}

/* The method lists routes may answer, and which route each belongs to. */
static const char *expected_allow(enum hpo__route_id r)
{
    switch (r) {
    case HPO__R_HEALTHZ:
    case HPO__R_METRICS:
    case HPO__R_SAMPLERS:
    case HPO__R_BEST:
    case HPO__R_PARETO:
    case HPO__R_PARAM:
        return "GET, HEAD";
    case HPO__R_ADMIN_BACKUP:
        return "GET, HEAD";
    case HPO__R_TRIAL:
        return "GET, HEAD, PATCH";
    case HPO__R_STUDIES:
    case HPO__R_TRIALS:
        return "GET, HEAD, POST";
    case HPO__R_STUDY:
        return "GET, HEAD, PATCH, DELETE";
    case HPO__R_ASK:
    case HPO__R_TELL:
    case HPO__R_REPORT:
    case HPO__R_HEARTBEAT:
        return "POST";
    case HPO__R_GRADIENT:
        return "PUT";
    case HPO__R_COLUMNS:
    case HPO__R_CURVES:
    case HPO__R_EVENTS:
    case HPO__R_IMPORTANCES:
    case HPO__R_PAGE:
    case HPO__R_PAGE_STUDIES:
    case HPO__R_PAGE_STUDY:
    case HPO__R_PAGE_TRIAL:
    case HPO__R_ASSET:
        return "GET, HEAD";
    case HPO__R_NONE:
        break;
    }
    return NULL;
}

/* Reference: A-Z a-z 0-9 _ . -, 1 to 128 of them. */
static int ref_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 128) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strchr("_.-", s[i]) == NULL && !(s[i] >= '0' && s[i] <= '9') &&
                !(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z')) {
            return 0;
        }
    }
    return 1;
}

/* Every byte of `s` as %XX (upper or lower case hex by position). */
static char *encode_all(const char *s)
{
    char *out = malloc(3 * strlen(s) + 1), *o = out;

    CHECK(out != NULL);
    for (size_t i = 0; s[i] != '\0'; i++) {
        snprintf(o, 4, i % 2 ? "%%%02x" : "%%%02X", (unsigned char)s[i]);
        o += 3;
    }
    *o = '\0';
    return out;
}

/* Rebuild a canonical path for a matched route; NULL when it cannot be (no number). */
static char *rebuild(const struct hpo__route *r, const char *study, char *buf, size_t len)
{
    static const char *const tails[] = { [HPO__R_TELL] = "tell", [HPO__R_REPORT] = "report",
        [HPO__R_HEARTBEAT] = "heartbeat", [HPO__R_PARAM] = "params",
        [HPO__R_GRADIENT] = "gradient" };

    switch (r->route) {
    case HPO__R_HEALTHZ:
        snprintf(buf, len, "/healthz");
        return buf;
    case HPO__R_METRICS:
        snprintf(buf, len, "/metrics");
        return buf;
    case HPO__R_SAMPLERS:
        snprintf(buf, len, "/v1/samplers");
        return buf;
    case HPO__R_ADMIN_BACKUP:
        snprintf(buf, len, "/v1/admin/backup");
        return buf;
    case HPO__R_STUDIES:
        snprintf(buf, len, "/v1/studies");
        return buf;
    case HPO__R_STUDY:
        snprintf(buf, len, "/v1/studies/%s", study);
        return buf;
    case HPO__R_ASK:
        snprintf(buf, len, "/v1/studies/%s/ask", study);
        return buf;
    case HPO__R_BEST:
        snprintf(buf, len, "/v1/studies/%s/best", study);
        return buf;
    case HPO__R_TRIALS:
        snprintf(buf, len, "/v1/studies/%s/trials", study);
        return buf;
    case HPO__R_COLUMNS:
        snprintf(buf, len, "/v1/studies/%s/columns", study);
        return buf;
    case HPO__R_CURVES:
        snprintf(buf, len, "/v1/studies/%s/curves", study);
        return buf;
    case HPO__R_EVENTS:
        snprintf(buf, len, "/v1/studies/%s/events", study);
        return buf;
    case HPO__R_IMPORTANCES:
        snprintf(buf, len, "/v1/studies/%s/importances", study);
        return buf;
    case HPO__R_PAGE:
        snprintf(buf, len, "/");
        return buf;
    case HPO__R_PAGE_STUDIES:
        snprintf(buf, len, "/studies");
        return buf;
    case HPO__R_PAGE_STUDY:
        snprintf(buf, len, "/studies/%s", study);
        return buf;
    case HPO__R_ASSET:
        snprintf(buf, len, "/assets/tag/%s", r->name);
        return buf;
    default:
        break;
    }
    if (r->route == HPO__R_PAGE_TRIAL) {
        if (!r->number_ok) {
            return NULL;
        }
        snprintf(buf, len, "/studies/%s/trials/%lld", study, (long long)r->number);
        return buf;
    }
    switch (r->route) {
    default:
        break;
    }
    if (!r->number_ok) {
        return NULL;
    }
    if (r->route == HPO__R_TRIAL) {
        snprintf(buf, len, "/v1/studies/%s/trials/%lld", study, (long long)r->number);
    } else if (r->route == HPO__R_PARAM || r->route == HPO__R_GRADIENT) {
        snprintf(buf, len, "/v1/studies/%s/trials/%lld/%s/%s", study, (long long)r->number,
                tails[r->route], r->name);
    } else {
        snprintf(buf, len, "/v1/studies/%s/trials/%lld/%s", study, (long long)r->number,
                tails[r->route]);
    }
    return buf;
}

static void check_route(const char *path)
{
    struct hpo__route r = { 0 };
    const char *allow = hpo__api_route(path, &r);

    CHECK(r.route < HPO__R_COUNT);
    CHECK((allow != NULL) == (r.route != HPO__R_NONE));
    if (allow != NULL) {
        CHECK(strcmp(allow, expected_allow(r.route)) == 0);
    } else {
        CHECK(r.study == NULL && r.name == NULL && !r.number_ok);
    }
    /* Study routes name a valid study, binary routes a valid param: never a NUL or '/'. */
    if ((r.route >= HPO__R_STUDY && r.route <= HPO__R_GRADIENT) ||
            (r.route >= HPO__R_COLUMNS && r.route <= HPO__R_IMPORTANCES) || r.route == HPO__R_PAGE_STUDY ||
            r.route == HPO__R_PAGE_TRIAL) {
        CHECK(r.study != NULL && ref_name(r.study));
    }
    if (r.route == HPO__R_PARAM || r.route == HPO__R_GRADIENT || r.route == HPO__R_ASSET) {
        CHECK(r.name != NULL && ref_name(r.name));
    }
    if (r.number_ok) {
        CHECK(r.number >= 0 && r.number < 1000000000000000000LL);
    }
    /* No route is matched by a path that does not start like one (escapes aside). */
    if (r.route >= HPO__R_SAMPLERS && (r.route <= HPO__R_IMPORTANCES) && strchr(path, '%') == NULL) {
        CHECK(strncmp(path[0] == '/' ? path + 1 : path, "v1/", 3) == 0);
    }
    /*
    ** A matched path rebuilt from its parts routes to the same parts, also with
    ** {study} written as escapes only.
    */
    for (int enc = 0; enc < 2 && allow != NULL; enc++) {
        char *study = r.study != NULL && enc ? encode_all(r.study) : NULL;
        size_t len = strlen(path) + 3 * (r.study ? strlen(r.study) : 0) + 64;
        char *buf = malloc(len);
        CHECK(buf != NULL);
        if ((enc == 0 || r.study != NULL) &&
                rebuild(&r, study != NULL ? study : r.study, buf, len) != NULL) {
            struct hpo__route again = { 0 };
            const char *allow2 = hpo__api_route(buf, &again);
            CHECK(allow2 == allow || (allow2 != NULL && strcmp(allow2, allow) == 0));
            CHECK(again.route == r.route);
            CHECK((again.study == NULL) == (r.study == NULL));
            CHECK(again.study == NULL || strcmp(again.study, r.study) == 0);
            CHECK((again.name == NULL) == (r.name == NULL));
            CHECK(again.name == NULL || strcmp(again.name, r.name) == 0);
            CHECK(again.number_ok == r.number_ok);
            CHECK(!again.number_ok || again.number == r.number);
            free(again.study);
            free(again.name);
        }
        free(buf);
        free(study);
    }
    /* Every segment goes through the number parser and the decoder too. */
    {
        char *copy = strdup(path), *save = NULL;
        CHECK(copy != NULL);
        for (char *seg = strtok_r(copy, "/", &save); seg != NULL;
                seg = strtok_r(NULL, "/", &save)) {
            check_number(seg);
            if (hpo__api_decode_segment(seg)) {
                CHECK(strlen(seg) <= strlen(path));
            }
        }
        free(copy);
    }
    free(r.study);
    free(r.name);
}

/* An RFC 9110 token: what MHD can hand over as a method (it splits the request line at spaces). */
static int is_token(const char *s)
{
    if (*s == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (strchr("!#$%&'*+-.^_`|~", *s) == NULL && !(*s >= '0' && *s <= '9') &&
                !(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z')) {
            return 0;
        }
    }
    return 1;
}

static void check_method(const char *method)
{
    static const char *const lists[] = { "GET, HEAD", "POST", "PUT", "GET, HEAD, POST",
        "GET, HEAD, DELETE", NULL };

    if (!is_token(method)) {
        return;
    }
    for (size_t i = 0; lists[i] != NULL; i++) {
        CHECK(hpo__api_method_allowed(lists[i], method) == (ref_allowed(lists[i], method) != 0));
    }
    CHECK(!hpo__api_method_allowed(NULL, method));
}

static void check_type(const char *type)
{
    const char *want = "application/octet-stream";
    size_t n = strlen(want);
    int ref = strncasecmp(type, want, n) == 0 &&
            (type[n] == '\0' || type[n] == ';' || type[n] == ' ');

    CHECK(hpo__api_is_binary_type(type) == (ref != 0));
    CHECK(!hpo__api_is_binary_type(NULL));
}

/* The trials list query: limit/offset numbers, state names, format. */
static void check_query(char *query)
{
    char *save = NULL;

    for (char *kv = strtok_r(query, "&", &save); kv != NULL; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        const char *v = eq != NULL ? eq + 1 : "";
        if (eq != NULL) {
            *eq = '\0';
        }
        if (strcmp(kv, "state") == 0) {
            int st = hpo_state_parse(v);
            CHECK(st >= -1 && st <= HPO_STATE_FAILED);
            CHECK(st < 0 || strcmp(hpo_state_name((enum hpo_state)st), v) == 0);
        } else {
            check_number(v);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Four NUL-terminated fields split at newlines; a NUL in the input ends a field early. */
    char *text = malloc(size + 1);
    char *fields[4] = { "", "", "", "" };
    size_t nf = 0;
    char *p;

    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    p = text;
    while (nf < 4) {
        char *nl = nf < 3 ? strchr(p, '\n') : NULL;
        fields[nf++] = p;
        if (nl == NULL) {
            break;
        }
        *nl = '\0';
        p = nl + 1;
    }
    check_route(fields[0]);
    check_method(fields[1]);
    check_type(fields[2]);
    check_query(fields[3]);
    free(text);
    return 0;
}
