/*
** service.c: the study registry, loading from storage, and every API
** operation on studies and trials.
**
** Each mutating operation changes the in-memory study under its lock,
** writes the change through storage (blocking until the group commit), and
** undoes the in-memory change if the write failed, so a failed request
** changes nothing.
*/
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/jsonw.h"
#include "../core/rng.h"
#include "../storage/reader.h"
#include "../storage/storage.h"
#include "service.h"
#include "study.h"

struct hpo_service {
    struct hpo_storage *storage;
    struct hpo_storage_reader *reader; /* NULL: vectors always stay in memory */
    struct hpo_service_options opt;
    pthread_rwlock_t registry_lock; /* guards studies/n_studies */
    pthread_mutex_t create_lock;    /* serializes study create and delete */
    struct study **studies;         /* sorted by name */
    size_t n_studies, cap_studies;
    int64_t next_study_id;
};

#define FAIL(field, ...) hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, __VA_ARGS__)

int64_t hpo_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted). */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static char *put_digits(char *p, int v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

void hpo_format_time(int64_t ms, char *buf, size_t len)
{
    /* Hand-rolled: this runs four times per trial in every reply. */
    int64_t secs = ms / 1000, days = secs / 86400, rem = secs % 86400;
    int y, mo, d;
    char *p = buf;

    if (len < 25 || ms < 0) {
        if (len > 0) {
            buf[0] = '\0';
        }
        return;
    }
    civil_from_days(days, &y, &mo, &d);
    p = put_digits(p, y, 4);
    *p++ = '-';
    p = put_digits(p, mo, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, (int)(rem / 3600), 2);
    *p++ = ':';
    p = put_digits(p, (int)(rem / 60 % 60), 2);
    *p++ = ':';
    p = put_digits(p, (int)(rem % 60), 2);
    *p++ = '.';
    p = put_digits(p, (int)(ms % 1000), 3);
    *p++ = 'Z';
    *p = '\0';
}

/* ---- registry ---------------------------------------------------------- */

static long registry_index(struct hpo_service *svc, const char *name, bool *ret_found)
{
    size_t lo = 0, hi = svc->n_studies;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(svc->studies[mid]->name, name);
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *ret_found = lo < svc->n_studies && strcmp(svc->studies[lo]->name, name) == 0;
    return (long)lo;
}

static int registry_insert(struct hpo_service *svc, struct study *s)
{
    bool found;
    long at;

    pthread_rwlock_wrlock(&svc->registry_lock);
    if (svc->n_studies == svc->cap_studies) {
        size_t cap = svc->cap_studies ? svc->cap_studies * 2 : 16;
        struct study **n = realloc(svc->studies, cap * sizeof(*n));
        if (n == NULL) {
            pthread_rwlock_unlock(&svc->registry_lock);
            return -ENOMEM;
        }
        svc->studies = n;
        svc->cap_studies = cap;
    }
    at = registry_index(svc, s->name, &found);
    memmove(&svc->studies[at + 1], &svc->studies[at],
            (svc->n_studies - (size_t)at) * sizeof(*svc->studies));
    svc->studies[at] = s;
    svc->n_studies++;
    pthread_rwlock_unlock(&svc->registry_lock);
    return 0;
}

static void study_unref(struct study *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) {
        study_free(s);
    }
}

static void registry_remove(struct hpo_service *svc, struct study *s)
{
    bool found;
    long at;

    pthread_rwlock_wrlock(&svc->registry_lock);
    at = registry_index(svc, s->name, &found);
    if (found && svc->studies[at] == s) {
        memmove(&svc->studies[at], &svc->studies[at + 1],
                (svc->n_studies - (size_t)at - 1) * sizeof(*svc->studies));
        svc->n_studies--;
    }
    pthread_rwlock_unlock(&svc->registry_lock);
    study_unref(s);
}

/* A new reference to the study named `name`, or NULL. */
static struct study *study_get(struct hpo_service *svc, const char *name)
{
    struct study *s = NULL;
    bool found;
    long at;

    pthread_rwlock_rdlock(&svc->registry_lock);
    at = registry_index(svc, name, &found);
    if (found) {
        s = svc->studies[at];
        atomic_fetch_add(&s->refs, 1);
    }
    pthread_rwlock_unlock(&svc->registry_lock);
    return s;
}

/* Look up and lock a study; on failure fill req with not_found. */
static struct study *study_acquire(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct study *s = study_get(svc, req->study);

    if (s != NULL) {
        pthread_mutex_lock(&s->lock);
        if (!s->deleted) {
            return s;
        }
        pthread_mutex_unlock(&s->lock);
        study_unref(s);
    }
    hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL, "no study named '%.128s'", req->study);
    return NULL;
}

static void study_release(struct study *s)
{
    pthread_mutex_unlock(&s->lock);
    study_unref(s);
}

/* ---- writes ------------------------------------------------------------ */

struct opbuf {
    struct hpo_op *ops;
    size_t n, cap;
    char **texts; /* strings to free after the write */
    size_t n_texts, cap_texts;
};

static struct hpo_op *op_add(struct opbuf *b, enum hpo_op_kind kind, int64_t study_id)
{
    struct hpo_op *op;

    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        struct hpo_op *n = realloc(b->ops, cap * sizeof(*n));
        if (n == NULL) {
            abort();
        }
        b->ops = n;
        b->cap = cap;
    }
    op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->study_id = study_id;
    return op;
}

static const char *op_keep(struct opbuf *b, char *text)
{
    if (text == NULL) {
        abort();
    }
    if (b->n_texts == b->cap_texts) {
        size_t cap = b->cap_texts ? b->cap_texts * 2 : 8;
        char **n = realloc(b->texts, cap * sizeof(*n));
        if (n == NULL) {
            abort();
        }
        b->texts = n;
        b->cap_texts = cap;
    }
    b->texts[b->n_texts++] = text;
    return text;
}

static void opbuf_free(struct opbuf *b)
{
    for (size_t i = 0; i < b->n_texts; i++) {
        free(b->texts[i]);
    }
    free(b->texts);
    free(b->ops);
}

static void op_trial(struct opbuf *b, const struct study *s, const struct hpo_trial *t)
{
    struct hpo_op *op = op_add(b, HPO_OP_TRIAL_PUT, s->id);

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
}

static void op_params(struct opbuf *b, const struct study *s, const struct hpo_trial *t)
{
    for (size_t i = 0; i < s->space->n_params; i++) {
        const struct hpo_param *p = &s->space->params[i];
        struct hpo_op *op;
        if (isnan(t->values[p->offset])) {
            continue;
        }
        /* A shared vector is stored once: later trials store the number of the trial holding it. */
        if (p->size && t->shares >= 0) {
            op = op_add(b, HPO_OP_PARAM_PUT, s->id);
            op->number = t->number;
            op->index = (int64_t)i;
            op->value = (double)t->shares;
            continue;
        }
        op = op_add(b, p->size ? HPO_OP_PARAM_VECTOR : HPO_OP_PARAM_PUT, s->id);
        op->number = t->number;
        op->index = (int64_t)i;
        op->value = t->values[p->offset];
        if (p->size) {
            op->vector = &t->values[p->offset];
            op->len = p->size;
        }
    }
}

static void op_attrs(struct opbuf *b, const struct study *s, const struct hpo_trial *t,
        const json_t *attrs)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)attrs, key, v) {
        struct hpo_op *op = op_add(b, HPO_OP_ATTR_PUT, s->id);
        op->number = t->number;
        op->name = key;
        op->text = op_keep(b, json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT));
    }
}

/*
** Sampler states of STATE_KEEP_MAX bytes or more are written from the
** sampler's own memory (save_parts) and not kept in memory for rollback (for
** a 10^6-element gradient study that copy is three vectors): storage has
** them, and sampler_rollback() reads the committed one back.
*/
#define STATE_KEEP_MAX ((size_t)1 << 20)

/*
** Sampler state saved into the write, when the sampler has any. A big state
** of a sampler with save_parts goes as pieces of its own memory (*blob NULL,
** *len its size); others are saved into *blob (malloc'd, *len bytes).
*/
static void op_sampler_state(struct hpo_service *svc, struct opbuf *b, struct study *s,
        void **blob, size_t *len)
{
    struct hpo_op *op;

    *blob = NULL;
    *len = 0;
    if (s->sampler_type->save_parts != NULL && svc->reader != NULL) {
        struct hpo_save_part parts[HPO_SAVE_PARTS];
        int n = s->sampler_type->save_parts(s->sampler, parts);
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            s->state_parts[i] = (struct hpo_part){ parts[i].data, parts[i].len };
            total += parts[i].len;
        }
        if (n > 0 && total >= STATE_KEEP_MAX) {
            op = op_add(b, HPO_OP_SAMPLER_STATE, s->id);
            op->parts = s->state_parts;
            op->n_parts = (size_t)n;
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
    op = op_add(b, HPO_OP_SAMPLER_STATE, s->id);
    op->blob = *blob;
    op->len = *len;
}

static int commit(struct hpo_service *svc, struct opbuf *b, struct hpo_error *err)
{
    struct hpo_write w = { .ops = b->ops, .n_ops = b->n };

    if (b->n == 0) {
        return 0;
    }
    return hpo_storage_write(svc->storage, &w, err);
}

/*
** Rolling back a stateful sampler after a failed write or sampler call: load
** the last committed (or initial) state again, from the copy the study keeps
** or from storage. If storage cannot give it, the sampler is marked stale
** and its study's asks and tells answer `unavailable` until a retry reads it.
*/
static void sampler_rollback(struct hpo_service *svc, struct study *s)
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
    s->sampler_stale = svc->reader == NULL ||
            hpo_storage_read_state(svc->reader, s->id, &blob, &len, &err) < 0 ||
            blob == NULL || s->sampler_type->load(s->sampler, blob, len) < 0;
    free(blob);
}

/* Before a call that changes the sampler: 0, or -EIO (unavailable) while it is stale. */
static int sampler_ready(struct hpo_service *svc, struct study *s, struct hpo_error *err)
{
    if (s->sampler_stale) {
        sampler_rollback(svc, s);
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
static void sampler_committed(struct hpo_service *svc, struct study *s, void **blob, size_t len)
{
    bool on_disk = len >= STATE_KEEP_MAX && svc->reader != NULL;

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

/* Whether finished trial t's vectors may leave memory now. */
static bool evictable_trial(struct hpo_service *svc, struct study *s, size_t k)
{
    const struct hpo_trial *t = s->history.trials[k];

    if (svc->reader == NULL || !s->evictable || t->thin || t->state == HPO_STATE_RUNNING ||
            t->state == HPO_STATE_WAITING) {
        return false;
    }
    return s->sampler_type->retains == NULL ||
            !s->sampler_type->retains(s->sampler, &s->history, k);
}

/*
** Drop the vectors of finished trials near `around` from memory: storage
** has them, and GET .../params reads them back. Keeps a long vector study's
** memory to the vectors of its unfinished trials.
*/
static void evict_vectors(struct hpo_service *svc, struct study *s, size_t around)
{
    size_t lo = around > 32 ? around - 32 : 0;
    size_t hi = around + 32 < s->history.n_trials ? around + 32 : s->history.n_trials - 1;

    if (svc->reader == NULL || !s->evictable) {
        return;
    }
    for (size_t k = lo; k <= hi; k++) {
        if (evictable_trial(svc, s, k)) {
            (void)hpo_trial_make_thin(s->history.trials[k], s->space);
        }
    }
}

/*
** retain_vectors: keep the stored vectors of the newest N versions (trials
** that hold their own vectors rather than sharing an earlier trial's), of
** the best trial, and of every unfinished trial; delete the others. Only for
** studies whose vectors all leave memory (evictable): their finished trials
** are read back from storage, where a dropped vector answers not_found.
** Garbage collection: a failed delete is retried at the next new version.
*/
static void retain_vectors(struct hpo_service *svc, struct study *s)
{
    struct hpo_history *h = &s->history;
    struct opbuf b = { 0 };
    struct hpo_error err;
    bool *keep;
    int64_t kept = 0;

    if (s->retain_vectors <= 0 || !s->evictable || svc->reader == NULL) {
        return;
    }
    keep = calloc(h->n_trials ? h->n_trials : 1, sizeof(*keep));
    if (keep == NULL) {
        return;
    }
    for (size_t i = 0; i < h->n_trials; i++) {
        const struct hpo_trial *t = h->trials[i];
        bool open = t->state == HPO_STATE_RUNNING || t->state == HPO_STATE_WAITING;
        if (open || (long)i == s->best) {
            keep[t->shares >= 0 ? t->shares : t->number] = true;
        }
    }
    for (size_t i = h->n_trials; i > 0; i--) {
        struct hpo_trial *t = h->trials[i - 1];
        if (t->shares >= 0 || t->dropped) {
            continue;
        }
        if (kept < s->retain_vectors) {
            kept++;
            continue;
        }
        if (keep[i - 1] || !t->thin) {
            continue;
        }
        for (size_t k = 0; k < s->space->n_params; k++) {
            if (s->space->params[k].size > 0) {
                struct hpo_op *op = op_add(&b, HPO_OP_PARAM_DELETE, s->id);
                op->number = t->number;
                op->index = (int64_t)k;
            }
        }
        t->dropped = true;
    }
    if (commit(svc, &b, &err) < 0) {
        for (size_t i = 0; i < b.n; i++) {
            h->trials[b.ops[i].number]->dropped = false;
        }
    }
    opbuf_free(&b);
    free(keep);
}

/* A trial was created or changed state: derived indexes, sampler and pruner caches. */
static void trial_changed(struct study *s, struct hpo_trial *t)
{
    study_note_state(s, t);
    if (s->sampler_type->observe) {
        s->sampler_type->observe(s->sampler, &s->history, (size_t)t->number);
    }
    if (s->pruner_type->observe) {
        s->pruner_type->observe(s->pruner, &s->history, (size_t)t->number, -1);
    }
}

/* ---- loading ----------------------------------------------------------- */

struct loader {
    struct hpo_service *svc;
    struct study *cur; /* the study rows are being read for */
    struct study **by_id;
    size_t n_by_id;
};

static struct study *loader_study(struct loader *L, int64_t id)
{
    if (L->cur && L->cur->id == id) {
        return L->cur;
    }
    L->cur = NULL;
    for (size_t i = 0; i < L->n_by_id; i++) {
        if (L->by_id[i]->id == id) {
            L->cur = L->by_id[i];
        }
    }
    return L->cur;
}

static int load_study(void *ctx, int64_t id, const char *name, const char *spec,
        int64_t created_at, const void *state, size_t state_len)
{
    struct loader *L = ctx;
    struct hpo_error err;
    json_error_t jerr;
    json_t *body = json_loads(spec, 0, &jerr);
    struct study *s = NULL;
    struct study **n;
    int r;

    if (body == NULL) {
        return -EINVAL;
    }
    r = study_build(body, NULL, &s, &err);
    json_decref(body);
    if (r < 0) {
        return r;
    }
    s->id = id;
    s->created_at = created_at;
    if (state != NULL && s->sampler_type->load != NULL &&
            s->sampler_type->load(s->sampler, state, state_len) == 0) {
        free(s->state_blob);
        s->state_blob = NULL;
        s->state_on_disk = state_len >= STATE_KEEP_MAX && L->svc->reader != NULL;
        if (!s->state_on_disk) {
            s->state_blob = malloc(state_len ? state_len : 1);
        }
        if (s->state_blob != NULL) {
            memcpy(s->state_blob, state, state_len);
            s->state_len = state_len;
            s->state_cap = state_len;
        }
    }
    n = realloc(L->by_id, (L->n_by_id + 1) * sizeof(*n));
    if (n == NULL) {
        study_free(s);
        return -ENOMEM;
    }
    L->by_id = n;
    L->by_id[L->n_by_id++] = s;
    if (id >= L->svc->next_study_id) {
        L->svc->next_study_id = id + 1;
    }
    return registry_insert(L->svc, s);
}

static struct hpo_trial *loader_trial(struct loader *L, int64_t study_id, int64_t number)
{
    struct study *s = loader_study(L, study_id);

    if (s == NULL || number < 0 || (size_t)number >= s->history.n_trials) {
        return NULL;
    }
    return s->history.trials[number];
}

static int load_trial(void *ctx, int64_t study_id, int64_t number,
        const struct hpo_trial_row *row)
{
    struct loader *L = ctx;
    struct study *s = loader_study(L, study_id);
    struct hpo_trial *t;

    if (s == NULL) {
        return 0;
    }
    /* Numbers are dense from 0; fill any gap (never expected) with failed trials. */
    while ((int64_t)s->history.n_trials <= number) {
        t = hpo_history_append(&s->history, HPO_STATE_FAILED);
        if (t == NULL) {
            return -ENOMEM;
        }
    }
    t = s->history.trials[number];
    hpo_history_set_state(&s->history, t, (enum hpo_state)row->state);
    t->value = row->value;
    t->worker = row->worker ? strdup(row->worker) : NULL;
    t->retry_of = row->retry_of;
    t->retries = row->retries;
    t->created_at = row->created_at;
    t->started_at = row->started_at;
    t->completed_at = row->completed_at;
    t->heartbeat_at = row->heartbeat_at;
    return 0;
}

static int load_param(void *ctx, int64_t study_id, int64_t number, int64_t index, double value,
        const double *vector, size_t len)
{
    struct loader *L = ctx;
    struct hpo_trial *t = loader_trial(L, study_id, number);
    struct study *s = L->cur;
    const struct hpo_param *p;

    if (t == NULL || index < 0 || (size_t)index >= s->space->n_params) {
        return 0;
    }
    p = &s->space->params[index];
    if (p->size == 0) {
        t->values[p->offset] = value; /* scalars come first: thin or not, they fit */
        return 0;
    }
    if (t->thin) {
        return 0;
    }
    /* A finished trial's vectors never enter memory (read back on demand). */
    if (evictable_trial(L->svc, s, (size_t)number)) {
        return hpo_trial_make_thin(t, s->space);
    }
    if (vector == NULL) {
        /* A reference to the earlier trial that holds this vector. */
        int64_t ref = (int64_t)value;
        struct hpo_trial *src;
        struct hpo_error err;
        if (ref < 0 || ref >= number) {
            return 0;
        }
        src = s->history.trials[ref];
        if (!src->thin) {
            hpo_trial_share_point(t, src);
            return 0;
        }
        return hpo_storage_read_vector(L->svc->reader, study_id, ref, index,
                &t->values[p->offset], p->size, &err);
    }
    if (len == p->size) {
        memcpy(&t->values[p->offset], vector, len * sizeof(double));
    }
    return 0;
}

static int load_report(void *ctx, int64_t study_id, int64_t number, int64_t step, double value)
{
    struct loader *L = ctx;
    struct hpo_trial *t = loader_trial(L, study_id, number);

    return t ? hpo_trial_add_report(t, step, value, NULL) : 0;
}

static int load_attr(void *ctx, int64_t study_id, int64_t number, const char *key,
        const char *json)
{
    struct loader *L = ctx;
    struct hpo_trial *t = loader_trial(L, study_id, number);
    json_error_t jerr;
    json_t *v;

    if (t == NULL) {
        return 0;
    }
    v = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (v != NULL) {
        json_object_set_new(hpo_trial_attrs(t), key, v);
    }
    return 0;
}

static void finish_loaded(struct study *s)
{
    for (size_t i = 0; i < s->history.n_trials; i++) {
        struct hpo_trial *t = s->history.trials[i];
        if (t->thin) {
            for (size_t j = 0; j < s->space->n_params; j++) {
                const struct hpo_param *p = &s->space->params[j];
                if (p->size == 0) {
                    t->unit[p->offset] = hpo_param_to_unit(p, t->values[p->offset]);
                }
            }
        } else if (t->shares < 0) {
            hpo_space_encode(s->space, t->values, t->unit);
        }
    }
    study_reindex(s);
    for (size_t i = 0; i < s->history.n_trials; i++) {
        if (s->sampler_type->observe) {
            s->sampler_type->observe(s->sampler, &s->history, i);
        }
        if (s->pruner_type->observe) {
            s->pruner_type->observe(s->pruner, &s->history, i, -1);
        }
    }
}

int hpo_service_create(struct hpo_storage *storage, const struct hpo_service_options *opt,
        struct hpo_service **ret_service, struct hpo_error *err)
{
    static const struct hpo_load_callbacks cb = {
        .study = load_study,
        .trial = load_trial,
        .param = load_param,
        .report = load_report,
        .attr = load_attr,
    };
    struct hpo_service *svc = calloc(1, sizeof(*svc));
    struct loader L = { 0 };
    int r;

    if (svc == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    svc->storage = storage;
    if (opt) {
        svc->opt = *opt;
    }
    svc->next_study_id = 1;
    if (svc->opt.db_path != NULL) {
        svc->reader = hpo_storage_reader_create(svc->opt.db_path);
    }
    pthread_rwlock_init(&svc->registry_lock, NULL);
    pthread_mutex_init(&svc->create_lock, NULL);
    L.svc = svc;
    r = hpo_storage_load(storage, &cb, &L, err);
    if (r < 0) {
        free(L.by_id);
        hpo_service_destroy(svc);
        return r;
    }
    for (size_t i = 0; i < L.n_by_id; i++) {
        finish_loaded(L.by_id[i]);
    }
    free(L.by_id);
    r = hpo_storage_start(storage);
    if (r < 0) {
        hpo_service_destroy(svc);
        return hpo_error_set(err, r, HPO_INTERNAL, NULL, "cannot start the storage writer");
    }
    *ret_service = svc;
    return 0;
}

void hpo_service_destroy(struct hpo_service *svc)
{
    if (svc == NULL) {
        return;
    }
    for (size_t i = 0; i < svc->n_studies; i++) {
        study_unref(svc->studies[i]);
    }
    free(svc->studies);
    hpo_storage_reader_destroy(svc->reader);
    pthread_rwlock_destroy(&svc->registry_lock);
    pthread_mutex_destroy(&svc->create_lock);
    free(svc);
    hpo_point_cache_clear();
}

/* ---- operations -------------------------------------------------------- */

static int check_keys(const json_t *body, const char *const *allowed, struct hpo_error *err)
{
    const char *key;
    json_t *v;

    if (body == NULL) {
        return 0;
    }
    json_object_foreach((json_t *)body, key, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++) {
            ok = ok || strcmp(allowed[i], key) == 0;
        }
        if (!ok) {
            char field[130];
            snprintf(field, sizeof(field), "%.128s", key);
            return FAIL(field, "unknown field '%s'", field);
        }
    }
    return 0;
}

static void reply(struct hpo_svc_request *req, int status, json_t *body)
{
    req->status = status;
    req->reply = body;
}

/*
** Where two JSON values first differ, as a field path ("params[1].high",
** "sampler.seed") appended to `path` (of `len` bytes, holding `at` already);
** sets *ret_a and *ret_b to the two values there (NULL: absent on that side).
** Objects are walked in `a`'s key order, then `b`'s extra keys; arrays of
** the same length element by element; anything else differs as a whole.
*/
static void json_diff(const json_t *a, const json_t *b, char *path, size_t len, size_t at,
        const json_t **ret_a, const json_t **ret_b)
{
    const char *key;
    json_t *v;

    *ret_a = a;
    *ret_b = b;
    if (json_is_object(a) && json_is_object(b)) {
        const json_t *objs[2] = { a, b };
        for (size_t side = 0; side < 2; side++) {
            json_object_foreach((json_t *)objs[side], key, v) {
                const json_t *other = json_object_get(objs[1 - side], key);
                if (other == NULL || !json_equal(v, (json_t *)other)) {
                    snprintf(path + at, len - at, "%s%s", at > 0 ? "." : "", key);
                    at += strlen(path + at);
                    if (side == 0) {
                        json_diff(v, other, path, len, at, ret_a, ret_b);
                    } else {
                        *ret_a = NULL;
                        *ret_b = v;
                    }
                    return;
                }
            }
        }
    } else if (json_is_array(a) && json_is_array(b) && json_array_size(a) == json_array_size(b)) {
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (!json_equal(json_array_get(a, i), json_array_get(b, i))) {
                snprintf(path + at, len - at, "[%zu]", i);
                at += strlen(path + at);
                json_diff(json_array_get(a, i), json_array_get(b, i), path, len, at, ret_a,
                        ret_b);
                return;
            }
        }
    }
}

/* A JSON value for a message, cut to `len` - 1 bytes ("absent" for NULL, its length for arrays). */
static void json_brief(const json_t *v, char *buf, size_t len)
{
    char *text = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

    if (json_is_array(v)) {
        free(text);
        snprintf(buf, len, "%zu entr%s", json_array_size(v), json_array_size(v) == 1 ? "y" : "ies");
        return;
    }
    snprintf(buf, len, "%s", v == NULL ? "absent" : text != NULL ? text : "?");
    if (text != NULL && strlen(text) >= len && len > 4) {
        memcpy(buf + len - 4, "...", 4);
    }
    free(text);
}

/* 409 naming the first field where a create differs from the stored study. */
static void create_conflict(const struct study *old, const struct study *s, struct hpo_error *err)
{
    char path[sizeof(err->field)] = "", was[48], now[48];
    const json_t *a, *b;

    json_t *ca = json_copy(old->definition), *cb = json_copy(s->definition);

    if (ca == NULL || cb == NULL) {
        abort();
    }
    /* user_attrs are not part of the identity (same_identity). */
    json_object_del(ca, "user_attrs");
    json_object_del(cb, "user_attrs");
    json_diff(ca, cb, path, sizeof(path), 0, &a, &b);
    json_brief(a, was, sizeof(was));
    json_brief(b, now, sizeof(now));
    hpo_error_set(err, -EEXIST, HPO_CONFLICT, path[0] != '\0' ? path : "name",
            "study '%s' exists with another definition: %s is %s there, %s here", old->name,
            path[0] != '\0' ? path : "the definition", was, now);
    json_decref(ca);
    json_decref(cb);
}

/*
** Whether a create matches the existing study: the normalized definitions
** are equal, user_attrs left out (they change after creation with PATCH).
*/
static bool same_identity(const json_t *a, const json_t *b)
{
    json_t *ca = json_copy((json_t *)a), *cb = json_copy((json_t *)b);
    bool same;

    if (ca == NULL || cb == NULL) {
        abort();
    }
    json_object_del(ca, "user_attrs");
    json_object_del(cb, "user_attrs");
    same = json_equal(ca, cb);
    json_decref(ca);
    json_decref(cb);
    return same;
}

static void op_study_create(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct hpo_error *err = &req->err;
    struct study *s = NULL, *old;
    struct opbuf b = { 0 };
    const json_t *name;
    uint64_t seed;
    char *spec;
    int r;

    if (req->body == NULL) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "name", "name is required");
        return;
    }
    name = json_object_get(req->body, "name");
    if (json_is_string(name) && (strcmp(json_string_value(name), ".") == 0 ||
                                        strcmp(json_string_value(name), "..") == 0)) {
        /* Valid characters, but a path segment "." or ".." is resolved away by clients. */
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "name",
                "name must not be '.' or '..' (clients cannot address them in a URL)");
        return;
    }
    pthread_mutex_lock(&svc->create_lock);
    old = json_is_string(name) ? study_get(svc, json_string_value(name)) : NULL;
    if (old != NULL) {
        seed = old->seed;
    }
    r = study_build(req->body, old ? &seed : NULL, &s, err);
    if (r < 0) {
        goto out;
    }
    if (old != NULL) {
        pthread_mutex_lock(&old->lock);
        if (same_identity(old->definition, s->definition)) {
            reply(req, 200, study_to_json(old, true));
        } else {
            create_conflict(old, s, err);
        }
        pthread_mutex_unlock(&old->lock);
        goto out;
    }
    s->id = svc->next_study_id;
    s->created_at = hpo_now_ms();
    spec = json_dumps(s->definition, JSON_COMPACT);
    {
        struct hpo_op *op = op_add(&b, HPO_OP_STUDY_PUT, s->id);
        op->name = s->name;
        op->text = op_keep(&b, spec);
        op->i[0] = s->created_at;
    }
    r = commit(svc, &b, err);
    if (r < 0) {
        goto out;
    }
    svc->next_study_id++;
    if (registry_insert(svc, s) < 0) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    reply(req, 201, study_to_json(s, true));
    s = NULL;
out:
    pthread_mutex_unlock(&svc->create_lock);
    opbuf_free(&b);
    study_free(s);
    study_unref(old);
}

static void op_study_list(struct hpo_service *svc, struct hpo_svc_request *req)
{
    json_t *arr = json_array();
    struct study **snap;
    size_t n;

    pthread_rwlock_rdlock(&svc->registry_lock);
    n = svc->n_studies;
    snap = malloc((n ? n : 1) * sizeof(*snap));
    if (snap == NULL) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        snap[i] = svc->studies[i];
        atomic_fetch_add(&snap[i]->refs, 1);
    }
    pthread_rwlock_unlock(&svc->registry_lock);
    for (size_t i = 0; i < n; i++) {
        json_t *sum = study_read_summary(snap[i], false);
        if (sum != NULL) {
            json_array_append_new(arr, sum);
        }
        study_unref(snap[i]);
    }
    free(snap);
    reply(req, 200, json_pack("{s:o}", "studies", arr));
}

static void op_study_get(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct study *s = study_get(svc, req->study);
    json_t *sum = s ? study_read_summary(s, true) : NULL;

    if (sum == NULL) {
        hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL, "no study named '%.128s'",
                req->study);
    } else {
        reply(req, 200, sum);
    }
    study_unref(s);
}

static void op_study_delete(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct opbuf b = { 0 };
    struct study *s;

    pthread_mutex_lock(&svc->create_lock);
    s = study_acquire(svc, req);
    if (s == NULL) {
        pthread_mutex_unlock(&svc->create_lock);
        return;
    }
    op_add(&b, HPO_OP_STUDY_DELETE, s->id);
    if (commit(svc, &b, &req->err) == 0) {
        s->deleted = true;
        pthread_mutex_lock(&s->cache_lock);
        s->summary_valid = false;
        pthread_mutex_unlock(&s->cache_lock);
        req->status = 204;
    }
    pthread_mutex_unlock(&s->lock);
    if (s->deleted) {
        registry_remove(svc, s);
    }
    study_unref(s);
    pthread_mutex_unlock(&svc->create_lock);
    opbuf_free(&b);
    if (req->status == 204) {
        /* A study's big vectors go back to the system now, not at the next ask. */
        hpo_point_cache_clear();
        (void)malloc_trim(0);
    }
}

static struct hpo_trial *trial_lookup(struct study *s, struct hpo_svc_request *req)
{
    if (req->number < 0 || (size_t)req->number >= s->history.n_trials) {
        hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL, "study '%s' has no trial %lld",
                s->name, (long long)req->number);
        return NULL;
    }
    return s->history.trials[req->number];
}

static int read_worker(const json_t *body, const char **ret, struct hpo_error *err)
{
    json_t *w = body ? json_object_get(body, "worker") : NULL;

    *ret = NULL;
    if (w == NULL || json_is_null(w)) {
        return 0;
    }
    if (!json_is_string(w) || strlen(json_string_value(w)) > 256) {
        return FAIL("worker", "worker must be a string of at most 256 bytes");
    }
    *ret = json_string_value(w);
    return 0;
}

/*
** Fill the params of `out` (values form, NaN = missing) from a sampler
** suggestion where `fixed` has no value, honouring `when` in order.
*/
static void merge_suggestion(const struct hpo_space *space, const double *fixed, double *unit,
        double *out)
{
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        bool active = hpo_space_active(space, i, out);
        if (!active) {
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                out[j] = NAN;
            }
        } else if (fixed != NULL && !isnan(fixed[p->offset])) {
            memcpy(&out[p->offset], &fixed[p->offset], p->width * sizeof(double));
        } else {
            hpo_param_from_unit_n(p, &unit[p->offset], &out[p->offset], p->width);
        }
        /*
        ** Canonical unit coordinates for scalars; a vector keeps the sampler's
        ** own (no sampler models vectors' unit history, and 10^6 logs cost).
        */
        if (p->size == 0 || !active || (fixed != NULL && !isnan(fixed[p->offset]))) {
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                unit[j] = hpo_param_to_unit(p, out[j]);
            }
        }
    }
}

static bool needs_sampler(const struct hpo_space *space, const double *values)
{
    for (size_t i = 0; i < space->n_params; i++) {
        if (hpo_space_active(space, i, values) && isnan(values[space->params[i].offset])) {
            return true;
        }
    }
    return false;
}

static int run_sampler(struct hpo_service *svc, struct study *s, int64_t number, double *unit,
        struct hpo_error *err)
{
    struct hpo_rng rng;
    int r;

    /* Readers of the summary use the cache instead of waiting for the sampler. */
    pthread_mutex_lock(&s->cache_lock);
    r = s->summary_valid;
    pthread_mutex_unlock(&s->cache_lock);
    if (!r) {
        study_cache_summary(s);
    }

    if (svc->opt.suggest_delay_ms > 0) {
        usleep(svc->opt.suggest_delay_ms * 1000u);
    }
    hpo_rng_init(&rng, s->seed, (uint64_t)number);
    r = s->sampler_type->suggest(s->sampler, s->space, &s->history, &rng, unit, err);
    if (r < 0 && err->code == HPO_OK) {
        hpo_error_set(err, r, HPO_INTERNAL, NULL, "sampler '%s' failed", s->sampler_type->name);
    }
    return r;
}

static struct hpo_trial *oldest_waiting(struct study *s)
{
    if (s->history.count[HPO_STATE_WAITING] == 0) {
        return NULL;
    }
    while (s->waiting_cursor < s->history.n_trials &&
            s->history.trials[s->waiting_cursor]->state != HPO_STATE_WAITING) {
        s->waiting_cursor++;
    }
    return s->waiting_cursor < s->history.n_trials ? s->history.trials[s->waiting_cursor] : NULL;
}

/* The error of a request refused by the vector memory's cap (--max-vector-memory). */
static void vector_memory_full(struct hpo_error *err)
{
    hpo_error_set(err, -ENOBUFS, HPO_UNAVAILABLE, NULL,
            "vector memory is at its cap (%llu of %llu bytes held; max-vector-memory); "
            "retry once trials finish",
            (unsigned long long)hpo_vector_memory_used(),
            (unsigned long long)hpo_vector_memory_cap());
}

static void op_ask(struct hpo_service *svc, struct hpo_svc_request *req)
{
    static const char *const allowed[] = { "worker", NULL };
    struct hpo_error *err = &req->err;
    struct opbuf b = { 0 };
    struct hpo_trial *t;
    const char *worker;
    char *old_worker = NULL;
    struct hpo_point *old_point = NULL;
    int64_t old_shares = -1;
    int64_t old_started = 0, old_heartbeat = 0;
    struct hpo_point *point = NULL; /* a new trial's, until the trial owns it */
    double *unit = NULL, *merged = NULL;
    void *blob = NULL;
    size_t blob_len = 0;
    bool fresh = false, sample;
    int64_t now = hpo_now_ms();
    struct study *s;

    if (check_keys(req->body, allowed, err) < 0 || read_worker(req->body, &worker, err) < 0) {
        return;
    }
    s = study_acquire(svc, req);
    if (s == NULL) {
        return;
    }
    req->sampler = s->sampler_type->name;
    if (sampler_ready(svc, s, err) < 0) {
        goto out;
    }
    t = oldest_waiting(s);
    if (t == NULL && s->max_trials >= 0 &&
            (int64_t)(s->history.n_trials - s->history.count[HPO_STATE_FAILED]) >= s->max_trials) {
        hpo_error_set(err, -ENOSPC, HPO_EXHAUSTED, NULL, "study '%s' reached max_trials %lld",
                s->name, (long long)s->max_trials);
        goto out;
    }
    if (t == NULL) {
        /* A new trial: the sampler writes straight into the point the trial will own. */
        point = hpo_point_new_bounded(s->space->dim);
        if (point == NULL && errno == ENOBUFS) {
            vector_memory_full(err);
            goto out;
        }
        unit = point ? point->data + s->space->dim : NULL;
        merged = point ? point->data : NULL;
    } else {
        unit = malloc((s->space->dim ? s->space->dim : 1) * sizeof(double));
        merged = malloc((s->space->dim ? s->space->dim : 1) * sizeof(double));
    }
    if (unit == NULL || merged == NULL) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    sample = t == NULL || needs_sampler(s->space, t->values);
    if (sample) {
        int64_t number = t ? t->number : (int64_t)s->history.n_trials;
        if (run_sampler(svc, s, number, unit, err) < 0) {
            sampler_rollback(svc, s);
            goto out;
        }
        merge_suggestion(s->space, t ? t->values : NULL, unit, merged);
    }
    if (t == NULL) {
        t = hpo_history_append_point(&s->history, HPO_STATE_RUNNING, point);
        if (t == NULL) {
            sampler_rollback(svc, s);
            hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        point = NULL;
        unit = NULL;
        merged = NULL;
        fresh = true;
        t->created_at = now;
        if (s->space->has_vectors) {
            /* Trials of one optimizer version share one copy of their vectors. */
            (void)hpo_history_dedupe(&s->history, t, 8);
        }
    } else {
        if (sample) {
            /* The merged point replaces the partial one; keep the old to roll back. */
            old_point = t->point;
            old_point->refs++;
            old_shares = t->shares;
            if (hpo_trial_own_point(t, s->space->dim) < 0) {
                old_point->refs--;
                old_point = NULL;
                sampler_rollback(svc, s);
                hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
                goto out;
            }
            memcpy(t->values, merged, s->space->dim * sizeof(double));
            hpo_space_encode(s->space, t->values, t->unit);
        }
        hpo_history_set_state(&s->history, t, HPO_STATE_RUNNING);
    }
    old_worker = t->worker;
    old_started = t->started_at;
    old_heartbeat = t->heartbeat_at;
    t->started_at = now;
    t->heartbeat_at = now;
    t->worker = worker ? strdup(worker) : NULL;
    op_trial(&b, s, t);
    op_params(&b, s, t);
    if (s->sampler_type->needs_save == NULL || s->sampler_type->needs_save(s->sampler)) {
        op_sampler_state(svc, &b, s, &blob, &blob_len);
    }
    if (commit(svc, &b, err) < 0) {
        sampler_rollback(svc, s);
        if (fresh) {
            hpo_history_pop(&s->history);
        } else {
            free(t->worker);
            t->worker = old_worker;
            if (old_point != NULL) {
                hpo_point_release(t->point);
                t->point = old_point;
                t->values = old_point->data;
                t->unit = old_point->data + s->space->dim;
                t->shares = old_shares;
                old_point = NULL;
            }
            t->started_at = old_started;
            t->heartbeat_at = old_heartbeat;
            hpo_history_set_state(&s->history, t, HPO_STATE_WAITING);
        }
        goto out;
    }
    sampler_committed(svc, s, &blob, blob_len);
    free(old_worker);
    trial_changed(s, t);
    reply(req, 201, trial_to_json(s, t));
out:
    free(blob);
    if (point != NULL) {
        hpo_point_release(point);
    } else {
        free(unit);
        free(merged);
    }
    hpo_point_release(old_point);
    opbuf_free(&b);
    study_release(s);
}

static void op_trial_create(struct hpo_service *svc, struct hpo_svc_request *req)
{
    static const char *const allowed[] = { "params", "value", "user_attrs", NULL };
    struct hpo_error *err = &req->err;
    struct opbuf b = { 0 };
    const json_t *params, *value, *attrs;
    struct hpo_trial *t;
    struct study *s;
    double *values = NULL;
    int64_t now = hpo_now_ms();

    if (check_keys(req->body, allowed, err) < 0) {
        return;
    }
    params = req->body ? json_object_get(req->body, "params") : NULL;
    value = req->body ? json_object_get(req->body, "value") : NULL;
    attrs = req->body ? json_object_get(req->body, "user_attrs") : NULL;
    if (params == NULL) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "params", "params is required");
        return;
    }
    if (value != NULL && (!json_is_number(value) || !isfinite(json_number_value(value)))) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "value", "value must be a finite number");
        return;
    }
    if (attrs != NULL && !json_is_object(attrs)) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "user_attrs",
                "user_attrs must be an object");
        return;
    }
    s = study_acquire(svc, req);
    if (s == NULL) {
        return;
    }
    values = malloc((s->space->dim ? s->space->dim : 1) * sizeof(double));
    if (values == NULL) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    if (hpo_space_values_from_json(s->space, params, value == NULL, values, err) < 0) {
        goto out;
    }
    t = hpo_history_append(&s->history, value ? HPO_STATE_COMPLETE : HPO_STATE_WAITING);
    if (t == NULL) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    memcpy(t->values, values, s->space->dim * sizeof(double));
    hpo_space_encode(s->space, t->values, t->unit);
    t->created_at = now;
    if (s->space->has_vectors && !needs_sampler(s->space, t->values)) {
        (void)hpo_history_dedupe(&s->history, t, 8);
    }
    if (value != NULL) {
        t->value = json_number_value(value);
        t->completed_at = now;
    }
    if (attrs != NULL) {
        json_object_update(hpo_trial_attrs(t), (json_t *)attrs);
    }
    op_trial(&b, s, t);
    op_params(&b, s, t);
    if (attrs != NULL) {
        op_attrs(&b, s, t, attrs);
    }
    if (commit(svc, &b, err) < 0) {
        hpo_history_pop(&s->history);
        goto out;
    }
    trial_changed(s, t);
    reply(req, 201, trial_to_json(s, t));
out:
    free(values);
    opbuf_free(&b);
    study_release(s);
}

/* The pending binary gradient of trial `number` for param index `param`, or NULL. */
static const double *pending_gradient(const struct study *s, int64_t number, size_t param)
{
    for (size_t i = 0; i < s->n_grads; i++) {
        if (s->grads[i].number == number && s->grads[i].param == param) {
            return s->grads[i].data;
        }
    }
    return NULL;
}

/*
** Copy the pending binary gradients of trial `number` into `grad` (dim
** doubles, each param at its offset; NULL to only test). With `consume`, the
** uploads are freed and removed from the study. Returns whether there was any.
*/
static bool take_binary_gradients(struct study *s, int64_t number, double *grad, bool consume)
{
    bool any = false;

    for (size_t i = 0; i < s->n_grads; i++) {
        struct pending_gradient *g = &s->grads[i];
        if (g->number != number) {
            continue;
        }
        if (grad != NULL) {
            memcpy(&grad[s->space->params[g->param].offset], g->data,
                    s->space->params[g->param].size * sizeof(double));
        }
        any = true;
    }
    if (consume) {
        size_t k = 0;
        for (size_t i = 0; i < s->n_grads; i++) {
            if (s->grads[i].number == number) {
                free(s->grads[i].data);
                hpo_vector_memory_give(s->grads[i].held);
            } else {
                s->grads[k++] = s->grads[i];
            }
        }
        s->n_grads = k;
    }
    return any;
}

/* Parse a JSON gradient object into `grad` (dim doubles, NaN where absent). */
static int parse_gradient(struct study *s, const json_t *obj, double *grad, struct hpo_error *err)
{
    const char *key;
    json_t *v;
    char field[160];

    if (!json_is_object(obj)) {
        return FAIL("gradient", "gradient must be an object of param name to derivative");
    }
    json_object_foreach((json_t *)obj, key, v) {
        long i = hpo_space_find(s->space, key);
        const struct hpo_param *p;
        snprintf(field, sizeof(field), "gradient.%.128s", key);
        if (i < 0) {
            return FAIL(field, "unknown parameter '%.128s'", key);
        }
        p = &s->space->params[i];
        if (p->type != HPO_PARAM_FLOAT) {
            return FAIL(field, "%s: only float params have gradients", field);
        }
        if (p->size == 0) {
            if (!json_is_number(v) || !isfinite(json_number_value(v))) {
                return FAIL(field, "%s must be a finite number", field);
            }
            grad[p->offset] = json_number_value(v);
            continue;
        }
        if (!json_is_array(v) || json_array_size(v) != p->size) {
            return FAIL(field, "%s must be an array of %zu finite numbers", field, p->size);
        }
        for (size_t k = 0; k < p->size; k++) {
            json_t *e = json_array_get(v, k);
            if (!json_is_number(e) || !isfinite(json_number_value(e))) {
                return FAIL(field, "%s[%zu] must be a finite number", field, k);
            }
            grad[p->offset + k] = json_number_value(e);
        }
    }
    return 0;
}

static bool same_result(const struct hpo_trial *t, enum hpo_state state, double value)
{
    if (t->state != state) {
        return false;
    }
    return state != HPO_STATE_COMPLETE || t->value == value;
}

static void op_tell(struct hpo_service *svc, struct hpo_svc_request *req)
{
    static const char *const allowed[] = { "value", "state", "user_attrs", "gradient", NULL };
    struct hpo_error *err = &req->err;
    struct opbuf b = { 0 };
    const json_t *jvalue, *jstate, *attrs, *jgrad;
    enum hpo_state state = HPO_STATE_COMPLETE;
    double value = NAN, *grad = NULL;
    const double *borrowed = NULL; /* a pending upload used as the gradient */
    struct hpo_trial *t;
    struct study *s;
    json_t *old_attrs = NULL;
    void *blob = NULL;
    size_t blob_len = 0;
    bool has_grad = false;

    if (check_keys(req->body, allowed, err) < 0) {
        return;
    }
    jvalue = req->body ? json_object_get(req->body, "value") : NULL;
    jstate = req->body ? json_object_get(req->body, "state") : NULL;
    attrs = req->body ? json_object_get(req->body, "user_attrs") : NULL;
    jgrad = req->body ? json_object_get(req->body, "gradient") : NULL;
    if (jstate != NULL) {
        int st = json_is_string(jstate) ? hpo_state_parse(json_string_value(jstate)) : -1;
        if (st != HPO_STATE_COMPLETE && st != HPO_STATE_FAILED && st != HPO_STATE_PRUNED) {
            hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "state",
                    "state must be \"complete\", \"failed\" or \"pruned\"");
            return;
        }
        state = (enum hpo_state)st;
    }
    if (jvalue != NULL && (!json_is_number(jvalue) || !isfinite(json_number_value(jvalue)))) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "value", "value must be a finite number");
        return;
    }
    if (state == HPO_STATE_COMPLETE && jvalue == NULL) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "value",
                "value is required to complete a trial (or give state failed/pruned)");
        return;
    }
    if (state != HPO_STATE_COMPLETE && jvalue != NULL) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "value",
                "value goes only with a complete trial");
        return;
    }
    if (attrs != NULL && !json_is_object(attrs)) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "user_attrs",
                "user_attrs must be an object");
        return;
    }
    value = jvalue ? json_number_value(jvalue) : NAN;
    s = study_acquire(svc, req);
    if (s == NULL) {
        return;
    }
    t = sampler_ready(svc, s, err) < 0 ? NULL : trial_lookup(s, req);
    if (t == NULL) {
        goto out;
    }
    if (t->state == HPO_STATE_WAITING) {
        hpo_error_set(err, -EBUSY, HPO_CONFLICT, NULL, "trial %lld is waiting, not running",
                (long long)t->number);
        goto out;
    }
    if (t->state != HPO_STATE_RUNNING) {
        if (same_result(t, state, value)) {
            reply(req, 200, trial_to_json(s, t));
        } else {
            hpo_error_set(err, -EBUSY, HPO_CONFLICT, NULL,
                    "trial %lld already finished as %s with another result", (long long)t->number,
                    hpo_state_name(t->state));
        }
        goto out;
    }
    if (jgrad == NULL && s->space->n_params == 1 && s->space->params[0].width == s->space->dim &&
            (borrowed = pending_gradient(s, t->number, 0)) != NULL) {
        /* The study's only param, uploaded whole: the upload is the gradient (no copy). */
        has_grad = true;
    } else if (jgrad != NULL || s->n_grads > 0) {
        grad = malloc((s->space->dim ? s->space->dim : 1) * sizeof(double));
        if (grad == NULL) {
            hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        for (size_t j = 0; j < s->space->dim; j++) {
            grad[j] = NAN;
        }
        has_grad = take_binary_gradients(s, t->number, grad, false);
        if (jgrad != NULL) {
            if (s->sampler_type->tell == NULL) {
                hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "gradient",
                        "sampler '%s' does not take gradients", s->sampler_type->name);
                goto out;
            }
            if (parse_gradient(s, jgrad, grad, err) < 0) {
                goto out;
            }
            has_grad = true;
        }
    }
    if (state == HPO_STATE_PRUNED) {
        const struct hpo_report *last = hpo_trial_last_report(t);
        value = last ? last->value : NAN;
    }
    if (state == HPO_STATE_FAILED) {
        value = NAN;
    }
    hpo_history_set_state(&s->history, t, state);
    t->value = value;
    t->completed_at = hpo_now_ms();
    if (attrs != NULL) {
        /* Merged into a new object: a reply encoded off the lock may hold the old one. */
        json_t *next = t->user_attrs ? json_deep_copy(t->user_attrs) : json_object();
        if (next == NULL) {
            abort();
        }
        json_object_update(next, (json_t *)attrs);
        old_attrs = t->user_attrs;
        t->user_attrs = next;
    }
    if (s->sampler_type->tell != NULL) {
        s->sampler_type->tell(s->sampler, s->space, &s->history, (size_t)t->number,
                has_grad ? (borrowed != NULL ? borrowed : grad) : NULL);
    }
    op_trial(&b, s, t);
    if (attrs != NULL) {
        op_attrs(&b, s, t, attrs);
    }
    op_sampler_state(svc, &b, s, &blob, &blob_len);
    if (commit(svc, &b, err) < 0) {
        sampler_rollback(svc, s);
        hpo_history_set_state(&s->history, t, HPO_STATE_RUNNING);
        t->value = NAN;
        t->completed_at = 0;
        if (attrs != NULL) {
            json_decref(t->user_attrs);
            t->user_attrs = old_attrs;
            old_attrs = NULL;
        }
        goto out;
    }
    sampler_committed(svc, s, &blob, blob_len);
    take_binary_gradients(s, t->number, NULL, true);
    trial_changed(s, t);
    reply(req, 200, trial_to_json(s, t));
    evict_vectors(svc, s, (size_t)t->number);
    retain_vectors(svc, s);
out:
    json_decref(old_attrs);
    free(blob);
    free(grad);
    opbuf_free(&b);
    study_release(s);
}

static struct hpo_trial *running_trial(struct study *s, struct hpo_svc_request *req)
{
    struct hpo_trial *t = trial_lookup(s, req);

    if (t != NULL && t->state != HPO_STATE_RUNNING) {
        hpo_error_set(&req->err, -EBUSY, HPO_CONFLICT, NULL, "trial %lld is %s, not running",
                (long long)t->number, hpo_state_name(t->state));
        return NULL;
    }
    return t;
}

static void op_report(struct hpo_service *svc, struct hpo_svc_request *req)
{
    static const char *const allowed[] = { "step", "value", NULL };
    struct hpo_error *err = &req->err;
    struct opbuf b = { 0 };
    const json_t *jstep, *jvalue;
    struct hpo_trial *t;
    struct study *s;
    int64_t step, old_heartbeat;
    double value;
    bool added = false, prune = false;

    if (check_keys(req->body, allowed, err) < 0) {
        return;
    }
    jstep = req->body ? json_object_get(req->body, "step") : NULL;
    jvalue = req->body ? json_object_get(req->body, "value") : NULL;
    if (jstep == NULL || !json_is_integer(jstep) || json_integer_value(jstep) < 0) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "step", "step must be an integer >= 0");
        return;
    }
    if (jvalue == NULL || !json_is_number(jvalue) || !isfinite(json_number_value(jvalue))) {
        hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "value", "value must be a finite number");
        return;
    }
    step = json_integer_value(jstep);
    value = json_number_value(jvalue);
    s = study_acquire(svc, req);
    if (s == NULL) {
        return;
    }
    t = running_trial(s, req);
    if (t == NULL) {
        goto out;
    }
    if (hpo_trial_add_report(t, step, value, &added) < 0) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    old_heartbeat = t->heartbeat_at;
    t->heartbeat_at = hpo_now_ms();
    op_trial(&b, s, t);
    if (added) {
        struct hpo_op *op = op_add(&b, HPO_OP_REPORT_PUT, s->id);
        op->number = t->number;
        op->i[0] = step;
        op->value = value;
    }
    if (commit(svc, &b, err) < 0) {
        t->heartbeat_at = old_heartbeat;
        if (added) {
            /* Remove the report we inserted (its step is unique). */
            for (size_t i = 0; i < t->n_reports; i++) {
                if (t->reports[i].step == step) {
                    memmove(&t->reports[i], &t->reports[i + 1],
                            (t->n_reports - i - 1) * sizeof(*t->reports));
                    t->n_reports--;
                    break;
                }
            }
        }
        goto out;
    }
    if (added && s->pruner_type->observe) {
        s->pruner_type->observe(s->pruner, &s->history, (size_t)t->number, step);
    }
    if (s->pruner_type->decide(s->pruner, &s->history, (size_t)t->number, step, &prune, err) < 0) {
        /* The report is stored; a pruner failure must not fail it. Answer continue. */
        hpo_error_clear(err);
        prune = false;
    }
    reply(req, 200, json_pack("{s:b}", "prune", prune));
out:
    opbuf_free(&b);
    study_release(s);
}

static void op_heartbeat(struct hpo_service *svc, struct hpo_svc_request *req)
{
    static const char *const allowed[] = { NULL };
    struct opbuf b = { 0 };
    struct hpo_trial *t;
    struct study *s;
    int64_t old;

    if (check_keys(req->body, allowed, &req->err) < 0) {
        return;
    }
    s = study_acquire(svc, req);
    if (s == NULL) {
        return;
    }
    t = running_trial(s, req);
    if (t != NULL) {
        old = t->heartbeat_at;
        t->heartbeat_at = hpo_now_ms();
        op_trial(&b, s, t);
        if (commit(svc, &b, &req->err) < 0) {
            t->heartbeat_at = old;
        } else {
            req->status = 204;
        }
    }
    opbuf_free(&b);
    study_release(s);
}

/* Append one CSV field, quoting when needed. */
static void csv_field(char **buf, size_t *len, size_t *cap, const char *text, bool comma)
{
    size_t need = strlen(text) * 2 + 4;
    bool quote = strpbrk(text, ",\"\r\n") != NULL;
    char *p;

    if (*len + need >= *cap) {
        size_t ncap = (*cap + need) * 2;
        char *n = realloc(*buf, ncap);
        if (n == NULL) {
            abort();
        }
        *buf = n;
        *cap = ncap;
    }
    p = *buf + *len;
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
    *len = (size_t)(p - *buf);
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
** CSV export (docs/API.md "Trials"): the columns are number, state, value,
** the params, created_at, completed_at, duration (seconds), one
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

struct hpo_svc_stream {
    struct study *s; /* a reference */
    char **keys;     /* user attr keys, sorted */
    size_t n_keys;
    bool intermediate;
    int state_filter;
    int64_t offset, limit; /* limit -1: all */
    size_t end;            /* the trial count at the start */
    size_t cursor;         /* next trial to look at */
    int64_t matched, emitted;
    char *buf;
    size_t len, cap;
    bool header_sent;
};

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The study's user attr keys over trials [0, end), sorted (the study is locked). */
static void csv_collect_keys(struct hpo_svc_stream *st)
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
        abort();
    }
    json_object_foreach(set, key, v) {
        st->keys[i] = strdup(key);
        if (st->keys[i++] == NULL) {
            abort();
        }
    }
    qsort(st->keys, st->n_keys, sizeof(*st->keys), compare_keys);
    json_decref(set);
}

static void csv_end_line(struct hpo_svc_stream *st)
{
    csv_field(&st->buf, &st->len, &st->cap, "", false);
    st->buf[st->len++] = '\n';
    st->buf[st->len] = '\0';
}

static void csv_header(struct hpo_svc_stream *st)
{
    const struct study *s = st->s;

    csv_field(&st->buf, &st->len, &st->cap, "number", false);
    csv_field(&st->buf, &st->len, &st->cap, "state", true);
    csv_field(&st->buf, &st->len, &st->cap, "value", true);
    for (size_t i = 0; i < s->space->n_params; i++) {
        csv_field(&st->buf, &st->len, &st->cap, s->space->params[i].name, true);
    }
    csv_field(&st->buf, &st->len, &st->cap, "created_at", true);
    csv_field(&st->buf, &st->len, &st->cap, "completed_at", true);
    csv_field(&st->buf, &st->len, &st->cap, "duration", true);
    for (size_t i = 0; i < st->n_keys; i++) {
        char *col = NULL;
        if (asprintf(&col, "user_attrs_%s", st->keys[i]) < 0) {
            abort();
        }
        csv_field(&st->buf, &st->len, &st->cap, col, true);
        free(col);
    }
    if (st->intermediate) {
        csv_field(&st->buf, &st->len, &st->cap, "intermediate", true);
    }
    csv_end_line(st);
}

/* A cell of JSON text (a user attr: strings as their text). */
static void csv_json_cell(struct hpo_svc_stream *st, const json_t *v)
{
    char *text;

    if (v == NULL || json_is_null(v)) {
        csv_field(&st->buf, &st->len, &st->cap, "", true);
        return;
    }
    if (json_is_string(v)) {
        csv_field(&st->buf, &st->len, &st->cap, json_string_value(v), true);
        return;
    }
    text = hpo_json_dumps(v, NULL);
    if (text == NULL) {
        abort();
    }
    csv_field(&st->buf, &st->len, &st->cap, text, true);
    free(text);
}

static void csv_time_cell(struct hpo_svc_stream *st, int64_t ms)
{
    char cell[40];

    cell[0] = '\0';
    if (ms > 0) {
        hpo_format_time(ms, cell, sizeof(cell));
    }
    csv_field(&st->buf, &st->len, &st->cap, cell, true);
}

static void csv_row(struct hpo_svc_stream *st, const struct hpo_trial *t)
{
    const struct study *s = st->s;
    char cell[32768];

    snprintf(cell, sizeof(cell), "%lld", (long long)t->number);
    csv_field(&st->buf, &st->len, &st->cap, cell, false);
    csv_field(&st->buf, &st->len, &st->cap, hpo_state_name(t->state), true);
    cell[0] = '\0';
    if (isfinite(t->value)) {
        hpo_format_double(cell, t->value);
    }
    csv_field(&st->buf, &st->len, &st->cap, cell, true);
    for (size_t k = 0; k < s->space->n_params; k++) {
        csv_param(&s->space->params[k], t->values, t->thin, cell, sizeof(cell));
        csv_field(&st->buf, &st->len, &st->cap, cell, true);
    }
    csv_time_cell(st, t->created_at);
    csv_time_cell(st, t->completed_at);
    cell[0] = '\0';
    if (t->started_at > 0 && t->completed_at >= t->started_at) {
        hpo_format_double(cell, (double)(t->completed_at - t->started_at) / 1000.0);
    }
    csv_field(&st->buf, &st->len, &st->cap, cell, true);
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

int hpo_svc_stream_next(struct hpo_svc_stream *st, const char **ret, size_t *ret_len)
{
    st->len = 0;
    if (st->buf != NULL) {
        st->buf[0] = '\0';
    }
    if (!st->header_sent) {
        pthread_mutex_lock(&st->s->lock);
        csv_header(st);
        pthread_mutex_unlock(&st->s->lock);
        st->header_sent = true;
    } else {
        pthread_mutex_lock(&st->s->lock);
        while (st->cursor < st->end && st->len < CSV_CHUNK &&
                (st->limit < 0 || st->emitted < st->limit)) {
            const struct hpo_trial *t = st->s->history.trials[st->cursor++];
            if (st->state_filter >= 0 && (int)t->state != st->state_filter) {
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
    *ret = st->buf ? st->buf : "";
    *ret_len = st->len;
    return 0;
}

void hpo_svc_stream_free(struct hpo_svc_stream *st)
{
    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < st->n_keys; i++) {
        free(st->keys[i]);
    }
    free(st->keys);
    free(st->buf);
    study_unref(st->s);
    free(st);
}

static void op_trials_list(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct study *s = study_acquire(svc, req);
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
        if (req->state_filter >= 0 && (int)t->state != req->state_filter) {
            continue;
        }
        total++;
        if (req->csv || (int64_t)total <= req->offset || (int64_t)emitted >= req->limit) {
            continue;
        }
        emitted++;
        json_array_append_new(arr, trial_to_json(s, t));
    }
    req->total = (int64_t)total;
    req->next_offset = req->limit >= 0 && req->offset + req->limit < (int64_t)total
            ? req->offset + req->limit : -1;
    if (req->csv) {
        struct hpo_svc_stream *st = calloc(1, sizeof(*st));
        if (st == NULL) {
            abort();
        }
        atomic_fetch_add(&s->refs, 1);
        st->s = s;
        st->intermediate = req->intermediate;
        st->state_filter = req->state_filter;
        st->offset = req->offset;
        st->limit = req->limit;
        st->end = h->n_trials;
        csv_collect_keys(st);
        req->status = 200;
        req->stream = st;
    } else {
        reply(req, 200, json_pack("{s:o,s:I}", "trials", arr, "total", (json_int_t)total));
    }
    study_release(s);
}

static void op_trial_get(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct study *s = study_acquire(svc, req);
    struct hpo_trial *t;

    if (s == NULL) {
        return;
    }
    t = trial_lookup(s, req);
    if (t != NULL) {
        reply(req, 200, trial_to_json(s, t));
    }
    study_release(s);
}

static void op_best(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct study *s = study_acquire(svc, req);

    if (s == NULL) {
        return;
    }
    if (s->best < 0) {
        hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL, "study '%s' has no complete trial",
                s->name);
    } else {
        reply(req, 200, trial_to_json(s, s->history.trials[s->best]));
    }
    study_release(s);
}

/*
** PATCH bodies: {"user_attrs": {...}} merged into the current attrs, a key
** set to null removed. Returns the attrs object (borrowed; NULL when the body
** has none: nothing changes), or sets err.
*/
static const json_t *patch_attrs(struct hpo_svc_request *req, bool *ret_ok)
{
    static const char *const allowed[] = { "user_attrs", NULL };
    const json_t *attrs;

    *ret_ok = false;
    if (check_keys(req->body, allowed, &req->err) < 0) {
        return NULL;
    }
    attrs = req->body ? json_object_get(req->body, "user_attrs") : NULL;
    if (attrs != NULL && !json_is_object(attrs)) {
        hpo_error_set(&req->err, -EINVAL, HPO_INVALID_ARGUMENT, "user_attrs",
                "user_attrs must be an object");
        return NULL;
    }
    *ret_ok = true;
    return attrs;
}

/* Merge `patch` into `into` (an object): null removes the key. */
static void merge_attrs(json_t *into, const json_t *patch)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)patch, key, v) {
        if (json_is_null(v)) {
            json_object_del(into, key);
        } else {
            json_object_set_new(into, key, json_deep_copy(v));
        }
    }
}

static void op_trial_patch(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct opbuf b = { 0 };
    struct study *s;
    struct hpo_trial *t;
    json_t *old = NULL;
    const json_t *attrs;
    const char *key;
    json_t *v;
    bool ok;

    attrs = patch_attrs(req, &ok);
    if (!ok || (s = study_acquire(svc, req)) == NULL) {
        return;
    }
    t = trial_lookup(s, req);
    if (t == NULL) {
        goto out;
    }
    if (attrs != NULL && json_object_size(attrs) > 0) {
        /*
        ** A new object, swapped in after the commit: replies being encoded
        ** off the lock may hold a reference to the old one.
        */
        json_t *next = t->user_attrs ? json_deep_copy(t->user_attrs) : json_object();
        if (next == NULL) {
            hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        merge_attrs(next, attrs);
        json_object_foreach((json_t *)attrs, key, v) {
            struct hpo_op *op = op_add(&b, json_is_null(v) ? HPO_OP_ATTR_DELETE : HPO_OP_ATTR_PUT,
                    s->id);
            op->number = t->number;
            op->name = key;
            if (!json_is_null(v)) {
                op->text = op_keep(&b, json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT));
            }
        }
        if (commit(svc, &b, &req->err) < 0) {
            json_decref(next);
            goto out;
        }
        old = t->user_attrs;
        t->user_attrs = next;
    }
    reply(req, 200, trial_to_json(s, t));
out:
    json_decref(old);
    opbuf_free(&b);
    study_release(s);
}

static void op_study_patch(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct opbuf b = { 0 };
    struct study *s;
    json_t *def = NULL;
    const json_t *attrs;
    bool ok;

    attrs = patch_attrs(req, &ok);
    if (!ok || (s = study_acquire(svc, req)) == NULL) {
        return;
    }
    if (attrs != NULL && json_object_size(attrs) > 0) {
        struct hpo_op *op;
        def = json_deep_copy(s->definition);
        if (def == NULL || !json_is_object(json_object_get(def, "user_attrs"))) {
            hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        merge_attrs(json_object_get(def, "user_attrs"), attrs);
        op = op_add(&b, HPO_OP_STUDY_SPEC, s->id);
        op->text = op_keep(&b, json_dumps(def, JSON_COMPACT));
        if (commit(svc, &b, &req->err) < 0) {
            goto out;
        }
        json_decref(s->definition);
        s->definition = def;
        def = NULL;
        pthread_mutex_lock(&s->cache_lock);
        s->summary_valid = false;
        pthread_mutex_unlock(&s->cache_lock);
    }
    reply(req, 200, study_to_json(s, true));
out:
    json_decref(def);
    opbuf_free(&b);
    study_release(s);
}

static const struct hpo_param *vector_param(struct study *s, struct hpo_svc_request *req)
{
    long i = hpo_space_find(s->space, req->name);

    if (i < 0) {
        hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL, "study '%s' has no param '%.128s'",
                s->name, req->name);
        return NULL;
    }
    return &s->space->params[i];
}

/* The text_free of a reply sent from a trial's point. */
static void release_point(void *point)
{
    hpo_point_release(point);
}

static void op_param_get(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct study *s = study_acquire(svc, req);
    const struct hpo_param *p;
    struct hpo_trial *t;
    size_t n;

    if (s == NULL) {
        return;
    }
    t = trial_lookup(s, req);
    p = t ? vector_param(s, req) : NULL;
    if (p == NULL) {
        goto out;
    }
    if (p->type != HPO_PARAM_FLOAT ||
            (t->thin && p->size > 0 ? !hpo_space_active(s->space, (size_t)(p - s->space->params),
                                              t->values)
                                    : isnan(t->values[p->offset]))) {
        hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL,
                "trial %lld has no float value for '%s'", (long long)t->number, p->name);
        goto out;
    }
    n = p->width;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (!(t->thin && p->size > 0)) {
        /* The wire format is the host's: send the trial's own values, holding its point. */
        t->point->refs++;
        req->text = (char *)(void *)&t->values[p->offset];
        req->text_free = release_point;
        req->text_cls = t->point;
        req->text_len = n * sizeof(double);
        req->status = 200;
        goto out;
    }
#endif
    req->text = malloc(n * sizeof(double));
    if (req->text == NULL) {
        hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    if (t->thin && p->size > 0) {
        /* Not in memory any more: read it back from the database. */
        if (hpo_storage_read_vector(svc->reader, s->id, t->number,
                    (int64_t)(p - s->space->params), (double *)(void *)req->text, n,
                    &req->err) < 0) {
            goto out;
        }
    } else {
        memcpy(req->text, &t->values[p->offset], n * sizeof(double));
    }
    req->text_len = n * sizeof(double);
    req->status = 200;
out:
    study_release(s);
}

/*
** The param a gradient upload names, checked as op_gradient_put checks it
** (running trial, known param, a sampler that takes gradients, a float); NULL
** with req->err filled otherwise. Called with the study locked.
*/
static const struct hpo_param *gradient_target(struct study *s, struct hpo_svc_request *req,
        struct hpo_trial **ret_trial)
{
    struct hpo_trial *t = running_trial(s, req);
    const struct hpo_param *p = t ? vector_param(s, req) : NULL;

    if (p == NULL) {
        return NULL;
    }
    if (s->sampler_type->tell == NULL) {
        hpo_error_set(&req->err, -EINVAL, HPO_INVALID_ARGUMENT, "gradient",
                "sampler '%s' does not take gradients", s->sampler_type->name);
        return NULL;
    }
    if (p->type != HPO_PARAM_FLOAT) {
        hpo_error_set(&req->err, -EINVAL, HPO_INVALID_ARGUMENT, "gradient",
                "only float params have gradients");
        return NULL;
    }
    *ret_trial = t;
    return p;
}

int hpo_service_gradient_size(struct hpo_service *svc, const char *study, int64_t number,
        const char *name, size_t *ret_bytes, struct hpo_error *err)
{
    struct hpo_svc_request req = { .op = HPO_SVC_GRADIENT_PUT, .study = study,
        .number = number, .name = name };
    const struct hpo_param *p;
    struct hpo_trial *t = NULL;
    struct study *s;

    hpo_error_clear(&req.err);
    s = study_acquire(svc, &req);
    p = s != NULL ? gradient_target(s, &req, &t) : NULL;
    if (p != NULL) {
        *ret_bytes = p->width * sizeof(double);
    }
    if (s != NULL) {
        study_release(s);
    }
    if (p == NULL) {
        *err = req.err;
        return -EINVAL;
    }
    return 0;
}
/* Uploads this big count in the vector memory (as big points do). */
#define VECTOR_HELD_MIN ((size_t)1 << 20)

static void op_gradient_put(struct hpo_service *svc, struct hpo_svc_request *req)
{
    struct study *s = study_acquire(svc, req);
    struct pending_gradient *grads;
    const struct hpo_param *p;
    const void *src = req->data;
    size_t held;
    struct hpo_trial *t = NULL;
    double *copy;
    size_t n;

    if (s == NULL) {
        return;
    }
    p = gradient_target(s, req, &t);
    if (p == NULL) {
        goto out;
    }
    n = p->width;
    if (req->data_len != n * sizeof(double)) {
        hpo_error_set(&req->err, -EINVAL, HPO_INVALID_ARGUMENT, "gradient",
                "body must be %zu bytes (%zu little-endian float64), got %zu", n * sizeof(double),
                n, req->data_len);
        goto out;
    }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (req->data_owned == req->data && ((uintptr_t)req->data % _Alignof(double)) == 0) {
        /* Keep the request's own buffer: no copy of a 10^6-element gradient. */
        copy = req->data_owned;
        req->data_owned = NULL;
    } else
#endif
    {
        copy = malloc(n * sizeof(double));
        if (copy == NULL) {
            hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        memcpy(copy, src, n * sizeof(double));
    }
    for (size_t k = 0; k < n; k++) {
        if (!isfinite(copy[k])) {
            free(copy);
            hpo_error_set(&req->err, -EINVAL, HPO_INVALID_ARGUMENT, "gradient",
                    "element %zu is not finite", k);
            goto out;
        }
    }
    /* A big upload is kept only within the vector memory's cap. */
    held = n * sizeof(double) >= VECTOR_HELD_MIN ? n * sizeof(double) : 0;
    if (held > 0 && !hpo_vector_memory_take(held)) {
        free(copy);
        vector_memory_full(&req->err);
        goto out;
    }
    /* A second upload for the same trial and param replaces the first. */
    for (size_t i = 0; i < s->n_grads; i++) {
        if (s->grads[i].number == t->number && s->grads[i].param == (size_t)(p - s->space->params)) {
            free(s->grads[i].data);
            hpo_vector_memory_give(s->grads[i].held);
            s->grads[i].data = copy;
            s->grads[i].held = held;
            req->status = 204;
            goto out;
        }
    }
    grads = realloc(s->grads, (s->n_grads + 1) * sizeof(*grads));
    if (grads == NULL) {
        free(copy);
        hpo_vector_memory_give(held);
        hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    s->grads = grads;
    s->grads[s->n_grads].number = t->number;
    s->grads[s->n_grads].param = (size_t)(p - s->space->params);
    s->grads[s->n_grads].data = copy;
    s->grads[s->n_grads].held = held;
    s->n_grads++;
    req->status = 204;
out:
    study_release(s);
}

void hpo_service_execute(struct hpo_service *svc, struct hpo_svc_request *req)
{
    hpo_error_clear(&req->err);
    req->status = 0;
    req->reply = NULL;
    req->text = NULL;
    req->text_len = 0;
    req->stream = NULL;
    req->total = -1;
    req->next_offset = -1;
    if (req->body != NULL && !json_is_object(req->body)) {
        hpo_error_set(&req->err, -EINVAL, HPO_INVALID_JSON, NULL, "body must be a JSON object");
    } else {
        switch (req->op) {
        case HPO_SVC_STUDY_CREATE:
            op_study_create(svc, req);
            break;
        case HPO_SVC_STUDY_LIST:
            op_study_list(svc, req);
            break;
        case HPO_SVC_STUDY_GET:
            op_study_get(svc, req);
            break;
        case HPO_SVC_STUDY_DELETE:
            op_study_delete(svc, req);
            break;
        case HPO_SVC_ASK:
            op_ask(svc, req);
            break;
        case HPO_SVC_TRIAL_CREATE:
            op_trial_create(svc, req);
            break;
        case HPO_SVC_TELL:
            op_tell(svc, req);
            break;
        case HPO_SVC_REPORT:
            op_report(svc, req);
            break;
        case HPO_SVC_HEARTBEAT:
            op_heartbeat(svc, req);
            break;
        case HPO_SVC_TRIALS_LIST:
            op_trials_list(svc, req);
            break;
        case HPO_SVC_TRIAL_GET:
            op_trial_get(svc, req);
            break;
        case HPO_SVC_BEST:
            op_best(svc, req);
            break;
        case HPO_SVC_PARAM_GET:
            op_param_get(svc, req);
            break;
        case HPO_SVC_GRADIENT_PUT:
            op_gradient_put(svc, req);
            break;
        case HPO_SVC_TRIAL_PATCH:
            op_trial_patch(svc, req);
            break;
        case HPO_SVC_STUDY_PATCH:
            op_study_patch(svc, req);
            break;
        }
    }
    if (req->err.code != HPO_OK) {
        req->status = hpo_code_status(req->err.code);
        json_decref(req->reply);
        req->reply = NULL;
        free(req->text);
        req->text = NULL;
        hpo_svc_stream_free(req->stream);
        req->stream = NULL;
    } else if (req->status == 0) {
        hpo_error_set(&req->err, -EIO, HPO_INTERNAL, NULL, "no reply was produced");
        req->status = 500;
    }
}

void hpo_svc_request_finish(struct hpo_svc_request *req)
{
    json_decref(req->reply);
    req->reply = NULL;
    hpo_svc_stream_free(req->stream);
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

/* Fail expired trials of one study (locked); re-queue per max_retries. */
static size_t reap_study(struct hpo_service *svc, struct study *s, int64_t now)
{
    struct opbuf b = { 0 };
    struct hpo_error err;
    int64_t *expired;
    size_t n_expired = 0, appended = 0;
    int64_t limit = (int64_t)(s->heartbeat_timeout * 1000.0);

    if (s->n_running == 0) {
        return 0;
    }
    expired = malloc(s->n_running * sizeof(*expired));
    if (expired == NULL) {
        return 0;
    }
    for (size_t i = 0; i < s->n_running; i++) {
        struct hpo_trial *t = s->history.trials[s->running[i]];
        if (t->heartbeat_at + limit < now) {
            expired[n_expired++] = t->number;
        }
    }
    for (size_t i = 0; i < n_expired; i++) {
        struct hpo_trial *t = s->history.trials[expired[i]];
        int64_t orig_n = t->retry_of >= 0 ? t->retry_of : t->number;
        struct hpo_trial *orig = s->history.trials[orig_n];
        hpo_history_set_state(&s->history, t, HPO_STATE_FAILED);
        t->completed_at = now;
        op_trial(&b, s, t);
        if (orig->retries < s->max_retries) {
            struct hpo_trial *n = hpo_history_append(&s->history, HPO_STATE_WAITING);
            if (n == NULL) {
                continue;
            }
            orig->retries++;
            op_trial(&b, s, orig);
            hpo_trial_share_point(n, t);
            n->retry_of = orig_n;
            n->created_at = now;
            if (t->user_attrs != NULL) {
                n->user_attrs = json_deep_copy(t->user_attrs);
            }
            op_trial(&b, s, n);
            op_params(&b, s, n);
            if (n->user_attrs != NULL) {
                op_attrs(&b, s, n, n->user_attrs);
            }
            appended++;
        }
    }
    if (commit(svc, &b, &err) < 0) {
        /* Undo: drop the re-queued trials and put the expired ones back to running. */
        for (size_t i = 0; i < appended; i++) {
            struct hpo_trial *n = s->history.trials[s->history.n_trials - 1];
            s->history.trials[n->retry_of]->retries--;
            hpo_history_pop(&s->history);
        }
        for (size_t i = 0; i < n_expired; i++) {
            struct hpo_trial *t = s->history.trials[expired[i]];
            hpo_history_set_state(&s->history, t, HPO_STATE_RUNNING);
            t->completed_at = 0;
        }
        n_expired = 0;
    } else {
        for (size_t i = 0; i < n_expired; i++) {
            struct hpo_trial *t = s->history.trials[expired[i]];
            trial_changed(s, t);
            evict_vectors(svc, s, (size_t)t->number);
        }
    }
    free(expired);
    opbuf_free(&b);
    return n_expired;
}

size_t hpo_service_reap(struct hpo_service *svc, int64_t now_ms)
{
    struct study **snap;
    size_t n, failed = 0;

    pthread_rwlock_rdlock(&svc->registry_lock);
    n = svc->n_studies;
    snap = malloc((n ? n : 1) * sizeof(*snap));
    if (snap == NULL) {
        pthread_rwlock_unlock(&svc->registry_lock);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        snap[i] = svc->studies[i];
        atomic_fetch_add(&snap[i]->refs, 1);
    }
    pthread_rwlock_unlock(&svc->registry_lock);
    for (size_t i = 0; i < n; i++) {
        struct study *s = snap[i];
        if (s->heartbeat_timeout > 0) {
            pthread_mutex_lock(&s->lock);
            if (!s->deleted) {
                failed += reap_study(svc, s, now_ms);
            }
            pthread_mutex_unlock(&s->lock);
        }
        study_unref(s);
    }
    free(snap);
    return failed;
}

void hpo_service_counts(struct hpo_service *svc, size_t *ret_studies, size_t ret_states[5])
{
    pthread_rwlock_rdlock(&svc->registry_lock);
    *ret_studies = svc->n_studies;
    for (int k = 0; k < HPO_STATE_COUNT; k++) {
        ret_states[k] = 0;
    }
    for (size_t i = 0; i < svc->n_studies; i++) {
        for (int k = 0; k < HPO_STATE_COUNT; k++) {
            ret_states[k] += svc->studies[i]->history.count[k];
        }
    }
    pthread_rwlock_unlock(&svc->registry_lock);
}

void hpo_service_each_study(struct hpo_service *svc,
        void (*fn)(void *ctx, const char *name, const size_t counts[5]), void *ctx)
{
    pthread_rwlock_rdlock(&svc->registry_lock);
    for (size_t i = 0; i < svc->n_studies; i++) {
        const struct study *s = svc->studies[i];
        size_t counts[5];
        for (int k = 0; k < 5; k++) {
            counts[k] = k < HPO_STATE_COUNT ? s->history.count[k] : 0;
        }
        fn(ctx, s->name, counts);
    }
    pthread_rwlock_unlock(&svc->registry_lock);
}
