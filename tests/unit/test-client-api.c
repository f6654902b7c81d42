/*
** test-client-api.c: libhpoclient against the real daemon: every call, and
** the mapping of API errors (400 with field, 404, 409, exhausted) into
** struct hpo_client_error; enqueue and user attrs (skipped while the daemon
** answers 405 to PATCH). Needs HPOD_URL of a fresh daemon; it is run by
** tests/integration/test_clients_lib.py, which starts one. Without HPOD_URL
** it reports a skipped plan.
*/
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h> /* cmocka needs setjmp.h, stdarg.h and stddef.h */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <hpo/client.h>

static const char spec_a[] =
        "{\"name\": \"capi\", \"direction\": \"minimize\","
        " \"params\": [{\"name\": \"lr\", \"type\": \"float\", \"low\": 0.001, \"high\": 1, \"log\": true},"
        "  {\"name\": \"layers\", \"type\": \"int\", \"low\": 1, \"high\": 4},"
        "  {\"name\": \"opt\", \"type\": \"categorical\", \"choices\": [\"adam\", \"sgd\"]},"
        "  {\"name\": \"bn\", \"type\": \"categorical\", \"choices\": [true, false]}],"
        " \"sampler\": {\"type\": \"random\", \"seed\": 5}}";

static int setup(void **state)
{
    struct hpo_client_error err;
    struct hpo_client *c = NULL;

    if (hpo_client_create(getenv("HPOD_URL"), NULL, &c, &err) < 0) {
        return -1;
    }
    /* The daemon is local and fresh: fail fast instead of backing off. */
    hpo_client_set_retries(c, 1, 10, 20);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    hpo_client_destroy(*state);
    return 0;
}

static void expect_error(int r, const struct hpo_client_error *err, int status,
        enum hpo_client_code code, const char *field)
{
    if (r != -EIO || err->status != status || err->code != code ||
            strcmp(err->field, field) != 0) {
        print_error("got r=%d status=%d code=%s field='%s' message='%s'\n", r, err->status,
                hpo_client_code_name(err->code), err->field, err->message);
    }
    assert_int_equal(r, -EIO);
    assert_int_equal(err->status, status);
    assert_int_equal(err->code, code);
    assert_string_equal(err->field, field);
    assert_true(err->message[0] != '\0');
}

static void test_study_create(void **state)
{
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    bool created = false;
    char *json = NULL;
    int r;

    assert_int_equal(hpo_client_study_create(c, spec_a, &created, &json, &err), 0);
    assert_true(created);
    assert_non_null(strstr(json, "\"name\":\"capi\""));
    assert_int_equal(err.code, HPO_CLIENT_OK);
    hpo_client_free(json);
    /* Identical again: 200, not created. */
    assert_int_equal(hpo_client_study_create(c, spec_a, &created, NULL, &err), 0);
    assert_false(created);
    /* Same name, another definition: 409 conflict. */
    r = hpo_client_study_create(c,
            "{\"name\": \"capi\", \"params\": [{\"name\": \"x\", \"type\": \"int\", \"low\": 0,"
            " \"high\": 3}]}",
            &created, NULL, &err);
    expect_error(r, &err, 409, HPO_CLIENT_CONFLICT, "params");
    /* A bad definition: 400 with the field at fault. */
    r = hpo_client_study_create(c,
            "{\"name\": \"bad\", \"params\": [{\"name\": \"x\", \"type\": \"float\", \"low\": 1,"
            " \"high\": 0}]}",
            NULL, NULL, &err);
    expect_error(r, &err, 400, HPO_CLIENT_INVALID_ARGUMENT, "params[0].low");
    r = hpo_client_study_create(c, "{\"name\": \"bad\", \"parms\": []}", NULL, NULL, &err);
    assert_int_equal(r, -EIO);
    assert_int_equal(err.code, HPO_CLIENT_INVALID_ARGUMENT);
    assert_true(err.field[0] != '\0');
    r = hpo_client_study_create(c, "{not json", NULL, NULL, &err);
    expect_error(r, &err, 400, HPO_CLIENT_INVALID_JSON, "");
}

static void test_study_get_list_delete(void **state)
{
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    char *json = NULL;
    int r;

    assert_int_equal(hpo_client_study_get(c, "capi", &json, &err), 0);
    assert_non_null(strstr(json, "\"trials\""));
    hpo_client_free(json);
    assert_int_equal(hpo_client_study_list(c, &json, &err), 0);
    assert_non_null(strstr(json, "\"studies\""));
    assert_non_null(strstr(json, "\"capi\""));
    hpo_client_free(json);
    json = NULL;
    r = hpo_client_study_get(c, "nope", &json, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
    assert_null(json);
    /* A name that needs escaping reaches the server as one path segment. */
    r = hpo_client_study_get(c, "a/b?c", &json, &err);
    assert_int_equal(r, -EIO);
    assert_true(err.status == 404 || err.status == 400);

    assert_int_equal(hpo_client_study_create(c,
                             "{\"name\": \"gone\", \"params\": [{\"name\": \"x\", \"type\": \"int\","
                             " \"low\": 0, \"high\": 3}]}",
                             NULL, NULL, &err),
            0);
    assert_int_equal(hpo_client_study_delete(c, "gone", &err), 0);
    r = hpo_client_study_get(c, "gone", NULL, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
    r = hpo_client_study_delete(c, "gone", &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
}

static void test_trial_lifecycle(void **state)
{
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    struct hpo_trial *t = NULL;
    struct hpo_trial *best = NULL;
    struct hpo_trial *again = NULL;
    double lr = 0;
    int64_t layers = 0;
    const char *opt = NULL;
    bool bn = false;
    bool prune = true;
    double v = 0;
    int64_t n;
    int r;

    assert_int_equal(hpo_client_set_worker(c, "capi-worker"), 0);
    assert_int_equal(hpo_client_ask(c, "capi", &t, &err), 0);
    n = hpo_trial_number(t);
    assert_string_equal(hpo_trial_state(t), "running");
    assert_string_equal(hpo_trial_study(t), "capi");
    assert_non_null(strstr(hpo_trial_json(t), "\"worker\":\"capi-worker\""));
    assert_int_equal(hpo_trial_param_double(t, "lr", &lr), 0);
    assert_true(lr >= 0.001 && lr <= 1);
    assert_int_equal(hpo_trial_param_int(t, "layers", &layers), 0);
    assert_true(layers >= 1 && layers <= 4);
    assert_int_equal(hpo_trial_param_string(t, "opt", &opt), 0);
    assert_true(strcmp(opt, "adam") == 0 || strcmp(opt, "sgd") == 0);
    assert_int_equal(hpo_trial_param_bool(t, "bn", &bn), 0);
    assert_int_equal(hpo_trial_value(t, &v), -ENOENT);

    assert_int_equal(hpo_client_report(c, "capi", n, 0, 0.75, &prune, &err), 0);
    assert_false(prune); /* pruner "none" */
    assert_int_equal(hpo_client_report(c, "capi", n, 0, 0.5, &prune, &err), 0);
    assert_int_equal(hpo_client_heartbeat(c, "capi", n, &err), 0);
    assert_int_equal(hpo_client_tell(c, "capi", n, 0.25, &err), 0);
    /* The same result again is fine; another one is a conflict. */
    assert_int_equal(hpo_client_tell(c, "capi", n, 0.25, &err), 0);
    r = hpo_client_tell(c, "capi", n, 0.5, &err);
    expect_error(r, &err, 409, HPO_CLIENT_CONFLICT, "");
    r = hpo_client_tell_failed(c, "capi", n, &err);
    expect_error(r, &err, 409, HPO_CLIENT_CONFLICT, "");
    r = hpo_client_report(c, "capi", n, 1, 0.1, &prune, &err);
    expect_error(r, &err, 409, HPO_CLIENT_CONFLICT, "");
    r = hpo_client_heartbeat(c, "capi", n, &err);
    expect_error(r, &err, 409, HPO_CLIENT_CONFLICT, "");

    assert_int_equal(hpo_client_trial_get(c, "capi", n, &again, &err), 0);
    assert_string_equal(hpo_trial_state(again), "complete");
    assert_int_equal(hpo_trial_value(again, &v), 0);
    assert_true(v == 0.25);
    /* The first value of a step is kept. */
    assert_non_null(strstr(hpo_trial_json(again), "{\"step\":0,\"value\":0.75}"));
    hpo_trial_free(again);
    again = NULL;
    assert_int_equal(hpo_client_best(c, "capi", &best, &err), 0);
    assert_int_equal(hpo_trial_number(best), n);
    r = hpo_client_trial_get(c, "capi", 999, &again, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
    assert_null(again);
    hpo_trial_free(best);
    hpo_trial_free(t);
    assert_int_equal(hpo_client_trial_get(c, "capi", n, &t, &err), 0);
    hpo_trial_free(t);
    hpo_client_set_worker(c, NULL);
}

static void test_failed_pruned(void **state)
{
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    struct hpo_trial *a = NULL;
    struct hpo_trial *b = NULL;
    struct hpo_trial *t = NULL;
    double v = 0;

    assert_int_equal(hpo_client_ask(c, "capi", &a, &err), 0);
    assert_int_equal(hpo_client_ask(c, "capi", &b, &err), 0);
    assert_true(hpo_trial_number(a) != hpo_trial_number(b));
    assert_int_equal(hpo_client_tell_failed(c, "capi", hpo_trial_number(a), &err), 0);
    assert_int_equal(hpo_client_tell_failed(c, "capi", hpo_trial_number(a), &err), 0);
    assert_int_equal(hpo_client_report(c, "capi", hpo_trial_number(b), 3, 0.9, NULL, &err), 0);
    assert_int_equal(hpo_client_tell_pruned(c, "capi", hpo_trial_number(b), &err), 0);
    assert_int_equal(hpo_client_trial_get(c, "capi", hpo_trial_number(b), &t, &err), 0);
    assert_string_equal(hpo_trial_state(t), "pruned");
    assert_int_equal(hpo_trial_value(t, &v), 0);
    assert_true(v == 0.9); /* a pruned trial's value is its last intermediate value */
    hpo_trial_free(t);
    assert_int_equal(hpo_client_trial_get(c, "capi", hpo_trial_number(a), &t, &err), 0);
    assert_string_equal(hpo_trial_state(t), "failed");
    hpo_trial_free(t);
    hpo_trial_free(a);
    hpo_trial_free(b);
}

static void test_exhausted(void **state)
{
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    struct hpo_trial *t = NULL;
    int r;

    assert_int_equal(hpo_client_study_create(c,
                             "{\"name\": \"one\", \"max_trials\": 1, \"params\": [{\"name\": \"x\","
                             " \"type\": \"int\", \"low\": 0, \"high\": 3}]}",
                             NULL, NULL, &err),
            0);
    assert_int_equal(hpo_client_ask(c, "one", &t, &err), 0);
    hpo_trial_free(t);
    t = NULL;
    r = hpo_client_ask(c, "one", &t, &err);
    expect_error(r, &err, 409, HPO_CLIENT_EXHAUSTED, "");
    assert_null(t);
    r = hpo_client_ask(c, "nope", &t, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
    r = hpo_client_best(c, "one", &t, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
}

static void test_vectors_and_gradients(void **state)
{
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    struct hpo_trial *t = NULL;
    double *v = NULL;
    size_t n = 0;
    double grad[3] = { 0.5, -0.25, 1.0 };
    char *text = NULL;
    int r;

    /* Random sampler: a small vector inline, a large one by href (binary GET). */
    assert_int_equal(hpo_client_study_create(c,
                             "{\"name\": \"vec\", \"sampler\": {\"type\": \"random\", \"seed\": 1},"
                             " \"params\": [{\"name\": \"w\", \"type\": \"float\", \"low\": -1,"
                             " \"high\": 1, \"size\": 1500}, {\"name\": \"s\", \"type\": \"float\","
                             " \"low\": 2, \"high\": 3, \"size\": 3}]}",
                             NULL, NULL, &err),
            0);
    assert_int_equal(hpo_client_ask(c, "vec", &t, &err), 0);
    assert_int_equal(hpo_client_param_vector(c, t, "s", &v, &n, &err), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_true(v[i] >= 2 && v[i] <= 3);
    }
    hpo_client_free(v);
    assert_int_equal(hpo_trial_param_format(t, "s", &text), 0);
    assert_non_null(strchr(text, ','));
    hpo_client_free(text);
    assert_int_equal(hpo_client_param_vector(c, t, "w", &v, &n, &err), 0);
    assert_int_equal(n, 1500);
    for (size_t i = 0; i < n; i++) {
        assert_true(v[i] >= -1 && v[i] <= 1);
    }
    assert_true(v[0] != v[1]);
    hpo_client_free(v);
    hpo_trial_free(t);

    /* Gradient sampler: binary upload of a vector's gradient, then a JSON one. */
    assert_int_equal(hpo_client_study_create(c,
                             "{\"name\": \"grad\", \"sampler\": {\"type\": \"gradient\"},"
                             " \"params\": [{\"name\": \"s\", \"type\": \"float\", \"low\": -1,"
                             " \"high\": 1, \"size\": 3}, {\"name\": \"lr\", \"type\": \"float\","
                             " \"low\": 0.001, \"high\": 1, \"log\": true}]}",
                             NULL, NULL, &err),
            0);
    assert_int_equal(hpo_client_ask(c, "grad", &t, &err), 0);
    r = hpo_client_put_gradient(c, "grad", hpo_trial_number(t), "s", grad, 2, &err);
    expect_error(r, &err, 400, HPO_CLIENT_INVALID_ARGUMENT, "gradient");
    assert_int_equal(hpo_client_put_gradient(c, "grad", hpo_trial_number(t), "s", grad, 3, &err),
            0);
    assert_int_equal(hpo_client_tell_gradient(c, "grad", hpo_trial_number(t), 1.5,
                             "{\"lr\": -0.5}", &err),
            0);
    hpo_trial_free(t);
}

static void test_raw_request(void **state)
{
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    long status = 0;
    char *body = NULL;
    int r;

    assert_int_equal(hpo_client_request(c, "GET", "/healthz", NULL, true, &status, &body, &err),
            0);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "\"ok\""));
    hpo_client_free(body);
    r = hpo_client_request(c, "GET", "/v1/no/such/route", NULL, true, &status, NULL, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
    r = hpo_client_request(c, "PUT", "/v1/studies", "{}", true, NULL, NULL, &err);
    expect_error(r, &err, 405, HPO_CLIENT_METHOD_NOT_ALLOWED, "");
    r = hpo_client_request(c, "POST", "/v1/studies/capi/trials/0/tell", "{\"value\": 1, \"x\": 2}",
            true, NULL, NULL, &err);
    expect_error(r, &err, 400, HPO_CLIENT_INVALID_ARGUMENT, "x");
}

/* hpo_client_get_to_fd: a 2xx body lands in the fd, an error body does not. */
static void test_get_to_fd(void **state)
{
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    char buf[1024];
    uint64_t n = 0;
    FILE *f = tmpfile();
    int fd;
    int r;

    assert_non_null(f);
    fd = fileno(f);
    assert_int_equal(hpo_client_get_to_fd(c, "/healthz", NULL, fd, &n, &err), 0);
    assert_true(n > 0 && n < sizeof(buf));
    assert_int_equal(pread(fd, buf, sizeof(buf), 0), (ssize_t)n);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "\"ok\""));
    /* An API error: -EIO with the error body decoded, nothing more in the file. */
    r = hpo_client_get_to_fd(c, "/v1/no/such/route", NULL, fd, &n, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
    assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)strlen(buf));
    /* The archive: a ustar header naming the database first. */
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(hpo_client_get_to_fd(c, "/v1/admin/backup", "application/x-tar", fd, &n,
                             &err), 0);
    assert_true(n >= 1024 && n % 512 == 0);
    assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)n);
    assert_int_equal(pread(fd, buf, 512, 0), 512);
    assert_memory_equal(buf + 257, "ustar", 5);
    fclose(f);
    /* A write that fails is the caller's errno, not a transport error. */
    fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        r = hpo_client_get_to_fd(c, "/healthz", NULL, fd, &n, &err);
        assert_int_equal(r, -ENOSPC);
        assert_non_null(strstr(err.message, "writing the response"));
        close(fd);
    }
    assert_int_equal(hpo_client_get_to_fd(c, "/healthz", NULL, -1, &n, &err), -EBADF);
    assert_int_equal(hpo_client_get_to_fd(c, "healthz", NULL, 1, &n, &err), -EINVAL);
}

static void test_enqueue_and_attrs(void **state)
{
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    struct hpo_trial *t = NULL;
    struct hpo_trial *asked = NULL;
    char *json = NULL;
    int64_t layers = 0;
    const char *opt = NULL;
    int r;

    assert_int_equal(hpo_client_study_create(c,
                             "{\"name\": \"enq\", \"user_attrs\": {\"owner\": \"ml\"},"
                             " \"params\": [{\"name\": \"layers\", \"type\": \"int\", \"low\": 1,"
                             " \"high\": 4}, {\"name\": \"opt\", \"type\": \"categorical\","
                             " \"choices\": [\"adam\", \"sgd\"]}]}",
                             NULL, NULL, &err),
            0);
    /* A partial configuration: the sampler fills the rest when it is asked. */
    assert_int_equal(hpo_client_enqueue(c, "enq", "{\"layers\": 3}", "{\"src\": \"capi\"}", &t,
                             &err),
            0);
    assert_string_equal(hpo_trial_state(t), "waiting");
    assert_non_null(strstr(hpo_trial_json(t), "\"user_attrs\":{\"src\":\"capi\"}"));
    assert_int_equal(hpo_client_ask(c, "enq", &asked, &err), 0);
    assert_int_equal(hpo_trial_number(asked), hpo_trial_number(t));
    assert_int_equal(hpo_trial_param_int(asked, "layers", &layers), 0);
    assert_int_equal(layers, 3);
    assert_int_equal(hpo_trial_param_string(asked, "opt", &opt), 0);
    hpo_trial_free(t);
    t = NULL;
    r = hpo_client_enqueue(c, "enq", "{\"layers\": 9}", NULL, &t, &err);
    expect_error(r, &err, 400, HPO_CLIENT_INVALID_ARGUMENT, "params.layers");
    assert_null(t);
    r = hpo_client_enqueue(c, "nope", "{\"layers\": 1}", NULL, &t, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");

    r = hpo_client_study_set_user_attrs(c, "enq", "{\"owner\": null, \"epochs\": 20}", &json,
            &err);
    if (r == -EIO && err.code == HPO_CLIENT_METHOD_NOT_ALLOWED) {
        hpo_trial_free(asked);
        skip(); /* the daemon has no PATCH yet */
    }
    assert_int_equal(r, 0);
    assert_non_null(strstr(json, "\"user_attrs\":{\"epochs\":20}"));
    hpo_client_free(json);
    assert_int_equal(hpo_client_trial_set_user_attrs(c, "enq", hpo_trial_number(asked),
                             "{\"gpu\": \"a100\", \"src\": null}", &t, &err),
            0);
    assert_non_null(strstr(hpo_trial_json(t), "\"user_attrs\":{\"gpu\":\"a100\"}"));
    hpo_trial_free(t);
    t = NULL;
    r = hpo_client_trial_set_user_attrs(c, "enq", 999, "{\"a\": 1}", &t, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
    r = hpo_client_study_set_user_attrs(c, "nope", "{\"a\": 1}", NULL, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
    hpo_trial_free(asked);
}

/* Objectives and constraints (API 1.1): tell_values, the trial's accessors, best front, pareto. */
static void test_multiobjective(void **state)
{
    static const char spec[] =
            "{\"name\": \"capi-mo\", \"params\": [{\"name\": \"x\", \"type\": \"float\","
            " \"low\": 0, \"high\": 1}], \"objectives\": [{\"name\": \"error\"},"
            " {\"name\": \"latency_ms\"}], \"constraints\": [{\"name\": \"memory_gb\","
            " \"max\": 16}], \"sampler\": {\"type\": \"random\", \"seed\": 3}}";
    static const char *const names[] = { "error", "latency_ms" };
    static const char *const cnames[] = { "memory_gb" };
    static const char *const twice[] = { "error", "error" };
    /* 0 and 1 are the front; 2 is dominated by 0; 3 would dominate both but is infeasible. */
    static const double vals[4][2] = { { 0.1, 10 }, { 0.2, 5 }, { 0.3, 20 }, { 0.05, 1 } };
    static const double mem[4] = { 8, 8, 8, 20 };
    struct hpo_client *c = *state;
    struct hpo_client_error err;
    struct hpo_trial *t[4] = { NULL }, *got = NULL, **front = NULL;
    double nan_vals[2] = { 0.1, 0.0 / 0.0 }, v = 0, hv = -1;
    char *json = NULL;
    size_t n = 99;
    int r;

    assert_int_equal(hpo_client_study_create(c, spec, NULL, NULL, &err), 0);
    /* Nothing told: an empty front and an empty pareto, not errors. */
    assert_int_equal(hpo_client_best_trials(c, "capi-mo", &front, &n, &err), 0);
    assert_int_equal(n, 0);
    hpo_trials_free(front, n);
    assert_int_equal(hpo_client_pareto(c, "capi-mo", &front, &n, &hv, &json, &err), 0);
    assert_int_equal(n, 0);
    assert_true(hv == 0);
    assert_non_null(strstr(json, "\"reference_point\":null"));
    hpo_trials_free(front, n);
    hpo_client_free(json);
    json = NULL;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(hpo_client_ask(c, "capi-mo", &t[i], &err), 0);
    }
    /* Checked here, nothing sent: duplicate names, non-finite values, no objective. */
    r = hpo_client_tell_values(c, "capi-mo", 0, twice, vals[0], 2, NULL, NULL, 0, &err);
    assert_int_equal(r, -EINVAL);
    assert_int_equal(err.code, HPO_CLIENT_USAGE);
    r = hpo_client_tell_values(c, "capi-mo", 0, names, nan_vals, 2, NULL, NULL, 0, &err);
    assert_int_equal(r, -EINVAL);
    assert_int_equal(err.code, HPO_CLIENT_USAGE);
    r = hpo_client_tell_values(c, "capi-mo", 0, names, vals[0], 0, NULL, NULL, 0, &err);
    assert_int_equal(r, -EINVAL);
    /* The server's checks: a missing objective, an undeclared constraint. */
    r = hpo_client_tell_values(c, "capi-mo", 0, names, vals[0], 1, NULL, NULL, 0, &err);
    expect_error(r, &err, 400, HPO_CLIENT_INVALID_ARGUMENT, "values.latency_ms");
    r = hpo_client_tell_values(c, "capi-mo", 0, names, vals[0], 2, names, mem, 1, &err);
    expect_error(r, &err, 400, HPO_CLIENT_INVALID_ARGUMENT, "constraints.error");
    for (int i = 0; i < 4; i++) {
        assert_int_equal(hpo_client_tell_values(c, "capi-mo", hpo_trial_number(t[i]), names,
                                 vals[i], 2, cnames, &mem[i], 1, &err),
                0);
    }
    /* The same again is fine (a retry); other values are a conflict. */
    assert_int_equal(hpo_client_tell_values(c, "capi-mo", hpo_trial_number(t[0]), names,
                             vals[0], 2, cnames, &mem[0], 1, &err),
            0);
    r = hpo_client_tell_values(c, "capi-mo", hpo_trial_number(t[0]), names, vals[1], 2, cnames,
            &mem[0], 1, &err);
    expect_error(r, &err, 409, HPO_CLIENT_CONFLICT, "");

    assert_int_equal(hpo_client_trial_get(c, "capi-mo", hpo_trial_number(t[3]), &got, &err), 0);
    assert_int_equal(hpo_trial_objective(got, "latency_ms", &v), 0);
    assert_true(v == 1);
    assert_int_equal(hpo_trial_constraint(got, "memory_gb", &v), 0);
    assert_true(v == 20);
    assert_int_equal(hpo_trial_objective(got, "nope", &v), -ENOENT);
    assert_int_equal(hpo_trial_constraint(got, "nope", &v), -ENOENT);
    assert_int_equal(hpo_trial_feasible(got), 0);
    hpo_trial_free(got);

    assert_int_equal(hpo_client_best_trials(c, "capi-mo", &front, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(hpo_trial_number(front[0]), hpo_trial_number(t[0]));
    assert_int_equal(hpo_trial_number(front[1]), hpo_trial_number(t[1]));
    assert_int_equal(hpo_trial_feasible(front[0]), 1);
    assert_int_equal(hpo_trial_objective(front[1], "error", &v), 0);
    assert_true(v == 0.2);
    hpo_trials_free(front, n);
    front = NULL;
    /* Reference point: worst feasible + 10% of the range = (0.32, 21.5). */
    assert_int_equal(hpo_client_pareto(c, "capi-mo", &front, &n, &hv, &json, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(hpo_trial_number(front[1]), hpo_trial_number(t[1]));
    assert_true(hv > 3.13 - 1e-9 && hv < 3.13 + 1e-9);
    assert_non_null(strstr(json, "\"reference_point\""));
    hpo_trials_free(front, n);
    hpo_client_free(json);
    r = hpo_client_pareto(c, "nope", &front, &n, NULL, NULL, &err);
    expect_error(r, &err, 404, HPO_CLIENT_NOT_FOUND, "");
    /* One objective: best_trials is the best trial. */
    assert_int_equal(hpo_client_best_trials(c, "capi", &front, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(hpo_trial_objective(front[0], "value", &v), 0);
    assert_true(v == 0.25);
    assert_int_equal(hpo_trial_feasible(front[0]), 1);
    hpo_trials_free(front, n);
    for (int i = 0; i < 4; i++) {
        hpo_trial_free(t[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_study_create),
        cmocka_unit_test(test_study_get_list_delete),
        cmocka_unit_test(test_trial_lifecycle),
        cmocka_unit_test(test_failed_pruned),
        cmocka_unit_test(test_exhausted),
        cmocka_unit_test(test_vectors_and_gradients),
        cmocka_unit_test(test_raw_request),
        cmocka_unit_test(test_get_to_fd),
        cmocka_unit_test(test_enqueue_and_attrs),
        cmocka_unit_test(test_multiobjective),
    };

    if (getenv("HPOD_URL") == NULL) {
        printf("1..0 # SKIP HPOD_URL is not set (run by test_clients_lib.py)\n");
        return 0;
    }
    return cmocka_run_group_tests_name("client-api", tests, setup, teardown);
}
