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
** Held replies. Pipelined writes (hpo_dispatch_pipeline): work()
** runs with hpo_storage_pipeline on, so a study's write returns once
** accepted and its lane runs the next job while the writer commits it;
** `seen_from` (resolved before work) and `seen_upto` (accepted after it,
** taken under `lock`, so it never decreases along `held`) bound the writes
** the job could see; a job whose one study copy (job->chain) has no write
** in flight as it ends waits for nobody else's. The flush
** (hpo_dispatch_hold_replies, synchronous full): work() runs with
** hpo_storage_defer_flush on, so a write returns once committed, before
** its fdatasync; the job's flush ticket is taken
** once its writes resolved, in the order of `held` (so tickets never
** decrease along it either). A drain pops the releasable prefix under
** `lock` and calls done() outside it; done() (the HTTP layer's) checks that
** none of the writes the job saw failed before it lets the reply out. The
** finishing worker drains right after appending (a resolution or flush in
** between has no other wake-up), and the storage's callback drains after
** each flush and each group transaction holding pipelined writes.
**
** A lane lives while a job of it runs, waits or is held: a lane request
** may run inline only when no job of its study runs or waits. With
** pipelined writes it runs as a worker would, and when its writes are
** still in flight it is held: the HTTP layer suspends the connection and
** hands it to hpo_dispatch_release. Under synchronous full (the flush) an
** inline run is always pipelined and always held: its reply waits on the
** held list for the flush like a worker's, and the HTTP thread never waits
** for an fdatasync; without pipelined writes nothing runs inline under the
** flush (its write would wait on the HTTP thread for its own fdatasync).
*/
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "thread.h"
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
    bool running;         /* a runner owns it */
    unsigned held;        /* its jobs in `held` (the lane lives while any is) */
    struct lane *next;    /* hash chain */
    struct run run;       /* its entry in the run queue when a worker is to take it */
};

struct speed {
    uint64_t hash;
    uint32_t mean_us; /* exponential mean of the jobs' durations */
    /*
    ** Exponential mean (0..255) of how often a job found another of its
    ** study in flight (running, waiting or held) when it came: a study
    ** with one client keeps it near 0, one with several well above.
    */
    uint32_t crowd;
};

#define CROWDED 32 /* crowd at or above which an inline run is pipelined */

struct hpo_dispatch {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t *threads;
    unsigned n_threads;
    unsigned inline_max_us;
    /* The forward threads (hpo_dispatch_forwarders), for remote jobs. */
    pthread_cond_t fwd_wake;
    pthread_t *fwd_threads;
    /* Under `lock`: */
    unsigned n_fwd; /* forward threads started (0 again once joined) */
    unsigned fwd_waiting, fwd_busy; /* remote jobs queued for a forward thread, running on one */
    bool stopping;
    struct run *runs_head; /* waiting for a worker, oldest first */
    struct run **runs_tail;
    struct run *fwd_head;  /* remote jobs waiting for a forward thread, oldest first */
    struct run **fwd_tail;
    struct lane *buckets[N_BUCKETS];
    struct speed speeds[N_SPEEDS];
    struct hpo_job *held_head; /* finished, done() waits for their writes (and flush) */
    struct hpo_job **held_tail;
    pthread_cond_t released;   /* `held` became empty and no done() of it runs */
    unsigned releasing;        /* jobs taken off `held` whose done() has not returned */
    struct hpo_storage *storage; /* set before the first submit; NULL: nothing held */
    bool hold_flush;  /* replies wait for the flush (hpo_dispatch_hold_replies) */
    bool pipelined;   /* writes are pipelined (hpo_dispatch_pipeline) */
    bool round_commits; /* inline runs' writes wait for their thread's round (hpo_dispatch_round_commits) */
};

/* job->ticket before the flush ticket of a job is taken (once its writes resolved). */
#define NO_TICKET UINT64_MAX

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
        s->crowd = 0;
        return;
    }
    s->mean_us = (uint32_t)(((uint64_t)s->mean_us * 3 + u) / 4);
}

/* Under `lock`: fold whether a job found its study busy into its key's crowd. */
static void note_crowd(struct hpo_dispatch *dp, uint64_t hash, bool busy)
{
    struct speed *s = &dp->speeds[hash % N_SPEEDS];

    if (s->hash == hash) {
        s->crowd = (s->crowd * 7 + (busy ? 255u : 0u)) / 8;
    }
}

static bool is_quick(struct hpo_dispatch *dp, uint64_t hash)
{
    const struct speed *s = &dp->speeds[hash % N_SPEEDS];

    return s->hash == hash && s->mean_us < dp->inline_max_us;
}

/* Under `lock`: append `r` to a run queue (the workers' or the forward threads') and wake one. */
static void queue_push(struct run ***tail, pthread_cond_t *wake, struct run *r)
{
    r->next = NULL;
    **tail = r;
    *tail = &r->next;
    pthread_cond_signal(wake);
}

/* Under `lock` (waited on): the oldest run of a queue; NULL once stopping with none left. */
static struct run *queue_wait(struct hpo_dispatch *dp, struct run **head, struct run ***tail,
        pthread_cond_t *wake)
{
    struct run *r;

    while (*head == NULL && !dp->stopping) {
        pthread_cond_wait(wake, &dp->lock);
    }
    r = *head;
    if (r != NULL) {
        *head = r->next;
        if (*head == NULL) {
            *tail = head;
        }
    }
    return r;
}

/* Under `lock`: queue a run for the workers. */
static void push_run(struct hpo_dispatch *dp, struct run *r)
{
    queue_push(&dp->runs_tail, &dp->wake, r);
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
    lane->running = true;
    *slot = lane;
    return lane;
}

/* Under `lock`: free a lane nobody runs, with no job waiting or held. */
static void lane_free_if_idle(struct hpo_dispatch *dp, struct lane *lane)
{
    if (lane->running || lane->head != NULL || lane->held > 0) {
        return;
    }
    *lane_slot(dp, lane->key, lane->hash) = lane->next;
    free(lane->key);
    free(lane);
}

/*
** Under `lock`: the lane's next job, or NULL: then its runner lets it go
** (it is freed, unless jobs of it are held).
*/
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
    /* The lane is empty: it goes, and the next keyed job makes a new one (or runs it). */
    lane->running = false;
    lane_free_if_idle(dp, lane);
    return NULL;
}

/*
** Under `lock`: whether the held job may be answered: every pipelined write
** accepted before it finished resolved, and (synchronous full) the flush
** covering the commits made until then completed. Its flush ticket is taken
** when it is first found resolved, in the order of `held`: tickets never
** decrease along it.
*/
static bool releasable(struct hpo_dispatch *dp, struct hpo_job *job)
{
    if (dp->pipelined && hpo_storage_resolved(dp->storage) < job->seen_upto) {
        return false;
    }
    if (job->ticket == NO_TICKET) {
        job->ticket = hpo_storage_flush_ticket(dp->storage);
    }
    return !dp->hold_flush || hpo_storage_flushed(dp->storage, job->ticket);
}

/* Call done() for the held jobs now releasable (without `lock`; any thread). */
static void drain_held(struct hpo_dispatch *dp)
{
    struct hpo_job *list = NULL, **end = &list;

    unsigned n = 0;

    pthread_mutex_lock(&dp->lock);
    while (dp->held_head != NULL && releasable(dp, dp->held_head)) {
        struct lane *lane = dp->held_head->lane;
        *end = dp->held_head;
        end = &dp->held_head->next;
        dp->held_head = dp->held_head->next;
        n++;
        if (lane != NULL) {
            lane->held--;
            lane_free_if_idle(dp, lane);
        }
    }
    *end = NULL;
    if (dp->held_head == NULL) {
        dp->held_tail = &dp->held_head;
    }
    dp->releasing += n;
    pthread_mutex_unlock(&dp->lock);
    while (list != NULL) {
        struct hpo_job *next = list->next;
        /* After done() the job may be gone (its request completed). */
        list->done(list);
        list = next;
    }
    pthread_mutex_lock(&dp->lock);
    dp->releasing -= n;
    if (dp->held_head == NULL && dp->releasing == 0) {
        /* The stop waits for this: every held reply went out. */
        pthread_cond_broadcast(&dp->released);
    }
    pthread_mutex_unlock(&dp->lock);
}

/*
** The job's work() returned (without `lock`): done() now, or once the
** writes it could see resolved (and were flushed). `lane`: its lane, kept
** while the job is held (a job of an idle lane may run inline: nothing of
** its study may be in flight then).
*/
static void finish(struct hpo_dispatch *dp, struct hpo_job *job, struct lane *lane)
{
    /* A reply that acknowledges nothing goes now: a 503 while the database is down. */
    if (dp->storage == NULL || job->unheld) {
        job->done(job);
        return;
    }
    pthread_mutex_lock(&dp->lock);
    if (dp->pipelined && job->chain != NULL && hpo_storage_chain_idle(job->chain)) {
        /*
        ** It depends on one study copy, none of whose writes is in flight:
        ** not on writes of other studies still queued (their batch may wait
        ** for a database that is down), nor on the replies held before it.
        */
        job->seen_upto = hpo_storage_accepted(dp->storage);
        job->ticket = hpo_storage_flush_ticket(dp->storage);
        if (!dp->hold_flush || hpo_storage_flushed(dp->storage, job->ticket)) {
            pthread_mutex_unlock(&dp->lock);
            job->done(job);
            return;
        }
    }
    /* Taken under the lock, in the order of `held`: the numbers never decrease along it. */
    job->seen_upto = dp->pipelined ? hpo_storage_accepted(dp->storage) : 0;
    job->ticket = NO_TICKET;
    job->lane = lane;
    if (lane != NULL) {
        lane->held++;
    }
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

/*
** work() with replies held: the job's writes return once committed, before
** their flush (synchronous full), or once accepted, before their commit
** (pipelined); `seen_from` is what had resolved before it looked.
*/
static void work_held(struct hpo_dispatch *dp, struct hpo_job *job)
{
    job->seen_from = dp->pipelined ? hpo_storage_resolved(dp->storage) : 0;
    hpo_storage_defer_flush(dp->hold_flush);
    hpo_storage_pipeline(dp->pipelined);
    job->work(job);
    hpo_storage_pipeline(false);
    hpo_storage_defer_flush(false);
}

/* Called with `lock` held; returns with it held. Runs one job of `lane`. */
static void run_one(struct hpo_dispatch *dp, struct lane *lane, struct hpo_job *job)
{
    uint64_t t0;

    pthread_mutex_unlock(&dp->lock);
    t0 = now_us();
    work_held(dp, job);
    pthread_mutex_lock(&dp->lock);
    note_speed(dp, speed_hash(lane->hash, job->kind), now_us() - t0);
    pthread_mutex_unlock(&dp->lock);
    /* After done() the job may be gone (its request completed). */
    finish(dp, job, lane);
    pthread_mutex_lock(&dp->lock);
}

static void *worker_main(void *arg)
{
    struct hpo_dispatch *dp = arg;

    pthread_mutex_lock(&dp->lock);
    for (;;) {
        struct run *r = queue_wait(dp, &dp->runs_head, &dp->runs_tail, &dp->wake);

        if (r == NULL) {
            break; /* stopping, nothing left */
        }
        if (r->lane == NULL) {
            struct hpo_job *job = r->job;
            pthread_mutex_unlock(&dp->lock);
            free(r);
            work_held(dp, job);
            finish(dp, job, NULL);
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

/*
** Called with `lock` held: `job` on the pool as it comes, without its lane;
** a remote one on the forward threads when there are any.
*/
static void push_alone(struct hpo_dispatch *dp, struct hpo_job *job)
{
    struct run *r = malloc(sizeof(*r));

    if (r == NULL) {
        hpo_oom();
    }
    r->lane = NULL;
    r->job = job;
    if (job->remote && dp->n_fwd > 0) {
        dp->fwd_waiting++;
        queue_push(&dp->fwd_tail, &dp->fwd_wake, r);
        return;
    }
    push_run(dp, r);
}

/* A forward thread: remote jobs, one at a time, oldest first (no lanes). */
static void *forwarder_main(void *arg)
{
    struct hpo_dispatch *dp = arg;

    pthread_mutex_lock(&dp->lock);
    for (;;) {
        struct run *r = queue_wait(dp, &dp->fwd_head, &dp->fwd_tail, &dp->fwd_wake);
        struct hpo_job *job;

        if (r == NULL) {
            break; /* stopping, nothing left */
        }
        job = r->job;
        dp->fwd_waiting--;
        dp->fwd_busy++;
        pthread_mutex_unlock(&dp->lock);
        free(r);
        work_held(dp, job);
        finish(dp, job, NULL);
        pthread_mutex_lock(&dp->lock);
        dp->fwd_busy--;
    }
    pthread_mutex_unlock(&dp->lock);
    return NULL;
}

/*
** Called with `lock` held. The write `lane`'s runner waits for may take
** until the database is back (hpo_storage_stalled): `job`, and the jobs
** waiting behind the runner, are refused (503 at once, nothing done)
** rather than left waiting with it. All of them, so the study's requests
** still take effect in their order: none of these does.
*/
static void refuse_lane(struct hpo_dispatch *dp, struct lane *lane, struct hpo_job *job)
{
    struct hpo_job *next;

    for (struct hpo_job *j = lane->head; j != NULL; j = next) {
        next = j->next;
        j->next = NULL;
        j->refused = true;
        push_alone(dp, j);
    }
    lane->head = NULL;
    lane->tail = &lane->head;
    job->refused = true;
    push_alone(dp, job);
}

void hpo_dispatch_submit(struct hpo_dispatch *dp, struct hpo_job *job)
{
    struct lane **l;
    uint64_t hash;

    job->next = NULL;
    if (job->key == NULL) {
        pthread_mutex_lock(&dp->lock);
        push_alone(dp, job);
        pthread_mutex_unlock(&dp->lock);
        return;
    }
    hash = hash_of(job->key);
    pthread_mutex_lock(&dp->lock);
    l = lane_slot(dp, job->key, hash);
    if (*l != NULL && (*l)->running && dp->storage != NULL && hpo_storage_stalled(dp->storage)) {
        refuse_lane(dp, *l, job);
        pthread_mutex_unlock(&dp->lock);
        return;
    }
    if (*l == NULL) {
        /* No job of this study runs: a worker takes the new lane. */
        push_run(dp, &lane_new(dp, l, job->key, hash)->run);
    } else if (!(*l)->running) {
        /* Only held jobs keep it: a worker takes it again. */
        (*l)->running = true;
        push_run(dp, &(*l)->run);
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
    bool pipelined;

    if (job->key == NULL || dp->inline_max_us == 0 || (dp->hold_flush && !dp->pipelined)) {
        return false;
    }
    hash = hash_of(job->key);
    pthread_mutex_lock(&dp->lock);
    l = lane_slot(dp, job->key, hash);
    note_crowd(dp, speed_hash(hash, job->kind), *l != NULL);
    /*
    ** Only when no job of the study runs or waits (jobs of it may be held:
    ** this one is pipelined after them, as on a worker).
    */
    if ((*l != NULL && ((*l)->running || (*l)->head != NULL)) ||
            !is_quick(dp, speed_hash(hash, job->kind))) {
        pthread_mutex_unlock(&dp->lock);
        return false;
    }
    /*
    ** Round commits (hpo_dispatch_round_commits): always pipelined; the HTTP
    ** thread commits the writes of its whole round in one group transaction
    ** at its end, and the replies wait for it unsuspended (STYLE rule 33).
    ** Else pipelined, as on a worker, when the study is crowded (its jobs often
    ** find others in flight): this thread never waits for a commit, so it
    ** serves its other connections (and the study's next job) while the
    ** writer commits; a thread holding all the connections of a busy study
    ** would otherwise commit one request at a time. A study with one client
    ** and nothing in flight waits here for its own commit instead, and its
    ** reply goes at once, without suspending the connection and resuming it
    ** from the writer: two thread wake-ups less per request.
    */
    pipelined = dp->pipelined &&
            (dp->hold_flush || dp->round_commits || *l != NULL ||
                    dp->speeds[speed_hash(hash, job->kind) % N_SPEEDS].crowd >= CROWDED ||
                    hpo_storage_resolved(dp->storage) < hpo_storage_accepted(dp->storage));
    /* The lane is this thread's while it runs the job: later ones queue behind it. */
    lane = *l != NULL ? *l : lane_new(dp, l, job->key, hash);
    lane->running = true;
    pthread_mutex_unlock(&dp->lock);
    /* Round commits: this thread commits the writes at its round's end, not the writer. */
    hpo_storage_lead_later(dp->round_commits);
    t0 = now_us();
    if (pipelined) {
        work_held(dp, job);
    } else {
        job->work(job);
    }
    pthread_mutex_lock(&dp->lock);
    note_speed(dp, speed_hash(hash, job->kind), now_us() - t0);
    if (pipelined) {
        job->seen_upto = hpo_storage_accepted(dp->storage);
        /*
        ** Writes it could see still in flight, or (the flush) commits it could
        ** see not yet known to be flushed: held, in its lane, until released.
        */
        job->held = dp->hold_flush || hpo_storage_resolved(dp->storage) < job->seen_upto;
        if (job->held) {
            job->ticket = NO_TICKET;
            job->lane = lane;
            lane->held++;
        }
    }
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
            (void)lane_next(dp, lane); /* lets it go */
        }
    }
    pthread_mutex_unlock(&dp->lock);
    hpo_storage_lead_later(false);
    return true;
}

void hpo_dispatch_release(struct hpo_dispatch *dp, struct hpo_job *job)
{
    pthread_mutex_lock(&dp->lock);
    job->next = NULL;
    *dp->held_tail = job;
    dp->held_tail = &job->next;
    pthread_mutex_unlock(&dp->lock);
    drain_held(dp);
}

int hpo_dispatch_create(unsigned threads, unsigned inline_max_us, struct hpo_dispatch **ret)
{
    struct hpo_dispatch *dp = calloc(1, sizeof(*dp));
    int r = 0;

    if (dp == NULL) {
        return -ENOMEM;
    }
    dp->inline_max_us = inline_max_us;
    dp->runs_tail = &dp->runs_head;
    dp->fwd_tail = &dp->fwd_head;
    dp->held_tail = &dp->held_head;
    pthread_mutex_init(&dp->lock, NULL);
    pthread_cond_init(&dp->wake, NULL);
    pthread_cond_init(&dp->fwd_wake, NULL);
    pthread_cond_init(&dp->released, NULL);
    dp->threads = calloc(threads > 0 ? threads : 1, sizeof(*dp->threads));
    if (dp->threads == NULL) {
        hpo_dispatch_destroy(dp);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < (threads > 0 ? threads : 1); i++) {
        r = hpo_thread_start(&dp->threads[i], NULL, worker_main, dp, "hpod-worker");
        if (r != 0) {
            break;
        }
        dp->n_threads++;
    }
    if (r != 0) {
        hpo_dispatch_destroy(dp);
        return r;
    }
    *ret = dp;
    return 0;
}

int hpo_dispatch_forwarders(struct hpo_dispatch *dp, unsigned n)
{
    int r = 0;

    dp->fwd_threads = calloc(n > 0 ? n : 1, sizeof(*dp->fwd_threads));
    if (dp->fwd_threads == NULL) {
        return -ENOMEM;
    }
    for (unsigned i = 0; i < n && r == 0; i++) {
        r = hpo_thread_start(&dp->fwd_threads[i], NULL, forwarder_main, dp, "hpod-forward");
        if (r == 0) {
            pthread_mutex_lock(&dp->lock);
            dp->n_fwd++;
            pthread_mutex_unlock(&dp->lock);
        }
    }
    return r;
}

void hpo_dispatch_forward_load(struct hpo_dispatch *dp, unsigned *waiting, unsigned *busy)
{
    pthread_mutex_lock(&dp->lock);
    *waiting = dp->fwd_waiting;
    *busy = dp->fwd_busy;
    pthread_mutex_unlock(&dp->lock);
}

void hpo_dispatch_stop(struct hpo_dispatch *dp)
{
    unsigned n_fwd;

    pthread_mutex_lock(&dp->lock);
    dp->stopping = true;
    pthread_cond_broadcast(&dp->wake);
    pthread_cond_broadcast(&dp->fwd_wake);
    n_fwd = dp->n_fwd;
    pthread_mutex_unlock(&dp->lock);
    for (unsigned i = 0; i < dp->n_threads; i++) {
        pthread_join(dp->threads[i], NULL);
    }
    dp->n_threads = 0;
    for (unsigned i = 0; i < n_fwd; i++) {
        pthread_join(dp->fwd_threads[i], NULL);
    }
    pthread_mutex_lock(&dp->lock);
    dp->n_fwd = 0; /* joined; remote jobs submitted now wait with the others, never run */
    /* Held replies go out as the flusher (running until the storage closes) catches up. */
    while (dp->held_head != NULL || dp->releasing > 0) {
        pthread_cond_wait(&dp->released, &dp->lock);
    }
    pthread_mutex_unlock(&dp->lock);
}

void hpo_dispatch_hold_replies(struct hpo_dispatch *dp, struct hpo_storage *st)
{
    pthread_mutex_lock(&dp->lock);
    dp->storage = st;
    dp->hold_flush = true;
    pthread_mutex_unlock(&dp->lock);
    hpo_storage_on_flush(st, flushed_cb, dp);
}

void hpo_dispatch_pipeline(struct hpo_dispatch *dp, struct hpo_storage *st)
{
    if (!hpo_storage_pipelines(st)) {
        return;
    }
    pthread_mutex_lock(&dp->lock);
    dp->storage = st;
    dp->pipelined = true;
    pthread_mutex_unlock(&dp->lock);
    hpo_storage_on_flush(st, flushed_cb, dp);
}

void hpo_dispatch_round_commits(struct hpo_dispatch *dp)
{
    pthread_mutex_lock(&dp->lock);
    dp->round_commits = dp->pipelined;
    pthread_mutex_unlock(&dp->lock);
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
    while (dp->fwd_head != NULL) {
        struct run *r = dp->fwd_head;
        dp->fwd_head = r->next;
        free(r);
    }
    free(dp->threads);
    free(dp->fwd_threads);
    pthread_cond_destroy(&dp->fwd_wake);
    pthread_cond_destroy(&dp->wake);
    pthread_cond_destroy(&dp->released);
    pthread_mutex_destroy(&dp->lock);
    free(dp);
}
