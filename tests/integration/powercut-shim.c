/*
** powercut-shim.c: an LD_PRELOAD library for test_powercut.py that records
** what a power cut would leave on disk.
**
** A flush makes two kinds of things durable, and the shim records both as
** they stand when the call starts:
**
** - fsync() or fdatasync() of a regular file anywhere under $POWERCUT_DIR:
**   the file's data. Its content is copied to $POWERCUT_SNAP/ino/<inode>-<gen>
**   (the inode number and its generation, so a reused inode number is never
**   taken for the file that had it before). A file is named by inode because
**   a rename moves the name, not the data. The generation is the inode's
**   birth time (statx), read without opening the file: closing another fd
**   of a database file would drop SQLite's POSIX locks on it.
** - fsync() or fdatasync() of a directory under (or equal to) $POWERCUT_DIR:
**   the directory's entries. Its listing (one line per entry: name, inode,
**   generation as above, `f` for a regular file or `d` for a directory) goes to
**   $POWERCUT_SNAP/dir/<path relative to $POWERCUT_DIR, '/' as '%'> (the top
**   directory is `%`). A name created, renamed or unlinked after the last
**   directory flush is as it was at that flush.
**
** Each record is written to a `.tmp` file and renamed into place only once
** the real call returned 0, so the records are the worst case a power cut
** could leave at any moment: what the last completed flush of each file and
** of each directory covered, nothing after it. A caller learns that its flush
** completed only after the rename, so anything the daemon acknowledged after
** a flush is in the records. test_powercut.py builds the disk from them.
**
** One lock serializes the records and the flushes they stand for, so an
** older record never replaces a newer one. Files elsewhere go straight to
** the real call. Test-only code: not installed.
*/
#include <dirent.h>
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

static void die(const char *what, const char *path)
{
    /* The test then finds no record and fails: never silent. */
    fprintf(stderr, "powercut-shim: %s %s: %s\n", what, path, strerror(errno));
    abort();
}

/*
** The identity of `name` under `dirfd` (or of dirfd itself for ""): inode
** and birth time, into `id`; its type into *type ('f', 'd'); 0, or -1 when
** it is gone or neither a regular file nor a directory.
*/
static int identity(int dirfd, const char *name, char *id, size_t size, char *type)
{
    struct statx sx;

    if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | (name[0] == '\0' ? AT_EMPTY_PATH : 0),
              STATX_TYPE | STATX_INO | STATX_BTIME, &sx) != 0) {
        return -1;
    }
    if (!S_ISREG(sx.stx_mode) && !S_ISDIR(sx.stx_mode)) {
        return -1;
    }
    *type = S_ISDIR(sx.stx_mode) ? 'd' : 'f';
    snprintf(id, size, "%llu-%lld.%09u", (unsigned long long)sx.stx_ino,
             (long long)sx.stx_btime.tv_sec, (unsigned)sx.stx_btime.tv_nsec);
    return 0;
}

/*
** Copy `fd`'s whole content to `tmp`. A file opened write-only is read
** through a second fd of its own: never a database file (SQLite opens those
** read-write), whose POSIX locks a close of another fd would drop.
*/
static void copy_fd(int fd, const char *tmp)
{
    static char buf[1 << 16];
    struct stat sb;
    off_t off = 0;
    int in = fd;
    int out;

    if (fstat(fd, &sb) != 0) {
        die("fstat of", tmp);
    }
    if ((fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY) {
        char link[64];

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        in = open(link, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            die("reopening", link);
        }
    }
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        die("creating", tmp);
    }
    while (off < sb.st_size) {
        ssize_t n = pread(in, buf, sizeof(buf), off);

        if (n <= 0 || write(out, buf, (size_t)n) != n) {
            die("copying to", tmp);
        }
        off += n;
    }
    close(out);
    if (in != fd) {
        close(in);
    }
}

/* Write the listing of directory `path` to `tmp`. */
static void list_dir(const char *path, const char *tmp)
{
    DIR *d = opendir(path);
    FILE *out;
    struct dirent *e;

    if (d == NULL) {
        die("opening", path);
    }
    out = fopen(tmp, "we");
    if (out == NULL) {
        die("creating", tmp);
    }
    while ((e = readdir(d)) != NULL) {
        char id[64];
        char type;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            identity(dirfd(d), e->d_name, id, sizeof(id), &type) != 0) {
            continue; /* unlinked meanwhile, or not a file */
        }
        fprintf(out, "%s %s %c\n", e->d_name, id, type);
    }
    closedir(d);
    if (fclose(out) != 0) {
        die("writing", tmp);
    }
}

/*
** The record's paths for `fd`: 1 with `tmp` and `final` set (and `dir` for
** a directory), or 0 when fd is neither a regular file nor a directory
** under POWERCUT_DIR.
*/
static int record_paths(int fd, char *tmp, char *final, size_t size, char *dir, int *is_dir)
{
    const char *top = getenv("POWERCUT_DIR");
    const char *snap = getenv("POWERCUT_SNAP");
    char link[64], id[64];
    char type;
    size_t n_top;
    ssize_t n;

    if (top == NULL || snap == NULL || identity(fd, "", id, sizeof(id), &type) != 0) {
        return 0;
    }
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, dir, PATH_MAX - 1);
    if (n <= 0) {
        return 0;
    }
    dir[n] = '\0';
    n_top = strlen(top);
    if (strncmp(dir, top, n_top) != 0 || (dir[n_top] != '/' && dir[n_top] != '\0')) {
        return 0;
    }
    *is_dir = type == 'd';
    if (*is_dir) {
        char rel[PATH_MAX];

        snprintf(rel, sizeof(rel), "%s", dir[n_top] == '\0' ? "%" : dir + n_top + 1);
        for (char *p = rel; *p != '\0'; p++) {
            if (*p == '/') {
                *p = '%';
            }
        }
        if (snprintf(final, size, "%s/dir/%s", snap, rel) >= (int)size) {
            die("path too long:", rel);
        }
    } else {
        if (dir[n_top] == '\0') {
            return 0;
        }
        if (snprintf(final, size, "%s/ino/%s", snap, id) >= (int)size) {
            die("path too long:", id);
        }
    }
    if (snprintf(tmp, size, "%s.tmp", final) >= (int)size) {
        die("path too long:", final);
    }
    return 1;
}

static int flush(int fd, const char *name)
{
    void *sym = dlsym(RTLD_NEXT, name);
    int (*real)(int) = NULL;
    char tmp[PATH_MAX], final[PATH_MAX], path[PATH_MAX];
    int is_dir = 0;
    int r;
    int e;

    /* memcpy: ISO C has no cast from an object pointer to a function pointer. */
    memcpy(&real, &sym, sizeof(real));
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (!record_paths(fd, tmp, final, sizeof(final), path, &is_dir)) {
        return real(fd);
    }
    pthread_mutex_lock(&lock);
    if (is_dir) {
        list_dir(path, tmp);
    } else {
        copy_fd(fd, tmp);
    }
    r = real(fd);
    e = errno;
    if (r == 0 && rename(tmp, final) != 0) {
        die("renaming", tmp);
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
