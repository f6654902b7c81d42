/*
** The lazy files' sync, started as soon as their batch committed (synchronous
** full only). A lazy file (hpo__blob_prepare_write: the ask's vector) must be
** fdatasync'd, and its directory entry fsync'd, before the NEXT batch
** commits. That batch used to do it itself, on its own path: with a
** 10^6-element gradient, the tell's COMMIT waited for four disk flushes one
** after the other (its record file, the ask's lazy vector, the directory, the
** WAL). The disk is idle between the ask's reply and the tell (the client
** downloads the vector and builds its gradient), so a thread kept for it
** runs the same fdatasyncs and the same directory fsync then; the next batch
** joins the job (hpo__blob_syncer_join) before its COMMIT, and skips what the
** job synced. The guarantee is unchanged: the file's data and its name are
** on disk before a COMMIT that may depend on them. A job the thread has not
** begun by the join is taken back (the batch syncs the files itself, as
** before). A failed fdatasync is reported by the join, naming the file.
**
** A deferred file (hpo__blob_prepare_deferred: the ask's vector, named and
** checksummed before the commit) is also written here, from the trial's
** memory, off the ask's path, a piece at a time. A join tells a running
** job to stop at its next piece and waits for that at most JOIN_WAIT_NS:
** the thread runs only on an otherwise idle core (SCHED_IDLE) and may get
** little of a busy machine (at nice 19 a 1 MiB piece took 56 ms under
** strace at load 9). One still running then is abandoned: the
** batch takes the pieces written so far and writes the rest itself (the
** piece in flight too: the same bytes, so the two writes cannot disagree)
** and syncs. So the job works on duplicates of the fds and holds each
** file's memory itself until that file's write returned (not through its
** fdatasync: the point is back in time for the next ask to reuse it), and
** no new job is queued before it ended (the next batch syncs alone). A
** failed job is retried by the batch, which reports the failure if its
** own attempt fails too, and then writes the file again each batch.
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include "thread.h"
#include "storage-int.h"

enum { SJOB_NONE, SJOB_QUEUED, SJOB_RUNNING, SJOB_DONE };

/* How long a join waits for a running job to stop at its next piece before abandoning it. */
#define JOIN_WAIT_NS 2000000L

struct hpo_blob_syncer {
    struct hpo_kept k;
    int job;
    bool abandoned;   /* joined while running: the thread ends it (to SJOB_NONE) */
    atomic_bool take; /* stop at the next piece */
    struct hpo_blob_lazy_file files[HPO_BLOB_LAZY]; /* fds: the job's duplicates */
    struct hpo_blob_lazy_file progress[HPO_BLOB_LAZY]; /* whole pieces written (under mu) */
    size_t n;
    int dirfd;
    bool dir_synced;
    int result;    /* 0 or -errno */
    size_t failed; /* the index of the file whose write or fdatasync failed */
};

/* After each piece: publish what is written (hpo__blob_lazy_write's progress). */
static void publish(void *arg, const struct hpo_blob_lazy_file *f)
{
    struct hpo_blob_syncer *s = arg;
    size_t i = (size_t)(f - s->files);

    pthread_mutex_lock(&s->k.mu);
    s->progress[i].off = f->off;
    s->progress[i].old_len = f->old_len;
    s->progress[i].synced = f->synced;
    pthread_mutex_unlock(&s->k.mu);
}

/* Write and fdatasync every file, then the directory once; stop early if taken. */
static void run_job(struct hpo_blob_syncer *s)
{
    for (size_t i = 0; i < s->n; i++) {
        struct hpo_blob_lazy_file *f = &s->files[i];
        int r = hpo__blob_lazy_write(f, &s->take, publish, s);

        /* Its memory is not read again: let it go now, not after the syncs. */
        if (f->hold != NULL) {
            f->hold(f->hold_arg, false);
            f->hold = NULL;
        }
        if (r == 1 || atomic_load(&s->take)) {
            return;
        }
        if (r == 0 && !f->synced) {
            r = fdatasync(f->fd) < 0 ? -errno : 0;
            f->synced = r == 0;
        }
        publish(s, f);
        if (r < 0) {
            s->result = r;
            s->failed = i;
            return;
        }
    }
    if (fsync(s->dirfd) < 0) {
        s->result = -errno;
        s->failed = s->n;
        return;
    }
    s->dir_synced = true;
}

/* The job's own fds and the holds it has not let go yet go once it ended (on this thread). */
static void release_job(struct hpo_blob_syncer *s)
{
    for (size_t i = 0; i < s->n; i++) {
        close(s->files[i].fd);
        if (s->files[i].hold != NULL) {
            s->files[i].hold(s->files[i].hold_arg, false);
            s->files[i].hold = NULL;
        }
    }
}

static void *syncer_main(void *arg)
{
    struct hpo_blob_syncer *s = arg;

    /*
    ** Lowest priority (this thread alone): it is woken as the ask's reply
    ** goes out, and must take no core from the reply's thread or the
    ** vector's download. SCHED_IDLE runs it only on an idle core (while
    ** the client computes its gradient); nice 19, where that policy is
    ** refused, still gives it a share of a busy one. With SCHED_IDLE the
    ** 10^6 round trip under full was 0.95-0.97 of nice 19's in four A/B
    ** runs (bench/gradient/run.py --ab, 40-60 rounds; download 0.88-0.94).
    */
    {
        struct sched_param sp = { .sched_priority = 0 };

        if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0) {
            (void)setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
        }
    }
    pthread_mutex_lock(&s->k.mu);
    for (;;) {
        while (!s->k.stop && s->job != SJOB_QUEUED) {
            pthread_cond_wait(&s->k.wake, &s->k.mu);
        }
        if (s->k.stop) {
            break;
        }
        s->job = SJOB_RUNNING;
        pthread_mutex_unlock(&s->k.mu);
        run_job(s);
        release_job(s);
        pthread_mutex_lock(&s->k.mu);
        s->job = s->abandoned ? SJOB_NONE : SJOB_DONE;
        pthread_cond_signal(&s->k.done);
    }
    if (s->job == SJOB_QUEUED) {
        release_job(s); /* queued but never run */
    }
    pthread_mutex_unlock(&s->k.mu);
    return NULL;
}

struct hpo_blob_syncer *hpo__blob_syncer_start(void)
{
    struct hpo_blob_syncer *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    atomic_init(&s->take, false);
    if (hpo_kept_start(&s->k, syncer_main, s, "hpod-lazysync") != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void hpo__blob_syncer_stop(struct hpo_blob_syncer *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store(&s->take, true); /* a job running stops at its next piece */
    hpo_kept_stop(&s->k);
    free(s);
}

bool hpo__blob_syncer_queue(struct hpo_blob_syncer *s, const struct hpo_blob_lazy_file *files,
        size_t n, int dirfd)
{
    size_t k = 0;

    pthread_mutex_lock(&s->k.mu);
    if (s->job != SJOB_NONE) {
        pthread_mutex_unlock(&s->k.mu);
        return false; /* an abandoned job still runs */
    }
    for (; k < n; k++) {
        s->files[k] = files[k];
        s->files[k].fd = fcntl(files[k].fd, F_DUPFD_CLOEXEC, 0);
        if (s->files[k].fd < 0) {
            break;
        }
        s->progress[k] = s->files[k];
    }
    if (k < n) {
        while (k > 0) {
            close(s->files[--k].fd); /* no hold taken yet */
        }
        pthread_mutex_unlock(&s->k.mu);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s->files[i].hold != NULL) {
            s->files[i].hold(s->files[i].hold_arg, true);
        }
    }
    s->n = n;
    s->dirfd = dirfd;
    s->dir_synced = false;
    s->result = 0;
    s->failed = 0;
    s->abandoned = false;
    atomic_store(&s->take, false);
    s->job = SJOB_QUEUED;
    pthread_cond_signal(&s->k.wake);
    pthread_mutex_unlock(&s->k.mu);
    return true;
}

int hpo__blob_syncer_join(struct hpo_blob_syncer *s, struct hpo_blob_lazy_file *files, size_t n,
        bool *dir_synced, size_t *failed)
{
    int r = 0;

    *dir_synced = false;
    *failed = 0;
    pthread_mutex_lock(&s->k.mu);
    if (s->job == SJOB_QUEUED) {
        s->job = SJOB_NONE; /* not begun: taken back */
        release_job(s);
    } else if (s->job == SJOB_RUNNING || s->job == SJOB_DONE) {
        if (s->job == SJOB_RUNNING) {
            struct timespec until;

            /*
            ** It stops at its next piece: waited for a moment (then its
            ** holds go now), not longer (a starved thread is abandoned; it
            ** ends itself, holding the data's memory until then).
            */
            atomic_store(&s->take, true);
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += JOIN_WAIT_NS;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            while (s->job == SJOB_RUNNING &&
                    pthread_cond_timedwait(&s->k.done, &s->k.mu, &until) != ETIMEDOUT) {
            }
        }
        if (s->job == SJOB_RUNNING) {
            s->abandoned = true;
        } else {
            s->job = SJOB_NONE;
            r = s->result;
            *failed = s->failed;
            *dir_synced = s->dir_synced;
        }
        for (size_t i = 0; i < n && i < s->n; i++) {
            files[i].off = s->progress[i].off;
            files[i].old_len = s->progress[i].old_len;
            files[i].synced = s->progress[i].synced;
        }
    }
    pthread_mutex_unlock(&s->k.mu);
    return r;
}
