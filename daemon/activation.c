/*
** activation.c: the socket passed by systemd (activation.h).
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "activation.h"

#define FIRST_FD 3 /* SD_LISTEN_FDS_START */

static bool parse_ul(const char *s, unsigned long *ret)
{
    char *end;

    if (s == NULL || *s == '\0') {
        return false;
    }
    errno = 0;
    *ret = strtoul(s, &end, 10);
    return errno == 0 && *end == '\0';
}

int hpo_activation_listen_fd(char *host, size_t host_len, unsigned *port, char *msg,
        size_t msg_len)
{
    unsigned long pid, n;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0, listening = 0;
    socklen_t olen = sizeof(type);

    if (!parse_ul(getenv("LISTEN_PID"), &pid) || pid != (unsigned long)getpid() ||
            !parse_ul(getenv("LISTEN_FDS"), &n) || n == 0) {
        return -1;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (n > 1) {
        snprintf(msg, msg_len, "socket activation passed %lu sockets; hpod takes one", n);
        return -EINVAL;
    }
    if (getsockopt(FIRST_FD, SOL_SOCKET, SO_TYPE, &type, &olen) != 0 || type != SOCK_STREAM ||
            getsockopt(FIRST_FD, SOL_SOCKET, SO_ACCEPTCONN, &listening, &olen) != 0 ||
            !listening || getsockname(FIRST_FD, (struct sockaddr *)&ss, &len) != 0 ||
            (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
        snprintf(msg, msg_len, "the socket passed by systemd is not a listening TCP socket "
                "(ListenStream= with an address and port)");
        return -EINVAL;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a4->sin_addr, host, (socklen_t)host_len);
        *port = ntohs(a4->sin_port);
    } else {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a6->sin6_addr, host, (socklen_t)host_len);
        *port = ntohs(a6->sin6_port);
    }
    fcntl(FIRST_FD, F_SETFD, FD_CLOEXEC);
    return FIRST_FD;
}
