/*
** hpoctl.h: what hpoctl's files share: the run loop and error printing.
*/
#ifndef HPOCTL_H
#define HPOCTL_H

#include <stddef.h>
#include <stdint.h>

struct hpo_client;
struct hpo_client_error;

/* Exit codes. */
#define HPOCTL_EXIT_OK        0
#define HPOCTL_EXIT_API       1
#define HPOCTL_EXIT_USAGE     2
#define HPOCTL_EXIT_NO_TRIAL  3 /* `run` completed no trial, or --max-failures stopped it */
#define HPOCTL_EXIT_INTERRUPT 130

struct hpoctl_run_options {
    const char *study;
    int64_t n_trials;   /* stop after this many trials; -1: until exhausted or interrupted */
    int jobs;           /* commands at once, >= 1 */
    double timeout_s;   /* per trial wall time; 0: none */
    int64_t max_failures; /* stop asking after this many failed trials in a row; 0: never */
    double progress_s;  /* plain progress lines every this many seconds off a TTY; 0: none */
    char **argv;        /* the command and its arguments, NULL-terminated */
    int argc;
};

/* The text of errno value `errnum` (positive), in buf (strerror_r, not the banned strerror). */
const char *hpoctl_strerror(int errnum, char *buf, size_t size);

/* Print "hpoctl: <what>: <code>: <message> (field F)" on stderr. */
void hpoctl_print_error(const char *what, const struct hpo_client_error *err);

/*
** The worker loop of `hpoctl run` (hpoctl.1). Returns the exit code:
** 0 when it stopped after N trials or because the study is exhausted and
** at least one trial completed, 3 when none did (or max_failures stopped
** it), 1 on an API error, 130 when interrupted by SIGINT or SIGTERM.
*/
int hpoctl_run(struct hpo_client *c, const struct hpoctl_run_options *o);

#endif
