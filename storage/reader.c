/*
** reader.c: a read-only connection for fetching vectors that are no longer
** kept in memory (see reader.h).
*/
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "reader.h"
#include "storage-int.h"

struct hpo_storage_reader {
    char *path;
    sqlite3 *db;
    sqlite3_stmt *get;
    struct hpo_blobs blobs; /* large vectors live in side files (storage-int.h) */
    struct hpo_pg_reader *pg; /* PostgreSQL: everything goes there instead */
    pthread_mutex_t lock;
};

struct hpo_storage_reader *hpo_storage_reader_create(const char *path)
{
    struct hpo_storage_reader *rd = calloc(1, sizeof(*rd));

    if (rd == NULL) {
        return NULL;
    }
    rd->path = strdup(path);
    if (rd->path == NULL) {
        free(rd);
        return NULL;
    }
    rd->blobs.dirfd = -1;
    if (hpo_storage_is_postgresql(path)) {
        rd->pg = hpo__pg_reader_create(path);
        if (rd->pg == NULL) {
            free(rd->path);
            free(rd);
            return NULL;
        }
    }
    pthread_mutex_init(&rd->lock, NULL);
    return rd;
}

void hpo_storage_reader_destroy(struct hpo_storage_reader *rd)
{
    if (rd == NULL) {
        return;
    }
    hpo__pg_reader_destroy(rd->pg);
    sqlite3_finalize(rd->get);
    sqlite3_close(rd->db);
    hpo__blobs_close(&rd->blobs);
    pthread_mutex_destroy(&rd->lock);
    free(rd->path);
    free(rd);
}

static int reader_open(struct hpo_storage_reader *rd, struct hpo_error *err)
{
    static const char sql[] =
            "SELECT value FROM params WHERE study_id = ?1 AND number = ?2 AND idx = ?3";
    int rc;

    if (rd->db != NULL) {
        return 0;
    }
    rc = sqlite3_open_v2(rd->path, &rd->db,
            SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(rd->db, 5000);
        rc = sqlite3_prepare_v3(rd->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &rd->get, NULL);
    }
    if (rc == SQLITE_OK && hpo__blobs_open_read(&rd->blobs, rd->path) < 0) {
        rc = SQLITE_NOMEM;
    }
    if (rc != SQLITE_OK) {
        int r = hpo__storage_error(rd->db, rc, "opening the reader", err);
        sqlite3_finalize(rd->get);
        rd->get = NULL;
        sqlite3_close(rd->db);
        rd->db = NULL;
        hpo__blobs_close(&rd->blobs);
        return r;
    }
    return 0;
}

/* Decode a stored vector BLOB (little-endian float64) of exactly `len` elements. */
static int blob_value(const void *blob, size_t bytes, double *ret, size_t len,
        struct hpo_error *err)
{
    if (bytes != len * sizeof(double)) {
        return hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL,
                "stored vector has %zu bytes, expected %zu", bytes, len * sizeof(double));
    }
    memcpy(ret, blob, bytes);
    hpo__storage_le_doubles(ret, len);
    return 0;
}

/* Read a vector of exactly `len` elements from the side file `ref` names. */
static int file_value(struct hpo_storage_reader *rd, const struct hpo_blob_ref *ref, double *ret,
        size_t len, struct hpo_error *err)
{
    int r;

    if (ref->len != len * sizeof(double)) {
        return hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL,
                "stored vector has %zu bytes, expected %zu", ref->len, len * sizeof(double));
    }
    r = hpo__blob_read(&rd->blobs, ref, ret, err);
    if (r == 0) {
        hpo__storage_le_doubles(ret, len);
    }
    return r;
}

int hpo_storage_read_vector(struct hpo_storage_reader *rd, int64_t study_id, int64_t number,
        int64_t index, double *ret, size_t len, struct hpo_error *err)
{
    bool reread = false;
    int r = 0;

    if (rd->pg != NULL) {
        return hpo__pg_read_vector(rd->pg, study_id, number, index, ret, len, err);
    }
    pthread_mutex_lock(&rd->lock);
    r = reader_open(rd, err);
    /* A shared vector refers to an earlier trial; follow at most a few hops. */
    for (int hop = 0; r == 0; hop++) {
        int rc, type;
        if (hop > 64) {
            r = hpo_error_set(err, -ELOOP, HPO_INTERNAL, NULL, "vector reference loop");
            break;
        }
        sqlite3_bind_int64(rd->get, 1, study_id);
        sqlite3_bind_int64(rd->get, 2, number);
        sqlite3_bind_int64(rd->get, 3, index);
        rc = sqlite3_step(rd->get);
        if (rc != SQLITE_ROW) {
            r = rc == SQLITE_DONE ? hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL,
                                            "trial %lld has no stored vector",
                                            (long long)number)
                                  : hpo__storage_error(rd->db, rc, "reading a vector", err);
            break;
        }
        type = sqlite3_column_type(rd->get, 0);
        if (type == SQLITE_INTEGER || type == SQLITE_FLOAT) {
            int64_t ref = (int64_t)sqlite3_column_double(rd->get, 0);
            sqlite3_reset(rd->get);
            if (ref < 0 || ref >= number) {
                r = hpo_error_set(err, -EINVAL, HPO_INTERNAL, NULL, "bad vector reference");
                break;
            }
            number = ref;
            continue;
        }
        if (type == SQLITE_BLOB) {
            const void *blob = sqlite3_column_blob(rd->get, 0);
            size_t bytes = (size_t)sqlite3_column_bytes(rd->get, 0);
            struct hpo_blob_ref ref;

            if (!hpo__blob_parse(blob, bytes, &ref)) {
                r = blob_value(blob, bytes, ret, len, err);
            } else {
                r = file_value(rd, &ref, ret, len, err);
                if (r == -ENOENT && !reread) {
                    /* A commit replaced the row and removed its file after
                       this read: the row again has the new reference. */
                    reread = true;
                    r = 0;
                    sqlite3_reset(rd->get);
                    continue;
                }
            }
        } else {
            r = hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL, "trial %lld has no vector",
                    (long long)number);
        }
        break;
    }
    if (rd->get != NULL) {
        sqlite3_reset(rd->get);
        sqlite3_clear_bindings(rd->get);
    }
    pthread_mutex_unlock(&rd->lock);
    return r;
}

int hpo_storage_read_state(struct hpo_storage_reader *rd, int64_t study_id, void **ret,
        size_t *ret_len, struct hpo_error *err)
{
    static const char sql[] = "SELECT sampler_state FROM studies WHERE id = ?1";
    sqlite3_stmt *stmt = NULL;
    int rc;
    int r;

    *ret = NULL;
    *ret_len = 0;
    if (rd->pg != NULL) {
        return hpo__pg_read_state(rd->pg, study_id, ret, ret_len, err);
    }
    pthread_mutex_lock(&rd->lock);
    r = reader_open(rd, err);
    if (r == 0) {
        rc = sqlite3_prepare_v2(rd->db, sql, -1, &stmt, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(stmt, 1, study_id);
            rc = sqlite3_step(stmt);
        }
        if (rc == SQLITE_DONE) {
            r = hpo_error_set(err, -ENOENT, HPO_NOT_FOUND, NULL, "study %lld is not stored",
                    (long long)study_id);
        } else if (rc != SQLITE_ROW) {
            r = hpo__storage_error(rd->db, rc, "reading a sampler state", err);
        } else if (sqlite3_column_type(stmt, 0) == SQLITE_BLOB) {
            const void *blob = sqlite3_column_blob(stmt, 0);
            size_t bytes = (size_t)sqlite3_column_bytes(stmt, 0);
            struct hpo_blob_ref ref;
            bool in_file = hpo__blob_parse(blob, bytes, &ref);
            size_t len = in_file ? ref.len : bytes;

            *ret = malloc(len ? len : 1);
            if (*ret == NULL) {
                r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            } else if (in_file) {
                r = hpo__blob_read(&rd->blobs, &ref, *ret, err);
            } else {
                memcpy(*ret, blob, bytes);
            }
            if (r < 0) {
                free(*ret);
                *ret = NULL;
            } else {
                *ret_len = len;
            }
        }
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&rd->lock);
    return r;
}
