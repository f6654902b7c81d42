/*
** notify.h: the systemd notification protocol (sd_notify(3)), without
** libsystemd: one AF_UNIX datagram to $NOTIFY_SOCKET per message.
*/
#ifndef HPO_NOTIFY_H
#define HPO_NOTIFY_H

#include <stdint.h>

/* Send `text` ("READY=1\nSTATUS=...") if NOTIFY_SOCKET is set. Returns 0, or -errno. */
int hpo_notify(const char *text);

/* The watchdog interval in microseconds from WATCHDOG_USEC (checking WATCHDOG_PID), or 0. */
uint64_t hpo_notify_watchdog_usec(void);

#endif
