/*
** dispatch.h: running requests' jobs on a pool of worker threads, with the
** mutations of one study in order, one at a time.
**
** A job with a key (a study's name) joins that study's lane: while a job of
** the lane runs, later ones wait in the lane, and the thread that ran one
** takes the next itself. Mutations of one study were serialized by its lock
** anyway; the lane spares the thread hops and lock hand-offs between them.
** Jobs without a key go to the pool as they come.
**
** Every function may be called from any thread (the HTTP threads submit).
** A job's work() and then its done() run on the thread that ran it, one
** right after the other, unless replies are held (pipelined writes, or the
** flush under synchronous full): then done() runs once the writes the job
** could see resolved (and were flushed), on whichever thread saw that (a
** worker, the storage's writer or flusher). done() must be safe there (the
** HTTP layer's resumes a suspended connection, which libmicrohttpd allows
** from any thread).
*/
#ifndef HPOD_DISPATCH_H
#define HPOD_DISPATCH_H

#include <stdbool.h>

#include "../api/api.h"

struct hpo_dispatch;

/*
** Start `threads` workers (at least 1). `inline_max_us`: jobs of a key and
** kind whose recent ones took less than this on average may run on the
** submitting thread (hpo_dispatch_run_inline); 0: never. Returns 0 or a
** negative errno.
*/
int hpo_dispatch_create(unsigned threads, unsigned inline_max_us, struct hpo_dispatch **ret);

/*
** Start `n` forward threads (once, before the first submit): jobs with
** job->remote run on them, never on the workers, so a request forwarded to
** this daemon always finds a worker. Without them a daemon whose workers
** all wait on forwards to a peer, while the peer's all wait on forwards
** here, serves neither side's forwarded requests: both hang until the
** forwards time out. Without forward threads remote jobs run on the
** workers. Returns 0 or a negative errno (those started still run).
*/
int hpo_dispatch_forwarders(struct hpo_dispatch *dp, unsigned n);

/* Remote jobs queued for a forward thread now, and running on one (/metrics). */
void hpo_dispatch_forward_load(struct hpo_dispatch *dp, unsigned *waiting, unsigned *busy);

/*
** Hold each job's done() until `st` flushed every commit made before the job
** finished (hpo_storage_defer_flush: jobs return from their writes before
** the flush); jobs then run inline only with pipelined writes
** (hpo_dispatch_pipeline), and such a run is always held (its reply waits
** for the flush like a worker's). Call before the first submit. hpo_dispatch_detach(), after the
** last submit, waits for the held replies and detaches from `st`'s flush
** callback; call it before hpo_storage_close.
*/
struct hpo_storage;
void hpo_dispatch_hold_replies(struct hpo_dispatch *dp, struct hpo_storage *st);
void hpo_dispatch_detach(struct hpo_dispatch *dp);

/*
** Pipelined writes (when `st` offers them: SQLite, PostgreSQL): workers run
** work() with hpo_storage_pipeline on, so a study's write returns once
** accepted and the lane runs the study's next job while the writer commits
** it; each job's done() is held until every pipelined write accepted before
** the job finished has resolved; not at all for writes when work() set
** job->chain and none of that chain's writes is in flight as the job ends
** (job->seen_from/seen_upto then tell done() which writes it could see: it
** must check none failed, storage.h). A job still
** runs inline only when its study has no lane (nothing of it in flight).
** Call before the first submit; hpo_dispatch_detach as above.
*/
void hpo_dispatch_pipeline(struct hpo_dispatch *dp, struct hpo_storage *st);

/*
** Round commits (after hpo_dispatch_pipeline; the HTTP threads commit their
** round's writes at its end, hpo_storage_lead): every inline run is
** pipelined, its write committed with the others of its round.
*/
void hpo_dispatch_round_commits(struct hpo_dispatch *dp);

/*
** Queue a job (any thread). With the storage attached (hold_replies or
** pipeline): while its writes are stuck until the database comes back
** (hpo_storage_stalled), a job of a study whose running job waits, and the
** jobs already waiting behind it, are not queued but run at once with
** job->refused set (the embedder's work() answers 503 unavailable, doing
** nothing).
*/
void hpo_dispatch_submit(struct hpo_dispatch *dp, struct hpo_job *job);

/*
** Run a keyed job here and now if its lane is idle and the recent jobs of
** its key and kind were quick: work() runs on the calling thread, done() is
** NOT called (the caller replies itself). Jobs of the study submitted
** meanwhile run after it, in order: the first few on this thread too, the
** rest on the pool. Returns false, having done nothing, when the job must
** be submitted instead (no key, a job of the study running or waiting,
** slow or unknown jobs of that kind).
*/
bool hpo_dispatch_run_inline(struct hpo_dispatch *dp, struct hpo_job *job);

/*
** Pipelined: a job run inline whose writes are still in flight gets
** job->held; once the caller suspended its connection, it hands the job
** here, and done() runs when they resolved (at once, or on another thread).
*/
void hpo_dispatch_release(struct hpo_dispatch *dp, struct hpo_job *job);

/*
** Let the workers run what is queued, then join them (loop thread, once the
** HTTP server takes no more work). Jobs submitted afterwards never run.
*/
void hpo_dispatch_stop(struct hpo_dispatch *dp);

/* Stop if not stopped, then free (after the HTTP server stopped). Accepts NULL. */
void hpo_dispatch_destroy(struct hpo_dispatch *dp);

#endif
