/*
** static.c: serve the embedded dashboard (docs/DASHBOARD.md).
**
** The page (index.html) answers `/` and every `/studies/...` path (the
** script routes on location.pathname) with `Cache-Control: no-cache` and an
** ETag, so a reload costs a 304. Assets live under `/assets/<tag>/`, where
** the tag hashes every embedded file: their URLs change whenever any file
** does, so they are `immutable` for a year. A gzip copy is sent when the
** client accepts it. Every answer carries a content security policy that
** allows nothing but this origin (no inline script, no external request).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "static.h"

#define CSP "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " \
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; " \
            "form-action 'self'"

static const struct hpo__static_file *file_named(const char *name)
{
    for (size_t i = 0; i < hpo__static_count; i++) {
        if (strcmp(hpo__static_files[i].name, name) == 0) {
            return &hpo__static_files[i];
        }
    }
    return NULL;
}

/* Whether Accept-Encoding allows gzip: a "gzip" or "*" coding whose q is not 0. */
static bool accepts_gzip(const char *ae)
{
    char buf[512];
    char *save = NULL;

    snprintf(buf, sizeof(buf), "%s", ae);
    for (char *item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *params = strchr(item, ';');
        char *q;
        size_t n;
        if (params != NULL) {
            *params++ = '\0';
        }
        item += strspn(item, " \t");
        n = strcspn(item, " \t");
        item[n] = '\0';
        if (strcasecmp(item, "gzip") != 0 && strcmp(item, "*") != 0) {
            continue;
        }
        q = params ? strstr(params, "q=") : NULL;
        if (q == NULL || strtod(q + 2, NULL) > 0.0) {
            return true;
        }
    }
    return false;
}

/* Whether If-None-Match lists `etag` (quoted, maybe W/) or is "*". */
static bool etag_listed(const char *inm, const char *etag)
{
    size_t n = strlen(etag);

    if (inm == NULL) {
        return false;
    }
    for (const char *p = inm; *p != '\0'; p++) {
        if (*p == '*') {
            return true;
        }
        if (strncmp(p, etag, n) == 0) {
            return true;
        }
    }
    return false;
}

bool hpo__static_find(const char *path, const char *accept_encoding, const char *if_none_match,
        struct hpo__static_reply *ret)
{
    const struct hpo__static_file *f = NULL;
    size_t tag_len = strlen(hpo__static_tag);

    memset(ret, 0, sizeof(*ret));
    if (strcmp(path, "/") == 0 || strcmp(path, "/studies") == 0 ||
            strncmp(path, "/studies/", 9) == 0) {
        f = file_named("index.html");
    } else if (strncmp(path, "/assets/", 8) == 0 && strncmp(path + 8, hpo__static_tag, tag_len) == 0 &&
            path[8 + tag_len] == '/' && strcmp(path + 9 + tag_len, "index.html") != 0) {
        f = file_named(path + 9 + tag_len);
        ret->immutable = true;
    }
    if (f == NULL) {
        return false;
    }
    ret->gzip = f->gz != NULL && accept_encoding != NULL && accepts_gzip(accept_encoding);
    snprintf(ret->etag, sizeof(ret->etag), "\"%s%s\"", f->hash, ret->gzip ? "-gz" : "");
    ret->type = f->type;
    if (etag_listed(if_none_match, ret->etag)) {
        ret->status = MHD_HTTP_NOT_MODIFIED;
        return true;
    }
    ret->status = MHD_HTTP_OK;
    ret->body = ret->gzip ? f->gz : f->data;
    ret->len = ret->gzip ? f->gz_len : f->len;
    return true;
}

void hpo__static_headers(struct MHD_Response *resp, const struct hpo__static_reply *r)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
            r->immutable ? "public, max-age=31536000, immutable" : "no-cache");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, r->etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    if (r->gzip && r->status == MHD_HTTP_OK) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    }
    MHD_add_response_header(resp, "Content-Security-Policy", CSP);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
}
