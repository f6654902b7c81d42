/*
** preflight.h: what the daemon checks before it touches its database (and
** what --check-config checks without touching it): that the listen address
** can be bound, that the database can be opened or created, and the lock
** that keeps a second daemon off a database in use.
*/
#ifndef HPO_PREFLIGHT_H
#define HPO_PREFLIGHT_H

#include <stddef.h>

/*
** Whether the database at `path` could be opened, or created, by this
** process: an existing one must be a readable and writable regular file
** that is empty or starts with SQLite's header; a missing one needs an
** existing, writable directory. Creates and changes nothing. Returns 0, or
** a negative errno after writing a message into `msg`. In-memory paths
** (":memory:", "file:...") pass.
*/
int hpo_preflight_db(const char *path, char *msg, size_t len);

/*
** Bind a TCP socket to host:port (a numeric address) and close it again:
** port 0 checks only that the address belongs to this machine. Returns 0,
** or a negative errno after writing a message into `msg`.
*/
int hpo_preflight_listen(const char *host, unsigned port, char *msg, size_t len);

/*
** Take the lock file `<path>.lock` for as long as the process lives: an
** open file description lock (F_OFD_SETLK), which the kernel drops when the
** process ends however it ends, so a SIGKILL leaves nothing that blocks the
** next start. The file holds the owner's PID; it stays when the daemon
** stops. Returns the locked fd (leave it open), or a negative errno after
** writing a message into `msg`: -EBUSY when another process holds the lock,
** named by the PID it wrote. In-memory paths need no lock: for them it
** returns HPO_PREFLIGHT_NO_LOCK.
*/
int hpo_preflight_lock(const char *path, char *msg, size_t len);

/* hpo_preflight_lock's answer for a database that is not a file. */
#define HPO_PREFLIGHT_NO_LOCK 0x7fffffff

#endif
