/*
** http.c: libhpoclient's transport: one request over libcurl, the mapping of
** answers to struct hpo_client_error, and retries with backoff.
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "client-int.h"
#include "hpod-config.h"
#include "error.h"

/*
** The public enum mirrors the server's table, number for number; the
** public header may not include core/error.h, so check it here.
*/
#define HPO_CHECK_CODE(sym, name, status)                                                     \
    _Static_assert((int)HPO_CLIENT_##sym == (int)HPO_##sym, "client code " #sym);
HPO_CODE_MAP(HPO_CHECK_CODE)
#undef HPO_CHECK_CODE
_Static_assert(HPO_CODE_COUNT == HPO_CLIENT_INTERNAL + 1, "new API codes need client codes");

/* Cap on a response body: the largest binary vector the server sends, plus slack. */
#define RESPONSE_MAX ((size_t)300 * 1024 * 1024)

static const char *const wire_names[] = {
#define HPO_WIRE_NAME(sym, name, status) name,
    HPO_CODE_MAP(HPO_WIRE_NAME)
#undef HPO_WIRE_NAME
};

const char *hpo_client_code_name(enum hpo_client_code code)
{
    if ((unsigned)code < sizeof(wire_names) / sizeof(wire_names[0])) {
        return wire_names[code];
    }
    switch (code) {
    case HPO_CLIENT_TRANSPORT:
        return "transport";
    case HPO_CLIENT_BAD_RESPONSE:
        return "bad_response";
    case HPO_CLIENT_USAGE:
        return "usage";
    case HPO_CLIENT_NO_MEMORY:
        return "no_memory";
    default:
        return "unknown";
    }
}

int hpo__fail(struct hpo_client_error *err, int r, enum hpo_client_code code, int status,
        const char *field, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return r;
    }
    err->code = code;
    err->status = status;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return r;
}

void hpo__clear(struct hpo_client_error *err)
{
    if (err == NULL) {
        return;
    }
    err->code = HPO_CLIENT_OK;
    err->status = 0;
    err->field[0] = '\0';
    err->message[0] = '\0';
}

char *hpo__escape(const char *segment)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(segment);
    char *out = malloc(3 * n + 1);
    char *p = out;

    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)segment[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return out;
}

json_t *hpo__decode(const struct hpo__response *resp, struct hpo_client_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(resp->body, resp->len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL) {
        hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, (int)resp->status, NULL,
                "response is not JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, (int)resp->status, NULL,
                "response is not a JSON object");
        return NULL;
    }
    return root;
}

/* The code for a status when the error body cannot be read. */
static enum hpo_client_code code_of_status(long status)
{
    switch (status) {
    case 400:
        return HPO_CLIENT_INVALID_ARGUMENT;
    case 401:
        return HPO_CLIENT_UNAUTHENTICATED;
    case 403:
        return HPO_CLIENT_PERMISSION_DENIED;
    case 404:
        return HPO_CLIENT_NOT_FOUND;
    case 405:
        return HPO_CLIENT_METHOD_NOT_ALLOWED;
    case 409:
        return HPO_CLIENT_CONFLICT;
    case 413:
        return HPO_CLIENT_PAYLOAD_TOO_LARGE;
    case 415:
        return HPO_CLIENT_UNSUPPORTED_MEDIA_TYPE;
    case 503:
        return HPO_CLIENT_UNAVAILABLE;
    default:
        return status >= 500 ? HPO_CLIENT_INTERNAL : HPO_CLIENT_BAD_RESPONSE;
    }
}

/* Fill err from an error response; always returns -EIO. */
static int api_error(const struct hpo__response *resp, struct hpo_client_error *err)
{
    json_t *root = json_loadb(resp->body, resp->len, 0, NULL);
    json_t *e = json_is_object(root) ? json_object_get(root, "error") : NULL;
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *message = json_string_value(json_object_get(e, "message"));
    const char *field = json_string_value(json_object_get(e, "field"));
    enum hpo_client_code c = code_of_status(resp->status);

    if (code != NULL) {
        for (size_t i = 0; i < sizeof(wire_names) / sizeof(wire_names[0]); i++) {
            if (strcmp(code, wire_names[i]) == 0) {
                c = (enum hpo_client_code)i;
                break;
            }
        }
    }
    if (message != NULL) {
        hpo__fail(err, -EIO, c, (int)resp->status, field, "%s", message);
    } else {
        hpo__fail(err, -EIO, c, (int)resp->status, field, "HTTP status %ld", resp->status);
    }
    json_decref(root);
    return -EIO;
}

/* Write all of a 2xx body's chunk to resp->fd; false (fd_errno set) on failure. */
static bool write_fd(struct hpo__response *resp, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(resp->fd, p, n);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            resp->fd_errno = w < 0 ? errno : EIO;
            return false;
        }
        p += w;
        n -= (size_t)w;
        resp->written += (uint64_t)w;
    }
    return true;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct hpo__response *resp = userdata;
    size_t n = size * nmemb;
    char *grown;
    long status = 0;

    if (resp->fd >= 0) {
        curl_easy_getinfo(resp->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status <= 299) {
            return write_fd(resp, ptr, n) ? n : 0;
        }
    }

    if (n > RESPONSE_MAX - resp->len) {
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    grown = realloc(resp->body, resp->len + n + 1);
    if (grown == NULL) {
        return 0;
    }
    memcpy(grown + resp->len, ptr, n);
    resp->body = grown;
    resp->len += n;
    resp->body[resp->len] = '\0';
    return n;
}

/* Whether a curl failure happened before the request could reach the server. */
static bool before_send(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_COULDNT_RESOLVE_PROXY;
}

static int errno_of_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EINVAL;
    default:
        return -ECONNRESET;
    }
}

/* Sleep before retry `attempt` (0-based): base * 2^attempt, capped, times [0.5, 1]. */
static void backoff(struct hpo_client *c, int attempt)
{
    long ms = c->retry_base_ms;
    struct timespec ts;
    uint64_t x;

    for (int i = 0; i < attempt && ms < c->retry_max_ms; i++) {
        ms *= 2;
    }
    if (ms > c->retry_max_ms) {
        ms = c->retry_max_ms;
    }
    /* xorshift64: jitter only, so no need for the project's seeded rng. */
    x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    ms = ms / 2 + (long)(x % (uint64_t)(ms / 2 + 1));
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    (void)nanosleep(&ts, NULL);
}

/* Make each connection close-on-exec: a program the caller starts must not hold it open. */
static int on_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    int flags = fcntl(fd, F_GETFD);

    if (flags >= 0) {
        (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
    return CURL_SOCKOPT_OK;
}

/* One attempt. Returns the curl code; resp holds status and body. */
static CURLcode attempt_once(struct hpo_client *c, const char *method, const char *url,
        const void *body, size_t len, struct curl_slist *headers, struct hpo__response *resp)
{
    CURL *curl = c->curl;

    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
    resp->status = 0;
    resp->curl = curl;
    /* Reset keeps the connection cache, so keep-alive survives across calls. */
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
    if (resp->fd >= 0) {
        /* A stream may take long: give up only when it stalls. */
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                c->request_ms > 999 ? c->request_ms / 1000 : 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, c->request_ms);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "libhpoclient/" HPOD_VERSION);
    if (c->cacert != NULL) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, c->cacert);
    }
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL || strcmp(method, "DELETE") != 0) {
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        }
    }
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
    }
    return rc;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *h, bool *oom)
{
    struct curl_slist *n;

    if (*oom || h == NULL) {
        return list;
    }
    n = curl_slist_append(list, h);
    if (n == NULL) {
        *oom = true;
        return list;
    }
    return n;
}

static int send_common(struct hpo_client *c, const char *method, const char *path,
        const void *body, size_t len, const char *content_type, const char *accept,
        bool idempotent, int fd, struct hpo__response *resp, struct hpo_client_error *err)
{
    char ct[128];
    char ac[128];
    struct curl_slist *headers = NULL;
    bool oom = false;
    size_t ulen = strlen(c->base) + strlen(path) + 1;
    char *url = malloc(ulen);
    int r = 0;
    CURLcode rc = CURLE_OK;

    memset(resp, 0, sizeof(*resp));
    resp->fd = fd;
    if (url == NULL) {
        return hpo__fail(err, -ENOMEM, HPO_CLIENT_NO_MEMORY, 0, NULL, "out of memory");
    }
    snprintf(url, ulen, "%s%s", c->base, path);
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type ? content_type : "application/json");
    snprintf(ac, sizeof(ac), "Accept: %s", accept ? accept : "application/json");
    headers = add_header(headers, ac, &oom);
    if (body != NULL) {
        headers = add_header(headers, ct, &oom);
    }
    headers = add_header(headers, "Expect:", &oom); /* no 100-continue round trip */
    headers = add_header(headers, c->auth_header, &oom);
    if (oom) {
        r = hpo__fail(err, -ENOMEM, HPO_CLIENT_NO_MEMORY, 0, NULL, "out of memory");
        goto out;
    }

    for (int attempt = 0;; attempt++) {
        bool retry;

        rc = attempt_once(c, method, url, body, len, headers, resp);
        if (rc == CURLE_OK) {
            retry = resp->status == 503;
        } else {
            retry = before_send(rc) || (idempotent && rc != CURLE_OUT_OF_MEMORY &&
                                               rc != CURLE_URL_MALFORMAT &&
                                               rc != CURLE_WRITE_ERROR);
        }
        if (!retry || attempt >= c->max_retries || resp->written > 0) {
            break;
        }
        backoff(c, attempt);
    }

    if (rc != CURLE_OK) {
        r = errno_of_curl(rc);
        if (rc == CURLE_WRITE_ERROR && resp->fd_errno != 0) {
            char ebuf[128];

            /* _GNU_SOURCE: the GNU strerror_r, which may return a static string. */
            r = hpo__fail(err, -resp->fd_errno, HPO_CLIENT_TRANSPORT, 0, NULL,
                    "%s %s: writing the response: %s", method, path,
                    strerror_r(resp->fd_errno, ebuf, sizeof(ebuf)));
        } else if (rc == CURLE_WRITE_ERROR) {
            r = hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, 0, NULL,
                    "%s %s: response too large or out of memory", method, path);
        } else {
            r = hpo__fail(err, r, r == -ENOMEM ? HPO_CLIENT_NO_MEMORY : HPO_CLIENT_TRANSPORT, 0,
                    NULL, "%s %s%s: %s", method, c->base, path, curl_easy_strerror(rc));
        }
    } else if (resp->status < 200 || resp->status > 299) {
        r = api_error(resp, err);
    } else {
        if (resp->body == NULL) {
            resp->body = calloc(1, 1);
            if (resp->body == NULL) {
                r = hpo__fail(err, -ENOMEM, HPO_CLIENT_NO_MEMORY, 0, NULL, "out of memory");
            }
        }
        if (r == 0) {
            hpo__clear(err);
        }
    }
    if (r < 0) {
        free(resp->body);
        resp->body = NULL;
        resp->len = 0;
    }
out:
    curl_slist_free_all(headers);
    free(url);
    return r;
}

int hpo__send(struct hpo_client *c, const char *method, const char *path, const void *body,
        size_t len, const char *content_type, const char *accept, bool idempotent,
        struct hpo__response *resp, struct hpo_client_error *err)
{
    return send_common(c, method, path, body, len, content_type, accept, idempotent, -1, resp,
            err);
}

int hpo__send_to_fd(struct hpo_client *c, const char *path, const char *accept, int fd,
        uint64_t *ret_bytes, struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (fd < 0) {
        return hpo__fail(err, -EBADF, HPO_CLIENT_TRANSPORT, 0, NULL, "no file descriptor");
    }
    /* Not idempotent: a transfer that broke midway is not retried into the same fd. */
    r = send_common(c, "GET", path, NULL, 0, NULL, accept, false, fd, &resp, err);
    free(resp.body);
    if (r == 0 && ret_bytes != NULL) {
        *ret_bytes = resp.written;
    }
    return r;
}
