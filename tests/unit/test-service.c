/*
** test-service.c: the trial lifecycle through hpo_service_execute, without
** HTTP, over a real storage in a temporary directory: create, ask, tell,
** report with pruning, heartbeat, and the undo of every mutating operation
** when its commit fails (an SQLite trigger makes the database refuse the
** write: what a full disk does), then a restart that loads exactly what
** was acknowledged. (SQLite's refusal is answered 500 internal: the
** storage's mapping of the error; what matters here is that nothing changed.)
** A trial's reply written as text (service/trial-text.c, for the HTTP
** layer) is byte for byte the encoding of its JSON tree.
*/
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "../../core/jsonw.h"
#include "../../storage/storage.h"
#include "service.h"

struct fixture {
    char dir[256];
    char db[300];
    struct hpo_storage *storage;
    struct hpo_service *service;
    bool direct; /* storage without the redo log */
};

static int open_service(struct fixture *f)
{
    struct hpo_storage_options sopt = { .synchronous_full = false, .no_redo = f->direct };
    struct hpo_service_options opt = { .db_path = f->db };
    struct hpo_error err = { 0 };

    if (hpo_storage_open(f->db, &sopt, &f->storage, &err) < 0 ||
            hpo_service_create(f->storage, &opt, &f->service, &err) < 0) {
        print_error("open: %s\n", err.message);
        return -1;
    }
    return 0;
}

static void close_service(struct fixture *f)
{
    hpo_service_destroy(f->service);
    hpo_storage_close(f->storage);
    f->service = NULL;
    f->storage = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");

    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "%s/hpo-test-service-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        return -1;
    }
    snprintf(f->db, sizeof(f->db), "%s/hpod.db", f->dir);
    *state = f;
    return open_service(f);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    close_service(f);
    (void)nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/*
** Run one request with a JSON body (NULL: none); returns the status. The
** caller finishes req. `text_ok`: as the HTTP layer does (a trial's reply
** may come as text).
*/
static int run_as(struct fixture *f, struct hpo_service_request *req, enum hpo_service_op op,
        const char *study, int64_t number, const char *body, bool text_ok)
{
    json_error_t jerr;

    memset(req, 0, sizeof(*req));
    req->op = op;
    req->study = study;
    req->number = number;
    req->state_filter = -1;
    req->limit = 1000;
    req->text_ok = text_ok;
    req->body = body != NULL ? json_loads(body, 0, &jerr) : NULL;
    assert_true(body == NULL || req->body != NULL);
    hpo_service_execute(f->service, req);
    json_decref((json_t *)req->body);
    req->body = NULL;
    return req->status;
}

static int run(struct fixture *f, struct hpo_service_request *req, enum hpo_service_op op,
        const char *study, int64_t number, const char *body)
{
    return run_as(f, req, op, study, number, body, false);
}

/* The study's trial `number` as JSON (a new reference). */
static json_t *trial(struct fixture *f, const char *study, int64_t number)
{
    struct hpo_service_request req;
    json_t *t;

    assert_int_equal(run(f, &req, HPO_SERVICE_TRIAL_GET, study, number, NULL), 200);
    t = json_incref(req.reply);
    hpo_service_request_finish(&req);
    return t;
}

static const char *state_of(const json_t *t)
{
    return json_string_value(json_object_get(t, "state"));
}

/* Make every write of the database fail (trials, intermediate values), or work again. */
static void refuse_writes(struct fixture *f, bool refuse)
{
    sqlite3 *db;
    static const char *const on =
            "CREATE TRIGGER t1 BEFORE UPDATE ON trials BEGIN SELECT RAISE(ABORT, 'disk full'); END;"
            "CREATE TRIGGER t2 BEFORE INSERT ON trials BEGIN SELECT RAISE(ABORT, 'disk full'); END;"
            "CREATE TRIGGER t3 BEFORE INSERT ON intermediate BEGIN SELECT RAISE(ABORT, 'x'); END;";
    static const char *const off = "DROP TRIGGER t1; DROP TRIGGER t2; DROP TRIGGER t3;";

    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, refuse ? on : off, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static const char *const study_def =
        "{\"name\": \"s\", \"params\": [{\"name\": \"x\", \"type\": \"float\", \"low\": 0, "
        "\"high\": 1}], \"sampler\": {\"type\": \"random\", \"seed\": 7}, \"pruner\": {\"type\": "
        "\"median\", \"n_startup_trials\": 1, \"n_warmup_steps\": 0}}";

static void test_lifecycle(void **state)
{
    struct fixture *f = *state;
    struct hpo_service_request req;
    json_t *t;

    assert_int_equal(run(f, &req, HPO_SERVICE_STUDY_CREATE, NULL, 0, study_def), 201);
    hpo_service_request_finish(&req);
    /* The same definition again: 200, the stored study. */
    assert_int_equal(run(f, &req, HPO_SERVICE_STUDY_CREATE, NULL, 0, study_def), 200);
    hpo_service_request_finish(&req);

    /* Trial 0: ask, report, tell. */
    assert_int_equal(run(f, &req, HPO_SERVICE_ASK, "s", 0, "{\"worker\": \"w0\"}"), 201);
    assert_int_equal(json_integer_value(json_object_get(req.reply, "number")), 0);
    assert_string_equal(req.sampler, "random");
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_REPORT, "s", 0, "{\"step\": 1, \"value\": 0.1}"), 200);
    assert_false(json_is_true(json_object_get(req.reply, "prune")));
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_TELL, "s", 0, "{\"value\": 0.1}"), 200);
    assert_string_equal(state_of(req.reply), "complete");
    hpo_service_request_finish(&req);
    /* The same tell again is idempotent; another result conflicts. */
    assert_int_equal(run(f, &req, HPO_SERVICE_TELL, "s", 0, "{\"value\": 0.1}"), 200);
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_TELL, "s", 0, "{\"value\": 0.2}"), 409);
    assert_int_equal(req.err.code, HPO_CONFLICT);
    hpo_service_request_finish(&req);

    /* Trial 1 reports worse than trial 0's median at step 1: pruned. */
    assert_int_equal(run(f, &req, HPO_SERVICE_ASK, "s", 0, NULL), 201);
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_REPORT, "s", 1, "{\"step\": 1, \"value\": 5}"), 200);
    assert_true(json_is_true(json_object_get(req.reply, "prune")));
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_TELL, "s", 1, "{\"state\": \"pruned\"}"), 200);
    assert_string_equal(state_of(req.reply), "pruned");
    /* A pruned trial's value is its last report. */
    assert_true(json_real_value(json_object_get(req.reply, "value")) == 5.0 ||
            json_integer_value(json_object_get(req.reply, "value")) == 5);
    hpo_service_request_finish(&req);

    /* Decoding happens in execute for in-process callers too. */
    assert_int_equal(run(f, &req, HPO_SERVICE_REPORT, "s", 1, "{\"step\": -1, \"value\": 1}"), 400);
    assert_string_equal(req.err.field, "step");
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_TELL, "nope", 0, "{\"value\": 1}"), 404);
    hpo_service_request_finish(&req);

    /* Best is trial 0. */
    assert_int_equal(run(f, &req, HPO_SERVICE_BEST, "s", 0, NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(req.reply, "number")), 0);
    hpo_service_request_finish(&req);

    /* A restart loads the same. */
    close_service(f);
    assert_int_equal(open_service(f), 0);
    t = trial(f, "s", 1);
    assert_string_equal(state_of(t), "pruned");
    json_decref(t);
    t = trial(f, "s", 0);
    assert_string_equal(state_of(t), "complete");
    assert_string_equal(json_string_value(json_object_get(t, "worker")), "w0");
    json_decref(t);
}

/* Every mutating operation whose commit fails changes nothing, in memory or after a restart. */
static void test_failed_commit_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct hpo_service_request req;
    json_t *before, *after;

    assert_int_equal(run(f, &req, HPO_SERVICE_STUDY_CREATE, NULL, 0, study_def), 201);
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_ASK, "s", 0, "{\"worker\": \"a\"}"), 201);
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_REPORT, "s", 0, "{\"step\": 1, \"value\": 0.5}"), 200);
    hpo_service_request_finish(&req);
    /* A waiting trial (params given, no value) for ask to pick up. */
    assert_int_equal(run(f, &req, HPO_SERVICE_TRIAL_CREATE, "s", 0, "{\"params\": {\"x\": 0.25}}"),
            201);
    hpo_service_request_finish(&req);
    before = trial(f, "s", 0);

    refuse_writes(f, true);
    assert_true(run(f, &req, HPO_SERVICE_TELL, "s", 0,
                             "{\"value\": 1, \"user_attrs\": {\"k\": 1}}") >= 500);
    hpo_service_request_finish(&req);
    assert_true(run(f, &req, HPO_SERVICE_REPORT, "s", 0, "{\"step\": 2, \"value\": 0.4}") >= 500);
    hpo_service_request_finish(&req);
    assert_true(run(f, &req, HPO_SERVICE_HEARTBEAT, "s", 0, NULL) >= 500);
    hpo_service_request_finish(&req);
    /* Ask takes the waiting trial 1: it stays waiting with its worker unset. */
    assert_true(run(f, &req, HPO_SERVICE_ASK, "s", 0, "{\"worker\": \"b\"}") >= 500);
    hpo_service_request_finish(&req);
    assert_true(run(f, &req, HPO_SERVICE_TRIAL_CREATE, "s", 0, "{\"params\": {\"x\": 0.5}}") >= 500);
    hpo_service_request_finish(&req);

    after = trial(f, "s", 0);
    assert_true(json_equal(before, after));
    json_decref(after);
    after = trial(f, "s", 1);
    assert_string_equal(state_of(after), "waiting");
    assert_true(json_is_null(json_object_get(after, "worker")) ||
            json_object_get(after, "worker") == NULL);
    json_decref(after);
    /* No trial 2 was appended. */
    assert_int_equal(run(f, &req, HPO_SERVICE_TRIAL_GET, "s", 2, NULL), 404);
    hpo_service_request_finish(&req);

    /* Writes work again: the report at step 2 goes in once, the tell completes. */
    refuse_writes(f, false);
    assert_int_equal(run(f, &req, HPO_SERVICE_REPORT, "s", 0, "{\"step\": 2, \"value\": 0.4}"), 200);
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_TELL, "s", 0, "{\"value\": 1}"), 200);
    hpo_service_request_finish(&req);
    close_service(f);
    assert_int_equal(open_service(f), 0);
    after = trial(f, "s", 0);
    assert_string_equal(state_of(after), "complete");
    assert_null(json_object_get(json_object_get(after, "user_attrs"), "k"));
    json_decref(after);
    json_decref(before);
}

/*
** Pipelined writes (storage.h): with hpo_storage_pipeline on, as on the
** dispatcher's workers, asks and tells answer before their commit. When
** one fails, the study's later writes in flight fail with it and every
** reply that saw them is refused (hpo_service_reply_valid); the next
** request finds the study reloaded with exactly what was committed.
*/
static void test_pipelined_failure_reloads(void **state)
{
    struct fixture *f = *state;
    struct hpo_service_request req, held[3];
    struct hpo_error err;
    uint64_t from, upto;
    json_t *t;

    /* The database refuses the writes (refuse_writes): without the redo log, which would
       have acknowledged them before the database saw them. */
    close_service(f);
    f->direct = true;
    assert_int_equal(open_service(f), 0);
    assert_int_equal(run(f, &req, HPO_SERVICE_STUDY_CREATE, NULL, 0, study_def), 201);
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_ASK, "s", 0, "{\"worker\": \"a\"}"), 201);
    hpo_service_request_finish(&req);

    refuse_writes(f, true);
    from = hpo_storage_resolved(f->storage);
    hpo_storage_pipeline(true);
    assert_int_equal(run(f, &held[0], HPO_SERVICE_ASK, "s", 0, NULL), 201);
    assert_int_equal(json_integer_value(json_object_get(held[0].reply, "number")), 1);
    assert_int_equal(run(f, &held[1], HPO_SERVICE_TELL, "s", 0, "{\"value\": 1}"), 200);
    assert_int_equal(run(f, &held[2], HPO_SERVICE_ASK, "s", 0, NULL), 201);
    hpo_storage_pipeline(false);
    upto = hpo_storage_accepted(f->storage);
    assert_true(upto >= from + 3);
    for (int i = 0; i < 5000 && hpo_storage_resolved(f->storage) < upto; i++) {
        usleep(1000);
    }
    assert_int_equal(hpo_storage_resolved(f->storage), upto);
    for (int i = 0; i < 3; i++) {
        assert_false(hpo_service_reply_valid(f->service, &held[i], from, upto, &err));
        assert_int_equal(err.code, HPO_UNAVAILABLE);
        /* A reply that saw only what resolved before the failure stands. */
        assert_true(hpo_service_reply_valid(f->service, &held[i], upto, upto, &err));
        hpo_service_request_finish(&held[i]);
    }

    /* The next request reloads the study: trial 0 still running, no trial 1. */
    refuse_writes(f, false);
    t = trial(f, "s", 0);
    assert_string_equal(state_of(t), "running");
    json_decref(t);
    assert_int_equal(run(f, &req, HPO_SERVICE_TRIAL_GET, "s", 1, NULL), 404);
    hpo_service_request_finish(&req);
    /* Numbers stay dense; writes work again. */
    assert_int_equal(run(f, &req, HPO_SERVICE_ASK, "s", 0, NULL), 201);
    assert_int_equal(json_integer_value(json_object_get(req.reply, "number")), 1);
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_TELL, "s", 0, "{\"value\": 2}"), 200);
    hpo_service_request_finish(&req);
    close_service(f);
    assert_int_equal(open_service(f), 0);
    t = trial(f, "s", 0);
    assert_string_equal(state_of(t), "complete");
    assert_true(json_real_value(json_object_get(t, "value")) == 2.0);
    json_decref(t);
    t = trial(f, "s", 1);
    assert_string_equal(state_of(t), "running");
    json_decref(t);
    assert_int_equal(run(f, &req, HPO_SERVICE_TRIAL_GET, "s", 2, NULL), 404);
    hpo_service_request_finish(&req);
}

/* ---- trial replies as text ---------------------------------------------- */

/* Run a request as the HTTP layer does (a trial's reply may come as text); returns the status. */
static int run_text(struct fixture *f, struct hpo_service_request *req, enum hpo_service_op op,
        const char *study, int64_t number, const char *body)
{
    return run_as(f, req, op, study, number, body, true);
}

/*
** The request's reply as the HTTP layer sends it: its text, else its tree
** encoded. `as_text`: whether it came as text. Finishes the request.
*/
static char *sent(struct hpo_service_request *req, bool *as_text)
{
    char *out;

    *as_text = req->text != NULL;
    if (req->text != NULL) {
        out = strndup(req->text, req->text_len);
        assert_int_equal(strlen(req->text), req->text_len);
    } else {
        out = hpo_json_dumps(req->reply, NULL);
    }
    assert_non_null(out);
    hpo_service_request_finish(req);
    return out;
}

/*
** The last reply, `got`, is the encoding of the trial's tree as a plain read
** returns it now (GET .../trials/{number}, nothing changed in between).
*/
static void same_as_tree(struct fixture *f, const char *study, int64_t number, char *got)
{
    struct hpo_service_request req;
    char *want;

    assert_int_equal(run(f, &req, HPO_SERVICE_TRIAL_GET, study, number, NULL), 200);
    assert_null(req.text);
    want = hpo_json_dumps(req.reply, NULL);
    hpo_service_request_finish(&req);
    assert_non_null(want);
    assert_string_equal(got, want);
    free(want);
    free(got);
}

static void test_trial_text(void **state)
{
    static const char *const def =
            "{\"name\": \"t\", \"direction\": \"maximize\", \"params\": ["
            "{\"name\": \"x\", \"type\": \"float\", \"low\": -5, \"high\": 5},"
            "{\"name\": \"n\", \"type\": \"int\", \"low\": 1, \"high\": 100, \"log\": true},"
            "{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [\"a\\\"q\", 2.5, true, 7]},"
            "{\"name\": \"q.t-1\", \"type\": \"float\", \"low\": 0, \"high\": 1}],"
            "\"sampler\": {\"type\": \"random\", \"seed\": 3}}";
    static const char *const vec =
            "{\"name\": \"v\", \"params\": [{\"name\": \"w\", \"type\": \"float\", \"size\": 3,"
            "\"low\": 0, \"high\": 1}], \"sampler\": {\"type\": \"random\", \"seed\": 3}}";
    struct fixture *f = *state;
    struct hpo_service_request req;
    bool as_text;
    char *got;

    assert_int_equal(run(f, &req, HPO_SERVICE_STUDY_CREATE, NULL, 0, def), 201);
    hpo_service_request_finish(&req);
    /* Asks (with a worker to escape), then each way a trial ends. */
    for (int i = 0; i < 12; i++) {
        assert_int_equal(run_text(f, &req, HPO_SERVICE_ASK, "t", 0,
                                 i % 2 ? "{\"worker\": \"w\\\"\\\\\\n\\u0001/\"}" : NULL), 201);
        got = sent(&req, &as_text);
        assert_true(as_text);
        same_as_tree(f, "t", i, got);
    }
    assert_int_equal(run(f, &req, HPO_SERVICE_REPORT, "t", 0, "{\"step\": 3, \"value\": 0.1}"), 200);
    hpo_service_request_finish(&req);
    assert_int_equal(run(f, &req, HPO_SERVICE_REPORT, "t", 0, "{\"step\": 9, \"value\": -2}"), 200);
    hpo_service_request_finish(&req);
    assert_int_equal(run_text(f, &req, HPO_SERVICE_TELL, "t", 0, "{\"value\": 3}"), 200);
    got = sent(&req, &as_text);
    assert_true(as_text);
    assert_non_null(strstr(got, "\"value\":3.0,\"intermediate\":[{\"step\":3,\"value\":0.1},"));
    same_as_tree(f, "t", 0, got);
    /* The same tell again (idempotent) answers the same way. */
    assert_int_equal(run_text(f, &req, HPO_SERVICE_TELL, "t", 0, "{\"value\": 3}"), 200);
    got = sent(&req, &as_text);
    assert_true(as_text);
    same_as_tree(f, "t", 0, got);
    assert_int_equal(run_text(f, &req, HPO_SERVICE_TELL, "t", 1, "{\"value\": 1e-300}"), 200);
    same_as_tree(f, "t", 1, sent(&req, &as_text));
    assert_int_equal(run_text(f, &req, HPO_SERVICE_TELL, "t", 2, "{\"state\": \"failed\"}"), 200);
    same_as_tree(f, "t", 2, sent(&req, &as_text));
    assert_int_equal(run_text(f, &req, HPO_SERVICE_TELL, "t", 3, "{\"state\": \"pruned\"}"), 200);
    same_as_tree(f, "t", 3, sent(&req, &as_text));
    /* User attributes (nested, reals, escapes), by a patch and then by a tell. */
    assert_int_equal(run_text(f, &req, HPO_SERVICE_TRIAL_PATCH, "t", 4,
                             "{\"user_attrs\": {\"k\": [1, 0.5, {\"z\": null}], \"s\\\"\": \"\\t\"}}"), 200);
    same_as_tree(f, "t", 4, sent(&req, &as_text));
    assert_int_equal(run_text(f, &req, HPO_SERVICE_TELL, "t", 4, "{\"value\": 123456789.125}"), 200);
    got = sent(&req, &as_text);
    assert_true(as_text);
    same_as_tree(f, "t", 4, got);
    /* A trial created with given params and its result. */
    assert_int_equal(run_text(f, &req, HPO_SERVICE_TRIAL_CREATE, "t", 0,
                             "{\"params\": {\"x\": 0.25, \"n\": 4, \"c\": 2.5, \"q.t-1\": 1}, "
                             "\"value\": 0.5}"), 201);
    got = sent(&req, &as_text);
    assert_true(as_text);
    same_as_tree(f, "t", 12, got);
    /* A non-ASCII worker, and vector params: left to the tree, the same text. */
    assert_int_equal(run_text(f, &req, HPO_SERVICE_ASK, "t", 0, "{\"worker\": \"\\u00e9\"}"), 201);
    got = sent(&req, &as_text);
    assert_false(as_text);
    same_as_tree(f, "t", 13, got);
    assert_int_equal(run(f, &req, HPO_SERVICE_STUDY_CREATE, NULL, 0, vec), 201);
    hpo_service_request_finish(&req);
    assert_int_equal(run_text(f, &req, HPO_SERVICE_ASK, "v", 0, NULL), 201);
    got = sent(&req, &as_text);
    assert_false(as_text);
    same_as_tree(f, "v", 0, got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_failure_reloads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trial_text, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
