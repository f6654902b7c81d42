/*
** activation.h: systemd socket activation (sd_listen_fds(3), written by
** hand as notify.c is): with LISTEN_PID naming this process and LISTEN_FDS
** >= 1, the first passed descriptor (3) is the listening socket.
*/
#ifndef HPO_ACTIVATION_H
#define HPO_ACTIVATION_H

#include <stddef.h>

/*
** The passed listening socket, or -1 when none was passed. On success the
** variables LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are removed (children
** must not see them), the descriptor is made close-on-exec, and its numeric
** address and port are written to host and *port. Returns -EINVAL with msg
** filled when the descriptor is not a listening TCP socket.
*/
int hpo_activation_listen_fd(char *host, size_t host_len, unsigned *port, char *msg,
        size_t msg_len);

#endif
