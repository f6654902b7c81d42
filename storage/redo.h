/*
** redo.h: the redo log of a SQLite database (redo.c), `<db path>.redo`.
** A round's pipelined writes are appended to it in one write() and
** acknowledged from there; the writer thread applies them to the database
** later, in larger transactions, and the database remembers the last
** record it holds (table hpod_redo). At open, records past it are applied
** again. Internal to storage/ (docs/DESIGN.md "The redo log").
*/
#ifndef HPO_STORAGE_REDO_H
#define HPO_STORAGE_REDO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "storage.h"

struct hpo__redo;

/*
** Open (creating, mode 0600) `<db_path>.redo` for the database whose
** hpod_redo.epoch is `epoch`: records it appends carry it, and a replay
** stops at a record that carries another (a log left beside a restored
** copy). 0, or a negative errno with `err` (unavailable).
*/
int hpo__redo_open(const char *db_path, uint64_t epoch, struct hpo__redo **ret,
        struct hpo_error *err);
void hpo__redo_close(struct hpo__redo *r); /* accepts NULL */

/* The file's descriptor (for fdatasync and writeback) and its length. */
int hpo__redo_fd(const struct hpo__redo *r);
uint64_t hpo__redo_size(const struct hpo__redo *r);

/*
** Append record `lsn` holding the writes of `batch` (a list through ->next,
** each a pipelined copy: no parts) in one write(); a write whose result is
** already negative (failed before: its study's earlier write failed) is
** left out, and at least one must be left in. On failure the file is
** cut back to its length before (so later records follow a whole one) and
** -EIO returned with `err` (unavailable) and the write's errno left in
** errno (ENOMEM: without memory, nothing written); when even that cut
** fails, the log can no longer be trusted: the process aborts. One caller
** at a time.
*/
int hpo__redo_append(struct hpo__redo *r, uint64_t lsn, const struct hpo_write *batch,
        struct hpo_error *err);

/*
** Read the file from its start and call fn for each whole record in order,
** with its writes (a list through ->next, valid during the call only).
** Reading stops at the end, at a record cut short or damaged (a crash in
** its write), at a number that does not follow the one before (older
** records behind a restart), or at a record of another epoch (another
** database's log); the file is cut there.
** *ret_last gets the last record's number (0: none). fn's error stops it.
*/
int hpo__redo_replay(struct hpo__redo *r,
        int (*fn)(void *ctx, uint64_t lsn, struct hpo_write *batch, struct hpo_error *err),
        void *ctx, uint64_t *ret_last, struct hpo_error *err);

/*
** For the fuzz target: make the record at `record` (a 40-byte head whose
** length field counts the bytes that follow it, all present) carry the
** magic, `epoch` and the checksum of what it holds.
*/
#define HPO__REDO_HEAD 40
void hpo__redo_seal(void *record, uint64_t epoch);

/*
** Every record is in the database: the next goes at the file's start,
** over the old ones (a file once written needs no new blocks, and an
** fdatasync no change of its size), or in an emptied file when `empty` or
** when it grew past 64 MiB. 0 or a negative errno with `err`.
*/
int hpo__redo_restart(struct hpo__redo *r, bool empty, struct hpo_error *err);

#endif
