/*
** test-dispatch.c: the request dispatcher (daemon/dispatch.c): a study's
** jobs run one at a time in submission order whichever thread submits or
** runs them, inline runs only on an idle lane of a quick study, jobs queued
** behind an inline run follow it in order, every submitted job's done()
** runs once; with replies held for SQLite's pipelined flush, no done()
** runs before the flush of the commits made before its job finished, and
** nothing runs inline without pipelined writes (with them an inline run is
** held for the flush as well); with pipelined writes, an inline run of a study with
** one client waits for its own commit while a crowded study's is pipelined
** (STYLE rule 35); remote jobs run on the forward threads while every
** worker waits, and on the workers when there are none. The daemon is an executable, not a library, so the file is
** included (as test-config.c does).
*/
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../daemon/dispatch.c"

#include <cmocka.h>

#define N_SUBMITTERS 4
#define PER_SUBMITTER 500

struct tjob {
    struct hpo_job job; /* first: the job maps back by a cast */
    int submitter, seq;
    unsigned sleep_us;
    pthread_mutex_t *gate; /* work waits for it when set */
    struct shared *sh;
};

struct shared {
    atomic_int running;  /* jobs of the key running now */
    atomic_int overlaps; /* times two ran at once */
    atomic_int done;
    atomic_int worked;
    pthread_mutex_t order_lock;
    int last_seq[N_SUBMITTERS]; /* the last seq run per submitter */
    int out_of_order;
    int order[16]; /* the run order of a few tagged jobs */
    int n_order;
};

static void work_cb(struct hpo_job *job)
{
    struct tjob *t = (struct tjob *)job;
    struct shared *sh = t->sh;

    if (atomic_fetch_add(&sh->running, 1) != 0) {
        atomic_fetch_add(&sh->overlaps, 1);
    }
    if (t->gate != NULL) {
        pthread_mutex_lock(t->gate);
        pthread_mutex_unlock(t->gate);
    }
    if (t->sleep_us > 0) {
        usleep(t->sleep_us);
    }
    pthread_mutex_lock(&sh->order_lock);
    if (t->submitter >= 0) {
        if (t->seq <= sh->last_seq[t->submitter]) {
            sh->out_of_order++;
        }
        sh->last_seq[t->submitter] = t->seq;
    } else if (sh->n_order < 16) {
        sh->order[sh->n_order++] = t->seq;
    }
    pthread_mutex_unlock(&sh->order_lock);
    atomic_fetch_add(&sh->worked, 1);
    atomic_fetch_sub(&sh->running, 1);
}

static void done_cb(struct hpo_job *job)
{
    struct tjob *t = (struct tjob *)job;

    atomic_fetch_add(&t->sh->done, 1);
}

static void shared_init(struct shared *sh)
{
    memset(sh, 0, sizeof(*sh));
    pthread_mutex_init(&sh->order_lock, NULL);
    for (int i = 0; i < N_SUBMITTERS; i++) {
        sh->last_seq[i] = -1;
    }
}

static void tjob_init(struct tjob *t, struct shared *sh, const char *key, int submitter, int seq)
{
    memset(t, 0, sizeof(*t));
    t->job.work = work_cb;
    t->job.done = done_cb;
    t->job.key = key;
    t->submitter = submitter;
    t->seq = seq;
    t->sh = sh;
}

/* Wait (at most 20 s) until `n` done() calls were seen. */
static void wait_done(struct shared *sh, int n)
{
    for (int i = 0; i < 20000 && atomic_load(&sh->done) < n; i++) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(&sh->done), n);
}

struct submitter {
    struct hpo_dispatch *dp;
    struct tjob *jobs;
    int id;
};

static void *submit_main(void *arg)
{
    struct submitter *s = arg;

    for (int i = 0; i < PER_SUBMITTER; i++) {
        struct tjob *t = &s->jobs[i];
        /* Some go inline, as an HTTP thread's would; the rest are submitted. */
        if (i % 3 != 0 || !hpo_dispatch_run_inline(s->dp, &t->job)) {
            hpo_dispatch_submit(s->dp, &t->job);
        } else {
            done_cb(&t->job); /* the caller of an inline run answers itself */
        }
    }
    return NULL;
}

/* Jobs of one key from several threads, inline and submitted: one at a time, in order. */
static void test_lane_order(void **state)
{
    struct hpo_dispatch *dp = NULL;
    struct shared sh;
    static struct tjob jobs[N_SUBMITTERS][PER_SUBMITTER];
    struct submitter subs[N_SUBMITTERS];
    pthread_t threads[N_SUBMITTERS];

    (void)state;
    shared_init(&sh);
    assert_int_equal(hpo_dispatch_create(3, 100000, &dp), 0);
    for (int s = 0; s < N_SUBMITTERS; s++) {
        for (int i = 0; i < PER_SUBMITTER; i++) {
            tjob_init(&jobs[s][i], &sh, "study", s, i);
        }
        subs[s] = (struct submitter){ dp, jobs[s], s };
        assert_int_equal(pthread_create(&threads[s], NULL, submit_main, &subs[s]), 0);
    }
    for (int s = 0; s < N_SUBMITTERS; s++) {
        pthread_join(threads[s], NULL);
    }
    wait_done(&sh, N_SUBMITTERS * PER_SUBMITTER);
    assert_int_equal(atomic_load(&sh.worked), N_SUBMITTERS * PER_SUBMITTER);
    assert_int_equal(atomic_load(&sh.overlaps), 0);
    assert_int_equal(sh.out_of_order, 0);
    hpo_dispatch_destroy(dp);
}

/* A study not seen yet, or a slow one, is not run inline; a quick one is. */
static void test_inline_only_quick(void **state)
{
    struct hpo_dispatch *dp = NULL;
    struct shared sh;
    struct tjob a, b, c, d;

    (void)state;
    shared_init(&sh);
    assert_int_equal(hpo_dispatch_create(2, 2000, &dp), 0);
    tjob_init(&a, &sh, "quick", -1, 1);
    assert_false(hpo_dispatch_run_inline(dp, &a.job)); /* unknown */
    hpo_dispatch_submit(dp, &a.job);
    wait_done(&sh, 1);
    tjob_init(&b, &sh, "quick", -1, 2);
    assert_true(hpo_dispatch_run_inline(dp, &b.job));
    assert_int_equal(atomic_load(&sh.worked), 2);
    assert_int_equal(atomic_load(&sh.done), 1); /* done() is the caller's after an inline run */
    /* A slow study: its jobs stay on the pool. */
    tjob_init(&c, &sh, "slow", -1, 3);
    c.sleep_us = 20000;
    hpo_dispatch_submit(dp, &c.job);
    wait_done(&sh, 2);
    tjob_init(&d, &sh, "slow", -1, 4);
    assert_false(hpo_dispatch_run_inline(dp, &d.job));
    /* Kinds apart: a study's slow asks do not keep its quick tells off the HTTP thread. */
    tjob_init(&c, &sh, "mixed", -1, 5);
    c.job.kind = 1;
    c.sleep_us = 20000;
    hpo_dispatch_submit(dp, &c.job);
    wait_done(&sh, 3);
    tjob_init(&b, &sh, "mixed", -1, 6);
    b.job.kind = 2;
    hpo_dispatch_submit(dp, &b.job);
    wait_done(&sh, 4);
    tjob_init(&b, &sh, "mixed", -1, 7);
    b.job.kind = 2;
    assert_true(hpo_dispatch_run_inline(dp, &b.job));
    tjob_init(&c, &sh, "mixed", -1, 8);
    c.job.kind = 1;
    assert_false(hpo_dispatch_run_inline(dp, &c.job));
    /* Without a key: never inline. */
    tjob_init(&d, &sh, NULL, -1, 4);
    assert_false(hpo_dispatch_run_inline(dp, &d.job));
    hpo_dispatch_destroy(dp);
}

struct inline_arg {
    struct hpo_dispatch *dp;
    struct tjob *job;
    bool ran;
};

static void *inline_main(void *arg)
{
    struct inline_arg *ia = arg;

    ia->ran = hpo_dispatch_run_inline(ia->dp, &ia->job->job);
    return NULL;
}

/*
** Jobs submitted while an inline run holds the lane wait, then run after it
** in order (more than the inline runner drains itself, so the pool takes
** the rest), each with its done().
*/
static void test_inline_followers(void **state)
{
    struct hpo_dispatch *dp = NULL;
    struct shared sh;
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    struct tjob warm, first, next[8];
    struct inline_arg ia;
    pthread_t th;

    (void)state;
    shared_init(&sh);
    assert_int_equal(hpo_dispatch_create(2, 100000, &dp), 0);
    tjob_init(&warm, &sh, "s", -1, 0);
    hpo_dispatch_submit(dp, &warm.job);
    wait_done(&sh, 1);
    sh.n_order = 0;
    tjob_init(&first, &sh, "s", -1, 100);
    first.gate = &gate;
    pthread_mutex_lock(&gate);
    ia = (struct inline_arg){ dp, &first, false };
    assert_int_equal(pthread_create(&th, NULL, inline_main, &ia), 0);
    /* Until the inline run holds the lane (its work is at the gate). */
    for (int i = 0; i < 20000 && atomic_load(&sh.running) == 0; i++) {
        usleep(100);
    }
    assert_int_equal(atomic_load(&sh.running), 1);
    for (int i = 0; i < 8; i++) {
        tjob_init(&next[i], &sh, "s", -1, 101 + i);
        hpo_dispatch_submit(dp, &next[i].job);
    }
    usleep(2000);
    assert_int_equal(atomic_load(&sh.worked), 1); /* nothing overtook the inline run */
    pthread_mutex_unlock(&gate);
    pthread_join(th, NULL);
    assert_true(ia.ran);
    wait_done(&sh, 1 + 8);
    assert_int_equal(sh.n_order, 9);
    for (int i = 0; i < 9; i++) {
        assert_int_equal(sh.order[i], 100 + i);
    }
    assert_int_equal(atomic_load(&sh.overlaps), 0);
    hpo_dispatch_destroy(dp);
}

/* Jobs without a key all run, on several workers, each done() once. */
static void test_unkeyed(void **state)
{
    struct hpo_dispatch *dp = NULL;
    struct shared sh;
    static struct tjob jobs[200];

    (void)state;
    shared_init(&sh);
    assert_int_equal(hpo_dispatch_create(4, 0, &dp), 0);
    for (int i = 0; i < 200; i++) {
        tjob_init(&jobs[i], &sh, NULL, -1, i);
        jobs[i].job.work = done_cb; /* no order to check: count only */
        jobs[i].job.done = done_cb;
        hpo_dispatch_submit(dp, &jobs[i].job);
    }
    wait_done(&sh, 400);
    hpo_dispatch_destroy(dp);
}

/* ---- remote jobs on the forward threads -------------------------------- */

static atomic_int remote_on_forwarder; /* remote jobs that ran on a thread named hpod-forward */

static void remote_work(struct hpo_job *job)
{
    char name[16] = "";

    (void)pthread_getname_np(pthread_self(), name, sizeof(name));
    if (strcmp(name, "hpod-forward") == 0) {
        atomic_fetch_add(&remote_on_forwarder, 1);
    }
    done_cb(job);
}

/* Submit n remote jobs that note where they ran (remote_work), numbered from 10. */
static void submit_remote(struct hpo_dispatch *dp, struct shared *sh, struct tjob *t, int n)
{
    for (int i = 0; i < n; i++) {
        tjob_init(&t[i], sh, NULL, -1, 10 + i);
        t[i].job.work = remote_work;
        t[i].job.remote = true;
        hpo_dispatch_submit(dp, &t[i].job);
    }
}

/*
** Every worker waits (on a gate, as on a forward to a daemon whose own
** workers wait on forwards here): remote jobs still run, on the forward
** threads; without forward threads they run on the workers.
*/
static void test_remote_beside_busy_workers(void **state)
{
    struct hpo_dispatch *dp = NULL;
    struct shared sh;
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    static struct tjob local[2], remote[6];

    (void)state;
    shared_init(&sh);
    atomic_store(&remote_on_forwarder, 0);
    assert_int_equal(hpo_dispatch_create(2, 0, &dp), 0);
    assert_int_equal(hpo_dispatch_forwarders(dp, 2), 0);
    pthread_mutex_lock(&gate);
    for (int i = 0; i < 2; i++) {
        tjob_init(&local[i], &sh, NULL, -1, i);
        local[i].gate = &gate;
        hpo_dispatch_submit(dp, &local[i].job);
    }
    for (int i = 0; i < 200 && atomic_load(&sh.running) < 2; i++) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(&sh.running), 2); /* both workers wait at the gate */
    submit_remote(dp, &sh, remote, 6);
    wait_done(&sh, 12); /* each remote job: work and done() */
    assert_int_equal(atomic_load(&remote_on_forwarder), 6);
    assert_int_equal(atomic_load(&sh.worked), 0);
    pthread_mutex_unlock(&gate);
    wait_done(&sh, 14);
    hpo_dispatch_destroy(dp);

    /* No forward threads: remote jobs run on the workers. */
    shared_init(&sh);
    atomic_store(&remote_on_forwarder, 0);
    assert_int_equal(hpo_dispatch_create(2, 0, &dp), 0);
    submit_remote(dp, &sh, remote, 6);
    wait_done(&sh, 12);
    assert_int_equal(atomic_load(&remote_on_forwarder), 0);
    hpo_dispatch_destroy(dp);
}

/* ---- replies held for the flush ---------------------------------------- */

#define N_HELD 300

struct held_job {
    struct hpo_job job; /* first */
    struct hpo_storage *st;
    struct hpo_write_chain *chain; /* NULL: not pipelined */
    uint64_t ticket; /* the commits made when work() returned */
    int write_rc;
    atomic_int *done, *early;
};

static void held_work(struct hpo_job *job)
{
    struct held_job *h = (struct held_job *)job;
    struct hpo_op op = { .kind = HPO_OP_SAMPLER_STATE, .study_id = 1, .blob = "x", .len = 1 };
    struct hpo_write w = { .ops = &op, .n_ops = 1, .chain = h->chain };
    struct hpo_error err;

    hpo_error_clear(&err);
    h->write_rc = hpo_storage_write(h->st, &w, &err);
    h->ticket = hpo_storage_flush_ticket(h->st);
}

static void held_done(struct hpo_job *job)
{
    struct held_job *h = (struct held_job *)job;

    if (!hpo_storage_flushed(h->st, h->ticket)) {
        atomic_fetch_add(h->early, 1);
    }
    atomic_fetch_add(h->done, 1);
}

/*
** A fresh SQLite store in a new directory `dir` (a mkdtemp template), file
** `file`, started, holding study 1 ("s"): the dispatcher tests' storage.
*/
static struct hpo_storage *store_with_study(char *dir, const char *file,
        const struct hpo_storage_options *opt)
{
    char path[64];
    struct hpo_storage *st = NULL;
    struct hpo_error err;
    struct hpo_op op = { .kind = HPO_OP_STUDY_PUT, .study_id = 1, .name = "s", .text = "{}" };
    struct hpo_write w = { .ops = &op, .n_ops = 1 };

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    hpo_error_clear(&err);
    assert_int_equal(hpo_storage_open(path, opt, &st, &err), 0);
    assert_int_equal(hpo_storage_start(st), 0);
    assert_int_equal(hpo_storage_write(st, &w, &err), 0);
    return st;
}

static void test_held_replies(void **state)
{
    char dir[] = "/tmp/test-dispatch-XXXXXX", cmd[128];
    struct hpo_storage_options opt = { .synchronous_full = true };
    static struct held_job jobs[N_HELD];
    static const char *keys[] = { "a", "b", "c" };
    struct hpo_storage *st = NULL;
    struct hpo_dispatch *dp = NULL;
    atomic_int done = 0, early = 0;

    (void)state;
    st = store_with_study(dir, "h.db", &opt);
    /* A generous inline bound: only the hold keeps jobs off the calling thread. */
    assert_int_equal(hpo_dispatch_create(4, 1000000000u, &dp), 0);
    hpo_dispatch_hold_replies(dp, st);
    for (int i = 0; i < N_HELD; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].job.work = held_work;
        jobs[i].job.done = held_done;
        jobs[i].job.key = keys[i % 3];
        jobs[i].st = st;
        jobs[i].done = &done;
        jobs[i].early = &early;
        if (i % 2 == 0) {
            assert_false(hpo_dispatch_run_inline(dp, &jobs[i].job));
        }
        hpo_dispatch_submit(dp, &jobs[i].job);
    }
    /* The stop returns once every held reply went out (the flusher still runs). */
    hpo_dispatch_stop(dp);
    assert_int_equal(atomic_load(&done), N_HELD);
    assert_int_equal(atomic_load(&early), 0);
    for (int i = 0; i < N_HELD; i++) {
        assert_int_equal(jobs[i].write_rc, 0);
        assert_true(jobs[i].ticket >= 2);
    }
    hpo_dispatch_destroy(dp);
    hpo_storage_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/*
** Under the flush with pipelined writes (synchronous full on SQLite), an
** inline run is pipelined and always held: its done() runs once released,
** never before the flush of the commits made before it finished.
*/
static void test_inline_held_for_flush(void **state)
{
    char dir[] = "/tmp/test-dispatch-XXXXXX", cmd[128];
    struct hpo_storage_options opt = { .synchronous_full = true };
    static struct held_job jobs[40];
    struct hpo_storage *st = NULL;
    struct hpo_dispatch *dp = NULL;
    struct hpo_write_chain *chain;
    atomic_int done = 0, early = 0;
    int inline_runs = 0;

    (void)state;
    st = store_with_study(dir, "f.db", &opt);
    chain = hpo_storage_chain_new();
    assert_non_null(chain);
    assert_int_equal(hpo_dispatch_create(2, 1000000000u, &dp), 0);
    hpo_dispatch_hold_replies(dp, st);
    hpo_dispatch_pipeline(dp, st);
    for (int i = 0; i < 40; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].job.work = held_work;
        jobs[i].job.done = held_done;
        jobs[i].job.key = "s";
        jobs[i].st = st;
        jobs[i].chain = chain;
        jobs[i].done = &done;
        jobs[i].early = &early;
        if (i > 0 && hpo_dispatch_run_inline(dp, &jobs[i].job)) {
            /* Ran here: held whatever the writer did meanwhile; the caller hands it over. */
            inline_runs++;
            assert_true(jobs[i].job.held);
            hpo_dispatch_release(dp, &jobs[i].job);
        } else {
            hpo_dispatch_submit(dp, &jobs[i].job);
        }
        /* One at a time, as one client: the lane is idle when the next comes. */
        for (int k = 0; k < 20000 && atomic_load(&done) < i + 1; k++) {
            usleep(1000);
        }
        assert_int_equal(atomic_load(&done), i + 1);
    }
    assert_true(inline_runs >= 30); /* the first on the pool (unknown speed), then inline */
    assert_int_equal(atomic_load(&early), 0);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(jobs[i].write_rc, 0);
    }
    hpo_dispatch_destroy(dp);
    hpo_storage_chain_unref(chain);
    hpo_storage_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- the crowd rule (pipelined writes) -------------------------------- */

struct crowd_job {
    struct hpo_job job; /* first */
    struct hpo_storage *st;
    struct hpo_write_chain *chain;
    pthread_mutex_t *gate; /* work waits for it when set */
    atomic_int *running, *done;
    bool write;      /* work writes (else it only waits at the gate) */
    int write_rc;
    bool pipelined;  /* the write was accepted, not waited for */
};

static void crowd_work(struct hpo_job *job)
{
    struct crowd_job *c = (struct crowd_job *)job;
    struct hpo_op op = { .kind = HPO_OP_SAMPLER_STATE, .study_id = 1, .blob = "x", .len = 1 };
    struct hpo_write w = { .ops = &op, .n_ops = 1, .chain = c->chain };
    struct hpo_error err;
    uint64_t before;

    atomic_fetch_add(c->running, 1);
    if (c->gate != NULL) {
        pthread_mutex_lock(c->gate);
        pthread_mutex_unlock(c->gate);
    }
    if (c->write) {
        hpo_error_clear(&err);
        before = hpo_storage_accepted(c->st);
        c->write_rc = hpo_storage_write(c->st, &w, &err);
        /* Only a pipelined write is numbered as accepted (storage.h). */
        c->pipelined = hpo_storage_accepted(c->st) > before;
    }
}

static void crowd_done(struct hpo_job *job)
{
    atomic_fetch_add(((struct crowd_job *)job)->done, 1);
}

static void crowd_init(struct crowd_job *c, struct hpo_storage *st, struct hpo_write_chain *chain,
        const char *key, atomic_int *running, atomic_int *done)
{
    memset(c, 0, sizeof(*c));
    c->job.work = crowd_work;
    c->job.done = crowd_done;
    c->job.key = key;
    c->st = st;
    c->chain = chain;
    c->running = running;
    c->done = done;
    c->write = true;
}

/* Wait (bounded) until `n` done() calls and every pipelined write resolved. */
static void crowd_settle(struct hpo_storage *st, atomic_int *done, int n)
{
    for (int i = 0; i < 20000 && (atomic_load(done) < n ||
                    hpo_storage_resolved(st) < hpo_storage_accepted(st)); i++) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(done), n);
    assert_int_equal(hpo_storage_resolved(st), hpo_storage_accepted(st));
}

/*
** STYLE rule 35 (dispatch.c, hpo_dispatch_run_inline): with pipelined
** writes, an inline run of a study whose requests come one at a time waits
** for its own commit (its write is not pipelined, nothing is held: the
** HTTP layer answers at once); once the study's requests have often found
** another of its jobs in flight (crowded), its inline run is pipelined
** like a worker's, and its reply is held until the write resolved.
*/
static void test_crowd_rule(void **state)
{
    char dir[] = "/tmp/test-dispatch-XXXXXX", cmd[128];
    struct hpo_storage_options opt = { .synchronous_full = false };
    struct hpo_storage *st = NULL;
    struct hpo_dispatch *dp = NULL;
    struct hpo_write_chain *chain;
    struct crowd_job warm, solo[5], gated, waiting[3], busy;
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    atomic_int running = 0, done = 0;
    int n_done = 0;

    (void)state;
    st = store_with_study(dir, "c.db", &opt);
    assert_true(hpo_storage_pipelines(st));
    chain = hpo_storage_chain_new();
    assert_non_null(chain);
    assert_int_equal(hpo_dispatch_create(2, 1000000000u, &dp), 0);
    hpo_dispatch_pipeline(dp, st);

    /* One client: a first job on the pool (its study's speed unknown), then inline runs. */
    crowd_init(&warm, st, chain, "solo", &running, &done);
    assert_false(hpo_dispatch_run_inline(dp, &warm.job));
    hpo_dispatch_submit(dp, &warm.job);
    crowd_settle(st, &done, ++n_done);
    assert_int_equal(warm.write_rc, 0);
    assert_true(warm.pipelined); /* a worker's write is pipelined */
    for (int i = 0; i < 5; i++) {
        crowd_init(&solo[i], st, chain, "solo", &running, &done);
        assert_true(hpo_dispatch_run_inline(dp, &solo[i].job));
        assert_int_equal(solo[i].write_rc, 0);
        assert_false(solo[i].pipelined); /* it waited for its own commit */
        assert_false(solo[i].job.held);  /* the reply goes at once */
        assert_int_equal(hpo_storage_resolved(st), hpo_storage_accepted(st));
    }

    /* Several clients: their requests find the study's lane busy, and it becomes crowded. */
    crowd_init(&warm, st, chain, "crowd", &running, &done);
    hpo_dispatch_submit(dp, &warm.job);
    crowd_settle(st, &done, ++n_done);
    crowd_init(&gated, st, chain, "crowd", &running, &done);
    gated.gate = &gate;
    gated.write = false;
    pthread_mutex_lock(&gate);
    atomic_store(&running, 0);
    hpo_dispatch_submit(dp, &gated.job);
    for (int i = 0; i < 20000 && atomic_load(&running) == 0; i++) {
        usleep(100);
    }
    assert_int_equal(atomic_load(&running), 1); /* a worker holds the lane, at the gate */
    for (int i = 0; i < 3; i++) {
        crowd_init(&waiting[i], st, chain, "crowd", &running, &done);
        assert_false(hpo_dispatch_run_inline(dp, &waiting[i].job)); /* its lane is busy */
        hpo_dispatch_submit(dp, &waiting[i].job);
    }
    pthread_mutex_unlock(&gate);
    n_done += 4;
    crowd_settle(st, &done, n_done);
    /* The lane is idle and nothing is in flight, but the study is crowded: pipelined. */
    crowd_init(&busy, st, chain, "crowd", &running, &done);
    assert_true(hpo_dispatch_run_inline(dp, &busy.job));
    assert_int_equal(busy.write_rc, 0);
    assert_true(busy.pipelined);
    if (busy.job.held) {
        /* Its write still in flight: the caller suspends and hands it over; done() follows. */
        hpo_dispatch_release(dp, &busy.job);
        crowd_settle(st, &done, ++n_done);
    }
    /* The study of one client is not affected by the other's crowd. */
    crowd_init(&solo[0], st, chain, "solo", &running, &done);
    assert_true(hpo_dispatch_run_inline(dp, &solo[0].job));
    assert_false(solo[0].pipelined);

    hpo_dispatch_destroy(dp);
    hpo_storage_chain_unref(chain);
    hpo_storage_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lane_order),
        cmocka_unit_test(test_inline_only_quick),
        cmocka_unit_test(test_inline_followers),
        cmocka_unit_test(test_unkeyed),
        cmocka_unit_test(test_remote_beside_busy_workers),
        cmocka_unit_test(test_held_replies),
        cmocka_unit_test(test_inline_held_for_flush),
        cmocka_unit_test(test_crowd_rule),
    };

    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
