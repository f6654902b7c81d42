/* SPDX-License-Identifier: MIT */
/*
** thread.c: the one way hpod starts a thread of its own (thread.h): the
** workers, the HTTP threads, the storage writer, flushers, checkpointer,
** hasher and lazy-file syncer, and the parallel-for workers.
*/
#include "thread.h"

#include <signal.h>

int hpo_thread_start(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
        void *arg, const char *name)
{
    sigset_t all, old;
    int r;

    sigfillset(&all);
    r = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (r != 0) {
        return -r;
    }
    /* The new thread inherits the mask in force here: every signal blocked. */
    r = pthread_create(thread, attr, fn, arg);
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        return -r;
    }
    (void)pthread_setname_np(*thread, name);
    return 0;
}
