/*
** trial-text.c: a trial's JSON reply written straight from memory, without
** the json_t tree of hpo__trial_to_json and its encoding: the text of the
** replies to an ask and a tell, the most frequent ones (at 8 clients the
** tree and its encoding were a sixth of an HTTP thread's time).
**
** The text is byte for byte hpo_json_dumps(hpo__trial_to_json(s, t))
** (tests/unit/test-service.c checks it on every kind of trial). Trials this
** writer leaves to the tree (it returns NULL): vector params, several
** objectives or constraints, and anything the tree would leave out or fail
** on (a non-finite real, a categorical index out of range, text outside
** ASCII, where json_string would check UTF-8).
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/jsonw.h"
#include "service-int.h"
#include "study.h"

static bool ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s >= 0x80) {
            return false;
        }
    }
    return true;
}

static void number_or_null(struct hpo_jsonw *w, double v)
{
    if (isfinite(v)) {
        hpo_jsonw_real(w, v);
    } else {
        hpo_jsonw_raw(w, "null", 4);
    }
}

static void time_text(struct hpo_jsonw *w, const char *key, int64_t ms)
{
    char buf[40];

    hpo_jsonw_raw(w, key, strlen(key));
    if (ms <= 0) {
        hpo_jsonw_raw(w, "null", 4);
        return;
    }
    hpo_format_time(ms, buf, sizeof(buf));
    hpo_jsonw_string(w, buf);
}

/* The "params" object of hpo_space_values_to_json_thin, scalars only; false: leave it to the tree. */
static bool params_text(struct hpo_jsonw *w, const struct hpo_space *space, const double *values)
{
    bool first = true;

    hpo_jsonw_raw(w, "{", 1);
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        double v = values[p->offset];
        if (p->size > 0) {
            return false;
        }
        if (isnan(v)) {
            continue;
        }
        if (!first) {
            hpo_jsonw_raw(w, ",", 1);
        }
        first = false;
        if (!ascii(p->name)) {
            return false;
        }
        hpo_jsonw_string(w, p->name);
        hpo_jsonw_raw(w, ":", 1);
        switch (p->type) {
        case HPO_PARAM_INT:
            hpo_jsonw_int(w, (long long)(json_int_t)v);
            break;
        case HPO_PARAM_CATEGORICAL:
            if (!(v >= 0) || (size_t)v >= json_array_size(p->choices)) {
                return false;
            }
            hpo_jsonw_value(w, json_array_get(p->choices, (size_t)v));
            break;
        case HPO_PARAM_FLOAT:
        default:
            if (!isfinite(v)) {
                return false;
            }
            hpo_jsonw_real(w, v);
            break;
        }
    }
    hpo_jsonw_raw(w, "}", 1);
    return true;
}

char *hpo__trial_to_text(struct study *s, const struct hpo_trial *t, size_t *ret_len)
{
    struct hpo_jsonw w = { 0 };

    if (hpo__study_has_results(s) || !ascii(s->name) || (t->worker != NULL && !ascii(t->worker))) {
        return NULL;
    }
    /* Room for a usual reply (330 bytes for three params): no realloc on the way. */
    w.buf = malloc(512);
    w.cap = w.buf != NULL ? 512 : 0;
    hpo_jsonw_raw(&w, "{\"study\":", 9);
    hpo_jsonw_string(&w, s->name);
    hpo_jsonw_raw(&w, ",\"number\":", 10);
    hpo_jsonw_int(&w, (long long)t->number);
    hpo_jsonw_raw(&w, ",\"state\":", 9);
    hpo_jsonw_string(&w, hpo_state_name(t->state));
    hpo_jsonw_raw(&w, ",\"params\":", 10);
    if (!params_text(&w, s->space, t->values)) {
        free(w.buf);
        return NULL;
    }
    if (s->n_obj == 1) {
        hpo_jsonw_raw(&w, ",\"value\":", 9);
        number_or_null(&w, t->value);
    }
    hpo_jsonw_raw(&w, ",\"intermediate\":[", 17);
    for (size_t i = 0; i < t->n_reports; i++) {
        hpo_jsonw_raw(&w, i > 0 ? ",{\"step\":" : "{\"step\":", i > 0 ? 9 : 8);
        hpo_jsonw_int(&w, (long long)t->reports[i].step);
        hpo_jsonw_raw(&w, ",\"value\":", 9);
        number_or_null(&w, t->reports[i].value);
        hpo_jsonw_raw(&w, "}", 1);
    }
    hpo_jsonw_raw(&w, "],\"user_attrs\":", 15);
    if (t->user_attrs != NULL) {
        hpo_jsonw_value(&w, t->user_attrs);
    } else {
        hpo_jsonw_raw(&w, "{}", 2);
    }
    hpo_jsonw_raw(&w, ",\"worker\":", 10);
    if (t->worker != NULL) {
        hpo_jsonw_string(&w, t->worker);
    } else {
        hpo_jsonw_raw(&w, "null", 4);
    }
    hpo_jsonw_raw(&w, ",\"retry_of\":", 12);
    if (t->retry_of >= 0) {
        hpo_jsonw_int(&w, (long long)t->retry_of);
    } else {
        hpo_jsonw_raw(&w, "null", 4);
    }
    time_text(&w, ",\"created_at\":", t->created_at);
    time_text(&w, ",\"started_at\":", t->started_at);
    time_text(&w, ",\"completed_at\":", t->completed_at);
    time_text(&w, ",\"heartbeat_at\":", t->heartbeat_at);
    hpo_jsonw_raw(&w, "}", 1);
    return hpo_jsonw_finish(&w, ret_len);
}

void hpo__reply_trial(struct hpo_service_request *req, int status, struct study *s,
        const struct hpo_trial *t)
{
    char *text = req->text_ok ? hpo__trial_to_text(s, t, &req->text_len) : NULL;

    if (text == NULL) {
        hpo__reply(req, status, hpo__trial_to_json(s, t));
        return;
    }
    req->status = status;
    req->text = text;
}
