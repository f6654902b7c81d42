/*
** preflight.c: the checks before the database is touched, and the lock that
** makes a database one daemon's (preflight.h).
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preflight.h"

static int fail(char *msg, size_t len, int r, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int fail(char *msg, size_t len, int r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return r;
}

static const char *errtext(int e, char *buf, size_t len)
{
    return strerror_r(e, buf, len);
}

/* Whether `path` names a file, not SQLite's in-memory database or a URI. */
/* PostgreSQL URIs (storage.h) are no file either: the storage takes their lock itself. */
static bool is_file(const char *path)
{
    return strcmp(path, ":memory:") != 0 && strncmp(path, "file:", 5) != 0 &&
            strncmp(path, "postgresql://", 13) != 0 && strncmp(path, "postgres://", 11) != 0;
}

int hpo_preflight_db(const char *path, char *msg, size_t len)
{
    static const char header[16] = "SQLite format 3";
    char dir[4096], eb[128];
    const char *slash;
    struct stat sb;

    if (!is_file(path)) {
        return 0;
    }
    if (stat(path, &sb) == 0) {
        unsigned char head[16];
        ssize_t n;
        int fd;
        if (!S_ISREG(sb.st_mode)) {
            return fail(msg, len, -EINVAL, "db: '%s' is not a regular file", path);
        }
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
            int e = errno;
            return fail(msg, len, -e, "db: cannot open '%s': %s", path, errtext(e, eb, sizeof(eb)));
        }
        n = pread(fd, head, sizeof(head), 0);
        close(fd);
        /* SQLite takes an empty file as a new database. */
        if (n != 0 && (n != (ssize_t)sizeof(head) || memcmp(head, header, sizeof(head)) != 0)) {
            return fail(msg, len, -EINVAL, "db: '%s' is not an SQLite database", path);
        }
        return 0;
    }
    if (errno != ENOENT) {
        int e = errno;
        return fail(msg, len, -e, "db: cannot open '%s': %s", path, errtext(e, eb, sizeof(eb)));
    }
    /* Missing: the directory must exist and take new files (the database, its -wal and .blobs/). */
    slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    }
    if (stat(dir, &sb) < 0) {
        int e = errno;
        return fail(msg, len, -e, "db: cannot create '%s': directory '%s': %s", path, dir,
                errtext(e, eb, sizeof(eb)));
    }
    if (!S_ISDIR(sb.st_mode)) {
        return fail(msg, len, -ENOTDIR, "db: cannot create '%s': '%s' is not a directory", path,
                dir);
    }
    if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) < 0) {
        int e = errno;
        return fail(msg, len, -e, "db: cannot create '%s' in directory '%s': %s", path, dir,
                errtext(e, eb, sizeof(eb)));
    }
    return 0;
}

int hpo_preflight_listen(const char *host, unsigned port, char *msg, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    char eb[128];
    int fd, one = 1;
    bool v6 = strchr(host, ':') != NULL;

    memset(&ss, 0, sizeof(ss));
    if (v6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sslen = sizeof(*a6);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
            return fail(msg, len, -EINVAL, "listen: '%s' is not a numeric IPv6 address", host);
        }
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sslen = sizeof(*a4);
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
            return fail(msg, len, -EINVAL, "listen: '%s' is not a numeric IPv4 address", host);
        }
    }
    fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        return fail(msg, len, -e, "listen: no socket: %s", errtext(e, eb, sizeof(eb)));
    }
    /* As libmicrohttpd does, so a port in TIME_WAIT is no conflict. */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
        int e = errno;
        close(fd);
        return fail(msg, len, -e, v6 ? "listen: cannot bind [%s]:%u: %s"
                                     : "listen: cannot bind %s:%u: %s",
                host, port, errtext(e, eb, sizeof(eb)));
    }
    close(fd);
    return 0;
}

int hpo_preflight_lock(const char *path, char *msg, size_t len)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    char lock[4200], pid[32], eb[128];
    int fd, n;

    if (!is_file(path)) {
        return HPO_PREFLIGHT_NO_LOCK;
    }
    snprintf(lock, sizeof(lock), "%s.lock", path);
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        int e = errno;
        return fail(msg, len, -e, "cannot open the lock file '%s': %s", lock,
                errtext(e, eb, sizeof(eb)));
    }
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        int e = errno;
        ssize_t got;
        if (e != EAGAIN && e != EACCES) {
            close(fd);
            return fail(msg, len, -e, "cannot lock '%s': %s", lock, errtext(e, eb, sizeof(eb)));
        }
        got = pread(fd, pid, sizeof(pid) - 1, 0);
        close(fd);
        pid[got > 0 ? got : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (pid[0] == '\0') {
            snprintf(pid, sizeof(pid), "unknown");
        }
        return fail(msg, len, -EBUSY,
                "database '%s' is in use by another hpod (pid %s, lock file '%s'); "
                "one database takes one daemon",
                path, pid, lock);
    }
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return fail(msg, len, -e, "cannot write the lock file '%s': %s", lock,
                errtext(e, eb, sizeof(eb)));
    }
    return fd;
}
