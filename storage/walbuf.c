/*
** walbuf.c: the writer connection's VFS (walbuf.h): SQLite's own unix VFS,
** except that a WAL file gathers the consecutive writes of a commit and
** hands them to the kernel in one pwritev.
**
** SQLite appends a frame to the WAL as two writes, its 24-byte header and
** then the page, so a commit of three pages costs six pwrite calls. Here
** the writes that continue the previous one are kept in memory and the
** whole run goes out in one pwrite when the commit's frame is complete:
** a frame whose header carries the database size (bytes 4..7 non-zero)
** ends a commit, and from that header on every write (the page, padding
** frames, the rest of a page split at a sync point) writes the run at once
** and returns that write's result, so a failure (ENOSPC, EIO) fails the
** COMMIT as before, before SQLite publishes the frames in the WAL index;
** the next frame that is not a commit's gathers again. Any other call on
** the file (read, sync, truncate, size, lock, file control, close) and a
** write that does not continue the run write the run first, so SQLite, the
** other connections and hpod's own fdatasync of the WAL (sqlite.c, the
** pipelined flush) never see the file without what SQLite wrote to it.
** Frames of a transaction that spilled pages before its commit stay in
** memory until the next of those calls; a crash then loses only what was
** never committed. Other files are SQLite's own, untouched.
*/
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "walbuf.h"

#define WALBUF_NAME  "hpod-walbuf"
#define FRAME_HEADER 24          /* a WAL frame's header (SQLite's file format) */
/*
** A run is written as it would grow past this: the unix VFS writes at most
** 128 KiB - 1 bytes per call (and takes a shorter write for a full disk).
** A page is at most 64 KiB, so a run never exceeds 64 KiB.
*/
#define RUN_MAX      (64u * 1024)

struct wal_file {
    sqlite3_file base;      /* methods: wal_methods */
    sqlite3_file *real;     /* the unix VFS's file, right after this struct */
    unsigned char *buf;     /* the run's bytes */
    size_t len, cap;
    sqlite3_int64 start;    /* file offset of buf[0] */
    bool in_commit;         /* since a commit frame's header: every write goes at once */
};

static sqlite3_vfs walbuf_vfs;
static sqlite3_vfs *unix_vfs;
static sqlite3_io_methods wal_methods;
static int wal_methods_version;

/* Write the run kept in memory (if any) with one pwrite of the real file. */
static int flush_run(struct wal_file *f)
{
    int rc;

    if (f->len == 0) {
        return SQLITE_OK;
    }
    rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->start);
    f->len = 0;
    return rc;
}

static int wal_close(sqlite3_file *file)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc = flush_run(f);
    int rc2 = f->real->pMethods->xClose(f->real);

    free(f->buf);
    f->buf = NULL;
    f->cap = 0;
    return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *file, void *out, int n, sqlite3_int64 off)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc = flush_run(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, out, n, off);
}

static int keep(struct wal_file *f, const void *data, size_t n)
{
    if (f->len + n > f->cap) {
        size_t cap = f->cap > 0 ? f->cap : 64 * 1024;
        unsigned char *p;

        while (cap < f->len + n) {
            cap *= 2;
        }
        p = realloc(f->buf, cap);
        if (p == NULL) {
            return SQLITE_NOMEM;
        }
        f->buf = p;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, data, n);
    f->len += n;
    return SQLITE_OK;
}

static int wal_write(sqlite3_file *file, const void *data, int n, sqlite3_int64 off)
{
    struct wal_file *f = (struct wal_file *)file;
    const unsigned char *bytes = data;
    int rc;

    if (n <= 0) {
        return f->real->pMethods->xWrite(f->real, data, n, off);
    }
    /* Not the continuation of the run, or a run grown long: the run goes first. */
    if (f->len > 0 && (off != f->start + (sqlite3_int64)f->len ||
                              f->len + (size_t)n > RUN_MAX)) {
        rc = flush_run(f);
        if (rc != SQLITE_OK) {
            return rc;
        }
    }
    if (f->len == 0) {
        f->start = off;
    }
    rc = keep(f, data, (size_t)n);
    if (rc != SQLITE_OK) {
        /* No memory for the run: what was kept goes, and this write as SQLite made it. */
        rc = flush_run(f);
        return rc != SQLITE_OK ? rc : f->real->pMethods->xWrite(f->real, data, n, off);
    }
    if (n == FRAME_HEADER) {
        /* A frame's header: its database size is non-zero in a commit's frame only. */
        f->in_commit = (bytes[4] | bytes[5] | bytes[6] | bytes[7]) != 0;
        return SQLITE_OK;
    }
    return f->in_commit ? flush_run(f) : SQLITE_OK;
}

static int wal_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc = flush_run(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wal_sync(sqlite3_file *file, int flags)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc = flush_run(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wal_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc = flush_run(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wal_lock(sqlite3_file *file, int level)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc = flush_run(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xLock(f->real, level);
}

static int wal_unlock(sqlite3_file *file, int level)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc = flush_run(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xUnlock(f->real, level);
}

static int wal_check_reserved(sqlite3_file *file, int *out)
{
    struct wal_file *f = (struct wal_file *)file;

    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wal_file_control(sqlite3_file *file, int op, void *arg)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc = flush_run(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wal_sector_size(sqlite3_file *file)
{
    struct wal_file *f = (struct wal_file *)file;

    return f->real->pMethods->xSectorSize(f->real);
}

static int wal_device_characteristics(sqlite3_file *file)
{
    struct wal_file *f = (struct wal_file *)file;

    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int wal_shm_map(sqlite3_file *file, int page, int size, int extend, void volatile **out)
{
    struct wal_file *f = (struct wal_file *)file;

    return f->real->pMethods->xShmMap(f->real, page, size, extend, out);
}

static int wal_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    struct wal_file *f = (struct wal_file *)file;

    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void wal_shm_barrier(sqlite3_file *file)
{
    struct wal_file *f = (struct wal_file *)file;

    f->real->pMethods->xShmBarrier(f->real);
}

static int wal_shm_unmap(sqlite3_file *file, int delete_flag)
{
    struct wal_file *f = (struct wal_file *)file;

    return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static int wal_fetch(sqlite3_file *file, sqlite3_int64 off, int n, void **out)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc = flush_run(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xFetch(f->real, off, n, out);
}

static int wal_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    struct wal_file *f = (struct wal_file *)file;

    return f->real->pMethods->xUnfetch(f->real, off, p);
}

/*
** xOpen: the unix VFS opens the file; a WAL file is wrapped, any other is
** opened in place (its methods are the unix VFS's own, called on it directly).
*/
static int walbuf_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
        int *out_flags)
{
    struct wal_file *f = (struct wal_file *)file;
    int rc;

    (void)vfs;
    if ((flags & SQLITE_OPEN_WAL) == 0) {
        return unix_vfs->xOpen(unix_vfs, name, file, flags, out_flags);
    }
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)(f + 1);
    rc = unix_vfs->xOpen(unix_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || f->real->pMethods == NULL ||
            f->real->pMethods->iVersion < wal_methods_version) {
        if (f->real->pMethods != NULL) {
            f->real->pMethods->xClose(f->real);
        }
        f->base.pMethods = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    f->base.pMethods = &wal_methods;
    return SQLITE_OK;
}

/* The rest of the VFS is the unix VFS's. */
static int walbuf_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return unix_vfs->xDelete(unix_vfs, name, sync_dir);
}

static int walbuf_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return unix_vfs->xAccess(unix_vfs, name, flags, out);
}

static int walbuf_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return unix_vfs->xFullPathname(unix_vfs, name, n, out);
}

static void *walbuf_dlopen(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return unix_vfs->xDlOpen(unix_vfs, name);
}

static void walbuf_dlerror(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    unix_vfs->xDlError(unix_vfs, n, out);
}

static void (*walbuf_dlsym(sqlite3_vfs *vfs, void *handle, const char *sym))(void)
{
    (void)vfs;
    return unix_vfs->xDlSym(unix_vfs, handle, sym);
}

static void walbuf_dlclose(sqlite3_vfs *vfs, void *handle)
{
    (void)vfs;
    unix_vfs->xDlClose(unix_vfs, handle);
}

static int walbuf_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return unix_vfs->xRandomness(unix_vfs, n, out);
}

static int walbuf_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return unix_vfs->xSleep(unix_vfs, us);
}

static int walbuf_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return unix_vfs->xCurrentTime(unix_vfs, out);
}

static int walbuf_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return unix_vfs->xGetLastError != NULL ? unix_vfs->xGetLastError(unix_vfs, n, out) : 0;
}

static int walbuf_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return unix_vfs->xCurrentTimeInt64(unix_vfs, out);
}

static const char *registered; /* the VFS's name once registered, else NULL */

static void walbuf_register(void)
{
    unix_vfs = sqlite3_vfs_find("unix");
    /* iVersion 2 at least (xCurrentTimeInt64); its files' methods: version 3 (shm, mmap). */
    if (unix_vfs == NULL || unix_vfs->iVersion < 2) {
        return;
    }
    wal_methods_version = 3;
    wal_methods = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = wal_close,
        .xRead = wal_read,
        .xWrite = wal_write,
        .xTruncate = wal_truncate,
        .xSync = wal_sync,
        .xFileSize = wal_file_size,
        .xLock = wal_lock,
        .xUnlock = wal_unlock,
        .xCheckReservedLock = wal_check_reserved,
        .xFileControl = wal_file_control,
        .xSectorSize = wal_sector_size,
        .xDeviceCharacteristics = wal_device_characteristics,
        .xShmMap = wal_shm_map,
        .xShmLock = wal_shm_lock,
        .xShmBarrier = wal_shm_barrier,
        .xShmUnmap = wal_shm_unmap,
        .xFetch = wal_fetch,
        .xUnfetch = wal_unfetch,
    };
    walbuf_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct wal_file) + unix_vfs->szOsFile,
        .mxPathname = unix_vfs->mxPathname,
        .zName = WALBUF_NAME,
        .xOpen = walbuf_open,
        .xDelete = walbuf_delete,
        .xAccess = walbuf_access,
        .xFullPathname = walbuf_full_pathname,
        .xDlOpen = walbuf_dlopen,
        .xDlError = walbuf_dlerror,
        .xDlSym = walbuf_dlsym,
        .xDlClose = walbuf_dlclose,
        .xRandomness = walbuf_randomness,
        .xSleep = walbuf_sleep,
        .xCurrentTime = walbuf_current_time,
        .xGetLastError = walbuf_last_error,
        .xCurrentTimeInt64 = walbuf_current_time_int64,
    };
    if (sqlite3_vfs_register(&walbuf_vfs, 0) == SQLITE_OK) {
        registered = WALBUF_NAME;
    }
}

const char *hpo__walbuf_vfs(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    (void)pthread_once(&once, walbuf_register);
    return registered;
}
