/*
** log.c: stderr logging with syslog priority prefixes, one write per line.
*/
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static atomic_int log_level = HPO_LOG_INFO;

/*
** A thread between hpo_log_hold() and hpo_log_flush() (the loop thread while
** it runs MHD) collects its whole lines here and writes them in one call:
** a burst of finished requests costs one write instead of one per line.
*/
#define HOLD_CAP 16384
static _Thread_local bool holding;
static _Thread_local size_t held;
static _Thread_local char hold_buf[HOLD_CAP];

static void write_out(const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, buf, n);
        if (w <= 0) {
            return;
        }
        buf += w;
        n -= (size_t)w;
    }
}

void hpo_log_hold(void)
{
    holding = true;
}

void hpo_log_flush(void)
{
    holding = false;
    write_out(hold_buf, held);
    held = 0;
}

void hpo_log_set_level(enum hpo_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum hpo_log_level hpo_log_get_level(void)
{
    return (enum hpo_log_level)atomic_load(&log_level);
}

int hpo_log_parse_level(const char *name)
{
    static const char *const names[] = { "err", "warning", "notice", "info", "debug" };

    for (int i = 0; i < 5; i++) {
        if (strcmp(names[i], name) == 0) {
            return HPO_LOG_ERR + i;
        }
    }
    return -1;
}

void hpo_log_impl(enum hpo_log_level level, const char *file, int line, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    int n, m;

    if ((int)level > atomic_load(&log_level)) {
        return;
    }
    n = snprintf(buf, sizeof(buf), "<%d>%s:%d: ", (int)level, file, line);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        return;
    }
    va_start(ap, fmt);
    m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        return;
    }
    n += m;
    if ((size_t)n > sizeof(buf) - 2) {
        n = (int)sizeof(buf) - 2;
    }
    buf[n++] = '\n';
    if (holding) {
        if (held + (size_t)n > HOLD_CAP) {
            write_out(hold_buf, held);
            held = 0;
        }
        memcpy(hold_buf + held, buf, (size_t)n);
        held += (size_t)n;
        return;
    }
    /* One write per line (or per held batch of whole lines): lines never interleave. */
    write_out(buf, (size_t)n);
}
