/*
** storage-int.h: definitions shared inside storage/ (and with its unit test),
** never included by another module.
*/
#ifndef HPO_STORAGE_INT_H
#define HPO_STORAGE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <sqlite3.h>

#include "storage.h"

/* The schema version this build writes: the number of the last migration. */
#define HPO_STORAGE_SCHEMA_VERSION 1

/*
** Fill `err` from a failed SQLite call and return the negative errno for it.
** `rc` is the (extended) result code of the call; `db` may be NULL when there
** is no connection. Call on the connection's own thread, right after the
** failing call, because sqlite3_errmsg() is overwritten by the next call.
** BUSY/LOCKED -> unavailable, -EAGAIN; FULL, IOERR_*, READONLY, CANTOPEN ->
** unavailable, -EIO; CONSTRAINT_UNIQUE/PRIMARYKEY -> conflict, -EEXIST;
** NOMEM -> internal, -ENOMEM; anything else -> internal, -EIO.
*/
int hpo__storage_error(sqlite3 *db, int rc, const char *what, struct hpo_error *err);

/*
** Bring the database from its PRAGMA user_version up to
** HPO_STORAGE_SCHEMA_VERSION, one BEGIN IMMEDIATE transaction per migration.
** Returns 0, or a negative errno with `err` filled; a database newer than
** this build is refused (-EPROTONOSUPPORT, internal) and left untouched.
*/
int hpo__storage_migrate(sqlite3 *db, struct hpo_error *err);

/*
** Test hooks. While paused, the writer takes no write off the queue, so a
** test can queue several writes and release them as one batch.
** hpo__storage_queued() is the number of writes waiting. Thread-safe.
*/
void hpo__storage_pause(struct hpo_storage *st, bool pause);
size_t hpo__storage_queued(struct hpo_storage *st);

#endif
