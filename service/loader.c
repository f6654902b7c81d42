/*
** loader.c: the service's start and end: every study, trial, param, report
** and attr read back from storage into memory, then the storage writer
** started (service-int.h).
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "../storage/reader.h"
#include "service-int.h"


/* ---- loading ----------------------------------------------------------- */

struct loader {
    struct hpo_service *svc;
    struct study *cur; /* the study rows are being read for */
    struct hpo_buf by_id; /* struct study *, in load order */
    bool one; /* loading one study (hpo_service_ensure): registered once complete */
    struct hpo_buf lost; /* struct lost_vector: vectors to rebuild (at start) */
};

/* A running trial's vector whose lazily written side file a power cut lost. */
struct lost_vector {
    struct study *s;
    int64_t number, index;
    uint64_t checksum;
};

static struct study *loader_study(struct loader *L, int64_t id)
{
    if (L->cur && L->cur->id == id) {
        return L->cur;
    }
    L->cur = NULL;
    for (size_t i = 0; i < HPO_BUF_N(&L->by_id, struct study *); i++) {
        struct study *s = HPO_BUF_AT(&L->by_id, struct study *, i);
        if (s->id == id) {
            L->cur = s;
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
    r = hpo__study_build(body, NULL, &s, &err);
    json_decref(body);
    if (r < 0) {
        return r;
    }
    s->id = id;
    s->created_at = created_at;
    if (state != NULL && s->sampler_type->load != NULL) {
        r = s->sampler_type->load(s->sampler, state, state_len);
        if (r != 0) {
            /*
            ** The study is served with its sampler started afresh (its trials
            ** are all there): said, not silent, as the state was what the
            ** sampler had learned (the gradient sampler's iterate and moments).
            */
            hpo_log(HPO_LOG_WARNING, "study '%s': its stored %s sampler state (%zu bytes) "
                    "does not load (%s); the sampler starts afresh", name,
                    s->sampler_type->name, state_len,
                    r == -ENOMEM ? "out of memory" : "refused as invalid");
        } else {
            free(s->state_blob);
            s->state_blob = NULL;
            s->state_on_disk = state_len >= HPO__STATE_KEEP_MAX && L->svc->reader != NULL;
            if (!s->state_on_disk) {
                s->state_blob = malloc(state_len ? state_len : 1);
            }
            if (s->state_blob != NULL) {
                memcpy(s->state_blob, state, state_len);
                s->state_len = state_len;
                s->state_cap = state_len;
            }
        }
    }
    n = hpo_buf_add(&L->by_id, sizeof(s));
    if (n == NULL) {
        hpo__study_free(s);
        return -ENOMEM;
    }
    *n = s;
    if (id >= L->svc->next_study_id) {
        L->svc->next_study_id = id + 1;
    }
    return L->one ? 0 : hpo__registry_insert(L->svc, s);
}

static struct hpo_trial *loader_trial(struct loader *L, int64_t study_id, int64_t number)
{
    struct study *s = loader_study(L, study_id);

    if (s == NULL || number < 0 || (size_t)number >= s->history.n_trials) {
        return NULL;
    }
    return s->history.trials[number];
}

/*
** A trial's stored results (storage/migrations.c version 2): a JSON array of
** n_obj + n_cons numbers or nulls. Anything else is not this study's and is
** ignored (the trial keeps only its value), as a stray row is.
*/
static int load_results(const struct study *s, struct hpo_trial *t, const char *text)
{
    size_t n = s->n_obj + s->n_cons;
    json_t *a = json_loads(text, JSON_DECODE_ANY, NULL);
    double *res;

    if (!json_is_array(a) || json_array_size(a) != n) {
        json_decref(a);
        return 0;
    }
    res = malloc(n * sizeof(double));
    if (res == NULL) {
        json_decref(a);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        res[i] = json_is_number(v) ? json_number_value(v) : NAN;
    }
    json_decref(a);
    free(t->results);
    t->results = res;
    return 0;
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
    if (row->results != NULL && hpo__study_has_results(s)) {
        return load_results(s, t, row->results);
    }
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
    if (hpo__vectors_evictable(L->svc, s, (size_t)number)) {
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
    hpo__study_reindex(s);
    for (size_t i = 0; i < s->history.n_trials; i++) {
        if (s->sampler_type->observe) {
            s->sampler_type->observe(s->sampler, &s->history, i);
        }
        if (s->pruner_type->observe) {
            s->pruner_type->observe(s->pruner, &s->history, i, -1);
        }
    }
}

/*
** A vector whose side file is gone or damaged: only a running trial's,
** written lazily because its sampler can rebuild it (op_ask), is rebuilt.
*/
static int load_lost(void *ctx, int64_t study_id, int64_t number, int64_t index, size_t len,
        uint64_t checksum)
{
    struct loader *L = ctx;
    struct hpo_trial *t = loader_trial(L, study_id, number);
    struct study *s = L->cur;
    struct lost_vector *v;

    if (t == NULL || index < 0 || (size_t)index >= s->space->n_params ||
            s->space->params[index].size != len || t->state != HPO_STATE_RUNNING || t->thin ||
            s->sampler_type->regenerate == NULL) {
        return -EBADMSG;
    }
    v = hpo_buf_add(&L->lost, sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    *v = (struct lost_vector){ s, number, index, checksum };
    return 0;
}

/*
** The lost vectors, rebuilt from their samplers' loaded states as their asks
** made them, each checked against the checksum its cell kept: a sampler
** that has stepped since cannot give it back, and the load fails as for
** any damaged file.
*/
static int rebuild_lost(struct loader *L, struct hpo_error *err)
{
    int r = 0;

    for (size_t i = 0; i < HPO_BUF_N(&L->lost, struct lost_vector) && r == 0; i++) {
        struct lost_vector *v = &HPO_BUF_AT(&L->lost, struct lost_vector, i);
        struct study *s = v->s;
        struct hpo_trial *t = s->history.trials[v->number];
        const struct hpo_param *p = &s->space->params[v->index];
        size_t dim = s->space->dim ? s->space->dim : 1;
        double *unit = malloc(dim * sizeof(double));
        double *vals = malloc(dim * sizeof(double));
        bool same = false;

        if (unit == NULL || vals == NULL) {
            r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            free(unit);
            free(vals);
            break;
        }
        if (s->sampler_type->regenerate(s->sampler, s->space, unit) == 0) {
            hpo__merge_suggestion(s->space, NULL, unit, vals, hpo__decode_of(s), false);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            same = hpo_storage_checksum(&vals[p->offset], p->size * sizeof(double)) ==
                    v->checksum;
#endif
        }
        if (!same) {
            r = hpo_error_set(err, -EBADMSG, HPO_INTERNAL, NULL,
                    "loading params: the side file of '%s' of trial %lld of study '%s' is lost "
                    "or damaged, and the sampler cannot rebuild it",
                    p->name, (long long)v->number, s->name);
        } else {
            memcpy(&t->values[p->offset], &vals[p->offset], p->size * sizeof(double));
            hpo_log(HPO_LOG_WARNING, "study '%s': rebuilt the lost vector '%s' of trial %lld",
                    s->name, p->name, (long long)v->number);
        }
        free(unit);
        free(vals);
    }
    return r;
}

/* Write the rebuilt vectors again (new side files), once the storage runs. */
static int rewrite_lost(struct loader *L, struct hpo_error *err)
{
    int r = 0;

    for (size_t i = 0; i < HPO_BUF_N(&L->lost, struct lost_vector) && r == 0; i++) {
        struct lost_vector *v = &HPO_BUF_AT(&L->lost, struct lost_vector, i);
        const struct hpo_param *p = &v->s->space->params[v->index];
        struct hpo__write w = { 0 };
        struct hpo_op *op = hpo__write_op(&w, HPO_OP_PARAM_VECTOR, v->s->id);

        op->number = v->number;
        op->index = v->index;
        op->vector = &v->s->history.trials[v->number]->values[p->offset];
        op->len = p->size;
        op->value = op->vector[0];
        r = hpo__commit(L->svc, v->s, &w, err);
        hpo__write_free(&w);
    }
    return r;
}

/* Every callback of a load (hpo_service_ensure, hpo__study_reload). */
static const struct hpo_load_callbacks load_cb = {
    .study = load_study,
    .trial = load_trial,
    .param = load_param,
    .report = load_report,
    .attr = load_attr,
};

int hpo_service_create(struct hpo_storage *storage, const struct hpo_service_options *opt,
        struct hpo_service **ret_service, struct hpo_error *err)
{
    /* The load at start also rebuilds the vectors a power cut lost. */
    struct hpo_load_callbacks start_cb = load_cb;
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
    start_cb.lost = load_lost;
    r = hpo_storage_load(storage, &start_cb, &L, err);
    if (r == 0) {
        r = rebuild_lost(&L, err);
    }
    if (r < 0) {
        hpo_buf_free(&L.by_id);
        hpo_buf_free(&L.lost);
        hpo_service_destroy(svc);
        return r;
    }
    for (size_t i = 0; i < HPO_BUF_N(&L.by_id, struct study *); i++) {
        finish_loaded(HPO_BUF_AT(&L.by_id, struct study *, i));
    }
    hpo_buf_free(&L.by_id);
    r = hpo_storage_start(storage);
    if (r < 0) {
        hpo_buf_free(&L.lost);
        hpo_service_destroy(svc);
        return hpo_error_set(err, r, HPO_INTERNAL, NULL, "cannot start the storage writer");
    }
    r = rewrite_lost(&L, err);
    hpo_buf_free(&L.lost);
    if (r < 0) {
        hpo_service_destroy(svc);
        return r;
    }
    *ret_service = svc;
    return 0;
}

/*
** Several daemons: make the registry's copy of study `name` the one loaded
** at `epoch`. A copy at that epoch stays; an older one is marked moved
** (under its lock, so no operation of it is still running or will run) and
** replaced by a fresh load. Serialized by create_lock.
*/
int hpo_service_ensure(struct hpo_service *svc, const char *name, int64_t epoch,
        struct hpo_error *err)
{
    struct loader L = { .svc = svc, .one = true };
    struct study *old = hpo__study_get(svc, name);
    int r = 0;

    if (old != NULL && old->epoch >= epoch) {
        int64_t have = old->epoch;

        if (have == epoch) {
            hpo_storage_fence_set(svc->storage, old->id, epoch);
        }
        hpo__study_unref(old);
        return have == epoch ? 0
                             : hpo_error_set(err, -ESTALE, HPO_UNAVAILABLE, NULL,
                                       "study '%.128s' is moving; retry", name);
    }
    hpo__study_unref(old);
    pthread_mutex_lock(&svc->create_lock);
    old = hpo__study_get(svc, name);
    if (old != NULL && old->epoch == epoch) {
        hpo_storage_fence_set(svc->storage, old->id, epoch);
        goto out;
    }
    if (old != NULL) {
        hpo__registry_remove(svc, old);
        pthread_mutex_lock(&old->lock);
        old->moved = true;
        pthread_mutex_unlock(&old->lock);
    }
    r = hpo_storage_load_study(svc->storage, name, &load_cb, &L, err);
    if (r == 0 && HPO_BUF_N(&L.by_id, struct study *) == 1) {
        struct study *s = HPO_BUF_AT(&L.by_id, struct study *, 0);

        finish_loaded(s);
        s->epoch = epoch;
        hpo_storage_fence_set(svc->storage, s->id, epoch);
        r = hpo__registry_insert(svc, s);
        if (r < 0) {
            hpo__study_free(s);
            hpo_error_set(err, r, HPO_INTERNAL, NULL, "out of memory");
        }
    } else {
        for (size_t i = 0; i < HPO_BUF_N(&L.by_id, struct study *); i++) {
            hpo__study_free(HPO_BUF_AT(&L.by_id, struct study *, i));
        }
        if (r == -ENOTSUP) {
            r = 0;
        }
    }
out:
    pthread_mutex_unlock(&svc->create_lock);
    hpo_buf_free(&L.by_id);
    hpo__study_unref(old);
    return r;
}

bool hpo_service_holds(struct hpo_service *svc, const char *name)
{
    struct study *s = hpo__study_get(svc, name);

    hpo__study_unref(s);
    return s != NULL;
}

void hpo_service_retain(struct hpo_service *svc, bool (*keep)(void *ctx, const char *name),
        void *ctx)
{
    size_t n;
    struct study **snap = hpo__registry_snapshot(svc, &n);

    for (size_t i = 0; i < n; i++) {
        struct study *s = snap[i];

        struct study *cur;

        if (keep(ctx, s->name)) {
            continue;
        }
        pthread_mutex_lock(&svc->create_lock);
        cur = hpo__study_get(svc, s->name);
        if (cur == s) {
            /* Still the registered copy (ensure may have replaced it meanwhile). */
            hpo__registry_remove(svc, s);
            pthread_mutex_lock(&s->lock);
            s->moved = true;
            pthread_mutex_unlock(&s->lock);
        }
        pthread_mutex_unlock(&svc->create_lock);
        hpo__study_unref(cur);
    }
    hpo__registry_snapshot_free(snap, n);
}

void hpo_service_destroy(struct hpo_service *svc)
{
    if (svc == NULL) {
        return;
    }
    for (size_t i = 0; i < hpo__n_studies(svc); i++) {
        hpo__study_unref(hpo__studies(svc)[i]);
    }
    hpo_buf_free(&svc->studies);
    hpo_storage_reader_destroy(svc->reader);
    pthread_rwlock_destroy(&svc->registry_lock);
    pthread_mutex_destroy(&svc->create_lock);
    free(svc);
    hpo_point_cache_clear();
}


int hpo__study_reload(struct hpo_service *svc, struct study *s, struct study **ret_locked,
        struct hpo_error *err)
{
    struct loader L = { .svc = svc, .one = true };
    struct study *cur;
    int r = 0;

    pthread_mutex_lock(&svc->create_lock);
    cur = hpo__study_get(svc, s->name);
    if (cur == NULL) {
        goto out; /* deleted meanwhile */
    }
    /*
    ** Reloaded meanwhile: reload the current copy instead (another of its
    ** writes may have failed since). A copy whose writes all committed loads
    ** as it is, so this costs one read and the caller never loops on copies
    ** that others keep replacing while writes fail.
    */
    s = cur;
    /* Under its lock no operation of the copy runs, so no write of it is added. */
    pthread_mutex_lock(&s->lock);
    if (s->deleted || s->moved) {
        pthread_mutex_unlock(&s->lock);
        goto out;
    }
    hpo_storage_chain_wait(s->chain);
    r = hpo_storage_load_study(svc->storage, s->name, &load_cb, &L, err);
    if (r == 0 && HPO_BUF_N(&L.by_id, struct study *) == 1) {
        struct study *fresh = HPO_BUF_AT(&L.by_id, struct study *, 0);

        finish_loaded(fresh);
        fresh->epoch = s->epoch;
        if (ret_locked != NULL) {
            /* Locked before anyone can find it: no write is applied to it first. */
            pthread_mutex_lock(&fresh->lock);
            atomic_fetch_add(&fresh->refs, 1);
        }
        if (hpo__registry_swap(svc, s, fresh) == 0) {
            s->moved = true;
            if (ret_locked != NULL) {
                *ret_locked = fresh;
            }
        } else {
            if (ret_locked != NULL) {
                pthread_mutex_unlock(&fresh->lock);
            }
            hpo__study_free(fresh);
        }
        hpo_log(HPO_LOG_WARNING, "study '%s': a write failed; reloaded from the database",
                s->name);
    } else {
        for (size_t i = 0; i < HPO_BUF_N(&L.by_id, struct study *); i++) {
            hpo__study_free(HPO_BUF_AT(&L.by_id, struct study *, i));
        }
        char why[sizeof(err->message)];

        snprintf(why, sizeof(why), "%s", r < 0 ? err->message : "not found");
        r = r < 0 ? r : -ENOENT;
        hpo_error_set(err, r, HPO_UNAVAILABLE, NULL,
                "study '%.128s' could not be read back after a failed write: %.100s; retry",
                s->name, why);
    }
    pthread_mutex_unlock(&s->lock);
out:
    pthread_mutex_unlock(&svc->create_lock);
    hpo_buf_free(&L.by_id);
    hpo__study_unref(cur);
    return r;
}
