/*
** log.h: the daemon's one logging module. One line per message on stderr.
** Under journald (JOURNAL_STREAM names stderr) a line starts with a syslog
** priority prefix (<3> err ... <7> debug) that journald turns into the
** priority; elsewhere with an RFC 3339 UTC timestamp (milliseconds) and the
** level's name: "2026-12-06T04:13:51.123Z notice daemon/main.c:380: ...".
** In core/ so every layer can link it (the config unit test needs nothing
** else); only api/ and daemon/ log, libraries return errors instead.
*/
#ifndef HPO_LOG_H
#define HPO_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum hpo_log_level {
    HPO_LOG_ERR = 3,
    HPO_LOG_WARNING = 4,
    HPO_LOG_NOTICE = 5,
    HPO_LOG_INFO = 6,
    HPO_LOG_DEBUG = 7,
};

/* Messages above this level are dropped. Thread-safe to read; set at start and on SIGHUP. */
void hpo_log_set_level(enum hpo_log_level level);
enum hpo_log_level hpo_log_get_level(void);

/* Parse "err", "warning", "notice", "info", "debug"; -1 when unknown. */
int hpo_log_parse_level(const char *name);

void hpo_log_impl(enum hpo_log_level level, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Whether lines go to journald (with <N> prefixes). Decided at the first call; thread-safe. */
bool hpo_log_journal(void);

/*
** hpo_log_impl with a va_list. A negative `line` prints `file` alone (for
** messages from a library: "libmicrohttpd: ..."). Trailing newlines of the
** message are dropped.
*/
void hpo_log_va(enum hpo_log_level level, const char *file, int line, const char *fmt,
        va_list ap) __attribute__((format(printf, 4, 0)));

#define hpo_log(level, ...) hpo_log_impl((level), __FILE__, __LINE__, __VA_ARGS__)

/*
** Between hold and flush, the calling thread's lines are collected and
** written together at the flush (each line stays whole). For the loop
** thread around one pass of MHD, so a burst of requests costs one write.
*/
void hpo_log_hold(void);
void hpo_log_flush(void);

#endif
