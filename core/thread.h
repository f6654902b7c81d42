/* SPDX-License-Identifier: MIT */
#pragma once

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>

/*
** Start fn(arg) on a new thread named `name` (cut to 15 characters, as
** pthread_setname_np takes; named before fn runs and when this returns)
** with every signal blocked: signals belong to the loop thread
** (daemon/main.c), and a thread that outlives its starter must not take
** one meant for it. attr may be NULL. The calling thread's signal mask is
** unchanged on return. 0, -ENOMEM, or -errno from pthread_create.
*/
int hpo_thread_start(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
        void *arg, const char *name);

/*
** A thread kept for jobs of one kind (the blob hasher, the lazy-file
** syncer, a gradient study's step thread): its lock `mu`; `wake`, where the
** thread waits for a job or the stop; `done`, where callers wait for a
** job's end (on CLOCK_MONOTONIC, for timed waits); `stop`, read and set
** under mu. What a job is stays the user's (fields beside it).
**
** hpo_kept_start initializes them and starts main(arg) named `name`
** (hpo_thread_start); 0, or a negative errno with nothing left to destroy.
** hpo_kept_stop sets stop, wakes the thread, joins it (its main returns
** once it sees stop) and destroys them.
*/
struct hpo_kept {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_t thread;
    bool stop;
};

int hpo_kept_start(struct hpo_kept *k, void *(*main)(void *), void *arg, const char *name);
void hpo_kept_stop(struct hpo_kept *k);

/*
** Keep threads the calling thread wakes off its CPU: a thread woken from a
** wait is often queued on its waker's CPU (no CPU idle at that instant, or
** the scheduler's wake-affine rule) behind the waker, while the other CPU
** idles. `allowed` is the set the threads may run on (recorded when they
** started), *steered_off the CPU they are kept off now (-1: none), updated
** here; a system call only when the caller's CPU changed; nothing when that
** leaves no CPU. Used by the parallel-for workers and the gradient step
** thread.
*/
void hpo_thread_steer_off(const pthread_t *threads, size_t n, const cpu_set_t *allowed,
        int *steered_off);
