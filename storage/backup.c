/*
** backup.c: online backup as a tar stream (backup.h).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "storage-int.h"

#define CHUNK (1u << 20)

static atomic_uint backup_counter;

static int sys_fail(struct hpo_error *err, int e, const char *what, const char *path)
{
    char eb[128];

    return hpo_error_set(err, -e, HPO_UNAVAILABLE, NULL, "backup: %s '%s': %s", what, path,
            strerror_r(e, eb, sizeof(eb)));
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;

    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One ustar header block for `name` (< 100 characters) of `size` bytes. */
static int tar_header(int fd, const char *name, uint64_t size, char type, unsigned mode,
        time_t mtime)
{
    unsigned char h[512];
    unsigned sum = 0;

    if (strlen(name) >= 100 || size >= 077777777777ULL) {
        return -ENAMETOOLONG;
    }
    memset(h, 0, sizeof(h));
    memcpy(h, name, strlen(name));
    snprintf((char *)h + 100, 8, "%07o", mode);
    snprintf((char *)h + 108, 8, "%07o", 0u);
    snprintf((char *)h + 116, 8, "%07o", 0u);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
    snprintf((char *)h + 136, 12, "%011llo",
            (unsigned long long)(mtime > 0 ? mtime : 0) & 077777777777ULL);
    memset(h + 148, ' ', 8);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    for (size_t i = 0; i < sizeof(h); i++) {
        sum += h[i];
    }
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    return write_all(fd, h, sizeof(h));
}

static int tar_pad(int fd, uint64_t size)
{
    static const char zeros[512];
    size_t pad = (size_t)((512 - size % 512) % 512);

    return pad > 0 ? write_all(fd, zeros, pad) : 0;
}

/* Copy the whole file at `path` into the archive as `name`. */
static int tar_file(int out, const char *path, const char *name, struct hpo_error *err)
{
    int in = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    uint64_t left;
    int r;

    if (in < 0 || fstat(in, &st) != 0) {
        r = sys_fail(err, errno, "cannot read", path);
        goto out;
    }
    r = tar_header(out, name, (uint64_t)st.st_size, '0', 0600, st.st_mtime);
    buf = malloc(CHUNK);
    if (r < 0 || buf == NULL) {
        r = r < 0 ? sys_fail(err, -r, "cannot write", name) : sys_fail(err, ENOMEM, "", name);
        goto out;
    }
    for (left = (uint64_t)st.st_size; left > 0;) {
        ssize_t n = read(in, buf, left < CHUNK ? (size_t)left : CHUNK);
        if (n <= 0) {
            r = sys_fail(err, n < 0 ? errno : EIO, "cannot read", path);
            goto out;
        }
        r = write_all(out, buf, (size_t)n);
        if (r < 0) {
            r = sys_fail(err, -r, "cannot write", name);
            goto out;
        }
        left -= (uint64_t)n;
    }
    r = tar_pad(out, (uint64_t)st.st_size);
out:
    free(buf);
    if (in >= 0) {
        close(in);
    }
    return r;
}

/*
** Copy a side file into the archive, checking it is the value the reference
** names. 0; 1 when the file is gone or holds another value (take the
** snapshot again); negative errno on an I/O error of the archive.
*/
static int tar_blob(int out, const char *dir, const char *base, const struct hpo_blob_ref *ref,
        struct hpo_error *err)
{
    char path[4400], name[200];
    int in;
    char *buf;
    struct hpo_xxh64 x;
    uint64_t left = ref->len;
    int r = 0;

    snprintf(path, sizeof(path), "%s/%s", dir, ref->name);
    snprintf(name, sizeof(name), "%s.blobs/%s", base, ref->name);
    in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return errno == ENOENT ? 1 : sys_fail(err, errno, "cannot read", path);
    }
    buf = malloc(CHUNK);
    if (buf == NULL) {
        close(in);
        return sys_fail(err, ENOMEM, "", path);
    }
    r = tar_header(out, name, ref->len, '0', 0600, time(NULL));
    hpo__xxh64_init(&x);
    while (r == 0 && left > 0) {
        ssize_t n = read(in, buf, left < CHUNK ? (size_t)left : CHUNK);
        if (n <= 0) {
            r = 1; /* shorter than its reference: replaced meanwhile */
            break;
        }
        hpo__xxh64_update(&x, buf, (size_t)n);
        r = write_all(out, buf, (size_t)n);
        left -= (uint64_t)n;
    }
    free(buf);
    close(in);
    if (r < 0) {
        return sys_fail(err, -r, "cannot write", name);
    }
    if (r == 0 && hpo__xxh64_digest(&x) != ref->hash) {
        r = 1;
    }
    return r == 0 ? tar_pad(out, ref->len) : r;
}

/* Copy a snapshot of `db_path` into the new database file `tmp` (one read transaction). */
static int snapshot(const char *db_path, const char *tmp, struct hpo_error *err)
{
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *b;
    int rc;

    rc = sqlite3_open_v2(db_path, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(src, 5000);
        rc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL);
    }
    if (rc != SQLITE_OK) {
        int r = hpo__storage_error(dst != NULL ? dst : src, rc, "backup: opening", err);
        sqlite3_close(dst);
        sqlite3_close(src);
        return r;
    }
    b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL) {
        int r = hpo__storage_error(dst, sqlite3_errcode(dst), "backup: starting", err);
        sqlite3_close(dst);
        sqlite3_close(src);
        return r;
    }
    /* All pages in one step: one read transaction, so one snapshot; WAL lets writers go on. */
    do {
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
            sqlite3_sleep(10);
        }
    } while (rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        int r = hpo__storage_error(dst, rc, "backup: copying", err);
        sqlite3_close(dst);
        sqlite3_close(src);
        return r;
    }
    sqlite3_close(src);
    /*
    ** The copy takes no record of the live database's redo log (a restore
    ** beside an old log): its epoch is drawn anew at its first open.
    */
    rc = sqlite3_exec(dst, "UPDATE hpod_redo SET epoch = 0", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int r = hpo__storage_error(dst, rc, "backup: resetting the copy's redo epoch", err);
        sqlite3_close(dst);
        return r;
    }
    /* The copy stands alone: no -wal beside it in the archive. */
    rc = sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int r = hpo__storage_error(dst, rc, "backup: finishing the copy", err);
        sqlite3_close(dst);
        return r;
    }
    return sqlite3_close(dst) == SQLITE_OK ? 0 :
            hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL, "backup: closing the copy");
}

/* The references of the copy, as blob refs (malloc'd array). */
static int list_refs(const char *tmp, struct hpo_blob_ref **ret, size_t *ret_n,
        struct hpo_error *err)
{
    static const char sql[] =
            "SELECT sampler_state FROM studies WHERE length(sampler_state) < 128"
            " UNION ALL SELECT value FROM params"
            " WHERE typeof(value) = 'blob' AND length(value) < 128";
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    struct hpo_blob_ref *v = NULL;
    size_t n = 0, cap = 0;
    int rc, r = 0;

    rc = sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    }
    if (rc != SQLITE_OK) {
        r = hpo__storage_error(db, rc, "backup: listing side files", err);
        sqlite3_close(db);
        return r;
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct hpo_blob_ref ref;
        if (!hpo__blob_parse(sqlite3_column_blob(stmt, 0), (size_t)sqlite3_column_bytes(stmt, 0),
                    &ref)) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct hpo_blob_ref *nv = realloc(v, ncap * sizeof(*nv));
            if (nv == NULL) {
                r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
                break;
            }
            v = nv;
            cap = ncap;
        }
        v[n++] = ref;
    }
    if (r == 0 && rc != SQLITE_DONE) {
        r = hpo__storage_error(db, rc, "backup: listing side files", err);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* One attempt: 0 done, 1 a side file changed (again), negative errno. */
static int attempt(const char *db_path, const char *tmp, int out_fd, off_t start,
        struct hpo_error *err)
{
    const char *slash = strrchr(db_path, '/');
    const char *base = slash != NULL ? slash + 1 : db_path;
    char dir[4300], dname[200];
    struct hpo_blob_ref *refs = NULL;
    size_t n = 0;
    int r;

    if (lseek(out_fd, start, SEEK_SET) < 0 || ftruncate(out_fd, start) != 0) {
        return sys_fail(err, errno, "cannot rewind", "the archive");
    }
    r = snapshot(db_path, tmp, err);
    if (r == 0) {
        r = list_refs(tmp, &refs, &n, err);
    }
    if (r == 0) {
        r = tar_file(out_fd, tmp, base, err);
    }
    snprintf(dir, sizeof(dir), "%s.blobs", db_path);
    snprintf(dname, sizeof(dname), "%s.blobs/", base);
    if (r == 0 && n > 0) {
        r = tar_header(out_fd, dname, 0, '5', 0700, time(NULL));
        if (r < 0) {
            r = sys_fail(err, -r, "cannot write", dname);
        }
    }
    for (size_t i = 0; r == 0 && i < n; i++) {
        r = tar_blob(out_fd, dir, base, &refs[i], err);
    }
    free(refs);
    if (r == 0) {
        static const char end[1024];
        r = write_all(out_fd, end, sizeof(end));
        if (r < 0) {
            r = sys_fail(err, -r, "cannot write", "the archive");
        }
    }
    return r;
}

int hpo_storage_backup(const char *db_path, int out_fd, struct hpo_error *err)
{
    char tmp[4200], journal[4300];
    off_t start = lseek(out_fd, 0, SEEK_CUR);
    const char *slash = strrchr(db_path, '/');
    int r = 1;

    if (start < 0) {
        return sys_fail(err, errno, "cannot seek", "the archive");
    }
    if (strlen(slash != NULL ? slash + 1 : db_path) > 80) {
        return hpo_error_set(err, -ENAMETOOLONG, HPO_INTERNAL, NULL,
                "backup: the database's file name is too long for the archive");
    }
    snprintf(tmp, sizeof(tmp), "%s.backup-%ld-%u", db_path, (long)getpid(),
            atomic_fetch_add(&backup_counter, 1));
    snprintf(journal, sizeof(journal), "%s-journal", tmp);
    for (int i = 0; i < 5 && r == 1; i++) {
        if (i > 0) {
            /* An ask's vector file is written after its commit (blobs.c): give it a moment. */
            usleep(10000u << i);
        }
        unlink(tmp);
        r = attempt(db_path, tmp, out_fd, start, err);
    }
    unlink(tmp);
    unlink(journal);
    if (r == 1) {
        return hpo_error_set(err, -EAGAIN, HPO_UNAVAILABLE, NULL,
                "backup: side files kept changing; try again");
    }
    return r;
}
