/*
** metrics.c: the text of GET /metrics (metrics.h). Names and units follow
** Prometheus conventions (base units: seconds, bytes; counters end in
** _total); docs/API.md "Operations" lists every series.
*/
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../api/api.h"
#include "../core/histogram.h"
#include "../service/service.h"
#include "../storage/storage.h"
#include "metrics.h"

static const char *const state_names[5] = { "waiting", "running", "complete", "pruned",
    "failed" };

/* Write `v` as a label value: backslash, double quote and newline escaped. */
static void put_label_value(FILE *f, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"') {
            fputc('\\', f);
            fputc(*v, f);
        } else if (*v == '\n') {
            fputs("\\n", f);
        } else {
            fputc(*v, f);
        }
    }
}

struct study_walk {
    FILE *f;
    const char *scope; /* out of a token's scope: invisible, not even in "(other)" */
    unsigned max;    /* studies written with their own label */
    unsigned seen;
    size_t other[5]; /* the rest, summed */
    bool any_other;
};

static void study_cb(void *ctx, const char *name, const size_t counts[5])
{
    struct study_walk *w = ctx;

    if (strncmp(name, w->scope, strlen(w->scope)) != 0) {
        return;
    }
    if (w->seen++ >= w->max) {
        for (int k = 0; k < 5; k++) {
            w->other[k] += counts[k];
        }
        w->any_other = true;
        return;
    }
    for (int k = 0; k < 5; k++) {
        fputs("hpod_study_trials{study=\"", w->f);
        put_label_value(w->f, name);
        fprintf(w->f, "\",state=\"%s\"} %zu\n", state_names[k], counts[k]);
    }
}

static void write_service(FILE *f, const struct hpo_metrics_sources *src)
{
    struct study_walk w = { .f = f, .scope = src->scope != NULL ? src->scope : "",
        .max = src->max_studies };
    size_t studies, states[5];

    hpo_service_counts(src->service, &studies, states);
    fprintf(f, "# HELP hpod_studies Studies.\n# TYPE hpod_studies gauge\nhpod_studies %zu\n",
            studies);
    fputs("# HELP hpod_trials Trials of all studies by state.\n# TYPE hpod_trials gauge\n", f);
    for (int k = 0; k < 5; k++) {
        fprintf(f, "hpod_trials{state=\"%s\"} %zu\n", state_names[k], states[k]);
    }
    fputs("# HELP hpod_study_trials Trials by study and state; studies past the first "
          "metrics-max-studies (in name order) are summed as study=\"(other)\".\n"
          "# TYPE hpod_study_trials gauge\n",
            f);
    hpo_service_each_study(src->service, study_cb, &w);
    if (w.any_other) {
        /* Parentheses are outside a study name's alphabet: no study can be called that. */
        for (int k = 0; k < 5; k++) {
            fprintf(f, "hpod_study_trials{study=\"(other)\",state=\"%s\"} %zu\n", state_names[k],
                    w.other[k]);
        }
    }
}

static void write_storage(FILE *f, struct hpo_storage *st)
{
    const struct hpo_hist *commit_us, *batch;
    uint64_t commits, writes, failed;

    hpo_storage_stats(st, &commits, &writes);
    hpo_storage_metrics(st, &commit_us, &batch, &failed);
    fprintf(f,
            "# HELP hpod_storage_commits_total Group transactions committed.\n"
            "# TYPE hpod_storage_commits_total counter\nhpod_storage_commits_total %" PRIu64 "\n"
            "# HELP hpod_storage_writes_total Writes (one per changing request) committed.\n"
            "# TYPE hpod_storage_writes_total counter\nhpod_storage_writes_total %" PRIu64 "\n"
            "# HELP hpod_storage_commit_failures_total Group transactions that failed (nothing "
            "of them stored).\n"
            "# TYPE hpod_storage_commit_failures_total counter\n"
            "hpod_storage_commit_failures_total %" PRIu64 "\n",
            commits, writes, failed);
    fputs("# HELP hpod_storage_commit_duration_seconds Time from BEGIN to COMMIT of a group "
          "transaction that committed.\n"
          "# TYPE hpod_storage_commit_duration_seconds histogram\n",
            f);
    hpo_hist_write(f, "hpod_storage_commit_duration_seconds", "", commit_us, 1e6);
    fputs("# HELP hpod_storage_commit_writes Writes per committed group transaction.\n"
          "# TYPE hpod_storage_commit_writes histogram\n",
            f);
    hpo_hist_write(f, "hpod_storage_commit_writes", "", batch, 1.0);
}

/* Bytes of the process's virtual and resident memory (/proc/self/statm); 0 when unknown. */
static void read_memory(uint64_t *ret_virtual, uint64_t *ret_resident)
{
    FILE *f = fopen("/proc/self/statm", "re");
    unsigned long long size = 0, resident = 0;
    long page = sysconf(_SC_PAGESIZE);

    *ret_virtual = *ret_resident = 0;
    if (f == NULL) {
        return;
    }
    if (fscanf(f, "%llu %llu", &size, &resident) == 2 && page > 0) {
        *ret_virtual = size * (uint64_t)page;
        *ret_resident = resident * (uint64_t)page;
    }
    fclose(f);
}

/* Open file descriptors (entries of /proc/self/fd but the one reading it); -1 when unknown. */
static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' && strtol(e->d_name, NULL, 10) != dirfd(d)) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* The process's start in seconds since the epoch (boot time + starttime ticks); 0 when unknown. */
static double start_time(void)
{
    char buf[1024], *p;
    unsigned long long btime = 0, ticks = 0;
    long hz = sysconf(_SC_CLK_TCK);
    FILE *f;
    size_t n;
    int field;

    f = fopen("/proc/stat", "re");
    if (f == NULL) {
        return 0;
    }
    while (fgets(buf, sizeof(buf), f) != NULL) {
        if (strncmp(buf, "btime ", 6) == 0) {
            btime = strtoull(buf + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    f = fopen("/proc/self/stat", "re");
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The name in parentheses may hold spaces: count fields after the last ')'. */
    p = strrchr(buf, ')');
    if (p == NULL || btime == 0 || hz <= 0) {
        return 0;
    }
    /* Field 3 (state) follows ") "; starttime is field 22. */
    for (field = 2; field < 22 && p != NULL; field++) {
        p = strchr(p + 1, ' ');
    }
    if (p == NULL) {
        return 0;
    }
    ticks = strtoull(p + 1, NULL, 10);
    return (double)btime + (double)ticks / (double)hz;
}

static void write_process(FILE *f)
{
    struct rusage ru;
    struct rlimit rl;
    uint64_t vsize, rss;
    double cpu = 0;
    long fds = count_fds();

    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    }
    read_memory(&vsize, &rss);
    fprintf(f,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n"
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\n"
            "process_resident_memory_bytes %" PRIu64 "\n"
            "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
            "# TYPE process_virtual_memory_bytes gauge\n"
            "process_virtual_memory_bytes %" PRIu64 "\n"
            "# HELP process_start_time_seconds Start time of the process since unix epoch in "
            "seconds.\n"
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
            cpu, rss, vsize, start_time());
    if (fds >= 0) {
        fprintf(f, "# HELP process_open_fds Number of open file descriptors.\n"
                   "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n",
                fds);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        fprintf(f, "# HELP process_max_fds Maximum number of open file descriptors.\n"
                   "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
                (unsigned long long)rl.rlim_cur);
    }
}

char *hpo_metrics_text(const struct hpo_metrics_sources *src)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int bad;

    if (f == NULL) {
        return NULL;
    }
    fputs("# HELP hpod_build_info The running hpod's version.\n"
          "# TYPE hpod_build_info gauge\nhpod_build_info{version=\"",
            f);
    put_label_value(f, src->version);
    fputs("\"} 1\n", f);
    hpo_api_metrics_write(src->api, f);
    write_service(f, src);
    write_storage(f, src->storage);
    write_process(f);
    bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(buf);
        return NULL;
    }
    return buf;
}
