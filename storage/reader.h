/*
** reader.h: reading single param values back from the database while the
** daemon runs (vectors no longer held in memory), on a connection of its
** own, so readers never wait for the writer (WAL readers see the last
** commit).
*/
#ifndef HPO_STORAGE_READER_H
#define HPO_STORAGE_READER_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"

struct hpo_storage_reader;

/* Open a read-only connection to `path` (lazily usable from any thread). NULL on OOM. */
struct hpo_storage_reader *hpo_storage_reader_create(const char *path);

/* Close; accepts NULL. */
void hpo_storage_reader_destroy(struct hpo_storage_reader *rd);

/*
** Read the vector param `index` of trial `number` into `ret` (exactly `len`
** doubles), following references to the earlier trial that holds a shared
** vector. Thread-safe (one read at a time). Returns 0, -ENOENT (no such row
** or not a vector of that length: not_found) or another negative errno
** (unavailable/internal) with `err` filled.
*/
int hpo_storage_read_vector(struct hpo_storage_reader *rd, int64_t study_id, int64_t number,
        int64_t index, double *ret, size_t len, struct hpo_error *err);

/*
** Read study `study_id`'s committed sampler state into a malloc'd *ret
** (*ret NULL when it has none). Returns 0, -ENOENT (not_found) when the study
** is not stored, or a negative errno with `err` (unavailable or internal).
*/
int hpo_storage_read_state(struct hpo_storage_reader *rd, int64_t study_id, void **ret,
        size_t *ret_len, struct hpo_error *err);

#endif
