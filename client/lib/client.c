/*
** client.c: libhpoclient's calls, one per REST endpoint of docs/REFERENCE.md.
*/
#include <errno.h>
#include <math.h>
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

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *hpo_client_version(void)
{
    return HPOD_VERSION;
}

void hpo_client_free(void *p)
{
    free(p);
}

static int oom(struct hpo_client_error *err)
{
    return hpo__fail(err, -ENOMEM, HPO_CLIENT_NO_MEMORY, 0, NULL, "out of memory");
}

static int usage(struct hpo_client_error *err, int r, const char *what)
{
    return hpo__fail(err, r, HPO_CLIENT_USAGE, 0, NULL, "%s", what);
}

int hpo_client_create(const char *url, const char *token, struct hpo_client **ret_client,
        struct hpo_client_error *err)
{
    struct hpo_client *c;
    size_t n;
    struct timespec ts;

    if (ret_client == NULL) {
        return usage(err, -EINVAL, "ret_client is NULL");
    }
    if (url == NULL || url[0] == '\0') {
        url = "http://127.0.0.1:8080";
    }
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        return usage(err, -EINVAL, "the URL must start with http:// or https://");
    }
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        return hpo__fail(err, -ENOMEM, HPO_CLIENT_NO_MEMORY, 0, NULL, "curl_global_init: %s",
                curl_easy_strerror(global_rc));
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return oom(err);
    }
    c->connect_ms = 5000;
    c->request_ms = 60000;
    c->max_retries = 5;
    c->retry_base_ms = 100;
    c->retry_max_ms = 5000;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
             (uint64_t)(uintptr_t)c;
    if (c->rng == 0) {
        c->rng = 0x9e3779b97f4a7c15ULL;
    }
    c->base = strdup(url);
    if (c->base == NULL) {
        goto fail_oom;
    }
    /* Accept "http://h:p", "http://h:p/" and "http://h:p/v1/": paths carry /v1. */
    n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/') {
        c->base[--n] = '\0';
    }
    if (n >= 3 && strcmp(c->base + n - 3, "/v1") == 0) {
        n -= 3;
        c->base[n] = '\0';
    }
    if (token == NULL) {
        token = secure_getenv("HPOD_TOKEN");
    }
    if (token != NULL && token[0] != '\0') {
        size_t alen = strlen(token) + sizeof("Authorization: Bearer ");
        if (strchr(token, '\n') != NULL || strchr(token, '\r') != NULL) {
            hpo_client_destroy(c);
            return usage(err, -EINVAL, "the token holds a line break");
        }
        c->auth_header = malloc(alen);
        if (c->auth_header == NULL) {
            goto fail_oom;
        }
        snprintf(c->auth_header, alen, "Authorization: Bearer %s", token);
    }
    if (hpo_client_set_cacert(c, secure_getenv("HPOD_CACERT")) < 0) {
        goto fail_oom;
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        goto fail_oom;
    }
    hpo__clear(err);
    *ret_client = c;
    return 0;

fail_oom:
    hpo_client_destroy(c);
    return oom(err);
}

void hpo_client_destroy(struct hpo_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
    }
    free(c->base);
    free(c->auth_header);
    free(c->worker);
    free(c->cacert);
    free(c);
}

int hpo_client_set_cacert(struct hpo_client *c, const char *path)
{
    char *copy = NULL;

    if (c == NULL) {
        return -EINVAL;
    }
    if (path != NULL && path[0] != '\0') {
        copy = strdup(path);
        if (copy == NULL) {
            return -ENOMEM;
        }
    }
    free(c->cacert);
    c->cacert = copy;
    return 0;
}

int hpo_client_set_timeouts(struct hpo_client *c, long connect_ms, long request_ms)
{
    if (c == NULL || connect_ms < 0 || request_ms < 0) {
        return -EINVAL;
    }
    if (connect_ms > 0) {
        c->connect_ms = connect_ms;
    }
    if (request_ms > 0) {
        c->request_ms = request_ms;
    }
    return 0;
}

int hpo_client_set_retries(struct hpo_client *c, int max_retries, long base_ms, long max_ms)
{
    if (c == NULL || max_retries < 0 || base_ms < 0 || max_ms < 0 || base_ms > max_ms) {
        return -EINVAL;
    }
    c->max_retries = max_retries;
    c->retry_base_ms = base_ms;
    c->retry_max_ms = max_ms;
    return 0;
}

int hpo_client_set_worker(struct hpo_client *c, const char *worker)
{
    char *w = NULL;

    if (c == NULL) {
        return -EINVAL;
    }
    if (worker != NULL) {
        w = strdup(worker);
        if (w == NULL) {
            return -ENOMEM;
        }
    }
    free(c->worker);
    c->worker = w;
    return 0;
}

int hpo_client_request(struct hpo_client *c, const char *method, const char *path,
        const char *body, bool idempotent, long *ret_status, char **ret_body,
        struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (c == NULL || method == NULL || path == NULL || path[0] != '/') {
        return usage(err, -EINVAL, "bad arguments to hpo_client_request");
    }
    r = hpo__send(c, method, path, body, body ? strlen(body) : 0, NULL, NULL, idempotent, &resp,
            err);
    if (r < 0) {
        return r;
    }
    if (ret_status != NULL) {
        *ret_status = resp.status;
    }
    if (ret_body != NULL) {
        *ret_body = resp.body;
    } else {
        free(resp.body);
    }
    return 0;
}

int hpo_client_get_to_fd(struct hpo_client *c, const char *path, const char *accept,
        int fd, uint64_t *ret_bytes, struct hpo_client_error *err)
{
    if (c == NULL || path == NULL || path[0] != '/') {
        return usage(err, -EINVAL, "bad arguments to hpo_client_get_to_fd");
    }
    return hpo__send_to_fd(c, path, accept, fd, ret_bytes, err);
}

/*
** Build "/v1/studies/<study><suffix>" with the study escaped; suffix is a
** printf format for the rest. Returns NULL on OOM.
*/
static char *study_path(const char *study, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *study_path(const char *study, const char *fmt, ...)
{
    char rest[512];
    va_list ap;
    char *esc = hpo__escape(study);
    char *out;
    size_t n;

    if (esc == NULL) {
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(rest, sizeof(rest), fmt, ap);
    va_end(ap);
    n = strlen("/v1/studies/") + strlen(esc) + strlen(rest) + 1;
    out = malloc(n);
    if (out != NULL) {
        snprintf(out, n, "/v1/studies/%s%s", esc, rest);
    }
    free(esc);
    return out;
}

/* Send a JSON body (stealing `body`, which may be NULL) and keep the response. */
static int send_json(struct hpo_client *c, const char *method, char *path, json_t *body,
        bool idempotent, struct hpo__response *resp, struct hpo_client_error *err)
{
    char *text = NULL;
    int r;

    if (path == NULL) {
        json_decref(body);
        return oom(err);
    }
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (text == NULL) {
            free(path);
            return oom(err);
        }
    }
    r = hpo__send(c, method, path, text, text ? strlen(text) : 0, NULL, NULL, idempotent, resp,
            err);
    free(text);
    free(path);
    return r;
}

int hpo_client_study_create(struct hpo_client *c, const char *spec_json, bool *ret_created,
        char **ret_json, struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (c == NULL || spec_json == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_study_create");
    }
    /* Creating an identical study again answers 200, so a retry is safe. */
    r = hpo__send(c, "POST", "/v1/studies", spec_json, strlen(spec_json), NULL, NULL, true,
            &resp, err);
    if (r < 0) {
        return r;
    }
    if (ret_created != NULL) {
        *ret_created = resp.status == 201;
    }
    if (ret_json != NULL) {
        *ret_json = resp.body;
    } else {
        free(resp.body);
    }
    return 0;
}

static int get_text(struct hpo_client *c, char *path, char **ret_json,
        struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r = send_json(c, "GET", path, NULL, true, &resp, err);

    if (r < 0) {
        return r;
    }
    if (ret_json != NULL) {
        *ret_json = resp.body;
    } else {
        free(resp.body);
    }
    return 0;
}

int hpo_client_study_get(struct hpo_client *c, const char *study, char **ret_json,
        struct hpo_client_error *err)
{
    if (c == NULL || study == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_study_get");
    }
    return get_text(c, study_path(study, "%s", ""), ret_json, err);
}

int hpo_client_study_list(struct hpo_client *c, char **ret_json, struct hpo_client_error *err)
{
    char *path;

    if (c == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_study_list");
    }
    path = strdup("/v1/studies");
    return get_text(c, path, ret_json, err);
}

int hpo_client_study_delete(struct hpo_client *c, const char *study,
        struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (c == NULL || study == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_study_delete");
    }
    r = send_json(c, "DELETE", study_path(study, "%s", ""), NULL, false, &resp, err);
    if (r < 0) {
        return r;
    }
    free(resp.body);
    return 0;
}

/* Parse a trial response into *ret_trial; frees resp->body. */
static int trial_response(struct hpo__response *resp, struct hpo_trial **ret_trial,
        struct hpo_client_error *err)
{
    json_t *root = hpo__decode(resp, err);
    int r;

    free(resp->body);
    resp->body = NULL;
    if (root == NULL) {
        return -EPROTO;
    }
    r = hpo__trial_from_json(root, ret_trial);
    if (r == -ENOMEM) {
        return oom(err);
    }
    if (r < 0) {
        return hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, (int)resp->status, NULL,
                "response is not a trial");
    }
    return 0;
}

int hpo_client_ask(struct hpo_client *c, const char *study, struct hpo_trial **ret_trial,
        struct hpo_client_error *err)
{
    struct hpo__response resp;
    json_t *body = NULL;
    int r;

    if (c == NULL || study == NULL || ret_trial == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_ask");
    }
    if (c->worker != NULL) {
        body = json_pack("{s:s}", "worker", c->worker);
        if (body == NULL) {
            return oom(err);
        }
    }
    r = send_json(c, "POST", study_path(study, "/ask"), body, false, &resp, err);
    if (r < 0) {
        return r;
    }
    return trial_response(&resp, ret_trial, err);
}

int hpo_client_trial_get(struct hpo_client *c, const char *study, int64_t number,
        struct hpo_trial **ret_trial, struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (c == NULL || study == NULL || ret_trial == NULL || number < 0) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_trial_get");
    }
    r = send_json(c, "GET", study_path(study, "/trials/%lld", (long long)number), NULL, true,
            &resp, err);
    if (r < 0) {
        return r;
    }
    return trial_response(&resp, ret_trial, err);
}

int hpo_client_best(struct hpo_client *c, const char *study, struct hpo_trial **ret_trial,
        struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (c == NULL || study == NULL || ret_trial == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_best");
    }
    r = send_json(c, "GET", study_path(study, "/best"), NULL, true, &resp, err);
    if (r < 0) {
        return r;
    }
    return trial_response(&resp, ret_trial, err);
}

void hpo_trials_free(struct hpo_trial **trials, size_t n)
{
    if (trials == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        hpo_trial_free(trials[i]);
    }
    free(trials);
}

/* Parse root's "trials" array (root borrowed) into a new array of trials. */
static int trials_array(json_t *root, long status, struct hpo_trial ***ret_trials,
        size_t *ret_count, struct hpo_client_error *err)
{
    json_t *arr = json_object_get(root, "trials");
    size_t n = json_array_size(arr);
    struct hpo_trial **out;

    if (!json_is_array(arr)) {
        return hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, (int)status, NULL,
                "response has no trials list");
    }
    out = calloc(n ? n : 1, sizeof(*out));
    if (out == NULL) {
        return oom(err);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(arr, i);
        int r;

        json_incref(t);
        r = hpo__trial_from_json(t, &out[i]);
        if (r < 0) {
            hpo_trials_free(out, i);
            if (r == -ENOMEM) {
                return oom(err);
            }
            return hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, (int)status, NULL,
                    "response is not a list of trials");
        }
    }
    *ret_trials = out;
    *ret_count = n;
    return 0;
}

int hpo_client_best_trials(struct hpo_client *c, const char *study,
        struct hpo_trial ***ret_trials, size_t *ret_count, struct hpo_client_error *err)
{
    struct hpo__response resp;
    json_t *root;
    int r;

    if (c == NULL || study == NULL || ret_trials == NULL || ret_count == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_best_trials");
    }
    r = send_json(c, "GET", study_path(study, "/best"), NULL, true, &resp, err);
    if (r < 0) {
        return r;
    }
    root = hpo__decode(&resp, err);
    free(resp.body);
    if (root == NULL) {
        return -EPROTO;
    }
    if (json_object_get(root, "trials") != NULL) {
        r = trials_array(root, resp.status, ret_trials, ret_count, err);
        json_decref(root);
        return r;
    }
    /* One objective: the trial itself. */
    {
        struct hpo_trial **one = calloc(1, sizeof(*one));

        if (one == NULL) {
            json_decref(root);
            return oom(err);
        }
        r = hpo__trial_from_json(root, &one[0]);
        if (r < 0) {
            free(one);
            if (r == -ENOMEM) {
                return oom(err);
            }
            return hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, (int)resp.status, NULL,
                    "response is not a trial");
        }
        *ret_trials = one;
        *ret_count = 1;
    }
    return 0;
}

int hpo_client_pareto(struct hpo_client *c, const char *study, struct hpo_trial ***ret_trials,
        size_t *ret_count, double *ret_hypervolume, char **ret_json,
        struct hpo_client_error *err)
{
    struct hpo__response resp;
    struct hpo_trial **trials = NULL;
    size_t n = 0;
    json_t *root, *hv;
    int r;

    if (c == NULL || study == NULL || ret_trials == NULL || ret_count == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_pareto");
    }
    r = send_json(c, "GET", study_path(study, "/pareto"), NULL, true, &resp, err);
    if (r < 0) {
        return r;
    }
    root = hpo__decode(&resp, err);
    if (root == NULL) {
        free(resp.body);
        return -EPROTO;
    }
    hv = json_object_get(root, "hypervolume");
    if (!json_is_number(hv)) {
        json_decref(root);
        free(resp.body);
        return hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, (int)resp.status, NULL,
                "response has no hypervolume");
    }
    r = trials_array(root, resp.status, &trials, &n, err);
    if (r < 0) {
        json_decref(root);
        free(resp.body);
        return r;
    }
    if (ret_hypervolume != NULL) {
        *ret_hypervolume = json_number_value(hv);
    }
    json_decref(root);
    if (ret_json != NULL) {
        *ret_json = resp.body;
    } else {
        free(resp.body);
    }
    *ret_trials = trials;
    *ret_count = n;
    return 0;
}

int hpo_client_report(struct hpo_client *c, const char *study, int64_t number, int64_t step,
        double value, bool *ret_prune, struct hpo_client_error *err)
{
    struct hpo__response resp;
    json_t *body;
    json_t *root;
    json_t *prune;
    int r;

    if (c == NULL || study == NULL || number < 0 || step < 0) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_report");
    }
    if (!isfinite(value)) {
        return usage(err, -EINVAL, "a reported value must be finite");
    }
    body = json_pack("{s:I,s:f}", "step", (json_int_t)step, "value", value);
    if (body == NULL) {
        return oom(err);
    }
    /* A step already reported keeps its first value: a retry changes nothing. */
    r = send_json(c, "POST", study_path(study, "/trials/%lld/report", (long long)number), body,
            true, &resp, err);
    if (r < 0) {
        return r;
    }
    root = hpo__decode(&resp, err);
    free(resp.body);
    if (root == NULL) {
        return -EPROTO;
    }
    prune = json_object_get(root, "prune");
    if (!json_is_boolean(prune)) {
        json_decref(root);
        return hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, (int)resp.status, NULL,
                "report answer has no boolean \"prune\"");
    }
    if (ret_prune != NULL) {
        *ret_prune = json_is_true(prune);
    }
    json_decref(root);
    return 0;
}

int hpo_client_heartbeat(struct hpo_client *c, const char *study, int64_t number,
        struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (c == NULL || study == NULL || number < 0) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_heartbeat");
    }
    r = send_json(c, "POST", study_path(study, "/trials/%lld/heartbeat", (long long)number),
            NULL, true, &resp, err);
    if (r < 0) {
        return r;
    }
    free(resp.body);
    return 0;
}

/* POST .../tell with `body` (stolen). */
static int tell(struct hpo_client *c, const char *study, int64_t number, json_t *body,
        struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (body == NULL) {
        return oom(err);
    }
    /* Telling the same result again is 200: tell is safe to retry. */
    r = send_json(c, "POST", study_path(study, "/trials/%lld/tell", (long long)number), body,
            true, &resp, err);
    if (r < 0) {
        return r;
    }
    free(resp.body);
    return 0;
}

int hpo_client_tell(struct hpo_client *c, const char *study, int64_t number, double value,
        struct hpo_client_error *err)
{
    if (c == NULL || study == NULL || number < 0) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_tell");
    }
    if (!isfinite(value)) {
        return usage(err, -EINVAL, "a trial's value must be finite");
    }
    return tell(c, study, number, json_pack("{s:f}", "value", value), err);
}

/* {name: value, ...} from n names and finite values, or NULL with err filled. */
static json_t *named_values(const char *const *names, const double *values, size_t n,
        const char *what, struct hpo_client_error *err)
{
    json_t *o = json_object();

    if (o == NULL) {
        oom(err);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL || names[i][0] == '\0' || json_object_get(o, names[i]) != NULL) {
            hpo__fail(err, -EINVAL, HPO_CLIENT_USAGE, 0, NULL,
                    "%s names must be non-empty and distinct", what);
            json_decref(o);
            return NULL;
        }
        if (!isfinite(values[i])) {
            hpo__fail(err, -EINVAL, HPO_CLIENT_USAGE, 0, NULL, "%s '%s' must be finite", what,
                    names[i]);
            json_decref(o);
            return NULL;
        }
        if (json_object_set_new(o, names[i], json_real(values[i])) < 0) {
            json_decref(o);
            oom(err);
            return NULL;
        }
    }
    return o;
}

int hpo_client_tell_values(struct hpo_client *c, const char *study, int64_t number,
        const char *const *names, const double *values, size_t n, const char *const *cnames,
        const double *cvals, size_t m, struct hpo_client_error *err)
{
    json_t *body, *vals, *cons = NULL;

    if (c == NULL || study == NULL || number < 0 || n == 0 || (names == NULL && n != 1) ||
            values == NULL || (m > 0 && (cnames == NULL || cvals == NULL))) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_tell_values");
    }
    if (names == NULL) {
        if (!isfinite(values[0])) {
            return usage(err, -EINVAL, "a trial's value must be finite");
        }
        vals = json_real(values[0]);
    } else {
        vals = named_values(names, values, n, "objective", err);
    }
    if (vals == NULL) {
        return err != NULL && err->code == HPO_CLIENT_NO_MEMORY ? -ENOMEM : -EINVAL;
    }
    if (m > 0) {
        cons = named_values(cnames, cvals, m, "constraint", err);
        if (cons == NULL) {
            json_decref(vals);
            return err != NULL && err->code == HPO_CLIENT_NO_MEMORY ? -ENOMEM : -EINVAL;
        }
    }
    body = json_object();
    if (body == NULL || json_object_set_new(body, names ? "values" : "value", vals) < 0 ||
            (cons != NULL && json_object_set_new(body, "constraints", cons) < 0)) {
        json_decref(body);
        return oom(err);
    }
    return tell(c, study, number, body, err);
}

int hpo_client_tell_failed(struct hpo_client *c, const char *study, int64_t number,
        struct hpo_client_error *err)
{
    if (c == NULL || study == NULL || number < 0) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_tell_failed");
    }
    return tell(c, study, number, json_pack("{s:s}", "state", "failed"), err);
}

int hpo_client_tell_pruned(struct hpo_client *c, const char *study, int64_t number,
        struct hpo_client_error *err)
{
    if (c == NULL || study == NULL || number < 0) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_tell_pruned");
    }
    return tell(c, study, number, json_pack("{s:s}", "state", "pruned"), err);
}

int hpo_client_tell_gradient(struct hpo_client *c, const char *study, int64_t number,
        double value, const char *gradient_json, struct hpo_client_error *err)
{
    json_error_t jerr;
    json_t *grad;

    if (c == NULL || study == NULL || number < 0 || gradient_json == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_tell_gradient");
    }
    if (!isfinite(value)) {
        return usage(err, -EINVAL, "a trial's value must be finite");
    }
    grad = json_loads(gradient_json, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(grad)) {
        json_decref(grad);
        return hpo__fail(err, -EINVAL, HPO_CLIENT_USAGE, 0, "gradient",
                "the gradient must be a JSON object");
    }
    return tell(c, study, number, json_pack("{s:f,s:o}", "value", value, "gradient", grad), err);
}

static int little_endian(void)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return 0;
#else
    return 1;
#endif
}

int hpo_client_put_gradient(struct hpo_client *c, const char *study, int64_t number,
        const char *name, const double *values, size_t n, struct hpo_client_error *err)
{
    struct hpo__response resp;
    unsigned char *buf;
    char *esc;
    char *path;
    int r;

    if (c == NULL || study == NULL || number < 0 || name == NULL || (values == NULL && n > 0) ||
            n > SIZE_MAX / 8) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_put_gradient");
    }
    buf = malloc(n * 8 + 1);
    if (buf == NULL) {
        return oom(err);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &values[i], 8);
        if (!little_endian()) {
            bits = __builtin_bswap64(bits);
        }
        memcpy(buf + 8 * i, &bits, 8);
    }
    esc = hpo__escape(name);
    path = esc ? study_path(study, "/trials/%lld/gradient/%s", (long long)number, esc) : NULL;
    free(esc);
    if (path == NULL) {
        free(buf);
        return oom(err);
    }
    /* PUT replaces the stored gradient: a retry changes nothing. */
    r = hpo__send(c, "PUT", path, buf, n * 8, "application/octet-stream", NULL, true, &resp, err);
    free(path);
    free(buf);
    if (r < 0) {
        return r;
    }
    free(resp.body);
    return 0;
}

int hpo_client_param_vector(struct hpo_client *c, const struct hpo_trial *t, const char *name,
        double **ret_values, size_t *ret_size, struct hpo_client_error *err)
{
    json_t *v;
    double *out;
    size_t n;

    if (t == NULL || name == NULL || ret_values == NULL || ret_size == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_param_vector");
    }
    v = hpo__trial_param(t, name);
    if (v == NULL) {
        return hpo__fail(err, -ENOENT, HPO_CLIENT_USAGE, 0, name, "the trial has no param '%s'",
                name);
    }
    if (json_is_array(v)) {
        n = json_array_size(v);
        out = malloc(n * sizeof(double) + 1);
        if (out == NULL) {
            return oom(err);
        }
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(v, i);
            if (!json_is_number(x)) {
                free(out);
                return hpo__fail(err, -EINVAL, HPO_CLIENT_USAGE, 0, name,
                        "param '%s' is not a vector of numbers", name);
            }
            out[i] = json_number_value(x);
        }
        hpo__clear(err);
        *ret_values = out;
        *ret_size = n;
        return 0;
    }
    if (json_is_object(v) && json_is_string(json_object_get(v, "href")) &&
            json_is_integer(json_object_get(v, "size"))) {
        struct hpo__response resp;
        const char *href = json_string_value(json_object_get(v, "href"));
        json_int_t size = json_integer_value(json_object_get(v, "size"));
        int r;

        if (c == NULL) {
            return usage(err, -EINVAL, "a vector given by href needs a client");
        }
        if (href[0] != '/' || size < 0) {
            return hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, 0, name,
                    "bad href for param '%s'", name);
        }
        r = hpo__send(c, "GET", href, NULL, 0, NULL, "application/octet-stream", true, &resp,
                err);
        if (r < 0) {
            return r;
        }
        if (resp.len != (size_t)size * 8) {
            free(resp.body);
            return hpo__fail(err, -EPROTO, HPO_CLIENT_BAD_RESPONSE, (int)resp.status, name,
                    "param '%s': got %zu bytes for %lld values", name, resp.len,
                    (long long)size);
        }
        n = (size_t)size;
        out = malloc(n * sizeof(double) + 1);
        if (out == NULL) {
            free(resp.body);
            return oom(err);
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t bits;
            memcpy(&bits, resp.body + 8 * i, 8);
            if (!little_endian()) {
                bits = __builtin_bswap64(bits);
            }
            memcpy(&out[i], &bits, 8);
        }
        free(resp.body);
        hpo__clear(err);
        *ret_values = out;
        *ret_size = n;
        return 0;
    }
    return hpo__fail(err, -EINVAL, HPO_CLIENT_USAGE, 0, name, "param '%s' is not a vector", name);
}

/* Parse `text` as a JSON object for a request body; NULL (err filled) if it is not one. */
static json_t *object_arg(const char *text, const char *what, struct hpo_client_error *err)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

    if (!json_is_object(v)) {
        json_decref(v);
        hpo__fail(err, -EINVAL, HPO_CLIENT_USAGE, 0, what, "%s must be a JSON object", what);
        return NULL;
    }
    return v;
}

int hpo_client_enqueue(struct hpo_client *c, const char *study, const char *params_json,
        const char *user_attrs_json, struct hpo_trial **ret_trial, struct hpo_client_error *err)
{
    struct hpo__response resp;
    json_t *params;
    json_t *attrs = NULL;
    json_t *body;
    int r;

    if (c == NULL || study == NULL || params_json == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_enqueue");
    }
    params = object_arg(params_json, "params", err);
    if (params == NULL) {
        return -EINVAL;
    }
    if (user_attrs_json != NULL) {
        attrs = object_arg(user_attrs_json, "user_attrs", err);
        if (attrs == NULL) {
            json_decref(params);
            return -EINVAL;
        }
    }
    body = attrs ? json_pack("{s:o,s:o}", "params", params, "user_attrs", attrs)
                 : json_pack("{s:o}", "params", params);
    if (body == NULL) {
        return oom(err);
    }
    /* Each POST makes a new trial: not retried once sent. */
    r = send_json(c, "POST", study_path(study, "/trials"), body, false, &resp, err);
    if (r < 0) {
        return r;
    }
    if (ret_trial == NULL) {
        free(resp.body);
        return 0;
    }
    return trial_response(&resp, ret_trial, err);
}

/* PATCH `path` (stolen) with {"user_attrs": <user_attrs_json>}; keeps the response. */
static int patch_attrs(struct hpo_client *c, char *path, const char *user_attrs_json,
        struct hpo__response *resp, struct hpo_client_error *err)
{
    json_t *attrs = object_arg(user_attrs_json, "user_attrs", err);
    json_t *body;

    if (attrs == NULL) {
        free(path);
        return -EINVAL;
    }
    body = json_pack("{s:o}", "user_attrs", attrs);
    if (body == NULL) {
        free(path);
        return oom(err);
    }
    /* A merge applied twice gives the same attrs: safe to retry. */
    return send_json(c, "PATCH", path, body, true, resp, err);
}

int hpo_client_study_set_user_attrs(struct hpo_client *c, const char *study,
        const char *user_attrs_json, char **ret_json, struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (c == NULL || study == NULL || user_attrs_json == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_study_set_user_attrs");
    }
    r = patch_attrs(c, study_path(study, "%s", ""), user_attrs_json, &resp, err);
    if (r < 0) {
        return r;
    }
    if (ret_json != NULL) {
        *ret_json = resp.body;
    } else {
        free(resp.body);
    }
    return 0;
}

int hpo_client_trial_set_user_attrs(struct hpo_client *c, const char *study, int64_t number,
        const char *user_attrs_json, struct hpo_trial **ret_trial, struct hpo_client_error *err)
{
    struct hpo__response resp;
    int r;

    if (c == NULL || study == NULL || number < 0 || user_attrs_json == NULL) {
        return usage(err, -EINVAL, "bad arguments to hpo_client_trial_set_user_attrs");
    }
    r = patch_attrs(c, study_path(study, "/trials/%lld", (long long)number), user_attrs_json,
            &resp, err);
    if (r < 0) {
        return r;
    }
    if (ret_trial == NULL) {
        free(resp.body);
        return 0;
    }
    return trial_response(&resp, ret_trial, err);
}
