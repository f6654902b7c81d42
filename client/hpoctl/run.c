/*
** run.c: `hpoctl run`, a worker loop that makes any command tunable.
**
** One thread, one poll() loop: up to J children, each in its own process
** group with its stdout on a pipe we read line by line as it comes (Python
** children get PYTHONUNBUFFERED=1, else their reports would arrive at exit);
** a self-pipe carries SIGCHLD, SIGINT and SIGTERM into the loop. HTTP calls
** are synchronous: they are short, and a child that writes meanwhile just
** waits on its pipe. Progress goes to stderr: one status line redrawn on a
** terminal, plain periodic lines otherwise, and a summary at the end.
*/
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hpo/client.h>
#include <jansson.h>

#include "hpoctl.h"
#include "runutil.h"

/* A line longer than this is forwarded in pieces and never parsed as `hpo:`. */
#define LINE_MAX_BYTES 65536
/* How long a command gets between SIGTERM and SIGKILL. */
#define KILL_GRACE_MS 2000
/* Distinct failure reasons kept for the summary (the rest count as "other"). */
#define MAX_REASONS 8
/* The most objectives (8) and constraints (64) a study declares (docs/API.md). */
#define MAX_OBJECTIVES 8
#define MAX_CONSTRAINTS 64
/* How often the terminal status line is redrawn at most. */
#define STATUS_REDRAW_MS 200

extern char **environ;

enum job_state {
    JOB_FREE,    /* slot unused */
    JOB_RUNNING, /* the command runs and the trial is running */
    JOB_KILLING, /* the result was told (pruned, timeout, interrupt); waiting for the exit */
};

struct job {
    enum job_state state;
    pid_t pid;             /* also the process group */
    int fd;                /* read end of the command's stdout; -1 once closed */
    bool exited;           /* reaped */
    int status;            /* waitpid status once exited */
    struct hpo_trial *trial;
    int64_t number;
    char *line;            /* partial line, LINE_MAX_BYTES + 1 */
    size_t line_len;
    bool have_value;
    double value;
    /* "hpo: value NAME V" and "hpo: constraint NAME V", by the study's order; NaN: not told. */
    double values[MAX_OBJECTIVES];
    double constraints[MAX_CONSTRAINTS];
    int64_t started_ms;
    int64_t deadline_ms;   /* timeout; 0 = none */
    int64_t heartbeat_ms;  /* next heartbeat */
    int64_t kill_ms;       /* when to SIGKILL the group; 0 = not yet signalled */
    int exec_errno;        /* the command could not be started: exec's errno */
};

/* A reason trials failed, and how many did for it. */
struct reason {
    char text[128];
    int64_t count;
};

struct run {
    struct hpo_client *client;
    const struct hpoctl_run_options *o;
    struct job *jobs;
    int running;              /* slots not JOB_FREE */
    int64_t asked;
    int64_t heartbeat_every_ms;
    bool stop_asking;
    bool stopped_by_failures;
    int interrupts;
    int rc;
    bool maximize;            /* the study's direction, for "best so far" */
    /*
    ** The study's objectives and constraints (names owned). A study shown
    ** without "objectives" (a 1.0 daemon) has n_obj 0: plain values only.
    */
    size_t n_obj, n_cons;
    char *obj_names[MAX_OBJECTIVES];
    char *cons_names[MAX_CONSTRAINTS];
    /* What this run's trials came to. */
    int64_t n_complete;
    int64_t n_pruned;
    int64_t n_failed;
    int64_t failures_in_a_row;
    struct reason reasons[MAX_REASONS];
    int nreasons;
    int64_t n_other_reasons;
    bool have_best;
    double best;
    int64_t best_number;
    /* Progress. */
    int64_t start_ms;
    bool tty;                 /* stderr is a terminal: one status line, redrawn */
    bool status_shown;        /* the status line is on the screen now */
    int64_t status_drawn_ms;
    int64_t next_progress_ms; /* next plain progress line; 0: none */
};

static int sig_pipe[2] = { -1, -1 };
static volatile sig_atomic_t got_int;
static volatile sig_atomic_t got_chld;

static void on_signal(int sig)
{
    int saved = errno;
    char b = (char)sig;

    if (sig == SIGCHLD) {
        got_chld = 1;
    } else {
        got_int++;
    }
    (void)!write(sig_pipe[1], &b, 1);
    errno = saved;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Erase the terminal status line before anything else is printed. */
static void status_clear(struct run *r)
{
    if (r->status_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        r->status_shown = false;
    }
}

/* "N done (a complete, b pruned, c failed), R running, best V (trial T)" into buf. */
static void progress_text(const struct run *r, char *buf, size_t size)
{
    int n = snprintf(buf, size,
            "%lld done (%lld complete, %lld pruned, %lld failed), %d running",
            (long long)(r->n_complete + r->n_pruned + r->n_failed), (long long)r->n_complete,
            (long long)r->n_pruned, (long long)r->n_failed, r->running);

    if (r->have_best && n > 0 && (size_t)n < size) {
        snprintf(buf + n, size - (size_t)n, ", best %.6g (trial %lld)", r->best,
                (long long)r->best_number);
    }
}

/* Elapsed time as "M:SS" or "H:MM:SS". */
static void elapsed_text(int64_t ms, char *buf, size_t size)
{
    long long s = (long long)(ms / 1000);

    if (s >= 3600) {
        snprintf(buf, size, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    } else {
        snprintf(buf, size, "%lld:%02lld", s / 60, s % 60);
    }
}

/*
** Progress: on a terminal redraw the status line (at most every
** STATUS_REDRAW_MS unless `force`); otherwise print a plain line when one is due.
*/
static void progress(struct run *r, bool force)
{
    int64_t now = now_ms();
    char text[256];
    char el[32];

    if (r->o->progress_s <= 0) {
        return;
    }
    if (r->tty) {
        struct winsize ws;
        size_t width = 80;
        char line[320];

        if (!force && r->status_shown && now - r->status_drawn_ms < STATUS_REDRAW_MS) {
            return;
        }
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1) {
            width = ws.ws_col;
        }
        progress_text(r, text, sizeof(text));
        elapsed_text(now - r->start_ms, el, sizeof(el));
        snprintf(line, sizeof(line), "[%s] %s, %s", r->o->study, text, el);
        /* Never wrap: a wrapped line cannot be redrawn with \r. */
        if (strlen(line) > width - 1) {
            line[width - 1] = '\0';
        }
        fprintf(stderr, "\r\033[K%s", line);
        fflush(stderr);
        r->status_shown = true;
        r->status_drawn_ms = now;
        return;
    }
    if (r->next_progress_ms > 0 && now >= r->next_progress_ms) {
        progress_text(r, text, sizeof(text));
        fprintf(stderr, "hpoctl: progress: %s, elapsed %.1f s\n", text,
                (double)(now - r->start_ms) / 1000.0);
        r->next_progress_ms = now + (int64_t)(r->o->progress_s * 1000);
    }
}

/* Count a failed trial under `why`; stop asking after max_failures in a row. */
static void count_failed(struct run *r, const char *why)
{
    int i;

    r->n_failed++;
    r->failures_in_a_row++;
    for (i = 0; i < r->nreasons; i++) {
        if (strcmp(r->reasons[i].text, why) == 0) {
            break;
        }
    }
    if (i < r->nreasons) {
        r->reasons[i].count++;
    } else if (r->nreasons < MAX_REASONS) {
        snprintf(r->reasons[i].text, sizeof(r->reasons[i].text), "%s", why);
        r->reasons[i].count = 1;
        r->nreasons++;
    } else {
        r->n_other_reasons++;
    }
    if (r->o->max_failures > 0 && r->failures_in_a_row >= r->o->max_failures &&
            !r->stop_asking && r->interrupts == 0) {
        status_clear(r);
        fprintf(stderr, "hpoctl: %lld trials failed in a row: not starting more "
                        "(--max-failures)\n", (long long)r->failures_in_a_row);
        r->stop_asking = true;
        r->stopped_by_failures = true;
    }
}

static void count_complete(struct run *r, int64_t number, double value)
{
    r->n_complete++;
    r->failures_in_a_row = 0;
    if (!r->have_best || (r->maximize ? value > r->best : value < r->best)) {
        r->have_best = true;
        r->best = value;
        r->best_number = number;
    }
}

/* Send sig to the job's process group (the command and what it started). */
static void signal_job(struct job *j, int sig)
{
    if (j->pid > 0 && !j->exited) {
        (void)kill(-j->pid, sig);
        (void)kill(j->pid, sig); /* in case it left its group */
    } else if (j->pid > 0) {
        (void)kill(-j->pid, sig); /* children it left behind */
    }
}

/* Ask the command to stop: SIGTERM now, SIGKILL after the grace period. */
static void kill_job(struct job *j)
{
    if (j->kill_ms == 0) {
        signal_job(j, SIGTERM);
        j->kill_ms = now_ms() + KILL_GRACE_MS;
    }
}

static void report_error(struct run *r, const char *what, const struct job *j,
        const struct hpo_client_error *err)
{
    char buf[96];

    snprintf(buf, sizeof(buf), "%s trial %lld", what, (long long)j->number);
    status_clear(r);
    hpoctl_print_error(buf, err);
}

/* Tell the trial failed or pruned, print it, and start killing the command. */
static void finish_early(struct run *r, struct job *j, bool pruned, const char *why)
{
    struct hpo_client_error err;
    int e;

    kill_job(j);
    if (pruned) {
        e = hpo_client_tell_pruned(r->client, r->o->study, j->number, &err);
    } else {
        e = hpo_client_tell_failed(r->client, r->o->study, j->number, &err);
    }
    if (e < 0) {
        report_error(r, "tell", j, &err);
        r->rc = HPOCTL_EXIT_API;
    }
    status_clear(r);
    fprintf(stderr, "hpoctl: trial %lld %s (%s)\n", (long long)j->number,
            pruned ? "pruned" : "failed", why);
    if (pruned) {
        r->n_pruned++;
        r->failures_in_a_row = 0;
    } else {
        count_failed(r, why);
    }
    j->state = JOB_KILLING;
}

/* One line of the command's output (NUL-terminated, without its newline). */
static void handle_line(struct run *r, struct job *j, char *line)
{
    struct hpo_client_error err;
    int64_t step;
    double value;
    bool prune = false;
    const char *name = NULL;
    size_t len = 0;
    enum hpoctl_line_kind kind = hpoctl_parse_line_named(line, &step, &value, &name, &len);

    switch (kind) {
    case HPOCTL_LINE_OTHER:
        status_clear(r);
        if (r->o->jobs > 1) {
            printf("[%lld] %s\n", (long long)j->number, line);
        } else {
            printf("%s\n", line);
        }
        fflush(stdout);
        return;
    case HPOCTL_LINE_BAD:
        status_clear(r);
        fprintf(stderr, "hpoctl: trial %lld: ignoring malformed line '%s'\n",
                (long long)j->number, line);
        return;
    case HPOCTL_LINE_VALUE:
        if (r->n_obj > 1) {
            status_clear(r);
            fprintf(stderr, "hpoctl: trial %lld: ignoring '%s': the study has several "
                            "objectives, name one ('hpo: value NAME V')\n",
                    (long long)j->number, line);
            return;
        }
        j->have_value = true;
        j->value = value;
        if (r->n_obj == 1) {
            j->values[0] = value;
        }
        return;
    case HPOCTL_LINE_NAMED_VALUE:
    case HPOCTL_LINE_CONSTRAINT: {
        bool is_value = kind == HPOCTL_LINE_NAMED_VALUE;
        size_t n = is_value ? r->n_obj : r->n_cons;
        char *const *names = is_value ? r->obj_names : r->cons_names;

        for (size_t k = 0; k < n; k++) {
            if (strlen(names[k]) == len && memcmp(names[k], name, len) == 0) {
                if (is_value) {
                    j->values[k] = value;
                    if (n == 1) {
                        j->have_value = true;
                        j->value = value;
                    }
                } else {
                    j->constraints[k] = value;
                }
                return;
            }
        }
        status_clear(r);
        fprintf(stderr, "hpoctl: trial %lld: ignoring '%s': the study has no %s '%.*s'\n",
                (long long)j->number, line, is_value ? "objective" : "constraint", (int)len,
                name);
        return;
    }
    case HPOCTL_LINE_REPORT:
        break;
    }
    if (j->state != JOB_RUNNING) {
        return;
    }
    if (hpo_client_report(r->client, r->o->study, j->number, step, value, &prune, &err) < 0) {
        report_error(r, "report", j, &err);
        if (err.code == HPO_CLIENT_CONFLICT) {
            /* No longer running on the server (a heartbeat timeout, or another client). */
            kill_job(j);
            j->state = JOB_KILLING;
            count_failed(r, "no longer running on the daemon");
        }
        return;
    }
    j->heartbeat_ms = now_ms() + r->heartbeat_every_ms;
    if (prune) {
        char why[64];
        snprintf(why, sizeof(why), "at step %lld", (long long)step);
        finish_early(r, j, true, why);
    }
}

/* Read what is available; split lines. Returns false at EOF or error. */
static bool read_job(struct run *r, struct job *j)
{
    char buf[8192];

    for (;;) {
        ssize_t n = read(j->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        }
        if (n <= 0) {
            return false;
        }
        for (ssize_t i = 0; i < n; i++) {
            char ch = buf[i];
            if (ch == '\n' || j->line_len == LINE_MAX_BYTES) {
                j->line[j->line_len] = '\0';
                if (j->line_len > 0 && j->line[j->line_len - 1] == '\r') {
                    j->line[j->line_len - 1] = '\0';
                }
                handle_line(r, j, j->line);
                j->line_len = 0;
                if (ch == '\n') {
                    continue;
                }
            }
            j->line[j->line_len++] = ch;
        }
    }
}

static void close_job_fd(struct run *r, struct job *j)
{
    if (j->fd < 0) {
        return;
    }
    if (j->line_len > 0) {
        /* A last line without a newline still counts. */
        j->line[j->line_len] = '\0';
        handle_line(r, j, j->line);
        j->line_len = 0;
    }
    close(j->fd);
    j->fd = -1;
}

/* Several objectives or constraints: tell every value and the constraints told. */
static void tell_values(struct run *r, struct job *j, size_t n_cons_told)
{
    struct hpo_client_error err;
    const char *cnames[MAX_CONSTRAINTS];
    double cvals[MAX_CONSTRAINTS];
    size_t m = 0;

    for (size_t k = 0; k < r->n_cons; k++) {
        if (!isnan(j->constraints[k])) {
            cnames[m] = r->cons_names[k];
            cvals[m++] = j->constraints[k];
        }
    }
    if (hpo_client_tell_values(r->client, r->o->study, j->number,
                (const char *const *)r->obj_names, j->values, r->n_obj, cnames, cvals, m,
                &err) < 0) {
        report_error(r, "tell", j, &err);
        r->rc = HPOCTL_EXIT_API;
        count_failed(r, "the daemon refused the values");
        return;
    }
    status_clear(r);
    fprintf(stderr, "hpoctl: trial %lld complete, values", (long long)j->number);
    for (size_t k = 0; k < r->n_obj; k++) {
        fprintf(stderr, " %s=%.10g", r->obj_names[k], j->values[k]);
    }
    for (size_t k = 0; k < m; k++) {
        fprintf(stderr, "%s%s=%.10g", k == 0 ? ", constraints " : " ", cnames[k], cvals[k]);
    }
    fputc('\n', stderr);
    if (n_cons_told < r->n_cons) {
        fprintf(stderr, "hpoctl: trial %lld: no 'hpo: constraint' line for %zu of %zu "
                        "constraints: it counts as infeasible\n",
                (long long)j->number, r->n_cons - n_cons_told, r->n_cons);
    }
    if (r->n_obj == 1) {
        count_complete(r, j->number, j->values[0]);
    } else {
        r->n_complete++;
        r->failures_in_a_row = 0;
    }
}

/* Why a command that exited 0 gave no result: "no 'hpo: value NAME' line for a, b". */
static void missing_values(const struct run *r, const struct job *j, char *why, size_t size)
{
    size_t len;

    if (r->n_obj <= 1) {
        snprintf(why, size, "no 'hpo: value' line");
        return;
    }
    snprintf(why, size, "no 'hpo: value NAME V' line for");
    for (size_t k = 0; k < r->n_obj; k++) {
        if (isnan(j->values[k])) {
            len = strlen(why);
            snprintf(why + len, size - len, " %s", r->obj_names[k]);
        }
    }
}

/* The command exited and its output is read: tell the result, free the slot. */
static void complete_job(struct run *r, struct job *j)
{
    struct hpo_client_error err;

    if (j->state == JOB_RUNNING) {
        bool ok = WIFEXITED(j->status) && WEXITSTATUS(j->status) == 0;
        char why[160];
        size_t n_cons_told = 0;
        bool all_values = j->have_value || r->n_obj > 1;

        for (size_t k = 0; k < r->n_obj && r->n_obj > 1; k++) {
            all_values = all_values && !isnan(j->values[k]);
        }
        for (size_t k = 0; k < r->n_cons; k++) {
            n_cons_told += !isnan(j->constraints[k]);
        }
        if (ok && all_values && r->n_obj <= 1 && r->n_cons == 0) {
            if (hpo_client_tell(r->client, r->o->study, j->number, j->value, &err) < 0) {
                report_error(r, "tell", j, &err);
                r->rc = HPOCTL_EXIT_API;
                count_failed(r, "the daemon refused the value");
            } else {
                char text[32];
                snprintf(text, sizeof(text), "%.10g", j->value);
                status_clear(r);
                fprintf(stderr, "hpoctl: trial %lld complete, value %s\n", (long long)j->number,
                        text);
                count_complete(r, j->number, j->value);
            }
        } else if (ok && all_values) {
            tell_values(r, j, n_cons_told);
        } else {
            if (j->exec_errno == ENOENT) {
                snprintf(why, sizeof(why), "command not found: %.80s", r->o->argv[0]);
            } else if (j->exec_errno != 0) {
                char ebuf[64];
                snprintf(why, sizeof(why), "cannot run %.60s: %s", r->o->argv[0],
                        hpoctl_strerror(j->exec_errno, ebuf, sizeof(ebuf)));
            } else if (WIFSIGNALED(j->status)) {
                snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(j->status));
            } else if (!ok) {
                snprintf(why, sizeof(why), "exit status %d", WEXITSTATUS(j->status));
            } else {
                missing_values(r, j, why, sizeof(why));
            }
            if (hpo_client_tell_failed(r->client, r->o->study, j->number, &err) < 0) {
                report_error(r, "tell", j, &err);
                r->rc = HPOCTL_EXIT_API;
            }
            status_clear(r);
            fprintf(stderr, "hpoctl: trial %lld failed (%s)\n", (long long)j->number, why);
            count_failed(r, why);
        }
    }
    /* Whatever the command left behind in its group goes with it. */
    (void)kill(-j->pid, SIGKILL);
    hpo_trial_free(j->trial);
    free(j->line);
    memset(j, 0, sizeof(*j));
    j->fd = -1;
    j->state = JOB_FREE;
    r->running--;
}

struct subst {
    const struct hpo_trial *t;
    char *study;
    char trial[32];
};

static const char *lookup(void *userdata, const char *name, size_t len)
{
    static char value[4096];
    struct subst *s = userdata;
    char key[256];
    char *text = NULL;

    if (len == 0 || len >= sizeof(key)) {
        return NULL;
    }
    memcpy(key, name, len);
    key[len] = '\0';
    if (hpo_trial_param_format(s->t, key, &text) == 0) {
        snprintf(value, sizeof(value), "%s", text);
        hpo_client_free(text);
        return value;
    }
    if (strcmp(key, "trial") == 0) {
        return s->trial;
    }
    if (strcmp(key, "study") == 0) {
        return s->study;
    }
    return NULL;
}

static void free_strv(char **v)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; v[i] != NULL; i++) {
        free(v[i]);
    }
    free(v);
}

/* An environment string "NAME=VALUE" (new). */
static char *env_entry(const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 2;
    char *e = malloc(n);

    if (e != NULL) {
        snprintf(e, n, "%s=%s", name, value);
    }
    return e;
}

/* Build argv (placeholders replaced) and envp (HPO_* set) for a trial. */
static int build_exec(struct run *r, const struct hpo_trial *t, char ***ret_argv,
        char ***ret_envp)
{
    size_t nenv = 0;
    size_t nparams = hpo_trial_param_count(t);
    char **argv = calloc((size_t)r->o->argc + 1, sizeof(*argv));
    char **envp;
    size_t k = 0;
    struct subst s = { .t = t, .study = (char *)r->o->study };
    char num[32];
    bool python_set = false;

    while (environ[nenv] != NULL) {
        nenv++;
    }
    envp = calloc(nenv + nparams + 4, sizeof(*envp));
    if (argv == NULL || envp == NULL) {
        goto fail;
    }
    snprintf(s.trial, sizeof(s.trial), "%lld", (long long)hpo_trial_number(t));
    for (int i = 0; i < r->o->argc; i++) {
        argv[i] = hpoctl_substitute(r->o->argv[i], lookup, &s);
        if (argv[i] == NULL) {
            goto fail;
        }
    }
    /*
    ** Drop inherited HPO_PARAM_*, HPO_TRIAL and HPO_STUDY: stale values would
    ** mislead. Python buffers a pipe in blocks, which would hold every report
    ** back until exit: PYTHONUNBUFFERED=1 unless it is set (non-empty) already.
    */
    for (size_t i = 0; i < nenv; i++) {
        const char *e = environ[i];
        if (strncmp(e, "HPO_PARAM_", 10) == 0 || strncmp(e, "HPO_TRIAL=", 10) == 0 ||
                strncmp(e, "HPO_STUDY=", 10) == 0) {
            continue;
        }
        if (strncmp(e, "PYTHONUNBUFFERED=", 17) == 0) {
            if (e[17] == '\0') {
                continue;
            }
            python_set = true;
        }
        envp[k] = strdup(e);
        if (envp[k++] == NULL) {
            goto fail;
        }
    }
    for (size_t i = 0; i < nparams; i++) {
        const char *name = hpo_trial_param_name(t, i);
        char *text = NULL;
        char *var;

        if (hpo_trial_param_format(t, name, &text) < 0) {
            continue; /* a vector given by href: too big for the environment anyway */
        }
        var = hpoctl_env_name(name);
        envp[k] = var ? env_entry(var, text) : NULL;
        free(var);
        hpo_client_free(text);
        if (envp[k++] == NULL) {
            goto fail;
        }
    }
    snprintf(num, sizeof(num), "%lld", (long long)hpo_trial_number(t));
    envp[k] = env_entry("HPO_TRIAL", num);
    if (envp[k++] == NULL) {
        goto fail;
    }
    envp[k] = env_entry("HPO_STUDY", r->o->study);
    if (envp[k++] == NULL) {
        goto fail;
    }
    if (!python_set) {
        envp[k] = env_entry("PYTHONUNBUFFERED", "1");
        if (envp[k++] == NULL) {
            goto fail;
        }
    }
    *ret_argv = argv;
    *ret_envp = envp;
    return 0;

fail:
    free_strv(argv);
    free_strv(envp);
    return -ENOMEM;
}

/* Start the command for a trial in slot j. Takes the trial. Returns 0 or -errno. */
static int start_job(struct run *r, struct job *j, struct hpo_trial *t)
{
    int fds[2];
    int errpipe[2];
    int exec_errno = 0;
    char **argv = NULL;
    char **envp = NULL;
    pid_t pid;
    int e = build_exec(r, t, &argv, &envp);

    if (e < 0) {
        return e;
    }
    if (pipe2(fds, O_CLOEXEC) < 0) {
        e = -errno;
        free_strv(argv);
        free_strv(envp);
        return e;
    }
    /* exec's errno comes back on errpipe; a successful exec closes it (EOF). */
    if (pipe2(errpipe, O_CLOEXEC) < 0) {
        e = -errno;
        close(fds[0]);
        close(fds[1]);
        free_strv(argv);
        free_strv(envp);
        return e;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        e = -errno;
        close(fds[0]);
        close(fds[1]);
        close(errpipe[0]);
        close(errpipe[1]);
        free_strv(argv);
        free_strv(envp);
        return e;
    }
    if (pid == 0) {
        sigset_t none;
        int devnull = open("/dev/null", O_RDONLY);

        (void)setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
        }
        dup2(fds[1], STDOUT_FILENO);
        execvpe(argv[0], argv, envp);
        e = errno;
        (void)!write(errpipe[1], &e, sizeof(e));
        _exit(127);
    }
    close(errpipe[1]);
    for (;;) {
        ssize_t n = read(errpipe[0], &exec_errno, sizeof(exec_errno));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n != (ssize_t)sizeof(exec_errno)) {
            exec_errno = 0;
        }
        break;
    }
    close(errpipe[0]);
    /* Both sides set the group, so a kill right after fork finds it either way. */
    (void)setpgid(pid, pid);
    close(fds[1]);
    (void)fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    free_strv(argv);
    free_strv(envp);

    memset(j, 0, sizeof(*j));
    for (size_t k = 0; k < MAX_OBJECTIVES; k++) {
        j->values[k] = NAN;
    }
    for (size_t k = 0; k < MAX_CONSTRAINTS; k++) {
        j->constraints[k] = NAN;
    }
    j->line = malloc(LINE_MAX_BYTES + 1);
    if (j->line == NULL) {
        /* Leave the slot to the loop as a running job whose lines we cannot read. */
        close(fds[0]);
        fds[0] = -1;
    }
    j->state = JOB_RUNNING;
    j->pid = pid;
    j->fd = fds[0];
    j->trial = t;
    j->number = hpo_trial_number(t);
    j->started_ms = now_ms();
    j->deadline_ms = r->o->timeout_s > 0 ? j->started_ms + (int64_t)(r->o->timeout_s * 1000) : 0;
    j->heartbeat_ms = j->started_ms + r->heartbeat_every_ms;
    j->exec_errno = exec_errno;
    r->running++;
    if (exec_errno != 0) {
        /* Every later trial would fail the same way. */
        char ebuf[128];
        status_clear(r);
        fprintf(stderr, "hpoctl: cannot run '%s': %s; not starting more trials\n", r->o->argv[0],
                hpoctl_strerror(exec_errno, ebuf, sizeof(ebuf)));
        r->stop_asking = true;
    }
    return 0;
}

/* Ask for trials and start commands until J run, N were asked, or we must stop. */
static void fill_slots(struct run *r)
{
    while (!r->stop_asking && r->running < r->o->jobs &&
            (r->o->n_trials < 0 || r->asked < r->o->n_trials)) {
        struct hpo_client_error err;
        struct hpo_trial *t;
        struct job *slot = NULL;
        int e;

        if (got_int) {
            return;
        }
        for (int i = 0; i < r->o->jobs; i++) {
            if (r->jobs[i].state == JOB_FREE) {
                slot = &r->jobs[i];
                break;
            }
        }
        if (slot == NULL) {
            return;
        }
        if (hpo_client_ask(r->client, r->o->study, &t, &err) < 0) {
            r->stop_asking = true;
            status_clear(r);
            if (err.code == HPO_CLIENT_EXHAUSTED) {
                fprintf(stderr, "hpoctl: study %s is exhausted (max_trials reached)\n",
                        r->o->study);
            } else {
                hpoctl_print_error("ask", &err);
                r->rc = HPOCTL_EXIT_API;
            }
            return;
        }
        r->asked++;
        e = start_job(r, slot, t);
        if (e < 0) {
            char ebuf[128];
            status_clear(r);
            fprintf(stderr, "hpoctl: cannot start trial %lld: %s\n",
                    (long long)hpo_trial_number(t), hpoctl_strerror(-e, ebuf, sizeof(ebuf)));
            (void)hpo_client_tell_failed(r->client, r->o->study, hpo_trial_number(t), &err);
            count_failed(r, "cannot start the command");
            hpo_trial_free(t);
            r->stop_asking = true;
            r->rc = HPOCTL_EXIT_API;
            return;
        }
    }
}

static void reap(struct run *r)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);

        if (pid <= 0) {
            return;
        }
        for (int i = 0; i < r->o->jobs; i++) {
            struct job *j = &r->jobs[i];
            if (j->state != JOB_FREE && j->pid == pid) {
                j->exited = true;
                j->status = status;
                break;
            }
        }
    }
}

static void on_interrupt(struct run *r)
{
    r->stop_asking = true;
    if (r->rc == HPOCTL_EXIT_OK || r->rc == HPOCTL_EXIT_API) {
        r->rc = HPOCTL_EXIT_INTERRUPT;
    }
    for (int i = 0; i < r->o->jobs; i++) {
        struct job *j = &r->jobs[i];
        if (j->state == JOB_RUNNING) {
            finish_early(r, j, false, "interrupted");
        } else if (j->state == JOB_KILLING && r->interrupts > 1) {
            signal_job(j, SIGKILL);
        }
    }
}

/* Timeouts, heartbeats and SIGKILL escalation. Returns ms until the next deadline. */
static int64_t timers(struct run *r)
{
    int64_t now = now_ms();
    int64_t next = 1000;

    for (int i = 0; i < r->o->jobs; i++) {
        struct job *j = &r->jobs[i];
        int64_t due;

        if (j->state == JOB_RUNNING && j->deadline_ms > 0 && now >= j->deadline_ms) {
            char why[64];
            snprintf(why, sizeof(why), "timeout after %g s", r->o->timeout_s);
            finish_early(r, j, false, why);
        }
        if (j->state == JOB_RUNNING && now >= j->heartbeat_ms) {
            struct hpo_client_error err;
            if (hpo_client_heartbeat(r->client, r->o->study, j->number, &err) < 0) {
                report_error(r, "heartbeat", j, &err);
                if (err.code == HPO_CLIENT_CONFLICT) {
                    kill_job(j);
                    j->state = JOB_KILLING;
                    count_failed(r, "no longer running on the daemon");
                }
            }
            j->heartbeat_ms = now_ms() + r->heartbeat_every_ms;
        }
        if (j->state == JOB_KILLING && j->kill_ms > 0 && now >= j->kill_ms && !j->exited) {
            signal_job(j, SIGKILL);
            j->kill_ms = now + 60000; /* SIGKILL cannot be ignored; don't spin */
        }
        if (j->state == JOB_RUNNING) {
            due = j->heartbeat_ms - now;
            if (due < next) {
                next = due;
            }
            if (j->deadline_ms > 0 && j->deadline_ms - now < next) {
                next = j->deadline_ms - now;
            }
        } else if (j->state == JOB_KILLING && !j->exited && j->kill_ms - now < next) {
            next = j->kill_ms - now;
        }
    }
    if (r->next_progress_ms > 0 && r->next_progress_ms - now < next) {
        next = r->next_progress_ms - now;
    }
    return next < 0 ? 0 : next;
}

/* The names of the study's objectives and constraints, in its order. */
static int load_names(struct run *r, const json_t *study)
{
    const json_t *objs = json_object_get(study, "objectives");
    const json_t *cons = json_object_get(study, "constraints");
    size_t i;
    json_t *o;

    if (json_array_size(objs) > MAX_OBJECTIVES || json_array_size(cons) > MAX_CONSTRAINTS) {
        fprintf(stderr, "hpoctl: run: the study has more objectives or constraints than "
                        "hpoctl takes (%d, %d)\n", MAX_OBJECTIVES, MAX_CONSTRAINTS);
        return -1;
    }
    json_array_foreach(objs, i, o) {
        const char *name = json_string_value(json_object_get(o, "name"));
        r->obj_names[r->n_obj] = strdup(name != NULL ? name : "");
        if (r->obj_names[r->n_obj++] == NULL) {
            return -1;
        }
        if (r->n_obj == 1) {
            const char *dir = json_string_value(json_object_get(o, "direction"));
            r->maximize = dir != NULL && strcmp(dir, "maximize") == 0;
        }
    }
    json_array_foreach(cons, i, o) {
        const char *name = json_string_value(json_object_get(o, "name"));
        r->cons_names[r->n_cons] = strdup(name != NULL ? name : "");
        if (r->cons_names[r->n_cons++] == NULL) {
            return -1;
        }
    }
    return 0;
}

static void free_names(struct run *r)
{
    for (size_t k = 0; k < r->n_obj; k++) {
        free(r->obj_names[k]);
    }
    for (size_t k = 0; k < r->n_cons; k++) {
        free(r->cons_names[k]);
    }
}

/* The study's heartbeat_timeout decides how often we heartbeat (a third of it). */
static int load_study(struct run *r)
{
    struct hpo_client_error err;
    char *text = NULL;
    json_t *root;
    json_int_t timeout = 0;

    if (hpo_client_study_get(r->client, r->o->study, &text, &err) < 0) {
        hpoctl_print_error("run", &err);
        return -1;
    }
    root = json_loads(text, 0, NULL);
    hpo_client_free(text);
    {
        const char *dir = json_string_value(json_object_get(root, "direction"));
        r->maximize = dir != NULL && strcmp(dir, "maximize") == 0;
    }
    if (load_names(r, root) < 0) {
        json_decref(root);
        return -1;
    }
    if (json_is_integer(json_object_get(root, "heartbeat_timeout"))) {
        timeout = json_integer_value(json_object_get(root, "heartbeat_timeout"));
    } else if (json_is_number(json_object_get(root, "heartbeat_timeout"))) {
        timeout = (json_int_t)json_number_value(json_object_get(root, "heartbeat_timeout"));
    }
    json_decref(root);
    /* Without a timeout heartbeats only keep heartbeat_at fresh: every 30 s is plenty. */
    r->heartbeat_every_ms = timeout > 0 ? (int64_t)timeout * 1000 / 3 : 30000;
    if (r->heartbeat_every_ms < 200) {
        r->heartbeat_every_ms = 200;
    }
    return 0;
}

/*
** The summary on stderr: "hpoctl: summary: N trials in T s: a complete, b
** pruned, c failed (k REASON, ...); best V (trial T)".
*/
static void print_summary(struct run *r)
{
    int64_t total = r->n_complete + r->n_pruned + r->n_failed;

    status_clear(r);
    fprintf(stderr, "hpoctl: summary: %lld trial%s in %.1f s: %lld complete, %lld pruned, "
                    "%lld failed",
            (long long)total, total == 1 ? "" : "s", (double)(now_ms() - r->start_ms) / 1000.0,
            (long long)r->n_complete, (long long)r->n_pruned, (long long)r->n_failed);
    if (r->n_failed > 0) {
        fputs(" (", stderr);
        for (int i = 0; i < r->nreasons; i++) {
            fprintf(stderr, "%s%lld %s", i > 0 ? ", " : "", (long long)r->reasons[i].count,
                    r->reasons[i].text);
        }
        if (r->n_other_reasons > 0) {
            fprintf(stderr, ", %lld other", (long long)r->n_other_reasons);
        }
        fputc(')', stderr);
    }
    if (r->have_best) {
        char text[32];
        snprintf(text, sizeof(text), "%.10g", r->best);
        fprintf(stderr, "; best %s (trial %lld)", text, (long long)r->best_number);
    }
    fputc('\n', stderr);
}

int hpoctl_run(struct hpo_client *c, const struct hpoctl_run_options *o)
{
    struct run r = { .client = c, .o = o, .rc = HPOCTL_EXIT_OK };
    struct sigaction sa;
    struct pollfd *pfds;

    if (load_study(&r) < 0) {
        free_names(&r);
        return HPOCTL_EXIT_API;
    }
    r.jobs = calloc((size_t)o->jobs, sizeof(*r.jobs));
    pfds = calloc((size_t)o->jobs + 1, sizeof(*pfds));
    if (r.jobs == NULL || pfds == NULL || pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        char ebuf[128];
        fprintf(stderr, "hpoctl: cannot start: %s\n", hpoctl_strerror(errno, ebuf, sizeof(ebuf)));
        free(r.jobs);
        free(pfds);
        return HPOCTL_EXIT_API;
    }
    for (int i = 0; i < o->jobs; i++) {
        r.jobs[i].fd = -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    r.start_ms = now_ms();
    if (o->progress_s > 0) {
        const char *term = getenv("TERM");
        r.tty = isatty(STDERR_FILENO) && !(term != NULL && strcmp(term, "dumb") == 0);
        if (!r.tty) {
            r.next_progress_ms = r.start_ms + (int64_t)(o->progress_s * 1000);
        }
    }

    for (;;) {
        int npfd = 0;
        int64_t wait_ms;
        int seen_int;

        fill_slots(&r);
        if (r.running == 0) {
            break;
        }
        wait_ms = timers(&r);
        progress(&r, false);
        pfds[npfd].fd = sig_pipe[0];
        pfds[npfd].events = POLLIN;
        npfd++;
        for (int i = 0; i < o->jobs; i++) {
            if (r.jobs[i].state != JOB_FREE && r.jobs[i].fd >= 0 && !r.jobs[i].exited) {
                pfds[npfd].fd = r.jobs[i].fd;
                pfds[npfd].events = POLLIN;
                npfd++;
            }
        }
        if (poll(pfds, (nfds_t)npfd, (int)wait_ms) < 0 && errno != EINTR) {
            char ebuf[128];
            fprintf(stderr, "hpoctl: poll: %s\n", hpoctl_strerror(errno, ebuf, sizeof(ebuf)));
            r.rc = HPOCTL_EXIT_API;
            break;
        }
        {
            char drain[64];
            while (read(sig_pipe[0], drain, sizeof(drain)) > 0) {
            }
        }
        seen_int = got_int;
        if (seen_int > r.interrupts) {
            r.interrupts = seen_int;
            status_clear(&r);
            fprintf(stderr, "hpoctl: interrupted: failing the running trials\n");
            on_interrupt(&r);
        }
        for (int i = 1; i < npfd; i++) {
            if (pfds[i].revents == 0) {
                continue;
            }
            for (int k = 0; k < o->jobs; k++) {
                struct job *j = &r.jobs[k];
                if (j->state != JOB_FREE && j->fd == pfds[i].fd) {
                    if (!read_job(&r, j)) {
                        close_job_fd(&r, j);
                    }
                    break;
                }
            }
        }
        got_chld = 0;
        reap(&r);
        for (int i = 0; i < o->jobs; i++) {
            struct job *j = &r.jobs[i];
            if (j->state == JOB_FREE || !j->exited) {
                continue;
            }
            /*
            ** It exited: take what it wrote (the pipe holds it), without waiting
            ** for EOF, which a background child holding the pipe would delay.
            */
            if (j->fd >= 0) {
                (void)read_job(&r, j);
                close_job_fd(&r, j);
            }
            complete_job(&r, j);
        }
    }

    print_summary(&r);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    sig_pipe[0] = -1;
    sig_pipe[1] = -1;
    free(pfds);
    free(r.jobs);
    free_names(&r);
    if (r.interrupts > 0) {
        return HPOCTL_EXIT_INTERRUPT;
    }
    if (r.rc != HPOCTL_EXIT_OK) {
        return r.rc;
    }
    if (r.asked > 0 && r.n_complete == 0) {
        fprintf(stderr, "hpoctl: no trial completed\n");
        return HPOCTL_EXIT_NO_TRIAL;
    }
    return r.stopped_by_failures ? HPOCTL_EXIT_NO_TRIAL : HPOCTL_EXIT_OK;
}
