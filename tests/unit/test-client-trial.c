/*
** test-client-trial.c: unit tests of libhpoclient without a daemon: parsing
** trials, typed param access and its errors, param text for hpoctl run, the
** error codes' numbers and names, and client creation.
*/
#include <errno.h>
#include <setjmp.h> /* cmocka needs setjmp.h, stdarg.h and stddef.h */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hpo/client.h>

static const char trial_json[] =
        "{\"study\": \"s1\", \"number\": 12, \"state\": \"complete\","
        " \"params\": {\"lr\": 0.1, \"layers\": 3, \"opt\": \"adam\", \"flag\": true,"
        "  \"whole\": 2.0, \"big\": -9007199254740993, \"tiny\": 1e-300,"
        "  \"vec\": [0.5, -1.25, 3], \"href\": {\"size\": 2000, \"href\": \"/v1/x\"}},"
        " \"value\": 0.031, \"intermediate\": []}";

static int setup(void **state)
{
    struct hpo_trial *t = NULL;

    if (hpo_trial_parse(trial_json, strlen(trial_json), &t) != 0) {
        return -1;
    }
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    hpo_trial_free(*state);
    return 0;
}

static void test_fields(void **state)
{
    const struct hpo_trial *t = *state;
    double v = 0;

    assert_string_equal(hpo_trial_study(t), "s1");
    assert_int_equal(hpo_trial_number(t), 12);
    assert_string_equal(hpo_trial_state(t), "complete");
    assert_int_equal(hpo_trial_value(t, &v), 0);
    assert_true(v == 0.031);
    assert_int_equal(hpo_trial_param_count(t), 9);
    /* The server's order, not a hash order. */
    assert_string_equal(hpo_trial_param_name(t, 0), "lr");
    assert_string_equal(hpo_trial_param_name(t, 2), "opt");
    assert_string_equal(hpo_trial_param_name(t, 8), "href");
    assert_null(hpo_trial_param_name(t, 9));
    assert_non_null(strstr(hpo_trial_json(t), "\"number\":12"));
}

static void test_typed(void **state)
{
    const struct hpo_trial *t = *state;
    double d = -1;
    int64_t i = -1;
    const char *s = NULL;
    bool b = false;

    assert_int_equal(hpo_trial_param_double(t, "lr", &d), 0);
    assert_true(d == 0.1);
    assert_int_equal(hpo_trial_param_double(t, "layers", &d), 0);
    assert_true(d == 3.0);
    assert_int_equal(hpo_trial_param_int(t, "layers", &i), 0);
    assert_int_equal(i, 3);
    assert_int_equal(hpo_trial_param_int(t, "big", &i), 0);
    assert_true(i == INT64_C(-9007199254740993)); /* not rounded through a double */
    assert_int_equal(hpo_trial_param_string(t, "opt", &s), 0);
    assert_string_equal(s, "adam");
    assert_int_equal(hpo_trial_param_bool(t, "flag", &b), 0);
    assert_true(b);
}

static void test_typed_errors(void **state)
{
    const struct hpo_trial *t = *state;
    double d = 42;
    int64_t i = 42;
    const char *s = "unchanged";
    bool b = false;

    /* A float param is not an int even when integral. */
    assert_int_equal(hpo_trial_param_int(t, "whole", &i), -EINVAL);
    assert_int_equal(hpo_trial_param_int(t, "lr", &i), -EINVAL);
    assert_int_equal(hpo_trial_param_double(t, "opt", &d), -EINVAL);
    assert_int_equal(hpo_trial_param_string(t, "lr", &s), -EINVAL);
    assert_int_equal(hpo_trial_param_bool(t, "opt", &b), -EINVAL);
    assert_int_equal(hpo_trial_param_double(t, "momentum", &d), -ENOENT);
    assert_int_equal(hpo_trial_param_string(t, "momentum", &s), -ENOENT);
    /* Out-parameters are untouched on failure. */
    assert_true(d == 42);
    assert_int_equal(i, 42);
    assert_string_equal(s, "unchanged");
    assert_false(b);
}

static void expect_format(const struct hpo_trial *t, const char *name, const char *want)
{
    char *text = NULL;

    assert_int_equal(hpo_trial_param_format(t, name, &text), 0);
    assert_string_equal(text, want);
    hpo_client_free(text);
}

static void test_format(void **state)
{
    const struct hpo_trial *t = *state;
    char *text = NULL;

    expect_format(t, "lr", "0.1"); /* shortest round trip, not 0.10000000000000001 */
    expect_format(t, "layers", "3");
    expect_format(t, "opt", "adam");
    expect_format(t, "flag", "true");
    expect_format(t, "whole", "2");
    expect_format(t, "big", "-9007199254740993");
    expect_format(t, "tiny", "1e-300");
    expect_format(t, "vec", "0.5,-1.25,3");
    assert_int_equal(hpo_trial_param_format(t, "href", &text), -EINVAL);
    assert_int_equal(hpo_trial_param_format(t, "nope", &text), -ENOENT);
    assert_null(text);
}

static void test_vector(void **state)
{
    const struct hpo_trial *t = *state;
    struct hpo_client_error err;
    double *v = NULL;
    size_t n = 0;

    /* An inline array needs no request (and so no client). */
    assert_int_equal(hpo_client_param_vector(NULL, t, "vec", &v, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_true(v[0] == 0.5 && v[1] == -1.25 && v[2] == 3.0);
    hpo_client_free(v);
    assert_int_equal(hpo_client_param_vector(NULL, t, "lr", &v, &n, &err), -EINVAL);
    assert_int_equal(err.code, HPO_CLIENT_USAGE);
    assert_string_equal(err.field, "lr");
    assert_int_equal(hpo_client_param_vector(NULL, t, "nope", &v, &n, &err), -ENOENT);
    assert_int_equal(hpo_client_param_vector(NULL, t, "href", &v, &n, &err), -EINVAL);
}

static void test_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "", "[]", "{\"number\": 1}", "{\"study\": \"s\", \"number\": \"1\", \"state\": \"x\", \"params\": {}}",
        "{\"study\": \"s\", \"number\": 1, \"state\": \"x\", \"params\": []}",
        "{\"study\": \"s\", \"number\": 1, \"state\": \"x\", \"params\": {}, \"number\": 2}",
    };
    struct hpo_trial *t = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(hpo_trial_parse(bad[i], strlen(bad[i]), &t), -EINVAL);
        assert_null(t);
    }
    assert_int_equal(hpo_trial_parse(NULL, 0, &t), -EINVAL);
}

static void test_codes(void **state)
{
    (void)state;
    /* The numbers are the server's (core/error.h order) and never change. */
    assert_int_equal(HPO_CLIENT_NOT_FOUND, 5);
    assert_int_equal(HPO_CLIENT_CONFLICT, 7);
    assert_int_equal(HPO_CLIENT_INTERNAL, 12);
    assert_string_equal(hpo_client_code_name(HPO_CLIENT_OK), "ok");
    assert_string_equal(hpo_client_code_name(HPO_CLIENT_INVALID_ARGUMENT), "invalid_argument");
    assert_string_equal(hpo_client_code_name(HPO_CLIENT_EXHAUSTED), "exhausted");
    assert_string_equal(hpo_client_code_name(HPO_CLIENT_UNAVAILABLE), "unavailable");
    assert_string_equal(hpo_client_code_name(HPO_CLIENT_TRANSPORT), "transport");
    assert_string_equal(hpo_client_code_name((enum hpo_client_code)55), "unknown");
}

static void test_create(void **state)
{
    struct hpo_client_error err;
    struct hpo_client *c = NULL;

    (void)state;
    assert_int_equal(hpo_client_create("ftp://x", NULL, &c, &err), -EINVAL);
    assert_null(c);
    assert_int_equal(err.code, HPO_CLIENT_USAGE);
    assert_int_equal(hpo_client_create("http://h/", "a\nb", &c, &err), -EINVAL);
    assert_null(c);
    assert_int_equal(hpo_client_create(NULL, "tok", &c, &err), 0);
    assert_non_null(c);
    assert_int_equal(err.code, HPO_CLIENT_OK);
    assert_int_equal(hpo_client_set_retries(c, 1, 10, 5), -EINVAL);
    assert_int_equal(hpo_client_set_retries(c, 0, 0, 0), 0);
    assert_int_equal(hpo_client_set_timeouts(c, -1, 0), -EINVAL);
    /* Local argument checks fail before any request. */
    assert_int_equal(hpo_client_tell(c, "s", 0, 1.0 / 0.0, &err), -EINVAL);
    assert_int_equal(err.code, HPO_CLIENT_USAGE);
    assert_int_equal(hpo_client_report(c, "s", 0, -1, 1.0, NULL, &err), -EINVAL);
    assert_int_equal(hpo_client_tell_gradient(c, "s", 0, 1.0, "[1]", &err), -EINVAL);
    assert_string_equal(err.field, "gradient");
    hpo_client_destroy(c);
    hpo_client_destroy(NULL);
}

static void test_unreachable(void **state)
{
    struct hpo_client_error err;
    struct hpo_client *c = NULL;
    char *body = NULL;

    (void)state;
    /* Port 1 on loopback refuses: a transport error after the retries. */
    assert_int_equal(hpo_client_create("http://127.0.0.1:1", NULL, &c, &err), 0);
    assert_int_equal(hpo_client_set_retries(c, 2, 1, 2), 0);
    assert_int_equal(hpo_client_study_list(c, &body, &err), -ECONNREFUSED);
    assert_null(body);
    assert_int_equal(err.code, HPO_CLIENT_TRANSPORT);
    assert_int_equal(err.status, 0);
    assert_non_null(strstr(err.message, "/v1/studies"));
    hpo_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typed_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vector, setup, teardown),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_unreachable),
    };

    return cmocka_run_group_tests_name("client-trial", tests, NULL, NULL);
}
