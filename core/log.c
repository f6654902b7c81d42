/*
** log.c: stderr logging, one write per line: with syslog priority prefixes
** under journald, with RFC 3339 timestamps and level names elsewhere.
*/
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* Whether stderr is the journal stream systemd gave us (decided once). */
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;
static bool journal;

/*
** systemd.exec(5): JOURNAL_STREAM holds "DEV:INODE" of the stream connected
** to stderr/stdout; a process should use the native format only when that
** matches its stderr (a child whose stderr was redirected inherits the
** variable but not the stream).
*/
static void detect_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char *end;

    if (v == NULL || v[0] < '0' || v[0] > '9') {
        return;
    }
    dev = strtoull(v, &end, 10);
    if (*end != ':' || end[1] < '0' || end[1] > '9') {
        return;
    }
    ino = strtoull(end + 1, &end, 10);
    journal = *end == '\0' && fstat(STDERR_FILENO, &st) == 0 &&
            (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

bool hpo_log_journal(void)
{
    pthread_once(&journal_once, detect_journal);
    return journal;
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

static const char *const level_names[] = { "err", "warning", "notice", "info", "debug" };

int hpo_log_parse_level(const char *name)
{
    const char *const *names = level_names;

    for (int i = 0; i < 5; i++) {
        if (strcmp(names[i], name) == 0) {
            return HPO_LOG_ERR + i;
        }
    }
    return -1;
}

void hpo_log_impl(enum hpo_log_level level, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    hpo_log_va(level, file, line, fmt, ap);
    va_end(ap);
}

void hpo_log_va(enum hpo_log_level level, const char *file, int line, const char *fmt,
        va_list ap)
{
    char buf[2048], where[256];
    int n, m;

    if ((int)level > atomic_load(&log_level)) {
        return;
    }
    if (line >= 0) {
        snprintf(where, sizeof(where), "%s:%d", file, line);
    } else {
        snprintf(where, sizeof(where), "%s", file);
    }
    if (hpo_log_journal()) {
        /* journald keeps the time and turns the prefix into the priority. */
        n = snprintf(buf, sizeof(buf), "<%d>%s: ", (int)level, where);
    } else {
        struct timespec ts;
        struct tm tm;
        int lv = (int)level - HPO_LOG_ERR;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s: ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                (int)(ts.tv_nsec / 1000000), level_names[lv >= 0 && lv < 5 ? lv : 4], where);
    }
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        return;
    }
    m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    if (m < 0) {
        return;
    }
    n += m;
    if ((size_t)n > sizeof(buf) - 2) {
        n = (int)sizeof(buf) - 2;
    }
    /* A message's own line ends (libmicrohttpd's have one) would leave empty lines. */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
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
