/*
** storage.c: the public storage functions, dispatched to the backend the
** database names: a postgresql:// or postgres:// URI opens PostgreSQL
** (pg.c), anything else is a SQLite path (sqlite.c).
*/
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "storage-int.h"

bool hpo_storage_is_postgresql(const char *db)
{
    return db != NULL &&
            (strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0);
}

int hpo_storage_open(const char *path, const struct hpo_storage_options *opt,
        struct hpo_storage **ret_storage, struct hpo_error *err)
{
    if (hpo_storage_is_postgresql(path)) {
        return hpo__pg_open(path, opt, ret_storage, err);
    }
    return hpo__sqlite_open(path, opt, ret_storage, err);
}

uint64_t hpo_storage_checksum(const void *data, size_t len)
{
    return hpo__xxh64(data, len);
}

int hpo_storage_load(struct hpo_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    return st->ops->load(st, cb, ctx, err);
}

void hpo_storage_settle(struct hpo_storage *st)
{
    if (st->ops->settle != NULL) {
        st->ops->settle(st);
    }
}

int hpo_storage_start(struct hpo_storage *st)
{
    return st->ops->start(st);
}

int hpo_storage_write(struct hpo_storage *st, struct hpo_write *w, struct hpo_error *err)
{
    return st->ops->write(st, w, err);
}

bool hpo_storage_healthy(struct hpo_storage *st)
{
    return st->ops->healthy(st);
}

bool hpo_storage_stalled(struct hpo_storage *st)
{
    return st->ops->stalled != NULL && st->ops->stalled(st);
}

uint64_t hpo_storage_ticks(struct hpo_storage *st)
{
    return st->ops->ticks(st);
}

void hpo_storage_stats(struct hpo_storage *st, uint64_t *ret_commits, uint64_t *ret_writes)
{
    st->ops->stats(st, ret_commits, ret_writes);
}

void hpo_storage_metrics(struct hpo_storage *st, const struct hpo_hist **ret_commit_us,
        const struct hpo_hist **ret_batch_writes, uint64_t *ret_failed)
{
    st->ops->metrics(st, ret_commit_us, ret_batch_writes, ret_failed);
}

void hpo_storage_close(struct hpo_storage *st)
{
    if (st != NULL) {
        st->ops->close(st);
    }
}

void hpo__storage_pause(struct hpo_storage *st, bool pause)
{
    if (st->ops->pause != NULL) {
        st->ops->pause(st, pause);
    }
}

size_t hpo__storage_queued(struct hpo_storage *st)
{
    return st->ops->queued != NULL ? st->ops->queued(st) : 0;
}

_Thread_local bool hpo__defer_flush;

void hpo_storage_defer_flush(bool on)
{
    hpo__defer_flush = on;
}

uint64_t hpo_storage_flush_ticket(struct hpo_storage *st)
{
    return st->ops->flush_ticket != NULL ? st->ops->flush_ticket(st) : 0;
}

bool hpo_storage_flushed(struct hpo_storage *st, uint64_t ticket)
{
    return st->ops->flushed == NULL || st->ops->flushed(st, ticket);
}

void hpo_storage_on_flush(struct hpo_storage *st, void (*fn)(void *arg), void *arg)
{
    if (st->ops->on_flush != NULL) {
        st->ops->on_flush(st, fn, arg);
    }
}
void hpo_storage_fence_set(struct hpo_storage *st, int64_t study_id, int64_t epoch)
{
    if (st->ops->fence_set != NULL) {
        st->ops->fence_set(st, study_id, epoch);
    }
}

int hpo_storage_new_study_id(struct hpo_storage *st, int64_t *ret_id, struct hpo_error *err)
{
    if (st->ops->new_study_id == NULL) {
        return -ENOTSUP;
    }
    return st->ops->new_study_id(st, ret_id, err);
}

int hpo_storage_load_study(struct hpo_storage *st, const char *name,
        const struct hpo_load_callbacks *cb, void *ctx, struct hpo_error *err)
{
    if (st->ops->load_study == NULL) {
        return -ENOTSUP;
    }
    return st->ops->load_study(st, name, cb, ctx, err);
}

/* ---- pipelined writes (storage.h) -------------------------------------- */

_Thread_local bool hpo__pipeline;

void hpo_storage_pipeline(bool on)
{
    hpo__pipeline = on;
}

_Thread_local bool hpo__lead_later;
_Thread_local uint64_t hpo__lead_upto;

void hpo_storage_lead_later(bool on)
{
    hpo__lead_later = on;
}

bool (*hpo__lead_busy)(void);

void hpo_storage_lead_busy(bool (*busy)(void))
{
    hpo__lead_busy = busy;
}

uint64_t hpo_storage_lead_pending(void)
{
    return hpo__lead_upto;
}

bool hpo_storage_lead(struct hpo_storage *st, void (*wake)(void *arg), void *arg)
{
    return st->ops->lead != NULL && st->ops->lead(st, wake, arg);
}

bool hpo_storage_pipelines(struct hpo_storage *st)
{
    return st->ops->accepted != NULL;
}

uint64_t hpo_storage_accepted(struct hpo_storage *st)
{
    return st->ops->accepted != NULL ? st->ops->accepted(st) : 0;
}

uint64_t hpo_storage_resolved(struct hpo_storage *st)
{
    return st->ops->resolved != NULL ? st->ops->resolved(st) : 0;
}

uint64_t hpo_storage_last_failed(struct hpo_storage *st)
{
    return st->ops->last_failed != NULL ? st->ops->last_failed(st) : 0;
}

struct hpo_write_chain *hpo_storage_chain_new(void)
{
    struct hpo_write_chain *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    atomic_init(&c->refs, 1);
    atomic_init(&c->failed, 0);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->idle, NULL);
    return c;
}

void hpo_storage_chain_ref(struct hpo_write_chain *c)
{
    atomic_fetch_add(&c->refs, 1);
}

void hpo_storage_chain_unref(struct hpo_write_chain *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1) {
        return;
    }
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

bool hpo_storage_chain_failed(struct hpo_write_chain *c, uint64_t after, uint64_t upto,
        struct hpo_error *err)
{
    uint64_t f = atomic_load(&c->failed);

    if (f == 0 || f <= after || (upto != 0 && f > upto)) {
        return false;
    }
    if (err != NULL) {
        *err = c->err; /* written before `failed` */
    }
    return true;
}

void hpo_storage_chain_wait(struct hpo_write_chain *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->in_flight > 0) {
        pthread_cond_wait(&c->idle, &c->lock);
    }
    pthread_mutex_unlock(&c->lock);
}

bool hpo_storage_chain_idle(struct hpo_write_chain *c)
{
    bool idle;

    pthread_mutex_lock(&c->lock);
    idle = c->in_flight == 0;
    pthread_mutex_unlock(&c->lock);
    return idle;
}

void hpo__chain_accept(struct hpo_write_chain *c)
{
    hpo_storage_chain_ref(c);
    pthread_mutex_lock(&c->lock);
    c->in_flight++;
    pthread_mutex_unlock(&c->lock);
}

void hpo__chain_fail(struct hpo_write_chain *c, uint64_t aseq, const struct hpo_error *err)
{
    if (atomic_load(&c->failed) == 0) {
        /* Only the writer fails chains: no other thread writes `err` or `failed`. */
        c->err = *err;
        atomic_store(&c->failed, aseq);
    }
}

void hpo__chain_resolve(struct hpo_write_chain *c)
{
    pthread_mutex_lock(&c->lock);
    if (--c->in_flight == 0) {
        pthread_cond_broadcast(&c->idle);
    }
    pthread_mutex_unlock(&c->lock);
    hpo_storage_chain_unref(c);
}

int hpo__write_dependent_failure(struct hpo_write *w)
{
    return hpo_error_set(&w->err, -EIO, HPO_UNAVAILABLE, NULL,
            "an earlier write of this study failed: %s", w->chain->err.message);
}

/* Room for a copy of the values of `w` (0: none to copy), or SIZE_MAX when it cannot be pipelined. */
static size_t copy_size(const struct hpo_write *w)
{
    size_t n = 0;

    for (size_t i = 0; i < w->n_ops; i++) {
        const struct hpo_op *op = &w->ops[i];
        const char *texts[] = { op->name, op->text, op->trial.worker, op->trial.results };

        if (op->parts != NULL) {
            return SIZE_MAX;
        }
        for (size_t j = 0; j < sizeof(texts) / sizeof(texts[0]); j++) {
            n += texts[j] != NULL ? strlen(texts[j]) + 1 : 0;
        }
        n += op->vector != NULL ? op->len * sizeof(double) : 0;
        n += op->blob != NULL ? op->len : 0;
        if (n > HPO__PIPELINE_MAX) {
            return SIZE_MAX;
        }
    }
    return n;
}

static char *copy_text(char **at, const char *text)
{
    char *c = *at;
    size_t n;

    if (text == NULL) {
        return NULL;
    }
    n = strlen(text) + 1;
    memcpy(c, text, n);
    *at += n;
    return c;
}

/*
** The blocks copies live in. A copy is made on the request's thread and
** freed on the writer's, and an ask's is 1.4 KB: past glibc's per-thread
** cache, so each malloc took the arena's slow path (malloc_consolidate,
** and the thread's heap grown and trimmed again with mprotect). Copies
** up to COPY_BLOCK bytes come from a few kept blocks instead (under ASan
** none are kept, so it still sees every use after free).
*/
#define COPY_BLOCK 4096
#if defined(__SANITIZE_ADDRESS__)
#define COPY_KEEP 0
#else
#define COPY_KEEP 32
#endif

union copy_head {
    size_t cap;          /* bytes of the block, this head included */
    max_align_t aligned; /* the write after it keeps malloc's alignment */
};

static const size_t copy_keep = COPY_KEEP; /* (a variable: no "always false" at 0) */
static pthread_mutex_t copy_lock = PTHREAD_MUTEX_INITIALIZER;
static union copy_head *copy_kept[COPY_KEEP + 1];
static size_t copy_n; /* under copy_lock */

static union copy_head *copy_block(size_t need)
{
    union copy_head *h = NULL;

    if (need <= COPY_BLOCK) {
        pthread_mutex_lock(&copy_lock);
        if (copy_n > 0) {
            h = copy_kept[--copy_n];
        }
        pthread_mutex_unlock(&copy_lock);
        need = COPY_BLOCK;
    }
    if (h == NULL) {
        h = malloc(need);
        if (h != NULL) {
            h->cap = need;
        }
    }
    return h;
}

void hpo__write_copy_free(struct hpo_write *c)
{
    union copy_head *h;

    if (c == NULL) {
        return;
    }
    h = (union copy_head *)(void *)c - 1;
    if (h->cap == COPY_BLOCK) {
        pthread_mutex_lock(&copy_lock);
        if (copy_n < copy_keep) {
            copy_kept[copy_n++] = h;
            h = NULL;
        }
        pthread_mutex_unlock(&copy_lock);
    }
    free(h);
}

/* One block holding the write, its ops and every value (vectors first, for their alignment). */
struct hpo_write *hpo__write_copy(const struct hpo_write *w)
{
    size_t vals = copy_size(w);
    size_t head = sizeof(*w) + w->n_ops * sizeof(struct hpo_op);
    union copy_head *block;
    struct hpo_write *c;
    char *at;

    if (vals == SIZE_MAX) {
        return NULL;
    }
    block = copy_block(sizeof(*block) + head + vals);
    if (block == NULL) {
        return NULL;
    }
    c = (struct hpo_write *)(void *)(block + 1);
    *c = *w;
    c->ops = (struct hpo_op *)(void *)(c + 1);
    memcpy(c->ops, w->ops, w->n_ops * sizeof(struct hpo_op));
    at = (char *)c + head;
    for (size_t i = 0; i < c->n_ops; i++) {
        struct hpo_op *op = &c->ops[i];
        if (op->vector != NULL) {
            memcpy(at, op->vector, op->len * sizeof(double));
            op->vector = (const double *)(const void *)at;
            at += op->len * sizeof(double);
        }
    }
    for (size_t i = 0; i < c->n_ops; i++) {
        struct hpo_op *op = &c->ops[i];
        if (op->blob != NULL) {
            memcpy(at, op->blob, op->len);
            op->blob = at;
            at += op->len;
        }
        op->name = copy_text(&at, op->name);
        op->text = copy_text(&at, op->text);
        op->trial.worker = copy_text(&at, op->trial.worker);
        op->trial.results = copy_text(&at, op->trial.results);
    }
    hpo__write_reset(c);
    return c;
}

void hpo__write_accept(struct hpo_write *w, struct hpo_write *c, atomic_uint_fast64_t *accepted,
        struct hpo_write ***tail)
{
    c->aseq = atomic_load(accepted) + 1;
    atomic_store(accepted, c->aseq);
    hpo__chain_accept(c->chain);
    **tail = c;
    *tail = &c->next;
    w->result = 0;
    w->done = true;
    hpo_error_clear(&w->err);
}
