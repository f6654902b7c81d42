/*
** writer.c: what the two backends' writer threads share (sqlite.c, pg.c).
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

#include "storage-int.h"

int hpo__writer_start(pthread_mutex_t *lock, bool *started, pthread_t *thread,
        void *(*fn)(void *), void *arg)
{
    sigset_t all;
    sigset_t old;
    int r;

    pthread_mutex_lock(lock);
    if (*started) {
        pthread_mutex_unlock(lock);
        return -EALREADY;
    }
    /* Signals belong to the loop thread, so the writer blocks them all. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        pthread_mutex_unlock(lock);
        return -r;
    }
    (void)pthread_setname_np(*thread, "hpod-storage");
    *started = true;
    pthread_mutex_unlock(lock);
    return 0;
}
