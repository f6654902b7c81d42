/*
** util.c: small helpers several modules share (util.h).
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

int hpo_fail(char *msg, size_t len, int r, const char *fmt, ...)
{
    va_list ap;

    if (msg != NULL && len > 0) {
        va_start(ap, fmt);
        vsnprintf(msg, len, fmt, ap);
        va_end(ap);
    }
    return r;
}

int hpo_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int hpo_read_stream(FILE *f, size_t max, char **ret_buf, size_t *ret_len)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;

    for (;;) {
        size_t n;
        if (len == cap) {
            char *nb;
            if (cap >= max) {
                free(buf);
                fclose(f);
                return -EFBIG;
            }
            cap = cap ? cap * 2 : 4096;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        int e = errno ? errno : EIO;
        free(buf);
        fclose(f);
        return -e;
    }
    fclose(f);
    *ret_buf = buf;
    *ret_len = len;
    return 0;
}
