/*
** history.c: the in-memory trial record of a study.
*/
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "space.h"

static const char *const state_names[HPO_STATE_COUNT] = {
    "waiting", "running", "complete", "pruned", "failed",
};

const char *hpo_state_name(enum hpo_state state)
{
    if ((unsigned)state >= HPO_STATE_COUNT) {
        return NULL;
    }
    return state_names[state];
}

int hpo_state_parse(const char *name)
{
    for (int i = 0; i < HPO_STATE_COUNT; i++) {
        if (strcmp(state_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

void hpo_history_init(struct hpo_history *h, const struct hpo_space *space,
        const char *study_name, bool maximize)
{
    memset(h, 0, sizeof(*h));
    h->space = space;
    h->study_name = study_name;
    h->maximize = maximize;
    h->n_obj = 1;
    h->obj_maximize = &h->maximize;
}

void hpo_trial_free(struct hpo_trial *t)
{
    if (t == NULL) {
        return;
    }
    hpo_point_release(t->point);
    free(t->reports);
    json_decref(t->user_attrs);
    free(t->worker);
    free(t->results);
    free(t);
}

void hpo_history_finish(struct hpo_history *h)
{
    for (size_t i = 0; i < h->n_trials; i++) {
        hpo_trial_free(h->trials[i]);
    }
    free(h->trials);
    h->trials = NULL;
    h->n_trials = 0;
    h->cap_trials = 0;
}

/*
** One released big point kept for the next of the same size. A vector
** study hands out one new point per optimizer version and drops the last
** one's when its trial finishes; reusing that memory saves 2 * dim fresh
** pages per ask (the page faults cost more than everything else an ask of a
** 10^6-element vector does). Points of small studies are not kept, and a
** kept point that no ask took for KEEP_TICKS calls of hpo_point_cache_tick
** goes back to the system.
*/
#define POINT_KEEP_MIN ((size_t)1 << 20)
#define KEEP_TICKS 5

/*
** A one-slot cache: memory of `bytes` (counted in the vector memory) kept
** for the next request of the same `key`, freed after KEEP_TICKS ticks no
** request took it. All slots are under kept_lock.
*/
struct keep_slot {
    void *mem;
    size_t key;
    size_t bytes;
    unsigned ticks;
};

static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
/* The released big point (key: its dim). */
static struct keep_slot kept_point;
/*
** One released big upload buffer kept the same way (hpo_vector_buf_new,
** key: its length): a gradient upload of a 10^6-element vector is read
** into 8 MB that fresh pages would make the kernel zero first, which costs
** more than the copy.
*/
static struct keep_slot kept_buf;

/* The vector memory in use (big points, kept one included, and what callers took). */
static atomic_uint_fast64_t vec_used;
static atomic_uint_fast64_t vec_cap = UINT64_MAX;

void hpo_vector_memory_set_cap(uint64_t bytes)
{
    atomic_store(&vec_cap, bytes);
}

uint64_t hpo_vector_memory_used(void)
{
    return atomic_load(&vec_used);
}

uint64_t hpo_vector_memory_cap(void)
{
    return atomic_load(&vec_cap);
}

/* Count `bytes` in; with `bounded`, only if the total stays within the cap. */
static bool vec_take(uint64_t bytes, bool bounded)
{
    uint_fast64_t cur = atomic_load(&vec_used);
    uint64_t cap = atomic_load(&vec_cap);

    if (!bounded) {
        atomic_fetch_add(&vec_used, bytes);
        return true;
    }
    do {
        if (cur > cap || bytes > cap - cur) {
            return false;
        }
    } while (!atomic_compare_exchange_weak(&vec_used, &cur, cur + bytes));
    return true;
}

void hpo_vector_memory_give(uint64_t bytes)
{
    atomic_fetch_sub(&vec_used, bytes);
}

static size_t point_bytes(size_t dim)
{
    return sizeof(struct hpo_point) + (2 * dim + 1) * sizeof(double);
}

/* Free kept memory, giving its bytes back. */
static void slot_free(void *mem, size_t bytes)
{
    if (mem != NULL) {
        hpo_vector_memory_give(bytes);
        free(mem);
    }
}

/* Take the slot's memory out if it was kept for `key` (any key: SIZE_MAX), else NULL. */
static void *slot_take(struct keep_slot *k, size_t key, size_t *bytes)
{
    void *mem = NULL;

    pthread_mutex_lock(&kept_lock);
    if (k->mem != NULL && (key == SIZE_MAX || k->key == key)) {
        mem = k->mem;
        *bytes = k->bytes;
        k->mem = NULL;
    }
    pthread_mutex_unlock(&kept_lock);
    return mem;
}

/* Keep `mem` in the slot, freeing what it held. */
static void slot_put(struct keep_slot *k, void *mem, size_t key, size_t bytes)
{
    void *old;
    size_t old_bytes;

    pthread_mutex_lock(&kept_lock);
    old = k->mem;
    old_bytes = k->bytes;
    k->mem = mem;
    k->key = key;
    k->bytes = bytes;
    k->ticks = 0;
    pthread_mutex_unlock(&kept_lock);
    slot_free(old, old_bytes);
}

/* Free what the slot holds now. */
static void slot_drop(struct keep_slot *k)
{
    size_t bytes = 0;
    void *mem = slot_take(k, SIZE_MAX, &bytes);

    slot_free(mem, bytes);
}

/* One tick: free what the slot held for KEEP_TICKS of them. Returns whether it did. */
static bool slot_tick(struct keep_slot *k)
{
    void *mem = NULL;
    size_t bytes = 0;

    pthread_mutex_lock(&kept_lock);
    if (k->mem != NULL && ++k->ticks >= KEEP_TICKS) {
        mem = k->mem;
        bytes = k->bytes;
        k->mem = NULL;
    }
    pthread_mutex_unlock(&kept_lock);
    slot_free(mem, bytes);
    return mem != NULL;
}

bool hpo_vector_memory_take(uint64_t bytes)
{
    if (vec_take(bytes, true)) {
        return true;
    }
    /* The kept point and buffer are the things held that nobody needs. */
    slot_drop(&kept_point);
    slot_drop(&kept_buf);
    return vec_take(bytes, true);
}

static struct hpo_point *point_new(size_t dim, bool bounded)
{
    size_t bytes = point_bytes(dim);
    struct hpo_point *p = NULL;

    if (bytes >= POINT_KEEP_MIN) {
        size_t kept_bytes;
        p = slot_take(&kept_point, dim, &kept_bytes);
        if (p == NULL && !(bounded ? hpo_vector_memory_take(bytes) : vec_take(bytes, false))) {
            errno = ENOBUFS;
            return NULL;
        }
    }
    if (p == NULL) {
        p = malloc(bytes);
        if (p == NULL && bytes >= POINT_KEEP_MIN) {
            hpo_vector_memory_give(bytes);
        }
    }
    if (p != NULL) {
        p->refs = 1;
        p->dim = dim;
    }
    return p;
}

struct hpo_point *hpo_point_new(size_t dim)
{
    return point_new(dim, false);
}

struct hpo_point *hpo_point_new_bounded(size_t dim)
{
    return point_new(dim, true);
}

struct hpo_point *hpo_point_ref(struct hpo_point *p)
{
    if (p != NULL) {
        p->refs++;
    }
    return p;
}

void hpo_point_release(struct hpo_point *p)
{
    if (p == NULL || --p->refs > 0) {
        return;
    }
    if (point_bytes(p->dim) < POINT_KEEP_MIN) {
        free(p);
        return;
    }
    slot_put(&kept_point, p, p->dim, point_bytes(p->dim));
}

void hpo_point_cache_clear(void)
{
    slot_drop(&kept_point);
    slot_drop(&kept_buf);
}

bool hpo_point_cache_tick(void)
{
    bool point = slot_tick(&kept_point);
    bool buf = slot_tick(&kept_buf);

    return point || buf;
}

void *hpo_vector_buf_new(size_t bytes)
{
    if (bytes >= POINT_KEEP_MIN) {
        size_t kept_bytes;
        void *b = slot_take(&kept_buf, bytes, &kept_bytes);
        if (b != NULL) {
            hpo_vector_memory_give(kept_bytes);
            return b;
        }
    }
    return malloc(bytes ? bytes : 1);
}

void hpo_vector_buf_free(void *b, size_t bytes)
{
    /* Kept only within the cap: it is memory nobody needs. */
    if (b == NULL || bytes < POINT_KEEP_MIN || !vec_take(bytes, true)) {
        free(b);
        return;
    }
    slot_put(&kept_buf, b, bytes, bytes);
}

int hpo_trial_own_point(struct hpo_trial *t, size_t dim)
{
    struct hpo_point *p;

    if (t->point->refs == 1) {
        t->shares = -1;
        return 0;
    }
    p = hpo_point_new(dim);
    if (p == NULL) {
        return -ENOMEM;
    }
    memcpy(p->data, t->point->data, 2 * dim * sizeof(double));
    t->point->refs--;
    t->point = p;
    t->values = p->data;
    t->unit = p->data + dim;
    t->shares = -1;
    return 0;
}

void hpo_trial_share_point(struct hpo_trial *t, struct hpo_trial *src)
{
    if (t->point == src->point) {
        return;
    }
    hpo_point_release(t->point);
    t->point = src->point;
    t->point->refs++;
    t->values = src->values;
    t->unit = src->unit;
    t->shares = src->shares >= 0 ? src->shares : src->number;
}

static bool same_values(const double *a, const double *b, size_t n)
{
    /* Bitwise, so NaN (inactive) equals NaN and -0.0 differs from 0.0. */
    return memcmp(a, b, n * sizeof(double)) == 0;
}

bool hpo_history_dedupe(struct hpo_history *h, struct hpo_trial *t, size_t window)
{
    size_t dim = h->space->dim;

    for (size_t k = 1; k <= window && k <= (size_t)t->number; k++) {
        struct hpo_trial *o = h->trials[t->number - (int64_t)k];
        if (o->thin) {
            continue;
        }
        if (o->point == t->point) {
            return true;
        }
        if (same_values(o->values, t->values, dim)) {
            hpo_trial_share_point(t, o);
            return true;
        }
    }
    return false;
}

json_t *hpo_trial_attrs(struct hpo_trial *t)
{
    if (t->user_attrs == NULL) {
        t->user_attrs = json_object();
    }
    return t->user_attrs;
}

int hpo_trial_make_thin(struct hpo_trial *t, const struct hpo_space *space)
{
    size_t sd = space->scalar_dim;
    struct hpo_point *p;

    if (t->thin) {
        return 0;
    }
    p = hpo_point_new(sd);
    if (p == NULL) {
        return -ENOMEM;
    }
    memcpy(p->data, t->values, sd * sizeof(double));
    memcpy(p->data + sd, t->unit, sd * sizeof(double));
    hpo_point_release(t->point);
    t->point = p;
    t->values = p->data;
    t->unit = p->data + sd;
    t->thin = true;
    return 0;
}

struct hpo_trial *hpo_history_append_point(struct hpo_history *h, enum hpo_state state,
        struct hpo_point *point)
{
    size_t dim = h->space->dim;
    struct hpo_trial *t;

    if (h->n_trials == h->cap_trials) {
        size_t cap = h->cap_trials ? h->cap_trials * 2 : 64;
        struct hpo_trial **n = realloc(h->trials, cap * sizeof(*n));
        if (n == NULL) {
            return NULL;
        }
        h->trials = n;
        h->cap_trials = cap;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->point = point != NULL ? point : hpo_point_new(dim);
    if (t->point == NULL) {
        hpo_trial_free(t);
        return NULL;
    }
    t->values = t->point->data;
    t->unit = t->point->data + dim;
    t->shares = -1;
    if (point == NULL) {
        for (size_t j = 0; j < dim; j++) {
            t->values[j] = NAN;
            t->unit[j] = NAN;
        }
    }
    t->number = (int64_t)h->n_trials;
    t->state = state;
    t->value = NAN;
    t->retry_of = -1;
    h->trials[h->n_trials++] = t;
    h->count[state]++;
    return t;
}

struct hpo_trial *hpo_history_append(struct hpo_history *h, enum hpo_state state)
{
    return hpo_history_append_point(h, state, NULL);
}

void hpo_history_pop(struct hpo_history *h)
{
    struct hpo_trial *t;

    if (h->n_trials == 0) {
        return;
    }
    t = h->trials[--h->n_trials];
    h->count[t->state]--;
    hpo_trial_free(t);
}

void hpo_history_set_state(struct hpo_history *h, struct hpo_trial *t, enum hpo_state state)
{
    h->count[t->state]--;
    t->state = state;
    h->count[state]++;
}

int hpo_trial_add_report(struct hpo_trial *t, int64_t step, double value, bool *ret_added)
{
    size_t lo = 0, hi = t->n_reports;

    /* Binary search for the insertion point; reports usually arrive in order. */
    if (t->n_reports > 0 && t->reports[t->n_reports - 1].step < step) {
        lo = t->n_reports;
    } else {
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (t->reports[mid].step < step) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < t->n_reports && t->reports[lo].step == step) {
            if (ret_added) {
                *ret_added = false;
            }
            return 0;
        }
    }
    if (t->n_reports == t->cap_reports) {
        size_t cap = t->cap_reports ? t->cap_reports * 2 : 8;
        struct hpo_report *n = realloc(t->reports, cap * sizeof(*n));
        if (n == NULL) {
            return -ENOMEM;
        }
        t->reports = n;
        t->cap_reports = cap;
    }
    memmove(&t->reports[lo + 1], &t->reports[lo], (t->n_reports - lo) * sizeof(*t->reports));
    t->reports[lo].step = step;
    t->reports[lo].value = value;
    t->n_reports++;
    if (ret_added) {
        *ret_added = true;
    }
    return 0;
}

void hpo_trial_remove_report(struct hpo_trial *t, int64_t step)
{
    for (size_t i = 0; i < t->n_reports; i++) {
        if (t->reports[i].step == step) {
            memmove(&t->reports[i], &t->reports[i + 1],
                    (t->n_reports - i - 1) * sizeof(*t->reports));
            t->n_reports--;
            return;
        }
    }
}

const struct hpo_report *hpo_trial_report_at(const struct hpo_trial *t, int64_t step)
{
    size_t lo = 0, hi = t->n_reports;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->reports[mid].step < step) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < t->n_reports && t->reports[lo].step == step) {
        return &t->reports[lo];
    }
    return NULL;
}

const struct hpo_report *hpo_trial_last_report(const struct hpo_trial *t)
{
    return t->n_reports ? &t->reports[t->n_reports - 1] : NULL;
}

/* ---- undo by snapshot ------------------------------------------------------ */

void hpo_trial_undo_save(struct hpo_trial_undo *u, struct hpo_trial *t)
{
    *u = (struct hpo_trial_undo){
        .t = t,
        .state = t->state,
        .value = t->value,
        .created_at = t->created_at,
        .started_at = t->started_at,
        .completed_at = t->completed_at,
        .heartbeat_at = t->heartbeat_at,
        .retries = t->retries,
        .worker = t->worker,
        .results = t->results,
        .user_attrs = json_incref(t->user_attrs),
        .point = hpo_point_ref(t->point),
        .values = t->values,
        .unit = t->unit,
        .shares = t->shares,
        .thin = t->thin,
        .added_step = -1,
    };
}

void hpo_trial_undo_appended(struct hpo_trial_undo *u, struct hpo_trial *t)
{
    *u = (struct hpo_trial_undo){ .t = t, .added_step = -1, .appended = true };
}

void hpo_trial_undo_restore(struct hpo_trial_undo *u, struct hpo_history *h)
{
    struct hpo_trial *t = u->t;

    if (t == NULL) {
        return;
    }
    if (u->appended) {
        hpo_history_pop(h);
        *u = (struct hpo_trial_undo){ .added_step = -1 };
        return;
    }
    if (u->added_step >= 0) {
        hpo_trial_remove_report(t, u->added_step);
    }
    hpo_history_set_state(h, t, u->state);
    t->value = u->value;
    t->created_at = u->created_at;
    t->started_at = u->started_at;
    t->completed_at = u->completed_at;
    t->heartbeat_at = u->heartbeat_at;
    t->retries = u->retries;
    if (t->worker != u->worker) {
        free(t->worker);
        t->worker = u->worker;
    }
    if (t->results != u->results) {
        free(t->results);
        t->results = u->results;
    }
    json_decref(t->user_attrs);
    t->user_attrs = u->user_attrs;
    hpo_point_release(t->point);
    t->point = u->point;
    t->values = u->values;
    t->unit = u->unit;
    t->shares = u->shares;
    t->thin = u->thin;
    *u = (struct hpo_trial_undo){ .added_step = -1 };
}

void hpo_trial_undo_drop(struct hpo_trial_undo *u)
{
    if (u->t != NULL && !u->appended) {
        if (u->worker != u->t->worker) {
            free(u->worker);
        }
        if (u->results != u->t->results) {
            free(u->results);
        }
        json_decref(u->user_attrs);
        hpo_point_release(u->point);
    }
    *u = (struct hpo_trial_undo){ .added_step = -1 };
}
