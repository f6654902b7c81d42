/*
** test-storage-blobs.c: unit tests of storage/blobs.c's writes whose
** checksum is computed on a thread of their own (hpo__blob_prepare_write,
** hpo__blob_append from HPO_BLOB_PAR_MIN bytes on): the files hold exactly
** the value's bytes and the references exactly the checksum a serial hash
** gives, on both sides of the threshold and at odd offsets; a failed write
** leaves no file, a failed append cuts the file back. The lazy files of a
** committed batch are synced by a thread of their own (blob-syncer.c): the
** next batch joins that job and skips what it synced; a failed fdatasync is
** reported with the file's index.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h> /* cmocka needs setjmp.h, stdarg.h and stddef.h */
#include <signal.h>
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

/* Queue a job and join it after a pause; again (at most 50 times) while it was taken back. */
static int run_job(struct hpo_blob_syncer *s, const int *fds, size_t n, int dirfd, size_t *synced)
{
    int r = 0;

    *synced = 0;
    for (int k = 0; k < 50 && r == 0 && *synced == 0; k++) {
        hpo__blob_syncer_queue(s, fds, n, dirfd);
        usleep(10000);
        r = hpo__blob_syncer_join(s, synced);
    }
    return r;
}

/*
** The sync thread alone: a job syncs every file then the directory; a file
** that cannot be synced (a closed fd) fails the job with its index; a join
** with no job out returns 0 with nothing synced.
*/
static void test_syncer_jobs(void **state)
{
    struct fixture *f = *state;
    struct hpo_blob_syncer *s = hpo__blob_syncer_start();
    int fds[3], dirfd;
    size_t synced = 99;

    assert_non_null(s);
    assert_int_equal(mkdir(f->blobs, 0700), 0);
    dirfd = open(f->blobs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dirfd >= 0);
    for (int i = 0; i < 3; i++) {
        char name[200];

        snprintf(name, sizeof(name), "%s/f%d", f->blobs, i);
        fds[i] = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fds[i] >= 0);
        assert_int_equal(write(fds[i], "abc", 3), 3);
    }
    assert_int_equal(hpo__blob_syncer_join(s, &synced), 0);
    assert_int_equal(synced, 0);
    assert_int_equal(run_job(s, fds, 3, dirfd, &synced), 0);
    assert_int_equal(synced, 3);
    assert_int_equal(close(fds[1]), 0);
    assert_int_equal(run_job(s, fds, 3, dirfd, &synced), -EBADF);
    assert_int_equal(synced, 1);
    /* The failure was reported once: the next join has nothing out. */
    assert_int_equal(hpo__blob_syncer_join(s, &synced), 0);
    assert_int_equal(synced, 0);
    hpo__blob_syncer_stop(s);
    close(fds[0]);
    close(fds[2]);
    close(dirfd);
    remove_dir(f->blobs);
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
** (n_bg) and the next batch's hpo__blobs_sync_dir joins it and keeps no
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
        assert_non_null(b.hasher);
        assert_int_equal(b.n_bg, 1);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prepare_write_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_writes_leave_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syncer_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lazy_synced_by_thread, setup, teardown),
    };

    return cmocka_run_group_tests_name("storage-blobs", tests, NULL, NULL);
}
