/*
** test-service-decode.c: the service's decoders (service/decode.c) through
** hpo_service_decode, with no service and no database: one table of requests
** (op, body, query, Accept) and what each must give: accepted with the
** decoded arguments, or refused with the exact error code, field and HTTP
** status of docs/API.md.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "service-int.h"

struct row {
    enum hpo_service_op op;
    const char *body;  /* NULL: no body */
    const char *query; /* "k=v&k" (no escapes), NULL: none */
    const char *accept;
    enum hpo_code code; /* HPO_OK: accepted */
    const char *field;  /* the error's field ("" none) */
};

static const struct row rows[] = {
    /* Bodies that are not a JSON object. */
    { HPO_SERVICE_TELL, "{", NULL, NULL, HPO_INVALID_JSON, "" },
    { HPO_SERVICE_TELL, "[1]", NULL, NULL, HPO_INVALID_JSON, "" },
    { HPO_SERVICE_TELL, "{\"value\":1,\"value\":2}", NULL, NULL, HPO_INVALID_JSON, "" },
    /* Study create. */
    { HPO_SERVICE_STUDY_CREATE, NULL, NULL, NULL, HPO_INVALID_ARGUMENT, "name" },
    { HPO_SERVICE_STUDY_CREATE, "{\"name\":\"..\"}", NULL, NULL, HPO_INVALID_ARGUMENT, "name" },
    { HPO_SERVICE_STUDY_CREATE, "{\"name\":\".\"}", NULL, NULL, HPO_INVALID_ARGUMENT, "name" },
    { HPO_SERVICE_STUDY_CREATE, "{\"name\":\"a\"}", NULL, NULL, HPO_OK, "" },
    /* Ask. */
    { HPO_SERVICE_ASK, NULL, NULL, NULL, HPO_OK, "" },
    { HPO_SERVICE_ASK, "{\"worker\":null}", NULL, NULL, HPO_OK, "" },
    { HPO_SERVICE_ASK, "{\"worker\":7}", NULL, NULL, HPO_INVALID_ARGUMENT, "worker" },
    { HPO_SERVICE_ASK, "{\"wrker\":\"w\"}", NULL, NULL, HPO_INVALID_ARGUMENT, "wrker" },
    /* Trial create. */
    { HPO_SERVICE_TRIAL_CREATE, "{}", NULL, NULL, HPO_INVALID_ARGUMENT, "params" },
    { HPO_SERVICE_TRIAL_CREATE, "{\"params\":{},\"value\":\"1\"}", NULL, NULL, HPO_INVALID_ARGUMENT,
            "value" },
    { HPO_SERVICE_TRIAL_CREATE, "{\"params\":{},\"user_attrs\":[]}", NULL, NULL,
            HPO_INVALID_ARGUMENT, "user_attrs" },
    { HPO_SERVICE_TRIAL_CREATE, "{\"params\":{\"x\":1},\"value\":2.5}", NULL, NULL, HPO_OK, "" },
    /* Tell. */
    { HPO_SERVICE_TELL, NULL, NULL, NULL, HPO_INVALID_ARGUMENT, "value" },
    { HPO_SERVICE_TELL, "{\"value\":0.5}", NULL, NULL, HPO_OK, "" },
    { HPO_SERVICE_TELL, "{\"state\":\"pruned\"}", NULL, NULL, HPO_OK, "" },
    { HPO_SERVICE_TELL, "{\"state\":\"failed\",\"value\":1}", NULL, NULL, HPO_INVALID_ARGUMENT,
            "value" },
    { HPO_SERVICE_TELL, "{\"state\":\"running\"}", NULL, NULL, HPO_INVALID_ARGUMENT, "state" },
    { HPO_SERVICE_TELL, "{\"state\":3}", NULL, NULL, HPO_INVALID_ARGUMENT, "state" },
    { HPO_SERVICE_TELL, "{\"value\":true}", NULL, NULL, HPO_INVALID_ARGUMENT, "value" },
    { HPO_SERVICE_TELL, "{\"value\":1,\"user_attrs\":1}", NULL, NULL, HPO_INVALID_ARGUMENT,
            "user_attrs" },
    { HPO_SERVICE_TELL, "{\"value\":1,\"gradient\":{\"x\":1}}", NULL, NULL, HPO_OK, "" },
    { HPO_SERVICE_TELL, "{\"value\":1,\"extra\":1}", NULL, NULL, HPO_INVALID_ARGUMENT, "extra" },
    /* Report. */
    { HPO_SERVICE_REPORT, "{\"step\":3,\"value\":0.25}", NULL, NULL, HPO_OK, "" },
    { HPO_SERVICE_REPORT, "{\"step\":-1,\"value\":0.25}", NULL, NULL, HPO_INVALID_ARGUMENT, "step" },
    { HPO_SERVICE_REPORT, "{\"step\":1.5,\"value\":0.25}", NULL, NULL, HPO_INVALID_ARGUMENT, "step" },
    { HPO_SERVICE_REPORT, "{\"step\":1}", NULL, NULL, HPO_INVALID_ARGUMENT, "value" },
    /* Heartbeat: no field at all. */
    { HPO_SERVICE_HEARTBEAT, NULL, NULL, NULL, HPO_OK, "" },
    { HPO_SERVICE_HEARTBEAT, "{\"x\":1}", NULL, NULL, HPO_INVALID_ARGUMENT, "x" },
    /* Patch. */
    { HPO_SERVICE_TRIAL_PATCH, "{\"user_attrs\":{\"a\":null}}", NULL, NULL, HPO_OK, "" },
    { HPO_SERVICE_STUDY_PATCH, "{\"user_attrs\":\"a\"}", NULL, NULL, HPO_INVALID_ARGUMENT,
            "user_attrs" },
    { HPO_SERVICE_STUDY_PATCH, "{\"name\":\"b\"}", NULL, NULL, HPO_INVALID_ARGUMENT, "name" },
    /* Trials list: the query; the body is never read. */
    { HPO_SERVICE_TRIALS_LIST, NULL, NULL, NULL, HPO_OK, "" },
    { HPO_SERVICE_TRIALS_LIST, "not json", "limit=0", NULL, HPO_INVALID_ARGUMENT, "limit" },
    { HPO_SERVICE_TRIALS_LIST, NULL, "limit=abc", NULL, HPO_INVALID_ARGUMENT, "limit" },
    { HPO_SERVICE_TRIALS_LIST, NULL, "offset=-1", NULL, HPO_INVALID_ARGUMENT, "offset" },
    { HPO_SERVICE_TRIALS_LIST, NULL, "state=done", NULL, HPO_INVALID_ARGUMENT, "state" },
    { HPO_SERVICE_TRIALS_LIST, NULL, "format=xml", NULL, HPO_INVALID_ARGUMENT, "format" },
    { HPO_SERVICE_TRIALS_LIST, NULL, "intermediate=yes", NULL, HPO_INVALID_ARGUMENT,
            "intermediate" },
    { HPO_SERVICE_TRIALS_LIST, NULL, "sort=value", NULL, HPO_INVALID_ARGUMENT, "sort" },
    { HPO_SERVICE_TRIALS_LIST, NULL, "state=complete&limit=5&offset=10", NULL, HPO_OK, "" },
    /* Other reads and the binary upload take any body as it is. */
    { HPO_SERVICE_TRIAL_GET, NULL, "anything=1", NULL, HPO_OK, "" },
    { HPO_SERVICE_GRADIENT_PUT, "\x01\x02", NULL, NULL, HPO_OK, "" },
};

/* Split "k=v&k2" into pairs (in `buf`, a writable copy). */
static size_t split_query(char *buf, struct hpo_service_query_pair *pairs, size_t max)
{
    size_t n = 0;

    for (char *p = buf; p != NULL && *p != '\0' && n < max;) {
        char *amp = strchr(p, '&'), *eq;
        if (amp != NULL) {
            *amp = '\0';
        }
        eq = strchr(p, '=');
        if (eq != NULL) {
            *eq = '\0';
        }
        pairs[n].key = p;
        pairs[n].value = eq != NULL ? eq + 1 : NULL;
        n++;
        p = amp != NULL ? amp + 1 : NULL;
    }
    return n;
}

/* Decode one row into *req (the caller finishes it); returns hpo_service_decode's result. */
static int decode_row(const struct row *r, struct hpo_service_request *req)
{
    struct hpo_service_query_pair pairs[8];
    struct hpo_service_query q = { .pairs = pairs, .accept = r->accept };
    char qbuf[128] = "";

    memset(req, 0, sizeof(*req));
    req->op = r->op;
    req->state_filter = -1;
    if (r->query != NULL) {
        snprintf(qbuf, sizeof(qbuf), "%s", r->query);
        q.n = split_query(qbuf, pairs, 8);
    }
    return hpo_service_decode(req, &q, r->body, r->body ? strlen(r->body) : 0);
}

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct hpo_service_request req;
        int rc = decode_row(r, &req);
        if (r->code != req.err.code || strcmp(r->field, req.err.field) != 0) {
            print_error("row %zu (op %d, body %s, query %s): got %s field '%s' (%s)\n", i,
                    (int)r->op, r->body ? r->body : "-", r->query ? r->query : "-",
                    hpo_code_name(req.err.code), req.err.field, req.err.message);
        }
        assert_int_equal(req.err.code, r->code);
        assert_string_equal(req.err.field, r->field);
        assert_int_equal(rc == 0, r->code == HPO_OK);
        assert_int_equal(req.decoded, r->code == HPO_OK);
        if (r->code != HPO_OK) {
            assert_int_equal(req.status, hpo_code_status(r->code));
        }
        hpo_service_request_finish(&req);
    }
}

/* The arguments an accepted request decodes to. */
static void test_values(void **state)
{
    struct hpo_service_request req;
    struct row tell = { HPO_SERVICE_TELL, "{\"value\":0.5,\"user_attrs\":{\"k\":1}}", NULL, NULL,
        HPO_OK, "" };
    struct row pruned = { HPO_SERVICE_TELL, "{\"state\":\"pruned\"}", NULL, NULL, HPO_OK, "" };
    struct row report = { HPO_SERVICE_REPORT, "{\"step\":7,\"value\":-2}", NULL, NULL, HPO_OK, "" };
    struct row ask = { HPO_SERVICE_ASK, "{\"worker\":\"gpu-3\"}", NULL, NULL, HPO_OK, "" };
    struct row list = { HPO_SERVICE_TRIALS_LIST, NULL, "state=pruned&offset=4&intermediate=true",
        "text/csv", HPO_OK, "" };
    struct row page = { HPO_SERVICE_TRIALS_LIST, NULL, "format=json&limit=3", "text/csv", HPO_OK,
        "" };
    struct row feas = { HPO_SERVICE_TRIALS_LIST, NULL, "feasible=true", NULL, HPO_OK, "" };
    struct row infeas = { HPO_SERVICE_TRIALS_LIST, NULL, "feasible=false&state=complete", NULL,
        HPO_OK, "" };
    struct row bad = { HPO_SERVICE_TRIALS_LIST, NULL, "feasible=TRUE", NULL, HPO_OK, "" };

    assert_int_equal(decode_row(&tell, &req), 0);
    assert_int_equal(req.args.tell.state, HPO_STATE_COMPLETE);
    assert_true(req.args.tell.value == 0.5);
    assert_int_equal(json_integer_value(json_object_get(req.args.tell.attrs, "k")), 1);
    assert_null(req.args.tell.gradient);
    hpo_service_request_finish(&req);

    assert_int_equal(decode_row(&pruned, &req), 0);
    assert_int_equal(req.args.tell.state, HPO_STATE_PRUNED);
    assert_true(isnan(req.args.tell.value));
    hpo_service_request_finish(&req);

    assert_int_equal(decode_row(&report, &req), 0);
    assert_int_equal(req.args.report.step, 7);
    assert_true(req.args.report.value == -2.0);
    hpo_service_request_finish(&req);

    assert_int_equal(decode_row(&ask, &req), 0);
    assert_string_equal(req.args.ask.worker, "gpu-3");
    hpo_service_request_finish(&req);

    /* CSV from Accept, every row (limit -1) without a limit. */
    assert_int_equal(decode_row(&list, &req), 0);
    assert_int_equal(req.state_filter, HPO_STATE_PRUNED);
    assert_int_equal(req.offset, 4);
    assert_int_equal(req.limit, -1);
    assert_true(req.csv);
    assert_true(req.intermediate);
    hpo_service_request_finish(&req);

    /* format=json wins over Accept. */
    assert_int_equal(decode_row(&page, &req), 0);
    assert_false(req.csv);
    assert_int_equal(req.limit, 3);
    assert_int_equal(req.offset, 0);
    assert_int_equal(req.state_filter, -1);
    assert_int_equal(req.feasible_filter, 0);
    hpo_service_request_finish(&req);

    /* feasible: true (1), false (2); only those two spellings. */
    assert_int_equal(decode_row(&feas, &req), 0);
    assert_int_equal(req.feasible_filter, 1);
    assert_int_equal(req.state_filter, -1);
    hpo_service_request_finish(&req);
    assert_int_equal(decode_row(&infeas, &req), 0);
    assert_int_equal(req.feasible_filter, 2);
    assert_int_equal(req.state_filter, HPO_STATE_COMPLETE);
    hpo_service_request_finish(&req);
    assert_true(decode_row(&bad, &req) < 0);
    assert_int_equal(req.err.code, HPO_INVALID_ARGUMENT);
    assert_string_equal(req.err.field, "feasible");
    hpo_service_request_finish(&req);
}

/*
** The small bodies service.c parses without jansson (an empty object, one
** member with a number) decode to the object json_loadb makes: the same
** keys, types and values to the bit; bodies just outside that shape, and
** bad ones, give jansson's own object or error message. Each body is
** decoded as a tell and as an ask.
*/
static void check_like_jansson(const char *body)
{
    static const enum hpo_service_op ops[] = { HPO_SERVICE_TELL, HPO_SERVICE_ASK };
    json_error_t jerr;
    json_t *want = json_loadb(body, strlen(body), JSON_REJECT_DUPLICATES, &jerr);

    for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
        struct row r = { ops[o], body, NULL, NULL, HPO_OK, "" };
        struct hpo_service_request req;
        const char *key;
        json_t *v;
        (void)decode_row(&r, &req);
        if (want == NULL || !json_is_object(want)) {
            char msg[300];
            snprintf(msg, sizeof(msg), want == NULL ? "body is not JSON: %s"
                                                    : "body must be a JSON object",
                    jerr.text);
            if (req.err.code != HPO_INVALID_JSON || strcmp(req.err.message, msg) != 0) {
                fail_msg("body '%s': '%s', want '%s'", body, req.err.message, msg);
            }
            assert_false(req.decoded);
            hpo_service_request_finish(&req);
            continue;
        }
        if (req.doc == NULL || json_object_size(req.doc) != json_object_size(want)) {
            fail_msg("body '%s': no object or another size (%s)", body, req.err.message);
        }
        json_object_foreach(want, key, v) {
            json_t *got = json_object_get(req.doc, key);
            if (got == NULL || json_typeof(got) != json_typeof(v) || !json_equal(got, v) ||
                    (json_is_real(v) && memcmp(&(double){ json_real_value(v) },
                                                &(double){ json_real_value(got) },
                                                sizeof(double)) != 0)) {
                fail_msg("body '%s': member '%s' differs from jansson's", body, key);
            }
        }
        hpo_service_request_finish(&req);
    }
    json_decref(want);
}

static void test_small_bodies_as_jansson(void **state)
{
    static const char *const bodies[] = {
        "{}", " { } ", "\t{\r\n}\n", "{\"value\":0.5}", "{\"value\": 0.84147098480789650}",
        " {\n \"value\" : -3 } ", "{\"value\":0}", "{\"value\":-0}", "{\"value\":-0.0}",
        "{\"value\":1e5}", "{\"value\":1E+5}", "{\"value\":2.5e-3}", "{\"value\":1e-400}",
        "{\"value\":4.9e-324}", "{\"value\":1.7976931348623157e308}",
        "{\"value\":123456789012345678}", "{\"value\":-123456789012345678}",
        "{\"value\":1234567890123456789}", "{\"value\":9223372036854775807}",
        "{\"value\":9223372036854775808}", "{\"value\":-9223372036854775809}",
        "{\"value\":1e400}", "{\"value\":-1e400}", "{\"value\":01}", "{\"value\":1.}",
        "{\"value\":.5}", "{\"value\":1e}", "{\"value\":1e+}", "{\"value\":-}", "{\"value\":+1}",
        "{\"value\":1x}", "{\"value\":1}x", "{\"value\":1},", "{\"value\":1,}",
        "{\"value\":NaN}", "{\"value\":Infinity}", "{\"value\":\"1\"}", "{\"value\":true}",
        "{\"value\":null}", "{\"va\\u006cue\":1}", "{\"\":1}", "{\"value\":1,\"value\":2}",
        "{\"value\":1,\"state\":\"complete\"}", "{\"wrong\":1}", "{\"Value_2\":7}",
        "{\"value\"1}", "{\"value\":}", "{\"value\" :", "{\"value", "{", "}", "[]", "[1]", "1",
        "\"x\"", "{}}", "{} {}", "{\"value\":0.5}\x01", "{\"value\":0.5\x00}", "\xef\xbb\xbf{}",
        "{\"valu\xc3\xa9\":1}",
        "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}",
        "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}",
        "{\"value\":0.1234567890123456789012345678901234567890123456789012345678901}",
        "{\"value\":0.12345678901234567890123456789012345678901234567890123456789012}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        check_like_jansson(bodies[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_small_bodies_as_jansson),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
