/*
** fuzz-decode.c: libFuzzer target for the service's decoders
** (service/decode.c) through hpo_service_decode, with no service and no
** database. Input: one byte choosing the op, then a query string line
** ("k=v&k", no escapes), then the body. Whatever the bytes: the answer is
** accepted, or refused with invalid_json / invalid_argument (or not_found
** for an op out of range) and its status; accepted arguments hold what the
** operations rely on.
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/history.h"
#include "../../service/service.h"
#include "fuzz.h"

#define MAX_PAIRS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hpo_service_query_pair pairs[MAX_PAIRS];
    struct hpo_service_query q = { .pairs = pairs, .accept = NULL };
    struct hpo_service_request req;
    const uint8_t *nl;
    char *query;
    size_t qlen;
    int rc;

    if (size < 1) {
        return 0;
    }
    memset(&req, 0, sizeof(req));
    req.op = (enum hpo_service_op)(data[0] % (HPO_SERVICE_OP_COUNT + 1));
    req.state_filter = -1;
    q.accept = (data[0] & 0x80) != 0 ? "text/csv" : NULL;
    data++;
    size--;
    nl = memchr(data, '\n', size);
    qlen = nl != NULL ? (size_t)(nl - data) : 0;
    query = malloc(qlen + 1);
    CHECK(query != NULL);
    memcpy(query, data, qlen);
    query[qlen] = '\0';
    if (nl != NULL) {
        data += qlen + 1;
        size -= qlen + 1;
    }
    /* Split "k=v&k" in place; a NUL in the line ends it. */
    for (char *p = query; *p != '\0' && q.n < MAX_PAIRS;) {
        char *amp = strchr(p, '&'), *eq;
        if (amp != NULL) {
            *amp = '\0';
        }
        eq = strchr(p, '=');
        if (eq != NULL) {
            *eq = '\0';
        }
        pairs[q.n].key = p;
        pairs[q.n].value = eq != NULL ? eq + 1 : NULL;
        q.n++;
        if (amp == NULL) {
            break;
        }
        p = amp + 1;
    }
    rc = hpo_service_decode(&req, &q, (const char *)data, size);
    CHECK((rc == 0) == (req.err.code == HPO_OK));
    CHECK(rc == 0 || req.status == hpo_code_status(req.err.code));
    CHECK(rc == 0 || req.err.code == HPO_INVALID_JSON || req.err.code == HPO_INVALID_ARGUMENT ||
            req.err.code == HPO_NOT_FOUND);
    CHECK(rc != 0 || req.decoded);
    if (rc == 0) {
        switch (req.op) {
        case HPO_SERVICE_TELL:
            CHECK(req.args.tell.state == HPO_STATE_COMPLETE ||
                    req.args.tell.state == HPO_STATE_PRUNED ||
                    req.args.tell.state == HPO_STATE_FAILED);
            /* Complete with a value, or with "values" (several objectives: value stays NaN). */
            CHECK((req.args.tell.state == HPO_STATE_COMPLETE) ==
                    (isfinite(req.args.tell.value) || req.args.tell.values != NULL));
            CHECK(req.args.tell.values == NULL || isnan(req.args.tell.value));
            CHECK(req.args.tell.attrs == NULL || json_is_object(req.args.tell.attrs));
            break;
        case HPO_SERVICE_REPORT:
            CHECK(req.args.report.step >= 0 && isfinite(req.args.report.value));
            break;
        case HPO_SERVICE_TRIAL_CREATE:
            CHECK(req.args.trial.params != NULL);
            CHECK(req.args.trial.has_value ==
                    (isfinite(req.args.trial.value) || req.args.trial.values != NULL));
            CHECK(req.args.trial.values == NULL || isnan(req.args.trial.value));
            break;
        case HPO_SERVICE_ASK:
            CHECK(req.args.ask.worker == NULL || strlen(req.args.ask.worker) <= 256);
            break;
        case HPO_SERVICE_TRIALS_LIST:
            CHECK(req.limit >= 1 || (req.limit == -1 && req.csv));
            CHECK(req.offset >= 0);
            CHECK(req.state_filter >= -1 && req.state_filter <= HPO_STATE_FAILED);
            break;
        default:
            break;
        }
    }
    hpo_service_request_finish(&req);
    free(query);
    return 0;
}
