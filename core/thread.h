/* SPDX-License-Identifier: MIT */
#pragma once

#include <pthread.h>

/*
** Start fn(arg) on a new thread named `name` (at most 15 characters, as
** pthread_setname_np takes) with every signal blocked: signals belong to
** the loop thread (daemon/main.c), and a thread that outlives its starter
** must not take one meant for it. attr may be NULL. The calling thread's
** signal mask is unchanged on return. 0, or -errno from pthread_create.
*/
int hpo_thread_start(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
        void *arg, const char *name);
