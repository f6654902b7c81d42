/*
** dispatch.c: jobs on the libuv pool, one lane per study (see dispatch.h).
**
** Lanes live in a small hash table under `lock`, created when a keyed job
** finds none and freed when their last job finished. A lane's runner is one
** uv work item that runs the lane's jobs until it is empty. Finished jobs go
** to a list the loop drains on a uv_async, so a runner never waits for the
** loop between jobs.
**
** With hpo_dispatch_hold_replies, a runner does not wait for the flush of
** its writes either (hpo_storage_defer_flush): each finished job takes the
** storage's flush ticket, in finishing order (so tickets never decrease
** along the list), and the loop calls done() only for the list's prefix
** that is flushed; the flusher's callback wakes the loop for the rest.
*/
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/buf.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "dispatch.h"

#define N_BUCKETS 256

struct lane {
    char *key;
    struct hpo_job *head; /* waiting, oldest first */
    struct hpo_job **tail;
    struct lane *next; /* hash chain */
};

struct work {
    uv_work_t w;
    struct hpo_dispatch *dp;
    struct lane *lane;   /* NULL: a single unkeyed job */
    struct hpo_job *job; /* the first job to run */
};

struct hpo_dispatch {
    uv_loop_t *loop;
    void (*after_done)(void *ctx);
    void *ctx;
    uv_async_t async;
    pthread_mutex_t lock;
    /* Under `lock`: */
    struct lane *buckets[N_BUCKETS];
    struct hpo_job *done_head; /* finished, done() not yet called */
    struct hpo_job **done_tail;
    struct hpo_storage *storage; /* hold replies until its flush; NULL: do not */
};

static size_t bucket_of(const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h = (h ^ *p) * 1099511628211ull;
    }
    return (size_t)(h % N_BUCKETS);
}

static struct lane **lane_slot(struct hpo_dispatch *dp, const char *key)
{
    struct lane **l = &dp->buckets[bucket_of(key)];

    while (*l != NULL && strcmp((*l)->key, key) != 0) {
        l = &(*l)->next;
    }
    return l;
}

static void finished(struct hpo_dispatch *dp, struct hpo_job *job)
{
    pthread_mutex_lock(&dp->lock);
    job->next = NULL;
    /* Under the lock: tickets grow along the list. */
    job->ticket = dp->storage != NULL ? hpo_storage_flush_ticket(dp->storage) : 0;
    *dp->done_tail = job;
    dp->done_tail = &job->next;
    pthread_mutex_unlock(&dp->lock);
    uv_async_send(&dp->async);
}

/* Worker thread: the first job, then the lane's next ones until it is empty. */
static void work_cb(uv_work_t *w)
{
    struct work *wk = w->data;
    struct hpo_dispatch *dp = wk->dp;
    struct hpo_job *job = wk->job;

    hpo_storage_defer_flush(dp->storage != NULL);
    while (job != NULL) {
        job->work(job);
        finished(dp, job);
        job = NULL;
        if (wk->lane == NULL) {
            break;
        }
        pthread_mutex_lock(&dp->lock);
        job = wk->lane->head;
        if (job != NULL) {
            wk->lane->head = job->next;
            if (wk->lane->head == NULL) {
                wk->lane->tail = &wk->lane->head;
            }
        } else {
            /* The lane is empty: it goes, and the next keyed job makes a new one. */
            struct lane **l = lane_slot(dp, wk->lane->key);
            *l = wk->lane->next;
            free(wk->lane->key);
            free(wk->lane);
            wk->lane = NULL;
        }
        pthread_mutex_unlock(&dp->lock);
    }
    hpo_storage_defer_flush(false);
}

static void after_work_cb(uv_work_t *w, int status)
{
    (void)status;
    free(w->data);
}

/* Loop thread: call done() of every finished job, in order. */
static void async_cb(uv_async_t *a)
{
    struct hpo_dispatch *dp = a->data;
    struct hpo_job *list = NULL;
    struct hpo_job **end = &list;

    pthread_mutex_lock(&dp->lock);
    /* The flushed prefix; the rest waits for the flusher's wake-up. */
    while (dp->done_head != NULL && (dp->storage == NULL ||
                                            hpo_storage_flushed(dp->storage, dp->done_head->ticket))) {
        *end = dp->done_head;
        end = &dp->done_head->next;
        dp->done_head = dp->done_head->next;
    }
    *end = NULL;
    if (dp->done_head == NULL) {
        dp->done_tail = &dp->done_head;
    }
    pthread_mutex_unlock(&dp->lock);
    while (list != NULL) {
        struct hpo_job *next = list->next;
        list->next = NULL;
        list->done(list);
        list = next;
    }
    dp->after_done(dp->ctx);
}

static void start(struct hpo_dispatch *dp, struct lane *lane, struct hpo_job *job)
{
    struct work *wk = malloc(sizeof(*wk));

    if (wk == NULL) {
        hpo_oom();
    }
    wk->w.data = wk;
    wk->dp = dp;
    wk->lane = lane;
    wk->job = job;
    if (uv_queue_work(dp->loop, &wk->w, work_cb, after_work_cb) != 0) {
        hpo_log(HPO_LOG_ERR, "uv_queue_work failed");
        abort();
    }
}

static void flushed_cb(void *arg)
{
    struct hpo_dispatch *dp = arg;

    uv_async_send(&dp->async);
}

void hpo_dispatch_hold_replies(struct hpo_dispatch *dp, struct hpo_storage *st)
{
    dp->storage = st;
    hpo_storage_on_flush(st, flushed_cb, dp);
}

void hpo_dispatch_detach(struct hpo_dispatch *dp)
{
    if (dp->storage != NULL) {
        hpo_storage_on_flush(dp->storage, NULL, NULL);
    }
}

void hpo_dispatch_submit(struct hpo_dispatch *dp, struct hpo_job *job)
{
    struct lane **l;
    struct lane *lane;

    job->next = NULL;
    if (job->key == NULL) {
        start(dp, NULL, job);
        return;
    }
    pthread_mutex_lock(&dp->lock);
    l = lane_slot(dp, job->key);
    if (*l != NULL) {
        /* A job of this study runs: this one waits its turn in the lane. */
        *(*l)->tail = job;
        (*l)->tail = &job->next;
        pthread_mutex_unlock(&dp->lock);
        return;
    }
    lane = calloc(1, sizeof(*lane));
    if (lane == NULL || (lane->key = strdup(job->key)) == NULL) {
        hpo_oom();
    }
    lane->tail = &lane->head;
    *l = lane;
    pthread_mutex_unlock(&dp->lock);
    start(dp, lane, job);
}

int hpo_dispatch_create(uv_loop_t *loop, void (*after_done)(void *ctx), void *ctx,
        struct hpo_dispatch **ret)
{
    struct hpo_dispatch *dp = calloc(1, sizeof(*dp));
    int r;

    if (dp == NULL) {
        return -ENOMEM;
    }
    dp->loop = loop;
    dp->after_done = after_done;
    dp->ctx = ctx;
    dp->done_tail = &dp->done_head;
    pthread_mutex_init(&dp->lock, NULL);
    r = uv_async_init(loop, &dp->async, async_cb);
    if (r < 0) {
        pthread_mutex_destroy(&dp->lock);
        free(dp);
        return r;
    }
    dp->async.data = dp;
    *ret = dp;
    return 0;
}

void hpo_dispatch_destroy(struct hpo_dispatch *dp)
{
    if (dp == NULL) {
        return;
    }
    pthread_mutex_destroy(&dp->lock);
    free(dp);
}
