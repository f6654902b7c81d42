/*
** redo.c: the redo log of a SQLite database (redo.h).
**
** A record: a 40-byte head (magic, number of writes, record number, payload
** length, XXH64 of the payload mixed with the other fields), then the
** payload: per write its ops, each a fixed block (struct rec_op; the
** first carries the write's op count) then its vector, blob and strings
** (each string with its NUL), padded to 8 bytes so that a vector read back
** in place is aligned. Numbers are in the host's byte order: the file is
** read back only by the process that restarts on the same machine, and
** only until it is applied.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/buf.h"
#include "../core/log.h"
#include "redo.h"
#include "storage-int.h"

#define REDO_MAGIC 0x31445248u /* "HRD1" */

struct rec_head {
    uint32_t magic;
    uint32_t n_writes;
    uint64_t lsn;
    uint64_t len;   /* payload bytes */
    uint64_t check; /* XXH64 of the payload, xor check_seed() of the head */
    uint64_t epoch; /* the database's (hpod_redo.epoch) */
};

struct rec_op {
    int32_t kind;
    uint32_t flags;
    int64_t study_id, number, index;
    double value;
    int64_t when; /* created_at or step */
    int32_t state;
    uint32_t n_ops; /* the first op of a write: the write's op count; else 0 */
    double trial_value;
    int64_t retry_of, retries, created_at, started_at, completed_at, heartbeat_at;
    uint64_t len;
    uint32_t name_len, text_len, worker_len, results_len; /* with the NUL; 0: NULL */
};

enum {
    F_VECTOR = 1u << 0,
    F_BLOB = 1u << 1,
    F_SCALAR = 1u << 2,
    F_LAZY = 1u << 3,
};

_Static_assert(sizeof(struct rec_head) == HPO__REDO_HEAD, "the head is HPO__REDO_HEAD bytes");
_Static_assert(sizeof(struct rec_op) % 8 == 0, "an op block keeps 8-byte alignment");

/* A restart at the start cuts the file back to empty when it has grown past this. */
#define REDO_KEEP (64u << 20)

struct hpo__redo {
    int fd;
    uint64_t size;      /* where the next record goes: the end of the records of now */
    uint64_t file_size; /* older records may follow (a restart writes over them) */
    struct hpo_buf buf; /* the record being built (append) or read (replay) */
    uint64_t epoch;
    char *path;
};

static uint64_t check_seed(const struct rec_head *h)
{
    return h->lsn ^ (h->len << 20) ^ ((uint64_t)h->n_writes << 44) ^ REDO_MAGIC ^
            (h->epoch * 0x9e3779b97f4a7c15u);
}

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static size_t text_len(const char *s)
{
    return s != NULL ? strlen(s) + 1 : 0;
}

static size_t op_size(const struct hpo_op *op)
{
    size_t n = sizeof(struct rec_op);

    n += op->vector != NULL ? op->len * sizeof(double) : 0;
    n += op->blob != NULL ? op->len : 0;
    n += text_len(op->name) + text_len(op->text) + text_len(op->trial.worker) +
            text_len(op->trial.results);
    return pad8(n);
}

/* Room for `need` bytes at the start of the scratch buffer (its contents are not kept). */
static int reserve(struct hpo__redo *r, size_t need)
{
    r->buf.len = 0;
    return hpo_buf_reserve(&r->buf, need);
}

static char *put_text(char *at, const char *s, uint32_t *ret_len)
{
    size_t n = text_len(s);

    *ret_len = (uint32_t)n;
    if (n > 0) {
        memcpy(at, s, n);
    }
    return at + n;
}

static char *put_op(char *at, const struct hpo_op *op, size_t n_ops)
{
    struct rec_op o;
    char *start = at;
    char *end;

    memset(&o, 0, sizeof(o));
    o.kind = (int32_t)op->kind;
    o.flags = (op->vector != NULL ? F_VECTOR : 0) | (op->blob != NULL ? F_BLOB : 0) |
            (op->scalar ? F_SCALAR : 0) | (op->lazy ? F_LAZY : 0);
    o.study_id = op->study_id;
    o.number = op->number;
    o.index = op->index;
    o.value = op->value;
    o.when = op->step; /* the union's other member, created_at, has the same type */
    o.state = op->trial.state;
    o.n_ops = (uint32_t)n_ops;
    o.trial_value = op->trial.value;
    o.retry_of = op->trial.retry_of;
    o.retries = op->trial.retries;
    o.created_at = op->trial.created_at;
    o.started_at = op->trial.started_at;
    o.completed_at = op->trial.completed_at;
    o.heartbeat_at = op->trial.heartbeat_at;
    o.len = op->len;
    at += sizeof(o);
    if (op->vector != NULL) {
        memcpy(at, op->vector, op->len * sizeof(double));
        at += op->len * sizeof(double);
    }
    if (op->blob != NULL) {
        memcpy(at, op->blob, op->len);
        at += op->len;
    }
    at = put_text(at, op->name, &o.name_len);
    at = put_text(at, op->text, &o.text_len);
    at = put_text(at, op->trial.worker, &o.worker_len);
    at = put_text(at, op->trial.results, &o.results_len);
    memcpy(start, &o, sizeof(o));
    end = start + op_size(op);
    memset(at, 0, (size_t)(end - at));
    return end;
}

int hpo__redo_open(const char *db_path, uint64_t epoch, struct hpo__redo **ret,
        struct hpo_error *err)
{
    struct hpo__redo *r = calloc(1, sizeof(*r));
    struct stat sb;
    size_t n = strlen(db_path) + sizeof(".redo");
    char buf[128];
    int e;

    if (r == NULL || (r->path = malloc(n)) == NULL) {
        free(r);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    snprintf(r->path, n, "%s.redo", db_path);
    r->fd = open(r->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (r->fd < 0 || fstat(r->fd, &sb) != 0) {
        e = errno;
        hpo_error_set(err, -e, HPO_UNAVAILABLE, NULL, "opening '%s': %s", r->path,
                strerror_r(e, buf, sizeof(buf)));
        hpo__redo_close(r);
        return -e;
    }
    r->size = (uint64_t)sb.st_size;
    r->file_size = r->size;
    r->epoch = epoch;
    *ret = r;
    return 0;
}

void hpo__redo_close(struct hpo__redo *r)
{
    if (r == NULL) {
        return;
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    hpo_buf_free(&r->buf);
    free(r->path);
    free(r);
}

int hpo__redo_fd(const struct hpo__redo *r)
{
    return r->fd;
}

uint64_t hpo__redo_size(const struct hpo__redo *r)
{
    return r->size;
}

/* Cut the file back to `size` after a failed append; the log is useless if that fails too. */
static void cut_back(struct hpo__redo *r, uint64_t size)
{
    int rc;

    do {
        rc = ftruncate(r->fd, (off_t)size);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        char buf[128];

        hpo_log(HPO_LOG_ERR, "cutting the redo log '%s' back after a failed write failed: %s; "
                "stopping (a later record would follow a damaged one)", r->path,
                strerror_r(errno, buf, sizeof(buf)));
        abort();
    }
}

int hpo__redo_append(struct hpo__redo *r, uint64_t lsn, const struct hpo_write *batch,
        struct hpo_error *err)
{
    struct rec_head h;
    size_t len = 0;
    uint32_t n_writes = 0;
    char *at;
    size_t done = 0;
    char buf[128];

    for (const struct hpo_write *w = batch; w != NULL; w = w->next) {
        if (w->result < 0) {
            continue;
        }
        for (size_t i = 0; i < w->n_ops; i++) {
            len += op_size(&w->ops[i]);
        }
        n_writes++;
    }
    if (reserve(r, sizeof(h) + len) < 0) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    at = r->buf.data + sizeof(h);
    for (const struct hpo_write *w = batch; w != NULL; w = w->next) {
        for (size_t i = 0; i < w->n_ops && w->result >= 0; i++) {
            at = put_op(at, &w->ops[i], i == 0 ? w->n_ops : 0);
        }
    }
    memset(&h, 0, sizeof(h));
    h.magic = REDO_MAGIC;
    h.n_writes = n_writes;
    h.lsn = lsn;
    h.len = len;
    h.epoch = r->epoch;
    h.check = hpo__xxh64(r->buf.data + sizeof(h), len) ^ check_seed(&h);
    memcpy(r->buf.data, &h, sizeof(h));
    len += sizeof(h);
    while (done < len) {
        ssize_t n = pwrite(r->fd, r->buf.data + done, len - done, (off_t)(r->size + done));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;

            cut_back(r, r->size);
            r->file_size = r->size;
            hpo_error_set(err, -EIO, HPO_UNAVAILABLE, NULL, "writing the redo log '%s': %s",
                    r->path, strerror_r(e, buf, sizeof(buf)));
            errno = e; /* for the caller's /healthz (ENOSPC, EROFS) */
            return -EIO;
        }
        done += (size_t)n;
    }
    r->size += len;
    if (r->file_size < r->size) {
        r->file_size = r->size;
    }
    return 0;
}

/* The ops of one record's payload, read back in place; false when it does not parse. */
static bool parse(char *p, size_t len, uint32_t n_writes, struct hpo_write *writes,
        struct hpo_op *ops, size_t max_ops)
{
    size_t at = 0, k = 0;

    for (uint32_t wi = 0; wi < n_writes; wi++) {
        struct hpo_write *w = &writes[wi];
        uint32_t n_ops;
        struct rec_op o;

        if (len - at < sizeof(o)) {
            return false;
        }
        memcpy(&o, p + at, sizeof(o));
        n_ops = o.n_ops;
        if (n_ops == 0 || n_ops > max_ops - k) {
            return false;
        }
        memset(w, 0, sizeof(*w));
        w->ops = &ops[k];
        w->n_ops = n_ops;
        w->next = wi + 1 < n_writes ? &writes[wi + 1] : NULL;
        for (uint32_t i = 0; i < n_ops; i++) {
            struct hpo_op *op = &ops[k++];
            size_t start = at;
            size_t need;
            char *v;

            if (len - at < sizeof(o)) {
                return false;
            }
            memcpy(&o, p + at, sizeof(o));
            if ((i == 0) != (o.n_ops != 0)) {
                return false;
            }
            need = (o.flags & F_VECTOR ? 8 : 1) * (size_t)o.len * !!(o.flags & (F_VECTOR | F_BLOB));
            if ((o.flags & F_VECTOR) && (o.flags & F_BLOB)) {
                return false;
            }
            if (o.len > len || need > len) {
                return false;
            }
            need += (size_t)o.name_len + o.text_len + o.worker_len + o.results_len;
            if (need > len - at - sizeof(o)) {
                return false;
            }
            memset(op, 0, sizeof(*op));
            op->kind = (enum hpo_op_kind)o.kind;
            op->study_id = o.study_id;
            op->number = o.number;
            op->index = o.index;
            op->value = o.value;
            op->step = o.when;
            op->scalar = (o.flags & F_SCALAR) != 0;
            op->lazy = (o.flags & F_LAZY) != 0;
            op->trial.state = o.state;
            op->trial.value = o.trial_value;
            op->trial.retry_of = o.retry_of;
            op->trial.retries = o.retries;
            op->trial.created_at = o.created_at;
            op->trial.started_at = o.started_at;
            op->trial.completed_at = o.completed_at;
            op->trial.heartbeat_at = o.heartbeat_at;
            op->len = (size_t)o.len;
            v = p + at + sizeof(o);
            if (o.flags & F_VECTOR) {
                op->vector = (const double *)(const void *)v;
                v += o.len * sizeof(double);
            }
            if (o.flags & F_BLOB) {
                op->blob = v;
                v += o.len;
            }
            {
                uint32_t lens[4] = { o.name_len, o.text_len, o.worker_len, o.results_len };
                const char **dst[4] = { &op->name, &op->text, &op->trial.worker,
                    &op->trial.results };

                for (int j = 0; j < 4; j++) {
                    if (lens[j] > 0) {
                        if (v[lens[j] - 1] != '\0') {
                            return false;
                        }
                        *dst[j] = v;
                        v += lens[j];
                    }
                }
            }
            at = start + pad8((size_t)(v - (p + start)));
            if (at > len) {
                return false;
            }
        }
    }
    return at == len;
}

int hpo__redo_replay(struct hpo__redo *r,
        int (*fn)(void *ctx, uint64_t lsn, struct hpo_write *batch, struct hpo_error *err),
        void *ctx, uint64_t *ret_last, struct hpo_error *err)
{
    uint64_t at = 0, last = 0;
    struct rec_head h;
    bool foreign = false;
    char buf[128];
    int ret = 0;

    *ret_last = 0;
    for (;;) {
        struct hpo_write *writes;
        struct hpo_op *ops;
        size_t max_ops;
        ssize_t n;
        bool ok;

        if (r->file_size - at < sizeof(h)) {
            break;
        }
        n = pread(r->fd, &h, sizeof(h), (off_t)at);
        if (n != (ssize_t)sizeof(h)) {
            if (n < 0) {
                int e = errno;

                return hpo_error_set(err, -e, HPO_UNAVAILABLE, NULL, "reading '%s': %s",
                        r->path, strerror_r(e, buf, sizeof(buf)));
            }
            break;
        }
        if (h.magic != REDO_MAGIC || h.len > r->file_size - at - sizeof(h) || h.n_writes == 0 ||
                h.len % 8 != 0 || (last != 0 && h.lsn != last + 1)) {
            break;
        }
        if (h.epoch != r->epoch) {
            foreign = true;
            break;
        }
        if (reserve(r, (size_t)h.len) < 0) {
            return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        }
        n = pread(r->fd, r->buf.data, (size_t)h.len, (off_t)(at + sizeof(h)));
        if (n != (ssize_t)h.len ||
                (hpo__xxh64(r->buf.data, (size_t)h.len) ^ check_seed(&h)) != h.check) {
            break;
        }
        max_ops = (size_t)h.len / sizeof(struct rec_op);
        if (h.n_writes > max_ops) {
            break; /* (each write has an op: a damaged count, checked before it is allocated) */
        }
        writes = calloc(h.n_writes, sizeof(*writes));
        ops = calloc(max_ops > 0 ? max_ops : 1, sizeof(*ops));
        if (writes == NULL || ops == NULL) {
            free(writes);
            free(ops);
            return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        }
        ok = parse(r->buf.data, (size_t)h.len, h.n_writes, writes, ops,
                max_ops);
        if (ok) {
            ret = fn(ctx, h.lsn, writes, err);
        }
        free(writes);
        free(ops);
        if (!ok) {
            break;
        }
        if (ret < 0) {
            return ret;
        }
        last = h.lsn;
        at += sizeof(h) + h.len;
    }
    if (foreign) {
        hpo_log(HPO_LOG_WARNING, "redo log '%s': its records from %llu bytes on belong to "
                "another copy of the database (a backup restored beside an old log?): "
                "not applied, dropped", r->path, (unsigned long long)at);
    } else if (at < r->file_size) {
        /* Older records a restart wrote over, or a write a crash cut short (never acknowledged). */
        hpo_log(HPO_LOG_INFO, "redo log '%s': %llu bytes after the last record (number %llu) "
                "dropped", r->path, (unsigned long long)(r->file_size - at),
                (unsigned long long)last);
    }
    if (at < r->file_size) {
        cut_back(r, at);
        r->file_size = at;
    }
    r->size = at;
    *ret_last = last;
    return 0;
}

void hpo__redo_seal(void *record, uint64_t epoch)
{
    struct rec_head h;

    memcpy(&h, record, sizeof(h));
    h.magic = REDO_MAGIC;
    h.epoch = epoch;
    h.check = hpo__xxh64((const char *)record + sizeof(h), (size_t)h.len) ^ check_seed(&h);
    memcpy(record, &h, sizeof(h));
}

int hpo__redo_restart(struct hpo__redo *r, bool empty, struct hpo_error *err)
{
    char buf[128];

    if ((empty || r->file_size > REDO_KEEP) && r->file_size > 0) {
        if (ftruncate(r->fd, 0) != 0) {
            int e = errno;

            return hpo_error_set(err, -e, HPO_UNAVAILABLE, NULL, "emptying '%s': %s", r->path,
                    strerror_r(e, buf, sizeof(buf)));
        }
        r->file_size = 0;
    }
    r->size = 0;
    return 0;
}
