/*
** test-storage-blobs.c: unit tests of storage/blobs.c's writes whose
** checksum is computed on a thread of their own (hpo__blob_prepare_write,
** hpo__blob_append from HPO_BLOB_PAR_MIN bytes on): the files hold exactly
** the value's bytes and the references exactly the checksum a serial hash
** gives, on both sides of the threshold and at odd offsets; a failed write
** leaves no file, a failed append cuts the file back. The lazy files of a
** committed batch are synced by a thread of their own (blob-syncer.c): the
** next batch joins that job and skips what it synced; a failed fdatasync is
** reported with the file's index. A deferred file (the ask's vector) is
** named before its commit and written after it, by that thread or the next
** batch; a failed deferred write fails the next batch until it succeeds.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h> /* cmocka needs setjmp.h, stdarg.h and stddef.h */
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage-int.h"

struct fixture {
    char dir[64];
    char path[128];  /* the database path the blob directory is named after */
    char blobs[160]; /* <path>.blobs */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/hpo-test-blobs-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/hpod.db", f->dir);
    snprintf(f->blobs, sizeof(f->blobs), "%s.blobs", f->path);
    *state = f;
    return 0;
}

/* Remove the files of a directory, then the directory. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);

    if (d != NULL) {
        struct dirent *e;

        while ((e = readdir(d)) != NULL) {
            char p[512];

            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    remove_dir(f->blobs);
    remove_dir(f->dir);
    free(f);
    return 0;
}

/* Deterministic bytes (xorshift64*), so a misplaced piece cannot match. */
static unsigned char *make_bytes(size_t len, uint64_t seed)
{
    unsigned char *p = malloc(len > 0 ? len : 1);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

    assert_non_null(p);
    for (size_t i = 0; i < len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (unsigned char)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
    return p;
}

static size_t count_files(const struct fixture *f)
{
    DIR *d = opendir(f->blobs);
    size_t n = 0;
    struct dirent *e;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* The whole file `name` (its size in *len). */
static unsigned char *read_file(const struct fixture *f, const char *name, size_t *len)
{
    char p[300];
    struct stat sb;
    unsigned char *buf;
    int fd;

    snprintf(p, sizeof(p), "%s/%s", f->blobs, name);
    fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &sb), 0);
    *len = (size_t)sb.st_size;
    buf = malloc(*len > 0 ? *len : 1);
    assert_non_null(buf);
    for (size_t at = 0; at < *len;) {
        ssize_t n = pread(fd, buf + at, *len - at, (off_t)at);
        assert_true(n > 0);
        at += (size_t)n;
    }
    close(fd);
    return buf;
}

/* Split p[0..len) into three parts at odd offsets (the first a few bytes). */
static void split3(struct hpo_part parts[3], const unsigned char *p, size_t len)
{
    size_t a = len < 5 ? len : 5;
    size_t b = (len - a) / 2 + 1 < len - a ? (len - a) / 2 + 1 : len - a;

    parts[0] = (struct hpo_part){ p, a };
    parts[1] = (struct hpo_part){ p + a, b };
    parts[2] = (struct hpo_part){ p + a + b, len - a - b };
}

/* The reference hpo__blob_prepare_parts (the serial path) gives for the same counter. */
static void serial_ref(int64_t study, const struct hpo_part *parts, size_t n, uint64_t counter,
        struct hpo_blob_ref *ref)
{
    struct hpo_blobs s = { .dirfd = -1, .next = counter };

    hpo__blob_prepare_parts(&s, study, parts, n, ref);
}

/*
** Values just below, at and above the threshold, and several MiB with an
** odd tail, each in three parts at odd offsets, written new, lazily and as
** a state, with and without sync: the file holds exactly the bytes, the
** reference is the serial path's text, and hpo__blob_read checks it.
*/
static void test_prepare_write_exact(void **state)
{
    struct fixture *f = *state;
    const size_t m = HPO_BLOB_PAR_MIN;
    const size_t lens[] = { 1, m - 1, m, m + 1, 3 * m + 7, 8 * m + 3 };

    for (int sync = 0; sync < 2; sync++) {
        struct hpo_blobs b;
        struct hpo_error err;

        assert_int_equal(hpo__blobs_open(&b, f->path, sync == 1, &err), 0);
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            unsigned char *v = make_bytes(lens[i], 10 * i + (size_t)sync);
            bool lazy = i % 3 == 1, as_state = i % 3 == 2;
            struct hpo_blob_ref ref, want;
            struct hpo_part parts[3];
            unsigned char *back, *got;
            size_t got_len;

            split3(parts, v, lens[i]);
            hpo_error_clear(&err);
            assert_int_equal(hpo__blob_prepare_write(&b, 7, parts, 3, lazy, as_state, &ref, &err),
                    0);
            serial_ref(7, parts, 3, ref.counter, &want);
            assert_int_equal(ref.len, lens[i]);
            assert_int_equal(ref.hash, hpo__xxh64(v, lens[i]));
            assert_string_equal(ref.name, want.name);
            assert_int_equal(ref.text_len, want.text_len);
            assert_memory_equal(ref.text, want.text, want.text_len);
            got = read_file(f, ref.name, &got_len);
            assert_int_equal(got_len, lens[i]);
            assert_memory_equal(got, v, lens[i]);
            back = malloc(lens[i]);
            assert_non_null(back);
            assert_int_equal(hpo__blob_read(&b, &ref, back, &err), 0);
            assert_memory_equal(back, v, lens[i]);
            /* Its batch ends: committed (the next batch syncs a lazy file). */
            assert_int_equal(hpo__blobs_sync_dir(&b, &err), 0);
            hpo__blobs_finish(&b);
            free(back);
            free(got);
            free(v);
        }
        assert_int_equal(count_files(f), sizeof(lens) / sizeof(lens[0]));
        hpo__blobs_close(&b);
        remove_dir(f->blobs);
    }
}

/* hpo__blob_append's `copied`: the file already holds the record's bytes when it is called. */
struct copied_probe {
    const struct fixture *f;
    const char *name;
    const unsigned char *want;
    size_t want_len;
    int calls;
};

static void on_copied(void *arg)
{
    struct copied_probe *c = arg;
    size_t len;
    unsigned char *got = read_file(c->f, c->name, &len);

    c->calls++;
    assert_int_equal(len, c->want_len);
    assert_memory_equal(got, c->want, len);
    free(got);
}

/*
** Records appended to a state written by hpo__blob_prepare_write, below,
** at and above the threshold, in parts at odd offsets: each reference's
** checksum is XXH64 of the whole file as a serial hash gives it, the file
** holds exactly the state then the records; `copied` is called once per
** append, with the record in the file. A record past the whole state's
** size is refused (0: write the whole state) without the call.
*/
static void test_append_exact(void **state)
{
    struct fixture *f = *state;
    const size_t m = HPO_BLOB_PAR_MIN;
    const size_t state_len = 4 * m + 11;
    const size_t recs[] = { 33, m - 1, m, m + 5 };
    size_t total = state_len;

    for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
        total += recs[i];
    }
    for (int sync = 0; sync < 2; sync++) {
        unsigned char *all = make_bytes(total, 100 + (uint64_t)sync);
        struct hpo_blob_ref cur, next;
        struct hpo_part parts[3];
        struct hpo_blobs b;
        struct hpo_error err;
        size_t at = state_len;

        assert_int_equal(hpo__blobs_open(&b, f->path, sync == 1, &err), 0);
        split3(parts, all, state_len);
        assert_int_equal(hpo__blob_prepare_write(&b, 3, parts, 3, false, true, &cur, &err), 0);
        hpo__blob_keep_tail(&b, &cur);
        hpo__blobs_finish(&b);
        for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
            unsigned char *got;
            size_t got_len;

            struct copied_probe probe = { f, cur.name, all, at + recs[i], 0 };

            split3(parts, all + at, recs[i]);
            hpo_error_clear(&err);
            assert_int_equal(
                    hpo__blob_append(&b, &cur, parts, 3, on_copied, &probe, &next, &err), 1);
            assert_int_equal(probe.calls, 1);
            at += recs[i];
            assert_string_equal(next.name, cur.name);
            assert_int_equal(next.len, at);
            assert_int_equal(next.hash, hpo__xxh64(all, at));
            got = read_file(f, next.name, &got_len);
            assert_int_equal(got_len, at);
            assert_memory_equal(got, all, at);
            free(got);
            hpo__blobs_finish(&b);
            cur = next;
        }
        {
            /* Past the budget: the records after the state would outgrow it. */
            struct copied_probe probe = { f, cur.name, all, at, 0 };
            struct hpo_part big = { all, state_len - (at - state_len) + 1 };

            assert_int_equal(
                    hpo__blob_append(&b, &cur, &big, 1, on_copied, &probe, &next, &err), 0);
            assert_int_equal(probe.calls, 0);
        }
        hpo__blobs_close(&b);
        remove_dir(f->blobs);
        free(all);
    }
}

/*
** A file larger than the size limit (standing in for a full disk) fails
** with `unavailable` while its checksum's thread runs, and leaves no file
** and nothing to commit; an append past the limit fails and cuts the
** file back, and the next append continues from the state before it.
*/
static void test_failed_writes_leave_nothing(void **state)
{
    struct fixture *f = *state;
    const size_t m = HPO_BLOB_PAR_MIN;
    unsigned char *v = make_bytes(2 * m + 1, 200);
    unsigned char *all = make_bytes(2 * m, 201);
    struct hpo_part part = { v, 2 * m + 1 };
    struct hpo_part rec = { all + m, m };
    struct hpo_blob_ref ref, cur, next;
    struct rlimit old, small;
    struct hpo_blobs b;
    struct hpo_error err;
    unsigned char *got;
    size_t got_len;

    assert_int_equal(hpo__blobs_open(&b, f->path, true, &err), 0);
    {
        struct hpo_part s = { all, m };
        assert_int_equal(hpo__blob_prepare_write(&b, 1, &s, 1, false, true, &cur, &err), 0);
        hpo__blob_keep_tail(&b, &cur);
        hpo__blobs_finish(&b);
    }
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = m + m / 4;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    for (int lazy = 0; lazy < 2; lazy++) {
        hpo_error_clear(&err);
        assert_int_equal(hpo__blob_prepare_write(&b, 1, &part, 1, lazy == 1, false, &ref, &err),
                -EIO);
        assert_int_equal(err.code, HPO_UNAVAILABLE);
        assert_non_null(strstr(err.message, ref.name));
        assert_int_equal(b.created.n, 0);
        assert_int_equal(b.n_lazy, 0);
    }
    hpo_error_clear(&err);
    assert_int_equal(hpo__blob_append(&b, &cur, &rec, 1, NULL, NULL, &next, &err), -EIO);
    assert_int_equal(err.code, HPO_UNAVAILABLE);
    assert_int_equal(b.n_appended, 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_false(hpo__blobs_pending(&b));
    assert_int_equal(count_files(f), 1);
    got = read_file(f, cur.name, &got_len);
    assert_int_equal(got_len, m);
    assert_memory_equal(got, all, m);
    free(got);
    /* The tail is unchanged: the same record now appends. */
    hpo_error_clear(&err);
    assert_int_equal(hpo__blob_append(&b, &cur, &rec, 1, NULL, NULL, &next, &err), 1);
    assert_int_equal(next.len, 2 * m);
    assert_int_equal(next.hash, hpo__xxh64(all, 2 * m));
    hpo__blobs_finish(&b);
    hpo__blobs_close(&b);
    free(v);
    free(all);
}

/*
** Queue a job and join it after a pause; again (at most 50 times) while it
** was taken back or abandoned (queued again once that job ended).
*/
static int run_job(struct hpo_blob_syncer *s, struct hpo_blob_lazy_file *files, size_t n,
        int dirfd, bool *dir_synced, size_t *failed)
{
    int r = 0;

    *dir_synced = false;
    for (int k = 0; k < 50 && r == 0 && !*dir_synced; k++) {
        if (!hpo__blob_syncer_queue(s, files, n, dirfd)) {
            usleep(10000);
            continue;
        }
        usleep(10000);
        r = hpo__blob_syncer_join(s, files, n, dir_synced, failed);
    }
    return r;
}

/*
** The sync thread alone: a job writes what each file lacks (a deferred
** one's bytes, from where it stands) and syncs every file then the
** directory, and the join copies the progress back; a file that cannot be
** synced (a pipe) fails the job with its index; a join with no job out
** returns 0 with nothing done. The caller's fds stay its own (the job
** works on duplicates).
*/
static void test_syncer_jobs(void **state)
{
    struct fixture *f = *state;
    struct hpo_blob_syncer *s = hpo__blob_syncer_start();
    const size_t len = 2 * HPO_BLOB_PAR_MIN + 333; /* three pieces, the last short */
    unsigned char *v = make_bytes(len, 7);
    struct hpo_blob_lazy_file files[3];
    size_t failed = 99;
    bool dir_synced = true;
    int dirfd;

    assert_non_null(s);
    assert_int_equal(mkdir(f->blobs, 0700), 0);
    dirfd = open(f->blobs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dirfd >= 0);
    for (int i = 0; i < 3; i++) {
        char name[200];
        int fd;

        snprintf(name, sizeof(name), "%s/f%d", f->blobs, i);
        fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        if (i == 1) {
            /* Deferred, a piece written already; longer than its value (a reused spare). */
            assert_int_equal(pwrite(fd, v, HPO_BLOB_PAR_MIN, 0), (ssize_t)HPO_BLOB_PAR_MIN);
            assert_int_equal(ftruncate(fd, (off_t)(len + 4096)), 0);
            files[i] = (struct hpo_blob_lazy_file){ .fd = fd, .data = v, .len = len,
                .off = HPO_BLOB_PAR_MIN, .old_len = len + 4096 };
        } else {
            assert_int_equal(write(fd, "abc", 3), 3);
            files[i] = (struct hpo_blob_lazy_file){ .fd = fd, .len = 3, .off = 3 };
        }
    }
    assert_int_equal(hpo__blob_syncer_join(s, files, 3, &dir_synced, &failed), 0);
    assert_false(dir_synced);
    assert_false(files[0].synced);
    assert_int_equal(run_job(s, files, 3, dirfd, &dir_synced, &failed), 0);
    assert_true(dir_synced);
    for (int i = 0; i < 3; i++) {
        assert_true(files[i].synced);
        assert_int_equal(files[i].off, files[i].len);
    }
    assert_int_equal(files[1].old_len, 0);
    {
        char name[200];
        unsigned char *got;
        size_t got_len;

        snprintf(name, sizeof(name), "f1");
        got = read_file(f, name, &got_len);
        assert_int_equal(got_len, len);
        assert_memory_equal(got, v, len);
        free(got);
    }
    assert_int_equal(close(files[1].fd), 0);
    {
        int pfd[2];

        assert_int_equal(pipe(pfd), 0);
        close(pfd[1]);
        files[1] = (struct hpo_blob_lazy_file){ .fd = pfd[0], .len = 3, .off = 3 };
    }
    for (int i = 0; i < 3; i++) {
        files[i].synced = false;
    }
    assert_int_equal(run_job(s, files, 3, dirfd, &dir_synced, &failed), -EINVAL);
    assert_int_equal(failed, 1);
    assert_true(files[0].synced);
    assert_false(files[1].synced);
    assert_false(dir_synced);
    /* The failure was reported once: the next join has nothing out. */
    assert_int_equal(hpo__blob_syncer_join(s, files, 3, &dir_synced, &failed), 0);
    assert_false(dir_synced);
    hpo__blob_syncer_stop(s);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(close(files[i].fd), 0);
    }
    close(dirfd);
    remove_dir(f->blobs);
    free(v);
}

/* hpo_op.hold for the tests: counts the holds taken and let go. */
struct holds {
    atomic_int taken, released;
};

/* Called by the writer and by the sync thread. */
static void count_hold(void *arg, bool take)
{
    struct holds *h = arg;

    atomic_fetch_add(take ? &h->taken : &h->released, 1);
}

/* Holds still out: the writer's and, until its job ended, the sync thread's (bounded wait). */
static int holds_out(struct holds *h)
{
    for (int k = 0; k < 500 && atomic_load(&h->taken) != atomic_load(&h->released); k++) {
        usleep(2000);
    }
    return atomic_load(&h->taken) - atomic_load(&h->released);
}

static off_t size_of(const struct fixture *f, const char *name)
{
    char p[1024];
    struct stat sb;

    snprintf(p, sizeof(p), "%s/%s", f->blobs, name);
    assert_int_equal(stat(p, &sb), 0);
    return sb.st_size;
}

/*
** A deferred write (hpo__blob_prepare_deferred, sync): before its batch
** ends the file is named but empty, and the reference holds the value's
** checksum; once the batch committed, the next batch's hpo__blobs_sync_dir
** leaves it written (by the sync thread or itself) and synced, with its
** hold let go; the value reads back bit for bit. A batch that fails lets
** the hold go and leaves no file. A spare longer than the value is cut to
** it. Closing with a deferred file pending writes it. Without sync the
** value is written at once (no hold).
*/
static void test_deferred_writes(void **state)
{
    struct fixture *f = *state;
    const size_t len = 3 * HPO_BLOB_PAR_MIN + 13;
    unsigned char *v[4];
    struct hpo_blob_ref ref[4];
    struct holds h;
    struct hpo_blob_mark mark;
    struct hpo_blobs b;
    struct hpo_error err;
    unsigned char *got;
    size_t got_len;

    atomic_init(&h.taken, 0);
    atomic_init(&h.released, 0);
    for (int i = 0; i < 4; i++) {
        v[i] = make_bytes(len, 300 + (uint64_t)i);
    }
    assert_int_equal(hpo__blobs_open(&b, f->path, true, &err), 0);
    for (int i = 0; i < 2; i++) {
        unsigned char *back = malloc(len);

        assert_non_null(back);
        assert_int_equal(hpo__blobs_sync_dir(&b, &err), 0);
        assert_int_equal(hpo__blob_prepare_deferred(&b, 5, v[i], len, count_hold, &h, &ref[i],
                                 &err), 0);
        assert_int_equal(atomic_load(&h.taken) - atomic_load(&h.released), 1);
        assert_int_equal(ref[i].len, len);
        assert_int_equal(ref[i].hash, hpo__xxh64(v[i], len));
        assert_int_equal(size_of(f, ref[i].name), 0);
        hpo__blobs_finish(&b);
        /* The next batch: written and synced before it commits. */
        assert_int_equal(hpo__blobs_sync_dir(&b, &err), 0);
        assert_int_equal(b.n_lazy, 0);
        assert_int_equal(holds_out(&h), 0);
        assert_int_equal(hpo__blob_read(&b, &ref[i], back, &err), 0);
        assert_memory_equal(back, v[i], len);
        hpo__blobs_finish(&b);
        free(back);
    }
    /* A batch that fails: no file, the hold let go. */
    hpo__blobs_mark(&b, &mark);
    assert_int_equal(hpo__blob_prepare_deferred(&b, 5, v[2], len, count_hold, &h, &ref[2], &err),
            0);
    assert_int_equal(holds_out(&h), 1);
    hpo__blobs_undo(&b, &mark);
    assert_int_equal(holds_out(&h), 0);
    assert_int_equal(b.n_lazy, 0);
    assert_int_equal(count_files(f), 2);
    /* A spare longer than the value, renamed to the new name: cut to the value. */
    {
        struct hpo_part st = { make_bytes(len + len / 8, 333), len + len / 8 };
        struct hpo_blob_ref sref, nref;

        assert_int_equal(hpo__blob_prepare_write(&b, 5, &st, 1, false, true, &sref, &err), 0);
        hpo__blobs_finish(&b);
        assert_int_equal(hpo__blob_obsolete(&b, sref.text, sref.text_len, true), 0);
        hpo__blobs_finish(&b);
        assert_int_equal(b.n_spare, 1);
        assert_int_equal(hpo__blob_prepare_deferred(&b, 5, v[3], len, count_hold, &h, &nref,
                                 &err), 0);
        assert_int_equal(b.n_spare, 0);
        hpo__blobs_finish(&b);
        /* Closed with it pending (or out on the thread): written, cut, synced. */
        hpo__blobs_close(&b);
        assert_int_equal(holds_out(&h), 0);
        got = read_file(f, nref.name, &got_len);
        assert_int_equal(got_len, len);
        assert_memory_equal(got, v[3], len);
        free(got);
        free((void *)st.data);
    }
    /* Without sync: written at once, no hold. */
    assert_int_equal(hpo__blobs_open(&b, f->path, false, &err), 0);
    b.next = 1000;
    {
        int before = atomic_load(&h.taken);
        assert_int_equal(hpo__blob_prepare_deferred(&b, 5, v[0], len, count_hold, &h, &ref[0],
                                 &err), 0);
        assert_int_equal(atomic_load(&h.taken), before);
    }
    got = read_file(f, ref[0].name, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, v[0], len);
    free(got);
    hpo__blobs_finish(&b);
    hpo__blobs_close(&b);
    for (int i = 0; i < 4; i++) {
        free(v[i]);
    }
}

/*
** A deferred write that fails after its commit (a size limit standing in
** for a full disk) fails the next batch's hpo__blobs_sync_dir with
** `unavailable` naming the file, and /healthz's errno; the file stays
** pending with its hold, and once the limit is lifted the next batch
** writes it whole and lets the hold go.
*/
static void test_deferred_write_fails(void **state)
{
    struct fixture *f = *state;
    const size_t m = HPO_BLOB_PAR_MIN;
    const size_t len = 2 * m + 1;
    unsigned char *v = make_bytes(len, 500);
    struct holds h;
    struct rlimit old, small;
    struct hpo_blob_ref ref;
    struct hpo_blobs b;
    struct hpo_error err;
    unsigned char *got;
    size_t got_len;

    atomic_init(&h.taken, 0);
    atomic_init(&h.released, 0);
    assert_int_equal(hpo__blobs_open(&b, f->path, true, &err), 0);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = m + m / 4;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    assert_int_equal(hpo__blob_prepare_deferred(&b, 2, v, len, count_hold, &h, &ref, &err), 0);
    hpo__blobs_finish(&b);
    hpo_error_clear(&err);
    assert_int_equal(hpo__blobs_sync_dir(&b, &err), -EIO);
    assert_int_equal(err.code, HPO_UNAVAILABLE);
    assert_non_null(strstr(err.message, ref.name));
    assert_int_equal(b.fail_errno, EFBIG);
    assert_int_equal(b.n_lazy, 1);
    assert_int_equal(holds_out(&h), 1);
    hpo__blobs_forget(&b);
    /* Still failing: reported again by the next batch. */
    hpo_error_clear(&err);
    assert_int_equal(hpo__blobs_sync_dir(&b, &err), -EIO);
    assert_int_equal(b.n_lazy, 1);
    hpo__blobs_forget(&b);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    hpo_error_clear(&err);
    assert_int_equal(hpo__blobs_sync_dir(&b, &err), 0);
    assert_int_equal(b.n_lazy, 0);
    assert_int_equal(holds_out(&h), 0);
    got = read_file(f, ref.name, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, v, len);
    free(got);
    hpo__blobs_finish(&b);
    hpo__blobs_close(&b);
    assert_int_equal(holds_out(&h), 0);
    free(v);
}

/* The process's open file descriptors (/proc/self/fd, less the one reading it). */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n - 1;
}

/*
** With sync, a committed batch's lazy file is handed to the sync thread
** (n_bg; not while a job the last join abandoned still runs: then the next
** batch syncs it alone) and the next batch's hpo__blobs_sync_dir joins it and keeps no
** lazy file of a committed batch; a lazy file of that next batch is its
** own (not synced by it) and goes to the thread once it ends. Closing
** with a job out joins it; the files hold their bytes. A synced lazy
** file's fd goes to the hash thread when its batch ends (its pages
** dropped there): every fd is closed once the store is.
*/
static void test_lazy_synced_by_thread(void **state)
{
    struct fixture *f = *state;
    const size_t len = 3 * HPO_BLOB_PAR_MIN + 5;
    unsigned char *v[2];
    struct hpo_blob_ref ref[2];
    struct hpo_blobs b;
    struct hpo_error err;
    int fds = count_fds();

    assert_int_equal(hpo__blobs_open(&b, f->path, true, &err), 0);
    for (int i = 0; i < 2; i++) {
        struct hpo_part part;

        v[i] = make_bytes(len, 40 + (uint64_t)i);
        part.data = v[i];
        part.len = len;
        assert_int_equal(hpo__blobs_sync_dir(&b, &err), 0);
        /* The previous batch's lazy file was the thread's: none is left to sync. */
        assert_int_equal(b.n_bg, 0);
        assert_int_equal(b.n_lazy, 0);
        assert_int_equal(hpo__blob_prepare_write(&b, 3, &part, 1, true, false, &ref[i], &err), 0);
        assert_int_equal(b.n_lazy, 1);
        assert_int_equal(b.n_bg, 0);
        hpo__blobs_finish(&b);
        assert_non_null(b.syncer);
        /* Queued, unless the job the join above abandoned still runs (no wait for it). */
        assert_true(b.n_bg == 1 || (i > 0 && b.n_bg == 0));
        assert_non_null(b.hasher);
        assert_int_equal(b.n_written, 0); /* the first file's fd: the hash thread's now */
    }
    for (int i = 0; i < 2; i++) {
        unsigned char *back = malloc(len);

        assert_non_null(back);
        assert_int_equal(hpo__blob_read(&b, &ref[i], back, &err), 0);
        assert_memory_equal(back, v[i], len);
        free(back);
    }
    /* Closed with the second file's job out. */
    hpo__blobs_close(&b);
    assert_null(b.syncer);
    assert_int_equal(count_files(f), 2);
    assert_int_equal(count_fds(), fds);
    free(v[0]);
    free(v[1]);
}

/*
** The next batch joins a deferred write the thread is likely still on (32
** MiB, joined a millisecond after its batch ended): it takes the pieces the
** thread wrote and writes the rest itself without waiting (abandoned job),
** the file then holds the value exactly, and the thread's own hold goes
** when its job ends. Five times (whichever way each join finds the job).
*/
static void test_join_takes_over(void **state)
{
    struct fixture *f = *state;
    const size_t len = 32 * HPO_BLOB_PAR_MIN + 3;
    unsigned char *v = make_bytes(len, 600);
    struct holds h;
    struct hpo_blobs b;
    struct hpo_error err;

    atomic_init(&h.taken, 0);
    atomic_init(&h.released, 0);
    assert_int_equal(hpo__blobs_open(&b, f->path, true, &err), 0);
    for (int i = 0; i < 5; i++) {
        struct hpo_blob_ref ref;
        unsigned char *got;
        size_t got_len;

        assert_int_equal(hpo__blob_prepare_deferred(&b, 4, v, len, count_hold, &h, &ref, &err),
                0);
        hpo__blobs_finish(&b);
        usleep(1000);
        assert_int_equal(hpo__blobs_sync_dir(&b, &err), 0);
        assert_int_equal(b.n_lazy, 0);
        got = read_file(f, ref.name, &got_len);
        assert_int_equal(got_len, len);
        assert_memory_equal(got, v, len);
        free(got);
        hpo__blobs_finish(&b);
    }
    hpo__blobs_close(&b);
    assert_int_equal(holds_out(&h), 0);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prepare_write_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_writes_leave_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syncer_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lazy_synced_by_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_write_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_join_takes_over, setup, teardown),
    };

    return cmocka_run_group_tests_name("storage-blobs", tests, NULL, NULL);
}
