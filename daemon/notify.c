/*
** notify.c: sd_notify in about forty lines (docs/STYLE.md rule 41).
*/
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"

int hpo_notify(const char *text)
{
    const char *path = secure_getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    size_t len;
    socklen_t salen;
    int fd, r = 0;

    if (path == NULL || path[0] == '\0') {
        return 0;
    }
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path)) {
        return -EINVAL;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@') {
        sa.sun_path[0] = '\0'; /* abstract namespace */
    }
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0) {
        r = -errno;
    }
    close(fd);
    return r;
}

uint64_t hpo_notify_watchdog_usec(void)
{
    const char *usec = secure_getenv("WATCHDOG_USEC");
    const char *pid = secure_getenv("WATCHDOG_PID");
    unsigned long long v;
    char *end;

    if (usec == NULL) {
        return 0;
    }
    if (pid != NULL && strtol(pid, NULL, 10) != (long)getpid()) {
        return 0;
    }
    errno = 0;
    v = strtoull(usec, &end, 10);
    if (errno != 0 || *end != '\0') {
        return 0;
    }
    return v;
}
