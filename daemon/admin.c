/*
** admin.c: the backup archive in a temporary file (admin.h).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../storage/storage.h"
#include "../storage/backup.h"
#include "admin.h"

/* An unlinked file in `dir`: O_TMPFILE, or a named file removed at once. */
static int temp_file(const char *dir)
{
    char path[4200];
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) {
        return fd;
    }
    snprintf(path, sizeof(path), "%s/.hpod-backup-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) {
        unlink(path);
    }
    return fd;
}

int hpo_admin_backup(const char *db_path, int *ret_fd, uint64_t *ret_size,
        struct hpo_error *err)
{
    char dir[4096];
    const char *slash = strrchr(db_path, '/');
    struct stat st;
    int fd, r;

    if (hpo_storage_is_postgresql(db_path)) {
        /* Everything (vectors, states) is in the database: pg_dump takes it all. */
        return hpo_error_set(err, -ENOTSUP, HPO_INVALID_ARGUMENT, NULL,
                "backup: the database is PostgreSQL; back it up with pg_dump");
    }
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash == db_path ? 1 : slash - db_path),
                db_path);
    }
    fd = temp_file(dir);
    if (fd < 0) {
        char eb[128];
        return hpo_error_set(err, -errno, HPO_UNAVAILABLE, NULL,
                "backup: cannot create a temporary file in '%s': %s", dir,
                strerror_r(errno, eb, sizeof(eb)));
    }
    r = hpo_storage_backup(db_path, fd, err);
    if (r == 0 && (fstat(fd, &st) != 0 || lseek(fd, 0, SEEK_SET) != 0)) {
        r = hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL, "backup: cannot rewind the archive");
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_fd = fd;
    *ret_size = (uint64_t)st.st_size;
    return 0;
}
