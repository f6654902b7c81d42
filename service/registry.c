/*
** registry.c: the study registry (by name, sorted; lookups under a read
** lock, a reference per user) and the operations on whole studies: create,
** get, delete, patch (service-int.h).
*/
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "service-int.h"

/* ---- registry ---------------------------------------------------------- */

static long registry_index(struct hpo_service *svc, const char *name, bool *ret_found)
{
    size_t lo = 0, hi = hpo__n_studies(svc);

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(hpo__studies(svc)[mid]->name, name);
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *ret_found = lo < hpo__n_studies(svc) && strcmp(hpo__studies(svc)[lo]->name, name) == 0;
    return (long)lo;
}

int hpo__registry_insert(struct hpo_service *svc, struct study *s)
{
    bool found;
    long at;

    pthread_rwlock_wrlock(&svc->registry_lock);
    at = registry_index(svc, s->name, &found);
    if (hpo_buf_add(&svc->studies, sizeof(s)) == NULL) {
        pthread_rwlock_unlock(&svc->registry_lock);
        return -ENOMEM;
    }
    memmove(&hpo__studies(svc)[at + 1], &hpo__studies(svc)[at],
            (hpo__n_studies(svc) - 1 - (size_t)at) * sizeof(s));
    hpo__studies(svc)[at] = s;
    pthread_rwlock_unlock(&svc->registry_lock);
    return 0;
}

void hpo__study_unref(struct study *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) {
        hpo__study_free(s);
    }
}

void hpo__registry_remove(struct hpo_service *svc, struct study *s)
{
    bool found;
    long at;

    pthread_rwlock_wrlock(&svc->registry_lock);
    at = registry_index(svc, s->name, &found);
    if (found && hpo__studies(svc)[at] == s) {
        memmove(&hpo__studies(svc)[at], &hpo__studies(svc)[at + 1],
                (hpo__n_studies(svc) - (size_t)at - 1) * sizeof(s));
        svc->studies.len -= sizeof(s);
    }
    pthread_rwlock_unlock(&svc->registry_lock);
    hpo__study_unref(s);
}

/* A new reference to the study named `name`, or NULL. */
struct study *hpo__study_get(struct hpo_service *svc, const char *name)
{
    struct study *s = NULL;
    bool found;
    long at;

    pthread_rwlock_rdlock(&svc->registry_lock);
    at = registry_index(svc, name, &found);
    if (found) {
        s = hpo__studies(svc)[at];
        atomic_fetch_add(&s->refs, 1);
    }
    pthread_rwlock_unlock(&svc->registry_lock);
    return s;
}

/*
** Replace `old` by `s` in the registry in one step (no lookup misses the
** name meanwhile), dropping the registry's reference to `old`: 0, or
** -ENOENT (nothing done) when `old` is not registered any more.
*/
int hpo__registry_swap(struct hpo_service *svc, struct study *old, struct study *s)
{
    bool found;
    long at;
    int r = -ENOENT;

    pthread_rwlock_wrlock(&svc->registry_lock);
    at = registry_index(svc, old->name, &found);
    if (found && hpo__studies(svc)[at] == old) {
        hpo__studies(svc)[at] = s;
        r = 0;
    }
    pthread_rwlock_unlock(&svc->registry_lock);
    if (r == 0) {
        hpo__study_unref(old);
    }
    return r;
}

/* The request read or changes this copy: its reply checks the copy's writes (service.h). */
static void note_chain(struct hpo_service_request *req, struct study *s)
{
    if (req->chain == NULL) {
        hpo_storage_chain_ref(s->chain);
        req->chain = s->chain;
    }
}

/*
** Whether a pipelined write of the copy failed: then its memory may hold
** what was never stored, and nothing may read or change it any more.
*/
bool hpo__study_broken(const struct study *s)
{
    return hpo_storage_chain_failed(s->chain, 0, 0, NULL);
}

#define HPO__REPLACED_HOPS 64 /* copies found replaced meanwhile, before giving up */

/*
** Look up and lock a study; on failure fill req with not_found. A copy
** whose pipelined write failed is replaced by a fresh load first (at most
** twice; unavailable when that fails), except for a delete (it holds
** create_lock, and drops it all); a copy replaced meanwhile is looked up
** again. A settled read (service.h) waits, under the lock, until none of
** the copy's writes is in flight.
*/
struct study *hpo__study_acquire(struct hpo_service *svc, struct hpo_service_request *req)
{
    /*
    ** tries counts this request's own reloads; hops the copies it found
    ** replaced by another thread's reload (each one is progress, so they may
    ** be many while writes keep failing; still bounded).
    */
    for (int tries = 0, hops = 0;; hops++) {
        struct study *s = hpo__study_get(svc, req->study), *fresh;
        int r;

        if (s == NULL) {
            break;
        }
        pthread_mutex_lock(&s->lock);
        if (s->deleted || s->moved) {
            bool moved = !s->deleted, replaced;
            struct study *cur;
            pthread_mutex_unlock(&s->lock);
            cur = moved && hops < HPO__REPLACED_HOPS ? hpo__study_get(svc, req->study) : NULL;
            replaced = cur != NULL && cur != s;
            hpo__study_unref(cur);
            hpo__study_unref(s);
            if (replaced) {
                continue; /* replaced by a fresh copy meanwhile: use that one */
            }
            if (moved) {
                hpo_error_set(&req->err, -ESTALE, HPO_UNAVAILABLE, NULL,
                        "study '%.128s' was just reloaded; retry", req->study);
                return NULL;
            }
            break;
        }
        if (req->settled && !hpo__study_broken(s)) {
            /* Under its lock no write of it is added: those in flight resolve. */
            hpo_storage_chain_wait(s->chain);
        }
        if (req->op == HPO_SERVICE_STUDY_DELETE || !hpo__study_broken(s)) {
            note_chain(req, s);
            return s;
        }
        /*
        ** Its memory holds what was never stored: a fresh copy from storage,
        ** locked before another request can apply a write to it.
        */
        pthread_mutex_unlock(&s->lock);
        fresh = NULL;
        r = tries++ < 2 ? hpo__study_reload(svc, s, &fresh, &req->err)
                      : hpo_error_set(&req->err, -EIO, HPO_UNAVAILABLE, NULL,
                                "study '%.128s' cannot be read back now; retry", req->study);
        hpo__study_unref(s);
        if (r < 0) {
            return NULL;
        }
        if (fresh != NULL) {
            note_chain(req, fresh);
            return fresh;
        }
    }
    hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL, "no study named '%.128s'", req->study);
    return NULL;
}

void hpo__study_release(struct study *s)
{
    pthread_mutex_unlock(&s->lock);
    hpo__study_unref(s);
}


struct study **hpo__registry_snapshot(struct hpo_service *svc, size_t *ret_n)
{
    struct study **snap;
    size_t n;

    pthread_rwlock_rdlock(&svc->registry_lock);
    n = hpo__n_studies(svc);
    snap = malloc((n ? n : 1) * sizeof(*snap));
    if (snap == NULL) {
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        snap[i] = hpo__studies(svc)[i];
        atomic_fetch_add(&snap[i]->refs, 1);
    }
    pthread_rwlock_unlock(&svc->registry_lock);
    *ret_n = n;
    return snap;
}

void hpo__registry_snapshot_free(struct study **snap, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        hpo__study_unref(snap[i]);
    }
    free(snap);
}

void hpo_service_counts(struct hpo_service *svc, size_t *ret_studies, size_t ret_states[5])
{
    pthread_rwlock_rdlock(&svc->registry_lock);
    *ret_studies = hpo__n_studies(svc);
    for (int k = 0; k < HPO_STATE_COUNT; k++) {
        ret_states[k] = 0;
    }
    for (size_t i = 0; i < hpo__n_studies(svc); i++) {
        for (int k = 0; k < HPO_STATE_COUNT; k++) {
            ret_states[k] += hpo__studies(svc)[i]->history.count[k];
        }
    }
    pthread_rwlock_unlock(&svc->registry_lock);
}

void hpo_service_each_study(struct hpo_service *svc,
        void (*fn)(void *ctx, const char *name, const size_t counts[5]), void *ctx)
{
    pthread_rwlock_rdlock(&svc->registry_lock);
    for (size_t i = 0; i < hpo__n_studies(svc); i++) {
        const struct study *s = hpo__studies(svc)[i];
        size_t counts[5];
        for (int k = 0; k < 5; k++) {
            counts[k] = k < HPO_STATE_COUNT ? s->history.count[k] : 0;
        }
        fn(ctx, s->name, counts);
    }
    pthread_rwlock_unlock(&svc->registry_lock);
}

/* ---- operations on studies ------------------------------------------------ */

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
        hpo_oom();
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
        hpo_oom();
    }
    json_object_del(ca, "user_attrs");
    json_object_del(cb, "user_attrs");
    same = json_equal(ca, cb);
    json_decref(ca);
    json_decref(cb);
    return same;
}

void hpo__op_study_create(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct hpo_error *err = &req->err;
    const json_t *body = a->create.body;
    const json_t *name = json_object_get(body, "name");
    struct study *s = NULL, *old;
    struct hpo__write w = { 0 };
    struct hpo_op *op;
    uint64_t seed;

    pthread_mutex_lock(&svc->create_lock);
    old = json_is_string(name) ? hpo__study_get(svc, json_string_value(name)) : NULL;
    if (old != NULL) {
        seed = old->seed;
    }
    if (hpo__study_build(body, old ? &seed : NULL, &s, err) < 0) {
        goto out;
    }
    if (old != NULL) {
        pthread_mutex_lock(&old->lock);
        if (same_identity(old->definition, s->definition)) {
            hpo__reply(req, 200, hpo__study_to_json(old, true));
        } else {
            create_conflict(old, s, err);
        }
        pthread_mutex_unlock(&old->lock);
        goto out;
    }
    s->id = svc->next_study_id;
    if (hpo_storage_new_study_id(svc->storage, &s->id, err) < 0 && err->code != HPO_OK) {
        goto out; /* several daemons: the database numbers studies */
    }
    s->epoch = 1; /* a new study is its creator's at epoch 1 (pg.c) */
    s->created_at = hpo_now_ms();
    op = hpo__write_op(&w, HPO_OP_STUDY_PUT, s->id);
    op->name = s->name;
    op->text = hpo__write_keep(&w, json_dumps(s->definition, JSON_COMPACT));
    op->created_at = s->created_at;
    if (hpo__commit(svc, NULL, &w, err) < 0) {
        goto out;
    }
    svc->next_study_id++;
    hpo_storage_fence_set(svc->storage, s->id, s->epoch);
    if (hpo__registry_insert(svc, s) < 0) {
        hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    hpo__reply(req, 201, hpo__study_to_json(s, true));
    s = NULL;
out:
    pthread_mutex_unlock(&svc->create_lock);
    hpo__write_free(&w);
    hpo__study_free(s);
    hpo__study_unref(old);
}

void hpo__op_study_get(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_get(svc, req->study);
    json_t *sum;

    (void)a;
    if (s != NULL && req->settled) {
        /* Run again: committed state only, under the lock (hpo__study_acquire waits). */
        hpo__study_unref(s);
        s = hpo__study_acquire(svc, req);
        if (s != NULL) {
            hpo__reply(req, 200, hpo__study_to_json(s, true));
            hpo__study_release(s);
        }
        return;
    }
    if (s != NULL && hpo__study_broken(s)) {
        /* Reloaded first (its summary may count what was never stored). */
        hpo__study_unref(s);
        s = hpo__study_acquire(svc, req);
        if (s == NULL) {
            return;
        }
        hpo__study_release(s);
        s = hpo__study_get(svc, req->study);
    }
    if (s != NULL) {
        note_chain(req, s);
    }
    sum = s ? hpo__study_read_summary(s, true) : NULL;
    if (sum == NULL) {
        hpo_error_set(&req->err, -ENOENT, HPO_NOT_FOUND, NULL, "no study named '%.128s'",
                req->study);
    } else {
        hpo__reply(req, 200, sum);
    }
    hpo__study_unref(s);
}

void hpo__op_study_delete(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct hpo__write w = { 0 };
    struct study *s;

    (void)a;
    pthread_mutex_lock(&svc->create_lock);
    s = hpo__study_acquire(svc, req);
    if (s == NULL) {
        pthread_mutex_unlock(&svc->create_lock);
        return;
    }
    hpo__write_op(&w, HPO_OP_STUDY_DELETE, s->id);
    if (hpo__commit(svc, NULL, &w, &req->err) == 0) {
        s->deleted = true;
        pthread_mutex_lock(&s->cache_lock);
        s->summary_valid = false;
        pthread_mutex_unlock(&s->cache_lock);
        req->status = 204;
    }
    pthread_mutex_unlock(&s->lock);
    if (s->deleted) {
        hpo__registry_remove(svc, s);
    }
    hpo__study_unref(s);
    pthread_mutex_unlock(&svc->create_lock);
    hpo__write_free(&w);
    if (req->status == 204) {
        /* A study's big vectors go back to the system now, not at the next ask. */
        hpo_point_cache_clear();
        (void)malloc_trim(0);
    }
}

void hpo__merge_attrs(json_t *into, const json_t *patch)
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

void hpo__op_study_patch(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    const json_t *attrs = a->patch.attrs;
    struct hpo__write w = { 0 };
    json_t *def = NULL;
    struct study *s = hpo__study_acquire(svc, req);

    if (s == NULL) {
        return;
    }
    if (attrs != NULL && json_object_size(attrs) > 0) {
        struct hpo_op *op;
        def = json_deep_copy(s->definition);
        if (def == NULL || !json_is_object(json_object_get(def, "user_attrs"))) {
            hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            goto out;
        }
        hpo__merge_attrs(json_object_get(def, "user_attrs"), attrs);
        op = hpo__write_op(&w, HPO_OP_STUDY_SPEC, s->id);
        op->text = hpo__write_keep(&w, json_dumps(def, JSON_COMPACT));
        if (hpo__commit(svc, s, &w, &req->err) < 0) {
            goto out;
        }
        json_decref(s->definition);
        s->definition = def;
        def = NULL;
        pthread_mutex_lock(&s->cache_lock);
        s->summary_valid = false;
        pthread_mutex_unlock(&s->cache_lock);
    }
    hpo__reply(req, 200, hpo__study_to_json(s, true));
out:
    json_decref(def);
    hpo__write_free(&w);
    hpo__study_release(s);
}
