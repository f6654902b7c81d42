/*
** static.h: the dashboard's files (web/), embedded at build time by
** scripts/embed_web.py, looked up by path (api-internal: http.c uses it).
*/
#ifndef HPO_API_STATIC_H
#define HPO_API_STATIC_H

#include <stdbool.h>
#include <stddef.h>

struct MHD_Response;

/* One embedded file (the generated table). */
struct hpo__static_file {
    const char *name;          /* under /assets/<tag>/, or "index.html" */
    const unsigned char *data; /* the file as is */
    size_t len;
    const unsigned char *gz;   /* gzip-compressed, NULL when that is not smaller */
    size_t gz_len;
    const char *type;          /* Content-Type */
    const char *hash;          /* content hash: the ETag (with "-gz" for the gzip copy) */
};

extern const struct hpo__static_file hpo__static_files[];
extern const size_t hpo__static_count;
extern const char hpo__static_tag[]; /* hash over every file: the asset path prefix */

/* What to answer for a dashboard path. */
struct hpo__static_reply {
    int status;                /* 200, or 304 when If-None-Match names this version */
    const unsigned char *body; /* static, never freed; NULL for 304 */
    size_t len;
    const char *type;
    bool gzip;                 /* body is the gzip copy */
    bool immutable;            /* an asset under the current tag (else: the page, no-cache) */
    char etag[40];
};

/*
** Look up a GET/HEAD path that no /v1 route matched: `/`, `/studies`,
** `/studies/...` give the page (index.html), `/assets/<tag>/<name>` a file.
** `accept_encoding` and `if_none_match` are the request's headers (NULL when
** absent). False when the path names no dashboard file.
*/
bool hpo__static_find(const char *path, const char *accept_encoding, const char *if_none_match,
        struct hpo__static_reply *ret);

/* Add the reply's headers (cache, ETag, CSP, encoding) to `resp`. */
void hpo__static_headers(struct MHD_Response *resp, const struct hpo__static_reply *r);

#endif
