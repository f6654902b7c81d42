/*
** pg-flush.h: the pipelined WAL flush of the PostgreSQL backend (pg-flush.c),
** private to storage/: pg.c commits batches with synchronous_commit = off
** and counts a commit durable only once a flush that started after it
** returned has succeeded.
*/
#ifndef HPO_PG_FLUSH_H
#define HPO_PG_FLUSH_H

#include <stdbool.h>
#include <stdint.h>

struct hpo_error;
struct hpo__pg_flush;

/*
** Connect the flush sessions to `uri` (passfile NULL: libpq's own lookup)
** and flush once to check that this role may (pg_logical_emit_message).
** `daemon_id` names this daemon's batch marker (hpod_batches), read after
** a reconnect. Returns 0 and a new flusher (no thread runs yet), -EPERM
** when the server refuses the flush statement (then the caller commits
** with synchronous_commit = on instead), or -EIO (unavailable) / -ENOMEM
** with `err`. Call from one thread.
*/
int hpo__pg_flush_create(const char *uri, const char *passfile, int64_t daemon_id,
        struct hpo__pg_flush **ret, struct hpo_error *err);

/* Start the flusher threads: 0 or a negative errno. */
int hpo__pg_flush_start(struct hpo__pg_flush *f);

/*
** The writer's batch `batch_id` committed (its COMMIT returned): returns
** its flush ticket, the number of commits so far. Batch ids only grow.
** `flushed`: it committed with synchronous_commit = on, which flushed the
** WAL past it and so past every earlier commit: all are released now
** (on_flush runs on the calling thread). Thread-safe.
*/
uint64_t hpo__pg_flush_committed(struct hpo__pg_flush *f, int64_t batch_id, bool flushed);

/*
** Whether every commit noted so far is flushed and the last flush covered
** one commit only (no commit was made while the one before was flushed: no
** sign of concurrent writers). Thread-safe.
*/
bool hpo__pg_flush_idle(struct hpo__pg_flush *f);

/* The ticket of the newest commit (0: none yet), and whether `ticket` is flushed. Thread-safe. */
uint64_t hpo__pg_flush_ticket(struct hpo__pg_flush *f);
bool hpo__pg_flushed(struct hpo__pg_flush *f, uint64_t ticket);

/* Block until `ticket` is flushed. Any thread but a flusher's. */
void hpo__pg_flush_wait(struct hpo__pg_flush *f, uint64_t ticket);

/* fn(arg) after each flush, on a flusher thread (NULL: none); see hpo_storage_on_flush. */
void hpo__pg_flush_on_flush(struct hpo__pg_flush *f, void (*fn)(void *arg), void *arg);

/* False while a flush fails and is being retried (for /healthz). Thread-safe. */
bool hpo__pg_flush_healthy(struct hpo__pg_flush *f);

/*
** Flush every commit noted so far, then stop and join the threads (no
** commit may be noted after). hpo__pg_flush_destroy then frees it (accepts
** NULL, and a flusher that never started).
*/
void hpo__pg_flush_stop(struct hpo__pg_flush *f);
void hpo__pg_flush_destroy(struct hpo__pg_flush *f);

#endif
