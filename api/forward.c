/*
** forward.c: proxying a request to its study's owner (forward.h) with a
** pool of libcurl easy handles that keep their connections alive.
*/
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "../core/histogram.h"
#include "forward.h"

#define POOL_MAX      64
#define CONNECT_MS    2000L
#define TIMEOUT_MS    300000L /* a long GP ask, a big CSV */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static CURL *pool[POOL_MAX];
static size_t n_pool;

static atomic_uint_fast64_t n_forwarded, n_failed;
static const uint64_t latency_le[] = { 250, 500, 1000, 2500, 5000, 10000, 25000, 100000,
    1000000, 10000000 };
static struct hpo_hist latency_us;

static uint64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int hpo_forward_init(void)
{
    hpo_hist_init(&latency_us, latency_le, sizeof(latency_le) / sizeof(latency_le[0]));
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void hpo_forward_cleanup(void)
{
    pthread_mutex_lock(&pool_lock);
    for (size_t i = 0; i < n_pool; i++) {
        curl_easy_cleanup(pool[i]);
    }
    n_pool = 0;
    pthread_mutex_unlock(&pool_lock);
    curl_global_cleanup();
}

static CURL *take_handle(void)
{
    CURL *h = NULL;

    pthread_mutex_lock(&pool_lock);
    if (n_pool > 0) {
        h = pool[--n_pool];
    }
    pthread_mutex_unlock(&pool_lock);
    if (h == NULL) {
        h = curl_easy_init();
    } else {
        curl_easy_reset(h); /* options only: its open connections stay */
    }
    return h;
}

static void give_handle(CURL *h)
{
    pthread_mutex_lock(&pool_lock);
    if (n_pool < POOL_MAX) {
        pool[n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&pool_lock);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
}

static size_t on_body(char *data, size_t size, size_t n, void *cls)
{
    struct hpo_forward_reply *r = cls;
    size_t len = size * n;
    char *b = realloc(r->body, r->len + len + 1);

    if (b == NULL) {
        return 0; /* curl fails the transfer */
    }
    memcpy(b + r->len, data, len);
    r->len += len;
    b[r->len] = '\0';
    r->body = b;
    return len;
}

/* Copy a header's value (without the CRLF) if its line is `name: value`. */
static bool header_value(const char *line, size_t len, const char *name, char *out,
        size_t out_len)
{
    size_t n = strlen(name);
    size_t v;

    if (len <= n + 1 || strncasecmp(line, name, n) != 0 || line[n] != ':') {
        return false;
    }
    v = n + 1;
    while (v < len && (line[v] == ' ' || line[v] == '\t')) {
        v++;
    }
    while (len > v && (line[len - 1] == '\r' || line[len - 1] == '\n')) {
        len--;
    }
    snprintf(out, out_len, "%.*s", (int)(len - v), line + v);
    return true;
}

static size_t on_header(char *line, size_t size, size_t n, void *cls)
{
    struct hpo_forward_reply *r = cls;
    size_t len = size * n;
    char link[2048];

    if (!header_value(line, len, "Content-Type", r->content_type, sizeof(r->content_type)) &&
            !header_value(line, len, "X-Total-Count", r->total, sizeof(r->total)) &&
            !header_value(line, len, "X-Hpod-Owner", r->owner, sizeof(r->owner)) &&
            header_value(line, len, "Link", link, sizeof(link))) {
        free(r->link);
        r->link = strdup(link);
    }
    return len;
}

static struct curl_slist *add_header(struct curl_slist *l, const char *name, const char *value,
        bool *ok)
{
    char line[4096];
    struct curl_slist *n;

    if (value == NULL) {
        return l;
    }
    /* An empty value removes a header curl would add ("Name:"). */
    snprintf(line, sizeof(line), value[0] != '\0' ? "%s: %s" : "%s:", name, value);
    n = curl_slist_append(l, line);
    if (n == NULL) {
        *ok = false;
        return l;
    }
    return n;
}

struct progress {
    const struct hpo_forward_request *rq;
    uint64_t next_us;
    bool gone;
};

/* libcurl's progress callback: give up on an owner the cluster no longer sees live. */
static int on_progress(void *cls, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
        curl_off_t ulnow)
{
    struct progress *p = cls;
    uint64_t now = mono_us();

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    if (p->rq->alive == NULL || now < p->next_us) {
        return 0;
    }
    p->next_us = now + 1000000u;
    p->gone = !p->rq->alive(p->rq->alive_ctx, p->rq->base_url);
    return p->gone ? 1 : 0;
}

int hpo_forward(const struct hpo_forward_request *rq, struct hpo_forward_reply *ret,
        struct hpo_error *err)
{
    struct progress prog = { .rq = rq, .next_us = mono_us() + 1000000u };
    char url[4096];
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    uint64_t t0 = mono_us();
    bool ok = true;
    CURL *h;
    CURLcode rc;

    memset(ret, 0, sizeof(*ret));
    h = take_handle();
    if (h == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    snprintf(url, sizeof(url), "%s%s", rq->base_url, rq->target);
    headers = add_header(headers, "Authorization", rq->authorization, &ok);
    headers = add_header(headers, "Content-Type", rq->content_type != NULL ? rq->content_type : "",
            &ok);
    headers = add_header(headers, "Accept", rq->accept, &ok);
    headers = add_header(headers, HPO_FORWARD_HEADER, rq->mark, &ok);
    /* No "Expect: 100-continue" round trip for big bodies: the owner is trusted. */
    headers = add_header(headers, "Expect", "", &ok);
    if (!ok) {
        curl_slist_free_all(headers);
        give_handle(h);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    if (strcmp(rq->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(rq->method, "GET") != 0 || rq->len > 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body != NULL ? rq->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, ret);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, ret);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &prog);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    }
    give_handle(h);
    if (rc != CURLE_OK) {
        atomic_fetch_add(&n_failed, 1);
        ret->unsent = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST;
        if (prog.gone) {
            return hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL,
                    "the study's owner %s stopped answering and lost its lease; retry",
                    rq->base_url);
        }
        return hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL,
                "the study's owner %s did not answer (%s); retry", rq->base_url,
                errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
    }
    atomic_fetch_add(&n_forwarded, 1);
    hpo_hist_observe(&latency_us, mono_us() - t0);
    return 0;
}

void hpo_forward_reply_free(struct hpo_forward_reply *r)
{
    free(r->body);
    free(r->link);
    r->body = NULL;
    r->link = NULL;
}

int hpo_forward_metrics_write(FILE *f)
{
    fprintf(f, "# HELP hpod_forwarded_requests_total Requests proxied to their study's owner.\n"
               "# TYPE hpod_forwarded_requests_total counter\n"
               "hpod_forwarded_requests_total %llu\n"
               "# HELP hpod_forward_failures_total Proxied requests whose owner did not answer.\n"
               "# TYPE hpod_forward_failures_total counter\n"
               "hpod_forward_failures_total %llu\n"
               "# HELP hpod_forward_seconds Time to proxy a request to its owner and back.\n"
               "# TYPE hpod_forward_seconds histogram\n",
            (unsigned long long)atomic_load(&n_forwarded),
            (unsigned long long)atomic_load(&n_failed));
    return hpo_hist_write(f, "hpod_forward_seconds", "", &latency_us, 1e6);
}
