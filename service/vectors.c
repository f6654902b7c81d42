/*
** vectors.c: the binary side of vector params: downloads, gradient uploads
** kept for the next tell, and which finished trials' vectors stay in
** memory or in storage (service-int.h).
*/
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/finite.h"
#include "../storage/reader.h"
#include "service-int.h"

/* Whether finished trial t's vectors may leave memory now. */
bool hpo__vectors_evictable(struct hpo_service *svc, struct study *s, size_t k)
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
void hpo__vectors_evict(struct hpo_service *svc, struct study *s, size_t around)
{
    size_t lo = around > 32 ? around - 32 : 0;
    size_t hi = around + 32 < s->history.n_trials ? around + 32 : s->history.n_trials - 1;

    if (svc->reader == NULL || !s->evictable) {
        return;
    }
    for (size_t k = lo; k <= hi; k++) {
        if (hpo__vectors_evictable(svc, s, k)) {
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
void hpo__vectors_retain(struct hpo_service *svc, struct study *s)
{
    struct hpo_history *h = &s->history;
    struct hpo__write w = { 0 };
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
                struct hpo_op *op = hpo__write_op(&w, HPO_OP_PARAM_DELETE, s->id);
                op->number = t->number;
                op->index = (int64_t)k;
            }
        }
        t->dropped = true;
    }
    if (hpo__commit(svc, s, &w, &err) < 0) {
        for (size_t i = 0; i < HPO_BUF_N(&w.ops, struct hpo_op); i++) {
            h->trials[HPO_BUF_AT(&w.ops, struct hpo_op, i).number]->dropped = false;
        }
    }
    hpo__write_free(&w);
    free(keep);
}


/* The pending binary gradient of trial `number` for param index `param`, or NULL. */
const double *hpo__gradient_pending(const struct study *s, int64_t number, size_t param)
{
    for (size_t i = 0; i < HPO_BUF_N(&s->grads, struct pending_gradient); i++) {
        if (HPO_BUF_AT(&s->grads, struct pending_gradient, i).number == number && HPO_BUF_AT(&s->grads, struct pending_gradient, i).param == param) {
            return HPO_BUF_AT(&s->grads, struct pending_gradient, i).data;
        }
    }
    return NULL;
}

/*
** Copy the pending binary gradients of trial `number` into `grad` (dim
** doubles, each param at its offset; NULL to only test). With `consume`, the
** uploads are freed and removed from the study. Returns whether there was any.
*/
bool hpo__gradient_take(struct study *s, int64_t number, double *grad, bool consume)
{
    bool any = false;

    for (size_t i = 0; i < HPO_BUF_N(&s->grads, struct pending_gradient); i++) {
        struct pending_gradient *g = &HPO_BUF_AT(&s->grads, struct pending_gradient, i);
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
        for (size_t i = 0; i < HPO_BUF_N(&s->grads, struct pending_gradient); i++) {
            if (HPO_BUF_AT(&s->grads, struct pending_gradient, i).number == number) {
                /* Kept for the next upload of that size (the next trial's, usually). */
                hpo_vector_buf_free(HPO_BUF_AT(&s->grads, struct pending_gradient, i).data,
                        s->space->params[HPO_BUF_AT(&s->grads, struct pending_gradient, i).param]
                                        .width * sizeof(double));
                hpo_vector_memory_give(HPO_BUF_AT(&s->grads, struct pending_gradient, i).held);
            } else {
                HPO_BUF_AT(&s->grads, struct pending_gradient, k++) = HPO_BUF_AT(&s->grads, struct pending_gradient, i);
            }
        }
        s->grads.len = k * sizeof(struct pending_gradient);
    }
    return any;
}

/* The error of a request refused by the vector memory's cap (--max-vector-memory). */
void hpo__vector_memory_full(struct hpo_error *err)
{
    hpo_error_set(err, -ENOBUFS, HPO_UNAVAILABLE, NULL,
            "vector memory is at its cap (%llu of %llu bytes held; max-vector-memory); "
            "retry once trials finish",
            (unsigned long long)hpo_vector_memory_used(),
            (unsigned long long)hpo_vector_memory_cap());
}

static const struct hpo_param *vector_param(struct study *s, struct hpo_service_request *req)
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

void hpo__op_param_get(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_acquire(svc, req);
    const struct hpo_param *p;
    struct hpo_trial *t;
    size_t n;

    if (s == NULL) {
        return;
    }
    t = hpo__trial_lookup(s, req);
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
        hpo_point_ref(t->point);
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
        hpo_storage_settle(svc->storage);
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
    hpo__study_release(s);
}

/*
** The param a gradient upload names, checked as op_gradient_put checks it
** (running trial, known param, a sampler that takes gradients, a float); NULL
** with req->err filled otherwise. Called with the study locked.
*/
static const struct hpo_param *gradient_target(struct study *s, struct hpo_service_request *req,
        struct hpo_trial **ret_trial)
{
    struct hpo_trial *t = hpo__trial_running(s, req);
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
    struct hpo_service_request req = { .op = HPO_SERVICE_GRADIENT_PUT, .study = study,
        .number = number, .name = name };
    const struct hpo_param *p;
    struct hpo_trial *t = NULL;
    struct study *s;

    hpo_error_clear(&req.err);
    s = hpo__study_acquire(svc, &req);
    p = s != NULL ? gradient_target(s, &req, &t) : NULL;
    if (p != NULL) {
        *ret_bytes = p->width * sizeof(double);
    }
    if (s != NULL) {
        hpo__study_release(s);
    }
    hpo_storage_chain_unref(req.chain); /* no reply to check */
    if (p == NULL) {
        *err = req.err;
        return -EINVAL;
    }
    return 0;
}
/* Uploads this big count in the vector memory (as big points do). */
#define VECTOR_HELD_MIN ((size_t)1 << 20)

void hpo__op_gradient_put(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_acquire(svc, req);
    struct pending_gradient *grads;
    const struct hpo_param *p;
    const void *src = req->data;
    size_t held;
    struct hpo_trial *t = NULL;
    double *copy;
    size_t n, k;

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
    k = req->data_finite ? n : hpo_first_nonfinite(copy, n);
    if (k < n) {
        free(copy);
        hpo_error_set(&req->err, -EINVAL, HPO_INVALID_ARGUMENT, "gradient",
                "element %zu is not finite", k);
        goto out;
    }
    /* A big upload is kept only within the vector memory's cap. */
    held = n * sizeof(double) >= VECTOR_HELD_MIN ? n * sizeof(double) : 0;
    if (held > 0 && !hpo_vector_memory_take(held)) {
        free(copy);
        hpo__vector_memory_full(&req->err);
        goto out;
    }
    /* A second upload for the same trial and param replaces the first. */
    for (size_t i = 0; i < HPO_BUF_N(&s->grads, struct pending_gradient); i++) {
        if (HPO_BUF_AT(&s->grads, struct pending_gradient, i).number == t->number && HPO_BUF_AT(&s->grads, struct pending_gradient, i).param == (size_t)(p - s->space->params)) {
            free(HPO_BUF_AT(&s->grads, struct pending_gradient, i).data);
            hpo_vector_memory_give(HPO_BUF_AT(&s->grads, struct pending_gradient, i).held);
            HPO_BUF_AT(&s->grads, struct pending_gradient, i).data = copy;
            HPO_BUF_AT(&s->grads, struct pending_gradient, i).held = held;
            req->status = 204;
            goto out;
        }
    }
    grads = hpo_buf_add(&s->grads, sizeof(*grads));
    if (grads == NULL) {
        free(copy);
        hpo_vector_memory_give(held);
        hpo_error_set(&req->err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        goto out;
    }
    *grads = (struct pending_gradient){ .number = t->number,
        .param = (size_t)(p - s->space->params), .data = copy, .held = held };
    req->status = 204;
out:
    hpo__study_release(s);
}
