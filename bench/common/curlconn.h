/*
** curlconn.h: the one libcurl set-up the benchmarks' load generators share
** (bench/throughput/loadgen.c, bench/pruning/loader.c, bench/restart/fill.c):
** a keep-alive easy handle sending JSON, its reply body kept (cut at 16 KiB),
** and a POST that returns the HTTP status. Header-only, so each tool stays
** one `cc` command (hpodtest.py:build_curl_tool) or one meson target.
*/
#ifndef HPO_BENCH_CURLCONN_H
#define HPO_BENCH_CURLCONN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

struct buf {
    char data[16384];
    size_t len;
};

struct conn {
    CURL *h;
    struct curl_slist *hdrs;
    struct buf out;
};

static size_t conn_on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
    struct buf *b = user;
    size_t n = size * nmemb;

    if (b->len + n >= sizeof(b->data)) {
        n = sizeof(b->data) - 1 - b->len;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return size * nmemb;
}

/* A handle for JSON requests, replies into c->out; 0 or -1. */
static int conn_init(struct conn *c, long timeout_s)
{
    memset(c, 0, sizeof(*c));
    c->h = curl_easy_init();
    if (c->h == NULL) {
        return -1;
    }
    c->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    c->hdrs = curl_slist_append(c->hdrs, "Expect:");
    /* For https and tokens (bench/tls): HPOD_TOKEN and HPOD_CACERT, as the clients take them. */
    if (getenv("HPOD_TOKEN") != NULL) {
        char auth[512];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", getenv("HPOD_TOKEN"));
        c->hdrs = curl_slist_append(c->hdrs, auth);
    }
    if (getenv("HPOD_CACERT") != NULL) {
        curl_easy_setopt(c->h, CURLOPT_CAINFO, getenv("HPOD_CACERT"));
    }
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, conn_on_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->out);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, timeout_s);
    return 0;
}

static void conn_finish(struct conn *c)
{
    curl_slist_free_all(c->hdrs);
    curl_easy_cleanup(c->h);
}

/* POST `body` to `url`; the HTTP status (0 on a transport error), the reply in c->out. */
static long conn_post(struct conn *c, const char *url, const char *body)
{
    long status = 0;

    c->out.len = 0;
    c->out.data[0] = '\0';
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    if (curl_easy_perform(c->h) != CURLE_OK) {
        return 0;
    }
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

#endif
