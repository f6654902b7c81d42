/*
** dispatch.h: running requests' jobs on the libuv thread pool, with the
** mutations of one study in order on one thread.
**
** A job with a key (a study's name) joins that study's lane: while a job of
** the lane runs, later ones wait in the lane, and the thread that ran one
** takes the next itself. Mutations of one study were serialized by its lock
** anyway; the lane spares the thread hops and lock hand-offs between them.
** Jobs without a key go to the pool as they come. Every job's done() runs
** on the loop thread, in the order the jobs finished.
*/
#ifndef HPOD_DISPATCH_H
#define HPOD_DISPATCH_H

#include <uv.h>

#include "../api/api.h"

struct hpo_dispatch;

/*
** Create the dispatcher on `loop`; after_done(ctx) runs on the loop thread
** after each batch of done() calls. Returns 0 or a negative errno.
*/
int hpo_dispatch_create(uv_loop_t *loop, void (*after_done)(void *ctx), void *ctx,
        struct hpo_dispatch **ret);

/*
** Hold each job's done() until `st` flushed every commit made before the job
** finished (hpo_storage_defer_flush: jobs return from their writes before
** the flush). Call before the first submit; hpo_dispatch_detach() before
** the loop's handles close.
*/
struct hpo_storage;
void hpo_dispatch_hold_replies(struct hpo_dispatch *dp, struct hpo_storage *st);
void hpo_dispatch_detach(struct hpo_dispatch *dp);

/* Queue a job (loop thread). */
void hpo_dispatch_submit(struct hpo_dispatch *dp, struct hpo_job *job);

/*
** Free the dispatcher once no job is queued or running and its handle was
** closed (after uv_walk closed every handle and the loop ran). Accepts NULL.
*/
void hpo_dispatch_destroy(struct hpo_dispatch *dp);

#endif
