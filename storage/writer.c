/*
** writer.c: what the two backends' writer threads share (sqlite.c, pg.c).
*/
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include "thread.h"
#include "storage-int.h"

int hpo__writer_start(pthread_mutex_t *lock, bool *started, pthread_t *thread,
        void *(*fn)(void *), void *arg)
{
    int r;

    pthread_mutex_lock(lock);
    if (*started) {
        pthread_mutex_unlock(lock);
        return -EALREADY;
    }
    r = hpo_thread_start(thread, NULL, fn, arg, "hpod-storage");
    if (r != 0) {
        pthread_mutex_unlock(lock);
        return r;
    }
    *started = true;
    pthread_mutex_unlock(lock);
    return 0;
}
