/*
** util.h: small helpers several modules share: a printf-style message
** into a caller's buffer, a hex digit's value, and reading a whole file.
*/
#ifndef HPO_CORE_UTIL_H
#define HPO_CORE_UTIL_H

#include <stddef.h>
#include <stdio.h>

/*
** Write a printf-style message into `msg` (`len` bytes, truncated; none
** when `msg` is NULL) and return `r`, so that
** `return hpo_fail(msg, len, -EINVAL, ...)` is one step.
*/
int hpo_fail(char *msg, size_t len, int r, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* The value of a hex digit (either case), or -1 when `c` is not one. */
int hpo_hex_digit(char c);

/*
** Read the whole of an open file into a malloc'd buffer and close it.
** Returns 0, -EFBIG when the file is larger
** than `max` bytes, -ENOMEM, or -errno (-EIO when unknown) on a read
** error; on error nothing is returned in *ret_buf.
*/
int hpo_read_stream(FILE *f, size_t max, char **ret_buf, size_t *ret_len);

#endif
