/*
** powercut-shim.c: an LD_PRELOAD library for test_powercut.py that records
** what a power cut would leave on disk.
**
** For every fsync() or fdatasync() of a regular file under $POWERCUT_DIR it
** copies the file's content, as it stands when the call starts, to
** $POWERCUT_SNAP/<name>.tmp, runs the real call, and only once that returned
** 0 renames the copy to $POWERCUT_SNAP/<name>. The files of $POWERCUT_SNAP
** are then the state of the database's files if the power had failed at any
** moment: each holds what its last completed flush covered, everything
** written after it is lost (a file never flushed is missing altogether).
** A caller learns that its flush completed only after the rename, so
** anything the daemon acknowledged after a flush is in the copy.
**
** One lock serializes the copies and the flushes they stand for, so an
** older copy never replaces a newer one. Directories and files elsewhere go
** straight to the real call. Test-only code: not installed.
*/
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Copy `fd`'s whole content to `tmp`; 0 or -1. */
static int copy_fd(int fd, const char *tmp)
{
    static char buf[1 << 16];
    struct stat sb;
    off_t off = 0;
    int out;

    if (fstat(fd, &sb) != 0) {
        return -1;
    }
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        return -1;
    }
    while (off < sb.st_size) {
        ssize_t n = pread(fd, buf, sizeof(buf), off);

        if (n <= 0 || write(out, buf, (size_t)n) != n) {
            close(out);
            return -1;
        }
        off += n;
    }
    close(out);
    return 0;
}

/* The snapshot's paths for `fd`, or 0 when it is not a regular file under POWERCUT_DIR. */
static int snapshot_paths(int fd, char *tmp, char *final, size_t size)
{
    const char *dir = getenv("POWERCUT_DIR");
    const char *snap = getenv("POWERCUT_SNAP");
    char link[64], path[PATH_MAX];
    struct stat sb;
    const char *base;
    ssize_t n;

    if (dir == NULL || snap == NULL || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        return 0;
    }
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0) {
        return 0;
    }
    path[n] = '\0';
    if (strncmp(path, dir, strlen(dir)) != 0 || path[strlen(dir)] != '/') {
        return 0;
    }
    base = strrchr(path, '/') + 1;
    snprintf(tmp, size, "%s/%s.tmp", snap, base);
    snprintf(final, size, "%s/%s", snap, base);
    return 1;
}

static int flush(int fd, const char *name)
{
    void *sym = dlsym(RTLD_NEXT, name);
    int (*real)(int) = NULL;
    char tmp[PATH_MAX], final[PATH_MAX];
    int r;
    int e;

    /* memcpy: ISO C has no cast from an object pointer to a function pointer. */
    memcpy(&real, &sym, sizeof(real));
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (!snapshot_paths(fd, tmp, final, sizeof(tmp))) {
        return real(fd);
    }
    pthread_mutex_lock(&lock);
    if (copy_fd(fd, tmp) != 0) {
        /* The test then finds the snapshot stale and fails: never silent. */
        fprintf(stderr, "powercut-shim: copying fd %d failed: %s\n", fd, strerror(errno));
        abort();
    }
    r = real(fd);
    e = errno;
    if (r == 0 && rename(tmp, final) != 0) {
        fprintf(stderr, "powercut-shim: rename failed: %s\n", strerror(errno));
        abort();
    }
    pthread_mutex_unlock(&lock);
    errno = e;
    return r;
}

int fsync(int fd)
{
    return flush(fd, "fsync");
}

int fdatasync(int fd)
{
    return flush(fd, "fdatasync");
}
