/*
** dispatch.c: jobs on a pool of worker threads, one lane per study (see
** dispatch.h).
**
** Lanes live in a small hash table under `lock`, created when a keyed job
** finds none and freed when their last job finished. A lane is owned by one
** runner at a time: a pool worker that took it from the run queue, or the
** HTTP thread that ran its first job inline. A runner runs the lane's jobs
** until it is empty; an inline runner runs at most DRAIN_INLINE more (its
** own connections wait meanwhile) and hands the rest to the pool.
**
** Which jobs may run inline: a direct-mapped table of the recent mean
** duration of jobs per key and kind (an exponential average, by a hash of
** both: a study's asks apart from its tells and reports), so that a slow
** sampler (GP, TPE on a long history) or a slow commit never holds an HTTP
** thread; a kind of job of a study not seen yet starts on the pool.
**
** Replies held for the flush (hpo_dispatch_hold_replies, synchronous full):
** a worker runs work() with hpo_storage_defer_flush on, so a write returns
** once committed, before its fdatasync. The finished job takes the
** storage's flush ticket under `lock` and joins `held` (tickets never
** decrease along it); a drain pops the flushed prefix under `lock` and
** calls done() outside it. The finishing worker drains right after
** appending (a flush that completed in between has no other wake-up) and
** the flusher's callback drains after each flush. No job runs inline then:
** its write would wait on the HTTP thread for its own fdatasync.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/buf.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "dispatch.h"

#define N_BUCKETS    256
#define N_SPEEDS     1024
#define DRAIN_INLINE 4 /* jobs an inline runner runs after its own before handing off */

struct run {
    struct run *next;     /* the run queue */
    struct lane *lane;    /* a lane to drain, or */
    struct hpo_job *job;  /* one unkeyed job (the run is malloc'd) */
};

struct lane {
    char *key;
    uint64_t hash;
    struct hpo_job *head; /* waiting, oldest first */
    struct hpo_job **tail;
    struct lane *next;    /* hash chain */
    struct run run;       /* its entry in the run queue when a worker is to take it */
};

struct speed {
    uint64_t hash;
    uint32_t mean_us; /* exponential mean of the jobs' durations */
};

struct hpo_dispatch {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t *threads;
    unsigned n_threads;
    unsigned inline_max_us;
    /* Under `lock`: */
    bool stopping;
    struct run *runs_head; /* waiting for a worker, oldest first */
    struct run **runs_tail;
    struct lane *buckets[N_BUCKETS];
    struct speed speeds[N_SPEEDS];
    struct hpo_job *held_head; /* finished, done() waits for the flush of job->ticket */
    struct hpo_job **held_tail;
    pthread_cond_t released;   /* `held` became empty */
    struct hpo_storage *storage; /* set before the first submit; NULL: nothing held */
};

static uint64_t hash_of(const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h = (h ^ *p) * 1099511628211ull;
    }
    return h;
}

/* The speed table's hash: the key's, mixed with the kind. */
static uint64_t speed_hash(uint64_t key_hash, unsigned kind)
{
    return key_hash ^ ((uint64_t)(kind + 1) * 0x9e3779b97f4a7c15ull);
}

static struct lane **lane_slot(struct hpo_dispatch *dp, const char *key, uint64_t hash)
{
    struct lane **l = &dp->buckets[hash % N_BUCKETS];

    while (*l != NULL && ((*l)->hash != hash || strcmp((*l)->key, key) != 0)) {
        l = &(*l)->next;
    }
    return l;
}

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Under `lock`: fold one job's duration into its key's mean. */
static void note_speed(struct hpo_dispatch *dp, uint64_t hash, uint64_t us)
{
    struct speed *s = &dp->speeds[hash % N_SPEEDS];
    uint32_t u = us > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)us;

    if (s->hash != hash) {
        s->hash = hash;
        s->mean_us = u;
        return;
    }
    s->mean_us = (uint32_t)(((uint64_t)s->mean_us * 3 + u) / 4);
}

static bool is_quick(struct hpo_dispatch *dp, uint64_t hash)
{
    const struct speed *s = &dp->speeds[hash % N_SPEEDS];

    return s->hash == hash && s->mean_us < dp->inline_max_us;
}

/* Under `lock`: queue a run for the workers. */
static void push_run(struct hpo_dispatch *dp, struct run *r)
{
    r->next = NULL;
    *dp->runs_tail = r;
    dp->runs_tail = &r->next;
    pthread_cond_signal(&dp->wake);
}

static struct lane *lane_new(struct hpo_dispatch *dp, struct lane **slot, const char *key,
        uint64_t hash)
{
    struct lane *lane = calloc(1, sizeof(*lane));

    if (lane == NULL || (lane->key = strdup(key)) == NULL) {
        hpo_oom();
    }
    lane->hash = hash;
    lane->tail = &lane->head;
    lane->run.lane = lane;
    *slot = lane;
    return lane;
}

/* Under `lock`: the lane's next job, or NULL (then the lane is gone). */
static struct hpo_job *lane_next(struct hpo_dispatch *dp, struct lane *lane)
{
    struct hpo_job *job = lane->head;

    if (job != NULL) {
        lane->head = job->next;
        if (lane->head == NULL) {
            lane->tail = &lane->head;
        }
        job->next = NULL;
        return job;
    }
    /* The lane is empty: it goes, and the next keyed job makes a new one. */
    *lane_slot(dp, lane->key, lane->hash) = lane->next;
    free(lane->key);
    free(lane);
    return NULL;
}

/* Call done() for the jobs whose flush completed (without `lock`; any thread). */
static void drain_held(struct hpo_dispatch *dp)
{
    struct hpo_job *list = NULL, **end = &list;

    pthread_mutex_lock(&dp->lock);
    while (dp->held_head != NULL && hpo_storage_flushed(dp->storage, dp->held_head->ticket)) {
        *end = dp->held_head;
        end = &dp->held_head->next;
        dp->held_head = dp->held_head->next;
    }
    *end = NULL;
    if (dp->held_head == NULL) {
        dp->held_tail = &dp->held_head;
        pthread_cond_broadcast(&dp->released);
    }
    pthread_mutex_unlock(&dp->lock);
    while (list != NULL) {
        struct hpo_job *next = list->next;
        /* After done() the job may be gone (its request completed). */
        list->done(list);
        list = next;
    }
}

/* The job's work() returned (without `lock`): done() now, or once its commits are flushed. */
static void finish(struct hpo_dispatch *dp, struct hpo_job *job)
{
    /* A reply that acknowledges nothing goes now: a 503 while the database is down. */
    if (dp->storage == NULL || job->unheld) {
        job->done(job);
        return;
    }
    pthread_mutex_lock(&dp->lock);
    /* Taken under the lock, in the order of `held`: tickets never decrease along it. */
    job->ticket = hpo_storage_flush_ticket(dp->storage);
    job->next = NULL;
    *dp->held_tail = job;
    dp->held_tail = &job->next;
    pthread_mutex_unlock(&dp->lock);
    /* The flush may have completed before the append: its callback missed this job. */
    drain_held(dp);
}

static void flushed_cb(void *arg)
{
    drain_held(arg);
}

/* Called with `lock` held; returns with it held. Runs one job of `lane`. */
static void run_one(struct hpo_dispatch *dp, struct lane *lane, struct hpo_job *job)
{
    uint64_t t0;

    pthread_mutex_unlock(&dp->lock);
    t0 = now_us();
    /* Holding replies: the job's writes return before their flush (only workers run then). */
    hpo_storage_defer_flush(dp->storage != NULL);
    job->work(job);
    hpo_storage_defer_flush(false);
    pthread_mutex_lock(&dp->lock);
    note_speed(dp, speed_hash(lane->hash, job->kind), now_us() - t0);
    pthread_mutex_unlock(&dp->lock);
    /* After done() the job may be gone (its request completed). */
    finish(dp, job);
    pthread_mutex_lock(&dp->lock);
}

static void *worker_main(void *arg)
{
    struct hpo_dispatch *dp = arg;

    pthread_mutex_lock(&dp->lock);
    for (;;) {
        struct run *r;
        while (dp->runs_head == NULL && !dp->stopping) {
            pthread_cond_wait(&dp->wake, &dp->lock);
        }
        r = dp->runs_head;
        if (r == NULL) {
            break; /* stopping, nothing left */
        }
        dp->runs_head = r->next;
        if (dp->runs_head == NULL) {
            dp->runs_tail = &dp->runs_head;
        }
        if (r->lane == NULL) {
            struct hpo_job *job = r->job;
            pthread_mutex_unlock(&dp->lock);
            free(r);
            hpo_storage_defer_flush(dp->storage != NULL);
            job->work(job);
            hpo_storage_defer_flush(false);
            finish(dp, job);
            pthread_mutex_lock(&dp->lock);
            continue;
        }
        for (struct hpo_job *job = lane_next(dp, r->lane); job != NULL;
                job = lane_next(dp, r->lane)) {
            run_one(dp, r->lane, job);
        }
    }
    pthread_mutex_unlock(&dp->lock);
    return NULL;
}

void hpo_dispatch_submit(struct hpo_dispatch *dp, struct hpo_job *job)
{
    struct lane **l;
    uint64_t hash;

    job->next = NULL;
    if (job->key == NULL) {
        struct run *r = malloc(sizeof(*r));
        if (r == NULL) {
            hpo_oom();
        }
        r->lane = NULL;
        r->job = job;
        pthread_mutex_lock(&dp->lock);
        push_run(dp, r);
        pthread_mutex_unlock(&dp->lock);
        return;
    }
    hash = hash_of(job->key);
    pthread_mutex_lock(&dp->lock);
    l = lane_slot(dp, job->key, hash);
    if (*l == NULL) {
        /* No job of this study runs: a worker takes the new lane. */
        push_run(dp, &lane_new(dp, l, job->key, hash)->run);
    }
    /* Else a job of this study runs or waits: this one waits its turn in the lane. */
    *(*l)->tail = job;
    (*l)->tail = &job->next;
    pthread_mutex_unlock(&dp->lock);
}

bool hpo_dispatch_run_inline(struct hpo_dispatch *dp, struct hpo_job *job)
{
    struct lane **l, *lane;
    struct hpo_job *next;
    uint64_t hash, t0;

    if (job->key == NULL || dp->inline_max_us == 0 || dp->storage != NULL) {
        return false;
    }
    hash = hash_of(job->key);
    pthread_mutex_lock(&dp->lock);
    l = lane_slot(dp, job->key, hash);
    if (*l != NULL || !is_quick(dp, speed_hash(hash, job->kind))) {
        pthread_mutex_unlock(&dp->lock);
        return false;
    }
    /* The lane exists, empty, while this thread runs the job: later ones queue behind it. */
    lane = lane_new(dp, l, job->key, hash);
    pthread_mutex_unlock(&dp->lock);
    t0 = now_us();
    job->work(job);
    pthread_mutex_lock(&dp->lock);
    note_speed(dp, speed_hash(hash, job->kind), now_us() - t0);
    for (int i = 0; i < DRAIN_INLINE; i++) {
        next = lane_next(dp, lane);
        if (next == NULL) {
            lane = NULL;
            break;
        }
        run_one(dp, lane, next);
    }
    if (lane != NULL) {
        if (lane->head != NULL) {
            push_run(dp, &lane->run);
        } else {
            (void)lane_next(dp, lane); /* frees it */
        }
    }
    pthread_mutex_unlock(&dp->lock);
    return true;
}

int hpo_dispatch_create(unsigned threads, unsigned inline_max_us, struct hpo_dispatch **ret)
{
    struct hpo_dispatch *dp = calloc(1, sizeof(*dp));
    sigset_t all, old;
    int r = 0;

    if (dp == NULL) {
        return -ENOMEM;
    }
    dp->inline_max_us = inline_max_us;
    dp->runs_tail = &dp->runs_head;
    dp->held_tail = &dp->held_head;
    pthread_mutex_init(&dp->lock, NULL);
    pthread_cond_init(&dp->wake, NULL);
    pthread_cond_init(&dp->released, NULL);
    dp->threads = calloc(threads > 0 ? threads : 1, sizeof(*dp->threads));
    if (dp->threads == NULL) {
        hpo_dispatch_destroy(dp);
        return -ENOMEM;
    }
    /* Signals belong to the loop thread: the workers block them all. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i < (threads > 0 ? threads : 1); i++) {
        r = pthread_create(&dp->threads[i], NULL, worker_main, dp);
        if (r != 0) {
            break;
        }
        (void)pthread_setname_np(dp->threads[i], "hpod-worker");
        dp->n_threads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        hpo_dispatch_destroy(dp);
        return -r;
    }
    *ret = dp;
    return 0;
}

void hpo_dispatch_stop(struct hpo_dispatch *dp)
{
    pthread_mutex_lock(&dp->lock);
    dp->stopping = true;
    pthread_cond_broadcast(&dp->wake);
    pthread_mutex_unlock(&dp->lock);
    for (unsigned i = 0; i < dp->n_threads; i++) {
        pthread_join(dp->threads[i], NULL);
    }
    dp->n_threads = 0;
    /* Held replies go out as the flusher (running until the storage closes) catches up. */
    pthread_mutex_lock(&dp->lock);
    while (dp->held_head != NULL) {
        pthread_cond_wait(&dp->released, &dp->lock);
    }
    pthread_mutex_unlock(&dp->lock);
}

void hpo_dispatch_hold_replies(struct hpo_dispatch *dp, struct hpo_storage *st)
{
    pthread_mutex_lock(&dp->lock);
    dp->storage = st;
    pthread_mutex_unlock(&dp->lock);
    hpo_storage_on_flush(st, flushed_cb, dp);
}

void hpo_dispatch_detach(struct hpo_dispatch *dp)
{
    if (dp->storage != NULL) {
        /* Once it returned, no callback runs (storage.h); nothing is held after the stop. */
        hpo_storage_on_flush(dp->storage, NULL, NULL);
    }
}

void hpo_dispatch_destroy(struct hpo_dispatch *dp)
{
    if (dp == NULL) {
        return;
    }
    hpo_dispatch_stop(dp);
    hpo_dispatch_detach(dp);
    /* Only a stop cut short leaves runs behind (their requests were closed by MHD). */
    while (dp->runs_head != NULL) {
        struct run *r = dp->runs_head;
        dp->runs_head = r->next;
        if (r->lane != NULL) {
            *lane_slot(dp, r->lane->key, r->lane->hash) = r->lane->next;
            free(r->lane->key);
            free(r->lane);
        } else {
            free(r);
        }
    }
    free(dp->threads);
    pthread_cond_destroy(&dp->wake);
    pthread_cond_destroy(&dp->released);
    pthread_mutex_destroy(&dp->lock);
    free(dp);
}
