/*
** client-int.h: what the files of libhpoclient share, and nothing else sees.
*/
#ifndef HPO_CLIENT_INT_H
#define HPO_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hpo/client.h"

struct hpo_client {
    void *curl;        /* CURL *, owned */
    char *base;        /* base URL without trailing slash or /v1, owned */
    char *auth_header; /* "Authorization: Bearer ...", owned; NULL for none */
    char *worker;      /* worker name sent with ask, owned; NULL for none */
    char *cacert;      /* CA file for https (CURLOPT_CAINFO), owned; NULL: the system's */
    long connect_ms;
    long request_ms;
    int max_retries;
    long retry_base_ms;
    long retry_max_ms;
    uint64_t rng; /* xorshift state for backoff jitter */
};

/*
** A response: status and body (NUL-terminated, `len` bytes before the NUL).
** With `fd` >= 0 (hpo__send_to_fd), a 2xx body goes to that descriptor
** instead (`written` bytes; `fd_errno` when a write failed) and `body` holds
** only an error response's body.
*/
struct hpo__response {
    long status;
    char *body;
    size_t len;
    void *curl;
    int fd;
    int fd_errno;
    uint64_t written;
};

/*
** Send one request and wait for it (with retries). `body` of `len` bytes is
** sent with `content_type` (NULL: application/json); `accept` NULL means
** application/json. On 2xx fills *resp (the caller frees resp->body) and
** returns 0. On an API error fills err and returns -EIO; on a transport
** failure returns the mapped errno.
*/
int hpo__send(struct hpo_client *c, const char *method, const char *path, const void *body,
        size_t len, const char *content_type, const char *accept, bool idempotent,
        struct hpo__response *resp, struct hpo_client_error *err);

/*
** Like hpo__send for a GET without a body, but a 2xx body is streamed to `fd`
** as it arrives (never held in memory), with no overall time limit (the
** transfer is abandoned when under 1 byte/s arrives for the request
** timeout) and no retry once any of it was written. Returns 0 with
** *ret_bytes, -EIO on an API error, a transport errno, or the errno of a
** failed write to `fd`.
*/
int hpo__send_to_fd(struct hpo_client *c, const char *path, const char *accept, int fd,
        uint64_t *ret_bytes, struct hpo_client_error *err);

/* Fill err (may be NULL) and return r. */
int hpo__fail(struct hpo_client_error *err, int r, enum hpo_client_code code, int status,
        const char *field, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Clear err (may be NULL). */
void hpo__clear(struct hpo_client_error *err);

/* Percent-escape a path segment; new string or NULL on OOM. */
char *hpo__escape(const char *segment);

/* Decode a JSON document; returns NULL with err filled (BAD_RESPONSE) on failure. */
struct json_t;
struct json_t *hpo__decode(const struct hpo__response *resp, struct hpo_client_error *err);

/* Build a trial from a parsed JSON object; steals `root`. */
int hpo__trial_from_json(struct json_t *root, struct hpo_trial **ret_trial);

/* The borrowed JSON value of a trial's param, or NULL. */
struct json_t *hpo__trial_param(const struct hpo_trial *t, const char *name);

#endif
