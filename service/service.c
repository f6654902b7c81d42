/*
** service.c: the op table and the two entry points every request goes
** through: hpo_service_decode (body and query into arguments) and
** hpo_service_execute (arguments into the operation).
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service-int.h"

/* One row per enum hpo_service_op, in its order: how to decode the request, what runs it. */
static const struct op_row {
    hpo__decode_fn decode;
    hpo__op_fn run;
    bool binary; /* the body is bytes (data/data_len), not JSON */
} ops[] = {
    [HPO_SERVICE_STUDY_CREATE] = { hpo__decode_study_create, hpo__op_study_create, false },
    [HPO_SERVICE_STUDY_LIST] = { hpo__decode_none, hpo__op_study_list, false },
    [HPO_SERVICE_STUDY_GET] = { hpo__decode_none, hpo__op_study_get, false },
    [HPO_SERVICE_STUDY_DELETE] = { hpo__decode_none, hpo__op_study_delete, false },
    [HPO_SERVICE_ASK] = { hpo__decode_ask, hpo__op_ask, false },
    [HPO_SERVICE_TRIAL_CREATE] = { hpo__decode_trial_create, hpo__op_trial_create, false },
    [HPO_SERVICE_TELL] = { hpo__decode_tell, hpo__op_tell, false },
    [HPO_SERVICE_REPORT] = { hpo__decode_report, hpo__op_report, false },
    [HPO_SERVICE_HEARTBEAT] = { hpo__decode_empty, hpo__op_heartbeat, false },
    [HPO_SERVICE_TRIALS_LIST] = { hpo__decode_trials_list, hpo__op_trials_list, false },
    [HPO_SERVICE_TRIAL_GET] = { hpo__decode_none, hpo__op_trial_get, false },
    [HPO_SERVICE_BEST] = { hpo__decode_none, hpo__op_best, false },
    [HPO_SERVICE_PARAM_GET] = { hpo__decode_none, hpo__op_param_get, false },
    [HPO_SERVICE_GRADIENT_PUT] = { hpo__decode_none, hpo__op_gradient_put, true },
    [HPO_SERVICE_TRIAL_PATCH] = { hpo__decode_patch, hpo__op_trial_patch, false },
    [HPO_SERVICE_STUDY_PATCH] = { hpo__decode_patch, hpo__op_study_patch, false },
    [HPO_SERVICE_COLUMNS] = { hpo__decode_columns, hpo__op_columns, false },
    [HPO_SERVICE_CURVES] = { hpo__decode_curves, hpo__op_curves, false },
    [HPO_SERVICE_IMPORTANCES] = { hpo__decode_importances, hpo__op_importances, false },
    [HPO_SERVICE_PARETO] = { hpo__decode_none, hpo__op_pareto, false },
};
_Static_assert(sizeof(ops) / sizeof(ops[0]) == HPO_SERVICE_OP_COUNT,
        "every enum hpo_service_op needs its row in ops[]");

static void fail(struct hpo_service_request *req)
{
    req->status = hpo_code_status(req->err.code);
}

static bool json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool json_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* p moved past JSON whitespace, at most to end. */
static const char *skip_space(const char *p, const char *end)
{
    while (p < end && json_space(*p)) {
        p++;
    }
    return p;
}

/* p moved past decimal digits, at most to end. */
static const char *skip_digits(const char *p, const char *end)
{
    while (p < end && json_digit(*p)) {
        p++;
    }
    return p;
}

/*
** The bodies of the busiest requests, `{}` (an ask) and `{"value": 0.5}` (a
** tell), parsed without jansson's lexer: an object that is empty or has one
** member whose key is 1 to 64 of [A-Za-z0-9_] and whose value is a JSON
** number, with JSON's whitespace around the tokens. Anything else (NULL
** returned) goes to json_loadb, which makes the same object from the bodies
** taken here (the number as jansson reads it: an integer of up to 18 digits
** by strtoll, a real by strtod, an infinite one left to jansson's overflow
** error) and alone decides the rest, errors included.
*/
static json_t *load_small(const char *p, size_t len)
{
    const char *end = p + len, *key, *num;
    char name[65], text[64];
    size_t key_len, num_len, digits = 0;
    bool real = false;
    json_t *doc, *v;

    p = skip_space(p, end);
    if (p == end || *p++ != '{') {
        return NULL;
    }
    p = skip_space(p, end);
    if (p < end && *p == '}') {
        p = skip_space(p + 1, end);
        return p == end ? json_object() : NULL;
    }
    if (p == end || *p++ != '"') {
        return NULL;
    }
    for (key = p; p < end && (json_digit(*p) || *p == '_' || (*p >= 'a' && *p <= 'z') ||
                                     (*p >= 'A' && *p <= 'Z'));
            p++) {
    }
    key_len = (size_t)(p - key);
    if (key_len == 0 || key_len >= sizeof(name) || p == end || *p++ != '"') {
        return NULL;
    }
    p = skip_space(p, end);
    if (p == end || *p++ != ':') {
        return NULL;
    }
    p = skip_space(p, end);
    /* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
    num = p;
    if (p < end && *p == '-') {
        p++;
    }
    if (p < end && *p == '0') {
        p++;
        digits = 1;
    } else {
        const char *first = p;
        p = skip_digits(p, end);
        digits = (size_t)(p - first);
    }
    if (digits == 0 || (p < end && json_digit(*p))) {
        return NULL;
    }
    if (p < end && *p == '.') {
        real = true;
        if (++p == end || !json_digit(*p)) {
            return NULL;
        }
        p = skip_digits(p, end);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        if (++p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p == end || !json_digit(*p)) {
            return NULL;
        }
        p = skip_digits(p, end);
    }
    num_len = (size_t)(p - num);
    if (num_len >= sizeof(text) || (!real && digits > 18)) {
        return NULL;
    }
    p = skip_space(p, end);
    if (p == end || *p++ != '}') {
        return NULL;
    }
    p = skip_space(p, end);
    if (p != end) {
        return NULL;
    }
    memcpy(name, key, key_len);
    name[key_len] = '\0';
    memcpy(text, num, num_len);
    text[num_len] = '\0';
    if (real) {
        double x = strtod(text, NULL);
        if (isinf(x)) {
            return NULL;
        }
        v = json_real(x);
    } else {
        v = json_integer((json_int_t)strtoll(text, NULL, 10));
    }
    doc = v != NULL ? json_object() : NULL;
    if (doc == NULL) {
        json_decref(v);
        return NULL;
    }
    if (json_object_set_new_nocheck(doc, name, v) < 0) {
        json_decref(doc); /* v went with the failed call */
        return NULL;
    }
    return doc;
}

int hpo_service_decode(struct hpo_service_request *req, const struct hpo_service_query *q, const char *body,
        size_t len)
{
    const struct op_row *row;
    json_error_t jerr;

    hpo_error_clear(&req->err);
    req->decoded = false;
    if ((unsigned)req->op >= HPO_SERVICE_OP_COUNT) {
        hpo_error_set(&req->err, -EINVAL, HPO_NOT_FOUND, NULL, "no such operation");
        fail(req);
        return -EINVAL;
    }
    row = &ops[req->op];
    if (req->op == HPO_SERVICE_TRIALS_LIST) {
        /* The query first: a bad query is named even when the body is bad too. */
        if (row->decode(NULL, q, &req->args, &req->err) < 0) {
            fail(req);
            return -EINVAL;
        }
        req->state_filter = req->args.list.state_filter;
        req->feasible_filter = req->args.list.feasible_filter;
        req->limit = req->args.list.limit;
        req->offset = req->args.list.offset;
        req->csv = req->args.list.csv;
        req->intermediate = req->args.list.intermediate;
    }
    if (!row->binary && len > 0) {
        req->doc = load_small(body, len);
        if (req->doc == NULL) {
            req->doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        }
        if (req->doc == NULL) {
            hpo_error_set(&req->err, -EINVAL, HPO_INVALID_JSON, NULL, "body is not JSON: %s",
                    jerr.text);
            fail(req);
            return -EINVAL;
        }
        if (!json_is_object(req->doc)) {
            hpo_error_set(&req->err, -EINVAL, HPO_INVALID_JSON, NULL,
                    "body must be a JSON object");
            fail(req);
            return -EINVAL;
        }
        req->body = req->doc;
    }
    if (req->op != HPO_SERVICE_TRIALS_LIST && row->decode(req->body, q, &req->args, &req->err) < 0) {
        fail(req);
        return -EINVAL;
    }
    req->decoded = true;
    return 0;
}

void hpo_service_execute(struct hpo_service *svc, struct hpo_service_request *req)
{
    hpo_error_clear(&req->err);
    req->status = 0;
    req->reply = NULL;
    req->text = NULL;
    req->text_len = 0;
    req->stream = NULL;
    req->total = -1;
    req->next_offset = -1;
    if ((unsigned)req->op >= HPO_SERVICE_OP_COUNT) {
        hpo_error_set(&req->err, -EINVAL, HPO_NOT_FOUND, NULL, "no such operation");
    } else if (req->body != NULL && !json_is_object(req->body)) {
        hpo_error_set(&req->err, -EINVAL, HPO_INVALID_JSON, NULL, "body must be a JSON object");
    } else if (req->decoded || req->op == HPO_SERVICE_TRIALS_LIST ||
            ops[req->op].decode(req->body, NULL, &req->args, &req->err) == 0) {
        ops[req->op].run(svc, req, &req->args);
    }
    if (req->err.code != HPO_OK) {
        req->status = hpo_code_status(req->err.code);
        json_decref(req->reply);
        req->reply = NULL;
        free(req->text);
        req->text = NULL;
        hpo_service_stream_free(req->stream);
        req->stream = NULL;
    } else if (req->status == 0) {
        hpo_error_set(&req->err, -EIO, HPO_INTERNAL, NULL, "no reply was produced");
        req->status = 500;
    }
}

bool hpo_service_reply_valid(struct hpo_service *svc, const struct hpo_service_request *req,
        uint64_t from, uint64_t upto, struct hpo_error *err)
{
    struct hpo_error cause;

    if (req->settled) {
        return true; /* it read committed state only */
    }
    if (req->chain != NULL) {
        if (!hpo_storage_chain_failed(req->chain, from, upto, &cause)) {
            return true;
        }
    } else if (req->op != HPO_SERVICE_STUDY_LIST ||
            hpo_storage_last_failed(svc->storage) <= from) {
        return true;
    } else {
        snprintf(cause.message, sizeof(cause.message), "a write of another request failed");
    }
    hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL,
            "this request depended on a write that failed (%.190s); retry", cause.message);
    return false;
}

void hpo_service_request_finish(struct hpo_service_request *req)
{
    hpo_storage_chain_unref(req->chain);
    req->chain = NULL;
    json_decref(req->reply);
    json_decref(req->doc);
    req->doc = NULL;
    req->decoded = false;
    req->reply = NULL;
    hpo_service_stream_free(req->stream);
    req->stream = NULL;
    if (req->text_free != NULL) {
        req->text_free(req->text_cls);
    } else {
        free(req->text);
    }
    req->text = NULL;
    req->text_free = NULL;
    req->text_cls = NULL;
}

