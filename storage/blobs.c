/*
** blobs.c: the side-file store for large values. A blob of HPO_BLOB_MIN bytes
** or more is written to its own file in `<db path>.blobs/`, and its SQLite
** cell holds a short reference (HPO_BLOB_MAGIC, file name, length, XXH64).
**
** Only the writer thread (or the opening thread before it starts) uses a
** struct hpo_blobs. Files are created, never rewritten, and named by a
** counter that never goes back, so a name is never reused: a crash between
** writing a file and committing its reference leaves only an unreferenced
** file, which the sweep at the next open removes.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "thread.h"
#include "storage-int.h"

#define MAGIC_LEN (sizeof(HPO_BLOB_MAGIC) - 1)

/* The largest single write(): Linux moves at most 0x7ffff000 bytes per call. */
#define WRITE_CHUNK ((size_t)1 << 30)

/* The piece after which a synced file's writeback is started (write_parts_at). */
#define EARLY_CHUNK ((size_t)1 << 20)

_Static_assert(sizeof(((struct hpo_blob_ref *)0)->text) <= HPO_BLOB_REF_MAX,
        "a reference must stay below the length the SQL filters on");

/* ---- XXH64 (Yann Collet's xxHash, 64-bit variant, seed 0) -------------- */

static const uint64_t P1 = 0x9E3779B185EBCA87ull;
static const uint64_t P2 = 0xC2B2AE3D27D4EB4Full;
static const uint64_t P3 = 0x165667B19E3779F9ull;
static const uint64_t P4 = 0x85EBCA77C2B2AE63ull;
static const uint64_t P5 = 0x27D4EB2F165667C5ull;

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t read64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint32_t read32(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}

static uint64_t xxh_merge(uint64_t acc, uint64_t val)
{
    acc ^= xxh_round(0, val);
    return acc * P1 + P4;
}

void hpo__xxh64_init(struct hpo_xxh64 *x)
{
    memset(x, 0, sizeof(*x));
    x->v[0] = P1 + P2;
    x->v[1] = P2;
    x->v[2] = 0;
    x->v[3] = 0 - P1;
}

static void xxh_stripe(uint64_t *v, const unsigned char *p)
{
    v[0] = xxh_round(v[0], read64(p));
    v[1] = xxh_round(v[1], read64(p + 8));
    v[2] = xxh_round(v[2], read64(p + 16));
    v[3] = xxh_round(v[3], read64(p + 24));
}

void hpo__xxh64_update(struct hpo_xxh64 *x, const void *data, size_t len)
{
    const unsigned char *p = data;

    if (len == 0) {
        return; /* an empty part may have no memory (NULL): no memcpy from it */
    }
    x->total += len;
    if (x->n_mem > 0) {
        size_t take = 32 - x->n_mem < len ? 32 - x->n_mem : len;
        memcpy(x->mem + x->n_mem, p, take);
        x->n_mem += take;
        p += take;
        len -= take;
        if (x->n_mem < 32) {
            return;
        }
        xxh_stripe(x->v, x->mem);
        x->n_mem = 0;
    }
    {
        uint64_t v[4] = { x->v[0], x->v[1], x->v[2], x->v[3] };
        while (len >= 32) {
            xxh_stripe(v, p);
            p += 32;
            len -= 32;
        }
        memcpy(x->v, v, sizeof(v));
    }
    if (len > 0) {
        memcpy(x->mem, p, len);
        x->n_mem = len;
    }
}

uint64_t hpo__xxh64_digest(const struct hpo_xxh64 *x)
{
    const unsigned char *p = x->mem;
    const unsigned char *end = p + x->n_mem;
    uint64_t h;

    if (x->total >= 32) {
        h = rotl64(x->v[0], 1) + rotl64(x->v[1], 7) + rotl64(x->v[2], 12) + rotl64(x->v[3], 18);
        h = xxh_merge(h, x->v[0]);
        h = xxh_merge(h, x->v[1]);
        h = xxh_merge(h, x->v[2]);
        h = xxh_merge(h, x->v[3]);
    } else {
        h = P5;
    }
    h += x->total;
    while (end - p >= 8) {
        h ^= xxh_round(0, read64(p));
        h = rotl64(h, 27) * P1 + P4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= (uint64_t)read32(p) * P1;
        h = rotl64(h, 23) * P2 + P3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)*p * P5;
        h = rotl64(h, 11) * P1;
        p++;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t hpo__xxh64(const void *data, size_t len)
{
    struct hpo_xxh64 x;

    hpo__xxh64_init(&x);
    hpo__xxh64_update(&x, data, len);
    return hpo__xxh64_digest(&x);
}

/*
** A checksum computed beside a write, by a thread kept for it (started at
** the first big write, stopped by hpo__blobs_close): hash_start hands it
** the parts (which it only reads) and the running state to continue,
** hash_join takes the result. A job the thread has not begun by then (no
** free core: the machine is busy anyway) is taken back and hashed by
** hash_join itself, so a write never waits for a thread to be scheduled.
** Below HPO_BLOB_PAR_MIN, or without the thread, hash_join hashes. The
** parts must stay unchanged until hash_join returned.
**
** Between jobs the thread also drops written files' pages and closes them
** (release_written hands it the fds: `drop`), off the caller's path: 0.3-0.4
** ms for an 8 MB file, which a tell's batch paid before its reply (the
** ask's vector file, synced by then). A hash job goes first.
*/
enum { JOB_NONE, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct hpo_blob_hasher {
    struct hpo_kept k;
    int job;
    struct hpo_xxh64 x;
    const struct hpo_part *parts;
    size_t n;
    int drop[HPO_BLOB_WRITTEN]; /* files whose pages go, then closed by the thread */
    size_t n_drop;
};

/* A job: the state to continue and the parts, queued or not (`queued`). */
struct hasher {
    struct hpo_xxh64 x;
    const struct hpo_part *parts;
    size_t n;
    bool queued;
};

static void hash_parts(struct hpo_xxh64 *x, const struct hpo_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        hpo__xxh64_update(x, parts[i].data, parts[i].len);
    }
}

static void *hasher_main(void *arg)
{
    struct hpo_blob_hasher *t = arg;

    pthread_mutex_lock(&t->k.mu);
    for (;;) {
        while (!t->k.stop && t->job != JOB_QUEUED && t->n_drop == 0) {
            pthread_cond_wait(&t->k.wake, &t->k.mu);
        }
        if (t->job != JOB_QUEUED && t->n_drop > 0) {
            int fd = t->drop[--t->n_drop];
            pthread_mutex_unlock(&t->k.mu);
            (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
            pthread_mutex_lock(&t->k.mu);
            continue;
        }
        if (t->job != JOB_QUEUED) {
            break; /* stop, every drop done */
        }
        t->job = JOB_RUNNING;
        pthread_mutex_unlock(&t->k.mu);
        hash_parts(&t->x, t->parts, t->n);
        pthread_mutex_lock(&t->k.mu);
        t->job = JOB_DONE;
        pthread_cond_signal(&t->k.done);
    }
    pthread_mutex_unlock(&t->k.mu);
    return NULL;
}

/* The thread, started at the first use; NULL if it cannot be. */
static struct hpo_blob_hasher *hasher_get(struct hpo_blobs *b)
{
    struct hpo_blob_hasher *t = b->hasher;

    if (t != NULL || b->hasher_failed) {
        return t;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    if (hpo_kept_start(&t->k, hasher_main, t, "hpod-hash") != 0) {
        free(t);
        b->hasher_failed = true; /* hashed by the writer from now on */
        return NULL;
    }
    b->hasher = t;
    return t;
}

static void hasher_stop(struct hpo_blobs *b)
{
    struct hpo_blob_hasher *t = b->hasher;

    if (t == NULL) {
        return;
    }
    hpo_kept_stop(&t->k);
    free(t);
    b->hasher = NULL;
}

/* Hand fd to the thread to drop its pages and close it; false to do it here. */
static bool hasher_drop(struct hpo_blobs *b, int fd)
{
    struct hpo_blob_hasher *t = b->hasher;
    bool taken = false;

    if (t == NULL) {
        return false;
    }
    pthread_mutex_lock(&t->k.mu);
    if (t->n_drop < HPO_BLOB_WRITTEN) {
        t->drop[t->n_drop++] = fd;
        taken = true;
        pthread_cond_signal(&t->k.wake);
    }
    pthread_mutex_unlock(&t->k.mu);
    return taken;
}

/* Continue h->x (set by the caller) over the parts of `len` bytes. */
static void hash_start(struct hpo_blobs *b, struct hasher *h, const struct hpo_part *parts,
        size_t n, size_t len)
{
    struct hpo_blob_hasher *t = len >= HPO_BLOB_PAR_MIN ? hasher_get(b) : NULL;

    h->parts = parts;
    h->n = n;
    h->queued = t != NULL;
    if (t == NULL) {
        return;
    }
    pthread_mutex_lock(&t->k.mu);
    t->x = h->x;
    t->parts = parts;
    t->n = n;
    t->job = JOB_QUEUED;
    pthread_cond_signal(&t->k.wake);
    pthread_mutex_unlock(&t->k.mu);
}

static void hash_join(struct hpo_blobs *b, struct hasher *h)
{
    struct hpo_blob_hasher *t = b->hasher;

    if (h->queued) {
        pthread_mutex_lock(&t->k.mu);
        if (t->job == JOB_QUEUED) {
            t->job = JOB_NONE; /* not begun: taken back */
            pthread_mutex_unlock(&t->k.mu);
        } else {
            while (t->job != JOB_DONE) {
                pthread_cond_wait(&t->k.done, &t->k.mu);
            }
            t->job = JOB_NONE;
            h->x = t->x;
            pthread_mutex_unlock(&t->k.mu);
            h->queued = false;
            return;
        }
        h->queued = false;
    }
    hash_parts(&h->x, h->parts, h->n);
}

/* ---- names and references ----------------------------------------------- */

/* Parse exactly `n` lowercase hex digits. */
static bool parse_hex(const char *s, size_t n, uint64_t *ret)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (c >= '0' && c <= '9') {
            v = v << 4 | (uint64_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        } else {
            return false;
        }
    }
    *ret = v;
    return true;
}

/*
** A file name is "s<study id>-<counter, 16 hex digits>": the study for the
** humans who look into the directory, the counter for uniqueness.
*/
static bool parse_name(const char *s, size_t n, uint64_t *ret_counter)
{
    size_t i = 1;

    if (n < 1 + 1 + 1 + 16 || n >= HPO_BLOB_NAME_MAX || s[0] != 's') {
        return false;
    }
    if (s[i] == '-') {
        i++;
    }
    if (i >= n || s[i] < '0' || s[i] > '9') {
        return false;
    }
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    if (i + 1 + 16 != n || s[i] != '-') {
        return false;
    }
    return parse_hex(s + i + 1, 16, ret_counter);
}

bool hpo__blob_parse(const void *value, size_t len, struct hpo_blob_ref *ref)
{
    const char *s = value;
    const char *end = s + len;
    const char *name;
    const char *colon;
    uint64_t n = 0;
    uint64_t counter;

    if (value == NULL || len <= MAGIC_LEN || len >= sizeof(ref->text) ||
            memcmp(s, HPO_BLOB_MAGIC, MAGIC_LEN) != 0) {
        return false;
    }
    name = s + MAGIC_LEN;
    colon = memchr(name, ':', (size_t)(end - name));
    if (colon == NULL || !parse_name(name, (size_t)(colon - name), &counter)) {
        return false;
    }
    /* The byte length in decimal, no leading zeros. */
    s = colon + 1;
    if (s >= end || *s < '0' || *s > '9' || (*s == '0' && s + 1 < end && s[1] != ':')) {
        return false;
    }
    while (s < end && *s >= '0' && *s <= '9') {
        if (n > (UINT64_MAX - 9) / 10) {
            return false;
        }
        n = n * 10 + (uint64_t)(*s - '0');
        s++;
    }
    if (end - s != 1 + 16 || *s != ':' || !parse_hex(s + 1, 16, &ref->hash)) {
        return false;
    }
    if (n > SIZE_MAX) {
        return false;
    }
    memcpy(ref->name, name, (size_t)(colon - name));
    ref->name[colon - name] = '\0';
    ref->counter = counter;
    ref->len = (size_t)n;
    memcpy(ref->text, value, len);
    ref->text_len = len;
    return true;
}

bool hpo__blob_wanted(const struct hpo_blobs *b, const void *data, size_t len)
{
    if (b->dirfd < 0 || data == NULL) {
        return false;
    }
    /* Any value that starts like a reference goes to a file too, so an inline
       value is never mistaken for one. */
    return len >= HPO_BLOB_MIN ||
            (len >= MAGIC_LEN && memcmp(data, HPO_BLOB_MAGIC, MAGIC_LEN) == 0);
}

/* ---- name lists ----------------------------------------------------------- */

static int names_add(struct hpo_blob_names *l, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap > 0 ? 2 * l->cap : 16;
        char(*v)[HPO_BLOB_NAME_MAX] = realloc(l->v, cap * sizeof(*v));

        if (v == NULL) {
            return -ENOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    snprintf(l->v[l->n], HPO_BLOB_NAME_MAX, "%s", name);
    l->n++;
    return 0;
}

static void names_free(struct hpo_blob_names *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
    l->cap = 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* ---- files ---------------------------------------------------------------- */

/* Like hpo_error_set(), with ": <the text of errno -sys>" after the message. */
static int sys_error(struct hpo_error *err, int r, enum hpo_code code, int sys, const char *fmt,
        ...) __attribute__((format(printf, 5, 6)));

static int sys_error(struct hpo_error *err, int r, enum hpo_code code, int sys, const char *fmt,
        ...)
{
    char msg[192];
    char buf[96];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return hpo_error_set(err, r, code, NULL, "%s: %s", msg, strerror_r(-sys, buf, sizeof(buf)));
}

/* Fill `err` for a failed system call on a file of the store. */
static int file_error(const struct hpo_blobs *b, int r, const char *what, const char *name,
        struct hpo_error *err)
{
    /* Disk full, quota or a size limit: the same `unavailable` as SQLITE_FULL. */
    return sys_error(err, r == -ENOMEM ? -ENOMEM : -EIO,
            r == -ENOMEM ? HPO_INTERNAL : HPO_UNAVAILABLE, r, "%s blob file '%s/%s'", what, b->dir,
            name);
}

/* Write all of p[0..len) at offset `at`, in pieces of at most WRITE_CHUNK. 0 or -errno. */
static int write_all_at(int fd, const unsigned char *p, size_t len, off_t at)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len < WRITE_CHUNK ? len : WRITE_CHUNK, at);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;
        }
        p += n;
        len -= (size_t)n;
        at += n;
    }
    return 0;
}

/*
** Write the parts at offset `at` on (pwrite). `early`: start the writeback
** of each EARLY_CHUNK as soon as it is written (SYNC_FILE_RANGE_WRITE queues
** it and does not wait), so the disk writes while the rest is copied and
** the fdatasync after waits only for the tail: on this machine's ext4 on
** virtio an 8 MB file 1.9 ms written and synced against 2.9 in one piece,
** 24 MB 5.8 against 9. Without it, each part goes in one call. 0 or -errno.
*/
static int write_parts_at(int fd, const struct hpo_part *parts, size_t n, off_t at, bool early)
{
    size_t piece = early ? EARLY_CHUNK : WRITE_CHUNK;
    off_t started = at;

    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = parts[i].data;
        size_t left = parts[i].len;

        while (left > 0) {
            size_t k = left < piece ? left : piece;
            int r = write_all_at(fd, p, k, at);

            if (r < 0) {
                return r;
            }
            at += (off_t)k;
            if (early && at - started >= (off_t)EARLY_CHUNK) {
                (void)sync_file_range(fd, started, at - started, SYNC_FILE_RANGE_WRITE);
                started = at;
            }
            p += k;
            left -= k;
        }
    }
    if (early && at > started) {
        (void)sync_file_range(fd, started, at - started, SYNC_FILE_RANGE_WRITE);
    }
    return 0;
}

static int read_all(int fd, unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, p, len < WRITE_CHUNK ? len : WRITE_CHUNK);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -ENODATA;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Whether the path names a file on disk (not SQLite's in-memory or temporary databases). */
static bool on_disk(const char *path)
{
    return path[0] != '\0' && strcmp(path, ":memory:") != 0 && strncmp(path, "file:", 5) != 0;
}

/* fsync the directory that holds `path` (the blob directory's parent). */
static int sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char parent[4096];
    int fd;
    int r = 0;

    if (slash == NULL) {
        snprintf(parent, sizeof(parent), ".");
    } else if (slash == path) {
        snprintf(parent, sizeof(parent), "/");
    } else {
        if ((size_t)(slash - path) >= sizeof(parent)) {
            return -ENAMETOOLONG;
        }
        memcpy(parent, path, (size_t)(slash - path));
        parent[slash - path] = '\0';
    }
    fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    if (fsync(fd) < 0) {
        r = -errno;
    }
    close(fd);
    return r;
}

/*
** The spare closest in size to `len` bytes, within a quarter of it below
** and up to twice it above (a state file for the next state, perhaps with
** the records appended to it, not for a vector of another size), or -1.
*/
static int pick_spare(const struct hpo_blobs *b, size_t len)
{
    size_t best_gap = SIZE_MAX;
    int best = -1;

    for (size_t i = 0; i < b->n_spare; i++) {
        size_t have = b->spare[i].len;
        size_t gap = have > len ? have - len : len - have;
        if (have > len ? gap > len + len / 4 : gap > len / 4) {
            continue;
        }
        if (gap < best_gap) {
            best_gap = gap;
            best = (int)i;
        }
    }
    return best;
}

static void drop_spare(struct hpo_blobs *b, size_t i, bool unlink_it)
{
    if (unlink_it) {
        (void)unlinkat(b->dirfd, b->spare[i].name, 0);
    }
    memmove(&b->spare[i], &b->spare[i + 1], (b->n_spare - i - 1) * sizeof(b->spare[0]));
    b->n_spare--;
}

static int sync_lazy(struct hpo_blobs *b, bool all, bool *synced, struct hpo_error *err);
static void lazy_committed(struct hpo_blobs *b);

/* Forget the last lazy file: close it and let go of a deferred write's memory. */
static void drop_lazy(struct hpo_blobs *b)
{
    b->n_lazy--;
    close(b->lazy[b->n_lazy].f.fd);
    if (b->lazy[b->n_lazy].f.hold != NULL) {
        b->lazy[b->n_lazy].f.hold(b->lazy[b->n_lazy].f.hold_arg, false);
    }
}

/*
** Drop the cached pages of the files written before (what writeback has
** finished with): 0.2-0.4 ms for 8 MB here, which is why with sync it is
** done once the batch ended rather than before a write or a commit, and
** by the hash thread when there is one (hasher_drop), which closes them.
*/
static void release_written(struct hpo_blobs *b)
{
    for (size_t i = 0; i < b->n_written; i++) {
        if (!hasher_drop(b, b->written[i])) {
            (void)posix_fadvise(b->written[i], 0, 0, POSIX_FADV_DONTNEED);
            close(b->written[i]);
        }
    }
    b->n_written = 0;
}

int hpo__blobs_open(struct hpo_blobs *b, const char *db_path, bool sync, struct hpo_error *err)
{
    size_t n;
    int r;

    memset(b, 0, sizeof(*b));
    b->dirfd = -1;
    b->sync = sync;
    b->next = 1;
    if (!on_disk(db_path)) {
        return 0;
    }
    n = strlen(db_path) + sizeof(".blobs");
    b->dir = malloc(n);
    if (b->dir == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    snprintf(b->dir, n, "%s.blobs", db_path);
    if (mkdir(b->dir, 0700) == 0) {
        /* A new directory entry must be durable before any file in it is. */
        r = sync ? sync_parent(b->dir) : 0;
        if (r < 0) {
            return sys_error(err, -EIO, HPO_UNAVAILABLE, r, "syncing the parent of '%s'", b->dir);
        }
    } else if (errno != EEXIST) {
        return sys_error(err, -EIO, HPO_UNAVAILABLE, -errno, "creating '%s'", b->dir);
    }
    b->dirfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->dirfd < 0) {
        return sys_error(err, -EIO, HPO_UNAVAILABLE, -errno, "opening '%s'", b->dir);
    }
    return 0;
}

int hpo__blobs_open_read(struct hpo_blobs *b, const char *db_path)
{
    size_t n;

    memset(b, 0, sizeof(*b));
    b->dirfd = -1;
    if (!on_disk(db_path)) {
        return 0;
    }
    n = strlen(db_path) + sizeof(".blobs");
    b->dir = malloc(n);
    if (b->dir == NULL) {
        return -ENOMEM;
    }
    snprintf(b->dir, n, "%s.blobs", db_path);
    /* Missing: no value is in a file yet; a reference then fails to read. */
    b->dirfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return 0;
}

void hpo__blobs_close(struct hpo_blobs *b)
{
    struct hpo_error ignored;
    bool synced = false;

    /* A clean stop leaves every committed file on disk. */
    lazy_committed(b);
    if (sync_lazy(b, true, &synced, &ignored) < 0) {
        while (b->n_lazy > 0) {
            drop_lazy(b);
        }
    }
    if (synced && b->dirfd >= 0) {
        (void)fsync(b->dirfd);
    }
    release_written(b);
    while (b->n_spare > 0) {
        drop_spare(b, b->n_spare - 1, true);
    }
    if (b->dirfd >= 0) {
        close(b->dirfd);
    }
    b->dirfd = -1;
    free(b->dir);
    b->dir = NULL;
    names_free(&b->created);
    names_free(&b->obsolete);
    names_free(&b->reusable);
    hasher_stop(b);
    hpo__blob_syncer_stop(b->syncer);
    b->syncer = NULL;
}

/* Every reference the database holds, as file names, sorted. */
static int referenced_names(struct hpo_blobs *b, sqlite3 *db, struct hpo_blob_names *names,
        struct hpo_error *err)
{
    /* length() of a BLOB does not read its overflow pages, so the inline
       vectors and states of older databases cost nothing here. */
    static const char sql[] =
            "SELECT sampler_state FROM studies WHERE length(sampler_state) < 128"
            " UNION ALL SELECT value FROM params"
            " WHERE typeof(value) = 'blob' AND length(value) < 128";
    _Static_assert(HPO_BLOB_REF_MAX == 128, "the SQL above filters on HPO_BLOB_REF_MAX");
    sqlite3_stmt *stmt = NULL;
    int rc;
    int r = 0;

    rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        return hpo__storage_error(db, rc, "listing blob references", err);
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct hpo_blob_ref ref;

        if (!hpo__blob_parse(sqlite3_column_blob(stmt, 0),
                    (size_t)sqlite3_column_bytes(stmt, 0), &ref)) {
            continue;
        }
        if (ref.counter >= b->next) {
            b->next = ref.counter + 1;
        }
        if (names_add(names, ref.name) < 0) {
            r = hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
            break;
        }
    }
    if (r == 0 && rc != SQLITE_DONE) {
        r = hpo__storage_error(db, rc, "listing blob references", err);
    }
    sqlite3_finalize(stmt);
    if (r == 0 && names->n > 1) {
        qsort(names->v, names->n, sizeof(names->v[0]), cmp_names);
    }
    return r;
}

int hpo__blobs_sweep(struct hpo_blobs *b, sqlite3 *db, struct hpo_error *err)
{
    struct hpo_blob_names refs = { 0 };
    DIR *d;
    int fd;
    int rc;
    int r;

    if (b->dirfd < 0) {
        return 0;
    }
    /* One read transaction: the references and the listing agree. */
    rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return hpo__storage_error(db, rc, "starting a read transaction", err);
    }
    r = referenced_names(b, db, &refs, err);
    (void)sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (r < 0) {
        goto out;
    }
    fd = dup(b->dirfd);
    d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        r = sys_error(err, -EIO, HPO_UNAVAILABLE, -errno, "listing '%s'", b->dir);
        if (fd >= 0) {
            close(fd);
        }
        goto out;
    }
    for (;;) {
        struct dirent *e;
        uint64_t counter;

        errno = 0;
        e = readdir(d);
        if (e == NULL) {
            break;
        }
        /* Files of other names are not ours to remove. */
        if (!parse_name(e->d_name, strlen(e->d_name), &counter)) {
            continue;
        }
        if (counter >= b->next) {
            b->next = counter + 1;
        }
        if (bsearch(e->d_name, refs.v, refs.n, sizeof(refs.v[0]), cmp_names) == NULL) {
            /* A crash between writing the file and committing its reference. */
            (void)unlinkat(b->dirfd, e->d_name, 0);
        }
    }
    if (errno != 0) {
        r = sys_error(err, -EIO, HPO_UNAVAILABLE, -errno, "listing '%s'", b->dir);
    }
    closedir(d);
out:
    names_free(&refs);
    return r;
}

/* The cell's text of `ref` (name, len and hash set). */
static void format_ref(struct hpo_blob_ref *ref)
{
    int k = snprintf(ref->text, sizeof(ref->text), "%s%s:%zu:%016" PRIx64, HPO_BLOB_MAGIC,
            ref->name, ref->len, ref->hash);

    ref->text_len = (size_t)k;
}

/* A new file's name and length in `ref` (its checksum: seal_ref). */
static void name_ref(struct hpo_blobs *b, int64_t study_id, size_t len, struct hpo_blob_ref *ref)
{
    ref->counter = b->next++;
    ref->len = len;
    snprintf(ref->name, sizeof(ref->name), "s%" PRId64 "-%016" PRIx64, study_id, ref->counter);
}

/* The checksum `x` of the whole file into `ref`, and its text. */
static void seal_ref(struct hpo_blobs *b, struct hpo_blob_ref *ref, const struct hpo_xxh64 *x)
{
    ref->hash = hpo__xxh64_digest(x);
    /* Kept for hpo__blob_keep_tail: an append continues this checksum. */
    b->last_x = *x;
    b->last_counter = ref->counter;
    format_ref(ref);
}

static size_t parts_len(const struct hpo_part *parts, size_t n)
{
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        len += parts[i].len;
    }
    return len;
}

void hpo__blob_prepare_parts(struct hpo_blobs *b, int64_t study_id, const struct hpo_part *parts,
        size_t n, struct hpo_blob_ref *ref)
{
    struct hpo_xxh64 x;

    hpo__xxh64_init(&x);
    hash_parts(&x, parts, n);
    name_ref(b, study_id, parts_len(parts, n), ref);
    seal_ref(b, ref, &x);
}

void hpo__blob_prepare(struct hpo_blobs *b, int64_t study_id, const void *data, size_t len,
        struct hpo_blob_ref *ref)
{
    struct hpo_part part = { data, len };

    hpo__blob_prepare_parts(b, study_id, &part, 1, ref);
}

/*
** Open the file for `ref`: a spare renamed to the new name (overwritten in
** place, then cut to length), else a new file. Returns the fd or -errno.
*/
static int open_for_write(struct hpo_blobs *b, const struct hpo_blob_ref *ref, size_t *old_len)
{
    int i = pick_spare(b, ref->len);
    int fd;

    *old_len = 0;
    if (i >= 0) {
        if (renameat(b->dirfd, b->spare[i].name, b->dirfd, ref->name) == 0) {
            fd = openat(b->dirfd, ref->name, O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                *old_len = b->spare[i].len;
                drop_spare(b, (size_t)i, false);
                return fd;
            }
            (void)unlinkat(b->dirfd, ref->name, 0);
        }
        drop_spare(b, (size_t)i, true);
    }
    fd = openat(b->dirfd, ref->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    return fd < 0 ? -errno : fd;
}

/*
** Write the file `ref` names. `state`: a sampler state, which later records
** may extend (hpo__blob_append): a longer spare keeps its length, so those
** appends overwrite allocated blocks inside the file (an fdatasync of data
** alone) rather than growing it; the bytes past the reference are never read.
*/
static int write_file(struct hpo_blobs *b, const struct hpo_blob_ref *ref,
        const struct hpo_part *parts, size_t n, bool lazy, bool state, struct hpo_error *err)
{
    size_t old_len;
    int fd;
    int r = 0;

    if (!b->sync) {
        release_written(b);
    }
    fd = open_for_write(b, ref, &old_len);
    if (fd < 0) {
        b->fail_errno = fd != -ENOMEM ? -fd : 0;
        b->fail_len = ref->len;
        return file_error(b, fd, "creating", ref->name, err);
    }
    /*
    ** Straight from the caller's buffers; a file synced now has its writeback
    ** started piece by piece. A lazy one's waits for the commit (below).
    */
    r = write_parts_at(fd, parts, n, 0, b->sync && !lazy);
    if (r == 0 && old_len > ref->len && !state && ftruncate(fd, (off_t)ref->len) < 0) {
        r = -errno;
    }
    if (r == 0 && lazy) {
        /*
        ** Synced by the next batch (hpo__blobs_sync_dir). Its writeback starts
        ** only once this batch committed (lazy_committed): started now, ext4's
        ** ordered mode would make this commit's own journal flush wait for it.
        */
        snprintf(b->lazy[b->n_lazy].name, HPO_BLOB_NAME_MAX, "%s", ref->name);
        b->lazy[b->n_lazy].batch = true;
        b->lazy[b->n_lazy].f = (struct hpo_blob_lazy_file){ .fd = fd, .len = ref->len,
            .off = ref->len };
        b->n_lazy++;
    } else if (r == 0 && b->sync && fdatasync(fd) < 0) {
        r = -errno;
    }
    if (r == 0 && lazy) {
        /* kept open in b->lazy */
    } else if (r == 0 && old_len == 0 && b->n_written < HPO_BLOB_WRITTEN) {
        /* A new file: start its writeback now, drop its pages at the next write. */
        if (!b->sync) {
            (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        }
        b->written[b->n_written++] = fd;
    } else if (close(fd) < 0 && r == 0 && errno != EINTR) {
        r = -errno;
    }
    if (r < 0) {
        (void)unlinkat(b->dirfd, ref->name, 0);
        b->fail_errno = r != -ENOMEM ? -r : 0;
        b->fail_len = ref->len;
        return file_error(b, r, "writing", ref->name, err);
    }
    b->fail_errno = 0;
    if (names_add(&b->created, ref->name) < 0) {
        if (lazy) {
            drop_lazy(b);
        }
        (void)unlinkat(b->dirfd, ref->name, 0);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    return 0;
}

int hpo__blob_prepare_write(struct hpo_blobs *b, int64_t study_id,
        const struct hpo_part *parts, size_t n, bool lazy, bool state, struct hpo_blob_ref *ref,
        struct hpo_error *err)
{
    struct hasher h;
    int r;

    name_ref(b, study_id, parts_len(parts, n), ref);
    /* The file needs only its name: the checksum is computed while it is written. */
    hpo__xxh64_init(&h.x);
    hash_start(b, &h, parts, n, ref->len);
    r = write_file(b, ref, parts, n, lazy && b->sync && b->n_lazy < HPO_BLOB_LAZY, state, err);
    hash_join(b, &h);
    seal_ref(b, ref, &h.x);
    return r;
}

int hpo__blob_prepare_deferred(struct hpo_blobs *b, int64_t study_id, const void *data,
        size_t len, void (*hold)(void *arg, bool take), void *arg, struct hpo_blob_ref *ref,
        struct hpo_error *err)
{
    struct hpo_xxh64 x;
    size_t old_len;
    int fd;

    if (!b->sync || b->dirfd < 0 || b->n_lazy == HPO_BLOB_LAZY || len == 0) {
        struct hpo_part part = { data, len };
        return hpo__blob_prepare_write(b, study_id, &part, 1, true, false, ref, err);
    }
    name_ref(b, study_id, len, ref);
    /* Only the name now (its entry goes to disk with the next directory fsync). */
    fd = open_for_write(b, ref, &old_len);
    if (fd < 0) {
        b->fail_errno = fd != -ENOMEM ? -fd : 0;
        b->fail_len = len;
        return file_error(b, fd, "creating", ref->name, err);
    }
    if (names_add(&b->created, ref->name) < 0) {
        close(fd);
        (void)unlinkat(b->dirfd, ref->name, 0);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    /* The checksum the cell needs, here: no write to overlap it with. */
    hpo__xxh64_init(&x);
    hpo__xxh64_update(&x, data, len);
    seal_ref(b, ref, &x);
    snprintf(b->lazy[b->n_lazy].name, HPO_BLOB_NAME_MAX, "%s", ref->name);
    b->lazy[b->n_lazy].batch = true;
    b->lazy[b->n_lazy].f = (struct hpo_blob_lazy_file){ .fd = fd, .data = data, .len = len,
        .old_len = old_len > len ? old_len : 0, .hold = hold, .hold_arg = arg };
    b->n_lazy++;
    hold(arg, true);
    return 0;
}

int hpo__blob_lazy_write(struct hpo_blob_lazy_file *f, const atomic_bool *stop,
        void (*progress)(void *arg, const struct hpo_blob_lazy_file *f), void *arg)
{
    while (f->off < f->len) {
        size_t k = f->len - f->off < EARLY_CHUNK ? f->len - f->off : EARLY_CHUNK;
        int r;

        if (stop != NULL && atomic_load(stop)) {
            return 1;
        }
        r = write_all_at(f->fd, f->data + f->off, k, (off_t)f->off);
        if (r < 0) {
            return r;
        }
        (void)sync_file_range(f->fd, (off_t)f->off, (off_t)k, SYNC_FILE_RANGE_WRITE);
        f->off += k;
        if (progress != NULL) {
            progress(arg, f);
        }
    }
    if (f->old_len > 0) {
        if (ftruncate(f->fd, (off_t)f->len) < 0) {
            return -errno;
        }
        f->old_len = 0;
    }
    return 0;
}

/*
** A lazy file whose write or fdatasync failed: a deferred one is written
** again from its first byte (after a failed fdatasync its pages may have
** been marked clean), and /healthz sees the failure.
*/
static void lazy_failed(struct hpo_blobs *b, size_t i, int r)
{
    struct hpo_blob_lazy_file *f = &b->lazy[i].f;

    if (f->data != NULL) {
        f->off = 0;
    }
    f->synced = false;
    b->fail_errno = r != -ENOMEM ? -r : 0;
    b->fail_len = f->len;
}

/*
** Write (deferred files) and sync the lazy files of committed batches
** (before the next COMMIT or at close); `all`: the current batch's too.
** *synced: whether the directory needs its fsync for them.
*/
static int sync_lazy(struct hpo_blobs *b, bool all, bool *synced, struct hpo_error *err)
{
    size_t k = 0, covered = 0;

    /* The first n_bg files were handed to the sync thread: take its progress. */
    if (b->n_bg > 0) {
        struct hpo_blob_lazy_file got[HPO_BLOB_LAZY];
        size_t n = b->n_bg, failed;
        bool dir_synced;
        int r;

        for (size_t i = 0; i < n; i++) {
            got[i] = b->lazy[i].f;
        }
        r = hpo__blob_syncer_join(b->syncer, got, n, &dir_synced, &failed);
        b->n_bg = 0;
        for (size_t i = 0; i < n; i++) {
            b->lazy[i].f = got[i];
        }
        /* A failed job: that file is written (deferred) and synced again below; fails if that does. */
        if (r < 0 && failed < n) {
            lazy_failed(b, failed, r);
        }
        covered = r == 0 && dir_synced ? n : 0;
    }
    for (size_t i = 0; i < b->n_lazy; i++) {
        struct hpo_blob_lazy_file *f = &b->lazy[i].f;
        int r = 0;

        if (b->lazy[i].batch && !all) {
            continue;
        }
        if (f->off < f->len || f->old_len > 0) {
            r = hpo__blob_lazy_write(f, NULL, NULL, NULL);
        }
        if (r == 0 && !f->synced) {
            r = fdatasync(f->fd) < 0 ? -errno : 0;
            f->synced = r == 0;
        }
        if (r < 0) {
            lazy_failed(b, i, r);
            return file_error(b, r, f->data != NULL ? "writing" : "syncing", b->lazy[i].name,
                    err);
        }
        if (f->data != NULL) {
            b->fail_errno = 0;
        }
        if (i >= covered) {
            *synced = true;
        }
    }
    for (size_t i = 0; i < b->n_lazy; i++) {
        if (b->lazy[i].batch && !all) {
            b->lazy[k++] = b->lazy[i];
            continue;
        }
        if (b->lazy[i].f.hold != NULL) {
            b->lazy[i].f.hold(b->lazy[i].f.hold_arg, false);
        }
        /* Written back: its pages may go, as a new file's do, once the batch ended. */
        if (b->n_written < HPO_BLOB_WRITTEN) {
            b->written[b->n_written++] = b->lazy[i].f.fd;
        } else {
            (void)posix_fadvise(b->lazy[i].f.fd, 0, 0, POSIX_FADV_DONTNEED);
            close(b->lazy[i].f.fd);
        }
    }
    b->n_lazy = k;
    return 0;
}

/*
** The current batch's lazy files now belong to a committed (or perhaps
** committed) batch: their writeback starts (a deferred file's write), to
** be done by the next sync.
*/
static void lazy_committed(struct hpo_blobs *b)
{
    struct hpo_blob_lazy_file files[HPO_BLOB_LAZY];

    for (size_t i = 0; i < b->n_lazy; i++) {
        if (b->lazy[i].batch && b->lazy[i].f.data == NULL) {
            (void)sync_file_range(b->lazy[i].f.fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        }
        b->lazy[i].batch = false;
        files[i] = b->lazy[i].f;
    }
    /*
    ** And written and synced on a thread of their own while the disk is idle
    ** (before the next batch, which joins the job): blob-syncer.c. Without
    ** the thread, or with a job still out, the next batch does it itself.
    */
    if (b->n_lazy == 0 || b->n_bg > 0 || b->syncer_failed) {
        return;
    }
    if (b->syncer == NULL) {
        b->syncer = hpo__blob_syncer_start();
        if (b->syncer == NULL) {
            b->syncer_failed = true;
            return;
        }
    }
    if (hpo__blob_syncer_queue(b->syncer, files, b->n_lazy, b->dirfd)) {
        b->n_bg = b->n_lazy;
    }
}

int hpo__blob_read(const struct hpo_blobs *b, const struct hpo_blob_ref *ref, void *buf,
        struct hpo_error *err)
{
    struct stat sb;
    int fd;
    int r;

    if (b->dirfd < 0) {
        return hpo_error_set(err, -ENOENT, HPO_INTERNAL, NULL,
                "blob file '%s' is referenced, but there is no blob directory '%s'", ref->name,
                b->dir != NULL ? b->dir : "(in-memory database)");
    }
    fd = openat(b->dirfd, ref->name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        return sys_error(err, r, HPO_INTERNAL, r, "blob file '%s/%s'", b->dir, ref->name);
    }
    if (fstat(fd, &sb) < 0) {
        r = -errno;
        close(fd);
        return sys_error(err, r, HPO_INTERNAL, r, "blob file '%s/%s'", b->dir, ref->name);
    }
    /* Longer is a state file extended by an append that did not commit (crash). */
    if ((uint64_t)sb.st_size < (uint64_t)ref->len) {
        close(fd);
        return hpo_error_set(err, -EBADMSG, HPO_INTERNAL, NULL,
                "blob file '%s/%s' has %lld bytes, the database expects %zu", b->dir, ref->name,
                (long long)sb.st_size, ref->len);
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    r = read_all(fd, buf, ref->len);
    close(fd);
    if (r < 0) {
        return sys_error(err, -EIO, HPO_INTERNAL, r, "reading blob file '%s/%s'", b->dir,
                ref->name);
    }
    if (hpo__xxh64(buf, ref->len) != ref->hash) {
        return hpo_error_set(err, -EBADMSG, HPO_INTERNAL, NULL,
                "blob file '%s/%s' does not match its checksum", b->dir, ref->name);
    }
    return 0;
}

int hpo__blob_obsolete(struct hpo_blobs *b, const void *value, size_t len, bool reusable)
{
    struct hpo_blob_ref ref;

    if (!hpo__blob_parse(value, len, &ref)) {
        return 0;
    }
    return names_add(reusable ? &b->reusable : &b->obsolete, ref.name);
}

void hpo__blob_keep_tail(struct hpo_blobs *b, const struct hpo_blob_ref *ref)
{
    struct hpo_blob_tail *t = &b->tails[0];

    if (b->last_counter != ref->counter) {
        return;
    }
    /* The least recently written slot (a free one has used 0). */
    for (size_t i = 1; i < HPO_BLOB_TAILS; i++) {
        if (b->tails[i].used < t->used) {
            t = &b->tails[i];
        }
    }
    snprintf(t->name, sizeof(t->name), "%s", ref->name);
    t->len = ref->len;
    t->base = ref->len;
    t->x = b->last_x;
    t->used = ++b->tick;
}

/* Cut a file back to `len` bytes (undoing an append); failures leave bytes readers ignore. */
static void cut_back(struct hpo_blobs *b, const char *name, size_t len)
{
    int fd = openat(b->dirfd, name, O_WRONLY | O_CLOEXEC);

    if (fd >= 0) {
        (void)ftruncate(fd, (off_t)len);
        close(fd);
    }
}


int hpo__blob_append(struct hpo_blobs *b, const struct hpo_blob_ref *cur,
        const struct hpo_part *parts, size_t n, void (*copied)(void *), void *arg,
        struct hpo_blob_ref *ref, struct hpo_error *err)
{
    struct hpo_blob_tail *t = NULL;
    struct hpo_xxh64 x;
    struct hasher h;
    size_t add = 0, slot;
    int fd;
    int r = 0;

    if (b->dirfd < 0 || b->n_appended == HPO_BLOB_TAILS) {
        return 0;
    }
    for (size_t i = 0; i < HPO_BLOB_TAILS; i++) {
        if (b->tails[i].used != 0 && strcmp(b->tails[i].name, cur->name) == 0 &&
                b->tails[i].len == cur->len && hpo__xxh64_digest(&b->tails[i].x) == cur->hash) {
            t = &b->tails[i];
        }
    }
    for (size_t i = 0; i < n; i++) {
        add += parts[i].len;
    }
    /* The records after a whole state stay within its size: a bounded replay at load. */
    if (t == NULL || add > t->base - (t->len - t->base)) {
        return 0;
    }
    slot = (size_t)(t - b->tails);
    fd = openat(b->dirfd, cur->name, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0; /* gone: the whole state goes to a new file */
    }
    /* The checksum continues on a thread of its own while the pieces are written and synced. */
    h.x = t->x;
    hash_start(b, &h, parts, n, add);
    r = write_parts_at(fd, parts, n, (off_t)cur->len, b->sync);
    if (r == 0 && copied != NULL) {
        copied(arg); /* in the page cache: the sampler's deferred step may take the CPU */
    }
    if (r == 0 && b->sync && fdatasync(fd) < 0) {
        r = -errno;
    }
    close(fd);
    hash_join(b, &h);
    x = h.x;
    if (r < 0) {
        cut_back(b, cur->name, cur->len);
        b->fail_errno = r != -ENOMEM ? -r : 0;
        b->fail_len = add;
        return file_error(b, r, "appending to", cur->name, err);
    }
    b->fail_errno = 0;
    b->appended[b->n_appended].slot = slot;
    b->appended[b->n_appended].old = *t;
    b->n_appended++;
    t->x = x;
    t->len += add;
    t->used = ++b->tick;
    *ref = *cur;
    ref->len = t->len;
    ref->hash = hpo__xxh64_digest(&t->x);
    format_ref(ref);
    return 1;
}

void hpo__blobs_mark(const struct hpo_blobs *b, struct hpo_blob_mark *mark)
{
    mark->created = b->created.n;
    mark->obsolete = b->obsolete.n;
    mark->reusable = b->reusable.n;
    mark->appended = b->n_appended;
    mark->lazy = b->n_lazy;
}

void hpo__blobs_undo(struct hpo_blobs *b, const struct hpo_blob_mark *mark)
{
    while (b->created.n > mark->created) {
        b->created.n--;
        (void)unlinkat(b->dirfd, b->created.v[b->created.n], 0);
    }
    /* This batch's lazy files come last; their names were unlinked above. */
    while (b->n_lazy > mark->lazy && b->lazy[b->n_lazy - 1].batch) {
        drop_lazy(b);
    }
    while (b->n_appended > mark->appended) {
        b->n_appended--;
        b->tails[b->appended[b->n_appended].slot] = b->appended[b->n_appended].old;
        cut_back(b, b->appended[b->n_appended].old.name, b->appended[b->n_appended].old.len);
    }
    b->obsolete.n = mark->obsolete;
    b->reusable.n = mark->reusable;
    if (b->sync) {
        release_written(b);
    }
}

void hpo__blobs_forget(struct hpo_blobs *b)
{
    /* Whether the appends committed is unknown: those files are extended no more. */
    for (size_t i = 0; i < b->n_appended; i++) {
        memset(&b->tails[b->appended[i].slot], 0, sizeof(b->tails[0]));
    }
    b->n_appended = 0;
    lazy_committed(b);
    b->created.n = 0;
    b->obsolete.n = 0;
    b->reusable.n = 0;
    if (b->sync) {
        release_written(b);
    }
}

int hpo__blobs_sync_dir(struct hpo_blobs *b, struct hpo_error *err)
{
    size_t fresh = 0;
    bool synced = false;
    int r;

    if (!b->sync) {
        return 0;
    }
    for (size_t i = 0; i < b->n_lazy; i++) {
        fresh += b->lazy[i].batch;
    }
    r = sync_lazy(b, false, &synced, err);
    if (r < 0) {
        return r;
    }
    if ((synced || b->created.n > fresh) && fsync(b->dirfd) < 0) {
        return file_error(b, -errno, "syncing the directory of",
                b->created.n > 0 ? b->created.v[0] : "a lazy file", err);
    }
    return 0;
}

bool hpo__blobs_pending(const struct hpo_blobs *b)
{
    return b->created.n > 0 || b->obsolete.n > 0 || b->reusable.n > 0 || b->n_appended > 0 ||
            b->n_lazy > 0;
}

void hpo__blobs_finish(struct hpo_blobs *b)
{
    struct stat sb;

    for (size_t i = 0; i < b->obsolete.n; i++) {
        (void)unlinkat(b->dirfd, b->obsolete.v[i], 0);
    }
    for (size_t i = 0; i < b->reusable.n; i++) {
        const char *name = b->reusable.v[i];
        if (fstatat(b->dirfd, name, &sb, 0) < 0) {
            continue;
        }
        if (b->n_spare == HPO_BLOB_SPARES) {
            drop_spare(b, 0, true);
        }
        snprintf(b->spare[b->n_spare].name, HPO_BLOB_NAME_MAX, "%s", name);
        b->spare[b->n_spare].len = (size_t)sb.st_size;
        b->n_spare++;
    }
    b->created.n = 0;
    b->obsolete.n = 0;
    b->reusable.n = 0;
    b->n_appended = 0;
    lazy_committed(b);
    if (b->sync) {
        release_written(b);
    }
}
