/* SPDX-License-Identifier: MIT */
/*
** thread.c: the one way hpod starts a thread of its own (thread.h): the
** workers, the HTTP threads, the storage writer, flushers, checkpointer,
** hasher and lazy-file syncer, the parallel-for workers and a gradient
** study's step thread; and the kept one-job threads among them (hpo_kept).
*/
#include "thread.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* What a new thread runs first: its name, then fn(arg). */
struct start {
    void *(*fn)(void *);
    void *arg;
    char name[16]; /* the kernel's limit: 15 characters */
};

/*
** The thread names itself before anything of fn runs: named by its creator
** after pthread_create only, a thread that looked at its name early (or a
** `top -H` then) saw the creator's name whenever it ran first.
*/
static void *named_main(void *p)
{
    struct start s = *(struct start *)p;

    free(p);
    (void)pthread_setname_np(pthread_self(), s.name);
    return s.fn(s.arg);
}

int hpo_thread_start(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
        void *arg, const char *name)
{
    struct start *s = malloc(sizeof(*s));
    sigset_t all, old;
    int r;

    if (s == NULL) {
        return -ENOMEM;
    }
    s->fn = fn;
    s->arg = arg;
    snprintf(s->name, sizeof(s->name), "%s", name);
    sigfillset(&all);
    r = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (r != 0) {
        free(s);
        return -r;
    }
    /* The new thread inherits the mask in force here: every signal blocked. */
    r = pthread_create(thread, attr, named_main, s);
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        free(s);
        return -r;
    }
    /* And named when this returns, whether or not the thread ran yet (s may be gone). */
    (void)pthread_setname_np(*thread, name);
    return 0;
}

int hpo_kept_start(struct hpo_kept *k, void *(*main)(void *), void *arg, const char *name)
{
    pthread_condattr_t a;
    int r;

    k->stop = false;
    r = pthread_mutex_init(&k->mu, NULL);
    if (r != 0) {
        return -r;
    }
    r = pthread_cond_init(&k->wake, NULL);
    if (r != 0) {
        goto fail_mu;
    }
    r = pthread_condattr_init(&a);
    if (r != 0) {
        goto fail_wake;
    }
    r = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (r == 0) {
        r = pthread_cond_init(&k->done, &a);
    }
    (void)pthread_condattr_destroy(&a);
    if (r != 0) {
        goto fail_wake;
    }
    r = -hpo_thread_start(&k->thread, NULL, main, arg, name);
    if (r != 0) {
        pthread_cond_destroy(&k->done);
        goto fail_wake;
    }
    return 0;
fail_wake:
    pthread_cond_destroy(&k->wake);
fail_mu:
    pthread_mutex_destroy(&k->mu);
    return -r;
}

void hpo_kept_stop(struct hpo_kept *k)
{
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->wake);
    pthread_mutex_unlock(&k->mu);
    (void)pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->done);
    pthread_cond_destroy(&k->wake);
    pthread_mutex_destroy(&k->mu);
}

void hpo_thread_steer_off(const pthread_t *threads, size_t n, const cpu_set_t *allowed,
        int *steered_off)
{
    int cpu = sched_getcpu();
    cpu_set_t set;

    if (cpu < 0 || cpu >= CPU_SETSIZE || cpu == *steered_off) {
        return;
    }
    set = *allowed;
    CPU_CLR(cpu, &set);
    if (CPU_COUNT(&set) == 0) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        (void)pthread_setaffinity_np(threads[i], sizeof(set), &set);
    }
    *steered_off = cpu;
}
