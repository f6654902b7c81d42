/*
** storage.c: the public storage functions, dispatched to the backend the
** database names: a postgresql:// or postgres:// URI opens PostgreSQL
** (pg.c), anything else is a SQLite path (sqlite.c).
*/
#include <errno.h>
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

int hpo_storage_load(struct hpo_storage *st, const struct hpo_load_callbacks *cb, void *ctx,
        struct hpo_error *err)
{
    return st->ops->load(st, cb, ctx, err);
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
