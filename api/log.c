/*
** log.c: stderr logging with syslog priority prefixes, one write per line.
*/
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static atomic_int log_level = HPO_LOG_INFO;

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
    /* One write per line, so lines from several threads never interleave. */
    if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
        return;
    }
}
