/*
** parallel.c: hpo_parallel_for (see parallel.h) on a pool of kept threads.
**
** Starting a thread per call cost 14-58 us a thread, paid by every split
** loop (a gradient step, a decode). The pool's workers are started on the
** first split loop that needs them and then sleep on a condition variable
** between calls. One call owns the pool at a time: it publishes its parts,
** wakes the workers, runs part 0 and then claims whatever parts no worker has
** taken yet (so a slow or missing worker only costs time), and waits for
** the parts the workers took. A call that finds the pool owned (another
** thread's loop, or a loop nested inside a part) runs its parts itself, in
** order: never a wait on another caller, so no deadlock, and the ranges are
** the same whoever runs them.
**
** Before it wakes them, the owner keeps the workers off the CPU it runs on
** (`steer`): a woken thread is often queued on its waker's CPU when no CPU
** is idle, and there waited out the owner's slice (2-3 ms on this 2-core
** machine under load, traced at the 10^6 ask), by when the owner had run
** every part itself. A thread started per call (before the pool) was placed
** on the least loaded CPU instead. The workers are woken after the unlock,
** so that a woken worker does not block on the lock at once.
*/
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <unistd.h>

#include "parallel.h"
#include "thread.h"

#define MAX_PARTS 4

struct part {
    size_t lo, hi;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* workers: a job was published */
    pthread_cond_t done; /* the owner: a worker finished a part */
    size_t n_workers;    /* started, never stopped (they sleep when idle) */
    bool owned;          /* a call is using parts[] */
    void (*fn)(void *ctx, size_t lo, size_t hi);
    void *ctx;
    struct part parts[MAX_PARTS];
    size_t n_parts;
    size_t next;    /* the next part nobody has claimed */
    size_t running; /* parts claimed by workers and not finished */
    pthread_t threads[MAX_PARTS - 1];
    cpu_set_t allowed; /* the CPUs the first worker was started with */
    bool have_allowed;
    int steered_off; /* the CPU the workers are kept off (-1: none) */
} pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .steered_off = -1,
};

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        void (*fn)(void *ctx, size_t lo, size_t hi);
        void *ctx;
        struct part p;

        while (!(pool.owned && pool.next < pool.n_parts)) {
            pthread_cond_wait(&pool.wake, &pool.lock);
        }
        p = pool.parts[pool.next++];
        fn = pool.fn;
        ctx = pool.ctx;
        pool.running++;
        pthread_mutex_unlock(&pool.lock);
        fn(ctx, p.lo, p.hi);
        pthread_mutex_lock(&pool.lock);
        if (--pool.running == 0) {
            pthread_cond_signal(&pool.done);
        }
    }
    return NULL;
}

/*
** Start workers up to `want` (under the lock); a failed start leaves fewer.
** Workers block every signal: they outlive the call that started them, and
** a signal meant for the daemon's own threads must not land on one.
*/
static void ensure_workers(size_t want)
{
    if (pool.n_workers >= want) {
        return;
    }
    while (pool.n_workers < want) {
        pthread_attr_t attr;
        pthread_t t;
        int r;

        if (pthread_attr_init(&attr) != 0) {
            break;
        }
        (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = hpo_thread_start(&t, &attr, worker_main, NULL, "hpod-parallel");
        pthread_attr_destroy(&attr);
        if (r != 0) {
            break;
        }
        if (!pool.have_allowed) {
            CPU_ZERO(&pool.allowed);
            pool.have_allowed = pthread_getaffinity_np(t, sizeof(pool.allowed),
                                        &pool.allowed) == 0;
        }
        pool.threads[pool.n_workers++] = t;
        pool.steered_off = -1; /* the new worker may run anywhere */
    }
}

/* The CPUs this process may run on (taskset, a cpuset), not all the machine's. */
static size_t cpus(void)
{
    cpu_set_t set;
    long n;

    CPU_ZERO(&set);
    n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
                                                     : sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : (n > MAX_PARTS ? MAX_PARTS : (size_t)n);
}

/*
** Under pool.lock: let the workers run on every CPU they were started
** with but the one the owner is on now (nothing when that leaves none, or
** the CPU is unknown; again only when the owner moved). A failure only
** costs the placement.
*/
static void steer(void)
{
    if (pool.have_allowed) {
        hpo_thread_steer_off(pool.threads, pool.n_workers, &pool.allowed, &pool.steered_off);
    }
}

void hpo_parallel_for(size_t n, size_t grain, void (*fn)(void *ctx, size_t lo, size_t hi),
        void *ctx)
{
    struct part parts[MAX_PARTS];
    bool wake;
    size_t k = grain > 0 ? n / grain : n;

    /* Not even that system call for a loop too small to split. */
    if (k > 1 && k > cpus()) {
        k = cpus();
    }
    if (k <= 1) {
        fn(ctx, 0, n);
        return;
    }
    for (size_t i = 0; i < k; i++) {
        parts[i] = (struct part){ n / k * i, i + 1 == k ? n : n / k * (i + 1) };
    }
    pthread_mutex_lock(&pool.lock);
    if (pool.owned) {
        pthread_mutex_unlock(&pool.lock);
        for (size_t i = 0; i < k; i++) {
            fn(ctx, parts[i].lo, parts[i].hi);
        }
        return;
    }
    ensure_workers(k - 1);
    pool.owned = true;
    pool.fn = fn;
    pool.ctx = ctx;
    for (size_t i = 0; i < k; i++) {
        pool.parts[i] = parts[i];
    }
    pool.n_parts = k;
    pool.next = 1;
    wake = pool.n_workers > 0;
    if (wake) {
        steer();
    }
    pthread_mutex_unlock(&pool.lock);
    /* After the unlock: a worker woken while the lock is held blocks on it
       at once and must be woken (scheduled) a second time. */
    if (wake) {
        pthread_cond_broadcast(&pool.wake);
    }

    fn(ctx, parts[0].lo, parts[0].hi);
    pthread_mutex_lock(&pool.lock);
    /* What no worker has taken yet, here. */
    while (pool.next < pool.n_parts) {
        size_t i = pool.next++;
        pthread_mutex_unlock(&pool.lock);
        fn(ctx, parts[i].lo, parts[i].hi);
        pthread_mutex_lock(&pool.lock);
    }
    while (pool.running > 0) {
        pthread_cond_wait(&pool.done, &pool.lock);
    }
    pool.owned = false;
    pool.fn = NULL;
    pool.ctx = NULL;
    pthread_mutex_unlock(&pool.lock);
}
