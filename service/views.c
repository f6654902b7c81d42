/*
** views.c: the read-only answers: the study list, trial lists (JSON pages
** and the streamed CSV export), one trial, the best trial (service-int.h).
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/jsonw.h"
#include "../core/mo.h"
#include "service-int.h"

void hpo__op_study_list(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    json_t *arr = json_array();
    size_t n;
    struct study **snap = hpo__registry_snapshot(svc, &n);

    (void)a;
    if (snap == NULL) {
        hpo_oom();
    }
    for (size_t i = 0; i < n; i++) {
        json_t *sum;
        if (req->settled) {
            /* Run again: each study's committed state (hpo__study_acquire waits). */
            struct hpo_service_request one = { .op = HPO_SERVICE_STUDY_GET, .settled = true,
                .study = snap[i]->name };
            struct study *s = hpo__study_acquire(svc, &one);
            hpo_storage_chain_unref(one.chain);
            if (s == NULL && one.err.code == HPO_NOT_FOUND) {
                continue; /* deleted meanwhile */
            }
            if (s == NULL) {
                req->err = one.err;
                json_decref(arr);
                hpo__registry_snapshot_free(snap, n);
                return;
            }
            json_array_append_new(arr, hpo__study_to_json(s, false));
            hpo__study_release(s);
            continue;
        }
        if (hpo__study_broken(snap[i])) {
            /* A pipelined write of it failed: its summary from a fresh copy. */
            struct hpo_error err;
            struct study *cur;
            if (hpo__study_reload(svc, snap[i], NULL, &err) < 0) {
                hpo_error_set(&req->err, -EIO, HPO_UNAVAILABLE, NULL, "%s", err.message);
                json_decref(arr);
                hpo__registry_snapshot_free(snap, n);
                return;
            }
            cur = hpo__study_get(svc, snap[i]->name);
            if (cur == NULL) {
                continue; /* deleted meanwhile */
            }
            hpo__study_unref(snap[i]);
            snap[i] = cur;
        }
        sum = hpo__study_read_summary(snap[i], false);
        if (sum != NULL) {
            json_array_append_new(arr, sum);
        }
    }
    hpo__registry_snapshot_free(snap, n);
    hpo__reply(req, 200, json_pack("{s:o}", "studies", arr));
}

/* Append one CSV field, quoting when needed (the text stays NUL-terminated). */
static void csv_field(struct hpo_buf *b, const char *text, bool comma)
{
    bool quote = strpbrk(text, ",\"\r\n") != NULL;
    char *p;

    if (hpo_buf_reserve(b, strlen(text) * 2 + 4) < 0) {
        hpo_oom();
    }
    p = b->data + b->len;
    if (comma) {
        *p++ = ',';
    }
    if (quote) {
        *p++ = '"';
    }
    for (const char *c = text; *c; c++) {
        if (*c == '"') {
            *p++ = '"';
        }
        *p++ = *c;
    }
    if (quote) {
        *p++ = '"';
    }
    *p = '\0';
    b->len = (size_t)(p - b->data);
}

static void csv_param(const struct hpo_param *p, const double *values, bool thin, char *out,
        size_t len)
{
    json_t *v;
    char *text;

    if ((thin && p->size > 0) || isnan(values[p->offset])) {
        out[0] = '\0';
        return;
    }
    /* Scalars without building JSON (the export's hot path); the same text as JSON writes. */
    if (p->size == 0 && p->type == HPO_PARAM_INT) {
        snprintf(out, len, "%lld", (long long)values[p->offset]);
        return;
    }
    if (p->size == 0 && p->type == HPO_PARAM_FLOAT && len >= HPO_DOUBLE_BUF + 2) {
        size_t n = hpo_format_double(out, values[p->offset]);
        if (strpbrk(out, ".e") == NULL) {
            memcpy(out + n, ".0", 3);
        }
        return;
    }
    if (p->size == 0) {
        v = hpo_param_value_json(p, values[p->offset]);
    } else {
        v = json_array();
        for (size_t k = 0; k < p->size && k < 1000; k++) {
            json_array_append_new(v, json_real(values[p->offset + k]));
        }
    }
    text = hpo_json_dumps(v, NULL);
    if (json_is_string(v)) {
        snprintf(out, len, "%s", json_string_value(v));
    } else {
        snprintf(out, len, "%s", text ? text : "");
    }
    free(text);
    json_decref(v);
}

/*
** CSV export (docs/API.md "Trials"): the columns are number, state, value
** (with several objectives: one column per objective, by name), one per
** constraint (by name), the params, created_at, completed_at, duration (seconds), one
** user_attrs_<key> per user attr key of the study (sorted by key) and, with
** ?intermediate=true, "intermediate" (a JSON object step -> value).
**
** A CSV reply is streamed: the request's job only takes a snapshot (the
** trial count, the attr keys, the matching count) and the HTTP side then
** asks for the rows in chunks of about CSV_CHUNK bytes, each chunk read on a
** worker thread under the study's lock. Trials are never removed from a
** study (a deleted study stays in memory while a stream holds it), so the
** rows are trials 0 .. count-1 as they are when their chunk is read.
*/
#define CSV_CHUNK ((size_t)256 * 1024)

struct hpo_service_stream {
    struct study *s; /* a reference */
    char **keys;     /* user attr keys, sorted */
    size_t n_keys;
    bool intermediate;
    int state_filter;
    int feasible_filter;
    int64_t offset, limit; /* limit -1: all */
    size_t end;            /* the trial count at the start */
    size_t cursor;         /* next trial to look at */
    int64_t matched, emitted;
    struct hpo_buf out; /* the piece being built */
    bool header_sent;
};

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The study's user attr keys over trials [0, end), sorted (the study is locked). */
static void csv_collect_keys(struct hpo_service_stream *st)
{
    json_t *set = json_object();
    const char *key;
    json_t *v;
    size_t i = 0;

    for (size_t k = 0; k < st->end; k++) {
        const struct hpo_trial *t = st->s->history.trials[k];
        if (t->user_attrs != NULL) {
            json_object_foreach(t->user_attrs, key, v) {
                json_object_set(set, key, json_null());
            }
        }
    }
    st->n_keys = json_object_size(set);
    st->keys = calloc(st->n_keys ? st->n_keys : 1, sizeof(*st->keys));
    if (set == NULL || st->keys == NULL) {
        hpo_oom();
    }
    json_object_foreach(set, key, v) {
        st->keys[i] = strdup(key);
        if (st->keys[i++] == NULL) {
            hpo_oom();
        }
    }
    qsort(st->keys, st->n_keys, sizeof(*st->keys), compare_keys);
    json_decref(set);
}

static void csv_end_line(struct hpo_service_stream *st)
{
    csv_field(&st->out, "", false);
    st->out.data[st->out.len++] = '\n';
    st->out.data[st->out.len] = '\0';
}

static void csv_header(struct hpo_service_stream *st)
{
    const struct study *s = st->s;

    csv_field(&st->out, "number", false);
    csv_field(&st->out, "state", true);
    if (s->n_obj == 1) {
        csv_field(&st->out, "value", true);
    } else {
        for (size_t i = 0; i < s->n_obj; i++) {
            csv_field(&st->out, s->obj[i].name, true);
        }
    }
    for (size_t i = 0; i < s->n_cons; i++) {
        csv_field(&st->out, s->cons[i].name, true);
    }
    for (size_t i = 0; i < s->space->n_params; i++) {
        csv_field(&st->out, s->space->params[i].name, true);
    }
    csv_field(&st->out, "created_at", true);
    csv_field(&st->out, "completed_at", true);
    csv_field(&st->out, "duration", true);
    for (size_t i = 0; i < st->n_keys; i++) {
        char *col = NULL;
        if (asprintf(&col, "user_attrs_%s", st->keys[i]) < 0) {
            hpo_oom();
        }
        csv_field(&st->out, col, true);
        free(col);
    }
    if (st->intermediate) {
        csv_field(&st->out, "intermediate", true);
    }
    csv_end_line(st);
}

/* A cell of JSON text (a user attr: strings as their text). */
static void csv_json_cell(struct hpo_service_stream *st, const json_t *v)
{
    char *text;

    if (v == NULL || json_is_null(v)) {
        csv_field(&st->out, "", true);
        return;
    }
    if (json_is_string(v)) {
        csv_field(&st->out, json_string_value(v), true);
        return;
    }
    text = hpo_json_dumps(v, NULL);
    if (text == NULL) {
        hpo_oom();
    }
    csv_field(&st->out, text, true);
    free(text);
}

static void csv_time_cell(struct hpo_service_stream *st, int64_t ms)
{
    char cell[40];

    cell[0] = '\0';
    if (ms > 0) {
        hpo_format_time(ms, cell, sizeof(cell));
    }
    csv_field(&st->out, cell, true);
}

static void csv_row(struct hpo_service_stream *st, const struct hpo_trial *t)
{
    const struct study *s = st->s;
    char cell[32768];

    snprintf(cell, sizeof(cell), "%lld", (long long)t->number);
    csv_field(&st->out, cell, false);
    csv_field(&st->out, hpo_state_name(t->state), true);
    cell[0] = '\0';
    if (isfinite(t->value)) {
        hpo_format_double(cell, t->value);
    }
    csv_field(&st->out, cell, true);
    for (size_t i = 1; i < s->n_obj + s->n_cons; i++) {
        double v = t->results != NULL ? t->results[i] : NAN;
        cell[0] = '\0';
        if (isfinite(v)) {
            hpo_format_double(cell, v);
        }
        csv_field(&st->out, cell, true);
    }
    for (size_t k = 0; k < s->space->n_params; k++) {
        csv_param(&s->space->params[k], t->values, t->thin, cell, sizeof(cell));
        csv_field(&st->out, cell, true);
    }
    csv_time_cell(st, t->created_at);
    csv_time_cell(st, t->completed_at);
    cell[0] = '\0';
    if (t->started_at > 0 && t->completed_at >= t->started_at) {
        hpo_format_double(cell, (double)(t->completed_at - t->started_at) / 1000.0);
    }
    csv_field(&st->out, cell, true);
    for (size_t i = 0; i < st->n_keys; i++) {
        csv_json_cell(st, t->user_attrs ? json_object_get(t->user_attrs, st->keys[i]) : NULL);
    }
    if (st->intermediate) {
        json_t *o = json_object();
        for (size_t r = 0; r < t->n_reports; r++) {
            char step[24];
            snprintf(step, sizeof(step), "%lld", (long long)t->reports[r].step);
            json_object_set_new(o, step, isfinite(t->reports[r].value)
                            ? json_real(t->reports[r].value) : json_null());
        }
        csv_json_cell(st, o);
        json_decref(o);
    }
    csv_end_line(st);
}

/*
** A trials list's filters: state (-1 = any), feasible (0 = any; 1 = the trials
** shown with "feasible": true, i.e. complete and within every constraint (every
** complete trial when the study has none); 2 = all the others).
*/
static bool list_match(const struct study *s, const struct hpo_trial *t, int state_filter,
        int feasible_filter)
{
    if (state_filter >= 0 && (int)t->state != state_filter) {
        return false;
    }
    if (feasible_filter != 0) {
        bool f = t->state == HPO_STATE_COMPLETE && hpo__trial_feasible(s, t);
        return f == (feasible_filter == 1);
    }
    return true;
}

int hpo_service_stream_next(struct hpo_service_stream *st, const char **ret, size_t *ret_len)
{
    st->out.len = 0;
    if (st->out.data != NULL) {
        st->out.data[0] = '\0';
    }
    if (!st->header_sent) {
        pthread_mutex_lock(&st->s->lock);
        csv_header(st);
        pthread_mutex_unlock(&st->s->lock);
        st->header_sent = true;
    } else {
        pthread_mutex_lock(&st->s->lock);
        while (st->cursor < st->end && st->out.len < CSV_CHUNK &&
                (st->limit < 0 || st->emitted < st->limit)) {
            const struct hpo_trial *t = st->s->history.trials[st->cursor++];
            if (!list_match(st->s, t, st->state_filter, st->feasible_filter)) {
                continue;
            }
            if (st->matched++ < st->offset) {
                continue;
            }
            st->emitted++;
            csv_row(st, t);
        }
        pthread_mutex_unlock(&st->s->lock);
    }
    *ret = st->out.data ? st->out.data : "";
    *ret_len = st->out.len;
    return 0;
}

void hpo_service_stream_free(struct hpo_service_stream *st)
{
    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < st->n_keys; i++) {
        free(st->keys[i]);
    }
    free(st->keys);
    hpo_buf_free(&st->out);
    hpo__study_unref(st->s);
    free(st);
}

void hpo__op_trials_list(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_acquire(svc, req);
    const struct hpo_history *h;
    json_t *arr = NULL;
    size_t total = 0, emitted = 0;

    if (s == NULL) {
        return;
    }
    h = &s->history;
    if (!req->csv) {
        arr = json_array();
    }
    for (size_t i = 0; i < h->n_trials; i++) {
        const struct hpo_trial *t = h->trials[i];
        if (!list_match(s, t, req->state_filter, req->feasible_filter)) {
            continue;
        }
        total++;
        if (req->csv || (int64_t)total <= req->offset || (int64_t)emitted >= req->limit) {
            continue;
        }
        emitted++;
        json_array_append_new(arr, hpo__trial_to_json(s, t));
    }
    req->total = (int64_t)total;
    req->next_offset = req->limit >= 0 && req->offset + req->limit < (int64_t)total
            ? req->offset + req->limit : -1;
    if (req->csv) {
        struct hpo_service_stream *st = calloc(1, sizeof(*st));
        if (st == NULL) {
            hpo_oom();
        }
        atomic_fetch_add(&s->refs, 1);
        st->s = s;
        st->intermediate = req->intermediate;
        st->state_filter = req->state_filter;
        st->feasible_filter = req->feasible_filter;
        st->offset = req->offset;
        st->limit = req->limit;
        st->end = h->n_trials;
        csv_collect_keys(st);
        req->status = 200;
        req->stream = st;
    } else {
        hpo__reply(req, 200, json_pack("{s:o,s:I}", "trials", arr, "total", (json_int_t)total));
    }
    hpo__study_release(s);
}

void hpo__op_trial_get(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_acquire(svc, req);
    struct hpo_trial *t;

    if (s == NULL) {
        return;
    }
    t = hpo__trial_lookup(s, req);
    if (t != NULL) {
        hpo__reply(req, 200, hpo__trial_to_json(s, t));
    }
    hpo__study_release(s);
}

/* The front's trials as JSON, in order of number. */
static json_t *front_json(struct study *s, const size_t *idx, long n)
{
    json_t *trials = json_array();

    for (long i = 0; i < n; i++) {
        json_array_append_new(trials, hpo__trial_to_json(s, s->history.trials[idx[i]]));
    }
    return trials;
}

void hpo__op_pareto(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_acquire(svc, req);
    struct hpo__front f;
    json_t *out, *ref = json_null();
    double r[HPO_OBJECTIVES_MAX], hv = 0.0;
    bool have_ref = s != NULL && s->has_ref;

    if (s == NULL) {
        return;
    }
    if (hpo__study_front(s, &f) < 0) {
        hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    if (have_ref) {
        for (size_t k = 0; k < s->n_obj; k++) {
            r[k] = s->obj[k].maximize ? -s->ref[k] : s->ref[k];
        }
    } else {
        have_ref = hpo_mo_nadir_reference(f.loss, f.n, (unsigned)s->n_obj, f.violation, 0.1,
                           r) == 0;
    }
    if (have_ref) {
        double *pts = malloc((size_t)(f.n_front ? f.n_front : 1) * s->n_obj * sizeof(double));
        if (pts == NULL) {
            hpo__front_free(&f);
            hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        for (long i = 0; i < f.n_front; i++) {
            memcpy(pts + (size_t)i * s->n_obj, f.loss + f.front[i] * s->n_obj,
                    s->n_obj * sizeof(double));
        }
        if (hpo_mo_hypervolume(pts, (size_t)f.n_front, (unsigned)s->n_obj, r, &hv) < 0) {
            hv = NAN;
        }
        free(pts);
        ref = json_object();
        for (size_t k = 0; k < s->n_obj; k++) {
            json_object_set_new(ref, s->obj[k].name, json_real(s->obj[k].maximize ? -r[k] : r[k]));
        }
    }
    for (long i = 0; i < f.n_front; i++) {
        f.front[i] = f.trial[f.front[i]];
    }
    out = json_object();
    json_object_set_new(out, "trials", front_json(s, f.front, f.n_front));
    json_object_set_new(out, "hypervolume", isfinite(hv) ? json_real(hv) : json_null());
    json_object_set_new(out, "reference_point", ref);
    hpo__front_free(&f);
    hpo__reply(req, 200, out);
out:
    hpo__study_release(s);
}

void hpo__op_best(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_acquire(svc, req);

    if (s == NULL) {
        return;
    }
    if (s->n_obj > 1) {
        struct hpo__front f;
        if (hpo__study_front(s, &f) < 0) {
            hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        } else {
            for (long i = 0; i < f.n_front; i++) {
                f.front[i] = f.trial[f.front[i]];
            }
            hpo__reply(req, 200, json_pack("{s:o}", "trials", front_json(s, f.front, f.n_front)));
            hpo__front_free(&f);
        }
    } else if (s->best < 0) {
        hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL, "study '%s' has no complete trial",
                s->name);
    } else {
        hpo__reply(req, 200, hpo__trial_to_json(s, s->history.trials[s->best]));
    }
    hpo__study_release(s);
}
