/*
** write.c: building a write (the ops of one request), committing it, and
** the sampler state kept to roll a failed one back (service-int.h).
*/
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../storage/reader.h"
#include "service-int.h"

/*
** Room for a request's usual few ops at once (8 x 224 bytes: past glibc's
** per-thread cache, so a malloc and free of it each request took the
** arena's slow path, malloc_consolidate included). Each thread keeps one
** such buffer between writes instead: the next write of that thread takes
** it back (a pthread key, freed when the thread exits).
*/
#define SPARE_OPS 8

static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static bool spare_ok;

static void spare_make(void)
{
    spare_ok = pthread_key_create(&spare_key, free) == 0;
}

static void ops_start(struct hpo_buf *ops)
{
    void *spare;

    pthread_once(&spare_once, spare_make);
    spare = spare_ok ? pthread_getspecific(spare_key) : NULL;
    if (spare != NULL) {
        (void)pthread_setspecific(spare_key, NULL);
    } else {
        spare = malloc(SPARE_OPS * sizeof(struct hpo_op));
        if (spare == NULL) {
            hpo_oom();
        }
    }
    ops->data = spare;
    ops->len = 0;
    ops->cap = SPARE_OPS * sizeof(struct hpo_op);
}

/* Keep the ops buffer for the thread's next write when it has the usual size; else free it. */
static void ops_done(struct hpo_buf *ops)
{
    if (ops->cap == SPARE_OPS * sizeof(struct hpo_op) && spare_ok &&
            pthread_getspecific(spare_key) == NULL &&
            pthread_setspecific(spare_key, ops->data) == 0) {
        ops->data = NULL;
        ops->len = 0;
        ops->cap = 0;
        return;
    }
    hpo_buf_free(ops);
}

struct hpo_op *hpo__write_op(struct hpo__write *w, enum hpo_op_kind kind, int64_t study_id)
{
    struct hpo_op *op;

    if (w->ops.cap == 0) {
        ops_start(&w->ops);
    }
    op = hpo_buf_add_or_die(&w->ops, sizeof(*op));

    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->study_id = study_id;
    return op;
}

const char *hpo__write_keep(struct hpo__write *w, char *text)
{
    if (text == NULL) {
        hpo_oom();
    }
    *(char **)hpo_buf_add_or_die(&w->texts, sizeof(char *)) = text;
    return text;
}

void hpo__write_free(struct hpo__write *w)
{
    for (size_t i = 0; i < HPO_BUF_N(&w->texts, char *); i++) {
        free(HPO_BUF_AT(&w->texts, char *, i));
    }
    hpo_buf_free(&w->texts);
    ops_done(&w->ops);
}

void hpo__write_trial(struct hpo__write *w, const struct study *s, const struct hpo_trial *t)
{
    struct hpo_op *op = hpo__write_op(w, HPO_OP_TRIAL_PUT, s->id);

    op->number = t->number;
    op->trial.state = (int)t->state;
    op->trial.value = t->value;
    op->trial.worker = t->worker;
    op->trial.retry_of = t->retry_of;
    op->trial.retries = t->retries;
    op->trial.created_at = t->created_at;
    op->trial.started_at = t->started_at;
    op->trial.completed_at = t->completed_at;
    op->trial.heartbeat_at = t->heartbeat_at;
    op->trial.results = NULL;
    if (t->results != NULL && hpo__study_has_results(s)) {
        size_t n = s->n_obj + s->n_cons, cap = n * 26 + 3, len = 0;
        char *text = malloc(cap);
        if (text == NULL) {
            hpo_oom();
        }
        text[len++] = '[';
        for (size_t i = 0; i < n; i++) {
            len += (size_t)(isnan(t->results[i])
                            ? snprintf(text + len, cap - len, "%snull", i ? "," : "")
                            : snprintf(text + len, cap - len, "%s%.17g", i ? "," : "",
                                      t->results[i]));
        }
        text[len++] = ']';
        text[len] = '\0';
        op->trial.results = hpo__write_keep(w, text);
    }
}

void hpo__write_params(struct hpo__write *w, const struct study *s, const struct hpo_trial *t)
{
    for (size_t i = 0; i < s->space->n_params; i++) {
        const struct hpo_param *p = &s->space->params[i];
        struct hpo_op *op;
        if (isnan(t->values[p->offset])) {
            continue;
        }
        /* A shared vector is stored once: later trials store the number of the trial holding it. */
        if (p->size && t->shares >= 0) {
            op = hpo__write_op(w, HPO_OP_PARAM_PUT, s->id);
            op->number = t->number;
            op->index = (int64_t)i;
            op->value = (double)t->shares;
            continue;
        }
        op = hpo__write_op(w, p->size ? HPO_OP_PARAM_VECTOR : HPO_OP_PARAM_PUT, s->id);
        op->number = t->number;
        op->index = (int64_t)i;
        op->value = t->values[p->offset];
        op->scalar = p->size == 0;
        if (p->size) {
            op->vector = &t->values[p->offset];
            op->len = p->size;
        }
    }
}

void hpo__write_attrs(struct hpo__write *w, const struct study *s, const struct hpo_trial *t,
        const json_t *attrs, bool null_deletes)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)attrs, key, v) {
        struct hpo_op *op = hpo__write_op(w, null_deletes && json_is_null(v) ? HPO_OP_ATTR_DELETE : HPO_OP_ATTR_PUT,
                s->id);
        op->number = t->number;
        op->name = key;
        if (op->kind == HPO_OP_ATTR_PUT) {
            op->text = hpo__write_keep(w, json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT));
        }
    }
}


/*
** Sampler state saved into the write, when the sampler has any. A big state
** of a sampler with save_parts goes as pieces of its own memory (*blob NULL,
** *len its size); others are saved into *blob (malloc'd, *len bytes).
*/
void hpo__write_sampler_state(struct hpo_service *svc, struct hpo__write *w, struct study *s,
        void **blob, size_t *len)
{
    struct hpo_op *op;

    *blob = NULL;
    *len = 0;
    if (s->sampler_type->save_parts != NULL && svc->reader != NULL) {
        int n = s->sampler_type->save_parts(s->sampler, s->state_parts);
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            total += s->state_parts[i].len;
        }
        if (n > 0 && total >= HPO__STATE_KEEP_MAX) {
            op = hpo__write_op(w, HPO_OP_SAMPLER_STATE, s->id);
            op->parts = s->state_parts;
            op->n_parts = (size_t)n;
            op->settle = s->sampler_type->settle;
            op->start = s->sampler_type->start;
            op->settle_arg = s->sampler;
            if (s->sampler_type->save_record != NULL) {
                /* Storage that can append this tell to the stored state writes only that. */
                int k = s->sampler_type->save_record(s->sampler, s->state_record);
                op->append = k > 0 ? s->state_record : NULL;
                op->n_append = k > 0 ? (size_t)k : 0;
            }
            *len = total;
            return;
        }
    }
    /* Offer the spare buffer (the state before last): big states then cause no page faults. */
    *blob = s->spare_blob;
    *len = s->spare_cap;
    s->spare_blob = NULL;
    s->spare_cap = 0;
    if (s->sampler_type->save == NULL || s->sampler_type->save(s->sampler, blob, len) < 0) {
        free(*blob);
        *blob = NULL;
        *len = 0;
        return;
    }
    op = hpo__write_op(w, HPO_OP_SAMPLER_STATE, s->id);
    op->blob = *blob;
    op->len = *len;
}

int hpo__commit(struct hpo_service *svc, struct study *s, struct hpo__write *w,
        struct hpo_error *err)
{
    struct hpo_write write = { .ops = (struct hpo_op *)(void *)w->ops.data,
        .n_ops = HPO_BUF_N(&w->ops, struct hpo_op), .chain = s != NULL ? s->chain : NULL };

    if (write.n_ops == 0) {
        return 0;
    }
    return hpo_storage_write(svc->storage, &write, err);
}

/*
** Rolling back a stateful sampler after a failed write or sampler call: load
** the last committed (or initial) state again, from the copy the study keeps
** or from storage. If storage cannot give it, the sampler is marked stale
** and its study's asks and tells answer `unavailable` until a retry reads it.
*/
void hpo__sampler_rollback(struct hpo_service *svc, struct study *s)
{
    struct hpo_error err;
    void *blob = NULL;
    size_t len = 0;

    if (s->sampler_type->load == NULL) {
        return;
    }
    if (!s->state_on_disk) {
        if (s->state_blob != NULL) {
            (void)s->sampler_type->load(s->sampler, s->state_blob, s->state_len);
        }
        return;
    }
    hpo_error_clear(&err);
    hpo_storage_settle(svc->storage);
    s->sampler_stale = svc->reader == NULL ||
            hpo_storage_read_state(svc->reader, s->id, &blob, &len, &err) < 0 ||
            blob == NULL || s->sampler_type->load(s->sampler, blob, len) < 0;
    free(blob);
}

/* Before a call that changes the sampler: 0, or -EIO (unavailable) while it is stale. */
int hpo__sampler_ready(struct hpo_service *svc, struct study *s, struct hpo_error *err)
{
    if (s->sampler_stale) {
        hpo__sampler_rollback(svc, s);
    }
    if (s->sampler_stale) {
        return hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL,
                "the sampler state of study '%s' could not be read back from storage", s->name);
    }
    return 0;
}

/*
** After a successful commit that carried a state (`blob`, or pieces when
** *blob is NULL and len > 0): keep it as the last committed state, unless it
** is big, when only storage keeps it. The older buffer is kept for the next
** save() to write into.
*/
void hpo__sampler_committed(struct hpo_service *svc, struct study *s, void **blob, size_t len)
{
    bool on_disk = len >= HPO__STATE_KEEP_MAX && svc->reader != NULL;

    if (*blob == NULL && len == 0) {
        return; /* this write carried no state */
    }
    free(s->spare_blob);
    if (on_disk) {
        free(s->state_blob);
        s->state_blob = NULL;
        s->state_len = s->state_cap = 0;
        s->spare_blob = *blob;
        s->spare_cap = *blob != NULL ? len : 0;
    } else {
        s->spare_blob = s->state_blob;
        s->spare_cap = s->state_cap;
        s->state_blob = *blob;
        s->state_len = s->state_cap = len;
    }
    s->state_on_disk = on_disk;
    *blob = NULL;
}


void hpo__undo_all(struct hpo_service *svc, struct study *s, struct hpo_trial_undo *undo,
        size_t n, bool sampler)
{
    if (sampler) {
        hpo__sampler_rollback(svc, s);
    }
    for (size_t i = n; i > 0; i--) {
        hpo_trial_undo_restore(&undo[i - 1], &s->history);
    }
}

/* A trial was created or changed state: derived indexes, sampler and pruner caches. */
void hpo__trial_changed(struct study *s, struct hpo_trial *t)
{
    hpo__study_note_state(s, t);
    if (s->sampler_type->observe) {
        s->sampler_type->observe(s->sampler, &s->history, (size_t)t->number);
    }
    if (s->pruner_type->observe) {
        s->pruner_type->observe(s->pruner, &s->history, (size_t)t->number, -1);
    }
}
