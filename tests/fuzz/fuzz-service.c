/*
** fuzz-service.c: libFuzzer target for the request validators and the
** trial state machine of service/service.c, driven through
** hpo_service_execute (no HTTP) over a real storage in a temporary
** directory, created once per process and removed at exit.
**
** Each input is a script of commands separated by '\n'. A command is
**   byte 0: the operation (below, modulo 16),
**   byte 1: the target: bits 0-1 pick the study (three fixed ones, or the
**           last one this input created), bits 2-7 the trial number
**           (63 means 999999999999999999),
**   rest:   the payload: a JSON body (empty = no body; text that is not JSON
**           is skipped, since the HTTP layer answers it), or for binary and
**           list operations the bytes described at run_command().
** Every input starts from the same three studies (random, gradient and TPE
** samplers; median, none and hyperband pruners) and ends by checking that
** each study's counts agree with its trial list, then deleting every study.
** Invariant: no crash, no leak, and every reply is either an error with a
** code the operation may give (never internal) or a well-formed success.
*/
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../../core/error.h"
#include "../../service/service.h"
#include "../../storage/storage.h"
#include "fuzz.h"

enum {
    OP_REAP = 14,  /* hpo_service_reap at now + payload[0] minutes */
    OP_ASK_TELL,   /* ask the study, then tell the trial it gave with the payload */
    OP_TRIAL_PATCH, /* HPO_SERVICE_TRIAL_PATCH with the payload */
    OP_STUDY_PATCH, /* HPO_SERVICE_STUDY_PATCH with the payload */
    N_OPS,
};

static const char *const fixed_names[] = { "f-random", "f-grad", "f-tpe" };

static const char *const fixed_specs[] = {
    "{\"name\":\"f-random\",\"params\":["
    "{\"name\":\"x\",\"type\":\"float\",\"low\":-1,\"high\":1},"
    "{\"name\":\"lr\",\"type\":\"float\",\"low\":1e-5,\"high\":0.1,\"log\":true},"
    "{\"name\":\"n\",\"type\":\"int\",\"low\":1,\"high\":9,\"step\":2},"
    "{\"name\":\"c\",\"type\":\"categorical\",\"choices\":[\"a\",\"b\",1,true]},"
    "{\"name\":\"m\",\"type\":\"float\",\"low\":0.5,\"high\":0.99,\"when\":{\"c\":[\"a\",1]}},"
    "{\"name\":\"v\",\"type\":\"float\",\"low\":0,\"high\":1,\"size\":3}],"
    "\"sampler\":{\"type\":\"random\",\"seed\":1},"
    "\"pruner\":{\"type\":\"median\",\"n_startup_trials\":1},"
    "\"heartbeat_timeout\":60,\"max_retries\":1,\"max_trials\":12,"
    "\"user_attrs\":{\"owner\":\"fuzz\"}}",
    "{\"name\":\"f-grad\",\"direction\":\"maximize\",\"params\":["
    "{\"name\":\"x\",\"type\":\"float\",\"low\":-1,\"high\":1},"
    "{\"name\":\"v\",\"type\":\"float\",\"low\":-2,\"high\":2,\"size\":2}],"
    "\"sampler\":{\"type\":\"gradient\",\"seed\":2,\"batch_size\":2,\"max_staleness\":3},"
    "\"heartbeat_timeout\":120,\"retain_vectors\":2}",
    "{\"name\":\"f-tpe\",\"params\":["
    "{\"name\":\"x\",\"type\":\"float\",\"low\":0,\"high\":1,\"step\":0.25},"
    "{\"name\":\"k\",\"type\":\"int\",\"low\":1,\"high\":64,\"log\":true},"
    "{\"name\":\"c\",\"type\":\"categorical\",\"choices\":[\"p\",\"q\"]}],"
    "\"sampler\":{\"type\":\"tpe\",\"seed\":3,\"n_startup_trials\":2},"
    "\"pruner\":{\"type\":\"hyperband\",\"max_resource\":9}}",
};

static const char *const param_names[] = { "v", "x", "c", "lr", "nope" };

static struct hpo_storage *storage;
static struct hpo_service *service;
static char dir[256];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)remove(path);
    return 0;
}

static void teardown(void)
{
    hpo_service_destroy(service);
    hpo_storage_close(storage);
    service = NULL;
    storage = NULL;
    if (dir[0] != '\0') {
        (void)nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

/* The temporary database, once per process. */
static void setup(void)
{
    static char db[300];
    const char *tmp = getenv("TMPDIR");
    struct hpo_storage_options sopt = { .synchronous_full = false };
    struct hpo_service_options opt = { .suggest_delay_ms = 0 };
    struct hpo_error err = { 0 };

    if (service != NULL) {
        return;
    }
    snprintf(dir, sizeof(dir), "%s/hpo-fuzz-service-XXXXXX", tmp != NULL ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(db, sizeof(db), "%s/hpod.db", dir);
    if (hpo_storage_open(db, &sopt, &storage, &err) < 0 ||
            (opt.db_path = db, hpo_service_create(storage, &opt, &service, &err)) < 0) {
        fprintf(stderr, "fuzz-service: %s: %s\n", db, err.message);
        check_failed("setup");
    }
    atexit(teardown);
}

/* The errors each operation may answer with a valid request (no internal, no HTTP-only code). */
static int code_expected(int op, enum hpo_code code)
{
    switch (code) {
    case HPO_INVALID_JSON:
    case HPO_INVALID_ARGUMENT:
    case HPO_NOT_FOUND:
        return 1;
    case HPO_CONFLICT:
        return op == HPO_SERVICE_STUDY_CREATE || op == HPO_SERVICE_TRIAL_CREATE || op == HPO_SERVICE_TELL ||
                op == HPO_SERVICE_REPORT || op == HPO_SERVICE_HEARTBEAT || op == HPO_SERVICE_GRADIENT_PUT ||
                op == HPO_SERVICE_ASK;
    case HPO_EXHAUSTED:
        return op == HPO_SERVICE_ASK || op == HPO_SERVICE_TRIAL_CREATE;
    default:
        return 0;
    }
}

/* Check a reply against the contract; returns the reply (borrowed) on success, else NULL. */
static const json_t *check_reply(const struct hpo_service_request *req)
{
    if (req->err.code != HPO_OK) {
        if (!code_expected((int)req->op, req->err.code)) {
            fprintf(stderr, "fuzz-service: op %d answered %s (%d): %s [%s]\n", (int)req->op,
                    hpo_code_name(req->err.code), req->status, req->err.message, req->err.field);
            check_failed("an expected error code");
        }
        CHECK(req->err.code > HPO_OK && req->err.code < HPO_CODE_COUNT);
        CHECK(req->status == hpo_code_status(req->err.code));
        CHECK(req->err.message[0] != '\0');
        CHECK(memchr(req->err.field, '\0', sizeof(req->err.field)) != NULL);
        CHECK(req->reply == NULL && req->text == NULL);
        return NULL;
    }
    CHECK(req->status == 200 || req->status == 201 || req->status == 204);
    if (req->status == 204) {
        CHECK(req->op == HPO_SERVICE_STUDY_DELETE || req->op == HPO_SERVICE_HEARTBEAT ||
                req->op == HPO_SERVICE_GRADIENT_PUT);
        CHECK(req->reply == NULL && req->text == NULL);
        return NULL;
    }
    if (req->op == HPO_SERVICE_TRIALS_LIST && req->csv) {
        /* Streamed: a header line, then rows, then an empty piece. */
        const char *piece;
        size_t len, pieces = 0;
        CHECK(req->stream != NULL && req->text == NULL && req->reply == NULL);
        CHECK(req->total >= 0);
        do {
            CHECK(hpo_service_stream_next(req->stream, &piece, &len) == 0);
            CHECK(len == 0 || piece[len - 1] == '\n');
            pieces++;
        } while (len > 0 && pieces < 100000);
        CHECK(pieces >= 2 && len == 0);
        return NULL;
    }
    if (req->op == HPO_SERVICE_PARAM_GET) {
        CHECK(req->text != NULL && req->reply == NULL);
        CHECK(req->text_len > 0 && req->text_len % 8 == 0);
        return NULL;
    }
    CHECK(req->text == NULL && json_is_object(req->reply));
    {
        char *text = json_dumps(req->reply, JSON_COMPACT);
        CHECK(text != NULL);
        free(text);
    }
    switch (req->op) {
    case HPO_SERVICE_ASK:
    case HPO_SERVICE_TRIAL_CREATE:
        CHECK(req->status == 201);
        CHECK(json_is_integer(json_object_get(req->reply, "number")));
        CHECK(json_is_object(json_object_get(req->reply, "params")));
        break;
    case HPO_SERVICE_TELL: {
        const char *st = json_string_value(json_object_get(req->reply, "state"));
        CHECK(req->status == 200 && st != NULL);
        CHECK(strcmp(st, "complete") == 0 || strcmp(st, "pruned") == 0 ||
                strcmp(st, "failed") == 0);
        break;
    }
    case HPO_SERVICE_REPORT:
        CHECK(json_is_boolean(json_object_get(req->reply, "prune")));
        break;
    case HPO_SERVICE_STUDY_CREATE:
        CHECK(req->status == 200 || req->status == 201);
        CHECK(json_is_string(json_object_get(req->reply, "name")));
        break;
    default:
        CHECK(req->status == 200);
        break;
    }
    return req->reply;
}

/* Run one request and check it; the caller calls hpo_service_request_finish. */
static const json_t *run(struct hpo_service_request *req)
{
    static int trace = -1;

    hpo_service_execute(service, req);
    if (trace < 0) {
        trace = getenv("FUZZ_SERVICE_TRACE") != NULL;
    }
    if (trace) {
        /* For writing seeds: FUZZ_SERVICE_TRACE=1 shows what each command got. */
        fprintf(stderr, "op %d %s/%lld: %d %s\n", (int)req->op, req->study ? req->study : "-",
                (long long)req->number, req->status, req->err.message);
    }
    return check_reply(req);
}

static void create_fixed(void)
{
    for (size_t i = 0; i < sizeof(fixed_specs) / sizeof(fixed_specs[0]); i++) {
        json_t *body = json_loads(fixed_specs[i], 0, NULL);
        struct hpo_service_request req = { .op = HPO_SERVICE_STUDY_CREATE, .body = body };
        CHECK(body != NULL);
        run(&req);
        if (req.status != 201) {
            fprintf(stderr, "fuzz-service: %s: %d %s\n", fixed_names[i], req.status,
                    req.err.message);
            check_failed("fixed study created");
        }
        hpo_service_request_finish(&req);
        json_decref(body);
    }
}

/* Counts agree with the trial list, then the study goes. */
static void check_and_delete(const char *name)
{
    struct hpo_service_request get = { .op = HPO_SERVICE_STUDY_GET, .study = name };
    struct hpo_service_request list = { .op = HPO_SERVICE_TRIALS_LIST, .study = name, .state_filter = -1,
        .limit = 1000000 };
    struct hpo_service_request del = { .op = HPO_SERVICE_STUDY_DELETE, .study = name };
    const json_t *study, *trials, *counts;
    json_int_t sum = 0;

    study = run(&get);
    trials = run(&list);
    CHECK(study != NULL && trials != NULL);
    counts = json_object_get(study, "trials");
    CHECK(json_is_object(counts));
    for (int st = 0; st < 5; st++) {
        static const char *const names[] = { "waiting", "running", "complete", "pruned",
            "failed" };
        json_t *c = json_object_get(counts, names[st]);
        CHECK(json_is_integer(c) && json_integer_value(c) >= 0);
        sum += json_integer_value(c);
    }
    CHECK(sum == json_integer_value(json_object_get(counts, "total")));
    CHECK(sum == json_integer_value(json_object_get(trials, "total")));
    CHECK(json_array_size(json_object_get(trials, "trials")) == (size_t)sum);
    hpo_service_request_finish(&get);
    hpo_service_request_finish(&list);
    run(&del);
    CHECK(del.status == 204);
    hpo_service_request_finish(&del);
}

static void cleanup(void)
{
    struct hpo_service_request list = { .op = HPO_SERVICE_STUDY_LIST };
    const json_t *studies;
    json_t *arr;

    studies = run(&list);
    CHECK(studies != NULL);
    arr = json_object_get(studies, "studies");
    CHECK(json_is_array(arr));
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(arr, i), "name"));
        CHECK(name != NULL);
        check_and_delete(name);
    }
    hpo_service_request_finish(&list);
    list.op = HPO_SERVICE_STUDY_LIST;
    studies = run(&list);
    CHECK(studies != NULL && json_array_size(json_object_get(studies, "studies")) == 0);
    hpo_service_request_finish(&list);
}

/* A JSON body from the payload: 0 with *body set (NULL when empty), -1 to skip. */
static int parse_body(const uint8_t *p, size_t n, json_t **body)
{
    *body = NULL;
    if (n == 0) {
        return 0;
    }
    *body = json_loadb((const char *)p, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    return *body != NULL ? 0 : -1;
}

/*
** One command. Payloads: TRIALS_LIST p[0] = state filter (mod 6, minus 1)
** and csv (bit 6), p[1] = limit, p[2] = offset; PARAM_GET and GRADIENT_PUT
** p[0] = the param (param_names, mod 5), the rest the binary body; REAP
** p[0] = minutes ahead; others a JSON body.
*/
static void run_command(const uint8_t *cmd, size_t n, char *last_created, size_t last_len)
{
    struct hpo_service_request req = { .state_filter = -1, .limit = 1000 };
    int op = cmd[0] % N_OPS;
    const uint8_t *p = cmd + 2;
    size_t pn = n - 2;
    json_t *body = NULL;
    unsigned number = cmd[1] >> 2;

    req.study = (cmd[1] & 3) < 3 ? fixed_names[cmd[1] & 3] :
            (last_created[0] != '\0' ? last_created : "nope");
    req.number = number == 63 ? 999999999999999999LL : (int64_t)number;
    if (op == OP_REAP) {
        (void)hpo_service_reap(service, hpo_now_ms() + (pn > 0 ? p[0] : 1) * 60000LL);
        return;
    }
    req.op = (enum hpo_service_op)(op == OP_ASK_TELL ? HPO_SERVICE_ASK
                    : op == OP_TRIAL_PATCH ? HPO_SERVICE_TRIAL_PATCH
                    : op == OP_STUDY_PATCH ? HPO_SERVICE_STUDY_PATCH : op);
    switch (req.op) {
    case HPO_SERVICE_TRIALS_LIST:
        if (pn > 0) {
            req.state_filter = (p[0] & 0x3f) % 6 - 1;
            req.csv = (p[0] & 0x40) != 0;
        }
        req.limit = pn > 1 ? 1 + p[1] : 1000;
        req.offset = pn > 2 ? p[2] : 0;
        break;
    case HPO_SERVICE_PARAM_GET:
    case HPO_SERVICE_GRADIENT_PUT:
        req.name = param_names[(pn > 0 ? p[0] : 0) % 5];
        req.data = pn > 1 ? p + 1 : NULL;
        req.data_len = pn > 1 ? pn - 1 : 0;
        break;
    default:
        if (op != OP_ASK_TELL && parse_body(p, pn, &body) < 0) {
            return;
        }
        req.body = body;
        break;
    }
    run(&req);
    if (req.op == HPO_SERVICE_STUDY_CREATE && req.status == 201) {
        snprintf(last_created, last_len, "%s",
                json_string_value(json_object_get(req.reply, "name")));
    }
    if (op == OP_ASK_TELL && req.status == 201) {
        struct hpo_service_request tell = { .op = HPO_SERVICE_TELL, .study = req.study };
        json_t *tbody = NULL;
        tell.number = json_integer_value(json_object_get(req.reply, "number"));
        if (parse_body(p, pn, &tbody) == 0) {
            if (tbody == NULL) {
                tbody = json_pack("{s:f}", "value", (double)(tell.number % 7) / 7.0);
            }
            tell.body = tbody;
            run(&tell);
            hpo_service_request_finish(&tell);
            json_decref(tbody);
        }
    }
    hpo_service_request_finish(&req);
    json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char last_created[160] = "";
    size_t start = 0;

    setup();
    create_fixed();
    while (start < size) {
        const uint8_t *nl = memchr(data + start, '\n', size - start);
        size_t end = nl != NULL ? (size_t)(nl - data) : size;
        if (end - start >= 2) {
            /* An exact-size copy, so reads past the command show under ASan. */
            uint8_t *cmd = malloc(end - start);
            CHECK(cmd != NULL);
            memcpy(cmd, data + start, end - start);
            run_command(cmd, end - start, last_created, sizeof(last_created));
            free(cmd);
        }
        start = end + 1;
    }
    cleanup();
    return 0;
}
