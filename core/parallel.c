/*
** parallel.c: hpo_parallel_for (see parallel.h).
*/
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <unistd.h>

#include "parallel.h"

#define MAX_PARTS 4

struct part {
    void (*fn)(void *ctx, size_t lo, size_t hi);
    void *ctx;
    size_t lo, hi;
};

static void *run_part(void *arg)
{
    struct part *p = arg;

    p->fn(p->ctx, p->lo, p->hi);
    return NULL;
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

void hpo_parallel_for(size_t n, size_t grain, void (*fn)(void *ctx, size_t lo, size_t hi),
        void *ctx)
{
    struct part parts[MAX_PARTS];
    pthread_t threads[MAX_PARTS];
    bool started[MAX_PARTS] = { false };
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
        parts[i] = (struct part){ fn, ctx, n / k * i, i + 1 == k ? n : n / k * (i + 1) };
    }
    for (size_t i = 1; i < k; i++) {
        started[i] = pthread_create(&threads[i], NULL, run_part, &parts[i]) == 0;
    }
    run_part(&parts[0]);
    for (size_t i = 1; i < k; i++) {
        if (started[i]) {
            pthread_join(threads[i], NULL);
        } else {
            run_part(&parts[i]);
        }
    }
}
